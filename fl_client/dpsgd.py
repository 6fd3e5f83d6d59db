"""Sample-level differential privacy: a client trains with DP-SGD (Opacus).

Each step clips every example's gradient to ``max_grad_norm`` and adds Gaussian noise of standard
deviation ``noise_multiplier * max_grad_norm`` to their sum (Abadi et al. 2016), with Poisson
sampling of the minibatches at rate ``batch_size / samples``. One participation (``epochs`` passes,
``ceil(samples / batch_size)`` steps each) is one subsampled-Gaussian composition, accounted with
Opacus's RDP analysis; participations compose additively in RDP (:func:`participation_curve`).
This protects each training example of a client, whatever the others see of its updates.

Pure core: no web3. Deterministic given the seed (the noise and the sampling come from it), so
the seed must be the client's secret: whoever can recompute the noise can remove it.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fl_client.data import Shard
from fl_client.errors import ConfigError, DataError
from fl_client.model import get_flat_parameters, set_flat_parameters
from fl_client.privacy import LEDGER_ORDERS, LedgerCurve, epsilon_of_rdp, rdp_curve
from fl_client.trainer import FitResult
from fl_client.training import TrainConfig, one_intra_op_thread

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DPSGDConfig:
    """DP-SGD's settings: per-example clipping norm, noise multiplier and delta."""

    max_grad_norm: float
    noise_multiplier: float
    delta: float = 1e-5

    def __post_init__(self) -> None:
        if not self.max_grad_norm > 0:
            raise ConfigError(
                f"privacy.clip_norm (per example) must be positive, got {self.max_grad_norm}"
            )
        if not self.noise_multiplier > 0:
            raise ConfigError(
                f"privacy.noise_multiplier must be positive for DP-SGD, got {self.noise_multiplier}"
            )
        if not 0 < self.delta < 1:
            raise ConfigError(f"privacy.delta must be in (0, 1), got {self.delta}")


@dataclass(frozen=True)
class Participation:
    """What one participation of DP-SGD is, for the accountant: its steps and sampling rate."""

    sampling_rate: float
    steps: int

    @classmethod
    def of(cls, samples: int, config: TrainConfig) -> Participation:
        """A participation of ``config.epochs`` epochs on ``samples`` examples."""
        if samples < 1:
            raise DataError("cannot train on an empty shard")
        batch = samples if config.batch_size == 0 else min(config.batch_size, samples)
        return cls(sampling_rate=batch / samples, steps=config.epochs * math.ceil(samples / batch))


def participation_curve(
    participation: Participation, dp: DPSGDConfig, orders: Sequence[float] = LEDGER_ORDERS
) -> list[float]:
    """One participation's RDP at each order."""
    return rdp_curve(
        dp.noise_multiplier,
        sampling_rate=participation.sampling_rate,
        steps=participation.steps,
        orders=orders,
    )


def epsilon_after(participations: int, participation: Participation, dp: DPSGDConfig) -> float:
    """A client's epsilon at ``dp.delta`` after ``participations`` (RDP adds up)."""
    if participations == 0:
        return 0.0
    curve = participation_curve(participation, dp)
    return epsilon_of_rdp([participations * v for v in curve], dp.delta)


def ledger_curve(
    shard_sizes: Sequence[int], config: TrainConfig, dp: DPSGDConfig, *, epsilon_budget: float
) -> LedgerCurve:
    """The curve the contract charges per participation: at each order, the largest RDP of any
    client's participation, so that no client is charged less than it spends. (The smallest
    shard samples at the largest rate, but a larger shard may take more steps, and which one
    spends more depends on the order.)"""
    participations = {Participation.of(size, config) for size in shard_sizes}
    if not participations:
        raise DataError("a ledger needs at least one client's data size")
    curves = [participation_curve(p, dp) for p in sorted(participations, key=repr)]
    worst = [max(values) for values in zip(*curves, strict=True)]
    return LedgerCurve.of_rdp(worst, delta=dp.delta, epsilon_budget=epsilon_budget)


def as_dataset(data: Any) -> torch.utils.data.Dataset[Any]:
    """A task's client data as a torch dataset: a built-in shard, or a dataset as it is.

    Raises
    ------
    ConfigError
        Neither: DP-SGD needs the examples one by one (use update-level noise for such a task).
    """
    if isinstance(data, Shard):
        return torch.utils.data.TensorDataset(data.x, data.y)
    if isinstance(data, torch.utils.data.Dataset) and hasattr(data, "__len__"):
        return data
    raise ConfigError(
        f"sample-level DP trains on the task's examples one by one: its data must be a torch "
        f"Dataset (or a built-in shard), got {type(data).__name__}; use privacy.level: update"
    )


def train_dp_sgd(
    model: torch.nn.Module,
    dataset: torch.utils.data.Dataset[Any],
    config: TrainConfig,
    dp: DPSGDConfig,
    *,
    seed: int,
) -> float:
    """Train ``model`` in place with DP-SGD (cross-entropy) for ``config.epochs`` epochs; the last
    epoch's mean loss."""
    from opacus import PrivacyEngine

    samples = len(dataset)  # type: ignore[arg-type]
    participation = Participation.of(samples, config)
    batch = max(1, round(participation.sampling_rate * samples))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.learning_rate)
    with torch.random.fork_rng(), one_intra_op_thread(), warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # Opacus warns that secure_mode is off: the seed is the secret
        torch.manual_seed(seed)
        engine = PrivacyEngine(accountant="rdp")
        private, optimizer, private_loader = engine.make_private(
            module=model,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=dp.noise_multiplier,
            max_grad_norm=dp.max_grad_norm,
            poisson_sampling=True,
            noise_generator=torch.Generator().manual_seed(seed),
        )
        private.train()
        loss_fn = torch.nn.CrossEntropyLoss()
        loss = math.nan
        for _ in range(config.epochs):
            total, seen = 0.0, 0
            for x, y in private_loader:
                optimizer.zero_grad()
                if len(y) == 0:  # Poisson sampling can draw an empty batch: still a step
                    optimizer.step()
                    continue
                batch_loss = loss_fn(private(x), y)
                batch_loss.backward()
                optimizer.step()
                total += float(batch_loss) * len(y)
                seen += len(y)
            loss = total / max(seen, 1)
        private._close()
    return loss


class DPSGDTrainer:
    """A :class:`~fl_client.trainer.LocalTrainer` that trains a task's model with DP-SGD on one
    client's data; the noise and the sampling come from ``noise_seed`` (derive it from the
    client's secret) and the round."""

    def __init__(
        self,
        *,
        model: torch.nn.Module,
        data: Any,
        config: TrainConfig,
        dp: DPSGDConfig,
        noise_seed: int,
    ) -> None:
        self.dataset = as_dataset(data)
        self.config = config
        self.dp = dp
        self.noise_seed = noise_seed
        self.participation = Participation.of(len(self.dataset), config)  # type: ignore[arg-type]
        self._model = model

    @property
    def num_samples(self) -> int:
        """Examples of the client."""
        return len(self.dataset)  # type: ignore[arg-type]

    @property
    def num_weights(self) -> int:
        """Parameters of the model."""
        return int(get_flat_parameters(self._model).size)

    def fit(self, global_weights: np.ndarray, *, round_number: int) -> FitResult:
        """Load ``global_weights`` and train one participation of DP-SGD."""
        set_flat_parameters(self._model, global_weights)
        seed = (self.noise_seed + 1_000_003 * round_number) % 2**63
        loss = train_dp_sgd(self._model, self.dataset, self.config, self.dp, seed=seed)
        return FitResult(get_flat_parameters(self._model), loss)
