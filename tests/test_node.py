"""The local node: anvil started by fl_client.node and by ``python -m fl_client node``.

Every anvil here listens on a free port of 127.0.0.1 and is stopped by its process id, also when
a test fails. Node records and logs go to a temporary ``FL_STATE_DIR``.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from fl_client.cli import main
from fl_client.config import PROJECT_ROOT, NetworkConfig, load_config
from fl_client.errors import ChainError
from fl_client.node import (
    HOST,
    NodeRecord,
    anvil_command,
    free_port,
    node_record_path,
    port_is_free,
    read_node_record,
    start_anvil,
    stop_process,
    stop_recorded_node,
    write_node_record,
)

pytestmark = pytest.mark.anvil

EIP_7825_CAP = 2**24
# `python -m fl_client ...` with SIGINT's default handler, even when this test run was started
# with SIGINT ignored (a background job of a non-interactive shell), which the child inherits.
CLI = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'fl_client'; runpy.run_module('fl_client', run_name='__main__')"
)


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private place for node records and logs (``FL_STATE_DIR``)."""
    directory = tmp_path / "state"
    monkeypatch.setenv("FL_STATE_DIR", str(directory))
    return directory


@pytest.fixture(scope="module")
def anvil_network() -> NetworkConfig:
    return load_config().network("anvil")


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 with something listening on it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((HOST, 0))
        listener.listen(1)
        yield int(listener.getsockname()[1])


def _rpc(url: str, method: str, *params: object) -> object:
    response = requests.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=5
    )
    body = response.json()
    if "error" in body:
        return {"error": body["error"]}
    return body["result"]


