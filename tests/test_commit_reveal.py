"""CommitReveal mode on the round pipeline v2: commitments with an exact bond, reveals (in one or
several transactions) that are checked, measured, paid and get the bond back, bonds forfeited to
the pool when a round ends without their reveal, the phases moved on by ``finalize``, the close of a
revealed round, and the money identity with bonds held.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest
from web3.contract import Contract
from web3.types import TxReceipt

from fl_client.aggregation import integer_average
from fl_client.chain import Chain, commitment, read_round, reveal_calls, send
from fl_client.codec import pack, vector_hash
from tests.conftest import SMALL_WEIGHTS, events, signed, submit
from tests.pipeline_helpers import (
    PHASE,
    assert_money_identity,
    block_time,
    close_round,
    constant,
    deadline_of,
    mine_at,
    model_values,
    module_deployments,
    random_vector,
    reverts,
    window_end,
)

BOND = 1_000
REVEAL_DURATION = 300
CR = {"mode": "commit_reveal", "reveal_duration": REVEAL_DURATION, "commit_bond": BOND}
CONFIGS: dict[str, dict[str, Any]] = {
    "cr": CR,  # 40 weights, one segment, target 3, minimum 2
    "cr3": {**CR, "words_per_segment": 1},  # three segments
    "crw": {**CR, "aggregation": "sample_weighted"},
    "plain": {},
}


@pytest.fixture(scope="module")
def deployed(chain: Chain) -> Iterator[dict[str, Contract]]:
    """The module's coordinators, deployed once."""
    yield from module_deployments(chain, CONFIGS)


@pytest.fixture
def cr(isolated: Chain, deployed: dict[str, Contract]) -> Contract:
    """CommitReveal, one segment, target 3, minimum 2, bond 1,000 wei, reveals for 300 s."""
    return deployed["cr"]


def salt_of(client: str) -> bytes:
    """A salt per client."""
    return bytes.fromhex(client[2:].lower()).rjust(32, b"\x07")


def digest(
    chain: Chain,
    contract: Contract,
    client: str,
    values: np.ndarray,
    *,
    sample_count: int = 1,
    round_number: int = 1,
    salt: bytes | None = None,
) -> bytes:
    """The commitment ``client`` makes to ``values`` (computed locally)."""
    per_segment = int(contract.functions.wordsPerSegment().call())
    return commitment(
        chain_id=chain.chain_id(),
        contract_address=str(contract.address),
        round_number=round_number,
        client=client,
        sample_count=sample_count,
        salt=salt or salt_of(client),
        vector_hash=vector_hash(pack(values), per_segment),
    )


def commit(
    chain: Chain,
    contract: Contract,
    client: str,
    values: np.ndarray,
    *,
    sample_count: int = 1,
    round_number: int = 1,
    value: int = BOND,
) -> TxReceipt:
    """Commit ``client`` to ``values`` with ``value`` wei."""
    function = contract.functions.commit(
        round_number,
        digest(
            chain, contract, client, values, sample_count=sample_count, round_number=round_number
        ),
    )
    return send(chain, function, client, value=value)


def reveal(
    chain: Chain,
    contract: Contract,
    client: str,
    values: np.ndarray | Sequence[int],
    *,
    sample_count: int = 1,
    round_number: int = 1,
    salt: bytes | None = None,
    start_segment: int = 0,
    segments: int | None = None,
) -> list[TxReceipt]:
    """Reveal ``values`` from ``start_segment`` (``segments`` of them per transaction; all in as
    few transactions as fit when ``None``)."""
    words = pack(np.asarray(values))
    per_segment = int(contract.functions.wordsPerSegment().call())
    if segments is not None:
        per_segment_calls = []
        total = int(contract.functions.numSegments().call())
        for first in range(start_segment, total, segments):
            part = words[first * per_segment : (first + segments) * per_segment]
            function = contract.functions.reveal(
                round_number, sample_count, first, part, salt or salt_of(client)
            )
            per_segment_calls.append(send(chain, function, client))
        return per_segment_calls
    calls = reveal_calls(
        contract,
        client,
        round_number=round_number,
        sample_count=sample_count,
        words=words,
        words_per_segment=per_segment,
        salt=salt or salt_of(client),
        start_segment=start_segment,
    )
    return [send(chain, call.function, call.sender) for call in calls]


def bonds(contract: Contract) -> tuple[int, int]:
    """(held, returned)."""
    held, returned = contract.functions.bonds().call()
    return int(held), int(returned)


