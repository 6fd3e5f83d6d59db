"""The incentive bar across data splits, and against the honest clients alone, offline.

Run: ``.venv/bin/python -m bench.incentive_seeds`` (about 15 minutes on 2 cores; ``--quick``:
IID, the trimmed mean and seeds 0 and 1 for 5 rounds; ``--render``: the Markdown again from the
recorded JSON). Writes ``bench/results/incentive_seeds.json`` and ``.md``.

``bench.incentives`` measures the bar of the issue "Rewards that pay for training" on one data
split (``seed`` 0) and against a clean run of ten honest clients. Each attacker there takes the
seat of an honest client (the first; the Sybils the first three), so its run also loses that
client's data: the gap to the clean run is the attack's cost *plus* the cost of one client
fewer, which no rule can win back. This benchmark separates the two and asks whether seed 0 was
typical: for seeds 0-4 (each a different Dirichlet split, initial model and training), it plays
the rounds in exact integer arithmetic (``bench.incentive_rules.run``: the contract's trimmed
mean, bounds and guards exactly, reproducing the chain's runs) and compares every strategy's
final accuracy with

- the clean run of ten honest clients (``vs_ten``: the issue's bar as ``bench.incentives``
  reads it), and
- the same honest clients alone, the attacker's seats left empty (``vs_alone``: the rounds close
  without it, as they would if it stayed away): what the attack itself costs.

It also records, per seed, the rounds after the first in which the attacker was paid and scored
at least as well as every honest client under the ``progress`` rule (the rewards half of the
bar), and how a detector of near copies would see each attacker (:func:`near_copy_ratios`; the
``copycat_masked`` strategy, :class:`bench.incentive_rules.MaskedCopycat`, is the copycat's
answer to such a detector). Each seed's guards, tiers and bounds are calibrated on its own pilot (ten honest clients,
:func:`offline_pilot`) by :func:`bench.incentives.calibrate`, as ``bench.incentives`` calibrates
each partition (``--fixed-settings``: the settings of a ``bench.incentives`` JSON for every seed).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from bench import incentive_rules
from bench.common import machine, write_json
from bench.incentive_rules import (
    l1,
    nearest_distance,
    run,
    settings_from_report,
    summarize,
    tier_reward,
)
from bench.incentives import (
    CLIENTS,
    DATASET,
    SYBILS,
    Context,
    Incentives,
    MemberRound,
    RoundRecord,
    RunRecord,
    _finite,
    _worst,
    calibrate,
    last_three_gap,
    make_context,
    meets_reward_bar,
    pilot_settings,
    ratio,
    warm_up,
)
from fl_client.config import load_config

RESULTS = Path(__file__).resolve().parent / "results"
COMMAND = ".venv/bin/python -m bench.incentive_seeds"
ROUNDS = 10
SEEDS = (0, 1, 2, 3, 4)
AGGREGATORS = ("trimmed", "mean")  # the recommended average; FedAvg with the bounds
# The rules' grid, and the copycat's answer to a near-copy detector.
STRATEGIES = (*incentive_rules.STRATEGIES, "copycat_masked")
RULE = "progress"  # the recommended rule: the copycat copies what it pays best
BAR_PP = 1.0


def seats(strategy: str) -> int:
    """Honest seats the strategy takes (the Sybils three, every other attacker one)."""
    return SYBILS if strategy.startswith("sybils") else 1


def paid_rewards(
    settings: Incentives, result: dict[str, Any], trace: Sequence[Any]
) -> list[list[int]]:
    """Per round, what the contract's ``progress`` tier ladder pays each seat: its tier if the
    guards let it be paid (its score is recorded), else 0."""
    rewards = []
    for record, (model, updates, _, new) in zip(result["rounds"], trace, strict=True):
        rewards.append(
            [
                tier_reward(settings, RULE, model, new, update) if score is not None else 0
                for score, update in zip(record["scores"][RULE], updates, strict=True)
            ]
        )
    return rewards


def near_copy_ratios(roles: Sequence[str], trace: Sequence[Any]) -> dict[str, float | None]:
    """How a detector of near copies (a rule that refuses an update within some L1 distance of
    one revealed the round before) would see the attacker, in the rounds after the first:

    - ``fixed``: the attacker seats' smallest distance to an update of the round before, over
      the honest clients' smallest, each over the whole run. Below 1, a fixed threshold between
      the two refuses the attacker in some round and no honest client in any; at or above 1,
      every fixed threshold that refuses it once refuses an honest client too.
    - ``by_round``: the lowest of the same ratio taken round by round (below 1, a threshold set
      for that round alone, between the two, would refuse it then).

    ``None`` for both: no attacker."""
    present = [i for i, role in enumerate(roles) if role != "absent"]
    attackers = [i for i in present if roles[i] != "honest"]
    if not attackers:
        return {"fixed": None, "by_round": None}
    pairs = []
    for (_, before, _, _), (_, updates, _, _) in itertools.pairwise(trace):
        others = [before[i] for i in present]
        nearest = {i: nearest_distance(updates[i], others) for i in present}
        pairs.append(
            (
                min(nearest[i] for i in attackers),
                min(nearest[i] for i in present if roles[i] == "honest"),
            )
        )
    if not pairs:
        return {"fixed": None, "by_round": None}
    honest = min(h for _, h in pairs)
    # An honest client that resubmitted an earlier update exactly: no threshold separates anyone.
    by_round = [a / h for a, h in pairs if h]
    return {
        "fixed": round(min(a for a, _ in pairs) / honest, 3) if honest else None,
        "by_round": round(min(by_round), 3) if by_round else None,
    }


def reward_bar(result: dict[str, Any]) -> dict[str, Any]:
    """The bar's reward half, as ``bench.incentives`` reads it on the chain: per round the
    attacker seats' mean reward over the honest clients' mean, in total and in every round after
    the first strictly below 1."""
    pairs = []
    for record, paid in zip(result["rounds"], result["rewards"], strict=True):
        roles = record["roles"]
        attacker = [w for w, r in zip(paid, roles, strict=True) if r not in ("honest", "absent")]
        honest = [w for w, r in zip(paid, roles, strict=True) if r == "honest"]
        pairs.append((statistics.fmean(attacker), statistics.fmean(honest)))
    per_round = [ratio(a, h) for a, h in pairs]
    total = ratio(sum(a for a, _ in pairs), sum(h for _, h in pairs))
    return {
        "relative_reward_total": _finite(total),
        "worst_relative_reward_after_round_1": _finite(_worst(per_round[1:])),
        "reward_bar": meets_reward_bar(total, per_round[1:], trains=False),
    }


def offline_pilot(ctx: Context, partition: str, rounds: int) -> RunRecord:
    """``bench.incentives``'s pilot (ten honest clients, :func:`bench.incentives.pilot_settings`:
    the direction guard and the share cap, no reward rules or bounds) played offline, as the
    record :func:`bench.incentives.calibrate` reads: each update's distance from the model it
    was sent against and, when counted, from the round's new model."""
    trace: list[Any] = []
    result = run(
        ctx, "honest", "mean", "distance_new", pilot_settings(), rounds=rounds,
        size=lambda number: 0, trace=trace,
    )  # fmt: skip
    records = []
    models: list[tuple[int, ...]] = [tuple(int(v) for v in ctx.initial)]
    for record, accuracy, (model, updates, samples, new) in zip(
        result["rounds"], result["accuracy_by_round"], trace, strict=True
    ):
        members = tuple(
            MemberRound(
                client=i,
                role="honest",
                sample_count=samples[i],
                counted=counted,
                tier=0,
                reward_wei=0,
                distance_current=l1(update, model),
                distance_new=l1(update, new) if counted else None,
                along=0,  # the alignment is not measured here: calibrate does not read it
                against=0,
            )
            for i, (update, counted) in enumerate(zip(updates, record["counted"], strict=True))
        )
        records.append(RoundRecord(record["round"], accuracy / 100, members, clamped=0))
        models.append(tuple(int(v) for v in new))
    return RunRecord(
        partition=partition,
        strategy="honest",
        reference="aggregate",
        bounds="off",
        mode="plain",
        rounds=tuple(records),
        models=tuple(models),
        seconds=0.0,
    )


