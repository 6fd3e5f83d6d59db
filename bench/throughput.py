"""Throughput benchmark: how fast one round of 10, 50 and 100 clients fills up, anvil vs embedded.

Run: ``.venv/bin/python -m bench.throughput`` (about 2 minutes) or ``--quick`` (10 and 20 clients,
one repeat). Writes ``bench/results/throughput.json`` (``--out`` elsewhere).

Every client submits one 650-weight vector (the digits model; random in-range quantized values,
since training is not what is measured) through the client's own path
(:func:`fl_client.chain.submit_words`: balance, call, estimate, nonce, EIP-1559 transaction,
receipt) into one round of a coordinator deployed for that many clients, so that the last
submission closes the round. On anvil (instant mining, one account per client, ``--accounts``
sized to fit) two senders are measured, each with one connection per worker and each account
sending from one worker, so each account has its own nonce: ``--threads`` threads in this process
(bounded by the GIL: web3 spends ~2 ms of Python per request, ~14 requests per submission), and
``--processes`` processes (what one process per account looks like; ``spawn``ed and connected
before the clock starts). Each anvil setting runs ``--repeats`` rounds (a fresh coordinator
each); the summary takes the median. The embedded chain (eth-tester + py-evm in this process)
cannot be driven from several threads, so its clients submit one after another.

Measured: submissions per second and the round's time, from the first call to the receipt that
closed the round; the new model is checked against the exact integer average of the submitted
vectors. Goal: >= 30 submissions/s on anvil.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing
import os
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from web3.contract import Contract

from bench.common import (
    SendWarnings,
    anvil_node,
    command_line,
    digits_deployment,
    machine,
    write_json,
)
from fl_client.aggregation import integer_average
from fl_client.chain import Chain, connect, contract_at, read_model_words, read_round, submit_words
from fl_client.codec import pack, unpack
from fl_client.config import load_config

MODULE = "bench.throughput"
CLIENT_COUNTS = (10, 50, 100)
QUICK_CLIENT_COUNTS = (10, 20)
THREADS = 8
PROCESSES = 2
REPEATS = 3
GOAL_PER_SECOND = 30.0
NUM_WEIGHTS = 650
SAMPLE_COUNT = 100


def _vectors(clients: int, seed: int) -> list[np.ndarray]:
    max_abs = load_config().fl.fixed_point.max_abs
    rng = np.random.default_rng(seed)
    return [rng.integers(-max_abs, max_abs + 1, NUM_WEIGHTS) for _ in range(clients)]


def _summary(
    chain_name: str,
    contract: Contract,
    vectors: list[np.ndarray],
    latencies: list[float],
    seconds: float,
    *,
    sender: str,
    retries: dict[str, int],
) -> dict[str, Any]:
    clients = len(vectors)
    model = unpack(read_model_words(contract), NUM_WEIGHTS)
    return {
        "chain": chain_name,
        "clients": clients,
        "sender": sender,
        "lane_bits": int(contract.functions.laneBits().call()),
        "round_seconds": seconds,
        "submissions_per_second": clients / seconds,
        "median_submission_seconds": statistics.median(latencies),
        "max_submission_seconds": max(latencies),
        "round_closed": read_round(contract).number == 2,
        "exact_average": bool(np.array_equal(model, integer_average(vectors))),
        "send_retries": retries,
    }


def _submit(chain: Chain, contract: Contract, account: str, vector: np.ndarray) -> float:
    started = time.perf_counter()
    submit_words(
        chain,
        contract,
        account,
        round_number=1,
        sample_count=SAMPLE_COUNT,
        words=pack(vector),
        words_per_segment=512,
    )
    return time.perf_counter() - started


# One connection per worker thread or process, made before the clock starts.
_local = threading.local()


def _connection(url: str, address: str) -> tuple[Chain, Contract]:
    key = (url, address)
    if getattr(_local, "key", None) != key:
        _local.chain = connect("anvil", url=url)
        _local.contract = contract_at(_local.chain, address)
        _local.key = key
    return _local.chain, _local.contract


def _task(job: tuple[str, str, str, np.ndarray]) -> tuple[float, dict[str, int]]:
    """Submit one client's vector (in a worker thread or process); its time and retries."""
    url, address, account, vector = job
    chain, contract = _connection(url, address)
    with SendWarnings() as warnings:
        seconds = _submit(chain, contract, account, vector)
    return seconds, warnings.counts


def _warm(job: tuple[str, str]) -> bool:
    _connection(*job)
    time.sleep(0.05)  # keep this worker busy so that the others get a warm-up job too
    return True


