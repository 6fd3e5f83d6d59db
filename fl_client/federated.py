"""Federated learning without a chain, and centralized training: the reference runs.

:func:`run_task_federated` is FedAvg/FedSGD of a task (:mod:`fl_client.tasks`) with an in-process
server that averages the clients' parameter vectors in ``float64``; :func:`run_plain_federated`
runs it for the built-in model on shards the caller made. The chain-based run replaces that
server with a contract and is compared against this one, so every step here is deterministic
given the seed: the initial model, the clients picked each round
(:func:`~fl_client.training.select_clients`), and each client's minibatch order
(:func:`~fl_client.training.client_seed`).
:func:`run_centralized` trains a single model on all the training data, the usual upper bound.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

import numpy as np

from fl_client.aggregation import trim_cut
from fl_client.data import Dataset, Shard
from fl_client.errors import ConfigError, ShapeError
from fl_client.model import build_model, get_flat_parameters, set_flat_parameters
from fl_client.tasks import DataSpec, LoadedTask, ShardsTask, make_trainer
from fl_client.trainer import LocalTrainer
from fl_client.training import (
    Evaluation,
    TrainConfig,
    TrainResult,
    evaluate,
    select_clients,
    train_local,
)

__all__ = [
    "AGGREGATIONS",
    "FederatedResult",
    "RoundMetrics",
    "average_float",
    "local_update",
    "run_centralized",
    "run_plain_federated",
    "run_task_federated",
]

logger = logging.getLogger(__name__)

Aggregation = Literal["mean", "weighted"]
AGGREGATIONS: Final[tuple[str, ...]] = get_args(Aggregation)


@dataclass(frozen=True)
class RoundMetrics:
    """Test metrics of the global model after one round.

    Attributes
    ----------
    round_number : int
        1-based round number.
    accuracy : float
        Test accuracy in ``[0, 1]``.
    loss : float
        Mean test cross-entropy.
    participants : tuple of int
        Ids of the clients whose updates were averaged, ascending.
    """

    round_number: int
    accuracy: float
    loss: float
    participants: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class FederatedResult:
    """Outcome of :func:`run_plain_federated`.

    Attributes
    ----------
    rounds : tuple of RoundMetrics
        One entry per round, in order.
    final_parameters : numpy.ndarray
        The global model's flat ``float64`` parameters after the last round (read-only).
    """

    rounds: tuple[RoundMetrics, ...]
    final_parameters: np.ndarray


def average_float(
    vectors: Sequence[np.ndarray], weights: Sequence[float] | None = None
) -> np.ndarray:
    """Average parameter vectors in ``float64``.

    Parameters
    ----------
    vectors : sequence of numpy.ndarray
        1-D vectors of one common length.
    weights : sequence of float, optional
        One non-negative weight per vector (FedAvg uses the clients' sample counts), not all
        zero. Without weights the plain mean is returned.

    Returns
    -------
    numpy.ndarray
        A new 1-D ``float64`` vector.

    Raises
    ------
    ValueError
        If ``vectors`` is empty, or a weight is negative or non-finite, or all weights are zero.
    ShapeError
        If a vector is not 1-D, lengths differ, or the number of weights differs from the
        number of vectors.
    """
    if len(vectors) == 0:
        raise ValueError("cannot average an empty sequence of vectors")
    arrays = [np.asarray(vector, dtype=np.float64) for vector in vectors]
    for position, array in enumerate(arrays):
        if array.ndim != 1:
            raise ShapeError(f"vectors must be 1-D; vector {position} has shape {array.shape}")
        if array.shape != arrays[0].shape:
            raise ShapeError(
                f"vector {position} has length {array.shape[0]}; "
                f"vector 0 has length {arrays[0].shape[0]}"
            )
    stacked = np.stack(arrays)
    if weights is None:
        return np.asarray(stacked.mean(axis=0), dtype=np.float64)
    weight_array = np.asarray(weights, dtype=np.float64)
    if weight_array.ndim != 1 or weight_array.shape[0] != len(arrays):
        raise ShapeError(f"got {weight_array.size} weights for {len(arrays)} vectors")
    if not np.isfinite(weight_array).all() or (weight_array < 0).any():
        raise ValueError(f"weights must be finite and non-negative, got {weight_array.tolist()}")
    total = float(weight_array.sum())
    if total <= 0:
        raise ValueError("weights must not all be zero")
    # Normalising first makes a single vector, or equal weights, reproduce the plain mean.
    normalised = weight_array / total
    return np.asarray((normalised[:, None] * stacked).sum(axis=0), dtype=np.float64)


def local_update(
    global_parameters: np.ndarray,
    shard: Shard,
    config: TrainConfig,
    *,
    num_features: int,
    num_classes: int,
    seed: int,
    hidden: Sequence[int] = (),
) -> tuple[np.ndarray, TrainResult]:
    """Do one client's work in a round: load the global model, train it, return it flat.

    This is exactly the client step of :func:`run_plain_federated`; the chain-based client can
    call it to stay bit-identical with the reference.

    Parameters
    ----------
    global_parameters : numpy.ndarray
        Flat parameters of the current global model.
    shard : Shard
        The client's data.
    config : TrainConfig
        Local training hyper-parameters.
    num_features, num_classes : int
        Model sizes.
    seed : int
        Training seed, normally ``client_seed(run_seed, client_id, round_number)``.

    Returns
    -------
    tuple of (numpy.ndarray, TrainResult)
        The trained flat parameters and the training summary.
    """
    model = build_model(num_features, num_classes, seed=0, hidden=hidden)
    set_flat_parameters(model, global_parameters)
    result = train_local(model, shard, config, seed=seed)
    return get_flat_parameters(model), result


def run_plain_federated(
    dataset: Dataset,
    shards: Sequence[Shard],
    *,
    rounds: int,
    config: TrainConfig,
    seed: int,
    aggregation: str = "mean",
    fraction: float = 1.0,
    initial: np.ndarray | None = None,
    hidden: Sequence[int] = (),
) -> FederatedResult:
    """Run federated learning of the built-in model on given shards, with an in-process server.

    The built-in model on ``dataset``'s sizes, trained on ``shards`` and tested on its test split:
    :func:`run_task_federated` with a :class:`~fl_client.tasks.ShardsTask`.

    Parameters
    ----------
    dataset : Dataset
        Supplies the model sizes and the test split evaluated after every round.
    shards : sequence of Shard
        One shard per client; client ``i`` owns ``shards[i]``.
    rounds : int
        Number of rounds, at least 1.
    config : TrainConfig
        Local training hyper-parameters (FedAvg or FedSGD).
    seed : int
        Non-negative run seed: initial model, client selection and client training seeds.
    aggregation : str, optional
        ``"mean"`` (plain mean of the updates) or ``"weighted"`` (weighted by the clients'
        sample counts, as in FedAvg).
    fraction : float, optional
        Share of clients taking part in each round, in ``(0, 1]``.
    initial : numpy.ndarray, optional
        Flat initial parameters; by default ``build_model(..., seed=seed)``'s.
    hidden : sequence of int, optional
        Hidden layer widths of the model (none: softmax regression).

    Returns
    -------
    FederatedResult
        Per-round test metrics and the final parameters.

    Raises
    ------
    ConfigError
        If ``rounds``, ``aggregation``, ``fraction`` or ``seed`` is invalid or there are no
        shards.
    ShapeError
        If ``initial`` has the wrong length or a shard has the wrong number of features.
    NonFiniteWeightError
        If ``initial`` or an averaged model holds a non-finite value (training diverged).
    """
    _check_rounds(rounds, aggregation)
    if len(shards) == 0:
        raise ConfigError("need at least one shard")
    for client, shard in enumerate(shards):
        if shard.x.shape[1] != dataset.num_features:
            raise ShapeError(
                f"shard {client} has {shard.x.shape[1]} features; "
                f"dataset {dataset.name!r} has {dataset.num_features}"
            )
    task = LoadedTask(
        reference=dataset.name, name=dataset.name, source=ShardsTask(dataset, shards, hidden=hidden)
    )
    return run_task_federated(
        task,
        DataSpec(num_clients=len(shards), seed=seed),
        rounds=rounds,
        config=config,
        seed=seed,
        aggregation=aggregation,
        fraction=fraction,
        initial=initial,
    )


def trimmed_float(vectors: Sequence[np.ndarray], trim_each: int) -> np.ndarray:
    """The coordinate-wise trimmed mean in ``float64``: per entry, ``trim_each`` values left out
    at each end (at most ``(n - 1) // 2`` of ``n``), the rest averaged; 0 is the plain mean."""
    if len(vectors) == 0:
        raise ValueError("cannot average an empty sequence of vectors")
    cut = trim_cut(trim_each, len(vectors))
    ordered = np.sort(np.stack([np.asarray(v, dtype=np.float64) for v in vectors]), axis=0)
    return np.asarray(ordered[cut : len(vectors) - cut].mean(axis=0), dtype=np.float64)


def run_task_federated(
    task: LoadedTask,
    spec: DataSpec,
    *,
    rounds: int,
    config: TrainConfig,
    seed: int,
    aggregation: str = "mean",
    fraction: float = 1.0,
    initial: np.ndarray | None = None,
    test_data: Any = None,
    trim_each: int = 0,
) -> FederatedResult:
    """Run federated learning of a task with an in-process averaging server (float64 FedAvg).

    Each client trains through :func:`~fl_client.tasks.make_trainer`, exactly as a chain
    participant does; the server averages the flat parameter vectors and tests the global model
    with the task's ``test`` after every round.

    Parameters
    ----------
    task : LoadedTask
        The task: model, data, training, test.
    spec : DataSpec
        The data split (``spec.num_clients`` clients).
    rounds : int
        Number of rounds, at least 1.
    config : TrainConfig
        Local training settings handed to the task.
    seed : int
        Non-negative run seed: initial model, client selection and client training seeds.
    aggregation : str, optional
        ``"mean"`` or ``"weighted"`` (by the sample counts the clients declare).
    fraction : float, optional
        Share of clients taking part in each round, in ``(0, 1]``.
    initial : numpy.ndarray, optional
        Flat initial parameters; by default those of ``task``'s model built with ``seed``.
    test_data : object, optional
        The held-out set when the caller has it already (else ``task.load_test_data(spec)``).
    trim_each : int, optional
        ``"mean"`` only: the coordinate-wise trimmed mean, ``trim_each`` values left out at each
        end of every weight (:func:`trimmed_float`); 0, the plain mean.

    Returns
    -------
    FederatedResult
        Per-round test metrics and the final parameters.

    Raises
    ------
    ConfigError
        If ``rounds``, ``aggregation``, ``fraction`` or ``seed`` is invalid.
    ShapeError
        If ``initial`` has the wrong length.
    NonFiniteWeightError
        If ``initial`` or an averaged model holds a non-finite value (training diverged).
    """
    _check_rounds(rounds, aggregation)
    model = task.model(seed=seed)
    if initial is not None:
        set_flat_parameters(model, initial)
    global_parameters = get_flat_parameters(model)
    held_out = task.test_data(spec) if test_data is None else test_data

    trainers: dict[int, LocalTrainer] = {}
    history: list[RoundMetrics] = []
    for round_number in range(1, rounds + 1):
        participants = select_clients(
            spec.num_clients, fraction, round_number=round_number, seed=seed
        )
        updates: list[np.ndarray] = []
        samples: list[float] = []
        for client in participants:
            if client not in trainers:
                trainers[client] = make_trainer(
                    task, client=client, spec=spec, config=config, seed=seed
                )
            trainer = trainers[client]
            updates.append(trainer.fit(global_parameters, round_number=round_number).weights)
            samples.append(float(trainer.num_samples))
        if trim_each and aggregation == "mean":
            global_parameters = trimmed_float(updates, trim_each)
        else:
            global_parameters = average_float(
                updates, samples if aggregation == "weighted" else None
            )
        set_flat_parameters(model, global_parameters)
        evaluation = task.evaluate(model, held_out)
        history.append(
            RoundMetrics(
                round_number=round_number,
                accuracy=evaluation.accuracy,
                loss=evaluation.loss,
                participants=tuple(participants),
            )
        )
        logger.info(
            "round %d/%d: %d clients, test accuracy %.4f, loss %.4f",
            round_number,
            rounds,
            len(participants),
            evaluation.accuracy,
            evaluation.loss,
        )

    global_parameters.setflags(write=False)
    return FederatedResult(rounds=tuple(history), final_parameters=global_parameters)


def _check_rounds(rounds: int, aggregation: str) -> None:
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ConfigError(f"rounds must be an integer >= 1, got {rounds!r}")
    if aggregation not in AGGREGATIONS:
        raise ConfigError(
            f"unknown aggregation {aggregation!r}; expected one of {', '.join(AGGREGATIONS)}"
        )


def run_centralized(dataset: Dataset, *, epochs: int, config: TrainConfig, seed: int) -> Evaluation:
    """Train one model on the whole training split and evaluate it on the test split.

    Parameters
    ----------
    dataset : Dataset
        The data.
    epochs : int
        Passes over the training data, at least 1 (overrides ``config.epochs``).
    config : TrainConfig
        Supplies the batch size and learning rate; minibatch SGD is used whatever its
        ``algorithm``.
    seed : int
        Seed of the initial model and of the minibatch order.

    Returns
    -------
    Evaluation
        Test accuracy and loss of the trained model.

    Raises
    ------
    ConfigError
        If ``epochs`` is below 1.
    """
    centralized = dataclasses.replace(config, epochs=epochs, algorithm="fedavg")
    model = build_model(dataset.num_features, dataset.num_classes, seed=seed)
    result = train_local(model, Shard(x=dataset.x_train, y=dataset.y_train), centralized, seed=seed)
    evaluation = evaluate(model, dataset.x_test, dataset.y_test)
    if not math.isfinite(result.loss):
        logger.warning("centralized training diverged (loss %s)", result.loss)
    logger.info(
        "centralized: %d epochs, test accuracy %.4f, loss %.4f",
        epochs,
        evaluation.accuracy,
        evaluation.loss,
    )
    return evaluation
