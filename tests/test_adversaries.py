"""Adversaries against the reward rule: free-riders, copycats, poisoners, a reentrant withdrawer.

Each test plays one attack of DESIGN-NOTES ("What the reward rule invites") against a coordinator
deployed with the defence that answers it, and checks that the attacker is credited nothing and
that the global model is what the honest clients alone make of it. Where the defence is off, or
cannot see the attack, a test shows the attack paying (named ``..._is_paid...``): that is the
reason the defence exists, or the limit that the README's Threats section states.

The default coordinator (``small_params``): 40 weights, tiers ``(1,000, 10,000, 50,000)`` of L1
distance paying ``(300, 200, 100)`` wei, target 3, minimum 2, rounds of 600 s, a 1e6 wei pool.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from web3.contract import Contract
from web3.types import TxReceipt

from fl_client.aggregation import (
    NO_TIER,
    directional_l1,
    distance,
    integer_average,
    step_signs,
)
from fl_client.chain import Chain, commit_words, read_round, reveal_words, send
from fl_client.codec import pack, unpack
from fl_client.compile import CompiledContract
from fl_client.errors import ContractRevertError
from tests.conftest import SMALL_WEIGHTS, DeployFactory, events, revert_args, submit
from tests.test_contract_rewards import (
    REENTER_SWALLOW,
    accepted,
    assert_solvent,
    balance,
    deploy_attacker,
)

REWARDS = (300, 200, 100)  # small_params' tier rewards, in wei
REVEAL_DURATION = 300  # seconds of the reveal phase in commit-reveal deployments
SEGMENT = 512  # small_params' words per segment: the 3-word vectors travel in one segment


# ---------------------------------------------------------------- helpers


def global_weights(contract: Contract) -> np.ndarray:
    """The global model as signed quantized weights, decoded from the packed words."""
    return unpack([int(w) for w in contract.functions.globalModel().call()], SMALL_WEIGHTS)


def credit(contract: Contract, account: str) -> int:
    """Wei credited to ``account`` and not withdrawn."""
    return int(contract.functions.credit(account).call())


def random_model(seed: int, bound: int = 500) -> np.ndarray:
    """A random in-range quantized model."""
    rng = np.random.default_rng(seed)
    return rng.integers(-bound, bound + 1, size=SMALL_WEIGHTS, dtype=np.int64)


def honest_updates(model: np.ndarray, count: int, *, seed: int, step: int = 30) -> list[np.ndarray]:
    """``count`` honest updates: the model plus a small, nonzero training step per weight."""
    rng = np.random.default_rng(seed)
    updates = []
    for _ in range(count):
        delta = rng.integers(1, step + 1, size=SMALL_WEIGHTS) * rng.choice([-1, 1], SMALL_WEIGHTS)
        updates.append(model + delta)
    return updates


def poisoned(model: np.ndarray, trained: np.ndarray, k: int, max_abs: int = 3000) -> np.ndarray:
    """The update ``global + k * (trained - global)``, clipped to the fixed-point range."""
    clipped: np.ndarray = np.clip(model + k * (trained - model), -max_abs, max_abs)
    return clipped


def calldata_of(contract: Contract, chain: Chain, receipt: TxReceipt) -> dict[str, Any]:
    """The arguments of the call in ``receipt``, decoded from its public transaction."""
    tx = chain.w3.eth.get_transaction(receipt["transactionHash"])
    _, arguments = contract.decode_function_input(tx["input"])
    return dict(arguments)


def commit(
    chain: Chain,
    contract: Contract,
    sender: str,
    values: np.ndarray,
    salt: bytes,
    *,
    round_number: int = 1,
) -> TxReceipt:
    """Commit to the one-segment vector ``values`` with ``salt`` (sample count 1)."""
    return commit_words(
        chain,
        contract,
        sender,
        round_number=round_number,
        sample_count=1,
        words=pack(values),
        words_per_segment=SEGMENT,
        salt=salt,
    )


def reveal(
    chain: Chain,
    contract: Contract,
    sender: str,
    words: list[int],
    salt: bytes,
    *,
    round_number: int = 1,
) -> TxReceipt:
    """Reveal the one-segment vector ``words`` with ``salt`` (sample count 1)."""
    [receipt] = reveal_words(
        chain,
        contract,
        sender,
        round_number=round_number,
        sample_count=1,
        words=words,
        words_per_segment=SEGMENT,
        salt=salt,
    )
    return receipt


def reverted(call: Any) -> ContractRevertError:
    """Run ``call()``, which must revert, and return the decoded error."""
    with pytest.raises(ContractRevertError) as caught:
        call()
    return caught.value


# ---------------------------------------------------------------- free-riders


def test_free_rider_resubmitting_global_model_earns_nothing(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str]
) -> None:
    """Two rounds: the free rider reads the global model from the chain and sends it back."""
    # Prepare
    initial = random_model(1)
    contract = deploy_coordinator(initial=initial, min_reward_distance=100)
    free_rider, honest = clients[0], clients[1:3]
    outcomes = []
    for round_number in (1, 2):
        model = global_weights(contract)
        # Execute
        copy = contract.functions.globalModel().call()
        receipt = send(isolated, contract.functions.submit(round_number, 1, 0, copy), free_rider)
        outcomes.append(accepted(contract, receipt))
        honest_events = [
            accepted(contract, submit(isolated, contract, c, v, round_number=round_number))
            for c, v in zip(honest, honest_updates(model, 2, seed=round_number), strict=True)
        ]
        # Assert: the honest clients are paid, the round closed at its target of 3
        assert all(e["distance"] >= 100 and e["reward"] > 0 for e in honest_events)
        assert contract.functions.modelVersion().call() == round_number
    # Assert
    assert [(e["distance"], e["tier"], e["reward"]) for e in outcomes] == [(0, NO_TIER, 0)] * 2
    assert credit(contract, free_rider) == 0
    assert all(credit(contract, c) > 0 for c in honest)


def test_free_rider_is_paid_top_tier_without_the_guard(
    isolated: Chain, deploy_coordinator: DeployFactory, client_a: str
) -> None:
    """minRewardDistance = 0: resubmitting the model is the closest possible update, tier 0."""
    # Prepare
    contract = deploy_coordinator(initial=random_model(2))
    # Execute
    copy = contract.functions.globalModel().call()
    event = accepted(contract, send(isolated, contract.functions.submit(1, 1, 0, copy), client_a))
    # Assert
    assert (event["distance"], event["tier"], event["reward"]) == (0, 0, REWARDS[0])
    assert credit(contract, client_a) == REWARDS[0]


def test_free_rider_adding_noise_above_the_guard_is_paid(
    isolated: Chain, deploy_coordinator: DeployFactory, client_a: str
) -> None:
    """The guard's limit: noise of L1 >= minRewardDistance passes for work, unpaid only below it."""
    # Prepare
    model = random_model(3)
    contract = deploy_coordinator(initial=model, min_reward_distance=100)
    noisy = model.copy()
    noisy[:10] += 10  # L1 exactly 100: no training, just noise
    # Execute
    event = accepted(contract, submit(isolated, contract, client_a, noisy))
    # Assert
    assert (event["distance"], event["tier"], event["reward"]) == (100, 0, REWARDS[0])


