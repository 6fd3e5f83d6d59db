"""Secure aggregation v2: keys bound to pairs, dropouts recovered on-chain, checked masked means,
and a federation whose masked rounds end in the models of direct submission.

The contract (``SecureAggregationUnit``) against the mathematics of ``fl_client.secagg``: members
act through ``fl_client.paths.MaskedPath`` unless a test makes one depart from it by hand
(``tests/secagg_helpers.py``). Cohorts are small (3-5 members) and models have 40 weights: the
elliptic-curve arithmetic on the Python side is pure Python.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from eth_abi.abi import encode as abi_encode
from eth_keys.backends.native.jacobian import fast_multiply
from eth_utils.crypto import keccak
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from web3.contract import Contract
from web3.types import TxReceipt

from fl_client.aggregation import integer_average
from fl_client.chain import (
    Chain,
    CoordinatorView,
    deploy,
    load_initial_model,
    read_cohort,
    read_model_words,
    read_progress,
    read_round,
    send,
)
from fl_client.client_secret import simulation_secret
from fl_client.codec import LANES, OFFSET, encode, unpack
from fl_client.config import FixedPointFormat
from fl_client.data import Shard
from fl_client.federation import Federation, Member
from fl_client.model import build_model, get_flat_parameters
from fl_client.secagg import (
    G,
    MaskingKey,
    N,
    masked_update,
    masking_key,
    pair_seed,
    shamir_split,
    shared_address,
)
from fl_client.trainer import ShardTrainer
from fl_client.training import TrainConfig
from tests.conftest import SMALL_WEIGHTS, DeployFactory, events, small_params
from tests.pipeline_helpers import (
    deploy_in_setup,
    event_args,
    model_values,
    random_vector,
    reverts,
)
from tests.secagg_helpers import (
    RECOVER,
    RECOVERY_SECONDS,
    SETUP_SECONDS,
    Cohort,
    add_to_lane,
    clamped_mean,
    finish_phase,
    key_proof,
    lane_of,
    masked_words,
    plain_lanes,
    post_shares,
    register,
    register_key,
    secure_params,
    share_for,
    submit_masked,
)

P = 2**256 - 2**32 - 977  # secp256k1's field prime
CHAIN_ID = 1337
CONTRACT = "0x" + "5a" * 20
POOL = 10**6


def key_of(label: str) -> MaskingKey:
    """A reproducible masking key."""
    return masking_key(keccak(label.encode()))


def account_of(label: str) -> str:
    """A reproducible address (the Python-only tests need no chain account)."""
    return "0x" + keccak(b"account " + label.encode())[12:].hex()


def credits(contract: Contract, accounts: list[str]) -> list[int]:
    """Every account's credit."""
    return [int(contract.functions.credit(a).call()) for a in accounts]


# ---------------------------------------------------------------- keys bound to pairs


def test_a_pair_seed_binds_both_addresses_in_a_fixed_order() -> None:
    # Prepare
    a, b, c = key_of("a"), key_of("b"), key_of("c")
    alice, bob, carol = account_of("alice"), account_of("bob"), account_of("carol")
    shared = shared_address(a.secret, b.x, b.y)

    def seed(x: str, y: str, *, round_number: int = 4, contract: str = CONTRACT) -> bytes:
        return pair_seed(
            shared, chain_id=CHAIN_ID, contract=contract, round_number=round_number, a=x, b=y
        )

    # Execute
    forward, backward = seed(alice, bob), seed(bob, alice)
    # Assert: the ECDH point is the same from either side ...
    assert shared == shared_address(b.secret, a.x, a.y)
    assert shared != shared_address(a.secret, c.x, c.y)
    # ... the seed is keccak(abi.encode(point address, chain, contract, round, low, high)),
    # the two addresses in ascending order whoever computes it ...
    low, high = sorted((alice, bob), key=lambda address: int(address, 16))
    expected = keccak(
        abi_encode(
            ["address", "uint256", "address", "uint256", "address", "address"],
            ["0x" + shared.hex(), CHAIN_ID, CONTRACT, 4, low, high],
        )
    )
    assert forward == backward == expected
    # ... and it changes with either address, the round and the contract.
    others = {
        seed(alice, carol),
        seed(carol, bob),
        seed(alice, bob, round_number=5),
        seed(alice, bob, contract="0x" + "5b" * 20),
    }
    assert forward not in others
    assert len(others) == 4


