"""``simulate``: the main job, N clients x R rounds in one process beside plain PyTorch, with a
progress bar and the result table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fl_client.cli.options import DEFAULT_OUT, add_fl_options, add_network, fl_overrides
from fl_client.config import load_config


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``simulate`` to the command line."""
    simulate = commands.add_parser(
        "simulate", help="the main job: N clients x R rounds in one process"
    )
    add_network(simulate)
    add_fl_options(simulate)
    simulate.add_argument(
        "--out", default=str(DEFAULT_OUT / "simulation"), help="folder for JSON, CSV and plots"
    )
    simulate.add_argument("--tolerance", type=float, default=1.0, help="allowed accuracy gap in pp")
    simulate.add_argument("--quiet", action="store_true", help="no progress bar")
    simulate.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the main job and print its table; exit 1 when the chain and plain runs part."""
    from tqdm import tqdm

    from fl_client.report import format_table, table_rows, write_outputs
    from fl_client.simulation import run_simulation, task_of

    project = load_config()
    fl = fl_overrides(project, args)
    task = task_of(fl)  # a task that misses a piece fails here, before the run
    selected = max(1, round(fl.clients * fl.fraction))
    total = fl.rounds * selected
    print(
        f"Federated run on the {args.network or project.default_network} chain: {fl.task_reference}, "
        f"{fl.clients} clients x {fl.rounds} rounds, E={fl.epochs} B={fl.batch_size} lr={fl.learning_rate}, "
        f"{fl.partition} shards, {fl.contract.mode} mode"
        + (f", {fl.relayed_clients} relayed" if fl.relayed_clients else "")
        + (
            f", DP (C={fl.privacy.clip_norm}, sigma={fl.privacy.noise_multiplier})"
            if fl.privacy.dp
            else ""
        )
    )
    # No bar when the output goes to a file: a redirected log would fill with its redraws.
    quiet = args.quiet or not sys.stderr.isatty()
    with tqdm(total=total, unit="submission", disable=quiet, dynamic_ncols=True) as bar:

        def progress(message: str) -> None:
            if "submitted" in message:
                bar.update(1)
            bar.set_postfix_str(message)

        result = run_simulation(
            fl,
            project=project,
            network=args.network or project.default_network,
            tolerance_pp=args.tolerance,
            check_accuracy=False,
            progress=progress,
            task=task,
        )
    header, rows = table_rows(result)
    print()
    print(format_table(header, rows))
    last = result.rounds[-1]
    print(
        f"\nfinal test accuracy: chain {100 * last.accuracy_chain:.2f}%  plain {100 * last.accuracy_plain:.2f}%"
        f"  gap {last.gap_pp:+.2f} pp (tolerance {args.tolerance} pp)"
    )
    if last.epsilon is not None:
        print(
            f"differential privacy: each client is ({last.epsilon:.2f}, {fl.privacy.delta:g})-DP after "
            f"{fl.rounds} rounds; the plain run is the non-private baseline, so the gap is the cost "
            "of privacy and is not held to the tolerance"
        )
    exact = all(r.exact_average for r in result.rounds)
    trim = fl.contract.trim_each
    average = f"trimmed mean ({trim} cut at each end)" if trim else "integer average"
    print(f"on-chain model == {average} of the submitted vectors in every round: {exact}")
    print(
        f"{result.num_weights:,} weights in {result.num_segments} segment(s), deployment gas "
        f"{result.deploy_gas:,}, {result.seconds:.1f} s in all; contract {result.contract_address}"
    )
    out = Path(args.out)
    paths = write_outputs(result, out)
    print("wrote " + ", ".join(str(p) for p in paths))
    if not fl.privacy.dp and abs(result.final_gap_pp) > args.tolerance:
        print(
            f"error: the chain-based and plain runs differ by {result.final_gap_pp:+.2f} pp, "
            f"more than {args.tolerance} pp",
            file=sys.stderr,
        )
        return 1
    if not exact:
        print("error: the on-chain model differs from the reference average", file=sys.stderr)
        return 1
    return 0
