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
from typing import Any

from hexbytes import HexBytes
from web3.contract import Contract
from web3.types import TxReceipt

from fl_client.chain import (
    Chain,
    CoordinatorView,
    Entry,
    RoundInfo,
    close_function,
    read_cohort,
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
        return submitted_words(
            self.contract,
            self.chain,
            round_number,
            client,
            self.view.words_per_segment,
            self.view.num_words,
        )


def submitted_words(
    contract: Contract,
    chain: Chain,
    round_number: int,
    client: str,
    words_per_segment: int,
    total: int,
) -> list[int]:
    """The words ``client`` sent in ``round_number`` (``submit``, ``reveal`` or ``submitMasked``),
    read back from its transactions and checked against the segment hashes it left.

    Raises
    ------
    ChainError
        Its transactions do not hold ``total`` words matching its hashes.
    """
    start = round_opened_block(contract, round_number)
    hashes: list[bytes] = []
    for event in (
        contract.events.SegmentsReceived,
        contract.events.SubmissionAccepted,
        contract.events.MaskedSubmitted,
    ):
        logs = event().get_logs(
            from_block=start, argument_filters={"round": round_number, "client": client}
        )
        hashes.extend(bytes(log["transactionHash"]) for log in logs)
    parts: dict[int, list[int]] = {}
    for tx_hash in dict.fromkeys(hashes):
        for data in coordinator_calls(chain, contract, HexBytes(tx_hash)):
            function, args = contract.decode_function_input(data)
            if function.fn_name in ("submit", "reveal", "submitMasked"):
                parts[int(args["firstSegment"])] = [int(w) for w in args["words"]]
    words = [w for first in sorted(parts) for w in parts[first]]
    if len(words) != total:
        raise ChainError(
            f"round {round_number}: found {len(words)} of {total} words of {client}'s submission "
            "in its transactions"
        )
    for segment, part in enumerate(split_segments(words, words_per_segment)):
        stored = bytes(contract.functions.segmentHash(client, segment).call())
        if stored != words_hash(part):
            raise ChainError(
                f"round {round_number}: the words found for {client} do not match segment "
                f"{segment}'s hash (a transaction of another round?)"
            )
    return words


def coordinator_calls(chain: Chain, contract: Contract, tx_hash: HexBytes) -> list[HexBytes]:
    """The inputs of the calls transaction ``tx_hash`` made to ``contract``: its own input when
    it was sent to it, else (a submission through a smart wallet or a forwarder) the calls to
    it found in the node's call trace (``debug_traceTransaction`` with ``callTracer``: anvil,
    geth and most clients with the debug API).

    Raises
    ------
    ChainError
        The transaction went through another contract and the node cannot trace it.
    """
    tx = chain.w3.eth.get_transaction(tx_hash)
    target = contract.address.lower()
    if str(tx["to"] or "").lower() == target:
        return [HexBytes(tx["input"])]
    answer: Any
    try:
        answer = chain.w3.provider.make_request(
            "debug_traceTransaction",  # type: ignore[arg-type]
            [tx_hash.to_0x_hex(), {"tracer": "callTracer"}],
        )
    except Exception as error:  # the provider refuses a method it does not know
        answer = {"error": str(error)}
    trace = answer.get("result") if isinstance(answer, dict) else None
    if not isinstance(trace, dict):
        why = answer.get("error") if isinstance(answer, dict) else answer
        raise ChainError(
            f"transaction {tx_hash.to_0x_hex()} reached the coordinator through another contract "
            f"({tx['to']}), so its words are not in its input, and this node cannot trace calls "
            f"(debug_traceTransaction: {why}): close with a node that traces calls, or submit "
            "from an account"
        )
    found: list[HexBytes] = []
    pending: list[dict[str, Any]] = [trace]
    while pending:
        call = pending.pop(0)
        # A call that reverted left nothing on the chain: its words are not the submission's.
        if "error" in call:
            continue
        if str(call.get("to", "")).lower() == target and call.get("type") == "CALL":
            found.append(HexBytes(call.get("input", "0x")))
        pending.extend(call.get("calls") or [])
    return found


class MaskedRoundCloser:
    """Closes secure-aggregation rounds: the survivors' masked words, segment by segment (the
    contract removes the dropped members' masks)."""

    def __init__(
        self, *, chain: Chain, contract: Contract, account: str, view: CoordinatorView
    ) -> None:
        self.chain = chain
        self.contract = contract
        self.account = account
        self.view = view
        self.per_word = view.lane_bits // 16
        self._cache: dict[tuple[int, str], list[int]] = {}

    def closable(self, info: RoundInfo, now: int) -> bool:
        """Whether a close may start (or go on) now."""
        if info.phase == "Closing":
            return True
        if info.phase not in ("Open", "Recover"):
            return False
        members = read_cohort(self.contract).members
        cohort = [m for m in members if m.shared]
        if info.phase == "Open":
            return bool(cohort) and all(m.submitted for m in cohort)
        dropped = [m for m in cohort if m.dropped]
        return all(m.recovered for m in dropped)

    def close(self, *, now: int) -> list[TxReceipt]:
        """Send the open round's remaining segment closes."""
        info = read_round(self.contract)
        number = info.number
        receipts = []
        per_segment = self.view.words_per_segment * self.per_word
        while info.number == number and self.closable(info, now):
            segment = info.closed_segments if info.phase == "Closing" else 0
            survivors = [m for m in read_cohort(self.contract).members if m.submitted]
            words: list[int] = []
            for member in survivors:
                key = (number, member.account)
                if key not in self._cache:
                    self._cache[key] = submitted_words(
                        self.contract,
                        self.chain,
                        number,
                        member.account,
                        per_segment,
                        self.view.num_words * self.per_word,
                    )
                words.extend(split_segments(self._cache[key], per_segment)[segment])
            function = self.contract.functions.closeMasked(number, segment, words)
            receipts.append(
                send(
                    self.chain,
                    function,
                    self.account,
                    what=f"close masked round {number} segment {segment}",
                )
            )
            info = read_round(self.contract)
        return receipts


def closer_for(
    *,
    chain: Chain,
    contract: Contract,
    account: str,
    view: CoordinatorView,
    relayed_words: RelayedWords | None = None,
) -> RoundCloser | MaskedRoundCloser:
    """The closer of the deployment's mode."""
    if view.mode == "secure_aggregation":
        return MaskedRoundCloser(chain=chain, contract=contract, account=account, view=view)
    return RoundCloser(
        chain=chain, contract=contract, account=account, view=view, relayed_words=relayed_words
    )
