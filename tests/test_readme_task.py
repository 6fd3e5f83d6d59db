"""The README's complete task example, as written: the ```python block between
``<!-- task-example -->`` and ``<!-- /task-example -->`` is a task file that loads, and the
command the README gives for it federates it through the chain."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fl_client.cli import main
from fl_client.config import PROJECT_ROOT
from fl_client.tasks import load_task
from fl_client.tasks.base import DataSpec

README = PROJECT_ROOT / "README.md"


def task_example() -> str:
    """The Python code between the task-example markers."""
    found = re.search(
        r"<!-- task-example -->\n```python\n(?P<code>.*?)```\n<!-- /task-example -->",
        README.read_text(encoding="utf-8"),
        flags=re.DOTALL,
    )
    assert found is not None, "README.md has no ```python block between the task-example markers"
    return found["code"]


def readme_command() -> list[str]:
    """The arguments of the README's ``simulate --task my_task.py`` command for the example."""
    found = re.search(
        r"^\.venv/bin/python -m fl_client (?P<args>simulate --task my_task\.py[^\n]*)$",
        README.read_text(encoding="utf-8"),
        flags=re.MULTILINE,
    )
    assert found is not None, "README.md does not show how to run my_task.py"
    return found["args"].split("#")[0].split()


@pytest.fixture
def my_task(tmp_path: Path) -> Path:
    path = tmp_path / "my_task.py"
    path.write_text(task_example(), encoding="utf-8")
    return path


def test_the_readme_task_loads_and_splits_its_data(my_task: Path) -> None:
    # Execute
    task = load_task(str(my_task))
    spec = DataSpec(num_clients=3)
    shards = [task.source.load_data(client, spec) for client in range(3)]
    # Assert: the three shards split the training set without overlap
    assert task.name.endswith("my_task.py")
    sizes = [len(y) for _, y in shards]
    assert min(sizes) > 100
    test_x, _ = task.source.load_test_data(spec)
    assert sum(sizes) + len(test_x) == 569  # scikit-learn's breast-cancer data


@pytest.mark.slow
def test_the_readme_task_runs_through_the_chain_as_the_readme_says(
    my_task: Path, tmp_path: Path
) -> None:
    # Prepare: the README's command, on the file written from the README, with fewer rounds
    args = readme_command()
    args[args.index("my_task.py")] = str(my_task)
    out = tmp_path / "out"
    # Execute
    code = main([*args, "--rounds", "2", "--out", str(out), "--quiet"])
    # Assert: the chain's model is the exact average, as accurate as plain FedAvg, and useful
    assert code == 0
    result = json.loads((out / "result.json").read_text(encoding="utf-8"))
    assert result["num_weights"] == 30 * 16 + 16 + 16 * 2 + 2
    assert [r["exact_average"] for r in result["rounds"]] == [True, True]
    assert abs(result["final_gap_pp"]) <= 1.0
    assert result["rounds"][-1]["accuracy_chain"] >= 0.9
    assert result["rounds"][-1]["accuracy_chain"] > result["initial_accuracy"]
