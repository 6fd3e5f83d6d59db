"""Many participants of one deployment in one process: the simulation's and the benchmarks' engine.

A round is played in passes. Each pass asks every selected participant for the transactions its
path wants sent and sends them all at once (``send_all``: on a node, concurrently, so that a round
takes about one block, not one block per client); relayed clients hand their signed updates to the
in-process relay, which registers them. When the round can close, the closer (the relay, if the
federation has relayed clients, else the designated participant) sends the closes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from web3.contract import Contract

from fl_client.chain import Chain, CoordinatorView, read_round, send, send_all
from fl_client.closer import MaskedRoundCloser, RoundCloser, closer_for
from fl_client.errors import ChainError
from fl_client.participant import Participant, RoundOutcome
from fl_client.paths import (
    CommitRevealPath,
    DirectPath,
    MaskedPath,
    PathContext,
    RelayedPath,
    SubmissionPath,
)
from fl_client.privacy import DPConfig
from fl_client.relay import Relay
from fl_client.trainer import LocalTrainer

logger = logging.getLogger(__name__)

# Passes per round: commit-reveal needs two (commit, reveal), secure aggregation three (keys,
# shares, masked words) and a fourth when members dropped out (their shares); the rest one.
MAX_PASSES = 5


@dataclass(frozen=True)
class Member:
    """One participant to be: its account, trainer, secret and path."""

    account: str
    trainer: LocalTrainer
    secret: bytes
    relayed: bool = False


class Federation:
    """The participants of one deployment, their relay and their closer."""

    def __init__(
        self,
        *,
        chain: Chain,
        contract: Contract,
        members: Sequence[Member],
        closer_account: str,
        privacy: DPConfig | None = None,
        fallback_margin: int = 60,
    ) -> None:
        self.chain = chain
        self.contract = contract
        self.view = CoordinatorView.read(chain, contract)
        self.relay: Relay | None = None
        if any(m.relayed for m in members):
            self.relay = Relay(
                chain=chain, contract=contract, account=closer_account, view=self.view
            )
        self.closer: RoundCloser | MaskedRoundCloser = (
            self.relay.closer
            if self.relay is not None
            else closer_for(chain=chain, contract=contract, account=closer_account, view=self.view)
        )
        self.participants = [
            Participant(
                chain=chain,
                contract=contract,
                account=member.account,
                client_id=index,
                trainer=member.trainer,
                path=self._path(member, fallback_margin),
                view=self.view,
                secret=member.secret,
                privacy=privacy,
            )
            for index, member in enumerate(members)
        ]

    def _path(self, member: Member, fallback_margin: int) -> SubmissionPath:
        context = PathContext(self.chain, self.contract, member.account, self.view, member.secret)
        mode = self.view.mode
        if mode == "commit_reveal":
            return CommitRevealPath(context)
        if mode == "secure_aggregation":
            return MaskedPath(context)
        if member.relayed:
            assert self.relay is not None
            return RelayedPath(context, self.relay, fallback_margin=fallback_margin)
        return DirectPath(context)

    def play_round(
        self,
        round_number: int,
        selected: Sequence[int],
        *,
        on_submitted: Callable[[Participant], None] | None = None,
    ) -> list[RoundOutcome]:
        """Play ``round_number`` with the participants ``selected`` until it closes.

        Raises
        ------
        ChainError
            The round is not the open one, or did not close after the passes.
        """
        info = read_round(self.contract)
        if info.number != round_number:
            raise ChainError(
                f"expected round {round_number} to be open, the contract is at {info.number}"
            )
        chosen = [self.participants[i] for i in selected]
        for _ in range(MAX_PASSES):
            now = self.chain.timestamp()
            batch = [(p, call) for p in chosen for call in p.pending(info, now=now)]
            receipts = send_all(self.chain, [call for _, call in batch])
            for (participant, _), receipt in zip(batch, receipts, strict=True):
                participant.record(round_number, [receipt])
            if on_submitted is not None:
                for participant in dict.fromkeys(p for p, _ in batch):
                    on_submitted(participant)
            if self.relay is not None:
                self.relay.register()
            info = read_round(self.contract)
            if info.phase == "Commit" and info.number == round_number and not batch:
                self._finalize(info.deadline)  # nobody else will commit: open the reveals
                info = read_round(self.contract)
            if info.number == round_number and self.closer.closable(info, self.chain.timestamp()):
                self.closer.close(now=self.chain.timestamp())
                info = read_round(self.contract)
            if info.number != round_number:
                break
        if info.number == round_number:
            raise ChainError(
                f"round {round_number} did not close ({info.phase}, {info.submissions} submissions)"
            )
        outcomes = [p.outcome(round_number) for p in chosen]
        return [o for o in outcomes if o is not None]

    def _finalize(self, deadline: int) -> None:
        if self.chain.timestamp() < deadline:
            self.chain.advance_time(deadline - self.chain.timestamp())
        send(self.chain, self.contract.functions.finalize(), self.closer.account, what="finalize")
