"""Reproduce the seed paper's experiments (its Figures 6 to 9) on MNIST 5k: accuracy, time, cost.

Run: ``.venv/bin/python -m bench.paper`` (about 10 minutes on 2 cores). Writes
``bench/results/paper.json``, ``paper.md`` and the plots ``paper.accuracy.png``,
``paper.time.png`` and ``paper.cost.png``.

- Accuracy (Fig. 6): for 5 and 10 users, IID and Dirichlet(0.5) non-IID, one chain-based run
  (:func:`~fl_client.simulation.run_simulation` on anvil with instant mining) of the largest round
  count; the plain federated run beside it (same seeds, shards, initial model and
  hyper-parameters) and centralized training with the same epoch budget (rounds x local epochs).
  The smaller round counts are read from the same run: client selection and each client's
  training seed depend only on (seed, client, round), so the first 10 rounds of a 30-round run
  are exactly the 10-round run. Bar: chain-based within 0.5 pp of plain FL in every cell.
- Time (Figs. 7-8): per-round wall time of the chain-based runs on anvil with instant mining
  (the accuracy runs, IID) and with 12 s blocks (short runs in child processes, started first
  and run alongside the rest since they mostly wait for blocks); the plain run timed on its own.
- Cost (Fig. 9): measured gas per round and per trained model (deployment + the rounds the
  chain-based run needs to reach each target accuracy), priced at an assumed gas price and ETH
  price, beside the paper's server cost model and its per-transaction prices, with the number of
  models from which the server is cheaper.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from tqdm import tqdm

from fl_client.chain import CONTRACT_NAME, connect
from fl_client.compile import get_contract
from fl_client.config import FLConfig, ProjectConfig, load_config
from fl_client.data import load_dataset, make_shards
from fl_client.federated import run_centralized, run_plain_federated
from fl_client.node import STATE_DIR_VARIABLE, free_port, start_anvil, stop_process
from fl_client.simulation import SimulationResult, run_simulation
from fl_client.training import TrainConfig

RESULTS = Path(__file__).resolve().parent / "results"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
COMMAND = ".venv/bin/python -m bench.paper"
DATASET = "mnist5k"
BAR_PP = 0.5
PARTITIONS = ("iid", "dirichlet")
# The paper's figures, quoted beside ours.
PAPER_SECONDS_ADDED_PER_ROUND = (15.0, 18.0)
# The paper's own cost case: CIFAR-10 to 85% with 100 users took 2,000 rounds.
PAPER_USERS = 100
PAPER_ROUNDS = 2000
PAPER_TARGET = "85% on CIFAR-10"


# ---------------------------------------------------------------- cost model


@dataclass(frozen=True)
class Prices:
    """Assumptions, not measurements: what gas and ETH cost."""

    gas_price_gwei: float = 20.0
    eth_price: float = 5_000_000.0  # currency units per ETH
    currency: str = "KRW"


@dataclass(frozen=True)
class ServerCostModel:
    """The paper's cost model (assumptions, in the currency of :class:`Prices`).

    A server costs ``server_cost`` and serves up to ``server_users`` users for any number of
    models; on the chain every submission costs ``submit_fee`` and every round's contract
    computation (the aggregation) ``compute_fee``. Charging the computation once per round is the
    reading that gives the paper's own figure: 100 users x 2,000 rounds x 10 + 2,000 x 10 =
    2,020,000 KRW for one 85% CIFAR-10 model ("about 2,000,000"), and the server cheaper from three
    models on.
    """

    server_cost: float = 5_000_000.0
    server_users: int = 100
    submit_fee: float = 10.0
    compute_fee: float = 10.0


def gas_to_eth(gas: float, gas_price_gwei: float) -> float:
    """ETH paid for ``gas`` at ``gas_price_gwei``."""
    return gas * gas_price_gwei * 1e-9


def gas_to_currency(gas: float, prices: Prices) -> float:
    """What ``gas`` costs in ``prices.currency``."""
    return gas_to_eth(gas, prices.gas_price_gwei) * prices.eth_price


def paper_chain_cost(users: int, rounds: int, model: ServerCostModel) -> float:
    """One model's cost on the chain by the paper's per-transaction prices."""
    return rounds * (users * model.submit_fee + model.compute_fee)


def server_cost(users: int, model: ServerCostModel) -> float:
    """The fixed cost of the servers ``users`` users need (one per ``server_users``)."""
    return math.ceil(users / model.server_users) * model.server_cost


def break_even_models(cost_per_model: float, fixed_cost: float) -> int:
    """The number of models from which the fixed-cost server is cheaper than the chain.

    The chain costs ``n x cost_per_model`` for ``n`` models, the server ``fixed_cost`` whatever
    ``n``: the result is the smallest ``n >= 1`` with ``n x cost_per_model > fixed_cost`` (below
    it the chain is cheaper or equal; 1 means the server is cheaper from the first model).
    """
    if cost_per_model <= 0:
        raise ValueError(f"the cost per model must be positive, got {cost_per_model}")
    if fixed_cost < 0:
        raise ValueError(f"the fixed cost must be non-negative, got {fixed_cost}")
    n = max(1, math.floor(fixed_cost / cost_per_model) + 1)
    # Guard the float division at exact multiples.
    while n * cost_per_model <= fixed_cost:
        n += 1
    while n > 1 and (n - 1) * cost_per_model > fixed_cost:
        n -= 1
    return n


def break_even_gas_price(gas_per_model: float, fixed_cost: float, eth_price: float) -> float:
    """The gas price (gwei) at which one model on the chain costs as much as the server."""
    return fixed_cost / (gas_per_model * 1e-9 * eth_price)


def rounds_to_target(accuracies: Sequence[float], target: float) -> int | None:
    """The first round (1-based) whose accuracy reaches ``target``, or ``None``."""
    for index, accuracy in enumerate(accuracies, start=1):
        if accuracy >= target:
            return index
    return None


def model_cost(
    *,
    users: int,
    deploy_gas: int,
    round_gas: Sequence[int],
    accuracies: Sequence[float],
    target: float,
    prices: Prices,
    server: ServerCostModel,
) -> dict[str, Any]:
    """The cost of one model trained to ``target``: measured gas, priced, beside the server.

    A model needs a deployment (the coordinator, its initial model and round 1) and the rounds
    up to the first that reaches ``target``; ``None`` fields when the run never reached it.
    """
    rounds = rounds_to_target(accuracies, target)
    fixed = server_cost(users, server)
    record: dict[str, Any] = {"target": target, "rounds": rounds, "server_cost": fixed}
    if rounds is None:
        return record | {
            "gas": None,
            "eth": None,
            "cost": None,
            "paper_cost": None,
            "server_cheaper_from_models": None,
            "server_cheaper_from_models_paper_prices": None,
            "break_even_gas_price_gwei": None,
        }
    gas = deploy_gas + sum(round_gas[:rounds])
    cost = gas_to_currency(gas, prices)
    paper = paper_chain_cost(users, rounds, server)
    return record | {
        "gas": gas,
        "eth": gas_to_eth(gas, prices.gas_price_gwei),
        "cost": cost,
        "paper_cost": paper,
        "server_cheaper_from_models": break_even_models(cost, fixed),
        "server_cheaper_from_models_paper_prices": break_even_models(paper, fixed),
        "break_even_gas_price_gwei": break_even_gas_price(gas, fixed, prices.eth_price),
    }


# ---------------------------------------------------------------- runs


def submission_ticker(bar: tqdm[Any]) -> Callable[[str], None]:
    """A progress callback for :func:`run_simulation`: one step per submission."""

    def tick(message: str) -> None:
        if "submitted" in message:
            bar.update(1)

    return tick


def round_ticker(bar: tqdm[Any]) -> Callable[[], None]:
    """One step per round of the plain run."""

    def tick() -> None:
        bar.update(1)

    return tick


def train_config(fl: FLConfig) -> TrainConfig:
    """The local-training settings of ``fl``."""
    return TrainConfig(
        epochs=fl.epochs,
        batch_size=fl.batch_size,
        learning_rate=fl.learning_rate,
        algorithm=fl.algorithm,
    )


def chain_run(
    fl: FLConfig,
    *,
    block_time: int,
    project: ProjectConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> SimulationResult:
    """Start an anvil (``block_time`` 0: instant mining), run the simulation on it, stop it."""
    project = project or load_config()
    process, info = start_anvil(
        project.network("anvil"),
        port=free_port(),
        block_time=block_time,
        record=False,
        accounts=max(20, fl.clients + 2),
    )
    try:
        chain = connect("anvil", config=project, url=info.url)
        return run_simulation(
            fl, project=project, chain=chain, check_accuracy=False, progress=progress
        )
    finally:
        stop_process(process.pid)
        # stop_process reaps the child behind the Popen's back; polling lets the Popen see it
        # (else its finalizer warns that the process "is still running").
        process.poll()


class _RoundClock(logging.Handler):
    """Stamps the end of each round of :func:`run_plain_federated` (it logs one line a round)."""

    def __init__(self, on_round: Callable[[], None] | None = None) -> None:
        super().__init__(logging.INFO)
        self.stamps: list[float] = []
        self.on_round = on_round

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("round "):
            self.stamps.append(time.perf_counter())
            if self.on_round is not None:
                self.on_round()


def time_plain(fl: FLConfig, on_round: Callable[[], None] | None = None) -> dict[str, Any]:
    """Time :func:`run_plain_federated` alone, round by round."""
    dataset = load_dataset(fl.dataset, test_fraction=fl.test_fraction, seed=fl.seed)
    shards = make_shards(
        dataset, fl.clients, scheme=fl.partition, alpha=fl.dirichlet_alpha, seed=fl.seed
    )
    logger = logging.getLogger("fl_client.federated")
    clock = _RoundClock(on_round)
    previous_level = logger.level
    logger.addHandler(clock)
    logger.setLevel(logging.INFO)
    try:
        started = time.perf_counter()
        result = run_plain_federated(
            dataset,
            shards,
            rounds=fl.rounds,
            config=train_config(fl),
            seed=fl.seed,
            aggregation="weighted" if fl.contract.aggregation == "sample_weighted" else "mean",
            fraction=fl.fraction,
        )
        total = time.perf_counter() - started
    finally:
        logger.removeHandler(clock)
        logger.setLevel(previous_level)
    if len(clock.stamps) == fl.rounds:
        marks = [started, *clock.stamps]
        per_round = [b - a for a, b in itertools.pairwise(marks)]
        source = "per round (log time stamps)"
    else:  # the round log line changed: fall back to the mean
        per_round = [total / fl.rounds] * fl.rounds
        source = "mean of the whole run"
    return {
        "users": fl.clients,
        "partition": fl.partition,
        "rounds": fl.rounds,
        "seconds_per_round": per_round,
        "seconds": total,
        "source": source,
        "final_accuracy": result.rounds[-1].accuracy,
    }


def run_summary(result: SimulationResult, partition: str) -> dict[str, Any]:
    """What the report keeps of a chain-based run."""
    return {
        "users": result.clients,
        "partition": partition,
        "rounds": len(result.rounds),
        "initial_accuracy": result.initial_accuracy,
        "accuracy_chain": [r.accuracy_chain for r in result.rounds],
        "accuracy_plain": [r.accuracy_plain for r in result.rounds],
        "gap_pp": [r.gap_pp for r in result.rounds],
        "gas_per_round": [r.gas_used for r in result.rounds],
        "seconds_per_round": [r.seconds for r in result.rounds],
        "exact_average": all(r.exact_average for r in result.rounds),
        "clipped": sum(r.clipped for r in result.rounds),
        "deploy_gas": result.deploy_gas,
        "num_weights": result.num_weights,
        "lane_bits": result.lane_bits,
        "seconds": result.seconds,
        "settings": result.settings,
    }


def accuracy_cells(
    runs: Sequence[dict[str, Any]], rounds: Sequence[int], central: dict[int, float]
) -> list[dict[str, Any]]:
    """One cell per (users, rounds, partition): chain, plain, centralized and the bar check."""
    cells = []
    for run in runs:
        for count in rounds:
            chain = run["accuracy_chain"][count - 1]
            plain = run["accuracy_plain"][count - 1]
            gap = run["gap_pp"][count - 1]
            cells.append(
                {
                    "users": run["users"],
                    "rounds": count,
                    "partition": run["partition"],
                    "chain": chain,
                    "plain": plain,
                    "central": central[count],
                    "gap_pp": gap,
                    "within_bar": abs(gap) <= BAR_PP,
                    "read_from_run_of_rounds": run["rounds"],
                }
            )
    return sorted(cells, key=lambda c: (c["partition"] != "iid", c["users"], c["rounds"]))


# ---------------------------------------------------------------- 12 s blocks, in a child


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def block_child(
    out: Path, *, users: int, rounds: int, block_time: int, seed: int, position: int = 1
) -> int:
    """The child's job: one short chain-based run on anvil with ``block_time`` s blocks."""
    # SIGTERM from the parent unwinds (and stops the anvil) instead of killing outright.
    signal.signal(signal.SIGTERM, _raise_exit)
    fl = load_config().fl.with_overrides(
        dataset=DATASET, clients=users, rounds=rounds, partition="iid", seed=seed
    )
    bar = tqdm(
        total=users * rounds,
        desc=f"{block_time} s blocks, {users} users",
        position=position,
        leave=False,
    )
    try:
        result = chain_run(
            fl,
            block_time=block_time,
            progress=submission_ticker(bar),
        )
        record: dict[str, Any] = {
            "users": users,
            "rounds": rounds,
            "block_time": block_time,
            "seconds_per_round": [r.seconds for r in result.rounds],
            "setup_seconds": result.seconds - sum(r.seconds for r in result.rounds),
            "gas_per_round": [r.gas_used for r in result.rounds],
            "accuracy_chain": [r.accuracy_chain for r in result.rounds],
            "gap_pp": [r.gap_pp for r in result.rounds],
        }
        code = 0
    except Exception as exc:  # reported by the parent; the run goes on without it
        record = {"users": users, "rounds": rounds, "block_time": block_time, "error": repr(exc)}
        code = 1
    finally:
        bar.close()
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return code


