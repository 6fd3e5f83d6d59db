"""Shared fixtures: one compile per run, one embedded chain, role accounts, snapshot isolation,
and the helpers every contract test uses to submit, relay and close."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from eth_utils.address import is_address, to_checksum_address
from web3.contract import Contract
from web3.logs import DISCARD
from web3.types import TxReceipt

from fl_client.chain import (
    Chain,
    DeployParams,
    SignedUpdate,
    close_function,
    connect,
    deploy,
    relay_function,
    send,
    sign_update,
    submit_calls,
    update_typed_data,
)
from fl_client.codec import pack, segment_hashes, split_segments, vector_hash
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


@pytest.fixture
def isolated(chain: Chain) -> Iterator[Chain]:
    """Run a test on a snapshot of the chain and roll everything back afterwards."""
    snapshot = chain.snapshot()
    units = list(chain.units)
    yield chain
    chain.revert(snapshot)
    chain.units = units  # units deployed inside the test are gone with the snapshot


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
def relayer(chain: Chain) -> str:
    """An account that relays signed updates and closes rounds."""
    return chain.accounts[13]


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
        close_window=120,
        close_fee=7,
        relay_fee=3,
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


def words_per_segment(contract: Contract) -> int:
    """The deployment's segment size (a free call)."""
    return int(contract.functions.wordsPerSegment().call())


def submit(
    chain: Chain,
    contract: Contract,
    sender: str,
    values: np.ndarray,
    *,
    round_number: int = 1,
    sample_count: int = 1,
    start_segment: int = 0,
) -> list[TxReceipt]:
    """Submit the packed ``values`` directly, from ``start_segment`` on (as many segments per
    transaction as fit); the receipts."""
    calls = submit_calls(
        contract,
        sender,
        round_number=round_number,
        sample_count=sample_count,
        words=pack(values),
        words_per_segment=words_per_segment(contract),
        start_segment=start_segment,
    )
    return [send(chain, call.function, call.sender) for call in calls]


def submit_segments(
    chain: Chain,
    contract: Contract,
    sender: str,
    values: np.ndarray,
    segments: Sequence[int],
    *,
    round_number: int = 1,
    sample_count: int = 1,
) -> TxReceipt:
    """Submit exactly the given consecutive segments of ``values`` in one transaction."""
    parts = split_segments(pack(values), words_per_segment(contract))
    words = [w for s in segments for w in parts[s]]
    function = contract.functions.submit(round_number, sample_count, segments[0], words)
    return send(chain, function, sender)


def signed(
    chain: Chain,
    contract: Contract,
    client: str,
    values: np.ndarray,
    *,
    round_number: int = 1,
    sample_count: int = 1,
) -> SignedUpdate:
    """``client``'s update ``values`` signed for a relayer (EIP-712)."""
    words = pack(values)
    per_segment = words_per_segment(contract)
    typed = update_typed_data(
        chain_id=chain.chain_id(),
        contract=str(contract.address),
        round_number=round_number,
        segments=int(contract.functions.numSegments().call()),
        sample_count=sample_count,
        words_hash=vector_hash(words, per_segment),
    )
    return SignedUpdate(
        round_number=round_number,
        client=client,
        sample_count=sample_count,
        segment_hashes=tuple(segment_hashes(words, per_segment)),
        signature=sign_update(chain.signer(client), typed),
        words=tuple(words),
    )


def relay(
    chain: Chain,
    contract: Contract,
    sender: str,
    updates: Sequence[SignedUpdate],
    *,
    round_number: int = 1,
) -> TxReceipt:
    """Register signed updates (``submitRelayed``) from ``sender``."""
    return send(chain, relay_function(contract, round_number, updates), sender)


def close_words(contract: Contract, vectors: Sequence[np.ndarray], segment: int) -> list[int]:
    """Segment ``segment`` of each vector, concatenated (the calldata of a close, entries in order)."""
    per_segment = words_per_segment(contract)
    return [w for v in vectors for w in split_segments(pack(v), per_segment)[segment]]


def close(
    chain: Chain,
    contract: Contract,
    sender: str,
    vectors: Sequence[np.ndarray],
    *,
    round_number: int = 1,
    omitted: Sequence[int] = (),
) -> list[TxReceipt]:
    """Close the round: every segment, from ``vectors`` (the entries' updates in ``entries()``
    order, the omitted ones left out)."""
    receipts = []
    for segment in range(int(contract.functions.numSegments().call())):
        function = close_function(
            contract,
            round_number=round_number,
            segment=segment,
            words=close_words(contract, vectors, segment),
            omitted=omitted if segment == 0 else (),
        )
        receipts.append(send(chain, function, sender))
    return receipts


# ---------------------------------------------------------------- two workers (pytest-xdist)

# Modules that start subprocesses or time out on a node without the anvil marker on every test.
PROCESS_MODULES = frozenset({"test_cli.py", "test_runner.py", "test_participant.py"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under ``-n 2 --dist loadgroup`` (tools/test.sh), every test that starts a node or other
    processes runs on one worker, one after another as without xdist, so that two of them never
    compete for ports, the clock or the two cores at once; every other module runs whole on one
    worker (its module-scoped deployments are made once)."""
    for item in items:
        path = item.path.name
        group = "processes" if item.get_closest_marker("anvil") or path in PROCESS_MODULES else path
        item.add_marker(pytest.mark.xdist_group(group))
