"""Latency benchmark: what the chain adds to a federated round on anvil, by block time.

Run: ``.venv/bin/python -m bench.latency`` (about 4 minutes, 6.5 on a loaded 2-core machine: 3
client processes x 3 rounds of the digits model with instant mining, 2 s and 12 s blocks) or
``--quick`` (2 rounds, instant and 2 s blocks, about a minute). Writes ``bench/results/latency.json`` and ``latency.md`` (``--out``
elsewhere).

Each setting gets its own anvil (``fl_client.node.start_anvil``: a free port, mainnet's
per-transaction gas cap) and temporary node and deployment records (``FL_STATE_DIR``,
``FL_DEPLOYMENTS_DIR``). The coordinator is deployed as a user deploys it, ``python -m fl_client
deploy --network anvil --dataset digits --clients 3 --rounds 3``, with instant mining; then the node
is switched to a block every N seconds (``evm_setIntervalMining``, the mining of ``--block-time
N``) so that the deployment does not wait for blocks. Then 3 processes run ``python -m fl_client
client --network anvil --account I --poll 0.2`` (I = 0, 1, 2), each the command's own code
(``fl_client.cli.main``) with three probes added: the moment it starts training for a round and
how long the training took (``Participant.trained``), the block of every transaction it had
mined, and a start barrier (the processes start the command's loop together, once each has loaded
its data and connected, as the old threads did). Each client submits directly; the round's
designated closer (client ``round % 3``) sends the close once it sees the round full.

Per round: the wall time from the first client starting to train to the last client seeing the
round closed (its next training, or its exit after the last round), minus the round's longest
local training (clients train in parallel), is what the chain added. Since the pipeline-v2
close is a transaction of its own that can only follow the block holding the last submission, a
round takes two blocks on a node that mines by the clock: the bound is two block times plus a
small constant (``--constant``, 1 s: polling every 0.2 s and the node's answers); ``holds`` says
whether every round met it. ``one_block_holds`` says whether every round also stayed within one
block time plus the constant (the goal when the last submission closed the round itself).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    RESULTS,
    anvil_node,
    command_line,
    contracts_fingerprint,
    isolated_records,
    load_average,
    machine,
    machine_note,
    rpc,
    write_json,
)
from fl_client.chain import connect, contract_at, read_record, read_round
from fl_client.config import PROJECT_ROOT

MODULE = "bench.latency"
BLOCK_TIMES = (0, 2, 12)
QUICK_BLOCK_TIMES = (0, 2)
CLIENTS = 3
ROUNDS = 3
QUICK_ROUNDS = 2
CONSTANT_S = 1.0
POLL_S = 0.2
PROBE = "--probe"
READY_TIMEOUT_S = 180.0


# ---------------------------------------------------------------- inside a client process


def probe_client(folder: Path, argv: list[str]) -> int:
    """Run ``python -m fl_client <argv>`` (the ``client`` command) with the probes: events go to
    ``folder/events-<pid>.jsonl``; the loop starts once ``folder/go`` exists."""
    from fl_client import cli, closer, runner
    from fl_client.participant import Participant
    from fl_client.runner import ParticipantLoop

    events = folder / f"events-{os.getpid()}.jsonl"

    def emit(**event: Any) -> None:
        with events.open("a", encoding="utf-8") as out:
            out.write(json.dumps({**event, "pid": os.getpid(), "t": time.time()}) + "\n")

    trained = Participant.trained

    def timed_trained(self: Participant, round_number: int) -> Any:
        fresh = self.trained_round != round_number
        started = time.time()
        result = trained(self, round_number)
        if fresh:
            emit(
                event="trained",
                client=self.client_id,
                round=round_number,
                start=started,
                seconds=result.seconds,
            )
        return result

    send = getattr(runner, "send")  # noqa: B009 (imported there from fl_client.chain)

    def logged_send(*args: Any, **kwargs: Any) -> Any:
        receipt = send(*args, **kwargs)
        emit(
            event="mined",
            what=str(kwargs.get("what") or args[1].fn_name),
            block=int(receipt["blockNumber"]),
            gas=int(receipt["gasUsed"]),
        )
        return receipt

    run = ParticipantLoop.run

    def synchronized_run(self: ParticipantLoop, rounds: int) -> Any:
        emit(event="ready", client=self.participant.client_id)
        (folder / f"ready-{os.getpid()}").touch()
        while not (folder / "go").exists():
            time.sleep(0.005)
        emit(event="go", client=self.participant.client_id)
        try:
            return run(self, rounds)
        finally:
            emit(event="done", client=self.participant.client_id)

    setattr(Participant, "trained", timed_trained)  # noqa: B010
    setattr(runner, "send", logged_send)  # noqa: B010
    setattr(closer, "send", logged_send)  # noqa: B010
    setattr(ParticipantLoop, "run", synchronized_run)  # noqa: B010
    return cli.main(argv)


# ---------------------------------------------------------------- the benchmark


@dataclass(frozen=True)
class ClientRound:
    """One client's view of one round (seconds since the start barrier)."""

    round_number: int
    client: int
    seen_open: float  # it started training for the round
    train_seconds: float
    seen_closed: float  # it started training for the next round, or left after the last
    submission_block: int
    closed_it: bool


