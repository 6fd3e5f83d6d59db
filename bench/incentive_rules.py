"""Reward and aggregation rules tried against the incentive benchmark's attacks, offline.

Run: ``.venv/bin/python -m bench.incentive_rules`` (about ten minutes on 2 cores; ``--quick``:
IID only, 5 rounds). Writes ``bench/results/incentive_rules.json`` and ``.md``.

``bench.incentives`` measures the contract's rules on a chain and finds the bar of the issue
"Rewards that pay for training" unmet (the free rider at the guard, the copycat, the Sybils).
This benchmark asks whether another rule would meet it, before anything is built on-chain: the
same ten clients, strategies and calibrated settings (read from
``bench/results/incentives.json``), the rounds played in exact integer arithmetic with
:mod:`fl_client.aggregation` (the contract's capped sample-weighted mean, the step and drift
bounds, the direction guard, the distance bound and the free-rider guard), no chain.

Rules that score an update (higher is better; an update left out by a guard is unpaid):

- ``distance_new``: minus its L1 distance from the round's new model (the contract's
  ``aggregate`` reference).
- ``progress``: how much nearer the new model it lies than the current one, ``d(u, current) -
  d(u, new)``, in basis points of the step's L1 norm: a contribution score (L1 caps each weight's
  part at the step's move there, so scaling an update up does not pay).

Aggregators (what makes the new model): ``mean`` (the contract's), the coordinate-wise
``median``, ``trimmed`` mean (three of ten cut at each end; ``trimmed_guarded``: over the updates
that pass the free-rider guard only, where the contract averages an unpaid update too),
``winsorized`` mean (the same three set to the nearest value kept instead of left out),
``filtered`` (the plain mean of the updates whose shortfall from the trimmed mean's step is at
most 1.5 times the round's median: a rule an attacker can aim under, tried because it keeps the
mean's accuracy), and ``foolsgold`` (Fung et al., "The Limitations of Federated Learning in Sybil
Settings", RAID 2020: each client's weight falls with the largest cosine similarity of its summed
past updates to another client's, so that accounts that push one way together lose their
weight).

Strategies: those of :mod:`bench.incentives` (``copycat`` copies the update the rule scored best
the round before; ``copycat_paid`` the honest update its tier ladder paid most, the first of
them, as :mod:`bench.incentives`'s copycat does on the chain), ``predictor``: a free rider
that sends the global model moved along the last global step, scaled to an honest update's size (a free rider that passes the guard by a margin and
bets that the step goes on), and ``sybils_noisy``: the three Sybils each add their own Gaussian
noise of an honest update's size to the shared push (the Sybils' answer to a similarity rule).
``copycat_masked`` (not in this grid; :mod:`bench.incentive_seeds` plays it) is the paid
copycat's answer to a near-copy detector: its copy moved along the last step by the distance
the typical honest update was seen to lie from the round before its own (:class:`MaskedCopycat`).
``absent_N`` (not in the grid; :mod:`bench.incentive_seeds`'s baseline) leaves the first ``N``
seats empty: the honest clients alone, the rounds closing without the attacker's seats.

Per round after the first, an attacker that is paid and scores at least as well as *every*
honest client earns at least as much as each of them under any tier ladder (tiers are monotone
in the score): the bar fails that round whatever the tiers. The report counts those rounds
(``beats_all``), the rounds it scores at least as well as the median honest client
(``beats_median``), and the final accuracy against the clean run of the same aggregator (and
the mean of the last three rounds', less subject to one round's swing).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import machine, write_json
from bench.incentives import (
    CLIENTS,
    DATASET,
    SYBILS,
    Context,
    CraftedUpdate,
    Incentives,
    PublicBoard,
    Sybil,
    evaluate,
    exact_l1,
    last_three_gap,
    make_context,
    members_for,
    warm_up,
    within_range,
)
from fl_client.aggregation import (
    aligned,
    capped_weights,
    clamp_step,
    directional_l1,
    guard_step,
    integer_average,
    reward_tier,
    rounded_div,
    shortfall_bps,
    trim_cut,
    trimmed_average,
)
from fl_client.codec import dequantize, quantize
from fl_client.config import FixedPointFormat, load_config

RESULTS = Path(__file__).resolve().parent / "results"
COMMAND = ".venv/bin/python -m bench.incentive_rules"
ROUNDS = 10
RULES = ("distance_new", "progress")
AGGREGATORS = (
    "mean",
    "median",
    "trimmed",
    "trimmed_guarded",
    "winsorized",
    "filtered",
    "foolsgold",
)
STRATEGIES = (
    "free_rider",
    "predictor",
    "stale",
    "noise",
    "sybils",
    "sybils_noisy",
    "copycat",
    "copycat_paid",
)
TRIM = 3  # cut at each end by the trimmed mean
FILTER_RATIO = 1.5  # filtered: the largest shortfall averaged, in medians of the round's
NO_SCORE = None


# ---------------------------------------------------------------- the rules


def l1(a: np.ndarray, b: np.ndarray) -> int:
    """L1 distance of two quantized vectors."""
    return int(np.abs(a.astype(np.int64) - b.astype(np.int64)).sum())


def progress_bps(current: np.ndarray, new: np.ndarray, update: np.ndarray) -> int:
    """``d(update, current) - d(update, new)`` in basis points of ``d(current, new)`` (L1), from
    -10000 (as far behind as the step) to 10000 (every weight moved at least the step's way and
    size); 0 when the model did not move. It is ``10000 -`` the contract's shortfall
    (RewardReference Progress, :func:`fl_client.aggregation.shortfall_bps`), rounded as it is."""
    return 10_000 - shortfall_bps(l1(update, new), l1(update, current), l1(current, new))


def score(rule: str, current: np.ndarray, new: np.ndarray, update: np.ndarray) -> int:
    """The score ``rule`` gives ``update`` (higher is better)."""
    if rule == "distance_new":
        return -l1(update, new)
    if rule == "progress":
        return progress_bps(current, new, update)
    raise ValueError(f"unknown rule {rule!r}")


def foolsgold_weights(history: np.ndarray) -> np.ndarray:
    """FoolsGold's weight per client from ``history`` (clients x weights: each one's summed
    updates so far), as in Fung et al.'s Algorithm 1 without the feature-importance mask: the
    largest cosine similarity to another client, pardoned for the more unique client of a pair,
    mapped through ``1 - max``, normalized to the largest and a logit (kappa 1), clipped to
    [0, 1]."""
    n = history.shape[0]
    norms = np.linalg.norm(history, axis=1)
    safe = np.where(norms == 0, 1.0, norms)
    unit = history / safe[:, None]
    cs = unit @ unit.T
    np.fill_diagonal(cs, -np.inf)
    top = cs.max(axis=1)
    for i in range(n):
        for j in range(n):
            if i != j and top[i] < top[j] and top[j] > 0:
                cs[i, j] *= top[i] / top[j]
    alpha: np.ndarray = np.clip(1.0 - cs.max(axis=1), 0.0, 1.0)
    if alpha.max() == 0:
        return alpha
    alpha = alpha / alpha.max()
    alpha[alpha == 1.0] = 0.99
    with np.errstate(divide="ignore"):
        logit = np.log(alpha / (1.0 - alpha)) + 0.5
    return np.asarray(np.clip(logit, 0.0, 1.0))


def robust_average(updates: Sequence[np.ndarray], how: str, current: np.ndarray) -> np.ndarray:
    """The coordinate-wise median (rounded half to even), trimmed mean (``TRIM`` cut at each
    end: the contract's ``trimEach``, exactly), winsorized mean (:func:`winsorized_average`) or
    the mean of the updates that agree with the trimmed mean (:func:`filtered_average`, from the
    model ``current``)."""
    if how in ("trimmed", "trimmed_guarded"):
        return trimmed_average(updates, TRIM)
    if how == "winsorized":
        return winsorized_average(updates, TRIM)
    if how == "filtered":
        return filtered_average(updates, current)
    if how != "median":
        raise ValueError(f"unknown aggregator {how!r}")
    stack = np.stack([u.astype(np.float64) for u in updates])
    rounded: np.ndarray = np.rint(np.median(stack, axis=0)).astype(np.int64)
    return rounded


def winsorized_average(updates: Sequence[np.ndarray], trim_each: int) -> np.ndarray:
    """The coordinate-wise winsorized mean: per weight, the :func:`trim_cut` largest and smallest
    values set to the nearest value kept (not left out, as the trimmed mean does), then every
    value averaged and rounded as the contract rounds (:func:`rounded_div`). A duplicated update
    weighs 2 of ``n``, not 2 of ``n - 2 * cut``."""
    count = len(updates)
    cut = trim_cut(trim_each, count)
    ordered = np.sort(np.stack([u.astype(np.int64) for u in updates]), axis=0)
    if cut:
        ordered = np.clip(ordered, ordered[cut], ordered[count - 1 - cut])
    return np.array([rounded_div(int(s), count) for s in ordered.sum(axis=0)], dtype=np.int64)


def filtered_average(updates: Sequence[np.ndarray], current: np.ndarray) -> np.ndarray:
    """The plain mean of the updates whose shortfall from the trimmed mean's step (the contract's
    ``progress`` score, with the trimmed mean as the new model) is at most ``FILTER_RATIO`` times
    the round's median shortfall: the trimmed mean only tells the outliers apart, and every other
    update weighs the same (the trimmed mean itself when none would be left)."""
    reference = trimmed_average(updates, TRIM)
    step = l1(current, reference)
    shortfalls = [shortfall_bps(l1(u, reference), l1(u, current), step) for u in updates]
    bound = FILTER_RATIO * statistics.median(shortfalls)
    agreeing = [u for u, f in zip(updates, shortfalls, strict=True) if f <= bound]
    return integer_average(agreeing) if agreeing else reference


# ---------------------------------------------------------------- the Sybils' answer


class NoisySybil(CraftedUpdate):
    """A Sybil that adds its own Gaussian noise, of an honest update's L1 size, to the group's
    shared push (:class:`bench.incentives.Sybil`), so that the group's updates are no longer
    alike."""

    def __init__(self, *, push: Sybil, seed: int, **common: Any) -> None:
        super().__init__(**common)
        self.push = push
        self.seed = seed

    def craft(self, current: np.ndarray, round_number: int) -> np.ndarray:
        pushed = self.push.craft(current, round_number) - current
        rng = np.random.default_rng([self.seed, round_number])
        noise = exact_l1(rng.standard_normal(current.size), self.push.size(round_number), rng)
        return within_range(current, pushed + noise, self.fmt.max_abs)


class Predictor(CraftedUpdate):
    """A free rider that predicts the round's step from public data: the global model moved
    along the last global step, on the weights that step moved, scaled to an honest update's L1
    size (round 1: the global model as it is). It trains on nothing."""

    def __init__(self, *, size: Callable[[int], int], **common: Any) -> None:
        super().__init__(**common)
        self.size = size

    def craft(self, current: np.ndarray, round_number: int) -> np.ndarray:
        if self.previous is None or not np.any(current != self.previous):
            return current.copy()
        rng = np.random.default_rng([0x9E, round_number])
        move = along_last_step(current, self.previous, self.size(round_number), rng)
        return within_range(current, move, self.fmt.max_abs)


def along_last_step(
    current: np.ndarray, previous: np.ndarray, size: int, rng: np.random.Generator
) -> np.ndarray:
    """A move of L1 ``size`` along the last global step (``previous`` to ``current``), on the
    weights that step moved only: a move elsewhere would count against it at the direction
    guard."""
    step = (current - previous).astype(np.float64)
    moved = np.flatnonzero(step)
    move = np.zeros(current.size, dtype=np.int64)
    move[moved] = exact_l1(step[moved], size, rng)
    return move


def nearest_distance(update: np.ndarray, others: Sequence[np.ndarray]) -> int:
    """L1 distance from ``update`` to the nearest of ``others``: what a near-copy detector would
    compare with its threshold (``others``: the updates revealed the round before)."""
    return min(l1(update, other) for other in others)


class MaskedCopycat(CraftedUpdate):
    """The paid copycat's answer to a near-copy detector (a rule that refuses an update within
    some distance of one revealed the round before): the copy moved along the last global step,
    on the weights that step moved (as :class:`Predictor` moves), by as much as the typical
    honest update was seen to lie from the round before its own. That is public in commit-reveal
    mode: the median (low) of the distances from each update revealed last round to the nearest
    one of the round before (round 2: of the distances between two of round 1's). A detector
    that refused it would refuse about half the honest clients of the round before. Round 1: the
    model, as the copycat sends it."""

    def __init__(self, *, copycat: CraftedUpdate, board: PublicBoard, **common: Any) -> None:
        super().__init__(**common)
        self.copycat = copycat
        self.board = board

    def margin(self, round_number: int) -> int:
        """The public distance the mask moves the copy by in ``round_number`` (0: none known)."""
        last = [u for _, u in self.board.revealed.get(round_number - 1, [])]
        before = [u for _, u in self.board.revealed.get(round_number - 2, [])]
        if before:
            distances = [nearest_distance(u, before) for u in last]
        else:
            distances = [l1(a, b) for i, a in enumerate(last) for b in last[i + 1 :]]
        return statistics.median_low(distances) if distances else 0

    def craft(self, current: np.ndarray, round_number: int) -> np.ndarray:
        copy = self.copycat.craft(current, round_number)
        if self.previous is None or not np.any(current != self.previous):
            return copy
        rng = np.random.default_rng([0x3A, round_number])
        mask = along_last_step(current, self.previous, self.margin(round_number), rng)
        return within_range(current, copy - current + mask, self.fmt.max_abs)


# ---------------------------------------------------------------- a run


def settings_from_report(settings: dict[str, Any]) -> Incentives:
    """A partition's calibrated ``settings`` in ``incentives.json`` (lists as tuples)."""
    values: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else int(v) for k, v in settings.items()
    }
    return Incentives(**values)