# ---------------------------------------------------------------- copycats


def test_copycat_is_paid_in_direct_mode(
    isolated: Chain, deploy_coordinator: DeployFactory, client_a: str, outsider: str
) -> None:
    """Why commit-reveal exists: in Direct mode the copycat reads the victim's words from its
    public transaction (or the mempool, before it is mined) and earns the same tier for them."""
    # Prepare
    contract = deploy_coordinator(initial=random_model(4), min_reward_distance=100)
    [update] = honest_updates(global_weights(contract), 1, seed=4)
    victim = submit(isolated, contract, client_a, update)
    original = accepted(contract, victim)
    # Execute
    words = calldata_of(contract, isolated, victim)["words"]
    copy = accepted(contract, send(isolated, contract.functions.submit(1, 1, 0, words), outsider))
    # Assert
    assert words == pack(update)
    assert original["reward"] > 0
    assert (copy["distance"], copy["tier"], copy["reward"], copy["counted"]) == (
        original["distance"],
        original["tier"],
        original["reward"],
        True,
    )
    assert credit(contract, outsider) == credit(contract, client_a) == original["reward"]


@pytest.fixture
def commit_reveal(deploy_coordinator: DeployFactory) -> Contract:
    """A commit-reveal coordinator (round 1 in its commit phase) on a random initial model."""
    return deploy_coordinator(
        initial=random_model(6),
        mode="commit_reveal",
        reveal_duration=REVEAL_DURATION,
        min_reward_distance=100,
    )


