"""Invariants of FLCoordinator under random sequences of calls (Hypothesis stateful testing).

A :class:`hypothesis.stateful.RuleBasedStateMachine` drives one Direct-mode coordinator (allowlist
on, free-rider guard, poisoning bound and direction guard set, a small reward pool that runs dry)
through random
sequences of fund, submit (honest, free-riding, poisoning, and malformed: wrong length, weight out
of range, nonzero padding, stale or future round, invalid sample count, duplicate, ineligible
sender), finalize, withdraw and time advances, across seven accounts (four allowed clients, one
that is not allowed, a funder and a keeper that calls ``finalize``).

Every rule predicts its outcome from a plain-Python model of the contract (the reference average,
tiers and direction split of :mod:`fl_client.aggregation`) and checks the events and reverts against it, and after
every transaction the machine checks that:

- the contract holds every credited wei not yet withdrawn (balance >= totalCredited -
  totalWithdrawn; funded only through ``fund``, it holds exactly totalFunded - totalWithdrawn),
  and the credits of all accounts add up to that difference;
- total withdrawn <= total credited <= total funded;
- at most one submission per account per round is accepted (``hasSubmitted``, the progress word
  that ``submissionOf`` decodes, and the number of ``SubmissionAccepted`` events per (round,
  account), counted from the receipts and, at the end of a sequence, from the chain's logs);
- the round number never decreases;
- the global model changes only when a round closes: ``modelVersion`` increments exactly then,
  and the model words change only then (and equal the reference average of the counted updates).

The state is read straight from storage (slots from the compiler's storage layout), which costs a
millisecond where a getter call costs ten; the test checks the decoding against the getters first.
The contract is deployed once; each sequence starts from a snapshot of that deployment, with the
chain's clock a day ahead of the wall clock so that block times replay exactly. 200 sequences of
10 steps run in about 80 s; a failure takes Hypothesis up to five more minutes to shrink.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from time import sleep
from typing import Any

import numpy as np
import solcx
from eth_utils.address import to_canonical_address
from eth_utils.crypto import keccak
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from web3.contract import Contract
from web3.logs import DISCARD
from web3.types import TxReceipt

from fl_client.aggregation import (
    NO_TIER,
    aligned,
    directional_l1,
    distance,
    integer_average,
    reward_tier,
    step_signs,
)
from fl_client.chain import Chain, deploy, send
from fl_client.codec import OFFSET, model_hash, pack
from fl_client.compile import CONTRACTS_DIR, find_compiler
from fl_client.config import PROJECT_ROOT, load_config
from fl_client.errors import ContractRevertError
from tests.conftest import SMALL_WEIGHTS, small_params

MAX_ABS = 3000
TARGET, MINIMUM, DURATION = 3, 2, 600
MIN_REWARD_DISTANCE = 50  # free-rider guard
MAX_COUNTED_DISTANCE = 20_000  # poisoning bound
MIN_ALIGNMENT = (
    0  # direction guard (basis points): no more movement against the last step than along
)
THRESHOLDS, REWARDS = (1_000, 10_000, 50_000), (300, 200, 100)
MAX_SAMPLES = 1_000
POOL = 700  # runs dry after a few submissions: funding refills it
# Largest step per weight: 0 and 2 stay under the free-rider guard (L1 <= 80, mostly < 50),
# 30 lands in tier 0, 300 in tier 1, 1,500 mostly beyond the poisoning bound.
STEP_SCALES = (0, 2, 30, 300, 1_500)
MALFORMED = (
    "short",
    "long",
    "out_of_range",
    "padding",
    "stale_round",
    "future_round",
    "zero_samples",
    "too_many_samples",
    "ineligible",
    "duplicate",
)
CLOCK_LEAD = 86_400  # seconds the chain runs ahead of the wall clock (see make_environment)
SETTINGS = settings(max_examples=200, stateful_step_count=10, deadline=None)


# ---------------------------------------------------------------- reading storage


@cache
def storage_layout() -> dict[str, Any]:
    """FLCoordinator's storage layout from the project's compiler (analysis only: ~2 s)."""
    compiler_settings = load_config().compiler
    sources = {
        path.relative_to(PROJECT_ROOT).as_posix(): {"content": path.read_text(encoding="utf-8")}
        for path in (CONTRACTS_DIR / "FLCoordinator.sol", CONTRACTS_DIR / "PackedVectors.sol")
    }
    standard_input = {
        "language": "Solidity",
        "sources": sources,
        "settings": {
            "evmVersion": compiler_settings.evm_version,
            "outputSelection": {
                "contracts/FLCoordinator.sol": {"FLCoordinator": ["storageLayout"]}
            },
        },
    }
    output = solcx.compile_standard(
        standard_input,
        base_path=str(PROJECT_ROOT),
        solc_binary=find_compiler(compiler_settings.version),
    )
    layout: dict[str, Any] = output["contracts"]["contracts/FLCoordinator.sol"]["FLCoordinator"][
        "storageLayout"
    ]
    return layout


@dataclass(frozen=True)
class Field:
    """Where a value lives: its slot, byte offset in the slot and size in bytes."""

    slot: int
    offset: int
    size: int

    def read(self, word: int) -> int:
        """The value inside the slot's 256-bit ``word``."""
        return (word >> (8 * self.offset)) & ((1 << (8 * self.size)) - 1)


