"""Invariants of the round pipeline under random sequences of calls (Hypothesis stateful testing).

:class:`PlainMachine` drives one Plain-mode coordinator (allowlist on, free-rider guard, poisoning
bound, close window, close and relay fees, a small reward pool that runs dry, sample-weighted
averaging with the incentive rules: the share cap ``maxShareBps``, the step bound ``maxStep`` and
the drift bound ``maxDrift`` over windows of ``driftWindow`` rounds; a model of two segments so
that ``Closing`` is visible) through random sequences of:
fund; direct submissions (honest, free-riding, poisoning, partial, and malformed: wrong length,
out of range, nonzero padding, stale or future round, bad sample count, changed sample count,
wrong segment, duplicate, ineligible sender); relayed batches (valid, forged, altered, replayed,
malleable, wrong length, signed words out of range, words the relay withholds); segment closes
from the public data (the words the machine saw, in ``entries()`` order; sometimes wrong words,
the wrong segment or round, or relayed entries left out); finalize; withdraw; setAllowed (in
force from the next round); and time advances. :class:`CommitRevealMachine` does the same for a
CommitReveal coordinator (with the same incentive rules): commit with the bond, reveal (whole,
partial, mismatched), close, finalize, forfeits.

Every rule predicts its outcome from a plain-Python model of the contract (the reference average,
distance and tiers of :mod:`fl_client.aggregation`) and checks it: the revert by name and
arguments, or every event of the transaction in order. After every step the machines check:

- money: the contract's balance is totalFunded - totalWithdrawn + bonds held + bonds returned;
  the credits add up to totalCredited + bonds returned - totalWithdrawn; withdrawn <= credited +
  returned; credited <= funded;
- at most one settled update (``SubmissionAccepted``) per account per round, from the receipts
  and, at the end of a sequence, from the chain's logs;
- the round number never decreases;
- the model (``globalModel``, ``modelHash``, ``modelVersion``) changes only with the last segment
  of a close, and equals the reference average of the updates each segment counted, each weighted
  by its sample count capped by ``maxShareBps``, then held within the step and drift bounds
  (``SegmentClosed.clamped`` counts the weights held back);
- the incentive bounds, on the chain's own figures: a closed round's model moves no weight more
  than ``maxStep`` from the previous model; the drift checkpoint (read from the contract's
  storage) is the initial model, then the model that closed each round numbered a multiple of
  ``driftWindow``, and the global model lies within ``maxDrift`` of it; no counted update held
  more than ``maxShareBps`` of a segment's weight, nor more weight than the samples it declared;
- liveness: from the current state, moving the clock past deadline + closeWindow (CommitReveal:
  past every deadline) and then doing only public actions (closes from public data that leave out
  the relayed entries whose words are lost, or finalize) advances the round in a bounded number of
  transactions. The direct words come back from the transactions' calldata, a relayed update's
  from its relay. It runs in a snapshot that is then reverted, so the machine goes on unchanged.
  Its outcome depends only on the round's phase, the segments closed, the commitments and each
  entry's path and fate (all held to the chain by the other invariants), not on the round number,
  the model, the money or the clock: each such configuration is checked once per run.

Each machine deploys once; each sequence starts from a snapshot of that deployment, with the
chain's clock a day ahead of the wall clock so that block times replay exactly. Each machine runs
once per warm-up plan of a short list (updates already in, the clock past a deadline, a close,
probes of calls that must fail), two short random sequences after each, so that a few steps reach
the closes and every plan is played. The runs are derandomized (the same sequences every time),
and the test fails if some defence or some kind of revert was never reached.
"""

from __future__ import annotations

import abc
import copy
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, cast

import numpy as np
from eth_abi.abi import decode as abi_decode
from eth_utils.address import to_canonical_address, to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    StateMachineMeta,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.types import TxReceipt

from fl_client.aggregation import (
    NO_TIER,
    capped_weights,
    clamp_step,
    integer_average,
    reward_tier,
)
from fl_client.chain import (
    Chain,
    DeployParams,
    SignedUpdate,
    close_function,
    commitment,
    contract_at,
    deploy_units,
    load_initial_model,
    malleable_twin,
    relay_function,
    send,
    sign_update,
    translate,
    update_typed_data,
)
from fl_client.codec import OFFSET, chain_hash, pack, words_hash
from fl_client.compile import get_contract
from fl_client.errors import ContractRevertError
from tests.conftest import SMALL_WEIGHTS, revert_args, small_params

# ---------------------------------------------------------------- the deployments

NUM_WEIGHTS = SMALL_WEIGHTS
WORDS_PER_SEGMENT = 2
NUM_WORDS = 3
SEGMENTS = ((0, 2), (2, 3))  # [first word, end word) of each segment
MAX_ABS = 3000
TARGET, MINIMUM = 3, 2
DURATION, WINDOW, REVEAL_DURATION = 600, 120, 300
CLOSE_FEE, RELAY_FEE = 7, 3
MIN_REWARD_DISTANCE = 50  # free-rider guard
MAX_COUNTED_DISTANCE = 20_000  # poisoning bound
THRESHOLDS, REWARDS = (1_000, 10_000, 50_000), (300, 200, 100)
MAX_SAMPLES = 1_000
POOL = 700  # runs dry after a few rewards: funding refills it
BOND = 1_000
# The incentive rules (sample-weighted averaging in both machines): no update holds more than 60 %
# of a segment's weight (with two or three updates the cap is always feasible: 3 x 6,000 >= 10,000);
# a weight moves at most 100 a round and at most 150 from the checkpoint, which the close of every
# second round refreshes. Steps of scale 30 are never held back, those of scale 300 mostly are, and
# two rounds of steps of 100 cross the drift bound.
MAX_SHARE_BPS = 6_000
MAX_STEP, MAX_DRIFT, DRIFT_WINDOW = 100, 150, 2
PHASE = {"Setup": 0, "Open": 1, "Commit": 2, "Reveal": 3, "Closing": 4}
PHASE_NAMES = {code: name for name, code in PHASE.items()}
CHECKPOINT_SET = 2  # CoordinatorBase.CHECKPOINT_SET: the chunk set of the drift checkpoint
# Largest step per weight: 0 is a free ride, 1 mostly under the free-rider guard (L1 < 50), 30
# tier 0, 300 tier 1, 1,500 mostly beyond the poisoning bound (in segment 0 alone or only with
# segment 1 added).
STEP_SCALES = (30, 1_500, 300, 0, 1)
GAS = 10_000_000
CLOCK_LEAD = 86_400  # seconds the chain runs ahead of the wall clock (see deploy_environment)
PLAIN_SETTINGS = settings(
    max_examples=2,  # per warm-up plan
    stateful_step_count=6,
    deadline=None,
    database=None,
    derandomize=True,  # the same sequences every run: the coverage check cannot flake
    suppress_health_check=[HealthCheck.too_slow],
)
COMMIT_REVEAL_SETTINGS = settings(
    max_examples=2,  # per warm-up plan
    stateful_step_count=6,
    deadline=None,
    database=None,
    derandomize=True,  # the same sequences every run: the coverage check cannot flake
    suppress_health_check=[HealthCheck.too_slow],
)

# Every outcome reached, over all sequences: the tests check that each defence and each kind of
# revert was reached at least once.
OUTCOMES: Counter[str] = Counter()


def note(label: str) -> None:
    """Record ``label`` for Hypothesis' statistics and for the coverage check."""
    event(label)
    OUTCOMES[label] += 1


# ---------------------------------------------------------------- words


def lanes(word: int) -> list[int]:
    """The 16 signed quantized values of a packed word."""
    return [((word >> (16 * lane)) & 0xFFFF) - OFFSET for lane in range(16)]


def set_lane(word: int, lane: int, value: int) -> int:
    """``word`` with lane ``lane`` holding ``value`` (offset binary)."""
    mask = 0xFFFF << (16 * lane)
    return (word & ~mask) | (((value + OFFSET) & 0xFFFF) << (16 * lane))


def segment_of(words: Sequence[int], segment: int) -> list[int]:
    """The words of ``segment`` of a whole packed vector."""
    first, end = SEGMENTS[segment]
    return [int(w) for w in words[first:end]]


def l1(words: Sequence[int], model: Sequence[int]) -> int:
    """L1 distance between packed words and the model's words at the same place."""
    return sum(
        abs(a - b)
        for w, m in zip(words, model, strict=True)
        for a, b in zip(lanes(w), lanes(m), strict=True)
    )


def vector_hash(words: Sequence[int]) -> bytes:
    """The hash chain of a whole vector's segments (``modelHash``, what a signature binds)."""
    return chain_hash([words_hash(segment_of(words, s)) for s in range(len(SEGMENTS))])


@dataclass(frozen=True)
class Revert:
    """A predicted revert: the custom error and its arguments."""

    name: str
    args: dict[str, Any]


def range_error(chunk: Sequence[int], first_word: int) -> Revert | None:
    """The contract's range and padding checks on the words of one segment, in its order."""
    for i, word in enumerate(chunk):
        for lane, value in enumerate(lanes(word)):
            if abs(value) > MAX_ABS:
                return Revert(
                    "CoordinatorWeightOutOfRange",
                    {"index": (first_word + i) * 16 + lane, "value": value, "maxAbs": MAX_ABS},
                )
    if first_word + len(chunk) == NUM_WORDS:
        last = lanes(chunk[-1])
        for lane in range(NUM_WEIGHTS - (NUM_WORDS - 1) * 16, 16):
            if last[lane] != 0:
                index = (NUM_WORDS - 1) * 16 + lane
                return Revert(
                    "CoordinatorWeightOutOfRange",
                    {"index": index, "value": last[lane], "maxAbs": 0},
                )
    return None


def in_range(words: Sequence[int]) -> bool:
    """Whether every segment of ``words`` passes the range and padding checks."""
    return all(
        range_error(segment_of(words, s), SEGMENTS[s][0]) is None for s in range(len(SEGMENTS))
    )


def average_segment(chunks: Sequence[Sequence[int]], weights: Sequence[int]) -> list[int]:
    """The contract's rounded weighted average of segments (lane by lane, padding included)."""
    vectors = [np.array([v for w in chunk for v in lanes(w)], dtype=np.int64) for chunk in chunks]
    return pack(integer_average(vectors, weights))


def lane_values(words: Sequence[int]) -> np.ndarray:
    """Every lane of ``words`` (padding included) as signed values."""
    return np.array([v for w in words for v in lanes(w)], dtype=np.int64)


@dataclass(frozen=True)
class Bounded:
    """A segment's average after the step and drift bounds."""

    words: list[int]
    clamped: int  # weights moved back (``SegmentClosed.clamped``)
    by_drift: int  # weights the drift bound held back further than the step bound alone


def bound_step(
    averaged: Sequence[int], current: Sequence[int], checkpoint: Sequence[int]
) -> Bounded:
    """``PackedVectors.clampStep`` on one segment: each weight within ``MAX_STEP`` of the current
    model and within ``MAX_DRIFT`` of the checkpoint."""
    new, now, mark = lane_values(averaged), lane_values(current), lane_values(checkpoint)
    both, clamped = clamp_step(new, now, mark, max_step=MAX_STEP, max_drift=MAX_DRIFT)
    step_only, _ = clamp_step(new, now, None, max_step=MAX_STEP, max_drift=0)
    return Bounded(pack(both), clamped, int(np.count_nonzero(both != step_only)))


# ---------------------------------------------------------------- reading the chain


