"""The incentive rules under random call sequences (Hypothesis stateful testing).

:class:`IncentiveMachine` drives one sample-weighted coordinator with every bound on influence
(``maxShareBps`` 4,000, ``maxStep`` 40, ``maxDrift`` 50 over windows of 2 rounds), the reward
reference ``Aggregate`` and the free-rider guard (200), a model of 40 weights in two segments,
through random sequences of: submissions (honest moves of a few or tens of quanta, the same
declaring 65,535 samples, and scaled pushes along one fixed direction), segment closes (from the
submitted words, in ``entries()`` order), whole rounds (two or three submissions, sometimes
identical ones, closed at once when full, at the deadline with two), ``finalize`` (too early: refused by name and arguments;
after the close window: the round abandoned) and the clock.

After every close the machine checks that the new model is exactly
``clamp_step(integer_average(vectors, capped_weights(samples, maxShareBps)), model, checkpoint)``,
that no weight moved more than ``maxStep`` in the round nor lies more than ``maxDrift`` from the
window's checkpoint (the model that closed the last round whose number is a multiple of the
window; the initial model before), that ``SegmentClosed`` counted the weights the bounds held back,
and that each update was paid by ``RewardSettled`` as the reference pays its distance from the new
model (nothing when it lay under the guard from the model it was sent against). After every step:
the round is the reference's, and once a round has moved on so are the model and every account's
credit. The test fails if a bound, the cap or the guard was never exercised over the run.

The same machine drives the recommended settings of the incentive benchmark (``ROBUST``): the
plain mean trimmed by one value at each end (``trimEach`` 1: with three updates, the median) and
the reward reference ``Progress``, tiers in basis points of the shortfall. There the new model is
``clamp_step(trimmed_average(vectors, 1), model, checkpoint)`` and each update is paid the tier of
``shortfall_bps(d(u, new), d(u, old), d(old, new))``, under the same two guards.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from web3.contract import Contract
from web3.types import TxReceipt

from fl_client.aggregation import (
    NO_TIER,
    capped_weights,
    clamp_step,
    distance,
    integer_average,
    reward_tier,
    share_cap,
    shortfall_bps,
    trim_cut,
    trimmed_average,
)
from fl_client.chain import Chain, close_function, deploy, send
from fl_client.codec import pack, split_segments
from fl_client.errors import ContractRevertError
from tests.conftest import SMALL_WEIGHTS, events, revert_args, small_params

NUM_WEIGHTS = SMALL_WEIGHTS
WORDS_PER_SEGMENT = 2  # 3 words: segments of 2 and 1 words
SEGMENTS = 2
MAX_ABS = 3_000
TARGET, MINIMUM = 3, 2
DURATION, WINDOW = 600, 120
CLOSE_FEE = 7
GUARD = 200  # minRewardDistance
SHARE_BPS = 4_000
MAX_STEP, MAX_DRIFT, DRIFT_WINDOW = 40, 50, 2
THRESHOLDS, REWARDS = (1_000, 10_000, 50_000), (300, 200, 100)
MAX_SAMPLES = 65_535
POOL = 10**12  # never runs dry
CLOCK_LEAD = 86_400  # the chain runs a day ahead of the wall clock: block times replay exactly
PUSH = np.where(np.arange(NUM_WEIGHTS) < 8, 1, -1)  # the pushers' fixed direction
KINDS = ("honest", "inflated", "push")
HONEST_SCALES = (2, 30)
PUSH_SCALES = (5, 10, 60, 300)  # 5: exactly the guard's 200
PHASE_OPEN, PHASE_CLOSING = 1, 4

SETTINGS = settings(
    max_examples=10,  # about 30 s on 2 cores; every label below is reached
    stateful_step_count=8,
    deadline=None,
    database=None,
    derandomize=True,  # the same sequences every run: the coverage check cannot flake
    suppress_health_check=[HealthCheck.too_slow],
)

TRIM_EACH = 1
BPS_THRESHOLDS = (5_000, 10_000, 15_000)
ROBUST_EXAMPLES = 20  # about 35 s on 2 cores


@dataclass(frozen=True)
class Variant:
    """A deployment the machine drives: FedAvg with the share cap and the reference Aggregate,
    or the trimmed mean with the reference Progress."""

    name: str
    trim_each: int

    @property
    def params(self) -> dict[str, Any]:
        if self.trim_each:
            return {
                "aggregation": "mean",
                "trim_each": self.trim_each,
                "reward_reference": "progress",
                "tier_thresholds": BPS_THRESHOLDS,
            }
        return {
            "aggregation": "sample_weighted",
            "reward_reference": "aggregate",
            "max_share_bps": SHARE_BPS,
        }


FEDAVG = Variant("fedavg", 0)
ROBUST = Variant("robust", TRIM_EACH)

REACHED: Counter[str] = Counter()
ROBUST_EXPECTED = {
    "round closed",
    "a weight held by the step bound",
    "a weight held by the drift bound",
    "an extreme value trimmed",
    "checkpoint refreshed",
    "paid by the shortfall",
    "unpaid: under the guard from the current model",
    "unpaid: under the guard from the new model",
}  # finalize does not depend on the variant: the FedAvg run reaches it
EXPECTED = {
    "round closed",
    "a weight held by the step bound",
    "a weight held by the drift bound",
    "a share capped",
    "every weight equal (cap infeasible)",
    "checkpoint refreshed",
    "paid by the distance from the new model",
    "unpaid: under the guard from the current model",
    "unpaid: under the guard from the new model",
    "finalize refused",
    "round abandoned",
}


@dataclass
class Environment:
    """The deployment every sequence starts from."""

    chain: Chain
    contract: Contract
    variant: Variant
    snapshot: Any
    initial: np.ndarray
    clients: tuple[str, ...]
    closer: str
    opened_at: int


@dataclass
class Entry:
    """A counted submission of the open round."""

    client: str
    vector: np.ndarray
    samples: int
    distance: int  # from the model it was sent against


@dataclass
class Reference:
    """What the coordinator should hold."""

    model: np.ndarray
    checkpoint: np.ndarray
    round_number: int = 1
    deadline: int = 0
    entries: list[Entry] = field(default_factory=list)
    closed_segments: int = 0
    clamped: int = 0  # SegmentClosed.clamped so far in the open round's close
    credits: Counter[str] = field(default_factory=Counter)


def make_environment(
    chain: Chain, owner: str, clients: list[str], closer: str, variant: Variant = FEDAVG
) -> Environment:
    """Deploy the machine's coordinator from a random initial model and take the snapshot."""
    chain.advance_time(CLOCK_LEAD)
    params = small_params(
        words_per_segment=WORDS_PER_SEGMENT,
        max_sample_count=MAX_SAMPLES,
        target_submissions=TARGET,
        min_submissions=MINIMUM,
        round_duration=DURATION,
        close_window=WINDOW,
        close_fee=CLOSE_FEE,
        relay_fee=0,
        min_reward_distance=GUARD,
        max_step=MAX_STEP,
        max_drift=MAX_DRIFT,
        drift_window=DRIFT_WINDOW,
        **variant.params,
    )
    initial = np.random.default_rng(2025).integers(-500, 501, size=NUM_WEIGHTS, dtype=np.int64)
    contract = deploy(chain, params, initial_words=pack(initial), pool_wei=POOL, deployer=owner)
    deadline = int(contract.functions.roundInfo().call()[2])
    return Environment(
        chain=chain,
        contract=contract,
        variant=variant,
        snapshot=chain.snapshot(),
        initial=initial,
        clients=tuple(clients),
        closer=closer,
        opened_at=deadline - DURATION,
    )


