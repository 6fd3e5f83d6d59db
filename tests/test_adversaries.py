"""Adversaries against the round pipeline: stallers (partial segments, commitments never
revealed, relayers that withhold words, rounds nobody closes), free riders (the global model
resent, noise exactly at the guard's distance), stale resubmitters, copycats (commit-reveal),
forged, replayed and high-s relay signatures, poisoners (scaled, sign-flipped), sample-count
inflaters, Sybils (filling rounds, pushing one direction), an owner changing eligibility
mid-round, and withdrawers that re-enter or refuse ETH.

Each test plays one attack against a coordinator deployed with the defence that answers it and
asserts that the attack now fails: it is refused (by the contract's named custom error and its
arguments), or it is settled unpaid and left out of the average, or it leaves the model within
the step, drift and share bounds, or it delays a round by no more than its windows. Every
expected figure comes from the Python reference (:mod:`fl_client.aggregation`), never from
hand-written numbers.

The coordinators are ``small_params``: 40 weights (3 words; with ``words_per_segment=2`` two
segments of 2 and 1 words), target 3, minimum 2, rounds of 600 s, a close window of 120 s, a close
fee of 7 wei and a relay fee of 3 wei per relayed update and segment, a 1e6 wei pool.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np
import pytest
from web3.contract import Contract
from web3.types import TxReceipt

from fl_client.aggregation import (
    NO_TIER,
    aligned,
    capped_weights,
    clamp_step,
    directional_l1,
    distance,
    integer_average,
    reward_tier,
    step_signs,
)
from fl_client.chain import (
    Chain,
    close_function,
    commitment,
    decode_revert,
    deploy_units,
    load_initial_model,
    malleable_twin,
    read_entries,
    read_progress,
    read_round,
    read_round_details,
    reveal_calls,
    send,
)
from fl_client.codec import pack, unpack, vector_hash
from fl_client.compile import CompiledContract
from fl_client.errors import ContractRevertError
from tests.conftest import (
    SMALL_WEIGHTS,
    DeployFactory,
    close,
    close_words,
    events,
    relay,
    revert_args,
    signed,
    small_params,
    submit,
    submit_segments,
    words_per_segment,
)
from tests.pipeline_helpers import deploy_attacker, deploy_in_setup

DEFAULTS = small_params()
THRESHOLDS, REWARDS = DEFAULTS.tier_thresholds, DEFAULTS.tier_rewards
DURATION, WINDOW = DEFAULTS.round_duration, DEFAULTS.close_window
CLOSE_FEE, RELAY_FEE = DEFAULTS.close_fee, DEFAULTS.relay_fee
MAX_ABS = DEFAULTS.max_abs_weight
POOL = 10**6  # deploy_coordinator's default pool
SEGMENTED = 2  # words_per_segment that cuts the 3-word vector in two segments (32 + 8 weights)
SEGMENT_0 = slice(0, 32)  # the weights of segment 0 when SEGMENTED
SEGMENT_1 = slice(32, SMALL_WEIGHTS)
REVEAL_DURATION = 300
BOND = 5_000
CLOSING = 4  # Phase.Closing
COMMIT, REVEAL = 2, 3  # Phase.Commit, Phase.Reveal
REENTER, REENTER_SWALLOW, REJECT = 0, 1, 2  # ReentrantWithdrawer.Mode
RAW_GAS = 5_000_000
CLOCK_LEAD = 86_400  # seconds the module's chain runs ahead of the wall clock


# ---------------------------------------------------------------- helpers


@pytest.fixture(scope="module", autouse=True)
def shared_units(chain: Chain) -> Iterator[list[str]]:
    """The stateless units, deployed once for the module (each test's snapshot then starts
    with them), and the clock a day ahead of the wall clock, so that every block is its parent
    + 1 s (or + what a test advances) however slowly a test runs; all rolled back with the
    module."""
    snapshot = chain.snapshot()
    before = list(chain.units)
    chain.advance_time(CLOCK_LEAD)
    yield deploy_units(chain, sender=chain.accounts[0])
    chain.revert(snapshot)
    chain.units = before


def model_of(contract: Contract) -> np.ndarray:
    """The global model as signed quantized weights."""
    return unpack([int(w) for w in contract.functions.globalModel().call()], SMALL_WEIGHTS)


def credit_of(contract: Contract, account: str) -> int:
    """Wei credited to ``account`` and not withdrawn."""
    return int(contract.functions.credit(account).call())


def balance_of(chain: Chain, account: str) -> int:
    """ETH balance in wei."""
    return int(chain.w3.eth.get_balance(account))  # type: ignore[arg-type]


def random_model(seed: int, bound: int = 500) -> np.ndarray:
    """A random in-range quantized model."""
    rng = np.random.default_rng(seed)
    return rng.integers(-bound, bound + 1, size=SMALL_WEIGHTS, dtype=np.int64)


def honest_updates(model: np.ndarray, count: int, *, seed: int, step: int = 30) -> list[np.ndarray]:
    """``count`` honest updates: the model plus a nonzero training step of up to ``step``."""
    rng = np.random.default_rng(seed)
    return [
        model + rng.integers(1, step + 1, size=SMALL_WEIGHTS) * rng.choice([-1, 1], SMALL_WEIGHTS)
        for _ in range(count)
    ]


def scaled(model: np.ndarray, trained: np.ndarray, k: int) -> np.ndarray:
    """The poisoned update ``global + k * (trained - global)``, clipped to the range."""
    poisoned: np.ndarray = np.clip(model + k * (trained - model), -MAX_ABS, MAX_ABS)
    return poisoned


def accepted(contract: Contract, receipt: TxReceipt) -> dict[str, Any]:
    """The one ``SubmissionAccepted`` event in ``receipt``."""
    [event] = events(contract, "SubmissionAccepted", receipt)
    return event


def settlement(
    model: np.ndarray,
    update: np.ndarray,
    client: str,
    *,
    round_number: int = 1,
    relayed: bool = False,
    min_reward_distance: int = 0,
    max_counted_distance: int = 0,
    guard: tuple[np.ndarray | None, int] | None = None,
) -> dict[str, Any]:
    """The ``SubmissionAccepted`` event the reference predicts for ``update`` against ``model``
    (sample count 1, a pool that does not run dry). ``guard`` is ``(last step or None in round 1,
    minAlignment)`` when the direction guard is on."""
    dist = distance(model, update, "l1")
    along, against, passes = 0, 0, True
    step, min_alignment = guard if guard is not None else (None, 0)
    if step is not None:  # the guard is on and a step exists (round 1 has none: nothing measured)
        along, against = directional_l1(model, update, step)
        passes = aligned(along, against, min_alignment)
    counted = passes and not (max_counted_distance and dist > max_counted_distance)
    decision = reward_tier(
        dist,
        THRESHOLDS,
        REWARDS,
        min_reward_distance=min_reward_distance,
        max_counted_distance=max_counted_distance,
    )
    return {
        "round": round_number,
        "client": client,
        "sampleCount": 1,
        "distance": dist,
        "along": along,
        "against": against,
        "tier": decision.tier if counted else NO_TIER,
        "reward": decision.amount_wei if counted else 0,
        "counted": counted,
        "relayed": relayed,
    }


def dropped(client: str, *, round_number: int = 1) -> dict[str, Any]:
    """The ``SubmissionAccepted`` event of a relayed update left out before any of its words
    were measured."""
    return {
        "round": round_number,
        "client": client,
        "sampleCount": 1,
        "distance": 0,
        "along": 0,
        "against": 0,
        "tier": NO_TIER,
        "reward": 0,
        "counted": False,
        "relayed": True,
    }


def segment_closed(
    closer: str, segment: int, entries: int, relayed: int, *, round_number: int = 1
) -> dict[str, Any]:
    """The ``SegmentClosed`` event of a close that summed ``entries`` updates, ``relayed`` of
    them carried by it (no step or drift bound: nothing clamped; a close of nothing earns no fee)."""
    return {
        "round": round_number,
        "segment": segment,
        "closer": closer,
        "entries": entries,
        "relayed": relayed,
        "fee": CLOSE_FEE + RELAY_FEE * relayed if entries else 0,
        "clamped": 0,
    }


def reverted(call: Callable[[], object]) -> ContractRevertError:
    """Run ``call()``, which must revert, and return the decoded error."""
    with pytest.raises(ContractRevertError) as caught:
        call()
    return caught.value


def assert_reverts(call: Callable[[], object], name: str, **args: object) -> None:
    """``call()`` reverts with the custom error ``name`` and exactly ``args``."""
    error = reverted(call)
    assert (error.name, revert_args(error)) == (name, args)


def calldata_of(chain: Chain, contract: Contract, receipt: TxReceipt) -> dict[str, Any]:
    """The arguments of the call in ``receipt``, decoded from its public transaction."""
    tx = chain.w3.eth.get_transaction(receipt["transactionHash"])
    _, arguments = contract.decode_function_input(tx["input"])
    return dict(arguments)


def block_time(chain: Chain, receipt: TxReceipt) -> int:
    """Timestamp of the block that holds ``receipt``."""
    return int(chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"])


def advance_past(chain: Chain, moment: int) -> None:
    """Move the clock so that the next transaction lands after ``moment``."""
    chain.advance_time(max(0, moment - chain.timestamp()) + 1)


def model_hash(contract: Contract, values: np.ndarray) -> bytes:
    """``modelHash`` of the quantized model ``values`` cut in the deployment's segments."""
    return vector_hash(pack(values), words_per_segment(contract))


def finalize(chain: Chain, contract: Contract, sender: str) -> TxReceipt:
    """``finalize()`` from ``sender``."""
    return send(chain, contract.functions.finalize(), sender)


