"""Tests of fl_client.federated: averaging, the plain federated reference run, centralized."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from fl_client.data import Dataset, Shard, load_dataset, make_shards
from fl_client.errors import ConfigError, NonFiniteWeightError, ShapeError
from fl_client.federated import (
    FederatedResult,
    average_float,
    local_update,
    run_centralized,
    run_plain_federated,
    trimmed_float,
)
from fl_client.model import build_model, get_flat_parameters
from fl_client.training import TrainConfig, client_seed, select_clients


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def iid_shards(digits: Dataset) -> list[Shard]:
    return make_shards(digits, 5, scheme="iid", seed=0)


@pytest.fixture(scope="module")
def uneven_shards(digits: Dataset) -> list[Shard]:
    cuts = [0, 100, 400, digits.x_train.shape[0]]
    return [
        Shard(x=digits.x_train[start:stop], y=digits.y_train[start:stop])
        for start, stop in itertools.pairwise(cuts)
    ]


@pytest.fixture(scope="module")
def default_run(digits: Dataset, iid_shards: list[Shard]) -> FederatedResult:
    return run_plain_federated(digits, iid_shards, rounds=5, config=TrainConfig(), seed=0)


# --- averaging ---------------------------------------------------------------------------------


def test_average_float_plain_mean() -> None:
    vectors = [np.array([1.0, 2.0, 3.0]), np.array([3.0, 6.0, -3.0])]
    result = average_float(vectors)
    np.testing.assert_array_equal(result, [2.0, 4.0, 0.0])
    assert result.dtype == np.float64
    result[0] = 99.0
    assert vectors[0][0] == 1.0, "the result must not alias an input"


def test_average_float_weighted() -> None:
    vectors = [np.array([0.0, 10.0]), np.array([4.0, 2.0])]
    np.testing.assert_allclose(average_float(vectors, [1.0, 3.0]), [3.0, 4.0])
    np.testing.assert_allclose(average_float(vectors, [2, 0]), [0.0, 10.0])
    np.testing.assert_allclose(average_float(vectors, [5.0, 5.0]), average_float(vectors))


def test_average_float_of_one_vector_is_that_vector() -> None:
    vector = np.array([0.1, -7.5, 1e-9])
    np.testing.assert_array_equal(average_float([vector]), vector)
    np.testing.assert_array_equal(average_float([vector], [3.0]), vector)


def test_trimmed_float_leaves_out_the_extremes_of_each_entry() -> None:
    """Per entry, ``trim_each`` values cut at each end; never more than leaves one value
    (``(n - 1) // 2``); 0 is the plain mean."""
    vectors = [np.array([1.0, 100.0]), np.array([2.0, -50.0]), np.array([3.0, 4.0])]
    vectors.append(np.array([1000.0, 6.0]))
    np.testing.assert_allclose(trimmed_float(vectors, 1), [2.5, 5.0])
    np.testing.assert_allclose(trimmed_float(vectors, 5), [2.5, 5.0])  # clamped to 1 of 4
    np.testing.assert_allclose(trimmed_float(vectors, 0), average_float(vectors))
    np.testing.assert_allclose(trimmed_float(vectors[:3], 1), [2.0, 4.0])  # the median


def test_average_float_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="empty"):
        average_float([])
    with pytest.raises(ShapeError):
        average_float([np.zeros(3), np.zeros(4)])
    with pytest.raises(ShapeError):
        average_float([np.zeros((2, 2)), np.zeros((2, 2))])
    with pytest.raises(ShapeError):
        average_float([np.zeros(3), np.zeros(3)], [1.0])
    with pytest.raises(ValueError, match="non-negative"):
        average_float([np.zeros(3), np.zeros(3)], [1.0, -1.0])
    with pytest.raises(ValueError, match="zero"):
        average_float([np.zeros(3), np.zeros(3)], [0.0, 0.0])


# --- the plain federated run -------------------------------------------------------------------


def test_plain_federated_reaches_target_accuracy(default_run: FederatedResult) -> None:
    rounds = default_run.rounds
    assert [metrics.round_number for metrics in rounds] == [1, 2, 3, 4, 5]
    assert all(metrics.participants == (0, 1, 2, 3, 4) for metrics in rounds)
    assert rounds[-1].accuracy >= 0.92
    assert rounds[-1].accuracy > rounds[0].accuracy
    assert rounds[-1].loss < rounds[0].loss
    assert default_run.final_parameters.shape == (650,)
    assert default_run.final_parameters.dtype == np.float64
    assert not default_run.final_parameters.flags.writeable


def test_plain_federated_is_deterministic(
    digits: Dataset, iid_shards: list[Shard], default_run: FederatedResult
) -> None:
    again = run_plain_federated(digits, iid_shards, rounds=5, config=TrainConfig(), seed=0)
    np.testing.assert_array_equal(again.final_parameters, default_run.final_parameters)
    assert again.rounds == default_run.rounds
    other = run_plain_federated(digits, iid_shards, rounds=2, config=TrainConfig(), seed=1)
    partial = run_plain_federated(digits, iid_shards, rounds=2, config=TrainConfig(), seed=0)
    assert not np.array_equal(other.final_parameters, partial.final_parameters)
    # A shorter run is a prefix of the longer one.
    assert partial.rounds == default_run.rounds[:2]


