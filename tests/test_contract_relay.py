"""The relayed path at contract level: a client signs its update (EIP-712), a relayer registers it
with ``submitRelayed`` (segment hashes only), and the close supplies, checks, measures and pays it.

Attacks on the path: forged, altered, replayed and malleable signatures, signatures for another
chain, contract or round, relayers that leave a client out or never supply the words, and
closes that try to leave out what they may not.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak
from web3.contract import Contract

from fl_client.aggregation import distance, integer_average, reward_tier
from fl_client.chain import (
    Chain,
    SignedUpdate,
    UpdateSignature,
    close_function,
    malleable_twin,
    read_entries,
    read_progress,
    recover_update_signer,
    relay_function,
    send,
    sign_update,
    update_typed_data,
)
from fl_client.codec import pack, segment_hashes, vector_hash
from tests.conftest import (
    SMALL_WEIGHTS,
    DeployFactory,
    events,
    relay,
    signed,
    small_params,
    submit,
    submit_segments,
)
from tests.pipeline_helpers import (
    NO_TIER,
    block_time,
    close_round,
    close_segment,
    constant,
    deadline_of,
    deploy_in_setup,
    mine_at,
    model_values,
    module_deployments,
    next_block_at,
    random_vector,
    raw_send,
    reverts,
    segment_words,
    window_end,
    with_value,
)

TIERS = ((1_000, 10_000, 50_000), (300, 200, 100))  # small_params' tiers
CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},  # 40 weights in 3 words, one segment, target 3, minimum 2
    "twin": {},  # a second coordinator with the same parameters
    "three": {"words_per_segment": 1},  # three one-word segments
    "initial": {"initial": np.full(SMALL_WEIGHTS, -5, dtype=np.int64)},
}


@pytest.fixture(scope="module")
def deployed(chain: Chain) -> Iterator[dict[str, Contract]]:
    """The module's coordinators, deployed once."""
    yield from module_deployments(chain, CONFIGS)


@pytest.fixture
def coordinator(isolated: Chain, deployed: dict[str, Contract]) -> Contract:
    """40 weights, one segment, target 3, minimum 2, window 120 s, round 1 open."""
    return deployed["default"]


def resigned(
    chain: Chain,
    contract: Contract,
    update: SignedUpdate,
    *,
    signer: str | None = None,
    chain_id: int | None = None,
    address: str | None = None,
    round_number: int | None = None,
    segments: int | None = None,
    sample_count: int | None = None,
) -> SignedUpdate:
    """``update`` with a signature made over altered fields (what the contract must refuse)."""
    typed = update_typed_data(
        chain_id=chain.chain_id() if chain_id is None else chain_id,
        contract=str(contract.address) if address is None else address,
        round_number=update.round_number if round_number is None else round_number,
        segments=int(contract.functions.numSegments().call()) if segments is None else segments,
        sample_count=update.sample_count if sample_count is None else sample_count,
        words_hash=vector_hash(
            list(update.words), int(contract.functions.wordsPerSegment().call())
        ),
    )
    signature = sign_update(chain.signer(signer or update.client), typed)
    return replace(update, signature=signature)


@pytest.fixture
def three_segments(isolated: Chain, deployed: dict[str, Contract]) -> Contract:
    """Three one-word segments (40 weights), target 3, minimum 2, window 120 s."""
    return deployed["three"]


# ---------------------------------------------------------------- registration and settlement


