"""Rewards and money on the round pipeline v2: tiers paid on submit (direct) and by the close
(relayed), the free-rider guard and the poisoning bound on both paths, an exhausted pool, the fees
of closers and relayers, funding, withdrawal (reentrancy, a receiver that rejects ETH), and the
money identity of the contract's balance.

The coordinators (``small_params``) have tiers ``(1,000, 10,000, 50,000)`` paying ``(300, 200, 100)``
wei on the L1 distance from a zero initial model, ``closeFee`` 7 and ``relayFee`` 3.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from web3.contract import Contract
from web3.types import TxReceipt

from fl_client.aggregation import NO_TIER, distance, integer_average, reward_tier
from fl_client.chain import Chain, decode_revert, read_entries, send, translate
from fl_client.codec import pack
from fl_client.compile import CompiledContract
from fl_client.errors import ContractRevertError
from tests.conftest import SMALL_WEIGHTS, events, relay, signed, submit
from tests.pipeline_helpers import (
    RAW_GAS,
    assert_money_identity,
    balance,
    close_round,
    close_segment,
    constant,
    deadline_of,
    deploy_attacker,
    gas_cost,
    mine_at,
    model_values,
    module_deployments,
    reverts,
    vector_with_l1,
    window_end,
)

POOL = 10**6
THRESHOLDS = (1_000, 10_000, 50_000)
REWARDS = (300, 200, 100)
CLOSE_FEE, RELAY_FEE = 7, 3
REENTER, REENTER_SWALLOW, REJECT = 0, 1, 2  # ReentrantWithdrawer.Mode

CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},
    "three": {"words_per_segment": 1},
    "squared": {"distance": "squared_l2"},
    "free_rider": {"min_reward_distance": 500},
    "poison": {"max_counted_distance": 20_000},
    "poison3": {"max_counted_distance": 20_000, "words_per_segment": 1},
    "small_pool": {"pool_wei": 450},
    "empty_pool": {"pool_wei": 0},
}


@pytest.fixture(scope="module")
def deployed(chain: Chain) -> Iterator[dict[str, Contract]]:
    """The module's coordinators, deployed once."""
    yield from module_deployments(chain, CONFIGS)


@pytest.fixture
def coordinator(isolated: Chain, deployed: dict[str, Contract]) -> Contract:
    """40 weights, one segment, target 3, minimum 2, a pool of 1e6 wei."""
    return deployed["default"]


def accepted(contract: Contract, receipt: TxReceipt) -> dict[str, Any]:
    """The one ``SubmissionAccepted`` event of ``receipt``."""
    [event] = events(contract, "SubmissionAccepted", receipt)
    return event


def settled(contract: Contract, receipts: list[TxReceipt]) -> dict[str, dict[str, Any]]:
    """Every ``SubmissionAccepted`` event in ``receipts``, by client."""
    return {e["client"]: e for r in receipts for e in events(contract, "SubmissionAccepted", r)}


def with_squares(total: int) -> np.ndarray:
    """A vector whose sum of squares is exactly ``total`` (greedy, within 40 weights)."""
    values = np.zeros(SMALL_WEIGHTS, dtype=np.int64)
    left = total
    for index in range(SMALL_WEIGHTS):
        root = min(int(np.sqrt(left)), 3000)
        while (root + 1) ** 2 <= left and root < 3000:
            root += 1
        values[index] = root if index % 2 == 0 else -root
        left -= root * root
    assert left == 0, total
    return values


# ---------------------------------------------------------------- tiers

TIER_CASES: list[int] = [0, 1_000, 1_001, 10_000, 10_001, 50_000, 50_001, 120_000]


