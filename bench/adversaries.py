"""Adversaries benchmark: the poisoning defences on digits, the attackers of the reward rule,
honest clients under the direction guard over a long run, and the gas price of commit-reveal.

Run: ``.venv/bin/python -m bench.adversaries`` (10 to 16 minutes on a loaded 2-core machine;
``--quick``: 3 poisoning and reward rounds and 6 long rounds; ``--skip-rewards`` leaves out the
reward-rule strategies (``--strategies`` picks some), ``--skip-long`` the long honest runs,
``--skip-gas`` the 7,850-weight gas part; ``--render-only`` rewrites the table from the JSON).
Writes ``bench/results/adversaries.json`` and
``bench/results/adversaries.md`` (the tables the README quotes); exits 1 when an attack moves the
final accuracy of the fully defended run more than the bar from the clean run, or the guard leaves
an honest client out in the long runs. The reward-rule bar is recorded, not enforced by the exit
status (``bench.incentives`` is the incentive issue's benchmark, on MNIST 5k).

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

``maxShareBps`` (a cap on one update's share of a round's weight) caps sample-weighted shares
only; under the plain mean every counted update already weighs the same, so it cannot change
these runs (the reward-rule part below runs sample-weighted). Every threshold is set from the
clean run (no attacker, no defence), never from an attack: the bound is the smallest multiple of
the tier step (32 quanta per weight, the first per-weight threshold of ``brownie-config.yaml``) at
or above 1.5 x the largest honest per-weight L1 distance; ``maxStep`` is 1.5 x the largest
per-weight step of the clean model, ``maxDrift`` 1.5 x its largest per-weight drift from the
initial model, ``driftWindow`` the number of rounds (the checkpoint is the initial model for the
whole run). The clean run is repeated with each set of defences, to show what they cost honest
clients. The bar: with the defences, the final accuracy stays within 2 percentage points of the
clean run.

The reward rule: the same 10 clients and rounds, sample-weighted FedAvg (``maxSampleCount``
65,535) and the configured tiers; one strategy replaces the last client (the Sybils the last
three): a free rider at exactly the guard distance (:class:`FreeRider`), a stale-model
resubmitter, a noise submitter of honest size, a sample-count inflater (trains, declares 65,535),
three Sybils pushing one direction, a copycat in plain mode (its victim's words of the same round,
as a node's pool shows them) and one in commit-reveal mode (it can copy only the previous round's
reveals). Each runs under four settings: the reward reference ``current`` (the seed paper's rule)
and ``aggregate``, each with the free-rider guard alone and with every defence (the bound, the
direction guard, an equal-share cap, the step bounds), beside a clean run of the same settings.
The guard is 0.9 x the smallest honest distance of a pilot run (ten honest clients, nothing on);
the other thresholds follow the poisoning rules on the pilot. Recorded: each strategy's reward
relative to the honest clients' mean (in total and per round), whether it was counted, the final
accuracy against the clean run, and the bar of the incentive issue (a strategy that does not
train earns strictly less than honest training in total and in every round after the first; the
inflater not more; the accuracy within 1 pp).

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

Wall times depend on the machine and its load (the committed figures were taken on a loaded
2-core machine and will be re-measured on a quiet one); accuracies, distances and gas do not.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from web3.contract import Contract

from bench.common import (
    RESULTS,
    Stopwatch,
    anvil_node,
    command_line,
    contracts_fingerprint,
    machine,
    write_json,
)
from fl_client.aggregation import directional_l1, step_signs
from fl_client.chain import Chain, DeployParams, connect, deploy, read_model_words, read_round
from fl_client.client_secret import simulation_secret
from fl_client.codec import dequantize, encode, quantize, unpack
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
# The reward rule.
STRATEGIES = (
    "free_rider",
    "stale",
    "noise",
    "inflater",
    "sybils",
    "copycat",
    "copycat_commit_reveal",
)
TRAINING = frozenset({"inflater"})  # trains: the bar asks only that it is not paid more
# The bar of the recommended settings covers every strategy but the same-round copycat of plain
# mode: its words are its victim's, so no rule on the words can pay it less (commit-reveal can).
BARRED = frozenset(STRATEGIES) - {"copycat"}
RECOMMENDED = "aggregate + defences"
MAX_SAMPLES = 65_535  # maxSampleCount: the most a client may declare, what the inflater declares
SYBILS = 3
GUARD_FRACTION = 0.9
REWARD_BAR_PP = 1.0

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


@dataclass(frozen=True)
class Defences:
    """The contract settings of one column (distances over the whole model, in quanta)."""

    name: str
    max_counted_distance: int = 0
    min_alignment_bps: int = ALIGNMENT_OFF
    max_step: int = 0
    max_drift: int = 0
    drift_window: int = 0
    min_reward_distance: int = 0
    max_share_bps: int = 0
    reward_reference: str = "current"
    aggregation: str = "mean"
    mode: str = "plain"

    def describe(self) -> dict[str, int | str]:
        """The settings as the contract takes them."""
        return {
            "maxCountedDistance": self.max_counted_distance,
            "minAlignment": self.min_alignment_bps,
            "maxStep": self.max_step,
            "maxDrift": self.max_drift,
            "driftWindow": self.drift_window,
            "minRewardDistance": self.min_reward_distance,
            "maxShareBps": self.max_share_bps,
            "rewardReference": self.reward_reference,
            "aggregation": self.aggregation,
            "mode": self.mode,
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
        min_reward_distance=defences.min_reward_distance,
        max_share_bps=defences.max_share_bps,
        reward_reference=defences.reward_reference,
        aggregation=defences.aggregation,
        mode=defences.mode,
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


RoundHook = Callable[[int, Sequence[RoundOutcome]], None]


def run_federation(
    ctx: Context,
    defences: Defences,
    *,
    rounds: int,
    attackers: Sequence[int] = (),
    k: float = 1.0,
    replaced: dict[int, tuple[str, LocalTrainer]] | None = None,
    after_round: RoundHook | None = None,
) -> dict[str, Any]:
    """Play ``rounds`` rounds on a fresh coordinator; ``attackers`` submit the ``k``-scaled step,
    and each client in ``replaced`` is played by its (role, trainer) instead; ``after_round``
    sees each round's outcomes once it closed."""
    watch = Stopwatch()
    chain = ctx.chain
    contract = deploy_with(ctx, defences)
    trainers: list[LocalTrainer] = [
        Attacker(t, k) if i in attackers else t for i, t in enumerate(ctx.trainers)
    ]
    roles = ["attacker" if i in attackers else "honest" for i in range(len(trainers))]
    for client, (role, trainer) in (replaced or {}).items():
        roles[client], trainers[client] = role, trainer
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
            _member(o, roles[o.client_id], before, after, step, logged["accepted"], guard_on)
            for o in sorted(outcomes, key=lambda o: o.client_id)
        ]
        if after_round is not None:
            after_round(round_number, outcomes)
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
        if not np.array_equal(after, before):
            step = step_signs(before, after)
        models.append(after)
    if read_round(contract).number != rounds + 1:
        raise ChainError("the run ended with the wrong round open")
    return summarize(records, models, ctx.num_weights, watch())