def test_registration_is_visible_before_the_deadline(
    isolated: Chain, three_segments: Contract, client_a: str, relayer: str
) -> None:
    # Prepare
    contract = three_segments
    values = np.arange(SMALL_WEIGHTS, dtype=np.int64) - 20
    update = signed(isolated, contract, client_a, values, sample_count=17)
    # Execute
    receipt = relay(isolated, contract, relayer, [update])
    # Assert
    assert events(contract, "UpdateRelayed", receipt) == [
        {"round": 1, "client": client_a, "relayer": relayer, "sampleCount": 17}
    ]
    assert events(contract, "SubmissionAccepted", receipt) == []
    progress = read_progress(contract, client_a)
    assert (progress.round_number, progress.segments_done, progress.sample_count) == (1, 0, 17)
    assert (progress.distance_so_far, progress.relayed) == (0, True)
    assert contract.functions.hasSubmitted(client_a, 1).call() is True
    assert contract.functions.hasSubmitted(client_a, 2).call() is False
    assert [(e.client, e.sample_count, e.relayed, e.dropped) for e in read_entries(contract)] == [
        (client_a, 17, True, False)
    ]
    assert [contract.functions.segmentHash(client_a, s).call() for s in range(3)] == list(
        update.segment_hashes
    )
    assert contract.functions.credit(client_a).call() == 0
    assert block_time(isolated, receipt) < deadline_of(contract)


def test_local_signature_matches_the_contracts_digest(
    isolated: Chain, three_segments: Contract, client_a: str
) -> None:
    update = signed(isolated, three_segments, client_a, constant(5), sample_count=3)
    typed = update_typed_data(
        chain_id=isolated.chain_id(),
        contract=str(three_segments.address),
        round_number=1,
        segments=3,
        sample_count=3,
        words_hash=vector_hash(list(update.words), 1),
    )
    encoded = encode_typed_data(full_message=typed)
    digest = keccak(b"\x19" + encoded.version + encoded.header + encoded.body)
    onchain = three_segments.functions.updateDigest(
        1, 3, 3, vector_hash(list(update.words), 1)
    ).call()
    assert onchain == digest
    assert recover_update_signer(typed, update.signature) == client_a


def test_relayed_update_is_measured_and_paid_by_the_last_segments_close(
    isolated: Chain, three_segments: Contract, clients: list[str], relayer: str
) -> None:
    # Prepare: one relayed update among two direct ones
    contract = three_segments
    rng = np.random.default_rng(21)
    vectors = [random_vector(rng, bound=60) for _ in range(3)]
    updates = dict(zip(clients, vectors, strict=False))
    submit(isolated, contract, clients[0], vectors[0])
    relay(
        isolated,
        contract,
        relayer,
        [signed(isolated, contract, clients[1], vectors[1], sample_count=4)],
    )
    submit(isolated, contract, clients[2], vectors[2])
    expected_distance = distance(constant(0), vectors[1], "l1")
    decision = reward_tier(expected_distance, *TIERS)
    # Execute
    receipts = close_round(isolated, contract, clients[5], updates)
    # Assert: settled with the last segment only
    assert events(contract, "SubmissionAccepted", receipts[0]) == []
    assert events(contract, "SubmissionAccepted", receipts[1]) == []
    [accepted] = events(contract, "SubmissionAccepted", receipts[2])
    assert accepted == {
        "round": 1,
        "client": clients[1],
        "sampleCount": 4,
        "distance": expected_distance,
        "along": 0,
        "against": 0,
        "tier": decision.tier,
        "reward": decision.amount_wei,
        "counted": True,
        "relayed": True,
    }
    assert contract.functions.credit(clients[1]).call() == decision.amount_wei
    # the closer: closeFee 7 + relayFee 3 for the one relayed update, per segment
    closed = [events(contract, "SegmentClosed", r)[0] for r in receipts]
    assert [(c["segment"], c["entries"], c["relayed"], c["fee"]) for c in closed] == [
        (0, 3, 1, 10),
        (1, 3, 1, 10),
        (2, 3, 1, 10),
    ]
    assert all(c["closer"] == clients[5] for c in closed)
    assert contract.functions.credit(clients[5]).call() == 30
    assert model_values(contract) == integer_average(vectors).tolist()