def test_a_key_needs_a_proof_of_possession_by_this_account_for_this_round(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str]
) -> None:
    # Prepare
    contract = deploy_coordinator(**secure_params(3, 1))
    member = clients[0]
    key = key_of("member")
    other = key_of("other")

    def proof_by(
        secret: int, *, x: int = key.x, y: int = key.y, round_number: int = 1, account: str = member
    ) -> tuple[int, bytes, bytes]:
        return key_proof(
            isolated, contract, account=account, x=x, y=y, round_number=round_number, secret=secret
        )

    refused = [
        # signed by another key, for another account, for another round
        (key.x, key.y, proof_by(other.secret)),
        (key.x, key.y, proof_by(key.secret, account=clients[1])),
        (key.x, key.y, proof_by(key.secret, round_number=2)),
        # a point off the curve, signed by the key whose x it borrows
        (key.x, key.y + 1, proof_by(key.secret, y=key.y + 1)),
        # x = 0 and x at the group order (the recovery uses x as an ECDSA r)
        (0, key.y, proof_by(key.secret, x=0)),
        (N, key.y, proof_by(key.secret, x=N)),
    ]
    # Execute / Assert
    for x, y, proof in refused:
        with reverts("CoordinatorInvalidKeyProof", account=member):
            register(isolated, contract, member, x=x, y=y, proof=proof)
    receipt = register(isolated, contract, member, x=key.x, y=key.y, proof=proof_by(key.secret))
    assert events(contract, "KeyRegistered", receipt) == [
        {"round": 1, "client": member, "index": 0, "x": key.x, "y": key.y}
    ]
    with reverts("CoordinatorAlreadyRegistered", account=member):
        register_key(isolated, contract, member, other)


def test_the_copied_key_attack_is_refused_at_registration(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str]
) -> None:
    # Prepare: honest H and victim V register; attacker M wants H's key on V's other side.
    contract = deploy_coordinator(**secure_params(3, 1))
    honest, victim, attacker = clients[:3]
    h_key, v_key, m_key = key_of("H"), key_of("V"), key_of("M")
    register_key(isolated, contract, honest, h_key)
    register_key(isolated, contract, victim, v_key)
    negation = MaskingKey(N - h_key.secret, h_key.x, P - h_key.y)
    assert fast_multiply(G, negation.secret) == (negation.x, negation.y)
    h_proof = key_proof(
        isolated,
        contract,
        account=honest,
        x=h_key.x,
        y=h_key.y,
        round_number=1,
        secret=h_key.secret,
    )
    # Execute / Assert: a copy without H's secret: H's proof replayed, or M's own signature
    with reverts("CoordinatorInvalidKeyProof", account=attacker):
        register(isolated, contract, attacker, x=h_key.x, y=h_key.y, proof=h_proof)
    m_signed = key_proof(
        isolated,
        contract,
        account=attacker,
        x=h_key.x,
        y=h_key.y,
        round_number=1,
        secret=m_key.secret,
    )
    with reverts("CoordinatorInvalidKeyProof", account=attacker):
        register(isolated, contract, attacker, x=h_key.x, y=h_key.y, proof=m_signed)
    # even colluding with H (holding its secret): the copy, and its negation (x, p - y), which
    # gives the same ECDH x-coordinate with every peer
    with reverts("CoordinatorKeyReused", x=h_key.x):
        register_key(isolated, contract, attacker, h_key)
    with reverts("CoordinatorKeyReused", x=h_key.x):
        register_key(isolated, contract, attacker, negation)
    # M's own key is taken, on V's other side.
    receipt = register_key(isolated, contract, attacker, m_key)
    assert events(contract, "KeyRegistered", receipt)[0]["index"] == 2
    cohort = read_cohort(contract)
    assert [(m.account, m.x, m.y) for m in cohort.members] == [
        (honest, h_key.x, h_key.y),
        (victim, v_key.x, v_key.y),
        (attacker, m_key.x, m_key.y),
    ]
    assert read_round(contract).phase == "Share"


def cohort_masked_words(
    order: list[str],
    keys: dict[str, MaskingKey],
    registered: dict[str, MaskingKey],
    values: dict[str, np.ndarray],
    *,
    unbound: bool = False,
) -> dict[str, list[int]]:
    """Each member's masked words (16-bit lanes) in a cohort ordered ``order``: ``keys`` are the
    secrets members hold, ``registered`` the public keys the cohort sees. ``unbound`` derives the
    pair seeds as secure aggregation v1 did, from the ECDH point alone (no addresses)."""
    out = {}
    for index, name in enumerate(order):
        seeds = {}
        for peer_index, peer in enumerate(order):
            if peer == name:
                continue
            point = shared_address(keys[name].secret, registered[peer].x, registered[peer].y)
            a, b = ("H", "V") if unbound else (name, peer)
            seeds[peer_index] = pair_seed(
                point,
                chain_id=CHAIN_ID,
                contract=CONTRACT,
                round_number=1,
                a=account_of(a),
                b=account_of(b),
            )
        out[name] = masked_update(
            values[name], weight=1, lane_bits=16, own_index=index, peer_seeds=seeds
        )
    return out


