"""Throughput benchmark: how fast one round of 10, 50 and 100 clients fills up and closes, anvil
vs the embedded chain.

Run: ``.venv/bin/python -m bench.throughput`` (about 5 minutes) or ``--quick`` (10 and 20
clients, one repeat). Writes ``bench/results/throughput.json`` and ``throughput.md`` (``--out``
elsewhere).

Every client submits one 650-weight vector (the digits model; random in-range quantized values,
since training is not what is measured) directly, with the transactions the direct path sends
(:func:`fl_client.chain.submit_calls`; each goes through :func:`fl_client.chain.send`: balance,
fee, estimate, nonce, EIP-1559 transaction, receipt) into one round of a coordinator deployed for
that many clients (``DeployParams.from_config``: the round is full when every client is in; 100
clients need two segments so that a close fits 128 KiB). On anvil (instant mining, mainnet's
per-transaction gas cap, one account per client) two senders are measured:
:func:`fl_client.chain.send_all` in this process (a thread per transaction, at most 16 at once,
bounded by the GIL: web3 spends milliseconds of Python per request, several per submission),
and ``--processes`` processes each running ``send_all`` on its share of the clients
(``spawn``\\ed and connected before the clock starts). Each anvil setting runs ``--repeats``
rounds (a fresh coordinator each); the summary takes the median. The embedded chain (eth-tester +
py-evm in this process) cannot be driven from several threads, so there ``send_all`` sends one
transaction after another.

Measured: submissions per second (from the first call to the last receipt), then the close,
sent by an account that did not submit. On anvil it is :class:`fl_client.closer.RoundCloser`'s,
as any closer's: every entry's words read back from its transaction (found by its events) and
checked against its segment hashes, then one ``closeSegment`` per segment. On the embedded chain
the close is sent from the words the benchmark holds: eth-tester answers ``eth_getLogs`` by
walking every receipt since the given block, and the closer asks four times per entry, so
reading 100 entries back takes many minutes there (20 entries: 15-38 s). The new model is
checked against the exact integer average of the submitted vectors. Goal: >= 30 submissions/s
on anvil.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from web3.contract import Contract

from bench.common import (
    RESULTS,
    SendWarnings,
    anvil_node,
    command_line,
    contracts_fingerprint,
    digits_deployment,
    load_average,
    machine,
    machine_note,
    write_json,
)
from fl_client.aggregation import integer_average
from fl_client.chain import (
    Call,
    Chain,
    CoordinatorView,
    close_function,
    connect,
    contract_at,
    read_entries,
    read_model_words,
    read_round,
    send,
    send_all,
    submit_calls,
)
from fl_client.closer import RoundCloser
from fl_client.codec import pack, split_segments, unpack
from fl_client.config import load_config
from fl_client.data import Dataset, load_dataset

MODULE = "bench.throughput"
CLIENT_COUNTS = (10, 50, 100)
QUICK_CLIENT_COUNTS = (10, 20)
PROCESSES = 2
REPEATS = 3
GOAL_PER_SECOND = 30.0
NUM_WEIGHTS = 650
SAMPLE_COUNT = 100
THREADS_SENDER = "send_all, 1 process"


def _vectors(clients: int, seed: int) -> list[np.ndarray]:
    max_abs = load_config().fl.fixed_point.max_abs
    rng = np.random.default_rng(seed)
    return [rng.integers(-max_abs, max_abs + 1, NUM_WEIGHTS) for _ in range(clients)]


def _calls(
    contract: Contract, jobs: Sequence[tuple[str, list[int]]], words_per_segment: int
) -> list[Call]:
    """One direct submission per (account, words): the calls the direct path makes."""
    calls = []
    for account, words in jobs:
        calls.extend(
            submit_calls(
                contract,
                account,
                round_number=1,
                sample_count=SAMPLE_COUNT,
                words=words,
                words_per_segment=words_per_segment,
            )
        )
    return calls


# One connection per worker process, made before the clock starts.
_local = threading.local()


def _connection(url: str, address: str) -> tuple[Chain, Contract]:
    key = (url, address)
    if getattr(_local, "key", None) != key:
        _local.chain = connect("anvil", url=url)
        _local.contract = contract_at(_local.chain, address)
        _local.key = key
    return _local.chain, _local.contract


def _warm(job: tuple[str, str]) -> bool:
    _connection(*job)
    time.sleep(0.05)  # keep this worker busy so that the others get a warm-up job too
    return True


def _process_share(
    job: tuple[str, str, int, list[tuple[str, list[int]]]],
) -> tuple[float, dict[str, int]]:
    """In a worker process: ``send_all`` of its share of the submissions; its time and retries."""
    url, address, words_per_segment, share = job
    chain, contract = _connection(url, address)
    calls = _calls(contract, share, words_per_segment)
    with SendWarnings() as warnings:
        started = time.perf_counter()
        send_all(chain, calls)
        seconds = time.perf_counter() - started
    return seconds, warnings.counts


def _add(counts: Sequence[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for one in counts:
        for kind, count in one.items():
            total[kind] = total.get(kind, 0) + count
    return total


def _close(
    chain: Chain,
    contract: Contract,
    closer: str,
    *,
    words: dict[str, list[int]] | None = None,
) -> dict[str, Any]:
    """Close the full round; its times and gas.

    Without ``words``, as any closer would (:class:`RoundCloser`: every entry's words read back
    from its transaction and checked against its segment hashes, then the closes); with them
    (the embedded chain), from the words at hand, in ``entries()`` order.
    """
    view = CoordinatorView.read(chain, contract)
    started = time.perf_counter()
    info = read_round(contract)
    if words is None:
        round_closer = RoundCloser(chain=chain, contract=contract, account=closer, view=view)
        round_closer.plan(info, now=chain.timestamp())  # reads every entry's words (cached)
        read_back: float | None = time.perf_counter() - started
        receipts = round_closer.close(now=chain.timestamp())
    else:
        read_back = None
        entries = read_entries(contract)
        receipts = []
        for segment in range(view.num_segments):
            data = [
                w
                for entry in entries
                for w in split_segments(words[entry.client], view.words_per_segment)[segment]
            ]
            function = close_function(
                contract, round_number=info.number, segment=segment, words=data
            )
            receipts.append(send(chain, function, closer, what=f"close segment {segment}"))
    seconds = time.perf_counter() - started
    return {
        "close_seconds": seconds,
        "close_words_read_back_seconds": read_back,
        "close_transactions": len(receipts),
        "close_gas": sum(int(r["gasUsed"]) for r in receipts),
        "segments": view.num_segments,
    }


def _result(
    chain_name: str,
    contract: Contract,
    vectors: list[np.ndarray],
    seconds: float,
    close: dict[str, Any],
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
        "submission_seconds": seconds,
        "submissions_per_second": clients / seconds,
        **close,
        "round_seconds": seconds + close["close_seconds"],
        "round_closed": read_round(contract).number == 2,
        "exact_average": bool(np.array_equal(model, integer_average(vectors))),
        "send_retries": retries,
    }


def on_anvil(
    clients: int,
    *,
    dataset: Dataset,
    pool: ProcessPoolExecutor | None,
    processes: int,
    repeats: int,
    seed: int,
) -> list[dict[str, Any]]:
    """``repeats`` rounds of ``clients`` concurrent submissions per sender, on one fresh anvil."""
    results = []
    with anvil_node(accounts=clients + 2) as node:
        owner = connect("anvil", url=node.url)
        accounts = owner.accounts[1 : clients + 1]
        closer = owner.accounts[clients + 1]
        senders = [THREADS_SENDER] + ([f"send_all in {processes} processes"] if pool else [])
        for repeat in range(repeats):
            for sender in senders:
                contract = digits_deployment(owner, clients=clients, dataset=dataset)
                address = str(contract.address)
                per_segment = int(contract.functions.wordsPerSegment().call())
                vectors = _vectors(clients, seed + repeat)
                jobs = [(a, pack(v)) for a, v in zip(accounts, vectors, strict=True)]
                if sender == THREADS_SENDER:
                    calls = _calls(contract, jobs, per_segment)
                    with SendWarnings() as warnings:
                        started = time.perf_counter()
                        send_all(owner, calls)
                        seconds = time.perf_counter() - started
                    retries = warnings.counts
                else:
                    assert pool is not None
                    list(pool.map(_warm, [(node.url, address)] * 16))
                    shares = [
                        (node.url, address, per_segment, jobs[i::processes])
                        for i in range(processes)
                    ]
                    started = time.perf_counter()
                    done = list(pool.map(_process_share, shares))
                    seconds = time.perf_counter() - started
                    retries = _add([counts for _, counts in done])
                close = _close(owner, contract, closer)
                result = _result(
                    "anvil", contract, vectors, seconds, close, sender=sender, retries=retries
                )
                # The load beside the figures: other work on the machine slows every sender.
                results.append({**result, "repeat": repeat, "load_average": load_average()})
                _print(result)
    return results


def on_embedded(clients: int, *, dataset: Dataset, seed: int) -> dict[str, Any]:
    """One round of ``clients`` submissions, one after another, on the embedded chain."""
    chain = connect("embedded", num_accounts=clients + 2)
    contract = digits_deployment(chain, clients=clients, dataset=dataset)
    accounts = chain.accounts[1 : clients + 1]
    per_segment = int(contract.functions.wordsPerSegment().call())
    vectors = _vectors(clients, seed)
    calls = _calls(
        contract, [(a, pack(v)) for a, v in zip(accounts, vectors, strict=True)], per_segment
    )
    with SendWarnings() as warnings:
        started = time.perf_counter()
        send_all(chain, calls)
        seconds = time.perf_counter() - started
    close = _close(
        chain,
        contract,
        chain.accounts[clients + 1],
        words={a: pack(v) for a, v in zip(accounts, vectors, strict=True)},
    )
    result = _result(
        "embedded",
        contract,
        vectors,
        seconds,
        close,
        sender="send_all (one after another)",
        retries=warnings.counts,
    )
    _print(result)
    return {**result, "load_average": load_average()}


def _print(result: dict[str, Any]) -> None:
    print(
        f"{result['chain']:>8} ({result['sender']}): {result['clients']:>3} clients -> "
        f"{result['submissions_per_second']:6.1f} submissions/s ({result['submission_seconds']:.2f} s), "
        f"close {result['close_seconds']:.2f} s ({result['segments']} segment(s)), closed "
        f"{result['round_closed']}, exact {result['exact_average']}",
        flush=True,
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
        "--processes", type=int, default=PROCESSES, help="sending processes (0: none)"
    )
    parser.add_argument(
        "--repeats", type=int, help=f"rounds per setting on anvil (default {REPEATS})"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-embedded", action="store_true", help="anvil only")
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="folder for throughput.json and throughput.md"
    )
    return parser.parse_args(argv)


def summary(runs: list[dict[str, Any]], clients: int) -> dict[str, Any]:
    """Per chain and sender: the medians over the repeats."""
    out: dict[str, Any] = {}
    chosen = [r for r in runs if r["clients"] == clients]
    for key in sorted({(r["chain"], r["sender"]) for r in chosen}):
        group = [r for r in chosen if (r["chain"], r["sender"]) == key]
        out[f"{key[0]}: {key[1]}"] = {
            "submissions_per_second": statistics.median(r["submissions_per_second"] for r in group),
            "submission_seconds": statistics.median(r["submission_seconds"] for r in group),
            "close_seconds": statistics.median(r["close_seconds"] for r in group),
            "close_words_read_back_seconds": None
            if group[0]["close_words_read_back_seconds"] is None
            else statistics.median(r["close_words_read_back_seconds"] for r in group),
            "segments": group[0]["segments"],
            "repeats": len(group),
            "load_average_1min": [r["load_average"][0] for r in group],
        }
    return out


def markdown(
    per_clients: dict[str, dict[str, Any]],
    processes: int,
    machine: dict[str, Any] | None = None,
    *,
    command: str | None = None,
    goal_met: bool | None = None,
    correct: bool | None = None,
) -> str:
    """The table the README quotes, and how it was measured."""
    columns = [
        ("anvil: " + THREADS_SENDER, "anvil, send_all in 1 process"),
        (f"anvil: send_all in {processes} processes", f"anvil, {processes} processes"),
        ("embedded: send_all (one after another)", "embedded chain (sequential)"),
    ]
    lines = [
        "| clients | segments | "
        + " | ".join(f"{title}: submissions/s (time) | {title}: close" for _, title in columns)
        + " |",
        "|---:|---:|" + "---:|---:|" * len(columns),
    ]
    for clients, summary_ in per_clients.items():
        cells = []
        segments = next(iter(summary_.values()))["segments"]
        for key, _ in columns:
            entry = summary_.get(key)
            if entry is None:
                cells += ["-", "-"]
                continue
            cells.append(
                f"{entry['submissions_per_second']:.1f}/s ({entry['submission_seconds']:.2f} s)"
            )
            read_back = entry["close_words_read_back_seconds"]
            cells.append(
                f"{entry['close_seconds']:.2f} s"
                + ("" if read_back is None else f" ({read_back:.2f} s reading the words back)")
            )
        lines.append(f"| {clients} | {segments} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Close on anvil: `RoundCloser` (the words read back from the submissions' transactions, "
        "then the `closeSegment`s); on the embedded chain: the `closeSegment`s from the words at "
        "hand. Anvil: medians of the repeats, instant mining; submissions/s from the first "
        "call to the last receipt.",
    ]
    if goal_met is not None:
        lines.append(
            f"Goal (>= {GOAL_PER_SECOND:g} submissions/s on anvil, the faster sender, every client "
            f"count): {'met' if goal_met else 'NOT met'}."
        )
    if correct is not None:
        lines.append(
            f"Every round closed with the exact integer average: {'yes' if correct else 'NO'}."
        )
    loads = [
        load
        for entry in per_clients.values()
        for group in entry.values()
        for load in group.get("load_average_1min", [])
    ]
    if loads:
        lines.append(
            f"1-minute load average after each measured round: {min(loads):.2f}-{max(loads):.2f}."
        )
    if machine is not None:
        lines += ["", machine_note(machine)]
    if command is not None:
        lines += ["", f"Command: `{command}`"]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 when anvil reaches the goal for every client count, 1 otherwise."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(arguments)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    counts = args.clients or (QUICK_CLIENT_COUNTS if args.quick else CLIENT_COUNTS)
    repeats = args.repeats or (1 if args.quick else REPEATS)
    started = time.perf_counter()
    context = machine()
    fl = load_config().fl.with_overrides(dataset="digits")
    dataset = load_dataset("digits", test_fraction=fl.test_fraction, seed=fl.seed)
    runs: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        pool = (
            stack.enter_context(
                ProcessPoolExecutor(
                    max_workers=args.processes, mp_context=multiprocessing.get_context("spawn")
                )
            )
            if args.processes
            else None
        )
        for clients in counts:
            runs.extend(
                on_anvil(
                    clients,
                    dataset=dataset,
                    pool=pool,
                    processes=args.processes,
                    repeats=repeats,
                    seed=args.seed,
                )
            )
            if not args.skip_embedded:
                runs.append(on_embedded(clients, dataset=dataset, seed=args.seed))
    per_clients = {str(clients): summary(runs, clients) for clients in counts}
    best_anvil = {
        count: max(
            (v["submissions_per_second"] for k, v in entry.items() if k.startswith("anvil")),
            default=0.0,
        )
        for count, entry in per_clients.items()
    }
    goal_met = all(rate >= GOAL_PER_SECOND for rate in best_anvil.values())
    correct = all(r["round_closed"] and r["exact_average"] for r in runs)
    data: dict[str, Any] = {
        "command": command_line(MODULE, arguments),
        "goal": f">= {GOAL_PER_SECOND:g} submissions/s on anvil",
        "goal_met": goal_met,
        "best_anvil_submissions_per_second": best_anvil,
        "all_rounds_closed_with_the_exact_average": correct,
        "model": f"digits, {NUM_WEIGHTS} weights (random in-range quantized vectors), direct",
        "anvil_mining": "instant (a block per transaction)",
        "per_clients": per_clients,
        "runs": runs,
        "contracts": contracts_fingerprint(),
        "machine": {**context, "load_average_at_end": load_average()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = write_json("throughput", data, args.out / "throughput.json")
    table = markdown(
        per_clients,
        args.processes,
        data["machine"],
        command=data["command"],
        goal_met=goal_met,
        correct=correct,
    )
    (args.out / "throughput.md").write_text(table, encoding="utf-8")
    print(table)
    print(f"goal (>= {GOAL_PER_SECOND:g}/s on anvil) met: {goal_met}; every round exact: {correct}")
    print(f"wrote {path} and {args.out / 'throughput.md'} in {data['seconds']} s")
    return 0 if goal_met and correct else 1


if __name__ == "__main__":
    sys.exit(main())
