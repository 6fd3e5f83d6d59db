"""Shared pieces of the node benchmarks (latency, throughput): nodes, deployments, output.

Every anvil is started on a free port of 127.0.0.1 with mainnet's per-transaction gas cap on
(``fl_client.node.start_anvil``) and stopped by its process id when the ``with`` block ends, also
on an error or Ctrl-C. Node and deployment records go to temporary folders (``FL_STATE_DIR``,
``FL_DEPLOYMENTS_DIR``): the project's own records are never touched.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from web3.contract import Contract

from fl_client.chain import Chain, DeployParams, deploy
from fl_client.codec import encode
from fl_client.config import load_config
from fl_client.data import Dataset, load_dataset
from fl_client.model import build_model, get_flat_parameters
from fl_client.node import (
    STATE_DIR_VARIABLE,
    NodeRecord,
    anvil_binary,
    free_port,
    remove_node_record,
    start_anvil,
    stop_process,
)

RESULTS = Path(__file__).resolve().parent / "results"
DEPLOYMENTS_VARIABLE = "FL_DEPLOYMENTS_DIR"  # read by fl_client.chain.records.deployments_dir


@dataclass(frozen=True)
class RunningNode:
    """A benchmark's anvil: where it listens and how it mines."""

    info: NodeRecord
    accounts: int

    @property
    def url(self) -> str:
        return self.info.url


@contextmanager
def isolated_records() -> Iterator[Path]:
    """Node records (``FL_STATE_DIR``) and deployment records (``FL_DEPLOYMENTS_DIR``) in a
    temporary folder while the block runs, for this process and the processes it starts."""
    variables = (STATE_DIR_VARIABLE, DEPLOYMENTS_VARIABLE)
    previous = {name: os.environ.get(name) for name in variables}
    with tempfile.TemporaryDirectory(prefix="fl-bench-") as folder:
        root = Path(folder)
        os.environ[STATE_DIR_VARIABLE] = str(root / "state")
        os.environ[DEPLOYMENTS_VARIABLE] = str(root / "deployments")
        try:
            yield root
        finally:
            for name, value in previous.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@contextmanager
def anvil_node(
    *, block_time: int = 0, accounts: int | None = None, record: bool = False
) -> Iterator[RunningNode]:
    """An anvil with the project's settings (``block_time`` 0: a block per transaction).

    ``record``: write its node record to the current ``FL_STATE_DIR`` (inside
    :func:`isolated_records`), so that ``--network anvil`` in a client process finds it.
    """
    network = load_config().network("anvil")
    count = network.accounts if accounts is None else accounts
    if record:
        if STATE_DIR_VARIABLE not in os.environ:
            raise RuntimeError("anvil_node(record=True) belongs inside isolated_records()")
        process, info = start_anvil(
            network, port=free_port(), block_time=block_time, accounts=count, record=True
        )
    else:
        with isolated_records():
            process, info = start_anvil(
                network, port=free_port(), block_time=block_time, accounts=count, record=False
            )
    try:
        yield RunningNode(info=info, accounts=count)
    finally:
        stop_process(process.pid, timeout=10)
        process.poll()  # stop_process reaped it: let the Popen know
        if record:
            remove_node_record(info)


def digits_deployment(
    chain: Chain, *, clients: int, dataset: Dataset | None = None, **changes: Any
) -> Contract:
    """A coordinator for the digits model (650 weights) from the configured initial model."""
    fl = load_config().fl.with_overrides(dataset="digits")
    data = dataset or load_dataset(fl.dataset, test_fraction=fl.test_fraction, seed=fl.seed)
    model = build_model(data.num_features, data.num_classes, seed=fl.seed)
    weights = get_flat_parameters(model)
    words, _ = encode(weights, fl.fixed_point)
    params = replace(
        DeployParams.from_config(fl, num_weights=weights.size, clients=clients), **changes
    )
    return deploy(chain, params, initial_words=words, pool_wei=fl.rewards.pool_wei)


def rpc(chain: Chain, method: str, *params: Any) -> Any:
    """A raw JSON-RPC call (anvil's own methods)."""
    response = chain.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    if "error" in response:
        raise RuntimeError(f"{method} failed: {response['error']}")
    return response.get("result")


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    version = subprocess.run(
        [str(anvil_binary()), "--version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    return {
        "cpus": os.cpu_count(),
        "load_average_at_start": load_average(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "anvil": version[0] if version else "unknown",
    }


def load_average() -> list[float]:
    """The 1-, 5- and 15-minute load averages now."""
    return [round(value, 2) for value in os.getloadavg()]


def machine_note(context: dict[str, Any]) -> str:
    """One line for a wall-time table: the machine and its load (from :func:`machine` plus
    ``load_average_at_end``), and whether other work shared the CPUs while it ran (a 1-minute load
    average above half the CPUs at the start or the end: the figures are then provisional)."""
    cpus = int(context.get("cpus") or 1)
    start = float(context.get("load_average_at_start", [0.0])[0])
    end = float(context.get("load_average_at_end", [start])[0])
    loaded = max(start, end) > cpus / 2
    verdict = (
        "other work shared the CPUs, so these wall times are provisional: re-run the command on "
        "a quiet machine for figures to quote"
        if loaded
        else "the machine was otherwise quiet"
    )
    return (
        f"Machine: {cpus} CPUs, 1-minute load average {start:.2f} at the start and {end:.2f} at "
        f"the end ({verdict}); {context.get('anvil')}, Python {context.get('python')}."
    )


def write_json(name: str, data: dict[str, Any], out: Path | None = None) -> Path:
    """Write ``data`` to ``bench/results/<name>.json`` (or ``out``)."""
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def command_line(module: str, argv: Sequence[str]) -> str:
    """How to reproduce a run."""
    return " ".join([".venv/bin/python", "-m", module, *argv])


class Stopwatch:
    """Seconds since it was made."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.started


class SendWarnings(logging.Handler):
    """Counts the retries ``fl_client.chain.send`` logged (stale estimates, nonces, drops)."""

    KINDS: ClassVar[dict[str, str]] = {
        "out_of_gas_retries": "ran out of gas",
        "rejected_retries": "rejected the transaction",
        "resent": "sending it again",
    }

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.counts = dict.fromkeys(self.KINDS, 0)

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        for kind, text in self.KINDS.items():
            if text in message:
                self.counts[kind] += 1

    def __enter__(self) -> SendWarnings:
        logging.getLogger("fl_client.chain").addHandler(self)
        return self

    def __exit__(self, *_: object) -> None:
        logging.getLogger("fl_client.chain").removeHandler(self)


def contracts_fingerprint() -> dict[str, Any]:
    """Which contracts were measured: the checkout's commit, whether ``contracts/`` differs from
    it, and a SHA-256 over every Solidity source (path and content, in path order)."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted((root / "contracts").rglob("*.sol")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else "unknown"

    return {
        "commit": git("rev-parse", "HEAD"),
        "contracts_changed_since_commit": bool(git("status", "--porcelain", "--", "contracts")),
        "contracts_sha256": digest.hexdigest(),
    }