def close_segment(
    chain: Chain,
    contract: Contract,
    sender: str,
    vectors: Sequence[np.ndarray],
    *,
    segment: int = 0,
    omitted: Sequence[int] = (),
    round_number: int = 1,
) -> TxReceipt:
    """Close one segment from ``vectors`` (entries in order, the omitted ones left out)."""
    function = close_function(
        contract,
        round_number=round_number,
        segment=segment,
        words=close_words(contract, vectors, segment),
        omitted=omitted,
    )
    return send(chain, function, sender)


def commit_to(
    chain: Chain,
    contract: Contract,
    sender: str,
    words: Sequence[int],
    salt: bytes,
    *,
    round_number: int = 1,
) -> TxReceipt:
    """Commit (with the bond) to the packed ``words`` with ``salt``, sample count 1."""
    digest = commitment(
        chain_id=chain.chain_id(),
        contract_address=str(contract.address),
        round_number=round_number,
        client=sender,
        sample_count=1,
        salt=salt,
        vector_hash=vector_hash(words, words_per_segment(contract)),
    )
    bond = int(contract.functions.commitBond().call())
    return send(chain, contract.functions.commit(round_number, digest), sender, value=bond)


def reveal(
    chain: Chain,
    contract: Contract,
    sender: str,
    words: Sequence[int],
    salt: bytes,
    *,
    round_number: int = 1,
) -> TxReceipt:
    """Reveal the packed ``words`` with ``salt`` (sample count 1); the last receipt."""
    calls = reveal_calls(
        contract,
        sender,
        round_number=round_number,
        sample_count=1,
        words=words,
        words_per_segment=words_per_segment(contract),
        salt=salt,
    )
    return [send(chain, call.function, call.sender) for call in calls][-1]


def deploy_with_allowlist(
    chain: Chain, owner: str, model: np.ndarray, *, allowed: Sequence[str] | None
) -> Contract:
    """A coordinator on ``model`` with the default pool whose allowlist holds ``allowed`` from
    round 1 (set in Setup, before the model loads); ``None``: the allowlist is off."""
    params = small_params(allowlist_enabled=allowed is not None)
    contract = deploy_in_setup(chain, params, owner=owner)
    send(chain, contract.functions.fund(), owner, value=POOL)
    if allowed is not None:
        send(chain, contract.functions.setAllowed(list(allowed), True), owner)
    load_initial_model(chain, contract, pack(model), owner=owner)
    return contract


def money_identity(chain: Chain, contract: Contract) -> tuple[int, int]:
    """``(balance, totalFunded + bonds held + bonds returned - totalWithdrawn)``: always equal."""
    f = contract.functions
    held, returned = (int(v) for v in f.bonds().call())
    expected = int(f.totalFunded().call()) + held + returned - int(f.totalWithdrawn().call())
    return balance_of(chain, str(contract.address)), expected


# ---------------------------------------------------------------- stalls


STALLS = [
    # target, minimum, honest clients, how the round ends
    pytest.param(3, 3, 3, "closed", id="min=target-full"),
    pytest.param(3, 2, 2, "closed-at-deadline", id="min<target-minimum"),
    pytest.param(3, 2, 1, "abandoned", id="min<target-short"),
]


@pytest.mark.parametrize(("target", "minimum", "honest", "outcome"), STALLS)
def test_stallers_that_send_only_segment_0_hold_no_place(
    isolated: Chain,
    deploy_coordinator: DeployFactory,
    clients: list[str],
    relayer: str,
    outsider: str,
    target: int,
    minimum: int,
    honest: int,
    outcome: str,
) -> None:
    """``target - min + 1`` accounts send segment 0 of a two-segment update and stop. Only
    complete submissions hold a place: the honest clients fill the round, which closes with them
    at once (full), at the deadline (>= min), or ends by ``finalize`` after deadline +
    closeWindow (below min); the next round opens either way and the stallers earn nothing."""
    # Prepare
    model = random_model(31)
    contract = deploy_coordinator(
        initial=model,
        words_per_segment=SEGMENTED,
        target_submissions=target,
        min_submissions=minimum,
    )
    stallers = clients[: target - minimum + 1]
    workers = clients[5 : 5 + honest]
    halves = honest_updates(model, len(stallers), seed=32)
    updates = honest_updates(model, honest, seed=33)
    deadline = read_round(contract).deadline
    # Execute: the stallers send segment 0 and stop; the honest clients send whole updates
    for staller, half in zip(stallers, halves, strict=True):
        receipt = submit_segments(isolated, contract, staller, half, [0])
        assert events(contract, "SegmentsReceived", receipt) == [
            {"round": 1, "client": staller, "firstSegment": 0, "count": 1}
        ]
    settled = [
        accepted(contract, submit(isolated, contract, w, u)[-1])
        for w, u in zip(workers, updates, strict=True)
    ]
    # Assert: every honest client was paid at once and holds a place; the stallers hold none
    assert settled == [settlement(model, u, w) for w, u in zip(workers, updates, strict=True)]
    assert [e.client for e in read_entries(contract)] == workers
    for staller, half in zip(stallers, halves, strict=True):
        progress = read_progress(contract, staller)
        assert (progress.round_number, progress.segments_done, progress.relayed) == (1, 1, False)
        assert progress.distance_so_far == distance(model[SEGMENT_0], half[SEGMENT_0], "l1")
        assert contract.functions.hasSubmitted(staller, 1).call() is False
        assert credit_of(contract, staller) == 0
    late_half = contract.functions.submit(1, 1, 1, pack(halves[0])[SEGMENTED:])
    if outcome == "closed":
        # the round is full: a staller can no longer complete, anyone closes at once
        assert_reverts(
            lambda: send(isolated, late_half, stallers[0]),
            "CoordinatorRoundFull",
            round=1,
            entries=target,
        )
        receipts = close(isolated, contract, relayer, updates)
        [closed] = events(contract, "RoundClosed", receipts[-1])
        assert closed == {
            "round": 1,
            "modelVersion": 1,
            "modelHash": model_hash(contract, integer_average(updates)),
            "submissions": honest,
        }
        assert model_of(contract).tolist() == integer_average(updates).tolist()
    elif outcome == "closed-at-deadline":
        early = lambda: close(isolated, contract, relayer, updates)  # noqa: E731
        assert_reverts(
            early,
            "CoordinatorNotClosable",
            round=1,
            entries=honest,
            target=target,
            minimum=minimum,
            opensAt=deadline,
        )
        advance_past(isolated, deadline)
        assert_reverts(
            lambda: send(isolated, late_half, stallers[0]),
            "CoordinatorDeadlinePassed",
            round=1,
            deadline=deadline,
        )
        receipts = close(isolated, contract, relayer, updates)
        [closed] = events(contract, "RoundClosed", receipts[-1])
        assert (closed["round"], closed["modelVersion"], closed["submissions"]) == (1, 1, honest)
        assert model_of(contract).tolist() == integer_average(updates).tolist()
    else:
        advance_past(isolated, deadline)
        late_close = lambda: close(isolated, contract, relayer, updates)  # noqa: E731
        assert_reverts(
            late_close,
            "CoordinatorNotClosable",
            round=1,
            entries=honest,
            target=target,
            minimum=minimum,
            opensAt=deadline,
        )
        assert_reverts(
            lambda: finalize(isolated, contract, outsider),
            "CoordinatorNotClosable",
            round=1,
            entries=honest,
            target=target,
            minimum=minimum,
            opensAt=deadline + WINDOW,
        )
        advance_past(isolated, deadline + WINDOW)
        receipt = finalize(isolated, contract, outsider)
        assert events(contract, "RoundAbandoned", receipt) == [{"round": 1, "submissions": honest}]
        assert events(contract, "RoundOpened", receipt) == [
            {"round": 2, "deadline": block_time(isolated, receipt) + DURATION}
        ]
        assert model_of(contract).tolist() == model.tolist()
        assert int(contract.functions.modelVersion().call()) == 0
    state = read_round(contract)
    assert (state.number, state.phase, state.submissions) == (2, "Open", 0)
    assert [credit_of(contract, w) for w in workers] == [e["reward"] for e in settled]
    assert [credit_of(contract, s) for s in stallers] == [0] * len(stallers)
    assert_reverts(
        lambda: send(isolated, late_half, stallers[0]), "CoordinatorWrongRound", given=1, current=2
    )


