"""The task interface: loading (built-in, module, file, attribute), every missing piece one by one,
the checks on what a task returns, the trainer that adapts a task, and the settings that carry
the task (configuration, command line, deployment record)."""

from __future__ import annotations

import json
import random
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from fl_client.chain.records import DeploymentRecord, read_record, write_record
from fl_client.cli import build_parser, deployment_settings, fl_overrides
from fl_client.config import load_config
from fl_client.data import load_dataset, make_shards, partition
from fl_client.errors import ClientStateError, ConfigError
from fl_client.federated import run_plain_federated, run_task_federated
from fl_client.model import get_flat_parameters, num_parameters
from fl_client.simulation import data_spec, task_of
from fl_client.tasks import (
    BUILTIN_TASKS,
    ClassifierTask,
    DataSpec,
    LoadedTask,
    TaskError,
    TaskTrainer,
    client_indices,
    load_task,
    make_trainer,
)
from fl_client.tasks.base import REQUIRED_PIECES
from fl_client.trainer import ShardTrainer
from fl_client.training import TrainConfig, client_seed, seeded_global_rngs

CONFIG = TrainConfig(epochs=1, batch_size=10, learning_rate=0.3)

# A complete task on a small synthetic problem, one function per entry so a test can drop one.
HEADER = """
import torch
import torch.nn.functional as F
NAME = "tiny"
"""
PIECES = {
    "build_model": """
def build_model(seed):
    torch.manual_seed(seed)  # the loader seeds and restores the global generator around this
    return torch.nn.Linear(4, 2)
""",
    "load_data": """
def load_data(client, spec):
    generator = torch.Generator().manual_seed(1000 * spec.seed + client)
    x = torch.randn(30 + client, 4, generator=generator)
    return x, (x[:, 0] > 0).long()
""",
    "load_test_data": """
def load_test_data(spec):
    generator = torch.Generator().manual_seed(99)
    x = torch.randn(50, 4, generator=generator)
    return x, (x[:, 0] > 0).long()
""",
    "train": """
def train(net, data, config, seed):
    x, y = data
    optimizer = torch.optim.SGD(net.parameters(), lr=config.learning_rate)
    order = torch.randperm(len(y))  # the global generator: seeded by the loader per round
    for _ in range(config.epochs):
        for start in range(0, len(y), config.batch_size):
            index = order[start : start + config.batch_size]
            optimizer.zero_grad()
            loss = F.cross_entropy(net(x[index]), y[index])
            loss.backward()
            optimizer.step()
    return float(loss.detach()), len(y)
""",
    "test": """
def test(net, data):
    x, y = data
    logits = net(x)
    return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())
""",
}


def _task_source(*, drop: str = "", replace: dict[str, str] | None = None) -> str:
    pieces = {**PIECES, **(replace or {})}
    return HEADER + "".join(text for name, text in pieces.items() if name != drop)


def _write(directory: Path, source: str, name: str = "task.py") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


@pytest.fixture
def tiny_task(tmp_path: Path) -> LoadedTask:
    return load_task(str(_write(tmp_path, _task_source())))


# ---------------------------------------------------------------- loading


@pytest.mark.parametrize(("name", "weights"), [("digits", 650), ("mnist5k", 7850)])
def test_builtin_tasks_are_task_modules_of_the_same_interface(name: str, weights: int) -> None:
    # Execute
    task = load_task(name)
    # Assert
    assert isinstance(task.source, ModuleType)
    assert task.source.__name__ == BUILTIN_TASKS[name]
    assert (task.name, task.reference, task.client_fn) == (name, name, None)
    assert num_parameters(task.model(seed=0)) == weights


def test_builtin_tasks_load_by_module_name_too() -> None:
    by_name = load_task("fl_client.tasks.digits")
    assert by_name.source is load_task("digits").source
    assert by_name.name == "digits"


def test_hidden_layers_make_the_builtin_model_an_mlp() -> None:
    task = load_task("digits", hidden_layers=[32])
    assert isinstance(task.source, ClassifierTask)
    assert num_parameters(task.model(seed=0)) == 64 * 32 + 32 + 32 * 10 + 10


