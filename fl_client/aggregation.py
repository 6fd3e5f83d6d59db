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


def directional_l1(model: np.ndarray, update: np.ndarray, step: np.ndarray) -> tuple[int, int]:
    """The L1 distance from ``model`` to ``update`` split by the last global step ``step``
    (:func:`step_signs`): ``(along, against)``, the weights moved the same way and the other way.
    Weights the step left alone count in neither."""
    if not model.shape == update.shape == step.shape:
        raise ShapeError(f"shapes differ: {model.shape}, {update.shape}, {step.shape}")
    diff = update.astype(np.int64) - model.astype(np.int64)
    moved = np.sign(diff) * step
    magnitude = np.abs(diff)
    return int(magnitude[moved > 0].sum()), int(magnitude[moved < 0].sum())


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
