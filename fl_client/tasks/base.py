"""The task interface: what a user writes to federate their own model on their own data.

A *task* mirrors the ``task.py`` of a Flower app: it builds the model, loads one client's data,
trains a model on that data and tests a model on the held-out set. The chain never looks inside
the data; it only moves the model's parameters (``model.parameters()`` in order, flattened) to and
from the contract. Pure core: no web3.

A task is any object with these five functions, most simply a module::

    def build_model(seed: int) -> torch.nn.Module
    def load_data(client: int, spec: DataSpec) -> TrainData
    def load_test_data(spec: DataSpec) -> TestData
    def train(model: torch.nn.Module, data: TrainData, config: TrainConfig, seed: int)
        -> tuple[float, int]                      # (loss, number of training samples)
    def test(model: torch.nn.Module, data: TestData) -> tuple[float, float]  # (loss, accuracy)

and optionally ``client_fn(client: int, spec: DataSpec, config: TrainConfig) -> NumPyClient``,
Flower's client factory: when a task defines it, participants train through the Flower client
(:class:`~fl_client.tasks.flower.NumPyClientTrainer`) instead of ``train``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeAlias

import numpy as np
import torch

from fl_client.errors import ConfigError
from fl_client.training import TrainConfig

__all__ = [
    "OPTIONAL_PIECES",
    "REQUIRED_PIECES",
    "ClientFactory",
    "DataSpec",
    "FlowerConfig",
    "NumPyClientLike",
    "Piece",
    "Task",
]

#: The values a Flower ``config`` dictionary may hold (Flower's ``Scalar``).
FlowerScalar: TypeAlias = bool | bytes | float | int | str
FlowerConfig: TypeAlias = dict[str, FlowerScalar]


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


@dataclass(frozen=True)
class DataSpec:
    """How the data is split among the clients: what a task's loaders are told.

    Every client process of a deployment gets the same spec (the deployment record fixes it), so
    every process computes the same split.

    Attributes
    ----------
    num_clients : int
        Number of clients the training data is split among, at least 1.
    partition : str
        ``"iid"`` or ``"dirichlet"`` (label skew); a task may support others.
    dirichlet_alpha : float
        Concentration of the Dirichlet split, strictly positive.
    seed : int
        Non-negative seed of the split (and of the train/test split).
    test_fraction : float
        Share of the samples held out for testing, strictly between 0 and 1.
    """

    num_clients: int
    partition: str = "iid"
    dirichlet_alpha: float = 0.5
    seed: int = 0
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        """Validate the fields.

        Raises
        ------
        ConfigError
            If a field is out of range.
        """
        if not _is_int(self.num_clients) or self.num_clients < 1:
            raise ConfigError(f"num_clients must be an integer >= 1, got {self.num_clients!r}")
        if not isinstance(self.partition, str) or not self.partition:
            raise ConfigError(f"partition must be a scheme name, got {self.partition!r}")
        if not _is_number(self.dirichlet_alpha) or self.dirichlet_alpha <= 0:
            raise ConfigError(f"dirichlet_alpha must be a number > 0, got {self.dirichlet_alpha!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {self.seed!r}")
        if not _is_number(self.test_fraction) or not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(
                f"test_fraction must lie strictly between 0 and 1, got {self.test_fraction!r}"
            )


class Task(Protocol):
    """What a task defines (Flower's ``task.py``: model, data, train, test).

    A module with these functions satisfies the protocol; the chain passes the arguments by
    position, so their names are yours (``train(net, trainloader, config, seed)`` is fine).
    ``TrainData`` and ``TestData`` are whatever the task's loaders return (tensors, a
    ``torch.utils.data.Dataset``, a ``DataLoader``, ...): only the task's own ``train`` and
    ``test`` read them.
    """

    def build_model(self, seed: int, /) -> torch.nn.Module:
        """A fresh model, its initial weights drawn from ``seed``.

        The chain federates ``model.parameters()`` in order; buffers stay with each client.
        """
        ...

    def load_data(self, client: int, spec: DataSpec, /) -> Any:
        """Client ``client``'s training data (``0 <= client < spec.num_clients``)."""
        ...

    def load_test_data(self, spec: DataSpec, /) -> Any:
        """The held-out set every global model is tested on."""
        ...

    def train(
        self, model: torch.nn.Module, data: Any, config: TrainConfig, seed: int, /
    ) -> tuple[float, int]:
        """Train ``model`` in place for ``config.epochs`` epochs; return (loss, samples).

        ``seed`` differs per client and round: use it for the minibatch order, so the same round
        retrained gives the same weights. The sample count is the FedAvg weight the client
        declares.
        """
        ...

    def test(self, model: torch.nn.Module, data: Any, /) -> tuple[float, float]:
        """Return (loss, accuracy in [0, 1]) of ``model`` on the held-out set."""
        ...