@pytest.mark.parametrize("order", [list(p) for p in itertools.permutations("HVM")])
def test_the_copied_key_attack_now_leaves_the_victim_masked(order: list[str]) -> None:
    # Prepare: 40-weight updates; M either registers its own key anywhere in the order, or (had
    # the contract taken it) a copy of H's key.
    rng = np.random.default_rng(11)
    values = {name: random_vector(rng) for name in "HVM"}
    keys = {name: key_of(name) for name in "HVM"}
    copied = {**keys, "M": keys["H"]}
    victim_plain = plain_lanes(values["V"])
    plain_sum = [
        sum(lanes) % 2**16 for lanes in zip(*(plain_lanes(values[n]) for n in "HVM"), strict=True)
    ]
    # Execute
    honest = cohort_masked_words(order, keys, keys, values)
    attacked = cohort_masked_words(order, keys, copied, values)
    old_style = cohort_masked_words(order, keys, copied, values, unbound=True)
    # Assert: V's two masks never cancel: every lane of its words differs from its plain lane ...
    lanes = len(victim_plain)
    for words in (honest["V"], attacked["V"]):
        assert all(lane_of(words, i, 16) != victim_plain[i] for i in range(lanes))
    # ... while the cohort's masked sum is exactly the sum of the updates.
    masked_sum = [sum(lane_of(honest[n], i, 16) for n in "HVM") % 2**16 for i in range(lanes)]
    assert masked_sum == plain_sum
    # Seeds from the ECDH point alone (v1): with H's key on both sides, V's masks cancel and its
    # words are its update in the clear; binding the addresses is what keeps it masked.
    if order.index("H") < order.index("V") < order.index("M") or (
        order.index("M") < order.index("V") < order.index("H")
    ):
        assert [lane_of(old_style["V"], i, 16) for i in range(lanes)] == victim_plain
    else:
        assert any(lane_of(old_style["V"], i, 16) != victim_plain[i] for i in range(lanes))


def test_a_masked_submission_is_uncorrelated_with_its_update() -> None:
    # Prepare: a 640-weight update of V among three members (16-bit lanes)
    rng = np.random.default_rng(12)
    size = 640
    values = {name: rng.integers(-3000, 3001, size, dtype=np.int64) for name in "HVM"}
    keys = {name: key_of(name) for name in "HVM"}
    # Execute
    words = cohort_masked_words(["H", "V", "M"], keys, keys, values)["V"]
    lanes = np.array([lane_of(words, i, 16) for i in range(size)], dtype=np.float64)
    # Assert: no linear relation (640 pairs: the standard error of r is ~0.04) and the lanes
    # spread over the whole 16-bit range, unlike the update (offset-binary within +-3000).
    correlation = np.corrcoef(lanes, values["V"].astype(np.float64))[0, 1]
    assert abs(correlation) < 0.15
    assert lanes.max() - lanes.min() > 60_000
    assert lanes.std() == pytest.approx(2**16 / np.sqrt(12), rel=0.1)


# ---------------------------------------------------------------- dropouts

COHORTS = {4: 1, 5: 2}  # members: maxDropouts


@pytest.fixture
def dropout_coordinators(deploy_coordinator: DeployFactory) -> dict[int, Contract]:
    """A secure-aggregation coordinator per cohort size (4 members tolerate 1 dropout, 5 two)."""
    return {size: deploy_coordinator(**secure_params(size, t)) for size, t in COHORTS.items()}


@st.composite
def dropout_cases(draw: st.DrawFn) -> tuple[int, frozenset[int]]:
    """A cohort size and which of its members drop out (at most maxDropouts)."""
    size = draw(st.sampled_from(sorted(COHORTS)))
    dropped = draw(st.frozensets(st.integers(0, size - 1), max_size=COHORTS[size]))
    return size, dropped