@pytest.mark.parametrize("reveals", [2, 1], ids=["minimum-revealed", "below-minimum"])
def test_committer_that_never_reveals_forfeits_its_bond_and_the_round_moves_on(
    isolated: Chain,
    deploy_coordinator: DeployFactory,
    clients: list[str],
    relayer: str,
    outsider: str,
    reveals: int,
) -> None:
    """Three commit (the third opens reveals), ``reveals`` of them reveal. After the reveal
    deadline the round closes with the reveals it has (>= min) or, below min, ``finalize`` ends
    it after the close window; either way the silent committers' bonds go to the pool."""
    # Prepare
    model = random_model(41)
    contract = deploy_coordinator(
        initial=model, mode="commit_reveal", reveal_duration=REVEAL_DURATION, commit_bond=BOND
    )
    committers = clients[:3]
    updates = honest_updates(model, 3, seed=41)
    salts = [bytes([0x41 + i]) * 32 for i in range(3)]
    for client, update, salt in zip(committers, updates, salts, strict=True):
        commit_to(isolated, contract, client, pack(update), salt)
    assert read_round(contract).phase == "Reveal"
    revealed = [
        reveal(isolated, contract, client, pack(update), salt)
        for client, update, salt in list(zip(committers, updates, salts, strict=True))[:reveals]
    ]
    deadline = read_round(contract).deadline
    silent = committers[reveals:]
    # Execute / Assert: the round cannot close before the reveal deadline (not every commitment
    # is revealed)
    kept = updates[:reveals]
    assert_reverts(
        lambda: close(isolated, contract, relayer, kept),
        "CoordinatorNotClosable",
        round=1,
        entries=reveals,
        target=3,
        minimum=2,
        opensAt=deadline,
    )
    advance_past(isolated, deadline)
    if reveals >= 2:
        receipts = close(isolated, contract, relayer, kept)
        last = receipts[-1]
        [closed] = events(contract, "RoundClosed", last)
        assert (closed["round"], closed["submissions"]) == (1, reveals)
        assert model_of(contract).tolist() == integer_average(kept).tolist()
    else:
        assert_reverts(
            lambda: finalize(isolated, contract, outsider),
            "CoordinatorNotClosable",
            round=1,
            entries=reveals,
            target=3,
            minimum=2,
            opensAt=deadline + WINDOW,
        )
        advance_past(isolated, deadline + WINDOW)
        last = finalize(isolated, contract, outsider)
        assert events(contract, "RoundAbandoned", last) == [{"round": 1, "submissions": reveals}]
        assert model_of(contract).tolist() == model.tolist()
    # Assert
    assert events(contract, "BondsForfeited", last) == [{"round": 1, "amount": BOND * len(silent)}]
    assert int(contract.functions.totalFunded().call()) == POOL + BOND * len(silent)
    assert [int(v) for v in contract.functions.bonds().call()] == [0, BOND * reveals]
    for client, update, receipt in zip(committers, updates, revealed, strict=False):
        expected = settlement(model, update, client)
        assert accepted(contract, receipt) == expected
        assert events(contract, "BondReturned", receipt) == [
            {"round": 1, "client": client, "amount": BOND}
        ]
        assert credit_of(contract, client) == BOND + expected["reward"]
    assert [credit_of(contract, c) for c in silent] == [0] * len(silent)
    state = read_round(contract)
    assert (state.number, state.phase) == (2, "Commit")
    balance, expected_balance = money_identity(isolated, contract)
    assert balance == expected_balance == POOL + BOND * 3


def test_relayer_that_never_supplies_the_words_delays_the_round_by_the_close_window_only(
    isolated: Chain,
    deploy_coordinator: DeployFactory,
    clients: list[str],
    relayer: str,
    outsider: str,
) -> None:
    """A relayer registers two signed updates (the round is then full) and never hands over
    their words. Until the close window ends nobody can close the round without them; from then
    on a close leaves them out: the round closes with the direct submission, and the two relayed
    clients are settled unpaid. The relayer cannot end the round instead by sending ``finalize``
    first at the window's end: a round that holds its minimum can be ended only one window
    later."""
    # Prepare
    model = random_model(51)
    contract = deploy_coordinator(initial=model, words_per_segment=SEGMENTED)
    direct, victims = clients[0], clients[1:3]
    mine, *theirs = honest_updates(model, 3, seed=51)
    paid = accepted(contract, submit(isolated, contract, direct, mine)[-1])
    receipt = relay(
        isolated,
        contract,
        relayer,
        [signed(isolated, contract, v, u) for v, u in zip(victims, theirs, strict=True)],
    )
    assert events(contract, "UpdateRelayed", receipt) == [
        {"round": 1, "client": v, "relayer": relayer, "sampleCount": 1} for v in victims
    ]
    assert [(e.client, e.relayed) for e in read_entries(contract)] == [
        (direct, False),
        (victims[0], True),
        (victims[1], True),
    ]
    window_ends = read_round_details(contract).window_ends
    deadline = read_round(contract).deadline
    assert window_ends == deadline + WINDOW
    # Execute / Assert: before the window ends, the relayed entries can be neither left out nor
    # skipped, and the round cannot be ended
    assert_reverts(
        lambda: close_segment(isolated, contract, outsider, [mine], omitted=[1, 2]),
        "CoordinatorCannotOmit",
        index=1,
        allowedFrom=window_ends,
    )
    assert_reverts(
        lambda: close_segment(isolated, contract, outsider, [mine]),
        "CoordinatorWrongLength",
        expected=2 * SEGMENTED,
        given=SEGMENTED,
    )
    not_yet = {"round": 1, "entries": 3, "target": 3, "minimum": 2, "opensAt": window_ends + WINDOW}
    assert_reverts(
        lambda: finalize(isolated, contract, outsider), "CoordinatorNotClosable", **not_yet
    )
    advance_past(isolated, deadline)
    assert_reverts(
        lambda: close_segment(isolated, contract, outsider, [mine], omitted=[1, 2]),
        "CoordinatorCannotOmit",
        index=1,
        allowedFrom=window_ends,
    )
    advance_past(isolated, window_ends)
    assert_reverts(  # the relayer racing the closers at the window's end
        lambda: finalize(isolated, contract, relayer), "CoordinatorNotClosable", **not_yet
    )
    first = close_segment(isolated, contract, outsider, [mine], omitted=[1, 2])
    second = close_segment(isolated, contract, outsider, [mine], segment=1)
    # Assert
    assert events(contract, "SubmissionAccepted", first) == [dropped(v) for v in victims]
    assert events(contract, "SegmentClosed", first) == [segment_closed(outsider, 0, 1, 0)]
    assert [(e.client, e.dropped) for e in read_entries(contract)] == []  # round 2 now
    assert events(contract, "SegmentClosed", second) == [segment_closed(outsider, 1, 1, 0)]
    [closed] = events(contract, "RoundClosed", second)
    # `submissions` counts the updates the new model averages: the two left out are not
    assert closed == {
        "round": 1,
        "modelVersion": 1,
        "modelHash": model_hash(contract, mine),
        "submissions": 1,
    }
    assert model_of(contract).tolist() == mine.tolist()
    assert [credit_of(contract, v) for v in victims] == [0, 0]
    assert credit_of(contract, direct) == paid["reward"] > 0
    assert credit_of(contract, outsider) == 2 * CLOSE_FEE
    assert credit_of(contract, relayer) == 0


def test_client_whose_relayer_withholds_its_words_closes_the_round_itself(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str], relayer: str
) -> None:
    """The words a relayer withholds are the client's own: the client reads the direct
    submissions' words from their transactions and closes the round itself, before the close
    window ends. It is measured and paid in its own close, and earns the fees."""
    # Prepare
    model = random_model(52)
    contract = deploy_coordinator(initial=model)
    victim, others = clients[0], clients[1:3]
    update, *their_updates = honest_updates(model, 3, seed=52)
    relay(isolated, contract, relayer, [signed(isolated, contract, victim, update)])
    receipts = [
        submit(isolated, contract, c, u)[-1] for c, u in zip(others, their_updates, strict=True)
    ]
    public = [unpack(calldata_of(isolated, contract, r)["words"], SMALL_WEIGHTS) for r in receipts]
    assert [p.tolist() for p in public] == [u.tolist() for u in their_updates]
    # Execute: before the deadline (the round is full)
    [receipt] = close(isolated, contract, victim, [update, *public])
    # Assert
    assert events(contract, "SubmissionAccepted", receipt) == [
        settlement(model, update, victim, relayed=True)
    ]
    assert events(contract, "SegmentClosed", receipt) == [segment_closed(victim, 0, 3, 1)]
    reward = settlement(model, update, victim)["reward"]
    assert credit_of(contract, victim) == reward + CLOSE_FEE + RELAY_FEE
    assert model_of(contract).tolist() == integer_average([update, *their_updates]).tolist()


def test_client_left_out_by_its_relayer_submits_directly_before_the_deadline(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str], relayer: str
) -> None:
    """A relayer carries two of the three signed updates it was given. The third client sees it
    on-chain (no ``UpdateRelayed`` for it, ``hasSubmitted`` false) and submits directly: it is
    paid at once, and the round closes with all three."""
    # Prepare
    model = random_model(53)
    contract = deploy_coordinator(initial=model)
    updates = honest_updates(model, 3, seed=53)
    signatures = [
        signed(isolated, contract, c, u) for c, u in zip(clients[:3], updates, strict=True)
    ]
    receipt = relay(isolated, contract, relayer, signatures[:2])
    left_out = clients[2]
    assert [e["client"] for e in events(contract, "UpdateRelayed", receipt)] == clients[:2]
    assert contract.functions.hasSubmitted(left_out, 1).call() is False
    assert read_progress(contract, left_out).round_number == 0
    # Execute
    own = accepted(contract, submit(isolated, contract, left_out, updates[2])[-1])
    [closing] = close(isolated, contract, relayer, updates)
    # Assert
    assert own == settlement(model, updates[2], left_out)
    assert events(contract, "SubmissionAccepted", closing) == [
        settlement(model, u, c, relayed=True) for c, u in zip(clients[:2], updates[:2], strict=True)
    ]
    assert events(contract, "SegmentClosed", closing) == [segment_closed(relayer, 0, 3, 2)]
    assert model_of(contract).tolist() == integer_average(updates).tolist()
    assert credit_of(contract, left_out) == own["reward"] > 0
    assert credit_of(contract, relayer) == CLOSE_FEE + 2 * RELAY_FEE


