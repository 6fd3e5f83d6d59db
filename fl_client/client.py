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
import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import requests
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from web3.contract import Contract
from web3.types import TxReceipt

from fl_client.chain import (
    MODE_CODES,
    Chain,
    RoundInfo,
    call_with_retry,
    commit_words,
    read_cohort,
    read_model_words,
    read_round,
    reveal_words,
    round_closed_in,
    send,
    submission_from_receipt,
    submission_receipt,
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
from fl_client.privacy import (
    DPConfig,
    MaskContext,
    masked_words,
    pair_seed,
    private_key_from_seed,
    privatize,
    public_key_bytes,
)
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
    dp_clipped: bool = False  # DP: the update was clipped to the clipping norm


@dataclass(frozen=True)
class ContractView:
    """The deployment parameters a participant needs, read once."""

    num_weights: int
    words_per_segment: int
    num_segments: int
    fixed_point: FixedPointFormat
    mode: str = "direct"
    lane_bits: int = 16
    sample_weighted: bool = False
    cohort_size: int = 0  # secure aggregation: the cohort is the round's target

    @classmethod
    def read(cls, contract: Contract) -> ContractView:
        """Read them from the contract (free calls)."""
        functions = contract.functions
        modes = {code: name for name, code in MODE_CODES.items()}
        return cls(
            num_weights=int(functions.numWeights().call()),
            words_per_segment=int(functions.wordsPerSegment().call()),
            num_segments=int(functions.numSegments().call()),
            fixed_point=FixedPointFormat(
                scale=int(functions.scale().call()), max_abs=int(functions.maxAbsWeight().call())
            ),
            mode=modes[int(functions.mode().call())],
            lane_bits=int(functions.laneBits().call()),
            sample_weighted=int(functions.aggregation().call()) == 1,
            cohort_size=int(functions.targetSubmissions().call()),
        )


@dataclass(frozen=True)
class _Trained:
    """The update computed for one round, kept so that a retried submission does not retrain."""

    round_number: int
    words: list[int]
    quantized: Quantized
    loss: float
    seconds: float
    dp_clipped: bool = False


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


def simulation_secret(seed: int, client_id: int) -> bytes:
    """A reproducible client secret for simulations, tests and benchmarks, derived from the run's
    seed. Not secret: anyone who knows the seed can recompute the salts, masks and DP noise."""
    return hashlib.sha256(f"fl-simulation|{seed}|{client_id}".encode()).digest()


def load_secret(path: Path) -> bytes:
    """This client's secret, kept in ``path`` (created with 32 random bytes, mode 0600)."""
    if path.exists():
        secret = path.read_bytes()
        if len(secret) < 32:
            raise ClientStateError(f"the client secret in {path} is too short")
        return secret
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = os.urandom(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(secret)
    return secret


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
        privacy: DPConfig | None = None,
        secret: bytes,
    ) -> None:
        """``privacy`` turns on client-side DP. ``secret`` (32 bytes or more, known to this client
        only) seeds the commit-reveal salts, the secure-aggregation key and the DP noise: whoever
        knows it can recompute them, so a real client keeps a random one (``load_secret``) and a
        restarted process reads the same one back."""
        self.chain = chain
        self.contract = contract
        self.account = account
        self.client_id = client_id
        self.shard = shard
        self.train_config = train_config
        self.seed = seed
        self.view = view or ContractView.read(contract)
        self.privacy = privacy
        if len(secret) < 32:
            raise ClientStateError("a client secret needs at least 32 bytes")
        self._secret = secret
        self._model = build_model(num_features, num_classes, seed=seed)
        self._trained: _Trained | None = None
        self._commit_gas = (0, 0)  # (round, gas) of this process's latest commit
        self._register_gas = 0  # gas of the key registration, counted with the next submission
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
        dp_clipped = False
        if self.privacy is not None:
            # The noise comes from the secret: anyone who could recompute it could subtract it.
            noise_seed = int.from_bytes(
                hashlib.sha256(self._secret + b"|dp|" + round_number.to_bytes(8, "big")).digest()[
                    :8
                ],
                "big",
            )
            noisy = privatize(self.global_weights(), weights, self.privacy, seed=noise_seed)
            weights = noisy.weights
            dp_clipped = noisy.clipped
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
        self._trained = _Trained(round_number, words, quantized, loss, seconds, dp_clipped)
        return self._trained

    def step(self, round_number: int | None = None) -> RoundOutcome | None:
        """Take the next action in the open round, unless this account has none left.

        Direct mode: submit. Commit-reveal: commit in the commit phase (returns ``None``), reveal
        in the reveal phase. Secure aggregation: register the key once, then submit masked words
        when the cohort is complete. With ``round_number``, only in that round: when another one
        is open (that round closed meanwhile) there is nothing to do. Returns the outcome of a
        completed submission, ``None`` when there is nothing (more) to do for now.
        """
        info = read_round(self.contract)
        if info.phase == "Setup":
            raise ClientStateError("the coordinator is still in setup; no round is open")
        if round_number is not None and info.number != round_number:
            logger.info("client %d: round %d is over", self.client_id, round_number)
            return None
        if info.phase == "Commit":
            self._commit(info)
            return None
        if self.view.mode == "secure_aggregation":
            return self._submit_masked(info)
        done = self.progress(info.number)
        if done >= self.view.num_segments:
            logger.info("client %d already submitted in round %d", self.client_id, info.number)
            return None
        if info.phase == "Reveal":
            return self._reveal(info, done)
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
        return self._outcome(info.number, update, receipts)

    def _outcome(
        self, round_number: int, update: _Trained, receipts: list[TxReceipt]
    ) -> RoundOutcome:
        record = submission_from_receipt(self.contract, receipts[-1])
        if record is None:  # pragma: no cover - the contract always emits on the last segment
            raise ChainError(
                "the last segment was accepted but no SubmissionAccepted event was found"
            )
        closed = any(round_closed_in(self.contract, receipt) is not None for receipt in receipts)
        logger.info(
            "client %d round %d: distance %d, tier %s, reward %d wei",
            self.client_id,
            round_number,
            record.distance,
            "none" if record.tier == 255 else record.tier,
            record.reward_wei,
        )
        return RoundOutcome(
            round_number=round_number,
            client_id=self.client_id,
            account=self.account,
            sample_count=self.shard.num_samples,
            train_loss=update.loss,
            clipped=update.quantized.clipped,
            distance=record.distance,
            tier=record.tier,
            reward_wei=record.reward_wei,
            counted=record.counted,
            # commit-reveal: the commit's gas belongs to the same submission
            gas_used=sum(int(r["gasUsed"]) for r in receipts)
            + (self._commit_gas[1] if self._commit_gas[0] == round_number else 0)
            + self._take_register_gas(),
            closed_round=closed,
            words=tuple(update.words),
            train_seconds=update.seconds,
            dp_clipped=update.dp_clipped,
        )

    def recover_outcome(self, round_number: int) -> RoundOutcome | None:
        """The outcome of a submission this process computed for ``round_number`` and that landed,
        read back from the chain (``None`` when there is none, or it is another process's)."""
        update = self._trained
        if update is None or update.round_number != round_number:
            return None
        if self.progress(round_number) < self.view.num_segments:
            return None
        receipt = submission_receipt(self.chain, self.contract, self.account, round_number)
        if receipt is None:
            return None
        return self._outcome(round_number, update, [receipt])

    def _take_register_gas(self) -> int:
        gas, self._register_gas = self._register_gas, 0
        return gas

    # ------------------------------------------------------------ commit-reveal

    def salt(self, round_number: int) -> bytes:
        """This client's salt for ``round_number`` (derived from its secret: a restart finds it)."""
        return hashlib.sha256(self._secret + b"|salt|" + round_number.to_bytes(8, "big")).digest()

    def committed(self, round_number: int) -> bool:
        """Whether this account committed in ``round_number``."""
        value = call_with_retry(
            lambda: self.contract.functions.commitments(round_number, self.account).call()
        )
        return bytes(value) != bytes(32)

    def _commit(self, info: RoundInfo) -> None:
        if self.committed(info.number):
            logger.info("client %d already committed in round %d", self.client_id, info.number)
            return
        update = self._update_for(info.number)
        receipt = commit_words(
            self.chain,
            self.contract,
            self.account,
            round_number=info.number,
            sample_count=self.shard.num_samples,
            words=update.words,
            words_per_segment=self.view.words_per_segment,
            salt=self.salt(info.number),
        )
        self._commit_gas = (info.number, int(receipt["gasUsed"]))
        logger.info("client %d committed in round %d", self.client_id, info.number)

    def _reveal(self, info: RoundInfo, done: int) -> RoundOutcome | None:
        if not self.committed(info.number):
            logger.warning(
                "client %d: no commitment in round %d, nothing to reveal",
                self.client_id,
                info.number,
            )
            return None
        update = self._update_for(info.number)
        receipts = reveal_words(
            self.chain,
            self.contract,
            self.account,
            round_number=info.number,
            sample_count=self.shard.num_samples,
            words=update.words,
            words_per_segment=self.view.words_per_segment,
            salt=self.salt(info.number),
            start_segment=done,
        )
        return self._outcome(info.number, update, receipts)

    # ------------------------------------------------------------ secure aggregation

    def _key(self) -> X25519PrivateKey:
        return private_key_from_seed(hashlib.sha256(self._secret + b"|x25519").digest())

    def register(self) -> bool:
        """Register this client's X25519 key in the cohort (once); whether a key was sent."""
        registered = call_with_retry(
            lambda: self.contract.functions.publicKeyOf(self.account).call()
        )
        if bytes(registered) != bytes(32):
            return False
        public = public_key_bytes(self._key())
        receipt = send(
            self.chain,
            self.contract.functions.registerKey(public),
            self.account,
            what="registerKey",
        )
        self._register_gas = int(receipt["gasUsed"])
        return True

    def _submit_masked(self, info: RoundInfo) -> RoundOutcome | None:
        self.register()
        cohort = read_cohort(self.contract)
        if len(cohort) < self.view.cohort_size:
            logger.info(
                "client %d: cohort %d/%d, waiting",
                self.client_id,
                len(cohort),
                self.view.cohort_size,
            )
            return None
        if self.progress(info.number) >= self.view.num_segments:
            return None
        update = self._update_for(info.number)
        own = self._key()
        index = [account for account, _ in cohort].index(self.account)
        context = MaskContext(
            int(self.chain.w3.eth.chain_id), str(self.contract.address), info.number
        )
        seeds = {j: pair_seed(own, key, context) for j, (_, key) in enumerate(cohort) if j != index}
        weight = self.shard.num_samples if self.view.sample_weighted else 1
        words = masked_words(
            update.quantized.values,
            weight=weight,
            lane_bits=self.view.lane_bits,
            own_index=index,
            peer_seeds=seeds,
        )
        function = self.contract.functions.submitMasked(info.number, self.shard.num_samples, words)
        receipt = send(self.chain, function, self.account, what=f"submitMasked round {info.number}")
        return self._outcome(info.number, update, [receipt])

    # ------------------------------------------------------------ the loop

    def wait_for_close(
        self,
        round_number: int,
        *,
        phase: str | None = None,
        poll_interval: float = 0.5,
        timeout: float = 3600.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> int:
        """Block until ``round_number`` closed (or, given ``phase``, left that phase); return the
        open round's number.

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
                if info.number > round_number or (phase is not None and info.phase != phase):
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
            if outcome is None and number not in {o.round_number for o in outcomes}:
                # The submission may have landed while this process lost its receipt (the node
                # went away as it waited): the chain's log still tells what it earned.
                outcome = patiently(functools.partial(self.recover_outcome, number))
            if outcome is not None:
                outcomes.append(outcome)
                if on_outcome is not None:
                    on_outcome(outcome)
            if info.phase == "Commit":
                # committed (or too late to): wait for the reveals to open, then reveal
                self.wait_for_close(
                    number,
                    phase="Commit",
                    poll_interval=poll_interval,
                    timeout=timeout,
                    sleep=sleep,
                )
            elif (
                outcome is None
                and self.view.mode == "secure_aggregation"
                and patiently(functools.partial(self.progress, number)) < self.view.num_segments
            ):
                sleep(poll_interval)  # the cohort is not complete yet: look again
            else:
                self.wait_for_close(
                    number, poll_interval=poll_interval, timeout=timeout, sleep=sleep
                )