class Storage:
    """Raw reads of the coordinator's state, addressed by the compiler's storage layout.

    Reads go to py-evm's state of the head block (``PyEVMBackend.chain``): a read costs a tenth
    of a millisecond there, against a few through web3's JSON-RPC layer. ``check_storage_decoding``
    holds them to ``eth_getStorageAt`` and to the getters.
    """

    MODEL_BASE = int.from_bytes(keccak(text="fl.coordinator.model"), "big") - 1

    def __init__(self, chain: Chain, address: str, layout: dict[str, Any]) -> None:
        assert chain.tester is not None, "raw storage reads need the embedded chain"
        self.backend = chain.tester.backend
        self.address = to_canonical_address(address)
        types = layout["types"]
        self.fields: dict[str, Field] = {}
        for entry in layout["storage"]:
            kind = types[entry["type"]]
            base = int(entry["slot"])
            self.fields[entry["label"]] = Field(
                base, int(entry["offset"]), int(kind["numberOfBytes"])
            )
            for member in kind.get("members", []):
                self.fields[f"{entry['label']}.{member['label']}"] = Field(
                    base + int(member["slot"]),
                    int(member["offset"]),
                    int(types[member["type"]]["numberOfBytes"]),
                )
        self.state: Any = None
        self.refresh()

    def refresh(self) -> None:
        """Read from the current head block from now on."""
        evm = self.backend.chain
        self.state = evm.get_vm(at_header=evm.get_canonical_head()).state

    def word(self, slot: int) -> int:
        """The 256-bit word at ``slot``."""
        return int(self.state.get_storage(self.address, slot))

    def balance(self) -> int:
        """The contract's balance in wei."""
        return int(self.state.get_balance(self.address))

    def values(self, *labels: str) -> list[int]:
        """State variables (or ``struct.member``s) by their names in the source."""
        return [self.fields[label].read(self.word(self.fields[label].slot)) for label in labels]

    def slot_of(self, label: str, key: str) -> int:
        """The slot of ``label[key]`` for a mapping keyed by address."""
        base = self.fields[label].slot.to_bytes(32, "big")
        return int.from_bytes(keccak(bytes(12) + to_canonical_address(key) + base), "big")

    def mapping(self, label: str, key: str) -> int:
        """``label[key]`` of a mapping keyed by address."""
        return self.word(self.slot_of(label, key))

    def model_words(self, count: int) -> list[int]:
        """The packed global model."""
        return [self.word(self.MODEL_BASE + j) for j in range(count)]