class Reader:
    """Reads of the coordinator: free calls straight through eth-tester (a third of web3's cost)
    and raw storage reads at the head block (slots from the compiler's storage layout)."""

    def __init__(self, chain: Chain, contract: Contract) -> None:
        assert chain.tester is not None, "the machines need the embedded chain"
        self.tester = chain.tester
        self.contract = contract
        self.address = str(contract.address)
        self.caller = chain.accounts[0]
        self._calls: dict[tuple[Any, ...], tuple[str, list[str]]] = {}
        layout = get_contract("FLCoordinator").storage_layout or []
        self.slots = {
            entry["label"]: (int(entry["slot"]), int(entry["offset"])) for entry in layout
        }
        sizes = {"t_uint128": 16, "t_uint256": 32, "t_bytes32": 32}
        self.sizes = {entry["label"]: sizes.get(entry["type"], 32) for entry in layout}

    def call(self, name: str, *args: Any) -> tuple[Any, ...]:
        """A view function's decoded outputs."""
        key = (name, *args)
        if key not in self._calls:
            function = getattr(self.contract.functions, name)(*args)
            types = [output["type"] for output in function.abi["outputs"]]
            self._calls[key] = (function._encode_transaction_data(), types)
        data, types = self._calls[key]
        raw = self.tester.call({"from": self.caller, "to": self.address, "data": data})
        return tuple(abi_decode(types, bytes.fromhex(raw[2:])))

    def state(self) -> Any:
        """py-evm's state at the head block."""
        evm = self.tester.backend.chain
        return evm.get_vm(at_header=evm.get_canonical_head()).state

    def value(self, state: Any, label: str) -> int:
        """A state variable of up to 32 bytes, by its name in the source."""
        slot, offset = self.slots[label]
        word = int(state.get_storage(to_canonical_address(self.address), slot))
        return (word >> (8 * offset)) & ((1 << (8 * self.sizes[label])) - 1)

    def credit(self, state: Any, account: str) -> int:
        """``_credits[account]``."""
        base = self.slots["_credits"][0].to_bytes(32, "big")
        slot = int.from_bytes(keccak(bytes(12) + to_canonical_address(account) + base), "big")
        return int(state.get_storage(to_canonical_address(self.address), slot))

    def balance(self, state: Any) -> int:
        """The coordinator's balance."""
        return int(state.get_balance(to_canonical_address(self.address)))

    def mapping_slot(self, label: str, key: bytes) -> int:
        """The slot of ``label[key]`` (``key`` ABI-encoded, 32 bytes)."""
        return int.from_bytes(keccak(key + self.slots[label][0].to_bytes(32, "big")), "big")

    def round_state(self, state: Any) -> tuple[int, int, int, int, int, str, int]:
        """``_round``: number, deadline, entries, completed, commits, phase, closed segments
        (``RoundState`` packs them in one slot: 64, 64, 32, 32, 32, 8 and 24 bits)."""
        word = int(state.get_storage(to_canonical_address(self.address), self.slots["_round"][0]))
        fields = []
        for bits in (64, 64, 32, 32, 32, 8, 24):
            fields.append(word & ((1 << bits) - 1))
            word >>= bits
        number, deadline, entries, completed, commits, phase, closed = fields
        return number, deadline, entries, completed, commits, PHASE_NAMES[phase], closed

    def entries(self, state: Any, count: int) -> list[tuple[str, int, bool, bool]]:
        """``_entries[0 .. count)``: client, sample count, relayed, dropped."""
        out: list[tuple[str, int, bool, bool]] = []
        for index in range(count):
            slot = self.mapping_slot("_entries", index.to_bytes(32, "big"))
            entry = int(state.get_storage(to_canonical_address(self.address), slot))
            client = str(to_checksum_address((entry & ((1 << 160) - 1)).to_bytes(20, "big")))
            out.append(
                (
                    client,
                    (entry >> 160) & 0xFFFFFFFF,
                    bool(entry >> 192 & 1),
                    bool(entry >> 193 & 1),
                )
            )
        return out

    def checkpoint(self, state: Any) -> list[int]:
        """The drift bound's checkpoint: segment by segment, the words of the SSTORE2 chunk that
        ``_chunks[segment * 4 + CHECKPOINT_SET]`` points to (its code after the leading STOP)."""
        words: list[int] = []
        for segment, (first, end) in enumerate(SEGMENTS):
            key = (segment * 4 + CHECKPOINT_SET).to_bytes(32, "big")
            slot = self.mapping_slot("_chunks", key)
            pointer = int(state.get_storage(to_canonical_address(self.address), slot))
            data = bytes(state.get_code(pointer.to_bytes(20, "big")))[1:]
            words.extend(
                int.from_bytes(data[32 * i : 32 * i + 32], "big") for i in range(end - first)
            )
        return words

    def model_version_and_hash(self, state: Any) -> tuple[int, bytes]:
        """``_modelVersion`` and ``_modelHash``."""
        return self.value(state, "_modelVersion"), self.value(state, "_modelHash").to_bytes(
            32, "big"
        )


@dataclass(frozen=True)
class Money:
    """The money the contract reports."""

    balance: int
    funded: int
    credited: int
    withdrawn: int
    held: int
    returned: int
    credits: dict[str, int]


def read_money(reader: Reader, accounts: Iterable[str]) -> Money:
    """Every money figure, from raw storage."""
    state = reader.state()
    return Money(
        balance=reader.balance(state),
        funded=reader.value(state, "_totalFunded"),
        credited=reader.value(state, "_totalCredited"),
        withdrawn=reader.value(state, "_totalWithdrawn"),
        held=reader.value(state, "_bondsHeld"),
        returned=reader.value(state, "_bondsReturned"),
        credits={a: reader.credit(state, a) for a in accounts},
    )


def check_reader(reader: Reader, contract: Contract, accounts: Sequence[str]) -> None:
    """The raw reads of money agree with the getters (so that the invariants read the truth)."""
    f = contract.functions
    money = read_money(reader, accounts)
    assert money.funded == f.totalFunded().call()
    assert money.credited == f.totalCredited().call()
    assert money.withdrawn == f.totalWithdrawn().call()
    assert [money.held, money.returned] == list(f.bonds().call())
    assert money.credits == {a: f.credit(a).call() for a in accounts}
    assert money.balance == reader.tester.get_balance(reader.address)
    check_round_reads(reader)


def check_round_reads(reader: Reader) -> None:
    """The raw reads of the round, its entries and the model agree with the getters."""
    state = reader.state()
    number, deadline, entries, completed, commits, phase, closed = reader.round_state(state)
    assert reader.call("roundInfo") == (number, PHASE[phase], deadline, entries, closed)
    assert reader.call("roundDetails")[:2] == (completed, commits)
    clients, counts, relayed, dropped = reader.call("entries")
    assert reader.entries(state, entries) == [
        (str(to_checksum_address(c)), int(n), bool(r), bool(d))
        for c, n, r, d in zip(clients, counts, relayed, dropped, strict=True)
    ]
    version, model_hash = reader.model_version_and_hash(state)
    assert reader.call("modelVersion") == (version,)
    assert reader.call("modelHash") == (model_hash,)


def assert_money(money: Money) -> None:
    """The money invariants."""
    assert money.balance == money.funded - money.withdrawn + money.held + money.returned
    assert sum(money.credits.values()) == money.credited + money.returned - money.withdrawn
    assert money.withdrawn <= money.credited + money.returned
    assert money.credited <= money.funded


# ---------------------------------------------------------------- the reference model


@dataclass
class Update:
    """A registered update (an entry of the open round) as the machine knows it."""

    client: str
    sample_count: int
    words: list[int]
    relayed: bool
    withheld: bool = False  # relayed: its relay never hands the words over
    dropped: bool = False
    measured: int = 0  # relayed: distance measured by the closes so far

    @property
    def suppliable(self) -> bool:
        """Whether a public close can carry its words: they are known and pass the range check."""
        return not self.withheld and in_range(self.words)


@dataclass
class Partial:
    """A direct submission under way (some segments sent)."""

    sample_count: int
    words: list[int]
    done: int
    distance: int


Event = tuple[str, dict[str, Any]]


@dataclass
class Ref:
    """What the contract should hold, in plain Python."""

    round_number: int
    phase: str
    deadline: int
    closed_segments: int
    model: list[int]
    model_hash: bytes
    version: int
    funded: int
    allowed_now: set[str]
    allowed_next: set[str]
    credited: int = 0
    withdrawn: int = 0
    held: int = 0
    returned: int = 0
    credits: Counter[str] = field(default_factory=Counter)
    next_model: list[int] = field(default_factory=list)  # segments of the new model so far
    checkpoint: list[int] = field(default_factory=list)  # the drift bound's, segment by segment
    # the weights (declared, then capped) each segment close of the open round averaged with
    close_weights: list[tuple[list[int], list[int]]] = field(default_factory=list)
    entries: list[Update] = field(default_factory=list)
    partial: dict[str, Partial] = field(default_factory=dict)
    last_round: dict[str, int] = field(default_factory=dict)  # round of each account's progress
    finished: set[str] = field(default_factory=set)  # whole updates in the open round
    completed: int = 0  # complete submissions (CommitReveal: reveals)
    commits: dict[str, tuple[bytes, int]] = field(default_factory=dict)  # digest, sample count
    # the transactions of each direct submission or reveal, by (round, client)
    sent: dict[tuple[int, str], list[bytes]] = field(default_factory=dict)

    def credit(self, account: str, amount: int) -> int:
        """Credit ``amount`` from the pool, or what is left of it."""
        credited = min(amount, self.funded - self.credited)
        if credited:
            self.credits[account] += credited
            self.credited += credited
        return credited

    def settle(
        self, client: str, sample_count: int, dist: int, *, counted: bool, relayed: bool
    ) -> Event:
        """Pay a measured update and return its ``SubmissionAccepted`` event."""
        tier, reward = NO_TIER, 0
        if counted:
            decision = reward_tier(
                dist,
                THRESHOLDS,
                REWARDS,
                min_reward_distance=MIN_REWARD_DISTANCE,
                max_counted_distance=MAX_COUNTED_DISTANCE,
            )
            if decision.tier != NO_TIER:
                tier, reward = decision.tier, self.credit(client, decision.amount_wei)
        return (
            "SubmissionAccepted",
            {
                "round": self.round_number,
                "client": client,
                "sampleCount": sample_count,
                "distance": dist,
                "along": 0,
                "against": 0,
                "tier": tier,
                "reward": reward,
                "counted": counted,
                "relayed": relayed,
            },
        )

    def open_next(self, now: int, phase: str) -> Event:
        """Open the next round at ``now``."""
        self.round_number += 1
        self.phase = phase
        self.deadline = now + DURATION
        self.closed_segments = 0
        self.next_model = []
        self.close_weights = []
        self.entries = []
        self.partial = {}
        self.finished = set()
        self.completed = 0
        self.commits = {}
        self.allowed_now = set(self.allowed_next)
        return ("RoundOpened", {"round": self.round_number, "deadline": self.deadline})

    def forfeit(self) -> list[Event]:
        """CommitReveal: the bonds nobody revealed go to the pool."""
        if not self.held:
            return []
        amount, self.held = self.held, 0
        self.funded += amount
        return [("BondsForfeited", {"round": self.round_number, "amount": amount})]


@dataclass(frozen=True)
class Accepted:
    """A predicted success: the events of the transaction, in order, and the state after it."""

    events: list[Event]
    state: Ref


Outcome = Revert | Accepted


