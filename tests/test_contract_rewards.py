"""FLCoordinator rewards: tiers, the free-rider and poisoning guards, the pool, withdrawal, reentrancy.

The default coordinator (``small_params``) has tiers ``(1,000, 10,000, 50,000)`` paying
``(300, 200, 100)`` wei on the L1 distance from a zero initial model, and a pool of 1e6 wei.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from web3.contract import Contract
from web3.types import TxReceipt

from fl_client.aggregation import NO_TIER, integer_average, reward_tier
from fl_client.chain import Chain, decode_revert, send
from fl_client.codec import pack
from fl_client.compile import CompiledContract
from fl_client.errors import ContractRevertError
from tests.conftest import SMALL_WEIGHTS, DeployFactory, events, revert_args, submit

POOL = 10**6
THRESHOLDS = (1_000, 10_000, 50_000)
REWARDS = (300, 200, 100)
RAW_GAS = 16_000_000
REENTER, REENTER_SWALLOW, REJECT = 0, 1, 2  # ReentrantWithdrawer.Mode


# ---------------------------------------------------------------- helpers


def accepted(contract: Contract, receipt: TxReceipt) -> dict[str, Any]:
    """The one SubmissionAccepted event of ``receipt``."""
    [event] = events(contract, "SubmissionAccepted", receipt)
    return event


def with_l1(total: int, *, max_abs: int = 3000) -> np.ndarray:
    """A SMALL_WEIGHTS vector of non-negative weights whose L1 norm is exactly ``total``."""
    values = np.zeros(SMALL_WEIGHTS, dtype=np.int64)
    full, rest = divmod(total, max_abs)
    assert full + (rest > 0) <= SMALL_WEIGHTS
    values[:full] = max_abs
    if rest:
        values[full] = rest
    assert int(np.abs(values).sum()) == total
    return values


def balance(chain: Chain, account: str) -> int:
    """Wei held by ``account``."""
    return int(chain.w3.eth.get_balance(account))  # type: ignore[arg-type]


def gas_cost(receipt: TxReceipt) -> int:
    """Wei the sender paid for ``receipt``."""
    return int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])


def assert_solvent(chain: Chain, contract: Contract) -> None:
    """The contract holds every credited wei not yet withdrawn (and, funded only through
    ``fund``/``receive``/the constructor, exactly what was funded minus what was withdrawn)."""
    f = contract.functions
    funded, credited, withdrawn = (
        f.totalFunded().call(),
        f.totalCredited().call(),
        f.totalWithdrawn().call(),
    )
    held = balance(chain, contract.address)
    assert held >= credited - withdrawn
    assert held == funded - withdrawn
    assert f.availableRewards().call() == funded - credited


# ---------------------------------------------------------------- tiers

TIER_CASES: list[tuple[int, int, int]] = [
    # L1 distance, tier, reward
    (0, 0, 300),
    (1_000, 0, 300),
    (1_001, 1, 200),
    (10_000, 1, 200),
    (10_001, 2, 100),
    (50_000, 2, 100),
    (50_001, NO_TIER, 0),
    (120_000, NO_TIER, 0),  # every weight at maxAbs
]


@pytest.mark.parametrize(
    ("dist", "tier", "reward"), TIER_CASES, ids=[str(c[0]) for c in TIER_CASES]
)
def test_tier_boundaries(
    isolated: Chain, coordinator: Contract, client_a: str, dist: int, tier: int, reward: int
) -> None:
    # Prepare
    values = with_l1(dist)
    # Execute
    receipt = submit(isolated, coordinator, client_a, values)
    # Assert
    event = accepted(coordinator, receipt)
    assert (event["distance"], event["tier"], event["reward"], event["counted"]) == (
        dist,
        tier,
        reward,
        True,
    )
    assert reward_tier(dist, THRESHOLDS, REWARDS).tier == tier
    assert coordinator.functions.credit(client_a).call() == reward
    assert coordinator.functions.totalCredited().call() == reward
    assert coordinator.functions.availableRewards().call() == POOL - reward
    assert_solvent(isolated, coordinator)


@pytest.mark.parametrize(
    ("values", "dist", "tier"),
    [([30, 10], 1_000, 0), ([30, 10, 1], 1_001, 1), ([100, 100, 1], 20_001, 2)],
)
def test_tier_boundaries_squared_l2(
    isolated: Chain,
    deploy_coordinator: DeployFactory,
    client_a: str,
    values: list[int],
    dist: int,
    tier: int,
) -> None:
    # Prepare
    contract = deploy_coordinator(distance="squared_l2")
    vector = np.zeros(SMALL_WEIGHTS, dtype=np.int64)
    vector[: len(values)] = values
    # Execute
    event = accepted(contract, submit(isolated, contract, client_a, vector))
    # Assert
    assert (event["distance"], event["tier"], event["reward"]) == (dist, tier, REWARDS[tier])


def test_credit_accumulates_over_rounds(
    isolated: Chain, deploy_coordinator: DeployFactory, client_a: str, client_b: str
) -> None:
    # Prepare: one-client rounds
    contract = deploy_coordinator(target_submissions=1, min_submissions=1)
    # Execute
    submit(isolated, contract, client_a, with_l1(500))  # round 1: tier 0 from zeros
    after_first = contract.functions.credit(client_a).call()
    model = with_l1(500)
    update = model.copy()
    update[-1] = 3000  # L1 3,000 from the round-1 model: tier 1
    submit(isolated, contract, client_a, update, round_number=2)
    after_second = contract.functions.credit(client_a).call()
    submit(isolated, contract, client_b, update, round_number=3)  # distance 0: tier 0
    # Assert
    assert (after_first, after_second) == (300, 500)
    assert contract.functions.credit(client_b).call() == 300
    assert contract.functions.totalCredited().call() == 800
    assert contract.functions.availableRewards().call() == POOL - 800
    assert_solvent(isolated, contract)


# ---------------------------------------------------------------- guards


@pytest.mark.parametrize(("dist", "tier"), [(0, NO_TIER), (99, NO_TIER), (100, 0), (101, 0)])
def test_min_reward_distance_boundary(
    isolated: Chain, deploy_coordinator: DeployFactory, client_a: str, dist: int, tier: int
) -> None:
    # Prepare
    contract = deploy_coordinator(min_reward_distance=100)
    # Execute
    event = accepted(contract, submit(isolated, contract, client_a, with_l1(dist)))
    # Assert
    reward = 0 if tier == NO_TIER else REWARDS[tier]
    assert (event["distance"], event["tier"], event["reward"], event["counted"]) == (
        dist,
        tier,
        reward,
        True,
    )
    assert reward_tier(dist, THRESHOLDS, REWARDS, min_reward_distance=100).tier == tier
    assert contract.functions.credit(client_a).call() == reward


def test_free_rider_earns_nothing_but_is_averaged(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str]
) -> None:
    # Prepare
    rng = np.random.default_rng(10)
    model = rng.integers(-500, 501, size=SMALL_WEIGHTS, dtype=np.int64)
    contract = deploy_coordinator(initial=model, min_reward_distance=100)
    b = model + 10  # L1 400
    c = model - 3  # L1 120
    # Execute
    free_rider = accepted(contract, submit(isolated, contract, clients[0], model))
    honest = [
        accepted(contract, submit(isolated, contract, x, v))
        for x, v in zip(clients[1:3], (b, c), strict=True)
    ]
    # Assert
    assert (free_rider["distance"], free_rider["tier"], free_rider["reward"]) == (0, NO_TIER, 0)
    assert free_rider["counted"] is True
    assert [(e["distance"], e["tier"], e["reward"]) for e in honest] == [
        (400, 0, 300),
        (120, 0, 300),
    ]
    assert contract.functions.credit(clients[0]).call() == 0
    assert contract.functions.modelVersion().call() == 1
    expected = integer_average([model, b, c])  # the free rider's copy is in the average
    assert [int(w) for w in contract.functions.globalModelWeights().call()] == expected.tolist()
    assert expected.tolist() != integer_average([b, c]).tolist()


def test_poisoning_bound_excludes_far_submission_from_average(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str]
) -> None:
    # Prepare
    contract = deploy_coordinator(max_counted_distance=5_000)
    near_a = with_l1(4_000)
    near_b = -with_l1(5_000)  # exactly at the bound: counted
    far = with_l1(5_001)
    # Execute
    events_ = [
        accepted(contract, submit(isolated, contract, client, vector))
        for client, vector in zip(clients, (near_a, far, near_b), strict=False)
    ]
    # Assert
    assert [(e["distance"], e["tier"], e["reward"], e["counted"]) for e in events_] == [
        (4_000, 1, 200, True),
        (5_001, NO_TIER, 0, False),
        (5_000, 1, 200, True),
    ]
    assert reward_tier(5_001, THRESHOLDS, REWARDS, max_counted_distance=5_000).tier == NO_TIER
    assert contract.functions.credit(clients[1]).call() == 0
    assert contract.functions.hasSubmitted(clients[1], 1).call() is True
    # the round closed at its target of 3 complete submissions, without the far one
    assert contract.functions.modelVersion().call() == 1
    expected = integer_average([near_a, near_b])
    assert [int(w) for w in contract.functions.globalModelWeights().call()] == expected.tolist()


# ---------------------------------------------------------------- pool


def test_small_pool_credits_what_is_left_then_nothing(
    isolated: Chain, deploy_coordinator: DeployFactory, client_a: str, client_b: str
) -> None:
    # Prepare
    contract = deploy_coordinator(pool_wei=250)
    # Execute
    first = accepted(contract, submit(isolated, contract, client_a, with_l1(10)))
    second = accepted(contract, submit(isolated, contract, client_b, with_l1(10)))
    # Assert
    assert (first["tier"], first["reward"]) == (0, 250)
    assert (second["tier"], second["reward"], second["counted"]) == (0, 0, True)
    assert contract.functions.credit(client_a).call() == 250
    assert contract.functions.credit(client_b).call() == 0
    assert contract.functions.totalCredited().call() == 250
    assert contract.functions.totalFunded().call() == 250
    assert contract.functions.availableRewards().call() == 0
    assert_solvent(isolated, contract)


def test_empty_pool_credits_zero_without_reverting(
    isolated: Chain, deploy_coordinator: DeployFactory, client_a: str
) -> None:
    # Prepare
    contract = deploy_coordinator(pool_wei=0)
    # Execute
    event = accepted(contract, submit(isolated, contract, client_a, with_l1(10)))
    # Assert
    assert (event["tier"], event["reward"]) == (0, 0)
    assert contract.functions.credit(client_a).call() == 0
    assert contract.functions.totalCredited().call() == 0
    assert contract.functions.availableRewards().call() == 0
    assert contract.functions.hasSubmitted(client_a, 1).call() is True


def test_funding_refills_an_exhausted_pool(
    isolated: Chain, deploy_coordinator: DeployFactory, client_a: str, client_b: str, funder: str
) -> None:
    # Prepare
    contract = deploy_coordinator(pool_wei=100)
    submit(isolated, contract, client_a, with_l1(10))  # takes the 100 left
    # Execute
    send(isolated, contract.functions.fund(), funder, value=1_000)
    event = accepted(contract, submit(isolated, contract, client_b, with_l1(10)))
    # Assert
    assert event["reward"] == 300
    assert contract.functions.availableRewards().call() == 100 + 1_000 - 100 - 300
    assert_solvent(isolated, contract)


# ---------------------------------------------------------------- funding


def test_deployment_value_funds_the_pool(isolated: Chain, coordinator: Contract) -> None:
    assert coordinator.functions.totalFunded().call() == POOL
    assert balance(isolated, coordinator.address) == POOL
    assert_solvent(isolated, coordinator)


def test_fund_by_third_party(isolated: Chain, coordinator: Contract, funder: str) -> None:
    # Prepare
    before = balance(isolated, funder)
    # Execute
    receipt = send(isolated, coordinator.functions.fund(), funder, value=12_345)
    # Assert
    assert events(coordinator, "PoolFunded", receipt) == [{"funder": funder, "amount": 12_345}]
    assert coordinator.functions.totalFunded().call() == POOL + 12_345
    assert coordinator.functions.availableRewards().call() == POOL + 12_345
    assert balance(isolated, coordinator.address) == POOL + 12_345
    assert balance(isolated, funder) == before - 12_345 - gas_cost(receipt)


def test_plain_transfer_funds_the_pool(isolated: Chain, coordinator: Contract, funder: str) -> None:
    # Execute
    tx_hash = isolated.w3.eth.send_transaction(
        {"from": funder, "to": coordinator.address, "value": 777, "gas": 100_000}  # type: ignore[typeddict-item]
    )
    receipt = isolated.w3.eth.wait_for_transaction_receipt(tx_hash)
    # Assert
    assert receipt["status"] == 1
    assert events(coordinator, "PoolFunded", receipt) == [{"funder": funder, "amount": 777}]
    assert coordinator.functions.totalFunded().call() == POOL + 777
    assert balance(isolated, coordinator.address) == POOL + 777


def test_zero_funding_reverts(isolated: Chain, coordinator: Contract, funder: str) -> None:
    # Execute / Assert
    with pytest.raises(ContractRevertError) as caught:
        send(isolated, coordinator.functions.fund(), funder, value=0)
    assert caught.value.name == "CoordinatorZeroFunding"
    assert revert_args(caught.value) == {}
    # a plain transfer of zero fails on chain too
    tx_hash = isolated.w3.eth.send_transaction(
        {"from": funder, "to": coordinator.address, "value": 0, "gas": 100_000}  # type: ignore[typeddict-item]
    )
    receipt = isolated.w3.eth.wait_for_transaction_receipt(tx_hash)
    assert receipt["status"] == 0
    assert coordinator.functions.totalFunded().call() == POOL


# ---------------------------------------------------------------- withdrawal


def test_withdraw_pays_exactly_the_credit(
    isolated: Chain, coordinator: Contract, client_a: str
) -> None:
    # Prepare
    submit(isolated, coordinator, client_a, with_l1(2_000))  # tier 1: 200 wei
    before = balance(isolated, client_a)
    # Execute
    receipt = send(isolated, coordinator.functions.withdraw(), client_a)
    # Assert
    assert events(coordinator, "CreditWithdrawn", receipt) == [{"client": client_a, "amount": 200}]
    assert balance(isolated, client_a) == before + 200 - gas_cost(receipt)
    assert coordinator.functions.credit(client_a).call() == 0
    assert coordinator.functions.totalWithdrawn().call() == 200
    assert coordinator.functions.totalCredited().call() == 200
    assert balance(isolated, coordinator.address) == POOL - 200
    assert_solvent(isolated, coordinator)


def test_withdraw_without_credit_reverts(
    isolated: Chain, coordinator: Contract, client_a: str, outsider: str
) -> None:
    # Execute / Assert: never credited
    with pytest.raises(ContractRevertError) as caught:
        send(isolated, coordinator.functions.withdraw(), outsider)
    assert caught.value.name == "CoordinatorNothingToWithdraw"
    assert revert_args(caught.value) == {"account": outsider}
    # credited, withdrawn, then nothing left
    submit(isolated, coordinator, client_a, with_l1(5))
    send(isolated, coordinator.functions.withdraw(), client_a)
    with pytest.raises(ContractRevertError) as caught:
        send(isolated, coordinator.functions.withdraw(), client_a)
    assert caught.value.name == "CoordinatorNothingToWithdraw"
    assert revert_args(caught.value) == {"account": client_a}
    assert coordinator.functions.totalWithdrawn().call() == 300


def test_pool_stays_solvent_through_rounds_and_withdrawals(
    isolated: Chain, coordinator: Contract, clients: list[str], funder: str
) -> None:
    # Prepare
    rng = np.random.default_rng(11)
    # Execute / Assert: the invariant after every step of two rounds
    for round_number in (1, 2):
        for client in clients[:3]:
            vector = rng.integers(-400, 401, size=SMALL_WEIGHTS, dtype=np.int64)
            submit(isolated, coordinator, client, vector, round_number=round_number)
            assert_solvent(isolated, coordinator)
        send(isolated, coordinator.functions.withdraw(), clients[round_number])
        assert_solvent(isolated, coordinator)
    send(isolated, coordinator.functions.fund(), funder, value=5)
    assert_solvent(isolated, coordinator)
    credited = coordinator.functions.totalCredited().call()
    withdrawn = coordinator.functions.totalWithdrawn().call()
    owed = sum(coordinator.functions.credit(c).call() for c in clients[:3])
    assert owed == credited - withdrawn > 0


# ---------------------------------------------------------------- reentrancy and rejecting receivers


def deploy_attacker(
    chain: Chain,
    compiled: dict[str, CompiledContract],
    coordinator: Contract,
    mode: int,
    deployer: str,
) -> Contract:
    """Deploy a ReentrantWithdrawer aimed at ``coordinator``.

    Its ABI is extended with the coordinator's errors so that reverts bubbling up through it
    decode to the coordinator's custom errors.
    """
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


@pytest.fixture
def attacker_factory(
    isolated: Chain, compiled: dict[str, CompiledContract], coordinator: Contract, outsider: str
) -> Any:
    """``make(mode)``: an attacker that took part in round 1 and holds a 300 wei credit."""

    def make(mode: int) -> Contract:
        attacker = deploy_attacker(isolated, compiled, coordinator, mode, outsider)
        send(isolated, attacker.functions.participate(1, 1, pack(with_l1(100))), outsider)
        assert coordinator.functions.credit(attacker.address).call() == 300
        assert coordinator.functions.hasSubmitted(attacker.address, 1).call() is True
        return attacker

    return make


def test_reentrant_withdraw_fails_as_a_whole(
    isolated: Chain, coordinator: Contract, attacker_factory: Any, outsider: str
) -> None:
    """The reentrant withdraw reverts (NothingToWithdraw), so the payout call fails and the
    outer withdraw reverts with CoordinatorWithdrawalFailed: the attacker gets nothing."""
    # Prepare
    attacker: Contract = attacker_factory(REENTER)
    held = balance(isolated, coordinator.address)
    # Execute / Assert: the pre-check decodes the revert
    with pytest.raises(ContractRevertError) as caught:
        send(isolated, attacker.functions.attack(), outsider)
    assert caught.value.name == "CoordinatorWithdrawalFailed"
    assert revert_args(caught.value) == {"account": attacker.address, "amount": 300}
    # the transaction itself, sent without the pre-check, fails on chain
    tx_hash = attacker.functions.attack().transact({"from": outsider, "gas": RAW_GAS})
    receipt = isolated.w3.eth.wait_for_transaction_receipt(tx_hash)
    assert receipt["status"] == 0
    assert coordinator.functions.credit(attacker.address).call() == 300
    assert coordinator.functions.totalWithdrawn().call() == 0
    assert balance(isolated, attacker.address) == 0
    assert balance(isolated, coordinator.address) == held
    assert attacker.functions.reentries().call() == 0  # rolled back with the rest
    assert_solvent(isolated, coordinator)


def test_reentrant_withdraw_swallowed_pays_the_credit_once(
    isolated: Chain, coordinator: Contract, attacker_factory: Any, outsider: str
) -> None:
    """With the inner revert caught, the attacker receives exactly its credit, once."""
    # Prepare
    attacker: Contract = attacker_factory(REENTER_SWALLOW)
    held = balance(isolated, coordinator.address)
    # Execute
    receipt = send(isolated, attacker.functions.attack(), outsider)
    # Assert
    assert events(coordinator, "CreditWithdrawn", receipt) == [
        {"client": attacker.address, "amount": 300}
    ]
    assert balance(isolated, attacker.address) == 300
    assert attacker.functions.received().call() == 300
    assert attacker.functions.reentries().call() == 1
    assert attacker.functions.reentrySuccesses().call() == 0
    inner = decode_revert(coordinator.abi, attacker.functions.lastInnerRevert().call())
    assert inner.name == "CoordinatorNothingToWithdraw"
    assert revert_args(inner) == {"account": attacker.address}
    assert coordinator.functions.credit(attacker.address).call() == 0
    assert coordinator.functions.totalWithdrawn().call() == 300
    assert balance(isolated, coordinator.address) == held - 300
    assert_solvent(isolated, coordinator)
    # and a second attack finds nothing
    with pytest.raises(ContractRevertError) as caught:
        send(isolated, attacker.functions.attack(), outsider)
    assert caught.value.name == "CoordinatorNothingToWithdraw"
    assert revert_args(caught.value) == {"account": attacker.address}


def test_receiver_rejecting_eth_keeps_its_credit(
    isolated: Chain, coordinator: Contract, attacker_factory: Any, outsider: str
) -> None:
    # Prepare
    receiver: Contract = attacker_factory(REJECT)
    held = balance(isolated, coordinator.address)
    # Execute / Assert
    with pytest.raises(ContractRevertError) as caught:
        send(isolated, receiver.functions.attack(), outsider)
    assert caught.value.name == "CoordinatorWithdrawalFailed"
    assert revert_args(caught.value) == {"account": receiver.address, "amount": 300}
    tx_hash = receiver.functions.attack().transact({"from": outsider, "gas": RAW_GAS})
    assert isolated.w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 0
    assert coordinator.functions.credit(receiver.address).call() == 300
    assert coordinator.functions.totalWithdrawn().call() == 0
    assert balance(isolated, receiver.address) == 0
    assert balance(isolated, coordinator.address) == held
    assert_solvent(isolated, coordinator)
