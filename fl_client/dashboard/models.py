"""Every global model of a deployment, rebuilt from the calldata of the transactions that made it.

The contract keeps only the current model, but the transactions that made each one are on chain
for good: the owner's ``loadInitialModel`` calls carry the initial words, and each
``closeSegment(round, segment, words, omitted)`` carries segment ``segment`` of every update the
close averaged, in ``entries()`` order. The new segment is their rounded average
(:func:`fl_client.aggregation.integer_average`, weighted by sample count under FedAvg), or the
current segment when the close averaged nothing. A rebuilt model is trusted only when its hash
chain equals the ``modelHash`` that ``RoundClosed`` reported; a deployment whose closes do more
than average (or a close sent through another contract) fails that check, and the caller falls
back to reading ``globalModel()`` while that model is still the current one.

Pure: no chain access.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from fl_client.aggregation import integer_average, trimmed_average
from fl_client.codec import LANES, OFFSET, chain_hash, pack, unpack, vector_hash, words_hash
from fl_client.dashboard.ledger import Entry

logger = logging.getLogger(__name__)

ZERO_WORD = sum(OFFSET << (16 * lane) for lane in range(LANES))  # sixteen weights of 0


@dataclass(frozen=True)
class CloseCall:
    """The arguments of one ``closeSegment`` transaction and what its events said."""

    round_number: int
    segment: int
    words: tuple[int, ...]
    omitted: tuple[int, ...]
    failed: frozenset[str]  # relayed clients it measured and left out (their words are unused)


def average_segment(
    parts: Sequence[Sequence[int]], weights: Sequence[int] | None, trim_each: int = 0
) -> list[int]:
    """The contract's average of packed segments: each lane rounded to nearest, ties away from
    zero (padding lanes average to zero and stay padding); ``trim_each``: the trimmed mean."""
    lanes = len(parts[0]) * LANES
    vectors = [unpack(list(part), lanes) for part in parts]
    if trim_each:
        return pack(trimmed_average(vectors, trim_each))
    return pack(integer_average(vectors, weights))


class ModelHistory:
    """The current global model as far as it can be rebuilt, segment by segment, and the next one
    while a round closes."""

    def __init__(
        self, *, num_words: int, words_per_segment: int, sample_weighted: bool, trim_each: int = 0
    ) -> None:
        self.num_words = num_words
        self.words_per_segment = words_per_segment
        self.sample_weighted = sample_weighted
        self.trim_each = trim_each
        self.num_segments = -(-num_words // words_per_segment)
        # The current model: words per segment, None where unknown.
        self.current: list[list[int] | None] = [None] * self.num_segments
        self._next: dict[int, list[int] | None] = {}
        self._dropped: set[int] = set()  # entry indexes left out of the rest of the close

    def segment_length(self, segment: int) -> int:
        """Words in ``segment`` (the last one may be shorter)."""
        return min(self.words_per_segment, self.num_words - segment * self.words_per_segment)

    def words(self) -> list[int] | None:
        """The whole current model, or ``None`` while a segment is unknown."""
        if any(part is None for part in self.current):
            return None
        return [w for part in self.current for w in part or ()]

    # ---------------------------------------------------------------- setup

    def load(self, first_segment: int, words: Sequence[int]) -> None:
        """``loadInitialModel(firstSegment, words)``: whole segments from ``first_segment`` on."""
        cursor = 0
        segment = first_segment
        while cursor < len(words) and segment < self.num_segments:
            count = self.segment_length(segment)
            self.current[segment] = [int(w) for w in words[cursor : cursor + count]]
            cursor += count
            segment += 1

    def load_zero(self, first_segment: int, count: int) -> None:
        """``loadZeroModel(firstSegment, count)``: segments of zero weights."""
        for segment in range(first_segment, min(first_segment + count, self.num_segments)):
            self.current[segment] = [ZERO_WORD] * self.segment_length(segment)

    def adopt(self, words: Sequence[int]) -> None:
        """Take ``words`` (read from ``globalModel()``) as the current model."""
        self.current = [
            [int(w) for w in words[s * self.words_per_segment : s * self.words_per_segment + n]]
            for s, n in ((s, self.segment_length(s)) for s in range(self.num_segments))
        ]

    # ---------------------------------------------------------------- rounds

    def close_segment(self, call: CloseCall, entries: Sequence[Entry]) -> None:
        """Apply one segment's close: average the updates it carried, as the contract does."""
        if call.segment == 0:
            self._next = {}
            self._dropped = set()
        count = self.segment_length(call.segment)
        omitted = set(call.omitted)
        parts: list[list[int]] = []
        weights: list[int] = []
        cursor = 0
        for index, entry in enumerate(entries):
            if index in omitted:
                self._dropped.add(index)
                continue
            if index in self._dropped:
                continue
            part = list(call.words[cursor : cursor + count])
            cursor += count
            if entry.relayed and entry.client in call.failed:
                self._dropped.add(index)  # measured, then left out of the average for good
                continue
            parts.append(part)
            weights.append(entry.sample_count if self.sample_weighted else 1)
        if cursor != len(call.words) or any(len(part) != count for part in parts):
            logger.info(
                "round %d segment %d: the close's words do not match its entries",
                call.round_number,
                call.segment,
            )
            self._next[call.segment] = None
            return
        self._next[call.segment] = (
            average_segment(parts, weights, self.trim_each) if parts else self.current[call.segment]
        )

    def unknown_segment(self, segment: int) -> None:
        """A close whose calldata could not be read: that segment of the next model is unknown."""
        if segment == 0:
            self._next = {}
            self._dropped = set()
        self._next[segment] = None

    def finish(self, model_hash: bytes) -> list[int] | None:
        """The round closed with ``model_hash``: the next model becomes the current one. Returns
        its words when it was rebuilt and its hash chain matches, else ``None`` (and the current
        model is then unknown until :meth:`adopt`)."""
        rebuilt = [self._next.get(s) for s in range(self.num_segments)]
        self._next = {}
        self._dropped = set()
        if any(part is None for part in rebuilt):
            self.current = [None] * self.num_segments
            return None
        segments = [part or [] for part in rebuilt]
        if chain_hash([words_hash(part) for part in segments]) != bytes(model_hash):
            logger.info("a rebuilt model does not match its modelHash: not trusted")
            self.current = [None] * self.num_segments
            return None
        self.current = [list(part) for part in segments]
        return [w for part in segments for w in part]

    def hash_matches(self, words: Sequence[int], model_hash: bytes) -> bool:
        """Whether ``words`` hash (segment by segment) to ``model_hash``."""
        return vector_hash(words, self.words_per_segment) == bytes(model_hash)
