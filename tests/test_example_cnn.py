"""The CNN example (``examples/mnist_cnn/task.py``): it loads as a user's task, trains
deterministically, and a short run goes through the chain's segmented path like plain FedAvg.
The full run is the benchmark (``python -m bench.cnn_example``); its stored figures are checked
against the bar here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import Subset, TensorDataset

from bench.cnn_example import TASK, markdown
from fl_client.chain import connect
from fl_client.config import load_config
from fl_client.model import get_flat_parameters
from fl_client.simulation import run_simulation
from fl_client.tasks import DataSpec, LoadedTask, TaskTrainer, as_task, load_task
from fl_client.training import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "cnn_example.json"
CONFIG = TrainConfig(epochs=1, batch_size=20, learning_rate=0.05)


@pytest.fixture(scope="module")
def example() -> LoadedTask:
    return load_task(str(ROOT / TASK))


class FewSamples:
    """The example task on the first ``train_samples`` of each client's shard and the first
    ``test_samples`` of the test split: the same model, training and test, less data."""

    NAME = "mnist_cnn (few samples)"

    def __init__(self, example: LoadedTask, *, train_samples: int, test_samples: int) -> None:
        self.example = example.source
        self.train_samples = train_samples
        self.test_samples = test_samples

    def build_model(self, seed: int) -> torch.nn.Module:
        return self.example.build_model(seed)

    def load_data(self, client: int, spec: DataSpec) -> Subset[Any]:
        return Subset(self.example.load_data(client, spec), range(self.train_samples))

    def load_test_data(self, spec: DataSpec) -> Subset[Any]:
        return Subset(self.example.load_test_data(spec), range(self.test_samples))

    def train(self, net: Any, data: Any, config: TrainConfig, seed: int) -> tuple[float, int]:
        return self.example.train(net, data, config, seed)

    def test(self, net: Any, data: Any) -> tuple[float, float]:
        return self.example.test(net, data)


def test_the_example_is_a_complete_task_with_tens_of_thousands_of_weights(
    example: LoadedTask,
) -> None:
    # Prepare
    spec = DataSpec(num_clients=5, seed=0)
    # Execute
    model = example.model(seed=0)
    shards = [example.client_data(c, spec) for c in range(5)]
    held_out = example.test_data(spec)
    # Assert
    assert example.name == "mnist_cnn"
    assert example.client_fn is None
    assert get_flat_parameters(model).size == 20_490
    assert isinstance(held_out, TensorDataset)
    assert held_out.tensors[0].shape == (1000, 1, 28, 28)
    assert sum(len(s) for s in shards) == 4000
    assert np.array_equal(get_flat_parameters(example.model(seed=0)), get_flat_parameters(model))


def test_the_example_trains_the_same_weights_when_a_round_is_replayed(
    example: LoadedTask,
) -> None:
    # Prepare
    few = as_task(FewSamples(example, train_samples=100, test_samples=100), reference="few")
    spec = DataSpec(num_clients=2, seed=0)
    start = get_flat_parameters(few.model(seed=0))
    # Execute
    first = TaskTrainer(few, client=0, spec=spec, config=CONFIG, seed=0).fit(start, round_number=1)
    again = TaskTrainer(few, client=0, spec=spec, config=CONFIG, seed=0).fit(start, round_number=1)
    # Assert
    assert np.array_equal(first.weights, again.weights)
    assert not np.array_equal(first.weights, start)


@pytest.mark.slow
def test_a_short_cnn_run_goes_through_the_segmented_path_like_plain_fedavg(
    example: LoadedTask,
) -> None:
    # Prepare: 2 clients x 2 rounds on 300 images each
    few = as_task(FewSamples(example, train_samples=300, test_samples=500), reference="few")
    fl = load_config().fl.with_overrides(
        clients=2, rounds=2, epochs=1, batch_size=20, learning_rate=0.05
    )
    chain = connect("embedded")
    # Execute
    result = run_simulation(fl, chain=chain, task=few, check_accuracy=False)
    # Assert
    assert result.num_weights == 20_490
    assert result.num_segments >= 2
    assert all(r.exact_average for r in result.rounds)
    assert all(abs(r.gap_pp) <= 2.0 for r in result.rounds)
    assert result.rounds[-1].accuracy_chain >= result.initial_accuracy + 0.3
    assert max(chain.gas_used) <= chain.tx_gas_cap


def test_the_benchmark_figures_meet_the_bar_and_render_as_the_readme_table() -> None:
    record = json.loads(RESULTS.read_text(encoding="utf-8"))
    assert record["num_weights"] == 20_490
    assert record["num_segments"] >= 2
    assert record["every_average_exact"]
    assert abs(record["final_gap_pp"]) <= 1.0
    assert record["final_accuracy_chain"] >= 0.95
    assert record["largest_transaction_gas"] <= record["tx_gas_cap"]
    assert markdown(record) == (RESULTS.with_suffix(".md")).read_text(encoding="utf-8")
