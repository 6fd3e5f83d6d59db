"""The main job: a whole federated run on the chain, beside the same run in plain PyTorch.

``run_simulation`` deploys a coordinator, creates N participants on N accounts, runs R rounds in
one process and evaluates the on-chain global model after every round. Beside it, the same
federated run without a chain (float FedAvg, same seeds, shards, initial model and
hyper-parameters) gives the accuracy the chain must match; the run fails loudly
(:class:`AccuracyMismatchError`) when the final accuracies differ by more than the tolerance.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fl_client.aggregation import NO_TIER, integer_average
from fl_client.chain import Chain, DeployParams, connect, deploy, read_model_words, read_round
from fl_client.client import ContractView, Participant, RoundOutcome, simulation_secret
from fl_client.codec import dequantize, encode, model_hash, unpack
from fl_client.config import FLConfig, ProjectConfig, load_config
from fl_client.data import load_dataset, make_shards
from fl_client.errors import AccuracyMismatchError, ChainError, ConfigError
from fl_client.federated import run_plain_federated
from fl_client.model import build_model, get_flat_parameters, set_flat_parameters
from fl_client.privacy import DPConfig, epsilon
from fl_client.training import TrainConfig, evaluate, select_clients

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
    gas_used: int
    rewards_by_tier: dict[str, int]  # tier label -> wei credited in this round
    submissions_by_tier: dict[str, int]
    clipped: int
    distances: tuple[int, ...]  # each submission's distance from the global model it trained on
    model_hash: str
    exact_average: bool  # the on-chain model equals the integer average of the submitted vectors
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

    dataset: str
    clients: int
    rounds: tuple[RoundReport, ...]
    initial_accuracy: float
    rewards_by_client: dict[str, int]  # account -> wei credited over the run
    contract_address: str
    deploy_gas: int
    num_weights: int
    lane_bits: int
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
    """``T0``, ``T1``, ... or ``none``."""
    return "none" if tier == NO_TIER else f"T{tier}"


def _train_config(fl: FLConfig) -> TrainConfig:
    return TrainConfig(
        epochs=fl.epochs,
        batch_size=fl.batch_size,
        learning_rate=fl.learning_rate,
        algorithm=fl.algorithm,
    )


def run_simulation(
    fl: FLConfig | None = None,
    *,
    project: ProjectConfig | None = None,
    network: str = "embedded",
    chain: Chain | None = None,
    tolerance_pp: float = 1.0,
    check_accuracy: bool = True,
    progress: ProgressCallback | None = None,
) -> SimulationResult:
    """Deploy, run ``fl.rounds`` rounds with ``fl.clients`` participants and evaluate each round.

    Raises
    ------
    AccuracyMismatchError
        When ``check_accuracy`` and the final chain and plain accuracies differ by more than
        ``tolerance_pp`` percentage points.
    """
    started = time.perf_counter()
    project = project or load_config()
    fl = fl or project.fl
    if fl.clients < 1 or fl.rounds < 1:
        raise ConfigError("clients and rounds must be at least 1")
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
    dataset = load_dataset(fl.dataset, test_fraction=fl.test_fraction, seed=fl.seed)
    shards = make_shards(
        dataset, fl.clients, scheme=fl.partition, alpha=fl.dirichlet_alpha, seed=fl.seed
    )
    config = _train_config(fl)

    # The same initial model for both runs: the quantized one the chain starts from.
    initial_model = build_model(dataset.num_features, dataset.num_classes, seed=fl.seed)
    initial_words, _ = encode(get_flat_parameters(initial_model), fl.fixed_point)
    num_weights = get_flat_parameters(initial_model).size
    initial_flat = dequantize(unpack(initial_words, num_weights), fl.fixed_point)
    set_flat_parameters(initial_model, initial_flat)
    initial_accuracy = evaluate(initial_model, dataset.x_test, dataset.y_test).accuracy

    params = DeployParams.from_config(fl, num_weights=num_weights, clients=fl.clients)
    before = len(chain.gas_used)
    contract = deploy(chain, params, initial_words=initial_words, pool_wei=fl.rewards.pool_wei)
    deploy_gas = sum(chain.gas_used[before:])
    view = ContractView.read(contract)
    if progress:
        progress(f"deployed at {contract.address}")

    aggregation = "weighted" if fl.contract.aggregation == "sample_weighted" else "mean"
    plain = run_plain_federated(
        dataset,
        shards,
        rounds=fl.rounds,
        config=config,
        seed=fl.seed,
        aggregation=aggregation,
        fraction=fl.fraction,
        initial=initial_flat,
    )

    dp = (
        DPConfig(fl.privacy.clip_norm, fl.privacy.noise_multiplier, fl.privacy.delta)
        if fl.privacy.dp
        else None
    )
    participants = [
        Participant(
            chain=chain,
            contract=contract,
            account=chain.accounts[1 + i],
            client_id=i,
            shard=shards[i],
            num_features=dataset.num_features,
            num_classes=dataset.num_classes,
            train_config=config,
            seed=fl.seed,
            secret=simulation_secret(fl.seed, i),
            view=view,
            privacy=dp,
        )
        for i in range(fl.clients)
    ]

    reports: list[RoundReport] = []
    participations = [0] * fl.clients  # DP: releases per client so far
    rewards_by_client: dict[str, int] = {p.account: 0 for p in participants}
    eval_model = build_model(dataset.num_features, dataset.num_classes, seed=fl.seed)
    for round_number in range(1, fl.rounds + 1):
        round_started = time.perf_counter()
        info = read_round(contract)
        if info.number != round_number:
            raise ChainError(
                f"expected round {round_number} to be open, the contract is at {info.number}"
            )
        selected = select_clients(fl.clients, fl.fraction, round_number=round_number, seed=fl.seed)
        outcomes: list[RoundOutcome] = []
        # Direct mode needs one pass; commit-reveal two (commit, reveal); secure aggregation one
        # more in its first round (keys first).
        for _ in range(3):
            if read_round(contract).number != round_number:
                break
            for client_id in selected:
                outcome = participants[client_id].step(round_number)
                if outcome is None:
                    continue
                outcomes.append(outcome)
                participations[client_id] += 1
                rewards_by_client[outcome.account] += outcome.reward_wei
                if progress:
                    progress(f"round {round_number}: client {client_id} submitted")
        if read_round(contract).number != round_number + 1:
            raise ChainError(
                f"round {round_number} did not close after {len(outcomes)} submissions"
            )
        words = read_model_words(contract)
        quantized = unpack(words, num_weights)
        counted = [o for o in outcomes if o.counted]
        expected = (
            integer_average(
                [unpack(list(o.words), num_weights) for o in counted],
                None if fl.contract.aggregation == "mean" else [o.sample_count for o in counted],
            )
            if counted
            else None
        )
        set_flat_parameters(eval_model, dequantize(quantized, fl.fixed_point))
        evaluation = evaluate(eval_model, dataset.x_test, dataset.y_test)
        rewards: dict[str, int] = {}
        counts: dict[str, int] = {}
        for outcome in outcomes:
            label = tier_label(outcome.tier)
            rewards[label] = rewards.get(label, 0) + outcome.reward_wei
            counts[label] = counts.get(label, 0) + 1
        reports.append(
            RoundReport(
                round_number=round_number,
                accuracy_chain=evaluation.accuracy,
                accuracy_plain=plain.rounds[round_number - 1].accuracy,
                loss_chain=evaluation.loss,
                submissions=len(outcomes),
                gas_used=sum(o.gas_used for o in outcomes),
                rewards_by_tier=rewards,
                submissions_by_tier=counts,
                clipped=sum(o.clipped for o in outcomes),
                distances=tuple(o.distance for o in outcomes),
                model_hash="0x" + model_hash(words).hex(),
                exact_average=expected is not None and bool(np.array_equal(expected, quantized)),
                seconds=time.perf_counter() - round_started,
                # Each client's releases compose; no amplification by sampling is claimed (the
                # selection is seeded and every submission is public with its sender).
                epsilon=None
                if dp is None
                else epsilon(dp.noise_multiplier, max(participations), dp.delta),
                dp_clipped=sum(o.dp_clipped for o in outcomes),
            )
        )
    result = SimulationResult(
        dataset=fl.dataset,
        clients=fl.clients,
        rounds=tuple(reports),
        initial_accuracy=initial_accuracy,
        rewards_by_client=rewards_by_client,
        contract_address=str(contract.address),
        deploy_gas=deploy_gas,
        num_weights=num_weights,
        lane_bits=int(contract.functions.laneBits().call()),
        settings={
            "network": chain.network.name,
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
            "dp": fl.privacy.dp,
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


# ---------------------------------------------------------------- output


def tier_columns(result: SimulationResult) -> list[str]:
    """Tier labels that occur in the run, in order."""
    labels = {label for report in result.rounds for label in report.submissions_by_tier}
    return sorted(label for label in labels if label != "none") + (
        ["none"] if "none" in labels else []
    )


def table_rows(result: SimulationResult) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-round table."""
    tiers = tier_columns(result)
    header = [
        "round",
        "acc chain %",
        "acc plain %",
        "gap pp",
        "submissions",
        "median distance",
        "gas used",
    ]
    private = any(r.epsilon is not None for r in result.rounds)
    header += ["epsilon"] if private else []
    header += [f"{label} (n x wei)" for label in tiers]
    rows = []
    for report in result.rounds:
        row = [
            str(report.round_number),
            f"{100 * report.accuracy_chain:.2f}",
            f"{100 * report.accuracy_plain:.2f}",
            f"{report.gap_pp:+.2f}",
            str(report.submissions),
            f"{int(np.median(report.distances)):,}",
            f"{report.gas_used:,}",
        ]
        if private:
            row.append(f"{report.epsilon:.2f}" if report.epsilon is not None else "-")
        for label in tiers:
            count = report.submissions_by_tier.get(label, 0)
            row.append(
                f"{count} x {report.rewards_by_tier.get(label, 0) // max(count, 1):.3g}"
                if count
                else "-"
            )
        rows.append(row)
    return header, rows


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """A plain-text table with aligned columns."""
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(lines)