class IncentiveMachine(RuleBasedStateMachine):
    """Random submissions, closes, finalize and time against the reference."""

    def __init__(self, env: Environment) -> None:
        super().__init__()
        env.chain.revert(env.snapshot)
        self.env = env
        self.chain = env.chain
        self.contract = env.contract
        self.ref = Reference(
            model=env.initial.copy(),
            checkpoint=env.initial.copy(),
            deadline=env.opened_at + DURATION,
        )

    # ------------------------------------------------------------ helpers

    def next_time(self) -> int:
        """The timestamp the next transaction's block carries."""
        return int(self.chain.w3.eth.get_block("pending")["timestamp"])

    def submitted(self, client: str) -> bool:
        return any(e.client == client for e in self.ref.entries)

    def closable(self) -> bool:
        ref = self.ref
        if ref.closed_segments:
            return True
        count = len(ref.entries)
        return count >= MINIMUM and (count >= TARGET or self.next_time() >= ref.deadline)

    def update(self, kind: str, seed: int, scale: int) -> np.ndarray:
        """The model plus a random move of up to ``scale`` a weight, or the push scaled."""
        if kind == "push":
            move = PUSH * scale
        else:
            move = np.random.default_rng(seed).integers(-scale, scale + 1, size=NUM_WEIGHTS)
        return np.asarray(np.clip(self.ref.model + move, -MAX_ABS, MAX_ABS), dtype=np.int64)

    def open_next(self, receipt: TxReceipt) -> None:
        """The round moved on in ``receipt``'s block."""
        ref = self.ref
        ref.round_number += 1
        ref.entries = []
        ref.closed_segments = 0
        ref.clamped = 0
        block = self.chain.w3.eth.get_block(receipt["blockNumber"])
        ref.deadline = int(block["timestamp"]) + DURATION
        opened = events(self.contract, "RoundOpened", receipt)
        assert [(e["round"], e["deadline"]) for e in opened] == [(ref.round_number, ref.deadline)]

    # ------------------------------------------------------------ rules

    SUBMISSION = st.tuples(
        st.integers(0, 5),
        st.sampled_from(KINDS),
        st.integers(0, 2**16),
        st.integers(0, 3),
        st.integers(1, 1_000),
    )
    BATCH = st.lists(SUBMISSION, min_size=1, max_size=3)

    @initialize(batch=st.lists(SUBMISSION, min_size=2, max_size=3, unique_by=lambda s: s[0]))
    def start(self, batch: list[tuple[int, str, int, int, int]]) -> None:
        """Every sequence starts with updates in round 1."""
        self.submit_updates(batch)

    @rule(batch=BATCH)
    def submit_updates(self, batch: list[tuple[int, str, int, int, int]]) -> None:
        """Up to three submissions (each skipped when its sender already submitted, the round is
        full, closing or past its deadline)."""
        for who, kind, seed, level, samples in batch:
            ref = self.ref
            client = self.env.clients[who]
            if (
                ref.closed_segments
                or self.submitted(client)
                or len(ref.entries) >= TARGET
                or self.next_time() >= ref.deadline
            ):
                continue
            scale = PUSH_SCALES[level] if kind == "push" else HONEST_SCALES[level % 2]
            vector = self.update(kind, seed, scale)
            count = MAX_SAMPLES if kind == "inflated" else samples
            function = self.contract.functions.submit(ref.round_number, count, 0, pack(vector))
            receipt = send(self.chain, function, client)
            moved = distance(ref.model, vector, "l1")
            accepted = events(self.contract, "SubmissionAccepted", receipt)
            assert [
                (
                    e["round"],
                    e["client"],
                    e["sampleCount"],
                    e["distance"],
                    e["tier"],
                    e["reward"],
                    e["counted"],
                )
                for e in accepted
            ] == [(ref.round_number, client, count, moved, NO_TIER, 0, True)]
            ref.entries.append(Entry(client, vector, count, moved))

    @rule(batch=st.lists(SUBMISSION, min_size=MINIMUM, max_size=TARGET), same=st.booleans())
    def play_round(self, batch: list[tuple[int, str, int, int, int]], same: bool) -> None:
        """Fill the open round from ``batch`` (with ``same``, every update is the first one's
        move: identical vectors, the new model is theirs) and close it: at once when it is full,
        at its deadline when it holds the minimum (two updates: no cap of 4,000 bps is feasible,
        every weight becomes the smallest)."""
        if same:
            _, kind, seed, level, _ = batch[0]
            batch = [(who, kind, seed, level, samples) for who, _, _, _, samples in batch]
        self.submit_updates(batch)
        ref = self.ref
        if not ref.closed_segments and len(ref.entries) >= MINIMUM and not self.closable():
            self.chain.advance_time(max(0, ref.deadline - self.next_time()))
        if self.closable():
            self.close(whole=True)

    @precondition(lambda self: self.closable())
    @rule(whole=st.booleans())
    def close(self, whole: bool) -> None:
        """Close the next segment (or every remaining one) from the submitted words."""
        ref = self.ref
        last = SEGMENTS if whole else ref.closed_segments + 1
        for segment in range(ref.closed_segments, last):
            words = [
                w
                for entry in ref.entries
                for w in split_segments(pack(entry.vector), WORDS_PER_SEGMENT)[segment]
            ]
            function = close_function(
                self.contract, round_number=ref.round_number, segment=segment, words=words
            )
            receipt = send(self.chain, function, self.env.closer)
            [closed] = events(self.contract, "SegmentClosed", receipt)
            assert (closed["round"], closed["segment"], closed["entries"], closed["fee"]) == (
                ref.round_number,
                segment,
                len(ref.entries),
                CLOSE_FEE,
            )
            ref.credits[self.env.closer] += CLOSE_FEE
            ref.clamped += int(closed["clamped"])
            ref.closed_segments += 1
            if ref.closed_segments == SEGMENTS:
                self.check_close(receipt)
            else:
                assert self.chain_model().tolist() == ref.model.tolist()  # not global yet

    def check_close(self, receipt: TxReceipt) -> None:
        """The new model, its bounds and the round's rewards, against the reference."""
        ref = self.ref
        trim = self.env.variant.trim_each
        declared = [e.samples for e in ref.entries]
        vectors = [e.vector for e in ref.entries]
        weights = [1] * len(vectors) if trim else capped_weights(declared, SHARE_BPS)
        average = trimmed_average(vectors, trim) if trim else integer_average(vectors, weights)
        expected, held = clamp_step(
            average, ref.model, ref.checkpoint, max_step=MAX_STEP, max_drift=MAX_DRIFT
        )
        new = self.chain_model()
        assert new.tolist() == expected.tolist()
        assert ref.clamped == held
        assert int(np.abs(new - ref.model).max()) <= MAX_STEP
        assert int(np.abs(new - ref.checkpoint).max()) <= MAX_DRIFT
        REACHED["round closed"] += 1
        if trim_cut(trim, len(vectors)) and not np.array_equal(average, integer_average(vectors)):
            REACHED["an extreme value trimmed"] += 1
        if not trim and weights != declared:
            REACHED["a share capped"] += 1
            if share_cap(declared, SHARE_BPS) == min(declared) and len(set(declared)) > 1:
                REACHED["every weight equal (cap infeasible)"] += 1
        if np.any(np.abs(average - ref.model) > MAX_STEP):
            REACHED["a weight held by the step bound"] += 1
        if np.any(
            (np.abs(average - ref.checkpoint) > MAX_DRIFT)
            & (np.abs(average - ref.model) <= MAX_STEP)
        ):
            REACHED["a weight held by the drift bound"] += 1
        settled = {str(e["client"]): e for e in events(self.contract, "RewardSettled", receipt)}
        assert set(settled) == {e.client for e in ref.entries}
        step = distance(ref.model, new, "l1")
        for entry in ref.entries:
            from_new = distance(new, entry.vector, "l1")
            score = shortfall_bps(from_new, entry.distance, step) if trim else from_new
            if entry.distance < GUARD:
                tier, reward = NO_TIER, 0
                REACHED["unpaid: under the guard from the current model"] += 1
            elif from_new < GUARD:
                tier, reward = NO_TIER, 0
                REACHED["unpaid: under the guard from the new model"] += 1
            else:
                decision = reward_tier(score, BPS_THRESHOLDS if trim else THRESHOLDS, REWARDS)
                tier, reward = decision.tier, decision.amount_wei
                if reward:
                    REACHED[
                        "paid by the shortfall"
                        if trim
                        else "paid by the distance from the new model"
                    ] += 1
            got = settled[entry.client]
            assert (got["round"], got["distance"], got["tier"], got["reward"]) == (
                ref.round_number,
                score,
                tier,
                reward,
            )
            ref.credits[entry.client] += reward
        if ref.round_number % DRIFT_WINDOW == 0:
            ref.checkpoint = new.copy()
            REACHED["checkpoint refreshed"] += 1
        ref.model = new
        self.open_next(receipt)
        self.check_model_and_credits()

    @precondition(lambda self: self.ref.closed_segments or self.next_time() >= self.ref.deadline)
    @rule()
    def finalize(self) -> None:
        """``finalize`` once the deadline passed: refused while the round is closing or before
        its close window ends; afterwards the round is abandoned (no new model, no checkpoint
        refresh)."""
        ref = self.ref
        function = self.contract.functions.finalize()
        if ref.closed_segments:
            self.expect_revert(function, "CoordinatorWrongPhase", {"phase": PHASE_CLOSING})
            return
        opens_at = ref.deadline + WINDOW
        if self.next_time() < opens_at:
            self.expect_revert(
                function,
                "CoordinatorNotClosable",
                {
                    "round": ref.round_number,
                    "entries": len(ref.entries),
                    "target": TARGET,
                    "minimum": MINIMUM,
                    "opensAt": opens_at,
                },
            )
            REACHED["finalize refused"] += 1
            return
        receipt = send(self.chain, function, self.env.closer)
        abandoned = events(self.contract, "RoundAbandoned", receipt)
        assert [(e["round"], e["submissions"]) for e in abandoned] == [
            (ref.round_number, len(ref.entries))
        ]
        REACHED["round abandoned"] += 1
        self.open_next(receipt)
        self.check_model_and_credits()

    def expect_revert(self, function: Any, name: str, arguments: dict[str, object]) -> None:
        with pytest.raises(ContractRevertError) as caught:
            send(self.chain, function, self.env.closer)
        assert (caught.value.name, revert_args(caught.value)) == (name, arguments)

    @rule(seconds=st.sampled_from((60, 60, 60, DURATION, DURATION + WINDOW)))
    def wait(self, seconds: int) -> None:
        """Move the clock."""
        self.chain.advance_time(seconds)

    # ------------------------------------------------------------ invariants

    def chain_model(self) -> np.ndarray:
        return np.asarray(
            [int(w) for w in self.contract.functions.globalModelWeights().call()], dtype=np.int64
        )

    def check_model_and_credits(self) -> None:
        """Once a round moved on: the model and every account's credit."""
        assert self.chain_model().tolist() == self.ref.model.tolist()
        for account in (*self.env.clients, self.env.closer):
            assert int(self.contract.functions.credit(account).call()) == self.ref.credits[account]

    @invariant()
    def round_matches_the_reference(self) -> None:
        ref = self.ref
        number, phase, _, entries, closed = self.contract.functions.roundInfo().call()
        assert (number, entries, closed) == (
            ref.round_number,
            len(ref.entries),
            ref.closed_segments,
        )
        assert phase == (PHASE_CLOSING if ref.closed_segments else PHASE_OPEN)