def _member(
    outcome: RoundOutcome,
    role: str,
    before: np.ndarray,
    after: np.ndarray,
    step: np.ndarray | None,
    accepted: dict[str, Any],
    guard_on: bool,
) -> dict[str, Any]:
    """One client's round: what the chain settled, with the alignment and the L1 distances from
    the model it trained on and from the round's new model recomputed from its words (the
    alignment held to the chain's figures when the guard measured them)."""
    update = unpack(list(outcome.words), before.size)
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
        "distance_current": int(np.abs(update - before).sum()),
        "distance_new": int(np.abs(update - after).sum()),
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


# ---------------------------------------------------------------- the reward rule


class CraftedUpdate:
    """What the crafted (non-training) strategies share: the fixed-point format, the model's size,
    the sample count they declare (the client's they replace) and the global model of the last
    round they played (a client reads every global model: it needs it to take part)."""

    def __init__(self, *, fmt: FixedPointFormat, num_weights: int, sample_count: int) -> None:
        self.fmt = fmt
        self._num_weights = num_weights
        self._sample_count = sample_count
        self.previous: np.ndarray | None = None

    @property
    def num_samples(self) -> int:
        """The declared sample count."""
        return self._sample_count

    @property
    def num_weights(self) -> int:
        """Length of the flat parameter vector."""
        return self._num_weights

    def fit(self, global_weights: np.ndarray, *, round_number: int) -> FitResult:
        """The crafted update, as float weights that quantize to it exactly."""
        current = quantize(global_weights, self.fmt).values
        update = self.craft(current, round_number)
        self.previous = current
        return FitResult(dequantize(update, self.fmt), math.nan)

    def craft(self, current: np.ndarray, round_number: int) -> np.ndarray:
        """The quantized update sent when ``current`` is the global model."""
        raise NotImplementedError