# ---------------------------------------------------------------- commitments


def test_the_local_commitment_equals_the_contracts(
    isolated: Chain, cr: Contract, client_a: str
) -> None:
    values = np.arange(SMALL_WEIGHTS, dtype=np.int64) - 7
    words_hash = vector_hash(pack(values), 3)
    onchain = cr.functions.commitmentOf(1, client_a, 5, salt_of(client_a), words_hash).call()
    assert onchain == digest(isolated, cr, client_a, values, sample_count=5)


def test_commit_takes_the_exact_bond(isolated: Chain, cr: Contract, clients: list[str]) -> None:
    for sent in (0, BOND - 1, BOND + 1):
        with reverts("CoordinatorWrongBond", sent=sent, required=BOND):
            commit(isolated, cr, clients[0], constant(1), value=sent)
    receipt = commit(isolated, cr, clients[0], constant(1))
    assert events(cr, "CommitmentAccepted", receipt) == [
        {"round": 1, "client": clients[0], "bond": BOND}
    ]
    assert bonds(cr) == (BOND, 0)
    assert cr.functions.commitments(1, clients[0]).call() == digest(
        isolated, cr, clients[0], constant(1)
    )
    assert cr.functions.commitments(2, clients[0]).call() == b"\x00" * 32
    assert cr.functions.roundDetails().call()[1] == 1
    assert_money_identity(isolated, cr, clients[:1])


def test_commit_checks(isolated: Chain, cr: Contract, clients: list[str]) -> None:
    f = cr.functions
    with reverts("CoordinatorEmptyCommitment"):
        send(isolated, f.commit(1, b"\x00" * 32), clients[0], value=BOND)
    with reverts("CoordinatorWrongRound", given=2, current=1):
        commit(isolated, cr, clients[0], constant(1), round_number=2)
    commit(isolated, cr, clients[0], constant(1))
    with reverts("CoordinatorAlreadyCommitted", round=1, account=clients[0]):
        commit(isolated, cr, clients[0], constant(2))
    deadline = deadline_of(cr)
    mine_at(isolated, deadline)
    with reverts("CoordinatorDeadlinePassed", round=1, deadline=deadline):
        commit(isolated, cr, clients[1], constant(1))


