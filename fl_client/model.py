"""The model every client trains, and its parameters as one flat vector.

The model is multinomial logistic (softmax) regression: a single :class:`torch.nn.Linear` layer
producing logits (the softmax lives in the cross-entropy loss), or, with hidden layers, a
multi-layer perceptron (Linear and ReLU). The flat vector is what crosses
the wire: :func:`get_flat_parameters` and :func:`set_flat_parameters` convert between a model
and a ``float64`` vector holding the parameters in ``model.parameters()`` order, each flattened
row-major (for the linear layer: the ``(out, in)`` weight matrix, then the bias).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from typing import Final

import numpy as np
import torch

from fl_client.errors import ConfigError, NonFiniteWeightError, ShapeError

__all__ = [
    "INIT_STD",
    "build_model",
    "get_flat_parameters",
    "num_parameters",
    "set_flat_parameters",
]

logger = logging.getLogger(__name__)

#: Standard deviation of the normal distribution the weights are drawn from.
INIT_STD: Final = 0.01


def build_model(
    num_features: int, num_classes: int, *, seed: int, hidden: Sequence[int] = ()
) -> torch.nn.Module:
    """Build a softmax-regression model (or an MLP) with seeded initial weights.

    Parameters
    ----------
    num_features : int
        Input size, at least 1.
    num_classes : int
        Number of classes (output logits), at least 2.
    seed : int
        Seed of the weight initialisation; the global random state is neither read nor changed.
    hidden : sequence of int, optional
        Widths of hidden layers (ReLU after each); none gives softmax regression.

    Returns
    -------
    torch.nn.Module
        Without hidden layers a ``torch.nn.Linear(num_features, num_classes)`` with weights drawn
        from ``Normal(0, INIT_STD)`` and zero bias; with them a ``torch.nn.Sequential`` of Linear
        and ReLU layers, hidden weights drawn He-normal (``std = sqrt(2 / fan_in)``), the output
        layer's from ``Normal(0, INIT_STD)``, biases zero.

    Raises
    ------
    ConfigError
        If a size is out of range.
    """
    if num_features < 1:
        raise ConfigError(f"num_features must be >= 1, got {num_features}")
    if num_classes < 2:
        raise ConfigError(f"num_classes must be >= 2, got {num_classes}")
    if any(isinstance(width, bool) or not isinstance(width, int) or width < 1 for width in hidden):
        raise ConfigError(f"hidden layer widths must be positive integers, got {list(hidden)}")
    generator = torch.Generator().manual_seed(seed)
    sizes = [num_features, *hidden, num_classes]
    layers: list[torch.nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        # Created on the meta device so torch's default initialisation, which draws from the
        # global generator, never runs; the parameters are then filled from our own generator.
        linear = torch.nn.Linear(fan_in, fan_out, device="meta").to_empty(device="cpu")
        last = index == len(sizes) - 2
        with torch.no_grad():
            linear.weight.normal_(
                0.0, INIT_STD if last else math.sqrt(2.0 / fan_in), generator=generator
            )
            linear.bias.zero_()
        layers.append(linear)
        if not last:
            layers.append(torch.nn.ReLU())
    return layers[0] if len(layers) == 1 else torch.nn.Sequential(*layers)


def num_parameters(model: torch.nn.Module) -> int:
    """Return the total number of scalar parameters of ``model``."""
    return sum(parameter.numel() for parameter in model.parameters())


def get_flat_parameters(model: torch.nn.Module) -> np.ndarray:
    """Return the model's parameters as one ``float64`` vector.

    Parameters
    ----------
    model : torch.nn.Module
        The model.

    Returns
    -------
    numpy.ndarray
        A new 1-D ``float64`` array of length :func:`num_parameters`, the parameters in
        ``model.parameters()`` order, each flattened row-major.
    """
    pieces = [
        parameter.detach().cpu().numpy().astype(np.float64).ravel()
        for parameter in model.parameters()
    ]
    if not pieces:
        return np.zeros(0, dtype=np.float64)
    return np.concatenate(pieces)


def set_flat_parameters(model: torch.nn.Module, flat: np.ndarray) -> None:
    """Overwrite the model's parameters from a flat vector (inverse of :func:`get_flat_parameters`).

    Values are cast to each parameter's dtype (``float32`` for the default model).

    Parameters
    ----------
    model : torch.nn.Module
        The model, modified in place.
    flat : numpy.ndarray
        1-D vector of length :func:`num_parameters`.

    Raises
    ------
    ShapeError
        If ``flat`` is not 1-D or has the wrong length.
    NonFiniteWeightError
        If ``flat`` holds a NaN or an infinity. The model is left unchanged on any error.
    """
    vector = np.array(flat, dtype=np.float64)  # a private, writable copy
    if vector.ndim != 1:
        raise ShapeError(f"flat parameters must be 1-D, got shape {vector.shape}")
    expected = num_parameters(model)
    if vector.shape[0] != expected:
        raise ShapeError(f"expected {expected} parameters, got {vector.shape[0]}")
    finite = np.isfinite(vector)
    if not finite.all():
        first = int(np.flatnonzero(~finite)[0])
        raise NonFiniteWeightError(
            f"{int((~finite).sum())} non-finite parameter(s), first at index {first}: "
            f"{vector[first]}"
        )
    converted: list[torch.Tensor] = []
    offset = 0
    for parameter in model.parameters():
        size = parameter.numel()
        chunk = torch.from_numpy(vector[offset : offset + size].reshape(parameter.shape))
        converted.append(chunk.to(dtype=parameter.dtype, device=parameter.device))
        offset += size
        if not bool(torch.isfinite(converted[-1]).all()):
            raise NonFiniteWeightError(
                f"a parameter overflows {parameter.dtype} (largest magnitude "
                f"{float(np.abs(vector[offset - size : offset]).max())})"
            )
    with torch.no_grad():
        for parameter, value in zip(model.parameters(), converted, strict=True):
            parameter.copy_(value)
