"""A participant's process loop (``ParticipantLoop``) on the embedded chain, with a ``sleep`` that
moves the world on instead of waiting: the other participants act and the chain's clock advances,
so that deadlines, the close grace and the close window pass in no time.

The participants are those of ``tests/test_participant.py`` (a 40-weight softmax regression on
small synthetic shards); three are expected per round, two suffice from the deadline on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.types import TxReceipt

from fl_client.chain import Chain, read_model_words, read_round
from fl_client.closer import RoundCloser
from fl_client.codec import unpack
from fl_client.compile import get_contract
from fl_client.errors import ClientStateError, NodeUnreachableError
from fl_client.node import free_port
from fl_client.participant import Participant, RoundOutcome
from fl_client.paths import RelayedPath
from fl_client.relay import Relay
from fl_client.runner import ParticipantLoop
from tests.conftest import SMALL_WEIGHTS, small_params
from tests.pipeline_helpers import deploy_in_setup, module_deployments
from tests.test_participant import act, initial_words, make_participant

ROUND_SECONDS = 3600  # round 1 stays open for the whole module (the clock follows the wall clock)
STEP = 300  # seconds the chain's clock moves on each poll of the loop
GRACE = 10.0
CLOSE_WINDOW = 120  # small_params' closeWindow


@pytest.fixture(scope="module")
def coordinators(chain: Chain) -> Iterator[dict[str, Contract]]:
    initial = unpack(initial_words(), SMALL_WEIGHTS)
    yield from module_deployments(
        chain, {"plain": {"initial": initial, "round_duration": ROUND_SECONDS}}
    )


@pytest.fixture
def coordinator(isolated: Chain, coordinators: dict[str, Contract]) -> Contract:
    return coordinators["plain"]


@pytest.fixture
def participants(isolated: Chain, coordinator: Contract, clients: list[str]) -> list[Participant]:
    """Three participants (client ids 0, 1, 2) with the direct path."""
    return [make_participant(isolated, coordinator, clients[i], i) for i in range(3)]


@dataclass
class World:
    """What happens while a loop sleeps: the ``others`` act (and the ``relay`` polls), then the
    chain's clock moves ``step`` seconds on. Records the chain's time and round at each sleep."""

    chain: Chain
    contract: Contract
    others: Sequence[Participant] = ()
    relay: Relay | None = None  # polled (registers, closes) after the others acted
    step: int = STEP
    seen: list[tuple[int, int]] = field(default_factory=list)  # (chain time, open round)

    def sleep(self, seconds: float) -> None:
        info = read_round(self.contract)
        self.seen.append((self.chain.timestamp(), info.number))
        for participant in self.others:
            act(participant)
        if self.relay is not None:
            self.relay.poll()
        self.chain.advance_time(self.step)


def loop_of(
    participant: Participant,
    world: World,
    *,
    closer: bool = True,
    timeout: float = 60.0,
    outcomes: list[RoundOutcome] | None = None,
    closes: list[tuple[int, int]] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> ParticipantLoop:
    """``participant``'s loop among three clients, closing with its own account."""
    return ParticipantLoop(
        participant,
        RoundCloser(
            chain=participant.chain,
            contract=participant.contract,
            account=participant.account,
            view=participant.view,
        )
        if closer
        else None,
        clients=3,
        poll_interval=1.0,
        timeout=timeout,
        close_grace=GRACE,
        on_outcome=None if outcomes is None else outcomes.append,
        on_close=None if closes is None else (lambda r, gas: closes.append((r, gas))),
        sleep=sleep or world.sleep,
    )


def close_receipt(chain: Chain, contract: Contract, round_number: int) -> TxReceipt:
    """The receipt of the transaction that closed ``round_number``."""
    (log,) = contract.events.RoundClosed().get_logs(
        from_block=0, argument_filters={"round": round_number}
    )
    return chain.w3.eth.get_transaction_receipt(log["transactionHash"])


