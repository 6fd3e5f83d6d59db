"""Adversaries benchmark: the poisoning defences on digits, and the gas price of commit-reveal.

Run: ``.venv/bin/python -m bench.adversaries`` (about 6 minutes on the embedded chain; ``--skip-gas``
leaves out the 7,850-weight gas part). Writes ``bench/results/adversaries.json`` and
``bench/results/adversaries.md``.

Poisoning: 10 IID clients train softmax regression on ``digits`` for 5 rounds (the project's
defaults: E=5, B=10, lr 0.3, plain mean), each round through a coordinator on the embedded chain.
Two clients are attackers: they train like everyone else, then submit
``global + k * (trained - global)`` (k = 10: scaled; k = -1: sign-flipped; k = -10: both),
quantized and clipped to the fixed-point range by the codec. Every attack runs without defences,
with ``maxCountedDistance`` alone, and with it and the direction guard (``minAlignment = 0``: an
update may not move the weights more against the last round's step than along it). The bound is
chosen from the honest distances of the clean run (no attackers, no defences): the smallest
multiple of the tier step (32 quanta per weight, the first per-weight threshold of
``brownie-config.yaml``) at or above 1.5 x the largest honest per-weight L1 distance seen. The
clean run is repeated with both defences, to show what they cost honest clients. The bar: with
the defences, the final accuracy stays within 2 percentage points of the clean run.

Honest clients over a long run: the guard must not turn on honest clients once training slows
down and steps get noisy, nor when their data differ. 10 honest clients train for 20 rounds
(``--long-rounds``) on IID and on Dirichlet(0.5) shards, with the direction guard and without;
recorded: how many honest submissions the guard left out, their lowest alignment per round, and
the final accuracies (``--skip-long`` leaves this part out).

Gas: 10 clients, 7,850 weights (MNIST softmax regression), two rounds in Direct mode and in
CommitReveal mode; round-2 medians of ``submit`` against ``commit`` + ``reveal``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from fl_client.chain import (
    Chain,
    DeployParams,
    commit_words,
    connect,
    deploy,
    read_model_words,
    read_round,
    reveal_words,
    submission_from_receipt,
    submit_words,
)
from fl_client.codec import dequantize, encode, pack, unpack
from fl_client.config import ALIGNMENT_OFF, FLConfig, load_config
from fl_client.data import Dataset, Shard, load_dataset, make_shards
from fl_client.model import build_model, get_flat_parameters, set_flat_parameters
from fl_client.training import TrainConfig, client_seed, evaluate, train_local

RESULTS = Path(__file__).resolve().parent / "results"
COMMAND = ".venv/bin/python -m bench.adversaries"
ATTACKS = (("scaled x10", 10), ("sign-flipped", -1), ("sign-flipped x10", -10))
MIN_ALIGNMENT_BPS = 0  # the direction guard of the defended runs
BAR_PP = 2.0
BOUND_MARGIN = 1.5
GAS_WEIGHTS = 7_850


# ---------------------------------------------------------------- poisoning


def run_federation(
    chain: Chain,
    fl: FLConfig,
    dataset: Dataset,
    shards: Sequence[Shard],
    *,
    rounds: int,
    attackers: Sequence[int],
    k: float,
    max_counted_distance: int,
    min_alignment_bps: int = ALIGNMENT_OFF,
) -> dict[str, Any]:
    """Run ``rounds`` rounds on a fresh coordinator; ``attackers`` submit the ``k``-scaled update."""
    started = time.perf_counter()
    fmt = fl.fixed_point
    config = TrainConfig(
        epochs=fl.epochs,
        batch_size=fl.batch_size,
        learning_rate=fl.learning_rate,
        algorithm=fl.algorithm,
    )
    model = build_model(dataset.num_features, dataset.num_classes, seed=fl.seed)
    initial_words, _ = encode(get_flat_parameters(model), fmt)
    num_weights = get_flat_parameters(model).size
    clients = len(shards)
    params = replace(
        DeployParams.from_config(fl, num_weights=num_weights, clients=clients),
        target_submissions=clients,
        min_submissions=clients,
        max_counted_distance=max_counted_distance,
        min_alignment_bps=min_alignment_bps,
    )
    contract = deploy(chain, params, initial_words=initial_words, pool_wei=fl.rewards.pool_wei)
    accuracy: list[float] = []
    honest_distances: list[list[int]] = []
    attacker_distances: list[list[int]] = []
    alignments: dict[str, list[list[float]]] = {"honest": [], "attackers": []}
    honest_excluded = attacker_counted = clipped = 0
    rewards = {"honest": 0, "attackers": 0}
    for round_number in range(1, rounds + 1):
        words = read_model_words(contract)
        global_flat = dequantize(unpack(words, num_weights), fmt)
        honest_round: list[int] = []
        attacker_round: list[int] = []
        aligned_round: dict[str, list[float]] = {"honest": [], "attackers": []}
        for client in range(clients):
            set_flat_parameters(model, global_flat)
            train_local(
                model, shards[client], config, seed=client_seed(fl.seed, client, round_number)
            )
            trained = get_flat_parameters(model)
            attacking = client in attackers
            update = global_flat + k * (trained - global_flat) if attacking else trained
            update_words, quantized = encode(update, fmt, expected=num_weights)
            receipts = submit_words(
                chain,
                contract,
                chain.accounts[1 + client],
                round_number=round_number,
                sample_count=shards[client].num_samples,
                words=update_words,
                words_per_segment=params.words_per_segment,
            )
            record = submission_from_receipt(contract, receipts[-1])
            assert record is not None
            if record.alignment is not None:
                aligned_round["attackers" if attacking else "honest"].append(
                    round(record.alignment, 4)
                )
            if attacking:
                attacker_round.append(record.distance)
                attacker_counted += record.counted
                clipped += quantized.clipped
                rewards["attackers"] += record.reward_wei
            else:
                honest_round.append(record.distance)
                honest_excluded += not record.counted
                rewards["honest"] += record.reward_wei
        if read_round(contract).number != round_number + 1:
            raise RuntimeError(f"round {round_number} did not close")
        honest_distances.append(honest_round)
        attacker_distances.append(attacker_round)
        for side, values in aligned_round.items():
            alignments[side].append(values)
        set_flat_parameters(model, dequantize(unpack(read_model_words(contract), num_weights), fmt))
        accuracy.append(evaluate(model, dataset.x_test, dataset.y_test).accuracy)
    return {
        "accuracy_by_round": [round(a, 4) for a in accuracy],
        "final_accuracy": round(accuracy[-1], 4),
        "honest_distances": honest_distances,
        "attacker_distances": attacker_distances,
        "alignment": alignments,
        "attacker_submissions_counted": attacker_counted,
        "honest_submissions_excluded": honest_excluded,
        "attacker_weights_clipped": clipped,
        "rewards_wei": rewards,
        "num_weights": num_weights,
        "seconds": round(time.perf_counter() - started, 1),
    }


def choose_bound(honest: Sequence[Sequence[int]], num_weights: int, step: int) -> int:
    """The per-weight bound: the smallest multiple of ``step`` >= BOUND_MARGIN x the largest
    honest per-weight distance."""
    largest = max(max(r) for r in honest) / num_weights
    return step * math.ceil(BOUND_MARGIN * largest / step)


def distance_summary(rounds: Sequence[Sequence[int]], num_weights: int) -> list[dict[str, float]]:
    """Per round: min, median and max distance per weight."""
    return [
        {
            "round": i + 1,
            "min": round(min(r) / num_weights, 1),
            "median": round(statistics.median(r) / num_weights, 1),
            "max": round(max(r) / num_weights, 1),
        }
        for i, r in enumerate(rounds)
        if r
    ]


def poisoning(
    fl: FLConfig, *, rounds: int, clients: int, attackers: int, log: Any
) -> dict[str, Any]:
    """The clean run, then every attack without and with the bound."""
    dataset = load_dataset(fl.dataset, test_fraction=fl.test_fraction, seed=fl.seed)
    shards = make_shards(dataset, clients, scheme=fl.partition, seed=fl.seed)
    chain = connect("embedded", num_accounts=clients + 2)

    def run(
        k: float, bound: int, bad: Sequence[int], alignment: int = ALIGNMENT_OFF
    ) -> dict[str, Any]:
        result = run_federation(
            chain,
            fl,
            dataset,
            shards,
            rounds=rounds,
            attackers=bad,
            k=k,
            max_counted_distance=bound,
            min_alignment_bps=alignment,
        )
        log(
            f"k={k} bound={bound} alignment={alignment}: {result['accuracy_by_round']} "
            f"({result['seconds']} s)"
        )
        return result

    clean = run(1, 0, ())
    num_weights = clean["num_weights"]
    step = fl.rewards.thresholds_per_weight[0]
    per_weight = choose_bound(clean["honest_distances"], num_weights, step)
    bound = per_weight * num_weights
    clean_defended = run(1, bound, (), MIN_ALIGNMENT_BPS)
    bad = list(range(attackers))

    def gap(result: dict[str, Any]) -> float:
        return round(100 * (float(result["final_accuracy"]) - float(clean["final_accuracy"])), 2)

    attacks = []
    for name, k in ATTACKS:
        without = run(k, 0, bad)
        with_bound = run(k, bound, bad)
        defended = run(k, bound, bad, MIN_ALIGNMENT_BPS)
        attacks.append(
            {
                "attack": name,
                "k": k,
                "without_defences": without,
                "with_bound": with_bound,
                "with_defences": defended,
                "damage_without_defences_pp": gap(without),
                "gap_with_bound_pp": gap(with_bound),
                "gap_with_defences_pp": gap(defended),
                "within_bar": abs(gap(defended)) <= BAR_PP,
                "attackers_excluded_by_bound": with_bound["attacker_submissions_counted"] == 0,
                "attackers_excluded_by_defences": defended["attacker_submissions_counted"] == 0,
                "attacker_distance_per_weight": distance_summary(
                    with_bound["attacker_distances"], num_weights
                ),
            }
        )
    return {
        "dataset": fl.dataset,
        "clients": clients,
        "attackers": bad,
        "rounds": rounds,
        "training": {
            "epochs": fl.epochs,
            "batch_size": fl.batch_size,
            "learning_rate": fl.learning_rate,
            "aggregation": "mean",
            "partition": fl.partition,
            "seed": fl.seed,
        },
        "fixed_point": {"scale": fl.fixed_point.scale, "max_abs": fl.fixed_point.max_abs},
        "tier_thresholds_per_weight": list(fl.rewards.thresholds_per_weight),
        "honest_distance_per_weight": distance_summary(clean["honest_distances"], num_weights),
        "bound": {
            "per_weight": per_weight,
            "max_counted_distance": bound,
            "rule": (
                f"smallest multiple of {step} (the first tier's per-weight threshold) at or above "
                f"{BOUND_MARGIN} x the largest honest per-weight L1 distance of the clean run"
            ),
        },
        "min_alignment_bps": MIN_ALIGNMENT_BPS,
        "honest_alignment": alignment_summary(clean_defended["alignment"]["honest"]),
        "clean": clean,
        "clean_with_defences": clean_defended,
        "gap_clean_with_defences_pp": gap(clean_defended),
        "attacks": attacks,
        "bar_pp": BAR_PP,
    }


def alignment_summary(rounds: Sequence[Sequence[float]]) -> list[dict[str, float]]:
    """Per round with a step to compare with: min, median and max alignment."""
    return [
        {
            "round": i + 1,
            "min": round(min(r), 3),
            "median": round(statistics.median(r), 3),
            "max": round(max(r), 3),
        }
        for i, r in enumerate(rounds)
        if r
    ]


def long_runs(fl: FLConfig, *, rounds: int, clients: int, log: Any) -> list[dict[str, Any]]:
    """Honest clients only, ``rounds`` rounds, IID and Dirichlet shards, guard on and off."""
    dataset = load_dataset(fl.dataset, test_fraction=fl.test_fraction, seed=fl.seed)
    results = []
    for partition in ("iid", "dirichlet"):
        shards = make_shards(
            dataset, clients, scheme=partition, alpha=fl.dirichlet_alpha, seed=fl.seed
        )
        runs = {}
        for label, alignment in (("off", ALIGNMENT_OFF), ("on", MIN_ALIGNMENT_BPS)):
            runs[label] = run_federation(
                connect("embedded", num_accounts=clients + 2),
                fl,
                dataset,
                shards,
                rounds=rounds,
                attackers=(),
                k=1,
                max_counted_distance=0,
                min_alignment_bps=alignment,
            )
            log(
                f"long {partition} guard {label}: {runs[label]['final_accuracy']} "
                f"({runs[label]['seconds']} s)"
            )
        guarded = runs["on"]
        results.append(
            {
                "partition": partition,
                "alpha": fl.dirichlet_alpha if partition == "dirichlet" else None,
                "rounds": rounds,
                "clients": clients,
                "final_accuracy_guard_off": runs["off"]["final_accuracy"],
                "final_accuracy_guard_on": guarded["final_accuracy"],
                "honest_submissions_left_out": guarded["honest_submissions_excluded"],
                "honest_alignment": alignment_summary(guarded["alignment"]["honest"]),
                "accuracy_by_round_guard_off": runs["off"]["accuracy_by_round"],
                "accuracy_by_round_guard_on": guarded["accuracy_by_round"],
            }
        )
    return results


def with_notes(p: dict[str, Any]) -> dict[str, Any]:
    """``p`` with its notes."""
    return {**p, "notes": notes(p)}


# ---------------------------------------------------------------- commit-reveal gas


def commit_reveal_gas(fl: FLConfig, *, clients: int, seed: int, log: Any) -> dict[str, Any]:
    """Round-2 gas of Direct ``submit`` against CommitReveal ``commit`` + ``reveal``."""
    fmt = fl.fixed_point
    figures: dict[str, Any] = {}
    for mode in ("direct", "commit_reveal"):
        chain = connect("embedded", num_accounts=clients + 2)
        params = replace(
            DeployParams.from_config(fl, num_weights=GAS_WEIGHTS, clients=clients),
            target_submissions=clients,
            min_submissions=clients,
            mode=mode,
            reveal_duration=600,
        )
        contract = deploy(chain, params, pool_wei=10**18)
        rng = np.random.default_rng(seed)
        commits: list[int] = []
        sends: list[int] = []
        for round_number in (1, 2):
            commits, sends = [], []
            vectors = [
                pack(rng.integers(-fmt.max_abs, fmt.max_abs + 1, GAS_WEIGHTS))
                for _ in range(clients)
            ]
            salts = [bytes([round_number, client]) * 16 for client in range(clients)]
            if mode == "commit_reveal":
                for client, (words, salt) in enumerate(zip(vectors, salts, strict=True)):
                    receipt = commit_words(
                        chain,
                        contract,
                        chain.accounts[1 + client],
                        round_number=round_number,
                        sample_count=100,
                        words=words,
                        words_per_segment=params.words_per_segment,
                        salt=salt,
                    )
                    commits.append(int(receipt["gasUsed"]))
            for client, (words, salt) in enumerate(zip(vectors, salts, strict=True)):
                sender = chain.accounts[1 + client]
                common: dict[str, Any] = {
                    "round_number": round_number,
                    "sample_count": 100,
                    "words": words,
                    "words_per_segment": params.words_per_segment,
                }
                receipts = (
                    reveal_words(chain, contract, sender, salt=salt, **common)
                    if mode == "commit_reveal"
                    else submit_words(chain, contract, sender, **common)
                )
                sends.append(sum(int(r["gasUsed"]) for r in receipts))
            if read_round(contract).number != round_number + 1:
                raise RuntimeError(f"{mode}: round {round_number} did not close")
        figures[mode] = {
            "segments": int(contract.functions.numSegments().call()),
            "commit_gas_median": int(statistics.median(commits)) if commits else 0,
            "send_gas_median": int(statistics.median(sends[:-1])),
            "closing_send_gas": sends[-1],
            "round_total_gas": sum(commits) + sum(sends),
        }
        log(f"{mode}: {figures[mode]}")
    direct, cr = figures["direct"], figures["commit_reveal"]
    per_client = cr["commit_gas_median"] + cr["send_gas_median"] - direct["send_gas_median"]
    return {
        "weights": GAS_WEIGHTS,
        "clients": clients,
        "round": 2,
        "direct_submit_gas": direct["send_gas_median"],
        "commit_gas": cr["commit_gas_median"],
        "reveal_gas": cr["send_gas_median"],
        "extra_gas_per_client": per_client,
        "extra_percent": round(100 * per_client / direct["send_gas_median"], 1),
        "closing_submit_gas": direct["closing_send_gas"],
        "closing_reveal_gas": cr["closing_send_gas"],
        "round_total_direct": direct["round_total_gas"],
        "round_total_commit_reveal": cr["round_total_gas"],
        "extra_gas_per_round": cr["round_total_gas"] - direct["round_total_gas"],
        "segments": direct["segments"],
        "note": "commit-reveal also needs two transactions per client and a reveal phase "
        "(revealDuration) per round: latency, not gas",
    }


# ---------------------------------------------------------------- report


def pct(value: float) -> str:
    """A fraction as a percentage with one decimal."""
    return f"{100 * value:.1f} %"


def notes(p: dict[str, Any]) -> list[str]:
    """What the figures say, in words (computed from them)."""
    bound = p["bound"]["per_weight"]
    honest = p["honest_distance_per_weight"]
    guarded = p["clean_with_defences"]
    result = []
    for a in p["attacks"]:
        b, d = a["with_bound"], a["with_defences"]
        if a["attackers_excluded_by_bound"]:
            lowest = min(r["min"] for r in a["attacker_distance_per_weight"])
            result.append(
                f"{a['attack']}: every attacking submission lay beyond the bound (lowest "
                f"{lowest} per weight against {bound}): none counted or paid, and the model is the "
                f"average of the honest updates; the gap to the clean run is "
                f"{a['gap_with_defences_pp']:+.1f} pp with both defences."
            )
            continue
        flipped = [x for r in d["alignment"]["attackers"] for x in r]
        worst = f" (at most {max(flipped):+.2f})" if flipped else ""
        result.append(
            f"{a['attack']}: the update lies exactly as far from the global model as the honest "
            f"one it flips, so the bound alone counts all {b['attacker_submissions_counted']} "
            f"attacking submissions, pays the attackers {b['rewards_wei']['attackers']:,} wei and "
            f"leaves a gap of {a['gap_with_bound_pp']:+.1f} pp. The direction guard measures their "
            f"alignment with the last round's step{worst} and leaves them out from round 2 on: "
            f"{d['attacker_submissions_counted']} counted (round 1 has no step to compare with), "
            f"{d['rewards_wei']['attackers']:,} wei paid, gap {a['gap_with_defences_pp']:+.1f} pp."
        )
    lowest = min((r["min"] for r in p["honest_alignment"]), default=None)
    result.append(
        f"Honest clients under both defences (clean run): {guarded['honest_submissions_excluded']} "
        f"of {p['clients'] * p['rounds']} submissions left out, lowest alignment "
        f"{lowest if lowest is not None else 'n/a'}, final accuracy "
        f"{pct(guarded['final_accuracy'])} ({p['gap_clean_with_defences_pp']:+.1f} pp)."
    )
    result.append(
        f"The bound is absolute: a x10 update stays beyond it while the honest per-weight distance "
        f"exceeds {bound / 10:g}; the honest median fell from {honest[0]['median']} (round 1) to "
        f"{honest[-1]['median']} (round {honest[-1]['round']}), so a longer run needs a bound that "
        "follows the rounds (for example a multiple of the previous round's mean counted distance)."
    )
    tier_top = p["tier_thresholds_per_weight"][-1]
    unpaid = [r["round"] for r in honest if r["min"] > tier_top]
    if unpaid:
        result.append(
            f"With the configured tiers (last threshold {tier_top} per weight) no honest client was "
            f"paid in round(s) {', '.join(map(str, unpaid))}: the first steps of training are larger "
            "than the tiers."
        )
    return result


def markdown(report: dict[str, Any]) -> str:
    """The tables the README quotes."""
    p = report["poisoning"]
    bound = p["bound"]
    lines = [
        f"Poisoning: {len(p['attackers'])} of {p['clients']} clients attack for {p['rounds']} rounds "
        f"on {p['dataset']}; update = global + k x (trained - global), clipped to +-"
        f"{p['fixed_point']['max_abs']}/{p['fixed_point']['scale']}.",
        "",
        f"Clean run (no attacker, no defence): final accuracy {pct(p['clean']['final_accuracy'])}. "
        f"Bound: maxCountedDistance = {bound['max_counted_distance']:,} "
        f"({bound['per_weight']} per weight: {bound['rule']}). Direction guard: minAlignment = "
        f"{p['min_alignment_bps']} bps (no more movement against the last round's step than "
        "along it).",
        "",
        "| attack | k | no defence | damage | bound only | gap | bound + direction guard | gap "
        "| attackers counted (both) | within 2 pp |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for a in p["attacks"]:
        lines.append(
            f"| {a['attack']} | {a['k']} | {pct(a['without_defences']['final_accuracy'])} | "
            f"{a['damage_without_defences_pp']:+.1f} pp | {pct(a['with_bound']['final_accuracy'])} | "
            f"{a['gap_with_bound_pp']:+.1f} pp | {pct(a['with_defences']['final_accuracy'])} | "
            f"{a['gap_with_defences_pp']:+.1f} pp | "
            f"{a['with_defences']['attacker_submissions_counted']} of "
            f"{len(p['attackers']) * p['rounds']} | {'yes' if a['within_bar'] else 'NO'} |"
        )
    lines += [
        "",
        "Honest clients, clean run: L1 distance per weight (no defence) and alignment with the "
        "last round's step (both defences), by round:",
        "",
        "| round | distance min | median | max | alignment min | median | max |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by_round = {r["round"]: r for r in p["honest_alignment"]}
    for r in p["honest_distance_per_weight"]:
        al = by_round.get(r["round"])
        cells = (
            f"{al['min']:+.3f} | {al['median']:+.3f} | {al['max']:+.3f}"
            if al
            else "no step yet | | "
        )
        lines.append(f"| {r['round']} | {r['min']} | {r['median']} | {r['max']} | {cells} |")
    lines += ["", *(f"- {note}" for note in notes(p))]
    long = report.get("long_runs", [])
    if long:
        lines += [
            "",
            "Honest clients over a long run (no attacker), direction guard at "
            f"{p['min_alignment_bps']} bps:",
            "",
            "| shards | clients x rounds | left out by the guard | lowest alignment (round) "
            "| alignment median, last round | accuracy guard off | guard on |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
    for run in long:
        alignment = run["honest_alignment"]
        lowest = min(alignment, key=lambda r: r["min"])
        shards = "IID" if run["alpha"] is None else f"Dirichlet({run['alpha']})"
        lines.append(
            f"| {shards} | {run['clients']} x {run['rounds']} | "
            f"{run['honest_submissions_left_out']} of {run['clients'] * (run['rounds'] - 1)} | "
            f"{lowest['min']:+.3f} ({lowest['round']}) | {alignment[-1]['median']:+.3f} | "
            f"{pct(run['final_accuracy_guard_off'])} | {pct(run['final_accuracy_guard_on'])} |"
        )
    gas = report.get("commit_reveal_gas")
    if gas:
        lines += [
            "",
            f"Commit-reveal gas, {gas['weights']:,} weights, {gas['clients']} clients, round {gas['round']} "
            "(medians):",
            "",
            "| direct submit | commit | reveal | commit + reveal - submit | per round (all clients) |",
            "|---:|---:|---:|---:|---:|",
            f"| {gas['direct_submit_gas']:,} | {gas['commit_gas']:,} | {gas['reveal_gas']:,} | "
            f"{gas['extra_gas_per_client']:,} (+{gas['extra_percent']} %) | "
            f"{gas['extra_gas_per_round']:,} |",
        ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and write its results; exit 1 when an attack moves the accuracy of the
    defended run more than the bar."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--attackers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--skip-gas", action="store_true", help="leave out the 7,850-weight gas part"
    )
    parser.add_argument("--long-rounds", type=int, default=20)
    parser.add_argument("--skip-long", action="store_true", help="leave out the long honest runs")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    fl = load_config().fl.with_overrides(dataset="digits", seed=args.seed)

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {message}", flush=True)

    report: dict[str, Any] = {
        "command": " ".join(
            [COMMAND]
            + (["--skip-gas"] if args.skip_gas else [])
            + (["--skip-long"] if args.skip_long else [])
        ),
        "chain": "embedded (eth-tester + py-evm, Prague rules)",
        "poisoning": with_notes(
            poisoning(
                fl, rounds=args.rounds, clients=args.clients, attackers=args.attackers, log=log
            )
        ),
    }
    if not args.skip_long:
        report["long_runs"] = long_runs(fl, rounds=args.long_rounds, clients=args.clients, log=log)
    if not args.skip_gas:
        report["commit_reveal_gas"] = commit_reveal_gas(
            fl, clients=args.clients, seed=args.seed, log=log
        )
    report["seconds"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "adversaries.json").write_text(
        json.dumps(report, indent=2) + "\n", encoding="utf-8"
    )
    (args.out / "adversaries.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))
    return 0 if all(a["within_bar"] for a in report["poisoning"]["attacks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