@pytest.mark.parametrize("dist", TIER_CASES)
def test_direct_update_is_paid_on_submit_by_its_tier(
    isolated: Chain, coordinator: Contract, client_a: str, dist: int
) -> None:
    # Prepare
    decision = reward_tier(dist, THRESHOLDS, REWARDS)
    # Execute
    [receipt] = submit(isolated, coordinator, client_a, vector_with_l1(dist))
    # Assert
    event = accepted(coordinator, receipt)
    assert (event["distance"], event["tier"], event["reward"], event["counted"]) == (
        dist,
        decision.tier,
        decision.amount_wei,
        True,
    )
    assert coordinator.functions.credit(client_a).call() == decision.amount_wei
    assert coordinator.functions.totalCredited().call() == decision.amount_wei
    assert coordinator.functions.availableRewards().call() == POOL - decision.amount_wei
    assert read_entries(coordinator)[0].client == client_a  # counted: an entry of the round


def test_relayed_updates_are_paid_by_the_close_by_their_tier(
    isolated: Chain, coordinator: Contract, clients: list[str], relayer: str
) -> None:
    # Prepare: three relayed updates at tier boundaries
    dists = [1_000, 1_001, 50_001]
    vectors = [vector_with_l1(d) for d in dists]
    updates = dict(zip(clients, vectors, strict=False))
    relay(
        isolated,
        coordinator,
        relayer,
        [signed(isolated, coordinator, c, v) for c, v in updates.items()],
    )
    assert all(coordinator.functions.credit(c).call() == 0 for c in updates)
    # Execute
    receipts = close_round(isolated, coordinator, clients[5], updates)
    # Assert
    events_by_client = settled(coordinator, receipts)
    for client, dist in zip(clients, dists, strict=False):
        decision = reward_tier(dist, THRESHOLDS, REWARDS)
        event = events_by_client[client]
        assert (event["distance"], event["tier"], event["reward"]) == (
            dist,
            decision.tier,
            decision.amount_wei,
        )
        assert (event["counted"], event["relayed"]) == (True, True)
        assert coordinator.functions.credit(client).call() == decision.amount_wei
    assert coordinator.functions.credit(clients[5]).call() == CLOSE_FEE + 3 * RELAY_FEE
    assert model_values(coordinator) == integer_average(vectors).tolist()


@pytest.mark.parametrize("dist", [1_000, 1_001, 50_000, 50_001])
@pytest.mark.parametrize("path", ["direct", "relayed"])
def test_squared_l2_tiers(
    isolated: Chain,
    deployed: dict[str, Contract],
    clients: list[str],
    relayer: str,
    dist: int,
    path: str,
) -> None:
    contract = deployed["squared"]
    vector = with_squares(dist)
    assert distance(constant(0), vector, "squared_l2") == dist
    decision = reward_tier(dist, THRESHOLDS, REWARDS)
    if path == "direct":
        receipts = submit(isolated, contract, clients[0], vector)
    else:
        relay(isolated, contract, relayer, [signed(isolated, contract, clients[0], vector)])
        submit(isolated, contract, clients[1], constant(0))
        mine_at(isolated, deadline_of(contract))
        receipts = close_round(
            isolated, contract, relayer, {clients[0]: vector, clients[1]: constant(0)}
        )
    event = settled(contract, receipts)[clients[0]]
    assert (event["distance"], event["tier"], event["reward"]) == (
        dist,
        decision.tier,
        decision.amount_wei,
    )


def test_second_round_is_measured_from_the_new_model_and_credits_accumulate(
    isolated: Chain, coordinator: Contract, clients: list[str], relayer: str
) -> None:
    # round 1: the model moves to 1,000 everywhere
    for client in clients[:3]:
        submit(isolated, coordinator, client, constant(1_000))
    close_round(isolated, coordinator, relayer, {c: constant(1_000) for c in clients[:3]})
    assert coordinator.functions.credit(clients[0]).call() == 0 + REWARDS[2]  # L1 40,000: tier 2
    # round 2: the same vector is now at distance 0, a zero vector at 40,000
    [same] = submit(isolated, coordinator, clients[0], constant(1_000), round_number=2)
    [zero] = submit(isolated, coordinator, clients[1], constant(0), round_number=2)
    assert (accepted(coordinator, same)["distance"], accepted(coordinator, same)["reward"]) == (
        0,
        300,
    )
    assert (accepted(coordinator, zero)["distance"], accepted(coordinator, zero)["reward"]) == (
        40_000,
        100,
    )
    assert coordinator.functions.credit(clients[0]).call() == REWARDS[2] + REWARDS[0]
    assert coordinator.functions.credit(relayer).call() == CLOSE_FEE