def test_round_nobody_closes_is_ended_by_finalize_after_the_close_window(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str], outsider: str
) -> None:
    """A full round that nobody closes: ``finalize`` reverts with the moment it opens (deadline
    + 2 closeWindow: the round holds its minimum, so anyone can close it from deadline +
    closeWindow, and closers get that window alone) until then, and from then on ends the round
    without a new model; rewards paid on submit stay, and the next round takes submissions."""
    # Prepare
    model = random_model(54)
    contract = deploy_coordinator(initial=model)
    updates = honest_updates(model, 3, seed=54)
    paid = [
        accepted(contract, submit(isolated, contract, c, u)[-1])
        for c, u in zip(clients[:3], updates, strict=True)
    ]
    deadline = read_round(contract).deadline
    opens = deadline + 2 * WINDOW
    not_yet = {"round": 1, "entries": 3, "target": 3, "minimum": 2, "opensAt": opens}
    # Execute / Assert
    for moment in (None, deadline, deadline + WINDOW):
        if moment is not None:
            advance_past(isolated, moment)
        assert_reverts(
            lambda: finalize(isolated, contract, outsider), "CoordinatorNotClosable", **not_yet
        )
    advance_past(isolated, opens)
    receipt = finalize(isolated, contract, outsider)
    # Assert
    assert events(contract, "RoundAbandoned", receipt) == [{"round": 1, "submissions": 3}]
    assert events(contract, "RoundOpened", receipt) == [
        {"round": 2, "deadline": block_time(isolated, receipt) + DURATION}
    ]
    assert model_of(contract).tolist() == model.tolist()
    assert int(contract.functions.modelVersion().call()) == 0
    assert [credit_of(contract, c) for c in clients[:3]] == [e["reward"] for e in paid]
    assert credit_of(contract, outsider) == 0
    again = accepted(
        contract, submit(isolated, contract, clients[0], updates[0], round_number=2)[-1]
    )
    assert again == settlement(model, updates[0], clients[0], round_number=2)


def test_a_round_that_started_closing_cannot_be_ended_and_takes_its_next_segment(
    isolated: Chain,
    deploy_coordinator: DeployFactory,
    clients: list[str],
    relayer: str,
    outsider: str,
) -> None:
    """Once segment 0 is closed, ``finalize`` is refused (WrongPhase Closing) however late, the
    same segment cannot be closed twice, and anyone finishes the close from the public words."""
    # Prepare
    model = random_model(55)
    contract = deploy_coordinator(initial=model, words_per_segment=SEGMENTED)
    updates = honest_updates(model, 3, seed=55)
    for client, update in zip(clients[:3], updates, strict=True):
        submit(isolated, contract, client, update)
    first = close_segment(isolated, contract, relayer, updates)
    assert read_round(contract).phase == "Closing"
    # Execute / Assert
    advance_past(isolated, read_round(contract).deadline + WINDOW)
    assert_reverts(
        lambda: finalize(isolated, contract, outsider), "CoordinatorWrongPhase", phase=CLOSING
    )
    assert_reverts(
        lambda: close_segment(isolated, contract, outsider, updates),
        "CoordinatorWrongSegment",
        expected=1,
        given=0,
    )
    assert model_of(contract).tolist() == model.tolist()  # the new model is not global yet
    second = close_segment(isolated, contract, outsider, updates, segment=1)
    # Assert
    assert events(contract, "SegmentClosed", first) == [segment_closed(relayer, 0, 3, 0)]
    assert events(contract, "SegmentClosed", second) == [segment_closed(outsider, 1, 3, 0)]
    assert model_of(contract).tolist() == integer_average(updates).tolist()
    assert read_round(contract).number == 2


@pytest.mark.parametrize("allowlist", [True, False], ids=["allowlist-on", "allowlist-off"])
def test_sybils_relaying_withheld_updates_are_refused_by_the_allowlist_and_otherwise_stall_nothing(
    isolated: Chain,
    clients: list[str],
    owner: str,
    relayer: str,
    outsider: str,
    allowlist: bool,
) -> None:
    """Sybil accounts sign updates whose words their relayer keeps, to take the round's places
    and hold it. With the allowlist on (the honest clients allowed before round 1) every Sybil
    update is refused (NotEligible) and the honest clients fill and close the round. With it off
    the Sybils do take the places (an honest client is refused RoundFull), but they earn nothing
    and hold the round only until the close window ends: a close then leaves them out, the model
    stays as it was, and the next round opens."""
    # Prepare
    model = random_model(56)
    honest = clients[:3]
    contract = deploy_with_allowlist(isolated, owner, model, allowed=honest if allowlist else None)
    sybils = clients[7:10]
    junk = honest_updates(model, 3, seed=56)
    updates = honest_updates(model, 3, seed=57)
    batch = [signed(isolated, contract, s, j) for s, j in zip(sybils, junk, strict=True)]
    # Execute / Assert
    if allowlist:
        assert_reverts(
            lambda: relay(isolated, contract, relayer, batch),
            "CoordinatorNotEligible",
            account=sybils[0],
            round=1,
        )
        for client, update in zip(honest, updates, strict=True):
            submit(isolated, contract, client, update)
        [receipt] = close(isolated, contract, outsider, updates)
        assert model_of(contract).tolist() == integer_average(updates).tolist()
        assert events(contract, "SegmentClosed", receipt) == [segment_closed(outsider, 0, 3, 0)]
    else:
        relay(isolated, contract, relayer, batch)
        assert_reverts(
            lambda: submit(isolated, contract, honest[0], updates[0]),
            "CoordinatorRoundFull",
            round=1,
            entries=3,
        )
        window_ends = read_round_details(contract).window_ends
        assert_reverts(
            lambda: close(isolated, contract, outsider, [], omitted=[0, 1, 2]),
            "CoordinatorCannotOmit",
            index=0,
            allowedFrom=window_ends,
        )
        advance_past(isolated, window_ends)
        [receipt] = close(isolated, contract, outsider, [], omitted=[0, 1, 2])
        assert events(contract, "SubmissionAccepted", receipt) == [dropped(s) for s in sybils]
        assert events(contract, "SegmentClosed", receipt) == [segment_closed(outsider, 0, 0, 0)]
        assert model_of(contract).tolist() == model.tolist()
    # Assert
    state = read_round(contract)
    assert (state.number, state.phase, state.submissions) == (2, "Open", 0)
    assert [credit_of(contract, s) for s in sybils] == [0, 0, 0]
    assert credit_of(contract, relayer) == 0


def test_owner_changing_eligibility_mid_round_changes_nothing_before_the_next_round(
    isolated: Chain, clients: list[str], owner: str, relayer: str, outsider: str
) -> None:
    """The owner cannot censor or favour anyone in the open round: an account it disallows
    mid-round still submits (and is paid) in that round, one it allows mid-round is refused
    until the next one (AllowlistUpdated says ``fromRound`` 2), and nobody else may touch the
    allowlist (Unauthorized). From round 2 the change holds."""
    # Prepare: clients 0-2 allowed before round 1
    model = random_model(57)
    allowed, newcomer = clients[:3], clients[3]
    contract = deploy_with_allowlist(isolated, owner, model, allowed=allowed)
    updates = honest_updates(model, 4, seed=57)
    first = accepted(contract, submit(isolated, contract, allowed[0], updates[0])[-1])
    # Execute: mid-round, the owner disallows client 1 and allows the newcomer
    removed = send(isolated, contract.functions.setAllowed([allowed[1]], False), owner)
    added = send(isolated, contract.functions.setAllowed([newcomer], True), owner)
    # Assert: in force from round 2 only
    assert events(contract, "AllowlistUpdated", removed) == [
        {"account": allowed[1], "allowed": False, "fromRound": 2}
    ]
    assert events(contract, "AllowlistUpdated", added) == [
        {"account": newcomer, "allowed": True, "fromRound": 2}
    ]
    assert_reverts(
        lambda: send(isolated, contract.functions.setAllowed([outsider], True), outsider),
        "CoordinatorUnauthorized",
        caller=outsider,
    )
    assert_reverts(
        lambda: submit(isolated, contract, newcomer, updates[3]),
        "CoordinatorNotEligible",
        account=newcomer,
        round=1,
    )
    kept = accepted(contract, submit(isolated, contract, allowed[1], updates[1])[-1])
    accepted(contract, submit(isolated, contract, allowed[2], updates[2])[-1])
    assert [first, kept] == [
        settlement(model, updates[0], allowed[0]),
        settlement(model, updates[1], allowed[1]),
    ]
    assert credit_of(contract, allowed[1]) == kept["reward"] > 0
    close(isolated, contract, relayer, updates[:3])
    # Assert: round 2 refuses the disallowed account and takes the newcomer
    model1 = model_of(contract)
    fresh = honest_updates(model1, 2, seed=58)
    assert_reverts(
        lambda: submit(isolated, contract, allowed[1], fresh[0], round_number=2),
        "CoordinatorNotEligible",
        account=allowed[1],
        round=2,
    )
    joined = accepted(contract, submit(isolated, contract, newcomer, fresh[1], round_number=2)[-1])
    assert joined == settlement(model1, fresh[1], newcomer, round_number=2)


def test_relayed_update_with_out_of_range_words_is_left_out_after_the_close_window(
    isolated: Chain,
    deploy_coordinator: DeployFactory,
    clients: list[str],
    relayer: str,
    outsider: str,
) -> None:
    """A client signs words beyond maxAbsWeight (the relayer sees only their hashes): a close
    that carries them reverts on the range check, so the round waits for the close window, then
    leaves the update out, unpaid."""
    # Prepare
    model = random_model(58)
    contract = deploy_coordinator(initial=model)
    honest = honest_updates(model, 2, seed=58)
    for client, update in zip(clients[:2], honest, strict=True):
        submit(isolated, contract, client, update)
    bad = model.copy()
    bad[5] = MAX_ABS + 1
    relay(isolated, contract, relayer, [signed(isolated, contract, clients[2], bad)])
    # Execute / Assert
    assert_reverts(
        lambda: close(isolated, contract, outsider, [*honest, bad]),
        "CoordinatorWeightOutOfRange",
        index=5,
        value=MAX_ABS + 1,
        maxAbs=MAX_ABS,
    )
    advance_past(isolated, read_round_details(contract).window_ends)
    [receipt] = close(isolated, contract, outsider, honest, omitted=[2])
    # Assert
    assert events(contract, "SubmissionAccepted", receipt) == [dropped(clients[2])]
    assert model_of(contract).tolist() == integer_average(honest).tolist()
    assert credit_of(contract, clients[2]) == 0


# ---------------------------------------------------------------- free-riders