def block_time(chain: Chain, receipt: TxReceipt) -> int:
    return int(chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"])


# ---------------------------------------------------------------- closing and finalizing


def test_the_designated_closer_closes_a_full_round_at_once(
    isolated: Chain, coordinator: Contract, participants: list[Participant]
) -> None:
    # Prepare: clients 0 and 2 are in; client 1 is round 1's designated closer (1 % 3)
    for other in (participants[0], participants[2]):
        act(other)
    deadline = read_round(coordinator).deadline
    outcomes: list[RoundOutcome] = []
    closes: list[tuple[int, int]] = []
    world = World(isolated, coordinator)
    # Execute
    returned = loop_of(participants[1], world, outcomes=outcomes, closes=closes).run(1)
    # Assert: it submitted, closed without waiting for the deadline, and reported both
    closing = close_receipt(isolated, coordinator, 1)
    assert returned == outcomes
    assert [o.round_number for o in outcomes] == [1]
    assert outcomes[0].closed_round is False  # the outcome is reported at submit, before the close
    assert closes == [(1, int(closing["gasUsed"]))]
    assert closing["from"] == participants[1].account
    assert block_time(isolated, closing) < deadline
    assert read_round(coordinator).number == 2


def test_the_others_close_only_after_the_grace(
    isolated: Chain, coordinator: Contract, participants: list[Participant]
) -> None:
    # Prepare: clients 0 and 1 are in, and the designated closer (client 1) never closes
    for other in participants[:2]:
        act(other)
    deadline = read_round(coordinator).deadline
    closes: list[tuple[int, int]] = []
    world = World(isolated, coordinator)
    # Execute: client 2's loop
    loop_of(participants[2], world, closes=closes).run(1)
    # Assert: the round stayed open until the deadline plus the grace, then client 2 closed it
    closing = close_receipt(isolated, coordinator, 1)
    assert closing["from"] == participants[2].account
    assert block_time(isolated, closing) >= deadline + GRACE
    assert all(r == 1 for t, r in world.seen if t < deadline + GRACE)
    assert len([t for t, _ in world.seen if t < deadline]) >= 5  # it did wait
    assert [r for r, _ in closes] == [1]


def test_a_round_below_its_minimum_is_finalized_after_the_close_window(
    isolated: Chain, coordinator: Contract, participants: list[Participant]
) -> None:
    # Prepare: client 0 is the only one to show up (two are needed)
    deadline = read_round(coordinator).deadline
    model_before = read_model_words(coordinator)
    outcomes: list[RoundOutcome] = []
    world = World(isolated, coordinator)
    # Execute
    loop_of(participants[0], world, outcomes=outcomes).run(1)
    # Assert: nothing before the window's end; then `finalize` ended the round, model unchanged
    (abandoned,) = coordinator.events.RoundAbandoned().get_logs(from_block=0)
    finalize = isolated.w3.eth.get_transaction_receipt(abandoned["transactionHash"])
    sent = isolated.w3.eth.get_transaction(abandoned["transactionHash"])
    assert coordinator.decode_function_input(sent["input"])[0].fn_name == "finalize"
    assert sent["from"] == participants[0].account
    assert dict(abandoned["args"]) == {"round": 1, "submissions": 1}
    assert block_time(isolated, finalize) >= deadline + CLOSE_WINDOW
    assert all(r == 1 for t, r in world.seen if t < deadline + CLOSE_WINDOW)
    assert coordinator.events.RoundClosed().get_logs(from_block=0) == []
    assert read_model_words(coordinator) == model_before
    assert read_round(coordinator).number == 2
    # its submission was paid on submit, and that stays
    assert [o.round_number for o in outcomes] == [1]
    assert (
        int(coordinator.functions.credit(participants[0].account).call()) == outcomes[0].reward_wei
    )


def test_outcomes_are_reported_once_per_round(
    isolated: Chain, coordinator: Contract, participants: list[Participant]
) -> None:
    # Prepare: the other two submit whenever client 0's loop sleeps; nobody else closes
    outcomes: list[RoundOutcome] = []
    closes: list[tuple[int, int]] = []
    world = World(isolated, coordinator, others=participants[1:], step=1200)
    # Execute: two rounds
    returned = loop_of(participants[0], world, outcomes=outcomes, closes=closes).run(2)
    # Assert
    assert [o.round_number for o in outcomes] == [1, 2]
    assert returned == outcomes
    assert all(o.account == participants[0].account for o in outcomes)
    assert [r for r, _ in closes] == [1, 2]  # nobody else closes: it did, after the grace
    assert read_round(coordinator).number == 3
    closed = coordinator.events.RoundClosed().get_logs(from_block=0)
    assert [(e["args"]["round"], e["args"]["submissions"]) for e in closed] == [(1, 3), (2, 3)]
    accepted = coordinator.events.SubmissionAccepted().get_logs(
        from_block=0, argument_filters={"client": participants[0].account}
    )
    assert [e["args"]["round"] for e in accepted] == [1, 2]  # one submission a round


def test_a_relayed_participant_reports_every_round_the_close_settled(
    isolated: Chain,
    coordinator: Contract,
    participants: list[Participant],
    clients: list[str],
    relayer: str,
) -> None:
    # Prepare: client 0 hands its updates to a relay, which registers and closes as it polls;
    # clients 1 and 2 submit directly
    relay = Relay(chain=isolated, contract=coordinator, account=relayer, view=participants[0].view)
    relayed = make_participant(
        isolated,
        coordinator,
        clients[0],
        0,
        lambda context: RelayedPath(context, relay, fallback_margin=60),
    )
    outcomes: list[RoundOutcome] = []
    world = World(isolated, coordinator, others=participants[1:], relay=relay)
    # Execute: two rounds; the relay settles client 0's update in each round's close
    returned = loop_of(relayed, world, closer=False, outcomes=outcomes).run(2)
    # Assert: both rounds reported, once each, as relayed and gasless
    assert [(o.round_number, o.relayed, o.gas_used) for o in outcomes] == [
        (1, True, 0),
        (2, True, 0),
    ]
    assert returned == outcomes
    closed = coordinator.events.RoundClosed().get_logs(from_block=0)
    assert [(e["args"]["round"], e["args"]["submissions"]) for e in closed] == [(1, 3), (2, 3)]


# ---------------------------------------------------------------- a node that does not answer


def test_a_node_that_stops_answering_is_waited_for(
    isolated: Chain,
    coordinator: Contract,
    participants: list[Participant],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Prepare: after client 0 submitted, the node fails three reads, then answers again
    real = read_round
    calls = {"n": 0}

    def flaky(contract: Contract) -> Any:
        calls["n"] += 1
        if 2 <= calls["n"] <= 4:
            raise requests.ConnectionError("connection refused")
        return real(contract)

    monkeypatch.setattr("fl_client.runner.read_round", flaky)  # what the loop reads
    outcomes: list[RoundOutcome] = []
    world = World(isolated, coordinator, others=participants[1:], step=1200)
    # Execute
    with caplog.at_level(logging.WARNING, logger="fl_client.runner"):
        loop_of(participants[0], world, outcomes=outcomes).run(1)
    # Assert: it waited, said so, and carried on; one outcome
    assert (
        "the node does not answer (connection refused); waiting for it (up to 60 s)" in caplog.text
    )
    assert "the node answers again after" in caplog.text
    assert caplog.text.count("does not answer") == 1  # one outage, reported once
    assert [o.round_number for o in outcomes] == [1]
    assert read_round(coordinator).number == 2


def test_a_node_that_never_answers_raises_node_unreachable_after_the_timeout(
    isolated: Chain,
    coordinator: Contract,
    participants: list[Participant],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def down(contract: Contract) -> Any:
        raise requests.ConnectionError("connection refused")

    monkeypatch.setattr("fl_client.runner.read_round", down)
    world = World(isolated, coordinator)
    loop = loop_of(participants[0], world, timeout=1.0, sleep=lambda _s: time.sleep(0.05))
    with pytest.raises(
        NodeUnreachableError,
        match=r"client 0 \(.*\): the node has not answered for 1 s \(limit 1 s\): connection refused",
    ):
        loop.run(1)


def test_an_unreachable_url_raises_node_unreachable_after_the_timeout(
    isolated: Chain, coordinator: Contract, participants: list[Participant]
) -> None:
    # Prepare: the participant's contract handle points at a port where nothing listens
    dead = Web3(HTTPProvider(f"http://127.0.0.1:{free_port()}", request_kwargs={"timeout": 2}))
    participant = participants[0]
    participant.contract = dead.eth.contract(
        address=coordinator.address, abi=get_contract("FLCoordinator").abi
    )
    loop = ParticipantLoop(
        participant, None, clients=3, poll_interval=0.05, timeout=1.0, sleep=lambda _s: None
    )
    # Execute / Assert: every read fails after its retries; the loop gives up after its timeout
    with pytest.raises(
        NodeUnreachableError, match=r"the node has not answered for \d+ s \(limit 1 s\)"
    ):
        loop.run(1)


# ---------------------------------------------------------------- a chain that does not move


def test_a_round_that_makes_no_progress_raises_client_state_error(
    isolated: Chain, coordinator: Contract, participants: list[Participant]
) -> None:
    # Only client 0, no closer, and a clock that does not move: round 1 never ends
    world = World(isolated, coordinator, step=0)
    loop = loop_of(participants[0], world, closer=False, timeout=1.0)
    loop.sleep = lambda _s: time.sleep(0.05)
    with pytest.raises(ClientStateError, match=r"client 0 \(.*\): round 1 made no progress in 1 s"):
        loop.run(1)
    assert int(coordinator.functions.roundInfo().call()[3]) == 1  # it did submit


def test_a_coordinator_still_in_setup_is_a_client_state_error(
    isolated: Chain, owner: str, clients: list[str]
) -> None:
    contract = deploy_in_setup(isolated, small_params(), owner=owner)
    participant = make_participant(isolated, contract, clients[0], 0)
    loop = ParticipantLoop(participant, None, clients=3, sleep=lambda _s: None)
    with pytest.raises(
        ClientStateError, match="the coordinator is still in setup; no round is open"
    ):
        loop.run(1)