def members(
    ctx: Context,
    strategy: str,
    settings: Incentives,
    size: Callable[[int], int],
    board: PublicBoard,
) -> tuple[list[Any], list[str]]:
    """The ten trainers and their roles (``sybils_noisy``: the Sybils with their own noise;
    ``predictor``: :class:`Predictor` in the free rider's place; ``absent_N``: the first ``N``
    seats empty, role ``absent``: :func:`run` neither trains nor counts them)."""
    if strategy.startswith("absent_"):  # the first seats left empty: the honest clients alone
        trainers, roles = members_for(
            ctx, "honest", guard=settings.min_reward_distance, size=size, board=board
        )
        empty = int(strategy.removeprefix("absent_"))
        return trainers, ["absent"] * empty + roles[empty:]
    base = {
        "sybils_noisy": "sybils",
        "predictor": "free_rider",
        "copycat_paid": "copycat",
        "copycat_masked": "copycat",
    }.get(strategy, strategy)
    trainers, roles = members_for(
        ctx, base, guard=settings.min_reward_distance, size=size, board=board
    )
    if strategy == "sybils_noisy":
        for i in range(SYBILS):
            push = trainers[i]
            assert isinstance(push, Sybil)
            trainers[i] = NoisySybil(
                push=push,
                seed=1000 + i,
                fmt=push.fmt,
                num_weights=push.num_weights,
                sample_count=push.num_samples,
            )
            roles[i] = strategy
    if strategy == "copycat_paid":
        roles[0] = strategy
    if strategy == "copycat_masked":
        copy = trainers[0]
        assert isinstance(copy, CraftedUpdate)
        trainers[0] = MaskedCopycat(
            copycat=copy,
            board=board,
            fmt=copy.fmt,
            num_weights=copy.num_weights,
            sample_count=copy.num_samples,
        )
        roles[0] = strategy
    if strategy == "predictor":
        rider = trainers[0]
        assert isinstance(rider, CraftedUpdate)
        trainers[0] = Predictor(
            size=size, fmt=rider.fmt, num_weights=rider.num_weights, sample_count=rider.num_samples
        )
        roles[0] = strategy
    return trainers, roles