def play_with_dropouts(
    chain: Chain, contract: Contract, accounts: list[str], closer: str, dropped: frozenset[int]
) -> None:
    """One masked round in which the members ``dropped`` leave after the masks were set up."""
    # Prepare: everyone registers and posts shares; the survivors submit.
    size = len(accounts)
    rng = np.random.default_rng([*sorted(dropped), size])
    vectors = {i: random_vector(rng) for i in range(size)}
    survivors = [i for i in range(size) if i not in dropped]
    cohort = Cohort.of(chain, contract, accounts)
    cohort.set_updates(vectors, round_number=1)
    cohort.act()
    cohort.act()
    assert read_round(contract).phase == "Open"
    receipts = cohort.act(survivors)
    # Execute: past the Open deadline the round recovers the dropped members' keys.
    if dropped:
        late = accounts[min(dropped)]
        words = masked_words(
            chain, contract, late, cohort.key(min(dropped), 1), vectors[min(dropped)]
        )
        deadline = read_round(contract).deadline
        chain.advance_time(deadline - chain.timestamp())
        with reverts("CoordinatorDeadlinePassed", round=1, deadline=deadline):
            submit_masked(chain, contract, late, words)
        recovery = send(chain, contract.functions.finalize(), closer)
        assert [e["client"] for e in events(contract, "MemberDropped", recovery)] == [
            accounts[i] for i in sorted(dropped)
        ]
        assert read_round(contract).phase == "Recover"
        with reverts("CoordinatorWrongPhase", phase=RECOVER):
            submit_masked(chain, contract, late, words)
        receipts += cohort.act(survivors)
    receipts += cohort.close(closer)
    # Assert: the survivors' exact mean; the dropped members' updates never reached the chain.
    assert event_args(contract, "KeyRecovered", receipts) == [
        {"round": 1, "dealer": accounts[i], "ok": True} for i in sorted(dropped)
    ]
    assert model_values(contract) == integer_average([vectors[i] for i in survivors]).tolist()
    assert read_round(contract).number == 2
    revealed = event_args(contract, "ShareRevealed", receipts)
    assert {e["dealer"] for e in revealed} == {accounts[i] for i in dropped}  # no survivor's key
    threshold = size - COHORTS[size]  # the shares that rebuild a key; later ones are not sent
    assert len(revealed) == len(dropped) * threshold
    submitted = [e["client"] for e in event_args(contract, "MaskedSubmitted", receipts)]
    assert submitted == [accounts[i] for i in survivors]
    paid = {e["client"]: e["reward"] for e in event_args(contract, "RewardSettled", receipts)}
    assert paid == {accounts[i]: 300 for i in survivors}
    for i in dropped:
        assert contract.functions.segmentHash(accounts[i], 0).call() == bytes(32)
        assert contract.functions.credit(accounts[i]).call() == 0


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=dropout_cases())
@example(case=(5, frozenset()))
@example(case=(5, frozenset({0, 4})))
def test_a_round_closes_with_the_survivors_exact_mean_whoever_drops_out(
    isolated: Chain,
    dropout_coordinators: dict[int, Contract],
    clients: list[str],
    relayer: str,
    case: tuple[int, frozenset[int]],
) -> None:
    size, dropped = case
    snapshot = isolated.snapshot()
    try:
        play_with_dropouts(isolated, dropout_coordinators[size], clients[:size], relayer, dropped)
    finally:
        isolated.revert(snapshot)


def recovering_round(
    chain: Chain, contract: Contract, accounts: list[str], closer: str, dropped: list[int]
) -> tuple[Cohort, dict[int, np.ndarray]]:
    """A round whose members ``dropped`` left after posting shares, now in Recover."""
    rng = np.random.default_rng(len(accounts))
    vectors = {i: random_vector(rng) for i in range(len(accounts))}
    cohort = Cohort.of(chain, contract, accounts)
    cohort.set_updates(vectors, round_number=1)
    cohort.act()
    cohort.act()
    cohort.act([i for i in range(len(accounts)) if i not in dropped])
    finish_phase(chain, contract, closer)
    assert read_round(contract).phase == "Recover"
    return cohort, vectors


def test_revealed_shares_are_checked_against_the_dealers_commitments(
    isolated: Chain,
    deploy_coordinator: DeployFactory,
    clients: list[str],
    relayer: str,
    outsider: str,
) -> None:
    # Prepare: four members, the last drops out.
    contract = deploy_coordinator(**secure_params(4, 1))
    accounts = clients[:4]
    cohort, vectors = recovering_round(isolated, contract, accounts, relayer, [3])
    dealer = accounts[3]
    share, commitments = share_for(contract, holder=cohort.key(0, 1), holder_index=0, dealer=dealer)
    share1, _ = share_for(contract, holder=cohort.key(1, 1), holder_index=1, dealer=dealer)
    survivor_share, survivor_commitments = share_for(
        contract, holder=cohort.key(0, 1), holder_index=0, dealer=accounts[2]
    )
    tampered = [*commitments[:1], bytes(32), *commitments[2:]]

    def reveal(sender: str, revealed: list[tuple[str, int, list[bytes]]]) -> TxReceipt:
        return send(isolated, contract.functions.revealShares(1, revealed), sender)

    # Execute / Assert: a wrong share, or a share against altered commitments
    with reverts("CoordinatorBadShare", dealer=dealer, holder=0):
        reveal(accounts[0], [(dealer, (share + 1) % N, commitments)])
    with reverts("CoordinatorBadShare", dealer=dealer, holder=1):
        reveal(accounts[1], [(dealer, share1, tampered)])
    # the survivors' keys stay secret: no share of a member that did not drop is taken
    with reverts("CoordinatorNotDropped", account=accounts[2]):
        reveal(accounts[0], [(accounts[2], survivor_share, survivor_commitments)])
    # only survivors reveal: not the dropped member, not an outsider
    with reverts("CoordinatorNotRegistered", account=dealer):
        reveal(dealer, [(dealer, share, commitments)])
    with reverts("CoordinatorNotRegistered", account=outsider):
        reveal(outsider, [(dealer, share, commitments)])
    # the honest reveals rebuild the key, and the round closes with the survivors' mean
    receipts = cohort.act([0, 1, 2])
    assert event_args(contract, "ShareRevealed", receipts) == [
        {"round": 1, "dealer": dealer, "holder": accounts[i]} for i in range(3)
    ]
    assert event_args(contract, "KeyRecovered", receipts) == [
        {"round": 1, "dealer": dealer, "ok": True}
    ]
    cohort.close(relayer)
    assert model_values(contract) == integer_average([vectors[i] for i in range(3)]).tolist()


