"""Latency benchmark: what the chain adds to a federated round on anvil, by block time.

Run: ``.venv/bin/python -m bench.latency`` (about 3 minutes: 3 clients x 3 rounds of the digits
model with instant mining, 2 s and 12 s blocks) or ``--quick`` (2 rounds, instant and 2 s blocks,
well under a minute). Writes ``bench/results/latency.json`` (``--out`` elsewhere).

Each setting gets its own anvil; the coordinator is deployed with instant mining, then the node is
switched to a block every N seconds (``evm_setIntervalMining``, the mining of ``--block-time N``)
so deployment does not wait for blocks. Each client is a :class:`~fl_client.client.Participant` in
a thread of its own with its own connection, doing what ``python -m fl_client client`` does:
read the round and the model, train, submit, poll until the round closes (``--poll`` seconds).

Per round: the wall time from the first client seeing the round open to the last client seeing it
closed, minus the longest local training of that round (clients train in parallel), is what the
chain added. The goal: at most one block time plus a small constant (``--constant``, 1 s) per
round; ``holds`` says whether every round met it.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    SendWarnings,
    Stopwatch,
    anvil_node,
    command_line,
    digits_deployment,
    machine,
    rpc,
    write_json,
)
from fl_client.chain import connect, contract_at, read_round
from fl_client.client import ContractView, Participant, simulation_secret
from fl_client.config import load_config
from fl_client.data import load_dataset, make_shards
from fl_client.training import TrainConfig

MODULE = "bench.latency"
BLOCK_TIMES = (0, 2, 12)
QUICK_BLOCK_TIMES = (0, 2)
CLIENTS = 3
ROUNDS = 3
QUICK_ROUNDS = 2
CONSTANT_S = 1.0
POLL_S = 0.2


@dataclass(frozen=True)
class ClientRound:
    """One client's view of one round (seconds since the setting started)."""

    round_number: int
    client: int
    seen_open: float
    train_seconds: float
    submitted: float
    seen_closed: float
    closed_it: bool


@dataclass(frozen=True)
class RoundLatency:
    """One round: its wall time, its longest training and what the chain added."""

    round_number: int
    wall_seconds: float
    max_train_seconds: float
    chain_seconds: float  # wall minus the longest training
    bound_seconds: float  # block time plus the constant
    holds: bool


