"""A local anvil node: start it with the configured settings, find it again, stop it.

anvil comes from npm (``@foundry-rs/anvil``, pinned in package.json) and listens on 127.0.0.1 only.
Mainnet's per-transaction gas cap (EIP-7825) is switched on so that everything runs by mainnet's
rules. The node's port and process id are recorded in ``.cache/node-<network>.json``; the
environment variable ``FL_STATE_DIR`` moves the records (tests and benchmarks use it to stay out
of the project's own records).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

import requests

from fl_client.config import PROJECT_ROOT, NetworkConfig
from fl_client.errors import ChainError, ConfigError, NodeUnreachableError

logger = logging.getLogger(__name__)

ANVIL = PROJECT_ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
ANVIL_FALLBACK = PROJECT_ROOT / "node_modules" / ".bin" / "anvil"
STATE_DIR = PROJECT_ROOT / ".cache"
STATE_DIR_VARIABLE = "FL_STATE_DIR"
HOST = "127.0.0.1"
READY_TIMEOUT = 15.0


@dataclass(frozen=True)
class NodeRecord:
    """Where a started node listens and which process it is."""

    network: str
    port: int
    pid: int
    url: str
    block_time: int


def state_dir() -> Path:
    """Where node records and logs live: ``$FL_STATE_DIR``, else the project's ``.cache``."""
    override = os.environ.get(STATE_DIR_VARIABLE)
    return Path(override) if override else STATE_DIR


def anvil_binary() -> Path:
    """The anvil executable installed by ``tools/setup.sh``."""
    for candidate in (ANVIL, ANVIL_FALLBACK):
        if candidate.exists():
            return candidate
    raise ConfigError(
        "anvil is not installed: run `bash tools/setup.sh` (npm install of @foundry-rs/anvil)"
    )


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether nothing listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = HOST) -> int:
    """A port the OS reports free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def anvil_command(
    network: NetworkConfig,
    *,
    port: int,
    block_time: int | None = None,
    accounts: int | None = None,
    state: Path | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The command line that starts anvil for ``network``.

    ``block_time`` (seconds, 0: a block per transaction) and ``accounts`` override the network's
    settings; ``state`` is a file the chain is loaded from (when it exists) and dumped to on exit.
    """
    seconds = network.block_time if block_time is None else block_time
    if seconds < 0:
        raise ConfigError(f"the block time must be >= 0 seconds, got {seconds}")
    command = [
        str(anvil_binary()),
        "--host",
        HOST,
        "--port",
        str(port),
        "--gas-limit",
        str(network.gas_limit),
        "--enable-tx-gas-limit",
        "--accounts",
        str(network.accounts if accounts is None else accounts),
        "--balance",
        str(network.balance_eth),
        "--silent",
    ]
    if network.expected_chain_id() is not None:
        command += ["--chain-id", str(network.expected_chain_id())]
    if network.mnemonic:
        command += ["--mnemonic", network.mnemonic]
    if seconds:
        command += ["--block-time", str(seconds)]
    if state is not None:
        command += ["--state", str(state)]
    return command + list(extra_args)