class FreeRider(CraftedUpdate):
    """The global model with exactly ``guard`` quanta moved the way the last global step went (one
    quantum per moved weight, largest moves first, round after round over them while quanta are
    left): its distance is the free-rider guard's threshold, which the guard's strict ``<``
    lets through, and every quantum lies along the last step. Round 1 has no step: it moves the
    first weights up."""

    def __init__(
        self, *, guard: int, fmt: FixedPointFormat, num_weights: int, sample_count: int
    ) -> None:
        super().__init__(fmt=fmt, num_weights=num_weights, sample_count=sample_count)
        self.guard = guard

    def craft(self, current: np.ndarray, round_number: int) -> np.ndarray:
        update = current.copy()
        if self.previous is None or not np.any(current != self.previous):
            direction = np.ones_like(current)
            order = np.arange(current.size)
        else:
            moved = current - self.previous
            direction = np.sign(moved)
            order = np.argsort(-np.abs(moved), kind="stable")
            order = order[moved[order] != 0]
        left = self.guard
        while left > 0:
            room = np.abs(update[order] + direction[order]) <= self.fmt.max_abs
            usable = order[room][:left]
            if usable.size == 0:
                break
            update[usable] += direction[usable]
            left -= int(usable.size)
        return update


class StaleModel(CraftedUpdate):
    """Sends the previous round's global model (in round 1 the current one: it has no other)."""

    def craft(self, current: np.ndarray, round_number: int) -> np.ndarray:
        return current.copy() if self.previous is None else self.previous.copy()


def exact_l1(direction: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Integers along ``direction`` whose L1 norm is exactly ``size``: the scaled direction
    rounded, then single quanta added (away from zero) or taken on random entries until the norm
    matches."""
    total = float(np.abs(direction).sum())
    if total == 0 or size <= 0:
        return np.zeros(direction.size, dtype=np.int64)
    values = np.rint(direction * (size / total)).astype(np.int64)
    signs = np.where(direction >= 0, 1, -1).astype(np.int64)
    gap = size - int(np.abs(values).sum())
    while gap != 0:
        picks = rng.choice(direction.size, size=min(abs(gap), direction.size), replace=False)
        if gap > 0:
            values[picks] += np.where(values[picks] == 0, signs[picks], np.sign(values[picks]))
            gap -= int(picks.size)
        else:
            picks = picks[values[picks] != 0]
            values[picks] -= np.sign(values[picks])
            gap += int(picks.size)
    return values


SizeOracle = Callable[[int], int]  # round -> a typical honest update's L1 distance, in quanta


class NoiseSubmitter(CraftedUpdate):
    """The global model plus Gaussian noise whose L1 norm is ``size(round)``, a typical honest
    update's distance (clipped to the weights' range)."""

    def __init__(
        self,
        *,
        size: SizeOracle,
        seed: int,
        fmt: FixedPointFormat,
        num_weights: int,
        sample_count: int,
    ) -> None:
        super().__init__(fmt=fmt, num_weights=num_weights, sample_count=sample_count)
        self.size = size
        self.seed = seed

    def craft(self, current: np.ndarray, round_number: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, round_number])
        noise = exact_l1(rng.standard_normal(current.size), self.size(round_number), rng)
        return np.asarray(np.clip(current + noise, -self.fmt.max_abs, self.fmt.max_abs))


def push_direction(num_weights: int, num_classes: int) -> np.ndarray:
    """The Sybils' direction in a linear layer's layout (``classes x features`` weights row by
    row, then the biases): +1 on class 0's weights and bias, ``-1 / (classes - 1)`` on the
    others', so that the model scores class 0 higher on every input."""
    features = num_weights // num_classes - 1
    direction = np.full(num_weights, -1.0 / (num_classes - 1))
    direction[:features] = 1.0
    direction[num_classes * features] = 1.0
    return direction


class Sybil(CraftedUpdate):
    """One of colluding accounts that all send the global model plus the same fixed
    ``direction`` scaled to ``size(round)``, a typical honest update's distance."""

    def __init__(
        self,
        *,
        direction: np.ndarray,
        size: SizeOracle,
        fmt: FixedPointFormat,
        num_weights: int,
        sample_count: int,
    ) -> None:
        super().__init__(fmt=fmt, num_weights=num_weights, sample_count=sample_count)
        self.direction = direction
        self.size = size

    def craft(self, current: np.ndarray, round_number: int) -> np.ndarray:
        rng = np.random.default_rng([0x5B1, round_number])  # the group's shared stream
        move = exact_l1(self.direction, self.size(round_number), rng)
        return np.asarray(np.clip(current + move, -self.fmt.max_abs, self.fmt.max_abs))


