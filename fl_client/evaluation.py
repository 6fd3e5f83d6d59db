"""Test accuracy of a global model on the deployment's held-out set (``query`` and the dashboard).

The deployment record names the task (a built-in dataset or the user's own task module) and its
split (clients, partition, seed, test fraction); the model is built and evaluated through the
task interface, so ``python -m fl_client query`` and the dashboard print the same figure for the
same model. Results are cached by model version: a version's words never change.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from fl_client.chain import DeploymentRecord
from fl_client.codec import dequantize, unpack
from fl_client.config import FixedPointFormat
from fl_client.model import set_flat_parameters
from fl_client.tasks import DataSpec, LoadedTask, load_task

logger = logging.getLogger(__name__)


class Evaluator:
    """Evaluates packed models of one deployment on its task's test set (loaded on first use)."""

    def __init__(self, record: DeploymentRecord, fixed_point: FixedPointFormat) -> None:
        self.record = record
        self.fixed_point = fixed_point
        self._task: tuple[LoadedTask, torch.nn.Module, Any] | None = None
        self._cache: dict[int, float] = {}

    def _load(self) -> tuple[LoadedTask, torch.nn.Module, Any]:
        if self._task is None:
            record = self.record
            task = load_task(record.task or record.dataset, hidden_layers=record.hidden_layers)
            spec = DataSpec(
                num_clients=max(1, record.clients),
                partition=record.partition,
                dirichlet_alpha=record.dirichlet_alpha,
                seed=record.seed,
                test_fraction=record.test_fraction,
            )
            self._task = (task, task.model(seed=record.seed), task.test_data(spec))
        return self._task

    def accuracy(self, version: int, words: Sequence[int]) -> float:
        """Test accuracy (0..1) of model ``version`` with packed ``words`` (cached by version).

        Raises
        ------
        FLError
            The task cannot be loaded here, or the words do not fit its model.
        """
        if version not in self._cache:
            task, model, test_data = self._load()
            weights = dequantize(unpack(list(words), self.record.num_weights), self.fixed_point)
            set_flat_parameters(model, weights)
            self._cache[version] = task.evaluate(model, test_data).accuracy
            logger.info("model v%d: test accuracy %.4f", version, self._cache[version])
        return self._cache[version]
