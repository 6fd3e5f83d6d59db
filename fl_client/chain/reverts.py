"""Failures as typed errors: a revert decoded to the contract's custom error and its values."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import requests
from eth_abi.abi import decode as abi_decode
from eth_tester.exceptions import TransactionFailed
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address
from web3.exceptions import ContractCustomError, ContractLogicError, ContractPanicError

from fl_client.errors import (
    ChainError,
    ContractRevertError,
    InsufficientFundsError,
    NodeUnreachableError,
    OutOfGasError,
    TransactionDroppedError,
)


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
    args = dict(zip(spec.names, values, strict=True))
    return ContractRevertError(spec.name, args, _explain(spec.name, args))


# Deployment parameters that are lists: CoordinatorInvalidParameter's value is then the position
# of the offending entry, not a value.
_LIST_PARAMETERS = frozenset(
    {"tierThresholds", "tierRewards", "rdpPerParticipation", "rdpConversion"}
)
# ... or a count.
_COUNT_PARAMETERS = frozenset({"tierCount", "units"})


def _explain(name: str, args: dict[str, Any]) -> str | None:
    """A sentence for the errors whose values need one; ``None``: the default rendering."""
    if name == "CoordinatorInvalidParameter":
        parameter, value = args["name"], args["value"]
        if parameter in _LIST_PARAMETERS:
            return (
                f"CoordinatorInvalidParameter(name={parameter!r}, value={value}): entry {value} "
                f"(counting from 0) of {parameter} is invalid (thresholds must ascend strictly, "
                "rewards descend strictly and be positive; ledger lists match in length)"
            )
        if parameter in _COUNT_PARAMETERS:
            return f"CoordinatorInvalidParameter(name={parameter!r}, value={value}): {value} is not an accepted count"
        return f"CoordinatorInvalidParameter(name={parameter!r}, value={value}): {parameter} = {value} is out of range"
    if name == "CoordinatorExceedsTransactionLimit":
        return (
            f"CoordinatorExceedsTransactionLimit(limit={args['limit']!r}, needed={args['needed']}, "
            f"allowed={args['allowed']}): the configuration's largest transaction needs "
            f"{args['needed']:,} ({args['limit']}) where {args['allowed']:,} is allowed: fewer words "
            "per segment or a smaller target"
        )
    return None


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


def translate(exc: Exception, abi: Sequence[Any], what: str) -> ChainError:
    """The typed error of a failed call or transaction: a decoded revert, a lost node, missing
    funds, gas, a nonce problem, or a plain :class:`ChainError`."""
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
