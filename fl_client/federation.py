"""Many participants of one deployment in one process: the simulation's and the benchmarks' engine.

A round is played in passes. Each pass asks every selected participant for the transactions its
path wants sent and sends them all at once (``send_all``: on a node, concurrently, so that a round
takes about one block, not one block per client); relayed clients hand their signed updates to the
in-process relay, which registers them. When the round can close, the closer (the relay, if the
federation has relayed clients, else the designated participant) sends the closes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from web3.contract import Contract

from fl_client.chain import Chain, CoordinatorView, RoundInfo, read_round, send, send_all
from fl_client.closer import MaskedRoundCloser, RoundCloser, closer_for
from fl_client.errors import ChainError
from fl_client.participant import Participant, RoundOutcome
from fl_client.paths import PathContext, SubmissionPath, path_for
from fl_client.privacy import DPConfig
from fl_client.relay import Relay
from fl_client.trainer import LocalTrainer

logger = logging.getLogger(__name__)

# Passes per round: commit-reveal needs two (commit, reveal), secure aggregation three (keys,
# shares, masked words) and a fourth when members dropped out (their shares); the rest one.
MAX_PASSES = 5
# The phases in which a member sends its update (what a dropped member no longer does).
_SUBMITTING = frozenset({"Open", "Reveal", "Recover"})


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
        relay = self.relay if member.relayed else None
        return path_for(context, relay, fallback_margin=fallback_margin)

    def play_round(
        self,
        round_number: int,
        selected: Sequence[int],
        *,
        dropouts: Collection[int] = (),
        on_submitted: Callable[[Participant], None] | None = None,
    ) -> list[RoundOutcome]:
        """Play ``round_number`` with the participants ``selected`` until it closes or ends.

        The participants in ``dropouts`` stop before their update: they register and post their
        shares (secure aggregation) or commit (commit-reveal), then send nothing more. When the
        others are done and the round waits for them, the clock moves past the phase's deadline
        (test chains only) and ``finalize`` moves the round on: a recovery of the dropped members'
        masks, or the round's end.

        Raises
        ------
        ChainError
            The round is not the open one, or did not move on after the passes.
        """
        info = read_round(self.contract)
        if info.number != round_number:
            raise ChainError(
                f"expected round {round_number} to be open, the contract is at {info.number}"
            )
        chosen = [self.participants[i] for i in selected]
        dropped = {self.participants[i].account for i in dropouts}
        for _ in range(MAX_PASSES + 2):
            now = self.chain.timestamp()
            batch = [
                (p, call)
                for p in chosen
                if not (p.account in dropped and info.phase in _SUBMITTING)
                for call in p.pending(info, now=now)
            ]
            receipts = send_all(self.chain, [call for _, call in batch])
            for (participant, _), receipt in zip(batch, receipts, strict=True):
                participant.record(round_number, [receipt])
            if on_submitted is not None:
                for participant in dict.fromkeys(p for p, _ in batch):
                    on_submitted(participant)
            if self.relay is not None:
                self.relay.register()
            info = read_round(self.contract)
            if info.number == round_number and self.closer.closable(info, self.chain.timestamp()):
                self.closer.close(now=self.chain.timestamp())
                info = read_round(self.contract)
            elif info.number == round_number and not batch:
                # Nobody has anything left to send: the round waits for its deadline.
                self._move_on(info)
                info = read_round(self.contract)
            if info.number != round_number:
                break
        if info.number == round_number:
            raise ChainError(
                f"round {round_number} did not move on ({info.phase}, {info.submissions} submissions)"
            )
        outcomes = [p.outcome(round_number) for p in chosen]
        return [o for o in outcomes if o is not None]

    def _move_on(self, info: RoundInfo) -> None:
        """Move the clock to the phase's deadline (test chains only); close the round if it can
        close then, else call ``finalize`` (after the close window when it would end the round)."""
        if self.chain.timestamp() < info.deadline:
            self.chain.advance_time(info.deadline - self.chain.timestamp())
        now = self.chain.timestamp()
        if self.closer.closable(read_round(self.contract), now):
            self.closer.close(now=now)
            return
        if info.phase in ("Open", "Reveal") and self.view.mode != "secure_aggregation":
            self.chain.advance_time(self.view.close_window)  # ending a round waits for the window
        send(self.chain, self.contract.functions.finalize(), self.closer.account, what="finalize")
