"""How big a segment can be: the transaction limits a deployment must fit, computed in advance.

A close handles one segment of the model for every update of a round, in one transaction, so the
segment size follows from the round's target, the per-transaction gas cap and the 128 KiB that a
transaction may weigh to pass geth-style pools. ``FLCoordinator``'s constructor refuses a
configuration that breaks these limits (``CoordinatorExceedsTransactionLimit``); this module
mirrors that check exactly, so that a deployment is planned (and a hopeless one refused, with a
:class:`~fl_client.errors.ConfigError`) before anything is sent. Pure: no web3.
"""

from __future__ import annotations

from dataclasses import dataclass

from fl_client.codec import words_for
from fl_client.errors import ConfigError

# Mirrors of FLCoordinator's constants (tests/test_limits.py deploys at and past each boundary).
MAX_CALLDATA_BYTES = 131_072 - 1_024
MAX_CHUNK_WORDS = 767
CLOSE_HEAD_BYTES = 196
CLOSE_FIXED_GAS = 250_000
CLOSE_UPDATE_GAS = 90_000
CLOSE_UPDATE_WORD_GAS = 300
CLOSE_ACC_WORD_GAS = 175
CLOSE_WORD_GAS = 2_500
WIDE_LANE_WORD_GAS = 2_000
GUARD_WORD_GAS = 900
CODE_DEPOSIT_GAS = 200
MASKED_WORD_GAS = 400
MASKED_PAIR_GAS = 20_000
MASK_WORD_GAS = 500
MASKED_AVERAGE_WORD_GAS = 24_000
MEASURE_WORD_GAS = 400
SQUARED_L2_WORD_GAS = 3_000
TRIM_WORD_GAS = 900
STEP_MEASURE_WORD_GAS = 2_500
STEP_WORD_GAS = 6_000
DRIFT_WORD_GAS = 1_500
ALIGNMENT_OFF = -10_000


@dataclass(frozen=True)
class CloseWork:
    """What a close does beyond averaging, as far as its gas goes: squared-L2 distances (measured
    lane by lane), a reward reference read at the close (every update measured again, against
    the new model), the trimmed mean (``trim`` values left out at each end: passes over every
    update's words), and the step and drift bounds (each model word clamped)."""

    squared_l2: bool = False
    aggregate: bool = False
    step: bool = False
    drift: bool = False
    trim: int = 0
    progress: bool = False  # RewardReference Progress: the round's step measured too

    @property
    def update_word_gas(self) -> int:
        """Gas per word of each update."""
        measures = 2 if self.aggregate else 1
        return (
            CLOSE_UPDATE_WORD_GAS
            + (measures - 1) * MEASURE_WORD_GAS
            + (measures * SQUARED_L2_WORD_GAS if self.squared_l2 else 0)
            + self.trim * TRIM_WORD_GAS
        )

    @property
    def step_word_gas(self) -> int:
        """Gas per model word of the step and drift bounds, and of the step's measure under the
        progress reference."""
        measure = 0
        if self.progress:
            measure = STEP_MEASURE_WORD_GAS + (SQUARED_L2_WORD_GAS if self.squared_l2 else 0)
        if not (self.step or self.drift):
            return measure
        return measure + STEP_WORD_GAS + (DRIFT_WORD_GAS if self.drift else 0)


PLAIN_CLOSE = CloseWork()


def accumulator_bits(max_weight_sum: int) -> int:
    """Smallest accumulator lane (32, 64, 128 bits) that holds ``max_weight_sum * 2**16``."""
    bits = 32
    while bits < 128 and (max_weight_sum << 16) >= (1 << bits):
        bits *= 2
    return bits


def masked_lane_bits(target: int, max_weight: int, max_abs: int) -> int:
    """Secure aggregation: the lane width of the masked sums (the contract's ``laneBits``)."""
    bound = target * max_weight * max_abs
    bits = 16
    while bits < 128 and (bound >= (1 << (bits - 1)) or (max_weight << 16) > (1 << bits)):
        bits *= 2
    return bits


@dataclass(frozen=True)
class CloseCost:
    """The largest close of a configuration: its calldata bytes and an upper bound of its gas."""

    calldata_bytes: int
    gas: int
    chunk_words: int