class SampleInflater:
    """Trains honestly (``trainer``) but declares ``declared`` samples."""

    def __init__(self, trainer: LocalTrainer, declared: int) -> None:
        self.trainer = trainer
        self.declared = declared

    @property
    def num_samples(self) -> int:
        """The inflated count."""
        return self.declared

    @property
    def num_weights(self) -> int:
        """Length of the flat parameter vector."""
        return self.trainer.num_weights

    def fit(self, global_weights: np.ndarray, *, round_number: int) -> FitResult:
        """Honest training."""
        return self.trainer.fit(global_weights, round_number=round_number)


class Recorded:
    """An honest trainer whose results are kept by round: what a copycat reads of its victim's
    transaction (its words are public calldata as soon as it is sent)."""

    def __init__(self, trainer: LocalTrainer) -> None:
        self.trainer = trainer
        self.fits: dict[int, FitResult] = {}

    @property
    def num_samples(self) -> int:
        """The honest sample count."""
        return self.trainer.num_samples

    @property
    def num_weights(self) -> int:
        """Length of the flat parameter vector."""
        return self.trainer.num_weights

    def fit(self, global_weights: np.ndarray, *, round_number: int) -> FitResult:
        """Honest training, kept."""
        self.fits[round_number] = self.trainer.fit(global_weights, round_number=round_number)
        return self.fits[round_number]


class SameRoundCopycat:
    """In plain mode: sends, in the same round, a copy of ``victim``'s update and sample count.
    The federation asks participants for their transactions in client order and the victim comes
    first, so its update is there to copy (as its transaction would be in a node's pool); should
    it not be, the copycat recomputes it (training is deterministic per client and round)."""

    def __init__(self, victim: Recorded) -> None:
        self.victim = victim

    @property
    def num_samples(self) -> int:
        """The victim's sample count."""
        return self.victim.num_samples

    @property
    def num_weights(self) -> int:
        """Length of the flat parameter vector."""
        return self.victim.num_weights

    def fit(self, global_weights: np.ndarray, *, round_number: int) -> FitResult:
        """The victim's update of this round."""
        copied = self.victim.fits.get(round_number)
        if copied is None:
            copied = self.victim.trainer.fit(global_weights, round_number=round_number)
        return FitResult(copied.weights.copy(), math.nan)


@dataclass
class PublicBoard:
    """What commit-reveal rounds made public: each revealed update and what it was paid, by round
    (posted once the round closed)."""

    revealed: dict[int, list[tuple[int, np.ndarray]]] = field(default_factory=dict)

    def post(self, round_number: int, outcomes: Sequence[RoundOutcome], num_weights: int) -> None:
        """Record ``round_number``'s revealed updates and rewards."""
        self.revealed[round_number] = [
            (o.reward_wei, unpack(list(o.words), num_weights)) for o in outcomes
        ]

    def best_of(self, round_number: int) -> np.ndarray | None:
        """The update revealed in ``round_number`` that was paid most (the first of them)."""
        entries = self.revealed.get(round_number, [])
        if not entries:
            return None
        best = max(reward for reward, _ in entries)
        return next(update for reward, update in entries if reward == best)


class RevealCopycat(CraftedUpdate):
    """A copycat in commit-reveal mode: it commits before the round's reveals open, so it can copy
    only what was revealed already, the previous round's updates: it sends the best-paid one. In
    round 1 nothing is public yet: it sends the global model."""

    def __init__(
        self, *, board: PublicBoard, fmt: FixedPointFormat, num_weights: int, sample_count: int
    ) -> None:
        super().__init__(fmt=fmt, num_weights=num_weights, sample_count=sample_count)
        self.board = board

    def craft(self, current: np.ndarray, round_number: int) -> np.ndarray:
        copied = self.board.best_of(round_number - 1)
        return current.copy() if copied is None else copied.copy()


