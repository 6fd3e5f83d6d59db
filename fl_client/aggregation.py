"""Reference of what the contract computes, in exact integer arithmetic.

The contract's average, distance and reward tier, written plainly so that tests can compare the
chain with them value for value, and the simulation can predict them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fl_client.errors import ShapeError

NO_TIER = 255


def rounded_div(total: int, divisor: int) -> int:
    """``total / divisor`` rounded to the nearest integer, ties away from zero (the contract's rule)."""
    if divisor <= 0:
        raise ValueError("divisor must be positive")
    magnitude = (abs(total) + divisor // 2) // divisor
    return -magnitude if total < 0 else magnitude


def integer_average(
    vectors: Sequence[np.ndarray], weights: Sequence[int] | None = None
) -> np.ndarray:
    """The contract's average of quantized vectors: ``round(sum(w_i * q_i) / sum(w_i))`` per entry.

    ``weights=None`` is the plain mean (every weight 1); sample counts give FedAvg.
    """
    if not vectors:
        raise ValueError("no vectors to average")
    length = len(vectors[0])
    if any(len(v) != length for v in vectors):
        raise ShapeError("vectors to average differ in length")
    counts = [1] * len(vectors) if weights is None else [int(w) for w in weights]
    if len(counts) != len(vectors) or any(w <= 0 for w in counts):
        raise ValueError("one positive weight per vector is required")
    # Python integers: exact for any size.
    sums = [0] * length
    for vector, weight in zip(vectors, counts, strict=True):
        for i, value in enumerate(vector.tolist()):
            sums[i] += weight * int(value)
    total = sum(counts)
    return np.array([rounded_div(s, total) for s in sums], dtype=np.int64)


def trim_cut(trim_each: int, count: int) -> int:
    """Values the trimmed mean leaves out at each end of a weight when ``count`` updates are
    averaged: ``trim_each``, but never so many that no value is left (``(count - 1) // 2``)."""
    return max(0, min(trim_each, (count - 1) // 2))


def trimmed_average(vectors: Sequence[np.ndarray], trim_each: int) -> np.ndarray:
    """The contract's coordinate-wise trimmed mean (``PackedVectors.trimmedMeanOf``): per entry,
    the :func:`trim_cut` largest and smallest values left out, the others averaged and rounded
    as :func:`rounded_div` does; ``trim_each`` 0 (or too few vectors) is the plain mean."""
    if not vectors:
        raise ValueError("no vectors to average")
    if any(v.shape != vectors[0].shape for v in vectors):
        raise ShapeError("vectors to average differ in length")
    cut = trim_cut(trim_each, len(vectors))
    if cut == 0:
        return integer_average(vectors)
    ordered = np.sort(np.stack([v.astype(np.int64) for v in vectors]), axis=0)
    kept = ordered[cut : len(vectors) - cut]
    return np.array([rounded_div(int(s), kept.shape[0]) for s in kept.sum(axis=0)], dtype=np.int64)


def shortfall_bps(to_new: int, from_old: int, step: int) -> int:
    """RewardReference Progress (the contract's ``_shortfall``): how far an update ``from_old``
    from the current model and ``to_new`` from the round's new model, the two ``step`` apart,
    fell short of the model's step, in basis points of the step: ``(to_new + step - from_old)
    * 10000 // step``, at least 0; 10000 when the model did not move. Lower is better: under L1
    from 0 (the update went at least the model's whole way) to 20000 (it stood still, or went
    the other way)."""
    if step == 0:
        return 10_000
    return max(0, (to_new + step - from_old) * 10_000 // step)


def distance(model: np.ndarray, update: np.ndarray, metric: str) -> int:
    """L1 or squared L2 distance between two quantized vectors, as the contract measures it."""
    if model.shape != update.shape:
        raise ShapeError(f"shapes differ: {model.shape} vs {update.shape}")
    diff = np.abs(model.astype(np.int64) - update.astype(np.int64))
    if metric == "l1":
        return int(diff.sum())
    if metric == "squared_l2":
        return int((diff * diff).sum())
    raise ValueError(f"unknown distance metric {metric!r}")


def step_signs(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Which way a closing round moved each weight: +1 up, -1 down, 0 unchanged."""
    if before.shape != after.shape:
        raise ShapeError(f"shapes differ: {before.shape} vs {after.shape}")
    return np.sign(after.astype(np.int64) - before.astype(np.int64))


def guard_step(before: np.ndarray, after: np.ndarray) -> np.ndarray | None:
    """The step the contract's direction guard measures the next round's updates against
    (:func:`step_signs`), or ``None`` when the round moved no weight: such a round disarms the
    guard, and the next one counts every update as round 1 does."""
    step = step_signs(before, after)
    return step if np.any(step) else None


def directional_l1(model: np.ndarray, update: np.ndarray, step: np.ndarray) -> tuple[int, int]:
    """The L1 distance from ``model`` to ``update`` split by the last global step ``step``
    (:func:`step_signs`): ``(along, against)``, the weights moved the way the step moved them,
    and every other move, those of weights the step left alone included (so that an update cannot
    hide a push in the weights the guard has no direction for)."""
    if not model.shape == update.shape == step.shape:
        raise ShapeError(f"shapes differ: {model.shape}, {update.shape}, {step.shape}")
    diff = update.astype(np.int64) - model.astype(np.int64)
    moved = np.sign(diff) * step
    magnitude = np.abs(diff)
    along = int(magnitude[moved > 0].sum())
    return along, int(magnitude.sum()) - along


def aligned(along: int, against: int, min_alignment_bps: int) -> bool:
    """The contract's direction guard: ``along - against >= min_alignment_bps / 10000 *
    (along + against)``, in integers."""
    return (along - against) * 10_000 >= min_alignment_bps * (along + against)


@dataclass(frozen=True)
class TierDecision:
    """The tier and nominal reward the contract assigns to a distance."""

    tier: int  # NO_TIER when none
    amount_wei: int


def reward_tier(
    dist: int,
    thresholds: Sequence[int],
    amounts_wei: Sequence[int],
    *,
    min_reward_distance: int = 0,
    max_counted_distance: int = 0,
) -> TierDecision:
    """The tier of ``dist``: the first inclusive threshold it does not exceed."""
    if dist < min_reward_distance or (max_counted_distance and dist > max_counted_distance):
        return TierDecision(NO_TIER, 0)
    for index, (threshold, amount) in enumerate(zip(thresholds, amounts_wei, strict=True)):
        if dist <= threshold:
            return TierDecision(index, int(amount))
    return TierDecision(NO_TIER, 0)


def share_cap(weights: Sequence[int], share_bps: int) -> int:
    """The contract's weight cap (``PackedVectors.shareCap``): the largest weights are lowered to a
    common cap ``T = floor(share_bps * U / (10000 - share_bps * c))``, ``c`` the number capped and
    ``U`` the sum of the others, for the smallest ``c`` whose other weights all fit under ``T``;
    when none works, the smallest weight (every weight becomes equal); when nothing needs capping,
    the largest weight."""
    if not weights:
        return 0
    ordered = sorted((int(w) for w in weights), reverse=True)
    total = sum(ordered)
    capped = 0
    for c, weight in enumerate(ordered):
        if share_bps * c >= 10_000:
            break
        cap = share_bps * (total - capped) // (10_000 - share_bps * c)
        if weight <= cap:
            return ordered[0] if c == 0 else cap
        capped += weight
    return ordered[-1]


def capped_weights(weights: Sequence[int], share_bps: int) -> list[int]:
    """Each weight after :func:`share_cap` (``share_bps`` 0: unchanged)."""
    if share_bps == 0:
        return [int(w) for w in weights]
    cap = share_cap(weights, share_bps)
    return [min(int(w), cap) for w in weights]


def clamp_step(
    new: np.ndarray,
    current: np.ndarray,
    checkpoint: np.ndarray | None,
    *,
    max_step: int,
    max_drift: int,
) -> tuple[np.ndarray, int]:
    """The contract's step bounds: each weight of ``new`` within ``max_step`` of ``current`` and
    within ``max_drift`` of ``checkpoint`` (0: that bound is off); the clamped vector and how many
    weights were moved back."""
    value = new.astype(np.int64)
    low = np.full(value.shape, np.iinfo(np.int64).min, dtype=np.int64)
    high = np.full(value.shape, np.iinfo(np.int64).max, dtype=np.int64)
    if max_step:
        low = np.maximum(low, current.astype(np.int64) - max_step)
        high = np.minimum(high, current.astype(np.int64) + max_step)
    if max_drift:
        if checkpoint is None:
            raise ValueError("max_drift needs a checkpoint")
        low = np.maximum(low, checkpoint.astype(np.int64) - max_drift)
        high = np.minimum(high, checkpoint.astype(np.int64) + max_drift)
    clamped = np.clip(value, low, high)
    return clamped, int(np.count_nonzero(clamped != value))
