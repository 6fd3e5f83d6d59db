"""The federation's history as the coordinator's events tell it: rounds, submissions, who was
paid what, and the gas each round cost.

Pure: it takes decoded events in chain order (:class:`ChainEvent`) and keeps what the dashboard
shows; nothing here talks to the chain. Fed the same events, it holds the same history, which is
why a restarted dashboard shows what the first one did.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fl_client.aggregation import NO_TIER, aligned
from fl_client.config import ALIGNMENT_OFF

# `maxCountedDistance` reads as the largest uint128 when the bound is off.
DISTANCE_BOUND_OFF = (1 << 128) - 1

# What a transaction did for its round, by the events it emitted (a close outranks a submission).
_CLOSE_EVENTS = frozenset({"SegmentClosed"})
_SUBMISSION_EVENTS = frozenset(
    {"SubmissionAccepted", "SegmentsReceived", "UpdateRelayed", "CommitmentAccepted"}
)
_SETUP_EVENTS = frozenset({"InitialModelLoaded"})


@dataclass(frozen=True)
class ChainEvent:
    """One decoded log of the coordinator."""

    name: str
    args: Mapping[str, Any]
    block_number: int
    transaction: str  # 0x-prefixed hash
    log_index: int


@dataclass(frozen=True)
class Rules:
    """The deployment parameters that explain why an update was left out or unpaid."""

    max_counted_distance: int  # DISTANCE_BOUND_OFF when off
    min_alignment_bps: int  # ALIGNMENT_OFF when off
    min_reward_distance: int
    tier_thresholds: tuple[int, ...]
    tier_rewards: tuple[int, ...]
    reward_reference: str = "current"  # progress: tiers read on the shortfall, in basis points

    @property
    def bound_on(self) -> bool:
        """Whether the poisoning bound is set."""
        return self.max_counted_distance < DISTANCE_BOUND_OFF

    @property
    def guard_on(self) -> bool:
        """Whether the direction guard is set."""
        return self.min_alignment_bps != ALIGNMENT_OFF


def tier_label(tier: int) -> str:
    """``T1`` for the first (largest) reward tier, ``none`` when no tier applied."""
    return "none" if tier == NO_TIER else f"T{tier + 1}"


@dataclass
class Submission:
    """A settled update: its ``SubmissionAccepted`` event (and ``RewardSettled``, when the reward
    is measured against the round's new model)."""

    round_number: int
    client: str
    sample_count: int
    distance: int
    along: int
    against: int
    tier: int
    reward: int
    counted: bool
    relayed: bool
    block_number: int
    transaction: str
    note: str | None = None  # why it was left out, or why it was paid less than its tier

    @property
    def alignment(self) -> float | None:
        """``(along - against) / (along + against)``, or ``None`` when the guard measured nothing."""
        moved = self.along + self.against
        return None if moved == 0 else (self.along - self.against) / moved


@dataclass(frozen=True)
class Entry:
    """An update registered for its round's close, in registration (``entries()``) order."""

    client: str
    sample_count: int
    relayed: bool


@dataclass
class RoundRecord:
    """One round, from its ``RoundOpened`` on."""

    number: int
    opened_block: int
    deadline: int
    status: str = "open"  # open, reveal, closing, closed, abandoned
    closed_block: int | None = None
    model_version: int | None = None
    model_hash: str | None = None
    counted: int = 0  # counted submissions the close (or the abandon) reported
    entries: list[Entry] = field(default_factory=list)
    commits: int = 0
    closed_segments: int = 0
    rewards: int = 0
    fees: int = 0
    forfeited: int = 0
    gas: dict[str, int] = field(default_factory=lambda: {"submissions": 0, "closes": 0, "other": 0})


@dataclass
class Account:
    """Everything one account received from, and took out of, the pool."""

    address: str
    submissions: int = 0
    left_out: int = 0
    rewards: int = 0
    fees: int = 0  # closing and relaying
    bonds_returned: int = 0
    withdrawn: int = 0


@dataclass(frozen=True)
class Funding:
    """A ``PoolFunded`` event."""

    funder: str
    amount: int
    block_number: int


@dataclass
class _Transaction:
    """What the ledger knows of a transaction that touched a round."""

    round_number: int | None
    kind: str  # submissions, closes, other, setup
    gas_used: int | None = None


def _is_zero(address: Any) -> bool:
    return int(str(address), 16) == 0


def left_out_reason(rules: Rules, *, distance: int, along: int, against: int, relayed: bool) -> str:
    """Why the contract left an update out of the average, from its event's figures and the
    deployment's rules (the contract checks the bound first, then the guard; a relayed update
    whose words nobody supplied is dropped by the close with the figures measured so far)."""
    if rules.bound_on and distance > rules.max_counted_distance:
        return (
            f"distance {distance:,} above the poisoning bound {rules.max_counted_distance:,} "
            "(maxCountedDistance)"
        )
    if rules.guard_on and not aligned(along, against, rules.min_alignment_bps):
        moved = along + against
        value = (along - against) / moved if moved else 0.0
        return (
            f"alignment {value:+.3f} below the direction guard "
            f"{rules.min_alignment_bps / 10_000:+.2f} (minAlignment)"
        )
    if relayed:
        return "dropped by a close: its relayer did not supply its words in time"
    return "left out of the average"


def unpaid_reason(rules: Rules, *, distance: int, tier: int, reward: int) -> str | None:
    """Why a counted update was paid nothing or less than its tier, if it was."""
    if tier == NO_TIER:
        if rules.reward_reference == "progress":
            # RewardSettled carries the shortfall, and either guard leaves an update unpaid.
            return (
                f"unpaid: shortfall {distance:,} bps beyond the last reward tier, or closer than "
                f"the free-rider guard {rules.min_reward_distance:,} to the old or the new model"
            )
        if distance < rules.min_reward_distance:
            return (
                f"unpaid: distance {distance:,} below the free-rider guard "
                f"{rules.min_reward_distance:,} (minRewardDistance)"
            )
        return "unpaid: distance beyond the last reward tier"
    if tier < len(rules.tier_rewards) and reward < rules.tier_rewards[tier]:
        return f"paid what was left in the pool ({tier_label(tier)} pays {rules.tier_rewards[tier]:,} wei)"
    return None


class Ledger:
    """The history of one coordinator, built from its events in chain order."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.rounds: dict[int, RoundRecord] = {}
        self.submissions: list[Submission] = []
        self.accounts: dict[str, Account] = {}
        self.fundings: list[Funding] = []
        self.created_block: int | None = None
        self.events_seen = 0
        self._transactions: dict[str, _Transaction] = {}
        self._by_key: dict[tuple[int, str], Submission] = {}
        # Relayed clients a close measured and left out, by the close's transaction.
        self._failed_in: dict[str, set[str]] = {}
        self._handlers: dict[str, Callable[[ChainEvent], None]] = {
            "OwnershipTransferred": self._ownership_transferred,
            "RoundOpened": self._round_opened,
            "RevealOpened": self._reveal_opened,
            "CommitmentAccepted": self._commitment_accepted,
            "UpdateRelayed": self._update_relayed,
            "SubmissionAccepted": self._submission_accepted,
            "RewardSettled": self._reward_settled,
            "SegmentClosed": self._segment_closed,
            "RoundClosed": self._round_closed,
            "RoundAbandoned": self._round_abandoned,
            "BondReturned": self._bond_returned,
            "BondsForfeited": self._bonds_forfeited,
            "PoolFunded": self._pool_funded,
            "CreditWithdrawn": self._credit_withdrawn,
        }

    # ---------------------------------------------------------------- reading

    def account(self, address: str) -> Account:
        """The account ``address`` (created empty on first use)."""
        if address not in self.accounts:
            self.accounts[address] = Account(address)
        return self.accounts[address]

    def failed_in(self, transaction: str) -> frozenset[str]:
        """The relayed clients that the close ``transaction`` measured and left out."""
        return frozenset(self._failed_in.get(transaction, ()))

    def record_gas(self, transaction: str, gas_used: int) -> None:
        """Add the gas ``transaction`` used to its round."""
        info = self._transactions.get(transaction)
        if info is None or info.gas_used is not None:
            return
        info.gas_used = gas_used
        if info.kind == "setup" or info.round_number is None:
            return
        record = self.rounds.get(info.round_number)
        if record is not None:
            record.gas[info.kind] += gas_used

    @property
    def deployment_gas(self) -> int:
        """Gas of the coordinator's creation and of the initial model's loading."""
        return sum(
            info.gas_used or 0 for info in self._transactions.values() if info.kind == "setup"
        )

    # ---------------------------------------------------------------- events

    def apply(self, event: ChainEvent) -> None:
        """Take one event (events must come in chain order)."""
        self.events_seen += 1
        handler = self._handlers.get(event.name)
        if handler is not None:
            handler(event)
        self._attribute(event)

    def _attribute(self, event: ChainEvent) -> None:
        """Tie the event's transaction to the round it names (the earliest, for a close that
        also opens the next round) and to what it did there."""
        round_number = event.args.get("round")
        creation = event.name == "OwnershipTransferred" and _is_zero(event.args["previousOwner"])
        kind = (
            "setup"
            if event.name in _SETUP_EVENTS or creation
            else "closes"
            if event.name in _CLOSE_EVENTS
            else "submissions"
            if event.name in _SUBMISSION_EVENTS
            else "other"
        )
        if round_number is None and kind == "other":
            return  # funding, withdrawals, keys, ownership: no round's cost
        info = self._transactions.get(event.transaction)
        if info is None:
            self._transactions[event.transaction] = _Transaction(
                int(round_number) if round_number is not None else None, kind
            )
            return
        if round_number is not None and (
            info.round_number is None or int(round_number) < info.round_number
        ):
            info.round_number = int(round_number)
        ranks = ("other", "submissions", "closes", "setup")
        if ranks.index(kind) > ranks.index(info.kind):
            info.kind = kind

    def _ownership_transferred(self, event: ChainEvent) -> None:
        if _is_zero(event.args["previousOwner"]) and self.created_block is None:
            self.created_block = event.block_number

    def _round_opened(self, event: ChainEvent) -> None:
        number = int(event.args["round"])
        self.rounds[number] = RoundRecord(
            number=number, opened_block=event.block_number, deadline=int(event.args["deadline"])
        )

    def _round(self, event: ChainEvent) -> RoundRecord:
        number = int(event.args["round"])
        if number not in self.rounds:  # its opening lies before the first block read
            self.rounds[number] = RoundRecord(number=number, opened_block=0, deadline=0)
        return self.rounds[number]

    def _reveal_opened(self, event: ChainEvent) -> None:
        record = self._round(event)
        record.status = "reveal"
        record.deadline = int(event.args["deadline"])

    def _commitment_accepted(self, event: ChainEvent) -> None:
        self._round(event).commits += 1

    def _update_relayed(self, event: ChainEvent) -> None:
        self._round(event).entries.append(
            Entry(str(event.args["client"]), int(event.args["sampleCount"]), relayed=True)
        )

    def _submission_accepted(self, event: ChainEvent) -> None:
        args = event.args
        record = self._round(event)
        submission = Submission(
            round_number=record.number,
            client=str(args["client"]),
            sample_count=int(args["sampleCount"]),
            distance=int(args["distance"]),
            along=int(args["along"]),
            against=int(args["against"]),
            tier=int(args["tier"]),
            reward=int(args["reward"]),
            counted=bool(args["counted"]),
            relayed=bool(args["relayed"]),
            block_number=event.block_number,
            transaction=event.transaction,
        )
        if submission.counted:
            submission.note = unpaid_reason(
                self.rules,
                distance=submission.distance,
                tier=submission.tier,
                reward=submission.reward,
            )
            if not submission.relayed:  # registered for the close as it completed
                record.entries.append(
                    Entry(submission.client, submission.sample_count, relayed=False)
                )
        else:
            submission.note = left_out_reason(
                self.rules,
                distance=submission.distance,
                along=submission.along,
                against=submission.against,
                relayed=submission.relayed,
            )
            if submission.relayed:
                self._failed_in.setdefault(event.transaction, set()).add(submission.client)
        self.submissions.append(submission)
        self._by_key[(record.number, submission.client)] = submission
        record.rewards += submission.reward
        account = self.account(submission.client)
        account.submissions += 1
        account.left_out += 0 if submission.counted else 1
        account.rewards += submission.reward

    def _reward_settled(self, event: ChainEvent) -> None:
        """Rewards measured against the round's new model, paid by the close."""
        record = self._round(event)
        client = str(event.args["client"])
        reward = int(event.args["reward"])
        submission = self._by_key.get((record.number, client))
        if submission is not None:
            submission.tier = int(event.args["tier"])
            submission.reward += reward
            submission.note = unpaid_reason(
                self.rules,
                distance=int(event.args["distance"]),
                tier=submission.tier,
                reward=submission.reward,
            )
        record.rewards += reward
        self.account(client).rewards += reward

    def _segment_closed(self, event: ChainEvent) -> None:
        record = self._round(event)
        fee = int(event.args["fee"])
        record.status = "closing"
        record.closed_segments = int(event.args["segment"]) + 1
        record.fees += fee
        self.account(str(event.args["closer"])).fees += fee

    def _round_closed(self, event: ChainEvent) -> None:
        record = self._round(event)
        record.status = "closed"
        record.closed_block = event.block_number
        record.model_version = int(event.args["modelVersion"])
        record.model_hash = "0x" + bytes(event.args["modelHash"]).hex()
        record.counted = int(event.args["submissions"])

    def _round_abandoned(self, event: ChainEvent) -> None:
        record = self._round(event)
        record.status = "abandoned"
        record.closed_block = event.block_number
        record.counted = int(event.args["submissions"])

    def _bond_returned(self, event: ChainEvent) -> None:
        self.account(str(event.args["client"])).bonds_returned += int(event.args["amount"])

    def _bonds_forfeited(self, event: ChainEvent) -> None:
        self._round(event).forfeited += int(event.args["amount"])

    def _pool_funded(self, event: ChainEvent) -> None:
        self.fundings.append(
            Funding(str(event.args["funder"]), int(event.args["amount"]), event.block_number)
        )

    def _credit_withdrawn(self, event: ChainEvent) -> None:
        self.account(str(event.args["client"])).withdrawn += int(event.args["amount"])