# ---------------------------------------------------------------- the free-rider guard


@pytest.mark.parametrize("path", ["direct", "relayed"])
def test_free_rider_earns_nothing_but_is_averaged(
    isolated: Chain, deployed: dict[str, Contract], clients: list[str], relayer: str, path: str
) -> None:
    # Prepare: minRewardDistance 500; one update at 499, one at 500, one at 1,300
    contract = deployed["free_rider"]
    vectors = [vector_with_l1(499), vector_with_l1(500), vector_with_l1(1_300)]
    updates = dict(zip(clients, vectors, strict=False))
    receipts: list[TxReceipt] = []
    if path == "direct":
        for client, vector in updates.items():
            receipts.extend(submit(isolated, contract, client, vector))
    else:
        relay(
            isolated,
            contract,
            relayer,
            [signed(isolated, contract, c, v) for c, v in updates.items()],
        )
    # Execute
    receipts.extend(close_round(isolated, contract, relayer, updates))
    # Assert
    by_client = settled(contract, receipts)
    expected = [(499, NO_TIER, 0), (500, 0, 300), (1_300, 1, 200)]
    for client, (dist, tier, reward) in zip(clients, expected, strict=False):
        event = by_client[client]
        assert (event["distance"], event["tier"], event["reward"], event["counted"]) == (
            dist,
            tier,
            reward,
            True,
        )
        assert contract.functions.credit(client).call() == reward
    assert model_values(contract) == integer_average(vectors).tolist()


# ---------------------------------------------------------------- the poisoning bound