class NumPyClientLike(Protocol):
    """Flower's ``NumPyClient`` as the chain uses it (``flwr.client.NumPyClient`` satisfies it)."""

    def get_parameters(self, config: FlowerConfig) -> list[np.ndarray]:
        """The local model's parameters as a list of arrays."""
        ...

    def fit(
        self, parameters: list[np.ndarray], config: FlowerConfig
    ) -> tuple[list[np.ndarray], int, dict[str, FlowerScalar]]:
        """Train from ``parameters``; return (new parameters, number of examples, metrics)."""
        ...

    def evaluate(
        self, parameters: list[np.ndarray], config: FlowerConfig
    ) -> tuple[float, int, dict[str, FlowerScalar]]:
        """Evaluate ``parameters`` locally; return (loss, number of examples, metrics)."""
        ...


class ClientFactory(Protocol):
    """A task's optional ``client_fn``: the Flower client of one client."""

    def __call__(self, client: int, spec: DataSpec, config: TrainConfig, /) -> NumPyClientLike:
        """Build client ``client``'s ``NumPyClient``."""
        ...


@dataclass(frozen=True)
class Piece:
    """One function of the task interface, as the loader checks it and its errors name it."""

    name: str
    arguments: tuple[Any, ...]  # placeholders of the positional arguments the chain passes
    parameters: tuple[str, ...]  # what those arguments are
    signature: str
    role: str

    def describe(self) -> str:
        """``def name(...) -> ...: role``, as an error message shows it."""
        return f"`def {self.signature}` ({self.role})"


# Placeholders with which the loader checks that each function accepts the call the chain makes.
_SPEC: Final = DataSpec(num_clients=1)
_CONFIG: Final = TrainConfig()

REQUIRED_PIECES: Final[tuple[Piece, ...]] = (
    Piece(
        "build_model",
        (0,),
        ("seed",),
        "build_model(seed: int) -> torch.nn.Module",
        "the model, initial weights drawn from the seed",
    ),
    Piece(
        "load_data",
        (0, _SPEC),
        ("client", "spec"),
        "load_data(client: int, spec: DataSpec) -> TrainData",
        "one client's training data",
    ),
    Piece(
        "load_test_data",
        (_SPEC,),
        ("spec",),
        "load_test_data(spec: DataSpec) -> TestData",
        "the held-out set the global model is tested on",
    ),
    Piece(
        "train",
        (None, None, _CONFIG, 0),
        ("model", "data", "config", "seed"),
        "train(model, data: TrainData, config: TrainConfig, seed: int) -> tuple[float, int]",
        "trains in place, returns (loss, number of samples)",
    ),
    Piece(
        "test",
        (None, None),
        ("model", "data"),
        "test(model, data: TestData) -> tuple[float, float]",
        "returns (loss, accuracy) on the held-out set",
    ),
)

OPTIONAL_PIECES: Final[tuple[Piece, ...]] = (
    Piece(
        "client_fn",
        (0, _SPEC, _CONFIG),
        ("client", "spec", "config"),
        "client_fn(client: int, spec: DataSpec, config: TrainConfig) -> NumPyClient",
        "optional: a Flower NumPyClient that trains instead of `train`",
    ),
)
