"""Adversaries benchmark: the poisoning defences on digits, honest clients under the direction
guard over a long run, and the gas price of commit-reveal.

Run: ``.venv/bin/python -m bench.adversaries`` (``--quick``: 3 poisoning rounds and 6 long rounds;
``--skip-long`` leaves out the long honest runs, ``--skip-gas`` the 7,850-weight gas part;
``--render-only`` rewrites the table from the JSON). Writes ``bench/results/adversaries.json`` and
``bench/results/adversaries.md`` (the tables the README quotes); exits 1 when an attack moves the
final accuracy of the fully defended run more than the bar from the clean run, or the guard leaves
an honest client out in the long runs. The attackers of the reward rule (free riders, stale
models, noise, sample-count inflaters, Sybils, copycats under the ``current`` and ``aggregate``
reward references) are ``bench.incentives``'s, the incentive issue's benchmark.

Chain: one anvil with instant mining (``bench.common.anvil_node``) for the whole run, a fresh
``FLCoordinator`` per run (the units are deployed once), the clients, paths and closer of
:class:`fl_client.federation.Federation`. Not the embedded chain: there every read of a round's
events (each participant's outcome, each word the closer reads back) scans every block since
genesis, so a 5-round run of 10 clients slows from 15 s to 70 s a round; anvil keeps 2-4 s.

Poisoning: 10 IID clients train softmax regression on ``digits`` (650 weights; the project's
defaults: E=5, B=10, lr 0.3, plain mean, seed 0) for 5 rounds (``--rounds``). Two clients are
attackers (:class:`Attacker`, a ``LocalTrainer`` that wraps an honest one): they train like
everyone else, then submit ``global + k * (trained - global)`` (k = 10: scaled; k = -1:
sign-flipped; k = -10: both), quantized and clipped to the fixed-point range by the codec. Every
attack runs under five sets of defences (:meth:`Calibration.defences`):

- ``none``;
- ``bound``: the distance bound ``maxCountedDistance`` (an update farther from the global model is
  neither paid nor averaged);
- ``bound + guard``: the bound and the direction guard ``minAlignment = 0`` basis points (an
  update may not move the weights more against the last round's step than along it; weights the
  step left alone count as "against");
- ``step bounds``: ``maxStep`` (quanta a weight of the global model may move in one round) and
  ``maxDrift`` over ``driftWindow`` rounds (quanta it may move from the window's checkpoint), the
  influence bounds of the incentive issue, alone;
- ``all``: the bound, the guard and the step bounds.

Every run uses the plain mean, the ``current`` reward reference, plain mode, no free-rider guard
and no share cap (:data:`FIXED_SETTINGS`): ``maxShareBps`` caps sample-weighted shares only, and
under the plain mean every counted update already weighs the same. Every threshold is set from the
clean run (no attacker, no defence), never from an attack: the bound is the smallest multiple of
the tier step (32 quanta per weight, the first per-weight threshold of ``brownie-config.yaml``) at
or above 1.5 x the largest honest per-weight L1 distance; ``maxStep`` is 1.5 x the largest
per-weight step of the clean model, ``maxDrift`` 1.5 x its largest per-weight drift from the
initial model, ``driftWindow`` the number of rounds (the checkpoint is the initial model for the
whole run). The clean run is repeated with each set of defences, to show what they cost honest
clients. The bar: with the defences, the final accuracy stays within 2 percentage points of the
clean run.

Honest clients over a long run: the guard must not turn on honest clients once training slows
down and steps get noisy, nor when their data differ. 10 honest clients train for 20 rounds
(``--long-rounds``) on IID and on Dirichlet(0.5) shards with the direction guard (and without it
when it left an honest update out); recorded: how many honest submissions the guard left out,
their lowest alignment per round, the weights the last step left alone, and the final accuracies.

Gas: 10 clients, 7,850 weights (MNIST softmax regression), random updates (uniform in the
fixed-point range, seeded), two rounds in plain mode (direct ``submit``) and in commit-reveal mode
(``commit`` with the bond, then ``reveal``), closed by an account that takes no part; round-2
medians of each client's own gas, and the closes. Anvil runs the same EVM rules as the embedded
chain (Prague), so the figures are those of ``bench.gas``.

Wall times depend on the machine and its load; accuracies, distances and gas do not.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from web3.contract import Contract

from bench.common import (
    RESULTS,
    Stopwatch,
    anvil_node,
    command_line,
    contracts_fingerprint,
    machine,
    machine_note,
    write_json,
)
from fl_client.aggregation import directional_l1, guard_step
from fl_client.chain import Chain, DeployParams, connect, deploy, read_model_words, read_round
from fl_client.client_secret import simulation_secret
from fl_client.codec import dequantize, encode, unpack
from fl_client.config import ALIGNMENT_OFF, FixedPointFormat, FLConfig, load_config
from fl_client.errors import ChainError
from fl_client.federation import Federation, Member
from fl_client.model import get_flat_parameters, set_flat_parameters
from fl_client.participant import RoundOutcome
from fl_client.simulation import data_spec, task_of, train_config
from fl_client.tasks import LoadedTask, make_trainer
from fl_client.trainer import FitResult, LocalTrainer

MODULE = "bench.adversaries"
DATASET = "digits"
ATTACKS = (("scaled x10", 10.0), ("sign-flipped", -1.0), ("sign-flipped x10", -10.0))
MIN_ALIGNMENT_BPS = 0  # the direction guard of the defended runs
BAR_PP = 2.0
BOUND_MARGIN = 1.5
STEP_MARGIN = 1.5
GAS_WEIGHTS = 7_850
GAS_SAMPLES = 100
POOL_WEI = 10**18

Log = Callable[[str], None]


# ---------------------------------------------------------------- clients


class Attacker:
    """A poisoner: trains like the honest client it wraps, then submits
    ``global + k * (trained - global)``."""

    def __init__(self, honest: LocalTrainer, k: float) -> None:
        self.honest = honest
        self.k = k

    @property
    def num_samples(self) -> int:
        """The honest client's sample count."""
        return self.honest.num_samples

    @property
    def num_weights(self) -> int:
        """Length of the flat parameter vector."""
        return self.honest.num_weights

    def fit(self, global_weights: np.ndarray, *, round_number: int) -> FitResult:
        """Honest training, the step scaled by ``k``."""
        trained = self.honest.fit(global_weights, round_number=round_number)
        return FitResult(global_weights + self.k * (trained.weights - global_weights), trained.loss)


