"""Shared pieces of the node benchmarks (latency, throughput): nodes, deployments, output.

Every anvil is started on a free port of 127.0.0.1 (its log in a temporary ``FL_STATE_DIR``) and
stopped by its process id when the ``with`` block ends, also on an error or Ctrl-C.
"""

from __future__ import annotations

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
    start_anvil,
    stop_process,
)

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class RunningNode:
    """A benchmark's anvil: where it listens and how it mines."""

    info: NodeRecord
    accounts: int

    @property
    def url(self) -> str:
        return self.info.url


@contextmanager
def anvil_node(*, block_time: int = 0, accounts: int | None = None) -> Iterator[RunningNode]:
    """An anvil with the project's settings (``block_time`` 0: a block per transaction)."""
    network = load_config().network("anvil")
    count = network.accounts if accounts is None else accounts
    previous = os.environ.get(STATE_DIR_VARIABLE)
    with tempfile.TemporaryDirectory(prefix="fl-bench-") as state:
        os.environ[STATE_DIR_VARIABLE] = state
        try:
            process, info = start_anvil(
                network, port=free_port(), block_time=block_time, accounts=count, record=False
            )
        finally:
            if previous is None:
                os.environ.pop(STATE_DIR_VARIABLE, None)
            else:
                os.environ[STATE_DIR_VARIABLE] = previous
        try:
            yield RunningNode(info=info, accounts=count)
        finally:
            stop_process(process.pid, timeout=10)
            process.poll()  # stop_process reaped it: let the Popen know


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
        "load_average_at_start": list(os.getloadavg()),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "anvil": version[0] if version else "unknown",
    }


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
