"""Secure aggregation's mathematics, as the contract checks it (`SecureAggregationUnit`).

Pure core: no web3. Each round a member derives a fresh secp256k1 masking key from its secret,
proves it holds it, splits it with Shamir's scheme among the round's members (threshold
``registered - maxDropouts``, over the group order), and masks its update with one mask per other
member: a keccak counter stream seeded by the pair's ECDH point (its Ethereum address, which the
contract can recompute with ECRECOVER) bound to the chain, the contract, the round and both
addresses in a fixed order. Masks are added by the member with the lower index and subtracted by
the other, lane by lane modulo ``2**lane_bits``, so that a pair's masks cancel in the sum; a dropped
member's masks are removed once its key is rebuilt from the survivors' shares.

Masked layout ("natural"): weight ``i`` (padding included, ``16 * numWords`` values) sits in lane
``i % L`` of masked word ``i // L``, ``L = 256 / lane_bits``.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from eth_abi.abi import encode as abi_encode
from eth_keys.backends.native.jacobian import fast_multiply
from eth_utils.crypto import keccak

from fl_client.codec import LANES, OFFSET, words_for
from fl_client.errors import ConfigError

# secp256k1
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
G = (
    0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
    0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8,
)
KEY_PROOF_TAG = keccak(b"FLCoordinator masking key")
MEMBER_SHARED, MEMBER_SUBMITTED, MEMBER_DROPPED, MEMBER_RECOVERED = 1, 2, 4, 8


@dataclass(frozen=True)
class MaskingKey:
    """A member's masking key for one round."""

    secret: int
    x: int
    y: int

    @property
    def address(self) -> bytes:
        """The key's Ethereum address (20 bytes)."""
        return point_address(self.x, self.y)


def masking_key(seed: bytes) -> MaskingKey:
    """The masking key derived from 32 bytes of secret seed (a member's secret and the round)."""
    secret = int.from_bytes(keccak(b"mask key|" + seed), "big") % N
    while True:
        if secret != 0:
            x, y = fast_multiply(G, secret)
            if x < N:  # the contract needs x below the group order (see `_pointAddress`)
                return MaskingKey(secret, x, y)
        secret = int.from_bytes(keccak(secret.to_bytes(32, "big")), "big") % N


def point_address(x: int, y: int) -> bytes:
    """The Ethereum address of a point: the last 20 bytes of keccak256(x || y)."""
    return keccak(x.to_bytes(32, "big") + y.to_bytes(32, "big"))[12:]


def key_proof_digest(
    *, chain_id: int, contract: str, round_number: int, member: str, x: int, y: int
) -> bytes:
    """The digest a member signs with its masking key to prove it holds it."""
    return keccak(
        abi_encode(
            ["bytes32", "uint256", "address", "uint256", "address", "uint256", "uint256"],
            [KEY_PROOF_TAG, chain_id, contract, round_number, member, x, y],
        )
    )


def shared_address(secret: int, peer_x: int, peer_y: int) -> bytes:
    """The address of the pair's ECDH point ``secret * peer`` (the same from either side)."""
    x, y = fast_multiply((peer_x, peer_y), secret)
    return point_address(x, y)


def pair_seed(
    shared: bytes, *, chain_id: int, contract: str, round_number: int, a: str, b: str
) -> bytes:
    """The seed of a pair's masks, bound to the chain, the contract, the round and both members'
    addresses in a fixed order (so that nothing can make two pairs share a mask)."""
    low, high = sorted((a, b), key=lambda address: int(address, 16))
    return keccak(
        abi_encode(
            ["address", "uint256", "address", "uint256", "address", "address"],
            ["0x" + shared.hex(), chain_id, contract, round_number, low, high],
        )
    )


def mask_word(seed: bytes, index: int) -> int:
    """Masked word ``index`` of a pair's stream: keccak256(abi.encode(seed, index))."""
    return int.from_bytes(keccak(seed + index.to_bytes(32, "big")), "big")


def lane_values(quantized: np.ndarray, weight: int) -> list[int]:
    """``weight * (q + 32768)`` for every weight, then the padding lanes (``q = 0``)."""
    total = words_for(int(quantized.size)) * LANES
    values = [weight * OFFSET] * total
    for i, value in enumerate(quantized.tolist()):
        values[i] = weight * (int(value) + OFFSET)
    return values