class RandomUpdate:
    """The gas workload: a random update, uniform over the fixed-point range, seeded per client
    and round (the float weights quantize to the drawn integers exactly)."""

    def __init__(self, *, client: int, num_weights: int, fmt: FixedPointFormat, seed: int) -> None:
        self.client = client
        self.fmt = fmt
        self.seed = seed
        self._num_weights = num_weights

    @property
    def num_samples(self) -> int:
        """A fixed sample count."""
        return GAS_SAMPLES

    @property
    def num_weights(self) -> int:
        """Length of the flat parameter vector."""
        return self._num_weights

    def fit(self, global_weights: np.ndarray, *, round_number: int) -> FitResult:
        """A fresh random vector, whatever the global model."""
        rng = np.random.default_rng([self.seed, self.client, round_number])
        values = rng.integers(-self.fmt.max_abs, self.fmt.max_abs + 1, self._num_weights)
        return FitResult(dequantize(values, self.fmt), math.nan)


# ---------------------------------------------------------------- settings


# What every poisoning run shares, whatever its defences: the plain mean, the seed paper's reward
# reference, updates in the clear, no free-rider guard, no share cap.
FIXED_SETTINGS: dict[str, int | str] = {
    "aggregation": "mean",
    "rewardReference": "current",
    "mode": "plain",
    "minRewardDistance": 0,
    "maxShareBps": 0,
}


@dataclass(frozen=True)
class Defences:
    """The contract settings of one column (distances over the whole model, in quanta)."""

    name: str
    max_counted_distance: int = 0
    min_alignment_bps: int = ALIGNMENT_OFF
    max_step: int = 0
    max_drift: int = 0
    drift_window: int = 0

    def describe(self) -> dict[str, int | str]:
        """The settings as the contract takes them."""
        return {
            "maxCountedDistance": self.max_counted_distance,
            "minAlignment": self.min_alignment_bps,
            "maxStep": self.max_step,
            "maxDrift": self.max_drift,
            "driftWindow": self.drift_window,
            **FIXED_SETTINGS,
        }


NO_DEFENCE = Defences("none")


@dataclass(frozen=True)
class Calibration:
    """The thresholds, from the clean run."""

    bound_per_weight: int
    max_counted_distance: int
    max_step: int
    max_drift: int
    drift_window: int

    def defences(self) -> list[Defences]:
        """The five columns."""
        bound = self.max_counted_distance
        steps = Defences(
            "step bounds",
            max_step=self.max_step,
            max_drift=self.max_drift,
            drift_window=self.drift_window,
        )
        return [
            NO_DEFENCE,
            Defences("bound", max_counted_distance=bound),
            Defences("bound + guard", max_counted_distance=bound, min_alignment_bps=0),
            steps,
            replace(steps, name="all", max_counted_distance=bound, min_alignment_bps=0),
        ]


def calibrate(clean: dict[str, Any], *, tier_step: int, rounds: int) -> Calibration:
    """The bound, ``maxStep`` and ``maxDrift`` from the clean run (see the module docstring)."""
    num_weights = int(clean["num_weights"])
    largest = max(m["distance"] for r in clean["rounds"] for m in r["members"]) / num_weights
    per_weight = tier_step * math.ceil(BOUND_MARGIN * largest / tier_step)
    models = [np.asarray(m, dtype=np.int64) for m in clean["models"]]
    step = max(int(np.abs(b - a).max()) for a, b in itertools.pairwise(models))
    drift = max(int(np.abs(m - models[0]).max()) for m in models[1:])
    return Calibration(
        bound_per_weight=per_weight,
        max_counted_distance=per_weight * num_weights,
        max_step=math.ceil(STEP_MARGIN * step),
        max_drift=math.ceil(STEP_MARGIN * drift),
        drift_window=rounds,
    )


# ---------------------------------------------------------------- runs


@dataclass
class Context:
    """What every run of one partition shares."""

    chain: Chain
    fl: FLConfig
    task: LoadedTask
    partition: str
    trainers: list[LocalTrainer]
    test_data: Any
    initial_words: list[int]
    initial: np.ndarray  # quantized
    num_weights: int