def wait_until_ready(
    url: str, *, timeout: float = READY_TIMEOUT, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll ``eth_chainId`` until the node answers.

    Raises
    ------
    ChainError
        ``process`` exited before the node answered.
    NodeUnreachableError
        Nothing answered within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ChainError(f"anvil exited with code {process.returncode} before it answered")
        try:
            response = requests.post(
                url,
                json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
                timeout=1.0,
            )
            if response.ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise NodeUnreachableError(f"no node answered at {url} within {timeout:.0f} s")


def _tail(output: IO[bytes], lines: int = 5) -> str:
    output.seek(0)
    text = output.read().decode("utf-8", errors="replace").strip()
    return " | ".join(text.splitlines()[-lines:])


def start_anvil(
    network: NetworkConfig,
    *,
    port: int | None = None,
    block_time: int | None = None,
    record: bool = True,
    accounts: int | None = None,
    state: Path | None = None,
    extra_args: Sequence[str] = (),
    ready_timeout: float = READY_TIMEOUT,
    detach: bool = False,
) -> tuple[subprocess.Popen[bytes], NodeRecord]:
    """Start anvil in the background and wait until it answers.

    ``port`` defaults to the network's port (a free one when it has none). The caller owns the
    process: stop it with :func:`stop_process` (or :func:`stop_node`, which also removes the
    record). An interrupt while the node starts stops it before the interrupt propagates.
    ``detach`` starts it in a session of its own, logging to ``node-<network>.log`` beside its
    record, so that it outlives this process (stop it with :func:`stop_recorded_node`).

    Raises
    ------
    ChainError
        When the port is busy or anvil does not come up.
    """
    chosen = network.port if port is None else port
    if chosen is None:
        chosen = free_port()
    if not port_is_free(chosen):
        raise ChainError(
            f"port {chosen} on {HOST} is already in use: is a node already running? "
            f"(stop it, or pass --port)"
        )
    command = anvil_command(
        network,
        port=chosen,
        block_time=block_time,
        accounts=accounts,
        state=state,
        extra_args=extra_args,
    )
    url = f"http://{HOST}:{chosen}"
    # anvil's output goes to an unnamed temporary file, not a pipe (nobody reads a pipe while the
    # node runs, and a full pipe would block anvil): read when anvil fails to start, and gone
    # with the node otherwise.
    log = state_dir() / f"node-{network.name}.log"
    if detach:
        log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w+b") if detach else tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=detach
        )
        try:
            wait_until_ready(url, process=process, timeout=ready_timeout)
            if process.poll() is not None:
                # Something else answered on the port that was free a moment ago.
                raise ChainError(f"port {chosen} on {HOST} was taken while anvil started")
        except ChainError as exc:
            _terminate(process)
            tail = _tail(output)
            message = f"{exc}: {tail}" if tail else str(exc)
            if isinstance(exc, NodeUnreachableError):
                raise NodeUnreachableError(message) from exc
            raise ChainError(message) from exc
        except BaseException:
            _terminate(process)
            raise
    info = NodeRecord(
        network=network.name,
        port=chosen,
        pid=process.pid,
        url=url,
        block_time=network.block_time if block_time is None else block_time,
    )
    if record:
        write_node_record(info)
    logger.info("anvil listening on %s (pid %d)", url, process.pid)
    return process, info


def node_record_path(network: str) -> Path:
    """Where the record of a started node lives."""
    return state_dir() / f"node-{network}.json"


def write_node_record(info: NodeRecord) -> Path:
    """Record a started node."""
    path = node_record_path(info.network)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(info), indent=2) + "\n", encoding="utf-8")
    return path


def read_node_record(network: str) -> NodeRecord | None:
    """The record of a running node started by this project, if any.

    A record whose process is gone or whose port is free (a node that was killed, or stopped
    without removing its record) is ignored.
    """
    path = node_record_path(network)
    try:
        info = NodeRecord(**json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        logger.warning("ignoring the unreadable node record %s: %s", path, exc)
        return None
    if not _alive(info.pid) or port_is_free(info.port):
        logger.info("ignoring the stale node record %s (pid %d is gone)", path, info.pid)
        return None
    return info


def remove_node_record(info: NodeRecord) -> None:
    """Remove the record of ``info`` unless it now describes another node."""
    path = node_record_path(info.network)
    try:
        current = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if current.get("pid") == info.pid and current.get("port") == info.port:
        path.unlink(missing_ok=True)


def stop_recorded_node(network: str, *, timeout: float = 10.0) -> NodeRecord | None:
    """Stop the node this project started for ``network`` (by its record); the record, or
    ``None`` when no such node runs."""
    info = read_node_record(network)
    if info is None:
        node_record_path(network).unlink(missing_ok=True)  # a stale record, if any
        return None
    stop_process(info.pid, timeout=timeout)
    remove_node_record(info)
    return info


def stop_node(process: subprocess.Popen[bytes], info: NodeRecord, *, timeout: float = 10.0) -> int:
    """Stop a node started by :func:`start_anvil`, remove its record; return its exit code."""
    code = _terminate(process, timeout=timeout)
    remove_node_record(info)
    return code


def stop_process(pid: int, *, timeout: float = 5.0) -> None:
    """Stop a process by its id: SIGTERM, then SIGKILL after ``timeout``.

    anvil dumps its state (``--state``) on SIGTERM, so it gets ``timeout`` seconds for that.
    """
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            finished = pid if not _alive(pid) else 0
        if finished == pid:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _terminate(process: subprocess.Popen[bytes], *, timeout: float = 5.0) -> int:
    """SIGTERM ``process``, SIGKILL it after ``timeout``; return its exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return int(process.returncode)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
