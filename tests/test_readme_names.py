"""Every test the README names (its threats table cites one per line) exists in ``tests/``, and
every file and command of the project it names exists: a renamed or removed test, or a moved
module, fails here instead of leaving the README pointing at nothing."""

from __future__ import annotations

import ast
import re

from fl_client.config import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")


def defined_tests() -> set[str]:
    """The names of the test functions defined in ``tests/``."""
    names: set[str] = set()
    for path in (PROJECT_ROOT / "tests").glob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names.update(
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith("test_")
        )
    return names


def test_every_test_the_readme_names_exists() -> None:
    named = set(re.findall(r"`(test_[a-z0-9_]+)`", README))
    assert len(named) >= 30, "the README's threats table should cite its tests"
    missing = sorted(named - defined_tests())
    assert not missing, f"the README names tests that do not exist: {missing}"


def test_every_project_path_the_readme_names_exists() -> None:
    paths = set(
        re.findall(
            r"`((?:contracts|fl_client|tests|bench|tools|docs|examples|scripts)/[A-Za-z0-9_./-]+)`",
            README,
        )
    )
    assert len(paths) >= 10
    missing = sorted(p for p in paths if not (PROJECT_ROOT / p.rstrip("/")).exists())
    assert not missing, f"the README names paths that do not exist: {missing}"


def test_every_benchmark_the_readme_runs_exists() -> None:
    modules = set(re.findall(r"python -m (bench\.[a-z_]+)", README))
    assert {"bench.gas", "bench.incentives", "bench.privacy"} <= modules
    missing = sorted(
        m for m in modules if not (PROJECT_ROOT / (m.replace(".", "/") + ".py")).exists()
    )
    assert not missing, f"the README runs benchmarks that do not exist: {missing}"