def make_context(chain: Chain, fl: FLConfig, clients: int, partition: str) -> Context:
    """Honest trainers, test data and the quantized initial model."""
    fl = fl.with_overrides(clients=clients, partition=partition)
    task = task_of(fl)
    spec = data_spec(fl)
    config = train_config(fl)
    trainers = [
        make_trainer(task, client=i, spec=spec, config=config, seed=fl.seed) for i in range(clients)
    ]
    flat = get_flat_parameters(task.model(seed=fl.seed))
    words, quantized = encode(flat, fl.fixed_point)
    return Context(
        chain=chain,
        fl=fl,
        task=task,
        partition=partition,
        trainers=trainers,
        test_data=task.test_data(spec),
        initial_words=words,
        initial=quantized.values,
        num_weights=int(flat.size),
    )


def deploy_with(ctx: Context, defences: Defences) -> Contract:
    """A coordinator for ``ctx``'s clients with ``defences``; a round closes when every client's
    update counted, or at its deadline with those that did."""
    clients = len(ctx.trainers)
    contract = replace(
        ctx.fl.contract,
        target_submissions=clients,
        min_submissions=1,
        max_counted_distance=defences.max_counted_distance,
        min_alignment_bps=defences.min_alignment_bps,
        max_step=defences.max_step,
        max_drift=defences.max_drift,
        drift_window=defences.drift_window,
        min_reward_distance=int(FIXED_SETTINGS["minRewardDistance"]),
        max_share_bps=int(FIXED_SETTINGS["maxShareBps"]),
        reward_reference=str(FIXED_SETTINGS["rewardReference"]),
        aggregation=str(FIXED_SETTINGS["aggregation"]),
        mode=str(FIXED_SETTINGS["mode"]),
    )
    params = DeployParams.from_config(
        replace(ctx.fl, contract=contract),
        num_weights=ctx.num_weights,
        clients=clients,
        tx_gas_cap=ctx.chain.tx_gas_cap,
    )
    return deploy(ctx.chain, params, initial_words=ctx.initial_words, pool_wei=POOL_WEI)


def accuracy_of(ctx: Context, quantized: np.ndarray) -> float:
    """Test accuracy of a quantized model."""
    model = ctx.task.model(seed=ctx.fl.seed)
    set_flat_parameters(model, dequantize(quantized, ctx.fl.fixed_point))
    return float(ctx.task.evaluate(model, ctx.test_data).accuracy)


def chain_records(contract: Contract, round_number: int, from_block: int) -> dict[str, Any]:
    """What the chain logged of ``round_number``: each client's ``SubmissionAccepted`` (by
    account) and the weights the step bounds held back (``SegmentClosed``)."""
    accepted = contract.events.SubmissionAccepted().get_logs(
        from_block=from_block, argument_filters={"round": round_number}
    )
    closed = contract.events.SegmentClosed().get_logs(
        from_block=from_block, argument_filters={"round": round_number}
    )
    return {
        "accepted": {str(e["args"]["client"]): e["args"] for e in accepted},
        "clamped": sum(int(e["args"]["clamped"]) for e in closed),
    }


def run_federation(
    ctx: Context,
    defences: Defences,
    *,
    rounds: int,
    attackers: Sequence[int] = (),
    k: float = 1.0,
) -> dict[str, Any]:
    """Play ``rounds`` rounds on a fresh coordinator; ``attackers`` submit the ``k``-scaled
    step."""
    watch = Stopwatch()
    chain = ctx.chain
    contract = deploy_with(ctx, defences)
    trainers: list[LocalTrainer] = [
        Attacker(t, k) if i in attackers else t for i, t in enumerate(ctx.trainers)
    ]
    roles = ["attacker" if i in attackers else "honest" for i in range(len(trainers))]
    federation = Federation(
        chain=chain,
        contract=contract,
        members=[
            Member(
                account=chain.accounts[1 + i],
                trainer=trainer,
                secret=simulation_secret(ctx.fl.seed, i),
            )
            for i, trainer in enumerate(trainers)
        ],
        closer_account=chain.accounts[0],
    )
    guard_on = defences.min_alignment_bps != ALIGNMENT_OFF
    models = [ctx.initial.copy()]
    step: np.ndarray | None = None
    records = []
    for round_number in range(1, rounds + 1):
        start = int(chain.w3.eth.block_number)
        outcomes = federation.play_round(round_number, list(range(len(trainers))))
        if len(outcomes) != len(trainers):
            raise ChainError(f"round {round_number}: {len(outcomes)} of {len(trainers)} outcomes")
        logged = chain_records(contract, round_number, start)
        before = models[-1]
        after = unpack(read_model_words(contract), ctx.num_weights)
        members = [
            _member(o, roles[o.client_id], before, step, logged["accepted"], guard_on)
            for o in sorted(outcomes, key=lambda o: o.client_id)
        ]
        records.append(
            {
                "round": round_number,
                "accuracy": accuracy_of(ctx, after),
                "members": members,
                "clamped": logged["clamped"],
                "weights_step_left_alone": None
                if step is None
                else int(np.count_nonzero(step == 0)),
            }
        )
        step = guard_step(before, after)
        models.append(after)
    if read_round(contract).number != rounds + 1:
        raise ChainError("the run ended with the wrong round open")
    return summarize(records, models, ctx.num_weights, watch())