def test_a_relayed_only_round_closes_exactly(
    isolated: Chain, three_segments: Contract, clients: list[str], relayer: str
) -> None:
    contract = three_segments
    vectors = [constant(1), constant(-2), constant(3000)]
    updates = dict(zip(clients, vectors, strict=False))
    relay(
        isolated, contract, relayer, [signed(isolated, contract, c, v) for c, v in updates.items()]
    )
    receipts = close_round(isolated, contract, relayer, updates)
    assert model_values(contract) == integer_average(vectors).tolist()
    assert events(contract, "RoundClosed", receipts[-1])[0]["submissions"] == 3
    assert contract.functions.credit(relayer).call() == 3 * (7 + 3 * 3)


def test_anyone_may_relay_and_the_closer_earns_the_relay_fee(
    isolated: Chain, coordinator: Contract, clients: list[str], relayer: str, outsider: str
) -> None:
    """A third party that relays a signature it saw wins the registration; the original relayer's
    copy is then a replay. The relay fee goes to whoever carries the words in the close."""
    update = signed(isolated, coordinator, clients[0], constant(3))
    relay(isolated, coordinator, outsider, [update])
    with reverts("CoordinatorUpdateReplayed", client=clients[0], round=1):
        relay(isolated, coordinator, relayer, [update])
    for client in clients[1:3]:
        submit(isolated, coordinator, client, constant(3))
    close_round(isolated, coordinator, relayer, {c: constant(3) for c in clients[:3]})
    assert coordinator.functions.credit(relayer).call() == 7 + 3
    assert coordinator.functions.credit(outsider).call() == 0


def test_the_closer_earns_the_relay_fee_for_a_relayed_free_rider_too(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str], relayer: str
) -> None:
    """The open fee-farming threat of the README's Threats table: the update of an account that
    resubmits the model (under the free-rider guard) is unpaid, but the close that carries it
    earns ``relayFee`` all the same."""
    # Prepare: a guard of 40 (one quantum a weight); client 0 resubmits the zero model, relayed
    contract = deploy_coordinator(min_reward_distance=SMALL_WEIGHTS)
    vectors = [constant(0), constant(3), constant(3)]
    relay(isolated, contract, relayer, [signed(isolated, contract, clients[0], vectors[0])])
    for client, vector in zip(clients[1:3], vectors[1:], strict=True):
        submit(isolated, contract, client, vector)
    # Execute
    receipts = close_round(isolated, contract, relayer, dict(zip(clients, vectors, strict=False)))
    # Assert: the free rider is counted and unpaid; the closer is paid closeFee 7 + relayFee 3
    [accepted] = events(contract, "SubmissionAccepted", receipts[-1])
    assert (accepted["client"], accepted["counted"], accepted["reward"]) == (clients[0], True, 0)
    assert accepted["tier"] == NO_TIER
    [closed] = events(contract, "SegmentClosed", receipts[-1])
    assert (closed["relayed"], closed["fee"]) == (1, 7 + 3)
    assert contract.functions.credit(relayer).call() == 7 + 3
    assert contract.functions.credit(clients[0]).call() == 0


def test_a_client_left_out_by_its_relayer_submits_directly(
    isolated: Chain, coordinator: Contract, clients: list[str], relayer: str
) -> None:
    # Prepare: the relayer registers two of three signed updates
    vectors = [constant(30), constant(-60), constant(90)]
    updates = dict(zip(clients, vectors, strict=False))
    relay(
        isolated,
        coordinator,
        relayer,
        [signed(isolated, coordinator, c, updates[c]) for c in clients[1:3]],
    )
    # Execute: the client sees it is not registered and submits itself before the deadline
    assert read_progress(coordinator, clients[0]).round_number == 0
    assert coordinator.functions.hasSubmitted(clients[0], 1).call() is False
    [receipt] = submit(isolated, coordinator, clients[0], vectors[0])
    close_round(isolated, coordinator, relayer, updates)
    # Assert
    [accepted] = events(coordinator, "SubmissionAccepted", receipt)
    assert (accepted["counted"], accepted["relayed"], accepted["reward"]) == (True, False, 200)
    assert model_values(coordinator) == [20] * SMALL_WEIGHTS


