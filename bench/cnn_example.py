"""The CNN example (``examples/mnist_cnn/task.py``) through the chain, beside plain PyTorch FedAvg.

Run: ``.venv/bin/python -m bench.cnn_example`` (about 3 minutes on 2 cores). Writes
``bench/results/cnn_example.json`` and ``cnn_example.md``.

A user's own task, loaded by path like any other: a two-convolution CNN (20,490 weights, two
segments at 5 clients) on MNIST 5k, 5 IID clients x 10 rounds (E=2, B=20, lr 0.05, momentum 0.9)
on an anvil with instant mining and mainnet's per-transaction gas cap. Per round: the test
accuracy of the on-chain model and of the plain run (same task, seeds, shards and initial
model; the float average in place of the contract), and the gas of every transaction of the
round (submissions and segment closes). Exit 1 when the final accuracies differ by more than
1 pp or an on-chain model is not the exact integer average of the submissions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench.common import RESULTS, anvil_node, machine, write_json
from fl_client.chain import Chain, connect, contract_at
from fl_client.config import FLConfig, load_config
from fl_client.simulation import SimulationResult, run_simulation

COMMAND = ".venv/bin/python -m bench.cnn_example"
TASK = "examples/mnist_cnn/task.py"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
TOLERANCE_PP = 1.0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The benchmark's options (the defaults are the README's figures)."""
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--partition", choices=["iid", "dirichlet"], default="iid")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--network",
        choices=["anvil", "embedded"],
        default="anvil",
        help="anvil (started and stopped here) or the in-process chain (slower: pure Python)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results")
    return parser.parse_args(list(argv))


def settings(args: argparse.Namespace) -> FLConfig:
    """The run's federated-learning settings: the project's, with the example's task."""
    return load_config().fl.with_overrides(
        task=str(PROJECT_ROOT / TASK),
        clients=args.clients,
        rounds=args.rounds,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        partition=args.partition,
        seed=args.seed,
    )


def run(fl: FLConfig, chain: Chain, bar: tqdm[Any]) -> SimulationResult:
    """The simulation, one progress step per submission."""

    def tick(message: str) -> None:
        if "submitted" in message:
            bar.update(1)

    return run_simulation(fl, chain=chain, check_accuracy=False, progress=tick)


def summary(
    result: SimulationResult, chain: Chain, fl: FLConfig, network: str, seconds: float
) -> dict[str, Any]:
    """The JSON record of a run."""
    words_per_segment = int(
        contract_at(chain, result.contract_address).functions.wordsPerSegment().call()
    )
    round_gas = [report.gas_used for report in result.rounds]
    return {
        "command": COMMAND,
        "task": TASK,
        "network": network,
        "settings": {
            "clients": fl.clients,
            "rounds": fl.rounds,
            "epochs": fl.epochs,
            "batch_size": fl.batch_size,
            "learning_rate": fl.learning_rate,
            "partition": fl.partition,
            "seed": fl.seed,
            "aggregation": fl.contract.aggregation,
            "scale": fl.fixed_point.scale,
            "max_abs": fl.fixed_point.max_abs,
        },
        "num_weights": result.num_weights,
        "num_segments": result.num_segments,
        "words_per_segment": words_per_segment,
        "deploy_gas": result.deploy_gas,
        "initial_accuracy": result.initial_accuracy,
        "rounds": [
            {
                "round": report.round_number,
                "accuracy_chain": report.accuracy_chain,
                "accuracy_plain": report.accuracy_plain,
                "gap_pp": report.gap_pp,
                "gas_used": report.gas_used,
                "gas_per_weight_per_client": report.gas_used
                / max(1, report.submissions)
                / result.num_weights,
                "submissions": report.submissions,
                "exact_average": report.exact_average,
                "seconds": report.seconds,
            }
            for report in result.rounds
        ],
        "final_accuracy_chain": result.rounds[-1].accuracy_chain,
        "final_accuracy_plain": result.rounds[-1].accuracy_plain,
        "final_gap_pp": result.final_gap_pp,
        "gas_per_round_median": statistics.median(round_gas),
        "gas_per_round_max": max(round_gas),
        "largest_transaction_gas": max(chain.gas_used),
        "tx_gas_cap": chain.tx_gas_cap,
        "every_average_exact": all(report.exact_average for report in result.rounds),
        "seconds": seconds,
        "machine": machine(),
    }


def markdown(record: dict[str, Any]) -> str:
    """The README's table."""
    s = record["settings"]
    lines = [
        f"`{record['command']}`: `{record['task']}` ({record['num_weights']:,} weights in "
        f"{record['num_segments']} segments of up to {record['words_per_segment']} words), "
        f"{s['clients']} {s['partition'].upper() if s['partition'] == 'iid' else s['partition']} "
        f"clients x {s['rounds']} rounds, E={s['epochs']} B={s['batch_size']} "
        f"lr={s['learning_rate']}, {s['aggregation']} aggregation, fixed point 1/{s['scale']}, "
        f"on {record['network']}:",
        "",
        "| round | chain % | plain % | gap (pp) | gas of the round | gas / weight / client |"
        " exact average |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in record["rounds"]:
        lines.append(
            f"| {row['round']} | {100 * row['accuracy_chain']:.2f} | "
            f"{100 * row['accuracy_plain']:.2f} | {row['gap_pp']:+.2f} | {row['gas_used']:,} | "
            f"{row['gas_per_weight_per_client']:.0f} | {'yes' if row['exact_average'] else 'no'} |"
        )
    lines += [
        "",
        f"Final: chain {100 * record['final_accuracy_chain']:.2f} %, plain "
        f"{100 * record['final_accuracy_plain']:.2f} % ({record['final_gap_pp']:+.2f} pp); "
        f"gas per round median {record['gas_per_round_median']:,.0f}; deployment "
        f"{record['deploy_gas']:,}; largest transaction {record['largest_transaction_gas']:,} "
        f"(cap {record['tx_gas_cap']:,}); {record['seconds']:.0f} s in all.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the example through the chain and write its figures; 1 when it misses the bar."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    fl = settings(args)
    project = load_config()
    started = time.perf_counter()
    with tqdm(total=fl.clients * fl.rounds, desc="cnn example", unit="submission") as bar:
        if args.network == "anvil":
            with anvil_node(accounts=max(20, fl.clients + 2)) as node:
                chain = connect("anvil", config=project, url=node.url)
                result = run(fl, chain, bar)
                record = summary(result, chain, fl, "anvil", time.perf_counter() - started)
        else:
            chain = connect("embedded", config=project, num_accounts=max(20, fl.clients + 2))
            result = run(fl, chain, bar)
            record = summary(result, chain, fl, "embedded", time.perf_counter() - started)
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = write_json("cnn_example", record, args.out / "cnn_example.json")
    md_path = args.out / "cnn_example.md"
    md_path.write_text(markdown(record), encoding="utf-8")
    print(markdown(record))
    print(f"wrote {json_path} and {md_path}")
    if abs(record["final_gap_pp"]) > TOLERANCE_PP or not record["every_average_exact"]:
        print("error: the chain misses the plain run or an average is not exact", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