def test_free_rider_resubmitting_global_model_earns_nothing(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str], relayer: str
) -> None:
    """Two rounds: the free rider reads the global model from the chain and sends it back. The
    free-rider guard (minRewardDistance) pays it nothing; it is still averaged (a valid model)."""
    # Prepare
    guard = 100
    contract = deploy_coordinator(initial=random_model(61), min_reward_distance=guard)
    free_rider, honest = clients[0], clients[1:3]
    for round_number in (1, 2):
        model = model_of(contract)
        updates = honest_updates(model, 2, seed=60 + round_number)
        # Execute
        copy = [int(w) for w in contract.functions.globalModel().call()]
        receipt = send(isolated, contract.functions.submit(round_number, 1, 0, copy), free_rider)
        paid = [
            accepted(contract, submit(isolated, contract, c, u, round_number=round_number)[-1])
            for c, u in zip(honest, updates, strict=True)
        ]
        close(isolated, contract, relayer, [model, *updates], round_number=round_number)
        # Assert
        expected = settlement(
            model, model, free_rider, round_number=round_number, min_reward_distance=guard
        )
        assert accepted(contract, receipt) == expected
        assert (
            expected["distance"],
            expected["tier"],
            expected["reward"],
            expected["counted"],
        ) == (
            0,
            NO_TIER,
            0,
            True,
        )
        assert paid == [
            settlement(model, u, c, round_number=round_number, min_reward_distance=guard)
            for c, u in zip(honest, updates, strict=True)
        ]
        assert all(e["reward"] > 0 for e in paid)
        assert model_of(contract).tolist() == integer_average([model, *updates]).tolist()
    assert credit_of(contract, free_rider) == 0


def test_free_rider_at_exactly_the_guard_distance_is_paid_nothing_under_the_aggregate_reference(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str], relayer: str
) -> None:
    """A free rider adds noise of L1 exactly ``minRewardDistance``: on submit it passes the guard
    (counted, not a free rider). With the reward reference Aggregate the close pays every update
    by its distance from the round's new model, and the guard applies to that distance too: the
    noise lies closer to the new model than the guard and earns nothing, while the two honest
    clients, who trained in opposite directions, are paid."""
    # Prepare
    guard = 400
    model = random_model(63)
    contract = deploy_coordinator(
        initial=model, min_reward_distance=guard, reward_reference="aggregate"
    )
    rider, *honest = clients[:3]
    noise = np.full(SMALL_WEIGHTS, guard // SMALL_WEIGHTS, dtype=np.int64)
    free = model + noise
    pattern = np.where(np.arange(SMALL_WEIGHTS) % 2 == 0, 3, -3) * noise
    vectors = [free, model + pattern, model - pattern]
    # Execute
    submitted = [
        accepted(contract, submit(isolated, contract, c, v)[-1])
        for c, v in zip(clients[:3], vectors, strict=True)
    ]
    receipts = close(isolated, contract, relayer, vectors)
    # Assert: on submit, the rider is exactly on the guard, counted and (Aggregate) unpaid
    assert submitted[0]["distance"] == distance(model, free, "l1") == guard
    assert [(e["counted"], e["tier"], e["reward"]) for e in submitted] == [(True, NO_TIER, 0)] * 3
    new = model_of(contract)
    assert new.tolist() == integer_average(vectors).tolist()
    gaps = [distance(new, vector, "l1") for vector in vectors]
    decisions = [reward_tier(gap, THRESHOLDS, REWARDS, min_reward_distance=guard) for gap in gaps]
    assert events(contract, "RewardSettled", receipts[-1]) == [
        {"round": 1, "client": c, "distance": g, "tier": d.tier, "reward": d.amount_wei}
        for c, g, d in zip(clients[:3], gaps, decisions, strict=True)
    ]
    assert gaps[0] < guard
    assert (decisions[0].tier, decisions[0].amount_wei) == (NO_TIER, 0)
    assert all(d.amount_wei > 0 for d in decisions[1:])
    assert credit_of(contract, rider) == 0
    assert [credit_of(contract, c) for c in honest] == [d.amount_wei for d in decisions[1:]]


def test_stale_resubmitter_of_the_previous_model_is_unpaid_and_left_out_by_the_direction_guard(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str], relayer: str
) -> None:
    """Round 1 sets a step. In round 2 a client resends the round-1 starting model instead of
    training: far enough from the current model to be paid by distance alone, but it moves
    every weight back against the last step (along 0), so the direction guard leaves it out of
    the average, unpaid."""
    # Prepare
    model = random_model(97)
    contract = deploy_coordinator(initial=model, min_alignment_bps=GUARD)
    drift = np.random.default_rng(97).choice([-20, 20], SMALL_WEIGHTS)
    first = guarded_round(
        isolated,
        contract,
        "direct",
        clients[:3],
        relayer,
        drifting_updates(model, drift, 3, seed=98),
        round_number=1,
        step=None,
        min_alignment=GUARD,
    )
    model1 = model_of(contract)
    step = step_signs(model, model1)
    fresh = drifting_updates(model1, drift, 2, seed=99)
    # Execute: client 0 resends the stale model beside two fresh updates
    second = guarded_round(
        isolated,
        contract,
        "direct",
        clients[:3],
        relayer,
        [model, *fresh],
        round_number=2,
        step=step,
        min_alignment=GUARD,
    )
    # Assert
    stale = second[0]
    gap = distance(model1, model, "l1")
    paid_by_distance = reward_tier(gap, THRESHOLDS, REWARDS).amount_wei
    assert paid_by_distance > 0
    assert (stale["distance"], stale["along"], stale["against"]) == (gap, 0, gap)
    assert (stale["counted"], stale["tier"], stale["reward"]) == (False, NO_TIER, 0)
    assert all(e["counted"] and e["reward"] > 0 for e in second[1:])
    assert model_of(contract).tolist() == integer_average(fresh).tolist()
    assert credit_of(contract, clients[0]) == first[0]["reward"]


# ---------------------------------------------------------------- sample counts and Sybils


def test_sample_count_inflater_holds_no_more_than_the_share_cap_of_the_weight(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str], relayer: str
) -> None:
    """Sample-weighted averaging: a client declares the largest sample count allowed to pull the
    model to its update, beside two honest clients declaring a few. With ``maxShareBps`` its
    weight is cut to the cap (the reference's water-filling), it holds no more than that share,
    and the new model lies farther from its update than the uncapped average would."""
    # Prepare
    share_bps = 5_000
    model = random_model(121)
    contract = deploy_coordinator(
        initial=model, aggregation="sample_weighted", max_share_bps=share_bps
    )
    inflated = np.clip(model + 300, -MAX_ABS, MAX_ABS)
    vectors = [inflated, *honest_updates(model, 2, seed=121)]
    counts = [DEFAULTS.max_sample_count, 10, 12]
    # Execute
    for client, vector, count in zip(clients[:3], vectors, counts, strict=True):
        submit(isolated, contract, client, vector, sample_count=count)
    close(isolated, contract, relayer, vectors)
    # Assert
    capped = capped_weights(counts, share_bps)
    assert capped[0] < counts[0]
    assert capped[1:] == counts[1:]
    assert capped[0] * 10_000 <= share_bps * sum(capped)
    new = model_of(contract)
    assert new.tolist() == integer_average(vectors, capped).tolist()
    uncapped = integer_average(vectors, counts)
    assert distance(new, inflated, "l1") > distance(uncapped, inflated, "l1")


def test_colluding_sybils_walk_the_model_no_further_than_the_step_and_drift_bounds(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str], relayer: str
) -> None:
    """Three Sybils push the model the same way every round beside two honest clients (the
    distance rules cannot tell them from training). ``maxStep`` and ``maxDrift`` over windows of
    two rounds hold their walk: each round's model is the reference's clamped average, no weight
    moves more than ``maxStep`` a round nor more than ``maxDrift`` from the window's checkpoint
    (the initial model for rounds 1-2, round 2's model for rounds 3-4)."""
    # Prepare
    max_step, max_drift, window = 8, 12, 2
    model = random_model(131)
    contract = deploy_coordinator(
        initial=model,
        target_submissions=5,
        min_submissions=5,
        max_step=max_step,
        max_drift=max_drift,
        drift_window=window,
    )
    direction = np.random.default_rng(131).choice([-1, 1], SMALL_WEIGHTS)
    checkpoint = model
    for round_number in (1, 2, 3):
        current = model_of(contract)
        push = np.clip(current + 30 * direction, -MAX_ABS, MAX_ABS)
        vectors = [push, push, push, *honest_updates(current, 2, seed=130 + round_number)]
        # Execute
        for client, vector in zip(clients[:5], vectors, strict=True):
            submit(isolated, contract, client, vector, round_number=round_number)
        [receipt] = close(isolated, contract, relayer, vectors, round_number=round_number)
        # Assert
        expected, clamped = clamp_step(
            integer_average(vectors), current, checkpoint, max_step=max_step, max_drift=max_drift
        )
        new = model_of(contract)
        assert new.tolist() == expected.tolist()
        [closed] = events(contract, "SegmentClosed", receipt)
        assert closed["clamped"] == clamped > 0
        assert int(np.abs(new - current).max()) <= max_step
        assert int(np.abs(new - checkpoint).max()) <= max_drift
        if round_number % window == 0:
            checkpoint = new
    assert int(np.abs(model_of(contract) - model).max()) <= 2 * max_drift


# ---------------------------------------------------------------- copycats


