"""Helpers of the round-pipeline contract tests, beside those of ``tests/conftest.py``: exact
reverts, the chain's clock at a boundary, crafted words, closes that follow ``entries()``, and
the money identity.

Not a test module: the contract test modules import it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.types import TxReceipt

from fl_client.chain import (
    Chain,
    DeployParams,
    close_function,
    deploy,
    deploy_units,
    read_entries,
    send,
    translate,
)
from fl_client.codec import LANES, OFFSET, pack, split_segments
from fl_client.compile import CompiledContract, get_contract
from fl_client.errors import ContractRevertError
from tests.conftest import SMALL_WEIGHTS, events, revert_args, small_params, words_per_segment

PHASE = {"Setup": 0, "Open": 1, "Commit": 2, "Reveal": 3, "Closing": 4}
MODE = {"plain": 0, "commit_reveal": 1, "secure_aggregation": 2}
NO_TIER = 255
ZERO_ADDRESS = "0x" + "00" * 20
RAW_GAS = 16_000_000  # gas of a transaction sent without the client's pre-check
DEFAULT_MAX_ABS = 3000  # small_params' maxAbsWeight
ZERO_WORD = sum(OFFSET << (16 * lane) for lane in range(LANES))  # sixteen zero weights


# ---------------------------------------------------------------- reverts


@contextmanager
def reverts(
    error: str, /, **expected: object
) -> Iterator[pytest.ExceptionInfo[ContractRevertError]]:
    """Expect the block to raise the custom error ``error`` with exactly the arguments
    ``expected`` (addresses checksummed)."""
    with pytest.raises(ContractRevertError) as caught:
        yield caught
    assert caught.value.name == error, f"expected {error}, got {caught.value}"
    assert revert_args(caught.value) == expected, f"{error}: {revert_args(caught.value)}"


def raw_send(chain: Chain, function: ContractFunction, sender: str, *, value: int = 0) -> TxReceipt:
    """Send without the client's pre-check (no call first): the receipt, whatever its status.
    For a transaction that must land in the very next block, at an exact timestamp."""
    tx_hash = function.transact({"from": sender, "gas": RAW_GAS, "value": value})  # type: ignore[arg-type]
    return chain.w3.eth.wait_for_transaction_receipt(tx_hash)


def view_call(function: ContractFunction) -> Any:
    """A free call whose revert is raised as the decoded :class:`ContractRevertError`."""
    try:
        return function.call()
    except Exception as exc:
        raise translate(exc, function.contract_abi, function.fn_name) from exc


def constructor_revert(
    chain: Chain, params: DeployParams, units: Sequence[str], *, sender: str
) -> ContractRevertError:
    """The decoded revert of deploying a coordinator with ``params`` and ``units`` (it must revert)."""
    artifact = get_contract("FLCoordinator")
    factory = chain.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    constructor = factory.constructor(params.as_tuple(), tuple(units))
    try:
        constructor.estimate_gas({"from": sender})
    except Exception as exc:
        error = translate(exc, artifact.abi, "deploy")
        assert isinstance(error, ContractRevertError), repr(error)
        return error
    raise AssertionError("the constructor did not revert")


def constructor_outcome(
    chain: Chain, params: DeployParams, *, sender: str
) -> ContractRevertError | None:
    """Run the constructor with the chain's units as a call (nothing is deployed): ``None`` when
    it succeeds, else its decoded revert."""
    units = deploy_units(chain, sender=sender)
    artifact = get_contract("FLCoordinator")
    factory = chain.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    data = factory.constructor(params.as_tuple(), tuple(units)).data_in_transaction
    try:
        chain.w3.eth.call({"from": sender, "data": data, "gas": 30_000_000})
    except Exception as exc:
        error = translate(exc, artifact.abi, "deploy")
        assert isinstance(error, ContractRevertError), repr(error)
        return error
    return None


def deploy_in_setup(chain: Chain, params: DeployParams, *, owner: str) -> Contract:
    """A coordinator deployed without its initial model: it stays in Setup."""
    units = deploy_units(chain, sender=owner)
    artifact = get_contract("FLCoordinator")
    factory = chain.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    tx_hash = factory.constructor(params.as_tuple(), tuple(units)).transact(
        {"from": owner, "gas": RAW_GAS}
    )
    receipt = chain.w3.eth.wait_for_transaction_receipt(tx_hash)
    assert receipt["status"] == 1
    address = receipt["contractAddress"]
    assert address is not None
    return chain.w3.eth.contract(address=address, abi=artifact.abi)


def module_deployments(
    chain: Chain,
    configs: Mapping[str, Mapping[str, Any]],
    in_setup: Mapping[str, Mapping[str, Any]] | None = None,
) -> Iterator[dict[str, Contract]]:
    """Body of a module-scoped fixture: one coordinator per entry of ``configs`` (changes to
    ``small_params``, plus ``pool_wei`` and ``initial`` values) with round 1 open, and one per
    entry of ``in_setup`` left in Setup, deployed once for the module on a snapshot that is rolled
    back after it. Tests still run on ``isolated`` snapshots of their own."""
    snapshot = chain.snapshot()
    units = list(chain.units)
    owner = chain.accounts[0]
    contracts: dict[str, Contract] = {}
    for name, config in (in_setup or {}).items():
        contracts[name] = deploy_in_setup(chain, small_params(**config), owner=owner)
    for name, config in configs.items():
        changes = dict(config)
        pool_wei = int(changes.pop("pool_wei", 10**6))
        initial = changes.pop("initial", None)
        words = None if initial is None else pack(np.asarray(initial))
        contracts[name] = deploy(
            chain, small_params(**changes), initial_words=words, pool_wei=pool_wei, deployer=owner
        )
    yield contracts
    chain.revert(snapshot)
    chain.units = units


# ---------------------------------------------------------------- the clock


def mine_at(chain: Chain, timestamp: int) -> None:
    """Mine a block at ``timestamp``: calls (and the client's pre-check) run at that time, and the
    next transaction lands one second later."""
    assert chain.tester is not None
    chain.tester.time_travel(timestamp)
    chain.tester.mine_blocks()
    assert chain.timestamp() == timestamp


def next_block_at(chain: Chain, timestamp: int) -> None:
    """Make the next block (the next transaction's) carry ``timestamp`` exactly."""
    assert chain.tester is not None
    chain.tester.time_travel(timestamp)
    assert int(chain.w3.eth.get_block("pending")["timestamp"]) == timestamp


def block_time(chain: Chain, receipt: TxReceipt) -> int:
    """Timestamp of the block that holds ``receipt``."""
    return int(chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"])


def deadline_of(contract: Contract) -> int:
    """The open round's deadline."""
    return int(contract.functions.roundInfo().call()[2])


def window_end(contract: Contract) -> int:
    """``closeWindow`` after the open round's deadline."""
    return int(contract.functions.roundDetails().call()[3])


# ---------------------------------------------------------------- vectors and words


def constant(value: int, size: int = SMALL_WEIGHTS) -> np.ndarray:
    """A vector with every entry ``value``."""
    return np.full(size, value, dtype=np.int64)


def vector_with_l1(
    total: int, size: int = SMALL_WEIGHTS, bound: int = DEFAULT_MAX_ABS
) -> np.ndarray:
    """A vector of L1 norm ``total`` (so at distance ``total`` from the zero model), alternating
    signs, each entry within ``bound``."""
    assert 0 <= total <= size * bound
    values = np.zeros(size, dtype=np.int64)
    left = total
    for index in range(size):
        part = min(bound, left)
        values[index] = part if index % 2 == 0 else -part
        left -= part
    return values


def random_vector(
    rng: np.random.Generator, size: int = SMALL_WEIGHTS, bound: int = DEFAULT_MAX_ABS
) -> np.ndarray:
    """A random vector within ``[-bound, bound]``."""
    return rng.integers(-bound, bound + 1, size=size, dtype=np.int64)


def with_lane(words: Sequence[int], index: int, raw: int) -> list[int]:
    """``words`` with the 16-bit lane of weight ``index`` set to the raw (offset-binary) ``raw``."""
    out = [int(w) for w in words]
    word, lane = divmod(index, LANES)
    shift = 16 * lane
    out[word] = (out[word] & ~(0xFFFF << shift)) | ((raw & 0xFFFF) << shift)
    return out


def with_value(words: Sequence[int], index: int, value: int) -> list[int]:
    """``words`` with weight ``index`` set to the signed ``value`` (-32768 .. 32767), range unchecked."""
    return with_lane(words, index, value + OFFSET)


def model_values(contract: Contract) -> list[int]:
    """The global model as signed quantized weights."""
    return [int(w) for w in contract.functions.globalModelWeights().call()]


# ---------------------------------------------------------------- closes


def segment_words(
    contract: Contract,
    updates: Mapping[str, np.ndarray | Sequence[int]],
    segment: int,
    *,
    omitted: Sequence[int] = (),
    raw: bool = False,
) -> list[int]:
    """The words of a close of ``segment``: that segment of every entry in ``entries()`` order,
    leaving out the dropped entries and those in ``omitted``. ``updates`` maps each client to its
    values (or, with ``raw``, to its packed words)."""
    per_segment = words_per_segment(contract)
    words: list[int] = []
    for index, entry in enumerate(read_entries(contract)):
        if entry.dropped or index in omitted:
            continue
        update = updates[entry.client]
        packed = [int(w) for w in update] if raw else pack(np.asarray(update))
        words.extend(split_segments(packed, per_segment)[segment])
    return words


def close_segment(
    chain: Chain,
    contract: Contract,
    sender: str,
    updates: Mapping[str, np.ndarray | Sequence[int]],
    segment: int,
    *,
    round_number: int = 1,
    omitted: Sequence[int] = (),
    raw: bool = False,
) -> TxReceipt:
    """Close one segment with the words of ``updates`` (see :func:`segment_words`)."""
    words = segment_words(contract, updates, segment, omitted=omitted, raw=raw)
    function = close_function(
        contract, round_number=round_number, segment=segment, words=words, omitted=omitted
    )
    return send(chain, function, sender)


def close_round(
    chain: Chain,
    contract: Contract,
    sender: str,
    updates: Mapping[str, np.ndarray | Sequence[int]],
    *,
    round_number: int = 1,
    omitted: Sequence[int] = (),
    first_segment: int = 0,
    raw: bool = False,
) -> list[TxReceipt]:
    """Close the round from ``first_segment`` to the last, reading ``entries()`` before each
    segment (entries dropped by an earlier segment carry no more words); ``omitted`` applies to
    the first segment closed."""
    segments = int(contract.functions.numSegments().call())
    receipts = []
    for segment in range(first_segment, segments):
        receipts.append(
            close_segment(
                chain,
                contract,
                sender,
                updates,
                segment,
                round_number=round_number,
                omitted=omitted if segment == first_segment else (),
                raw=raw,
            )
        )
    return receipts


# ---------------------------------------------------------------- money


def balance(chain: Chain, address: str) -> int:
    """Wei held by ``address``."""
    return int(chain.w3.eth.get_balance(address))  # type: ignore[arg-type]


def gas_cost(receipt: TxReceipt) -> int:
    """Wei the sender of ``receipt`` paid for gas."""
    return int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])


def assert_money_identity(chain: Chain, contract: Contract, accounts: Sequence[str]) -> None:
    """The contract holds exactly what it owes: ``balance == totalFunded - totalWithdrawn +
    bonds held + bonds returned`` (forfeited bonds are inside ``totalFunded``), and that equals
    the pool not yet credited, plus the credits of ``accounts`` (every account that may hold
    one), plus the bonds held."""
    f = contract.functions
    held, returned = (int(x) for x in f.bonds().call())
    funded = int(f.totalFunded().call())
    withdrawn = int(f.totalWithdrawn().call())
    credited = int(f.totalCredited().call())
    available = int(f.availableRewards().call())
    owed = sum(int(f.credit(a).call()) for a in set(accounts))
    held_wei = balance(chain, str(contract.address))
    assert held_wei == funded - withdrawn + held + returned, (held_wei, funded, withdrawn, held)
    assert available == funded - credited
    assert owed == credited + returned - withdrawn
    assert held_wei == available + owed + held


def event_args(
    contract: Contract, name: str, receipts: Sequence[TxReceipt]
) -> list[dict[str, Any]]:
    """The arguments of every ``name`` event in ``receipts``, in order."""
    return [args for receipt in receipts for args in events(contract, name, receipt)]


# ---------------------------------------------------------------- withdrawers


def deploy_attacker(
    chain: Chain,
    compiled: dict[str, CompiledContract],
    coordinator: Contract,
    mode: int,
    deployer: str,
) -> Contract:
    """A ReentrantWithdrawer aimed at ``coordinator``; its ABI carries the coordinator's errors so
    that reverts bubbling up through it decode."""
    artifact = compiled["ReentrantWithdrawer"]
    factory = chain.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    tx_hash = factory.constructor(coordinator.address, mode).transact(
        {"from": deployer, "gas": RAW_GAS}
    )
    receipt = chain.w3.eth.wait_for_transaction_receipt(tx_hash)
    assert receipt["status"] == 1
    address = receipt["contractAddress"]
    assert address is not None
    errors = [entry for entry in coordinator.abi if entry.get("type") == "error"]
    return chain.w3.eth.contract(address=address, abi=[*artifact.abi, *errors])