def test_hidden_layers_with_a_user_task_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, _task_source())
    with pytest.raises(TaskError, match=r"hidden_layers \[32\] apply to the built-in tasks only"):
        load_task(str(path), hidden_layers=[32])


def test_a_good_task_file_loads_with_its_name_and_trains(tiny_task: LoadedTask) -> None:
    # Prepare
    spec = DataSpec(num_clients=2)
    trainer = TaskTrainer(tiny_task, client=1, spec=spec, config=CONFIG, seed=0)
    start = get_flat_parameters(tiny_task.model(seed=0))
    # Execute
    fit = trainer.fit(start, round_number=1)
    # Assert
    assert tiny_task.name == "tiny"
    assert tiny_task.client_fn is None
    assert trainer.num_weights == 10
    assert trainer.num_samples == 31
    assert fit.weights.shape == (10,)
    assert not np.array_equal(fit.weights, start)
    assert np.isfinite(fit.loss)


def test_a_task_file_is_loaded_once(tmp_path: Path) -> None:
    path = _write(tmp_path, _task_source())
    assert load_task(str(path)).source is load_task(str(path)).source


def test_a_good_task_module_loads_by_dotted_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    package = tmp_path / "mytasks"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    _write(package, _task_source())
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mytasks", raising=False)
    # Execute
    task = load_task("mytasks.task")
    # Assert
    assert task.reference == "mytasks.task"
    assert task.name == "tiny"
    assert task.evaluate(task.model(seed=0), task.test_data(DataSpec(num_clients=1))).loss > 0


def test_an_object_in_a_module_loads_with_a_colon(tmp_path: Path) -> None:
    source = _task_source() + textwrap.dedent("""
        class Holder:
            NAME = "held"
        for _name in ("build_model", "load_data", "load_test_data", "train", "test"):
            setattr(Holder, _name, staticmethod(globals()[_name]))
        HELD = Holder()
    """)
    path = _write(tmp_path, source)
    task = load_task(f"{path}:HELD")
    assert task.name == "held"


@pytest.mark.parametrize("piece", [p.name for p in REQUIRED_PIECES])
def test_each_missing_piece_is_named_with_its_signature(tmp_path: Path, piece: str) -> None:
    # Prepare
    path = _write(tmp_path, _task_source(drop=piece))
    expected = next(p for p in REQUIRED_PIECES if p.name == piece)
    # Execute
    with pytest.raises(TaskError) as caught:
        load_task(str(path))
    # Assert
    message = str(caught.value)
    assert f"missing `{piece}`: define `def {expected.signature}`" in message
    assert expected.role in message
    assert str(path) in message
    assert message.count("  - ") == 1  # only the one missing piece is reported


def test_every_missing_piece_is_listed_at_once(tmp_path: Path) -> None:
    path = _write(tmp_path, HEADER + PIECES["build_model"])
    with pytest.raises(TaskError) as caught:
        load_task(str(path))
    assert str(caught.value).count("  - missing") == len(REQUIRED_PIECES) - 1


def test_a_piece_that_is_not_a_function_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, _task_source(replace={"test": "\ntest = 0.5\n"}))
    with pytest.raises(TaskError, match=r"`test` is a float, not a function: define `def test\("):
        load_task(str(path))


def test_a_piece_with_the_wrong_parameters_is_refused(tmp_path: Path) -> None:
    # Flower's train(net, trainloader, epochs, device) has four parameters; ours has no epochs
    # alone: a three-parameter train cannot take (model, data, config, seed).
    wrong = "\ndef train(net, trainloader, epochs):\n    return 0.0, 1\n"
    path = _write(tmp_path, _task_source(replace={"train": wrong}))
    with pytest.raises(
        TaskError,
        match=r"`train\(net, trainloader, epochs\)` cannot be called as "
        r"train\(model, data, config, seed\)",
    ):
        load_task(str(path))


def test_a_client_fn_with_the_wrong_parameters_is_refused(tmp_path: Path) -> None:
    source = _task_source() + "\ndef client_fn(context):\n    return None\n"
    path = _write(tmp_path, source)
    with pytest.raises(TaskError, match=r"`client_fn\(context\)` cannot be called as client_fn"):
        load_task(str(path))


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match=r"task file '.*nowhere/task.py' does not exist"):
        load_task(str(tmp_path / "nowhere" / "task.py"))