def test_direct_submission_after_a_relayed_one_is_refused(
    isolated: Chain, three_segments: Contract, client_a: str, relayer: str
) -> None:
    relay(
        isolated, three_segments, relayer, [signed(isolated, three_segments, client_a, constant(1))]
    )
    with reverts("CoordinatorAlreadySubmitted", round=1, account=client_a):
        submit(isolated, three_segments, client_a, constant(2))


# ---------------------------------------------------------------- a relayer that never supplies the words


@pytest.fixture
def silent_relayer_round(
    isolated: Chain, three_segments: Contract, clients: list[str], relayer: str
) -> dict[str, np.ndarray]:
    """Entries [A direct, B relayed, C direct]: nobody has B's words. The updates by client."""
    updates = {clients[0]: constant(100), clients[1]: constant(-3000), clients[2]: constant(301)}
    submit(isolated, three_segments, clients[0], updates[clients[0]])
    relay(
        isolated,
        three_segments,
        relayer,
        [signed(isolated, three_segments, clients[1], updates[clients[1]])],
    )
    submit(isolated, three_segments, clients[2], updates[clients[2]])
    return updates


def test_a_close_without_the_relayed_words_reverts_before_the_window(
    isolated: Chain,
    three_segments: Contract,
    silent_relayer_round: dict[str, np.ndarray],
    clients: list[str],
    relayer: str,
) -> None:
    contract = three_segments
    known = {c: v for c, v in silent_relayer_round.items() if c != clients[1]}
    allowed_from = window_end(contract)
    words_without_b = pack(known[clients[0]])[:1] + pack(known[clients[2]])[:1]
    # B's words missing: C's words are taken as B's
    with reverts("CoordinatorWordsMismatch", index=1, client=clients[1]):
        send(
            isolated,
            close_function(contract, round_number=1, segment=0, words=words_without_b),
            relayer,
        )
    # leaving B out before the window
    with reverts("CoordinatorCannotOmit", index=1, allowedFrom=allowed_from):
        close_segment(isolated, contract, relayer, silent_relayer_round, 0, omitted=[1])
    mine_at(isolated, allowed_from - 2)
    with reverts("CoordinatorCannotOmit", index=1, allowedFrom=allowed_from):
        close_segment(isolated, contract, relayer, silent_relayer_round, 0, omitted=[1])
    # finalize cannot end it either: the round holds its minimum, so closers get the window
    # after this one alone
    window = int(contract.functions.closeWindow().call())
    with reverts(
        "CoordinatorNotClosable",
        round=1,
        entries=3,
        target=3,
        minimum=2,
        opensAt=allowed_from + window,
    ):
        send(isolated, contract.functions.finalize(), relayer)


def test_after_the_window_the_close_drops_the_relayed_entry(
    isolated: Chain,
    three_segments: Contract,
    silent_relayer_round: dict[str, np.ndarray],
    clients: list[str],
    relayer: str,
) -> None:
    # Prepare
    contract = three_segments
    allowed_from = window_end(contract)
    words = segment_words(contract, silent_relayer_round, 0, omitted=[1])
    # Execute: at the first second of the window's end
    next_block_at(isolated, allowed_from)
    first = raw_send(
        isolated,
        close_function(contract, round_number=1, segment=0, words=words, omitted=[1]),
        relayer,
    )
    # Assert: B is out of the round, unpaid
    assert (first["status"], block_time(isolated, first)) == (1, allowed_from)
    assert events(contract, "SubmissionAccepted", first) == [
        {
            "round": 1,
            "client": clients[1],
            "sampleCount": 1,
            "distance": 0,
            "along": 0,
            "against": 0,
            "tier": NO_TIER,
            "reward": 0,
            "counted": False,
            "relayed": True,
        }
    ]
    assert [e.dropped for e in read_entries(contract)] == [False, True, False]
    [closed] = events(contract, "SegmentClosed", first)
    assert (closed["entries"], closed["relayed"], closed["fee"]) == (2, 0, 7)
    # the rest of the close skips it without being told
    rest = close_round(isolated, contract, relayer, silent_relayer_round, first_segment=1)
    assert model_values(contract) == [201] * SMALL_WEIGHTS  # (100 + 301) / 2 = 200.5
    assert contract.functions.credit(clients[1]).call() == 0
    assert contract.functions.modelVersion().call() == 1
    assert events(contract, "RoundClosed", rest[-1])[0]["round"] == 1
    progress = read_progress(contract, clients[1])
    assert (progress.round_number, progress.segments_done, progress.relayed) == (1, 3, True)