def measure(ref: Ref, start: int, words: Sequence[int]) -> Revert | tuple[int, int]:
    """``_takeSegments``: the segments done after ``words`` (whole segments from ``start``) and
    their distance, or the revert."""
    used, segment, dist = 0, start, 0
    while True:
        if segment >= len(SEGMENTS):
            return Revert("CoordinatorWrongLength", {"expected": used, "given": len(words)})
        first, end = SEGMENTS[segment]
        count = end - first
        if used + count > len(words):
            return Revert("CoordinatorWrongLength", {"expected": used + count, "given": len(words)})
        chunk = list(words[used : used + count])
        error = range_error(chunk, first)
        if error is not None:
            return error
        dist += l1(chunk, ref.model[first:end])
        used += count
        segment += 1
        if used >= len(words):
            return segment, dist


def predict_submission(
    ref: Ref,
    now: int,
    sender: str,
    round_number: int,
    sample_count: int,
    first_segment: int,
    words: Sequence[int],
    *,
    phase: str,
    eligible: bool,
) -> Outcome:
    """``submit`` (phase Open) or the segments of a ``reveal`` (phase Reveal; the commitment is
    checked by the caller), up to the completion."""
    if ref.phase != phase:
        return Revert("CoordinatorWrongPhase", {"phase": PHASE[ref.phase]})
    if round_number != ref.round_number:
        return Revert("CoordinatorWrongRound", {"given": round_number, "current": ref.round_number})
    if not eligible:
        return Revert("CoordinatorNotEligible", {"account": sender, "round": round_number})
    if now >= ref.deadline:
        return Revert(
            "CoordinatorDeadlinePassed", {"round": round_number, "deadline": ref.deadline}
        )
    if phase == "Reveal" and sender not in ref.commits:
        return Revert("CoordinatorNoCommitment", {"round": round_number, "account": sender})
    if not 1 <= sample_count <= MAX_SAMPLES:
        return Revert(
            "CoordinatorInvalidSampleCount", {"sampleCount": sample_count, "max": MAX_SAMPLES}
        )
    partial = None
    if ref.last_round.get(sender) == round_number:
        if sender in ref.finished:
            return Revert("CoordinatorAlreadySubmitted", {"round": round_number, "account": sender})
        partial = ref.partial[sender]
        if sample_count != partial.sample_count:
            return Revert(
                "CoordinatorSampleCountChanged",
                {"declared": partial.sample_count, "given": sample_count},
            )
    elif len(ref.entries) >= TARGET:
        return Revert("CoordinatorRoundFull", {"round": round_number, "entries": len(ref.entries)})
    done = partial.done if partial else 0
    if first_segment != done:
        return Revert("CoordinatorWrongSegment", {"expected": done, "given": first_segment})
    measured = measure(ref, done, words)
    if isinstance(measured, Revert):
        return measured
    segments, dist = measured
    state = copy.deepcopy(ref)
    total = dist + (partial.distance if partial else 0)
    sent = [*(partial.words if partial else []), *words]
    state.last_round[sender] = round_number
    if segments < len(SEGMENTS):
        state.partial[sender] = Partial(sample_count, sent, segments, total)
        return Accepted(
            [
                (
                    "SegmentsReceived",
                    {
                        "round": round_number,
                        "client": sender,
                        "firstSegment": first_segment,
                        "count": segments - done,
                    },
                )
            ],
            state,
        )
    counted = total <= MAX_COUNTED_DISTANCE
    if counted and len(ref.entries) >= TARGET:
        return Revert("CoordinatorRoundFull", {"round": round_number, "entries": len(ref.entries)})
    state.partial.pop(sender, None)
    state.finished.add(sender)
    state.completed += 1
    if counted:
        state.entries.append(Update(sender, sample_count, sent, relayed=False))
    return Accepted(
        [state.settle(sender, sample_count, total, counted=counted, relayed=False)], state
    )


def predict_close(
    ref: Ref,
    now: int,
    sender: str,
    round_number: int,
    segment: int,
    words: Sequence[int],
    omitted: Sequence[int],
    *,
    due_phase: str,
    next_phase: str,
) -> Outcome:
    """``closeSegment`` (ClosingUnit), step by step."""
    if round_number != ref.round_number:
        return Revert("CoordinatorWrongRound", {"given": round_number, "current": ref.round_number})
    first = ref.phase != "Closing"
    if first:
        if ref.phase != due_phase:
            return Revert("CoordinatorWrongPhase", {"phase": PHASE[ref.phase]})
        if segment != 0:
            return Revert("CoordinatorWrongSegment", {"expected": 0, "given": segment})
        full = (
            len(ref.entries) >= TARGET if due_phase == "Open" else ref.completed >= len(ref.commits)
        )
        if len(ref.entries) < MINIMUM or (now < ref.deadline and not full):
            return Revert(
                "CoordinatorNotClosable",
                {
                    "round": ref.round_number,
                    "entries": len(ref.entries),
                    "target": TARGET,
                    "minimum": MINIMUM,
                    "opensAt": ref.deadline,
                },
            )
    elif segment != ref.closed_segments:
        return Revert(
            "CoordinatorWrongSegment", {"expected": ref.closed_segments, "given": segment}
        )
    state = copy.deepcopy(ref)
    first_word, end_word = SEGMENTS[segment]
    count = end_word - first_word
    last = segment + 1 == len(SEGMENTS)
    allowed_from = ref.deadline + WINDOW
    events: list[Event] = []
    chunks: list[list[int]] = []
    weights: list[int] = []
    relayed_included = 0
    cursor, position = 0, 0
    for index, entry in enumerate(state.entries):
        if position < len(omitted) and omitted[position] == index:
            if not entry.relayed or now < allowed_from:
                return Revert(
                    "CoordinatorCannotOmit", {"index": index, "allowedFrom": allowed_from}
                )
            position += 1
            if not entry.dropped:
                entry.dropped = True
                events.append(
                    state.settle(
                        entry.client,
                        entry.sample_count,
                        entry.measured,
                        counted=False,
                        relayed=True,
                    )
                )
            continue
        if entry.dropped:
            continue
        if cursor + count > len(words):
            return Revert(
                "CoordinatorWrongLength", {"expected": cursor + count, "given": len(words)}
            )
        chunk = [int(w) for w in words[cursor : cursor + count]]
        cursor += count
        if words_hash(chunk) != words_hash(segment_of(entry.words, segment)):
            return Revert("CoordinatorWordsMismatch", {"index": index, "client": entry.client})
        if not entry.relayed:
            chunks.append(chunk)
            weights.append(entry.sample_count)
            continue
        error = range_error(chunk, first_word)
        if error is not None:
            return error
        entry.measured += l1(chunk, ref.model[first_word:end_word])
        if entry.measured > MAX_COUNTED_DISTANCE:
            entry.dropped = True
            events.append(
                state.settle(
                    entry.client, entry.sample_count, entry.measured, counted=False, relayed=True
                )
            )
            continue
        chunks.append(chunk)
        weights.append(entry.sample_count)
        relayed_included += 1
        if last:
            events.append(
                state.settle(
                    entry.client, entry.sample_count, entry.measured, counted=True, relayed=True
                )
            )
    if position < len(omitted):
        return Revert(
            "CoordinatorCannotOmit", {"index": omitted[position], "allowedFrom": allowed_from}
        )
    if cursor != len(words):
        return Revert("CoordinatorWrongLength", {"expected": cursor, "given": len(words)})
    clamped = 0
    current = ref.model[first_word:end_word]
    if chunks:
        capped = capped_weights(weights, MAX_SHARE_BPS)
        state.close_weights.append((list(weights), capped))
        if capped != weights:
            note("close: the share cap lowered a weight")
        bounded = bound_step(
            average_segment(chunks, capped), current, ref.checkpoint[first_word:end_word]
        )
        written, clamped = bounded.words, bounded.clamped
        if clamped:
            note("close: the step bound held weights back")
        if bounded.by_drift:
            note("close: the drift bound held weights back")
    else:
        written = list(current)
    if ref.round_number % DRIFT_WINDOW == 0:  # the segment becomes the next checkpoint
        state.checkpoint[first_word:end_word] = written
    state.next_model.extend(written)
    # A segment that averaged nothing earns no fee.
    fee = state.credit(sender, CLOSE_FEE + RELAY_FEE * relayed_included) if chunks else 0
    events.append(
        (
            "SegmentClosed",
            {
                "round": ref.round_number,
                "segment": segment,
                "closer": sender,
                "entries": len(chunks),
                "relayed": relayed_included,
                "fee": fee,
                "clamped": clamped,
            },
        )
    )
    if not last:
        state.phase = "Closing"
        state.closed_segments = segment + 1
        return Accepted(events, state)
    state.model = state.next_model
    state.model_hash = vector_hash(state.model)
    state.version += 1
    events.extend(state.forfeit())
    events.append(
        (
            "RoundClosed",
            {
                "round": ref.round_number,
                "modelVersion": state.version,
                "modelHash": state.model_hash,
                "submissions": len(chunks),  # the updates the last segment averaged
            },
        )
    )
    events.append(state.open_next(now, next_phase))
    return Accepted(events, state)


# ---------------------------------------------------------------- driving the chain


@dataclass(frozen=True)
class Environment:
    """One deployment shared by every sequence of a machine, and the snapshot each starts from."""

    chain: Chain
    contract: Contract
    reader: Reader
    snapshot: Any
    snapshot_block: int
    owner: str
    clients: tuple[str, ...]  # the first four allowed at first (Plain)
    relayer: str
    outsider: str
    funder: str
    initial: list[int]
    opened_at: int
    chain_id: int
    topics: dict[bytes, Any]
    live: set[Any] = field(default_factory=set)  # configurations whose liveness was checked

    @property
    def accounts(self) -> tuple[str, ...]:
        """Every account that may hold credit."""
        return (*self.clients, self.relayer, self.outsider, self.funder)


def event_topics(contract: Contract) -> dict[bytes, Any]:
    """The coordinator's event classes by their topic."""
    topics = {}
    for entry in cast(list[dict[str, Any]], contract.abi):
        if entry.get("type") == "event":
            signature = f"{entry['name']}({','.join(i['type'] for i in entry['inputs'])})"
            topics[keccak(text=signature)] = getattr(contract.events, entry["name"])()
    return topics


def deploy_environment(
    chain: Chain,
    params: DeployParams,
    *,
    owner: str,
    clients: Sequence[str],
    relayer: str,
    outsider: str,
    funder: str,
    allowed: Sequence[str],
) -> Environment:
    """Deploy a coordinator in Setup, allow ``allowed`` from round 1, load a random initial model
    and take the snapshot every sequence starts from."""
    # Block times must not depend on the wall clock, or a failing sequence would not replay (and
    # Hypothesis replays it to shrink it). A reverted eth-tester chain stamps its next block
    # max(wall clock, parent + 1): with the chain a day ahead of the wall clock, every block is
    # its parent + 1 s (or + the time a rule advances), the same at every replay.
    chain.advance_time(CLOCK_LEAD)
    units = deploy_units(chain, sender=owner)
    artifact = get_contract("FLCoordinator")
    factory = chain.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    tx_hash = factory.constructor(params.as_tuple(), tuple(units)).transact(
        {"from": owner, "value": POOL, "gas": chain.tx_gas_cap}
    )
    receipt = chain.w3.eth.wait_for_transaction_receipt(tx_hash)
    assert receipt["status"] == 1
    assert receipt["contractAddress"] is not None
    contract = contract_at(chain, str(receipt["contractAddress"]), artifact)
    if allowed:
        send(chain, contract.functions.setAllowed(list(allowed), True), owner)
    initial = np.random.default_rng(2024).integers(-500, 501, size=NUM_WEIGHTS, dtype=np.int64)
    load_initial_model(chain, contract, pack(initial), owner=owner)
    reader = Reader(chain, contract)
    env = Environment(
        chain=chain,
        contract=contract,
        reader=reader,
        snapshot=chain.snapshot(),
        snapshot_block=int(chain.w3.eth.block_number),
        owner=owner,
        clients=tuple(clients),
        relayer=relayer,
        outsider=outsider,
        funder=funder,
        initial=pack(initial),
        opened_at=int(contract.functions.roundInfo().call()[2]) - DURATION,
        chain_id=chain.chain_id(),
        topics=event_topics(contract),
    )
    check_reader(reader, contract, env.accounts)
    return env


