"""Flower clients as they are: a ``NumPyClient`` as a participant's trainer.

:class:`NumPyClientTrainer` adapts any object with Flower's ``NumPyClient`` methods
(``get_parameters(config)``, ``fit(parameters, config)``, ``evaluate(parameters, config)``) to
:class:`~fl_client.trainer.LocalTrainer`: the client's list of arrays is flattened, in order, to
the contract's vector (:class:`ParameterLayout`) and back, and the ``num_examples`` its ``fit``
returns is the sample count the participant declares. ``flwr`` itself is not imported: a
``flwr.client.NumPyClient`` subclass satisfies the protocol, and so does a plain class with the
same methods. Pure core: no web3.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fl_client.errors import ClientStateError, ConfigError, ShapeError
from fl_client.tasks.base import FlowerConfig, FlowerScalar, NumPyClientLike
from fl_client.trainer import FitResult
from fl_client.training import TrainConfig, client_seed, one_intra_op_thread, seeded_global_rngs

__all__ = ["ClientEvaluation", "NumPyClientTrainer", "ParameterLayout", "fit_config"]

#: Metrics a client's ``fit`` may report its training loss under, in the order they are tried.
LOSS_METRICS = ("train_loss", "loss")


@dataclass(frozen=True)
class ParameterLayout:
    """The shapes and dtypes of a client's list of parameter arrays, in order.

    The contract's vector is the arrays flattened row-major and concatenated, as ``float64``;
    :meth:`unflatten` cuts it back into arrays of the same shapes and dtypes.
    """

    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[np.dtype[Any], ...]

    @classmethod
    def of(cls, arrays: Sequence[Any]) -> ParameterLayout:
        """The layout of ``arrays``.

        Raises
        ------
        ConfigError
            ``arrays`` is not a non-empty list of numeric arrays.
        """
        if isinstance(arrays, np.ndarray) or not isinstance(arrays, Sequence) or not arrays:
            raise ConfigError(
                "a NumPyClient's get_parameters must return a non-empty list of numpy arrays "
                f"(the model's parameters), got {_describe(arrays)}"
            )
        converted = [np.asarray(array) for array in arrays]
        for index, array in enumerate(converted):
            if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
                raise ConfigError(
                    f"parameter array {index} has dtype {array.dtype}; the chain holds numbers"
                )
        return cls(
            shapes=tuple(tuple(int(n) for n in array.shape) for array in converted),
            dtypes=tuple(array.dtype for array in converted),
        )

    @property
    def size(self) -> int:
        """Length of the flat vector."""
        return sum(math.prod(shape) for shape in self.shapes)

    def flatten(self, arrays: Sequence[Any]) -> np.ndarray:
        """Concatenate ``arrays`` (of this layout's shapes) into one ``float64`` vector.

        Raises
        ------
        ShapeError
            The number of arrays or a shape differs from the layout.
        """
        if isinstance(arrays, np.ndarray) or not isinstance(arrays, Sequence):
            raise ShapeError(
                f"expected a list of {len(self.shapes)} arrays, got {_describe(arrays)}"
            )
        if len(arrays) != len(self.shapes):
            raise ShapeError(f"expected {len(self.shapes)} parameter arrays, got {len(arrays)}")
        pieces = []
        for index, (array, shape) in enumerate(zip(arrays, self.shapes, strict=True)):
            values = np.asarray(array, dtype=np.float64)
            if values.shape != shape:
                raise ShapeError(
                    f"parameter array {index} has shape {values.shape}, expected {shape}"
                )
            pieces.append(values.ravel())
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float64)

    def unflatten(self, vector: np.ndarray) -> list[np.ndarray]:
        """Cut a flat vector into new arrays of this layout's shapes and dtypes.

        Raises
        ------
        ShapeError
            ``vector`` is not 1-D of length :attr:`size`.
        """
        flat = np.asarray(vector, dtype=np.float64)
        if flat.ndim != 1 or flat.shape[0] != self.size:
            raise ShapeError(f"expected a flat vector of {self.size} values, got {flat.shape}")
        arrays = []
        offset = 0
        for shape, dtype in zip(self.shapes, self.dtypes, strict=True):
            count = math.prod(shape)
            piece = flat[offset : offset + count].reshape(shape)
            if np.issubdtype(dtype, np.integer) or dtype == np.bool_:
                piece = np.rint(piece)  # an integer buffer travels as the nearest float
            arrays.append(piece.astype(dtype))
            offset += count
        return arrays


@dataclass(frozen=True)
class ClientEvaluation:
    """What a client's ``evaluate`` returned."""

    loss: float
    num_examples: int
    metrics: dict[str, FlowerScalar]


def fit_config(config: TrainConfig | None, *, round_number: int, seed: int) -> FlowerConfig:
    """The ``config`` dictionary a client's ``fit`` receives, as a Flower strategy would send it.

    ``server_round`` and ``seed`` (the client's training seed for this round: a client that
    shuffles with it trains the same weights whenever the round is replayed), and with a
    :class:`~fl_client.training.TrainConfig` also ``local_epochs``, ``batch_size`` and
    ``learning_rate``.
    """
    values: FlowerConfig = {"server_round": round_number, "seed": seed}
    if config is not None:
        values |= {
            "local_epochs": config.epochs,
            "batch_size": config.batch_size,
            "learning_rate": config.learning_rate,
        }
    return values


class NumPyClientTrainer:
    """A Flower ``NumPyClient`` as a :class:`~fl_client.trainer.LocalTrainer`.

    Parameters
    ----------
    client : NumPyClientLike
        The Flower client (``flwr.client.NumPyClient`` or any object with its methods).
    client_id : int, optional
        The client's index (it seeds the per-round training seed).
    seed : int, optional
        The run's seed.
    config : TrainConfig, optional
        Local-training settings passed on in ``fit``'s config (``local_epochs``, ...).
    extra_config : mapping, optional
        More entries for ``fit``'s config (they override the defaults).

    Notes
    -----
    Each ``fit`` runs with torch's, numpy's and Python's global generators seeded from the
    client's round seed and one torch intra-op thread, so even a client that shuffles without a
    generator (as Flower's quickstart does) gives the same weights when the round is replayed.
    """

    def __init__(
        self,
        client: NumPyClientLike,
        *,
        client_id: int = 0,
        seed: int = 0,
        config: TrainConfig | None = None,
        extra_config: Mapping[str, FlowerScalar] | None = None,
    ) -> None:
        self.client = client
        self.client_id = client_id
        self.seed = seed
        self.config = config
        self.extra_config = dict(extra_config or {})
        self.layout = ParameterLayout.of(client.get_parameters({}))
        self._num_samples: int | None = None
        self.last_metrics: dict[str, FlowerScalar] = {}

    @property
    def num_samples(self) -> int:
        """The ``num_examples`` the last ``fit`` returned (the FedAvg weight the client declares).

        Raises
        ------
        ClientStateError
            Before the first ``fit``: Flower clients report their count only when they train.
        """
        if self._num_samples is None:
            raise ClientStateError(
                "a NumPyClient declares its sample count when it trains: call fit first"
            )
        return self._num_samples

    @property
    def num_weights(self) -> int:
        """Length of the flat parameter vector (every array of ``get_parameters``)."""
        return self.layout.size

    def round_config(self, round_number: int) -> FlowerConfig:
        """The config ``fit`` receives in ``round_number``."""
        seed = client_seed(self.seed, self.client_id, round_number)
        return fit_config(self.config, round_number=round_number, seed=seed) | self.extra_config

    def fit(self, global_weights: np.ndarray, *, round_number: int) -> FitResult:
        """Hand the global weights to the client's ``fit``; return its weights, flattened.

        Raises
        ------
        ConfigError
            ``fit`` did not return ``(parameters, num_examples, metrics)`` with a positive
            ``num_examples``.
        ShapeError
            The returned arrays do not have the shapes of ``get_parameters``.
        """
        parameters = self.layout.unflatten(global_weights)
        config = self.round_config(round_number)
        with one_intra_op_thread(), seeded_global_rngs(int(config["seed"])):
            returned = self.client.fit(parameters, config)
        if not isinstance(returned, tuple | list) or len(returned) != 3:
            raise ConfigError(
                "a NumPyClient's fit must return (parameters, num_examples, metrics), got "
                f"{_describe(returned)}"
            )
        arrays, num_examples, metrics = returned
        if (
            isinstance(num_examples, bool)
            or not isinstance(num_examples, int | np.integer)
            or num_examples < 1
        ):
            raise ConfigError(
                f"a NumPyClient's fit returned num_examples {num_examples!r}; it must be a "
                "positive int (the samples trained on, the FedAvg weight the client declares)"
            )
        weights = self.layout.flatten(arrays)
        self._num_samples = int(num_examples)
        self.last_metrics = dict(metrics or {})
        return FitResult(weights, _loss(self.last_metrics))

    def evaluate(self, global_weights: np.ndarray, *, round_number: int = 0) -> ClientEvaluation:
        """The client's own evaluation of ``global_weights`` (on its local validation data).

        Raises
        ------
        ConfigError
            ``evaluate`` did not return ``(loss, num_examples, metrics)``.
        """
        parameters = self.layout.unflatten(global_weights)
        returned = self.client.evaluate(parameters, {"server_round": round_number})
        if not isinstance(returned, tuple | list) or len(returned) != 3:
            raise ConfigError(
                "a NumPyClient's evaluate must return (loss, num_examples, metrics), got "
                f"{_describe(returned)}"
            )
        loss, num_examples, metrics = returned
        return ClientEvaluation(float(loss), int(num_examples), dict(metrics or {}))


def _loss(metrics: Mapping[str, FlowerScalar]) -> float:
    for key in LOSS_METRICS:
        value = metrics.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return math.nan


def _describe(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:80]}{'...' if len(text) > 80 else ''}"
