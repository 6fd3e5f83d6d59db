"""Connecting: the embedded chain or a JSON-RPC node, the accounts and keys this process may use.

The embedded chain (eth-tester with py-evm, in this process) is the default; any network in
``brownie-config.yaml`` with a ``host`` is reached over JSON-RPC.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_tester import EthereumTester, PyEVMBackend
from eth_utils.address import to_checksum_address
from web3 import HTTPProvider, Web3
from web3.exceptions import BadFunctionCallOutput, Web3RPCError
from web3.middleware import SignAndSendRawMiddlewareBuilder
from web3.providers.eth_tester import EthereumTesterProvider

from fl_client.config import NetworkConfig, ProjectConfig, load_config
from fl_client.errors import ChainError, ChainIdMismatchError, ConfigError, NodeUnreachableError
from fl_client.node import read_node_record

logger = logging.getLogger(__name__)

EMBEDDED_ACCOUNTS = 20
EMBEDDED_BALANCE_WEI = 10**24
T = TypeVar("T")

CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    ConnectionError,
)


@dataclass
class Chain:
    """A connection: web3, the network's settings and the accounts this process may use.

    ``keys`` holds the private keys this process knows (the embedded chain's accounts, a node's
    accounts derived from its mnemonic, or the key it was given): they sign relayed updates
    (EIP-712) locally.
    """

    w3: Web3
    network: NetworkConfig
    accounts: list[str]
    tester: EthereumTester | None = None
    # Gas of every mined transaction this process sent, failed ones included (they are paid).
    gas_used: list[int] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)
    units: list[str] = field(default_factory=list)  # the coordinator units deployed on this chain

    @property
    def is_embedded(self) -> bool:
        """Whether the chain lives in this process."""
        return self.tester is not None

    @property
    def tx_gas_cap(self) -> int:
        """Largest gas a single transaction may use (EIP-7825 on mainnet)."""
        return self.network.tx_gas_cap

    def signer(self, account: str) -> LocalAccount:
        """The local signer of ``account``.

        Raises
        ------
        ConfigError
            This process does not know the account's key.
        """
        key = self.keys.get(to_checksum_address(account))
        if key is None:
            raise ConfigError(
                f"no private key for {account} in this process: relayed updates are signed "
                "locally (give the key with --key-env, or use a node whose mnemonic is configured)"
            )
        signer: LocalAccount = Account.from_key(key)
        return signer

    def chain_id(self) -> int:
        """The chain id (cached by the provider on RPC nodes)."""
        return int(self.w3.eth.chain_id)

    def timestamp(self) -> int:
        """Timestamp of the latest block."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def advance_time(self, seconds: int) -> None:
        """Move the chain's clock forward and mine a block (test chains only)."""
        if self.tester is not None:
            # From the pending block: after a revert to an older snapshot it can be ahead of the
            # latest one (eth-tester refuses to travel back in time).
            pending = int(self.w3.eth.get_block("pending")["timestamp"])
            self.tester.time_travel(max(self.timestamp(), pending) + seconds)
            self.tester.mine_blocks()
            return
        try:
            self.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
            self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        except (requests.ConnectionError, Web3RPCError) as exc:
            raise ChainError(f"this node cannot move its clock: {exc}") from exc

    def snapshot(self) -> Any:
        """Take a snapshot of the embedded chain (for test isolation)."""
        if self.tester is None:
            raise ChainError("snapshots are only available on the embedded chain")
        return self.tester.take_snapshot()

    def revert(self, snapshot_id: Any) -> None:
        """Return the embedded chain to a snapshot."""
        if self.tester is None:
            raise ChainError("snapshots are only available on the embedded chain")
        self.tester.revert_to_snapshot(snapshot_id)


def embedded_chain(network: NetworkConfig, *, num_accounts: int = EMBEDDED_ACCOUNTS) -> Chain:
    """A fresh in-process chain (eth-tester + py-evm) with funded accounts."""
    params = PyEVMBackend.generate_genesis_params(overrides={"gas_limit": network.gas_limit})
    state = PyEVMBackend.generate_genesis_state(
        overrides={"balance": EMBEDDED_BALANCE_WEI}, num_accounts=num_accounts
    )
    backend = PyEVMBackend(genesis_parameters=params, genesis_state=state)
    tester = EthereumTester(backend)
    w3 = Web3(EthereumTesterProvider(tester))
    keys: dict[str, str] = {
        str(to_checksum_address(Account.from_key(key).address)): str(key)
        for key in backend.account_keys[:num_accounts]
    }
    return Chain(w3=w3, network=network, accounts=list(w3.eth.accounts), tester=tester, keys=keys)


