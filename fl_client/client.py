"""One participant: one account, its own data shard, a loop over rounds.

A participant reads the open round and the global model from the chain, trains on its shard,
submits the quantized weights, waits for the round to close and starts again. It keeps no state
of its own: everything it needs to resume (which round is open, whether and how far it submitted)
is read from the chain, so it can be started or restarted at any point and never submits twice.
Training is deterministic in (seed, client, round), so a restart mid-way through a segmented
submission recomputes exactly the same words and sends the missing segments.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from web3.contract import Contract

from fl_client.chain import (
    Chain,
    read_model_words,
    read_round,
    round_closed_in,
    send,
    submission_from_receipt,
    submit_words,
)
from fl_client.codec import dequantize, encode, unpack
from fl_client.config import FixedPointFormat
from fl_client.data import Shard
from fl_client.errors import ChainError, ClientStateError, NodeUnreachableError
from fl_client.model import build_model, get_flat_parameters, set_flat_parameters
from fl_client.training import TrainConfig, client_seed, train_local

logger = logging.getLogger(__name__)


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
        submitted_round, segments_done, _, _ = self.contract.functions.submissionOf(
            self.account
        ).call()
        return int(segments_done) if int(submitted_round) == round_number else 0

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

    def step(self) -> RoundOutcome | None:
        """Take part in the open round, unless this account already completed it.

        Returns ``None`` when there is nothing to do in the open round.
        """
        info = read_round(self.contract)
        if info.phase != "Open":
            raise ClientStateError(f"the coordinator is in phase {info.phase}; no round is open")
        done = self.progress(info.number)
        if done >= self.view.num_segments:
            logger.info("client %d already submitted in round %d", self.client_id, info.number)
            return None
        weights, loss = self.train(info.number)
        words, quantized = encode(weights, self.view.fixed_point, expected=self.view.num_weights)
        if quantized.clipped:
            logger.warning(
                "client %d: %d weight(s) clipped to +-%d/%d",
                self.client_id,
                quantized.clipped,
                self.view.fixed_point.max_abs,
                self.view.fixed_point.scale,
            )
        receipts = submit_words(
            self.chain,
            self.contract,
            self.account,
            round_number=info.number,
            sample_count=self.shard.num_samples,
            words=words,
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
            train_loss=loss,
            clipped=quantized.clipped,
            distance=record.distance,
            tier=record.tier,
            reward_wei=record.reward_wei,
            counted=record.counted,
            gas_used=sum(int(r["gasUsed"]) for r in receipts),
            closed_round=closed,
            words=tuple(words),
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

        Polls the round (free calls) every ``poll_interval`` seconds. Once the deadline passed,
        calls ``finalize`` (anyone may), which closes the round when its minimum is reached and
        extends it otherwise. A node that stops answering is waited for, up to ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                info = read_round(self.contract)
                if info.number > round_number:
                    return info.number
                if self.chain.timestamp() >= info.deadline:
                    self.finalize()
            except NodeUnreachableError:
                logger.warning("client %d: node unreachable, waiting", self.client_id)
            sleep(poll_interval)
        raise ClientStateError(f"round {round_number} did not close within {timeout:.0f} s")

    def finalize(self) -> None:
        """Ask the contract to close (or extend) the open round after its deadline."""
        send(self.chain, self.contract.functions.finalize(), self.account, what="finalize")

    def run(
        self,
        rounds: int,
        *,
        poll_interval: float = 0.5,
        timeout: float = 3600.0,
        on_outcome: Callable[[RoundOutcome], None] | None = None,
    ) -> list[RoundOutcome]:
        """Take part until ``rounds`` rounds (counted by the chain's round number) have closed."""
        outcomes: list[RoundOutcome] = []
        while True:
            info = read_round(self.contract)
            if info.number > rounds:
                return outcomes
            outcome = self.step()
            if outcome is not None:
                outcomes.append(outcome)
                if on_outcome is not None:
                    on_outcome(outcome)
            self.wait_for_close(info.number, poll_interval=poll_interval, timeout=timeout)
