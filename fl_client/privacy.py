"""Privacy add-ons: client-side differential privacy and pairwise-mask secure aggregation.

Everything a client submits to a public chain stays public forever. Two remedies, both optional:

* **Differential privacy on the client.** The update (trained minus global weights) is clipped to
  an L2 norm ``C`` and Gaussian noise of standard deviation ``sigma * C`` is added before
  quantization. Each client is its own release (local, client-level DP): the privacy loss of R
  rounds is accounted with Google's ``dp-accounting`` RDP accountant, and reported as epsilon at a
  given delta. Adjacency: a client's update against no update (sensitivity ``C``, as in DP-FedAvg);
  for two arbitrary datasets of one client the clipped updates differ by up to ``2C``, which is
  ``epsilon(sigma / 2, ...)``. The noise must come from a secret: whoever can recompute it can
  subtract it (``fl_client.client`` seeds it from the client's secret).
* **Secure aggregation** (Bonawitz et al. 2016, without the dropout recovery). Each client
  publishes an X25519 key on-chain, agrees on a secret with every other member of the cohort,
  expands it with SHAKE-256 into one mask per lane, and adds (lower index) or subtracts (higher
  index) it modulo ``2**lane_bits``. The masks cancel exactly in the contract's sum, so the
  average is the unmasked one, while a single submission is indistinguishable from noise.

Pure: no web3. The masked layout mirrors the contract's sum words (``contracts/PackedVectors.sol``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fl_client.codec import LANES, OFFSET, words_for
from fl_client.errors import ConfigError, ShapeError

# ---------------------------------------------------------------- differential privacy


@dataclass(frozen=True)
class DPConfig:
    """Clipping norm ``C`` (in weight units), noise multiplier ``sigma`` and the target delta."""

    clip_norm: float
    noise_multiplier: float
    delta: float = 1e-5

    def __post_init__(self) -> None:
        if not self.clip_norm > 0:
            raise ConfigError(f"privacy.clip_norm must be positive, got {self.clip_norm}")
        if self.noise_multiplier < 0:
            raise ConfigError(f"privacy.noise_multiplier must be >= 0, got {self.noise_multiplier}")
        if not 0 < self.delta < 1:
            raise ConfigError(f"privacy.delta must be in (0, 1), got {self.delta}")


@dataclass(frozen=True)
class PrivatizedUpdate:
    """The weights to submit and what clipping did."""

    weights: np.ndarray
    update_norm: float  # before clipping
    clipped: bool


def privatize(
    global_weights: np.ndarray, trained: np.ndarray, config: DPConfig, *, seed: int
) -> PrivatizedUpdate:
    """Clip the update ``trained - global_weights`` to ``C`` and add N(0, (sigma C)^2) noise."""
    if global_weights.shape != trained.shape:
        raise ShapeError(f"shapes differ: {global_weights.shape} vs {trained.shape}")
    update = trained.astype(np.float64) - global_weights.astype(np.float64)
    norm = float(np.linalg.norm(update))
    factor = min(1.0, config.clip_norm / norm) if norm > 0 else 1.0
    noise = np.random.default_rng(seed).normal(
        0.0, config.noise_multiplier * config.clip_norm, update.shape
    )
    return PrivatizedUpdate(
        weights=global_weights + update * factor + noise, update_norm=norm, clipped=factor < 1.0
    )


def epsilon(
    noise_multiplier: float, rounds: int, delta: float, *, sampling_rate: float = 1.0
) -> float:
    """Epsilon after ``rounds`` Gaussian releases (RDP accountant), each with probability ``sampling_rate``.

    ``noise_multiplier == 0`` gives infinity: no privacy.
    """
    from dp_accounting import dp_event, rdp

    if rounds < 0 or not 0 < sampling_rate <= 1:
        raise ConfigError("rounds must be >= 0 and the sampling rate in (0, 1]")
    if rounds == 0:
        return 0.0
    if noise_multiplier == 0:
        return float("inf")
    event: dp_event.DpEvent = dp_event.GaussianDpEvent(noise_multiplier)
    if sampling_rate < 1:
        event = dp_event.PoissonSampledDpEvent(sampling_rate, event)
    accountant = rdp.RdpAccountant()
    accountant.compose(event, rounds)
    return float(accountant.get_epsilon(delta))


# ---------------------------------------------------------------- secure aggregation


@dataclass(frozen=True)
class MaskContext:
    """What binds masks to one round of one deployment (so that no mask is ever reused)."""

    chain_id: int
    contract: str
    round_number: int

    def info(self) -> bytes:
        """HKDF info string."""
        return f"fl-secagg|{self.chain_id}|{self.contract.lower()}|{self.round_number}".encode()


def private_key_from_seed(seed: bytes) -> X25519PrivateKey:
    """A deterministic X25519 key from 32 bytes of secret seed."""
    if len(seed) != 32:
        raise ConfigError("an X25519 seed has 32 bytes")
    return X25519PrivateKey.from_private_bytes(seed)


def public_key_bytes(key: X25519PrivateKey) -> bytes:
    """The raw 32-byte public key, as registered on-chain."""
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def pair_seed(own: X25519PrivateKey, peer_public: bytes, context: MaskContext) -> bytes:
    """The secret both members of a pair derive: X25519, then HKDF-SHA256 bound to the round."""
    shared = own.exchange(X25519PublicKey.from_public_bytes(peer_public))
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=context.info()).derive(shared)


def expand_mask(seed: bytes, count: int, lane_bits: int) -> list[int]:
    """``count`` lanes of ``lane_bits`` bits from SHAKE-256 of the pair seed (deterministic)."""
    width = lane_bits // 8
    stream = hashlib.shake_256(seed).digest(count * width)
    return [int.from_bytes(stream[i * width : (i + 1) * width], "little") for i in range(count)]


def sum_layout(values: Sequence[int], num_weights: int, lane_bits: int) -> list[int]:
    """Arrange one value per lane (weights, then padding) into the contract's sum words.

    Sum word ``j * r + k`` (``r = lane_bits / 16``) holds, in its lane ``t``, entry
    ``16 * j + k + r * t``.
    """
    ratio = lane_bits // 16
    per_word = 256 // lane_bits
    total = words_for(num_weights) * LANES
    if len(values) != total:
        raise ShapeError(f"expected {total} lanes (weights and padding), got {len(values)}")
    mask = (1 << lane_bits) - 1
    words = []
    for j in range(words_for(num_weights)):
        for k in range(ratio):
            word = 0
            for t in range(per_word):
                word |= (values[16 * j + k + ratio * t] & mask) << (lane_bits * t)
            words.append(word)
    return words


def masked_words(
    quantized: np.ndarray,
    *,
    weight: int,
    lane_bits: int,
    own_index: int,
    peer_seeds: dict[int, bytes],
) -> list[int]:
    """The words a cohort member submits: ``weight * (q + 32768)`` plus its masks, mod 2**lane_bits.

    ``peer_seeds`` maps every other member's cohort index to the pair seed; the member with the
    lower index adds the pair's mask, the other subtracts it, so that the masks cancel in the sum.
    """
    num_weights = int(quantized.size)
    total = words_for(num_weights) * LANES
    modulus = 1 << lane_bits
    lanes = [weight * OFFSET] * total
    for i, value in enumerate(quantized.tolist()):
        lanes[i] = weight * (int(value) + OFFSET)
    for peer, seed in peer_seeds.items():
        if peer == own_index:
            raise ConfigError("a member has no mask with itself")
        mask = expand_mask(seed, total, lane_bits)
        sign = 1 if own_index < peer else -1
        lanes = [(lane + sign * m) % modulus for lane, m in zip(lanes, mask, strict=True)]
    return sum_layout([lane % modulus for lane in lanes], num_weights, lane_bits)


def add_lanes(a: Sequence[int], b: Sequence[int], lane_bits: int) -> list[int]:
    """Lane-wise sum modulo ``2**lane_bits`` of two lists of words (what the contract computes)."""
    out = []
    for x, y in zip(a, b, strict=True):
        word = 0
        for t in range(256 // lane_bits):
            shift = lane_bits * t
            mask = (1 << lane_bits) - 1
            word |= ((((x >> shift) & mask) + ((y >> shift) & mask)) & mask) << shift
        out.append(word)
    return out
