"""The coordinator's API in Python terms: typed reads, events, and the calls each path sends."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from eth_abi.abi import encode as abi_encode
from eth_utils.crypto import keccak
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.logs import DISCARD
from web3.types import TxReceipt

from fl_client.chain.connection import Chain, call_with_retry
from fl_client.chain.deployment import MODE_CODES
from fl_client.chain.signing import UpdateSignature
from fl_client.chain.transactions import MAX_CALLDATA_BYTES, Call
from fl_client.codec import split_segments
from fl_client.config import FixedPointFormat
from fl_client.errors import OutOfRangeError

PHASES = ("Setup", "Open", "Commit", "Reveal", "Closing", "Register", "Share", "Recover")
MODE_NAMES = {code: name for name, code in MODE_CODES.items()}
NO_TIER = 255
# The calldata of submit/reveal around its words (selector, head, length).
_CALL_HEAD_BYTES = 4 + 32 * 6


@dataclass(frozen=True)
class RoundInfo:
    """The open round as the contract reports it."""

    number: int
    phase: str
    deadline: int
    submissions: int  # counted complete submissions registered for the close
    closed_segments: int


def read_round(contract: Contract) -> RoundInfo:
    """The open round (a free call)."""
    number, phase, deadline, submissions, closed = call_with_retry(
        lambda: contract.functions.roundInfo().call()
    )
    return RoundInfo(int(number), PHASES[int(phase)], int(deadline), int(submissions), int(closed))


@dataclass(frozen=True)
class RoundDetails:
    """The open round's counters beyond :class:`RoundInfo`."""

    completed: int
    commits: int
    close_started_at: int
    window_ends: int  # from then on relayed updates may be left out and an unclosed round ended


def read_round_details(contract: Contract) -> RoundDetails:
    """The open round's other counters (a free call)."""
    completed, commits, started, window = call_with_retry(
        lambda: contract.functions.roundDetails().call()
    )
    return RoundDetails(int(completed), int(commits), int(started), int(window))


@dataclass(frozen=True)
class Entry:
    """A submission registered for the open round's close."""

    client: str
    sample_count: int
    relayed: bool
    dropped: bool


def read_entries(contract: Contract) -> list[Entry]:
    """The open round's registered submissions, in the order a close takes them."""
    clients, counts, relayed, dropped = call_with_retry(lambda: contract.functions.entries().call())
    return [
        Entry(str(c), int(n), bool(r), bool(d))
        for c, n, r, d in zip(clients, counts, relayed, dropped, strict=True)
    ]


def read_model_words(contract: Contract) -> list[int]:
    """The packed global model (a free call)."""
    return [int(w) for w in call_with_retry(lambda: contract.functions.globalModel().call())]


@dataclass(frozen=True)
class CohortMember:
    """A member of the open round's secure-aggregation cohort."""

    index: int
    account: str
    x: int
    y: int
    flags: int  # 1 shares posted, 2 submitted, 4 dropped out, 8 key rebuilt

    @property
    def shared(self) -> bool:
        """Whether it posted its shares (it is in the masking cohort)."""
        return bool(self.flags & 1)

    @property
    def submitted(self) -> bool:
        """Whether its masked update is complete."""
        return bool(self.flags & 2)

    @property
    def dropped(self) -> bool:
        """Whether it dropped out after the masks were set up."""
        return bool(self.flags & 4)

    @property
    def recovered(self) -> bool:
        """Whether its key was rebuilt from the survivors' shares."""
        return bool(self.flags & 8)


@dataclass(frozen=True)
class Cohort:
    """The open round's secure-aggregation cohort."""

    members: tuple[CohortMember, ...]
    threshold: int

    def member(self, account: str) -> CohortMember | None:
        """``account``'s entry, if it registered."""
        return next((m for m in self.members if m.account == account), None)


def read_cohort(contract: Contract) -> Cohort:
    """The open round's secure-aggregation cohort (a free call)."""
    members, xs, ys, flags, threshold = call_with_retry(lambda: contract.functions.cohort().call())
    return Cohort(
        tuple(
            CohortMember(i, str(a), int(x), int(y), int(f))
            for i, (a, x, y, f) in enumerate(zip(members, xs, ys, flags, strict=True))
        ),
        int(threshold),
    )


def shares_posted(
    contract: Contract, round_number: int, dealer: str
) -> tuple[list[bytes], list[bytes]] | None:
    """The commitments and encrypted shares ``dealer`` posted in ``round_number`` (its event)."""
    logs = contract.events.SharesPosted().get_logs(
        from_block=round_opened_block(contract, round_number),
        argument_filters={"round": round_number, "dealer": dealer},
    )
    if not logs:
        return None
    args = logs[-1]["args"]
    return [bytes(c) for c in args["commitments"]], [bytes(e) for e in args["encrypted"]]


def _check_words(words: Sequence[int]) -> None:
    """Every word a uint256: anything else is refused here, typed, instead of failing to encode."""
    for index, word in enumerate(words):
        if not isinstance(word, (int, np.integer)) or not 0 <= int(word) < 2**256:
            raise OutOfRangeError(f"word {index} is {word!r}: a word is an integer in 0..2**256-1")