def test_forged_replayed_and_high_s_relay_signatures_are_refused(
    isolated: Chain,
    deploy_coordinator: DeployFactory,
    client_a: str,
    client_b: str,
    outsider: str,
    relayer: str,
) -> None:
    """The signature binds the client, the round and the words: one made by another key for the
    client (forged), or put under another client address, or into another round recovers to
    someone else (InvalidSignature); relayed twice it is a replay (UpdateReplayed); its
    malleable twin with the high ``s`` is refused (MalleableSignature). Only the genuine update
    is registered and paid, once."""
    # Prepare
    model = random_model(73)
    contract = deploy_coordinator(initial=model, target_submissions=2)
    update, other = honest_updates(model, 2, seed=73)
    original = signed(isolated, contract, client_a, update)
    stolen = replace(original, client=outsider)
    forged = replace(signed(isolated, contract, outsider, update), client=client_a)
    twin = replace(original, signature=malleable_twin(original.signature))
    # Execute / Assert
    assert_reverts(
        lambda: relay(isolated, contract, relayer, [forged]),
        "CoordinatorInvalidSignature",
        client=client_a,
    )
    assert_reverts(
        lambda: relay(isolated, contract, relayer, [stolen]),
        "CoordinatorInvalidSignature",
        client=outsider,
    )
    assert_reverts(
        lambda: relay(isolated, contract, relayer, [twin]),
        "CoordinatorMalleableSignature",
        client=client_a,
    )
    assert_reverts(
        lambda: relay(isolated, contract, relayer, [original, original]),
        "CoordinatorUpdateReplayed",
        client=client_a,
        round=1,
    )
    assert read_round(contract).submissions == 0  # the whole batch reverted
    relay(isolated, contract, relayer, [original])
    assert_reverts(
        lambda: relay(isolated, contract, relayer, [original]),
        "CoordinatorUpdateReplayed",
        client=client_a,
        round=1,
    )
    submit(isolated, contract, client_b, other)
    close(isolated, contract, relayer, [update, other])
    assert read_round(contract).number == 2
    assert_reverts(
        lambda: relay(isolated, contract, relayer, [original], round_number=2),
        "CoordinatorInvalidSignature",
        client=client_a,
    )
    # Assert: client_a was paid once, in round 1
    assert credit_of(contract, client_a) == settlement(model, update, client_a)["reward"]
    assert credit_of(contract, outsider) == 0


@pytest.fixture
def commit_reveal(deploy_coordinator: DeployFactory) -> Contract:
    """A commit-reveal coordinator (round 1 taking commitments) on a random initial model."""
    return deploy_coordinator(
        initial=random_model(74),
        mode="commit_reveal",
        reveal_duration=REVEAL_DURATION,
        commit_bond=BOND,
        min_reward_distance=100,
    )


def test_copycat_cannot_commit_once_reveals_open_nor_reveal_without_a_commitment(
    isolated: Chain, commit_reveal: Contract, clients: list[str], outsider: str
) -> None:
    """Commits close when the round is full, before any reveal: the copycat who sees the first
    reveal can neither commit any more nor reveal the copied words without a commitment."""
    # Prepare
    contract = commit_reveal
    updates = honest_updates(model_of(contract), 3, seed=75)
    salts = [bytes([0x75 + i]) * 32 for i in range(3)]
    for client, update, salt in zip(clients[:3], updates, salts, strict=True):
        commit_to(isolated, contract, client, pack(update), salt)
    first = reveal(isolated, contract, clients[0], pack(updates[0]), salts[0])
    public = calldata_of(isolated, contract, first)
    assert public["words"] == pack(updates[0])
    # Execute / Assert
    assert_reverts(
        lambda: commit_to(isolated, contract, outsider, public["words"], public["salt"]),
        "CoordinatorWrongPhase",
        phase=REVEAL,
    )
    replay = contract.functions.reveal(1, 1, 0, public["words"], public["salt"])
    assert_reverts(
        lambda: send(isolated, replay, outsider),
        "CoordinatorNoCommitment",
        round=1,
        account=outsider,
    )
    assert credit_of(contract, outsider) == 0
    assert contract.functions.hasSubmitted(outsider, 1).call() is False


@pytest.mark.parametrize("copied_commitment", [False, True], ids=["own-guess", "copied-hash"])
def test_copycat_commitment_never_matches_the_copied_update(
    isolated: Chain,
    commit_reveal: Contract,
    client_a: str,
    client_b: str,
    outsider: str,
    relayer: str,
    copied_commitment: bool,
) -> None:
    """The copycat must commit before it can see the update: to a guess, or by copying the
    victim's commitment from its transaction. Its reveal of the victim's words mismatches either
    way (the commitment binds the revealer's address); the round closes on the honest reveals
    after the reveal deadline and the copycat's bond goes to the pool."""
    # Prepare
    contract = commit_reveal
    model = model_of(contract)
    update_a, update_b = honest_updates(model, 2, seed=76)
    salt_a, salt_b, salt_c = b"\xa1" * 32, b"\xb2" * 32, b"\xc3" * 32
    victim_commit = commit_to(isolated, contract, client_a, pack(update_a), salt_a)
    if copied_commitment:
        digest = calldata_of(isolated, contract, victim_commit)["commitment"]
        send(isolated, contract.functions.commit(1, digest), outsider, value=BOND)
    else:
        commit_to(isolated, contract, outsider, pack(model), salt_c)  # a guess: the model itself
    commit_to(isolated, contract, client_b, pack(update_b), salt_b)
    victim_reveal = reveal(isolated, contract, client_a, pack(update_a), salt_a)
    public = calldata_of(isolated, contract, victim_reveal)
    # Execute / Assert: the copied words, with the copycat's own salt and with the victim's
    for salt in (salt_c, public["salt"]):
        assert_reverts(
            partial(reveal, isolated, contract, outsider, public["words"], salt),
            "CoordinatorRevealMismatch",
            round=1,
            account=outsider,
        )
    reveal(isolated, contract, client_b, pack(update_b), salt_b)
    advance_past(isolated, read_round(contract).deadline)
    receipts = close(isolated, contract, relayer, [update_a, update_b])
    # Assert
    [closed] = events(contract, "RoundClosed", receipts[-1])
    assert (closed["round"], closed["submissions"]) == (1, 2)
    assert events(contract, "BondsForfeited", receipts[-1]) == [{"round": 1, "amount": BOND}]
    assert model_of(contract).tolist() == integer_average([update_a, update_b]).tolist()
    assert credit_of(contract, outsider) == 0
    assert contract.functions.hasSubmitted(outsider, 1).call() is False


def test_copycat_replaying_the_previous_rounds_reveal_transaction_is_refused(
    isolated: Chain, commit_reveal: Contract, clients: list[str], outsider: str, relayer: str
) -> None:
    """The round number and the commitment pin a reveal: the round-1 reveal transaction, sent
    again by a copycat in round 2, is refused in the commit phase (WrongPhase) and in the reveal
    phase (WrongRound), and under the copycat's own address it matches no commitment."""
    # Prepare: round 1 of three honest clients closes; round 2 fills with fresh commitments
    contract = commit_reveal
    model = model_of(contract)
    updates = honest_updates(model, 3, seed=77)
    salts = [bytes([0x60 + i]) * 32 for i in range(3)]
    for client, update, salt in zip(clients[:3], updates, salts, strict=True):
        commit_to(isolated, contract, client, pack(update), salt)
    receipts = [
        reveal(isolated, contract, client, pack(update), salt)
        for client, update, salt in zip(clients[:3], updates, salts, strict=True)
    ]
    close(isolated, contract, relayer, updates)
    old = calldata_of(isolated, contract, receipts[0])
    replay = contract.functions.reveal(
        old["round"], old["sampleCount"], 0, old["words"], old["salt"]
    )
    # Execute / Assert: the old transaction in round 2's commit phase
    assert_reverts(lambda: send(isolated, replay, outsider), "CoordinatorWrongPhase", phase=COMMIT)
    model1 = model_of(contract)
    fresh = honest_updates(model1, 3, seed=78)
    for client, update, salt in zip(clients[3:6], fresh, salts, strict=True):
        commit_to(isolated, contract, client, pack(update), salt, round_number=2)
    assert read_round(contract).phase == "Reveal"
    # ... and in its reveal phase, as it was and re-addressed to round 2
    assert_reverts(
        lambda: send(isolated, replay, outsider), "CoordinatorWrongRound", given=1, current=2
    )
    moved = contract.functions.reveal(2, old["sampleCount"], 0, old["words"], old["salt"])
    assert_reverts(
        lambda: send(isolated, moved, outsider),
        "CoordinatorNoCommitment",
        round=2,
        account=outsider,
    )
    # Assert
    assert credit_of(contract, outsider) == 0
    assert contract.functions.hasSubmitted(outsider, 2).call() is False


# ---------------------------------------------------------------- poisoners

BOUND = 2_000  # maxCountedDistance: above every honest update's L1 (at most 40 x 30 = 1,200)


def deliver(
    chain: Chain,
    contract: Contract,
    path: str,
    sender: str,
    relayer: str,
    update: np.ndarray,
    *,
    round_number: int = 1,
) -> TxReceipt:
    """``sender``'s update directly, or signed and registered by ``relayer``."""
    if path == "direct":
        return submit(chain, contract, sender, update, round_number=round_number)[-1]
    update_signed = signed(chain, contract, sender, update, round_number=round_number)
    return relay(chain, contract, relayer, [update_signed], round_number=round_number)


