"""Load a task by name, check every piece, and call it safely.

``load_task("digits")`` and ``load_task("mnist5k")`` give the built-in tasks;
``load_task("mypackage.task")`` imports a module, ``load_task("path/to/task.py")`` a file, and
``"module:attribute"`` (or ``"path/to/file.py:attribute"``) takes an object from either. Every
required function is checked at load, so a missing or mis-declared piece fails at once with a
:class:`TaskError` that names it and shows the signature it should have. Pure core: no web3.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final, NamedTuple, cast

import torch

from fl_client.errors import ConfigError
from fl_client.tasks.base import (
    OPTIONAL_PIECES,
    REQUIRED_PIECES,
    ClientFactory,
    DataSpec,
    Piece,
    Task,
)
from fl_client.training import (
    Evaluation,
    TrainConfig,
    one_intra_op_thread,
    seeded_global_rngs,
)

__all__ = [
    "BUILTIN_TASKS",
    "Fitted",
    "LoadedTask",
    "TaskError",
    "as_task",
    "load_task",
    "validate_task",
]

logger = logging.getLogger(__name__)

#: The built-in tasks, by the name ``dataset`` gives them, and the module that defines each.
BUILTIN_TASKS: Final[dict[str, str]] = {
    "digits": "fl_client.tasks.digits",
    "mnist5k": "fl_client.tasks.mnist5k",
}


class TaskError(ConfigError):
    """A task cannot be loaded, lacks a piece, or returned something the interface does not allow."""


class Fitted(NamedTuple):
    """What a task's ``train`` returned, checked."""

    loss: float
    num_samples: int


@dataclass(frozen=True, eq=False)
class LoadedTask:
    """A task that passed the checks, and the calls the chain makes to it.

    Attributes
    ----------
    reference : str
        What the user named (``"digits"``, ``"mypackage.task"``, ``"path/to/task.py"``): the
        deployment record keeps it, so every client process loads the same task.
    name : str
        A short name for tables: the task's ``NAME`` if it defines one, else ``reference``.
    source : Task
        The module (or object) defining the functions.
    client_fn : ClientFactory or None
        The task's Flower client factory, when it defines one.
    """

    reference: str
    name: str
    source: Task
    client_fn: ClientFactory | None = None

    def model(self, *, seed: int) -> torch.nn.Module:
        """The task's model, built with the global generators seeded from ``seed``.

        Raises
        ------
        TaskError
            ``build_model`` did not return a module with parameters.
        """
        with seeded_global_rngs(seed):
            model = self.source.build_model(seed)
        if not isinstance(model, torch.nn.Module):
            raise TaskError(
                f"task {self.reference!r}: build_model returned {type(model).__name__}, "
                "not a torch.nn.Module"
            )
        if not any(True for _ in model.parameters()):
            raise TaskError(f"task {self.reference!r}: build_model's model has no parameters")
        return model

    def client_data(self, client: int, spec: DataSpec) -> Any:
        """Client ``client``'s training data.

        Raises
        ------
        ConfigError
            ``client`` is not in ``0 .. spec.num_clients - 1``.
        """
        if isinstance(client, bool) or not isinstance(client, int):
            raise ConfigError(f"client must be an integer, got {client!r}")
        if not 0 <= client < spec.num_clients:
            raise ConfigError(f"client must be in 0..{spec.num_clients - 1}, got {client}")
        return self.source.load_data(client, spec)

    def test_data(self, spec: DataSpec) -> Any:
        """The held-out set."""
        return self.source.load_test_data(spec)

    def fit(self, model: torch.nn.Module, data: Any, config: TrainConfig, *, seed: int) -> Fitted:
        """Train ``model`` in place with the task's ``train``.

        The global generators are seeded from ``seed`` (and restored afterwards) and torch runs on
        one intra-op thread, so the same seed gives bit-identical weights, in this process or a
        restarted one.

        Raises
        ------
        TaskError
            ``train`` did not return ``(loss, num_samples)`` with a positive sample count.
        """
        with one_intra_op_thread(), seeded_global_rngs(seed):
            returned = self.source.train(model, data, config, seed)
        pair = self._pair(returned, "train", "(loss, num_samples)")
        loss, samples = pair
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise TaskError(
                f"task {self.reference!r}: train returned {samples!r} as its sample count; it must "
                "be a positive int (the number of samples trained on, the FedAvg weight)"
            )
        return Fitted(self._number(loss, "train", "loss"), samples)

    def evaluate(self, model: torch.nn.Module, data: Any) -> Evaluation:
        """Test ``model`` on ``data`` with the task's ``test``.

        Raises
        ------
        TaskError
            ``test`` did not return ``(loss, accuracy)`` with the accuracy in ``[0, 1]``.
        """
        with torch.no_grad():
            returned = self.source.test(model, data)
        loss, accuracy = self._pair(returned, "test", "(loss, accuracy)")
        accuracy = self._number(accuracy, "test", "accuracy")
        if not 0.0 <= accuracy <= 1.0:
            raise TaskError(
                f"task {self.reference!r}: test returned accuracy {accuracy}; it must lie in [0, 1]"
            )
        return Evaluation(accuracy=accuracy, loss=self._number(loss, "test", "loss"))

    def _pair(self, returned: object, function: str, shape: str) -> tuple[Any, Any]:
        if not isinstance(returned, tuple | list) or len(returned) != 2:
            raise TaskError(
                f"task {self.reference!r}: {function} returned {returned!r}; it must return "
                f"a tuple {shape}"
            )
        return returned[0], returned[1]

    def _number(self, value: object, function: str, what: str) -> float:
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise TaskError(
                f"task {self.reference!r}: {function} returned {value!r} as its {what}; "
                "it must be a number"
            ) from None
        if what == "accuracy" and not math.isfinite(number):
            raise TaskError(f"task {self.reference!r}: test returned accuracy {number}")
        return number


