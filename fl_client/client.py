"""One participant: one account, its own data shard, a loop over rounds.

A participant reads the open round and the global model from the chain, trains on its shard,
submits the quantized weights, waits for the round to close and starts again. It keeps no state
of its own: everything it needs to resume (which round is open, whether and how far it submitted)
is read from the chain, so it can be started or restarted at any point and never submits twice.
Training is deterministic in (seed, client, round), so a restart mid-way through a segmented
submission recomputes exactly the same words and sends the missing segments.

Waiting is polling with a sleep between polls (free calls, no busy loop). A node that stops
answering is waited for, and every wait is bounded: a round that does not close, or a node that
does not come back, within the timeout ends the loop with a typed error.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import requests
from web3.contract import Contract

from fl_client.chain import (
    Chain,
    RoundInfo,
    call_with_retry,
    read_model_words,
    read_round,
    round_closed_in,
    send,
    submission_from_receipt,
    submit_words,
)
from fl_client.codec import Quantized, dequantize, encode, unpack
from fl_client.config import FixedPointFormat
from fl_client.data import Shard
from fl_client.errors import (
    ChainError,
    ClientStateError,
    ContractRevertError,
    NodeUnreachableError,
)
from fl_client.model import build_model, get_flat_parameters, set_flat_parameters
from fl_client.training import TrainConfig, client_seed, train_local

logger = logging.getLogger(__name__)

T = TypeVar("T")

# What a node that is down (or restarting) looks like from here.
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    NodeUnreachableError,
    requests.ConnectionError,
    requests.Timeout,
    ConnectionError,
)
# Reverts that mean: this account has no part in the open round any more.
NOT_MY_ROUND = frozenset({"CoordinatorWrongRound", "CoordinatorRoundFull"})


@dataclass(frozen=True)
class RoundOutcome:
    """What one participant did in one round."""

    round_number: int
    client_id: int
    account: str
    sample_count: int
    train_loss: float
    clipped: int
    distance: int
    tier: int
    reward_wei: int
    counted: bool
    gas_used: int
    closed_round: bool  # this participant's transaction closed the round
    words: tuple[int, ...]
    train_seconds: float = 0.0  # wall time of the local training for this round


@dataclass(frozen=True)
class ContractView:
    """The deployment parameters a participant needs, read once."""

    num_weights: int
    words_per_segment: int
    num_segments: int
    fixed_point: FixedPointFormat

    @classmethod
    def read(cls, contract: Contract) -> ContractView:
        """Read them from the contract (free calls)."""
        functions = contract.functions
        return cls(
            num_weights=int(functions.numWeights().call()),
            words_per_segment=int(functions.wordsPerSegment().call()),
            num_segments=int(functions.numSegments().call()),
            fixed_point=FixedPointFormat(
                scale=int(functions.scale().call()), max_abs=int(functions.maxAbsWeight().call())
            ),
        )


@dataclass(frozen=True)
class _Trained:
    """The update computed for one round, kept so that a retried submission does not retrain."""

    round_number: int
    words: list[int]
    quantized: Quantized
    loss: float
    seconds: float


class _Outage:
    """Tracks one spell of an unreachable node: logs its start and end, bounds its length."""

    def __init__(self, client_id: int, limit: float) -> None:
        self.client_id = client_id
        self.limit = limit
        self.since: float | None = None

    @property
    def active(self) -> bool:
        return self.since is not None

    def seconds(self) -> float:
        return 0.0 if self.since is None else time.monotonic() - self.since

    def begin(self, exc: BaseException) -> None:
        """The node did not answer; raise NodeUnreachableError once this lasted ``limit`` s."""
        if self.since is None:
            self.since = time.monotonic()
            logger.warning(
                "client %d: the node does not answer (%s); waiting for it (up to %.0f s)",
                self.client_id,
                exc,
                self.limit,
            )
        elif self.seconds() >= self.limit:
            raise NodeUnreachableError(
                f"client {self.client_id}: the node has not answered for {self.seconds():.0f} s "
                f"(limit {self.limit:.0f} s): {exc}"
            ) from exc

    def end(self) -> None:
        if self.since is not None:
            logger.warning(
                "client %d: the node answers again after %.1f s", self.client_id, self.seconds()
            )
            self.since = None


class Participant:
    """One federated-learning client bound to one account."""

    def __init__(
        self,
        *,
        chain: Chain,
        contract: Contract,
        account: str,
        client_id: int,
        shard: Shard,
        num_features: int,
        num_classes: int,
        train_config: TrainConfig,
        seed: int,
        view: ContractView | None = None,
    ) -> None:
        self.chain = chain
        self.contract = contract
        self.account = account
        self.client_id = client_id
        self.shard = shard
        self.train_config = train_config
        self.seed = seed
        self.view = view or ContractView.read(contract)
        self._model = build_model(num_features, num_classes, seed=seed)
        self._trained: _Trained | None = None
        if self.view.num_weights != get_flat_parameters(self._model).size:
            raise ClientStateError(
                f"the contract holds {self.view.num_weights} weights but the model has "
                f"{get_flat_parameters(self._model).size}: wrong dataset for this deployment?"
            )

    # ------------------------------------------------------------ reading the chain

    def global_weights(self) -> np.ndarray:
        """The global model as float weights."""
        words = read_model_words(self.contract)
        return dequantize(unpack(words, self.view.num_weights), self.view.fixed_point)

    def progress(self, round_number: int) -> int:
        """Segments this account already sent in ``round_number`` (0 when none)."""
        submitted_round, segments_done, _, _ = call_with_retry(
            lambda: self.contract.functions.submissionOf(self.account).call()
        )
        return int(segments_done) if int(submitted_round) == round_number else 0

    def chain_time(self) -> int:
        """The time the next block will carry, as far as this client can tell.

        The latest block's timestamp, or the wall clock when that is later: a node that mines
        only on demand (anvil's default) makes no blocks while it is idle, so its latest block can
        be older than a deadline that has passed.
        """
        return max(self.chain.timestamp(), int(time.time()))

    # ------------------------------------------------------------ one round

    def train(self, round_number: int) -> tuple[np.ndarray, float]:
        """Train on the shard from the current global model; the new float weights and the loss."""
        set_flat_parameters(self._model, self.global_weights())
        result = train_local(
            self._model,
            self.shard,
            self.train_config,
            seed=client_seed(self.seed, self.client_id, round_number),
        )
        return get_flat_parameters(self._model), result.loss

    def _update_for(self, round_number: int) -> _Trained:
        """The quantized update for ``round_number``, trained once per round."""
        if self._trained is not None and self._trained.round_number == round_number:
            return self._trained
        started = time.perf_counter()
        weights, loss = self.train(round_number)
        seconds = time.perf_counter() - started
        words, quantized = encode(weights, self.view.fixed_point, expected=self.view.num_weights)
        if quantized.clipped:
            logger.warning(
                "client %d: %d weight(s) clipped to +-%d/%d",
                self.client_id,
                quantized.clipped,
                self.view.fixed_point.max_abs,
                self.view.fixed_point.scale,
            )
        self._trained = _Trained(round_number, words, quantized, loss, seconds)
        return self._trained

    def step(self, round_number: int | None = None) -> RoundOutcome | None:
        """Take part in the open round, unless this account already completed it.

        With ``round_number``, only in that round: when another one is open (that round closed
        meanwhile) there is nothing to do. Returns ``None`` when there is nothing to do.
        """
        info = read_round(self.contract)
        if info.phase != "Open":
            raise ClientStateError(f"the coordinator is in phase {info.phase}; no round is open")
        if round_number is not None and info.number != round_number:
            logger.info("client %d: round %d is over", self.client_id, round_number)
            return None
        done = self.progress(info.number)
        if done >= self.view.num_segments:
            logger.info("client %d already submitted in round %d", self.client_id, info.number)
            return None
        update = self._update_for(info.number)
        receipts = submit_words(
            self.chain,
            self.contract,
            self.account,
            round_number=info.number,
            sample_count=self.shard.num_samples,
            words=update.words,
            words_per_segment=self.view.words_per_segment,
            start_segment=done,
        )
        record = submission_from_receipt(self.contract, receipts[-1])
        if record is None:  # pragma: no cover - the contract always emits on the last segment
            raise ChainError(
                "the last segment was accepted but no SubmissionAccepted event was found"
            )
        closed = any(round_closed_in(self.contract, receipt) is not None for receipt in receipts)
        logger.info(
            "client %d round %d: distance %d, tier %s, reward %d wei",
            self.client_id,
            info.number,
            record.distance,
            "none" if record.tier == 255 else record.tier,
            record.reward_wei,
        )
        return RoundOutcome(
            round_number=info.number,
            client_id=self.client_id,
            account=self.account,
            sample_count=self.shard.num_samples,
            train_loss=update.loss,
            clipped=update.quantized.clipped,
            distance=record.distance,
            tier=record.tier,
            reward_wei=record.reward_wei,
            counted=record.counted,
            gas_used=sum(int(r["gasUsed"]) for r in receipts),
            closed_round=closed,
            words=tuple(update.words),
            train_seconds=update.seconds,
        )

    # ------------------------------------------------------------ the loop

    def wait_for_close(
        self,
        round_number: int,
        *,
        poll_interval: float = 0.5,
        timeout: float = 3600.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> int:
        """Block until ``round_number`` closed; return the open round's number.

        Polls the round (free calls) every ``poll_interval`` seconds. Once the deadline passed
        (by :meth:`chain_time`), calls ``finalize`` (anyone may), which closes the round when its
        minimum is reached and extends it otherwise. A node that stops answering is waited for.

        Raises
        ------
        ClientStateError
            The round did not close within ``timeout`` seconds.
        NodeUnreachableError
            The node was still not answering after ``timeout`` seconds.
        """
        give_up = time.monotonic() + timeout
        outage = _Outage(self.client_id, limit=timeout)
        problem: ChainError | None = None
        while True:
            try:
                info = read_round(self.contract)
                outage.end()
                if info.number > round_number:
                    return info.number
                if self.chain_time() >= info.deadline:
                    self.finalize()
            except CONNECTION_ERRORS as exc:
                outage.begin(exc)
            except ChainError as exc:
                # A finalize that lost a race (another client closed or extended the round in the
                # same block) fails on chain; the next poll sees the new state.
                problem = exc
                logger.warning("client %d: finalize failed (%s)", self.client_id, exc)
            if time.monotonic() >= give_up:
                if outage.active:
                    raise NodeUnreachableError(
                        f"client {self.client_id}: the node has not answered for "
                        f"{outage.seconds():.0f} s while round {round_number} was open"
                    )
                raise ClientStateError(
                    f"round {round_number} did not close within {timeout:.0f} s"
                    + (f" (last problem: {problem})" if problem is not None else "")
                )
            sleep(poll_interval)

    def finalize(self) -> bool:
        """Ask the contract to close (or extend) the open round after its deadline.

        Returns whether a transaction was sent: ``False`` when the round is not closable, because
        its deadline has not passed on chain yet or another client closed or extended it first.
        """
        try:
            send(self.chain, self.contract.functions.finalize(), self.account, what="finalize")
        except ContractRevertError as exc:
            if exc.name == "CoordinatorNotClosable":
                return False
            raise
        return True

    def _patiently(
        self,
        action: Callable[[], T],
        *,
        limit: float,
        poll_interval: float,
        sleep: Callable[[float], None],
    ) -> T:
        """Run ``action``; while the node does not answer, try again each poll, for ``limit`` s."""
        outage = _Outage(self.client_id, limit=limit)
        while True:
            try:
                result = action()
            except CONNECTION_ERRORS as exc:
                outage.begin(exc)
                sleep(poll_interval)
                continue
            outage.end()
            return result

    def run(
        self,
        rounds: int,
        *,
        poll_interval: float = 0.5,
        timeout: float = 3600.0,
        on_outcome: Callable[[RoundOutcome], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> list[RoundOutcome]:
        """Take part until ``rounds`` rounds (counted by the chain's round number) have closed.

        Survives a node that stops answering (during the poll, the training read or the
        submission) for up to ``timeout`` seconds at a time, as well as a round that closes before
        this account's submission lands (it closed at its deadline with the minimum, or filled
        up): the participant then waits for the next round.

        Raises
        ------
        NodeUnreachableError
            The node did not answer for ``timeout`` seconds.
        ClientStateError
            A round did not close within ``timeout`` seconds.
        """
        outcomes: list[RoundOutcome] = []

        def patiently(action: Callable[[], T]) -> T:
            return self._patiently(action, limit=timeout, poll_interval=poll_interval, sleep=sleep)

        def read() -> RoundInfo:
            return read_round(self.contract)

        while True:
            info = patiently(read)
            if info.number > rounds:
                return outcomes
            number = info.number
            try:
                outcome = patiently(functools.partial(self.step, number))
            except ContractRevertError as exc:
                if exc.name not in NOT_MY_ROUND:
                    raise
                logger.warning(
                    "client %d: no part in round %d (%s); waiting for the next round",
                    self.client_id,
                    number,
                    exc,
                )
                outcome = None
            except NodeUnreachableError:
                raise
            except ChainError as exc:
                # Mined but failed: most likely the round closed while the submission waited for
                # its block. Anything else, with the round still open, is a real failure.
                if patiently(read).number == number:
                    raise
                logger.warning(
                    "client %d: round %d closed before its submission landed (%s)",
                    self.client_id,
                    number,
                    exc,
                )
                outcome = None
            if outcome is not None:
                outcomes.append(outcome)
                if on_outcome is not None:
                    on_outcome(outcome)
            self.wait_for_close(number, poll_interval=poll_interval, timeout=timeout, sleep=sleep)
