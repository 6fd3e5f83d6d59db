"""Everything that talks to the chain: connect, deploy, send and wait, read.

The only module of the package that imports web3. The embedded chain (eth-tester with py-evm, in
this process) is the default; any network in ``brownie-config.yaml`` with a ``host`` is reached
over JSON-RPC. Failures become the typed errors of :mod:`fl_client.errors`: a revert is decoded
to the contract's custom error name and values.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.exceptions import TransactionFailed
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import (
    BadFunctionCallOutput,
    ContractCustomError,
    ContractLogicError,
    ContractPanicError,
    TimeExhausted,
    Web3RPCError,
)
from web3.logs import DISCARD
from web3.middleware import SignAndSendRawMiddlewareBuilder
from web3.providers.eth_tester import EthereumTesterProvider
from web3.types import TxReceipt

from fl_client.compile import CompiledContract, get_contract
from fl_client.config import (
    ALIGNMENT_OFF,
    PROJECT_ROOT,
    FLConfig,
    NetworkConfig,
    ProjectConfig,
    load_config,
)
from fl_client.errors import (
    ChainError,
    ChainIdMismatchError,
    ConfigError,
    ContractRevertError,
    DeploymentNotFoundError,
    InsufficientFundsError,
    NodeUnreachableError,
    OutOfGasError,
    TransactionDroppedError,
)
from fl_client.node import read_node_record

logger = logging.getLogger(__name__)

CONTRACT_NAME = "FLCoordinator"
DEPLOYMENTS_DIR = PROJECT_ROOT / "deployments"
EMBEDDED_ACCOUNTS = 20
EMBEDDED_BALANCE_WEI = 10**24
GAS_HEADROOM = 1.2  # estimate x this, capped at the per-transaction cap
T = TypeVar("T")

AGGREGATION_CODES = {"mean": 0, "sample_weighted": 1}
DISTANCE_CODES = {"l1": 0, "squared_l2": 1}
MODE_CODES = {"direct": 0, "commit_reveal": 1, "secure_aggregation": 2}
PHASES = ("Setup", "Open", "Commit", "Reveal")


@dataclass
class Chain:
    """A connection: web3, the network's settings and the accounts this process may use."""

    w3: Web3
    network: NetworkConfig
    accounts: list[str]
    tester: EthereumTester | None = None
    gas_used: list[int] = field(default_factory=list)

    @property
    def is_embedded(self) -> bool:
        """Whether the chain lives in this process."""
        return self.tester is not None

    @property
    def tx_gas_cap(self) -> int:
        """Largest gas a single transaction may use (EIP-7825 on mainnet)."""
        return self.network.tx_gas_cap

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


# ---------------------------------------------------------------- connecting


def embedded_chain(network: NetworkConfig, *, num_accounts: int = EMBEDDED_ACCOUNTS) -> Chain:
    """A fresh in-process chain (eth-tester + py-evm) with funded accounts."""
    params = PyEVMBackend.generate_genesis_params(overrides={"gas_limit": network.gas_limit})
    state = PyEVMBackend.generate_genesis_state(
        overrides={"balance": EMBEDDED_BALANCE_WEI}, num_accounts=num_accounts
    )
    tester = EthereumTester(PyEVMBackend(genesis_parameters=params, genesis_state=state))
    w3 = Web3(EthereumTesterProvider(tester))
    return Chain(w3=w3, network=network, accounts=list(w3.eth.accounts), tester=tester)


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
    key = private_key or project.private_key()
    if key:
        account = Account.from_key(key)
        w3.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(account), layer=0)
        accounts = [account.address]
    else:
        accounts = list(w3.eth.accounts)
        if not accounts:
            raise ConfigError(
                f"the node at {url} manages no accounts: set the private key variable named in "
                "brownie-config.yaml (wallets.from_key)"
            )
    return Chain(w3=w3, network=settings, accounts=accounts)


# ---------------------------------------------------------------- errors


@dataclass(frozen=True)
class _ErrorSpec:
    name: str
    types: list[str]
    names: list[str]