def write_outputs(result: SimulationResult, directory: Path) -> list[Path]:
    """Write ``result.json``, ``rounds.csv``, ``accuracy.png`` and ``rewards.png`` into ``directory``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    json_path = directory / "result.json"
    json_path.write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    paths.append(json_path)

    csv_path = directory / "rounds.csv"
    tiers = tier_columns(result)
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "round",
                "accuracy_chain",
                "accuracy_plain",
                "gap_pp",
                "submissions",
                "gas_used",
                "clipped",
                "model_hash",
            ]
            + [f"{label}_submissions" for label in tiers]
            + [f"{label}_reward_wei" for label in tiers]
        )
        for r in result.rounds:
            writer.writerow(
                [
                    r.round_number,
                    f"{r.accuracy_chain:.6f}",
                    f"{r.accuracy_plain:.6f}",
                    f"{r.gap_pp:.4f}",
                    r.submissions,
                    r.gas_used,
                    r.clipped,
                    r.model_hash,
                ]
                + [r.submissions_by_tier.get(label, 0) for label in tiers]
                + [r.rewards_by_tier.get(label, 0) for label in tiers]
            )
    paths.append(csv_path)

    rounds = [0] + [r.round_number for r in result.rounds]
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(
        rounds,
        [100 * result.initial_accuracy] + [100 * r.accuracy_chain for r in result.rounds],
        marker="o",
        label="chain-based (fixed point, on-chain FedAvg)",
    )
    axes.plot(
        rounds,
        [100 * result.initial_accuracy] + [100 * r.accuracy_plain for r in result.rounds],
        marker="x",
        linestyle="--",
        label="plain federated (float, PyTorch)",
    )
    axes.set_xlabel("round")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title(f"{result.dataset}: {result.clients} clients")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    accuracy_path = directory / "accuracy.png"
    figure.savefig(accuracy_path, dpi=100)
    plt.close(figure)
    paths.append(accuracy_path)

    figure, axes = plt.subplots(figsize=(6, 4))
    accounts = list(result.rewards_by_client)
    axes.bar(range(len(accounts)), [result.rewards_by_client[a] / 1e18 for a in accounts])
    axes.set_xticks(
        range(len(accounts)), [f"{i}\n{a[:8]}" for i, a in enumerate(accounts)], fontsize=7
    )
    axes.set_xlabel("client (account)")
    axes.set_ylabel("reward credited (ETH)")
    axes.set_title("rewards per client over the run")
    figure.tight_layout()
    rewards_path = directory / "rewards.png"
    figure.savefig(rewards_path, dpi=100)
    plt.close(figure)
    paths.append(rewards_path)
    return paths
