"""The build cache of fl_client.compile: a cache that cannot be read (missing, cut short by a
process that died while writing, not an object) is rebuilt, never a crash, and a write replaces
the file at once, so that clients started together on a fresh clone never read half of it.

The compiler itself is replaced by a stand-in that counts its calls: compiling the real sources
takes most of a minute, and every other test runs on the real build."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import solcx

from fl_client import compile as compile_module

FAKE_OUTPUT = {
    "contracts": {
        "contracts/A.sol": {
            "A": {
                "abi": [],
                "evm": {"bytecode": {"object": "6000"}, "deployedBytecode": {"object": "00"}},
            },
            "I": {"abi": [], "evm": {"bytecode": {"object": ""}, "deployedBytecode": {}}},
        }
    }
}


@pytest.fixture
def build_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "build" / "contracts.json"
    monkeypatch.setattr(compile_module, "BUILD_FILE", path)
    return path


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The calls to the stand-in compiler."""
    calls: list[int] = []

    def fake_compile(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(1)
        return FAKE_OUTPUT

    monkeypatch.setattr(solcx, "compile_standard", fake_compile)
    monkeypatch.setattr(compile_module, "find_compiler", lambda version: Path("/bin/true"))
    return calls


@pytest.mark.parametrize(
    "content",
    ["", '{"fingerprint": "abc", "contr', "[1, 2]", "\x00\x01"],
    ids=["empty", "cut-short", "not-an-object", "binary"],
)
def test_an_unreadable_cache_is_rebuilt_not_a_crash(
    build_file: Path, compiles: list[int], content: str
) -> None:
    build_file.parent.mkdir(parents=True)
    build_file.write_text(content, encoding="utf-8")
    contracts = compile_module.compile_contracts()
    assert list(contracts) == ["A"]  # the interface without bytecode is left out
    assert compiles == [1]
    rebuilt = json.loads(build_file.read_text(encoding="utf-8"))
    assert set(rebuilt["contracts"]) == {"A"}


def test_a_valid_cache_of_the_same_sources_is_read_without_compiling(
    build_file: Path, compiles: list[int]
) -> None:
    first = compile_module.compile_contracts()
    second = compile_module.compile_contracts()
    assert compiles == [1]
    assert second == first
    compile_module.compile_contracts(force=True)
    assert compiles == [1, 1]


def test_a_write_leaves_no_temporary_file_and_replaces_the_cache_whole(build_file: Path) -> None:
    compile_module._write_cache({"fingerprint": "one", "contracts": {}})
    compile_module._write_cache({"fingerprint": "two", "contracts": {}})
    assert [p.name for p in build_file.parent.iterdir()] == ["contracts.json"]
    assert compile_module._read_cache() == {"fingerprint": "two", "contracts": {}}


def test_readers_never_see_half_a_cache_while_another_process_writes(build_file: Path) -> None:
    """A writer and a reader at once: every read is a whole cache (or none yet), never a
    JSONDecodeError (a plain ``write_text`` truncates the file first, and the reader sees it
    empty or cut short)."""
    big = {"fingerprint": "x", "contracts": {f"C{i}": {"abi": ["y" * 200] * 50} for i in range(40)}}
    seen: list[object] = []
    stop = threading.Event()

    def read() -> None:  # the file as it is, parsed strictly: half a file raises
        while not stop.is_set():
            try:
                seen.append(json.loads(build_file.read_text(encoding="utf-8")))
            except FileNotFoundError:
                seen.append(None)
            except ValueError as exc:
                seen.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(30):
            compile_module._write_cache(big)
    finally:
        stop.set()
        reader.join()
    assert seen
    assert all(s is None or s == big for s in seen)
    assert any(s == big for s in seen)


def test_the_compiler_link_is_made_once_whoever_makes_it_at_the_same_time(tmp_path: Path) -> None:
    """Workers started together on a fresh clone all link the solc-js shim: none of them fails
    (a plain ``symlink_to`` after ``exists()`` raised FileExistsError in all but one). Eight
    threads make each of 20 fresh links at once."""
    target = tmp_path / "shim.js"
    target.write_text("shim", encoding="utf-8")
    folder = tmp_path / "solcx"
    folder.mkdir()
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def make() -> None:
        for version in range(20):
            start.wait()
            try:
                compile_module._link(folder / f"solc-v{version}", target)
            except BaseException as exc:  # recorded for the assertion
                errors.append(exc)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    links = sorted(folder.iterdir())
    assert [p.name for p in links] == sorted(f"solc-v{v}" for v in range(20))
    assert all(p.is_symlink() and p.resolve() == target.resolve() for p in links)


def test_a_link_to_another_file_is_replaced(tmp_path: Path) -> None:
    old, new = tmp_path / "old.js", tmp_path / "new.js"
    old.write_text("old", encoding="utf-8")
    new.write_text("new", encoding="utf-8")
    link = tmp_path / "solc-v0.8.28"
    link.symlink_to(old)
    compile_module._link(link, new)
    assert link.resolve() == new.resolve()