def test_more_dropouts_than_allowed_end_the_round_without_paying(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str], relayer: str
) -> None:
    # Prepare: four members tolerate one dropout; two leave.
    contract = deploy_coordinator(**secure_params(4, 1))
    accounts = clients[:4]
    before = read_model_words(contract)
    rng = np.random.default_rng(5)
    cohort = Cohort.of(isolated, contract, accounts)
    cohort.set_updates({i: random_vector(rng) for i in range(4)}, round_number=1)
    receipts = cohort.act() + cohort.act() + cohort.act([0, 1])
    # Execute
    receipts.append(finish_phase(isolated, contract, relayer))
    # Assert: ended, the next round registers a new cohort; nothing paid, the model unchanged
    assert event_args(contract, "RoundAbandoned", receipts) == [{"round": 1, "submissions": 2}]
    assert event_args(contract, "MemberDropped", receipts) == []
    assert event_args(contract, "RewardSettled", receipts) == []
    info = read_round(contract)
    assert (info.number, info.phase) == (2, "Register")
    assert read_cohort(contract).members == ()
    assert credits(contract, [*accounts, relayer]) == [0] * 5
    assert int(contract.functions.availableRewards().call()) == POOL
    assert read_model_words(contract) == before
    assert int(contract.functions.modelVersion().call()) == 0


def test_a_dealer_whose_shares_do_not_rebuild_its_key_stops_the_close_until_finalize(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str], relayer: str
) -> None:
    # Prepare: member 3 posts shares of another secret (valid commitments to them), then drops.
    contract = deploy_coordinator(**secure_params(4, 1))
    accounts = clients[:4]
    rng = np.random.default_rng(6)
    cohort = Cohort.of(isolated, contract, accounts)
    cohort.set_updates({i: random_vector(rng) for i in range(4)}, round_number=1)
    cohort.act()
    cheat = cohort.key(3, 1)
    garbage = shamir_split(cheat.secret + 1, threshold=3, count=4, randomness=b"garbage")
    post_shares(isolated, contract, accounts[3], cheat, garbage)
    cohort.act([0, 1, 2])
    cohort.act([0, 1, 2])
    finish_phase(isolated, contract, relayer)
    # Execute: the survivors' shares match the commitments, but rebuild the wrong key
    receipts = cohort.act([0, 1, 2])
    # Assert
    assert event_args(contract, "KeyRecovered", receipts) == [
        {"round": 1, "dealer": accounts[3], "ok": False}
    ]
    assert cohort.close(relayer) == []
    with reverts("CoordinatorWrongPhase", phase=RECOVER):
        send(isolated, contract.functions.closeMasked(1, 0, []), relayer)
    deadline = read_round(contract).deadline
    with reverts(
        "CoordinatorNotClosable", round=1, entries=3, target=4, minimum=2, opensAt=deadline
    ):
        send(isolated, contract.functions.finalize(), relayer)
    ended = finish_phase(isolated, contract, relayer)
    assert events(contract, "RoundAbandoned", ended) == [{"round": 1, "submissions": 3}]
    assert events(contract, "RewardSettled", ended) == []
    assert read_round(contract).phase == "Register"
    assert credits(contract, [*accounts, relayer]) == [0] * 5
    # Its commitments convict it: it may not join a cohort again; the others may
    cohort.set_updates({i: random_vector(rng) for i in range(4)}, round_number=2)
    with reverts("CoordinatorFaultyDealer", dealer=accounts[3]):
        cohort.act([3])
    cohort.act([0, 1, 2])
    assert [m.account for m in read_cohort(contract).members] == accounts[:3]