def test_round_closed_event_counts_only_the_averaged_updates(
    isolated: Chain,
    three_segments: Contract,
    silent_relayer_round: dict[str, np.ndarray],
    relayer: str,
) -> None:
    """``RoundClosed.submissions`` is documented as the counted submissions: a dropped relayed
    update is not counted (its ``SubmissionAccepted`` says ``counted: false``)."""
    contract = three_segments
    mine_at(isolated, window_end(contract))
    receipts = close_round(isolated, contract, relayer, silent_relayer_round, omitted=[1])
    [closed] = events(contract, "RoundClosed", receipts[-1])
    assert closed["submissions"] == 2


def test_omitting_entries_the_close_may_not_leave_out(
    isolated: Chain, three_segments: Contract, clients: list[str], relayer: str
) -> None:
    # Prepare: entries [A relayed, B direct, C relayed], after the window
    contract = three_segments
    updates = {clients[0]: constant(1), clients[1]: constant(2), clients[2]: constant(3)}
    relay(
        isolated, contract, relayer, [signed(isolated, contract, clients[0], updates[clients[0]])]
    )
    submit(isolated, contract, clients[1], updates[clients[1]])
    relay(
        isolated, contract, relayer, [signed(isolated, contract, clients[2], updates[clients[2]])]
    )
    allowed_from = window_end(contract)
    mine_at(isolated, allowed_from + 10)

    def attempt(omitted: list[int], without: list[int]) -> None:
        """Close segment 0 naming ``omitted``, with the words of every entry but ``without``
        (the entries the contract will have skipped when it finds the list wrong)."""
        words = segment_words(contract, updates, 0, omitted=without)
        function = close_function(contract, round_number=1, segment=0, words=words, omitted=omitted)
        send(isolated, function, relayer)

    # Execute / Assert
    with reverts("CoordinatorCannotOmit", index=1, allowedFrom=allowed_from):
        attempt([1], [])  # a direct entry, never
    with reverts("CoordinatorCannotOmit", index=3, allowedFrom=allowed_from):
        attempt([3], [])  # out of range
    with reverts("CoordinatorCannotOmit", index=7, allowedFrom=allowed_from):
        attempt([0, 7], [0])
    with reverts("CoordinatorCannotOmit", index=0, allowedFrom=allowed_from):
        attempt([2, 0], [2])  # not ascending
    with reverts("CoordinatorCannotOmit", index=0, allowedFrom=allowed_from):
        attempt([0, 0], [0])  # twice
    # both relayed entries may go: the direct one alone is averaged
    attempt([0, 2], [0, 2])
    close_round(isolated, contract, relayer, updates, first_segment=1)
    assert model_values(contract) == [2] * SMALL_WEIGHTS


