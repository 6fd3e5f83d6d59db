"""The relayed path: gasless for the client. It signs its update (EIP-712) and hands it to a
relayer, which registers it on-chain and carries its words into the close. A client the relayer
leaves out sees it on-chain and submits directly before the deadline."""

from __future__ import annotations

import logging
from typing import Protocol

from fl_client.chain import Call, RoundInfo, SignedUpdate, sign_update, update_typed_data
from fl_client.codec import segment_hashes, vector_hash
from fl_client.paths.base import PathContext, Update, UpdateFactory
from fl_client.paths.direct import DirectPath

logger = logging.getLogger(__name__)


class RelayEndpoint(Protocol):
    """Where a client hands its signed update: a relay in this process, or one over HTTP."""

    def hand_over(self, update: SignedUpdate) -> None:
        """Take ``update`` for registration; raise on refusal."""
        ...


def signed_update(context: PathContext, update: Update) -> SignedUpdate:
    """``update`` signed by the context's account for the context's coordinator."""
    view = context.view
    typed = update_typed_data(
        chain_id=view.chain_id,
        contract=view.address,
        round_number=update.round_number,
        segments=view.num_segments,
        sample_count=update.sample_count,
        words_hash=vector_hash(update.words, view.words_per_segment),
    )
    return SignedUpdate(
        round_number=update.round_number,
        client=context.account,
        sample_count=update.sample_count,
        segment_hashes=tuple(segment_hashes(update.words, view.words_per_segment)),
        signature=sign_update(context.chain.signer(context.account), typed),
        words=update.words,
    )


class RelayedPath:
    """Hand the signed update to the relay once; fall back to ``submit`` when the relay has not
    registered it ``fallback_margin`` seconds before the deadline."""

    name = "relayed"

    def __init__(self, context: PathContext, relay: RelayEndpoint, *, fallback_margin: int) -> None:
        self.context = context
        self.relay = relay
        self.fallback_margin = fallback_margin
        self._handed: set[int] = set()
        self._direct = DirectPath(context)

    def act(self, info: RoundInfo, update: UpdateFactory, *, now: int) -> list[Call]:
        """Nothing to send while the relay does its work; the direct submission as a fallback."""
        ctx = self.context
        if info.phase != "Open" or now >= info.deadline or ctx.submitted(info.number):
            return []
        if info.number not in self._handed:
            self.relay.hand_over(signed_update(ctx, update()))
            self._handed.add(info.number)
            return []
        if now < info.deadline - self.fallback_margin:
            return []
        logger.warning(
            "%s: the relay has not registered its round-%d update %d s before the deadline; "
            "submitting directly",
            ctx.account,
            info.number,
            info.deadline - now,
        )
        return self._direct.act(info, update, now=now)