def _member(
    outcome: RoundOutcome,
    role: str,
    before: np.ndarray,
    step: np.ndarray | None,
    accepted: dict[str, Any],
    guard_on: bool,
) -> dict[str, Any]:
    """One client's round: what the chain settled, with the L1 distance from the model it trained
    on and the alignment recomputed from its words (both held to the chain's figures: the
    distance always, the reward reference being ``current``; the alignment when the guard
    measured it)."""
    update = unpack(list(outcome.words), before.size)
    distance = int(np.abs(update - before).sum())
    if distance != outcome.distance:
        raise ChainError(
            f"client {outcome.client_id}: the chain reports distance {outcome.distance}, "
            f"the words give {distance}"
        )
    along, against = (0, 0) if step is None else directional_l1(before, update, step)
    event = accepted.get(outcome.account)
    if event is None:
        raise ChainError(f"no SubmissionAccepted for client {outcome.client_id}")
    if guard_on and (int(event["along"]), int(event["against"])) != (along, against):
        raise ChainError(
            f"client {outcome.client_id}: the chain measured along/against "
            f"{event['along']}/{event['against']}, the words give {along}/{against}"
        )
    moved = along + against
    return {
        "client": outcome.client_id,
        "role": role,
        "sample_count": outcome.sample_count,
        "distance": outcome.distance,
        "counted": outcome.counted,
        "tier": outcome.tier,
        "reward_wei": outcome.reward_wei,
        "clipped": outcome.clipped,
        "alignment": None if step is None or moved == 0 else (along - against) / moved,
    }


def summarize(
    records: Sequence[dict[str, Any]],
    models: Sequence[np.ndarray],
    num_weights: int,
    seconds: float,
) -> dict[str, Any]:
    """A run's record with its totals."""

    def members(role: str) -> list[dict[str, Any]]:
        return [m for r in records for m in r["members"] if m["role"] == role]

    honest = members("honest")
    attackers = [m for r in records for m in r["members"] if m["role"] != "honest"]
    return {
        "accuracy_by_round": [round(r["accuracy"], 4) for r in records],
        "final_accuracy": round(records[-1]["accuracy"], 4),
        "rounds": list(records),
        "attacker_submissions_counted": sum(m["counted"] for m in attackers),
        "honest_submissions_excluded": sum(not m["counted"] for m in honest),
        "attacker_weights_clipped": sum(m["clipped"] for m in attackers),
        "weights_clamped": sum(r["clamped"] for r in records),
        "rewards_wei": {
            "honest": sum(m["reward_wei"] for m in honest),
            "attackers": sum(m["reward_wei"] for m in attackers),
        },
        "num_weights": num_weights,
        "models": [[int(v) for v in m] for m in models],
        "seconds": round(seconds, 1),
    }


def distance_summary(run: dict[str, Any], role: str) -> list[dict[str, Any]]:
    """Per round: min, median and max L1 distance per weight of ``role``'s submissions."""
    rows = []
    for r in run["rounds"]:
        values = [m["distance"] / run["num_weights"] for m in r["members"] if m["role"] == role]
        if values:
            rows.append(
                {
                    "round": r["round"],
                    "min": round(min(values), 1),
                    "median": round(statistics.median(values), 1),
                    "max": round(max(values), 1),
                }
            )
    return rows


def alignment_summary(run: dict[str, Any], role: str = "honest") -> list[dict[str, Any]]:
    """Per round with a step to compare with: min, median and max alignment of ``role``."""
    rows = []
    for r in run["rounds"]:
        values = [
            m["alignment"] for m in r["members"] if m["role"] == role and m["alignment"] is not None
        ]
        if values:
            rows.append(
                {
                    "round": r["round"],
                    "min": round(min(values), 3),
                    "median": round(statistics.median(values), 3),
                    "max": round(max(values), 3),
                    "weights_step_left_alone": r["weights_step_left_alone"],
                }
            )
    return rows


def lean(run: dict[str, Any]) -> dict[str, Any]:
    """``run`` without its models (the JSON keeps the clean run's only)."""
    return {key: value for key, value in run.items() if key != "models"}


# ---------------------------------------------------------------- poisoning