def test_copycat_without_commitment_cannot_reveal_or_commit_late(
    isolated: Chain, commit_reveal: Contract, clients: list[str], outsider: str
) -> None:
    # Prepare: three honest commitments fill the round and open reveals
    contract = commit_reveal
    updates = honest_updates(global_weights(contract), 3, seed=7)
    salts = [bytes([i + 1]) * 32 for i in range(3)]
    for client, update, salt in zip(clients[:3], updates, salts, strict=True):
        commit(isolated, contract, client, update, salt)
    assert read_round(contract).phase == "Reveal"
    first = reveal(isolated, contract, clients[0], pack(updates[0]), salts[0])
    public = calldata_of(contract, isolated, first)
    # Execute / Assert: replaying the victim's whole reveal from another account
    error = reverted(
        lambda: send(
            isolated,
            contract.functions.reveal(
                1, 1, 0, public["words"], public["salt"], public["segmentHashes"]
            ),
            outsider,
        )
    )
    assert error.name == "CoordinatorNoCommitment"
    assert revert_args(error) == {"round": 1, "account": outsider}
    # and commitments closed when reveals opened
    late = commit_reveal.functions.commit(1, b"\x11" * 32)
    error = reverted(lambda: send(isolated, late, outsider))
    assert error.name == "CoordinatorWrongPhase"
    assert revert_args(error) == {"phase": 3}  # Phase.Reveal
    assert credit(contract, outsider) == 0
    assert contract.functions.hasSubmitted(outsider, 1).call() is False


@pytest.mark.parametrize("copied_commitment", [False, True], ids=["own-guess", "copied-hash"])
def test_copycat_commitment_never_matches_the_copied_update(
    isolated: Chain,
    commit_reveal: Contract,
    client_a: str,
    client_b: str,
    outsider: str,
    copied_commitment: bool,
) -> None:
    """The copycat commits before it can see the update (to a guess, or by copying the victim's
    hash from its commit transaction); its reveal of the victim's words mismatches either way,
    since the commitment binds the revealer's address. A reveal after the deadline is refused,
    and the round closes on the honest reveals alone."""
    # Prepare
    contract = commit_reveal
    model = global_weights(contract)
    update_a, update_b = honest_updates(model, 2, seed=8)
    salt_a, salt_b, salt_c = b"\xa1" * 32, b"\xb2" * 32, b"\xc3" * 32
    victim_commit = commit(isolated, contract, client_a, update_a, salt_a)
    if copied_commitment:
        digest = calldata_of(contract, isolated, victim_commit)["commitment"]
        send(isolated, contract.functions.commit(1, digest), outsider)
    else:
        commit(isolated, contract, outsider, model, salt_c)  # a guess: the model itself
    commit(isolated, contract, client_b, update_b, salt_b)
    victim_reveal = reveal(isolated, contract, client_a, pack(update_a), salt_a)
    public = calldata_of(contract, isolated, victim_reveal)
    # Execute / Assert: the copied words, with the copycat's own salt and with the victim's
    for salt in (salt_c, public["salt"]):
        error = reverted(lambda s=salt: reveal(isolated, contract, outsider, public["words"], s))
        assert error.name == "CoordinatorRevealMismatch"
        assert revert_args(error) == {"round": 1, "account": outsider}
    reveal(isolated, contract, client_b, pack(update_b), salt_b)
    # the copycat's missing reveal keeps the round open until the reveal deadline
    state = read_round(contract)
    assert (state.number, state.phase, state.completed) == (1, "Reveal", 2)
    deadline = state.deadline
    isolated.advance_time(REVEAL_DURATION)
    error = reverted(lambda: reveal(isolated, contract, outsider, public["words"], salt_a))
    assert error.name == "CoordinatorRevealClosed"
    assert revert_args(error) == {"round": 1, "deadline": deadline}
    closing = send(isolated, contract.functions.finalize(), outsider)
    # Assert
    [closed] = events(contract, "RoundClosed", closing)
    assert (closed["round"], closed["submissions"]) == (1, 2)
    assert global_weights(contract).tolist() == integer_average([update_a, update_b]).tolist()
    assert credit(contract, outsider) == 0
    assert credit(contract, client_a) > 0
    assert credit(contract, client_b) > 0
    assert contract.functions.hasSubmitted(outsider, 1).call() is False


