"""A participant's process: poll the chain and do whatever is due, round after round.

Each poll reads the open round (a free call) and does what is due: the path's transactions, the
close when this client is the round's designated closer (or when the designated one did not
close in time), ``finalize`` when nobody can close, and the outcome of every round this client
took part in once the chain settled it. A node that stops answering is waited for, and every wait
is bounded: the loop raises a typed error after ``timeout`` seconds without progress.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import requests

from fl_client.chain import RoundInfo, read_round, read_round_details, send
from fl_client.closer import MaskedRoundCloser, RoundCloser
from fl_client.errors import ChainError, ClientStateError, ContractRevertError, NodeUnreachableError
from fl_client.participant import Participant, RoundOutcome

logger = logging.getLogger(__name__)

# What a node that is down (or restarting) looks like from here.
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    NodeUnreachableError,
    requests.ConnectionError,
    requests.Timeout,
    ConnectionError,
)
# Reverts that mean: this account's transaction lost a race for the open round (it moved on).
LOST_RACE = frozenset(
    {
        "CoordinatorWrongRound",
        "CoordinatorWrongPhase",
        "CoordinatorWrongSegment",
        "CoordinatorRoundFull",
        "CoordinatorDeadlinePassed",
        "CoordinatorNotClosable",
        "CoordinatorAlreadySubmitted",
    }
)


class Outage:
    """Tracks one spell of an unreachable node: logs its start and end, bounds its length."""

    def __init__(self, who: str, limit: float) -> None:
        self.who = who
        self.limit = limit
        self.since: float | None = None

    @property
    def active(self) -> bool:
        """Whether the node is unreachable now."""
        return self.since is not None

    def seconds(self) -> float:
        """How long the node has been unreachable."""
        return 0.0 if self.since is None else time.monotonic() - self.since

    def begin(self, exc: BaseException) -> None:
        """The node did not answer; raise NodeUnreachableError once this lasted ``limit`` s."""
        if self.since is None:
            self.since = time.monotonic()
            logger.warning(
                "%s: the node does not answer (%s); waiting for it (up to %.0f s)",
                self.who,
                exc,
                self.limit,
            )
        elif self.seconds() >= self.limit:
            raise NodeUnreachableError(
                f"{self.who}: the node has not answered for {self.seconds():.0f} s "
                f"(limit {self.limit:.0f} s): {exc}"
            ) from exc

    def end(self) -> None:
        """The node answers again."""
        if self.since is not None:
            logger.warning("%s: the node answers again after %.1f s", self.who, self.seconds())
            self.since = None


class ParticipantLoop:
    """Runs one participant until a given number of rounds has closed."""

    def __init__(
        self,
        participant: Participant,
        closer: RoundCloser | MaskedRoundCloser | None,
        *,
        clients: int,
        poll_interval: float = 0.5,
        timeout: float = 3600.0,
        close_grace: float = 10.0,
        on_outcome: Callable[[RoundOutcome], None] | None = None,
        on_close: Callable[[int, int], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``clients`` is how many participants share the closing (the round's designated closer
        is client ``round % clients``); the others close ``close_grace`` seconds after the
        deadline if the round is still not closed."""
        self.participant = participant
        self.closer = closer
        self.clients = max(1, clients)
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.close_grace = close_grace
        self.on_outcome = on_outcome
        self.on_close = on_close  # (round, gas) when this client sent a round's closes
        self.sleep = sleep
        self._settled: set[int] = set()

    def run(self, rounds: int) -> list[RoundOutcome]:
        """Take part until round ``rounds`` has closed (by the chain's round number).

        Raises
        ------
        NodeUnreachableError
            The node did not answer for ``timeout`` seconds.
        ClientStateError
            The chain made no progress (no new round) within ``timeout`` seconds.
        """
        outcomes: list[RoundOutcome] = []
        awaiting: set[int] = set()  # rounds this client acted in, not settled yet
        outage = Outage(str(self.participant), self.timeout)
        seen_round, progress_at = -1, time.monotonic()
        while True:
            try:
                info = read_round(self.participant.contract)
                if outage.active:
                    outage.end()
                    progress_at = time.monotonic()  # the outage was bounded on its own
                if info.number != seen_round:
                    seen_round, progress_at = info.number, time.monotonic()
                if info.phase == "Setup":
                    raise ClientStateError("the coordinator is still in setup; no round is open")
                if info.number <= rounds:
                    self._act(info, awaiting)
                self._settle(info, awaiting, outcomes)
                if info.number > rounds and not awaiting:
                    return outcomes
                self._move_on(info)
            except CONNECTION_ERRORS as exc:
                outage.begin(exc)
            # While the node is down the outage bounds the wait (NodeUnreachableError).
            if not outage.active and time.monotonic() - progress_at >= self.timeout:
                raise ClientStateError(
                    f"{self.participant}: round {seen_round} made no progress in {self.timeout:.0f} s"
                )
            self.sleep(self.poll_interval)

    def _act(self, info: RoundInfo, awaiting: set[int]) -> None:
        participant = self.participant
        try:
            calls = participant.pending(info)
            for call in calls:
                receipt = send(
                    participant.chain, call.function, call.sender, value=call.value, what=call.label
                )
                participant.record(info.number, [receipt])
        except ContractRevertError as exc:
            if exc.name not in LOST_RACE:
                raise
            logger.warning("%s: round %d moved on (%s)", participant, info.number, exc)
        trained = participant.trained_round
        if trained == info.number and trained not in self._settled:
            awaiting.add(info.number)

    def _settle(self, info: RoundInfo, awaiting: set[int], outcomes: list[RoundOutcome]) -> None:
        for number in sorted(awaiting):
            outcome = self.participant.outcome(number)
            if outcome is not None:
                outcomes.append(outcome)
                awaiting.discard(number)
                self._settled.add(number)
                if self.on_outcome is not None:
                    self.on_outcome(outcome)
            elif info.number > number:
                # The round ended without settling this update (left out by a relay, or abandoned).
                logger.warning(
                    "%s: round %d ended without settling its update", self.participant, number
                )
                awaiting.discard(number)
                self._settled.add(number)

    def _move_on(self, info: RoundInfo) -> None:
        """Close the round when due, or end it when nobody can."""
        participant = self.participant
        now = participant.chain_time()
        designated = info.number % self.clients == participant.client_id % self.clients
        try:
            if self.closer is not None and self.closer.closable(info, now):
                if designated or now >= info.deadline + self.close_grace:
                    receipts = self.closer.close(now=now)
                    participant.record(info.number, receipts)
                    if receipts and self.on_close is not None:
                        self.on_close(info.number, sum(int(r["gasUsed"]) for r in receipts))
                return
            if self._finalize_due(info, now):
                receipt = send(
                    participant.chain,
                    participant.contract.functions.finalize(),
                    participant.account,
                    what="finalize",
                )
                participant.record(info.number, [receipt])
        except ContractRevertError as exc:
            if exc.name not in LOST_RACE:
                raise
            logger.info(
                "%s: another account moved round %d on first (%s)", participant, info.number, exc
            )
        except ChainError as exc:
            if isinstance(exc, NodeUnreachableError):
                raise
            logger.warning("%s: cannot close round %d yet (%s)", participant, info.number, exc)

    def _finalize_due(self, info: RoundInfo, now: int) -> bool:
        mode = self.participant.view.mode
        if info.phase == "Commit" or (mode == "secure_aggregation" and info.phase == "Open"):
            return now >= info.deadline
        if info.phase in ("Open", "Reveal"):
            # A round that holds its minimum can be closed from the window's end: finalize only
            # one more window later (the contract's rule).
            view = self.participant.view
            extra = view.close_window if info.submissions >= view.minimum else 0
            return now >= read_round_details(self.participant.contract).window_ends + extra
        return False
