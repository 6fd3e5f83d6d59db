"""Closing a round from data anyone can get: the words of its submissions, segment by segment.

Direct and revealed submissions left their words in their own transactions' calldata: the closer
finds those transactions by their events and decodes them. Relayed updates reached the chain as
hashes only; their words come from a source that holds them (the relay, or the client itself),
and once the close window has passed a close may leave out the ones nobody supplies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hexbytes import HexBytes
from web3.contract import Contract
from web3.types import TxReceipt

from fl_client.chain import (
    Chain,
    CoordinatorView,
    Entry,
    RoundInfo,
    close_function,
    read_entries,
    read_round,
    read_round_details,
    round_opened_block,
    send,
)
from fl_client.codec import split_segments, words_hash
from fl_client.errors import ChainError

logger = logging.getLogger(__name__)

# The words of `client`'s relayed update in `round`, or None when this source does not have them.
RelayedWords = Callable[[int, str], Sequence[int] | None]


@dataclass(frozen=True)
class ClosePlan:
    """The data of one segment's close: the words in entry order and the entries left out."""

    segment: int
    words: list[int]
    omitted: list[int]


class RoundCloser:
    """Closes rounds of one coordinator: finds every entry's words and sends the closes."""

    def __init__(
        self,
        *,
        chain: Chain,
        contract: Contract,
        account: str,
        view: CoordinatorView,
        relayed_words: RelayedWords | None = None,
    ) -> None:
        self.chain = chain
        self.contract = contract
        self.account = account
        self.view = view
        self.relayed_words = relayed_words
        self._cache: dict[tuple[int, str], list[int]] = {}

    def closable(self, info: RoundInfo, now: int) -> bool:
        """Whether a close may start (or go on) now, as far as the round's counters tell."""
        if info.phase == "Closing":
            return True
        if info.phase not in ("Open", "Reveal") or self.view.mode == "secure_aggregation":
            return False
        if info.submissions < self.view.minimum:
            return False
        if now >= info.deadline:
            return True
        if self.view.mode == "plain":
            return info.submissions >= self.view.target
        details = read_round_details(self.contract)
        return details.completed >= details.commits

    def close(self, *, now: int) -> list[TxReceipt]:
        """Send the open round's remaining segment closes (a round closed by someone else in the
        meantime ends the loop); the receipts of those sent."""
        info = read_round(self.contract)
        number = info.number
        receipts = []
        while info.number == number and self.closable(info, now):
            plan = self.plan(info, now=now)
            function = close_function(
                self.contract,
                round_number=number,
                segment=plan.segment,
                words=plan.words,
                omitted=plan.omitted,
            )
            receipts.append(
                send(
                    self.chain,
                    function,
                    self.account,
                    what=f"close round {number} segment {plan.segment}",
                )
            )
            info = read_round(self.contract)
        return receipts

    def plan(self, info: RoundInfo, *, now: int) -> ClosePlan:
        """The calldata of the open round's next segment close.

        Raises
        ------
        ChainError
            A submission's words cannot be found, or a relayed update's words are missing while
            the close window is still open.
        """
        segment = info.closed_segments if info.phase == "Closing" else 0
        window_ends = read_round_details(self.contract).window_ends
        words: list[int] = []
        omitted: list[int] = []
        for index, entry in enumerate(read_entries(self.contract)):
            if entry.dropped:
                continue
            vector = self._words(info.number, entry)
            if vector is None:
                if not entry.relayed or now < window_ends:
                    raise ChainError(
                        f"round {info.number}: no words for {'relayed ' if entry.relayed else ''}"
                        f"entry {index} ({entry.client}); relayed updates may be left out from "
                        f"{window_ends} on"
                    )
                omitted.append(index)
                continue
            words.extend(split_segments(vector, self.view.words_per_segment)[segment])
        return ClosePlan(segment, words, omitted)

    def _words(self, round_number: int, entry: Entry) -> list[int] | None:
        key = (round_number, entry.client)
        if key not in self._cache:
            if not entry.relayed:
                found: Sequence[int] | None = self.submitted_words(round_number, entry.client)
            elif self.relayed_words is not None:
                found = self.relayed_words(round_number, entry.client)
            else:
                found = None
            if found is None:
                return None
            self._cache[key] = [int(w) for w in found]
        return self._cache[key]

    def submitted_words(self, round_number: int, client: str) -> list[int]:
        """The words ``client`` sent in ``round_number``, read back from its transactions."""
        start = round_opened_block(self.contract, round_number)
        hashes: list[bytes] = []
        for event in (
            self.contract.events.SegmentsReceived,
            self.contract.events.SubmissionAccepted,
        ):
            logs = event().get_logs(
                from_block=start, argument_filters={"round": round_number, "client": client}
            )
            hashes.extend(bytes(log["transactionHash"]) for log in logs)
        parts: dict[int, list[int]] = {}
        for tx_hash in dict.fromkeys(hashes):
            tx = self.chain.w3.eth.get_transaction(HexBytes(tx_hash))
            function, args = self.contract.decode_function_input(tx["input"])
            if function.fn_name not in ("submit", "reveal"):
                continue
            parts[int(args["firstSegment"])] = [int(w) for w in args["words"]]
        words = [w for first in sorted(parts) for w in parts[first]]
        if len(words) != self.view.num_words:
            raise ChainError(
                f"round {round_number}: found {len(words)} of {self.view.num_words} words of "
                f"{client}'s submission in its transactions"
            )
        self._check_hashes(round_number, client, words)
        return words

    def _check_hashes(self, round_number: int, client: str, words: Sequence[int]) -> None:
        segments = split_segments(words, self.view.words_per_segment)
        for segment, part in enumerate(segments):
            stored = bytes(self.contract.functions.segmentHash(client, segment).call())
            if stored != words_hash(part):
                raise ChainError(
                    f"round {round_number}: the words found for {client} do not match segment "
                    f"{segment}'s hash (a transaction of another round?)"
                )