@dataclass(frozen=True)
class RewardCalibration:
    """The reward-rule settings, from the pilot (ten honest clients, sample-weighted, nothing on)."""

    guard: int  # minRewardDistance
    sizes: tuple[int, ...]  # per round: the median honest distance from the current model
    defences: Calibration  # the bound, maxStep, maxDrift, from the same pilot

    def size(self, round_number: int) -> int:
        """A typical honest update's L1 distance in ``round_number`` (the last known after)."""
        return self.sizes[min(round_number, len(self.sizes)) - 1]

    def columns(self, clients: int) -> list[Defences]:
        """The four settings: each reward reference with the free-rider guard alone, and with
        every defence (the bound, the direction guard, the share cap, the step bounds)."""

        def column(name: str, reference: str, defended: bool) -> Defences:
            plain = Defences(
                name,
                min_reward_distance=self.guard,
                aggregation="sample_weighted",
                reward_reference=reference,
            )
            if not defended:
                return plain
            return replace(
                plain,
                max_counted_distance=self.defences.max_counted_distance,
                min_alignment_bps=MIN_ALIGNMENT_BPS,
                max_share_bps=10_000 // clients,
                max_step=self.defences.max_step,
                max_drift=self.defences.max_drift,
                drift_window=self.defences.drift_window,
            )

        return [
            column("current", "current", False),
            column("current + defences", "current", True),
            column("aggregate", "aggregate", False),
            column(RECOMMENDED, "aggregate", True),
        ]


def calibrate_rewards(pilot: dict[str, Any], *, tier_step: int, rounds: int) -> RewardCalibration:
    """The free-rider guard: ``GUARD_FRACTION`` of the smallest honest distance of the pilot, from
    the model the update trained on or from the round's new one (so that every honest update
    passes it under either reference); the typical honest size per round; the poisoning
    section's rules for the bound and the step bounds."""
    honest = [m for r in pilot["rounds"] for m in r["members"] if m["role"] == "honest"]
    nearest = min(min(m["distance_current"], m["distance_new"]) for m in honest)
    sizes = tuple(
        int(statistics.median(m["distance_current"] for m in r["members"])) for r in pilot["rounds"]
    )
    return RewardCalibration(
        guard=int(GUARD_FRACTION * nearest),
        sizes=sizes,
        defences=calibrate(pilot, tier_step=tier_step, rounds=rounds),
    )


def strategy_players(
    name: str, ctx: Context, calibration: RewardCalibration, board: PublicBoard
) -> dict[int, tuple[str, LocalTrainer]]:
    """Who plays ``name``: the last client (the Sybils: the last ``SYBILS``) in its place."""
    last = len(ctx.trainers) - 1
    fmt, size, count = ctx.fl.fixed_point, ctx.num_weights, ctx.trainers[last].num_samples
    if name == "free_rider":
        rider = FreeRider(guard=calibration.guard, fmt=fmt, num_weights=size, sample_count=count)
        return {last: (name, rider)}
    if name == "stale":
        return {last: (name, StaleModel(fmt=fmt, num_weights=size, sample_count=count))}
    if name == "noise":
        noise = NoiseSubmitter(
            size=calibration.size, seed=ctx.fl.seed, fmt=fmt, num_weights=size, sample_count=count
        )
        return {last: (name, noise)}
    if name == "inflater":
        return {last: (name, SampleInflater(ctx.trainers[last], MAX_SAMPLES))}
    if name == "sybils":
        model = ctx.task.model(seed=ctx.fl.seed)
        if not isinstance(model, torch.nn.Linear):
            raise ValueError("the Sybils' direction is laid out for softmax regression")
        direction = push_direction(ctx.num_weights, int(model.out_features))
        return {
            client: (
                name,
                Sybil(
                    direction=direction,
                    size=calibration.size,
                    fmt=ctx.fl.fixed_point,
                    num_weights=ctx.num_weights,
                    sample_count=ctx.trainers[client].num_samples,
                ),
            )
            for client in range(last - SYBILS + 1, last + 1)
        }
    if name == "copycat":
        victim = Recorded(ctx.trainers[0])
        return {0: ("honest", victim), last: (name, SameRoundCopycat(victim))}
    if name == "copycat_commit_reveal":
        copycat = RevealCopycat(board=board, fmt=fmt, num_weights=size, sample_count=count)
        return {last: (name, copycat)}
    raise ValueError(f"unknown strategy {name!r}")


