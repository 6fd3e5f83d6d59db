"""A client's secret: the seed of its commit-reveal salts, its secure-aggregation key and its DP
noise. Whoever knows it can recompute them, so a real client keeps a random one on disk."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from fl_client.errors import ClientStateError

SECRET_BYTES = 32


def simulation_secret(seed: int, client_id: int) -> bytes:
    """A reproducible client secret for simulations, tests and benchmarks, derived from the run's
    seed. Not secret: anyone who knows the seed can recompute the salts, masks and DP noise."""
    return hashlib.sha256(f"fl-simulation|{seed}|{client_id}".encode()).digest()


def load_secret(path: Path) -> bytes:
    """This client's secret, kept in ``path`` (created with 32 random bytes, mode 0600)."""
    if path.exists():
        secret = path.read_bytes()
        if len(secret) < SECRET_BYTES:
            raise ClientStateError(f"the client secret in {path} is too short")
        return secret
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = os.urandom(SECRET_BYTES)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(secret)
    return secret


def derive(secret: bytes, purpose: str, round_number: int | None = None) -> bytes:
    """32 bytes derived from ``secret`` for ``purpose`` (and a round)."""
    suffix = b"" if round_number is None else b"|" + round_number.to_bytes(8, "big")
    return hashlib.sha256(secret + b"|" + purpose.encode() + suffix).digest()
