"""Reproduce the seed paper's experiments (its Figures 6 to 9) on MNIST 5k: accuracy, time, cost.

Run: ``.venv/bin/python -m bench.paper`` (about 19 minutes on a loaded 2-core machine;
``--quick``: 5 users, IID, 2 and 5 rounds, 2 rounds with 12 s blocks, about 4 minutes). Writes
``bench/results/paper.json``, ``paper.md`` (the tables the README quotes) and the plots
``paper.accuracy.png``, ``paper.time.png`` and ``paper.cost.png``; exits 1 when an accuracy cell
misses the bar. ``--render-only`` rewrites the table and plots from the JSON.

The workload is the paper's: softmax regression on MNIST 5k (784 -> 10, 7,850 weights; E=5,
B=10, lr 0.3, plain-mean aggregation, seed 0), 5 and 10 users, 10 and 30 rounds, IID and
Dirichlet(0.5) shards. Every chain-based run is :func:`~fl_client.simulation.run_simulation` on
its own anvil (``bench.common.anvil_node``): one ``FLCoordinator`` (round pipeline v2, the direct
path: each user submits from its own account and is paid on submit), the users of a round sending
their transactions at once (``send_all``: one thread per user), and an account that takes no part
closing each round segment by segment.

- Accuracy (Fig. 6): for each user count and partition, one chain-based run (anvil, instant
  mining) of the largest round count, with the plain federated run beside it (the simulation's
  own reference: float FedAvg in PyTorch, same task, seeds, shards, initial model and
  hyper-parameters), and centralized training with the same epoch budget (rounds x local epochs).
  The smaller round counts are read from the same run: client selection and each client's
  training seed depend only on (seed, client, round), so the first 10 rounds of a 30-round run
  are exactly the 10-round run. Bar: chain-based within 0.5 pp of plain FL in every cell.
- Time (Figs. 7-8): wall time per round of the chain-based runs on anvil with instant mining
  (the IID accuracy runs) and with 12 s blocks (short runs in child processes, started once the
  timed runs are done and run alongside the untimed rest, since they mostly wait for blocks), and
  of the plain run (the simulation's reference, which it runs alone before the chain rounds).
  With block times a round needs one block for the submissions and one for each segment close
  (the closer sends them one after the other); the blocks are counted from the receipts.
- Cost (Fig. 9): measured gas per round, split into the users' own submissions and the closes,
  and per trained model (deployment: the five units, the coordinator and its initial model; then
  the rounds the chain-based run needs to reach each target accuracy), priced at an assumed gas
  price and ETH price, beside the paper's server cost model and its per-transaction prices, with
  the number of models from which the server is cheaper. The relayed path (users sign, one
  relayer registers their updates and closes; users pay nothing) is measured on short runs
  (``--relayed-rounds``) whose models are checked, by hash, to be those of the direct run; its
  rounds to a target are the direct run's, each priced at its measured mean gas per round.

Wall times depend on the machine and its load (the report states the load at the start and the
end, and calls the wall times provisional when other work shared the CPUs); accuracies and gas
do not.
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
from fl_client.chain import (
    CONTRACT_NAME,
    Chain,
    connect,
    contract_at,
    deploy_units,
)
from fl_client.compile import get_contract
from fl_client.config import FLConfig, ProjectConfig, load_config
from fl_client.data import load_dataset
from fl_client.federated import run_centralized
from fl_client.simulation import SimulationResult, run_simulation
from fl_client.simulation import train_config as train_config

MODULE = "bench.paper"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATASET = "mnist5k"
BAR_PP = 0.5
PARTITIONS = ("iid", "dirichlet")
# The paper's figures, quoted beside ours.
PAPER_SECONDS_ADDED_PER_ROUND = (15.0, 18.0)
PAPER_BLOCK_TIME = (12.0, 18.0)  # the Ethereum block time the paper names as the cause
PAPER_MODEL_COST = 2_000_000.0  # KRW, "about", one 85% CIFAR-10 model on the chain
PAPER_SERVER_CHEAPER_FROM = 3  # models
PAPER_CIFAR_ROUNDS = ((0.80, 280), (0.82, 630), (0.85, 2000))  # 100 users, target -> rounds
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


@dataclass(frozen=True)
class ChainRun:
    """A chain-based run: the simulation's result, the units' deployment gas and, per round, the
    gas and blocks of its transactions (from the receipts)."""

    result: SimulationResult
    units_gas: int
    rounds: tuple[dict[str, int], ...]
    plain_seconds: tuple[float, ...] | None  # the simulation's plain reference, round by round


def chain_run(
    fl: FLConfig,
    *,
    block_time: int,
    project: ProjectConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> ChainRun:
    """Start an anvil (``block_time`` 0: instant mining), run the simulation on it, read its
    receipts, stop it."""
    project = project or load_config()
    clock = _RoundClock()
    started: list[float] = []

    def watch(message: str) -> None:
        # The simulation runs its plain reference right after the deployment: time it there.
        if message.startswith("deployed at"):
            started.append(time.perf_counter())
        if progress is not None:
            progress(message)

    with anvil_node(block_time=block_time, accounts=max(20, fl.clients + 2)) as node:
        chain = connect("anvil", config=project, url=node.url)
        before = len(chain.gas_used)
        deploy_units(chain, sender=chain.accounts[0])
        units_gas = sum(chain.gas_used[before:])
        with clock.attached():
            result = run_simulation(
                fl, project=project, chain=chain, check_accuracy=False, progress=watch
            )
        users = {a.lower() for a in chain.accounts[1 : 1 + fl.clients]}
        contract = contract_at(chain, result.contract_address)
        rounds = round_receipts(chain, contract, len(result.rounds), users)
    for report, row in zip(result.rounds, rounds, strict=True):
        if report.gas_used != row["users_gas"] + row["others_gas"]:
            raise RuntimeError(
                f"round {report.round_number}: the receipts sum to "
                f"{row['users_gas'] + row['others_gas']} gas, the simulation counted "
                f"{report.gas_used}"
            )
    plain = None
    if len(started) == 1 and len(clock.stamps) >= fl.rounds:
        marks = [started[0], *clock.stamps[: fl.rounds]]
        plain = tuple(b - a for a, b in itertools.pairwise(marks))
    return ChainRun(result, units_gas, tuple(rounds), plain)


def round_receipts(
    chain: Chain, contract: Contract, rounds: int, users: set[str]
) -> list[dict[str, int]]:
    """Per round, the gas of the coordinator's transactions sent by ``users`` and by anyone else
    (the closer, a relayer), how many there were and in how many blocks. Round ``r`` spans the
    blocks after the one that opened it up to the one that opened round ``r + 1``."""
    opened = {
        int(event["args"]["round"]): int(event["blockNumber"])
        for event in contract.events.RoundOpened().get_logs(from_block=0)
    }
    address = str(contract.address).lower()
    rows = []
    for number in range(1, rounds + 1):
        users_gas = others_gas = transactions = 0
        blocks = set()
        for block in range(opened[number] + 1, opened[number + 1] + 1):
            for receipt in chain.w3.eth.get_block_receipts(block):
                if str(receipt["to"] or "").lower() != address:
                    continue
                gas = int(receipt["gasUsed"])
                if str(receipt["from"]).lower() in users:
                    users_gas += gas
                else:
                    others_gas += gas
                transactions += 1
                blocks.add(block)
        rows.append(
            {
                "users_gas": users_gas,
                "others_gas": others_gas,
                "transactions": transactions,
                "blocks": len(blocks),
            }
        )
    return rows


class _RoundClock(logging.Handler):
    """Stamps the end of each round of :func:`run_task_federated` (it logs one line a round on
    ``fl_client.federated``, and nothing else there does)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.stamps: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("round "):
            self.stamps.append(time.perf_counter())

    @contextmanager
    def attached(self) -> Iterator[None]:
        """Listen to ``fl_client.federated`` while the block runs."""
        logger = logging.getLogger("fl_client.federated")
        previous = logger.level
        logger.addHandler(self)
        logger.setLevel(logging.INFO)
        try:
            yield
        finally:
            logger.removeHandler(self)
            logger.setLevel(previous)


