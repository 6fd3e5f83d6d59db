"""A client's local training, as the participant sees it: global weights in, trained weights out.

Pure core (no web3). :class:`ShardTrainer` trains the built-in models on a data shard;
:class:`fl_client.tasks.TaskTrainer` trains a user's task and
:class:`fl_client.tasks.NumPyClientTrainer` a Flower ``NumPyClient`` as it is. Any object with the
same three members (:class:`LocalTrainer`) can stand in for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from fl_client.data import Shard
from fl_client.model import build_model, get_flat_parameters, set_flat_parameters
from fl_client.training import TrainConfig, client_seed, train_local


@dataclass(frozen=True)
class FitResult:
    """What one round of local training produced."""

    weights: np.ndarray  # flat float64 parameters
    loss: float


class LocalTrainer(Protocol):
    """Trains one client's model from the global weights."""

    @property
    def num_samples(self) -> int:
        """Training samples behind an update (the FedAvg weight it declares)."""
        ...

    @property
    def num_weights(self) -> int:
        """Length of the flat parameter vector."""
        ...

    def fit(self, global_weights: np.ndarray, *, round_number: int) -> FitResult:
        """Train from ``global_weights`` for round ``round_number``; deterministic per round."""
        ...


class ShardTrainer:
    """The built-in trainer: a softmax regression (or MLP) trained with SGD on one shard."""

    def __init__(
        self,
        *,
        shard: Shard,
        num_features: int,
        num_classes: int,
        config: TrainConfig,
        seed: int,
        client_id: int,
        hidden: Sequence[int] = (),
    ) -> None:
        self.shard = shard
        self.config = config
        self.seed = seed
        self.client_id = client_id
        self._model = build_model(num_features, num_classes, seed=seed, hidden=hidden)

    @property
    def num_samples(self) -> int:
        """Samples in the shard."""
        return self.shard.num_samples

    @property
    def num_weights(self) -> int:
        """Parameters of the model."""
        return int(get_flat_parameters(self._model).size)

    def fit(self, global_weights: np.ndarray, *, round_number: int) -> FitResult:
        """Load ``global_weights``, train ``config.epochs`` epochs, return the new weights."""
        set_flat_parameters(self._model, global_weights)
        result = train_local(
            self._model,
            self.shard,
            self.config,
            seed=client_seed(self.seed, self.client_id, round_number),
        )
        return FitResult(get_flat_parameters(self._model), result.loss)