def _error_table(abi: Sequence[Any]) -> dict[bytes, _ErrorSpec]:
    table: dict[bytes, _ErrorSpec] = {}
    for entry in abi:
        if entry.get("type") != "error":
            continue
        types = [item["type"] for item in entry["inputs"]]
        selector = function_signature_to_4byte_selector(f"{entry['name']}({','.join(types)})")
        table[selector] = _ErrorSpec(
            entry["name"], types, [item["name"] for item in entry["inputs"]]
        )
    return table


def decode_revert(abi: Sequence[Any], data: str | bytes | None) -> ContractRevertError:
    """Turn revert data into a :class:`ContractRevertError` named after the custom error."""
    if isinstance(data, str):
        raw = bytes.fromhex(data[2:] if data.startswith("0x") else data)
    else:
        raw = data or b""
    if len(raw) < 4:
        return ContractRevertError("Revert", {}, "the contract reverted without a reason")
    spec = _error_table(abi).get(raw[:4])
    if spec is None:
        if raw[:4] == bytes.fromhex("4e487b71"):
            (code,) = abi_decode(["uint256"], raw[4:])
            return ContractRevertError("Panic", {"code": code}, f"Panic(0x{code:02x})")
        if raw[:4] == bytes.fromhex("08c379a0"):
            (reason,) = abi_decode(["string"], raw[4:])
            return ContractRevertError("Error", {"reason": reason}, f"Error({reason!r})")
        return ContractRevertError("Unknown", {"data": "0x" + raw.hex()})
    values = [
        to_checksum_address(value) if kind == "address" else value
        for kind, value in zip(spec.types, abi_decode(spec.types, raw[4:]), strict=True)
    ]
    return ContractRevertError(spec.name, dict(zip(spec.names, values, strict=True)))


def _revert_data(exc: ContractLogicError) -> str | None:
    data = exc.data
    if isinstance(data, dict):
        return data.get("data")
    return data