def test_honest_late_reveal_reverts_reveal_closed(
    isolated: Chain, commit_reveal: Contract, clients: list[str], outsider: str
) -> None:
    """A reveal after the deadline is refused even when it matches; the late client earns
    nothing and the round closes (minimum 2) without it."""
    # Prepare
    contract = commit_reveal
    updates = honest_updates(global_weights(contract), 3, seed=9)
    salts = [bytes([0x40 + i]) * 32 for i in range(3)]
    for client, update, salt in zip(clients[:3], updates, salts, strict=True):
        commit(isolated, contract, client, update, salt)
    for i in (0, 1):
        reveal(isolated, contract, clients[i], pack(updates[i]), salts[i])
    deadline = read_round(contract).deadline
    isolated.advance_time(REVEAL_DURATION)
    # Execute
    error = reverted(lambda: reveal(isolated, contract, clients[2], pack(updates[2]), salts[2]))
    # Assert
    assert error.name == "CoordinatorRevealClosed"
    assert revert_args(error) == {"round": 1, "deadline": deadline}
    send(isolated, contract.functions.finalize(), outsider)
    assert global_weights(contract).tolist() == integer_average(updates[:2]).tolist()
    assert credit(contract, clients[2]) == 0


def test_commitment_of_an_earlier_round_cannot_be_revealed_later(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str], outsider: str
) -> None:
    """Commitments are kept per round: a round-1 commitment is no commitment in round 2."""
    # Prepare: one-client rounds
    contract = deploy_coordinator(
        mode="commit_reveal",
        reveal_duration=REVEAL_DURATION,
        target_submissions=1,
        min_submissions=1,
    )
    [update] = honest_updates(global_weights(contract), 1, seed=10)
    salt = b"\x5a" * 32
    commit(isolated, contract, clients[0], update, salt)
    reveal(isolated, contract, clients[0], pack(update), salt)  # closes round 1
    send(isolated, contract.functions.commit(2, b"\x01" * 32), clients[1])  # opens reveals
    # Execute
    error = reverted(
        lambda: reveal(isolated, contract, clients[0], pack(update), salt, round_number=2)
    )
    # Assert
    assert error.name == "CoordinatorNoCommitment"
    assert revert_args(error) == {"round": 2, "account": clients[0]}
    # and the round-1 reveal itself names a closed round
    error = reverted(lambda: reveal(isolated, contract, clients[0], pack(update), salt))
    assert error.name == "CoordinatorWrongRound"
    assert revert_args(error) == {"given": 1, "current": 2}