def seed_report(
    partition: str,
    seed: int,
    settings: Incentives | None = None,
    *,
    aggregators: Sequence[str],
    rounds: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Every (aggregator, strategy) run of one data split, with its two baselines, under
    ``settings`` or (``None``) the settings :func:`bench.incentives.calibrate` draws from this
    split's own pilot (:func:`offline_pilot`), as ``bench.incentives`` calibrates each
    partition."""
    fl = load_config().fl.with_overrides(dataset=DATASET, clients=CLIENTS, rounds=rounds, seed=seed)
    ctx = make_context(fl, partition)
    warm_up(ctx)
    if settings is None:
        settings, _ = calibrate(offline_pilot(ctx, partition, rounds), rounds)
        log(f"{partition} seed {seed}: calibrated {settings}")

    def play(strategy: str, aggregator: str, size: Callable[[int], int]) -> dict[str, Any]:
        trace: list[Any] = []
        result = run(
            ctx, strategy, aggregator, RULE, settings, rounds=rounds, size=size, trace=trace
        )
        result["rewards"] = paid_rewards(settings, result, trace)
        result["near_copy"] = near_copy_ratios(result["rounds"][0]["roles"], trace)
        return result

    clean_mean = play("honest", "mean", lambda number: 0)
    typical = [int(statistics.median(d)) for d in clean_mean["honest_distances"]]

    def size(number: int) -> int:  # an honest update's L1 size in round ``number``
        return typical[min(number, len(typical)) - 1]

    rows = []
    for aggregator in aggregators:
        clean = clean_mean if aggregator == "mean" else play("honest", aggregator, size)
        alone = {n: play(f"absent_{n}", aggregator, size) for n in sorted({1, SYBILS})}
        log(
            f"{partition} seed {seed} {aggregator}: clean {clean['accuracy']} %, "
            + ", ".join(f"{n} seat(s) empty {a['accuracy']} %" for n, a in alone.items())
        )
        for strategy in STRATEGIES:
            result = play(strategy, aggregator, size)
            base = alone[seats(strategy)]
            row = {
                "partition": partition,
                "seed": seed,
                "aggregator": aggregator,
                "strategy": strategy,
                "accuracy": result["accuracy"],
                "clean": clean["accuracy"],
                "alone": base["accuracy"],
                "vs_ten_pp": round(result["accuracy"] - clean["accuracy"], 2),
                "vs_alone_pp": round(result["accuracy"] - base["accuracy"], 2),
                "vs_alone_last_3_pp": round(
                    last_three_gap(result["accuracy_by_round"], base["accuracy_by_round"]), 2
                ),
                "beats_all": summarize(result, RULE)["beats_all"],
                "near_copy_fixed": result["near_copy"]["fixed"],
                "near_copy_by_round": result["near_copy"]["by_round"],
                **reward_bar(result),
            }
            rows.append(row)
            log(
                f"{partition} seed {seed} {aggregator} {strategy}: {row['vs_ten_pp']:+} pp vs ten, "
                f"{row['vs_alone_pp']:+} pp vs alone, outscores all in {row['beats_all']}, "
                f"relative reward {row['relative_reward_total']} "
                f"(worst round {row['worst_relative_reward_after_round_1']})"
            )
    return {"partition": partition, "seed": seed, "settings": asdict(settings), "runs": rows}


def summary(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (partition, aggregator, strategy): the seeds whose final accuracy is more than
    ``BAR_PP`` below each baseline, the worst and mean gaps, and the seeds in which it outscored
    every honest client in some round after the first."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["partition"], row["aggregator"], row["strategy"]), []).append(row)
    out = []
    for (partition, aggregator, strategy), group in groups.items():
        ten = [r["vs_ten_pp"] for r in group]
        alone = [r["vs_alone_pp"] for r in group]
        out.append(
            {
                "partition": partition,
                "aggregator": aggregator,
                "strategy": strategy,
                "seeds": [r["seed"] for r in group],
                "below_ten": [r["seed"] for r in group if r["vs_ten_pp"] < -BAR_PP],
                "below_alone": [r["seed"] for r in group if r["vs_alone_pp"] < -BAR_PP],
                "worst_vs_ten_pp": min(ten),
                "mean_vs_ten_pp": round(statistics.fmean(ten), 2),
                "worst_vs_alone_pp": min(alone),
                "mean_vs_alone_pp": round(statistics.fmean(alone), 2),
                "worst_vs_alone_last_3_pp": min(r["vs_alone_last_3_pp"] for r in group),
                "outscores_all": [r["seed"] for r in group if r["beats_all"]],
                "reward_bar_fails": [r["seed"] for r in group if not r["reward_bar"]],
                "worst_relative_reward_total": _highest(r["relative_reward_total"] for r in group),
                "worst_relative_reward_after_round_1": _highest(
                    r["worst_relative_reward_after_round_1"] for r in group
                ),
                "lowest_near_copy_fixed": _lowest(r["near_copy_fixed"] for r in group),
                "lowest_near_copy_by_round": _lowest(r["near_copy_by_round"] for r in group),
            }
        )
    return out


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown."""
    seeds = ", ".join(str(s) for s in report["seeds"])
    lines = [
        "# The incentive bar across data splits",
        "",
        f"`{report['command']}`: {report['seconds'] / 60:.0f} minutes on "
        f"{report['machine']['cpus']} cores, seeds {seeds}, {report['rounds']} rounds, offline "
        "(the contract's arithmetic exactly, no chain), "
        + (
            "guards and bounds as recorded in the given file, for every seed"
            if "--fixed-settings" in report["command"]
            else "guards, tiers and bounds calibrated on each seed's own pilot as "
            "`bench.incentives` calibrates (the `settings` of the JSON)"
        )
        + ". *vs ten*: final accuracy against the clean run of ten honest clients; *vs "
        "alone*: against the same honest clients with the attacker's seats left empty, i.e. "
        "what the attack itself costs. A seed is listed where the gap is below "
        f"-{BAR_PP:g} pp. *Outscores all*: seeds in which, in some round after the first, the "
        f"attacker was paid and scored at least as well as every honest client under `{RULE}`. "
        "*Relative reward*: the attacker's mean reward over the honest clients' (the `progress` "
        "tiers as calibrated), the largest over the seeds, in total and in the worst round "
        "after the first; the reward bar fails where either is not below 1. *Near copy*: how a "
        "detector of near copies (a threshold on the L1 distance to the nearest update of the "
        "round before) would see the attacker, the lowest over the seeds: its smallest distance "
        "over the honest clients' smallest, over the rounds after the first (*fixed*: below "
        "1, a fixed threshold refuses it in some round and no honest client in any; at or above "
        "1, none does) and round by round (*by round*: the lowest ratio of a single round).",
        "",
        "| partition | aggregator | strategy | seeds > 1 pp below ten | worst / mean vs ten "
        "(pp) | seeds > 1 pp below alone | worst / mean vs alone (pp) | worst last 3 rounds "
        "vs alone (pp) | outscores all | relative reward: total / worst round | reward bar "
        "fails | near copy: fixed / by round |",
        "|---|---|---|---|---:|---|---:|---:|---|---:|---|---:|",
    ]
    for s in report["summary"]:
        lines.append(
            f"| {s['partition']} | {s['aggregator']} | {s['strategy']} | "
            f"{_seeds(s['below_ten'])} | {s['worst_vs_ten_pp']:+} / {s['mean_vs_ten_pp']:+} | "
            f"{_seeds(s['below_alone'])} | {s['worst_vs_alone_pp']:+} / "
            f"{s['mean_vs_alone_pp']:+} | {s['worst_vs_alone_last_3_pp']:+} | "
            f"{_seeds(s['outscores_all'])} | {_reward(s['worst_relative_reward_total'])} / "
            f"{_reward(s['worst_relative_reward_after_round_1'])} | "
            f"{_seeds(s['reward_bar_fails'])} | {_reward(s['lowest_near_copy_fixed'])} / "
            f"{_reward(s['lowest_near_copy_by_round'])} |"
        )
    lines += [
        "",
        "## Every run",
        "",
        "| partition | seed | aggregator | strategy | clean (ten) % | honest alone % | final % "
        "| vs ten (pp) | vs alone (pp) | last 3 rounds vs alone (pp) | relative reward: total "
        "/ worst round |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["runs"]:
        lines.append(
            f"| {r['partition']} | {r['seed']} | {r['aggregator']} | {r['strategy']} | "
            f"{r['clean']} | {r['alone']} | {r['accuracy']} | {r['vs_ten_pp']:+} | "
            f"{r['vs_alone_pp']:+} | {r['vs_alone_last_3_pp']:+} | "
            f"{_reward(r['relative_reward_total'])} / "
            f"{_reward(r['worst_relative_reward_after_round_1'])} |"
        )
    return "\n".join(lines) + "\n"


def _highest(values: Iterable[float | str | None]) -> float | str | None:
    """The largest of per-seed relative rewards (``"inf"``: only the attacker was paid; ``None``:
    nobody was)."""
    present = [math.inf if v == "inf" else float(v) for v in values if v is not None]
    return _finite(max(present)) if present else None


def _lowest(values: Iterable[float | None]) -> float | None:
    """The lowest of per-seed ratios (``None``: none recorded)."""
    return min((v for v in values if v is not None), default=None)


def _reward(value: float | str | None) -> str:
    return "-" if value is None else str(value)


def _seeds(numbers: Sequence[int]) -> str:
    return " ".join(str(n) for n in numbers) if numbers else "none"


def main(argv: Sequence[str] | None = None) -> int:
    """Run every seed, write the JSON and the Markdown."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="IID, trimmed, seeds 0-1, 5 rounds")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--partitions", nargs="+", default=["dirichlet", "iid"])
    parser.add_argument(
        "--fixed-settings",
        type=Path,
        help="every seed under the settings recorded in this bench.incentives JSON (default: "
        "each seed calibrated on its own pilot)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--render", action="store_true", help="rewrite the Markdown from the recorded JSON only"
    )
    args = parser.parse_args(argv)
    if args.render:
        recorded = json.loads((args.out / "incentive_seeds.json").read_text(encoding="utf-8"))
        (args.out / "incentive_seeds.md").write_text(markdown(recorded), encoding="utf-8")
        return 0
    torch.set_num_threads(1)
    started = time.perf_counter()
    rounds = 5 if args.quick else ROUNDS
    seeds = [0, 1] if args.quick else args.seeds
    partitions = ["iid"] if args.quick else args.partitions
    aggregators = ("trimmed",) if args.quick else AGGREGATORS

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f} s] {message}", flush=True)

    fixed: dict[str, Incentives | None] = {p: None for p in partitions}
    if args.fixed_settings:
        recorded = json.loads(args.fixed_settings.read_text(encoding="utf-8"))["partitions"]
        fixed.update({p["partition"]: settings_from_report(p["settings"]) for p in recorded})
    splits = [
        seed_report(
            partition, seed, fixed[partition], aggregators=aggregators, rounds=rounds, log=log
        )
        for partition in partitions
        for seed in seeds
    ]
    rows = [row for split in splits for row in split["runs"]]
    report: dict[str, Any] = {
        "command": COMMAND
        + (" --quick" if args.quick else "")
        + (f" --fixed-settings {args.fixed_settings}" if args.fixed_settings else ""),
        "machine": machine(),
        "rounds": rounds,
        "seeds": seeds,
        "settings": {
            f"{split['partition']}/{split['seed']}": split["settings"] for split in splits
        },
        "summary": summary(rows),
        "runs": rows,
    }
    report["seconds"] = round(time.perf_counter() - started, 1)
    write_json("incentive_seeds", report, args.out / "incentive_seeds.json")
    text = markdown(report)
    (args.out / "incentive_seeds.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
