"""Client-side differential privacy: update-level noise and its accounting.

Everything a client submits to a public chain stays public forever. Remedies, all optional:

* **Differential privacy on the client.** The update (trained minus global weights) is clipped to
  an L2 norm ``C`` and Gaussian noise of standard deviation ``sigma * C`` is added before
  quantization. Each client is its own release (local, client-level DP): the privacy loss of R
  rounds is accounted with Google's ``dp-accounting`` RDP accountant, and reported as epsilon at a
  given delta. Adjacency: a client's update against no update (sensitivity ``C``, as in DP-FedAvg);
  for two arbitrary datasets of one client the clipped updates differ by up to ``2C``, which is
  ``epsilon(sigma / 2, ...)``. The noise must come from a secret: whoever can recompute it can
  subtract it (``fl_client.client`` seeds it from the client's secret).
* **Secure aggregation**: see :mod:`fl_client.secagg`.

Pure: no web3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