def plain_timing(run: ChainRun) -> dict[str, Any]:
    """The plain run's time per round: the simulation's reference run (float FedAvg of the same
    task, seeds and shards, with a test after every round), which it runs alone before the chain
    rounds."""
    result = run.result
    seconds = list(run.plain_seconds or ())
    return {
        "users": result.clients,
        "partition": result.settings.get("partition"),
        "rounds": len(seconds),
        "seconds_per_round": seconds,
        "source": "the simulation's plain reference run, per round (log time stamps)",
        "final_accuracy": result.rounds[-1].accuracy_plain,
    }


def run_summary(run: ChainRun, partition: str) -> dict[str, Any]:
    """What the report keeps of a chain-based run."""
    result = run.result
    return {
        "users": result.clients,
        "partition": partition,
        "rounds": len(result.rounds),
        "initial_accuracy": result.initial_accuracy,
        "accuracy_chain": [r.accuracy_chain for r in result.rounds],
        "accuracy_plain": [r.accuracy_plain for r in result.rounds],
        "gap_pp": [r.gap_pp for r in result.rounds],
        "gas_per_round": [r.gas_used for r in result.rounds],
        "users_gas_per_round": [r["users_gas"] for r in run.rounds],
        "closes_gas_per_round": [r["others_gas"] for r in run.rounds],
        "transactions_per_round": [r["transactions"] for r in run.rounds],
        "model_hashes": [r.model_hash for r in result.rounds],
        "seconds_per_round": [r.seconds for r in result.rounds],
        "exact_average": all(r.exact_average for r in result.rounds),
        "clipped": sum(r.clipped for r in result.rounds),
        "deploy_gas": run.units_gas + result.deploy_gas,
        "units_gas": run.units_gas,
        "coordinator_gas": result.deploy_gas,
        "num_weights": result.num_weights,
        "num_segments": result.num_segments,
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


def relayed_row(run: ChainRun, direct: dict[str, Any]) -> dict[str, Any]:
    """A relayed run beside the direct run of the same users: its gas, and whether its models
    are the direct run's (they must be: the same updates, averaged the same way)."""
    result = run.result
    hashes = [r.model_hash for r in result.rounds]
    per_round = [r.gas_used for r in result.rounds]
    return {
        "users": result.clients,
        "partition": direct["partition"],
        "rounds_run": len(result.rounds),
        "relayed": [r.relayed for r in result.rounds],
        "same_models_as_direct": hashes == direct["model_hashes"][: len(hashes)],
        "deploy_gas": run.units_gas + result.deploy_gas,
        "gas_per_round": per_round,
        "gas_per_round_mean": statistics.mean(per_round),
        "users_gas_per_round": [r["users_gas"] for r in run.rounds],
        "relayer_gas_per_round": [r["others_gas"] for r in run.rounds],
        "gas_per_weight_per_user": statistics.mean(per_round) / result.clients / result.num_weights,
    }


def relayed_cost(
    row: dict[str, Any],
    direct: dict[str, Any],
    *,
    targets: Sequence[float],
    prices: Prices,
    server: ServerCostModel,
) -> list[dict[str, Any]]:
    """The relayed path's cost per model: the direct run's rounds to each target, each priced at
    the relayed run's mean gas per round."""
    rounds = len(direct["accuracy_chain"])
    return [
        model_cost(
            users=row["users"],
            deploy_gas=row["deploy_gas"],
            round_gas=[round(row["gas_per_round_mean"])] * rounds,
            accuracies=direct["accuracy_chain"],
            target=target,
            prices=prices,
            server=server,
        )
        for target in targets
    ]


# ---------------------------------------------------------------- block times, in a child


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
        run = chain_run(fl, block_time=block_time, progress=submission_ticker(bar))
        result = run.result
        record: dict[str, Any] = {
            "users": users,
            "rounds": rounds,
            "block_time": block_time,
            "seconds_per_round": [r.seconds for r in result.rounds],
            "setup_seconds": result.seconds - sum(r.seconds for r in result.rounds),
            "blocks_per_round": [r["blocks"] for r in run.rounds],
            "transactions_per_round": [r["transactions"] for r in run.rounds],
            "num_segments": result.num_segments,
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
            MODULE,
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
                "blocks": None,
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
                "blocks": None,
            }
        )
    for run in report["time"]["blocks"]:
        mode = f"chain, anvil {report['time']['block_time']} s blocks"
        if "error" in run:
            rows.append(
                {
                    "mode": mode,
                    "users": run["users"],
                    "seconds_per_round": [],
                    "mean": None,
                    "added": None,
                    "blocks": None,
                    "error": run["error"],
                }
            )
            continue
        mean = statistics.mean(run["seconds_per_round"])
        rows.append(
            {
                "mode": mode,
                "users": run["users"],
                "seconds_per_round": run["seconds_per_round"],
                "mean": mean,
                "added": mean - plain[run["users"]] if run["users"] in plain else None,
                "blocks": statistics.mean(run["blocks_per_round"]),
            }
        )
    return rows


