"""Sending transactions: estimate (a revert is decoded before anything is sent), check the size
and the gas cap, send with EIP-1559 fees, wait, and resend when a node drops or stalls one."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from web3.contract.contract import ContractFunction
from web3.exceptions import TimeExhausted
from web3.types import TxReceipt

from fl_client.chain.connection import Chain
from fl_client.chain.reverts import translate
from fl_client.errors import (
    ChainError,
    InsufficientFundsError,
    OutOfGasError,
    TransactionDroppedError,
    TransactionTooLargeError,
)

logger = logging.getLogger(__name__)

# Largest calldata a transaction may carry: geth-style pools refuse transactions above 128 KiB
# encoded; 1 KiB is left for the envelope (nonce, fees, signature). The contract's constructor
# holds configurations to the same figure (`FLCoordinator.MAX_CALLDATA_BYTES`).
MAX_CALLDATA_BYTES = 131_072 - 1_024

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
        if receipt["status"] != 1:
            chain.gas_used.append(int(receipt["gasUsed"]))  # mined and paid for, though it failed
        if receipt["status"] == 1 or estimate == estimates:
            break
        # Out of gas at the top, or inside a unit's delegatecall (which then reverts with the
        # 1/64 it kept, so gasUsed < gas): estimate again; a call that now reverts raises its
        # decoded error unsent.
        logger.warning(
            "%s ran out of gas or failed (%s of %s gas used) in block %s: the state changed "
            "since the estimate; estimating again",
            label,
            receipt["gasUsed"],
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
    # Encode the calldata once (it takes milliseconds for a segment of hundreds of words) for the
    # size check, the call, the estimate and every version of the transaction.
    data = function._encode_transaction_data()
    size = (len(data) - 2) // 2
    if size > MAX_CALLDATA_BYTES:
        raise TransactionTooLargeError(
            f"{label}: {size:,} bytes of calldata, above the {MAX_CALLDATA_BYTES:,} that a "
            "transaction may carry to pass geth-style pools (128 KiB encoded)"
        )
    if not chain.is_embedded:
        tx.update(to=function.address, data=data)
    try:
        balance = chain.w3.eth.get_balance(sender)  # type: ignore[arg-type]
        price = chain.w3.eth.gas_price
    except Exception as exc:
        raise translate(exc, abi, label) from exc
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
        error = translate(exc, abi, label)
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
            raise translate(exc, abi, label) from exc
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
                raise translate(exc, abi, label) from exc
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
            raise translate(exc, abi, label) from exc
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
            raise translate(exc, abi, label) from exc
        logger.warning("%s: %s; sending it again (nonce %s)", label, problems[-1], nonce)
    try:
        mined = _receipt_of_any(chain, sent)
    except Exception as exc:
        raise translate(exc, abi, label) from exc
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


@dataclass(frozen=True)
class Call:
    """One transaction to send: a contract call, its sender and a label for errors and logs."""

    function: ContractFunction
    sender: str
    label: str
    value: int = 0


def send_all(
    chain: Chain, calls: Sequence[Call], *, wait_timeout: float = 120.0
) -> list[TxReceipt]:
    """Send transactions of many senders without waiting for each receipt in turn.

    On a node each sender's calls are estimated, sent and waited for in order in a thread of
    their own (a sender's nonces follow one another; the senders are independent), so that a
    round's submissions land in the same block(s) instead of one block each. A sender's later
    calls are not sent once one of its calls failed. The embedded chain mines every transaction
    at once and is not thread-safe, so there they go one after the other. Receipts come back in
    the order of ``calls``; the first failure is raised (after every sender finished, so that
    none is left half-done).
    """
    if chain.is_embedded or len(calls) <= 1:
        return [
            send(
                chain, c.function, c.sender, value=c.value, what=c.label, wait_timeout=wait_timeout
            )
            for c in calls
        ]
    by_sender: dict[str, list[int]] = {}
    for index, call in enumerate(calls):
        by_sender.setdefault(call.sender.lower(), []).append(index)
    outcomes: list[TxReceipt | BaseException | None] = [None] * len(calls)

    def send_in_order(indices: list[int]) -> None:
        for index in indices:
            c = calls[index]
            try:
                outcomes[index] = send(
                    chain,
                    c.function,
                    c.sender,
                    value=c.value,
                    what=c.label,
                    wait_timeout=wait_timeout,
                )
            except BaseException as exc:
                outcomes[index] = exc
                return

    with ThreadPoolExecutor(max_workers=min(16, len(by_sender))) as pool:
        for future in [pool.submit(send_in_order, indices) for indices in by_sender.values()]:
            future.result()
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    receipts = [o for o in outcomes if o is not None and not isinstance(o, BaseException)]
    if len(receipts) != len(calls):  # pragma: no cover - every call was sent or failed
        raise ChainError("send_all lost a transaction")
    return receipts