def mnemonic_keys(mnemonic: str, count: int) -> dict[str, str]:
    """The first ``count`` accounts of a BIP-39 mnemonic (anvil's derivation path) and their keys."""
    Account.enable_unaudited_hdwallet_features()
    keys: dict[str, str] = {}
    for index in range(count):
        account = Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{index}")
        keys[str(to_checksum_address(account.address))] = "0x" + bytes(account.key).hex()
    return keys


def connect(
    network: str | None = None,
    *,
    config: ProjectConfig | None = None,
    private_key: str | None = None,
    num_accounts: int = EMBEDDED_ACCOUNTS,
    timeout: float = 30.0,
    url: str | None = None,
) -> Chain:
    """Connect to ``network`` from ``brownie-config.yaml`` (the default network when ``None``).

    RPC networks use the node's unlocked accounts, or the private key given or set in the
    environment variable that ``wallets.from_key`` names (signed locally). The URL is ``url``, or
    that of a node started by ``python -m fl_client node`` for this network, or the configured one.

    Raises
    ------
    NodeUnreachableError
        The node does not answer.
    ChainIdMismatchError
        The node's chain id differs from the configured one.
    """
    project = config or load_config()
    settings = project.network(network)
    if settings.is_embedded:
        return embedded_chain(settings, num_accounts=num_accounts)
    if url is None:
        started = read_node_record(settings.name)
        url = started.url if started is not None else settings.url
    # cache_allowed_requests: web3 would otherwise ask for the chain id before every send.
    w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": timeout}, cache_allowed_requests=True))
    try:
        chain_id = w3.eth.chain_id
    except (requests.ConnectionError, requests.Timeout, OSError) as exc:
        raise NodeUnreachableError(
            f"no Ethereum node answers at {url} ({type(exc).__name__})"
        ) from exc
    expected = settings.expected_chain_id()
    if expected is not None and chain_id != expected:
        raise ChainIdMismatchError(
            f"network {settings.name!r} expects chain id {expected}, but the node at {url} reports {chain_id}"
        )
    key, source = private_key, "the private key"
    if not key and project.private_key():
        key = project.private_key()
        source = f"the private key ({project.private_key_template} in brownie-config.yaml)"
    if key:
        account = private_key_account(key, source=source)
        w3.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(account), layer=0)
        accounts = [str(to_checksum_address(account.address))]
        keys = {accounts[0]: "0x" + bytes(account.key).hex()}
    else:
        accounts = [str(to_checksum_address(a)) for a in w3.eth.accounts]
        if not accounts:
            raise ConfigError(
                f"the node at {url} manages no accounts: set the private key variable named in "
                "brownie-config.yaml (wallets.from_key)"
            )
        keys = {}
        if settings.mnemonic:
            derived = mnemonic_keys(settings.mnemonic, len(accounts))
            keys = {a: derived[a] for a in accounts if a in derived}
    return Chain(w3=w3, network=settings, accounts=accounts, keys=keys)


def private_key_account(key: str, *, source: str = "the private key") -> LocalAccount:
    """The account of a hex private key; ``source`` names where the key came from in errors
    (the key itself is never echoed).

    Raises
    ------
    ConfigError
        ``key`` is not 32 bytes of hex (with or without ``0x``).
    """
    text = key.strip()
    digits = text[2:] if text.lower().startswith("0x") else text
    if len(digits) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise ConfigError(
            f"{source} must be 64 hexadecimal digits (32 bytes), optionally with 0x "
            f"(got {len(digits)} characters)"
        )
    try:
        account: LocalAccount = Account.from_key("0x" + digits)
    except ValueError:
        raise ConfigError(
            f"{source} is not a valid secp256k1 key (zero, or not below the curve order)"
        ) from None
    return account


def call_with_retry(func: Callable[[], T], *, attempts: int = 3, delay: float = 0.5) -> T:
    """Run ``func``; on a lost connection retry with backoff, then raise NodeUnreachableError.

    A call that returns nothing decodable (no contract at the address: a node restarted without
    its state, or a wrong deployment record) raises :class:`ChainError`.
    """
    for attempt in range(1, attempts + 1):
        try:
            return func()
        except BadFunctionCallOutput as exc:
            raise ChainError(
                "the contract returned nothing: is it deployed at this address on this node? "
                "(a node restarted without its state loses every deployment)"
            ) from exc
        except CONNECTION_ERRORS as exc:
            if attempt == attempts:
                raise NodeUnreachableError(
                    f"the node did not answer after {attempts} attempts ({type(exc).__name__})"
                ) from exc
            time.sleep(delay * attempt)
    raise AssertionError("unreachable")  # pragma: no cover