def close_cost(
    *,
    words_per_segment: int,
    target: int,
    max_weight: int,
    guard: bool,
    work: CloseWork = PLAIN_CLOSE,
) -> CloseCost:
    """The contract's bound on a close of one segment with ``target`` updates."""
    acc_words = accumulator_bits(target * max_weight) // 16
    dir_words = (words_per_segment + 7) // 8 if guard else 0
    close_bytes = CLOSE_HEAD_BYTES + target * (words_per_segment * 32 + 32)
    chunk_bytes = (words_per_segment + dir_words) * 32
    memory_words = close_bytes // 32 + words_per_segment * (acc_words + 4) + dir_words + 64
    update_word_gas = work.update_word_gas + (GUARD_WORD_GAS if guard else 0)
    execution = (
        CLOSE_FIXED_GAS
        + target * (CLOSE_UPDATE_GAS + words_per_segment * update_word_gas)
        + target * words_per_segment * acc_words * CLOSE_ACC_WORD_GAS
        + words_per_segment
        * (CLOSE_WORD_GAS + (acc_words - 2) * WIDE_LANE_WORD_GAS + work.step_word_gas)
        + 32_000
        + chunk_bytes * CODE_DEPOSIT_GAS
        + 3 * memory_words
        + memory_words * memory_words // 512
    )
    standard = 21_000 + 16 * close_bytes + execution
    floor = 21_000 + 40 * close_bytes
    return CloseCost(close_bytes, max(standard, floor), words_per_segment + dir_words)


def masked_close_cost(
    *,
    words_per_segment: int,
    target: int,
    lane_bits: int,
    max_dropouts: int,
    work: CloseWork = PLAIN_CLOSE,
) -> CloseCost:
    """The contract's bound on a secure-aggregation close of one segment (``_checkMaskedLimits``)."""
    masked_words = words_per_segment * (lane_bits // 16)
    close_bytes = CLOSE_HEAD_BYTES + target * masked_words * 32
    execution = (
        CLOSE_FIXED_GAS
        + target * (CLOSE_UPDATE_GAS + masked_words * MASKED_WORD_GAS)
        + max_dropouts * target * (MASKED_PAIR_GAS + masked_words * MASK_WORD_GAS)
        + words_per_segment * (MASKED_AVERAGE_WORD_GAS + work.step_word_gas)
        + 32_000
        + words_per_segment * 32 * CODE_DEPOSIT_GAS
    )
    gas = max(21_000 + 16 * close_bytes + execution, 21_000 + 40 * close_bytes)
    return CloseCost(close_bytes, gas, words_per_segment)


def fits(
    *,
    words_per_segment: int,
    target: int,
    max_weight: int,
    guard: bool,
    gas_cap: int,
    masked: tuple[int, int] | None = None,
    work: CloseWork = PLAIN_CLOSE,
) -> bool:
    """Whether the contract accepts this segment size (``masked``: secure aggregation's lane
    width and tolerated dropouts)."""
    if masked is not None:
        cost = masked_close_cost(
            words_per_segment=words_per_segment,
            target=target,
            lane_bits=masked[0],
            max_dropouts=masked[1],
            work=work,
        )
    else:
        cost = close_cost(
            words_per_segment=words_per_segment,
            target=target,
            max_weight=max_weight,
            guard=guard,
            work=work,
        )
    return (
        cost.chunk_words <= MAX_CHUNK_WORDS
        and cost.calldata_bytes <= MAX_CALLDATA_BYTES
        and cost.gas <= gas_cap
    )


def plan_words_per_segment(
    num_weights: int,
    *,
    target: int,
    max_weight: int = 1,
    guard: bool = False,
    gas_cap: int = 16_777_216,
    limit: int | None = None,
    masked: tuple[int, int] | None = None,
    work: CloseWork = PLAIN_CLOSE,
) -> int:
    """The segment size a deployment should use: the fewest segments that fit, evened out.

    ``max_weight`` is 1 for the plain mean, else the largest sample count; ``limit`` caps the
    words per segment further (a configured ``words_per_segment``); ``work`` is what the close
    does besides averaging.

    Raises
    ------
    ConfigError
        Not even a one-word segment fits: ``target`` is too large for one close transaction.
    """
    words = words_for(num_weights)
    largest = min(words, MAX_CHUNK_WORDS, limit or words)
    low, high = 0, largest
    while low < high:  # the largest size that fits (the cost grows with the size)
        middle = (low + high + 1) // 2
        if fits(
            words_per_segment=middle,
            target=target,
            max_weight=max_weight,
            guard=guard,
            gas_cap=gas_cap,
            masked=masked,
            work=work,
        ):
            low = middle
        else:
            high = middle - 1
    if low == 0:
        one = close_cost(
            words_per_segment=1, target=target, max_weight=max_weight, guard=guard, work=work
        )
        raise ConfigError(
            f"a round of {target} submissions cannot be closed in one transaction: even a one-word "
            f"segment needs {one.calldata_bytes:,} bytes and ~{one.gas:,} gas (limits "
            f"{MAX_CALLDATA_BYTES:,} bytes, {gas_cap:,} gas); lower target_submissions"
        )
    segments = -(-words // low)
    return -(-words // segments)