def reward_table(
    run: dict[str, Any], strategy: str, own_clean: Sequence[int] | None = None
) -> dict[str, Any]:
    """Per round and in total: what ``strategy``'s accounts earned (their mean) against honest
    training, whether they were counted, and the bar (strictly less for a strategy that does not
    train, not more for one that does, in total and in every round after the first).

    Honest training is the honest clients' mean reward in the same run; for a strategy that
    trains (the inflater), given ``own_clean``, it is what the same client earned by round in
    the clean run of the same settings (it trains the same data: the question is only whether
    inflating pays more, and honest clients' rewards spread around their mean)."""
    rows = []
    trains = strategy in TRAINING
    for r in run["rounds"]:
        honest = [m["reward_wei"] for m in r["members"] if m["role"] == "honest"]
        played = [m for m in r["members"] if m["role"] == strategy]
        earned = statistics.mean(m["reward_wei"] for m in played)
        mean = statistics.mean(honest)
        reference = own_clean[r["round"] - 1] if trains and own_clean is not None else mean
        rows.append(
            {
                "round": r["round"],
                "strategy_wei": earned,
                "honest_mean_wei": mean,
                "reference_wei": reference,
                "relative": None if reference == 0 else round(earned / reference, 3),
                "counted": sum(m["counted"] for m in played),
                "accounts": len(played),
                "distance_current": [m["distance_current"] for m in played],
                "distance_new": [m["distance_new"] for m in played],
            }
        )
    earned = sum(r["strategy_wei"] for r in rows)
    honest_total = sum(r["reference_wei"] for r in rows)

    def passes(mine: float, theirs: float) -> bool:
        return mine <= theirs if trains else mine < theirs

    later = rows[1:]
    return {
        "rounds": rows,
        "reference": (
            "the same client's reward in the clean run"
            if trains and own_clean is not None
            else "the honest clients' mean reward in the same run"
        ),
        "strategy_total_wei": earned,
        "honest_mean_total_wei": sum(r["honest_mean_wei"] for r in rows),
        "reference_total_wei": honest_total,
        "relative_total": None if honest_total == 0 else round(earned / honest_total, 3),
        "counted": sum(r["counted"] for r in rows),
        "submissions": sum(r["accounts"] for r in rows),
        "rounds_honest_unpaid": [r["round"] for r in rows if r["honest_mean_wei"] == 0],
        "bar_total": passes(earned, honest_total),
        "bar_every_round_after_first": all(
            passes(r["strategy_wei"], r["reference_wei"]) for r in later
        ),
    }