def test_a_missing_module_is_named() -> None:
    with pytest.raises(TaskError, match=r"no task module 'no_such_package.task'"):
        load_task("no_such_package.task")


def test_a_task_that_fails_to_import_says_why(tmp_path: Path) -> None:
    path = _write(tmp_path, "import no_such_dependency_here\n", name="broken.py")
    with pytest.raises(TaskError, match=r"failed to import: ModuleNotFoundError"):
        load_task(str(path))


def test_a_missing_attribute_after_the_colon_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, _task_source())
    with pytest.raises(TaskError, match=r"has no attribute 'TASK'"):
        load_task(f"{path}:TASK")


def test_an_empty_reference_is_refused() -> None:
    with pytest.raises(TaskError, match="non-empty string"):
        load_task("  ")


# ---------------------------------------------------------------- what a task returns


def test_a_flower_style_train_that_returns_only_the_loss_is_refused(tmp_path: Path) -> None:
    # Prepare
    flower_style = PIECES["train"].replace("return float(loss.detach()), len(y)", "return 0.5")
    task = load_task(str(_write(tmp_path, _task_source(replace={"train": flower_style}))))
    trainer = TaskTrainer(task, client=0, spec=DataSpec(num_clients=1), config=CONFIG, seed=0)
    # Execute / Assert
    with pytest.raises(TaskError, match=r"train returned 0.5; it must return a tuple \(loss, num"):
        trainer.fit(get_flat_parameters(trainer.model), round_number=1)


def test_a_train_that_declares_no_samples_is_refused(tmp_path: Path) -> None:
    zero = PIECES["train"].replace("return float(loss.detach()), len(y)", "return 0.5, 0")
    task = load_task(str(_write(tmp_path, _task_source(replace={"train": zero}))))
    trainer = TaskTrainer(task, client=0, spec=DataSpec(num_clients=1), config=CONFIG, seed=0)
    with pytest.raises(TaskError, match="sample count; it must be a positive int"):
        trainer.fit(get_flat_parameters(trainer.model), round_number=1)


def test_an_accuracy_outside_zero_to_one_is_refused(tmp_path: Path) -> None:
    percent = "\ndef test(net, data):\n    return 0.1, 95.0\n"
    task = load_task(str(_write(tmp_path, _task_source(replace={"test": percent}))))
    with pytest.raises(TaskError, match=r"accuracy 95.0; it must lie in \[0, 1\]"):
        task.evaluate(task.model(seed=0), None)


def test_a_build_model_that_returns_no_module_is_refused(tmp_path: Path) -> None:
    weights = "\ndef build_model(seed):\n    return [0.0, 1.0]\n"
    task = load_task(str(_write(tmp_path, _task_source(replace={"build_model": weights}))))
    with pytest.raises(TaskError, match=r"build_model returned list, not a torch\.nn\.Module"):
        task.model(seed=0)


def test_a_client_outside_the_split_is_refused(tiny_task: LoadedTask) -> None:
    with pytest.raises(ConfigError, match=r"client must be in 0..1, got 2"):
        tiny_task.client_data(2, DataSpec(num_clients=2))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_clients", 0),
        ("partition", ""),
        ("dirichlet_alpha", 0.0),
        ("seed", -1),
        ("test_fraction", 1.0),
    ],
)
def test_data_spec_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        DataSpec(**{"num_clients": 2, field: value})  # type: ignore[arg-type]


# ---------------------------------------------------------------- the trainer, determinism


def test_the_trainer_declares_its_samples_only_after_training(tiny_task: LoadedTask) -> None:
    trainer = TaskTrainer(tiny_task, client=0, spec=DataSpec(num_clients=2), config=CONFIG, seed=0)
    with pytest.raises(ClientStateError, match="fit first"):
        _ = trainer.num_samples


