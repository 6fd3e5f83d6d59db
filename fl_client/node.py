"""A local anvil node: start it with the configured settings, find it again, stop it.

anvil comes from npm (``@foundry-rs/anvil``, pinned in package.json) and listens on 127.0.0.1 only.
Mainnet's per-transaction gas cap (EIP-7825) is switched on so that everything runs by mainnet's
rules. The node's port and process id are recorded in ``.cache/node-<network>.json``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

from fl_client.config import PROJECT_ROOT, NetworkConfig
from fl_client.errors import ChainError, ConfigError, NodeUnreachableError

logger = logging.getLogger(__name__)

ANVIL = PROJECT_ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
ANVIL_FALLBACK = PROJECT_ROOT / "node_modules" / ".bin" / "anvil"
STATE_DIR = PROJECT_ROOT / ".cache"
HOST = "127.0.0.1"


@dataclass(frozen=True)
class NodeRecord:
    """Where a started node listens and which process it is."""

    network: str
    port: int
    pid: int
    url: str
    block_time: int


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


def anvil_command(network: NetworkConfig, *, port: int, block_time: int | None = None) -> list[str]:
    """The command line that starts anvil for ``network``."""
    seconds = network.block_time if block_time is None else block_time
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
        str(network.accounts),
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
    return command


def wait_until_ready(
    url: str, *, timeout: float = 15.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll ``eth_chainId`` until the node answers."""
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


def start_anvil(
    network: NetworkConfig,
    *,
    port: int | None = None,
    block_time: int | None = None,
    record: bool = True,
) -> tuple[subprocess.Popen[bytes], NodeRecord]:
    """Start anvil in the background and wait until it answers.

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
    command = anvil_command(network, port=chosen, block_time=block_time)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://{HOST}:{chosen}"
    try:
        wait_until_ready(url, process=process)
    except ChainError:
        stop_process(process.pid)
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
    return STATE_DIR / f"node-{network}.json"


def write_node_record(info: NodeRecord) -> Path:
    """Record a started node."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    path = node_record_path(info.network)
    path.write_text(json.dumps(asdict(info), indent=2) + "\n", encoding="utf-8")
    return path


def read_node_record(network: str) -> NodeRecord | None:
    """The record of a node started by this project, if any."""
    path = node_record_path(network)
    if not path.exists():
        return None
    return NodeRecord(**json.loads(path.read_text(encoding="utf-8")))


def stop_process(pid: int, *, timeout: float = 5.0) -> None:
    """Stop a process by its id: SIGTERM, then SIGKILL after ``timeout``."""
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