def counted(
    settings: Incentives, current: np.ndarray, last_step: np.ndarray | None, update: np.ndarray
) -> bool:
    """The contract's guards that leave an update out: the distance bound and the direction
    guard (no step yet, or the last round moved nothing: every update)."""
    if settings.max_counted_distance and l1(update, current) > settings.max_counted_distance:
        return False
    if last_step is None:
        return True
    along, against = directional_l1(current, update, last_step)
    return aligned(along, against, settings.min_alignment_bps)


def run(
    ctx: Context,
    strategy: str,
    aggregator: str,
    board_rule: str,
    settings: Incentives,
    *,
    rounds: int,
    size: Callable[[int], int],
    trace: list[tuple[np.ndarray, list[np.ndarray], list[int], np.ndarray]] | None = None,
) -> dict[str, Any]:
    """One run: per round and rule, the scores of the honest clients and of the attacker (the
    copycat copies the update ``board_rule`` scored best). ``trace`` receives each round's
    (model, updates, declared samples, new model)."""
    fmt: FixedPointFormat = ctx.fl.fixed_point
    board = PublicBoard()
    trainers, roles = members(ctx, strategy, settings, size, board)
    model = ctx.initial.copy()
    checkpoint = model.copy()
    last_step: np.ndarray | None = None
    history = np.zeros((CLIENTS, ctx.num_weights))
    honest_distances: list[list[int]] = []
    by_round: list[float] = []
    records = []
    for number in range(1, rounds + 1):
        weights = dequantize(model, fmt)
        present = [role != "absent" for role in roles]
        updates = [
            quantize(t.fit(weights, round_number=number).weights, fmt).values if here else model
            for t, here in zip(trainers, present, strict=True)
        ]
        samples = [int(t.num_samples) for t in trainers]
        keep = [
            here and counted(settings, model, last_step, u)
            for u, here in zip(updates, present, strict=True)
        ]
        kept = [i for i in range(CLIENTS) if keep[i]]
        if aggregator == "trimmed_guarded":  # the free-rider guard also leaves it out of the mean
            kept = [i for i in kept if l1(updates[i], model) >= settings.min_reward_distance]
        honest_distances.append(
            [l1(updates[i], model) for i in range(CLIENTS) if roles[i] == "honest"]
        )
        new = model.copy()
        if kept:
            if aggregator in ("mean", "foolsgold"):
                factor = np.ones(CLIENTS)
                if aggregator == "foolsgold":
                    for i in range(CLIENTS):
                        history[i] += updates[i] - model
                    factor = foolsgold_weights(history)
                capped = capped_weights([samples[i] for i in kept], settings.max_share_bps)
                scaled = [
                    round(float(c * factor[i]) * 1000) for c, i in zip(capped, kept, strict=True)
                ]
                pairs = [(updates[i], w) for i, w in zip(kept, scaled, strict=True) if w > 0]
                if pairs:
                    new = integer_average([p[0] for p in pairs], [p[1] for p in pairs])
            else:
                new = robust_average([updates[i] for i in kept], aggregator, model)
            new, _ = clamp_step(
                new, model, checkpoint, max_step=settings.max_step, max_drift=settings.max_drift
            )
        if trace is not None:
            trace.append((model, updates, samples, new))
        # The free-rider guard, on the distance from the current model and from the new one
        # (the contract's, under both rules read at the close). Without the second, a free rider
        # at the guard outscores every honest client from round 3 or 4 on under the progress
        # rule, whatever the average (measured).
        paid = [
            keep[i] and min(l1(u, model), l1(u, new)) >= settings.min_reward_distance
            for i, u in enumerate(updates)
        ]
        scores = {
            rule: [
                score(rule, model, new, u) if paid[i] else NO_SCORE for i, u in enumerate(updates)
            ]
            for rule in RULES
        }
        if strategy in ("copycat_paid", "copycat_masked"):
            board.revealed[number] = [
                (tier_reward(settings, board_rule, model, new, u) if paid[i] else 0, u)
                for i, u in enumerate(updates)
                if roles[i] == "honest"
            ]
        else:
            board.revealed[number] = [
                (s if s is not None else -(2**62), updates[i])
                for i, s in enumerate(scores[board_rule])
            ]
        records.append({"round": number, "roles": roles, "scores": scores, "counted": keep})
        if settings.max_drift and settings.drift_window and number % settings.drift_window == 0:
            checkpoint = new.copy()
        last_step = guard_step(model, new)
        model = new
        by_round.append(round(100 * evaluate(ctx, model), 2))
    return {
        "strategy": strategy,
        "aggregator": aggregator,
        "board_rule": board_rule,
        "rounds": records,
        "accuracy": by_round[-1],
        "accuracy_by_round": by_round,
        "honest_distances": honest_distances,
    }


