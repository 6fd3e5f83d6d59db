"""Tests of fl_client.model and fl_client.training."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fl_client.data import Dataset, Shard, load_dataset, make_shards
from fl_client.errors import ConfigError, DataError, NonFiniteWeightError, ShapeError
from fl_client.model import (
    build_model,
    get_flat_parameters,
    num_parameters,
    set_flat_parameters,
)
from fl_client.training import (
    TrainConfig,
    client_seed,
    evaluate,
    select_clients,
    train_local,
)

FAST = settings(max_examples=60, deadline=None, database=None)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def shard(digits: Dataset) -> Shard:
    return make_shards(digits, 5, seed=0)[0]


def _linear(model: torch.nn.Module) -> torch.nn.Linear:
    assert isinstance(model, torch.nn.Linear)
    return model


def _trained(shard: Shard, config: TrainConfig, *, seed: int) -> tuple[np.ndarray, float, int]:
    model = build_model(64, 10, seed=0)
    result = train_local(model, shard, config, seed=seed)
    return get_flat_parameters(model), result.loss, result.steps


# --- model -------------------------------------------------------------------------------------


def test_build_model_is_softmax_regression() -> None:
    model = _linear(build_model(64, 10, seed=0))
    assert (model.in_features, model.out_features) == (64, 10)
    assert num_parameters(model) == 650
    assert num_parameters(build_model(784, 10, seed=0)) == 7850
    assert torch.count_nonzero(model.bias) == 0
    weight = model.weight.detach().numpy()
    assert 0.008 < float(weight.std()) < 0.012
    assert abs(float(weight.mean())) < 0.002


def test_build_model_is_seeded_and_leaves_global_rng_alone() -> None:
    state = torch.get_rng_state()
    first = get_flat_parameters(build_model(64, 10, seed=7))
    second = get_flat_parameters(build_model(64, 10, seed=7))
    other = get_flat_parameters(build_model(64, 10, seed=8))
    assert torch.equal(torch.get_rng_state(), state)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize(("features", "classes"), [(0, 10), (64, 1), (-1, 2)])
def test_build_model_bad_sizes_raise(features: int, classes: int) -> None:
    with pytest.raises(ConfigError):
        build_model(features, classes, seed=0)


def test_flat_parameters_layout_and_round_trip() -> None:
    model = _linear(build_model(64, 10, seed=1))
    with torch.no_grad():
        model.bias.copy_(torch.arange(10, dtype=torch.float32))
    flat = get_flat_parameters(model)
    assert flat.dtype == np.float64
    assert flat.shape == (650,)
    np.testing.assert_array_equal(flat[:640], model.weight.detach().numpy().ravel())
    np.testing.assert_array_equal(flat[640:], np.arange(10))
    assert flat[1] == float(
        model.weight.detach()[0, 1]
    )  # row-major: (out 0, in 1) is the second value

    target = _linear(build_model(64, 10, seed=2))
    set_flat_parameters(target, flat)
    np.testing.assert_array_equal(get_flat_parameters(target), flat)
    assert torch.equal(target.weight, model.weight)


def test_set_flat_parameters_accepts_read_only_input() -> None:
    model = build_model(64, 10, seed=0)
    flat = np.linspace(-1.0, 1.0, 650)
    flat.setflags(write=False)
    set_flat_parameters(model, flat)
    np.testing.assert_allclose(get_flat_parameters(model), flat, rtol=1e-7)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (np.zeros(649), ShapeError),
        (np.zeros(651), ShapeError),
        (np.zeros((10, 65)), ShapeError),
        (np.zeros(0), ShapeError),
        (np.full(650, np.nan), NonFiniteWeightError),
        (np.concatenate([np.zeros(649), [np.inf]]), NonFiniteWeightError),
        (np.concatenate([np.zeros(649), [1e300]]), NonFiniteWeightError),  # overflows float32
    ],
)
def test_set_flat_parameters_rejects_bad_vectors(value: np.ndarray, error: type[Exception]) -> None:
    model = build_model(64, 10, seed=0)
    before = get_flat_parameters(model)
    with pytest.raises(error):
        set_flat_parameters(model, value)
    np.testing.assert_array_equal(get_flat_parameters(model), before)


# --- configuration -----------------------------------------------------------------------------


def test_train_config_defaults() -> None:
    config = TrainConfig()
    assert (config.epochs, config.batch_size, config.learning_rate) == (5, 10, 0.3)
    assert config.algorithm == "fedavg"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"epochs": 0},
        {"epochs": -1},
        {"epochs": 1.5},
        {"batch_size": -1},
        {"learning_rate": 0.0},
        {"learning_rate": -0.1},
        {"learning_rate": math.nan},
        {"learning_rate": math.inf},
        {"algorithm": "fedprox"},
        {"algorithm": "FedAvg"},
    ],
)
def test_train_config_rejects_bad_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        TrainConfig(**kwargs)


# --- local training ----------------------------------------------------------------------------


def test_train_local_is_bit_identical_for_a_seed(shard: Shard) -> None:
    config = TrainConfig(epochs=2)
    first = _trained(shard, config, seed=3)
    second = _trained(shard, config, seed=3)
    np.testing.assert_array_equal(first[0], second[0])
    assert first[1] == second[1]
    other = _trained(shard, config, seed=4)
    assert not np.array_equal(first[0], other[0])
    assert first[1] != other[1]


def test_train_local_counts_steps_and_samples() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(23, 64, generator=generator)
    y = torch.randint(0, 10, (23,), generator=generator)
    small = Shard(x=x, y=y)
    model = build_model(64, 10, seed=0)
    result = train_local(model, small, TrainConfig(epochs=3, batch_size=10), seed=0)
    assert (result.num_samples, result.steps) == (23, 9)  # ceil(23 / 10) = 3 per epoch
    result = train_local(model, small, TrainConfig(epochs=4, batch_size=0), seed=0)
    assert result.steps == 4  # full batch: one step per epoch
    result = train_local(model, small, TrainConfig(epochs=2, batch_size=100), seed=0)
    assert result.steps == 2


def test_train_local_lowers_the_loss(digits: Dataset, shard: Shard) -> None:
    model = build_model(64, 10, seed=0)
    before = evaluate(model, shard.x, shard.y)
    result = train_local(model, shard, TrainConfig(), seed=0)
    after = evaluate(model, shard.x, shard.y)
    assert before.loss == pytest.approx(math.log(10), abs=0.05)  # near-zero initial weights
    assert after.loss < 0.3 * before.loss
    assert result.loss < before.loss
    assert after.accuracy > 0.95
    assert evaluate(model, digits.x_test, digits.y_test).accuracy > 0.85


def test_fedsgd_makes_exactly_one_full_batch_gradient_step(shard: Shard) -> None:
    learning_rate = 0.5
    model = _linear(build_model(64, 10, seed=5))
    weight = model.weight.detach().numpy().astype(np.float64)
    bias = model.bias.detach().numpy().astype(np.float64)
    x = shard.x.numpy().astype(np.float64)
    y = shard.y.numpy()

    # The analytic gradient of the mean softmax cross-entropy, in float64.
    logits = x @ weight.T + bias
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected_loss = float(-np.log(probabilities[np.arange(y.shape[0]), y]).mean())
    delta = probabilities
    delta[np.arange(y.shape[0]), y] -= 1.0
    delta /= y.shape[0]
    expected_weight = weight - learning_rate * (delta.T @ x)
    expected_bias = bias - learning_rate * delta.sum(axis=0)

    config = TrainConfig(epochs=7, batch_size=3, learning_rate=learning_rate, algorithm="fedsgd")
    result = train_local(model, shard, config, seed=0)
    assert result.steps == 1
    assert result.num_samples == shard.num_samples
    assert result.loss == pytest.approx(expected_loss, rel=1e-5)
    np.testing.assert_allclose(model.weight.detach().numpy(), expected_weight, atol=1e-6)
    np.testing.assert_allclose(model.bias.detach().numpy(), expected_bias, atol=1e-6)


def test_fedsgd_does_not_depend_on_the_seed(shard: Shard) -> None:
    config = TrainConfig(algorithm="fedsgd")
    np.testing.assert_array_equal(
        _trained(shard, config, seed=1)[0], _trained(shard, config, seed=2)[0]
    )


def test_train_local_rejects_bad_data() -> None:
    model = build_model(64, 10, seed=0)
    empty = Shard(x=torch.zeros(0, 64), y=torch.zeros(0, dtype=torch.int64))
    with pytest.raises(DataError, match="empty"):
        train_local(model, empty, TrainConfig(), seed=0)
    narrow = Shard(x=torch.zeros(4, 63), y=torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ShapeError, match="features"):
        train_local(model, narrow, TrainConfig(), seed=0)
    bad_labels = Shard(x=torch.zeros(4, 64), y=torch.tensor([0, 1, 2, 10]))
    with pytest.raises(DataError, match="labels"):
        train_local(model, bad_labels, TrainConfig(), seed=0)
    float_labels = Shard(x=torch.zeros(4, 64), y=torch.zeros(4))
    with pytest.raises(ShapeError, match="int64"):
        train_local(model, float_labels, TrainConfig(), seed=0)


# --- evaluation --------------------------------------------------------------------------------


def test_evaluate_computes_accuracy_and_loss() -> None:
    model = build_model(2, 2, seed=0)
    set_flat_parameters(model, np.array([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]))  # identity, zero bias
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    y = torch.tensor([0, 1, 1])
    model.train()
    evaluation = evaluate(model, x, y)
    assert evaluation.accuracy == pytest.approx(2 / 3)
    right = math.log(1 + math.exp(-1.0))  # -log softmax of the larger logit
    wrong = math.log(1 + math.exp(1.0))
    assert evaluation.loss == pytest.approx((2 * right + wrong) / 3, rel=1e-6)
    assert model.training, "evaluate must restore the training mode"


def test_evaluate_rejects_bad_inputs() -> None:
    model = build_model(64, 10, seed=0)
    with pytest.raises(DataError):
        evaluate(model, torch.zeros(0, 64), torch.zeros(0, dtype=torch.int64))
    with pytest.raises(ShapeError):
        evaluate(model, torch.zeros(3, 64), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ShapeError):
        evaluate(model, torch.zeros(3, 8), torch.zeros(3, dtype=torch.int64))


# --- client selection and seeds ----------------------------------------------------------------


@FAST
@given(
    num_clients=st.integers(min_value=1, max_value=300),
    fraction=st.floats(min_value=1e-6, max_value=1.0),
    round_number=st.integers(min_value=0, max_value=10_000),
    seed=st.integers(min_value=0, max_value=2**63 - 1),
)
def test_select_clients_picks_distinct_sorted_ids(
    num_clients: int, fraction: float, round_number: int, seed: int
) -> None:
    chosen = select_clients(num_clients, fraction, round_number=round_number, seed=seed)
    assert len(chosen) == max(1, round(fraction * num_clients))
    assert chosen == sorted(set(chosen))
    assert all(0 <= client < num_clients for client in chosen)
    assert chosen == select_clients(num_clients, fraction, round_number=round_number, seed=seed)


def test_select_clients_varies_with_round_and_seed() -> None:
    by_round = {tuple(select_clients(100, 0.1, round_number=r, seed=0)) for r in range(1, 11)}
    assert len(by_round) == 10
    by_seed = {tuple(select_clients(100, 0.1, round_number=1, seed=s)) for s in range(10)}
    assert len(by_seed) == 10


def test_select_clients_full_fraction_takes_everyone() -> None:
    assert select_clients(7, 1.0, round_number=3, seed=9) == list(range(7))
    assert select_clients(7, 0.01, round_number=3, seed=9) in [[i] for i in range(7)]


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.01, math.nan, math.inf])
def test_select_clients_bad_fraction_raises(fraction: float) -> None:
    with pytest.raises(ConfigError, match="fraction"):
        select_clients(10, fraction, round_number=1, seed=0)


def test_select_clients_bad_arguments_raise() -> None:
    with pytest.raises(ConfigError, match="num_clients"):
        select_clients(0, 0.5, round_number=1, seed=0)
    with pytest.raises(ConfigError, match="seed"):
        select_clients(10, 0.5, round_number=1, seed=-1)
    with pytest.raises(ConfigError, match="round_number"):
        select_clients(10, 0.5, round_number=-1, seed=0)


def test_client_seed_is_deterministic_and_distinct() -> None:
    seeds = {
        client_seed(0, client, round_number) for client in range(30) for round_number in range(30)
    }
    assert len(seeds) == 900
    assert all(0 <= seed < 2**63 for seed in seeds)
    assert client_seed(5, 2, 3) == client_seed(5, 2, 3)
    assert client_seed(5, 2, 3) != client_seed(6, 2, 3)
    assert client_seed(5, 2, 3) != client_seed(5, 3, 2)


@pytest.mark.parametrize(
    ("base", "client", "round_number"), [(-1, 0, 0), (0, -1, 0), (0, 0, -1), (0, 2**32, 0)]
)
def test_client_seed_bad_arguments_raise(base: int, client: int, round_number: int) -> None:
    with pytest.raises(ConfigError):
        client_seed(base, client, round_number)


def test_training_does_not_depend_on_the_thread_count(shard: Shard) -> None:
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with_two = _trained(shard, TrainConfig(epochs=2), seed=1)
        assert torch.get_num_threads() == 2, "train_local must restore the thread count"
        torch.set_num_threads(1)
        with_one = _trained(shard, TrainConfig(epochs=2), seed=1)
    finally:
        torch.set_num_threads(previous)
    np.testing.assert_array_equal(with_two[0], with_one[0])
