"""Fixed-point quantization of model weights and the contract's packed wire format.

Deterministic: the same float weights always give the same integers, the same words and the same
hash, on every machine. ``q = rint(w * scale)`` (round half to even, IEEE float64), clipped to
``[-max_abs, max_abs]``; weight ``i`` travels in lane ``i % 16`` (bits ``16*lane``) of word
``i // 16`` as offset binary ``q + 32768``; lanes past the end hold ``q = 0``. This mirrors
``contracts/PackedVectors.sol``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from eth_utils.crypto import keccak

from fl_client.config import FixedPointFormat
from fl_client.errors import NonFiniteWeightError, OutOfRangeError, ShapeError

LANES = 16
OFFSET = 1 << 15
WORD_BYTES = 32


@dataclass(frozen=True)
class Quantized:
    """A quantized vector and how many of its weights were clipped to the range."""

    values: np.ndarray  # int64
    clipped: int


def words_for(num_weights: int) -> int:
    """Number of packed words that hold ``num_weights`` weights."""
    return -(-num_weights // LANES)


def _as_flat(weights: np.ndarray | Sequence[float], expected: int | None) -> np.ndarray:
    array = np.asarray(weights, dtype=np.float64)
    if array.ndim != 1:
        raise ShapeError(f"expected a flat vector, got shape {array.shape}")
    if expected is not None and array.shape[0] != expected:
        raise ShapeError(f"expected {expected} weights, got {array.shape[0]}")
    if array.shape[0] == 0:
        raise ShapeError("cannot quantize an empty vector")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise NonFiniteWeightError(
            f"{bad.size} weight(s) are NaN or infinite (first at index {int(bad[0])}: {array[bad[0]]})"
        )
    return array


def quantize(
    weights: np.ndarray | Sequence[float], fmt: FixedPointFormat, *, expected: int | None = None
) -> Quantized:
    """Quantize float weights to ``fmt``, clipping to its range.

    Raises
    ------
    ShapeError
        The vector is not flat, is empty, or does not have ``expected`` entries.
    NonFiniteWeightError
        A weight is NaN or infinite.
    """
    array = _as_flat(weights, expected)
    scaled = np.rint(array * fmt.scale)
    clipped = int(np.count_nonzero(np.abs(scaled) > fmt.max_abs))
    values = np.clip(scaled, -fmt.max_abs, fmt.max_abs).astype(np.int64)
    return Quantized(values=values, clipped=clipped)


def dequantize(values: np.ndarray | Sequence[int], fmt: FixedPointFormat) -> np.ndarray:
    """Float weights of quantized values."""
    return np.asarray(values, dtype=np.float64) / fmt.scale


def check_range(values: np.ndarray, max_abs: int) -> None:
    """Raise :class:`OutOfRangeError` when a quantized value exceeds ``max_abs``."""
    bad = np.flatnonzero(np.abs(values) > max_abs)
    if bad.size:
        index = int(bad[0])
        raise OutOfRangeError(
            f"{bad.size} quantized value(s) outside [-{max_abs}, {max_abs}] "
            f"(first: index {index} = {int(values[index])})"
        )


def pack(values: np.ndarray | Sequence[int], *, max_abs: int = OFFSET - 1) -> list[int]:
    """Pack quantized values into the contract's 256-bit words."""
    array = np.asarray(values)
    if array.ndim != 1 or array.size == 0:
        raise ShapeError(f"expected a non-empty flat vector, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ShapeError(f"expected integers, got dtype {array.dtype}")
    check_range(array, max_abs)
    padded = np.zeros(words_for(array.size) * LANES, dtype="<u2")
    padded[:] = OFFSET
    padded[: array.size] = (array.astype(np.int64) + OFFSET).astype("<u2")
    raw = padded.tobytes()
    return [
        int.from_bytes(raw[i : i + WORD_BYTES], "little") for i in range(0, len(raw), WORD_BYTES)
    ]


def unpack(words: Sequence[int], num_weights: int) -> np.ndarray:
    """Quantized values (int64) of packed words; the inverse of :func:`pack`."""
    if len(words) != words_for(num_weights):
        raise ShapeError(
            f"{num_weights} weights need {words_for(num_weights)} words, got {len(words)}"
        )
    try:
        raw = b"".join(int(word).to_bytes(WORD_BYTES, "little") for word in words)
    except OverflowError:
        raise ShapeError("a packed word does not fit 256 bits") from None
    lanes = np.frombuffer(raw, dtype="<u2").astype(np.int64) - OFFSET
    padding = lanes[num_weights:]
    if np.any(padding != 0):
        raise ShapeError("padding lanes past the last weight are not zero")
    return lanes[:num_weights]


def words_hash(words: Sequence[int]) -> bytes:
    """keccak256 of packed words as the contract computes it (32-byte big-endian each)."""
    return keccak(b"".join(int(word).to_bytes(WORD_BYTES, "big") for word in words))


def split_segments(words: Sequence[int], words_per_segment: int) -> list[list[int]]:
    """The segments of a packed vector: ``words_per_segment`` words each, the last one shorter."""
    if words_per_segment < 1:
        raise ShapeError(f"words_per_segment must be at least 1, got {words_per_segment}")
    return [
        [int(w) for w in words[start : start + words_per_segment]]
        for start in range(0, len(words), words_per_segment)
    ]


def segment_hashes(words: Sequence[int], words_per_segment: int) -> list[bytes]:
    """keccak256 of each segment's words."""
    return [words_hash(segment) for segment in split_segments(words, words_per_segment)]


def chain_hash(hashes: Sequence[bytes]) -> bytes:
    """The contract's hash chain over segment hashes: ``h = keccak256(h || hash)`` from zero."""
    digest = bytes(WORD_BYTES)
    for item in hashes:
        digest = keccak(digest + bytes(item))
    return digest


def vector_hash(words: Sequence[int], words_per_segment: int) -> bytes:
    """The hash of a packed vector cut in segments: the chain of its segments' hashes. It is the
    contract's ``modelHash`` of a model, and what a commitment or a relayed update signs."""
    return chain_hash(segment_hashes(words, words_per_segment))


def encode(
    weights: np.ndarray | Sequence[float], fmt: FixedPointFormat, *, expected: int | None = None
) -> tuple[list[int], Quantized]:
    """Quantize and pack in one step: the words to submit and the quantized vector."""
    quantized = quantize(weights, fmt, expected=expected)
    return pack(quantized.values, max_abs=fmt.max_abs), quantized