@dataclass
class _Child:
    users: int
    out: Path
    process: subprocess.Popen[bytes]


def start_block_children(
    users: Sequence[int], *, rounds: int, block_time: int, seed: int, directory: Path
) -> list[_Child]:
    """Start one child process per user count, each with its own anvil."""
    children = []
    for position, count in enumerate(users, start=1):
        out = directory / f"blocks-{count}.json"
        command = [
            sys.executable,
            "-m",
            "bench.paper",
            "--block-child",
            str(out),
            "--users",
            str(count),
            "--block-rounds",
            str(rounds),
            "--block-time",
            str(block_time),
            "--seed",
            str(seed),
            "--bar-position",
            str(position),
        ]
        children.append(_Child(count, out, subprocess.Popen(command, cwd=PROJECT_ROOT)))
    return children


def collect_children(children: Sequence[_Child], timeout: float) -> list[dict[str, Any]]:
    """Wait for the children and read their records."""
    records = []
    deadline = time.monotonic() + timeout
    for child in children:
        try:
            child.process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            records.append({"users": child.users, "error": f"timed out after {timeout:.0f} s"})
            continue
        try:
            records.append(json.loads(child.out.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            records.append({"users": child.users, "error": f"no result ({exc!r})"})
    return records


def stop_children(children: Sequence[_Child]) -> None:
    """Stop any child still running (it stops its own anvil on SIGTERM)."""
    for child in children:
        if child.process.poll() is None:
            child.process.terminate()
            try:
                child.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()


@contextmanager
def _state_dir() -> Iterator[None]:
    """Keep anvil logs out of the project's ``.cache`` unless ``FL_STATE_DIR`` says otherwise."""
    if os.environ.get(STATE_DIR_VARIABLE):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="bench-paper-") as directory:
        os.environ[STATE_DIR_VARIABLE] = directory
        try:
            yield
        finally:
            os.environ.pop(STATE_DIR_VARIABLE, None)


# ---------------------------------------------------------------- report


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _series(values: Sequence[float]) -> str:
    if len(values) <= 4:
        return ", ".join(f"{v:.2f}" for v in values)
    return f"{min(values):.2f} .. {max(values):.2f}"


def time_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the time table: plain, instant mining and block-time runs per user count."""
    plain = {p["users"]: statistics.mean(p["seconds_per_round"]) for p in report["time"]["plain"]}
    rows = []
    for p in report["time"]["plain"]:
        rows.append(
            {
                "mode": "plain FL (PyTorch, no chain)",
                "users": p["users"],
                "seconds_per_round": p["seconds_per_round"],
                "mean": statistics.mean(p["seconds_per_round"]),
                "added": None,
            }
        )
    for run in report["time"]["instant"]:
        mean = statistics.mean(run["seconds_per_round"])
        rows.append(
            {
                "mode": "chain, anvil instant mining",
                "users": run["users"],
                "seconds_per_round": run["seconds_per_round"],
                "mean": mean,
                "added": mean - plain[run["users"]] if run["users"] in plain else None,
            }
        )
    for run in report["time"]["blocks"]:
        if "error" in run:
            rows.append(
                {
                    "mode": f"chain, anvil {report['time']['block_time']} s blocks",
                    "users": run["users"],
                    "seconds_per_round": [],
                    "mean": None,
                    "added": None,
                    "error": run["error"],
                }
            )
            continue
        mean = statistics.mean(run["seconds_per_round"])
        rows.append(
            {
                "mode": f"chain, anvil {run['block_time']} s blocks",
                "users": run["users"],
                "seconds_per_round": run["seconds_per_round"],
                "mean": mean,
                "added": mean - plain[run["users"]] if run["users"] in plain else None,
            }
        )
    return rows


def markdown(report: dict[str, Any]) -> str:
    """The tables the README quotes."""
    settings = report["settings"]
    prices = report["cost"]["prices"]
    server = report["cost"]["server_model"]
    currency = prices["currency"]
    cells = report["accuracy"]["cells"]
    met = sum(c["within_bar"] for c in cells)
    counts = report["accuracy"]["rounds"]
    shared = (
        f"The {', '.join(map(str, counts[:-1]))}-round cells are read from the {counts[-1]}-round "
        "run (client selection and training seeds depend only on seed, client and round). "
        if len(counts) > 1
        else ""
    )
    lines = [
        f"Seed paper 004, Figures 6-9, reproduced on {settings['dataset']} "
        f"({settings['num_weights']:,} weights; E={settings['epochs']}, B={settings['batch_size']}, "
        f"lr={settings['learning_rate']}, plain-mean aggregation, seed {settings['seed']}). "
        f"Command: `{report['command']}`; wall time {report['seconds'] / 60:.1f} min.",
        "",
        "### Accuracy (Fig. 6)",
        "",
        f"Test accuracy (%) after the given number of rounds. Chain: on-chain fixed-point FedAvg "
        f"(anvil, instant mining); plain: float FedAvg in PyTorch, same seeds, shards, initial "
        f"model and hyper-parameters; central: one model on all the training data for rounds x "
        f"{settings['epochs']} epochs. {shared}Bar: |chain - plain| <= {BAR_PP} pp: "
        f"**{'met' if met == len(cells) else 'missed'} in {met}/{len(cells)} cells**.",
        "",
        "| users | rounds | partition | chain % | plain % | central % | chain - plain (pp) | within 0.5 pp |",
        "|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for c in cells:
        partition = (
            "IID" if c["partition"] == "iid" else f"Dirichlet({settings['dirichlet_alpha']})"
        )
        lines.append(
            f"| {c['users']} | {c['rounds']} | {partition} | {_pct(c['chain'])} | {_pct(c['plain'])} | "
            f"{_pct(c['central'])} | {c['gap_pp']:+.2f} | {'yes' if c['within_bar'] else '**no**'} |"
        )
    lines += [
        "",
        "### Time per round (Figs. 7-8)",
        "",
        "Measured wall time per round (s): training of every selected user, their submissions one "
        "after the other from one process, and the evaluation of the new model. Plain FL is "
        "`run_plain_federated` timed alone; instant mining: the IID accuracy runs; "
        f"{report['time']['block_time']} s blocks: short runs "
        f"({report['time']['block_rounds']} rounds each) in child processes that ran alongside the "
        "others; each submission waits for the next block, and the users of one process submit "
        "one after the other, so a round takes about users x block time here, where the paper's "
        "users, on their own devices, submit at the same time. Nothing extrapolated. The paper: "
        "chain-based adds "
        f"{PAPER_SECONDS_ADDED_PER_ROUND[0]:.0f}-{PAPER_SECONDS_ADDED_PER_ROUND[1]:.0f} s per round "
        "(one Ethereum block time).",
        "",
        "| mode | users | rounds | s / round (mean) | s / round (each, or min .. max) | added vs plain (s) |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for row in time_rows(report):
        if "error" in row:
            lines.append(f"| {row['mode']} | {row['users']} | - | - | failed: {row['error']} | - |")
            continue
        added = "-" if row["added"] is None else f"{row['added']:+.2f}"
        lines.append(
            f"| {row['mode']} | {row['users']} | {len(row['seconds_per_round'])} | {row['mean']:.2f} | "
            f"{_series(row['seconds_per_round'])} | {added} |"
        )
    counts = report["accuracy"]["rounds"]
    lines += [
        "",
        f"Total time of {' and '.join(map(str, counts))} rounds (s; sums of the measured rounds, "
        "only where that many rounds were run):",
        "",
        "| mode | users | " + " | ".join(f"{n} rounds" for n in counts) + " |",
        "|---|---:|" + "---:|" * len(counts),
    ]
    for row in time_rows(report):
        if "error" in row:
            continue
        seconds = row["seconds_per_round"]
        totals = [f"{sum(seconds[:n]):.1f}" if len(seconds) >= n else "-" for n in counts]
        lines.append(f"| {row['mode']} | {row['users']} | " + " | ".join(totals) + " |")
    lines += [
        "",
        "### Cost (Fig. 9)",
        "",
        f"Measured: gas (anvil receipts, Prague rules). Assumed: gas price "
        f"{prices['gas_price_gwei']:g} gwei, 1 ETH = {prices['eth_price']:,.0f} {currency}; the "
        f"paper's server cost model: a server costs {server['server_cost']:,.0f} {currency} and serves "
        f"~{server['server_users']} users (any number of models), versus {server['submit_fee']:g} "
        f"{currency} per submit transaction + {server['compute_fee']:g} {currency} per round's "
        f"contract computation. A model = deployment (contract, initial model, round 1: "
        f"measured deploy gas) + the rounds the chain-based run needs to reach the target. "
        f'"Server cheaper from": the number of models from which the server costs less.',
        "",
        "| users | partition | gas / round | deploy gas | target | rounds | gas / model | ETH / model | "
        f"{currency} / model (measured gas) | server cheaper from (models) | break-even gas price (gwei) | "
        f"{currency} / model (paper's per-tx prices) | server cheaper from (paper's prices) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["cost"]["models"]:
        partition = "IID" if row["partition"] == "iid" else "Dirichlet"
        for m in row["targets"]:
            if m["rounds"] is None:
                lines.append(
                    f"| {row['users']} | {partition} | {row['gas_per_round_mean']:,.0f} | "
                    f"{row['deploy_gas']:,} | {100 * m['target']:.0f}% | not reached in "
                    f"{row['rounds_run']} | - | - | - | - | - | - | - |"
                )
                continue
            lines.append(
                f"| {row['users']} | {partition} | {row['gas_per_round_mean']:,.0f} | {row['deploy_gas']:,} | "
                f"{100 * m['target']:.0f}% | {m['rounds']} | {m['gas']:,} | {m['eth']:.3f} | "
                f"{_money(m['cost'])} | {m['server_cheaper_from_models']:,} | "
                f"{m['break_even_gas_price_gwei']:.2f} | {_money(m['paper_cost'])} | "
                f"{m['server_cheaper_from_models_paper_prices']:,} |"
            )
    example = report["cost"]["paper_example"]
    lines += [
        "",
        f"The paper's own case by its cost model: {example['users']} users x {example['rounds']:,} rounds "
        f"({example['target']}) = {_money(example['cost'])} {currency} per model; the server is "
        f"cheaper from {example['server_cheaper_from_models']} models on (the paper: about "
        "2,000,000 KRW, from three models on). One submission of our "
        f"{settings['num_weights']:,} weights costs "
        f"{report['cost']['mean_submit_gas']:,} gas on average = {_money(report['cost']['mean_submit_cost'])} "
        f"{currency} at the assumed prices, against the paper's {server['submit_fee']:g} {currency}.",
        "",
    ]
    return "\n".join(lines)


def plot(report: dict[str, Any], directory: Path) -> list[Path]:
    """``paper.accuracy.png``, ``paper.time.png`` and ``paper.cost.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    paths = []
    runs = report["accuracy"]["runs"]
    users = sorted({r["users"] for r in runs})
    partitions = [p for p in PARTITIONS if any(r["partition"] == p for r in runs)]
    figure, axes = plt.subplots(
        len(users), len(partitions), figsize=(5 * len(partitions), 3.6 * len(users)), squeeze=False
    )
    central = report["accuracy"]["central"]
    for i, count in enumerate(users):
        for j, partition in enumerate(partitions):
            ax = axes[i][j]
            run = next(r for r in runs if r["users"] == count and r["partition"] == partition)
            x = list(range(1, run["rounds"] + 1))
            ax.plot(
                x,
                [100 * a for a in run["accuracy_chain"]],
                marker="o",
                markersize=3,
                label="chain-based (on-chain fixed point)",
            )
            ax.plot(
                x,
                [100 * a for a in run["accuracy_plain"]],
                linestyle="--",
                label="plain FL (float, PyTorch)",
            )
            ax.scatter(
                [int(k) for k in central],
                [100 * v for v in central.values()],
                marker="*",
                s=90,
                color="black",
                zorder=3,
                label="centralized (same epochs)",
            )
            ax.set_title(f"{count} users, {'IID' if partition == 'iid' else 'Dirichlet(0.5)'}")
            ax.set_xlabel("round")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel("test accuracy (%)")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    path = directory / "paper.accuracy.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    paths.append(path)

    rows = [r for r in time_rows(report) if r["seconds_per_round"]]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for row in rows:
        left.plot(
            range(1, len(row["seconds_per_round"]) + 1),
            row["seconds_per_round"],
            marker="o",
            markersize=3,
            label=f"{row['mode']}, {row['users']} users",
        )
    left.set_yscale("log")
    left.set_xlabel("round")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_ylabel("seconds per round")
    left.set_title("time per round as rounds grow")
    left.grid(True, alpha=0.3, which="both")
    left.legend(fontsize=7)
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    width = 0.8 / max(1, len(modes))
    for k, mode in enumerate(modes):
        picked = [r for r in rows if r["mode"] == mode]
        positions = [users.index(r["users"]) + k * width for r in picked if r["users"] in users]
        right.bar(
            positions, [r["mean"] for r in picked if r["users"] in users], width=width, label=mode
        )
    right.set_xticks([i + width * (len(modes) - 1) / 2 for i in range(len(users))])
    right.set_xticklabels([f"{u} users" for u in users])
    right.set_yscale("log")
    right.set_ylabel("mean seconds per round")
    right.set_title("time per round as users grow")
    right.legend(fontsize=7)
    figure.tight_layout()
    path = directory / "paper.time.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    paths.append(path)

    cost = report["cost"]
    currency = cost["prices"]["currency"]
    figure, ax = plt.subplots(figsize=(7, 4.5))
    models = [1, 2, 5, 10, 100, 1_000, 10_000, 100_000, 1_000_000]
    fixed = server_cost(max(users), ServerCostModel(**cost["server_model"]))
    ax.plot(models, [fixed] * len(models), color="black", linewidth=2, label="server (fixed)")
    example = cost["paper_example"]
    ax.plot(
        models,
        [n * example["cost"] for n in models],
        color="grey",
        linestyle="--",
        label=f"the paper's case: {example['users']} users x {example['rounds']:,} rounds, per-tx prices",
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, row in enumerate(cost["models"]):
        m = next((t for t in row["targets"] if t["rounds"] is not None), None)
        if m is None:
            continue
        color = colors[k % len(colors)]
        label = f"{row['users']} users {row['partition']}, {100 * m['target']:.0f}%"
        ax.plot(
            models,
            [n * m["cost"] for n in models],
            color=color,
            label=f"chain, measured gas: {label}",
        )
        ax.plot(
            models,
            [n * m["paper_cost"] for n in models],
            color=color,
            linestyle=":",
            label=f"chain, paper's per-tx prices: {label}",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("models trained")
    ax.set_ylabel(f"cumulative cost ({currency})")
    ax.set_title(
        f"cost: {cost['prices']['gas_price_gwei']:g} gwei, 1 ETH = {cost['prices']['eth_price']:,.0f} {currency}"
    )
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=6, loc="lower right")
    figure.tight_layout()
    path = directory / "paper.cost.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    paths.append(path)
    return paths


# ---------------------------------------------------------------- main


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--rounds", type=int, nargs="+", default=[10, 30])
    parser.add_argument("--partitions", nargs="+", choices=PARTITIONS, default=list(PARTITIONS))
    parser.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--block-time", type=int, default=12, help="seconds per block")
    parser.add_argument(
        "--block-rounds", type=int, default=3, help="rounds of each block-time run (0: skip)"
    )
    parser.add_argument("--targets", type=float, nargs="+", default=[0.85, 0.90])
    parser.add_argument("--gas-price-gwei", type=float, default=Prices.gas_price_gwei)
    parser.add_argument(
        "--eth-price", type=float, default=Prices.eth_price, help="currency units per ETH"
    )
    parser.add_argument("--currency", default=Prices.currency)
    parser.add_argument("--server-cost", type=float, default=ServerCostModel.server_cost)
    parser.add_argument("--server-users", type=int, default=ServerCostModel.server_users)
    parser.add_argument("--submit-fee", type=float, default=ServerCostModel.submit_fee)
    parser.add_argument("--compute-fee", type=float, default=ServerCostModel.compute_fee)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite paper.md and the plots from the paper.json in --out; run nothing",
    )
    parser.add_argument("--block-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bar-position", type=int, default=1, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def render(directory: Path) -> int:
    """Rewrite ``paper.md`` and the plots from ``paper.json``."""
    report = json.loads((directory / "paper.json").read_text(encoding="utf-8"))
    plot(report, directory)
    text = markdown(report)
    (directory / "paper.md").write_text(text, encoding="utf-8")
    print(text)
    return 0 if report["accuracy"]["all_within_bar"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the reproduction and write its results; exit 1 when a cell misses the bar."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(arguments)
    if args.render_only:
        return render(args.out)
    if args.block_child is not None:
        return block_child(
            args.block_child,
            users=args.users[0],
            rounds=args.block_rounds,
            block_time=args.block_time,
            seed=args.seed,
            position=args.bar_position,
        )
    started = time.perf_counter()
    project = load_config()
    base = project.fl.with_overrides(dataset=DATASET, seed=args.seed, dirichlet_alpha=args.alpha)
    users = sorted(set(args.users))
    rounds = sorted(set(args.rounds))
    most = rounds[-1]
    prices = Prices(args.gas_price_gwei, args.eth_price, args.currency)
    server = ServerCostModel(args.server_cost, args.server_users, args.submit_fee, args.compute_fee)

    # Compile (or read the build cache) and load the data once, before any child starts.
    get_contract(CONTRACT_NAME)
    dataset = load_dataset(DATASET, test_fraction=base.test_fraction, seed=base.seed)

    with _state_dir(), tempfile.TemporaryDirectory(prefix="bench-paper-blocks-") as scratch:
        children: list[_Child] = []
        try:
            if args.block_rounds > 0:
                children = start_block_children(
                    users,
                    rounds=args.block_rounds,
                    block_time=args.block_time,
                    seed=args.seed,
                    directory=Path(scratch),
                )
            total = (
                sum(u * most for u in users) * len(args.partitions)
                + sum(most for _ in users)
                + len(rounds)
            )
            with tqdm(total=total, desc="paper", unit="step") as bar:
                tick = submission_ticker(bar)
                runs = []
                for partition in args.partitions:
                    for count in users:
                        bar.set_postfix_str(f"chain {count} users {partition}")
                        fl = base.with_overrides(clients=count, rounds=most, partition=partition)
                        result = chain_run(fl, block_time=0, project=project, progress=tick)
                        runs.append(run_summary(result, partition))
                plain_times = []
                for count in users:
                    bar.set_postfix_str(f"plain timing {count} users")
                    fl = base.with_overrides(clients=count, rounds=most, partition="iid")
                    plain_times.append(time_plain(fl, on_round=round_ticker(bar)))
                central: dict[int, float] = {}
                for count in rounds:
                    bar.set_postfix_str(f"centralized {count * base.epochs} epochs")
                    central[count] = run_centralized(
                        dataset,
                        epochs=count * base.epochs,
                        config=train_config(base),
                        seed=base.seed,
                    ).accuracy
                    bar.update(1)
                bar.set_postfix_str(f"waiting for the {args.block_time} s-block runs")
                blocks = collect_children(children, timeout=3600)
        finally:
            stop_children(children)

    cells = accuracy_cells(runs, rounds, central)
    cost_rows = []
    for run in runs:
        cost_rows.append(
            {
                "users": run["users"],
                "partition": run["partition"],
                "rounds_run": run["rounds"],
                "deploy_gas": run["deploy_gas"],
                "gas_per_round": run["gas_per_round"],
                "gas_per_round_mean": statistics.mean(run["gas_per_round"]),
                "gas_per_round_cost": gas_to_currency(
                    statistics.mean(run["gas_per_round"]), prices
                ),
                "targets": [
                    model_cost(
                        users=run["users"],
                        deploy_gas=run["deploy_gas"],
                        round_gas=run["gas_per_round"],
                        accuracies=run["accuracy_chain"],
                        target=target,
                        prices=prices,
                        server=server,
                    )
                    for target in sorted(args.targets)
                ],
            }
        )
    example_cost = paper_chain_cost(PAPER_USERS, PAPER_ROUNDS, server)
    # Mean gas of one submission (the round's closing one included), over the largest group.
    widest = max(cost_rows, key=lambda row: row["users"])
    submit_gas = widest["gas_per_round_mean"] / widest["users"]
    report: dict[str, Any] = {
        "command": " ".join([COMMAND, *arguments]),
        "seconds": round(time.perf_counter() - started, 1),
        "settings": {
            "dataset": DATASET,
            "num_weights": runs[0]["num_weights"],
            "epochs": base.epochs,
            "batch_size": base.batch_size,
            "learning_rate": base.learning_rate,
            "aggregation": base.contract.aggregation,
            "scale": base.fixed_point.scale,
            "max_abs": base.fixed_point.max_abs,
            "dirichlet_alpha": base.dirichlet_alpha,
            "seed": base.seed,
            "accuracy_chain": "anvil, instant mining",
        },
        "accuracy": {
            "bar_pp": BAR_PP,
            "rounds": rounds,
            "all_within_bar": all(c["within_bar"] for c in cells),
            "cells": cells,
            "central": {str(k): v for k, v in central.items()},
            "runs": runs,
            "note": f"cells for fewer rounds are read from the {most}-round run",
        },
        "time": {
            "block_time": args.block_time,
            "block_rounds": args.block_rounds,
            "plain": plain_times,
            "instant": [
                {"users": r["users"], "seconds_per_round": r["seconds_per_round"]}
                for r in runs
                if r["partition"] == "iid"
            ]
            or [{"users": r["users"], "seconds_per_round": r["seconds_per_round"]} for r in runs],
            "blocks": blocks,
            "note": (
                "submissions are sent one after the other from one process; the block-time runs "
                "ran in child processes at the same time as the other runs"
            ),
        },
        "cost": {
            "measured": ["gas", "rounds to each target accuracy"],
            "assumed": ["prices", "server_model"],
            "prices": {
                "gas_price_gwei": prices.gas_price_gwei,
                "eth_price": prices.eth_price,
                "currency": prices.currency,
            },
            "server_model": {
                "server_cost": server.server_cost,
                "server_users": server.server_users,
                "submit_fee": server.submit_fee,
                "compute_fee": server.compute_fee,
            },
            "models": cost_rows,
            "mean_submit_gas": round(submit_gas),
            "mean_submit_cost": gas_to_currency(submit_gas, prices),
            "paper_example": {
                "users": PAPER_USERS,
                "rounds": PAPER_ROUNDS,
                "target": PAPER_TARGET,
                "cost": example_cost,
                "server_cheaper_from_models": break_even_models(
                    example_cost, server_cost(PAPER_USERS, server)
                ),
            },
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    report["plots"] = [path.name for path in plot(report, args.out)]
    report["seconds"] = round(time.perf_counter() - started, 1)
    (args.out / "paper.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    text = markdown(report)
    (args.out / "paper.md").write_text(text, encoding="utf-8")
    print(text)
    return 0 if report["accuracy"]["all_within_bar"] else 1


if __name__ == "__main__":
    sys.exit(main())