def poisoning(
    chain: Chain, fl: FLConfig, *, rounds: int, clients: int, attackers: int, log: Log
) -> dict[str, Any]:
    """The clean run, then every attack and the clean run again under every set of defences."""
    ctx = make_context(chain, fl, clients, "iid")
    bad = list(range(attackers))

    def run(defences: Defences, k: float, label: str, who: Sequence[int]) -> dict[str, Any]:
        result = run_federation(ctx, defences, rounds=rounds, attackers=who, k=k)
        log(
            f"{label}, {defences.name}: accuracy {result['accuracy_by_round']}, attackers counted "
            f"{result['attacker_submissions_counted']}, honest left out "
            f"{result['honest_submissions_excluded']} ({result['seconds']} s)"
        )
        return result

    clean = run(NO_DEFENCE, 1.0, "clean", ())
    calibration = calibrate(clean, tier_step=fl.rewards.thresholds_per_weight[0], rounds=rounds)
    columns = calibration.defences()
    clean_final = float(clean["final_accuracy"])

    def gap(result: dict[str, Any]) -> float:
        return round(100 * (float(result["final_accuracy"]) - clean_final), 2)

    clean_defended = {}
    for defences in columns[1:]:
        result = run(defences, 1.0, "clean", ())
        clean_defended[defences.name] = {**lean(result), "gap_pp": gap(result)}
    attacks = []
    for name, k in ATTACKS:
        by_defence = {}
        for defences in columns:
            result = lean(run(defences, k, name, bad))
            by_defence[defences.name] = {**result, "gap_pp": gap(result)}
        full = by_defence["all"]
        attacks.append(
            {
                "attack": name,
                "k": k,
                "runs": by_defence,
                "attacker_distance_per_weight": distance_summary(by_defence["none"], "attacker"),
                "attacker_alignment": alignment_summary(by_defence["bound + guard"], "attacker"),
                "within_bar_all": abs(full["gap_pp"]) <= BAR_PP,
                "within_bar_bound_guard": abs(by_defence["bound + guard"]["gap_pp"]) <= BAR_PP,
            }
        )
    return {
        "dataset": fl.dataset,
        "clients": clients,
        "attackers": bad,
        "rounds": rounds,
        "training": {
            "epochs": fl.epochs,
            "batch_size": fl.batch_size,
            "learning_rate": fl.learning_rate,
            "aggregation": fl.contract.aggregation,
            "partition": "iid",
            "seed": fl.seed,
        },
        "fixed_point": {"scale": fl.fixed_point.scale, "max_abs": fl.fixed_point.max_abs},
        "tier_thresholds_per_weight": list(fl.rewards.thresholds_per_weight),
        "calibration": {
            "bound_per_weight": calibration.bound_per_weight,
            "maxCountedDistance": calibration.max_counted_distance,
            "maxStep": calibration.max_step,
            "maxDrift": calibration.max_drift,
            "driftWindow": calibration.drift_window,
            "rule": (
                f"bound: the smallest multiple of {fl.rewards.thresholds_per_weight[0]} (the first "
                f"tier's per-weight threshold) at or above {BOUND_MARGIN} x the largest honest "
                f"per-weight L1 distance of the clean run; maxStep: {STEP_MARGIN} x the clean "
                f"model's largest per-weight step; maxDrift: {STEP_MARGIN} x its largest per-weight "
                "drift from the initial model, driftWindow the number of rounds"
            ),
        },
        "defences": {d.name: d.describe() for d in columns},
        "honest_distance_per_weight": distance_summary(clean, "honest"),
        "honest_alignment": alignment_summary(clean_defended["bound + guard"]),
        "clean": clean,
        "clean_with_defences": clean_defended,
        "attacks": attacks,
        "bar_pp": BAR_PP,
    }


# ---------------------------------------------------------------- long honest runs


def long_runs(
    chain: Chain, fl: FLConfig, *, rounds: int, clients: int, log: Log
) -> list[dict[str, Any]]:
    """Honest clients only, ``rounds`` rounds, IID and Dirichlet shards, with the guard; without
    it too when the guard left an honest update out (else the run without it would average the
    same updates from the same models: the same run)."""
    results = []
    guard = Defences("guard", min_alignment_bps=MIN_ALIGNMENT_BPS)
    for partition in ("iid", "dirichlet"):
        ctx = make_context(chain, fl, clients, partition)
        on = run_federation(ctx, guard, rounds=rounds)
        compared = on["honest_submissions_excluded"] > 0
        off = run_federation(ctx, NO_DEFENCE, rounds=rounds) if compared else on
        log(
            f"long {partition}: accuracy guard off {off['final_accuracy']}, on "
            f"{on['final_accuracy']}, left out {on['honest_submissions_excluded']} "
            f"({on['seconds'] + (off['seconds'] if compared else 0):.0f} s)"
        )
        results.append(
            {
                "partition": partition,
                "alpha": fl.dirichlet_alpha if partition == "dirichlet" else None,
                "rounds": rounds,
                "clients": clients,
                "final_accuracy_guard_off": off["final_accuracy"],
                "final_accuracy_guard_on": on["final_accuracy"],
                "guard_off_run": compared,
                "same_models": off["models"] == on["models"],
                "honest_submissions_left_out": on["honest_submissions_excluded"],
                "honest_alignment": alignment_summary(on),
                "honest_distance_per_weight": distance_summary(on, "honest"),
                "accuracy_by_round_guard_off": off["accuracy_by_round"],
                "accuracy_by_round_guard_on": on["accuracy_by_round"],
            }
        )
    return results


# ---------------------------------------------------------------- commit-reveal gas