def masked_calls(
    contract: Contract,
    sender: str,
    *,
    round_number: int,
    sample_count: int,
    words: Sequence[int],
    words_per_segment: int,
    start_segment: int = 0,
) -> list[Call]:
    """The transactions of a masked submission (``words_per_segment`` masked words a segment)."""
    _check_words(words)
    segments = split_segments(words, words_per_segment)[start_segment:]
    return [
        Call(
            contract.functions.submitMasked(
                round_number, sample_count, start_segment + first, part
            ),
            sender,
            f"submitMasked round {round_number} segments {start_segment + first}..",
        )
        for first, part in _group_segments(segments)
    ]


@dataclass(frozen=True)
class CoordinatorView:
    """The deployment parameters a participant needs, read once."""

    address: str
    chain_id: int
    num_weights: int
    num_words: int
    words_per_segment: int
    num_segments: int
    fixed_point: FixedPointFormat
    mode: str
    target: int
    minimum: int
    lane_bits: int  # secure aggregation: the masked sums' lane width
    sample_weighted: bool
    close_window: int
    commit_bond: int
    reward_reference: str = "current"
    max_dropouts: int = 0  # secure aggregation: members a round may lose after its setup
    trim_each: int = 0  # values the trimmed mean leaves out at each end of a weight (0: mean)

    @classmethod
    def read(cls, chain: Chain, contract: Contract) -> CoordinatorView:
        """Read them from the contract (free calls)."""
        f = contract.functions
        return cls(
            address=str(contract.address),
            chain_id=chain.chain_id(),
            num_weights=int(f.numWeights().call()),
            num_words=int(f.numWords().call()),
            words_per_segment=int(f.wordsPerSegment().call()),
            num_segments=int(f.numSegments().call()),
            fixed_point=FixedPointFormat(
                scale=int(f.scale().call()), max_abs=int(f.maxAbsWeight().call())
            ),
            mode=MODE_NAMES[int(f.mode().call())],
            target=int(f.targetSubmissions().call()),
            minimum=int(f.minSubmissions().call()),
            lane_bits=int(f.laneBits().call()),
            sample_weighted=int(f.aggregation().call()) == 1,
            close_window=int(f.closeWindow().call()),
            commit_bond=int(f.commitBond().call()),
            reward_reference=("current", "aggregate", "progress")[int(f.rewardReference().call())],
            trim_each=int(f.trimEach().call()),
            max_dropouts=int(f.secureAggregation().call()[0]),
        )


@dataclass(frozen=True)
class Progress:
    """An account's progress in its latest round (``submissionOf``)."""

    round_number: int
    segments_done: int
    sample_count: int
    distance_so_far: int
    relayed: bool


def read_progress(contract: Contract, account: str) -> Progress:
    """``submissionOf(account)`` (a free call)."""
    r, done, count, distance, relayed = call_with_retry(
        lambda: contract.functions.submissionOf(account).call()
    )
    return Progress(int(r), int(done), int(count), int(distance), bool(relayed))


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class SubmissionRecord:
    """One settled submission, from its ``SubmissionAccepted`` event."""

    round_number: int
    client: str
    sample_count: int
    distance: int
    tier: int
    reward_wei: int
    counted: bool
    relayed: bool
    gas_used: int  # of the transaction that settled it
    block_number: int
    along: int = 0  # L1 distance the way the last global step went (direction guard on)
    against: int = 0  # L1 distance the other way

    @property
    def alignment(self) -> float | None:
        """``(along - against) / (along + against)``, or ``None`` when the guard measured nothing."""
        moved = self.along + self.against
        return None if moved == 0 else (self.along - self.against) / moved


def submissions_in(contract: Contract, receipt: TxReceipt) -> list[SubmissionRecord]:
    """Every ``SubmissionAccepted`` event in ``receipt`` (a close settles its relayed updates)."""
    records = []
    for event in contract.events.SubmissionAccepted().process_receipt(receipt, errors=DISCARD):
        args = event["args"]
        records.append(
            SubmissionRecord(
                round_number=int(args["round"]),
                client=str(args["client"]),
                sample_count=int(args["sampleCount"]),
                distance=int(args["distance"]),
                tier=int(args["tier"]),
                reward_wei=int(args["reward"]),
                counted=bool(args["counted"]),
                relayed=bool(args["relayed"]),
                gas_used=int(receipt["gasUsed"]),
                block_number=int(receipt["blockNumber"]),
                along=int(args["along"]),
                against=int(args["against"]),
            )
        )
    return records


@dataclass(frozen=True)
class RewardRecord:
    """RewardReference Aggregate: what the close paid an update (``RewardSettled``)."""

    round_number: int
    client: str
    distance: int  # from the round's new model
    tier: int
    reward_wei: int


def reward_settled(contract: Contract, client: str, round_number: int) -> RewardRecord | None:
    """The ``RewardSettled`` event of ``client`` in ``round_number``, if the close paid it."""
    logs = contract.events.RewardSettled().get_logs(
        from_block=round_opened_block(contract, round_number),
        argument_filters={"client": client, "round": round_number},
    )
    if not logs:
        return None
    args = logs[-1]["args"]
    return RewardRecord(
        round_number, client, int(args["distance"]), int(args["tier"]), int(args["reward"])
    )