@pytest.mark.slow
def test_incentive_rules_hold_under_random_call_sequences(
    isolated: Chain, owner: str, clients: list[str], relayer: str
) -> None:
    """10 random sequences (derandomized) of an initial batch and up to 8 steps against one
    deployment; every rule, bound and boundary of ``EXPECTED`` is reached."""
    # Prepare
    env = make_environment(isolated, owner, clients[:6], relayer)
    REACHED.clear()
    # Execute
    run_state_machine_as_test(lambda: IncentiveMachine(env), settings=SETTINGS)  # type: ignore[no-untyped-call]
    # Assert
    missing = EXPECTED - {label for label, count in REACHED.items() if count}
    assert not missing, (sorted(missing), sorted(REACHED.items()))


@pytest.mark.slow
def test_trimmed_mean_and_progress_rewards_hold_under_random_call_sequences(
    isolated: Chain, owner: str, clients: list[str], relayer: str
) -> None:
    """The recommended settings (``ROBUST``: the trimmed mean, reference Progress) under 20
    random sequences (derandomized) of the same calls; every label of ``ROBUST_EXPECTED`` is
    reached."""
    # Prepare
    env = make_environment(isolated, owner, clients[:6], relayer, ROBUST)
    REACHED.clear()
    # Execute
    run_state_machine_as_test(  # type: ignore[no-untyped-call]
        lambda: IncentiveMachine(env), settings=settings(SETTINGS, max_examples=ROBUST_EXAMPLES)
    )
    # Assert
    missing = ROBUST_EXPECTED - {label for label, count in REACHED.items() if count}
    assert not missing, (sorted(missing), sorted(REACHED.items()))