def commit_reveal_gas(
    chain: Chain, fl: FLConfig, *, clients: int, seed: int, log: Log
) -> dict[str, Any]:
    """Round-2 gas of a direct ``submit`` against ``commit`` + ``reveal``, and of the closes."""
    figures: dict[str, Any] = {}
    for mode in ("plain", "commit_reveal"):
        contract_config = replace(
            fl.contract, target_submissions=clients, min_submissions=clients, mode=mode
        )
        params = DeployParams.from_config(
            replace(fl, contract=contract_config),
            num_weights=GAS_WEIGHTS,
            clients=clients,
            tx_gas_cap=chain.tx_gas_cap,
        )
        contract = deploy(chain, params, pool_wei=POOL_WEI)
        federation = Federation(
            chain=chain,
            contract=contract,
            members=[
                Member(
                    account=chain.accounts[1 + i],
                    trainer=RandomUpdate(
                        client=i, num_weights=GAS_WEIGHTS, fmt=fl.fixed_point, seed=seed
                    ),
                    secret=simulation_secret(seed, i),
                )
                for i in range(clients)
            ],
            closer_account=chain.accounts[0],
        )
        own: list[int] = []
        commits: list[int] = []
        total = 0
        for round_number in (1, 2):
            before = len(chain.gas_used)
            start = int(chain.w3.eth.block_number)
            outcomes = federation.play_round(round_number, list(range(clients)))
            total = sum(chain.gas_used[before:])
            own = [o.gas_used for o in outcomes]
            if len(outcomes) != clients or not all(o.counted for o in outcomes):
                raise ChainError(f"{mode}: round {round_number} did not count every client")
            committed = contract.events.CommitmentAccepted().get_logs(
                from_block=start, argument_filters={"round": round_number}
            )
            commits = [
                int(chain.w3.eth.get_transaction_receipt(e["transactionHash"])["gasUsed"])
                for e in committed
            ]
        figures[mode] = {
            "segments": federation.view.num_segments,
            "commit_gas_median": int(statistics.median(commits)) if commits else 0,
            "client_gas_median": int(statistics.median(own)),
            "client_gas_max": max(own),
            "closes_gas": total - sum(own),
            "round_total_gas": total,
        }
        log(f"gas, {mode}: {figures[mode]}")
    direct, cr = figures["plain"], figures["commit_reveal"]
    extra = cr["client_gas_median"] - direct["client_gas_median"]
    return {
        "weights": GAS_WEIGHTS,
        "clients": clients,
        "round": 2,
        "segments": direct["segments"],
        "direct_submit_gas": direct["client_gas_median"],
        "commit_plus_reveal_gas": cr["client_gas_median"],
        "commit_gas": cr["commit_gas_median"],
        "reveal_gas": cr["client_gas_median"] - cr["commit_gas_median"],
        "extra_gas_per_client": extra,
        "extra_percent": round(100 * extra / direct["client_gas_median"], 1),
        "closes_gas_direct": direct["closes_gas"],
        "closes_gas_commit_reveal": cr["closes_gas"],
        "round_total_direct": direct["round_total_gas"],
        "round_total_commit_reveal": cr["round_total_gas"],
        "extra_gas_per_round": cr["round_total_gas"] - direct["round_total_gas"],
        "gas_per_weight_per_client_direct": round(
            direct["round_total_gas"] / clients / GAS_WEIGHTS, 1
        ),
        "gas_per_weight_per_client_commit_reveal": round(
            cr["round_total_gas"] / clients / GAS_WEIGHTS, 1
        ),
        "commit_bond_wei": fl.contract.commit_bond_wei,
        "note": (
            "commit-reveal also takes two transactions per client and a reveal phase per round "
            "(latency, not gas); the bond comes back as credit with the reveal"
        ),
    }


# ---------------------------------------------------------------- report


def pct(value: float) -> str:
    """A fraction as a percentage with one decimal."""
    return f"{100 * value:.1f} %"


def notes(p: dict[str, Any]) -> list[str]:
    """What the figures say, in words (computed from them)."""
    c = p["calibration"]
    honest = p["honest_distance_per_weight"]
    result = []
    for a in p["attacks"]:
        runs = a["runs"]
        bound, guarded, steps = runs["bound"], runs["bound + guard"], runs["step bounds"]
        total = len(p["attackers"]) * p["rounds"]
        lowest = min(r["min"] for r in a["attacker_distance_per_weight"])
        if bound["attacker_submissions_counted"] == 0:
            first = (
                f"{a['attack']}: every attacking submission lay beyond the bound (lowest "
                f"{lowest} per weight against {c['bound_per_weight']}): none counted or paid"
            )
        else:
            first = (
                f"{a['attack']}: the bound alone counted {bound['attacker_submissions_counted']} "
                f"of {total} attacking submissions (lowest distance {lowest} per weight against "
                f"{c['bound_per_weight']}) and paid the attackers "
                f"{bound['rewards_wei']['attackers']:,} wei (gap {bound['gap_pp']:+.1f} pp); with "
                f"the direction guard {guarded['attacker_submissions_counted']} counted (round 1 "
                f"has no step to compare with), {guarded['rewards_wei']['attackers']:,} wei paid, "
                f"gap {guarded['gap_pp']:+.1f} pp"
            )
        result.append(
            f"{first}. The step bounds alone held back {steps['weights_clamped']:,} weight moves "
            f"and leave a gap of {steps['gap_pp']:+.1f} pp (none: "
            f"{runs['none']['gap_pp']:+.1f} pp); with everything on: {runs['all']['gap_pp']:+.1f} pp."
        )
    guarded = p["clean_with_defences"]["bound + guard"]
    lowest_alignment = min((r["min"] for r in p["honest_alignment"]), default=None)
    result.append(
        f"Honest clients under the bound and the guard (clean run): "
        f"{guarded['honest_submissions_excluded']} of {p['clients'] * p['rounds']} submissions left "
        f"out, lowest alignment {lowest_alignment if lowest_alignment is not None else 'n/a'}; "
        "gaps of the clean run under each set of defences: "
        + ", ".join(
            f"{name} {run['gap_pp']:+.1f} pp" for name, run in p["clean_with_defences"].items()
        )
        + "."
    )
    result.append(
        f"The bound is absolute: a x10 update stays beyond it while the honest per-weight distance "
        f"exceeds {c['bound_per_weight'] / 10:g}; the honest median fell from {honest[0]['median']} "
        f"(round 1) to {honest[-1]['median']} (round {honest[-1]['round']}), so a longer run needs "
        "a bound that follows the rounds (for example a multiple of the previous round's mean "
        "counted distance)."
    )
    tier_top = p["tier_thresholds_per_weight"][-1]
    unpaid = [r["round"] for r in honest if r["min"] > tier_top]
    if unpaid:
        result.append(
            f"With the configured tiers (last threshold {tier_top} per weight) no honest client was "
            f"paid in round(s) {', '.join(map(str, unpaid))}: the first steps of training are larger "
            "than the tiers."
        )
    return result


