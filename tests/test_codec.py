"""Quantization and packing: determinism, round trip, clipping, bad inputs, the contract's format;
segments and their hashes against the contract (``modelHash``, ``segmentHash``)."""

from __future__ import annotations

import numpy as np
import pytest
from eth_utils.crypto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from web3.contract import Contract

from fl_client.aggregation import (
    NO_TIER,
    aligned,
    directional_l1,
    distance,
    guard_step,
    integer_average,
    reward_tier,
    rounded_div,
    step_signs,
)
from fl_client.chain import Chain, read_model_words
from fl_client.codec import (
    LANES,
    OFFSET,
    chain_hash,
    dequantize,
    encode,
    pack,
    quantize,
    segment_hashes,
    split_segments,
    unpack,
    vector_hash,
    words_for,
    words_hash,
)
from fl_client.config import FixedPointFormat
from fl_client.errors import NonFiniteWeightError, OutOfRangeError, ShapeError
from tests.conftest import SMALL_WEIGHTS, DeployFactory, submit

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
    assert vector_hash(pack(first), 512) == vector_hash(pack(second), 512)


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
    # -2 against the up step, -4 along the down step
    update = after + np.array([-2, -4, 0, 0])
    assert directional_l1(after, update, step) == (4, 2)
    # a move where the step stood still counts against (a push cannot hide there)
    assert directional_l1(after, after + np.array([-2, -4, 7, 0]), step) == (4, 9)
    assert aligned(4, 2, 3_333)
    assert not aligned(4, 2, 3_334)
    assert aligned(0, 0, 10_000)  # nothing to measure passes
    assert aligned(0, 5, -10_000)
    assert not aligned(0, 5, -9_999)
    with pytest.raises(ShapeError):
        directional_l1(after, update[:3], step)


# ---------------------------------------------------------------- segments and their hashes


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, 2**256 - 1), min_size=1, max_size=40),
    st.integers(1, 50),
)
def test_segments_cut_the_words_in_order_the_last_one_shorter(
    words: list[int], per_segment: int
) -> None:
    segments = split_segments(words, per_segment)
    assert [w for segment in segments for w in segment] == words
    assert len(segments) == -(-len(words) // per_segment)
    assert all(len(segment) == per_segment for segment in segments[:-1])
    assert 1 <= len(segments[-1]) <= per_segment
    assert segment_hashes(words, per_segment) == [words_hash(s) for s in segments]


def test_words_hash_is_keccak_of_the_big_endian_words() -> None:
    words = [1, 2**256 - 1]
    assert words_hash(words) == keccak((1).to_bytes(32, "big") + (2**256 - 1).to_bytes(32, "big"))


def test_the_vector_hash_is_a_chain_over_the_segment_hashes_from_zero() -> None:
    words = pack(np.arange(-20, 20, dtype=np.int64))  # three words
    first, second = split_segments(words, 2)
    assert chain_hash([]) == bytes(32)
    assert vector_hash(words, 2) == keccak(
        keccak(bytes(32) + words_hash(first)) + words_hash(second)
    )
    assert vector_hash(words, 3) == keccak(bytes(32) + words_hash(words))  # one segment
    assert vector_hash(words, 2) != vector_hash(words, 3)  # the cut is part of the hash


def test_a_segment_size_below_one_is_refused() -> None:
    with pytest.raises(ShapeError, match="words_per_segment must be at least 1, got 0"):
        split_segments([1, 2], 0)


@pytest.mark.parametrize("per_segment", [1, 2, 512], ids=["3-segments", "2-segments", "1-segment"])
def test_vector_hash_and_segment_hashes_match_the_contract(
    deploy_coordinator: DeployFactory, isolated: Chain, client_a: str, per_segment: int
) -> None:
    # Prepare: a random initial model, cut into segments of `per_segment` words
    rng = np.random.default_rng(per_segment)
    initial = rng.integers(-3000, 3001, SMALL_WEIGHTS, dtype=np.int64)
    update = rng.integers(-3000, 3001, SMALL_WEIGHTS, dtype=np.int64)
    contract: Contract = deploy_coordinator(initial=initial, words_per_segment=per_segment)
    # Execute
    submit(isolated, contract, client_a, update)
    # Assert: the model's hash, and the hash the contract kept of each segment sent
    assert read_model_words(contract) == pack(initial)
    assert bytes(contract.functions.modelHash().call()) == vector_hash(pack(initial), per_segment)
    stored = [
        bytes(contract.functions.segmentHash(client_a, s).call())
        for s in range(int(contract.functions.numSegments().call()))
    ]
    assert stored == segment_hashes(pack(update), per_segment)


def test_a_round_that_moved_nothing_leaves_the_guard_no_step() -> None:
    before = np.array([0, 0, 0, 5])
    assert guard_step(before, before.copy()) is None  # the contract disarms the guard
    step = guard_step(before, np.array([0, 1, 0, 5]))  # one weight moved: armed, sparse
    assert step is not None
    assert step.tolist() == [0, 1, 0, 0]