def run_setting(
    block_time: int, *, clients: int, rounds: int, poll: float, constant: float
) -> dict[str, Any]:
    """One anvil with ``block_time`` (0: instant mining); ``clients`` x ``rounds``."""
    fl = load_config().fl.with_overrides(dataset="digits", clients=clients, rounds=rounds)
    dataset = load_dataset(fl.dataset, test_fraction=fl.test_fraction, seed=fl.seed)
    shards = make_shards(
        dataset, clients, scheme=fl.partition, alpha=fl.dirichlet_alpha, seed=fl.seed
    )
    config = TrainConfig(
        epochs=fl.epochs,
        batch_size=fl.batch_size,
        learning_rate=fl.learning_rate,
        algorithm=fl.algorithm,
    )
    with anvil_node() as node:
        owner = connect("anvil", url=node.url)
        contract = digits_deployment(owner, clients=clients, dataset=dataset)
        view = ContractView.read(contract)
        if block_time:
            rpc(owner, "evm_setIntervalMining", block_time)
        participants = []
        for index in range(clients):
            chain = connect("anvil", url=node.url)  # one connection per client, as per process
            participants.append(
                Participant(
                    chain=chain,
                    contract=contract_at(chain, str(contract.address)),
                    account=chain.accounts[1 + index],
                    client_id=index,
                    shard=shards[index],
                    num_features=dataset.num_features,
                    num_classes=dataset.num_classes,
                    train_config=config,
                    seed=fl.seed,
                    secret=simulation_secret(fl.seed, index),
                    view=view,
                )
            )
        records: list[ClientRound] = []
        errors: list[BaseException] = []
        lock = threading.Lock()
        start = threading.Barrier(clients)
        clock = Stopwatch()

        def client(participant: Participant) -> None:
            try:
                start.wait()
                seen = clock()
                for round_number in range(1, rounds + 1):
                    outcome = participant.step(round_number)
                    submitted = clock()
                    opened = participant.wait_for_close(
                        round_number, poll_interval=poll, timeout=300
                    )
                    closed = clock()
                    with lock:
                        records.append(
                            ClientRound(
                                round_number=round_number,
                                client=participant.client_id,
                                seen_open=seen,
                                train_seconds=0.0 if outcome is None else outcome.train_seconds,
                                submitted=submitted,
                                seen_closed=closed,
                                closed_it=outcome is not None and outcome.closed_round,
                            )
                        )
                    seen = closed
                    if opened != round_number + 1:
                        raise RuntimeError(f"expected round {round_number + 1}, got {opened}")
            except BaseException as exc:
                with lock:
                    errors.append(exc)

        threads = [threading.Thread(target=client, args=(p,)) for p in participants]
        with SendWarnings() as warnings:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        if errors:
            raise errors[0]
        final_round = read_round(contract).number
    latencies = []
    bound = block_time + constant
    for round_number in range(1, rounds + 1):
        views = [r for r in records if r.round_number == round_number]
        wall = max(r.seen_closed for r in views) - min(r.seen_open for r in views)
        train = max(r.train_seconds for r in views)
        added = wall - train
        latencies.append(
            RoundLatency(round_number, wall, train, added, bound, holds=added <= bound)
        )
    added_all = [r.chain_seconds for r in latencies]
    return {
        "block_time_s": block_time,
        "mining": "instant (a block per transaction)"
        if block_time == 0
        else f"a block every {block_time} s",
        "clients": clients,
        "rounds": rounds,
        "final_round": final_round,
        "median_chain_seconds": statistics.median(added_all),
        "max_chain_seconds": max(added_all),
        "median_wall_seconds": statistics.median(r.wall_seconds for r in latencies),
        "median_train_seconds": statistics.median(r.max_train_seconds for r in latencies),
        "bound_seconds": bound,
        "holds": all(r.holds for r in latencies),
        "send_retries": warnings.counts,
        "per_round": [asdict(r) for r in latencies],
        "per_client": [
            asdict(r) for r in sorted(records, key=lambda r: (r.round_number, r.client))
        ],
    }


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"python -m {MODULE}", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="2 rounds, instant and 2 s blocks")
    parser.add_argument(
        "--block-times",
        type=int,
        nargs="+",
        help=f"seconds per block, 0 for instant mining (default: {' '.join(map(str, BLOCK_TIMES))})",
    )
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--rounds", type=int, help=f"rounds per setting (default {ROUNDS})")
    parser.add_argument("--poll", type=float, default=POLL_S, help="seconds between round polls")
    parser.add_argument(
        "--constant",
        type=float,
        default=CONSTANT_S,
        help="seconds the chain may add beyond one block time",
    )
    parser.add_argument("--out", type=Path, help="JSON file (default bench/results/latency.json)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 when the goal holds in every setting, 1 otherwise."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(arguments)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    block_times = args.block_times or (QUICK_BLOCK_TIMES if args.quick else BLOCK_TIMES)
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else ROUNDS)
    started = time.perf_counter()
    context = machine()
    settings = []
    for block_time in block_times:
        result = run_setting(
            block_time, clients=args.clients, rounds=rounds, poll=args.poll, constant=args.constant
        )
        settings.append(result)
        print(
            f"block time {block_time:>2} s: chain adds {result['median_chain_seconds']:.2f} s per "
            f"round (median; max {result['max_chain_seconds']:.2f} s, bound {result['bound_seconds']:.1f} s) "
            f"-> {'holds' if result['holds'] else 'does not hold'}"
        )
        sys.stdout.flush()
    data = {
        "command": command_line(MODULE, arguments),
        "goal": "per round, the chain adds at most one block time plus a small constant",
        "constant_seconds": args.constant,
        "poll_seconds": args.poll,
        "dataset": "digits (650 weights)",
        "holds": all(s["holds"] for s in settings),
        "medians": {str(s["block_time_s"]): s["median_chain_seconds"] for s in settings},
        "settings": settings,
        "machine": {**context, "load_average_at_end": list(os.getloadavg())},
        "seconds": round(time.perf_counter() - started, 1),
    }
    path = write_json("latency", data, args.out)
    print(f"wrote {path}")
    return 0 if data["holds"] else 1


if __name__ == "__main__":
    sys.exit(main())
