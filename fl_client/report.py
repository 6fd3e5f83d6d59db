"""The main job's output: the per-round table (printed, and the same columns in ``rounds.csv``),
``result.json`` and two plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from fl_client.simulation import SimulationResult


def tier_columns(result: SimulationResult) -> list[str]:
    """Every tier of the deployment, as the configuration lists them, then ``none``: the same
    columns in every run."""
    return [f"T{i + 1}" for i in range(result.tiers)] + ["none"]


def table_rows(result: SimulationResult) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-round table."""
    header = [
        "round",
        "acc chain %",
        "acc plain %",
        "gap pp",
        "submissions",
        "relayed",
        "median distance",
        "gas used",
    ]
    private = any(r.epsilon is not None for r in result.rounds)
    header += ["epsilon"] if private else []
    tiers = tier_columns(result)
    header += [f"{label} (n x wei)" for label in tiers]
    rows = []
    for report in result.rounds:
        row = [
            str(report.round_number),
            f"{100 * report.accuracy_chain:.2f}",
            f"{100 * report.accuracy_plain:.2f}",
            f"{report.gap_pp:+.2f}",
            str(report.submissions),
            str(report.relayed),
            f"{int(np.median(report.distances)):,}" if report.distances else "-",
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
    """Write ``result.json``, ``rounds.csv`` (the printed table's columns), ``accuracy.png`` and
    ``rewards.png`` into ``directory``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "result.json"
    json_path.write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")

    csv_path = directory / "rounds.csv"
    header, rows = table_rows(result)
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)

    rounds = [0] + [r.round_number for r in result.rounds]
    chain = [100 * result.initial_accuracy] + [100 * r.accuracy_chain for r in result.rounds]
    plain = [100 * result.initial_accuracy] + [100 * r.accuracy_plain for r in result.rounds]
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(6, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1.4]}
    )
    top.plot(rounds[1:], chain[1:], marker="o", label="chain-based (fixed point, on-chain FedAvg)")
    top.plot(
        rounds[1:], plain[1:], marker="x", linestyle="--", label="plain federated (float, PyTorch)"
    )
    low, high = min(chain[1:] + plain[1:]), max(chain[1:] + plain[1:])
    margin = max(0.5, 0.1 * (high - low))
    top.set_ylim(low - margin, high + margin)  # zoomed to the data: the lines are told apart
    top.set_ylabel("test accuracy (%)")
    top.set_title(
        f"{result.dataset}: {result.clients} clients (round 0: {100 * result.initial_accuracy:.1f} %)"
    )
    top.grid(True, alpha=0.3)
    top.legend(fontsize=8)
    gaps = [r.gap_pp for r in result.rounds]
    bottom.bar(rounds[1:], gaps, color=["tab:green" if g >= 0 else "tab:red" for g in gaps])
    bottom.axhline(0, color="black", linewidth=0.8)
    bottom.set_ylabel("chain - plain (pp)")
    bottom.set_xlabel("round")
    bottom.grid(True, alpha=0.3)
    figure.tight_layout()
    accuracy_path = directory / "accuracy.png"
    figure.savefig(accuracy_path, dpi=100)
    plt.close(figure)

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
    return [json_path, csv_path, accuracy_path, rewards_path]
