"""Signed updates as JSON, the way clients and the relay exchange them over HTTP."""

from __future__ import annotations

from typing import Any

from eth_utils.address import is_address, to_checksum_address

from fl_client.chain import SignedUpdate, UpdateSignature
from fl_client.errors import UpdateRefusedError

WORD_BYTES = 32


def words_to_hex(words: tuple[int, ...] | list[int]) -> str:
    """Packed words as one hex string (32 bytes each, big-endian)."""
    return "0x" + b"".join(int(w).to_bytes(WORD_BYTES, "big") for w in words).hex()


def words_from_hex(text: str) -> tuple[int, ...]:
    """The inverse of :func:`words_to_hex`."""
    try:
        raw = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise UpdateRefusedError("words is not a hex string of whole bytes") from None
    if len(raw) % WORD_BYTES:
        raise UpdateRefusedError(f"words: {len(raw)} bytes is not a whole number of 32-byte words")
    return tuple(
        int.from_bytes(raw[i : i + WORD_BYTES], "big") for i in range(0, len(raw), WORD_BYTES)
    )


def to_json(update: SignedUpdate) -> dict[str, Any]:
    """A signed update as a JSON-ready dictionary."""
    return {
        "round": update.round_number,
        "client": update.client,
        "sampleCount": update.sample_count,
        "segmentHashes": ["0x" + h.hex() for h in update.segment_hashes],
        "signature": {
            "v": update.signature.v,
            "r": "0x" + update.signature.r.hex(),
            "s": "0x" + update.signature.s.hex(),
        },
        "words": words_to_hex(update.words),
    }


def _bytes32(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise UpdateRefusedError(f"{name} must be a hex string")
    try:
        raw = bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        raise UpdateRefusedError(f"{name} is not hex") from None
    if len(raw) != 32:
        raise UpdateRefusedError(f"{name} must be 32 bytes, got {len(raw)}")
    return raw


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UpdateRefusedError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def from_json(data: Any) -> SignedUpdate:
    """Parse a signed update; raise :class:`UpdateRefusedError` naming the first bad field."""
    if not isinstance(data, dict):
        raise UpdateRefusedError("the body must be a JSON object")
    missing = {"round", "client", "sampleCount", "segmentHashes", "signature", "words"} - set(data)
    if missing:
        raise UpdateRefusedError(f"missing field(s): {', '.join(sorted(missing))}")
    client = data["client"]
    if not isinstance(client, str) or not is_address(client):
        raise UpdateRefusedError(f"client is not an address: {client!r}")
    signature = data["signature"]
    if not isinstance(signature, dict) or set(signature) != {"v", "r", "s"}:
        raise UpdateRefusedError("signature must be an object with v, r and s")
    hashes = data["segmentHashes"]
    if not isinstance(hashes, list):
        raise UpdateRefusedError("segmentHashes must be a list")
    words = data["words"]
    if not isinstance(words, str):
        raise UpdateRefusedError("words must be a hex string")
    return SignedUpdate(
        round_number=_integer(data["round"], "round"),
        client=to_checksum_address(client),
        sample_count=_integer(data["sampleCount"], "sampleCount"),
        segment_hashes=tuple(_bytes32(h, "segmentHashes[]") for h in hashes),
        signature=UpdateSignature(
            v=_integer(signature["v"], "signature.v"),
            r=_bytes32(signature["r"], "signature.r"),
            s=_bytes32(signature["s"], "signature.s"),
        ),
        words=words_from_hex(words),
    )