@dataclass(frozen=True)
class RoundLatency:
    """One round: its wall time, its longest training and what the chain added."""

    round_number: int
    wall_seconds: float
    max_train_seconds: float
    chain_seconds: float  # wall minus the longest training
    submission_blocks: list[int]
    close_block: int
    close_blocks_after_last_submission: int
    close_after_last_submission_seconds: float  # last submission's receipt -> the close's
    seen_after_close_seconds: float  # the close's receipt -> the last client seeing it
    bound_seconds: float  # two block times plus the constant
    holds: bool
    one_block_holds: bool  # within one block time plus the constant


def _python_m(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


def _deploy(clients: int, rounds: int, log: Path) -> str:
    """``python -m fl_client deploy`` for digits; the coordinator's address."""
    command = _python_m(
        "fl_client",
        "deploy",
        "--network",
        "anvil",
        "--dataset",
        "digits",
        "--clients",
        str(clients),
        "--rounds",
        str(rounds),
    )
    with log.open("w", encoding="utf-8") as out:
        done = subprocess.run(
            command, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=600
        )
    if done.returncode != 0:
        raise RuntimeError(f"deploy failed: {log.read_text(encoding='utf-8')[-2000:]}")
    return read_record("anvil").address


def _stop(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()  # one of ours, by its handle
            process.wait()


def run_setting(
    block_time: int, *, clients: int, rounds: int, poll: float, constant: float
) -> dict[str, Any]:
    """One anvil with ``block_time`` (0: instant mining); ``clients`` processes x ``rounds``."""
    load_before = load_average()
    with isolated_records() as root, anvil_node(record=True) as node:
        folder = root / "probe"
        folder.mkdir()
        address = _deploy(clients, rounds, root / "deploy.log")
        owner = connect("anvil", url=node.url)
        contract = contract_at(owner, address)
        if block_time:
            rpc(owner, "evm_setIntervalMining", block_time)
        processes: list[subprocess.Popen[bytes]] = []
        logs = []
        try:
            for index in range(clients):
                log = (root / f"client-{index}.log").open("w", encoding="utf-8")
                logs.append(log)
                command = _python_m(
                    MODULE,
                    PROBE,
                    str(folder),
                    "client",
                    "--network",
                    "anvil",
                    "--account",
                    str(index),
                    "--poll",
                    str(poll),
                    "--timeout",
                    "600",
                )
                processes.append(
                    subprocess.Popen(
                        command,
                        cwd=PROJECT_ROOT,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env={**os.environ, "PYTHONUNBUFFERED": "1"},
                    )
                )
            deadline = time.monotonic() + READY_TIMEOUT_S
            while len(list(folder.glob("ready-*"))) < clients:
                failed = [p for p in processes if p.poll() is not None]
                if failed or time.monotonic() > deadline:
                    raise RuntimeError(f"a client did not get ready: {_tails(root, clients)}")
                time.sleep(0.02)
            (folder / "go").touch()
            for process in processes:
                code = process.wait(timeout=rounds * (2 * block_time + 60) + 120)
                if code != 0:
                    raise RuntimeError(f"a client exited with {code}: {_tails(root, clients)}")
        finally:
            _stop(processes)
            for log in logs:
                log.close()
        final_round = read_round(contract).number
        outputs = {
            i: (root / f"client-{i}.log").read_text(encoding="utf-8") for i in range(clients)
        }
        events = [
            json.loads(line)
            for path in sorted(folder.glob("events-*.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines()
        ]
    result = summarize(
        events,
        block_time=block_time,
        clients=clients,
        rounds=rounds,
        constant=constant,
        final_round=final_round,
        outputs=outputs,
    )
    # The load beside the figures: other work on the machine lengthens every wall time.
    return {**result, "load_average_before": load_before, "load_average_after": load_average()}


def _tails(root: Path, clients: int) -> str:
    parts = []
    for index in range(clients):
        path = root / f"client-{index}.log"
        if path.exists():
            text = path.read_text(encoding="utf-8").strip().splitlines()[-5:]
            parts.append(f"client {index}: " + " | ".join(text))
    return "; ".join(parts)


def summarize(
    events: list[dict[str, Any]],
    *,
    block_time: int,
    clients: int,
    rounds: int,
    constant: float,
    final_round: int,
    outputs: dict[int, str],
) -> dict[str, Any]:
    """The per-round figures from the probes' events."""
    go = min(e["t"] for e in events if e["event"] == "go")
    trained = {(e["client"], e["round"]): e for e in events if e["event"] == "trained"}
    done = {e["client"]: e["t"] - go for e in events if e["event"] == "done"}
    client_of = {e["pid"]: e["client"] for e in events if e["event"] == "go"}
    mined = [{**e, "client": client_of.get(e["pid"], -1)} for e in events if e["event"] == "mined"]

    def blocks(kind: str, round_number: int, client: int | None = None) -> list[int]:
        return sorted(
            e["block"]
            for e in mined
            if e["what"].startswith(f"{kind} round {round_number} ")
            and (client is None or e["client"] == client)
        )

    records: list[ClientRound] = []
    for round_number in range(1, rounds + 1):
        for client in range(clients):
            now = trained[(client, round_number)]
            after = trained.get((client, round_number + 1))
            records.append(
                ClientRound(
                    round_number=round_number,
                    client=client,
                    seen_open=round(now["start"] - go, 3),
                    train_seconds=round(now["seconds"], 3),
                    seen_closed=round(
                        (after["start"] - go) if after is not None else done[client], 3
                    ),
                    submission_block=max(blocks("submit", round_number, client), default=-1),
                    closed_it=bool(blocks("close", round_number, client)),
                )
            )
    latencies = []
    bound = 2 * block_time + constant
    one_block = block_time + constant
    for round_number in range(1, rounds + 1):
        views = [r for r in records if r.round_number == round_number]
        wall = max(r.seen_closed for r in views) - min(r.seen_open for r in views)
        train = max(r.train_seconds for r in views)
        added = wall - train
        submissions = blocks("submit", round_number)
        closes = blocks("close", round_number)
        close_block = max(closes) if closes else -1
        submitted_at = max(
            (e["t"] - go for e in mined if e["what"].startswith(f"submit round {round_number} ")),
            default=0.0,
        )
        closed_at = max(
            (e["t"] - go for e in mined if e["what"].startswith(f"close round {round_number} ")),
            default=0.0,
        )
        latencies.append(
            RoundLatency(
                round_number=round_number,
                wall_seconds=round(wall, 3),
                max_train_seconds=round(train, 3),
                chain_seconds=round(added, 3),
                submission_blocks=submissions,
                close_block=close_block,
                close_blocks_after_last_submission=close_block - max(submissions, default=0),
                close_after_last_submission_seconds=round(closed_at - submitted_at, 3),
                seen_after_close_seconds=round(max(r.seen_closed for r in views) - closed_at, 3),
                bound_seconds=bound,
                holds=added <= bound,
                one_block_holds=added <= one_block,
            )
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
        "holds": all(r.holds for r in latencies) and final_round == rounds + 1,
        "one_block_bound_seconds": one_block,
        "one_block_holds": all(r.one_block_holds for r in latencies),
        "per_round": [asdict(r) for r in latencies],
        "client_output": {str(k): v.strip().splitlines() for k, v in outputs.items()},
        "per_client": [
            asdict(r) for r in sorted(records, key=lambda r: (r.round_number, r.client))
        ],
        "transactions": [
            {k: e[k] for k in ("client", "what", "block", "gas")} | {"t": round(e["t"] - go, 3)}
            for e in sorted(mined, key=lambda e: e["t"])
        ],
    }


def markdown(
    settings: Sequence[dict[str, Any]],
    *,
    constant: float,
    poll: float = POLL_S,
    machine: dict[str, Any] | None = None,
    command: str | None = None,
) -> str:
    """The table the README quotes, and how it was measured."""
    lines = [
        "| block time | chain adds per round (median) | max | wall per round (median) | longest training (median) | close lands after the last submission (median) | bound (2 blocks + "
        f"{constant:g} s) | holds | within 1 block + {constant:g} s | load average (1 min) during the setting |",
        "|---|---:|---:|---:|---:|---|---:|---|---|---|",
    ]
    for s in settings:
        gaps = sorted({r["close_blocks_after_last_submission"] for r in s["per_round"]})
        delay = statistics.median(r["close_after_last_submission_seconds"] for r in s["per_round"])
        if s["block_time_s"] == 0:
            lands = f"next transaction, {delay:.2f} s"
        else:
            blocks = " or ".join(f"{g} block{'s' if g != 1 else ''}" for g in gaps)
            lands = f"{blocks} later, {delay:.2f} s"
        lines.append(
            f"| {'instant' if s['block_time_s'] == 0 else str(s['block_time_s']) + ' s'} | "
            f"{s['median_chain_seconds']:.2f} s | {s['max_chain_seconds']:.2f} s | "
            f"{s['median_wall_seconds']:.2f} s | {s['median_train_seconds']:.2f} s | {lands} | "
            f"{s['bound_seconds']:g} s | {'yes' if s['holds'] else 'NO'} | "
            f"{'yes' if s['one_block_holds'] else 'no'} | "
            f"{_load_span(s)} |"
        )
    lines += [
        "",
        "Chain adds = the round's wall time (first client starting to train -> last client seeing "
        "it closed) minus its longest local training; 3 `client` processes, polling every "
        f"{poll:g} s, digits, direct submissions; the round's designated closer sends the "
        "close once it sees the round full, so the close lands in the block after the "
        "submissions'.",
    ]
    if machine is not None:
        lines += ["", machine_note(machine)]
    if command is not None:
        lines += ["", f"Command: `{command}`"]
    return "\n".join(lines) + "\n"


def _load_span(setting: dict[str, Any]) -> str:
    before = setting.get("load_average_before")
    after = setting.get("load_average_after")
    if before is None or after is None:
        return "-"
    return f"{before[0]:.2f} -> {after[0]:.2f}"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"python -m {MODULE}", description=(__doc__ or "").splitlines()[0]
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
        help="seconds the chain may add beyond two block times",
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="folder for latency.json and latency.md"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 when the bound holds in every setting, 1 otherwise."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == [PROBE]:
        return probe_client(Path(arguments[1]), arguments[2:])
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
            f"round (median; max {result['max_chain_seconds']:.2f} s, bound "
            f"{result['bound_seconds']:g} s) -> {'holds' if result['holds'] else 'does not hold'}"
            f"; within one block + {args.constant:g} s: {result['one_block_holds']}",
            flush=True,
        )
    data = {
        "command": command_line(MODULE, arguments),
        "goal": (
            "per round, the chain adds at most two block times plus a small constant (the "
            "submissions land in one block, the close in a later one)"
        ),
        "constant_seconds": args.constant,
        "poll_seconds": args.poll,
        "dataset": "digits (650 weights), direct submissions, one client process per account",
        "holds": all(s["holds"] for s in settings),
        "one_block_holds": all(s["one_block_holds"] for s in settings),
        "medians": {str(s["block_time_s"]): s["median_chain_seconds"] for s in settings},
        "settings": settings,
        "contracts": contracts_fingerprint(),
        "machine": {**context, "load_average_at_end": load_average()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = write_json("latency", data, args.out / "latency.json")
    table = markdown(
        settings,
        constant=args.constant,
        poll=args.poll,
        machine=data["machine"],
        command=data["command"],
    )
    (args.out / "latency.md").write_text(table, encoding="utf-8")
    print(table)
    print(f"wrote {path} and {args.out / 'latency.md'} in {data['seconds']} s")
    return 0 if data["holds"] else 1


if __name__ == "__main__":
    sys.exit(main())