def test_lagging_copycat_replaying_the_previous_rounds_update_is_paid(
    isolated: Chain, commit_reveal: Contract, clients: list[str], outsider: str
) -> None:
    """Commit-reveal's limit: it hides an update only until its round's reveals. A copycat that
    commits in round 2 to a round-1 update (public since its reveal) is measured against the
    round-1 average, which differs from every single update by the spread of the round: it
    passes the free-rider guard and is paid, with no training done."""
    # Prepare: round 1 of three honest clients closes
    contract = commit_reveal
    updates = honest_updates(global_weights(contract), 3, seed=16)
    salts = [bytes([0x60 + i]) * 32 for i in range(3)]
    for client, update, salt in zip(clients[:3], updates, salts, strict=True):
        commit(isolated, contract, client, update, salt)
    receipts = [
        reveal(isolated, contract, client, pack(update), salt)
        for client, update, salt in zip(clients[:3], updates, salts, strict=True)
    ]
    assert read_round(contract).number == 2
    stale = calldata_of(contract, isolated, receipts[0])["words"]
    # Execute: round 2, the copycat commits to the stale words alongside two honest clients
    fresh = honest_updates(global_weights(contract), 2, seed=17)
    copy_salt = b"\x99" * 32
    commit_words(
        isolated,
        contract,
        outsider,
        round_number=2,
        sample_count=1,
        words=stale,
        words_per_segment=SEGMENT,
        salt=copy_salt,
    )
    for client, update, salt in zip(clients[3:5], fresh, salts, strict=False):
        commit(isolated, contract, client, update, salt, round_number=2)
    copied = accepted(
        contract, reveal(isolated, contract, outsider, stale, copy_salt, round_number=2)
    )
    # Assert
    assert copied["distance"] >= 100  # the guard (minRewardDistance = 100) does not see it
    assert copied["counted"] is True
    assert copied["reward"] > 0
    assert credit(contract, outsider) == copied["reward"]


def test_one_account_cannot_fill_the_commit_phase_with_zero_commitments(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str]
) -> None:
    """Regression: ``commit`` once stored ``bytes32(0)``, which its ``AlreadyCommitted`` check
    reads as no commitment, so one account could commit as often as the round had slots; reveals
    then opened with nobody able to reveal and the round was abandoned, every round. A zero
    commitment is refused now, and the honest clients keep their slots."""
    # Prepare
    contract = deploy_coordinator(mode="commit_reveal", reveal_duration=REVEAL_DURATION)
    griefer, honest = clients[0], clients[1:3]
    # Execute / Assert
    for _ in range(2):
        error = reverted(lambda: send(isolated, contract.functions.commit(1, bytes(32)), griefer))
        assert error.name == "CoordinatorEmptyCommitment"
        assert revert_args(error) == {}
    for client, update in zip(
        honest, honest_updates(global_weights(contract), 2, seed=15), strict=True
    ):
        commit(isolated, contract, client, update, b"\x77" * 32)
    state = read_round(contract)
    assert (state.number, state.phase) == (1, "Commit")  # one slot of three left
    assert contract.functions.commitments(1, griefer).call() == bytes(32)


# ---------------------------------------------------------------- stale rounds


def test_replaying_a_submission_into_a_later_round_reverts_wrong_round(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str], outsider: str
) -> None:
    """The round number in the call pins a submission to its round: the same arguments, sent
    again by anyone once the round closed, are refused."""
    # Prepare: round 1 closes at its target of 3
    contract = deploy_coordinator()
    updates = honest_updates(global_weights(contract), 3, seed=11)
    receipts = [submit(isolated, contract, c, v) for c, v in zip(clients[:3], updates, strict=True)]
    old = calldata_of(contract, isolated, receipts[0])
    assert read_round(contract).number == 2
    # Execute / Assert
    for sender in (clients[0], outsider):
        function = contract.functions.submit(
            old["round"], old["sampleCount"], old["segment"], old["words"]
        )
        error = reverted(lambda f=function, s=sender: send(isolated, f, s))
        assert error.name == "CoordinatorWrongRound"
        assert revert_args(error) == {"given": 1, "current": 2}
    assert credit(contract, outsider) == 0


