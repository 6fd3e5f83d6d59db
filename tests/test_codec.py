"""Quantization and packing: determinism, round trip, clipping, bad inputs, the contract's format."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fl_client.aggregation import (
    NO_TIER,
    aligned,
    directional_l1,
    distance,
    integer_average,
    reward_tier,
    rounded_div,
    step_signs,
)
from fl_client.codec import (
    LANES,
    OFFSET,
    dequantize,
    encode,
    model_hash,
    pack,
    quantize,
    unpack,
    words_for,
)
from fl_client.config import FixedPointFormat
from fl_client.errors import NonFiniteWeightError, OutOfRangeError, ShapeError

FMT = FixedPointFormat(scale=1024, max_abs=3000)
finite = st.floats(min_value=-2.9, max_value=2.9, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.integers(1, 100), elements=finite))
def test_round_trip_error_is_at_most_half_a_step(weights: np.ndarray) -> None:
    # Prepare / Execute
    words, quantized = encode(weights, FMT)
    restored = dequantize(unpack(words, weights.size), FMT)
    # Assert
    assert quantized.clipped == 0
    assert np.max(np.abs(restored - weights)) <= 0.5 / FMT.scale + 1e-12


@settings(max_examples=100, deadline=None)
@given(arrays(np.int64, st.integers(1, 70), elements=st.integers(-32767, 32767)))
def test_pack_unpack_is_the_identity_on_the_whole_range(values: np.ndarray) -> None:
    words = pack(values)
    assert len(words) == words_for(values.size)
    assert all(0 <= w < 2**256 for w in words)
    np.testing.assert_array_equal(unpack(words, values.size), values)


def test_lane_layout_matches_the_contract() -> None:
    # weight i in lane i % 16 of word i // 16, offset binary; padding lanes hold q = 0
    values = np.arange(-8, 9, dtype=np.int64)  # 17 values: two words
    words = pack(values)
    assert len(words) == 2
    assert words[0] & 0xFFFF == OFFSET - 8
    assert (words[0] >> (16 * 15)) & 0xFFFF == OFFSET + 7
    assert words[1] & 0xFFFF == OFFSET + 8
    assert all((words[1] >> (16 * lane)) & 0xFFFF == OFFSET for lane in range(1, LANES))


def test_quantization_is_deterministic_and_rounds_half_to_even() -> None:
    weights = np.array([0.5, 1.5, 2.5, -0.5, -1.5]) / FMT.scale
    first = quantize(weights, FMT).values
    second = quantize(weights.copy(), FMT).values
    np.testing.assert_array_equal(first, [0, 2, 2, 0, -2])
    np.testing.assert_array_equal(first, second)
    assert model_hash(pack(first)) == model_hash(pack(second))


def test_clipping_is_counted() -> None:
    weights = np.array([3.0, -3.0, 0.1, 10.0])
    quantized = quantize(weights, FMT)
    assert quantized.clipped == 3
    np.testing.assert_array_equal(quantized.values, [3000, -3000, 102, 3000])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_rejected(bad: float) -> None:
    with pytest.raises(NonFiniteWeightError, match="NaN or infinite"):
        quantize(np.array([0.1, bad, 0.2]), FMT)


def test_wrong_shapes_are_rejected() -> None:
    with pytest.raises(ShapeError, match="flat vector"):
        quantize(np.zeros((2, 3)), FMT)
    with pytest.raises(ShapeError, match="expected 650 weights, got 649"):
        quantize(np.zeros(649), FMT, expected=650)
    with pytest.raises(ShapeError, match="empty"):
        quantize(np.zeros(0), FMT)
    with pytest.raises(ShapeError, match="need 1 words, got 2"):
        unpack([0, 0], 10)
    with pytest.raises(ShapeError, match="integers"):
        pack(np.array([0.5]))


def test_out_of_range_values_are_rejected_before_packing() -> None:
    with pytest.raises(OutOfRangeError, match=r"index 1 = 3001"):
        pack(np.array([0, 3001]), max_abs=3000)
    with pytest.raises(OutOfRangeError):
        pack(np.array([-32768]))


def test_nonzero_padding_is_rejected_on_unpack() -> None:
    words = pack(np.array([1, 2, 3]))
    words[0] |= 0x0001 << (16 * 5)  # lane 5 is padding: OFFSET | 1
    with pytest.raises(ShapeError, match="padding"):
        unpack(words, 3)


def test_bad_fixed_point_format_is_rejected() -> None:
    from fl_client.errors import ConfigError

    with pytest.raises(ConfigError, match="max_abs"):
        FixedPointFormat(scale=1024, max_abs=40_000)
    with pytest.raises(ConfigError, match="scale"):
        FixedPointFormat(scale=0, max_abs=100)


# ---------------------------------------------------------------- the integer reference


@pytest.mark.parametrize(
    ("total", "divisor", "expected"),
    [(5, 2, 3), (-5, 2, -3), (4, 2, 2), (7, 3, 2), (-7, 3, -2), (8, 3, 3), (-8, 3, -3), (0, 5, 0)],
)
def test_rounded_div_rounds_to_nearest_ties_away_from_zero(
    total: int, divisor: int, expected: int
) -> None:
    assert rounded_div(total, divisor) == expected


def test_integer_average_mean_and_weighted() -> None:
    a = np.array([1, -1, 3000])
    b = np.array([2, -2, -3000])
    np.testing.assert_array_equal(integer_average([a, b]), [2, -2, 0])  # 1.5 -> 2, -1.5 -> -2
    np.testing.assert_array_equal(
        integer_average([a, b], [3, 1]), [1, -1, 1500]
    )  # 5/4, -5/4, 6000/4


def test_distance_and_tiers() -> None:
    model = np.array([0, 10, -10])
    update = np.array([3, 6, -10])
    assert distance(model, update, "l1") == 7
    assert distance(model, update, "squared_l2") == 25
    assert reward_tier(7, (7, 20), (5, 1)).tier == 0  # inclusive threshold
    assert reward_tier(8, (7, 20), (5, 1)).tier == 1
    assert reward_tier(21, (7, 20), (5, 1)).tier == NO_TIER
    assert reward_tier(0, (7, 20), (5, 1), min_reward_distance=1).amount_wei == 0
    assert reward_tier(15, (7, 20), (5, 1), max_counted_distance=10).tier == NO_TIER


def test_direction_split_and_guard() -> None:
    before = np.array([0, 0, 0, 5])
    after = np.array([2, -1, 0, 5])
    step = step_signs(before, after)
    assert step.tolist() == [1, -1, 0, 0]
    # -2 against the up step, -4 along the down step, +7 where the step stood still
    update = after + np.array([-2, -4, 7, 0])
    assert directional_l1(after, update, step) == (4, 2)
    assert aligned(4, 2, 3_333)
    assert not aligned(4, 2, 3_334)
    assert aligned(0, 0, 10_000)  # nothing to measure passes
    assert aligned(0, 5, -10_000)
    assert not aligned(0, 5, -9_999)
    with pytest.raises(ShapeError):
        directional_l1(after, update[:3], step)
