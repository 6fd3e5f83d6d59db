"""Tests of fl_client.data: loading, splitting and partitioning."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fl_client.data import (
    Dataset,
    Shard,
    load_dataset,
    make_shards,
    partition,
    partition_dirichlet,
    partition_iid,
)
from fl_client.errors import DataError, ShapeError

FAST = settings(max_examples=60, deadline=None, database=None)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


def _check_partition(parts: list[np.ndarray], num_samples: int, num_clients: int) -> None:
    assert len(parts) == num_clients
    for part in parts:
        assert part.dtype == np.int64
        assert part.ndim == 1
        assert np.all(np.diff(part) > 0), "indices must be sorted and unique"
    merged = np.sort(np.concatenate(parts))
    np.testing.assert_array_equal(merged, np.arange(num_samples))


def _mean_label_entropy(labels: np.ndarray, parts: list[np.ndarray], num_classes: int) -> float:
    entropies = []
    for part in parts:
        counts = np.bincount(labels[part], minlength=num_classes).astype(np.float64)
        probabilities = counts[counts > 0] / counts.sum()
        entropies.append(float(-(probabilities * np.log(probabilities)).sum()))
    return float(np.mean(entropies))


# --- loading -----------------------------------------------------------------------------------


def test_digits_shapes_types_and_scaling(digits: Dataset) -> None:
    assert digits.name == "digits"
    assert (digits.num_features, digits.num_classes) == (64, 10)
    assert tuple(digits.x_train.shape) == (1437, 64)
    assert tuple(digits.x_test.shape) == (360, 64)
    assert tuple(digits.y_train.shape) == (1437,)
    assert tuple(digits.y_test.shape) == (360,)
    assert digits.x_train.dtype == torch.float32
    assert digits.y_train.dtype == torch.int64
    assert float(digits.x_train.min()) == 0.0
    assert float(digits.x_train.max()) == 1.0
    # Raw values are integers 0..16, so every scaled value is a multiple of 1/16.
    np.testing.assert_array_equal(digits.x_test.numpy() * 16, np.round(digits.x_test.numpy() * 16))
    assert set(digits.y_test.tolist()) == set(range(10))


def test_mnist5k_shapes_types_and_scaling() -> None:
    mnist = load_dataset("mnist5k")
    assert (mnist.num_features, mnist.num_classes) == (784, 10)
    assert tuple(mnist.x_train.shape) == (4000, 784)
    assert tuple(mnist.x_test.shape) == (1000, 784)
    assert mnist.x_train.dtype == torch.float32
    assert mnist.y_test.dtype == torch.int64
    assert float(mnist.x_train.min()) == 0.0
    assert float(mnist.x_train.max()) == 1.0
    # The 5,000 digits hold 500 of each class; a stratified 20 % split keeps 100 of each.
    assert np.bincount(mnist.y_test.numpy()).tolist() == [100] * 10
    assert np.bincount(mnist.y_train.numpy()).tolist() == [400] * 10


def test_split_is_stratified(digits: Dataset) -> None:
    train_counts = np.bincount(digits.y_train.numpy(), minlength=10)
    test_counts = np.bincount(digits.y_test.numpy(), minlength=10)
    totals = train_counts + test_counts
    assert totals.sum() == 1797
    assert np.all(np.abs(test_counts - 0.2 * totals) <= 1.0)


def test_test_fraction_sets_split_size() -> None:
    dataset = load_dataset("digits", test_fraction=0.5, seed=3)
    assert dataset.x_test.shape[0] == math.ceil(0.5 * 1797)
    assert dataset.x_train.shape[0] + dataset.x_test.shape[0] == 1797


def test_same_seed_gives_identical_split(digits: Dataset) -> None:
    again = load_dataset("digits", seed=0)
    assert torch.equal(again.x_train, digits.x_train)
    assert torch.equal(again.y_train, digits.y_train)
    assert torch.equal(again.x_test, digits.x_test)
    assert torch.equal(again.y_test, digits.y_test)


def test_different_seed_gives_different_split(digits: Dataset) -> None:
    other = load_dataset("digits", seed=1)
    assert not torch.equal(other.y_train, digits.y_train)
    assert not torch.equal(other.x_test, digits.x_test)


def test_loaded_tensors_are_independent_of_the_cache() -> None:
    first = load_dataset("digits", seed=5)
    first.x_train.fill_(7.0)
    second = load_dataset("digits", seed=5)
    assert float(second.x_train.max()) == 1.0


@pytest.mark.parametrize("name", ["cifar10", "", "Digits", "mnist"])
def test_unknown_dataset_raises(name: str) -> None:
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset(name)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, 1.5, math.nan])
def test_bad_test_fraction_raises(fraction: float) -> None:
    with pytest.raises(DataError, match="test_fraction"):
        load_dataset("digits", test_fraction=fraction)


def test_test_fraction_too_small_for_stratification_raises() -> None:
    # 0.001 * 1797 rounds up to 2 test samples, fewer than the 10 classes.
    with pytest.raises(DataError, match="cannot split"):
        load_dataset("digits", test_fraction=0.001)


def test_negative_seed_raises() -> None:
    with pytest.raises(DataError, match="seed"):
        load_dataset("digits", seed=-1)


# --- IID partition -----------------------------------------------------------------------------


@FAST
@given(
    data=st.data(),
    num_samples=st.integers(min_value=1, max_value=600),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_partition_iid_is_disjoint_complete_and_balanced(
    data: st.DataObject, num_samples: int, seed: int
) -> None:
    num_clients = data.draw(st.integers(min_value=1, max_value=num_samples), label="num_clients")
    parts = partition_iid(num_samples, num_clients, seed=seed)
    _check_partition(parts, num_samples, num_clients)
    sizes = [part.shape[0] for part in parts]
    assert max(sizes) - min(sizes) <= 1


def test_partition_iid_is_seeded() -> None:
    first = partition_iid(100, 4, seed=11)
    second = partition_iid(100, 4, seed=11)
    other = partition_iid(100, 4, seed=12)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_partition_iid_shuffles() -> None:
    parts = partition_iid(100, 2, seed=0)
    assert not np.array_equal(parts[0], np.arange(50))


@pytest.mark.parametrize(("num_samples", "num_clients"), [(10, 0), (10, -1), (10, 11), (0, 1)])
def test_partition_iid_bad_client_count_raises(num_samples: int, num_clients: int) -> None:
    with pytest.raises(DataError):
        partition_iid(num_samples, num_clients, seed=0)


# --- Dirichlet partition -----------------------------------------------------------------------


@FAST
@given(
    data=st.data(),
    num_samples=st.integers(min_value=1, max_value=400),
    num_classes=st.integers(min_value=1, max_value=10),
    alpha=st.floats(min_value=0.01, max_value=100.0),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_partition_dirichlet_is_disjoint_and_complete(
    data: st.DataObject, num_samples: int, num_classes: int, alpha: float, seed: int
) -> None:
    labels = np.random.default_rng(seed).integers(0, num_classes, size=num_samples)
    num_clients = data.draw(
        st.integers(min_value=1, max_value=min(num_samples, 12)), label="num_clients"
    )
    parts = partition_dirichlet(labels, num_clients, alpha=alpha, seed=seed, min_samples=0)
    _check_partition(parts, num_samples, num_clients)


@FAST
@given(
    num_clients=st.integers(min_value=1, max_value=8),
    alpha=st.floats(min_value=0.3, max_value=50.0),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_partition_dirichlet_respects_min_samples(
    num_clients: int, alpha: float, seed: int
) -> None:
    labels = np.repeat(np.arange(10), 30)
    parts = partition_dirichlet(labels, num_clients, alpha=alpha, seed=seed, min_samples=5)
    _check_partition(parts, labels.shape[0], num_clients)
    assert min(part.shape[0] for part in parts) >= 5


def test_partition_dirichlet_is_seeded(digits: Dataset) -> None:
    labels = digits.y_train.numpy()
    first = partition_dirichlet(labels, 5, alpha=0.5, seed=4)
    second = partition_dirichlet(labels, 5, alpha=0.5, seed=4)
    other = partition_dirichlet(labels, 5, alpha=0.5, seed=5)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_small_alpha_is_more_skewed_than_iid(digits: Dataset) -> None:
    labels = digits.y_train.numpy()
    iid = partition_iid(labels.shape[0], 10, seed=0)
    skewed = partition_dirichlet(labels, 10, alpha=0.1, seed=0)
    iid_entropy = _mean_label_entropy(labels, iid, 10)
    skewed_entropy = _mean_label_entropy(labels, skewed, 10)
    # IID shards see all ten classes nearly uniformly (max entropy is log 10 ~ 2.303).
    assert iid_entropy > 0.95 * math.log(10)
    assert skewed_entropy < 0.6 * iid_entropy


def test_large_alpha_approaches_iid(digits: Dataset) -> None:
    labels = digits.y_train.numpy()
    near_iid = partition_dirichlet(labels, 5, alpha=1000.0, seed=0)
    assert _mean_label_entropy(labels, near_iid, 10) > 0.98 * math.log(10)


def test_dirichlet_gives_up_when_min_samples_is_unreachable() -> None:
    # With alpha this small each class lands almost whole on one client, so ten clients
    # cannot all receive ten samples from two classes.
    labels = np.repeat([0, 1], 50)
    with pytest.raises(DataError, match="attempts"):
        partition_dirichlet(labels, 10, alpha=1e-4, seed=0, min_samples=10)


def test_dirichlet_rejects_infeasible_min_samples() -> None:
    with pytest.raises(DataError, match="cannot give"):
        partition_dirichlet(np.zeros(20, dtype=np.int64), 5, alpha=1.0, seed=0, min_samples=5)


@pytest.mark.parametrize("alpha", [0.0, -1.0, math.nan, math.inf])
def test_dirichlet_bad_alpha_raises(alpha: float) -> None:
    with pytest.raises(DataError, match="alpha"):
        partition_dirichlet(np.arange(20) % 2, 2, alpha=alpha, seed=0)


@pytest.mark.parametrize("num_clients", [0, 21])
def test_dirichlet_bad_client_count_raises(num_clients: int) -> None:
    with pytest.raises(DataError, match="clients"):
        partition_dirichlet(np.arange(20) % 2, num_clients, alpha=1.0, seed=0)


def test_dirichlet_bad_labels_raise() -> None:
    with pytest.raises(DataError, match="1-D"):
        partition_dirichlet(np.zeros((4, 5), dtype=np.int64), 2, alpha=1.0, seed=0)
    with pytest.raises(DataError, match="integers"):
        partition_dirichlet(np.zeros(10), 2, alpha=1.0, seed=0)


def test_partition_negative_seed_raises() -> None:
    with pytest.raises(DataError, match="seed"):
        partition_iid(10, 2, seed=-3)
    with pytest.raises(DataError, match="seed"):
        partition_dirichlet(np.arange(10) % 2, 2, alpha=1.0, seed=-3)


# --- dispatch and shards -----------------------------------------------------------------------


def test_partition_dispatches_by_scheme(digits: Dataset) -> None:
    labels = digits.y_train.numpy()
    by_name = partition(labels, 4, scheme="iid", seed=2)
    direct = partition_iid(labels.shape[0], 4, seed=2)
    for a, b in zip(by_name, direct, strict=True):
        np.testing.assert_array_equal(a, b)
    by_name = partition(labels, 4, scheme="dirichlet", alpha=0.3, seed=2)
    direct = partition_dirichlet(labels, 4, alpha=0.3, seed=2)
    for a, b in zip(by_name, direct, strict=True):
        np.testing.assert_array_equal(a, b)


def test_partition_unknown_scheme_raises() -> None:
    with pytest.raises(DataError, match="unknown partition scheme"):
        partition(np.arange(10) % 2, 2, scheme="shards", seed=0)


@pytest.mark.parametrize("scheme", ["iid", "dirichlet"])
def test_make_shards_cover_the_training_split(digits: Dataset, scheme: str) -> None:
    shards = make_shards(digits, 5, scheme=scheme, alpha=0.5, seed=1)
    assert len(shards) == 5
    assert sum(shard.num_samples for shard in shards) == digits.x_train.shape[0]
    total_counts = sum(np.bincount(shard.y.numpy(), minlength=10) for shard in shards)
    np.testing.assert_array_equal(total_counts, np.bincount(digits.y_train.numpy()))
    parts = partition(digits.y_train.numpy(), 5, scheme=scheme, alpha=0.5, seed=1)
    for shard, part in zip(shards, parts, strict=True):
        assert shard.x.dtype == torch.float32
        assert shard.y.dtype == torch.int64
        assert torch.equal(shard.x, digits.x_train[torch.from_numpy(part)])
        assert torch.equal(shard.y, digits.y_train[torch.from_numpy(part)])


def test_make_shards_bad_arguments_raise(digits: Dataset) -> None:
    with pytest.raises(DataError):
        make_shards(digits, 0)
    with pytest.raises(DataError):
        make_shards(digits, 3, scheme="pathological")
    with pytest.raises(DataError):
        make_shards(digits, 3, scheme="dirichlet", alpha=0.0)


def test_shard_shape_mismatch_raises() -> None:
    with pytest.raises(ShapeError):
        Shard(x=torch.zeros(4, 3), y=torch.zeros(5, dtype=torch.int64))
    with pytest.raises(ShapeError):
        Shard(x=torch.zeros(4), y=torch.zeros(4, dtype=torch.int64))
    assert Shard(x=torch.zeros(4, 3), y=torch.zeros(4, dtype=torch.int64)).num_samples == 4