def test_direct_update_beyond_the_bound_is_unpaid_and_left_out(
    isolated: Chain, deployed: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    # Prepare: maxCountedDistance 20,000
    contract = deployed["poison"]
    far, edge = vector_with_l1(20_001), vector_with_l1(20_000)
    # Execute
    [far_receipt] = submit(isolated, contract, clients[0], far)
    [edge_receipt] = submit(isolated, contract, clients[1], edge)
    # Assert
    far_event, edge_event = accepted(contract, far_receipt), accepted(contract, edge_receipt)
    assert (
        far_event["distance"],
        far_event["tier"],
        far_event["reward"],
        far_event["counted"],
    ) == (
        20_001,
        NO_TIER,
        0,
        False,
    )
    assert (edge_event["tier"], edge_event["reward"], edge_event["counted"]) == (2, 100, True)
    assert [e.client for e in read_entries(contract)] == [clients[1]]  # the far one holds no place
    assert contract.functions.credit(clients[0]).call() == 0
    with reverts("CoordinatorAlreadySubmitted", round=1, account=clients[0]):
        submit(isolated, contract, clients[0], constant(0))
    # the round fills with two more counted updates and averages without the far one
    submit(isolated, contract, clients[2], constant(10))
    submit(isolated, contract, clients[3], constant(-10))
    close_round(
        isolated,
        contract,
        relayer,
        {c: v for c, v in zip(clients[1:4], [edge, constant(10), constant(-10)], strict=True)},
    )
    assert model_values(contract) == integer_average([edge, constant(10), constant(-10)]).tolist()


def test_relayed_update_beyond_the_bound_is_dropped_by_the_close(
    isolated: Chain, deployed: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    contract = deployed["poison"]
    updates = {
        clients[0]: vector_with_l1(20_001),
        clients[1]: vector_with_l1(20_000),
        clients[2]: constant(3),
    }
    relay(
        isolated, contract, relayer, [signed(isolated, contract, c, v) for c, v in updates.items()]
    )
    receipts = close_round(isolated, contract, clients[5], updates)
    by_client = settled(contract, receipts)
    assert (
        by_client[clients[0]]["counted"],
        by_client[clients[0]]["reward"],
        by_client[clients[0]]["tier"],
    ) == (
        False,
        0,
        NO_TIER,
    )
    assert by_client[clients[0]]["distance"] == 20_001
    assert (by_client[clients[1]]["counted"], by_client[clients[1]]["reward"]) == (True, 100)
    assert contract.functions.credit(clients[0]).call() == 0
    assert (
        model_values(contract)
        == integer_average([updates[clients[1]], updates[clients[2]]]).tolist()
    )
    # the closer is paid the relay fee for the two updates it summed only
    [closed] = events(contract, "SegmentClosed", receipts[0])
    assert (closed["entries"], closed["relayed"], closed["fee"]) == (
        2,
        2,
        CLOSE_FEE + 2 * RELAY_FEE,
    )


def test_relayed_update_crossing_the_bound_in_a_later_segment(
    isolated: Chain, deployed: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    """A relayed update is measured segment by segment: it is summed while its running distance
    stays within the bound, and dropped for good from the segment where it crosses it (the
    segments closed before keep it: their words were written). A direct update with the same
    words is left out whole."""
    # Prepare: maxCountedDistance 20,000; 15,000 in segment 0, 6,000 in segment 1
    contract = deployed["poison3"]
    crossing = np.zeros(SMALL_WEIGHTS, dtype=np.int64)
    crossing[:5] = 3_000
    crossing[16:18] = 3_000
    others = [constant(30), constant(-60)]
    updates = {clients[0]: crossing, clients[1]: others[0], clients[2]: others[1]}
    relay(isolated, contract, relayer, [signed(isolated, contract, clients[0], crossing)])
    for client, vector in zip(clients[1:3], others, strict=True):
        submit(isolated, contract, client, vector)
    # Execute / Assert: segment 0 sums it, segment 1 drops it
    first = close_segment(isolated, contract, relayer, updates, 0)
    assert events(contract, "SegmentClosed", first)[0]["relayed"] == 1
    assert events(contract, "SubmissionAccepted", first) == []
    second = close_segment(isolated, contract, relayer, updates, 1)
    assert [e.dropped for e in read_entries(contract)] == [True, False, False]
    event = accepted(contract, second)
    assert (event["client"], event["distance"], event["counted"], event["reward"]) == (
        clients[0],
        21_000,
        False,
        0,
    )
    close_segment(isolated, contract, relayer, updates, 2)
    with_it = integer_average([crossing, *others])
    without = integer_average(others)
    assert model_values(contract) == with_it[:16].tolist() + without[16:].tolist()
    assert contract.functions.credit(clients[0]).call() == 0


# ---------------------------------------------------------------- the pool


def test_small_pool_credits_what_is_left_then_nothing_and_never_reverts(
    isolated: Chain, deployed: dict[str, Contract], clients: list[str], relayer: str, funder: str
) -> None:
    # Prepare: a pool of 450 wei, three updates worth 300 each
    contract = deployed["small_pool"]
    f = contract.functions
    receipts = [submit(isolated, contract, client, constant(0))[0] for client in clients[:3]]
    # Assert: 300, then the 150 left, then nothing; the tier is still reported
    assert [(accepted(contract, r)["tier"], accepted(contract, r)["reward"]) for r in receipts] == [
        (0, 300),
        (0, 150),
        (0, 0),
    ]
    assert [f.credit(c).call() for c in clients[:3]] == [300, 150, 0]
    assert f.availableRewards().call() == 0
    # the close pays no fee from an empty pool, and still closes
    [close_receipt] = close_round(
        isolated, contract, relayer, {c: constant(0) for c in clients[:3]}
    )
    assert events(contract, "SegmentClosed", close_receipt)[0]["fee"] == 0
    assert f.credit(relayer).call() == 0
    assert f.modelVersion().call() == 1
    # funding refills it
    send(isolated, f.fund(), funder, value=1_000)
    [again] = submit(isolated, contract, clients[0], constant(0), round_number=2)
    assert accepted(contract, again)["reward"] == 300
    assert_money_identity(isolated, contract, [*clients[:3], relayer])


def test_exhausted_pool_caps_relayed_rewards_and_fees_at_the_close(
    isolated: Chain, deployed: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    # Prepare: 450 wei; one direct update takes 300; two relayed ones wait for the close
    contract = deployed["small_pool"]
    submit(isolated, contract, clients[0], constant(0))
    updates = {clients[0]: constant(0), clients[1]: constant(1), clients[2]: constant(2)}
    relay(
        isolated,
        contract,
        relayer,
        [signed(isolated, contract, c, updates[c]) for c in clients[1:3]],
    )
    # Execute
    receipts = close_round(isolated, contract, clients[5], updates)
    # Assert: the first relayed update takes the 150 left, the second and the closer nothing
    by_client = settled(contract, receipts)
    assert (by_client[clients[1]]["tier"], by_client[clients[1]]["reward"]) == (0, 150)
    assert (by_client[clients[2]]["tier"], by_client[clients[2]]["reward"]) == (0, 0)
    assert events(contract, "SegmentClosed", receipts[0])[0]["fee"] == 0
    assert contract.functions.availableRewards().call() == 0
    assert model_values(contract) == [1] * SMALL_WEIGHTS


def test_empty_pool_pays_nothing_and_the_round_still_closes(
    isolated: Chain, deployed: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    contract = deployed["empty_pool"]
    assert contract.functions.totalFunded().call() == 0
    receipts = [submit(isolated, contract, c, constant(5))[0] for c in clients[:2]]
    relay(isolated, contract, relayer, [signed(isolated, contract, clients[2], constant(8))])
    updates = {clients[0]: constant(5), clients[1]: constant(5), clients[2]: constant(8)}
    receipts += close_round(isolated, contract, relayer, updates)
    assert all(e["reward"] == 0 for e in settled(contract, receipts).values())
    assert model_values(contract) == [6] * SMALL_WEIGHTS
    with reverts("CoordinatorNothingToWithdraw", account=relayer):
        send(isolated, contract.functions.withdraw(), relayer)


# ---------------------------------------------------------------- fees


def test_each_closer_is_credited_the_fees_of_the_segments_it_closed(
    isolated: Chain, deployed: dict[str, Contract], clients: list[str], relayer: str, outsider: str
) -> None:
    # Prepare: three segments; one direct and two relayed entries
    contract = deployed["three"]
    updates = {clients[0]: constant(1), clients[1]: constant(2), clients[2]: constant(3)}
    submit(isolated, contract, clients[0], updates[clients[0]])
    relay(
        isolated,
        contract,
        relayer,
        [signed(isolated, contract, c, updates[c]) for c in clients[1:3]],
    )
    # Execute: the relayer closes segment 0, an outsider the other two
    first = close_segment(isolated, contract, relayer, updates, 0)
    rest = [close_segment(isolated, contract, outsider, updates, s) for s in (1, 2)]
    # Assert
    per_segment = CLOSE_FEE + 2 * RELAY_FEE
    assert [events(contract, "SegmentClosed", r)[0]["fee"] for r in [first, *rest]] == [
        per_segment
    ] * 3
    assert contract.functions.credit(relayer).call() == per_segment
    assert contract.functions.credit(outsider).call() == 2 * per_segment
    assert contract.functions.totalCredited().call() == 300 + 2 * 300 + 3 * per_segment
    assert_money_identity(isolated, contract, [*clients[:3], relayer, outsider])


# ---------------------------------------------------------------- funding


def test_fund_by_third_party_and_plain_transfer(
    isolated: Chain, coordinator: Contract, funder: str
) -> None:
    f = coordinator.functions
    receipt = send(isolated, f.fund(), funder, value=25)
    assert events(coordinator, "PoolFunded", receipt) == [{"funder": funder, "amount": 25}]
    tx_hash = isolated.w3.eth.send_transaction(
        {"from": funder, "to": coordinator.address, "value": 40, "gas": 100_000}  # type: ignore[typeddict-item]
    )
    transfer = isolated.w3.eth.wait_for_transaction_receipt(tx_hash)
    assert transfer["status"] == 1
    assert events(coordinator, "PoolFunded", transfer) == [{"funder": funder, "amount": 40}]
    assert f.totalFunded().call() == POOL + 65
    assert f.availableRewards().call() == POOL + 65
    assert_money_identity(isolated, coordinator, [funder])


def test_zero_funding_reverts(isolated: Chain, coordinator: Contract, funder: str) -> None:
    with reverts("CoordinatorZeroFunding"):
        send(isolated, coordinator.functions.fund(), funder)
    # a plain transfer of nothing
    try:
        isolated.w3.eth.call({"from": funder, "to": coordinator.address, "value": 0})  # type: ignore[typeddict-item]
    except Exception as exc:
        error = translate(exc, coordinator.abi, "transfer")
    else:
        raise AssertionError("a transfer of 0 wei was accepted")
    assert isinstance(error, ContractRevertError)
    assert (error.name, error.error_args) == ("CoordinatorZeroFunding", {})


# ---------------------------------------------------------------- withdrawal


def test_withdraw_pays_the_whole_credit_once(
    isolated: Chain, coordinator: Contract, clients: list[str], relayer: str
) -> None:
    # Prepare: a reward on submit, a fee for the close, a relayed reward by the close
    submit(isolated, coordinator, clients[0], constant(10))
    relay(isolated, coordinator, relayer, [signed(isolated, coordinator, clients[1], constant(20))])
    submit(isolated, coordinator, clients[2], constant(0))
    updates = {clients[0]: constant(10), clients[1]: constant(20), clients[2]: constant(0)}
    close_round(isolated, coordinator, clients[0], updates)  # the first client closes too
    owed = coordinator.functions.credit(clients[0]).call()
    assert owed == 300 + CLOSE_FEE + RELAY_FEE
    before = balance(isolated, clients[0])
    # Execute
    receipt = send(isolated, coordinator.functions.withdraw(), clients[0])
    # Assert
    assert balance(isolated, clients[0]) == before + owed - gas_cost(receipt)
    assert events(coordinator, "CreditWithdrawn", receipt) == [
        {"client": clients[0], "amount": owed}
    ]
    assert coordinator.functions.credit(clients[0]).call() == 0
    assert coordinator.functions.totalWithdrawn().call() == owed
    with reverts("CoordinatorNothingToWithdraw", account=clients[0]):
        send(isolated, coordinator.functions.withdraw(), clients[0])
    assert_money_identity(isolated, coordinator, [*clients[:3], relayer])


def test_withdraw_without_credit_reverts(
    isolated: Chain, coordinator: Contract, outsider: str
) -> None:
    with reverts("CoordinatorNothingToWithdraw", account=outsider):
        send(isolated, coordinator.functions.withdraw(), outsider)


def test_money_identity_holds_through_rounds_fees_and_withdrawals(
    isolated: Chain, deployed: dict[str, Contract], clients: list[str], relayer: str, funder: str
) -> None:
    contract = deployed["three"]
    everyone = [*clients[:4], relayer, funder]
    rng = np.random.default_rng(11)
    for round_number in (1, 2):
        vectors = [rng.integers(-400, 401, size=SMALL_WEIGHTS, dtype=np.int64) for _ in range(3)]
        updates = dict(zip(clients[:3], vectors, strict=True))
        submit(isolated, contract, clients[0], vectors[0], round_number=round_number)
        assert_money_identity(isolated, contract, everyone)
        batch = [
            signed(isolated, contract, c, updates[c], round_number=round_number)
            for c in clients[1:3]
        ]
        relay(isolated, contract, relayer, batch, round_number=round_number)
        close_round(isolated, contract, relayer, updates, round_number=round_number)
        assert_money_identity(isolated, contract, everyone)
        send(isolated, contract.functions.withdraw(), clients[round_number])
        assert_money_identity(isolated, contract, everyone)
    send(isolated, contract.functions.fund(), funder, value=5)
    send(isolated, contract.functions.withdraw(), relayer)
    assert_money_identity(isolated, contract, everyone)
    # an abandoned round moves no money
    submit(isolated, contract, clients[3], constant(1), round_number=3)
    mine_at(isolated, window_end(contract))
    send(isolated, contract.functions.finalize(), funder)
    assert_money_identity(isolated, contract, everyone)


# ---------------------------------------------------------------- reentrancy and rejecting receivers


@pytest.fixture
def attacker_factory(
    isolated: Chain,
    compiled: dict[str, CompiledContract],
    coordinator: Contract,
    clients: list[str],
    outsider: str,
) -> Any:
    """``make(mode)``: an attacker that took part in round 1 (300 wei of credit), with another
    client's credit (200 wei) also held by the coordinator."""

    def make(mode: int) -> Contract:
        attacker = deploy_attacker(isolated, compiled, coordinator, mode, outsider)
        send(isolated, attacker.functions.participate(1, 1, pack(constant(10))), outsider)
        submit(isolated, coordinator, clients[0], constant(100))
        assert coordinator.functions.credit(attacker.address).call() == 300
        assert coordinator.functions.credit(clients[0]).call() == 200
        return attacker

    return make


def test_reentrant_withdraw_fails_as_a_whole(
    isolated: Chain, coordinator: Contract, attacker_factory: Any, clients: list[str], outsider: str
) -> None:
    """The reentrant withdraw reverts (nothing left to withdraw), so the payout fails and the
    outer withdraw reverts with CoordinatorWithdrawalFailed: the attacker gets nothing."""
    attacker: Contract = attacker_factory(REENTER)
    held = balance(isolated, coordinator.address)
    with reverts("CoordinatorWithdrawalFailed", account=attacker.address, amount=300):
        send(isolated, attacker.functions.attack(), outsider)
    tx_hash = attacker.functions.attack().transact({"from": outsider, "gas": RAW_GAS})
    assert isolated.w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 0
    assert coordinator.functions.credit(attacker.address).call() == 300
    assert coordinator.functions.totalWithdrawn().call() == 0
    assert balance(isolated, attacker.address) == 0
    assert balance(isolated, coordinator.address) == held
    assert_money_identity(isolated, coordinator, [attacker.address, clients[0]])


def test_reentrant_withdraw_swallowed_pays_the_credit_once(
    isolated: Chain, coordinator: Contract, attacker_factory: Any, clients: list[str], outsider: str
) -> None:
    attacker: Contract = attacker_factory(REENTER_SWALLOW)
    held = balance(isolated, coordinator.address)
    receipt = send(isolated, attacker.functions.attack(), outsider)
    assert events(coordinator, "CreditWithdrawn", receipt) == [
        {"client": attacker.address, "amount": 300}
    ]
    assert balance(isolated, attacker.address) == 300
    assert attacker.functions.received().call() == 300
    assert attacker.functions.reentries().call() == 1
    assert attacker.functions.reentrySuccesses().call() == 0
    inner = decode_revert(coordinator.abi, attacker.functions.lastInnerRevert().call())
    assert (inner.name, inner.error_args) == (
        "CoordinatorNothingToWithdraw",
        {"account": attacker.address},
    )
    assert coordinator.functions.credit(attacker.address).call() == 0
    assert (
        coordinator.functions.credit(clients[0]).call() == 200
    )  # nobody else's credit was touched
    assert balance(isolated, coordinator.address) == held - 300
    assert_money_identity(isolated, coordinator, [attacker.address, clients[0]])
    with reverts("CoordinatorNothingToWithdraw", account=attacker.address):
        send(isolated, attacker.functions.attack(), outsider)


def test_receiver_rejecting_eth_keeps_its_credit(
    isolated: Chain, coordinator: Contract, attacker_factory: Any, clients: list[str], outsider: str
) -> None:
    receiver: Contract = attacker_factory(REJECT)
    held = balance(isolated, coordinator.address)
    with reverts("CoordinatorWithdrawalFailed", account=receiver.address, amount=300):
        send(isolated, receiver.functions.attack(), outsider)
    tx_hash = receiver.functions.attack().transact({"from": outsider, "gas": RAW_GAS})
    assert isolated.w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 0
    assert coordinator.functions.credit(receiver.address).call() == 300
    assert balance(isolated, coordinator.address) == held
    assert_money_identity(isolated, coordinator, [receiver.address, clients[0]])