def markdown(report: dict[str, Any]) -> str:
    """The tables the README quotes."""
    p = report["poisoning"]
    c = p["calibration"]
    total = len(p["attackers"]) * p["rounds"]
    names = list(p["defences"])
    lines = [
        f"Poisoning: {len(p['attackers'])} of {p['clients']} clients attack for {p['rounds']} rounds "
        f"on {p['dataset']} (IID, plain mean, {report['chain']}); update = global + k x (trained - "
        f"global), clipped to +-{p['fixed_point']['max_abs']}/{p['fixed_point']['scale']}. "
        f"Command: `{report['command']}`.",
        "",
        f"Clean run (no attacker, no defence): final accuracy {pct(p['clean']['final_accuracy'])}. "
        f"Settings from the clean run: maxCountedDistance = {c['maxCountedDistance']:,} "
        f"({c['bound_per_weight']} per weight), minAlignment = {MIN_ALIGNMENT_BPS} bps (no more "
        f"movement against the last round's step than along it), maxStep = {c['maxStep']}, "
        f"maxDrift = {c['maxDrift']} over driftWindow = {c['driftWindow']} rounds ({c['rule']}). "
        "maxShareBps caps sample-weighted shares only: under the plain mean it changes nothing.",
        "",
        "Final accuracy and its gap to the clean run, by the defences on:",
        "",
        "| attack | k | "
        + " | ".join(names)
        + " | attackers counted (all) | within 2 pp: bound + guard, all |",
        "|---|---:|" + "---:|" * len(names) + "---:|---|",
    ]
    defended = p["clean_with_defences"]
    clean_ok = all(abs(r["gap_pp"]) <= BAR_PP for r in defended.values())
    lines.append(
        f"| clean | 1 | {pct(p['clean']['final_accuracy'])} | "
        + " | ".join(
            f"{pct(defended[n]['final_accuracy'])} ({defended[n]['gap_pp']:+.1f})"
            for n in names[1:]
        )
        + f" | - | {'yes' if clean_ok else 'NO'} |"
    )
    for a in p["attacks"]:
        cells = [
            f"{pct(a['runs'][n]['final_accuracy'])} ({a['runs'][n]['gap_pp']:+.1f})" for n in names
        ]
        full = a["runs"]["all"]
        lines.append(
            f"| {a['attack']} | {a['k']:g} | "
            + " | ".join(cells)
            + f" | {full['attacker_submissions_counted']} of {total} | "
            f"{'yes' if a['within_bar_bound_guard'] else 'NO'}, "
            f"{'yes' if a['within_bar_all'] else 'NO'} |"
        )
    lines += [
        "",
        "Attacking submissions counted, what the attackers were paid, and the weight moves the "
        "step bounds held back, by the defences on:",
        "",
        "| attack | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for a in p["attacks"]:
        cells = []
        for n in names:
            r = a["runs"][n]
            held = f", {r['weights_clamped']:,} held back" if r["weights_clamped"] else ""
            cells.append(
                f"{r['attacker_submissions_counted']}/{total}, "
                f"{r['rewards_wei']['attackers'] / 1e18:.4f} ETH{held}"
            )
        lines.append(f"| {a['attack']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Honest clients, clean run: L1 distance per weight (no defence) and alignment with the "
        "last round's step (bound + guard), by round:",
        "",
        "| round | distance min | median | max | alignment min | median | max "
        "| weights the step left alone |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by_round = {r["round"]: r for r in p["honest_alignment"]}
    for r in p["honest_distance_per_weight"]:
        al = by_round.get(r["round"])
        measured = (
            f"{al['min']:+.3f} | {al['median']:+.3f} | {al['max']:+.3f} | "
            f"{al['weights_step_left_alone']}"
            if al
            else "no step yet | | | "
        )
        lines.append(f"| {r['round']} | {r['min']} | {r['median']} | {r['max']} | {measured} |")
    lines += ["", *(f"- {note}" for note in p["notes"])]
    lines += [
        "",
        "The reward rule's attackers (free rider, stale, noise, inflater, Sybils, copycats under "
        "the `current` and `aggregate` references) are measured by `bench.incentives` "
        "(bench/results/incentives.md), not here.",
    ]
    long = report.get("long_runs", [])
    if long:
        lines += [
            "",
            "Honest clients over a long run (no attacker), direction guard at "
            f"{MIN_ALIGNMENT_BPS} bps:",
            "",
            "| shards | clients x rounds | left out by the guard | lowest alignment (round) "
            "| alignment median, last round | weights the step left alone, last round "
            "| accuracy guard off | guard on |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
    for run in long:
        alignment = run["honest_alignment"]
        lowest = min(alignment, key=lambda r: r["min"])
        shards = "IID" if run["alpha"] is None else f"Dirichlet({run['alpha']})"
        lines.append(
            f"| {shards} | {run['clients']} x {run['rounds']} | "
            f"{run['honest_submissions_left_out']} of {run['clients'] * (run['rounds'] - 1)} | "
            f"{lowest['min']:+.3f} ({lowest['round']}) | {alignment[-1]['median']:+.3f} | "
            f"{alignment[-1]['weights_step_left_alone']} of {p['clean']['num_weights']} | "
            + (
                f"{pct(run['final_accuracy_guard_off'])}"
                if run.get("guard_off_run", True)
                else "not run (none left out)"
            )
            + f" | {pct(run['final_accuracy_guard_on'])} |"
        )
    if long:
        lines.append("")
    for run in long:
        alignment = run["honest_alignment"]
        shards = "IID" if run["alpha"] is None else f"Dirichlet({run['alpha']})"
        lowest = min(r["min"] for r in alignment)
        lines.append(
            f"- {shards}: the lowest honest alignment went from {alignment[0]['min']:+.3f} "
            f"(round {alignment[0]['round']}) to {alignment[-1]['min']:+.3f} (round "
            f"{alignment[-1]['round']}) as the steps got smaller and noisier; the guard at "
            f"{MIN_ALIGNMENT_BPS} bps left {run['honest_submissions_left_out']} honest "
            f"submissions out, with a margin of {lowest:+.3f} at worst"
            + (
                " (nobody left out: without the guard the same updates are averaged)."
                if not run.get("guard_off_run", True)
                else " (the models with and without the guard are the same)."
                if run["same_models"]
                else " (the models with and without the guard differ)."
            )
        )
    gas = report.get("commit_reveal_gas")
    if gas:
        lines += [
            "",
            f"Commit-reveal gas, {gas['weights']:,} weights, {gas['clients']} clients, round "
            f"{gas['round']} (medians of each client's own transactions; closes sent by an account "
            "that takes no part):",
            "",
            "| direct submit | commit | reveal | commit + reveal | extra per client "
            "| closes, direct | closes, commit-reveal | round, direct | round, commit-reveal "
            "| gas / weight / client, direct | commit-reveal |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {gas['direct_submit_gas']:,} | {gas['commit_gas']:,} | {gas['reveal_gas']:,} | "
            f"{gas['commit_plus_reveal_gas']:,} | "
            f"{gas['extra_gas_per_client']:+,} ({gas['extra_percent']:+.1f} %) | "
            f"{gas['closes_gas_direct']:,} | {gas['closes_gas_commit_reveal']:,} | "
            f"{gas['round_total_direct']:,} | {gas['round_total_commit_reveal']:,} | "
            f"{gas['gas_per_weight_per_client_direct']} | "
            f"{gas['gas_per_weight_per_client_commit_reveal']} |",
            "",
            f"Besides gas: {gas['note']}.",
        ]
    lines += [
        "",
        f"Wall time {report['seconds'] / 60:.1f} min. "
        + machine_note(report["machine"])
        + " Accuracies and gas do not depend on the load.",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each poisoning run")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--attackers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--long-rounds", type=int, default=20, help="rounds of the long runs")
    parser.add_argument("--skip-long", action="store_true", help="leave out the long honest runs")
    parser.add_argument(
        "--skip-gas", action="store_true", help="leave out the 7,850-weight gas part"
    )
    parser.add_argument(
        "--quick", action="store_true", help="3 poisoning rounds, 6 long rounds (a smoke run)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite adversaries.md from the adversaries.json in --out; run nothing",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.long_rounds = 3, 6
    if args.rounds < 2 or args.long_rounds < 2:
        parser.error("--rounds and --long-rounds need at least 2 (round 1 has no step)")
    if not 0 <= args.attackers < args.clients:
        parser.error("--attackers must leave at least one honest client")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and write its results; exit 1 when a bar is missed."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(arguments)
    if args.render_only:
        stored = json.loads((args.out / "adversaries.json").read_text(encoding="utf-8"))
        text = markdown(stored)
        (args.out / "adversaries.md").write_text(text, encoding="utf-8")
        print(text)
        return 0
    watch = Stopwatch()
    fl = load_config().fl.with_overrides(dataset=DATASET, seed=args.seed)

    def log(message: str) -> None:
        print(f"[{watch():6.1f} s] {message}", flush=True)

    report: dict[str, Any] = {
        "command": command_line(MODULE, arguments),
        "machine": machine(),
        "contracts": contracts_fingerprint(),
        "chain": "anvil, instant mining",
        "settings": {
            "rounds": args.rounds,
            "clients": args.clients,
            "attackers": args.attackers,
            "seed": args.seed,
            "long_rounds": None if args.skip_long else args.long_rounds,
            "gas": not args.skip_gas,
            "quick": args.quick,
        },
    }
    with anvil_node(accounts=max(20, args.clients + 2)) as node:
        chain = connect("anvil", url=node.url)
        poisoned = poisoning(
            chain, fl, rounds=args.rounds, clients=args.clients, attackers=args.attackers, log=log
        )
        report["poisoning"] = {**poisoned, "notes": notes(poisoned)}
        if not args.skip_long:
            report["long_runs"] = long_runs(
                chain, fl, rounds=args.long_rounds, clients=args.clients, log=log
            )
        if not args.skip_gas:
            report["commit_reveal_gas"] = commit_reveal_gas(
                chain, fl, clients=args.clients, seed=args.seed, log=log
            )
    report["contracts_changed_during_run"] = contracts_fingerprint() != report["contracts"]
    report["machine"]["load_average_at_end"] = list(os.getloadavg())
    report["seconds"] = round(watch(), 1)
    write_json("adversaries", report, args.out / "adversaries.json")
    text = markdown(report)
    (args.out / "adversaries.md").write_text(text, encoding="utf-8")
    print(text)
    attacks_ok = all(
        a["within_bar_all"] and a["within_bar_bound_guard"] for a in report["poisoning"]["attacks"]
    )
    honest_ok = all(r["honest_submissions_left_out"] == 0 for r in report.get("long_runs", []))
    return 0 if attacks_ok and honest_ok else 1


if __name__ == "__main__":
    sys.exit(main())