def test_a_member_that_sent_part_of_its_masked_update_ends_the_round_instead_of_being_unmasked(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str], relayer: str
) -> None:
    # Prepare: three segments; member 3 sends its first segment only, then goes silent
    contract = deploy_coordinator(**secure_params(4, 1, words_per_segment=1))
    assert int(contract.functions.numSegments().call()) == 3
    accounts = clients[:4]
    rng = np.random.default_rng(12)
    cohort = Cohort.of(isolated, contract, accounts)
    cohort.set_updates({i: random_vector(rng) for i in range(4)}, round_number=1)
    cohort.act()  # keys
    cohort.act()  # shares
    cohort.act([0, 1, 2])  # complete masked submissions
    values = cohort.updates[3].values
    words = masked_words(isolated, contract, accounts[3], cohort.key(3, 1), values)
    per_word = int(contract.functions.laneBits().call()) // 16
    send(isolated, contract.functions.submitMasked(1, 1, 0, words[:per_word]), accounts[3])
    assert read_progress(contract, accounts[3]).segments_done == 1
    # Execute: the masking phase ends with one member short (within max_dropouts)
    ended = finish_phase(isolated, contract, relayer)
    # Assert: recovering its key would unmask the segment it sent: the round ends instead,
    # unpaid, and nobody is asked for its shares
    assert events(contract, "RoundAbandoned", ended) == [{"round": 1, "submissions": 3}]
    assert events(contract, "MemberDropped", ended) == []
    assert read_round(contract).number == 2
    assert read_round(contract).phase == "Register"
    assert credits(contract, [*accounts, relayer]) == [0] * 5


def test_each_round_forms_a_new_cohort_in_its_registration_window(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str], relayer: str
) -> None:
    # Prepare: round 1 with members 0-2 of three (one dropout tolerated)
    contract = deploy_coordinator(**secure_params(3, 1))
    accounts = clients[:4]
    rng = np.random.default_rng(8)
    cohort = Cohort.of(isolated, contract, accounts)
    first = {i: random_vector(rng) for i in range(3)}
    cohort.set_updates(first, round_number=1)
    cohort.act([0, 1, 2])
    cohort.act([0, 1, 2])
    cohort.act([0, 1, 2])
    cohort.close(relayer)
    assert model_values(contract) == integer_average(list(first.values())).tolist()
    # Execute: round 2 starts with no cohort; members 1 and 2 register in its window, 3 is late
    assert read_round(contract).phase == "Register"
    assert read_cohort(contract).members == ()
    second = {i: random_vector(rng) for i in (1, 2)}
    cohort.set_updates(second, round_number=2)
    cohort.act([1, 2])
    deadline = read_round(contract).deadline
    isolated.advance_time(deadline - isolated.timestamp())
    with reverts("CoordinatorDeadlinePassed", round=2, deadline=deadline):
        register_key(isolated, contract, accounts[3], cohort.key(3, 2), round_number=2)
    finish_phase(isolated, contract, relayer)
    # Assert: the new cohort has fresh keys; an account that did not register has no part in it
    members = read_cohort(contract)
    assert [m.account for m in members.members] == [accounts[1], accounts[2]]
    assert members.threshold == 1
    assert [m.x for m in members.members] == [cohort.key(1, 2).x, cohort.key(2, 2).x]
    assert cohort.key(1, 2).x != cohort.key(1, 1).x
    with reverts("CoordinatorNotRegistered", account=accounts[0]):
        send(
            isolated,
            contract.functions.postShares(2, [bytes(32)] * 2, [bytes(32)] * 2),
            accounts[0],
        )
    cohort.act([1, 2])
    assert read_round(contract).phase == "Open"
    words = masked_words(
        isolated, contract, accounts[1], cohort.key(1, 2), second[1], round_number=2
    )
    with reverts("CoordinatorNotRegistered", account=accounts[0]):
        submit_masked(isolated, contract, accounts[0], words, round_number=2)
    cohort.act([1, 2])
    cohort.close(relayer)
    assert model_values(contract) == integer_average(list(second.values())).tolist()
    assert read_round(contract).number == 3