class _AbstractMachineMeta(StateMachineMeta, abc.ABCMeta):
    """Hypothesis's state-machine metaclass that also enforces abstract methods."""


class PipelineMachine(RuleBasedStateMachine, metaclass=_AbstractMachineMeta):
    """What both machines share: sending with a predicted outcome, the clock, the invariants."""

    mode_phase = "Open"  # the phase a round opens in

    def __init__(self, env: Environment, plan: str) -> None:
        super().__init__()
        env.chain.revert(env.snapshot)
        self.env = env
        self.plan = plan  # the warm-up every sequence of this run starts with
        self.chain = env.chain
        self.contract = env.contract
        self.reader = env.reader
        self.ref = Ref(
            round_number=1,
            phase=self.mode_phase,
            deadline=env.opened_at + DURATION,
            closed_segments=0,
            model=list(env.initial),
            model_hash=vector_hash(env.initial),
            version=0,
            checkpoint=list(env.initial),
            funded=POOL,
            allowed_now=set(env.clients[:4]),
            allowed_next=set(env.clients[:4]),
        )
        self.settled: Counter[tuple[int, str]] = Counter()
        self.seen_round = 1
        self.seen_model = (list(env.initial), self.ref.model_hash, 0)
        self.closed_rounds = 0  # rounds closed in the step being checked
        self.calldata: dict[tuple[int, str], list[int]] = {}

    # ------------------------------------------------------------ the clock

    def boundaries(self) -> set[int]:
        """Moments at which a call changes its outcome."""
        return {self.ref.deadline, self.ref.deadline + WINDOW, self.ref.deadline + 2 * WINDOW}

    def now(self) -> int:
        """The timestamp of the next transaction. A call runs at the latest block and the
        transaction in the next one (+1 s): when a boundary falls between the two, the clock
        steps over it first, so that the pre-check and the transaction agree."""
        latest = self.chain.timestamp()
        if latest + 1 in self.boundaries():
            self.chain.advance_time(0)
            latest += 1
        return latest + 1

    # ------------------------------------------------------------ sending

    def decoded(self, receipt: TxReceipt) -> list[Event]:
        """Every event of the coordinator in ``receipt``, in order."""
        out = []
        for log in receipt["logs"]:
            kind = self.env.topics[bytes(log["topics"][0])]
            args = {
                k: to_checksum_address(v)
                if isinstance(v, str) and v.startswith("0x") and len(v) == 42
                else v
                for k, v in dict(kind.process_log(log)["args"]).items()
            }
            out.append((kind.event_name, args))
        return out

    def run(
        self, function: ContractFunction, sender: str, outcome: Outcome, *, value: int = 0, now: int
    ) -> TxReceipt | None:
        """Send ``function`` and check it against ``outcome``; on success take the predicted
        state. A predicted revert is checked with a call (a revert changes nothing)."""
        tx: dict[str, Any] = {"from": sender, "value": value, "gas": GAS}
        if isinstance(outcome, Revert):
            try:
                function.call(tx)  # type: ignore[arg-type]
            except Exception as exc:
                error = translate(exc, self.contract.abi, function.fn_name)
            else:
                raise AssertionError(f"expected {outcome}, the call succeeded")
            assert isinstance(error, ContractRevertError), f"expected {outcome}, got {error!r}"
            assert (error.name, revert_args(error)) == (outcome.name, outcome.args), (
                f"expected {outcome}, got {error}"
            )
            note(f"revert {outcome.name}")
            return None
        tx_hash = function.transact(tx)  # type: ignore[arg-type]
        receipt = self.chain.w3.eth.wait_for_transaction_receipt(tx_hash)
        if receipt["status"] != 1:
            try:
                function.call(tx)  # type: ignore[arg-type]
            except Exception as exc:
                raise AssertionError(
                    f"{function.fn_name} failed: {translate(exc, self.contract.abi, function.fn_name)}"
                ) from exc
            raise AssertionError(f"{function.fn_name} failed in its block")
        assert int(self.chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"]) == now
        got = self.decoded(receipt)
        assert got == outcome.events, (
            f"{function.fn_name}:\n got      {got}\n expected {outcome.events}"
        )
        for name, args in got:
            if name == "SubmissionAccepted":
                self.settled[(int(args["round"]), str(args["client"]))] += 1
            if name in ("RoundClosed", "RoundAbandoned"):
                self.closed_rounds += name == "RoundClosed"
                note(f"round {'closed' if name == 'RoundClosed' else 'abandoned'}")
        self.ref = outcome.state
        return receipt

    # ------------------------------------------------------------ rules both machines share

    def move_money(self, action: str, pick: int) -> None:
        """Fund the pool (a zero value reverts), or withdraw all of an account's credit (an
        account owed some, when there is one; none: NothingToWithdraw)."""
        now = self.now()
        outcome: Outcome
        if action == "fund":
            amount = (0, 1, 150, 500)[pick % 4]
            if amount == 0:
                outcome = Revert("CoordinatorZeroFunding", {})
            else:
                state = copy.deepcopy(self.ref)
                state.funded += amount
                outcome = Accepted(
                    [("PoolFunded", {"funder": self.env.funder, "amount": amount})], state
                )
                note("fund")
            self.run(
                self.contract.functions.fund(), self.env.funder, outcome, value=amount, now=now
            )
            return
        accounts = list(self.env.accounts)
        owed_accounts = [a for a in accounts if self.ref.credits[a]]
        if action == "withdraw" and owed_accounts:
            accounts = owed_accounts
        account = accounts[pick % len(accounts)]
        owed = self.ref.credits[account]
        if owed == 0:
            outcome = Revert("CoordinatorNothingToWithdraw", {"account": account})
        else:
            state = copy.deepcopy(self.ref)
            state.credits[account] = 0
            state.withdrawn += owed
            outcome = Accepted([("CreditWithdrawn", {"client": account, "amount": owed})], state)
            note("withdraw: paid")
        self.run(self.contract.functions.withdraw(), account, outcome, now=now)

    @rule(to=st.sampled_from(("deadline", "window", 1, 119, 300)))
    def advance_time(self, to: str | int) -> None:
        """Let time pass (mines a block): to just past the deadline, or past the close window,
        or by a number of seconds."""
        latest = self.chain.timestamp()
        if to == "deadline":
            self.chain.advance_time(max(0, self.ref.deadline - latest))
        elif to == "window":
            self.chain.advance_time(max(0, self.ref.deadline + WINDOW - latest))
        else:
            self.chain.advance_time(int(to))

    def check_now(self) -> None:
        """The invariants, between the transactions of one step."""
        self.money_adds_up()
        self.one_settlement_per_account_and_round()
        self.round_and_model_move_only_by_closes()

    # ------------------------------------------------------------ invariants

    @invariant()
    def money_adds_up(self) -> None:
        """Balance, credits, totals: as the invariants say and as the reference predicts."""
        money = read_money(self.reader, self.env.accounts)
        assert_money(money)
        ref = self.ref
        assert (money.funded, money.credited, money.withdrawn, money.held, money.returned) == (
            ref.funded,
            ref.credited,
            ref.withdrawn,
            ref.held,
            ref.returned,
        )
        assert money.credits == {a: ref.credits[a] for a in self.env.accounts}

    @invariant()
    def one_settlement_per_account_and_round(self) -> None:
        """At most one ``SubmissionAccepted`` per (round, account)."""
        assert all(count == 1 for count in self.settled.values()), self.settled

    @invariant()
    def round_and_model_move_only_by_closes(self) -> None:
        """The round number never decreases; the model changes only with the last segment of a
        close, and is the reference's; the round's state and entries are the reference's."""
        state = self.reader.state()
        number, deadline, entries, completed, commits, phase, closed = self.reader.round_state(
            state
        )
        version, model_hash = self.reader.model_version_and_hash(state)
        (words,) = self.reader.call("globalModel")
        model = ([int(w) for w in words], model_hash, version)
        assert number >= self.seen_round
        if model != self.seen_model:
            assert self.closed_rounds == 1, "the model changed without a round closing"
            step = lane_values(model[0]) - lane_values(self.seen_model[0])
            assert int(np.abs(step).max()) <= MAX_STEP, "a weight moved more than maxStep"
        assert version == self.seen_model[2] + self.closed_rounds
        ref = self.ref
        assert (number, phase, deadline, entries, completed, commits, closed) == (
            ref.round_number,
            ref.phase,
            ref.deadline,
            len(ref.entries),
            ref.completed,
            len(ref.commits),
            ref.closed_segments,
        )
        assert model == (ref.model, ref.model_hash, ref.version)
        assert model_hash == vector_hash(model[0])
        assert self.reader.entries(state, entries) == [
            (e.client, e.sample_count, e.relayed, e.dropped) for e in ref.entries
        ]
        self.seen_round, self.seen_model, self.closed_rounds = number, model, 0

    @invariant()
    def incentive_bounds_hold(self) -> None:
        """The drift checkpoint on chain is the reference's (the initial model, then the model
        that closed the last round numbered a multiple of ``DRIFT_WINDOW``) and the global model
        lies within ``MAX_DRIFT`` of it (outside a close under way, which may have refreshed the
        checkpoint's first segment already); every segment close averaged each counted update
        with at most ``MAX_SHARE_BPS`` of the weight (or, when no cap can meet the share, every
        update with the same weight), never more than it declared."""
        state = self.reader.state()
        checkpoint = self.reader.checkpoint(state)
        assert checkpoint == self.ref.checkpoint
        if self.ref.phase != "Closing":
            (words,) = self.reader.call("globalModel")
            drift = lane_values([int(w) for w in words]) - lane_values(checkpoint)
            assert int(np.abs(drift).max()) <= MAX_DRIFT, "the model drifted beyond maxDrift"
        for declared, capped in self.ref.close_weights:
            assert all(0 < c <= d for c, d in zip(capped, declared, strict=True))
            total = sum(capped)
            within = all(c * 10_000 <= MAX_SHARE_BPS * total for c in capped)
            infeasible = MAX_SHARE_BPS * len(capped) < 10_000  # then every weight is equal
            assert within or (infeasible and len(set(capped)) == 1), (declared, capped)

    @invariant()
    def the_round_always_advances(self) -> None:
        """Liveness, checked in a snapshot from the current state (see the module docstring)."""
        key = self.liveness_key()
        if key in self.env.live:
            return
        snapshot = self.chain.snapshot()
        try:
            note(f"liveness: {self.advance_round()}")
        finally:
            self.chain.revert(snapshot)
        self.env.live.add(key)

    def liveness_key(self) -> Any:
        """What the liveness check depends on: the phase, the segments closed, whether every
        commitment was revealed (and how many there are), and each entry's path, words and fate (not the round number,
        the model, the money or the clock, which the public actions do not depend on)."""
        ref = self.ref
        return (
            ref.phase,
            ref.closed_segments,
            len(ref.commits),
            ref.completed >= len(ref.commits),
            tuple((e.relayed, e.suppliable, e.dropped) for e in ref.entries),
        )

    @abc.abstractmethod
    def advance_round(self) -> str:
        """Move the clock past every deadline and the close window, then advance the round with
        public actions only; how it ended."""

    def public_words(self, round_number: int, client: str) -> list[int]:
        """The words ``client`` sent in ``round_number`` (``submit`` or ``reveal``), decoded from
        the calldata of its transactions."""
        key = (round_number, client)
        if key not in self.calldata:
            parts = {}
            for tx_hash in self.ref.sent[key]:
                tx = self.chain.w3.eth.get_transaction(HexBytes(tx_hash))
                _, args = self.contract.decode_function_input(tx["input"])
                parts[int(args["firstSegment"])] = [int(w) for w in args["words"]]
            self.calldata[key] = [w for first in sorted(parts) for w in parts[first]]
        return self.calldata[key]

    def public_close(self, segment: int) -> ContractFunction:
        """The close of ``segment`` an outsider makes from public data: the words of each entry
        still in the round, a direct one's from its transactions, a relayed one's from its relay;
        the relayed entries whose words it cannot get, or which fail the range check, left out."""
        state = self.reader.state()
        number, _, count, *_ = self.reader.round_state(state)
        relay_copies = {e.client: e for e in self.ref.entries if e.relayed}
        words: list[int] = []
        omitted: list[int] = []
        for index, (client, _, relayed, dropped) in enumerate(self.reader.entries(state, count)):
            if dropped:
                continue
            if not relayed:
                words.extend(segment_of(self.public_words(number, client), segment))
            elif relay_copies[client].suppliable:
                words.extend(segment_of(relay_copies[client].words, segment))
            else:
                omitted.append(index)
        return close_function(
            self.contract, round_number=number, segment=segment, words=words, omitted=omitted
        )

    def send_public(self, function: ContractFunction) -> None:
        """Send a public action of the liveness check: it must succeed."""
        receipt = self.chain.w3.eth.wait_for_transaction_receipt(
            function.transact({"from": self.env.outsider, "gas": GAS})
        )
        assert receipt["status"] == 1, f"liveness: {function.fn_name} failed"

    def teardown(self) -> None:
        """The chain's log holds exactly the settlements the machine saw, at most one per
        (round, account)."""
        logs = self.contract.events.SubmissionAccepted().get_logs(
            from_block=self.env.snapshot_block + 1
        )
        on_chain = Counter((int(log["args"]["round"]), str(log["args"]["client"])) for log in logs)
        assert all(count == 1 for count in on_chain.values())
        assert on_chain == self.settled
        check_round_reads(self.reader)


# ---------------------------------------------------------------- Plain mode

# Warm-ups (see PlainMachine.warm_up).
PLAIN_PLANS = (
    "MDDD?",
    "DRW!]!",
    "SSS!SSS!",
    "DDY!$",
    "MDXR",
    "FDDH",
    "RPV",
    "DD>A",
    "DDDR",
    "D]",
)
DIRECT_KINDS = (
    *("whole",) * 10,
    *("first_segment", "continue") * 2,
    "short",
    "long",
    "empty",
    "out_of_range",
    "padding",
    "stale_round",
    "future_round",
    "zero_samples",
    "too_many_samples",
    "changed_samples",
    "wrong_segment",
    "duplicate",
)
RELAY_KINDS = (
    *("valid",) * 6,
    *("withheld",) * 2,
    "forged",
    "altered",
    "other_count",
    "replayed",
    "older_round",
    "malleable",
    "wrong_length",
    "zero_samples",
    "out_of_range",
)
CLOSE_KINDS = (
    *("public",) * 10,
    *("finalize",) * 4,
    "carry_everything",
    "omit_relayed",
    "omit_direct",
    "unsorted",
    "tampered",
    "short",
    "long",
    "wrong_segment",
    "stale_round",
)


@dataclass(frozen=True)
class Signed:
    """An update as a relayer would send it, with what the machine knows about it."""

    update: SignedUpdate
    genuine_round: int | None  # the round whose digest the client signed, None: not the client's
    withheld: bool


class PlainMachine(PipelineMachine):
    """Random calls against a Plain-mode coordinator, each checked against the reference."""

    def __init__(self, env: Environment, plan: str) -> None:
        super().__init__(env, plan)
        self.signed_updates: list[Signed] = []

    def vector(self, seed: int, scale: int) -> list[int]:
        """The global model plus a random step of up to ``scale`` per weight."""
        rng = np.random.default_rng(seed)
        values = [v for w in self.ref.model for v in lanes(w)][:NUM_WEIGHTS]
        step = rng.integers(-scale, scale + 1, size=NUM_WEIGHTS)
        return pack(np.clip(np.array(values) + step, -MAX_ABS, MAX_ABS))

    # ------------------------------------------------------------ direct submissions

    @initialize(seed=st.integers(0, 255))
    def warm_up(self, seed: int) -> None:
        """Every sequence starts with the run's plan (one letter a step). Probes that must all
        fail: malformed direct submissions from client 3 and client 2 (M: out of range, nonzero
        padding, a sample count changed half-way, the wrong segment), malformed relayed updates
        (V: a replay of one registered, malleable, forged, zero samples, the wrong number of
        segment hashes), and refused
        calls (A: fund nothing, withdraw nothing, the allowlist changed by an outsider, a
        submission by an account never allowed). Updates of the open round: direct (D), relayed
        (R), relayed with words the relay withholds (W), the first segment of one (P), a direct
        or relayed poisoner (X, Y: steps of up to 1,500), a free rider (F), a direct step of up
        to 300 (S: the first of a round declares the most samples allowed, the others a few, so
        that the share cap and the step bound bite). The clock past the deadline (>) or the close
        window (]). A close from the public data (!: the updates that follow are the next
        round's), or with words tampered with (?), or of segment 0 only (H: then a submission
        and finalize, refused while the round is closing). A withdrawal of credit ($)."""
        relayed: list[tuple[int, str, int, int, int]] = []
        who = 0
        note(f"warm-up: {self.plan or 'none'}")
        for kind in self.plan:
            if relayed and kind not in "RWY":
                self.submit_relayed(relayed, stale=False)
                relayed = []
            samples = 1 + (seed * (who + 1)) % MAX_SAMPLES
            scale = {"X": 1_500, "Y": 1_500, "F": 0, "S": 300}.get(kind, 30)
            if kind == "S":
                samples = MAX_SAMPLES if who == 0 else 1 + (seed + who) % 50
            if kind in "DXFS":
                self.submit_one(who, "whole", seed + who, scale, samples)
            elif kind == "P":
                self.submit_one(who, "first_segment", seed + who, scale, samples)
            elif kind in "RWY":
                withheld = "withheld" if kind == "W" else "valid"
                relayed.append((who, withheld, seed + who, scale, samples))
            else:
                self.warm_up_step(kind, seed)
                if kind in "!?":
                    who = 0
                continue
            who += 1
        if relayed:
            self.submit_relayed(relayed, stale=False)

    def warm_up_step(self, kind: str, seed: int) -> None:
        """A step of the warm-up other than an update (see :meth:`warm_up`)."""
        samples = 1 + seed % MAX_SAMPLES
        if kind == "M":
            for malformed in ("out_of_range", "padding", "first_segment", "changed_samples"):
                self.submit_one(3, malformed, seed, 30, samples)
            self.submit_one(2, "wrong_segment", seed, 30, samples)
        elif kind == "V":
            for malformed in ("replayed", "malleable", "forged", "zero_samples", "wrong_length"):
                self.submit_relayed([(1, malformed, seed, 30, samples)], stale=False)
        elif kind == "A":
            self.move_money("fund", 0)  # no value
            self.move_money("withdraw_nothing", len(self.env.accounts) - 1)  # the funder
            self.set_allowed({0}, True, by_owner=False)
            self.submit_one(5, "whole", seed, 30, samples)  # the outsider, never allowed
        elif kind in ">]":
            self.advance_time("deadline" if kind == ">" else "window")
        elif kind == "$":
            self.move_money("withdraw", seed)
        elif kind == "H":
            self.close_segment("public", True, 0)
            self.check_now()
            self.submit_one(3, "whole", seed, 30, samples)
            self.finalize(True)
        else:
            self.close_segment("public" if kind == "!" else "tampered", True, 1)
        self.check_now()

    @rule(
        batch=st.lists(
            st.tuples(
                st.sampled_from((0, 0, 1, 1, 2, 2, 3, 3, 4, 5)),
                st.sampled_from(DIRECT_KINDS),
                st.integers(0, 255),
                st.sampled_from(STEP_SCALES),
                st.integers(1, MAX_SAMPLES),
            ),
            min_size=1,
            max_size=3,
        )
    )
    def submit(self, batch: list[tuple[int, str, int, int, int]]) -> None:
        """One to three direct submissions, the invariants checked after each."""
        for item in batch:
            self.submit_one(*item)
            self.check_now()

    def submit_one(self, who: int, kind: str, seed: int, scale: int, samples: int) -> None:
        """A direct submission: whole, its first segment only, the rest of one under way, or
        malformed. Sender 4 is not allowed at first; sender 5 never is."""
        ref = self.ref
        sender = (*self.env.clients, self.env.outsider)[who]
        words = self.vector(seed, scale)
        round_number, first = ref.round_number, 0
        under_way = (
            ref.partial.get(sender) if ref.last_round.get(sender) == ref.round_number else None
        )
        if kind == "first_segment":
            words = words[: SEGMENTS[0][1]]
        elif kind in ("continue", "changed_samples") and under_way is not None:
            first = under_way.done
            words = words[SEGMENTS[first][0] :]
            samples = (
                under_way.sample_count
                if kind == "continue"
                else under_way.sample_count % MAX_SAMPLES + 1
            )
        elif kind in ("continue", "changed_samples", "wrong_segment"):
            first = 1
            words = words[SEGMENTS[1][0] :]
        elif kind == "short":
            words = words[:-1]
        elif kind == "long":
            words = [*words, words[0]]
        elif kind == "empty":
            words = []
        elif kind == "out_of_range":
            rng = np.random.default_rng(seed)
            index = int(rng.integers(0, NUM_WEIGHTS))
            bad = int(rng.choice([-1, 1])) * int(rng.integers(MAX_ABS + 1, OFFSET))
            words[index // 16] = set_lane(words[index // 16], index % 16, bad)
        elif kind == "padding":
            lane = NUM_WEIGHTS % 16 + seed % (16 - NUM_WEIGHTS % 16)
            words[-1] = set_lane(words[-1], lane, 1 + seed % MAX_ABS)
        elif kind == "stale_round":
            round_number -= 1
        elif kind == "future_round":
            round_number += 1
        elif kind == "zero_samples":
            samples = 0
        elif kind == "too_many_samples":
            samples = MAX_SAMPLES + 1
        elif kind == "duplicate" and ref.finished:
            sender = sorted(ref.finished)[seed % len(ref.finished)]
        now = self.now()
        outcome = predict_submission(
            self.ref,
            now,
            sender,
            round_number,
            samples,
            first,
            words,
            phase="Open",
            eligible=sender in self.ref.allowed_now,
        )
        if isinstance(outcome, Accepted):
            self.note_settlements(outcome.events, "submit")
        function = self.contract.functions.submit(round_number, samples, first, words)
        receipt = self.run(function, sender, outcome, now=now)
        if receipt is not None:
            self.ref.sent.setdefault((round_number, sender), []).append(
                bytes(receipt["transactionHash"])
            )

    def note_settlements(self, events: Sequence[Event], path: str) -> None:
        """Label each settlement for the coverage check."""
        for name, args in events:
            if name == "SegmentsReceived":
                note(f"{path}: segments {args['firstSegment']}.. received")
            if name != "SubmissionAccepted":
                continue
            if not args["counted"]:
                label = (
                    "poisoner left out, unpaid"
                    if args["distance"] > MAX_COUNTED_DISTANCE
                    else "left out, unpaid"
                )
            elif args["tier"] == NO_TIER:
                label = "free rider counted, unpaid"
            else:
                label = "paid" if args["reward"] else "tier earned, pool dry"
            note(f"{path}: {label}")

    # ------------------------------------------------------------ relayed submissions

    def sign(
        self, signer: str, client: str, words: list[int], round_number: int, samples: int
    ) -> SignedUpdate:
        """``client``'s update ``words`` as ``signer`` signs it (EIP-712 ``Update``)."""
        typed = update_typed_data(
            chain_id=self.env.chain_id,
            contract=self.env.reader.address,
            round_number=round_number,
            segments=len(SEGMENTS),
            sample_count=samples,
            words_hash=vector_hash(words),
        )
        return SignedUpdate(
            round_number=round_number,
            client=client,
            sample_count=samples,
            segment_hashes=tuple(words_hash(segment_of(words, s)) for s in range(len(SEGMENTS))),
            signature=sign_update(self.chain.signer(signer), typed),
            words=tuple(words),
        )

    def make_signed(self, who: int, kind: str, seed: int, scale: int, samples: int) -> Signed:
        """A signed update of ``kind`` for client ``who`` in the open round."""
        ref = self.ref
        client = self.env.clients[who]
        number = ref.round_number
        if kind in ("replayed", "older_round") and self.signed_updates:
            pool = [
                s
                for s in self.signed_updates
                if (s.genuine_round == number) == (kind == "replayed")
            ]
            if pool:
                return pool[seed % len(pool)]
        words = self.vector(seed, scale)
        if kind == "out_of_range":
            index = seed % NUM_WEIGHTS
            words[index // 16] = set_lane(words[index // 16], index % 16, MAX_ABS + 1 + seed)
        if kind == "zero_samples":
            samples = 0
        update = self.sign(client, client, words, number, samples)
        genuine: int | None = number
        if kind == "forged":  # signed by another account
            impostor = self.env.clients[(who + 1) % len(self.env.clients)]
            update = self.sign(impostor, client, words, number, samples)
            genuine = None
        elif kind == "altered":  # a segment hash changed after signing
            hashes = list(update.segment_hashes)
            hashes[seed % len(hashes)] = keccak(hashes[seed % len(hashes)])
            update = replace(update, segment_hashes=tuple(hashes))
            genuine = None
        elif kind == "other_count":  # the sample count changed after signing
            update = replace(update, sample_count=samples % MAX_SAMPLES + 1)
            genuine = None
        elif kind == "malleable":
            update = replace(update, signature=malleable_twin(update.signature))
        elif kind == "wrong_length":
            kept = update.segment_hashes
            update = replace(update, segment_hashes=kept[:1] if seed % 2 else (*kept, kept[0]))
        made = Signed(update, genuine, withheld=kind == "withheld")
        if kind not in ("malleable", "wrong_length"):
            self.signed_updates.append(made)
        return made

    def predict_relay(
        self, now: int, round_number: int, batch: Sequence[Signed], kinds: Sequence[str]
    ) -> Outcome:
        """``submitRelayed``: every update is checked in order; one failure reverts the batch."""
        ref = self.ref
        if ref.phase != "Open":
            return Revert("CoordinatorWrongPhase", {"phase": PHASE[ref.phase]})
        if round_number != ref.round_number:
            return Revert(
                "CoordinatorWrongRound", {"given": round_number, "current": ref.round_number}
            )
        if now >= ref.deadline:
            return Revert(
                "CoordinatorDeadlinePassed", {"round": round_number, "deadline": ref.deadline}
            )
        state = copy.deepcopy(ref)
        events: list[Event] = []
        for item, kind in zip(batch, kinds, strict=True):
            update = item.update
            client = update.client
            if len(update.segment_hashes) != len(SEGMENTS):
                return Revert(
                    "CoordinatorWrongLength",
                    {"expected": len(SEGMENTS), "given": len(update.segment_hashes)},
                )
            if kind == "malleable":
                return Revert("CoordinatorMalleableSignature", {"client": client})
            if item.genuine_round != round_number:
                return Revert("CoordinatorInvalidSignature", {"client": client})
            if client not in state.allowed_now:
                return Revert("CoordinatorNotEligible", {"account": client, "round": round_number})
            if not 1 <= update.sample_count <= MAX_SAMPLES:
                return Revert(
                    "CoordinatorInvalidSampleCount",
                    {"sampleCount": update.sample_count, "max": MAX_SAMPLES},
                )
            if state.last_round.get(client) == round_number:
                return Revert(
                    "CoordinatorUpdateReplayed", {"client": client, "round": round_number}
                )
            if len(state.entries) >= TARGET:
                return Revert(
                    "CoordinatorRoundFull", {"round": round_number, "entries": len(state.entries)}
                )
            state.entries.append(
                Update(
                    client,
                    update.sample_count,
                    list(update.words),
                    relayed=True,
                    withheld=item.withheld,
                )
            )
            state.last_round[client] = round_number
            state.finished.add(client)
            state.completed += 1
            events.append(
                (
                    "UpdateRelayed",
                    {
                        "round": round_number,
                        "client": client,
                        "relayer": self.env.relayer,
                        "sampleCount": update.sample_count,
                    },
                )
            )
        return Accepted(events, state)

    @rule(
        batch=st.lists(
            st.tuples(
                st.integers(0, 4),
                st.sampled_from(RELAY_KINDS),
                st.integers(0, 255),
                st.sampled_from(STEP_SCALES),
                st.integers(1, MAX_SAMPLES),
            ),
            min_size=1,
            max_size=2,
        ),
        stale=st.booleans(),
    )
    def submit_relayed(self, batch: list[tuple[int, str, int, int, int]], stale: bool) -> None:
        """A relayer registers one or two signed updates (sometimes naming the previous round)."""
        made = [self.make_signed(*item) for item in batch]
        kinds = [item[1] for item in batch]
        number = self.ref.round_number - (1 if stale and self.ref.round_number > 1 else 0)
        now = self.now()
        outcome = self.predict_relay(now, number, made, kinds)
        if isinstance(outcome, Accepted):
            note(
                "relay: registered" + (" (words withheld)" if any(m.withheld for m in made) else "")
            )
        function = relay_function(self.contract, number, [m.update for m in made])
        self.run(function, self.env.relayer, outcome, now=now)

    # ------------------------------------------------------------ closes, finalize, allowlist

    @rule(kind=st.sampled_from(CLOSE_KINDS), by_outsider=st.booleans(), seed=st.integers(0, 255))
    def close_segment(self, kind: str, by_outsider: bool, seed: int) -> None:
        """Close the due segment from the public data: the words of every entry in ``entries()``
        order, those it cannot supply left out (they can be only after the close window), and
        half the time the rest of the close at once; or ``finalize``; or a variant that must
        fail: the wrong segment or round, words tampered with, too few or too many, a direct
        entry or unsorted indexes left out."""
        if kind == "finalize":
            self.finalize(by_outsider)
            return
        ref = self.ref
        sender = self.env.outsider if by_outsider else self.env.relayer
        segment = ref.closed_segments if ref.phase == "Closing" else 0
        number = ref.round_number
        words: list[int] = []
        omitted: list[int] = []
        for index, entry in enumerate(ref.entries):
            if entry.dropped:
                continue
            carry = entry.suppliable or (kind == "carry_everything" and not entry.withheld)
            if entry.relayed and (not carry or kind == "omit_relayed"):
                omitted.append(index)
            else:
                words.extend(segment_of(entry.words, segment))
        direct = [i for i, e in enumerate(ref.entries) if not e.relayed]
        if kind == "omit_direct" and direct:
            omitted = sorted({*omitted, direct[seed % len(direct)]})
        elif kind == "unsorted" and len(omitted) >= 2:
            omitted = omitted[::-1]
        elif kind == "unsorted":
            omitted = [*omitted, len(ref.entries) + seed % 3]
        elif kind == "tampered" and words:
            position = seed % len(words)
            words[position] = set_lane(
                words[position], seed % 16, lanes(words[position])[seed % 16] + 1
            )
        elif kind == "short" and words:
            words = words[:-1]
        elif kind == "long":
            words = [*words, words[0] if words else 1]
        elif kind == "wrong_segment":
            segment = (segment + 1) % len(SEGMENTS)
        elif kind == "stale_round":
            number -= 1
        self.close_with(sender, number, segment, words, omitted)
        if kind == "public" and seed % 2 and self.ref.phase == "Closing":
            self.check_now()
            self.close_segment("public", by_outsider, 0)  # the rest of the close, at once

    def close_with(
        self, sender: str, number: int, segment: int, words: list[int], omitted: list[int]
    ) -> None:
        """Send one close and check it."""
        ref = self.ref
        now = self.now()
        outcome = predict_close(
            ref, now, sender, number, segment, words, omitted, due_phase="Open", next_phase="Open"
        )
        if isinstance(outcome, Accepted):
            self.note_settlements(outcome.events, "close")
            note(f"close: segment {segment} written")
            if omitted:
                note("close: relayed entries left out")
        function = close_function(
            self.contract, round_number=number, segment=segment, words=words, omitted=omitted
        )
        self.run(function, sender, outcome, now=now)

    def finalize(self, by_outsider: bool) -> None:
        """End a round nobody closed, from closeWindow after its deadline (twice that when it
        holds its minimum: anyone can close it from closeWindow on)."""
        ref = self.ref
        sender = self.env.outsider if by_outsider else self.env.relayer
        now = self.now()
        outcome: Outcome
        opens = ref.deadline + WINDOW * (2 if len(ref.entries) >= MINIMUM else 1)
        if ref.phase in ("Setup", "Closing"):
            outcome = Revert("CoordinatorWrongPhase", {"phase": PHASE[ref.phase]})
        elif now < opens:
            outcome = Revert(
                "CoordinatorNotClosable",
                {
                    "round": ref.round_number,
                    "entries": len(ref.entries),
                    "target": TARGET,
                    "minimum": MINIMUM,
                    "opensAt": opens,
                },
            )
        else:
            state = copy.deepcopy(ref)
            abandoned: Event = (
                "RoundAbandoned",
                {"round": ref.round_number, "submissions": len(ref.entries)},
            )
            outcome = Accepted([abandoned, state.open_next(now, "Open")], state)
        self.run(self.contract.functions.finalize(), sender, outcome, now=now)

    @rule(
        action=st.sampled_from(
            (
                "fund",
                "withdraw",
                "withdraw",
                "withdraw_nothing",
                "allow",
                "allow",
                "disallow",
                "allow_by_outsider",
            )
        ),
        pick=st.integers(0, 255),
    )
    def administer(self, action: str, pick: int) -> None:
        """Money (fund, withdraw) or the allowlist (the owner allows or disallows one or two
        clients from the next round; anyone else is refused)."""
        if action.startswith(("fund", "withdraw")):
            self.move_money(action, pick)
            return
        who = {pick % 5, (pick // 5) % 5} if pick % 2 else {pick % 5}
        self.set_allowed(who, action != "disallow", action != "allow_by_outsider")

    def set_allowed(self, who: set[int], allowed: bool, by_owner: bool) -> None:
        """The owner changes eligibility, in force from the next round (anyone else: refused)."""
        accounts = [self.env.clients[i] for i in sorted(who)]
        sender = self.env.owner if by_owner else self.env.outsider
        now = self.now()
        outcome: Outcome
        if not by_owner:
            outcome = Revert("CoordinatorUnauthorized", {"caller": sender})
        else:
            state = copy.deepcopy(self.ref)
            for account in accounts:
                (state.allowed_next.add if allowed else state.allowed_next.discard)(account)
            from_round = self.ref.round_number + 1
            outcome = Accepted(
                [
                    (
                        "AllowlistUpdated",
                        {"account": a, "allowed": allowed, "fromRound": from_round},
                    )
                    for a in accounts
                ],
                state,
            )
            note("allowlist: updated for the next round")
        self.run(self.contract.functions.setAllowed(accounts, allowed), sender, outcome, now=now)

    # ------------------------------------------------------------ liveness

    def advance_round(self) -> str:
        start = self.ref.round_number
        opens = self.ref.deadline + WINDOW
        latest = self.chain.timestamp()
        if latest < opens:
            self.chain.advance_time(opens - latest)
        how = "ended by finalize"
        for sent in range(len(SEGMENTS) + 1):
            number, _, entries, _, _, phase, closed = self.reader.round_state(self.reader.state())
            if number != start:
                assert (number, phase) == (start + 1, "Open")
                return how
            if phase == "Open" and entries < MINIMUM:
                self.send_public(self.contract.functions.finalize())
            else:
                self.send_public(self.public_close(int(closed)))
                how = f"closed in {sent + 1} public closes"
        raise AssertionError(
            f"round {start} did not advance in {len(SEGMENTS) + 1} public transactions"
        )


# ---------------------------------------------------------------- CommitReveal mode


# Warm-ups (see CommitRevealMachine.warm_up).
COMMIT_REVEAL_PLANS = (
    "CBCCMNRR>",
    "CBCCNR]F",
    "CB>F",
    "CBC",
    "CBCCRRR?!",
    "CBC>FR",
    "CBCCR]",
    "LBLLRRR!",
    "CBCCRR>!",
)
COMMIT_KINDS = ("valid", "duplicate", "wrong_bond", "empty", "stale_round", "valid")
REVEAL_KINDS = (
    "whole",
    "whole",
    "whole",
    "first_segment",
    "continue",
    "wrong_salt",
    "copy",
    "anyone",
)


class CommitRevealMachine(PipelineMachine):
    """Random calls against a CommitReveal coordinator: commits with the bond, reveals (whole,
    a segment at a time, mismatched), closes, finalize and forfeits."""

    mode_phase = "Commit"

    def __init__(self, env: Environment, plan: str) -> None:
        super().__init__(env, plan)
        self.ref.allowed_now = set(env.accounts)  # no allowlist
        self.ref.allowed_next = set(env.accounts)
        self.salts: dict[tuple[int, str], tuple[bytes, list[int]]] = {}

    def vector(self, seed: int, scale: int) -> list[int]:
        """The global model plus a random step of up to ``scale`` per weight."""
        rng = np.random.default_rng(seed)
        values = np.array([v for w in self.ref.model for v in lanes(w)][:NUM_WEIGHTS])
        step = rng.integers(-scale, scale + 1, size=NUM_WEIGHTS)
        return pack(np.clip(values + step, -MAX_ABS, MAX_ABS))

    @initialize(seed=st.integers(0, 255))
    def warm_up(self, seed: int) -> None:
        """Every sequence starts with the run's plan: commitments (C; L: to a step of up to 300,
        the first declaring the most samples, so that the share cap and the step bound bite) and
        commitments that must fail (B: the wrong bond, a zero commitment, a second one); then
        maybe reveals (R), a mismatched reveal (M), a reveal without a commitment (N), the clock
        past the deadline (>) or the close window (]), a close from the reveals (!) or with a
        word tampered with (?), and finalize (F)."""
        plan = self.plan
        note(f"warm-up: {plan}")
        committed = revealed = 0
        for step in plan:
            if step == "C":
                samples = 1 + seed * (committed + 1) % MAX_SAMPLES
                self.commit(committed, "valid", seed + committed, 30, samples)
                committed += 1
            elif step == "L":  # a step of up to 300, the first with the most samples
                samples = MAX_SAMPLES if committed == 0 else 1 + (seed + committed) % 50
                self.commit(committed, "valid", seed + committed, 300, samples)
                committed += 1
            elif step == "B":
                for kind in ("wrong_bond", "empty", "duplicate"):
                    self.commit(4, kind, seed, 30, 1)
            elif step == "R":
                self.reveal(revealed, "whole", seed)
                revealed += 1
            elif step == "M":
                self.reveal(revealed, "wrong_salt", seed)
            elif step == "N":
                self.reveal(4, "anyone", seed)
            elif step in ">]":
                self.advance_time("deadline" if step == ">" else "window")
            elif step in "!?":
                self.close_segment("public" if step == "!" else "tampered", 1)
            else:
                self.finalize()

    @rule(
        action=st.sampled_from(("fund", "withdraw", "withdraw", "withdraw_nothing")),
        pick=st.integers(0, 255),
    )
    def money(self, action: str, pick: int) -> None:
        """Fund the pool or withdraw credit."""
        self.move_money(action, pick)

    @rule(
        who=st.integers(0, 4),
        when=st.sampled_from(
            ("in phase", "in phase", "in phase", "commit anyway", "reveal anyway")
        ),
        commit_kind=st.sampled_from(COMMIT_KINDS),
        reveal_kind=st.sampled_from(REVEAL_KINDS),
        seed=st.integers(0, 255),
        scale=st.sampled_from(STEP_SCALES),
        samples=st.integers(1, MAX_SAMPLES),
    )
    def participate(
        self,
        who: int,
        when: str,
        commit_kind: str,
        reveal_kind: str,
        seed: int,
        scale: int,
        samples: int,
    ) -> None:
        """A client acts: a commitment in the commit phase, a reveal in the reveal phase, the
        close once it is under way (or a commitment or a reveal whatever the phase)."""
        phase = self.ref.phase
        if when == "commit anyway" or (when == "in phase" and phase == "Commit"):
            self.commit(who, commit_kind, seed, scale, samples)
        elif when == "reveal anyway" or phase == "Reveal":
            self.reveal(who, reveal_kind, seed)
        else:
            self.close_segment("public", seed)

    def commit(self, who: int, kind: str, seed: int, scale: int, samples: int) -> None:
        """Commit to an update with the bond (or again, or a zero commitment, the wrong bond, a
        stale round); the last commitment of a full round opens the reveals."""
        ref = self.ref
        sender = self.env.clients[who]
        if kind == "duplicate" and ref.commits:
            sender = sorted(ref.commits)[who % len(ref.commits)]
        number = ref.round_number - (1 if kind == "stale_round" else 0)
        words = self.vector(seed, scale)
        salt = keccak(seed.to_bytes(2, "big") + sender.encode())
        digest = commitment(
            chain_id=self.env.chain_id,
            contract_address=self.reader.address,
            round_number=number,
            client=sender,
            sample_count=samples,
            salt=salt,
            vector_hash=vector_hash(words),
        )
        if kind == "empty":
            digest = bytes(32)
        bond = BOND + (1 if kind == "wrong_bond" else 0)
        now = self.now()
        outcome: Outcome
        if ref.phase != "Commit":
            outcome = Revert("CoordinatorWrongPhase", {"phase": PHASE[ref.phase]})
        elif number != ref.round_number:
            outcome = Revert(
                "CoordinatorWrongRound", {"given": number, "current": ref.round_number}
            )
        elif now >= ref.deadline:
            outcome = Revert(
                "CoordinatorDeadlinePassed", {"round": number, "deadline": ref.deadline}
            )
        elif digest == bytes(32):
            outcome = Revert("CoordinatorEmptyCommitment", {})
        elif bond != BOND:
            outcome = Revert("CoordinatorWrongBond", {"sent": bond, "required": BOND})
        elif sender in ref.commits:
            outcome = Revert("CoordinatorAlreadyCommitted", {"round": number, "account": sender})
        elif len(ref.commits) >= TARGET:
            outcome = Revert("CoordinatorRoundFull", {"round": number, "entries": len(ref.commits)})
        else:
            state = copy.deepcopy(ref)
            state.commits[sender] = (digest, samples)
            state.held += BOND
            events: list[Event] = [
                ("CommitmentAccepted", {"round": number, "client": sender, "bond": BOND})
            ]
            if len(state.commits) == TARGET:
                state.phase, state.deadline = "Reveal", now + REVEAL_DURATION
                events.append(("RevealOpened", {"round": number, "deadline": state.deadline}))
                note("commit: reveals opened by the last commitment")
            outcome = Accepted(events, state)
            note("commit: accepted")
        function = self.contract.functions.commit(number, digest)
        if self.run(function, sender, outcome, value=bond, now=now) is not None:
            self.salts[(number, sender)] = (salt, words)

    def reveal(self, who: int, kind: str, seed: int) -> None:
        """A committer reveals what it committed to (whole, or a segment at a time), or with the
        wrong salt, or another update's words (a copy); ``anyone`` may have no commitment."""
        ref = self.ref
        number = ref.round_number
        committed = sorted(ref.commits)
        sender = self.env.clients[who]
        if kind != "anyone" and committed:
            sender = committed[who % len(committed)]
        salt, words = self.salts.get((number, sender), (bytes(32), self.vector(seed, 30)))
        samples = ref.commits[sender][1] if sender in ref.commits else 1
        if kind == "wrong_salt":
            salt = keccak(salt)
        elif kind == "copy":
            others = [c for c in committed if c != sender]
            words = (
                self.salts[(number, others[seed % len(others)])][1]
                if others
                else self.vector(seed, 30)
            )
        under_way = ref.partial.get(sender) if ref.last_round.get(sender) == number else None
        first = 0
        if kind == "first_segment":
            words = words[: SEGMENTS[0][1]]
        elif under_way is not None:  # the rest of a reveal under way
            first = under_way.done
            words = words[SEGMENTS[first][0] :]
        now = self.now()
        outcome = predict_submission(
            ref, now, sender, number, samples, first, words, phase="Reveal", eligible=True
        )
        completes = isinstance(outcome, Accepted) and any(
            name == "SubmissionAccepted" for name, _ in outcome.events
        )
        if isinstance(outcome, Accepted) and completes:
            revealed = [*(under_way.words if under_way is not None else []), *words]
            digest = commitment(
                chain_id=self.env.chain_id,
                contract_address=self.reader.address,
                round_number=number,
                client=sender,
                sample_count=samples,
                salt=salt,
                vector_hash=vector_hash(revealed),
            )
            if digest != ref.commits[sender][0]:
                outcome = Revert("CoordinatorRevealMismatch", {"round": number, "account": sender})
            else:
                state = outcome.state
                state.held -= BOND
                state.returned += BOND
                state.credits[sender] += BOND
                returned: Event = (
                    "BondReturned",
                    {"round": number, "client": sender, "amount": BOND},
                )
                outcome = Accepted([*outcome.events, returned], state)
                note("reveal: bond returned")
        function = self.contract.functions.reveal(number, samples, first, words, salt)
        receipt = self.run(function, sender, outcome, now=now)
        if receipt is not None:
            self.ref.sent.setdefault((number, sender), []).append(bytes(receipt["transactionHash"]))

    @rule(
        kind=st.sampled_from(
            ("public", "public", "public", "finalize", "finalize", "tampered", "wrong_segment")
        ),
        seed=st.integers(0, 255),
    )
    def close_segment(self, kind: str, seed: int) -> None:
        """Close the due segment from the revealed words (half the time the rest of the close at
        once), or finalize, or a close that must fail."""
        if kind == "finalize":
            self.finalize()
            return
        ref = self.ref
        segment = ref.closed_segments if ref.phase == "Closing" else 0
        words = [w for e in ref.entries for w in segment_of(e.words, segment)]
        if kind == "tampered" and words:
            position = seed % len(words)
            words[position] = set_lane(words[position], 0, lanes(words[position])[0] + 1)
        elif kind == "wrong_segment":
            segment = (segment + 1) % len(SEGMENTS)
        now = self.now()
        outcome = predict_close(
            ref,
            now,
            self.env.outsider,
            ref.round_number,
            segment,
            words,
            [],
            due_phase="Reveal",
            next_phase="Commit",
        )
        if isinstance(outcome, Accepted):
            self.note_closes(outcome.events, segment)
        function = close_function(
            self.contract, round_number=ref.round_number, segment=segment, words=words
        )
        self.run(function, self.env.outsider, outcome, now=now)
        if kind == "public" and seed % 2 and self.ref.phase == "Closing":
            self.check_now()
            self.close_segment("public", 0)

    def note_closes(self, events: Sequence[Event], segment: int) -> None:
        """Label a close for the coverage check."""
        note(f"close: segment {segment} written")
        if any(name == "BondsForfeited" for name, _ in events):
            note("close: bonds forfeited")

    def finalize(self) -> None:
        """Commit phase after its deadline: open reveals (or end a round nobody committed to).
        Reveal phase: end the round from closeWindow after the reveal deadline, or at once when
        every commitment was revealed and the round is below its minimum."""
        ref = self.ref
        now = self.now()
        outcome: Outcome
        state = copy.deepcopy(ref)
        not_yet = {"round": ref.round_number, "target": TARGET, "minimum": MINIMUM}
        if ref.phase == "Closing":
            outcome = Revert("CoordinatorWrongPhase", {"phase": PHASE[ref.phase]})
        elif ref.phase == "Commit":
            if now < ref.deadline:
                outcome = Revert(
                    "CoordinatorNotClosable",
                    {**not_yet, "entries": len(ref.commits), "opensAt": ref.deadline},
                )
            elif not ref.commits:
                abandoned: Event = ("RoundAbandoned", {"round": ref.round_number, "submissions": 0})
                outcome = Accepted([abandoned, state.open_next(now, "Commit")], state)
            else:
                state.phase, state.deadline = "Reveal", now + REVEAL_DURATION
                opened: Event = (
                    "RevealOpened",
                    {"round": ref.round_number, "deadline": state.deadline},
                )
                outcome = Accepted([opened], state)
                note("finalize: reveals opened at the commit deadline")
        else:
            settled = ref.completed >= len(ref.commits) and len(ref.entries) < MINIMUM
            window = WINDOW * (2 if len(ref.entries) >= MINIMUM else 1)
            opens = 0 if settled else ref.deadline + window
            if now < opens:
                outcome = Revert(
                    "CoordinatorNotClosable",
                    {**not_yet, "entries": len(ref.entries), "opensAt": opens},
                )
            else:
                events = state.forfeit()
                if events:
                    note("finalize: bonds forfeited")
                if settled:
                    note("finalize: every commitment revealed, below the minimum")
                events.append(
                    ("RoundAbandoned", {"round": ref.round_number, "submissions": len(ref.entries)})
                )
                events.append(state.open_next(now, "Commit"))
                outcome = Accepted(events, state)
        self.run(self.contract.functions.finalize(), self.env.outsider, outcome, now=now)

    @invariant()
    def bonds_are_held_for_the_unrevealed_commitments(self) -> None:
        """Bonds held: one per commitment of the open round not yet revealed."""
        ref = self.ref
        revealed = sum(1 for c in ref.commits if c in ref.finished)
        assert ref.held == BOND * (len(ref.commits) - revealed)
        assert list(self.reader.call("bonds")) == [ref.held, ref.returned]

    def advance_round(self) -> str:
        start = self.ref.round_number
        actions: list[str] = []
        for _ in range(len(SEGMENTS) + 3):
            number, deadline, entries, _, _, name, closed = self.reader.round_state(
                self.reader.state()
            )
            if number != start:
                assert (number, name) == (start + 1, "Commit")
                return " + ".join(actions)
            latest = self.chain.timestamp()
            opens = deadline + (0 if name == "Commit" else WINDOW)
            if name != "Closing" and latest < opens:
                self.chain.advance_time(opens - latest)
            if name == "Commit" or (name == "Reveal" and entries < MINIMUM):
                self.send_public(self.contract.functions.finalize())
                actions.append("finalize")
            else:
                self.send_public(self.public_close(int(closed) if name == "Closing" else 0))
                actions.append("close")
        raise AssertionError(
            f"round {start} did not advance in {len(SEGMENTS) + 3} public transactions"
        )


# ---------------------------------------------------------------- the tests

PLAIN_REACHED = {
    "submit: paid",
    "submit: free rider counted, unpaid",
    "submit: poisoner left out, unpaid",
    "submit: segments 0.. received",
    "close: paid",
    "close: poisoner left out, unpaid",
    "close: segment 0 written",
    "close: segment 1 written",
    "close: relayed entries left out",
    "close: the share cap lowered a weight",
    "close: the step bound held weights back",
    "close: the drift bound held weights back",
    "relay: registered",
    "relay: registered (words withheld)",
    "round closed",
    "round abandoned",
    "withdraw: paid",
    "fund",
    "allowlist: updated for the next round",
    "liveness: ended by finalize",
    "liveness: closed in 1 public closes",
    "liveness: closed in 2 public closes",
    *(
        f"revert Coordinator{name}"
        for name in (
            "WrongPhase",
            "WrongRound",
            "NotEligible",
            "DeadlinePassed",
            "InvalidSampleCount",
            "AlreadySubmitted",
            "SampleCountChanged",
            "RoundFull",
            "WrongSegment",
            "WrongLength",
            "WeightOutOfRange",
            "NotClosable",
            "WordsMismatch",
            "CannotOmit",
            "InvalidSignature",
            "MalleableSignature",
            "UpdateReplayed",
            "NothingToWithdraw",
            "ZeroFunding",
            "Unauthorized",
        )
    ),
}


# The rules both machines' deployments share: sample-weighted, the guards, the fees, the share
# cap and the step and drift bounds.
MACHINE_RULES: dict[str, Any] = {
    "words_per_segment": WORDS_PER_SEGMENT,
    "aggregation": "sample_weighted",
    "max_sample_count": MAX_SAMPLES,
    "min_reward_distance": MIN_REWARD_DISTANCE,
    "max_counted_distance": MAX_COUNTED_DISTANCE,
    "close_window": WINDOW,
    "close_fee": CLOSE_FEE,
    "relay_fee": RELAY_FEE,
    "max_share_bps": MAX_SHARE_BPS,
    "max_step": MAX_STEP,
    "max_drift": MAX_DRIFT,
    "drift_window": DRIFT_WINDOW,
}


def test_plain_pipeline_invariants_hold_under_random_call_sequences(
    isolated: Chain, owner: str, clients: list[str], relayer: str, outsider: str, funder: str
) -> None:
    """Two random sequences of up to 6 steps after each warm-up plan, against one Plain
    deployment with the share cap and the step and drift bounds."""
    # Prepare
    params = small_params(
        allowlist_enabled=True,
        **MACHINE_RULES,
    )
    env = deploy_environment(
        isolated,
        params,
        owner=owner,
        clients=clients[:5],
        relayer=relayer,
        outsider=outsider,
        funder=funder,
        allowed=clients[:4],
    )
    OUTCOMES.clear()
    # Execute
    for plan in PLAIN_PLANS:
        machine = partial(PlainMachine, env, plan)
        run_state_machine_as_test(machine, settings=PLAIN_SETTINGS)  # type: ignore[no-untyped-call]
    # Assert
    reached = {label for label, count in OUTCOMES.items() if count}
    missing = PLAIN_REACHED - reached
    assert not missing, "never reached: " + "; ".join(sorted(missing))


COMMIT_REVEAL_REACHED = {
    "commit: accepted",
    "commit: reveals opened by the last commitment",
    "finalize: reveals opened at the commit deadline",
    "reveal: bond returned",
    "close: segment 0 written",
    "close: segment 1 written",
    "close: bonds forfeited",
    "close: the share cap lowered a weight",
    "close: the step bound held weights back",
    "round closed",
    "round abandoned",
    "finalize: bonds forfeited",
    "liveness: close + close",
    "liveness: finalize + finalize",
    *(
        f"revert Coordinator{name}"
        for name in (
            "WrongPhase",
            "EmptyCommitment",
            "WrongBond",
            "AlreadyCommitted",
            "NoCommitment",
            "RevealMismatch",
            "NotClosable",
            "WordsMismatch",
        )
    ),
}


def test_commit_reveal_invariants_hold_under_random_call_sequences(
    isolated: Chain, owner: str, clients: list[str], relayer: str, outsider: str, funder: str
) -> None:
    """Two random sequences of up to 6 steps after each warm-up plan, against one CommitReveal
    deployment with the share cap and the step and drift bounds."""
    # Prepare
    params = small_params(
        mode="commit_reveal",
        reveal_duration=REVEAL_DURATION,
        commit_bond=BOND,
        **MACHINE_RULES,
    )
    env = deploy_environment(
        isolated,
        params,
        owner=owner,
        clients=clients[:5],
        relayer=relayer,
        outsider=outsider,
        funder=funder,
        allowed=(),
    )
    OUTCOMES.clear()
    # Execute
    for plan in COMMIT_REVEAL_PLANS:
        machine = partial(CommitRevealMachine, env, plan)
        run_state_machine_as_test(machine, settings=COMMIT_REVEAL_SETTINGS)  # type: ignore[no-untyped-call]
    # Assert
    reached = {label for label, count in OUTCOMES.items() if count}
    missing = COMMIT_REVEAL_REACHED - reached
    assert not missing, "never reached: " + "; ".join(sorted(missing))


def test_chain_advance_time_after_reverting_to_an_older_snapshot(isolated: Chain) -> None:
    """Regression (the machines revert to an old snapshot before every sequence): the pending
    block of a reverted chain carries the wall clock, ahead of the latest block, and
    ``Chain.advance_time`` once asked eth-tester to travel from the latest block, back in time."""
    # Prepare
    snapshot = isolated.snapshot()
    time.sleep(2.1)  # the wall clock moves on past the snapshot's latest block
    isolated.advance_time(600)
    isolated.revert(snapshot)
    before = isolated.timestamp()
    # Execute
    isolated.advance_time(1)
    # Assert
    assert isolated.timestamp() >= before + 1
