"""Bring your own model and data: the task interface (Flower's ``task.py``) and its adapters.

- :class:`Task`: what a task module defines (``build_model``, ``load_data``, ``load_test_data``,
  ``train``, ``test``; optionally ``client_fn``, a Flower ``NumPyClient`` factory);
  :class:`DataSpec`: how the data is split, as every loader is told.
- :func:`load_task`: a built-in task (``digits``, ``mnist5k``), a module (``mypackage.task``) or a
  file (``path/to/task.py``), every piece checked (:class:`TaskError` names what is missing).
- :class:`TaskTrainer`, :class:`NumPyClientTrainer`, :func:`make_trainer`: a task, or a Flower
  client as it is, as a participant's :class:`~fl_client.trainer.LocalTrainer`.
- :func:`client_indices`: the project's seeded IID or Dirichlet split, for any task's loader.

Pure core: nothing here imports web3.
"""

from fl_client.tasks.base import (
    ClientFactory,
    DataSpec,
    FlowerConfig,
    NumPyClientLike,
    Task,
)
from fl_client.tasks.builtin import ClassifierTask, ShardsTask, client_indices
from fl_client.tasks.flower import ClientEvaluation, NumPyClientTrainer, ParameterLayout, fit_config
from fl_client.tasks.loader import (
    BUILTIN_TASKS,
    Fitted,
    LoadedTask,
    TaskError,
    as_task,
    load_task,
    validate_task,
)
from fl_client.tasks.trainers import TaskTrainer, make_trainer

__all__ = [
    "BUILTIN_TASKS",
    "ClassifierTask",
    "ClientEvaluation",
    "ClientFactory",
    "DataSpec",
    "Fitted",
    "FlowerConfig",
    "LoadedTask",
    "NumPyClientLike",
    "NumPyClientTrainer",
    "ParameterLayout",
    "ShardsTask",
    "Task",
    "TaskError",
    "TaskTrainer",
    "as_task",
    "client_indices",
    "fit_config",
    "load_task",
    "make_trainer",
    "validate_task",
]