def test_a_round_whose_every_entry_is_dropped_keeps_its_model(
    isolated: Chain, deployed: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    contract = deployed["initial"]
    f = contract.functions
    before = (f.globalModel().call(), f.modelHash().call())
    relay(
        isolated,
        contract,
        relayer,
        [signed(isolated, contract, c, constant(9)) for c in clients[:2]],
    )
    mine_at(isolated, window_end(contract))
    [receipt] = close_round(isolated, contract, relayer, {}, omitted=[0, 1])
    assert (f.globalModel().call(), f.modelHash().call()) == before
    assert model_values(contract) == [-5] * SMALL_WEIGHTS
    [closed] = events(contract, "SegmentClosed", receipt)
    # a close that averages nothing earns no fee: closing nothing is no way to farm the pool
    assert (closed["entries"], closed["relayed"], closed["fee"]) == (0, 0, 0)
    assert f.credit(relayer).call() == 0
    assert events(contract, "RoundClosed", receipt)[0]["submissions"] == 0


def test_relayed_words_that_do_not_match_the_signed_hashes_revert(
    isolated: Chain, coordinator: Contract, clients: list[str], relayer: str
) -> None:
    updates = {c: constant(i + 1) for i, c in enumerate(clients[:3])}
    relay(
        isolated,
        coordinator,
        relayer,
        [signed(isolated, coordinator, c, v) for c, v in updates.items()],
    )
    forged = {**updates, clients[1]: constant(-3000)}
    with reverts("CoordinatorWordsMismatch", index=1, client=clients[1]):
        close_round(isolated, coordinator, relayer, forged)
    # too few words: the last entry's run out
    short = segment_words(coordinator, updates, 0)[:-1]
    with reverts("CoordinatorWrongLength", expected=9, given=8):
        send(isolated, close_function(coordinator, round_number=1, segment=0, words=short), relayer)
    # one word too many
    long = [*segment_words(coordinator, updates, 0), 0]
    with reverts("CoordinatorWrongLength", expected=9, given=10):
        send(isolated, close_function(coordinator, round_number=1, segment=0, words=long), relayer)


@pytest.mark.parametrize(
    ("index", "value", "max_abs"),
    [(3, 3001, 3000), (38, -32768, 3000), (41, 1, 0), (47, -2, 0)],
    ids=["lane-high", "lane-low", "padding-first", "padding-last"],
)
def test_relayed_words_out_of_range_revert_the_close_until_left_out(
    isolated: Chain,
    coordinator: Contract,
    clients: list[str],
    relayer: str,
    index: int,
    value: int,
    max_abs: int,
) -> None:
    """A client can sign words no direct submission would pass; its relayer registers the hashes.
    The close finds them out of range, and from the window's end leaves the entry out."""
    # Prepare
    bad_words = with_value(pack(constant(7)), index, value)
    update = SignedUpdate(
        round_number=1,
        client=clients[0],
        sample_count=1,
        segment_hashes=tuple(segment_hashes(bad_words, 3)),
        signature=UpdateSignature(0, b"", b""),
        words=tuple(bad_words),
    )
    update = resigned(isolated, coordinator, update)
    relay(isolated, coordinator, relayer, [update])
    updates: dict[str, list[int]] = {clients[0]: bad_words}
    for i, client in enumerate(clients[1:3]):
        updates[client] = pack(constant(10 * (i + 1)))
        submit(isolated, coordinator, client, constant(10 * (i + 1)))
    # Execute / Assert
    with reverts("CoordinatorWeightOutOfRange", index=index, value=value, maxAbs=max_abs):
        close_round(isolated, coordinator, relayer, updates, raw=True)
    mine_at(isolated, window_end(coordinator))
    close_round(isolated, coordinator, relayer, updates, omitted=[0], raw=True)
    assert model_values(coordinator) == [15] * SMALL_WEIGHTS


# ---------------------------------------------------------------- signatures


@pytest.mark.parametrize(
    "alteration",
    [
        "forged",
        "sample-count",
        "segment-hash",
        "other-chain",
        "other-contract",
        "other-round",
        "other-segment-count",
        "garbage",
        "bad-v",
    ],
)
def test_invalid_signatures_are_refused(
    isolated: Chain, three_segments: Contract, clients: list[str], relayer: str, alteration: str
) -> None:
    # Prepare
    contract = three_segments
    client = clients[0]
    update = signed(isolated, contract, client, constant(12), sample_count=5)
    if alteration == "forged":
        update = resigned(isolated, contract, update, signer=clients[1])
    elif alteration == "sample-count":
        update = replace(update, sample_count=6)
    elif alteration == "segment-hash":
        hashes = list(update.segment_hashes)
        hashes[2] = keccak(b"another segment")
        update = replace(update, segment_hashes=tuple(hashes))
    elif alteration == "other-chain":
        update = resigned(isolated, contract, update, chain_id=isolated.chain_id() + 1)
    elif alteration == "other-contract":
        update = resigned(isolated, contract, update, address=relayer)
    elif alteration == "other-round":
        update = resigned(isolated, contract, update, round_number=2)
    elif alteration == "other-segment-count":
        update = resigned(isolated, contract, update, segments=1)
    elif alteration == "garbage":
        update = replace(update, signature=UpdateSignature(27, b"\x00" * 32, b"\x00" * 32))
    else:
        update = replace(update, signature=replace(update.signature, v=29))
    # Execute / Assert
    with reverts("CoordinatorInvalidSignature", client=client):
        relay(isolated, contract, relayer, [update])
    assert read_progress(contract, client).round_number == 0


def test_a_signature_holds_for_its_own_contract_only(
    isolated: Chain, deployed: dict[str, Contract], client_a: str, relayer: str
) -> None:
    first, second = deployed["default"], deployed["twin"]
    update = signed(isolated, second, client_a, constant(4))
    with reverts("CoordinatorInvalidSignature", client=client_a):
        relay(isolated, first, relayer, [update])
    relay(isolated, second, relayer, [update])
    assert second.functions.hasSubmitted(client_a, 1).call() is True


def test_a_signature_of_an_earlier_round_is_refused(
    isolated: Chain, coordinator: Contract, clients: list[str], relayer: str
) -> None:
    """A relayer that kept a round-1 signature cannot register it in round 2."""
    updates = {c: constant(2) for c in clients[:3]}
    stale = signed(isolated, coordinator, clients[0], updates[clients[0]])
    relay(isolated, coordinator, relayer, [stale])
    for client in clients[1:3]:
        submit(isolated, coordinator, client, updates[client])
    close_round(isolated, coordinator, relayer, updates)
    with reverts("CoordinatorInvalidSignature", client=clients[0]):
        relay(isolated, coordinator, relayer, [stale], round_number=2)


def test_the_malleable_twin_of_a_signature_is_refused(
    isolated: Chain, coordinator: Contract, client_a: str, relayer: str
) -> None:
    # Prepare
    update = signed(isolated, coordinator, client_a, constant(8))
    twin = replace(update, signature=malleable_twin(update.signature))
    typed = update_typed_data(
        chain_id=isolated.chain_id(),
        contract=str(coordinator.address),
        round_number=1,
        segments=1,
        sample_count=1,
        words_hash=vector_hash(list(update.words), 3),
    )
    assert recover_update_signer(typed, twin.signature) == client_a  # valid ECDSA, high s
    # Execute / Assert
    with reverts("CoordinatorMalleableSignature", client=client_a):
        relay(isolated, coordinator, relayer, [twin])
    relay(isolated, coordinator, relayer, [update])
    with reverts("CoordinatorMalleableSignature", client=client_a):
        relay(isolated, coordinator, relayer, [twin])  # checked before the replay


def test_a_signed_update_is_taken_once(
    isolated: Chain, coordinator: Contract, clients: list[str], relayer: str
) -> None:
    update = signed(isolated, coordinator, clients[0], constant(8))
    other = signed(isolated, coordinator, clients[1], constant(8))
    # twice in one batch: the whole batch reverts
    with reverts("CoordinatorUpdateReplayed", client=clients[0], round=1):
        relay(isolated, coordinator, relayer, [update, other, update])
    assert read_round_entries(coordinator) == 0
    # in two batches
    relay(isolated, coordinator, relayer, [update, other])
    with reverts("CoordinatorUpdateReplayed", client=clients[0], round=1):
        relay(isolated, coordinator, relayer, [update])
    # another update of the same client, validly signed, is a replay as well
    again = signed(isolated, coordinator, clients[0], constant(-8))
    with reverts("CoordinatorUpdateReplayed", client=clients[0], round=1):
        relay(isolated, coordinator, clients[0], [again])
    assert read_round_entries(coordinator) == 2


def read_round_entries(contract: Contract) -> int:
    """Entries registered in the open round."""
    return int(contract.functions.roundInfo().call()[3])


def test_a_relayed_update_of_a_client_that_submitted_directly_is_a_replay(
    isolated: Chain, three_segments: Contract, clients: list[str], relayer: str
) -> None:
    contract = three_segments
    submit(isolated, contract, clients[0], constant(1))
    submit_segments(isolated, contract, clients[1], constant(1), [0])  # started, not complete
    for client in clients[:2]:
        with reverts("CoordinatorUpdateReplayed", client=client, round=1):
            relay(isolated, contract, relayer, [signed(isolated, contract, client, constant(2))])


# ---------------------------------------------------------------- the other checks of a registration


def test_relay_into_a_full_round_reverts_round_full(
    isolated: Chain, coordinator: Contract, clients: list[str], relayer: str
) -> None:
    batch = [signed(isolated, coordinator, c, constant(1)) for c in clients[:4]]
    with reverts("CoordinatorRoundFull", round=1, entries=3):
        relay(isolated, coordinator, relayer, batch)
    relay(isolated, coordinator, relayer, batch[:3])
    with reverts("CoordinatorRoundFull", round=1, entries=3):
        relay(isolated, coordinator, relayer, batch[3:])


def test_relayed_client_must_be_eligible(
    isolated: Chain, owner: str, clients: list[str], relayer: str
) -> None:
    """The client, not the relayer, must be on the allowlist; a change takes effect next round."""
    contract = deploy_in_setup(isolated, small_params(allowlist_enabled=True), owner=owner)
    send(isolated, contract.functions.setAllowed([clients[0]], True), owner)
    send(isolated, contract.functions.loadZeroModel(0, 1), owner)
    send(isolated, contract.functions.setAllowed([clients[1]], True), owner)  # from round 2
    with reverts("CoordinatorNotEligible", account=clients[1], round=1):
        relay(isolated, contract, relayer, [signed(isolated, contract, clients[1], constant(1))])
    relay(isolated, contract, relayer, [signed(isolated, contract, clients[0], constant(1))])


@pytest.mark.parametrize("sample_count", [0, 1001])
def test_relayed_sample_count_must_be_valid(
    isolated: Chain, coordinator: Contract, client_a: str, relayer: str, sample_count: int
) -> None:
    update = signed(isolated, coordinator, client_a, constant(1), sample_count=sample_count)
    with reverts("CoordinatorInvalidSampleCount", sampleCount=sample_count, max=1000):
        relay(isolated, coordinator, relayer, [update])


def test_relayed_update_needs_one_hash_per_segment(
    isolated: Chain, three_segments: Contract, client_a: str, relayer: str
) -> None:
    update = signed(isolated, three_segments, client_a, constant(1))
    for hashes in (update.segment_hashes[:2], (*update.segment_hashes, update.segment_hashes[0])):
        with reverts("CoordinatorWrongLength", expected=3, given=len(hashes)):
            relay(isolated, three_segments, relayer, [replace(update, segment_hashes=hashes)])


def test_relay_for_another_round_or_at_the_deadline_reverts(
    isolated: Chain, coordinator: Contract, client_a: str, relayer: str
) -> None:
    update = signed(isolated, coordinator, client_a, constant(1))
    with reverts("CoordinatorWrongRound", given=2, current=1):
        relay(isolated, coordinator, relayer, [update], round_number=2)
    deadline = deadline_of(coordinator)
    next_block_at(isolated, deadline)
    late = raw_send(isolated, relay_function(coordinator, 1, [update]), relayer)
    assert late["status"] == 0
    with reverts("CoordinatorDeadlinePassed", round=1, deadline=deadline):
        relay(isolated, coordinator, relayer, [update])


def test_an_empty_batch_changes_nothing(
    isolated: Chain, coordinator: Contract, relayer: str
) -> None:
    receipt = relay(isolated, coordinator, relayer, [])
    assert receipt["status"] == 1
    assert read_round_entries(coordinator) == 0