def test_a_replayed_round_trains_the_same_weights_and_leaves_the_global_rng_alone(
    tiny_task: LoadedTask,
) -> None:
    # Prepare: this task draws from the global generators; the loader seeds them per round.
    spec = DataSpec(num_clients=2)
    start = get_flat_parameters(tiny_task.model(seed=3))
    torch.manual_seed(12345)
    before = torch.get_rng_state()
    # Execute
    first = TaskTrainer(tiny_task, client=0, spec=spec, config=CONFIG, seed=3)
    again = TaskTrainer(tiny_task, client=0, spec=spec, config=CONFIG, seed=3)
    round_one = first.fit(start, round_number=1).weights
    replayed = again.fit(start, round_number=1).weights
    round_two = again.fit(start, round_number=2).weights
    # Assert
    assert np.array_equal(round_one, replayed)
    assert not np.array_equal(round_one, round_two)
    assert torch.equal(torch.get_rng_state(), before)


def test_seeded_global_rngs_seed_and_restore_every_generator() -> None:
    def reseed() -> None:
        random.seed(1)
        np.random.seed(1)
        torch.manual_seed(1)

    def draw() -> tuple[float, float, float]:
        return random.random(), float(np.random.random()), float(torch.rand(1))

    reseed()
    with seeded_global_rngs(7):
        inside = draw()
    after = draw()
    with seeded_global_rngs(7):
        again = draw()
    reseed()
    assert inside == again
    assert after == draw()  # the outer streams continue as if nothing had run


def test_the_builtin_task_trains_exactly_as_the_shard_trainer() -> None:
    # Prepare
    task = load_task("digits")
    spec = DataSpec(num_clients=3, seed=0)
    dataset = load_dataset("digits", seed=0)
    shards = make_shards(dataset, 3, seed=0)
    start = get_flat_parameters(task.model(seed=0))
    # Execute
    through_task = TaskTrainer(task, client=2, spec=spec, config=CONFIG, seed=0)
    through_shard = ShardTrainer(
        shard=shards[2], num_features=64, num_classes=10, config=CONFIG, seed=0, client_id=2
    )
    # Assert
    assert np.array_equal(
        through_task.fit(start, round_number=4).weights,
        through_shard.fit(start, round_number=4).weights,
    )
    assert through_task.num_samples == shards[2].num_samples


def test_the_plain_reference_of_the_builtin_task_equals_the_shard_run() -> None:
    # Prepare
    dataset = load_dataset("digits", seed=0)
    shards = make_shards(dataset, 3, scheme="dirichlet", alpha=0.5, seed=0)
    spec = DataSpec(num_clients=3, partition="dirichlet", dirichlet_alpha=0.5, seed=0)
    # Execute
    by_task = run_task_federated(
        load_task("digits"), spec, rounds=2, config=CONFIG, seed=0, aggregation="weighted"
    )
    by_shards = run_plain_federated(
        dataset, shards, rounds=2, config=CONFIG, seed=0, aggregation="weighted"
    )
    # Assert
    assert np.array_equal(by_task.final_parameters, by_shards.final_parameters)
    assert [r.accuracy for r in by_task.rounds] == [r.accuracy for r in by_shards.rounds]
    assert by_task.rounds[-1].accuracy > 0.8


def test_the_plain_reference_runs_a_user_task(tiny_task: LoadedTask) -> None:
    result = run_task_federated(tiny_task, DataSpec(num_clients=3), rounds=3, config=CONFIG, seed=0)
    assert [r.participants for r in result.rounds] == [(0, 1, 2)] * 3
    assert result.rounds[-1].accuracy > 0.8
    assert (
        make_trainer(
            tiny_task, client=0, spec=DataSpec(num_clients=3), config=CONFIG, seed=0
        ).num_weights
        == result.final_parameters.size
    )


@pytest.mark.parametrize("scheme", ["iid", "dirichlet"])
def test_client_indices_are_the_builtin_split(scheme: str) -> None:
    labels = load_dataset("digits", seed=0).y_train.numpy()
    spec = DataSpec(num_clients=4, partition=scheme, dirichlet_alpha=0.5, seed=2)
    parts = partition(labels, 4, scheme=scheme, alpha=0.5, seed=2)
    assert all(np.array_equal(client_indices(labels, c, spec), parts[c]) for c in range(4))


# ---------------------------------------------------------------- settings that carry the task