def round_closed_in(contract: Contract, receipt: TxReceipt) -> int | None:
    """The number of the round that ``receipt`` closed, if it closed one."""
    events = contract.events.RoundClosed().process_receipt(receipt, errors=DISCARD)
    return int(events[0]["args"]["round"]) if events else None


def round_opened_block(contract: Contract, round_number: int) -> int:
    """The block in which ``round_number`` opened (0 when unknown)."""
    logs = contract.events.RoundOpened().get_logs(
        from_block=0, argument_filters={"round": round_number}
    )
    return int(logs[-1]["blockNumber"]) if logs else 0


def settlement_receipt(
    chain: Chain, contract: Contract, client: str, round_number: int
) -> TxReceipt | None:
    """The receipt of the transaction that settled ``client``'s update in ``round_number`` (its
    submission, or the close that measured a relayed one), found by its log."""
    logs = contract.events.SubmissionAccepted().get_logs(
        from_block=round_opened_block(contract, round_number),
        argument_filters={"client": client, "round": round_number},
    )
    if not logs:
        return None
    return chain.w3.eth.get_transaction_receipt(logs[-1]["transactionHash"])


# ---------------------------------------------------------------- calls


def _group_segments(segments: Sequence[Sequence[int]]) -> list[tuple[int, list[int]]]:
    """Consecutive whole segments grouped into transactions under the calldata limit:
    ``(first segment, words)`` for each transaction."""
    groups: list[tuple[int, list[int]]] = []
    budget = (MAX_CALLDATA_BYTES - _CALL_HEAD_BYTES) // 32
    for index, segment in enumerate(segments):
        if groups and len(groups[-1][1]) + len(segment) <= budget:
            groups[-1][1].extend(segment)
        else:
            groups.append((index, list(segment)))
    return groups


def submit_calls(
    contract: Contract,
    sender: str,
    *,
    round_number: int,
    sample_count: int,
    words: Sequence[int],
    words_per_segment: int,
    start_segment: int = 0,
) -> list[Call]:
    """The transactions of a direct submission, from ``start_segment`` on: as many whole
    segments in each as fit 128 KiB (one transaction up to ~4,000 words)."""
    _check_words(words)
    segments = split_segments(words, words_per_segment)[start_segment:]
    return [
        Call(
            contract.functions.submit(round_number, sample_count, start_segment + first, part),
            sender,
            f"submit round {round_number} segments {start_segment + first}..",
        )
        for first, part in _group_segments(segments)
    ]


def commitment(
    *,
    chain_id: int,
    contract_address: str,
    round_number: int,
    client: str,
    sample_count: int,
    salt: bytes,
    vector_hash: bytes,
) -> bytes:
    """The commitment ``FLCoordinator.commitmentOf`` computes, computed locally."""
    encoded = abi_encode(
        ["uint256", "address", "uint256", "address", "uint256", "bytes32", "bytes32"],
        [chain_id, contract_address, round_number, client, sample_count, salt, vector_hash],
    )
    return keccak(encoded)


def reveal_calls(
    contract: Contract,
    sender: str,
    *,
    round_number: int,
    sample_count: int,
    words: Sequence[int],
    words_per_segment: int,
    salt: bytes,
    start_segment: int = 0,
) -> list[Call]:
    """The transactions of a reveal, from ``start_segment`` on (as :func:`submit_calls`)."""
    _check_words(words)
    segments = split_segments(words, words_per_segment)[start_segment:]
    return [
        Call(
            contract.functions.reveal(
                round_number, sample_count, start_segment + first, part, salt
            ),
            sender,
            f"reveal round {round_number} segments {start_segment + first}..",
        )
        for first, part in _group_segments(segments)
    ]


@dataclass(frozen=True)
class SignedUpdate:
    """A client's update signed for a relayer: what ``submitRelayed`` registers, and its words."""

    round_number: int
    client: str
    sample_count: int
    segment_hashes: tuple[bytes, ...]
    signature: UpdateSignature
    words: tuple[int, ...]

    def as_tuple(self) -> tuple[Any, ...]:
        """The ABI tuple of a ``RelayedUpdate``."""
        return (
            self.client,
            self.sample_count,
            list(self.segment_hashes),
            *self.signature.as_tuple(),
        )


def relay_function(
    contract: Contract, round_number: int, updates: Sequence[SignedUpdate]
) -> ContractFunction:
    """``submitRelayed(round, updates)``."""
    return contract.functions.submitRelayed(round_number, [u.as_tuple() for u in updates])


def close_function(
    contract: Contract,
    *,
    round_number: int,
    segment: int,
    words: Sequence[int],
    omitted: Sequence[int] = (),
) -> ContractFunction:
    """``closeSegment(round, segment, words, omitted)``."""
    return contract.functions.closeSegment(
        round_number, segment, [int(w) for w in words], [int(i) for i in omitted]
    )