def test_eligibility_changes_take_effect_in_the_next_round(
    isolated: Chain, owner: str, clients: list[str], relayer: str
) -> None:
    # Prepare: an allowlist of members 0-3 before round 1
    params = small_params(**secure_params(3, 1), allowlist_enabled=True)
    contract = deploy_in_setup(isolated, params, owner=owner)
    accounts = clients[:5]
    send(isolated, contract.functions.setAllowed(accounts[:4], True), owner)
    load_initial_model(isolated, contract, None, owner=owner)
    cohort = Cohort.of(isolated, contract, accounts)
    assert read_round(contract).phase == "Register"
    cohort.act([0])
    # Execute: inside round 1 the owner revokes member 2 and allows member 4
    revoked = send(isolated, contract.functions.setAllowed([accounts[2]], False), owner)
    allowed = send(isolated, contract.functions.setAllowed([accounts[4]], True), owner)
    # Assert: round 1 keeps its rules ...
    assert events(contract, "AllowlistUpdated", revoked) == [
        {"account": accounts[2], "allowed": False, "fromRound": 2}
    ]
    assert events(contract, "AllowlistUpdated", allowed) == [
        {"account": accounts[4], "allowed": True, "fromRound": 2}
    ]
    with reverts("CoordinatorNotEligible", account=accounts[4], round=1):
        register_key(isolated, contract, accounts[4], cohort.key(4, 1))
    cohort.act([2, 1])
    assert [m.account for m in read_cohort(contract).members] == [
        accounts[0],
        accounts[2],
        accounts[1],
    ]
    # ... and round 2 (after round 1 ended: nobody posted shares) has the new ones.
    ended = finish_phase(isolated, contract, relayer)
    assert events(contract, "RoundAbandoned", ended) == [{"round": 1, "submissions": 0}]
    assert read_round(contract).phase == "Register"
    with reverts("CoordinatorNotEligible", account=accounts[2], round=2):
        register_key(isolated, contract, accounts[2], cohort.key(2, 2), round_number=2)
    receipt = register_key(isolated, contract, accounts[4], cohort.key(4, 2), round_number=2)
    assert events(contract, "KeyRegistered", receipt)[0]["client"] == accounts[4]
    assert [
        bool(contract.functions.isEligible(accounts[i], r).call()) for i in (2, 4) for r in (1, 2)
    ] == [True, False, False, True]


# ---------------------------------------------------------------- the masked mean is checked


@pytest.mark.parametrize(
    ("aggregation", "lane_bits", "samples"),
    [("mean", 16, (1, 1, 1)), ("sample_weighted", 32, (3, 5, 7))],
)
def test_junk_in_a_lane_moves_only_that_lanes_mean_within_the_range(
    isolated: Chain,
    deploy_coordinator: DeployFactory,
    clients: list[str],
    relayer: str,
    aggregation: str,
    lane_bits: int,
    samples: tuple[int, ...],
) -> None:
    # Prepare: three members; lanes 5 and 6 hold known values, member 0 adds junk there, to lane
    # 7 and to a padding lane (40 weights: lanes 40..47 of the last word are padding).
    contract = deploy_coordinator(**secure_params(3, 1), aggregation=aggregation)
    assert int(contract.functions.laneBits().call()) == lane_bits
    accounts = clients[:3]
    rng = np.random.default_rng(9)
    vectors = {i: random_vector(rng) for i in range(3)}
    for vector in vectors.values():
        vector[5], vector[6] = 1000, 3000
    junk = {5: 2**31 + 5, 6: 2**30, 7: 12_345, 44: 0xDEAD}
    if lane_bits == 16:
        junk.update({5: 2**15 + 5, 6: 2**14})  # the same, scaled to the lane
    cohort = Cohort.of(isolated, contract, accounts)
    cohort.act()
    cohort.act()
    words = {
        i: masked_words(
            isolated, contract, accounts[i], cohort.key(i, 1), vectors[i], weight=samples[i]
        )
        for i in range(3)
    }
    for index, amount in junk.items():
        words[0] = add_to_lane(words[0], index, amount, lane_bits)
    # Execute
    for i in range(3):
        submit_masked(isolated, contract, accounts[i], words[i], sample_count=samples[i])
    cohort.close(relayer)
    # Assert: the junk lanes clamped (5 to -maxAbs, 6 to +maxAbs) or moved (7), padding zero,
    # every other lane the exact weighted mean
    model = model_values(contract)
    exact = integer_average([vectors[i] for i in range(3)], list(samples)).tolist()
    weight_sum = sum(samples)
    lane_sums = [
        sum(lanes)
        for lanes in zip(
            *(plain_lanes(vectors[i], weight=s) for i, s in enumerate(samples)), strict=True
        )
    ]
    assert (model[5], model[6]) == (-3000, 3000)
    assert model[7] == clamped_mean(
        lane_sums[7] + junk[7], weight_sum, lane_bits=lane_bits, max_abs=3000
    )
    assert model[7] != exact[7]
    assert [model[i] for i in range(SMALL_WEIGHTS) if i not in junk] == [
        exact[i] for i in range(SMALL_WEIGHTS) if i not in junk
    ]
    last_word = read_model_words(contract)[-1]
    assert [(last_word >> (16 * lane)) & 0xFFFF for lane in range(8, LANES)] == [OFFSET] * 8


# ---------------------------------------------------------------- end to end