def side_by_side(report: dict[str, Any]) -> list[dict[str, str]]:
    """The paper's figures (as the brief quotes them) beside ours, one row per claim; ours are
    computed from the report, nothing is copied in."""
    currency = report["cost"]["prices"]["currency"]
    server = report["cost"]["server_model"]
    cells = report["accuracy"]["cells"]
    worst = max(cells, key=lambda c: abs(c["gap_pp"]))
    rows = [
        {
            "figure": "accuracy, chain-based vs ordinary FL (Fig. 6)",
            "paper": "equal, differences negligible (MNIST; 5 or 10 users x 10 or 30 rounds)",
            "ours": (
                f"largest gap between chain and plain {abs(worst['gap_pp']):.2f} pp over "
                f"{len(cells)} cells "
                f"({worst['users']} users, {worst['rounds']} rounds, {worst['partition']}); "
                f"{sum(c['within_bar'] for c in cells)}/{len(cells)} within {BAR_PP} pp"
            ),
        }
    ]
    timed = [r for r in time_rows(report) if r["added"] is not None]
    blocks = [r for r in timed if "blocks" in r["mode"] and r["blocks"] is not None]
    instant = [r for r in timed if "instant" in r["mode"]]
    low, high = PAPER_SECONDS_ADDED_PER_ROUND
    block_low, block_high = PAPER_BLOCK_TIME
    if blocks:
        rows.append(
            {
                "figure": "time added per round by the chain (Figs. 7-8)",
                "paper": (
                    f"{low:.0f}-{high:.0f} s, one Ethereum block time ({block_low:.0f}-"
                    f"{block_high:.0f} s)"
                ),
                "ours": "; ".join(
                    f"{r['users']} users: {r['added']:+.1f} s with "
                    f"{report['time']['block_time']} s blocks ({r['blocks']:g} blocks a round)"
                    for r in blocks
                ),
            }
        )
    if instant:
        rows.append(
            {
                "figure": "time added per round, instant mining (no block wait)",
                "paper": "-",
                "ours": "; ".join(f"{r['users']} users: {r['added']:+.1f} s" for r in instant),
            }
        )
    transactions = report["cost"]["transactions"]
    rows += [
        {
            "figure": "cost of one submit transaction (Fig. 9)",
            "paper": f"{server['submit_fee']:g} {currency}",
            "ours": "; ".join(
                f"{t['users']} users: {t['submission_gas']:,.0f} gas = "
                f"{_money(t['submission_cost'])} {currency}"
                for t in transactions
            ),
        },
        {
            "figure": "cost of a round's contract computation",
            "paper": f"{server['compute_fee']:g} {currency}",
            "ours": "; ".join(
                f"{t['users']} users: {t['closes_gas_per_round']:,.0f} gas in {t['segments']} "
                f"close(s) = {_money(t['closes_cost'])} {currency}"
                for t in transactions
            ),
        },
        {
            "figure": "rounds to the target accuracy",
            "paper": "CIFAR-10, 100 users: "
            + ", ".join(f"{n:,} rounds to {100 * a:.0f}%" for a, n in PAPER_CIFAR_ROUNDS),
            "ours": "; ".join(
                f"{m['users']} users {m['partition']}: "
                + ", ".join(
                    f"{100 * t['target']:.0f}% in {t['rounds']}"
                    if t["rounds"] is not None
                    else f"{100 * t['target']:.0f}% not reached in {m['rounds_run']}"
                    for t in m["targets"]
                )
                for m in report["cost"]["models"]
            ),
        },
    ]
    reached = [
        (m, t) for m in report["cost"]["models"] for t in m["targets"] if t["rounds"] is not None
    ]
    if reached:
        rows += [
            {
                "figure": "cost of one trained model on the chain",
                "paper": (
                    f"about {PAPER_MODEL_COST:,.0f} {currency} (CIFAR-10 to 85%, 100 users, "
                    f"{PAPER_ROUNDS:,} rounds, per-transaction prices)"
                ),
                "ours": "; ".join(
                    f"{m['users']} users {m['partition']} to {100 * t['target']:.0f}%: "
                    f"{_money(t['cost'])} {currency} (measured gas)"
                    for m, t in reached
                ),
            },
            {
                "figure": "the server is cheaper from",
                "paper": f"{PAPER_SERVER_CHEAPER_FROM} models",
                "ours": "; ".join(
                    f"{m['users']} users {m['partition']} to {100 * t['target']:.0f}%: "
                    f"{t['server_cheaper_from_models']:,} model(s)"
                    for m, t in reached
                ),
            },
        ]
    return rows


