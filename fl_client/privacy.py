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

import math
from collections.abc import Sequence
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


# Orders at which privacy is accounted (and the on-chain ledger keeps its curve): few enough for
# the contract (at most 32), spread so that the minimum over them is close to the best order.
LEDGER_ORDERS: tuple[float, ...] = (
    1.25,
    1.5,
    1.75,
    2.0,
    2.5,
    3.0,
    4.0,
    5.0,
    6.0,
    8.0,
    10.0,
    12.0,
    16.0,
    20.0,
    32.0,
    64.0,
)
MICRO = 1_000_000  # the ledger's fixed point: 1e-6 units of epsilon


def rdp_curve(
    noise_multiplier: float,
    *,
    sampling_rate: float = 1.0,
    steps: int = 1,
    orders: Sequence[float] = LEDGER_ORDERS,
) -> list[float]:
    """The RDP of ``steps`` (sub)sampled Gaussian releases at each order (Opacus's analysis): one
    participation, for update-level noise one release (``sampling_rate`` 1, one step), for DP-SGD
    its steps at its sampling rate."""
    from opacus.accountants.analysis import rdp

    if not 0 < sampling_rate <= 1 or steps < 0:
        raise ConfigError("the sampling rate must be in (0, 1] and the steps >= 0")
    if noise_multiplier <= 0:
        return [math.inf] * len(orders)
    return [
        float(v)
        for v in rdp.compute_rdp(
            q=sampling_rate, noise_multiplier=noise_multiplier, steps=steps, orders=list(orders)
        )
    ]


def conversion_terms(delta: float, orders: Sequence[float] = LEDGER_ORDERS) -> list[float]:
    """Per order, the term that turns RDP into epsilon at ``delta`` (Balle et al. 2020, as
    Opacus's ``get_privacy_spent``): ``-(log delta + log a) / (a - 1) + log((a - 1) / a)``."""
    if not 0 < delta < 1:
        raise ConfigError(f"delta must be in (0, 1), got {delta}")
    return [-(math.log(delta) + math.log(a)) / (a - 1) + math.log((a - 1) / a) for a in orders]


def epsilon_of_rdp(
    rdp: Sequence[float], delta: float, orders: Sequence[float] = LEDGER_ORDERS
) -> float:
    """Epsilon at ``delta`` of an RDP curve: the minimum over the orders (Opacus's accountant)."""
    from opacus.accountants.analysis import rdp as analysis

    epsilon_value, _ = analysis.get_privacy_spent(orders=list(orders), rdp=list(rdp), delta=delta)
    return float(epsilon_value)


def epsilon(
    noise_multiplier: float, rounds: int, delta: float, *, sampling_rate: float = 1.0
) -> float:
    """Epsilon after ``rounds`` Gaussian releases, each with probability ``sampling_rate`` (RDP).

    ``noise_multiplier == 0`` gives infinity: no privacy.
    """
    if rounds < 0 or not 0 < sampling_rate <= 1:
        raise ConfigError("rounds must be >= 0 and the sampling rate in (0, 1]")
    if rounds == 0:
        return 0.0
    if noise_multiplier == 0:
        return float("inf")
    return epsilon_of_rdp(
        rdp_curve(noise_multiplier, sampling_rate=sampling_rate, steps=rounds), delta
    )


@dataclass(frozen=True)
class LedgerCurve:
    """What the contract's privacy ledger needs: one participation's RDP per order and the
    conversion terms, in 1e-6 units (rounded up: the chain never reports less than was spent),
    and the budget."""

    orders: tuple[float, ...]
    rdp_micro: tuple[int, ...]
    conversion_micro: tuple[int, ...]
    budget_micro: int
    delta: float

    @classmethod
    def of(
        cls,
        *,
        noise_multiplier: float,
        delta: float,
        epsilon_budget: float,
        sampling_rate: float = 1.0,
        steps: int = 1,
        orders: Sequence[float] = LEDGER_ORDERS,
    ) -> LedgerCurve:
        """The curve of a participation of ``steps`` releases at ``sampling_rate``."""
        curve = rdp_curve(noise_multiplier, sampling_rate=sampling_rate, steps=steps, orders=orders)
        return cls.of_rdp(curve, delta=delta, epsilon_budget=epsilon_budget, orders=orders)

    @classmethod
    def of_rdp(
        cls,
        curve: Sequence[float],
        *,
        delta: float,
        epsilon_budget: float,
        orders: Sequence[float] = LEDGER_ORDERS,
    ) -> LedgerCurve:
        """The ledger of a participation whose RDP at each of ``orders`` is ``curve``. The budget
        is taken to the nearest 1e-6 (so that a budget given as a reported epsilon admits exactly
        the participations that reach it)."""
        if not epsilon_budget > 0:
            raise ConfigError(f"the epsilon budget must be positive, got {epsilon_budget}")
        if len(curve) != len(orders):
            raise ConfigError(f"{len(curve)} RDP values for {len(orders)} orders")
        if not all(math.isfinite(v) for v in curve):
            raise ConfigError("a privacy ledger needs noise (noise_multiplier > 0)")
        return cls(
            orders=tuple(orders),
            rdp_micro=tuple(math.ceil(v * MICRO) for v in curve),
            conversion_micro=tuple(
                max(0, math.ceil(v * MICRO)) for v in conversion_terms(delta, orders)
            ),
            budget_micro=round(epsilon_budget * MICRO),
            delta=delta,
        )

    def micro_after(self, participations: int) -> int:
        """Epsilon after ``participations`` in 1e-6 units, exactly as the contract computes it."""
        if participations == 0:
            return 0
        return min(
            participations * r + c
            for r, c in zip(self.rdp_micro, self.conversion_micro, strict=True)
        )

    def epsilon_after(self, participations: int) -> float:
        """Epsilon after ``participations``, as the contract computes it (``epsilonSpent``)."""
        return self.micro_after(participations) / MICRO

    def participations_allowed(self) -> int:
        """How many participations the budget admits."""
        count = 0
        while self.micro_after(count + 1) <= self.budget_micro:
            count += 1
        return count