def tier_reward(
    settings: Incentives, rule: str, current: np.ndarray, new: np.ndarray, update: np.ndarray
) -> int:
    """What the contract's tier ladder of ``rule`` pays ``update`` once it passed the guards
    (``distance_new``: the tiers on its distance from the new model; ``progress``: the shortfall
    tiers)."""
    if rule == "distance_new":
        value, thresholds, amounts = (
            l1(update, new),
            settings.tier_thresholds,
            settings.tier_rewards,
        )
    else:
        value = shortfall_bps(l1(update, new), l1(update, current), l1(current, new))
        thresholds, amounts = settings.progress_thresholds, settings.progress_rewards
    return reward_tier(value, thresholds, amounts).amount_wei


def summarize(result: dict[str, Any], rule: str) -> dict[str, Any]:
    """Rounds after the first in which the attacker was paid and, by ``rule``, scored at least as
    well as every honest client (``beats_all``) or as the median one (``beats_median``)."""
    beats_all: list[int] = []
    beats_median: list[int] = []
    paid: list[int] = []
    for record in result["rounds"][1:]:
        pairs = list(zip(record["scores"][rule], record["roles"], strict=True))
        honest = [s for s, r in pairs if r == "honest"]
        attacker = [s for s, r in pairs if r != "honest"]
        paid_honest = [s for s in honest if s is not None]
        paid_attacker = [s for s in attacker if s is not None]
        if not paid_attacker:
            continue
        paid.append(record["round"])
        mine = statistics.median(paid_attacker)
        if not paid_honest or mine >= max(paid_honest):
            beats_all.append(record["round"])
        if not paid_honest or mine >= statistics.median(paid_honest):
            beats_median.append(record["round"])
    return {"paid": paid, "beats_all": beats_all, "beats_median": beats_median}


