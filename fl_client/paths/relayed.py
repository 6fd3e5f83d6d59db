"""The relayed path: gasless for the client. It signs its update (EIP-712) and hands it to a
relayer, which registers it on-chain and carries its words into the close. A client the relayer
leaves out sees it on-chain and submits directly before the deadline."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from fl_client.chain import Call, RoundInfo, SignedUpdate, sign_update, update_typed_data
from fl_client.codec import segment_hashes, vector_hash
from fl_client.errors import RelayUnreachableError, UpdateRefusedError
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


def own_words_first(
    own: Callable[[int, str], tuple[int, ...] | None],
    relay: Callable[[int, str], tuple[int, ...] | None] | None,
) -> Callable[[int, str], tuple[int, ...] | None]:
    """A closer's source of relayed words: the client's own first, then the relay's."""

    def words(round_number: int, client: str) -> tuple[int, ...] | None:
        found = own(round_number, client)
        if found is None and relay is not None:
            found = relay(round_number, client)
        return found

    return words


class RelayedPath:
    """Hand the signed update to the relay once; fall back to ``submit`` when the relay has not
    registered it ``fallback_margin`` seconds before the deadline, when it refuses the update,
    or when it cannot be reached by then (each poll tries it again until the margin)."""

    name = "relayed"

    def __init__(self, context: PathContext, relay: RelayEndpoint, *, fallback_margin: int) -> None:
        self.context = context
        self.relay = relay
        self.fallback_margin = fallback_margin
        self._handed: dict[int, tuple[int, ...]] = {}  # round -> the words handed over
        self._direct = DirectPath(context)

    def words(self, round_number: int, client: str) -> tuple[int, ...] | None:
        """This client's own relayed words of ``round_number``, for a close: a relay that
        registered the update and then went away (or withholds the words) cannot get the client
        left out, since the client closes with its own words."""
        if client != self.context.account:
            return None
        return self._handed.get(round_number)

    def act(self, info: RoundInfo, update: UpdateFactory, *, now: int) -> list[Call]:
        """Nothing to send while the relay does its work; the direct submission as a fallback."""
        ctx = self.context
        if info.phase != "Open" or now >= info.deadline or ctx.submitted(info.number):
            return []
        if info.number not in self._handed:
            signed = signed_update(ctx, update())
            try:
                self.relay.hand_over(signed)
            except RelayUnreachableError as exc:
                # Try again at the next poll; submit directly once the margin is reached.
                if now < info.deadline - self.fallback_margin:
                    logger.warning("%s: %s; trying again", ctx.account, exc)
                    return []
                logger.warning("%s: %s; submitting directly", ctx.account, exc)
                return self._direct.act(info, update, now=now)
            except UpdateRefusedError as exc:
                logger.warning("%s: %s; submitting directly", ctx.account, exc)
                return self._direct.act(info, update, now=now)
            self._handed = {info.number: signed.words}  # the latest round's only
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