def _cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CLI, *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_record(path: Path, timeout: float = 20.0) -> NodeRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            try:
                return NodeRecord(**json.loads(path.read_text(encoding="utf-8")))
            except ValueError:
                pass  # being written
        time.sleep(0.05)
    raise AssertionError(f"no node record at {path} after {timeout} s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ---------------------------------------------------------------- fl_client.node


def test_anvil_starts_by_mainnet_rules_and_stops_by_pid(
    state_dir: Path, anvil_network: NetworkConfig
) -> None:
    # Prepare
    port = free_port()
    process, info = start_anvil(anvil_network, port=port)
    try:
        # Execute
        record = read_node_record("anvil")
        chain_id = _rpc(info.url, "eth_chainId")
        block = _rpc(info.url, "eth_getBlockByNumber", "latest", False)
        accounts = _rpc(info.url, "eth_accounts")
        assert isinstance(accounts, list)
        assert isinstance(block, dict)
        over_cap = _rpc(
            info.url,
            "eth_sendTransaction",
            {"from": accounts[0], "to": accounts[1], "gas": hex(EIP_7825_CAP + 1)},
        )
        at_cap = _rpc(
            info.url,
            "eth_sendTransaction",
            {"from": accounts[0], "to": accounts[1], "gas": hex(EIP_7825_CAP)},
        )
    finally:
        stop_process(info.pid)
        process.wait()
    # Assert: recorded, on 127.0.0.1, the configured chain id and block gas limit, the
    # per-transaction cap of EIP-7825 enforced; and gone once stopped
    assert record == info
    assert info.url == f"http://127.0.0.1:{port}"
    assert info.pid == process.pid
    assert node_record_path("anvil").parent == state_dir
    assert int(str(chain_id), 16) == 31337
    assert int(block["gasLimit"], 16) == anvil_network.gas_limit == 60_000_000
    assert len(accounts) == anvil_network.accounts
    assert isinstance(over_cap, dict)
    assert "error" in over_cap
    assert isinstance(at_cap, str)
    assert at_cap.startswith("0x")
    assert not _alive(info.pid)
    assert port_is_free(port)
    assert read_node_record("anvil") is None  # the record of a stopped node is ignored


def test_anvil_command_carries_the_settings(anvil_network: NetworkConfig) -> None:
    command = anvil_command(anvil_network, port=8600, block_time=2, accounts=105)
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "8600"
    assert command[command.index("--gas-limit") + 1] == "60000000"
    assert "--enable-tx-gas-limit" in command
    assert command[command.index("--block-time") + 1] == "2"
    assert command[command.index("--accounts") + 1] == "105"
    assert command[command.index("--chain-id") + 1] == "31337"
    assert "--block-time" not in anvil_command(anvil_network, port=8600)  # instant mining


def test_a_block_time_mines_blocks_without_transactions(
    state_dir: Path, anvil_network: NetworkConfig
) -> None:
    process, info = start_anvil(anvil_network, port=free_port(), block_time=1, record=False)
    try:
        first = int(str(_rpc(info.url, "eth_blockNumber")), 16)
        time.sleep(2.5)
        later = int(str(_rpc(info.url, "eth_blockNumber")), 16)
    finally:
        stop_process(info.pid)
        process.wait()
    assert info.block_time == 1
    assert later >= first + 2


def test_a_busy_port_fails_with_a_clear_error(
    state_dir: Path, anvil_network: NetworkConfig, busy_port: int
) -> None:
    with pytest.raises(ChainError, match=f"port {busy_port} on 127.0.0.1 is already in use"):
        start_anvil(anvil_network, port=busy_port)
    assert read_node_record("anvil") is None


def test_an_anvil_that_fails_to_start_says_why(
    state_dir: Path, anvil_network: NetworkConfig
) -> None:
    port = free_port()
    with pytest.raises(ChainError, match=r"anvil exited with code \d+ before it answered: .*"):
        start_anvil(anvil_network, port=port, extra_args=["--no-such-option"])
    assert port_is_free(port)
    assert read_node_record("anvil") is None


def test_a_stale_record_is_ignored(state_dir: Path) -> None:
    # A node that was killed: its process is gone, its port is free.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    port = free_port()
    write_node_record(
        NodeRecord(
            network="anvil", port=port, pid=dead.pid, url=f"http://{HOST}:{port}", block_time=0
        )
    )
    assert node_record_path("anvil").exists()
    assert read_node_record("anvil") is None


def test_a_detached_node_runs_in_its_own_session_and_stops_by_its_record(
    state_dir: Path, anvil_network: NetworkConfig
) -> None:
    # Prepare
    port = free_port()
    process, info = start_anvil(anvil_network, port=port, detach=True)
    try:
        # Execute
        record = read_node_record("anvil")
        session = os.getsid(info.pid)
        answered = _rpc(info.url, "eth_chainId")
        stopped = stop_recorded_node("anvil")
        process.wait(timeout=10)
        again = stop_recorded_node("anvil")
    finally:
        if _alive(info.pid):
            stop_process(info.pid)
    # Assert: its own session (a shell's Ctrl-C or its end does not reach it), a log beside its
    # record; stopped by the record, which is gone with it
    assert record == info
    assert session == info.pid != os.getsid(0)
    assert answered == hex(31337)
    assert (state_dir / "node-anvil.log").exists()
    assert stopped == info
    assert again is None
    assert not node_record_path("anvil").exists()
    assert not _alive(info.pid)
    assert port_is_free(port)


def test_stopping_when_no_node_runs_removes_a_stale_record(state_dir: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    port = free_port()
    write_node_record(
        NodeRecord(
            network="anvil", port=port, pid=dead.pid, url=f"http://{HOST}:{port}", block_time=0
        )
    )
    assert stop_recorded_node("anvil") is None
    assert not node_record_path("anvil").exists()


# ---------------------------------------------------------------- python -m fl_client node


# The command drops its handle on the detached node, which outlives it by design. The handle sits
# in a reference cycle (the frames of requests' connection errors while the node starts), so the
# test collects it here, under this filter: left to a later collection, its warning would fail
# whichever test of this worker runs then.
@pytest.mark.filterwarnings("ignore:subprocess \\d+ is still running:ResourceWarning")
def test_node_background_returns_once_it_answers_and_node_stop_stops_it(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    port = free_port()
    info: NodeRecord | None = None
    try:
        # Execute
        started = main(["node", "--background", "--port", str(port)])
        gc.collect()
        out = capsys.readouterr().out
        info = read_node_record("anvil")
        answered = None if info is None else _rpc(info.url, "eth_chainId")
        stopped = main(["node", "--stop"])
        stop_out = capsys.readouterr().out
        again = main(["node", "--stop"])
        again_out = capsys.readouterr().out
    finally:
        if info is not None and _alive(info.pid):
            stop_process(info.pid)
    # Assert
    assert started == stopped == again == 0
    assert info is not None
    assert answered == hex(31337)
    assert out == (
        f"anvil running on http://127.0.0.1:{port} (pid {info.pid}, chain id 31337); "
        "stop it with `python -m fl_client node --stop`\n"
    )
    assert stop_out == f"stopped the anvil node (pid {info.pid})\n"
    assert again_out == "no anvil node was running\n"
    assert not _alive(info.pid)
    assert port_is_free(port)
    assert (state_dir / "node-anvil.log").exists()  # its output, beside its record


def test_node_background_on_a_busy_port_is_one_line(
    state_dir: Path, busy_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["node", "--background", "--port", str(busy_port)]) == 1
    captured = capsys.readouterr()
    assert captured.err == (
        f"error: port {busy_port} on 127.0.0.1 is already in use: is a node already running? "
        "(stop it, or pass --port)\n"
    )
    assert captured.out == ""
    assert read_node_record("anvil") is None


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_the_node_command_runs_until_interrupted(state_dir: Path, stop_signal: int) -> None:
    # Prepare
    port = free_port()
    env = {**os.environ, "FL_STATE_DIR": str(state_dir)}
    command = _cli(["node", "--port", str(port), "--block-time", "1"], env)
    info: NodeRecord | None = None
    try:
        info = _wait_for_record(node_record_path("anvil"))
        answered = _rpc(info.url, "eth_chainId")
        # Execute
        command.send_signal(stop_signal)
        out, err = command.communicate(timeout=20)
    finally:
        if command.poll() is None:  # the test failed: SIGTERM lets the command stop its anvil
            command.terminate()
            try:
                command.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                command.kill()
                command.communicate()
        if info is None and node_record_path("anvil").exists():
            info = _wait_for_record(node_record_path("anvil"), timeout=1)
        if info is not None and _alive(info.pid):
            stop_process(info.pid)
    # Assert: it announced the node, answered, stopped anvil and exited cleanly
    assert answered == hex(31337)
    assert info.port == port
    assert info.block_time == 1
    assert f"anvil running on http://127.0.0.1:{port} (pid {info.pid}" in out
    assert "block time 1" in out
    assert "anvil stopped" in out, err
    assert command.returncode == 0, err
    assert not _alive(info.pid)
    assert port_is_free(port)


def test_the_node_command_on_a_busy_port_exits_1_with_a_message(
    state_dir: Path, busy_port: int
) -> None:
    env = {**os.environ, "FL_STATE_DIR": str(state_dir)}
    command = _cli(["node", "--port", str(busy_port)], env)
    out, err = command.communicate(timeout=30)
    assert command.returncode == 1
    assert f"error: port {busy_port} on 127.0.0.1 is already in use" in err
    assert "anvil running" not in out


def test_the_node_command_in_process_reports_a_busy_port(
    state_dir: Path, busy_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["node", "--port", str(busy_port)])
    captured = capsys.readouterr()
    assert code == 1
    assert "already in use" in captured.err
    assert captured.out == ""