def _add(counts: Sequence[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for one in counts:
        for kind, count in one.items():
            total[kind] = total.get(kind, 0) + count
    return total


def on_anvil(
    clients: int, *, senders: dict[str, Executor], repeats: int, seed: int
) -> list[dict[str, Any]]:
    """``repeats`` rounds of ``clients`` concurrent submissions per sender, on one fresh anvil."""
    results = []
    with anvil_node(accounts=clients + 1) as node:
        owner = connect("anvil", url=node.url)
        accounts = owner.accounts[1 : clients + 1]
        for repeat in range(repeats):
            for name, executor in senders.items():
                contract = digits_deployment(owner, clients=clients)
                address = str(contract.address)
                vectors = _vectors(clients, seed + repeat)
                list(executor.map(_warm, [(node.url, address)] * 16))
                jobs = [
                    (node.url, address, account, vector)
                    for account, vector in zip(accounts, vectors, strict=True)
                ]
                started = time.perf_counter()
                done = list(executor.map(_task, jobs))
                seconds = time.perf_counter() - started
                result = _summary(
                    "anvil",
                    contract,
                    vectors,
                    [latency for latency, _ in done],
                    seconds,
                    sender=name,
                    retries=_add([counts for _, counts in done]),
                )
                results.append({**result, "repeat": repeat})
    return results


def on_embedded(clients: int, *, seed: int) -> dict[str, Any]:
    """One round of ``clients`` submissions, one after another, on the embedded chain."""
    chain = connect("embedded", num_accounts=clients + 1)
    contract = digits_deployment(chain, clients=clients)
    accounts = chain.accounts[1 : clients + 1]
    vectors = _vectors(clients, seed)
    with SendWarnings() as warnings:
        started = time.perf_counter()
        latencies = [
            _submit(chain, contract, account, vector)
            for account, vector in zip(accounts, vectors, strict=True)
        ]
        seconds = time.perf_counter() - started
    return _summary(
        "embedded",
        contract,
        vectors,
        latencies,
        seconds,
        sender="1 thread, one submission after another",
        retries=warnings.counts,
    )


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"python -m {MODULE}", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="10 and 20 clients, one repeat")
    parser.add_argument(
        "--clients",
        type=int,
        nargs="+",
        help=f"client counts (default: {' '.join(map(str, CLIENT_COUNTS))})",
    )
    parser.add_argument(
        "--threads", type=int, default=THREADS, help="sending threads in this process (0: none)"
    )
    parser.add_argument(
        "--processes", type=int, default=PROCESSES, help="sending processes (0: none)"
    )
    parser.add_argument(
        "--repeats", type=int, help=f"rounds per setting on anvil (default {REPEATS})"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-embedded", action="store_true", help="anvil only")
    parser.add_argument(
        "--out", type=Path, help="JSON file (default bench/results/throughput.json)"
    )
    return parser.parse_args(argv)


def _best(runs: list[dict[str, Any]], clients: int) -> dict[str, Any]:
    """Per sender on anvil: the median over repeats; and the embedded run."""
    summary: dict[str, Any] = {}
    for sender in sorted({r["sender"] for r in runs if r["clients"] == clients}):
        chosen = [r for r in runs if r["clients"] == clients and r["sender"] == sender]
        summary[f"{chosen[0]['chain']}: {sender}"] = {
            "submissions_per_second": statistics.median(
                r["submissions_per_second"] for r in chosen
            ),
            "round_seconds": statistics.median(r["round_seconds"] for r in chosen),
            "repeats": len(chosen),
        }
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 when anvil reaches the goal for every client count, 1 otherwise."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(arguments)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    counts = args.clients or (QUICK_CLIENT_COUNTS if args.quick else CLIENT_COUNTS)
    repeats = args.repeats or (1 if args.quick else REPEATS)
    started = time.perf_counter()
    context = machine()
    runs: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        senders: dict[str, Executor] = {}
        if args.threads:
            senders[f"{args.threads} threads in 1 process"] = stack.enter_context(
                ThreadPoolExecutor(max_workers=args.threads)
            )
        if args.processes:
            senders[f"{args.processes} processes, 1 thread each"] = stack.enter_context(
                ProcessPoolExecutor(
                    max_workers=args.processes, mp_context=multiprocessing.get_context("spawn")
                )
            )
        for clients in counts:
            results = on_anvil(clients, senders=senders, repeats=repeats, seed=args.seed)
            if not args.skip_embedded:
                results.append(on_embedded(clients, seed=args.seed))
            for result in results:
                print(
                    f"{result['chain']:>8} ({result['sender']}): {clients:>3} clients -> "
                    f"{result['submissions_per_second']:6.1f} submissions/s, round "
                    f"{result['round_seconds']:.2f} s ({result['lane_bits']}-bit lanes, closed "
                    f"{result['round_closed']}, exact {result['exact_average']})"
                )
            sys.stdout.flush()
            runs.extend(results)
    per_clients = {str(clients): _best(runs, clients) for clients in counts}
    best_anvil = {
        count: max(
            (v["submissions_per_second"] for k, v in summary.items() if k.startswith("anvil")),
            default=0.0,
        )
        for count, summary in per_clients.items()
    }
    goal_met = all(rate >= GOAL_PER_SECOND for rate in best_anvil.values())
    correct = all(r["round_closed"] and r["exact_average"] for r in runs)
    data = {
        "command": command_line(MODULE, arguments),
        "goal": f">= {GOAL_PER_SECOND:g} submissions/s on anvil",
        "goal_met": goal_met,
        "best_anvil_submissions_per_second": best_anvil,
        "all_rounds_closed_with_the_exact_average": correct,
        "model": f"digits, {NUM_WEIGHTS} weights (random in-range quantized vectors)",
        "anvil_mining": "instant (a block per transaction)",
        "per_clients": per_clients,
        "runs": runs,
        "machine": {**context, "load_average_at_end": list(os.getloadavg())},
        "seconds": round(time.perf_counter() - started, 1),
    }
    path = write_json("throughput", data, args.out)
    print(f"wrote {path}")
    return 0 if goal_met and correct else 1


if __name__ == "__main__":
    sys.exit(main())