# ---------------------------------------------------------------- the grid and the report


def partition_report(
    partition: str, settings: Incentives, *, rounds: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """Every (aggregator, strategy, rule) run of one partition, beside the clean runs."""
    fl = load_config().fl.with_overrides(dataset=DATASET, clients=CLIENTS, rounds=rounds)
    ctx = make_context(fl, partition)
    warm_up(ctx)
    clean = {}
    for aggregator in AGGREGATORS:
        clean[aggregator] = run(
            ctx, "honest", aggregator, "distance_new", settings, rounds=rounds, size=lambda r: 0
        )
        log(f"{partition} clean {aggregator}: {clean[aggregator]['accuracy']} %")
    typical = [int(statistics.median(d)) for d in clean["mean"]["honest_distances"]]

    def size(number: int) -> int:
        return typical[min(number, len(typical)) - 1]

    runs = []
    for aggregator in AGGREGATORS:
        for strategy in STRATEGIES:
            # The copycat's choice follows the rule; every other run serves both rules.
            copies = strategy.startswith("copycat")
            for board_rule in RULES if copies else (RULES[0],):
                result = run(
                    ctx, strategy, aggregator, board_rule, settings, rounds=rounds, size=size
                )
                accuracy = result["accuracy"]
                delta = round(accuracy - clean[aggregator]["accuracy"], 2)
                for rule in (board_rule,) if copies else RULES:
                    summary = summarize(result, rule)
                    runs.append(
                        {
                            "strategy": strategy,
                            "aggregator": aggregator,
                            "rule": rule,
                            "accuracy": accuracy,
                            "vs_clean_pp": delta,
                            "vs_clean_last_3_pp": round(
                                last_three_gap(
                                    result["accuracy_by_round"],
                                    clean[aggregator]["accuracy_by_round"],
                                ),
                                2,
                            ),
                            "accuracy_by_round": result["accuracy_by_round"],
                            **summary,
                        }
                    )
                    log(f"{partition} {aggregator} {strategy} {rule}: {summary} {delta:+} pp")
    return {
        "partition": partition,
        "settings": asdict(settings),
        "clean_accuracy": {a: clean[a]["accuracy"] for a in AGGREGATORS},
        "runs": runs,
    }


def verdict(partitions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (aggregator, rule): the attacks that, in some round after the first, score at least
    as well as every honest client (the bar fails then under any tiers), and those that move the
    final accuracy more than 1 pp from the clean run of the same aggregator."""
    rows = []
    for aggregator in AGGREGATORS:
        for rule in RULES:
            beaten: list[str] = []
            accuracy: list[str] = []
            for part in partitions:
                for r in part["runs"]:
                    if r["aggregator"] != aggregator or r["rule"] != rule:
                        continue
                    name = f"{part['partition']}/{r['strategy']}"
                    if r["beats_all"]:
                        beaten.append(name)
                    if abs(r["vs_clean_pp"]) > 1.0:
                        accuracy.append(name)
            rows.append(
                {
                    "aggregator": aggregator,
                    "rule": rule,
                    "outscore_every_honest": sorted(set(beaten)),
                    "accuracy_off_by_more_than_1pp": sorted(set(accuracy)),
                }
            )
    return rows


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown."""
    lines = [
        "# Reward rules tried offline",
        "",
        f"`{report['command']}`: {report['seconds'] / 60:.0f} minutes on {report['machine']['cpus']} "
        "cores. No chain: the rounds of `bench.incentives` played in exact integer arithmetic "
        "(`fl_client.aggregation`), with its strategies and its calibrated guards and bounds. "
        "*Outscores every honest client*: in some round after the first the attacker was paid "
        "and scored at least as well as each honest client, so that any tier ladder pays it at "
        "least as much as each of them: the bar fails there whatever the tiers.",
        "",
        "| aggregator | rule | outscores every honest client | accuracy > 1 pp off the clean run |",
        "|---|---|---|---|",
    ]
    for row in report["verdict"]:
        lines.append(
            f"| {row['aggregator']} | {row['rule']} | "
            f"{', '.join(row['outscore_every_honest']) or 'none'} | "
            f"{', '.join(row['accuracy_off_by_more_than_1pp']) or 'none'} |"
        )
    for part in report["partitions"]:
        clean = ", ".join(f"{a} {v} %" for a, v in part["clean_accuracy"].items())
        lines += [
            "",
            f"## {part['partition']}",
            "",
            f"Clean runs (ten honest clients): {clean}.",
            "",
            "| aggregator | rule | strategy | paid in rounds | outscores every honest | "
            "outscores the median honest | final accuracy % | vs clean (pp) | "
            "last 3 rounds vs clean (pp) |",
            "|---|---|---|---|---|---|---:|---:|---:|",
        ]
        for r in part["runs"]:
            lines.append(
                f"| {r['aggregator']} | {r['rule']} | {r['strategy']} | "
                f"{_rounds(r['paid'])} | {_rounds(r['beats_all'])} | "
                f"{_rounds(r['beats_median'])} | {r['accuracy']} | {r['vs_clean_pp']:+} | "
                f"{r['vs_clean_last_3_pp']:+} |"
            )
    return "\n".join(lines) + "\n"


def _rounds(numbers: Sequence[int]) -> str:
    return " ".join(str(n) for n in numbers) if numbers else "none"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the grid, write the JSON and the Markdown."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="IID only, 5 rounds")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--partitions", nargs="+", default=["iid", "dirichlet"])
    parser.add_argument("--settings", type=Path, default=RESULTS / "incentives.json")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    rounds = 5 if args.quick else args.rounds
    partitions = ["iid"] if args.quick else args.partitions

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f} s] {message}", flush=True)

    calibrated = {
        p["partition"]: settings_from_report(p["settings"])
        for p in json.loads(args.settings.read_text(encoding="utf-8"))["partitions"]
    }
    report: dict[str, Any] = {
        "command": COMMAND + (" --quick" if args.quick else ""),
        "machine": machine(),
        "rounds": rounds,
        "settings_from": str(args.settings.name),
        "partitions": [
            partition_report(p, calibrated[p], rounds=rounds, log=log) for p in partitions
        ],
    }
    report["verdict"] = verdict(report["partitions"])
    report["seconds"] = round(time.perf_counter() - started, 1)
    write_json("incentive_rules", report, args.out / "incentive_rules.json")
    text = markdown(report)
    (args.out / "incentive_rules.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