# ---------------------------------------------------------------- poisoners

POISONS = [(10, "scaled-x10"), (-10, "sign-flipped-x10")]


@pytest.mark.parametrize("k", [k for k, _ in POISONS], ids=[name for _, name in POISONS])
def test_poisoner_beyond_the_bound_is_unpaid_and_left_out_of_the_average(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str], k: int
) -> None:
    """Two of five clients send ``global + k * (trained - global)``: with maxCountedDistance
    they are credited nothing and the new model is the average of the three honest updates."""
    # Prepare: honest L1 distances are at most 40 x 30 = 1,200; the bound is 2,000
    model = random_model(12)
    contract = deploy_coordinator(
        initial=model, target_submissions=5, min_submissions=5, max_counted_distance=2_000
    )
    trained = honest_updates(model, 5, seed=12)
    honest, attackers = clients[:3], clients[3:5]
    vectors = trained[:3] + [poisoned(model, t, k) for t in trained[3:]]
    # Execute
    outcome = [
        accepted(contract, submit(isolated, contract, c, v))
        for c, v in zip(honest + attackers, vectors, strict=True)
    ]
    # Assert
    for event, vector in zip(outcome[3:], vectors[3:], strict=True):
        assert event["distance"] == distance(model, vector, "l1") > 2_000
        assert (event["tier"], event["reward"], event["counted"]) == (NO_TIER, 0, False)
    assert all(e["counted"] and e["reward"] > 0 for e in outcome[:3])
    assert [credit(contract, a) for a in attackers] == [0, 0]
    assert contract.functions.modelVersion().call() == 1
    assert global_weights(contract).tolist() == integer_average(trained[:3]).tolist()


@pytest.mark.parametrize("k", [k for k, _ in POISONS], ids=[name for _, name in POISONS])
def test_poisoner_without_the_bound_is_paid_and_drags_the_average(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str], k: int
) -> None:
    """The same attack with maxCountedDistance off: counted, paid a tier, and the model moves
    far from the honest average."""
    # Prepare
    model = random_model(12)
    contract = deploy_coordinator(initial=model, target_submissions=5, min_submissions=5)
    trained = honest_updates(model, 5, seed=12)
    vectors = trained[:3] + [poisoned(model, t, k) for t in trained[3:]]
    # Execute
    outcome = [
        accepted(contract, submit(isolated, contract, c, v))
        for c, v in zip(clients[:5], vectors, strict=True)
    ]
    # Assert
    assert all(e["counted"] for e in outcome)
    assert all(e["reward"] > 0 for e in outcome[3:])  # within the 10,000 or 50,000 tier
    poisoned_model = global_weights(contract)
    assert poisoned_model.tolist() == integer_average(vectors).tolist()
    honest_model = integer_average(trained[:3])
    # the poisoned model is farther from the honest average than any honest update is from it
    assert distance(honest_model, poisoned_model, "l1") > max(
        distance(honest_model, t, "l1") for t in trained[:3]
    )


def test_sign_flip_of_honest_magnitude_passes_the_bound_and_is_paid(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str]
) -> None:
    """The bound's limit: ``global - (trained - global)`` lies exactly as far from the model as
    the honest update, so a distance rule cannot tell it apart. It is counted and paid; what
    limits its harm is the mean (one such client cancels one honest step out of ``n``)."""
    # Prepare
    model = random_model(13)
    contract = deploy_coordinator(
        initial=model, target_submissions=5, min_submissions=5, max_counted_distance=2_000
    )
    trained = honest_updates(model, 5, seed=13)
    vectors = trained[:3] + [poisoned(model, t, -1) for t in trained[3:]]
    # Execute
    outcome = [
        accepted(contract, submit(isolated, contract, c, v))
        for c, v in zip(clients[:5], vectors, strict=True)
    ]
    # Assert
    for event, original in zip(outcome[3:], trained[3:], strict=True):
        assert event["distance"] == distance(model, original, "l1")
        assert event["counted"] is True
        assert event["reward"] > 0
    assert global_weights(contract).tolist() == integer_average(vectors).tolist()