# ---------------------------------------------------------------- the reference model


@dataclass
class Reference:
    """What the contract should hold, computed in plain Python."""

    round_number: int
    deadline: int
    model: np.ndarray
    funded: int
    version: int = 0
    credited: int = 0
    withdrawn: int = 0
    submitted: list[str] = field(default_factory=list)  # accounts done in the open round
    counted: list[np.ndarray] = field(default_factory=list)  # their counted vectors
    credits: Counter[str] = field(default_factory=Counter)
    step: np.ndarray | None = None  # which way the last closing round moved each weight

    def open_next(self, opened_at: int) -> None:
        """The round closed at ``opened_at``: compute the model and open the next round."""
        if self.counted:
            model = integer_average(self.counted)
            self.step = step_signs(self.model, model)
            self.model = model
        self.version += 1
        self.round_number += 1
        self.deadline = opened_at + DURATION
        self.submitted, self.counted = [], []


@dataclass(frozen=True)
class Environment:
    """One deployment shared by every sequence, and the snapshot each sequence starts from."""

    chain: Chain
    contract: Contract
    storage: Storage
    snapshot: Any
    snapshot_block: int
    allowed: tuple[str, ...]
    ineligible: str
    funder: str
    keeper: str
    initial: np.ndarray
    opened_at: int


def events(contract: Contract, name: str, receipt: TxReceipt) -> list[dict[str, Any]]:
    """The decoded arguments of every ``name`` event of ``contract`` in ``receipt``."""
    kind = getattr(contract.events, name)
    return [dict(entry["args"]) for entry in kind().process_receipt(receipt, errors=DISCARD)]


def progress_word(
    round_number: int,
    segments: int,
    samples: int,
    dist: int,
    *,
    left_out: bool = False,
    along: int = 0,
    against: int = 0,
) -> int:
    """A ``_progress`` slot: round << 216 | segments << 192 | samples << 160 | left out << 159 |
    distance << 96 | along << 48 | against."""
    return (
        round_number << 216
        | segments << 192
        | samples << 160
        | int(left_out) << 159
        | dist << 96
        | along << 48
        | against
    )


# Every outcome the machine reached, over all sequences: the test checks that the interesting
# ones (each defence at work, each kind of revert) were reached at all.
OUTCOMES: Counter[str] = Counter()


def note(label: str) -> None:
    """Record ``label`` for Hypothesis' statistics and for the coverage check."""
    event(label)
    OUTCOMES[label] += 1


def set_lane(word: int, lane: int, quantized: int) -> int:
    """``word`` with lane ``lane`` set to the quantized value (offset binary)."""
    mask = 0xFFFF << (16 * lane)
    return (word & ~mask) | (((quantized + OFFSET) & 0xFFFF) << (16 * lane))


