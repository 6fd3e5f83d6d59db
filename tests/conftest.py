"""Shared fixtures: one compile per run, one embedded chain, role accounts, snapshot isolation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from eth_utils.address import is_address, to_checksum_address
from web3.contract import Contract
from web3.logs import DISCARD
from web3.types import TxReceipt

from fl_client.chain import Chain, DeployParams, connect, deploy, send
from fl_client.codec import pack
from fl_client.compile import CompiledContract, compile_contracts
from fl_client.config import load_config
from fl_client.errors import ContractRevertError

SMALL_WEIGHTS = 40  # three words, the last one half padding


@pytest.fixture(scope="session")
def compiled() -> dict[str, CompiledContract]:
    """Every contract, compiled once per test run (cached on disk between runs)."""
    return compile_contracts()


@pytest.fixture(scope="session")
def chain(compiled: dict[str, CompiledContract]) -> Chain:
    """The embedded chain (eth-tester + py-evm), shared by the whole run."""
    return connect("embedded", num_accounts=20)


@pytest.fixture(autouse=False)
def isolated(chain: Chain) -> Iterator[Chain]:
    """Run a test on a snapshot of the chain and roll everything back afterwards."""
    snapshot = chain.snapshot()
    yield chain
    chain.revert(snapshot)


@pytest.fixture
def owner(chain: Chain) -> str:
    """The deployer: loads the model, manages the allowlist."""
    return chain.accounts[0]


@pytest.fixture
def clients(chain: Chain) -> list[str]:
    """Ten participant accounts."""
    return chain.accounts[1:11]


@pytest.fixture
def client_a(clients: list[str]) -> str:
    """The first participant."""
    return clients[0]


@pytest.fixture
def client_b(clients: list[str]) -> str:
    """The second participant."""
    return clients[1]


@pytest.fixture
def funder(chain: Chain) -> str:
    """A third party that funds the reward pool."""
    return chain.accounts[15]


@pytest.fixture
def outsider(chain: Chain) -> str:
    """An account that takes no part."""
    return chain.accounts[19]


def small_params(**changes: Any) -> DeployParams:
    """Deployment parameters for a small vector, easy to reason about in tests."""
    base = DeployParams(
        num_weights=SMALL_WEIGHTS,
        scale=1024,
        max_abs_weight=3000,
        target_submissions=3,
        min_submissions=2,
        round_duration=600,
        aggregation="mean",
        max_sample_count=1000,
        distance="l1",
        allowlist_enabled=False,
        min_reward_distance=0,
        max_counted_distance=0,
        words_per_segment=512,
        tier_thresholds=(1_000, 10_000, 50_000),
        tier_rewards=(300, 200, 100),
    )
    return replace(base, **changes)


DeployFactory = Callable[..., Contract]


@pytest.fixture
def deploy_coordinator(isolated: Chain, owner: str) -> DeployFactory:
    """Deploy a coordinator on the isolated chain: ``deploy_coordinator(pool_wei=..., **params)``."""

    def factory(
        *, pool_wei: int = 10**6, initial: np.ndarray | None = None, **changes: Any
    ) -> Contract:
        params = small_params(**changes)
        words = None if initial is None else pack(initial)
        return deploy(isolated, params, initial_words=words, pool_wei=pool_wei, deployer=owner)

    return factory


@pytest.fixture
def coordinator(deploy_coordinator: DeployFactory) -> Contract:
    """A coordinator with the small default parameters, round 1 open, a pool of 1e6 wei."""
    return deploy_coordinator()


@pytest.fixture(scope="session")
def project_config() -> Any:
    """The parsed brownie-config.yaml."""
    return load_config()


# ---------------------------------------------------------------- helpers shared by the test modules


def revert_args(error: ContractRevertError) -> dict[str, object]:
    """The error's decoded arguments (addresses checksummed)."""
    return {
        key: to_checksum_address(value) if isinstance(value, str) and is_address(value) else value
        for key, value in error.error_args.items()
    }


def events(contract: Contract, name: str, receipt: TxReceipt) -> list[dict[str, Any]]:
    """The decoded arguments of every ``name`` event that ``contract`` emitted in ``receipt``."""
    event = getattr(contract.events, name)
    return [dict(entry["args"]) for entry in event().process_receipt(receipt, errors=DISCARD)]


def submit(
    chain: Chain,
    contract: Contract,
    sender: str,
    values: np.ndarray,
    *,
    round_number: int = 1,
    sample_count: int = 1,
    segment: int = 0,
) -> TxReceipt:
    """Submit the packed ``values`` (the whole vector, or a given segment's words are passed)."""
    words = pack(values)
    return send(
        chain, contract.functions.submit(round_number, sample_count, segment, words), sender
    )