def test_the_other_paths_refuse_the_wrong_mode(
    isolated: Chain, deployed: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    cr, plain = deployed["cr"], deployed["plain"]
    with reverts("CoordinatorWrongMode", mode=1):
        submit(isolated, cr, clients[0], constant(1))
    update = signed(isolated, cr, clients[0], constant(1))
    with reverts("CoordinatorWrongMode", mode=1):
        send(isolated, cr.functions.submitRelayed(1, [update.as_tuple()]), relayer)
    with reverts("CoordinatorWrongMode", mode=0):
        commit(isolated, plain, clients[0], constant(1))
    with reverts("CoordinatorWrongMode", mode=0):
        reveal(isolated, plain, clients[0], constant(1))


# ---------------------------------------------------------------- reveals


def test_commits_then_reveals_give_the_exact_average(
    isolated: Chain, cr: Contract, clients: list[str]
) -> None:
    # Prepare
    rng = np.random.default_rng(40)
    vectors = [random_vector(rng) for _ in range(3)]
    # Execute: the third commitment opens the reveals
    receipts = [commit(isolated, cr, c, v) for c, v in zip(clients, vectors, strict=False)]
    [opened] = events(cr, "RevealOpened", receipts[-1])
    assert opened == {"round": 1, "deadline": block_time(isolated, receipts[-1]) + REVEAL_DURATION}
    assert events(cr, "RevealOpened", receipts[0]) == []
    info = read_round(cr)
    assert (info.phase, info.deadline) == ("Reveal", opened["deadline"])
    revealed = [reveal(isolated, cr, c, v)[0] for c, v in zip(clients, vectors, strict=False)]
    # Assert: each reveal is measured, paid and gets its bond back
    for client, receipt in zip(clients, revealed, strict=False):
        [accepted] = events(cr, "SubmissionAccepted", receipt)
        assert (accepted["counted"], accepted["relayed"]) == (True, False)
        assert events(cr, "BondReturned", receipt) == [
            {"round": 1, "client": client, "amount": BOND}
        ]
        assert cr.functions.credit(client).call() == accepted["reward"] + BOND
    assert bonds(cr) == (0, 3 * BOND)
    assert_money_identity(isolated, cr, clients[:3])
    # every commitment revealed: the round closes before the reveal deadline
    close_receipts = close_round(
        isolated, cr, clients[5], dict(zip(clients, vectors, strict=False))
    )
    assert block_time(isolated, close_receipts[-1]) < opened["deadline"]
    assert model_values(cr) == integer_average(vectors).tolist()
    assert events(cr, "BondsForfeited", close_receipts[-1]) == []
    info = read_round(cr)
    assert (info.number, info.phase) == (2, "Commit")
    assert_money_identity(isolated, cr, [*clients[:3], clients[5]])


def test_sample_weighted_reveals_in_several_transactions(
    isolated: Chain, deployed: dict[str, Contract], clients: list[str]
) -> None:
    contract = deployed["crw"]
    vectors = [constant(3), constant(-1), constant(0)]
    vectors[2][:3] = (1, 2, 3)
    counts = [1, 3, 1000]
    for client, vector, count in zip(clients, vectors, counts, strict=False):
        commit(isolated, contract, client, vector, sample_count=count)
    for client, vector, count in zip(clients, vectors, counts, strict=False):
        reveal(isolated, contract, client, vector, sample_count=count)
    close_round(isolated, contract, clients[5], dict(zip(clients, vectors, strict=False)))
    assert model_values(contract) == integer_average(vectors, counts).tolist()


def test_reveal_in_several_transactions_and_its_checks(
    isolated: Chain, deployed: dict[str, Contract], clients: list[str]
) -> None:
    # Prepare: three segments, three commitments
    contract = deployed["cr3"]
    f = contract.functions
    vectors = [constant(5), constant(-9), np.arange(SMALL_WEIGHTS, dtype=np.int64)]
    for client, vector in zip(clients, vectors, strict=False):
        commit(isolated, contract, client, vector, sample_count=2)
    # Execute / Assert: segment 0 alone, then segments 1 and 2 one transaction each
    salt = salt_of(clients[0])
    part = send(isolated, f.reveal(1, 2, 0, pack(vectors[0])[:1], salt), clients[0])
    assert events(contract, "SegmentsReceived", part) == [
        {"round": 1, "client": clients[0], "firstSegment": 0, "count": 1}
    ]
    assert events(contract, "SubmissionAccepted", part) == []
    assert f.hasSubmitted(clients[0], 1).call() is False
    assert bonds(contract) == (3 * BOND, 0)
    rest = reveal(
        isolated, contract, clients[0], vectors[0], sample_count=2, start_segment=1, segments=1
    )
    assert len(rest) == 2
    assert events(contract, "BondReturned", rest[0]) == []
    assert events(contract, "BondReturned", rest[1]) == [
        {"round": 1, "client": clients[0], "amount": BOND}
    ]
    assert bonds(contract) == (2 * BOND, BOND)
    assert f.hasSubmitted(clients[0], 1).call() is True
    with reverts("CoordinatorAlreadySubmitted", round=1, account=clients[0]):
        reveal(isolated, contract, clients[0], vectors[0], sample_count=2)
    # a second client: segment 0, then a changed sample count, a wrong segment, then the rest
    send(isolated, f.reveal(1, 2, 0, pack(vectors[1])[:1], salt_of(clients[1])), clients[1])
    with reverts("CoordinatorSampleCountChanged", declared=2, given=3):
        send(isolated, f.reveal(1, 3, 1, pack(vectors[1])[1:], salt_of(clients[1])), clients[1])
    with reverts("CoordinatorWrongSegment", expected=1, given=2):
        send(isolated, f.reveal(1, 2, 2, pack(vectors[1])[2:], salt_of(clients[1])), clients[1])
    reveal(isolated, contract, clients[1], vectors[1], sample_count=2, start_segment=1)
    assert f.hasSubmitted(clients[1], 1).call() is True
    # the third reveals whole; the close gives the exact average
    reveal(isolated, contract, clients[2], vectors[2], sample_count=2)
    close_round(isolated, contract, clients[5], dict(zip(clients, vectors, strict=False)))
    assert model_values(contract) == integer_average(vectors).tolist()


@pytest.mark.parametrize(
    "alteration", ["salt", "words", "sample-count", "words-in-a-later-segment"]
)
def test_a_reveal_that_does_not_match_its_commitment_reverts(
    isolated: Chain, deployed: dict[str, Contract], clients: list[str], alteration: str
) -> None:
    contract = deployed["cr3"]
    values = constant(12)
    for client in clients[:3]:
        commit(isolated, contract, client, values, sample_count=4)
    client = clients[0]
    salt, count, shown = salt_of(client), 4, values.copy()
    if alteration == "salt":
        salt = b"\x01" * 32
    elif alteration == "words":
        shown[0] = 13
    elif alteration == "sample-count":
        count = 5
    else:
        shown[39] = -12
    with reverts("CoordinatorRevealMismatch", round=1, account=client):
        reveal(isolated, contract, client, shown, sample_count=count, salt=salt)
    assert contract.functions.hasSubmitted(client, 1).call() is False
    assert bonds(contract) == (3 * BOND, 0)


def test_reveal_checks(isolated: Chain, cr: Contract, clients: list[str], outsider: str) -> None:
    commit(isolated, cr, clients[0], constant(1))
    with reverts("CoordinatorWrongPhase", phase=PHASE["Commit"]):
        reveal(isolated, cr, clients[0], constant(1))
    for client in clients[1:3]:
        commit(isolated, cr, client, constant(1))
    with reverts("CoordinatorWrongPhase", phase=PHASE["Reveal"]):
        commit(isolated, cr, clients[3], constant(1))
    with reverts("CoordinatorNoCommitment", round=1, account=outsider):
        reveal(isolated, cr, outsider, constant(1))
    with reverts("CoordinatorInvalidSampleCount", sampleCount=0, max=1000):
        reveal(isolated, cr, clients[0], constant(1), sample_count=0)
    with reverts("CoordinatorWrongRound", given=2, current=1):
        reveal(isolated, cr, clients[0], constant(1), round_number=2)
    deadline = deadline_of(cr)
    mine_at(isolated, deadline)
    with reverts("CoordinatorDeadlinePassed", round=1, deadline=deadline):
        reveal(isolated, cr, clients[0], constant(1))


# ---------------------------------------------------------------- phases and bonds


def test_finalize_in_the_commit_phase(
    isolated: Chain, cr: Contract, clients: list[str], relayer: str
) -> None:
    f = cr.functions
    commit(isolated, cr, clients[0], constant(1))
    commit(isolated, cr, clients[1], constant(2))
    deadline = deadline_of(cr)
    with reverts(
        "CoordinatorNotClosable", round=1, entries=2, target=3, minimum=2, opensAt=deadline
    ):
        send(isolated, f.finalize(), relayer)
    with reverts("CoordinatorWrongPhase", phase=PHASE["Commit"]):
        close_round(isolated, cr, relayer, {})
    mine_at(isolated, deadline)
    receipt = send(isolated, f.finalize(), relayer)
    assert events(cr, "RevealOpened", receipt) == [
        {"round": 1, "deadline": block_time(isolated, receipt) + REVEAL_DURATION}
    ]
    assert read_round(cr).phase == "Reveal"
    for client, value in zip(clients[:2], (1, 2), strict=True):
        reveal(isolated, cr, client, constant(value))
    close_round(isolated, cr, relayer, {clients[0]: constant(1), clients[1]: constant(2)})
    assert model_values(cr) == [2] * SMALL_WEIGHTS


def test_finalize_ends_a_round_nobody_committed_to(
    isolated: Chain, cr: Contract, relayer: str
) -> None:
    mine_at(isolated, deadline_of(cr))
    receipt = send(isolated, cr.functions.finalize(), relayer)
    assert events(cr, "RoundAbandoned", receipt) == [{"round": 1, "submissions": 0}]
    assert events(cr, "BondsForfeited", receipt) == []
    info = read_round(cr)
    assert (info.number, info.phase) == (2, "Commit")


def test_unrevealed_bonds_are_forfeited_when_the_round_closes(
    isolated: Chain, cr: Contract, clients: list[str], relayer: str
) -> None:
    # Prepare: three commitments, two reveals
    f = cr.functions
    for client in clients[:3]:
        commit(isolated, cr, client, constant(4))
    for client in clients[:2]:
        reveal(isolated, cr, client, constant(4))
    assert bonds(cr) == (BOND, 2 * BOND)
    available = f.availableRewards().call()
    funded = f.totalFunded().call()
    reveal_deadline = deadline_of(cr)
    updates = {c: constant(4) for c in clients[:2]}
    # Execute / Assert: not every commitment revealed, so the close waits for the reveal deadline
    with reverts(
        "CoordinatorNotClosable", round=1, entries=2, target=3, minimum=2, opensAt=reveal_deadline
    ):
        close_round(isolated, cr, relayer, updates)
    mine_at(isolated, reveal_deadline)
    with reverts("CoordinatorDeadlinePassed", round=1, deadline=reveal_deadline):
        reveal(isolated, cr, clients[2], constant(4))
    [receipt] = close_round(isolated, cr, relayer, updates)
    assert events(cr, "BondsForfeited", receipt) == [{"round": 1, "amount": BOND}]
    assert bonds(cr) == (0, 2 * BOND)
    assert f.totalFunded().call() == funded + BOND
    assert f.availableRewards().call() == available + BOND - 7  # the close fee
    assert f.credit(clients[2]).call() == 0
    assert model_values(cr) == [4] * SMALL_WEIGHTS
    assert_money_identity(isolated, cr, [*clients[:3], relayer])
    # the revealed clients withdraw reward and bond; the identity still holds
    send(isolated, f.withdraw(), clients[0])
    assert_money_identity(isolated, cr, [*clients[:3], relayer])


def test_unrevealed_bonds_are_forfeited_when_the_round_is_abandoned(
    isolated: Chain, cr: Contract, clients: list[str], relayer: str
) -> None:
    f = cr.functions
    for client in clients[:3]:
        commit(isolated, cr, client, constant(4))
    reveal(isolated, cr, clients[0], constant(4))
    reveal_deadline = deadline_of(cr)
    ends = window_end(cr)
    assert ends == reveal_deadline + 120
    mine_at(isolated, reveal_deadline + 1)
    with reverts(
        "CoordinatorNotClosable", round=1, entries=1, target=3, minimum=2, opensAt=reveal_deadline
    ):
        close_round(isolated, cr, relayer, {clients[0]: constant(4)})
    with reverts("CoordinatorNotClosable", round=1, entries=1, target=3, minimum=2, opensAt=ends):
        send(isolated, f.finalize(), relayer)
    mine_at(isolated, ends)
    receipt = send(isolated, f.finalize(), relayer)
    assert events(cr, "RoundAbandoned", receipt) == [{"round": 1, "submissions": 1}]
    assert events(cr, "BondsForfeited", receipt) == [{"round": 1, "amount": 2 * BOND}]
    assert bonds(cr) == (0, BOND)
    assert f.modelVersion().call() == 0
    assert_money_identity(isolated, cr, [*clients[:3], relayer])


def test_a_round_below_its_minimum_ends_once_every_commitment_is_revealed(
    isolated: Chain, cr: Contract, clients: list[str], relayer: str
) -> None:
    """One commitment, revealed: nothing more can come, so finalize ends the round at once."""
    f = cr.functions
    commit(isolated, cr, clients[0], constant(4))
    mine_at(isolated, deadline_of(cr))
    send(isolated, f.finalize(), relayer)  # the reveals open
    reveal(isolated, cr, clients[0], constant(4))
    reveal_deadline = deadline_of(cr)
    receipt = send(isolated, f.finalize(), relayer)
    assert block_time(isolated, receipt) < reveal_deadline
    assert events(cr, "RoundAbandoned", receipt) == [{"round": 1, "submissions": 1}]
    assert events(cr, "BondsForfeited", receipt) == []
    assert f.credit(clients[0]).call() == 300 + BOND
    assert read_round(cr).number == 2


def test_bonds_of_one_round_do_not_carry_into_the_next(
    isolated: Chain, cr: Contract, clients: list[str], relayer: str
) -> None:
    vectors = [constant(2), constant(2), constant(2)]
    for client, vector in zip(clients, vectors, strict=False):
        commit(isolated, cr, client, vector)
    for client, vector in zip(clients, vectors, strict=False):
        reveal(isolated, cr, client, vector)
    close_round(isolated, cr, relayer, dict(zip(clients, vectors, strict=False)))
    # round 2: a client that committed in round 1 needs a new commitment
    with reverts("CoordinatorWrongPhase", phase=PHASE["Commit"]):
        reveal(isolated, cr, clients[0], vectors[0], round_number=2)
    commit(isolated, cr, clients[0], vectors[0], round_number=2)
    assert bonds(cr) == (BOND, 3 * BOND)
    assert_money_identity(isolated, cr, [*clients[:3], relayer])
