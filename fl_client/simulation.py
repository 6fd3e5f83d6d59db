"""The main job: a whole federated run on the chain, beside the same run in plain PyTorch.

``run_simulation`` deploys a coordinator, creates N participants on N accounts (direct, relayed,
commit-reveal or masked, as configured), runs R rounds in one process and tests the on-chain
global model after every round. The model, the data, the training and the test come from the
configured task (:mod:`fl_client.tasks`: a built-in one, or the user's own). Beside it, the same
federated run without a chain (float FedAvg, same task, seeds, shards, initial model and
hyper-parameters) gives the accuracy the chain must match;
the run fails loudly (:class:`AccuracyMismatchError`) when the final accuracies differ by more
than the tolerance.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fl_client.aggregation import integer_average, trimmed_average
from fl_client.chain import Chain, DeployParams, connect, deploy, read_model_words, read_round
from fl_client.client_secret import simulation_secret
from fl_client.codec import dequantize, encode, unpack, vector_hash
from fl_client.config import FLConfig, ProjectConfig, load_config
from fl_client.errors import AccuracyMismatchError, ConfigError, PrivacyLedgerMismatchError
from fl_client.federated import run_task_federated
from fl_client.federation import Federation, Member
from fl_client.model import get_flat_parameters, set_flat_parameters
from fl_client.participant import RoundOutcome
from fl_client.privacy import LedgerCurve
from fl_client.privacy_setup import PrivacySetup, client_trainer, privacy_setup
from fl_client.tasks import DataSpec, LoadedTask, load_task
from fl_client.trainer import LocalTrainer
from fl_client.training import TrainConfig, select_clients

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[str], None]


@dataclass(frozen=True)
class RoundReport:
    """One row of the result table."""

    round_number: int
    accuracy_chain: float
    accuracy_plain: float
    loss_chain: float
    submissions: int
    relayed: int  # of them relayed
    gas_used: int  # every transaction of the round (submissions, relay, closes)
    rewards_by_tier: dict[str, int]  # tier label -> wei credited in this round
    submissions_by_tier: dict[str, int]
    clipped: int
    distances: tuple[int, ...]  # each submission's distance from the global model it trained on
    model_hash: str
    exact_average: bool  # the on-chain model equals the integer average of the counted vectors
    seconds: float
    epsilon: float | None = None  # DP: the largest client epsilon after this round (at delta)
    dp_clipped: int = 0  # DP: updates clipped to the clipping norm in this round

    @property
    def gap_pp(self) -> float:
        """Chain minus plain accuracy, in percentage points."""
        return 100.0 * (self.accuracy_chain - self.accuracy_plain)


@dataclass(frozen=True)
class SimulationResult:
    """Everything a run measured."""

    dataset: str  # the task's name: the built-in dataset, or a user task's NAME
    clients: int
    rounds: tuple[RoundReport, ...]
    initial_accuracy: float
    rewards_by_client: dict[str, int]  # account -> wei credited over the run
    contract_address: str
    deploy_gas: int
    num_weights: int
    num_segments: int
    tiers: int  # reward tiers of the deployment
    lane_bits: int = 0  # the contract's laneBits (secure aggregation's masked sums)
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def final_gap_pp(self) -> float:
        """Final chain minus plain accuracy, in percentage points."""
        return self.rounds[-1].gap_pp if self.rounds else 0.0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        data = asdict(self)
        data["final_gap_pp"] = self.final_gap_pp
        return data


def tier_label(tier: int) -> str:
    """The tier as the configuration lists it: ``T1`` is the first (largest) reward, ``none``
    when no tier applied (the contract reports tiers from 0, and 255 for none)."""
    return "none" if tier == 255 else f"T{tier + 1}"


def train_config(fl: FLConfig) -> TrainConfig:
    """The local-training settings of ``fl``."""
    return TrainConfig(
        epochs=fl.epochs,
        batch_size=fl.batch_size,
        learning_rate=fl.learning_rate,
        algorithm=fl.algorithm,
    )


def data_spec(fl: FLConfig) -> DataSpec:
    """How ``fl`` splits the data among its clients."""
    return DataSpec(
        num_clients=fl.clients,
        partition=fl.partition,
        dirichlet_alpha=fl.dirichlet_alpha,
        seed=fl.seed,
        test_fraction=fl.test_fraction,
    )


def task_of(fl: FLConfig) -> LoadedTask:
    """The task ``fl`` names (``task``, or the built-in task of ``dataset``), loaded and checked.

    Raises
    ------
    TaskError
        The task cannot be loaded or misses a piece.
    """
    return load_task(fl.task_reference, hidden_layers=fl.hidden_layers)


def run_simulation(
    fl: FLConfig | None = None,
    *,
    project: ProjectConfig | None = None,
    network: str = "embedded",
    chain: Chain | None = None,
    tolerance_pp: float = 1.0,
    check_accuracy: bool = True,
    progress: ProgressCallback | None = None,
    task: LoadedTask | None = None,
) -> SimulationResult:
    """Deploy, run ``fl.rounds`` rounds with ``fl.clients`` participants and test each round.

    ``task`` is the task to federate (by default the one ``fl`` names, :func:`task_of`).

    Raises
    ------
    ConfigError
        An impossible setting (too few accounts, secure aggregation with a fraction, a task that
        misses a piece, ...).
    AccuracyMismatchError
        When ``check_accuracy`` and the final chain and plain accuracies differ by more than
        ``tolerance_pp`` percentage points.
    """
    started = time.perf_counter()
    project = project or load_config()
    fl = fl or project.fl
    if fl.clients < 1 or fl.rounds < 1:
        raise ConfigError("clients and rounds must be at least 1")
    if not 0 <= fl.relayed_clients <= fl.clients:
        raise ConfigError(f"relayed_clients must be in 0..{fl.clients}, got {fl.relayed_clients}")
    if fl.relayed_clients and fl.contract.mode != "plain":
        raise ConfigError("relayed updates need contract.mode plain (they are sent in the clear)")
    if fl.contract.mode == "secure_aggregation" and fl.fraction < 1:
        raise ConfigError(
            "secure aggregation masks over a fixed cohort: every client takes part in every round "
            "(fraction must be 1)"
        )
    chain = chain or connect(network, config=project, num_accounts=max(20, fl.clients + 2))
    if len(chain.accounts) < fl.clients + 1:
        raise ConfigError(
            f"{fl.clients} clients need {fl.clients + 1} accounts; the chain has {len(chain.accounts)}"
        )
    task = task or task_of(fl)
    spec = data_spec(fl)
    test_data = task.test_data(spec)
    config = train_config(fl)

    # The same initial model for both runs: the quantized one the chain starts from.
    initial_model = task.model(seed=fl.seed)
    initial_words, _ = encode(get_flat_parameters(initial_model), fl.fixed_point)
    num_weights = get_flat_parameters(initial_model).size
    initial_flat = dequantize(unpack(initial_words, num_weights), fl.fixed_point)
    set_flat_parameters(initial_model, initial_flat)
    initial_accuracy = task.evaluate(initial_model, test_data).accuracy

    secrets = [simulation_secret(fl.seed, i) for i in range(fl.clients)]
    setup = privacy_setup(fl, config=config, with_ledger=False)  # the ledger needs data sizes
    trainers = [
        client_trainer(
            setup, task, client=i, spec=spec, config=config, seed=fl.seed, secret=secrets[i]
        )
        for i in range(fl.clients)
    ]
    if fl.privacy.dp and fl.privacy.epsilon_budget > 0:
        setup = privacy_setup(fl, config=config, data_sizes=[t.num_samples for t in trainers])
    params = DeployParams.from_config(
        fl,
        num_weights=num_weights,
        clients=fl.clients,
        tx_gas_cap=chain.tx_gas_cap,
        ledger=setup.ledger,
    )
    before = len(chain.gas_used)
    contract = deploy(chain, params, initial_words=initial_words, pool_wei=fl.rewards.pool_wei)
    deploy_gas = sum(chain.gas_used[before:])
    if progress:
        progress(f"deployed at {contract.address}")

    plain = run_task_federated(
        task,
        spec,
        rounds=fl.rounds,
        config=config,
        seed=fl.seed,
        aggregation="weighted" if fl.contract.aggregation == "sample_weighted" else "mean",
        fraction=fl.fraction,
        initial=initial_flat,
        test_data=test_data,
        trim_each=fl.contract.trim_each,
    )

    first_relayed = fl.clients - fl.relayed_clients
    federation = Federation(
        chain=chain,
        contract=contract,
        members=[
            Member(
                account=chain.accounts[1 + i],
                trainer=trainers[i],
                secret=secrets[i],
                relayed=i >= first_relayed,
            )
            for i in range(fl.clients)
        ],
        closer_account=chain.accounts[0],
        privacy=setup.update,
    )
    view = federation.view

    reports: list[RoundReport] = []
    participations = [0] * fl.clients  # DP: releases per client so far
    rewards_by_client: dict[str, int] = {p.account: 0 for p in federation.participants}
    eval_model = task.model(seed=fl.seed)
    for round_number in range(1, fl.rounds + 1):
        round_started = time.perf_counter()
        gas_before = len(chain.gas_used)
        selected = select_clients(fl.clients, fl.fraction, round_number=round_number, seed=fl.seed)

        def submitted(participant: Any, round_number: int = round_number) -> None:
            if progress:
                progress(f"round {round_number}: client {participant.client_id} submitted")

        outcomes = federation.play_round(round_number, selected, on_submitted=submitted)
        for outcome in outcomes:
            participations[outcome.client_id] += 1
            rewards_by_client[outcome.account] += outcome.reward_wei
        if setup.ledger is not None:
            _check_ledger(contract, setup.ledger, outcomes, participations)
        words = read_model_words(contract)
        quantized = unpack(words, num_weights)
        set_flat_parameters(eval_model, dequantize(quantized, fl.fixed_point))
        evaluation = task.evaluate(eval_model, test_data)
        reports.append(
            _report(
                round_number,
                outcomes,
                accuracy_chain=evaluation.accuracy,
                accuracy_plain=plain.rounds[round_number - 1].accuracy,
                loss_chain=evaluation.loss,
                gas_used=sum(chain.gas_used[gas_before:]),
                quantized=quantized,
                model_hash="0x" + vector_hash(words, view.words_per_segment).hex(),
                sample_weighted=fl.contract.aggregation == "sample_weighted",
                trim_each=fl.contract.trim_each,
                seconds=time.perf_counter() - round_started,
                # Each client's releases compose; no amplification by the selection of clients
                # is claimed (it is seeded, and every submission is public with its sender).
                epsilon=_largest_epsilon(setup, trainers, participations),
            )
        )
    if read_round(contract).number != fl.rounds + 1:
        raise ConfigError("the run ended with the wrong round open")  # pragma: no cover
    result = SimulationResult(
        dataset=task.name,
        clients=fl.clients,
        rounds=tuple(reports),
        initial_accuracy=initial_accuracy,
        rewards_by_client=rewards_by_client,
        contract_address=str(contract.address),
        deploy_gas=deploy_gas,
        num_weights=num_weights,
        num_segments=view.num_segments,
        tiers=len(fl.rewards.amounts_wei),
        lane_bits=view.lane_bits,
        settings={
            "network": chain.network.name,
            "task": task.reference,
            "partition": fl.partition,
            "epochs": fl.epochs,
            "batch_size": fl.batch_size,
            "learning_rate": fl.learning_rate,
            "algorithm": fl.algorithm,
            "fraction": fl.fraction,
            "aggregation": fl.contract.aggregation,
            "scale": fl.fixed_point.scale,
            "max_abs": fl.fixed_point.max_abs,
            "seed": fl.seed,
            "mode": fl.contract.mode,
            "relayed_clients": fl.relayed_clients,
            "hidden_layers": list(fl.hidden_layers),
            "dp": fl.privacy.dp,
            "dp_level": fl.privacy.level,
            "epsilon_budget": fl.privacy.epsilon_budget,
            "clip_norm": fl.privacy.clip_norm,
            "noise_multiplier": fl.privacy.noise_multiplier,
            "delta": fl.privacy.delta,
        },
        seconds=time.perf_counter() - started,
    )
    if check_accuracy and abs(result.final_gap_pp) > tolerance_pp:
        raise AccuracyMismatchError(
            f"chain-based accuracy {100 * reports[-1].accuracy_chain:.2f}% differs from plain federated "
            f"learning {100 * reports[-1].accuracy_plain:.2f}% by {result.final_gap_pp:+.2f} pp "
            f"(tolerance {tolerance_pp} pp)"
        )
    return result


def _check_ledger(
    contract: Any,
    ledger: LedgerCurve,
    outcomes: Sequence[RoundOutcome],
    participations: Sequence[int],
) -> None:
    """Hold the contract's privacy ledger to the accountant's curve: every client of the round
    has spent exactly the participations it made, and ``epsilonSpent`` is the curve's epsilon
    after them (both in 1e-6 units, computed the same way).

    Raises
    ------
    PrivacyLedgerMismatchError
        The chain's figure differs from the curve's.
    """
    for outcome in outcomes:
        count = participations[outcome.client_id]
        chain_count = int(contract.functions.participations(outcome.account).call())
        spent = int(contract.functions.epsilonSpent(outcome.account).call())
        expected = ledger.micro_after(count)
        if (chain_count, spent) != (count, expected):
            raise PrivacyLedgerMismatchError(
                f"{outcome.account}: the contract counts {chain_count} participation(s) and "
                f"epsilon {spent / 1e6:.6f}; the accountant's curve gives {expected / 1e6:.6f} "
                f"after {count}"
            )


def _largest_epsilon(
    setup: PrivacySetup, trainers: Sequence[LocalTrainer], participations: Sequence[int]
) -> float | None:
    """The largest epsilon of any client so far (``None`` without DP)."""
    values = [
        setup.epsilon(count, getattr(trainer, "participation", None))
        for trainer, count in zip(trainers, participations, strict=True)
    ]
    found = [v for v in values if v is not None]
    return max(found) if found else None


def _report(
    round_number: int,
    outcomes: list[RoundOutcome],
    *,
    accuracy_chain: float,
    accuracy_plain: float,
    loss_chain: float,
    gas_used: int,
    quantized: np.ndarray,
    model_hash: str,
    sample_weighted: bool,
    trim_each: int,
    seconds: float,
    epsilon: float | None,
) -> RoundReport:
    counted = [o for o in outcomes if o.counted]
    vectors = [unpack(list(o.words), quantized.size) for o in counted]
    expected = (
        None
        if not counted
        else trimmed_average(vectors, trim_each)
        if trim_each
        else integer_average(
            vectors, [o.sample_count for o in counted] if sample_weighted else None
        )
    )
    rewards: dict[str, int] = {}
    counts: dict[str, int] = {}
    for outcome in outcomes:
        label = tier_label(outcome.tier)
        rewards[label] = rewards.get(label, 0) + outcome.reward_wei
        counts[label] = counts.get(label, 0) + 1
    return RoundReport(
        round_number=round_number,
        accuracy_chain=accuracy_chain,
        accuracy_plain=accuracy_plain,
        loss_chain=loss_chain,
        submissions=len(outcomes),
        relayed=sum(o.relayed for o in outcomes),
        gas_used=gas_used,
        rewards_by_tier=rewards,
        submissions_by_tier=counts,
        clipped=sum(o.clipped for o in outcomes),
        distances=tuple(o.distance for o in outcomes),
        model_hash=model_hash,
        exact_average=expected is not None and bool(np.array_equal(expected, quantized)),
        seconds=seconds,
        epsilon=epsilon,
        dp_clipped=sum(o.dp_clipped for o in outcomes),
    )