def reward_rule(
    chain: Chain,
    fl: FLConfig,
    *,
    rounds: int,
    clients: int,
    strategies: Sequence[str],
    log: Log,
) -> dict[str, Any]:
    """The pilot, then per setting a clean run and one run per strategy."""
    ctx = make_context(chain, fl, clients, "iid")
    pilot_defences = Defences("pilot", aggregation="sample_weighted")
    pilot = run_federation(ctx, pilot_defences, rounds=rounds)
    log(f"rewards pilot: accuracy {pilot['accuracy_by_round']} ({pilot['seconds']} s)")
    calibration = calibrate_rewards(
        pilot, tier_step=fl.rewards.thresholds_per_weight[0], rounds=rounds
    )
    columns = calibration.columns(clients)
    clean: dict[str, dict[str, Any]] = {}
    runs: dict[str, dict[str, Any]] = {name: {} for name in strategies}
    for column in columns:
        result = run_federation(ctx, column, rounds=rounds)
        clean[column.name] = {
            "final_accuracy": result["final_accuracy"],
            "accuracy_by_round": result["accuracy_by_round"],
            "honest_submissions_excluded": result["honest_submissions_excluded"],
            "honest_mean_reward_wei": sum(
                statistics.mean(m["reward_wei"] for m in r["members"]) for r in result["rounds"]
            ),
            "weights_clamped": result["weights_clamped"],
            "rewards_by_round": [
                [m["reward_wei"] for m in sorted(r["members"], key=lambda m: m["client"])]
                for r in result["rounds"]
            ],
            "seconds": result["seconds"],
        }
        log(f"rewards clean, {column.name}: accuracy {result['accuracy_by_round']}")
        for name in strategies:
            board = PublicBoard()
            settings = replace(column, mode="commit_reveal") if name.endswith("reveal") else column

            def post(
                number: int, outcomes: Sequence[RoundOutcome], board: PublicBoard = board
            ) -> None:
                board.post(number, outcomes, ctx.num_weights)

            result = run_federation(
                ctx,
                settings,
                rounds=rounds,
                replaced=strategy_players(name, ctx, calibration, board),
                after_round=post,
            )
            last = clients - 1
            own = [r[last] for r in clean[column.name]["rewards_by_round"]]
            table = reward_table(result, name, own)
            gap = round(100 * (result["final_accuracy"] - clean[column.name]["final_accuracy"]), 2)
            runs[name][column.name] = {
                **table,
                "mode": settings.mode,
                "final_accuracy": result["final_accuracy"],
                "gap_pp": gap,
                "within_accuracy_bar": abs(gap) <= REWARD_BAR_PP,
                "honest_submissions_excluded": result["honest_submissions_excluded"],
                "weights_clamped": result["weights_clamped"],
                "seconds": result["seconds"],
            }
            log(
                f"rewards {name}, {column.name}: relative {table['relative_total']}, counted "
                f"{table['counted']}/{table['submissions']}, gap {gap:+.1f} pp "
                f"({result['seconds']} s)"
            )
    recommended = {name: runs[name][RECOMMENDED] for name in strategies}
    barred = [name for name in strategies if name in BARRED]
    return {
        "dataset": fl.dataset,
        "clients": clients,
        "rounds": rounds,
        "strategies": list(strategies),
        "aggregation": "sample_weighted",
        "max_sample_count": MAX_SAMPLES,
        "tiers": {
            "thresholds_per_weight": list(fl.rewards.thresholds_per_weight),
            "amounts_wei": list(fl.rewards.amounts_wei),
        },
        "calibration": {
            "minRewardDistance": calibration.guard,
            "guard_per_weight": round(calibration.guard / ctx.num_weights, 2),
            "honest_size_per_round": list(calibration.sizes),
            "maxCountedDistance": calibration.defences.max_counted_distance,
            "maxStep": calibration.defences.max_step,
            "maxDrift": calibration.defences.max_drift,
            "driftWindow": calibration.defences.drift_window,
            "maxShareBps": 10_000 // clients,
            "minAlignment": MIN_ALIGNMENT_BPS,
            "rule": (
                f"minRewardDistance: {GUARD_FRACTION} x the smallest honest distance of the pilot "
                "(from the model trained on or from the new model); maxCountedDistance, maxStep, "
                "maxDrift: the poisoning section's rules applied to the pilot; maxShareBps: an "
                "equal share (10000 / clients)"
            ),
        },
        "columns": {c.name: c.describe() for c in columns},
        "pilot_accuracy_by_round": pilot["accuracy_by_round"],
        "clean": clean,
        "runs": runs,
        "recommended": RECOMMENDED,
        "bar_pp": REWARD_BAR_PP,
        "barred_strategies": barred,
        "recommended_meets_bar": all(
            recommended[n]["bar_total"]
            and recommended[n]["bar_every_round_after_first"]
            and recommended[n]["within_accuracy_bar"]
            for n in barred
        ),
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


def _relative(value: float | None, earned: float) -> str:
    """A relative reward: ``-`` for 0/0, ``inf`` when only the strategy was paid."""
    if value is None:
        return "-" if earned == 0 else "inf"
    return f"{value:.2f}"


def reward_markdown(p: dict[str, Any]) -> list[str]:
    """The reward-rule tables."""
    c = p["calibration"]
    names = list(p["columns"])
    thresholds = ", ".join(f"{t}" for t in p["tiers"]["thresholds_per_weight"])
    amounts = ", ".join(f"{a / 1e15:g}" for a in p["tiers"]["amounts_wei"])
    lines = [
        "",
        "### The reward rule",
        "",
        f"{p['clients']} IID clients, {p['rounds']} rounds on {p['dataset']}, sample-weighted "
        f"FedAvg (maxSampleCount {p['max_sample_count']:,}); the configured tiers ({thresholds} "
        f"quanta per weight; {amounts} x 1e15 wei). Each strategy replaces the last client (the "
        f"Sybils the last {SYBILS}); the others train honestly. Settings from a pilot run (ten "
        f"honest clients, nothing on): minRewardDistance = {c['minRewardDistance']:,} "
        f"({c['guard_per_weight']} per weight; {c['rule']}); the defences: maxCountedDistance = "
        f"{c['maxCountedDistance']:,}, minAlignment = {c['minAlignment']} bps, maxShareBps = "
        f"{c['maxShareBps']}, maxStep = {c['maxStep']}, maxDrift = {c['maxDrift']} over "
        f"{c['driftWindow']} rounds. Reference `current`: distance from the model at submit "
        "time, paid on submit (the seed paper's rule); `aggregate`: distance from the round's new "
        "model, paid by the close.",
        "",
        "Strategies: free rider (the global model with exactly minRewardDistance quanta moved along "
        "the last step), stale (the previous global model), noise (the global model plus Gaussian "
        "noise of a typical honest update's L1 size), inflater (trains, declares "
        f"{p['max_sample_count']:,} samples), Sybils ({SYBILS} accounts pushing class 0 by a "
        "typical honest size), copycat (plain mode: the same round's update of client 0, words and "
        "sample count, as its transaction shows them), copycat in commit-reveal mode (it must "
        "commit before reveals open: the previous round's best-paid reveal).",
        "",
        "Reward relative to honest training (the honest clients' mean in the same run; for the "
        "inflater, which trains, what the same client earned in the clean run of the same "
        "settings), in total over the run (`inf`: the strategy was paid and honest training was "
        "not; `-`: nobody was paid), the strategy's "
        "submissions counted, and the final accuracy's gap to the clean run of the same settings "
        "(pp):",
        "",
        "| strategy | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    clean = p["clean"]
    lines.append(
        "| clean (accuracy) | "
        + " | ".join(
            f"{pct(clean[n]['final_accuracy'])}, honest left out "
            f"{clean[n]['honest_submissions_excluded']}"
            for n in names
        )
        + " |"
    )
    for strategy in p["strategies"]:
        cells = []
        for n in names:
            r = p["runs"][strategy][n]
            cells.append(
                f"{_relative(r['relative_total'], r['strategy_total_wei'])} "
                f"({r['counted']}/{r['submissions']} counted, {r['gap_pp']:+.1f} pp)"
            )
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Per round after the first: the strategy's reward relative to honest training, round by "
        "round; and the bar (a strategy that does not train earns strictly less than honest "
        "training, in total and in every round after the first; the inflater, which trains, not "
        f"more; the final accuracy within {p['bar_pp']:g} pp of the clean run):",
        "",
        "| strategy | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for strategy in p["strategies"]:
        cells = []
        for n in names:
            r = p["runs"][strategy][n]
            series = ", ".join(_relative(x["relative"], x["strategy_wei"]) for x in r["rounds"][1:])
            met = r["bar_total"] and r["bar_every_round_after_first"] and r["within_accuracy_bar"]
            cells.append(f"{series}: {'meets' if met else '**misses**'}")
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    unpaid = {
        n: sorted({x for s in p["strategies"] for x in p["runs"][s][n]["rounds_honest_unpaid"]})
        for n in names
    }
    recommended = {n: p["runs"][n][p["recommended"]] for n in p["barred_strategies"]}
    met = [
        n
        for n, r in recommended.items()
        if r["bar_total"] and r["bar_every_round_after_first"] and r["within_accuracy_bar"]
    ]
    missed = [n for n in recommended if n not in met]
    lines += [
        "",
        f"With the recommended settings ({p['recommended']}): "
        + (f"meet the bar: {', '.join(met)}" if met else "no strategy meets the bar")
        + (f"; **miss it**: {', '.join(missed)}." if missed else "; every strategy meets it.")
        + " The same-round copycat of plain mode sends its victim's words: no rule on the words "
        "can pay it less than the victim; commit-reveal hides them until the commits close "
        "(the last row).",
    ]
    for n, rounds in unpaid.items():
        if rounds:
            lines.append(
                f"- {n}: in round(s) {', '.join(map(str, rounds))} of some run the honest clients "
                "earned nothing (their distance beyond the last tier, or below the guard)."
            )
    return lines


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
    if "reward_rule" in report:
        lines += reward_markdown(report["reward_rule"])
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
        f"Wall time {report['seconds'] / 60:.1f} min on {report['machine']['cpus']} cores "
        f"(load average {report['machine']['load_average_at_start'][0]:.1f} at the start): "
        "timings will be re-measured on a quiet machine; accuracies and gas do not depend on it.",
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
        "--skip-rewards", action="store_true", help="leave out the reward-rule strategies"
    )
    parser.add_argument(
        "--strategies",
        nargs="+",
        choices=STRATEGIES,
        default=list(STRATEGIES),
        help="the reward-rule strategies to run",
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
            "reward_strategies": None if args.skip_rewards else list(args.strategies),
            "quick": args.quick,
        },
    }
    with anvil_node(accounts=max(20, args.clients + 2)) as node:
        chain = connect("anvil", url=node.url)
        poisoned = poisoning(
            chain, fl, rounds=args.rounds, clients=args.clients, attackers=args.attackers, log=log
        )
        report["poisoning"] = {**poisoned, "notes": notes(poisoned)}
        if not args.skip_rewards:
            report["reward_rule"] = reward_rule(
                chain,
                fl,
                rounds=args.rounds,
                clients=args.clients,
                strategies=args.strategies,
                log=log,
            )
        if not args.skip_long:
            report["long_runs"] = long_runs(
                chain, fl, rounds=args.long_rounds, clients=args.clients, log=log
            )
        if not args.skip_gas:
            report["commit_reveal_gas"] = commit_reveal_gas(
                chain, fl, clients=args.clients, seed=args.seed, log=log
            )
    report["contracts_changed_during_run"] = contracts_fingerprint() != report["contracts"]
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