# ---------------------------------------------------------------- the direction guard


def drifting_updates(
    model: np.ndarray, drift: np.ndarray, count: int, *, seed: int, noise: int = 10
) -> list[np.ndarray]:
    """``count`` honest updates that follow a common descent direction ``drift`` (as training
    on similar data does from round to round), each with its own noise."""
    rng = np.random.default_rng(seed)
    return [
        model + drift + rng.integers(-noise, noise + 1, size=SMALL_WEIGHTS) for _ in range(count)
    ]


def play_two_rounds(
    chain: Chain,
    contract: Contract,
    clients: list[str],
    model: np.ndarray,
    *,
    flip: int,
    seed: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[np.ndarray], np.ndarray]:
    """Round 1: five honest clients. Round 2: the last ``flip`` of them send the sign-flipped
    update ``global - (trained - global)``. Returns both rounds' events, round 2's vectors and
    the model round 1 made."""
    drift = np.random.default_rng(seed).choice([-20, 20], SMALL_WEIGHTS)
    first = drifting_updates(model, drift, 5, seed=seed + 1)
    round1 = [
        accepted(contract, submit(chain, contract, c, v))
        for c, v in zip(clients, first, strict=True)
    ]
    model1 = global_weights(contract)
    trained = drifting_updates(model1, drift, 5, seed=seed + 2)
    vectors = trained[: 5 - flip] + [poisoned(model1, t, -1) for t in trained[5 - flip :]]
    round2 = [
        accepted(contract, submit(chain, contract, c, v, round_number=2))
        for c, v in zip(clients, vectors, strict=True)
    ]
    return round1, round2, vectors, model1


def test_sign_flipper_is_unpaid_and_left_out_by_the_direction_guard(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str]
) -> None:
    """With ``minAlignment = 0`` a sign-flipped update of honest magnitude, which the distance
    bound cannot see, moves the weights against the step the last round took: it is credited
    nothing and the new model is the average of the honest updates."""
    # Prepare
    model = random_model(21)
    contract = deploy_coordinator(
        initial=model, target_submissions=5, min_submissions=5, min_alignment_bps=0
    )
    # Execute
    round1, round2, vectors, model1 = play_two_rounds(
        isolated, contract, clients[:5], model, flip=2, seed=21
    )
    # Assert: round 1 has no step to compare with; in round 2 the split matches the reference
    assert all(e["counted"] and (e["along"], e["against"]) == (0, 0) for e in round1)
    step = step_signs(model, model1)
    for event, vector in zip(round2, vectors, strict=True):
        assert (event["along"], event["against"]) == directional_l1(model1, vector, step)
    for event in round2[3:]:
        assert event["against"] > event["along"]
        assert (event["tier"], event["reward"], event["counted"]) == (NO_TIER, 0, False)
    assert all(e["counted"] and e["reward"] > 0 and e["along"] > e["against"] for e in round2[:3])
    assert [credit(contract, a) for a in clients[3:5]] == [REWARDS[0], REWARDS[0]]  # round 1 only
    assert global_weights(contract).tolist() == integer_average(vectors[:3]).tolist()


def test_sign_flipper_is_counted_in_round_one_and_without_the_guard(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str]
) -> None:
    """The guard's limits: in round 1 no step exists yet, and with ``minAlignment = -10000``
    (off) nothing is measured; the sign-flipped update is then counted and paid."""
    # Prepare
    model = random_model(22)
    guarded = deploy_coordinator(
        initial=model, target_submissions=5, min_submissions=5, min_alignment_bps=0
    )
    unguarded = deploy_coordinator(initial=model, target_submissions=5, min_submissions=5)
    trained = drifting_updates(model, np.full(SMALL_WEIGHTS, 20), 5, seed=22)
    vectors = [*trained[:4], poisoned(model, trained[4], -1)]
    # Execute
    first = [
        accepted(guarded, submit(isolated, guarded, c, v))
        for c, v in zip(clients[:5], vectors, strict=True)
    ]
    _, round2, vectors2, _ = play_two_rounds(
        isolated, unguarded, clients[:5], model, flip=2, seed=22
    )
    # Assert
    assert first[4]["counted"] is True
    assert first[4]["reward"] > 0
    assert global_weights(guarded).tolist() == integer_average(vectors).tolist()
    assert all(
        e["counted"] and e["reward"] > 0 and (e["along"], e["against"]) == (0, 0) for e in round2
    )
    assert global_weights(unguarded).tolist() == integer_average(vectors2).tolist()