def test_the_configuration_names_the_task_or_defaults_to_the_dataset(tmp_path: Path) -> None:
    # Prepare
    text = Path("brownie-config.yaml").read_text(encoding="utf-8")
    custom = tmp_path / "custom.yaml"
    custom.write_text(
        text.replace("  task: null", "  task: examples/mnist_cnn/task.py"), encoding="utf-8"
    )
    # Execute
    default = load_config().fl
    named = load_config(custom).fl
    # Assert
    assert default.task is None
    assert default.task_reference == default.dataset == "digits"
    assert named.task_reference == "examples/mnist_cnn/task.py"
    assert task_of(default).name == "digits"
    assert data_spec(named) == DataSpec(num_clients=named.clients, seed=named.seed)


def test_a_blank_task_in_the_configuration_is_refused() -> None:
    with pytest.raises(ConfigError, match="task must name a task"):
        load_config().fl.with_overrides(task=" ")


def test_the_task_flag_overrides_the_configuration() -> None:
    args = build_parser().parse_args(["simulate", "--task", "examples/mnist_cnn/task.py"])
    assert fl_overrides(load_config(), args).task == "examples/mnist_cnn/task.py"


def _record(task: str | None) -> DeploymentRecord:
    return DeploymentRecord(
        network="anvil",
        chain_id=31337,
        address="0x" + "11" * 20,
        block_number=1,
        num_weights=20490,
        dataset="digits",
        deployer="0x" + "22" * 20,
        clients=3,
        rounds=2,
        task=task,
    )


def test_the_deployment_record_carries_the_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    monkeypatch.setenv("FL_DEPLOYMENTS_DIR", str(tmp_path))
    path = write_record(_record("examples/mnist_cnn/task.py"))
    args = build_parser().parse_args(["client", "--network", "anvil", "--account", "0"])
    # Execute
    _, record, fl = deployment_settings(load_config(), args, "client")
    # Assert
    assert json.loads(path.read_text(encoding="utf-8"))["task"] == "examples/mnist_cnn/task.py"
    assert record == read_record("anvil")
    assert fl.task_reference == "examples/mnist_cnn/task.py"
    assert (fl.clients, fl.rounds) == (3, 2)


def test_a_client_cannot_train_another_task_than_the_deployment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FL_DEPLOYMENTS_DIR", str(tmp_path))
    write_record(_record("examples/mnist_cnn/task.py"))
    args = build_parser().parse_args(
        ["client", "--network", "anvil", "--account", "0", "--task", "mnist5k"]
    )
    with pytest.raises(ConfigError, match="--task mnist5k differs from the deployment's"):
        deployment_settings(load_config(), args, "client")


def test_a_record_without_a_task_means_the_builtin_task_of_its_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Records written before tasks existed have no task key.
    monkeypatch.setenv("FL_DEPLOYMENTS_DIR", str(tmp_path))
    data = json.loads(_record(None).to_json())
    del data["task"]
    (tmp_path / "anvil.json").write_text(json.dumps(data), encoding="utf-8")
    args = build_parser().parse_args(
        ["client", "--network", "anvil", "--account", "0", "--task", "digits"]
    )
    _, record, fl = deployment_settings(load_config(), args, "client")
    assert record.task is None
    assert fl.task_reference == "digits"


def test_client_seeds_reach_a_task_per_client_and_round() -> None:
    # The seed a task's train receives is the run's per-client, per-round seed.
    seen: list[int] = []

    class Recording:
        def build_model(self, seed: int) -> torch.nn.Module:
            return torch.nn.Linear(2, 2)

        def load_data(self, client: int, spec: DataSpec) -> None:
            return None

        def load_test_data(self, spec: DataSpec) -> None:
            return None

        def train(
            self, model: torch.nn.Module, data: None, config: TrainConfig, seed: int
        ) -> tuple[float, int]:
            seen.append(seed)
            return 0.0, 1

        def test(self, model: torch.nn.Module, data: None) -> tuple[float, float]:
            return 0.0, 1.0

    task = LoadedTask("recording", "recording", Recording())
    trainer = TaskTrainer(task, client=1, spec=DataSpec(num_clients=2), config=CONFIG, seed=5)
    trainer.fit(np.zeros(6), round_number=3)
    assert seen == [client_seed(5, 1, 3)]