def load_task(reference: str, *, hidden_layers: Sequence[int] = ()) -> LoadedTask:
    """Load and check a task.

    Parameters
    ----------
    reference : str
        A built-in task (``"digits"``, ``"mnist5k"``), a dotted module name
        (``"mypackage.task"``), a file path ending in ``.py`` (relative to the current
        directory), or either followed by ``:attribute`` to take an object from the module.
    hidden_layers : sequence of int, optional
        Hidden layer widths of the built-in tasks' model (none: softmax regression). A user's
        task builds its own model, so it takes none.

    Returns
    -------
    LoadedTask
        The task, every required piece present and callable as the chain calls it.

    Raises
    ------
    TaskError
        The task cannot be found or imported, or a piece is missing or has the wrong signature.
    """
    if not isinstance(reference, str) or not reference.strip():
        raise TaskError(f"a task must be named by a non-empty string, got {reference!r}")
    reference = reference.strip()
    hidden = tuple(hidden_layers)
    if reference in BUILTIN_TASKS:
        if hidden:
            from fl_client.tasks.builtin import ClassifierTask

            source: object = ClassifierTask(reference, hidden=hidden)
        else:
            source = _import_module(BUILTIN_TASKS[reference], reference)
    else:
        if hidden:
            raise TaskError(
                f"hidden_layers {list(hidden)} apply to the built-in tasks only; task "
                f"{reference!r} builds its own model (set hidden_layers to [])"
            )
        source = _resolve(reference)
    task = as_task(source, reference=reference)
    logger.debug("loaded task %s (%s)", task.name, reference)
    return task


def as_task(source: object, *, reference: str) -> LoadedTask:
    """Check an object (a module, a class instance, ...) as a task and wrap it.

    :func:`load_task` does this after importing; call it directly for a task built in code (a
    notebook, a test), then hand it to :func:`~fl_client.simulation.run_simulation` (``task=``).

    Raises
    ------
    TaskError
        A piece is missing or has the wrong signature.
    """
    client_fn = validate_task(source, reference)
    name = getattr(source, "NAME", None)
    return LoadedTask(
        reference=reference,
        name=name if isinstance(name, str) and name else reference,
        source=cast(Task, source),
        client_fn=client_fn,
    )


def validate_task(source: object, reference: str) -> ClientFactory | None:
    """Check that ``source`` defines every required piece; return its ``client_fn``, if any.

    Raises
    ------
    TaskError
        Listing every missing piece and every piece that cannot be called as the chain calls it,
        each with the signature it should have.
    """
    problems: list[str] = []
    for piece in REQUIRED_PIECES:
        problem = _check_piece(source, piece, required=True)
        if problem:
            problems.append(problem)
    for piece in OPTIONAL_PIECES:
        problem = _check_piece(source, piece, required=False)
        if problem:
            problems.append(problem)
    if problems:
        origin = _origin(source)
        where = f" ({origin})" if origin and origin != reference else ""
        raise TaskError(
            f"task {reference!r}{where} is incomplete:\n"
            + "\n".join(f"  - {problem}" for problem in problems)
            + "\nsee the README, 'Bring your own model and data'"
        )
    factory = getattr(source, "client_fn", None)
    return cast(ClientFactory, factory) if factory is not None else None


def _check_piece(source: object, piece: Piece, *, required: bool) -> str | None:
    function = getattr(source, piece.name, None)
    if function is None:
        return f"missing `{piece.name}`: define {piece.describe()}" if required else None
    if not callable(function):
        return (
            f"`{piece.name}` is a {type(function).__name__}, not a function: define "
            f"{piece.describe()}"
        )
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # some builtins have no signature: trust them
        return None
    try:
        signature.bind(*piece.arguments)
    except TypeError as exc:
        call = ", ".join(piece.parameters)
        return (
            f"`{piece.name}{signature}` cannot be called as {piece.name}({call}) ({exc}): "
            f"define {piece.describe()}"
        )
    return None


def _origin(source: object) -> str:
    path = getattr(source, "__file__", None)
    return str(path) if isinstance(path, str) else ""


def _resolve(reference: str) -> object:
    """The module or object that ``reference`` names."""
    location, _, attribute = reference.partition(":")
    if _is_path(location):
        module = _import_file(location, reference)
    else:
        module = _import_module(location, reference)
    if not attribute:
        return module
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise TaskError(f"task {reference!r}: {location} has no attribute {attribute!r}") from None


def _is_path(location: str) -> bool:
    return location.endswith(".py") or "/" in location or "\\" in location


def _import_module(name: str, reference: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise TaskError(
                f"no task module {name!r} ({exc}): name a module importable from the current "
                "directory or the installed packages (mypackage.task), or a file "
                "(path/to/task.py)"
            ) from None
        raise TaskError(f"task module {name!r} failed to import: {exc!r}") from exc
    except Exception as exc:
        raise TaskError(f"task module {name!r} failed to import: {exc!r}") from exc


def _import_file(location: str, reference: str) -> ModuleType:
    path = Path(location).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    path = path.resolve()
    if not path.is_file():
        raise TaskError(f"task file {location!r} does not exist ({path})")
    # One module per file, named after its path, so a file loaded twice is executed once and
    # dataclasses or pickling inside it find their module.
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    name = f"fl_task_{_identifier(path.stem)}_{digest}"
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TaskError(f"task file {location!r} cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise TaskError(f"task file {location!r} failed to import: {exc!r}") from exc
    return module


def _identifier(stem: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in stem) or "task"