@pytest.mark.parametrize(
    ("k", "path"),
    [(10, "direct"), (-10, "relayed")],
    ids=["scaled-x10-direct", "sign-flipped-x10-relayed"],
)
def test_poisoner_beyond_the_bound_is_unpaid_and_left_out_of_the_average(
    isolated: Chain,
    deploy_coordinator: DeployFactory,
    clients: list[str],
    relayer: str,
    path: str,
    k: int,
) -> None:
    """Two of five clients send ``global + k * (trained - global)``. With maxCountedDistance they
    are credited nothing and left out (a direct one at once, a relayed one by the close that
    measures it), and the new model is the average of the three honest updates."""
    # Prepare
    model = random_model(81)
    contract = deploy_coordinator(
        initial=model, target_submissions=5, min_submissions=3, max_counted_distance=BOUND
    )
    trained = honest_updates(model, 5, seed=81)
    honest, attackers = clients[:3], clients[3:5]
    poisons = [scaled(model, t, k) for t in trained[3:]]
    assert all(distance(model, p, "l1") > BOUND for p in poisons)
    # Execute
    paid = [
        accepted(contract, submit(isolated, contract, c, u)[-1])
        for c, u in zip(honest, trained[:3], strict=True)
    ]
    receipts = [
        deliver(isolated, contract, path, a, relayer, p)
        for a, p in zip(attackers, poisons, strict=True)
    ]
    advance_past(isolated, read_round(contract).deadline)
    relayed = path == "relayed"
    registered = [*trained[:3], *(poisons if relayed else [])]
    [closing] = close(isolated, contract, relayer, registered)
    # Assert
    expected = [
        settlement(model, p, a, relayed=relayed, max_counted_distance=BOUND)
        for a, p in zip(attackers, poisons, strict=True)
    ]
    assert all((e["tier"], e["reward"], e["counted"]) == (NO_TIER, 0, False) for e in expected)
    settled = (
        events(contract, "SubmissionAccepted", closing)
        if relayed
        else [accepted(contract, r) for r in receipts]
    )
    assert settled == expected
    assert paid == [
        settlement(model, u, c, max_counted_distance=BOUND)
        for c, u in zip(honest, trained[:3], strict=True)
    ]
    assert all(e["counted"] and e["reward"] > 0 for e in paid)
    assert events(contract, "SegmentClosed", closing) == [segment_closed(relayer, 0, 3, 0)]
    assert [credit_of(contract, a) for a in attackers] == [0, 0]
    assert model_of(contract).tolist() == integer_average(trained[:3]).tolist()


def test_poisoner_without_the_distance_bound_moves_the_model_no_more_than_the_step_bound(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str], relayer: str
) -> None:
    """A scaled (x10) and a scaled sign-flipped (x-10) update with maxCountedDistance off but
    maxStep on: the poisoned updates are counted, yet the close holds every weight within maxStep of the previous model
    (``SegmentClosed.clamped`` counts the weights held back), where the plain average would
    have moved it far beyond."""
    # Prepare
    max_step = 10
    model = random_model(81)
    contract = deploy_coordinator(
        initial=model, target_submissions=5, min_submissions=5, max_step=max_step
    )
    trained = honest_updates(model, 5, seed=81)
    vectors = trained[:3] + [
        scaled(model, t, k) for t, k in zip(trained[3:], (10, -10), strict=True)
    ]
    # Execute
    for client, vector in zip(clients[:5], vectors, strict=True):
        submit(isolated, contract, client, vector)
    [receipt] = close(isolated, contract, relayer, vectors)
    # Assert
    averaged = integer_average(vectors)
    expected, clamped = clamp_step(averaged, model, None, max_step=max_step, max_drift=0)
    new = model_of(contract)
    assert new.tolist() == expected.tolist()
    assert int(np.abs(new - model).max()) <= max_step < int(np.abs(averaged - model).max())
    [closed] = events(contract, "SegmentClosed", receipt)
    assert closed["clamped"] == clamped > 0


def test_relayed_poisoner_crossing_the_bound_in_its_last_segment_is_unpaid_and_left_out_from_then_on(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str], relayer: str
) -> None:
    """The limit of measuring a relayed update in its closes, segment by segment: its running
    distance passes the bound in segment 0 and crosses it in segment 1. It is then unpaid and
    left out of segment 1, but its segment 0 was already averaged into the new model."""
    # Prepare
    model = random_model(82)
    contract = deploy_coordinator(
        initial=model, words_per_segment=SEGMENTED, max_counted_distance=BOUND
    )
    honest = honest_updates(model, 2, seed=82)
    poison = model.copy()
    poison[SEGMENT_0] = honest_updates(model, 1, seed=83)[0][SEGMENT_0]
    poison[SEGMENT_1] = np.clip(model[SEGMENT_1] + 1_000, -MAX_ABS, MAX_ABS)
    head = distance(model[SEGMENT_0], poison[SEGMENT_0], "l1")
    assert head <= BOUND < distance(model, poison, "l1")
    for client, update in zip(clients[:2], honest, strict=True):
        submit(isolated, contract, client, update)
    relay(isolated, contract, relayer, [signed(isolated, contract, clients[2], poison)])
    # Execute
    first, second = close(isolated, contract, relayer, [*honest, poison])
    # Assert
    assert events(contract, "SubmissionAccepted", first) == []
    assert events(contract, "SegmentClosed", first) == [segment_closed(relayer, 0, 3, 1)]
    assert events(contract, "SubmissionAccepted", second) == [
        settlement(model, poison, clients[2], relayed=True, max_counted_distance=BOUND)
    ]
    assert events(contract, "SegmentClosed", second) == [segment_closed(relayer, 1, 2, 0)]
    new_model = model_of(contract)
    assert (
        new_model[SEGMENT_0].tolist()
        == integer_average([v[SEGMENT_0] for v in [*honest, poison]]).tolist()
    )
    assert new_model[SEGMENT_1].tolist() == integer_average([v[SEGMENT_1] for v in honest]).tolist()
    assert credit_of(contract, clients[2]) == 0


# ---------------------------------------------------------------- the direction guard

GUARD = 0  # minAlignment in basis points: no more movement against the last step than along it


def drifting_updates(
    model: np.ndarray, drift: np.ndarray, count: int, *, seed: int
) -> list[np.ndarray]:
    """``count`` honest updates that follow a common descent direction ``drift`` (as training on
    similar data does from round to round), each with its own noise."""
    rng = np.random.default_rng(seed)
    return [model + drift + rng.integers(-10, 11, size=SMALL_WEIGHTS) for _ in range(count)]


def guarded_round(
    chain: Chain,
    contract: Contract,
    path: str,
    clients: Sequence[str],
    relayer: str,
    vectors: Sequence[np.ndarray],
    *,
    round_number: int,
    step: np.ndarray | None,
    min_alignment: int,
) -> list[dict[str, Any]]:
    """Play one guarded round of ``vectors`` (``path``: all direct, or all relayed), closed at the
    deadline; check every settlement and the new model against the reference and return the
    settlements."""
    model = model_of(contract)
    relayed = path == "relayed"
    expected = [
        settlement(
            model, v, c, round_number=round_number, relayed=relayed, guard=(step, min_alignment)
        )
        for c, v in zip(clients, vectors, strict=True)
    ]
    receipts = [
        deliver(chain, contract, path, c, relayer, v, round_number=round_number)
        for c, v in zip(clients, vectors, strict=True)
    ]
    if not relayed:
        assert [accepted(contract, r) for r in receipts] == expected
    counted = [v for v, e in zip(vectors, expected, strict=True) if e["counted"]]
    advance_past(chain, read_round(contract).deadline)
    closing = close(
        chain, contract, relayer, list(vectors) if relayed else counted, round_number=round_number
    )
    if relayed:
        assert [e for r in closing for e in events(contract, "SubmissionAccepted", r)] == expected
    assert model_of(contract).tolist() == integer_average(counted).tolist()
    return expected


def test_relayed_sign_flipper_is_unpaid_and_left_out_by_the_direction_guard_from_round_two(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str], relayer: str
) -> None:
    """Round 1 has no step yet: five honest updates set one. In round 2, two clients have a
    relayer carry the sign-flipped update ``global - (trained - global)``, of honest size, which
    the distance bound cannot see; it moves the model against the last step, so with
    minAlignment the close that measures it leaves it out, unpaid, and the new model is the
    average of the honest updates. (The direct path is refused the same way on submit: see the
    stale resubmitter.)"""
    # Prepare
    model = random_model(91)
    contract = deploy_coordinator(
        initial=model, target_submissions=5, min_submissions=3, min_alignment_bps=GUARD
    )
    drift = np.random.default_rng(91).choice([-20, 20], SMALL_WEIGHTS)
    first = drifting_updates(model, drift, 5, seed=92)
    expected1 = guarded_round(
        isolated,
        contract,
        "direct",
        clients[:5],
        relayer,
        first,
        round_number=1,
        step=None,
        min_alignment=GUARD,
    )
    model1 = model_of(contract)
    step = step_signs(model, model1)
    trained = drifting_updates(model1, drift, 5, seed=93)
    vectors = trained[:3] + [scaled(model1, t, -1) for t in trained[3:]]
    # Execute
    expected2 = guarded_round(
        isolated,
        contract,
        "relayed",
        clients[:5],
        relayer,
        vectors,
        round_number=2,
        step=step,
        min_alignment=GUARD,
    )
    # Assert
    assert all(e["counted"] for e in expected1)
    assert [e["counted"] for e in expected2] == [True, True, True, False, False]
    assert all(e["reward"] == 0 and e["tier"] == NO_TIER for e in expected2[3:])
    assert model_of(contract).tolist() == integer_average(vectors[:3]).tolist()
    rewards = [e1["reward"] + e2["reward"] for e1, e2 in zip(expected1, expected2, strict=True)]
    assert [credit_of(contract, c) for c in clients[:5]] == rewards