def pack_lanes(values: Sequence[int], lane_bits: int) -> list[int]:
    """Values in the natural masked layout, each reduced modulo ``2**lane_bits``."""
    per_word = 256 // lane_bits
    mask = (1 << lane_bits) - 1
    words = []
    for start in range(0, len(values), per_word):
        word = 0
        for t, value in enumerate(values[start : start + per_word]):
            word |= (int(value) & mask) << (lane_bits * t)
        words.append(word)
    return words


def add_lanes(a: int, b: int, lane_bits: int, sign: int = 1) -> int:
    """``a + sign * b`` lane by lane modulo ``2**lane_bits``."""
    mask = (1 << lane_bits) - 1
    out = 0
    for shift in range(0, 256, lane_bits):
        lane = (((a >> shift) & mask) + sign * ((b >> shift) & mask)) & mask
        out |= lane << shift
    return out


def masked_update(
    quantized: np.ndarray,
    *,
    weight: int,
    lane_bits: int,
    own_index: int,
    peer_seeds: dict[int, bytes],
) -> list[int]:
    """The words a member submits: ``weight * (q + 32768)`` plus its pairwise masks.

    ``peer_seeds`` maps every other cohort member's index to the pair's seed; the member with the
    lower index adds the pair's mask, the other subtracts it.
    """
    words = pack_lanes(lane_values(quantized, weight), lane_bits)
    for peer, seed in peer_seeds.items():
        if peer == own_index:
            raise ConfigError("a member has no mask with itself")
        sign = 1 if own_index < peer else -1
        words = [
            add_lanes(word, mask_word(seed, j), lane_bits, sign) for j, word in enumerate(words)
        ]
    return words


# ---------------------------------------------------------------- Shamir's scheme over the group order


def shamir_split(
    secret: int, *, threshold: int, count: int, randomness: bytes | None = None
) -> list[int]:
    """Shares of ``secret`` for members ``1 .. count`` (``f(index + 1)``, ``f`` of degree
    ``threshold - 1`` with ``f(0) = secret``); any ``threshold`` rebuild it, fewer say nothing.
    The coefficients come from ``randomness`` (deterministic) or the OS."""
    if not 1 <= threshold <= count:
        raise ConfigError(f"threshold must be in 1..{count}, got {threshold}")
    coefficients = [secret % N]
    for k in range(1, threshold):
        source = (
            keccak(randomness + k.to_bytes(4, "big"))
            if randomness is not None
            else secrets.token_bytes(32)
        )
        coefficients.append(int.from_bytes(source, "big") % N)
    shares = []
    for index in range(1, count + 1):
        value = 0
        for coefficient in reversed(coefficients):
            value = (value * index + coefficient) % N
        shares.append(value)
    return shares


def shamir_combine(points: Sequence[tuple[int, int]]) -> int:
    """The secret from ``(x, share)`` points (Lagrange interpolation at 0, modulo the order)."""
    secret = 0
    for i, (xi, yi) in enumerate(points):
        numerator, denominator = 1, 1
        for j, (xj, _) in enumerate(points):
            if i != j:
                numerator = numerator * xj % N
                denominator = denominator * (xj - xi) % N
        secret = (secret + yi * numerator * pow(denominator, -1, N)) % N
    return secret


def share_commitment(*, round_number: int, dealer: str, holder: int, share: int) -> bytes:
    """keccak256(abi.encode(round, dealer, holder index, share)): what the dealer commits to."""
    return keccak(
        abi_encode(
            ["uint256", "address", "uint256", "uint256"], [round_number, dealer, holder, share]
        )
    )


def share_pad(shared: bytes, *, round_number: int, dealer: str, holder: int) -> int:
    """The one-time pad that encrypts a share to its holder (from the pair's ECDH point)."""
    digest = keccak(
        abi_encode(
            ["address", "string", "uint256", "address", "uint256"],
            ["0x" + shared.hex(), "share", round_number, dealer, holder],
        )
    )
    return int.from_bytes(digest, "big")
