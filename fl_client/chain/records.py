"""Deployment records: what a later process needs to find a deployment on an RPC network."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fl_client.config import PROJECT_ROOT
from fl_client.errors import DeploymentNotFoundError

DEPLOYMENTS_DIR = PROJECT_ROOT / "deployments"


@dataclass(frozen=True)
class DeploymentRecord:
    """What a later process needs to find a deployment on an RPC network."""

    network: str
    chain_id: int
    address: str
    block_number: int
    num_weights: int
    dataset: str
    deployer: str
    # The data split every client process must share (its shard depends on all of these).
    clients: int = 0
    rounds: int = 0
    partition: str = "iid"
    dirichlet_alpha: float = 0.5
    seed: int = 0
    test_fraction: float = 0.2
    hidden_layers: list[int] = field(default_factory=list)
    # The task every client process loads (fl_client.tasks); None: the built-in task of dataset.
    task: str | None = None
    # Local training and privacy settings every client must share (epochs, batch_size,
    # learning_rate, algorithm; the privacy section): empty in records older than these fields.
    training: dict[str, Any] = field(default_factory=dict)
    privacy: dict[str, Any] = field(default_factory=dict)
    # The hash of block ``block_number`` when the record was written: a node restarted without its
    # state (anvil) can hold another deployment at the same address; None in older records.
    block_hash: str | None = None

    def to_json(self) -> str:
        """The record as JSON."""
        return json.dumps(self.__dict__, indent=2)


def deployments_dir() -> Path:
    """The folder of deployment records: ``$FL_DEPLOYMENTS_DIR``, or ``deployments/``."""
    return Path(os.environ.get("FL_DEPLOYMENTS_DIR") or DEPLOYMENTS_DIR)


def record_path(network: str, directory: Path | None = None) -> Path:
    """Where the record of ``network`` lives."""
    return (directory or deployments_dir()) / f"{network}.json"


def write_record(record: DeploymentRecord, directory: Path | None = None) -> Path:
    """Write the deployment record of its network."""
    path = record_path(record.network, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(record.to_json() + "\n", encoding="utf-8")
    return path


def read_record(network: str, directory: Path | None = None) -> DeploymentRecord:
    """Read the deployment record of ``network``."""
    path = record_path(network, directory)
    if not path.exists():
        raise DeploymentNotFoundError(
            f"no deployment on network {network!r} ({path} is missing): run `python -m fl_client deploy --network {network}`"
        )
    data = json.loads(path.read_text(encoding="utf-8"))
    return DeploymentRecord(**data)
