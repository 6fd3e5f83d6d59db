"""Flower clients as they are, with the real ``flwr`` (the ``flower`` extra): a ``NumPyClient``
written the way Flower's PyTorch quickstart writes one (``get_weights`` and ``set_weights`` over
the ``state_dict``, a ``DataLoader`` shuffled without a generator, ``fit`` returning
``len(trainloader.dataset)``) trains through :class:`NumPyClientTrainer` on the chain."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from typing import Any

import flwr
import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias
from flwr.client import NumPyClient
from flwr.common import NDArrays, Scalar
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fl_client.chain import Chain, DeployParams, connect, deploy
from fl_client.client_secret import simulation_secret
from fl_client.codec import encode
from fl_client.config import load_config
from fl_client.data import Shard
from fl_client.errors import ClientStateError, ConfigError, ShapeError
from fl_client.federation import Federation, Member
from fl_client.model import get_flat_parameters, num_parameters
from fl_client.simulation import run_simulation
from fl_client.tasks import (
    DataSpec,
    LoadedTask,
    NumPyClientTrainer,
    ParameterLayout,
    TaskError,
    as_task,
    load_task,
    make_trainer,
)
from fl_client.training import TrainConfig, seeded_global_rngs

DIGITS = load_task("digits")


# ---------------------------------------------------------------- a quickstart-style Flower app


class Net(nn.Module):
    """A small CNN for the 8x8 digits (Flower's quickstart has one for CIFAR-10)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv(x)), 2)
        return self.fc(x.flatten(1))  # type: ignore[no-any-return]


def get_weights(net: nn.Module) -> NDArrays:
    return [val.cpu().numpy() for _, val in net.state_dict().items()]


def set_weights(net: nn.Module, parameters: NDArrays) -> None:
    params_dict = zip(net.state_dict().keys(), parameters, strict=True)
    state_dict = OrderedDict({k: torch.tensor(v) for k, v in params_dict})
    net.load_state_dict(state_dict, strict=True)


def images(shard: Shard) -> TensorDataset:
    return TensorDataset(shard.x.reshape(-1, 1, 8, 8), shard.y)


def train(net: nn.Module, trainloader: DataLoader[Any], epochs: int, lr: float) -> float:
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    net.train()
    running_loss = 0.0
    for _ in range(epochs):
        for batch_images, labels in trainloader:
            optimizer.zero_grad()
            loss = F.cross_entropy(net(batch_images), labels)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            running_loss += float(loss.detach())
    return running_loss / (epochs * len(trainloader))


def evaluate_net(net: nn.Module, testloader: DataLoader[Any]) -> tuple[float, float]:
    net.eval()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for batch_images, labels in testloader:
            outputs = net(batch_images)
            loss += float(F.cross_entropy(outputs, labels))
            correct += int((outputs.argmax(1) == labels).sum())
    return loss / len(testloader), correct / len(testloader.dataset)  # type: ignore[arg-type]


class FlowerClient(NumPyClient):
    def __init__(
        self,
        net: nn.Module,
        trainloader: DataLoader[Any],
        valloader: DataLoader[Any],
        local_epochs: int,
        lr: float = 0.05,
    ) -> None:
        self.net = net
        self.trainloader = trainloader
        self.valloader = valloader
        self.local_epochs = local_epochs
        self.lr = lr

    def get_parameters(self, config: dict[str, Scalar]) -> NDArrays:
        return get_weights(self.net)

    def fit(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[NDArrays, int, dict[str, Scalar]]:
        set_weights(self.net, parameters)
        train_loss = train(self.net, self.trainloader, self.local_epochs, self.lr)
        return get_weights(self.net), len(self.trainloader.dataset), {"train_loss": train_loss}  # type: ignore[arg-type]

    def evaluate(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[float, int, dict[str, Scalar]]:
        set_weights(self.net, parameters)
        loss, accuracy = evaluate_net(self.net, self.valloader)
        return loss, len(self.valloader.dataset), {"accuracy": accuracy}  # type: ignore[arg-type]


def build_net(seed: int) -> nn.Module:
    with seeded_global_rngs(seed):
        return Net()


def client_fn(client: int, spec: DataSpec, config: TrainConfig) -> FlowerClient:
    """Client ``client`` of the digits split, as Flower's ``client_fn`` builds one."""
    trainset = images(DIGITS.client_data(client, spec))
    valset = images(DIGITS.test_data(spec))
    return FlowerClient(
        build_net(spec.seed),
        DataLoader(trainset, batch_size=32, shuffle=True),  # unseeded, as in the quickstart
        DataLoader(valset, batch_size=64),
        local_epochs=config.epochs,
        lr=config.learning_rate,
    )


class FlowerDigitsTask:
    """The same app as a task: the model and the held-out test from the task, training by Flower."""

    NAME = "flower-digits"

    def build_model(self, seed: int) -> nn.Module:
        return build_net(seed)

    def load_data(self, client: int, spec: DataSpec) -> TensorDataset:
        return images(DIGITS.client_data(client, spec))

    def load_test_data(self, spec: DataSpec) -> DataLoader[Any]:
        return DataLoader(images(DIGITS.test_data(spec)), batch_size=64)

    def train(
        self, net: nn.Module, data: TensorDataset, config: TrainConfig, seed: int
    ) -> tuple[float, int]:
        raise AssertionError("a task with a client_fn trains through its Flower client")

    def test(self, net: nn.Module, testloader: DataLoader[Any]) -> tuple[float, float]:
        return evaluate_net(net, testloader)

    def client_fn(self, client: int, spec: DataSpec, config: TrainConfig) -> FlowerClient:
        return client_fn(client, spec, config)


SPEC = DataSpec(num_clients=2, seed=0)
CONFIG = TrainConfig(epochs=1, batch_size=32, learning_rate=0.05)


@pytest.fixture
def client() -> FlowerClient:
    return client_fn(0, SPEC, CONFIG)


# ---------------------------------------------------------------- the adapter


def test_the_real_flwr_numpy_client_is_accepted_as_a_trainer(client: FlowerClient) -> None:
    # Execute
    trainer = NumPyClientTrainer(client, client_id=0, seed=0, config=CONFIG)
    # Assert
    assert flwr.__version__ == "1.42.0"
    assert isinstance(client, NumPyClient)
    assert trainer.num_weights == num_parameters(client.net) == 4 * 9 + 4 + 64 * 10 + 10
    assert trainer.layout.shapes == ((4, 1, 3, 3), (4,), (10, 64), (10,))


def test_the_parameter_list_flattens_in_order_and_back(client: FlowerClient) -> None:
    # Prepare
    arrays = client.get_parameters({})
    layout = ParameterLayout.of(arrays)
    # Execute
    flat = layout.flatten(arrays)
    back = layout.unflatten(flat)
    # Assert: the state_dict order of a buffer-free net is its parameters' order
    assert flat.dtype == np.float64
    assert np.array_equal(flat, get_flat_parameters(client.net))
    assert [a.dtype for a in back] == [np.dtype(np.float32)] * 4
    assert all(np.array_equal(a, b) for a, b in zip(arrays, back, strict=True))


def test_fit_returns_the_client_weights_and_declares_its_example_count(
    client: FlowerClient,
) -> None:
    # Prepare
    trainer = NumPyClientTrainer(client, client_id=0, seed=0, config=CONFIG)
    start = get_flat_parameters(build_net(0))
    # Execute
    fit = trainer.fit(start, round_number=1)
    # Assert
    assert trainer.num_samples == len(client.trainloader.dataset) == 719  # type: ignore[arg-type]
    assert np.array_equal(fit.weights, get_flat_parameters(client.net))
    assert not np.array_equal(fit.weights, start)
    assert fit.loss == trainer.last_metrics["train_loss"]
    assert trainer.round_config(1)["server_round"] == 1
    assert trainer.round_config(1)["local_epochs"] == 1


def test_a_replayed_round_trains_the_same_weights_despite_the_unseeded_loader() -> None:
    # Prepare: two processes' worth of clients, the quickstart's shuffling without a generator
    first = NumPyClientTrainer(client_fn(1, SPEC, CONFIG), client_id=1, seed=0, config=CONFIG)
    again = NumPyClientTrainer(client_fn(1, SPEC, CONFIG), client_id=1, seed=0, config=CONFIG)
    start = get_flat_parameters(build_net(0))
    torch.manual_seed(999)  # a different global state must not matter
    # Execute
    one = first.fit(start, round_number=1).weights
    replayed = again.fit(start, round_number=1).weights
    other_round = again.fit(start, round_number=2).weights
    # Assert
    assert np.array_equal(one, replayed)
    assert not np.array_equal(one, other_round)


def test_evaluate_is_the_clients_own(client: FlowerClient) -> None:
    trainer = NumPyClientTrainer(client)
    evaluation = trainer.evaluate(get_flat_parameters(build_net(0)))
    assert evaluation.num_examples == 360
    assert 0.0 <= float(evaluation.metrics["accuracy"]) <= 0.3  # an untrained net
    assert evaluation.loss > 2.0


def test_the_sample_count_is_known_only_after_fit(client: FlowerClient) -> None:
    with pytest.raises(ClientStateError, match="call fit first"):
        _ = NumPyClientTrainer(client).num_samples


def test_a_client_without_parameters_is_refused() -> None:
    # NumPyClient's own get_parameters returns no arrays.
    with pytest.raises(ConfigError, match="get_parameters must return a non-empty list"):
        NumPyClientTrainer(NumPyClient())


class _Returning(FlowerClient):
    """A client whose fit returns ``returned`` (to check what the adapter refuses)."""

    returned: Any = None

    def fit(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[NDArrays, int, dict[str, Scalar]]:
        return self.returned  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("returned", "error", "message"),
    [
        (([np.zeros((4, 1, 3, 3))], 10, {}), ShapeError, "expected 4 parameter arrays, got 1"),
        (
            ([np.zeros((4, 1, 3, 3)), np.zeros(4), np.zeros((64, 10)), np.zeros(10)], 10, {}),
            ShapeError,
            r"parameter array 2 has shape \(64, 10\), expected \(10, 64\)",
        ),
        ((np.zeros(3), 10), ConfigError, r"must return \(parameters, num_examples, metrics\)"),
        (
            ([np.zeros((4, 1, 3, 3)), np.zeros(4), np.zeros((10, 64)), np.zeros(10)], 0, {}),
            ConfigError,
            "num_examples 0; it must be a positive int",
        ),
    ],
)
def test_a_malformed_fit_is_refused(
    client: FlowerClient, returned: Any, error: type[Exception], message: str
) -> None:
    # Prepare
    bad = _Returning(client.net, client.trainloader, client.valloader, 1)
    bad.returned = returned
    trainer = NumPyClientTrainer(bad)
    # Execute / Assert
    with pytest.raises(error, match=message):
        trainer.fit(get_flat_parameters(client.net), round_number=1)


def test_integer_buffers_travel_as_the_nearest_integer() -> None:
    # A BatchNorm's state_dict holds a float running mean and an int64 batch counter.
    arrays = get_weights(nn.BatchNorm1d(3))
    layout = ParameterLayout.of(arrays)
    back = layout.unflatten(layout.flatten(arrays) + 0.4)
    assert [a.dtype for a in back] == [a.dtype for a in arrays]
    assert back[-1] == arrays[-1]  # num_batches_tracked: 0 + 0.4 rounds back to 0


def test_a_task_whose_flower_client_holds_buffers_is_refused() -> None:
    # Prepare: the chain holds the task model's parameters; a state_dict with buffers is longer.
    class WithBuffers(FlowerDigitsTask):
        def client_fn(self, client: int, spec: DataSpec, config: TrainConfig) -> FlowerClient:
            inner = client_fn(client, spec, config)
            inner.net = nn.Sequential(nn.BatchNorm1d(3))
            return inner

    task = as_task(WithBuffers(), reference="with-buffers")
    # Execute / Assert
    with pytest.raises(TaskError, match="a state_dict with buffers"):
        make_trainer(task, client=0, spec=SPEC, config=CONFIG, seed=0)


# ---------------------------------------------------------------- on the chain


@pytest.fixture
def flower_task() -> LoadedTask:
    return as_task(FlowerDigitsTask(), reference="flower-digits")


def test_flower_clients_submit_their_example_counts_on_the_chain(
    isolated: Chain, owner: str, clients: list[str], flower_task: LoadedTask
) -> None:
    # Prepare
    fl = load_config().fl
    start = get_flat_parameters(flower_task.model(seed=0))
    words, _ = encode(start, fl.fixed_point)
    params = DeployParams.from_config(fl, num_weights=start.size, clients=2)
    contract = deploy(isolated, params, initial_words=words, pool_wei=10**18, deployer=owner)
    trainers = [
        make_trainer(flower_task, client=i, spec=SPEC, config=CONFIG, seed=0) for i in range(2)
    ]
    federation = Federation(
        chain=isolated,
        contract=contract,
        members=[
            Member(account=clients[i], trainer=trainers[i], secret=simulation_secret(0, i))
            for i in range(2)
        ],
        closer_account=owner,
    )
    # Execute
    outcomes = federation.play_round(1, [0, 1])
    # Assert
    assert all(isinstance(t, NumPyClientTrainer) for t in trainers)
    assert [o.sample_count for o in outcomes] == [719, 718]
    assert all(o.counted for o in outcomes)


def test_a_flower_task_runs_through_the_chain_like_plain_fedavg(flower_task: LoadedTask) -> None:
    # Prepare: sample-weighted FedAvg, so the declared counts weigh the average
    fl = load_config().fl.with_overrides(clients=2, rounds=2, epochs=1, learning_rate=0.05)
    fl = replace(fl, contract=replace(fl.contract, aggregation="sample_weighted"))
    # Execute
    result = run_simulation(fl, chain=connect("embedded"), task=flower_task, check_accuracy=False)
    # Assert
    assert result.dataset == "flower-digits"
    assert result.num_weights == 690
    assert all(r.exact_average for r in result.rounds)
    assert all(abs(r.gap_pp) <= 1.0 for r in result.rounds)
    assert result.rounds[-1].accuracy_chain > result.initial_accuracy + 0.3