def test_stricter_guard_leaves_out_honest_updates_that_barely_follow_the_step(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str]
) -> None:
    """``minAlignment`` is a threshold on ``(along - against) / (along + against)``: an update at
    exactly the threshold passes, one a quantum below does not."""
    # Prepare: round 1 moves every weight up by 10
    model = random_model(23, bound=100)
    contract = deploy_coordinator(
        initial=model, target_submissions=2, min_submissions=2, min_alignment_bps=5_000
    )
    for c in clients[:2]:
        submit(isolated, contract, c, model + 10)
    model1 = model + 10
    # 30 weights up by 1 and 10 down by 1: alignment (30 - 10) / 40 = 0.5, at the threshold
    at = model1.copy()
    at[:30] += 1
    at[30:] -= 1
    below = at.copy()
    below[29] -= 2  # 29 up, 11 down: (29 - 11) / 40 = 0.45
    # Execute
    passing = accepted(contract, submit(isolated, contract, clients[0], at, round_number=2))
    failing = accepted(contract, submit(isolated, contract, clients[1], below, round_number=2))
    # Assert
    assert (passing["along"], passing["against"], passing["counted"]) == (30, 10, True)
    assert (failing["along"], failing["against"], failing["counted"]) == (29, 11, False)
    assert global_weights(contract).tolist() == at.tolist()


# ---------------------------------------------------------------- reentrancy


def test_reentrant_withdrawer_takes_only_its_own_credit(
    isolated: Chain,
    compiled: dict[str, CompiledContract],
    coordinator: Contract,
    clients: list[str],
    outsider: str,
) -> None:
    """ReentrantWithdrawer (tests/test_contract_rewards.py covers it alone) among honest clients:
    re-entering ``withdraw`` from its ``receive`` finds its credit already zeroed, so it leaves
    with exactly its own credit, and every honest credit is still there to withdraw."""
    # Prepare: the attacker contract and two honest clients fill round 1 (target 3)
    attacker = deploy_attacker(isolated, compiled, coordinator, REENTER_SWALLOW, outsider)
    model = global_weights(coordinator)
    updates = honest_updates(model, 3, seed=14)
    send(isolated, attacker.functions.participate(1, 1, pack(updates[0])), outsider)
    for client, update in zip(clients[:2], updates[1:], strict=True):
        submit(isolated, coordinator, client, update)
    owed = {a: credit(coordinator, a) for a in (attacker.address, *clients[:2])}
    assert all(v > 0 for v in owed.values())
    held = balance(isolated, coordinator.address)
    # Execute
    receipt = send(isolated, attacker.functions.attack(), outsider)
    # Assert
    assert events(coordinator, "CreditWithdrawn", receipt) == [
        {"client": attacker.address, "amount": owed[attacker.address]}
    ]
    assert attacker.functions.reentries().call() == 1
    assert attacker.functions.reentrySuccesses().call() == 0
    assert balance(isolated, attacker.address) == owed[attacker.address]
    assert balance(isolated, coordinator.address) == held - owed[attacker.address]
    for client in clients[:2]:
        assert credit(coordinator, client) == owed[client]
        send(isolated, coordinator.functions.withdraw(), client)
        assert credit(coordinator, client) == 0
    assert coordinator.functions.totalWithdrawn().call() == sum(owed.values())
    assert_solvent(isolated, coordinator)