def synthetic_shard(seed: int, samples: int = 30) -> Shard:
    """Seven features, five classes: a softmax regression of exactly 40 weights."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, 7, generator=generator)
    y = torch.randint(0, 5, (samples,), generator=generator)
    return Shard(x, y)


def federation_of(chain: Chain, contract: Contract, accounts: list[str], closer: str) -> Federation:
    """Three members training softmax regression on their own synthetic shards."""
    config = TrainConfig(epochs=1, batch_size=10, learning_rate=0.2)
    members = [
        Member(
            account=account,
            trainer=ShardTrainer(
                shard=synthetic_shard(i),
                num_features=7,
                num_classes=5,
                config=config,
                seed=3,
                client_id=i,
            ),
            secret=simulation_secret(3, i),
        )
        for i, account in enumerate(accounts)
    ]
    return Federation(chain=chain, contract=contract, members=members, closer_account=closer)


def test_a_secure_aggregation_federation_ends_in_the_models_of_direct_submission(
    isolated: Chain, owner: str, clients: list[str], relayer: str
) -> None:
    # Prepare: the same initial model, members and training on a direct and a masked deployment
    initial, _ = encode(
        get_flat_parameters(build_model(7, 5, seed=3)), FixedPointFormat(scale=1024, max_abs=3000)
    )
    assert len(unpack(initial, SMALL_WEIGHTS)) == SMALL_WEIGHTS
    direct_params = small_params(target_submissions=3, min_submissions=3)
    masked_params = small_params(**secure_params(3, 1, min_submissions=3))
    direct = deploy(isolated, direct_params, initial_words=initial, pool_wei=POOL, deployer=owner)
    masked = deploy(isolated, masked_params, initial_words=initial, pool_wei=POOL, deployer=owner)
    plain_run = federation_of(isolated, direct, clients[:3], relayer)
    masked_run = federation_of(isolated, masked, clients[3:6], relayer)
    # Execute / Assert: two rounds, the same model after each
    for round_number in (1, 2):
        plain_outcomes = plain_run.play_round(round_number, [0, 1, 2])
        masked_outcomes = masked_run.play_round(round_number, [0, 1, 2])
        assert read_model_words(masked) == read_model_words(direct)
        assert masked.functions.modelHash().call() == direct.functions.modelHash().call()
        expected = integer_average([unpack(list(o.words), SMALL_WEIGHTS) for o in plain_outcomes])
        assert model_values(masked) == expected.tolist()
        assert [o.words for o in masked_outcomes] == [o.words for o in plain_outcomes]
        assert [(o.path, o.reward_wei) for o in masked_outcomes] == [("masked", 300)] * 3
    assert read_round(masked).phase == "Register"
    assert read_round(direct).phase == "Open"
    assert int(masked.functions.modelVersion().call()) == 2


def test_the_secure_aggregation_settings_are_public(
    isolated: Chain, deploy_coordinator: DeployFactory
) -> None:
    # Prepare / Execute: a cohort of five that may lose two
    contract = deploy_coordinator(**secure_params(5, 2))
    # Assert: every member can read the dropout tolerance and the durations before it registers
    assert contract.functions.secureAggregation().call() == [2, SETUP_SECONDS, RECOVERY_SECONDS]
    assert CoordinatorView.read(isolated, contract).max_dropouts == 2


def test_step_and_drift_bounds_hold_the_masked_mean(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str], relayer: str
) -> None:
    # Prepare: two members, both wanting every weight at 100 from a zero model; a weight may move
    # 5 quanta a round and 8 from the checkpoint (refreshed every 3 rounds)
    contract = deploy_coordinator(**secure_params(2, 1, max_step=5, max_drift=8, drift_window=3))
    cohort = Cohort.of(isolated, contract, clients[:2])
    target = np.full(SMALL_WEIGHTS, 100, dtype=np.int64)
    expected_models = {1: 5, 2: 8}  # round 1: the step; round 2: the drift from the zero model
    for round_number, expected in expected_models.items():
        cohort.set_updates({0: target, 1: target}, round_number=round_number)
        # Execute
        for _ in range(3):
            cohort.act()
        receipts = cohort.close(relayer)
        # Assert: every weight held back to the bound, and the close says how many were
        closed = [e for r in receipts for e in events(contract, "SegmentClosed", r)]
        assert [e["clamped"] for e in closed] == [SMALL_WEIGHTS]
        assert model_values(contract) == [expected] * SMALL_WEIGHTS


def test_a_share_cap_is_refused_for_masked_updates(deploy_coordinator: DeployFactory) -> None:
    # Each member weights its own masked words: no share can be capped once they are summed
    with reverts("CoordinatorInvalidParameter", name="maxShareBps", value=5_000):
        deploy_coordinator(
            **secure_params(3, 1, aggregation="sample_weighted", max_share_bps=5_000)
        )
