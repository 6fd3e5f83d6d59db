"""The built-in ``digits`` task, a task module like any user's.

Scikit-learn's 1,797 handwritten 8x8 digits; softmax regression 64 -> 10 (650 weights), trained
with minibatch SGD (``E`` epochs, batch ``B``, cross-entropy) and tested on the seeded, stratified
test split. ``--task digits`` (or ``dataset: digits``) selects it; with ``hidden_layers`` the model
is an MLP and :class:`~fl_client.tasks.builtin.ClassifierTask` stands in for this module.
"""

from __future__ import annotations

import torch

from fl_client.data import Shard
from fl_client.tasks.base import DataSpec
from fl_client.tasks.builtin import ClassifierTask
from fl_client.training import TrainConfig

NAME = "digits"

_TASK = ClassifierTask(NAME)


def build_model(seed: int) -> torch.nn.Module:
    """The softmax regression, weights drawn from ``Normal(0, 0.01)`` with ``seed``, zero bias."""
    return _TASK.build_model(seed)


def load_data(client: int, spec: DataSpec) -> Shard:
    """Client ``client``'s shard of the training split (IID or Dirichlet, as ``spec`` says)."""
    return _TASK.load_data(client, spec)


def load_test_data(spec: DataSpec) -> Shard:
    """The held-out test split (``spec.test_fraction`` of the samples, stratified)."""
    return _TASK.load_test_data(spec)


def train(model: torch.nn.Module, data: Shard, config: TrainConfig, seed: int) -> tuple[float, int]:
    """Train in place; return the last epoch's mean loss and the shard's sample count."""
    return _TASK.train(model, data, config, seed)


def test(model: torch.nn.Module, data: Shard) -> tuple[float, float]:
    """Return the mean cross-entropy and the accuracy on ``data``."""
    return _TASK.test(model, data)