class CoordinatorMachine(RuleBasedStateMachine):
    """Random calls against the coordinator, each checked against the reference."""

    def __init__(self, env: Environment) -> None:
        super().__init__()
        env.chain.revert(env.snapshot)
        self.env = env
        self.chain = env.chain
        self.contract = env.contract
        self.storage = env.storage
        self.ref = Reference(
            round_number=1,
            deadline=env.opened_at + DURATION,
            model=env.initial.copy(),
            funded=POOL,
        )
        self.accepted: Counter[tuple[int, str]] = Counter()
        self.closed_in_step = 0
        self.last_round = 1
        self.last_version = 0
        self.last_words = pack(env.initial)

    # ------------------------------------------------------------ sending

    def attempt(
        self, function: Any, sender: str, *, value: int = 0
    ) -> TxReceipt | ContractRevertError:
        """Send, returning the receipt or the decoded revert."""
        try:
            return send(self.chain, function, sender, value=value)
        except ContractRevertError as error:
            return error

    def expect_revert(
        self, outcome: TxReceipt | ContractRevertError, name: str, **args: Any
    ) -> None:
        """``outcome`` is the revert ``name`` with exactly ``args``."""
        assert isinstance(outcome, ContractRevertError), f"expected {name}, the call succeeded"
        note(f"revert {name}")
        assert outcome.name == name, f"expected {name}, got {outcome}"
        got = {k: v.lower() if isinstance(v, str) else v for k, v in outcome.error_args.items()}
        assert got == {k: v.lower() if isinstance(v, str) else v for k, v in args.items()}

    def block_time(self, receipt: TxReceipt) -> int:
        """Timestamp of the block that holds ``receipt``."""
        return int(self.chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"])

    # ------------------------------------------------------------ submissions

    def predicted_error(
        self, sender: str, round_number: int, sample_count: int, words: list[int]
    ) -> tuple[str, dict[str, Any]] | None:
        """The revert that the contract's checks give, in the order it makes them."""
        ref = self.ref
        if round_number != ref.round_number:
            return "CoordinatorWrongRound", {"given": round_number, "current": ref.round_number}
        if sender not in self.env.allowed:
            return "CoordinatorNotEligible", {"account": sender}
        if sample_count == 0 or sample_count > MAX_SAMPLES:
            return "CoordinatorInvalidSampleCount", {
                "sampleCount": sample_count,
                "max": MAX_SAMPLES,
            }
        if sender in ref.submitted:
            return "CoordinatorAlreadySubmitted", {"round": ref.round_number, "account": sender}
        expected_words = len(pack(ref.model))
        if len(words) != expected_words:
            return "CoordinatorWrongLength", {"expected": expected_words, "given": len(words)}
        for j, word in enumerate(words):
            for lane in range(16):
                value = ((word >> (16 * lane)) & 0xFFFF) - OFFSET
                if abs(value) > MAX_ABS:
                    return "CoordinatorWeightOutOfRange", {
                        "index": 16 * j + lane,
                        "value": value,
                        "maxAbs": MAX_ABS,
                    }
        for index in range(SMALL_WEIGHTS, 16 * len(words)):
            value = ((words[-1] >> (16 * (index % 16))) & 0xFFFF) - OFFSET
            if value != 0:
                return "CoordinatorWeightOutOfRange", {"index": index, "value": value, "maxAbs": 0}
        return None

    def honest_vector(self, seed: int, scale: int) -> np.ndarray:
        """The model plus a random step of up to ``scale`` per weight."""
        rng = np.random.default_rng(seed)
        step = rng.integers(-scale, scale + 1, size=SMALL_WEIGHTS)
        return np.clip(self.ref.model + step, -MAX_ABS, MAX_ABS)

    def do_submit(
        self,
        sender: str,
        round_number: int,
        sample_count: int,
        words: list[int],
        values: np.ndarray,
    ) -> None:
        """Submit and check the outcome, event by event, against the reference."""
        ref = self.ref
        function = self.contract.functions.submit(round_number, sample_count, 0, words)
        outcome = self.attempt(function, sender)
        error = self.predicted_error(sender, round_number, sample_count, words)
        if error is not None:
            self.expect_revert(outcome, error[0], **error[1])
            if error[0] == "CoordinatorAlreadySubmitted":
                assert self.contract.functions.hasSubmitted(sender, round_number).call() is True
            return
        assert not isinstance(outcome, ContractRevertError), f"unexpected {outcome}"
        dist = distance(ref.model, values, "l1")
        step = np.zeros_like(ref.model) if ref.step is None else ref.step
        along, against = directional_l1(ref.model, values, step)
        counted = dist <= MAX_COUNTED_DISTANCE and aligned(along, against, MIN_ALIGNMENT)
        tier, reward = NO_TIER, 0
        if counted:
            decision = reward_tier(
                dist, THRESHOLDS, REWARDS, min_reward_distance=MIN_REWARD_DISTANCE
            )
            tier, reward = decision.tier, min(decision.amount_wei, ref.funded - ref.credited)
        [accepted] = events(self.contract, "SubmissionAccepted", outcome)
        assert accepted == {
            "round": ref.round_number,
            "client": sender,
            "sampleCount": sample_count,
            "distance": dist,
            "along": along,
            "against": against,
            "tier": tier,
            "reward": reward,
            "counted": counted,
        }
        self.accepted[(ref.round_number, sender)] += 1
        assert self.contract.functions.hasSubmitted(sender, ref.round_number).call() is True
        self.storage.refresh()
        progress = self.storage.mapping("_progress", sender)  # what submissionOf decodes
        assert progress == progress_word(
            ref.round_number,
            1,
            sample_count,
            dist,
            left_out=not counted,
            along=along,
            against=against,
        )
        if not counted:
            note(
                "submit: poisoner left out, unpaid"
                if dist > MAX_COUNTED_DISTANCE
                else "submit: against the last step, left out, unpaid"
            )
        elif tier == NO_TIER:
            note("submit: free rider counted, unpaid")
        else:
            note("submit: paid" if reward else "submit: tier earned, pool empty")
        ref.credits[sender] += reward
        ref.credited += reward
        ref.submitted.append(sender)
        if counted:
            ref.counted.append(values)
        now = self.block_time(outcome)
        completed = len(ref.submitted)
        closes = completed == TARGET or (now >= ref.deadline and completed >= MINIMUM)
        closed = events(self.contract, "RoundClosed", outcome)
        if closes:
            self.close_round(closed, now, completed)
        else:
            assert closed == []

    def close_round(self, closed: list[dict[str, Any]], now: int, completed: int) -> None:
        """The round closed in this step: update the reference and check the event."""
        ref = self.ref
        number = ref.round_number
        ref.open_next(now)
        assert closed == [
            {
                "round": number,
                "modelVersion": ref.version,
                "modelHash": model_hash(pack(ref.model)),
                "submissions": completed,
            }
        ]
        self.closed_in_step += 1
        note(f"round closed with {completed} submissions")

    @rule(
        batch=st.lists(
            st.tuples(
                st.integers(0, 3),  # which allowed account
                st.integers(0, 2**8),  # seed of its step
                st.sampled_from(STEP_SCALES),
                st.integers(1, MAX_SAMPLES),
            ),
            min_size=1,
            max_size=3,
        )
    )
    def submit(self, batch: list[tuple[int, int, int, int]]) -> None:
        """One to three updates from allowed accounts, each a free ride (scale 0), an honest
        step or a poisoning one (scale 1,500); the same account twice is a duplicate. The
        invariants are checked after each transaction."""
        for who, seed, scale, sample_count in batch:
            sender = self.env.allowed[who]
            values = self.honest_vector(seed, scale)
            self.do_submit(sender, self.ref.round_number, sample_count, pack(values), values)
            self.check_invariants_now()

    @rule(who=st.integers(0, 3), kind=st.sampled_from(MALFORMED), seed=st.integers(0, 2**8))
    def submit_malformed(self, who: int, kind: str, seed: int) -> None:
        """A malformed submission: it must revert with the error the contract's checks name
        first, and change nothing."""
        sender = self.env.allowed[who]
        rng = np.random.default_rng(seed)
        values = self.honest_vector(seed, 30)
        words = pack(values)
        round_number, sample_count = self.ref.round_number, 1
        if kind == "short":
            words = words[:-1]
        elif kind == "long":
            words = [*words, words[0]]
        elif kind == "out_of_range":
            index = int(rng.integers(0, SMALL_WEIGHTS))
            bad = int(rng.choice([-1, 1])) * int(rng.integers(MAX_ABS + 1, OFFSET))
            words[index // 16] = set_lane(words[index // 16], index % 16, bad)
        elif kind == "padding":
            lane = int(rng.integers(SMALL_WEIGHTS % 16, 16))
            words[-1] = set_lane(words[-1], lane, int(rng.integers(1, MAX_ABS)))
        elif kind == "stale_round":
            round_number -= 1
        elif kind == "future_round":
            round_number += 1
        elif kind == "zero_samples":
            sample_count = 0
        elif kind == "too_many_samples":
            sample_count = MAX_SAMPLES + 1
        elif kind == "ineligible":
            sender = self.env.ineligible
        elif self.ref.submitted:  # duplicate
            sender = self.ref.submitted[who % len(self.ref.submitted)]
        else:  # a duplicate needs a first submission: make it
            self.do_submit(sender, round_number, sample_count, words, values)
            self.check_invariants_now()
        credited = self.ref.credited
        self.do_submit(sender, round_number, sample_count, words, values)
        assert self.ref.credited == credited  # never accepted
        assert self.predicted_error(sender, round_number, sample_count, words) is not None

    # ------------------------------------------------------------ rounds, money, time

    @rule(wait=st.sampled_from([0, 300, 600]))
    def finalize(self, wait: int) -> None:
        """Anyone may finalize, after ``wait`` seconds: not closable before the deadline; after
        it, close with the minimum, else extend the deadline."""
        ref = self.ref
        if wait:
            self.chain.advance_time(wait)
        latest = self.chain.timestamp()  # the pre-check call runs at the latest block
        outcome = self.attempt(self.contract.functions.finalize(), self.env.keeper)
        if latest < ref.deadline:
            self.expect_revert(
                outcome,
                "CoordinatorNotClosable",
                round=ref.round_number,
                deadline=ref.deadline,
                completed=len(ref.submitted),
                minimum=MINIMUM,
            )
            return
        assert not isinstance(outcome, ContractRevertError), f"unexpected {outcome}"
        now = self.block_time(outcome)
        closed = events(self.contract, "RoundClosed", outcome)
        if len(ref.submitted) >= MINIMUM:
            self.close_round(closed, now, len(ref.submitted))
        else:
            note("finalize: deadline extended")
            assert closed == []
            ref.deadline = now + DURATION
            assert events(self.contract, "RoundExtended", outcome) == [
                {"round": ref.round_number, "deadline": ref.deadline}
            ]

    @rule(who=st.integers(0, 4), anyone=st.integers(0, 3))
    def withdraw(self, who: int, anyone: int) -> None:
        """Withdraw all credit: three times in four from an account owed some, when there is
        one; with none, NothingToWithdraw."""
        accounts = [*self.env.allowed, self.env.ineligible]
        owed_accounts = [a for a in accounts if self.ref.credits[a]]
        if anyone and owed_accounts:
            accounts = owed_accounts
        account = accounts[who % len(accounts)]
        owed = self.ref.credits[account]
        outcome = self.attempt(self.contract.functions.withdraw(), account)
        if owed == 0:
            self.expect_revert(outcome, "CoordinatorNothingToWithdraw", account=account)
            return
        assert not isinstance(outcome, ContractRevertError), f"unexpected {outcome}"
        assert events(self.contract, "CreditWithdrawn", outcome) == [
            {"client": account, "amount": owed}
        ]
        self.ref.credits[account] = 0
        self.ref.withdrawn += owed
        note("withdraw: paid")

    @rule(amount=st.integers(0, 500))
    def fund(self, amount: int) -> None:
        """Top up the pool (zero reverts)."""
        outcome = self.attempt(self.contract.functions.fund(), self.env.funder, value=amount)
        if amount == 0:
            self.expect_revert(outcome, "CoordinatorZeroFunding")
            return
        assert not isinstance(outcome, ContractRevertError), f"unexpected {outcome}"
        self.ref.funded += amount

    @rule(seconds=st.sampled_from([1, 60, 300, 599, 600, 1_200]))
    def advance_time(self, seconds: int) -> None:
        """Let time pass (mines a block)."""
        self.chain.advance_time(seconds)

    # ------------------------------------------------------------ invariants

    def teardown(self) -> None:
        """At the end of a sequence: the chain's own log holds exactly the accepted submissions,
        at most one per (round, account)."""
        logs = self.contract.events.SubmissionAccepted().get_logs(
            from_block=self.env.snapshot_block + 1
        )
        on_chain = Counter((int(log["args"]["round"]), str(log["args"]["client"])) for log in logs)
        assert all(count == 1 for count in on_chain.values())
        assert on_chain == self.accepted

    def check_invariants_now(self) -> None:
        """Every invariant, between the transactions of one step."""
        self.holds_every_credit_not_withdrawn()
        self.one_submission_per_account_per_round()
        self.round_never_decreases_and_model_changes_only_at_close()

    @invariant()
    def holds_every_credit_not_withdrawn(self) -> None:
        self.storage.refresh()
        funded, credited, withdrawn = self.storage.values(
            "totalFunded", "totalCredited", "totalWithdrawn"
        )
        held = self.storage.balance()
        assert held >= credited - withdrawn
        assert held == funded - withdrawn  # funded only through fund() and the constructor
        assert withdrawn <= credited <= funded
        owed = sum(
            self.storage.mapping("credit", a) for a in (*self.env.allowed, self.env.ineligible)
        )
        assert owed == credited - withdrawn
        assert (funded, credited, withdrawn) == (
            self.ref.funded,
            self.ref.credited,
            self.ref.withdrawn,
        )
        assert self.storage.mapping("credit", self.env.ineligible) == 0

    @invariant()
    def one_submission_per_account_per_round(self) -> None:
        assert all(count == 1 for count in self.accepted.values())
        assert len(self.ref.submitted) == len(set(self.ref.submitted))

    @invariant()
    def round_never_decreases_and_model_changes_only_at_close(self) -> None:
        self.storage.refresh()
        number, deadline, completed, version = self.storage.values(
            "_round.number", "_round.deadline", "_round.completed", "modelVersion"
        )
        words = self.storage.model_words(len(self.last_words))
        assert number >= self.last_round
        assert self.closed_in_step in (0, 1)
        assert version == self.last_version + self.closed_in_step
        assert number == self.last_round + self.closed_in_step
        if words != self.last_words:
            assert self.closed_in_step == 1, "the model changed without a round closing"
        assert (number, deadline, completed, version) == (
            self.ref.round_number,
            self.ref.deadline,
            len(self.ref.submitted),
            self.ref.version,
        )
        assert words == pack(self.ref.model)
        self.last_round, self.last_version, self.last_words = number, version, words
        self.closed_in_step = 0


# ---------------------------------------------------------------- the test


def make_environment(chain: Chain, accounts: list[str]) -> Environment:
    """Deploy once: allowlist on (four clients allowed), guard and bound set, a small pool."""
    owner, *clients = accounts
    initial = np.random.default_rng(2024).integers(-500, 501, size=SMALL_WEIGHTS, dtype=np.int64)
    params = small_params(
        allowlist_enabled=True,
        min_reward_distance=MIN_REWARD_DISTANCE,
        max_counted_distance=MAX_COUNTED_DISTANCE,
        min_alignment_bps=MIN_ALIGNMENT,
        target_submissions=TARGET,
        min_submissions=MINIMUM,
        round_duration=DURATION,
        max_sample_count=MAX_SAMPLES,
        tier_thresholds=THRESHOLDS,
        tier_rewards=REWARDS,
    )
    # Block times must not depend on the wall clock, or a failing sequence would not replay
    # (Hypothesis replays it to shrink it). A reverted eth-tester chain stamps its next block
    # max(wall clock, parent + 1): with the chain a day ahead of the wall clock, every block is
    # its parent + 1 s (or + the time a rule advances), the same at every replay.
    chain.advance_time(CLOCK_LEAD)
    contract = deploy(chain, params, initial_words=pack(initial), pool_wei=POOL, deployer=owner)
    allowed = tuple(clients[:4])
    send(chain, contract.functions.setAllowed(list(allowed), True), owner)
    opened_at = int(contract.functions.roundInfo().call()[2]) - DURATION
    return Environment(
        chain=chain,
        contract=contract,
        storage=Storage(chain, contract.address, storage_layout()),
        snapshot=chain.snapshot(),
        snapshot_block=int(chain.w3.eth.block_number),
        allowed=allowed,
        ineligible=clients[4],
        funder=clients[5],
        keeper=clients[6],
        initial=initial,
        opened_at=opened_at,
    )


def check_storage_decoding(env: Environment) -> None:
    """The raw reads agree with eth_getStorageAt and with the contract's getters (so the
    invariants read the truth)."""
    f = env.contract.functions
    storage = env.storage
    storage.refresh()
    w3 = env.chain.w3
    for slot in (*range(16), storage.MODEL_BASE, storage.slot_of("credit", env.allowed[0])):
        raw = w3.eth.get_storage_at(env.contract.address, slot)
        assert storage.word(slot) == int.from_bytes(raw, "big")
    assert storage.balance() == w3.eth.get_balance(env.contract.address)
    number, _, deadline, _, completed = f.roundInfo().call()
    assert storage.values("_round.number", "_round.deadline", "_round.completed") == [
        number,
        deadline,
        completed,
    ]
    assert storage.values("totalFunded", "totalCredited", "totalWithdrawn", "modelVersion") == [
        f.totalFunded().call(),
        f.totalCredited().call(),
        f.totalWithdrawn().call(),
        f.modelVersion().call(),
    ]
    words = [int(w) for w in f.globalModel().call()]
    assert storage.model_words(len(words)) == words == pack(env.initial)
    for account in env.allowed:
        assert storage.mapping("credit", account) == f.credit(account).call()
    # submissionOf decodes _progress (see progress_word)
    client = env.allowed[0]
    values = pack(env.initial + 1)
    send(env.chain, f.submit(1, 7, 0, values), client)
    storage.refresh()
    round_number, segments, samples, dist = f.submissionOf(client).call()
    assert storage.mapping("_progress", client) == progress_word(
        round_number, segments, samples, dist
    )
    assert (round_number, segments, samples, dist) == (1, 1, 7, SMALL_WEIGHTS)
    env.chain.revert(env.snapshot)


def test_invariants_hold_under_random_call_sequences(isolated: Chain) -> None:
    """200 random sequences of 10 steps each, every one from the same deployment."""
    env = make_environment(isolated, isolated.accounts[:8])
    check_storage_decoding(env)
    factory: Callable[[], CoordinatorMachine] = lambda: CoordinatorMachine(env)  # noqa: E731
    OUTCOMES.clear()
    run_state_machine_as_test(factory, settings=SETTINGS)  # type: ignore[no-untyped-call]
    reached = {label for label, count in OUTCOMES.items() if count}
    assert {
        "submit: paid",
        "submit: free rider counted, unpaid",
        "submit: poisoner left out, unpaid",
        "submit: against the last step, left out, unpaid",
        "withdraw: paid",
        "finalize: deadline extended",
        "revert CoordinatorAlreadySubmitted",
        "revert CoordinatorNotEligible",
        "revert CoordinatorWeightOutOfRange",
    } <= reached, sorted(OUTCOMES.items())


def test_chain_advance_time_after_reverting_to_an_older_snapshot(isolated: Chain) -> None:
    """Regression (the machine reverts to an old snapshot before every sequence): the pending
    block of a reverted chain carries the wall clock, ahead of the latest block, and
    ``Chain.advance_time`` once asked eth-tester to travel from the latest block, back in time."""
    # Prepare
    snapshot = isolated.snapshot()
    sleep(2.1)  # the wall clock moves on past the snapshot's latest block
    isolated.advance_time(600)
    isolated.revert(snapshot)
    before = isolated.timestamp()
    # Execute
    isolated.advance_time(1)
    # Assert
    assert isolated.timestamp() >= before + 1