def test_plain_federated_round_is_the_mean_of_client_updates(
    digits: Dataset, iid_shards: list[Shard]
) -> None:
    config = TrainConfig(epochs=1)
    result = run_plain_federated(digits, iid_shards, rounds=1, config=config, seed=4, fraction=0.4)
    chosen = select_clients(5, 0.4, round_number=1, seed=4)
    assert result.rounds[0].participants == tuple(chosen)
    assert len(chosen) == 2
    start = get_flat_parameters(build_model(64, 10, seed=4))
    updates = [
        local_update(
            start,
            iid_shards[client],
            config,
            num_features=64,
            num_classes=10,
            seed=client_seed(4, client, 1),
        )[0]
        for client in chosen
    ]
    np.testing.assert_array_equal(result.final_parameters, average_float(updates))


def test_weighted_and_mean_aggregation_differ_for_uneven_shards(
    digits: Dataset, uneven_shards: list[Shard]
) -> None:
    config = TrainConfig(epochs=1)
    mean = run_plain_federated(digits, uneven_shards, rounds=1, config=config, seed=0)
    weighted = run_plain_federated(
        digits, uneven_shards, rounds=1, config=config, seed=0, aggregation="weighted"
    )
    difference = np.abs(mean.final_parameters - weighted.final_parameters).max()
    assert difference > 1e-3

    start = get_flat_parameters(build_model(64, 10, seed=0))
    updates = [
        local_update(
            start, shard, config, num_features=64, num_classes=10, seed=client_seed(0, i, 1)
        )[0]
        for i, shard in enumerate(uneven_shards)
    ]
    sizes = [100.0, 300.0, float(digits.x_train.shape[0] - 400)]
    np.testing.assert_array_equal(weighted.final_parameters, average_float(updates, sizes))


def test_weighted_equals_mean_for_equal_shards(digits: Dataset) -> None:
    shards = [
        Shard(x=digits.x_train[i * 400 : (i + 1) * 400], y=digits.y_train[i * 400 : (i + 1) * 400])
        for i in range(3)
    ]
    config = TrainConfig(epochs=1)
    mean = run_plain_federated(digits, shards, rounds=1, config=config, seed=0)
    weighted = run_plain_federated(
        digits, shards, rounds=1, config=config, seed=0, aggregation="weighted"
    )
    np.testing.assert_allclose(mean.final_parameters, weighted.final_parameters, atol=1e-12)


def test_fedsgd_run_improves(digits: Dataset, iid_shards: list[Shard]) -> None:
    config = TrainConfig(algorithm="fedsgd", learning_rate=1.0)
    result = run_plain_federated(digits, iid_shards, rounds=5, config=config, seed=0)
    accuracies = [metrics.accuracy for metrics in result.rounds]
    assert accuracies[-1] > accuracies[0]
    # Five single full-batch steps from near zero already separate the digits well.
    assert accuracies[-1] > 0.6


def test_initial_parameters_are_used(digits: Dataset, iid_shards: list[Shard]) -> None:
    config = TrainConfig(epochs=1)
    default = run_plain_federated(digits, iid_shards, rounds=1, config=config, seed=0)
    zeros = run_plain_federated(
        digits, iid_shards, rounds=1, config=config, seed=0, initial=np.zeros(650)
    )
    assert not np.array_equal(default.final_parameters, zeros.final_parameters)
    same = run_plain_federated(
        digits,
        iid_shards,
        rounds=1,
        config=config,
        seed=0,
        initial=get_flat_parameters(build_model(64, 10, seed=0)),
    )
    np.testing.assert_array_equal(default.final_parameters, same.final_parameters)


def test_plain_federated_bad_arguments_raise(digits: Dataset, iid_shards: list[Shard]) -> None:
    config = TrainConfig()
    with pytest.raises(ConfigError, match="rounds"):
        run_plain_federated(digits, iid_shards, rounds=0, config=config, seed=0)
    with pytest.raises(ConfigError, match="aggregation"):
        run_plain_federated(
            digits, iid_shards, rounds=1, config=config, seed=0, aggregation="median"
        )
    with pytest.raises(ConfigError, match="fraction"):
        run_plain_federated(digits, iid_shards, rounds=1, config=config, seed=0, fraction=0.0)
    with pytest.raises(ConfigError, match="shard"):
        run_plain_federated(digits, [], rounds=1, config=config, seed=0)
    with pytest.raises(ShapeError):
        run_plain_federated(
            digits, iid_shards, rounds=1, config=config, seed=0, initial=np.zeros(10)
        )
    with pytest.raises(NonFiniteWeightError):
        run_plain_federated(
            digits, iid_shards, rounds=1, config=config, seed=0, initial=np.full(650, np.nan)
        )
    narrow = [Shard(x=torch.zeros(4, 8), y=torch.zeros(4, dtype=torch.int64))]
    with pytest.raises(ShapeError, match="features"):
        run_plain_federated(digits, narrow, rounds=1, config=config, seed=0)


# --- centralized -------------------------------------------------------------------------------


def test_centralized_training_is_accurate_and_deterministic(digits: Dataset) -> None:
    first = run_centralized(digits, epochs=10, config=TrainConfig(), seed=0)
    assert first.accuracy >= 0.93
    assert first == run_centralized(digits, epochs=10, config=TrainConfig(), seed=0)
    # The config's algorithm is ignored: centralized training is always minibatch SGD.
    assert first == run_centralized(
        digits, epochs=10, config=TrainConfig(algorithm="fedsgd"), seed=0
    )


def test_centralized_bad_epochs_raise(digits: Dataset) -> None:
    with pytest.raises(ConfigError, match="epochs"):
        run_centralized(digits, epochs=0, config=TrainConfig(), seed=0)
