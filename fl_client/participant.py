"""One participant: one account, its own local training, one submission path.

A participant reads the global model from the chain, trains once per round (deterministically,
so that a restarted process computes the same words), and asks its path which transactions to
send. What it earned is read back from the chain: the event that settled its update (its own
submission, or the close that measured a relayed one). It keeps no state that the chain does not
hold, so it can be restarted at any point and never submits twice.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from web3.contract import Contract
from web3.types import TxReceipt

from fl_client.chain import (
    Call,
    Chain,
    CoordinatorView,
    RoundInfo,
    read_model_words,
    reward_settled,
    round_closed_in,
    settlement_receipt,
    submissions_in,
)
from fl_client.client_secret import derive
from fl_client.codec import Quantized, dequantize, encode, unpack
from fl_client.errors import ClientStateError
from fl_client.paths import SubmissionPath, Update
from fl_client.privacy import DPConfig, privatize
from fl_client.trainer import LocalTrainer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoundOutcome:
    """What one participant did and earned in one round."""

    round_number: int
    client_id: int
    account: str
    path: str
    sample_count: int
    train_loss: float
    clipped: int
    distance: int
    tier: int
    reward_wei: int
    counted: bool
    relayed: bool
    gas_used: int  # this account's own transactions in the round (a relayed client pays none)
    closed_round: bool  # this account's transaction closed the round
    words: tuple[int, ...]
    train_seconds: float = 0.0
    dp_clipped: bool = False  # DP: the update was clipped to the clipping norm


@dataclass(frozen=True)
class _Trained:
    """The update computed for one round, kept so that a retried submission does not retrain."""

    update: Update
    quantized: Quantized
    loss: float
    seconds: float
    dp_clipped: bool


class Participant:
    """One federated-learning client bound to one account and one submission path."""

    def __init__(
        self,
        *,
        chain: Chain,
        contract: Contract,
        account: str,
        client_id: int,
        trainer: LocalTrainer,
        path: SubmissionPath,
        view: CoordinatorView,
        secret: bytes,
        privacy: DPConfig | None = None,
    ) -> None:
        """``privacy`` turns on client-side DP; ``secret`` (32 bytes or more, this client's own)
        seeds its salts, its secure-aggregation key and its DP noise."""
        if len(secret) < 32:
            raise ClientStateError("a client secret needs at least 32 bytes")
        if view.num_weights != trainer.num_weights:
            raise ClientStateError(
                f"the contract holds {view.num_weights} weights but the model has "
                f"{trainer.num_weights}: wrong dataset or model for this deployment?"
            )
        self.chain = chain
        self.contract = contract
        self.account = account
        self.client_id = client_id
        self.trainer = trainer
        self.path = path
        self.view = view
        self.privacy = privacy
        self._secret = secret
        self._trained: _Trained | None = None
        # The previous round's update too: a relayed update settles at its round's close, which a
        # participant may see only after it trained for the next round.
        self._previous: _Trained | None = None
        self._gas: dict[int, int] = defaultdict(int)
        self._closed: set[int] = set()

    def __repr__(self) -> str:
        return f"client {self.client_id} ({self.account})"

    # ------------------------------------------------------------ reading the chain

    def global_weights(self) -> np.ndarray:
        """The global model as float weights."""
        words = read_model_words(self.contract)
        return dequantize(unpack(words, self.view.num_weights), self.view.fixed_point)

    def chain_time(self) -> int:
        """The time the next block will carry, as far as this client can tell: the latest
        block's timestamp, or the wall clock when that is later (a node that mines only on demand
        makes no blocks while idle)."""
        return max(self.chain.timestamp(), int(time.time()))

    # ------------------------------------------------------------ one round

    def trained(self, round_number: int) -> _Trained:
        """This client's update for ``round_number``, trained once per round."""
        if self._trained is not None and self._trained.update.round_number == round_number:
            return self._trained
        started = time.perf_counter()
        global_weights = self.global_weights()
        fit = self.trainer.fit(global_weights, round_number=round_number)
        weights, dp_clipped = fit.weights, False
        if self.privacy is not None:
            # Seeded by the secret: anyone who could recompute the noise could subtract it.
            seed = int.from_bytes(derive(self._secret, "dp", round_number)[:8], "big")
            noisy = privatize(global_weights, weights, self.privacy, seed=seed)
            weights, dp_clipped = noisy.weights, noisy.clipped
        words, quantized = encode(weights, self.view.fixed_point, expected=self.view.num_weights)
        if quantized.clipped:
            logger.warning(
                "%s: %d weight(s) clipped to +-%d/%d",
                self,
                quantized.clipped,
                self.view.fixed_point.max_abs,
                self.view.fixed_point.scale,
            )
        update = Update(round_number, tuple(words), quantized.values, self.trainer.num_samples)
        self._previous = self._trained
        self._trained = _Trained(
            update, quantized, fit.loss, time.perf_counter() - started, dp_clipped
        )
        return self._trained

    @property
    def trained_round(self) -> int | None:
        """The round this process last trained for (it acted in that round)."""
        return None if self._trained is None else self._trained.update.round_number

    def pending(self, info: RoundInfo, *, now: int | None = None) -> list[Call]:
        """The transactions this participant should send now (its path decides)."""
        return self.path.act(
            info,
            lambda: self.trained(info.number).update,
            now=self.chain_time() if now is None else now,
        )

    def record(self, round_number: int, receipts: Sequence[TxReceipt]) -> None:
        """Count the gas of this account's transactions of ``round_number``."""
        for receipt in receipts:
            self._gas[round_number] += int(receipt["gasUsed"])
            if round_closed_in(self.contract, receipt) == round_number:
                self._closed.add(round_number)

    def outcome(self, round_number: int) -> RoundOutcome | None:
        """What this participant's update earned in ``round_number``, from the event that settled
        it; ``None`` when it is not settled (yet), or was trained by another process."""
        trained = next(
            (
                t
                for t in (self._trained, self._previous)
                if t is not None and t.update.round_number == round_number
            ),
            None,
        )
        if trained is None:
            return None
        if self.view.mode == "secure_aggregation":
            # A masked update has no distance; the close pays every survivor the first tier.
            settled = reward_settled(self.contract, self.account, round_number)
            if settled is None:
                return None
            sample_count, counted, relayed = trained.update.sample_count, True, False
            distance, tier, reward = settled.distance, settled.tier, settled.reward_wei
        else:
            receipt = settlement_receipt(self.chain, self.contract, self.account, round_number)
            if receipt is None:
                return None
            record = next(
                r for r in submissions_in(self.contract, receipt) if r.client == self.account
            )
            sample_count, counted, relayed = record.sample_count, record.counted, record.relayed
            distance, tier, reward = record.distance, record.tier, record.reward_wei
            if self.view.reward_reference != "current" and record.counted:
                # The close measures the update against the round's new model and pays then.
                settled = reward_settled(self.contract, self.account, round_number)
                if settled is None:
                    return None
                distance, tier, reward = settled.distance, settled.tier, settled.reward_wei
        return RoundOutcome(
            round_number=round_number,
            client_id=self.client_id,
            account=self.account,
            path=self.path.name,
            sample_count=sample_count,
            train_loss=trained.loss,
            clipped=trained.quantized.clipped,
            distance=distance,
            tier=tier,
            reward_wei=reward,
            counted=counted,
            relayed=relayed,
            gas_used=self._gas.get(round_number, 0),
            closed_round=round_number in self._closed,
            words=trained.update.words,
            train_seconds=trained.seconds,
            dp_clipped=trained.dp_clipped,
        )
