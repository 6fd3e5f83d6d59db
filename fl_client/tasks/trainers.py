"""A task as a participant's trainer.

:class:`TaskTrainer` adapts a :class:`~fl_client.tasks.loader.LoadedTask` to
:class:`~fl_client.trainer.LocalTrainer`: it loads one client's data once, keeps that client's
model, and each round loads the global weights into it and trains with the task's ``train``.
:func:`make_trainer` picks it, or a :class:`~fl_client.tasks.flower.NumPyClientTrainer` when the
task defines a Flower ``client_fn``. The chain participants and the plain-PyTorch reference both
train through :func:`make_trainer`, so the two runs execute the same code. Pure core: no web3.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fl_client.errors import ClientStateError
from fl_client.model import get_flat_parameters, set_flat_parameters
from fl_client.tasks.base import DataSpec
from fl_client.tasks.flower import NumPyClientTrainer
from fl_client.tasks.loader import LoadedTask, TaskError
from fl_client.trainer import FitResult, LocalTrainer
from fl_client.training import TrainConfig, client_seed

__all__ = ["TaskTrainer", "make_trainer"]


class TaskTrainer:
    """One client of a task: its data, its model, its training.

    Parameters
    ----------
    task : LoadedTask
        The task.
    client : int
        The client's index (its data and its training seeds).
    spec : DataSpec
        The data split.
    config : TrainConfig
        Local-training settings handed to the task's ``train``.
    seed : int
        The run's seed: the model is built with it, and each round trains with
        ``client_seed(seed, client, round_number)``.
    data : object, optional
        The client's data when the caller already has it (else ``task.load_data``).
    """

    def __init__(
        self,
        task: LoadedTask,
        *,
        client: int,
        spec: DataSpec,
        config: TrainConfig,
        seed: int,
        data: Any = None,
    ) -> None:
        self.task = task
        self.client = client
        self.config = config
        self.seed = seed
        self.data = task.client_data(client, spec) if data is None else data
        self.model = task.model(seed=seed)
        self._num_samples: int | None = None

    @property
    def num_samples(self) -> int:
        """The sample count the task's ``train`` returned last (the FedAvg weight declared).

        Raises
        ------
        ClientStateError
            Before the first ``fit``.
        """
        if self._num_samples is None:
            raise ClientStateError("a task declares its sample count when it trains: fit first")
        return self._num_samples

    @property
    def num_weights(self) -> int:
        """Parameters of the task's model."""
        return int(get_flat_parameters(self.model).size)

    def fit(self, global_weights: np.ndarray, *, round_number: int) -> FitResult:
        """Load ``global_weights``, train with the task's ``train``, return the new weights."""
        set_flat_parameters(self.model, global_weights)
        fitted = self.task.fit(
            self.model,
            self.data,
            self.config,
            seed=client_seed(self.seed, self.client, round_number),
        )
        self._num_samples = fitted.num_samples
        return FitResult(get_flat_parameters(self.model), fitted.loss)


def make_trainer(
    task: LoadedTask, *, client: int, spec: DataSpec, config: TrainConfig, seed: int
) -> LocalTrainer:
    """The trainer of client ``client``: the task's Flower client if it has one, else its ``train``.

    Raises
    ------
    TaskError
        The Flower client's parameter arrays do not have the shapes of the task model's
        parameters (the vector the chain holds and the reference tests).
    """
    if task.client_fn is None:
        return TaskTrainer(task, client=client, spec=spec, config=config, seed=seed)
    with_flower = NumPyClientTrainer(
        task.client_fn(client, spec, config), client_id=client, seed=seed, config=config
    )
    expected = tuple(tuple(p.shape) for p in task.model(seed=seed).parameters())
    if with_flower.layout.shapes != expected:
        raise TaskError(
            f"task {task.reference!r}: client_fn's NumPyClient.get_parameters returns arrays "
            f"of shapes {list(with_flower.layout.shapes)}, but build_model's parameters are "
            f"{list(expected)}; the chain holds the model's parameters in order (return "
            "[p.detach().cpu().numpy() for p in net.parameters()]; a state_dict with buffers, "
            "such as BatchNorm statistics, does not fit)"
        )
    return with_flower