def _tester_revert_bytes(exc: BaseException) -> bytes | None:
    """Raw revert data of an embedded-chain failure.

    web3's eth-tester provider re-raises the tester's ``TransactionFailed`` with the revert data
    rendered into a message; the original, with the raw bytes, is in the exception's context.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TransactionFailed) and current.args:
            first = current.args[0]
            if isinstance(first, Exception) and first.args:
                first = first.args[0]
            if isinstance(first, bytes):
                return first
            if isinstance(first, str):
                # The tester renders the revert data as the repr of a bytes object.
                text = first.removeprefix("execution reverted: ")
                if text.startswith(("b'", 'b"')):
                    try:
                        value = ast.literal_eval(text)
                    except (ValueError, SyntaxError):
                        value = None
                    if isinstance(value, bytes):
                        return value
        current = current.__cause__ or current.__context__
    return None


def _translate(exc: Exception, abi: Sequence[Any], what: str) -> ChainError:
    if isinstance(exc, (ContractCustomError, ContractPanicError, ContractLogicError)):
        return decode_revert(abi, _revert_data(exc))
    raw = _tester_revert_bytes(exc)
    if raw is not None:
        return decode_revert(abi, raw)
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError)):
        return NodeUnreachableError(f"{what}: the node stopped answering ({type(exc).__name__})")
    message = str(exc)
    lowered = message.lower()
    if "insufficient funds" in lowered or "cannot afford txn" in lowered:
        return InsufficientFundsError(f"{what}: the account cannot pay for it ({message})")
    if "out of gas" in lowered or "gas required exceeds" in lowered or "intrinsic gas" in lowered:
        return OutOfGasError(f"{what}: {message}")
    if "nonce" in lowered:
        return TransactionDroppedError(f"{what}: nonce rejected ({message})")
    return ChainError(f"{what}: {message}")


# ---------------------------------------------------------------- sending


SEND_ATTEMPTS = 3  # transactions one `send` may try before TransactionDroppedError
RECEIPT_POLL = 0.05  # seconds between receipt look-ups
RETRY_DELAY = 0.25  # seconds before a retry, times the attempt number
FEE_BUMP_PERCENT = 25  # a replacement pays this much more per gas (nodes want at least 10 %)
# Gas limit on a node: estimate x this (capped). Other accounts' transactions may land between the
# estimate and this one: the submission that closes a round costs ~1.75x one that leaves it open.
# Unused gas is not charged (EIP-1559), so the margin costs nothing but block space.
NODE_GAS_HEADROOM = 2.0
# Node answers to a transaction that says: try again (another nonce, or higher fees).
_RETRYABLE_SEND_ERRORS = (
    "nonce too low",
    "nonce too high",
    "invalid nonce",
    "replacement transaction underpriced",
    "already known",
    "already imported",
    "known transaction",
)
_CONNECTION_ERRORS = (requests.ConnectionError, requests.Timeout, ConnectionError)


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
        except _CONNECTION_ERRORS as exc:
            if attempt == attempts:
                raise NodeUnreachableError(
                    f"the node did not answer after {attempts} attempts ({type(exc).__name__})"
                ) from exc
            time.sleep(delay * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def send(
    chain: Chain,
    function: ContractFunction,
    sender: str,
    *,
    value: int = 0,
    what: str | None = None,
    wait_timeout: float = 120.0,
    attempts: int = SEND_ATTEMPTS,
) -> TxReceipt:
    """Estimate, check, send and wait for one contract call; raise a typed error on failure.

    The gas estimate runs the call first (with all the gas the sender can pay for, up to the
    cap): a revert is decoded before any transaction is sent, and a call that cannot fit the cap
    raises :class:`OutOfGasError` unsent. On a node, the node's own estimate is that call, run
    against the pending block (whose timestamp is the node's clock; an idle node's latest block
    may be older than a deadline that has passed), and the calldata is encoded once.

    Fees are EIP-1559 (type 2): web3 fills ``maxFeePerGas`` and ``maxPriorityFeePerGas`` from
    the node. On a node the nonce is fixed per call, so at most one of its transactions can be
    mined: a transaction not mined within ``wait_timeout`` seconds is replaced with fees
    ``FEE_BUMP_PERCENT`` higher (or sent again when the node dropped it), and a rejected nonce
    is retried with a fresh one, up to ``attempts`` transactions in all. A transaction that ran
    out of gas on a node is estimated and sent once more: the estimate goes stale when other
    accounts' transactions change the state first (the submission that closes a round costs
    more than the one estimated while the round stayed open).

    Raises
    ------
    ContractRevertError
        The call reverts (decoded to the contract's custom error).
    OutOfGasError, InsufficientFundsError
        The transaction cannot fit the cap, or the account cannot pay for it.
    TransactionDroppedError
        No transaction was mined after ``attempts`` tries.
    NodeUnreachableError
        The node stopped answering (the transaction may or may not have been sent).
    """
    label = what or function.fn_name
    estimates = 1 if chain.is_embedded else 2
    for estimate in range(1, estimates + 1):
        receipt, gas = _estimate_and_send(
            chain,
            function,
            sender,
            value=value,
            what=label,
            wait_timeout=wait_timeout,
            attempts=attempts,
        )
        if receipt["status"] == 1 or receipt["gasUsed"] < gas or estimate == estimates:
            break
        logger.warning(
            "%s ran out of gas (%s given) in block %s: the state changed since the estimate; "
            "estimating again",
            label,
            gas,
            receipt["blockNumber"],
        )
    if receipt["status"] != 1:
        if receipt["gasUsed"] >= gas:
            raise OutOfGasError(f"{label} ran out of gas ({gas:,} given)")
        raise ChainError(f"{label} failed in block {receipt['blockNumber']} (status 0)")
    chain.gas_used.append(int(receipt["gasUsed"]))
    return receipt


def _estimate_and_send(
    chain: Chain,
    function: ContractFunction,
    sender: str,
    *,
    value: int,
    what: str | None,
    wait_timeout: float,
    attempts: int,
) -> tuple[TxReceipt, int]:
    """One estimate (a revert is raised decoded, unsent) and the transaction; its receipt and gas."""
    label = what or function.fn_name
    abi = function.contract_abi
    tx: dict[str, Any] = {"from": sender, "value": value}
    if not chain.is_embedded:
        # Encode the calldata once (it takes milliseconds for a segment of hundreds of words)
        # for the call, the estimate and every version of the transaction.
        tx.update(to=function.address, data=function._encode_transaction_data())
    try:
        balance = chain.w3.eth.get_balance(sender)  # type: ignore[arg-type]
        price = chain.w3.eth.gas_price
    except Exception as exc:
        raise _translate(exc, abi, label) from exc
    affordable = (balance - value) // price if price else chain.tx_gas_cap
    if affordable < 21_000:
        raise InsufficientFundsError(
            f"{label}: account {sender} holds {balance} wei, not enough for {value} wei plus the "
            f"fee of a transaction at {price} wei per gas"
        )
    try:
        # A call with all the gas the sender may spend, up to the cap: a revert is decoded, and
        # running out of gas shows that the transaction cannot fit, before anything is sent.
        limit = {**tx, "gas": min(chain.tx_gas_cap, affordable)}
        if chain.is_embedded:
            function.call(limit)  # type: ignore[arg-type]
            # py-evm's estimator runs the call many times (binary search): give the embedded
            # chain the cap instead.
            gas = chain.tx_gas_cap
        else:
            # The node's estimate runs the call with the same bound: a revert comes back decoded,
            # and a transaction that needs more than the bound fails to estimate.
            gas = chain.w3.eth.estimate_gas(limit, "pending")  # type: ignore[arg-type]
    except Exception as exc:
        error = _translate(exc, abi, label)
        if isinstance(error, OutOfGasError) and affordable < chain.tx_gas_cap:
            raise InsufficientFundsError(
                f"{label}: account {sender} holds {balance} wei, which pays for {affordable:,} gas, "
                "too little for this transaction"
            ) from exc
        raise error from exc
    if gas > chain.tx_gas_cap:
        raise OutOfGasError(
            f"{label} needs {gas:,} gas, above the per-transaction cap of {chain.tx_gas_cap:,}"
        )
    if not chain.is_embedded:
        gas = min(int(gas * NODE_GAS_HEADROOM), chain.tx_gas_cap)
    if balance < value + gas * price:
        raise InsufficientFundsError(
            f"{label}: account {sender} holds {balance} wei, not enough for up to "
            f"{value + gas * price} wei"
        )
    tx["gas"] = gas
    if chain.is_embedded:
        # eth-tester mines every transaction at once: nothing to replace or resend.
        try:
            tx_hash = function.transact(tx)  # type: ignore[arg-type]
            receipt = chain.w3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=wait_timeout, poll_latency=RECEIPT_POLL
            )
        except TimeExhausted as exc:
            raise TransactionDroppedError(
                f"{label}: not mined within {wait_timeout:.0f} s"
            ) from exc
        except Exception as exc:
            raise _translate(exc, abi, label) from exc
    else:
        receipt = _send_until_mined(
            chain, tx, abi=abi, label=label, wait_timeout=wait_timeout, attempts=attempts
        )
    return receipt, gas


def _send_until_mined(
    chain: Chain,
    tx: dict[str, Any],
    *,
    abi: Sequence[Any],
    label: str,
    wait_timeout: float,
    attempts: int,
) -> TxReceipt:
    """Send ``tx`` (one nonce for every attempt) until one of its versions is mined."""
    w3 = chain.w3
    sender = tx["from"]
    sent: list[bytes] = []
    nonce: int | None = None
    fees: tuple[int, int] | None = None  # (maxFeePerGas, maxPriorityFeePerGas) to send with
    problems: list[str] = []
    for attempt in range(1, max(1, attempts) + 1):
        try:
            mined = _receipt_of_any(chain, sent)
            if mined is not None:
                return mined
            if nonce is None:
                nonce = int(w3.eth.get_transaction_count(sender, "pending"))
            params = {**tx, "nonce": nonce}
            if fees is not None:
                params["maxFeePerGas"], params["maxPriorityFeePerGas"] = fees
            tx_hash = w3.eth.send_transaction(params)  # type: ignore[arg-type]
        except Exception as exc:
            message = str(exc).lower()
            if not any(text in message for text in _RETRYABLE_SEND_ERRORS):
                raise _translate(exc, abi, label) from exc
            problems.append(f"attempt {attempt}: {exc}")
            logger.warning("%s: the node rejected the transaction (%s); retrying", label, exc)
            if "nonce" in message:
                nonce = None  # taken by another transaction of this account: ask again
            else:
                fees = _bumped_fees(chain, sent, fees)  # a version of it is pending: outbid it
            time.sleep(RETRY_DELAY * attempt)
            continue
        sent.append(bytes(tx_hash))
        try:
            return w3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=wait_timeout, poll_latency=RECEIPT_POLL
            )
        except TimeExhausted:
            pass
        except Exception as exc:
            raise _translate(exc, abi, label) from exc
        try:
            pending = _pending_fees(chain, tx_hash)
            if pending is None:
                problems.append(f"attempt {attempt}: 0x{bytes(tx_hash).hex()} was dropped")
            else:
                problems.append(
                    f"attempt {attempt}: 0x{bytes(tx_hash).hex()} still pending after "
                    f"{wait_timeout:g} s"
                )
                fees = _bumped_fees(chain, sent, pending)
        except Exception as exc:
            raise _translate(exc, abi, label) from exc
        logger.warning("%s: %s; sending it again (nonce %s)", label, problems[-1], nonce)
    try:
        mined = _receipt_of_any(chain, sent)
    except Exception as exc:
        raise _translate(exc, abi, label) from exc
    if mined is not None:
        return mined
    raise TransactionDroppedError(
        f"{label}: not mined after {attempts} attempt(s) from {sender} (nonce {nonce}): "
        + "; ".join(problems)
    )


def _receipt_of_any(chain: Chain, hashes: Sequence[bytes]) -> TxReceipt | None:
    """The receipt of whichever of ``hashes`` was mined, if one was."""
    from web3.exceptions import TransactionNotFound

    for tx_hash in hashes:
        try:
            return chain.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            continue
    return None


def _pending_fees(chain: Chain, tx_hash: bytes) -> tuple[int, int] | None:
    """The fees of a transaction the node still holds unmined; ``None`` when it dropped it."""
    from web3.exceptions import TransactionNotFound

    try:
        found = chain.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
    except TransactionNotFound:
        return None
    if found.get("blockNumber") is not None:
        return None  # mined after all: the next attempt finds its receipt
    max_fee = int(found.get("maxFeePerGas", found.get("gasPrice", 0)))
    tip = int(found.get("maxPriorityFeePerGas", found.get("gasPrice", 0)))
    return max_fee, tip


def _bumped_fees(
    chain: Chain, sent: Sequence[bytes], previous: tuple[int, int] | None
) -> tuple[int, int]:
    """Fees that outbid ``previous`` (or the last pending version) and today's market."""
    if previous is None and sent:
        previous = _pending_fees(chain, sent[-1])
    tip = int(chain.w3.eth.max_priority_fee)
    base = int(chain.w3.eth.get_block("pending").get("baseFeePerGas", 0))
    max_fee, priority = 2 * base + tip, tip
    if previous is not None:
        factor = 100 + FEE_BUMP_PERCENT
        max_fee = max(max_fee, previous[0] * factor // 100 + 1)
        priority = max(priority, previous[1] * factor // 100 + 1)
    return max_fee, min(priority, max_fee)


# ---------------------------------------------------------------- deployment


@dataclass(frozen=True)
class DeployParams:
    """The coordinator's constructor parameters, in Python terms."""

    num_weights: int
    scale: int
    max_abs_weight: int
    target_submissions: int
    min_submissions: int
    round_duration: int
    aggregation: str
    max_sample_count: int
    distance: str
    allowlist_enabled: bool
    min_reward_distance: int
    max_counted_distance: int
    words_per_segment: int
    tier_thresholds: tuple[int, ...]
    tier_rewards: tuple[int, ...]
    mode: str = "direct"
    reveal_duration: int = 0
    min_alignment_bps: int = ALIGNMENT_OFF

    def as_tuple(self) -> tuple[Any, ...]:
        """The ABI tuple for the constructor."""
        try:
            aggregation = AGGREGATION_CODES[self.aggregation]
            distance = DISTANCE_CODES[self.distance]
            mode = MODE_CODES[self.mode]
        except KeyError as exc:
            raise ConfigError(f"unknown aggregation or distance: {exc}") from None
        return (
            self.num_weights,
            self.scale,
            self.max_abs_weight,
            self.target_submissions,
            self.min_submissions,
            self.round_duration,
            aggregation,
            self.max_sample_count,
            distance,
            self.allowlist_enabled,
            self.min_reward_distance,
            self.max_counted_distance,
            self.words_per_segment,
            list(self.tier_thresholds),
            list(self.tier_rewards),
            mode,
            self.reveal_duration,
            self.min_alignment_bps,
        )

    @classmethod
    def from_config(
        cls, fl: FLConfig, *, num_weights: int, clients: int | None = None
    ) -> DeployParams:
        """Parameters from the ``federated_learning`` section for a model of ``num_weights``."""
        contract = fl.contract
        participants = clients or fl.clients
        target = contract.target_submissions or max(1, round(participants * fl.fraction))
        return cls(
            num_weights=num_weights,
            scale=fl.fixed_point.scale,
            max_abs_weight=fl.fixed_point.max_abs,
            target_submissions=target,
            min_submissions=contract.min_submissions or target,
            round_duration=contract.round_duration,
            aggregation=contract.aggregation,
            max_sample_count=contract.max_sample_count,
            distance=contract.distance,
            allowlist_enabled=contract.allowlist,
            min_reward_distance=contract.min_reward_distance,
            max_counted_distance=contract.max_counted_distance,
            words_per_segment=contract.words_per_segment,
            tier_thresholds=fl.rewards.thresholds(num_weights),
            tier_rewards=fl.rewards.amounts_wei,
            mode=contract.mode,
            reveal_duration=contract.reveal_duration,
            min_alignment_bps=contract.min_alignment_bps,
        )


def contract_at(chain: Chain, address: str, compiled: CompiledContract | None = None) -> Contract:
    """A handle on a deployed coordinator."""
    artifact = compiled or get_contract(CONTRACT_NAME)
    return chain.w3.eth.contract(address=to_checksum_address(address), abi=artifact.abi)


def deploy(
    chain: Chain,
    params: DeployParams,
    *,
    initial_words: Sequence[int] | None = None,
    pool_wei: int = 0,
    deployer: str | None = None,
) -> Contract:
    """Deploy a coordinator, load its initial model (zeros when ``None``) and open round 1."""
    artifact = get_contract(CONTRACT_NAME)
    owner = deployer or chain.accounts[0]
    factory = chain.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    constructor = factory.constructor(params.as_tuple())
    tx: dict[str, Any] = {"from": owner, "value": pool_wei}
    try:
        estimate = constructor.estimate_gas(tx)
        tx["gas"] = min(int(estimate * GAS_HEADROOM), chain.tx_gas_cap)
        tx_hash = constructor.transact(tx)
        receipt = chain.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120, poll_latency=0.05)
    except Exception as exc:
        raise _translate(exc, artifact.abi, "deploy") from exc
    if receipt["status"] != 1 or receipt["contractAddress"] is None:
        raise ChainError("deployment failed")
    chain.gas_used.append(int(receipt["gasUsed"]))
    contract = contract_at(chain, receipt["contractAddress"], artifact)
    load_initial_model(chain, contract, initial_words, owner=owner)
    logger.info("deployed %s at %s", CONTRACT_NAME, contract.address)
    return contract


def _chunk_size(per_word_gas: int, cap: int) -> int:
    # 90% of the cap: room for the transaction's fixed costs and for the last chunk's hashing.
    return max(1, int(cap * 0.9) // per_word_gas)


def load_initial_model(
    chain: Chain, contract: Contract, words: Sequence[int] | None, *, owner: str
) -> None:
    """Load the initial model in chunks that fit the per-transaction cap."""
    total = int(contract.functions.numWords().call())
    if words is not None and len(words) != total:
        raise ConfigError(f"the initial model has {len(words)} words; the contract expects {total}")
    sum_words = int(contract.functions.laneBits().call()) // 16
    # Each word: one model slot and `sum_words` sum slots written from zero (22,100 gas each),
    # plus its calldata.
    chunk = _chunk_size(22_100 * (1 + sum_words) + 1_200, chain.tx_gas_cap)
    start = 0
    while start < total:
        count = min(chunk, total - start)
        if words is None:
            send(chain, contract.functions.loadZeroModel(start, count), owner, what="loadZeroModel")
        else:
            part = list(words[start : start + count])
            send(
                chain,
                contract.functions.loadInitialModel(start, part),
                owner,
                what="loadInitialModel",
            )
        start += count


# ---------------------------------------------------------------- reads


@dataclass(frozen=True)
class RoundInfo:
    """The open round as the contract reports it."""

    number: int
    phase: str
    deadline: int
    started: int
    completed: int


def read_round(contract: Contract) -> RoundInfo:
    """The open round (a free call)."""
    number, phase, deadline, started, completed = call_with_retry(
        lambda: contract.functions.roundInfo().call()
    )
    return RoundInfo(int(number), PHASES[int(phase)], int(deadline), int(started), int(completed))


def read_model_words(contract: Contract) -> list[int]:
    """The packed global model (a free call)."""
    return [int(w) for w in call_with_retry(lambda: contract.functions.globalModel().call())]


@dataclass(frozen=True)
class SubmissionRecord:
    """One completed submission, from its ``SubmissionAccepted`` event."""

    round_number: int
    client: str
    sample_count: int
    distance: int
    tier: int
    reward_wei: int
    counted: bool
    gas_used: int
    block_number: int
    along: int = 0  # L1 distance the way the last global step went (direction guard on)
    against: int = 0  # L1 distance the other way

    @property
    def alignment(self) -> float | None:
        """``(along - against) / (along + against)``, or ``None`` when the guard measured nothing."""
        moved = self.along + self.against
        return None if moved == 0 else (self.along - self.against) / moved


def submission_from_receipt(contract: Contract, receipt: TxReceipt) -> SubmissionRecord | None:
    """The ``SubmissionAccepted`` event in ``receipt``, if any."""
    events = contract.events.SubmissionAccepted().process_receipt(receipt, errors=DISCARD)
    if not events:
        return None
    args = events[0]["args"]
    return SubmissionRecord(
        round_number=int(args["round"]),
        client=str(args["client"]),
        sample_count=int(args["sampleCount"]),
        distance=int(args["distance"]),
        tier=int(args["tier"]),
        reward_wei=int(args["reward"]),
        counted=bool(args["counted"]),
        gas_used=int(receipt["gasUsed"]),
        block_number=int(receipt["blockNumber"]),
        along=int(args["along"]),
        against=int(args["against"]),
    )


def submission_receipt(
    chain: Chain, contract: Contract, client: str, round_number: int
) -> TxReceipt | None:
    """The receipt of ``client``'s completing transaction in ``round_number``, found by its
    ``SubmissionAccepted`` log (for a client that lost the receipt, e.g. when its node went down
    while it waited)."""
    logs = contract.events.SubmissionAccepted().get_logs(
        from_block=0, argument_filters={"client": client, "round": round_number}
    )
    if not logs:
        return None
    return chain.w3.eth.get_transaction_receipt(logs[-1]["transactionHash"])


def round_closed_in(contract: Contract, receipt: TxReceipt) -> int | None:
    """The number of the round that ``receipt`` closed, if it closed one."""
    events = contract.events.RoundClosed().process_receipt(receipt, errors=DISCARD)
    return int(events[0]["args"]["round"]) if events else None


def submit_words(
    chain: Chain,
    contract: Contract,
    sender: str,
    *,
    round_number: int,
    sample_count: int,
    words: Sequence[int],
    words_per_segment: int,
    start_segment: int = 0,
) -> list[TxReceipt]:
    """Send a packed vector, in segments when it spans several, from ``start_segment`` on."""
    receipts = []
    segments = max(1, -(-len(words) // words_per_segment))
    for segment in range(start_segment, segments):
        part = list(words[segment * words_per_segment : (segment + 1) * words_per_segment])
        function = contract.functions.submit(round_number, sample_count, segment, part)
        receipts.append(
            send(chain, function, sender, what=f"submit round {round_number} segment {segment}")
        )
    return receipts


# ---------------------------------------------------------------- deployment records


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


# ---------------------------------------------------------------- commit-reveal and secure aggregation


def segment_hashes(words: Sequence[int], words_per_segment: int) -> list[bytes]:
    """keccak256 of each segment's packed words (``abi.encodePacked(uint256[])``)."""
    hashes = []
    for start in range(0, len(words), words_per_segment):
        chunk = words[start : start + words_per_segment]
        hashes.append(keccak(b"".join(int(w).to_bytes(32, "big") for w in chunk)))
    return hashes


def commitment(
    *,
    chain_id: int,
    contract_address: str,
    round_number: int,
    client: str,
    sample_count: int,
    salt: bytes,
    hashes: Sequence[bytes],
) -> bytes:
    """The commitment ``FLCoordinator.commitmentOf`` computes, computed locally."""
    encoded = abi_encode(
        ["uint256", "address", "uint256", "address", "uint256", "bytes32", "bytes32[]"],
        [chain_id, contract_address, round_number, client, sample_count, salt, list(hashes)],
    )
    return keccak(encoded)


def commit_words(
    chain: Chain,
    contract: Contract,
    sender: str,
    *,
    round_number: int,
    sample_count: int,
    words: Sequence[int],
    words_per_segment: int,
    salt: bytes,
) -> TxReceipt:
    """Commit to a packed vector (CommitReveal mode)."""
    digest = commitment(
        chain_id=int(chain.w3.eth.chain_id),
        contract_address=str(contract.address),
        round_number=round_number,
        client=sender,
        sample_count=sample_count,
        salt=salt,
        hashes=segment_hashes(words, words_per_segment),
    )
    return send(
        chain,
        contract.functions.commit(round_number, digest),
        sender,
        what=f"commit round {round_number}",
    )


def reveal_words(
    chain: Chain,
    contract: Contract,
    sender: str,
    *,
    round_number: int,
    sample_count: int,
    words: Sequence[int],
    words_per_segment: int,
    salt: bytes,
    start_segment: int = 0,
) -> list[TxReceipt]:
    """Reveal a committed vector, segment by segment from ``start_segment`` (CommitReveal mode)."""
    hashes = segment_hashes(words, words_per_segment)
    receipts = []
    for segment in range(start_segment, len(hashes)):
        part = list(words[segment * words_per_segment : (segment + 1) * words_per_segment])
        function = contract.functions.reveal(
            round_number, sample_count, segment, part, salt, hashes
        )
        receipts.append(
            send(chain, function, sender, what=f"reveal round {round_number} segment {segment}")
        )
    return receipts


def read_cohort(contract: Contract) -> list[tuple[str, bytes]]:
    """The secure-aggregation cohort: (account, X25519 public key) in registration order."""
    accounts, keys = call_with_retry(lambda: contract.functions.cohort().call())
    return [(str(a), bytes(k)) for a, k in zip(accounts, keys, strict=True)]