def test_stricter_guard_leaves_out_honest_updates_that_barely_follow_the_step(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str], relayer: str
) -> None:
    """minAlignment is a threshold on ``(along - against) / (along + against)``: an update
    exactly at it passes, one a quantum below does not (both judged by the reference)."""
    # Prepare: round 1 moves every weight up by 10
    strict_guard = 5_000
    model = random_model(96, bound=100)
    contract = deploy_coordinator(
        initial=model, target_submissions=2, min_submissions=1, min_alignment_bps=strict_guard
    )
    guarded_round(
        isolated,
        contract,
        "direct",
        clients[:2],
        relayer,
        [model + 10, model + 10],
        round_number=1,
        step=None,
        min_alignment=strict_guard,
    )
    model1 = model_of(contract)
    assert model1.tolist() == (model + 10).tolist()
    step = step_signs(model, model1)
    at = model1.copy()
    at[:30] += 1
    at[30:] -= 1  # alignment (30 - 10) / 40 = 0.5: at the threshold
    below = at.copy()
    below[29] -= 2  # (29 - 11) / 40 = 0.45
    # Execute
    passing = accepted(contract, submit(isolated, contract, clients[0], at, round_number=2)[-1])
    failing = accepted(contract, submit(isolated, contract, clients[1], below, round_number=2)[-1])
    # Assert
    guard = (step, strict_guard)
    assert passing == settlement(model1, at, clients[0], round_number=2, guard=guard)
    assert failing == settlement(model1, below, clients[1], round_number=2, guard=guard)
    assert (passing["counted"], failing["counted"]) == (True, False)


# ---------------------------------------------------------------- withdrawers


@pytest.fixture
def rewarded_attacker(
    isolated: Chain,
    compiled: dict[str, CompiledContract],
    coordinator: Contract,
    clients: list[str],
    relayer: str,
    outsider: str,
) -> Callable[[int], tuple[Contract, dict[str, int]]]:
    """``make(mode)``: a ReentrantWithdrawer that took part in round 1 beside two honest clients
    (the round closed), and the credit of each of the three and of the closer."""

    def make(mode: int) -> tuple[Contract, dict[str, int]]:
        attacker = deploy_attacker(isolated, compiled, coordinator, mode, outsider)
        model = model_of(coordinator)
        updates = honest_updates(model, 3, seed=100 + mode)
        send(isolated, attacker.functions.participate(1, 1, pack(updates[0])), outsider)
        for client, update in zip(clients[:2], updates[1:], strict=True):
            submit(isolated, coordinator, client, update)
        close(isolated, coordinator, relayer, updates)
        owed = {
            a: credit_of(coordinator, a) for a in (str(attacker.address), *clients[:2], relayer)
        }
        assert (
            owed[str(attacker.address)]
            == settlement(model, updates[0], str(attacker.address))["reward"]
            > 0
        )
        return attacker, owed

    return make


def test_reentrant_withdrawer_propagating_the_inner_revert_gets_nothing(
    isolated: Chain,
    coordinator: Contract,
    rewarded_attacker: Callable[[int], tuple[Contract, dict[str, int]]],
    clients: list[str],
    outsider: str,
) -> None:
    """Mode Reenter: the re-entered ``withdraw`` finds the credit already zeroed and reverts, the
    payout call fails, and the outer withdraw reverts as a whole (WithdrawalFailed)."""
    # Prepare
    attacker, owed = rewarded_attacker(REENTER)
    address = str(attacker.address)
    held = balance_of(isolated, str(coordinator.address))
    # Execute / Assert: the pre-check decodes the revert; the transaction itself fails on chain
    assert_reverts(
        lambda: send(isolated, attacker.functions.attack(), outsider),
        "CoordinatorWithdrawalFailed",
        account=address,
        amount=owed[address],
    )
    tx_hash = attacker.functions.attack().transact({"from": outsider, "gas": RAW_GAS})
    assert isolated.w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 0
    # Assert
    assert credit_of(coordinator, address) == owed[address]
    assert balance_of(isolated, address) == 0
    assert balance_of(isolated, str(coordinator.address)) == held
    assert int(attacker.functions.reentries().call()) == 0  # rolled back with the rest
    for client in clients[:2]:
        send(isolated, coordinator.functions.withdraw(), client)
    assert int(coordinator.functions.totalWithdrawn().call()) == owed[clients[0]] + owed[clients[1]]
    balance, expected = money_identity(isolated, coordinator)
    assert balance == expected


def test_reentrant_withdrawer_swallowing_the_inner_revert_takes_only_its_own_credit(
    isolated: Chain,
    coordinator: Contract,
    rewarded_attacker: Callable[[int], tuple[Contract, dict[str, int]]],
    clients: list[str],
    relayer: str,
    outsider: str,
) -> None:
    """Mode ReenterSwallow: the re-entered ``withdraw`` reverts NothingToWithdraw (the credit was
    zeroed before the payout), the attacker keeps the outer payout: exactly its credit, once;
    every honest credit is still there to withdraw."""
    # Prepare
    attacker, owed = rewarded_attacker(REENTER_SWALLOW)
    address = str(attacker.address)
    held = balance_of(isolated, str(coordinator.address))
    # Execute
    receipt = send(isolated, attacker.functions.attack(), outsider)
    # Assert
    assert events(coordinator, "CreditWithdrawn", receipt) == [
        {"client": address, "amount": owed[address]}
    ]
    assert (
        balance_of(isolated, address) == int(attacker.functions.received().call()) == owed[address]
    )
    assert int(attacker.functions.reentries().call()) == 1
    assert int(attacker.functions.reentrySuccesses().call()) == 0
    inner = decode_revert(coordinator.abi, bytes(attacker.functions.lastInnerRevert().call()))
    assert (inner.name, revert_args(inner)) == (
        "CoordinatorNothingToWithdraw",
        {"account": address},
    )
    assert balance_of(isolated, str(coordinator.address)) == held - owed[address]
    assert_reverts(
        lambda: send(isolated, attacker.functions.attack(), outsider),
        "CoordinatorNothingToWithdraw",
        account=address,
    )
    for account in (*clients[:2], relayer):
        assert credit_of(coordinator, account) == owed[account]
        send(isolated, coordinator.functions.withdraw(), account)
    assert int(coordinator.functions.totalWithdrawn().call()) == sum(owed.values())
    balance, expected = money_identity(isolated, coordinator)
    assert balance == expected


def test_receiver_rejecting_eth_keeps_its_credit_and_blocks_nobody(
    isolated: Chain,
    coordinator: Contract,
    rewarded_attacker: Callable[[int], tuple[Contract, dict[str, int]]],
    clients: list[str],
    outsider: str,
) -> None:
    """Mode Reject: the payout fails, ``withdraw`` reverts WithdrawalFailed and the credit stays
    (pull payments: nobody else waits on it)."""
    # Prepare
    receiver, owed = rewarded_attacker(REJECT)
    address = str(receiver.address)
    # Execute / Assert
    assert_reverts(
        lambda: send(isolated, receiver.functions.attack(), outsider),
        "CoordinatorWithdrawalFailed",
        account=address,
        amount=owed[address],
    )
    tx_hash = receiver.functions.attack().transact({"from": outsider, "gas": RAW_GAS})
    assert isolated.w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 0
    # Assert
    assert credit_of(coordinator, address) == owed[address]
    assert balance_of(isolated, address) == 0
    receipt = send(isolated, coordinator.functions.withdraw(), clients[0])
    assert events(coordinator, "CreditWithdrawn", receipt) == [
        {"client": clients[0], "amount": owed[clients[0]]}
    ]
    assert int(coordinator.functions.totalWithdrawn().call()) == owed[clients[0]]
    balance, expected = money_identity(isolated, coordinator)
    assert balance == expected


# ---------------------------------------------------------------- replays and slot filling


def test_replaying_a_submission_into_a_later_round_reverts_wrong_round(
    isolated: Chain,
    deploy_coordinator: DeployFactory,
    clients: list[str],
    relayer: str,
    outsider: str,
) -> None:
    """The round number in the call pins a submission to its round: the same arguments, sent
    again by anyone once the round closed, are refused."""
    # Prepare: round 1 fills (target 3) and closes
    model = random_model(111)
    contract = deploy_coordinator(initial=model)
    updates = honest_updates(model, 3, seed=111)
    receipts = [
        submit(isolated, contract, c, u)[-1] for c, u in zip(clients[:3], updates, strict=True)
    ]
    close(isolated, contract, relayer, updates)
    old = calldata_of(isolated, contract, receipts[0])
    replay = contract.functions.submit(
        old["round"], old["sampleCount"], old["firstSegment"], old["words"]
    )
    # Execute / Assert
    for sender in (clients[0], outsider):
        assert_reverts(
            partial(send, isolated, replay, sender), "CoordinatorWrongRound", given=1, current=2
        )
    # Assert
    assert credit_of(contract, outsider) == 0
    assert credit_of(contract, clients[0]) == settlement(model, updates[0], clients[0])["reward"]


def test_one_account_cannot_fill_the_commit_phase_with_zero_commitments(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str]
) -> None:
    """A zero commitment (what "no commitment" reads as) is refused, and an account commits
    once per round, so one account cannot take the commit slots of the honest clients."""
    # Prepare
    model = random_model(112)
    contract = deploy_coordinator(
        initial=model, mode="commit_reveal", reveal_duration=REVEAL_DURATION, commit_bond=BOND
    )
    griefer, honest = clients[0], clients[1:3]
    # Execute / Assert
    zero = contract.functions.commit(1, bytes(32))
    for _ in range(2):
        assert_reverts(
            lambda: send(isolated, zero, griefer, value=BOND), "CoordinatorEmptyCommitment"
        )
    commit_to(isolated, contract, griefer, pack(model), b"\x01" * 32)
    assert_reverts(
        lambda: commit_to(isolated, contract, griefer, pack(model), b"\x02" * 32),
        "CoordinatorAlreadyCommitted",
        round=1,
        account=griefer,
    )
    for client, update in zip(honest, honest_updates(model, 2, seed=112), strict=True):
        commit_to(isolated, contract, client, pack(update), b"\x77" * 32)
    # Assert: the honest clients took the two other slots; the third commitment opened reveals
    state = read_round(contract)
    assert (state.number, state.phase) == (1, "Reveal")
    assert read_round_details(contract).commits == 3
    assert [int(v) for v in contract.functions.bonds().call()] == [3 * BOND, 0]