def _partition(name: str, alpha: float) -> str:
    return "IID" if name == "iid" else f"Dirichlet({alpha:g})"


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
        f"lr={settings['learning_rate']}, plain-mean aggregation, seed {settings['seed']}; round "
        "pipeline v2, direct path). "
        f"Command: `{report['command']}`; wall time {report['seconds'] / 60:.1f} min.",
        "",
        "### The paper's figures beside ours",
        "",
        "The paper's (as the brief quotes them: MNIST and CIFAR-10, Ethereum, prices in KRW) and "
        "ours (MNIST 5k on anvil, gas priced at the assumed prices below; computed from the "
        "measurements of this run).",
        "",
        "| figure | the paper | ours |",
        "|---|---|---|",
        *(f"| {r['figure']} | {r['paper']} | {r['ours']} |" for r in side_by_side(report)),
        "",
        "### Accuracy (Fig. 6)",
        "",
        f"Test accuracy (%) after the given number of rounds. Chain: on-chain fixed-point FedAvg "
        f"(anvil, instant mining); plain: float FedAvg in PyTorch, same task, seeds, shards, "
        f"initial model and hyper-parameters; central: one model on all the training data for "
        f"rounds x {settings['epochs']} epochs. {shared}Bar: |chain - plain| <= {BAR_PP} pp: "
        f"**{'met' if met == len(cells) else 'missed'} in {met}/{len(cells)} cells**.",
        "",
        "| users | rounds | partition | chain % | plain % | central % | chain - plain (pp) "
        "| within 0.5 pp |",
        "|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for c in cells:
        lines.append(
            f"| {c['users']} | {c['rounds']} | "
            f"{_partition(c['partition'], settings['dirichlet_alpha'])} | {_pct(c['chain'])} | "
            f"{_pct(c['plain'])} | {_pct(c['central'])} | {c['gap_pp']:+.2f} | "
            f"{'yes' if c['within_bar'] else '**no**'} |"
        )
    block_time = report["time"]["block_time"]
    lines += [
        "",
        "### Time per round (Figs. 7-8)",
        "",
        "Measured wall time per round (s): training of every user, their submissions (sent at "
        "once, one thread per user), the closes and the test of the new model. Plain FL: the "
        "simulation's own reference run (`run_task_federated`, which it runs alone before the "
        "chain rounds) of the IID accuracy runs; instant mining: the IID accuracy runs; "
        f"{block_time} s blocks: short runs ({report['time']['block_rounds']} rounds each) in "
        "child processes started after the timed runs. With block times a round takes one block "
        "for the submissions and one for each segment close, sent one after the other (blocks "
        "counted from the receipts). Nothing extrapolated. The paper: chain-based adds "
        f"{PAPER_SECONDS_ADDED_PER_ROUND[0]:.0f}-{PAPER_SECONDS_ADDED_PER_ROUND[1]:.0f} s per round "
        "(one Ethereum block time). " + machine_note(report["machine"]),
        "",
        "| mode | users | rounds | s / round (mean) | s / round (each, or min .. max) "
        "| blocks / round | added vs plain (s) |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for row in time_rows(report):
        if "error" in row:
            lines.append(
                f"| {row['mode']} | {row['users']} | - | - | failed: {row['error']} | - | - |"
            )
            continue
        added = "-" if row["added"] is None else f"{row['added']:+.2f}"
        blocks = "-" if row["blocks"] is None else f"{row['blocks']:g}"
        lines.append(
            f"| {row['mode']} | {row['users']} | {len(row['seconds_per_round'])} | "
            f"{row['mean']:.2f} | {_series(row['seconds_per_round'])} | {blocks} | {added} |"
        )
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
    cost = report["cost"]
    lines += [
        "",
        "### Cost (Fig. 9)",
        "",
        f"Measured: gas (anvil receipts, Prague rules). Assumed: gas price "
        f"{prices['gas_price_gwei']:g} gwei, 1 ETH = {prices['eth_price']:,.0f} {currency}; the "
        f"paper's server cost model: a server costs {server['server_cost']:,.0f} {currency} and "
        f"serves ~{server['server_users']} users (any number of models), versus "
        f"{server['submit_fee']:g} {currency} per submit transaction + {server['compute_fee']:g} "
        f"{currency} per round's contract computation.",
        "",
        "Per transaction, beside the paper's prices (means over the IID runs; a user's submission "
        "is one transaction, a round's closes one per segment):",
        "",
        "| users | segments | gas / submission | gas / weight / user (round) | closes gas / round "
        f"| {currency} / submission | {currency} / round's closes | paper: {currency} / submit "
        f"| paper: {currency} / computation |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in cost["transactions"]:
        lines.append(
            f"| {row['users']} | {row['segments']} | {row['submission_gas']:,.0f} | "
            f"{row['gas_per_weight_per_user']:.1f} | {row['closes_gas_per_round']:,.0f} | "
            f"{_money(row['submission_cost'])} | {_money(row['closes_cost'])} | "
            f"{server['submit_fee']:g} | {server['compute_fee']:g} |"
        )
    lines += [
        "",
        "Per trained model: the deployment (the five units, the coordinator and its initial model; "
        "the units, "
        f"{cost['models'][0]['units_gas']:,} gas, are deployed once per chain and reused by later "
        "coordinators) + the rounds the chain-based run needs to reach the target. "
        '"Server cheaper from": the number of models from which the server costs less.',
        "",
        "| users | partition | gas / round | deploy gas | target | rounds | gas / model "
        f"| ETH / model | {currency} / model (measured gas) | server cheaper from (models) "
        f"| break-even gas price (gwei) | {currency} / model (paper's per-tx prices) "
        "| server cheaper from (paper's prices) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in cost["models"]:
        partition = "IID" if row["partition"] == "iid" else "Dirichlet"
        for m in row["targets"]:
            head = (
                f"| {row['users']} | {partition} | {row['gas_per_round_mean']:,.0f} | "
                f"{row['deploy_gas']:,} | {100 * m['target']:.0f}% | "
            )
            if m["rounds"] is None:
                lines.append(
                    head + f"not reached in {row['rounds_run']} | - | - | - | - | - | - | - |"
                )
                continue
            lines.append(
                head + f"{m['rounds']} | {m['gas']:,} | {m['eth']:.3f} | {_money(m['cost'])} | "
                f"{m['server_cheaper_from_models']:,} | {m['break_even_gas_price_gwei']:.2f} | "
                f"{_money(m['paper_cost'])} | {m['server_cheaper_from_models_paper_prices']:,} |"
            )
    relayed = cost.get("relayed", [])
    if relayed:
        lines += [
            "",
            "The relayed path (every user signs its update, one relayer registers them and sends "
            "the closes; the users pay no gas), measured over "
            f"{relayed[0]['rounds_run']} rounds, IID; a model needs the direct run's rounds, each "
            "priced at the relayed run's mean gas per round:",
            "",
            "| users | same models as direct | gas / round | gas / weight / user | deploy gas "
            f"| target | rounds | gas / model | {currency} / model | server cheaper from (models) "
            "| break-even gas price (gwei) |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in relayed:
            for m in row["targets"]:
                head = (
                    f"| {row['users']} | {'yes' if row['same_models_as_direct'] else '**no**'} | "
                    f"{row['gas_per_round_mean']:,.0f} | {row['gas_per_weight_per_user']:.1f} | "
                    f"{row['deploy_gas']:,} | {100 * m['target']:.0f}% | "
                )
                if m["rounds"] is None:
                    lines.append(head + "not reached | - | - | - | - |")
                    continue
                lines.append(
                    head + f"{m['rounds']} | {m['gas']:,} | {_money(m['cost'])} | "
                    f"{m['server_cheaper_from_models']:,} | {m['break_even_gas_price_gwei']:.2f} |"
                )
    example = cost["paper_example"]
    lines += [
        "",
        f"The paper's own case by its cost model: {example['users']} users x "
        f"{example['rounds']:,} rounds ({example['target']}) = {_money(example['cost'])} "
        f"{currency} per model; the server is cheaper from "
        f"{example['server_cheaper_from_models']} models on (the paper: about 2,000,000 KRW, from "
        f"three models on). One direct submission of our {settings['num_weights']:,} weights "
        f"costs {cost['mean_submit_gas']:,} gas = {_money(cost['mean_submit_cost'])} {currency} at "
        f"the assumed prices, against the paper's {server['submit_fee']:g} {currency}.",
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
    for k, row in enumerate(cost.get("relayed", []), start=len(cost["models"])):
        m = next((t for t in row["targets"] if t["rounds"] is not None), None)
        if m is None:
            continue
        ax.plot(
            models,
            [n * m["cost"] for n in models],
            color=colors[k % len(colors)],
            linestyle="-.",
            label=f"relayed, measured gas: {row['users']} users IID, {100 * m['target']:.0f}%",
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
    parser.add_argument(
        "--relayed-rounds", type=int, default=2, help="rounds of each relayed run (0: skip)"
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
    parser.add_argument(
        "--quick",
        action="store_true",
        help="5 users, IID, 2 and 5 rounds, 2 block-time and 2 relayed rounds (a smoke run)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite paper.md and the plots from the paper.json in --out; run nothing",
    )
    parser.add_argument("--block-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bar-position", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.users, args.rounds, args.partitions = [5], [2, 5], ["iid"]
        args.block_rounds, args.relayed_rounds = 2, 2
    return args


def render(directory: Path) -> int:
    """Rewrite ``paper.md`` and the plots from ``paper.json``."""
    report = json.loads((directory / "paper.json").read_text(encoding="utf-8"))
    plot(report, directory)
    text = markdown(report)
    (directory / "paper.md").write_text(text, encoding="utf-8")
    print(text)
    return 0 if report["accuracy"]["all_within_bar"] else 1


def transaction_rows(
    runs: Sequence[dict[str, Any]], prices: Prices, num_weights: int
) -> list[dict[str, Any]]:
    """Per user count (IID runs, else all): the mean gas of one submission and of a round's
    closes, priced."""
    rows = []
    for count in sorted({r["users"] for r in runs}):
        picked = [r for r in runs if r["users"] == count and r["partition"] == "iid"] or [
            r for r in runs if r["users"] == count
        ]
        submission = statistics.mean(g / count for r in picked for g in r["users_gas_per_round"])
        closes = statistics.mean(g for r in picked for g in r["closes_gas_per_round"])
        total = statistics.mean(g for r in picked for g in r["gas_per_round"])
        rows.append(
            {
                "users": count,
                "segments": picked[0]["num_segments"],
                "submission_gas": submission,
                "closes_gas_per_round": closes,
                "gas_per_weight_per_user": total / count / num_weights,
                "submission_cost": gas_to_currency(submission, prices),
                "closes_cost": gas_to_currency(closes, prices),
            }
        )
    return rows


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
    watch = Stopwatch()
    project = load_config()
    base = project.fl.with_overrides(dataset=DATASET, seed=args.seed, dirichlet_alpha=args.alpha)
    users = sorted(set(args.users))
    rounds = sorted(set(args.rounds))
    most = rounds[-1]
    targets = sorted(args.targets)
    prices = Prices(args.gas_price_gwei, args.eth_price, args.currency)
    server = ServerCostModel(args.server_cost, args.server_users, args.submit_fee, args.compute_fee)
    started_on = machine()
    contracts = contracts_fingerprint()

    # Compile (or read the build cache) and load the data once, before any child starts.
    get_contract(CONTRACT_NAME)
    dataset = load_dataset(DATASET, test_fraction=base.test_fraction, seed=base.seed)

    with tempfile.TemporaryDirectory(prefix="bench-paper-blocks-") as scratch:
        children: list[_Child] = []
        try:
            total = (
                sum(u * most for u in users) * len(args.partitions)
                + (len(users) if args.relayed_rounds > 0 else 0)
                + len(rounds)
            )
            with tqdm(total=total, desc="paper", unit="step") as bar:
                tick = submission_ticker(bar)
                runs = []
                plain_times: list[dict[str, Any]] = []
                for partition in args.partitions:
                    for count in users:
                        bar.set_postfix_str(f"chain {count} users {partition}")
                        fl = base.with_overrides(clients=count, rounds=most, partition=partition)
                        run = chain_run(fl, block_time=0, project=project, progress=tick)
                        runs.append(run_summary(run, partition))
                        if partition == args.partitions[0]:
                            plain_times.append(plain_timing(run))
                    if partition == args.partitions[0] and args.block_rounds > 0:
                        # The block-time runs start once the timed runs (the first partition's:
                        # their plain reference and instant-mining rounds) are done, so that
                        # their start-up does not slow those; they overlap the untimed rest.
                        children = start_block_children(
                            users,
                            rounds=args.block_rounds,
                            block_time=args.block_time,
                            seed=args.seed,
                            directory=Path(scratch),
                        )
                relayed = []
                for count in users if args.relayed_rounds > 0 else []:
                    bar.set_postfix_str(f"relayed {count} users")
                    direct = next(
                        (r for r in runs if r["users"] == count and r["partition"] == "iid"),
                        next(r for r in runs if r["users"] == count),
                    )
                    fl = base.with_overrides(
                        clients=count,
                        relayed_clients=count,
                        rounds=min(args.relayed_rounds, most),
                        partition=direct["partition"],
                    )
                    run = chain_run(fl, block_time=0, project=project, progress=tick)
                    row = relayed_row(run, direct)
                    row["targets"] = relayed_cost(
                        row, direct, targets=targets, prices=prices, server=server
                    )
                    relayed.append(row)
                    bar.update(1)
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
    for run_record in runs:
        cost_rows.append(
            {
                "users": run_record["users"],
                "partition": run_record["partition"],
                "rounds_run": run_record["rounds"],
                "deploy_gas": run_record["deploy_gas"],
                "units_gas": run_record["units_gas"],
                "coordinator_gas": run_record["coordinator_gas"],
                "gas_per_round": run_record["gas_per_round"],
                "gas_per_round_mean": statistics.mean(run_record["gas_per_round"]),
                "gas_per_round_cost": gas_to_currency(
                    statistics.mean(run_record["gas_per_round"]), prices
                ),
                "targets": [
                    model_cost(
                        users=run_record["users"],
                        deploy_gas=run_record["deploy_gas"],
                        round_gas=run_record["gas_per_round"],
                        accuracies=run_record["accuracy_chain"],
                        target=target,
                        prices=prices,
                        server=server,
                    )
                    for target in targets
                ],
            }
        )
    example_cost = paper_chain_cost(PAPER_USERS, PAPER_ROUNDS, server)
    num_weights = runs[0]["num_weights"]
    transactions = transaction_rows(runs, prices, num_weights)
    widest = transactions[-1]
    report: dict[str, Any] = {
        "command": command_line(MODULE, arguments),
        "machine": {**started_on, "load_average_at_end": list(os.getloadavg())},
        "contracts": contracts,
        "seconds": round(watch(), 1),
        "settings": {
            "dataset": DATASET,
            "num_weights": num_weights,
            "epochs": base.epochs,
            "batch_size": base.batch_size,
            "learning_rate": base.learning_rate,
            "aggregation": base.contract.aggregation,
            "scale": base.fixed_point.scale,
            "max_abs": base.fixed_point.max_abs,
            "dirichlet_alpha": base.dirichlet_alpha,
            "seed": base.seed,
            "users": users,
            "rounds": rounds,
            "partitions": list(args.partitions),
            "path": "direct (each user submits from its own account)",
            "accuracy_chain": "anvil, instant mining",
            "quick": args.quick,
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
                "a round's users send their transactions at once (one thread per user), the "
                "closer its segment closes one after the other; the block-time runs ran in child "
                "processes started once the timed runs were done, alongside the untimed rest"
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
            "transactions": transactions,
            "models": cost_rows,
            "relayed": relayed,
            "mean_submit_gas": round(widest["submission_gas"]),
            "mean_submit_cost": widest["submission_cost"],
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
    report["contracts_changed_during_run"] = contracts_fingerprint() != contracts
    report["seconds"] = round(watch(), 1)
    write_json("paper", report, args.out / "paper.json")
    text = markdown(report)
    (args.out / "paper.md").write_text(text, encoding="utf-8")
    print(text)
    return 0 if report["accuracy"]["all_within_bar"] else 1


if __name__ == "__main__":
    sys.exit(main())
