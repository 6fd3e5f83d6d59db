"""The incentive rules, at their boundaries, and the attacks they answer, on small vectors.

Rules: the reward reference ``Aggregate`` (paid by the close by the distance from the round's new
model: ``RewardSettled``; the free-rider guard still applies; left-out and dropped updates are not
paid), the share cap of sample-weighted rounds (exactly at the cap, one sample above it, and the
infeasible cap that makes every weight equal, each against
:func:`fl_client.aggregation.share_cap` / :func:`~fl_client.aggregation.capped_weights`), the
step and drift bounds (exactly on the bound and one quantum beyond, the checkpoint refreshed
every ``driftWindow`` rounds, a round whose every weight is held back still closes), and the
direction guard that counts the moves of weights the last step left alone as against (exactly at
its threshold).

Attacks, as the incentive benchmark (``bench/incentives.py``) plays them on MNIST: a free rider at
exactly the guard's distance, a stale-model resubmitter, a random-noise submitter of honest size,
a sample-count inflater, three colluding Sybils and a commit-reveal copycat, and the issue's other
holes (an update that moves only weights the last step left alone; the inflater over three rounds
with and without the cap). Each test shows what the rules now do to it, and says so where an
attack is still paid.

The benchmark's pure parts, without a chain: each crafted strategy sends what its definition
says (exactly the guard along the step, the previous model, the best-paid reveal, exactly the
honest size), the relative reward (against the run's honest clients; for the inflater, against
its own clean run), the bar at its boundaries (exactly 1 relative, exactly 1 pp), the tier ladder
and the calibration, and the report rebuilt from its runs (``--render``). A ``--quick`` run takes
several minutes, too long for a smoke test.

Every coordinator has 40 weights (``small_params``: tiers ``(1,000, 10,000, 50,000)`` paying
``(300, 200, 100)`` wei on the L1 distance) and starts from a zero model unless a test says
otherwise; expected values come from the references of :mod:`fl_client.aggregation`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from web3.contract import Contract
from web3.types import TxReceipt

from bench import incentives
from fl_client.aggregation import (
    NO_TIER,
    aligned,
    capped_weights,
    clamp_step,
    directional_l1,
    distance,
    integer_average,
    reward_tier,
    share_cap,
    shortfall_bps,
    step_signs,
)
from fl_client.chain import Chain, commitment, read_round, reveal_calls, send
from fl_client.codec import dequantize, pack, quantize, vector_hash
from fl_client.config import FixedPointFormat
from tests.conftest import SMALL_WEIGHTS, events, relay, signed, submit
from tests.pipeline_helpers import (
    close_round,
    deadline_of,
    model_values,
    module_deployments,
    reverts,
    window_end,
)

THRESHOLDS = (1_000, 10_000, 50_000)
REWARDS = (300, 200, 100)
GUARD = 0  # minAlignment of the guarded deployments: no more against the last step than along
MAX_SAMPLES = 65_535
BOND = 1_000

AGGREGATE = {"reward_reference": "aggregate"}
CONFIGS: dict[str, dict[str, Any]] = {
    "aggregate": {**AGGREGATE, "min_submissions": 3},
    "aggregate_guarded": {**AGGREGATE, "min_submissions": 3, "min_reward_distance": 400},
    "aggregate_bound": {**AGGREGATE, "max_counted_distance": 5_000, "min_submissions": 3},
    "aggregate_relay": {**AGGREGATE, "target_submissions": 4, "min_submissions": 2},
    "current_guarded": {"min_submissions": 3, "min_reward_distance": 400},
    "direction": {"min_alignment_bps": GUARD, "min_submissions": 3},
    "step": {"max_step": 10, "min_submissions": 3},
    "step3": {"max_step": 10, "min_submissions": 3, "words_per_segment": 1},
    "drift": {"max_drift": 15, "drift_window": 2, "min_submissions": 3},
    "both": {"max_step": 5, "max_drift": 8, "drift_window": 3, "min_submissions": 3},
}


@pytest.fixture(scope="module")
def deployed(chain: Chain) -> Iterator[dict[str, Contract]]:
    """The module's coordinators, deployed once (each test runs on a snapshot)."""
    yield from module_deployments(chain, CONFIGS)


@pytest.fixture
def coordinators(isolated: Chain, deployed: dict[str, Contract]) -> dict[str, Contract]:
    """The module's coordinators, on the test's snapshot."""
    return deployed


# ---------------------------------------------------------------- helpers


def accepted(contract: Contract, receipts: Sequence[TxReceipt]) -> list[dict[str, Any]]:
    """Every ``SubmissionAccepted`` in ``receipts``."""
    return [e for r in receipts for e in events(contract, "SubmissionAccepted", r)]


def settled(contract: Contract, receipts: Sequence[TxReceipt]) -> dict[str, dict[str, Any]]:
    """The ``RewardSettled`` events of ``receipts``, by client."""
    found = [e for r in receipts for e in events(contract, "RewardSettled", r)]
    by_client = {str(e["client"]): e for e in found}
    assert len(by_client) == len(found), "an update was settled twice"
    return by_client


def clamped_of(contract: Contract, receipts: Sequence[TxReceipt]) -> int:
    """Weights the bounds held back in the closes of ``receipts`` (``SegmentClosed.clamped``)."""
    return sum(int(e["clamped"]) for r in receipts for e in events(contract, "SegmentClosed", r))


def model_of(contract: Contract) -> np.ndarray:
    """The global model as quantized integers."""
    return np.asarray(model_values(contract), dtype=np.int64)


def credit_of(contract: Contract, account: str) -> int:
    """``account``'s credit."""
    return int(contract.functions.credit(account).call())


def paid(update: np.ndarray, reference: np.ndarray, *, guard: int = 0) -> tuple[int, int]:
    """The (tier, reward) the reference rule gives ``update`` measured from ``reference``."""
    decision = reward_tier(
        distance(reference, update, "l1"), THRESHOLDS, REWARDS, min_reward_distance=guard
    )
    return decision.tier, decision.amount_wei


def play(
    chain: Chain,
    contract: Contract,
    closer: str,
    updates: Mapping[str, np.ndarray],
    *,
    round_number: int = 1,
    samples: Mapping[str, int] | None = None,
) -> tuple[list[dict[str, Any]], list[TxReceipt]]:
    """Submit ``updates`` directly (in order), then close the round: the submissions'
    ``SubmissionAccepted`` and the close's receipts."""
    receipts = []
    for client, values in updates.items():
        count = 1 if samples is None else samples[client]
        receipts += submit(
            chain, contract, client, values, round_number=round_number, sample_count=count
        )
    closes = close_round(chain, contract, closer, updates, round_number=round_number)
    return accepted(contract, receipts), closes


def ramp(low: int, high: int) -> np.ndarray:
    """40 weights from ``low`` to ``high`` (integers, evenly spaced)."""
    return np.linspace(low, high, SMALL_WEIGHTS).round().astype(np.int64)


# ---------------------------------------------------------------- reward reference: Aggregate


def test_aggregate_reference_pays_at_the_close_by_the_distance_from_the_new_model(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    """Submissions are measured and counted on submit but paid nothing then; the close pays each
    by its distance from the new model, tiers inclusive: exactly 1,000 is tier 0, 1,001 tier 1."""
    # Prepare: the new model is 100 everywhere; a lies exactly 1,000 from it, b 1,001, c 1
    contract = coordinators["aggregate"]
    a, b, c = clients[:3]
    new = np.full(SMALL_WEIGHTS, 100, dtype=np.int64)
    deviation_b = np.full(SMALL_WEIGHTS, -25, dtype=np.int64)
    deviation_b[0] = -26
    updates = {a: new + 25, b: new + deviation_b, c: new - 25 - deviation_b}
    # Execute
    submissions, closes = play(isolated, contract, relayer, updates)
    # Assert: nothing paid on submit, every update counted
    assert [(e["counted"], e["tier"], e["reward"]) for e in submissions] == [(True, NO_TIER, 0)] * 3
    assert [e["distance"] for e in submissions] == [
        distance(np.zeros(SMALL_WEIGHTS, dtype=np.int64), v, "l1") for v in updates.values()
    ]
    assert model_of(contract).tolist() == new.tolist()
    rewards = settled(contract, closes)
    assert {
        client: (e["round"], e["distance"], e["tier"], e["reward"]) for client, e in rewards.items()
    } == {
        a: (1, 1_000, 0, 300),
        b: (1, 1_001, 1, 200),
        c: (1, 1, 0, 300),
    }
    assert [credit_of(contract, client) for client in (a, b, c)] == [300, 200, 300]


def test_aggregate_reference_still_refuses_free_riders_by_their_distance_from_the_current_model(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    """The free-rider guard (400) judges the distance from the model the update was sent
    against: 399 is refused even though the update lies far from the new model, exactly 400 is
    paid by its distance from the new model."""
    # Prepare
    contract = coordinators["aggregate_guarded"]
    a, b, below, at = clients[:4]
    below_vector = np.full(SMALL_WEIGHTS, 10, dtype=np.int64)
    below_vector[0] = 9  # L1 399 from the zero model
    at_vector = np.full(SMALL_WEIGHTS, 10, dtype=np.int64)  # L1 400
    # Execute: target 3: a, b and the free rider just below the guard
    submissions, closes = play(
        isolated,
        contract,
        relayer,
        {a: np.full(SMALL_WEIGHTS, 200, dtype=np.int64), b: ramp(150, 250), below: below_vector},
    )
    new = model_of(contract)
    submissions2, closes2 = play(
        isolated,
        contract,
        relayer,
        {a: new + 200, b: new + ramp(150, 250), at: new + at_vector},
        round_number=2,
    )
    # Assert: round 1, the free rider counts in the average and is not paid
    assert [e["distance"] for e in submissions] == [8_000, 8_000, 399]
    assert all(e["counted"] for e in submissions + submissions2)
    rewards = settled(contract, closes)
    assert distance(new, below_vector, "l1") >= 400
    assert (rewards[below]["tier"], rewards[below]["reward"]) == (NO_TIER, 0)
    assert rewards[below]["distance"] == distance(new, below_vector, "l1")
    assert (rewards[a]["tier"], rewards[a]["reward"]) == paid(
        np.full(SMALL_WEIGHTS, 200), new, guard=400
    )
    # Assert: round 2, exactly at the guard: paid by its distance from the new model
    new2 = model_of(contract)
    rewards2 = settled(contract, closes2)
    assert submissions2[2]["distance"] == 400
    assert (rewards2[at]["tier"], rewards2[at]["reward"]) == paid(new + at_vector, new2, guard=400)
    assert rewards2[at]["reward"] > 0


def test_aggregate_reference_applies_the_guard_to_the_distance_from_the_new_model_too(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    """In Aggregate mode ``minRewardDistance`` also applies to the distance from the new model:
    three identical updates that each moved 8,000 from the current model make the new model, lie
    0 from it and are not paid; ramps around a common point lie at least the guard from it and
    are paid."""
    # Prepare
    contract = coordinators["aggregate_guarded"]
    a, b, c = clients[:3]
    same = np.full(SMALL_WEIGHTS, 200, dtype=np.int64)
    # Execute
    submissions, closes = play(isolated, contract, relayer, {a: same, b: same, c: same})
    new = model_of(contract)
    spread = {a: new + ramp(-30, 30), b: new + ramp(30, -30), c: new + 11}
    _, closes2 = play(isolated, contract, relayer, spread, round_number=2)
    new2 = model_of(contract)
    # Assert: identical updates: counted, the model is theirs, nobody paid
    assert all(e["counted"] and e["distance"] == 8_000 for e in submissions)
    assert new.tolist() == same.tolist()
    assert [
        (e["distance"], e["tier"], e["reward"]) for e in settled(contract, closes).values()
    ] == [(0, NO_TIER, 0)] * 3
    # Assert: spread updates: each paid by its distance from the new model, guard 400 applied
    rewards2 = settled(contract, closes2)
    for client, update in spread.items():
        expected = paid(update, new2, guard=400)
        assert (
            rewards2[client]["distance"],
            rewards2[client]["tier"],
            rewards2[client]["reward"],
        ) == (
            distance(new2, update, "l1"),
            *expected,
        )
    assert rewards2[c]["distance"] < 400 < rewards2[a]["distance"]
    assert rewards2[c]["reward"] == 0 < rewards2[a]["reward"]


def test_aggregate_reference_pays_no_update_left_out_by_the_bound(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    """An update beyond ``maxCountedDistance`` (5,000) is settled unpaid on submit, is not an entry
    of the round and gets no ``RewardSettled``; exactly 5,000 counts and is paid at the close."""
    # Prepare
    contract = coordinators["aggregate_bound"]
    a, b, c, poisoner = clients[:4]
    at_bound = np.full(SMALL_WEIGHTS, 125, dtype=np.int64)  # L1 5,000
    beyond = at_bound.copy()
    beyond[0] += 1  # 5,001
    receipts = submit(isolated, contract, poisoner, beyond)
    updates = {a: at_bound, b: np.full(SMALL_WEIGHTS, 100, dtype=np.int64), c: ramp(90, 110)}
    # Execute
    submissions, closes = play(isolated, contract, relayer, updates)
    # Assert
    left_out = accepted(contract, receipts)
    assert [(e["distance"], e["counted"], e["tier"], e["reward"]) for e in left_out] == [
        (5_001, False, NO_TIER, 0)
    ]
    assert (submissions[0]["distance"], submissions[0]["counted"]) == (5_000, True)
    new = model_of(contract)
    assert new.tolist() == integer_average(list(updates.values())).tolist()
    rewards = settled(contract, closes)
    assert set(rewards) == {a, b, c}
    assert {client: (e["tier"], e["reward"]) for client, e in rewards.items()} == {
        client: paid(update, new) for client, update in updates.items()
    }
    assert credit_of(contract, poisoner) == 0


def test_aggregate_reference_pays_relayed_updates_at_the_close_and_never_a_dropped_one(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    """Relayed updates are measured by the close; one whose words its relayer never supplied is
    left out after the close window, settled unpaid (``SubmissionAccepted`` counted false) and
    gets no ``RewardSettled``; the model is the average of the others."""
    # Prepare: two direct updates, two relayed ones
    contract = coordinators["aggregate_relay"]
    a, b, carried, lost = clients[:4]
    direct = {a: np.full(SMALL_WEIGHTS, 40, dtype=np.int64), b: ramp(20, 60)}
    for client, values in direct.items():
        submit(isolated, contract, client, values)
    kept = np.full(SMALL_WEIGHTS, 44, dtype=np.int64)
    relay(
        isolated,
        contract,
        relayer,
        [
            signed(isolated, contract, carried, kept),
            signed(isolated, contract, lost, np.full(SMALL_WEIGHTS, -500, dtype=np.int64)),
        ],
    )
    isolated.advance_time(window_end(contract) - isolated.timestamp())
    assert isolated.timestamp() >= deadline_of(contract)
    # Execute: the close carries every update but the lost one (entry 3)
    closes = close_round(isolated, contract, relayer, {**direct, carried: kept}, omitted=(3,))
    # Assert
    updates = [*direct.values(), kept]
    new = model_of(contract)
    assert new.tolist() == integer_average(updates).tolist()
    rewards = settled(contract, closes)
    assert set(rewards) == {a, b, carried}
    for client, update in zip((a, b, carried), updates, strict=True):
        assert (
            rewards[client]["distance"],
            rewards[client]["tier"],
            rewards[client]["reward"],
        ) == (
            distance(new, update, "l1"),
            *paid(update, new),
        )
    dropped = [e for e in accepted(contract, closes) if e["client"] == lost]
    assert [(e["counted"], e["tier"], e["reward"], e["relayed"]) for e in dropped] == [
        (False, NO_TIER, 0, True)
    ]
    assert credit_of(contract, lost) == 0


# ---------------------------------------------------------------- the share cap


@pytest.mark.parametrize(
    ("share_bps", "counts"),
    [
        (5_000, (200, 100, 100)),  # exactly at the cap: 200 / 400 = 50 %, nothing capped
        (5_000, (201, 100, 100)),  # one sample above: capped to 200
        (4_500, (900, 100, 100)),  # capped to floor(4500 * 200 / 5500) = 163
        (3_334, (500, 300, 100)),  # feasible by 2 bps (3 x 3,334 >= 10,000): 100 each
        (3_333, (500, 300, 100)),  # infeasible: every weight becomes the smallest
        (2_000, (500, 300, 100)),  # infeasible
        (10_000, (MAX_SAMPLES, 1, 1)),  # a cap of 100 %: off in effect
    ],
)
def test_share_cap_weights_each_update_as_the_reference_caps_it(
    isolated: Chain,
    deploy_coordinator: Any,
    clients: list[str],
    relayer: str,
    share_bps: int,
    counts: tuple[int, int, int],
) -> None:
    """Sample-weighted averaging with ``maxShareBps``: the new model is the average with the
    weights :func:`capped_weights` gives, whose cap is :func:`share_cap`'s."""
    # Prepare: vectors far apart, so that every weight change moves the average
    contract = deploy_coordinator(
        aggregation="sample_weighted",
        max_sample_count=MAX_SAMPLES,
        max_share_bps=share_bps,
        min_submissions=3,
    )
    vectors = [np.full(SMALL_WEIGHTS, 3_000), np.full(SMALL_WEIGHTS, -3_000), ramp(-1_000, 1_000)]
    updates = dict(zip(clients[:3], (np.asarray(v, dtype=np.int64) for v in vectors), strict=True))
    samples = dict(zip(clients[:3], counts, strict=True))
    # Execute
    submissions, _ = play(isolated, contract, relayer, updates, samples=samples)
    # Assert
    weights = capped_weights(counts, share_bps)
    cap = share_cap(counts, share_bps)
    assert weights == [min(c, cap) for c in counts]
    assert [e["sampleCount"] for e in submissions] == list(counts)
    assert model_of(contract).tolist() == integer_average(list(updates.values()), weights).tolist()
    total = sum(weights)
    if share_bps * len(counts) >= 10_000:
        assert all(w * 10_000 <= share_bps * total for w in weights)
    else:
        assert weights == [min(counts)] * 3


def test_share_cap_is_ignored_by_the_plain_mean(
    isolated: Chain, deploy_coordinator: Any, clients: list[str], relayer: str
) -> None:
    """With ``aggregation`` Mean every update weighs 1 whatever it declares: the cap has nothing
    to do."""
    # Prepare
    contract = deploy_coordinator(max_share_bps=2_000, min_submissions=3)
    updates = dict(
        zip(clients[:3], (np.full(SMALL_WEIGHTS, v) for v in (900, 0, -300)), strict=True)
    )
    samples = dict(zip(clients[:3], (1_000, 1, 1), strict=True))
    # Execute
    play(isolated, contract, relayer, updates, samples=samples)
    # Assert
    assert model_of(contract).tolist() == [200] * SMALL_WEIGHTS


# ---------------------------------------------------------------- the step and drift bounds


@pytest.mark.parametrize("name", ["step", "step3"])
def test_step_bound_keeps_a_move_exactly_on_it_and_clamps_one_quantum_beyond(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str, name: str
) -> None:
    """``maxStep`` 10: a weight the average moves by exactly 10 (up or down) keeps it, one moved
    by 11 is held at 10; ``SegmentClosed.clamped`` counts the latter (in one segment, or over
    three)."""
    # Prepare: three identical updates: the average is the update
    contract = coordinators[name]
    update = np.zeros(SMALL_WEIGHTS, dtype=np.int64)
    update[:8] = [10, 11, -10, -11, 5, -5, 3_000, -3_000]
    update[20] = 12
    update[39] = -10
    # Execute
    _, closes = play(isolated, contract, relayer, dict.fromkeys(clients[:3], update))
    # Assert
    expected, held = clamp_step(
        update, np.zeros(SMALL_WEIGHTS, dtype=np.int64), None, max_step=10, max_drift=0
    )
    assert held == 5
    assert clamped_of(contract, closes) == held
    assert model_of(contract).tolist() == expected.tolist()
    assert model_of(contract)[:8].tolist() == [10, 10, -10, -10, 5, -5, 10, -10]
    assert read_round(contract).number == 2


def test_drift_bound_on_its_bound_and_the_checkpoint_refreshed_every_window(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    """``maxDrift`` 15 over windows of 2 rounds: the checkpoint is the initial model for rounds 1
    and 2, then the model that closed round 2 for rounds 3 and 4. A weight exactly 15 from the
    checkpoint keeps it, 16 is held at 15; after the refresh the same weights may drift 15 more."""
    # Prepare: each round every client moves every weight by +10 (weight 0 by +15, then 0)
    contract = coordinators["drift"]
    checkpoint = np.zeros(SMALL_WEIGHTS, dtype=np.int64)
    moves = {
        1: np.full(SMALL_WEIGHTS, 10, dtype=np.int64),
        2: np.full(SMALL_WEIGHTS, 10, dtype=np.int64),
        3: np.full(SMALL_WEIGHTS, 10, dtype=np.int64),
        4: np.full(SMALL_WEIGHTS, 10, dtype=np.int64),
    }
    moves[1][0], moves[2][0] = 15, 0  # weight 0: exactly on the bound after round 1
    moves[2][1] = 5  # weight 1: 10 + 5 = 15, exactly on it after round 2
    moves[2][2] = 6  # weight 2: 16, one beyond
    models = [np.zeros(SMALL_WEIGHTS, dtype=np.int64)]
    held_by_round = []
    # Execute
    for round_number, move in moves.items():
        current = model_of(contract)
        update = current + move
        _, closes = play(
            isolated,
            contract,
            relayer,
            dict.fromkeys(clients[:3], update),
            round_number=round_number,
        )
        expected, held = clamp_step(update, current, checkpoint, max_step=0, max_drift=15)
        # Assert: the model and the count of held weights, round by round
        assert model_of(contract).tolist() == expected.tolist(), round_number
        assert clamped_of(contract, closes) == held, round_number
        held_by_round.append(held)
        models.append(expected)
        if round_number % 2 == 0:
            checkpoint = expected
    assert held_by_round == [0, SMALL_WEIGHTS - 2, 0, SMALL_WEIGHTS]
    assert models[2][:3].tolist() == [15, 15, 15]
    assert models[3].tolist() == (models[2] + 10).tolist()  # the checkpoint moved with round 2
    assert models[4].tolist() == (models[2] + 15).tolist()


def test_step_and_drift_bounds_together_hold_the_tighter_of_the_two(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    """``maxStep`` 5 and ``maxDrift`` 8 (windows of 3 rounds): +7 a round is held at 5 by the step,
    then at 8 by the drift, then not at all (the model already sits at the drift bound and stays
    there); every round closes."""
    # Prepare
    contract = coordinators["both"]
    checkpoint = np.zeros(SMALL_WEIGHTS, dtype=np.int64)
    # Execute
    models = []
    for round_number in (1, 2, 3):
        current = model_of(contract)
        update = current + 7
        _, closes = play(
            isolated,
            contract,
            relayer,
            dict.fromkeys(clients[:3], update),
            round_number=round_number,
        )
        expected, held = clamp_step(update, current, checkpoint, max_step=5, max_drift=8)
        assert model_of(contract).tolist() == expected.tolist()
        assert clamped_of(contract, closes) == held
        models.append(int(expected[0]))
    # Assert
    assert models == [5, 8, 8]
    assert read_round(contract).number == 4


# ---------------------------------------------------------------- the direction guard


def guarded_first_round(
    chain: Chain, contract: Contract, clients: Sequence[str], closer: str, update: np.ndarray
) -> np.ndarray:
    """Round 1 of a guarded coordinator: ``clients`` all send ``update``; every one must be
    counted (round 1 has no step to compare with). The step it took."""
    submissions, _ = play(chain, contract, closer, dict.fromkeys(clients, update))
    assert [e["counted"] for e in submissions] == [True] * len(clients), (
        "round 1 has no step yet: the guard must let every update through "
        f"(along, against: {[(e['along'], e['against']) for e in submissions]})"
    )
    return step_signs(np.zeros(SMALL_WEIGHTS, dtype=np.int64), model_of(contract))


def test_round_one_has_no_step_so_the_guard_lets_every_update_through(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    """Round 1 of a guarded coordinator: the initial model has no step to compare with, so every
    update is counted and the round closes with the average (else no guarded federation could
    ever start: a round without entries never closes)."""
    # Prepare
    contract = coordinators["direction"]
    updates = {c: ramp(-50 * (i + 1), 50 * (i + 1)) for i, c in enumerate(clients[:3])}
    # Execute
    submissions, _ = play(isolated, contract, relayer, updates)
    # Assert
    assert [e["counted"] for e in submissions] == [True, True, True]
    assert model_of(contract).tolist() == integer_average(list(updates.values())).tolist()
    assert read_round(contract).number == 2


def test_guard_counts_moves_of_weights_the_step_left_alone_as_against_at_the_threshold(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    """After a step that moved weights 0-19 up and left 20-39 alone, an update moving 10 of the
    moved weights along (+1 each) and 10 of the untouched ones (+1 each) has alignment exactly 0:
    counted; one more quantum on an untouched weight makes it -1/21: left out. Both are judged as
    :func:`directional_l1` and :func:`aligned` judge them."""
    # Prepare
    contract = coordinators["direction"]
    first = np.zeros(SMALL_WEIGHTS, dtype=np.int64)
    first[:20] = 10
    step = guarded_first_round(isolated, contract, clients[:3], relayer, first)
    model = model_of(contract)
    at = model.copy()
    at[:10] += 1
    at[20:30] += 1
    beyond = at.copy()
    beyond[30] += 1
    # Execute
    passing = accepted(contract, submit(isolated, contract, clients[0], at, round_number=2))
    failing = accepted(contract, submit(isolated, contract, clients[1], beyond, round_number=2))
    # Assert
    assert directional_l1(model, at, step) == (10, 10)
    assert directional_l1(model, beyond, step) == (10, 11)
    assert [(e["along"], e["against"], e["counted"]) for e in passing + failing] == [
        (10, 10, aligned(10, 10, GUARD)),
        (10, 11, aligned(10, 11, GUARD)),
    ]
    assert (passing[0]["counted"], failing[0]["counted"]) == (True, False)


# ---------------------------------------------------------------- attacks


def test_free_rider_at_exactly_the_guard_is_paid_like_training_under_current_and_not_under_aggregate(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    """A free rider moves exactly ``minRewardDistance`` (400) quanta the way the last step went,
    one quantum less is refused. Under ``current`` it is paid the top tier, as much as the honest
    clients (the seed's rule pays standing still); under ``aggregate`` it lies 280 from the new
    model, below the guard, and is paid nothing while the honest clients are paid."""
    results = {}
    for name in ("current_guarded", "aggregate_guarded"):
        # Prepare: round 1 moves every weight up by 10
        contract = coordinators[name]
        honest_a, honest_b, rider = clients[:3]
        play(isolated, contract, relayer, dict.fromkeys(clients[:3], np.full(SMALL_WEIGHTS, 10)))
        model = model_of(contract)
        # Honest updates: +-20 alternating (L1 800), in opposite patterns
        pattern = np.where(np.arange(SMALL_WEIGHTS) % 2 == 0, 20, -20)
        updates = {honest_a: model + pattern, honest_b: model - pattern, rider: model + 10}
        # Execute
        submissions, closes = play(isolated, contract, relayer, updates, round_number=2)
        rewards = settled(contract, closes)
        results[name] = (submissions, rewards, model_of(contract))
    # Assert: the free rider lies exactly on the guard from the current model
    current_submissions, _, _ = results["current_guarded"]
    assert [e["distance"] for e in current_submissions] == [800, 800, 400]
    assert [(e["tier"], e["reward"]) for e in current_submissions] == [(0, 300)] * 3
    # Assert: under aggregate it lies 280 from the new model (3 above the old one), below 400
    aggregate_submissions, rewards, new = results["aggregate_guarded"]
    assert new.tolist() == (model_of(coordinators["current_guarded"])).tolist()
    assert all(e["counted"] for e in aggregate_submissions)
    assert (rewards[clients[2]]["distance"], rewards[clients[2]]["reward"]) == (280, 0)
    assert [rewards[c]["reward"] for c in clients[:2]] == [300, 300]


def test_free_rider_one_quantum_below_the_guard_is_paid_nothing_under_either_reference(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    """399 quanta from the model, one below the guard of 400: counted, averaged, unpaid."""
    for name in ("current_guarded", "aggregate_guarded"):
        # Prepare
        contract = coordinators[name]
        rider = np.full(SMALL_WEIGHTS, 10, dtype=np.int64)
        rider[0] = 9
        updates = {clients[0]: ramp(100, 300), clients[1]: ramp(300, 100), clients[2]: rider}
        # Execute
        submissions, closes = play(isolated, contract, relayer, updates)
        # Assert
        assert (submissions[2]["distance"], submissions[2]["counted"]) == (399, True)
        reward = (
            submissions[2]["reward"]
            if name == "current_guarded"
            else settled(contract, closes)[clients[2]]["reward"]
        )
        assert reward == 0
        assert credit_of(contract, clients[2]) == 0


def test_stale_model_resubmitter_is_left_out_by_the_guard(
    isolated: Chain, deploy_coordinator: Any, clients: list[str], relayer: str
) -> None:
    """Resending the previous round's global model moves every weight the last step moved back
    against it (alignment -1): left out and unpaid, under both references."""
    for reference in ("current", "aggregate"):
        # Prepare
        contract = deploy_coordinator(
            min_alignment_bps=GUARD, min_submissions=3, reward_reference=reference
        )
        previous = np.zeros(SMALL_WEIGHTS, dtype=np.int64)
        step = guarded_first_round(isolated, contract, clients[:3], relayer, ramp(5, 40))
        model = model_of(contract)
        updates = {
            c: model + step * k
            for k, c in zip((3, 4, 5), (clients[0], clients[1], clients[3]), strict=True)
        }
        before = credit_of(contract, clients[2])
        # Execute
        stale = accepted(contract, submit(isolated, contract, clients[2], previous, round_number=2))
        _, closes = play(isolated, contract, relayer, updates, round_number=2)
        # Assert
        along, against = directional_l1(model, previous, step)
        assert (along, against) == (0, distance(model, previous, "l1"))
        assert [(e["counted"], e["tier"], e["reward"]) for e in stale] == [(False, NO_TIER, 0)]
        assert clients[2] not in settled(contract, closes)
        assert credit_of(contract, clients[2]) == before


def test_noise_of_honest_size_is_left_out_because_unmoved_weights_count_against(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    """Random +-k noise of an honest update's size: on the weights the last step moved it goes
    along about as often as against, and every quantum it puts on a weight the step left alone
    counts against, so its alignment is below 0 (had those weights counted in neither, it would
    be exactly 0 here and pass): left out; the honest update of the same size is counted."""
    # Prepare: round 1 moves weights 0-29, leaves 30-39 alone
    contract = coordinators["direction"]
    first = np.zeros(SMALL_WEIGHTS, dtype=np.int64)
    first[:30] = 20
    step = guarded_first_round(isolated, contract, clients[:3], relayer, first)
    model = model_of(contract)
    noise = np.where(np.arange(SMALL_WEIGHTS) % 2 == 0, 7, -7)
    honest = model + np.where(step != 0, 7 * step, 0)
    honest[30:] += noise[30:] // 7  # a quantum on each weight the step left alone
    # Execute
    noisy = accepted(
        contract, submit(isolated, contract, clients[0], model + noise, round_number=2)
    )
    trained = accepted(contract, submit(isolated, contract, clients[1], honest, round_number=2))
    # Assert
    along, against = directional_l1(model, model + noise, step)
    assert (along, against) == (105, 175)
    visible = against - 70  # the moves the step had a direction for
    assert along == visible  # alignment 0 on what the old guard saw
    assert [(e["along"], e["against"], e["counted"], e["reward"]) for e in noisy] == [
        (105, 175, False, 0)
    ]
    assert distance(model, honest, "l1") == 220
    assert [(e["along"], e["against"], e["counted"]) for e in trained] == [(210, 10, True)]


@pytest.mark.parametrize("share_bps", [0, 5_000])
def test_sample_count_inflater_weighs_no_more_than_the_cap(
    isolated: Chain,
    deploy_coordinator: Any,
    clients: list[str],
    relayer: str,
    share_bps: int,
) -> None:
    """An update declaring 65,535 samples beside two of 100: without a cap the model is within a
    quantum of it; with ``maxShareBps`` 5,000 it weighs exactly as much as the other two
    together (the cap, 200)."""
    # Prepare
    contract = deploy_coordinator(
        aggregation="sample_weighted",
        max_sample_count=MAX_SAMPLES,
        max_share_bps=share_bps,
        min_submissions=3,
    )
    inflater, a, b = clients[:3]
    updates = {
        inflater: np.full(SMALL_WEIGHTS, 2_000, dtype=np.int64),
        a: np.full(SMALL_WEIGHTS, -1_000, dtype=np.int64),
        b: np.full(SMALL_WEIGHTS, -1_000, dtype=np.int64),
    }
    counts = (MAX_SAMPLES, 100, 100)
    # Execute
    play(isolated, contract, relayer, updates, samples=dict(zip(updates, counts, strict=True)))
    # Assert
    model = model_of(contract)
    if share_bps == 0:
        assert model.tolist() == [1_991] * SMALL_WEIGHTS
    else:
        assert share_cap(counts, share_bps) == 200
        assert model.tolist() == [500] * SMALL_WEIGHTS
        assert (
            model.tolist()
            == integer_average(list(updates.values()), capped_weights(counts, share_bps)).tolist()
        )


def test_colluding_sybils_are_still_paid_but_walk_the_model_no_further_than_the_bounds(
    isolated: Chain, deploy_coordinator: Any, clients: list[str], relayer: str
) -> None:
    """Three Sybils push one fixed direction at an honest update's size beside two honest clients,
    every round. The distance rules cannot tell them from training: they are counted and paid
    (the same tier as the honest clients under ``current``). ``maxStep`` 6 and ``maxDrift`` 10
    over windows of 2 rounds hold their walk: no weight moves more than 6 a round or 10 from
    the window's checkpoint."""
    # Prepare
    contract = deploy_coordinator(
        target_submissions=5,
        min_submissions=5,
        max_step=6,
        max_drift=10,
        drift_window=2,
    )
    sybils, honest = clients[:3], clients[3:5]
    push = np.where(np.arange(SMALL_WEIGHTS) < 4, 40, -4)  # L1 160 + 144 = 304
    checkpoint = np.zeros(SMALL_WEIGHTS, dtype=np.int64)
    # Execute
    for round_number in (1, 2, 3, 4):
        model = model_of(contract)
        updates = {s: model + push for s in sybils}
        updates |= {
            honest[0]: model + np.where(np.arange(SMALL_WEIGHTS) % 2 == 0, 8, -7),
            honest[1]: model + np.where(np.arange(SMALL_WEIGHTS) % 2 == 0, -7, 8),
        }
        submissions, closes = play(isolated, contract, relayer, updates, round_number=round_number)
        expected, held = clamp_step(
            integer_average(list(updates.values())), model, checkpoint, max_step=6, max_drift=10
        )
        new = model_of(contract)
        # Assert: paid like training, bounded in what they move
        assert [e["counted"] for e in submissions] == [True] * 5
        assert [e["tier"] for e in submissions] == [0] * 5
        assert [e["reward"] for e in submissions] == [300] * 5
        assert new.tolist() == expected.tolist()
        assert clamped_of(contract, closes) == held
        assert int(np.abs(new - model).max()) <= 6
        assert int(np.abs(new - checkpoint).max()) <= 10
        if round_number % 2 == 0:
            checkpoint = new
    assert model_of(contract)[:4].tolist() == [20, 20, 20, 20]  # 6, 10 | 16, 20: 10 a window


def commit_digest(
    chain: Chain, contract: Contract, client: str, values: np.ndarray, round_number: int
) -> bytes:
    """The commitment of ``client`` to ``values`` (sample count 1, a salt of its own)."""
    return commitment(
        chain_id=chain.chain_id(),
        contract_address=str(contract.address),
        round_number=round_number,
        client=client,
        sample_count=1,
        salt=client_salt(client),
        vector_hash=vector_hash(pack(values), int(contract.functions.wordsPerSegment().call())),
    )


def client_salt(client: str) -> bytes:
    """A salt per client."""
    return bytes.fromhex(client[2:]).rjust(32, b"\x05")


def commit_reveal_round(
    chain: Chain,
    contract: Contract,
    closer: str,
    updates: Mapping[str, np.ndarray],
    round_number: int,
) -> tuple[list[dict[str, Any]], list[TxReceipt]]:
    """Every client commits (with the bond), then reveals; the round is closed. The reveals'
    ``SubmissionAccepted`` and the close's receipts."""
    for client, values in updates.items():
        digest = commit_digest(chain, contract, client, values, round_number)
        send(chain, contract.functions.commit(round_number, digest), client, value=BOND)
    receipts = []
    per_segment = int(contract.functions.wordsPerSegment().call())
    for client, values in updates.items():
        for call in reveal_calls(
            contract,
            client,
            round_number=round_number,
            sample_count=1,
            words=pack(values),
            words_per_segment=per_segment,
            salt=client_salt(client),
        ):
            receipts.append(send(chain, call.function, call.sender))
    closes = close_round(chain, contract, closer, updates, round_number=round_number)
    return accepted(contract, receipts), closes


def test_commit_reveal_copycat_of_last_rounds_update_is_paid_under_current_and_less_under_aggregate(
    isolated: Chain, deploy_coordinator: Any, clients: list[str], relayer: str
) -> None:
    """A copycat in commit-reveal mode can copy only an update revealed in an earlier round. Here
    the federation moves on by +100 a round: under ``current`` the copy lies close to the model it
    is sent against (it *is* where the model went) and is paid the top tier, more than the four
    honest clients; under ``aggregate`` it lies a step behind the new model and is paid less than
    every honest client."""
    outcome = {}
    for reference in ("current", "aggregate"):
        # Prepare: round 1, four honest clients around +100, the copycat has nothing to copy
        contract = deploy_coordinator(
            mode="commit_reveal",
            reveal_duration=300,
            commit_bond=BOND,
            target_submissions=5,
            min_submissions=5,
            reward_reference=reference,
        )
        honest, copycat = clients[:4], clients[4]
        jitter = np.where(np.arange(SMALL_WEIGHTS) % 2 == 0, 3, -3)
        signs = (1, -1, 1, -1)
        first = {c: 100 + s * jitter for c, s in zip(honest, signs, strict=True)}
        commit_reveal_round(
            isolated, contract, relayer, {**first, copycat: np.full(SMALL_WEIGHTS, 100)}, 1
        )
        model = model_of(contract)
        # Execute: round 2, the honest clients go on, the copycat resends a round-1 reveal
        second = {c: model + 100 + s * jitter for c, s in zip(honest, signs, strict=True)}
        second[copycat] = first[honest[0]]
        reveals, closes = commit_reveal_round(isolated, contract, relayer, second, 2)
        new = model_of(contract)
        if reference == "current":
            earned = [e["reward"] for e in reveals]
            expected = [paid(second[c], model)[1] for c in second]
        else:
            rewards = settled(contract, closes)
            earned = [rewards[c]["reward"] for c in second]
            expected = [paid(second[c], new)[1] for c in second]
        assert earned == expected
        outcome[reference] = earned
    # Assert: current pays the copy more than training, aggregate less
    assert outcome["current"] == [200, 200, 200, 200, 300]  # 4,000 from the model; the copy 120
    assert outcome["aggregate"] == [300, 300, 300, 300, 200]  # 800 from the new one; the copy 3,200


def test_commit_reveal_copycat_cannot_see_the_rounds_own_updates_before_it_commits(
    isolated: Chain, deploy_coordinator: Any, clients: list[str]
) -> None:
    """While commits are open no reveal is possible, so the only updates in the clear are those
    of earlier rounds (the copycat's material)."""
    # Prepare
    contract = deploy_coordinator(
        mode="commit_reveal", reveal_duration=300, commit_bond=BOND, min_submissions=3
    )
    update = np.full(SMALL_WEIGHTS, 50, dtype=np.int64)
    digest = commit_digest(isolated, contract, clients[0], update, 1)
    send(isolated, contract.functions.commit(1, digest), clients[0], value=BOND)
    # Execute / Assert: the reveal is refused in the Commit phase
    with reverts("CoordinatorWrongPhase", phase=2):
        send(
            isolated,
            contract.functions.reveal(1, 1, 0, pack(update), client_salt(clients[0])),
            clients[0],
        )


# ---------------------------------------------------------------- the remaining holes


def test_update_moving_only_weights_the_last_step_left_alone_is_left_out(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    """The seed's guard saw ``along = against = 0`` for an update that changes only weights the
    last step left alone, and passed it under every ``minAlignment``. Those moves now count as
    against: alignment -1, left out, unpaid; one quantum along on a moved weight beside 1 of
    them makes it exactly 0 and it is counted."""
    # Prepare: round 1 moves weights 0-19, leaves 20-39 alone
    contract = coordinators["direction"]
    first = np.zeros(SMALL_WEIGHTS, dtype=np.int64)
    first[:20] = 10
    step = guarded_first_round(isolated, contract, clients[:3], relayer, first)
    model = model_of(contract)
    hidden = model.copy()
    hidden[20:] += 50  # a push only where the guard has no direction
    balanced = model.copy()
    balanced[0] += 1
    balanced[20] += 1
    earned = credit_of(contract, clients[0])  # its round-1 reward
    # Execute
    pushed = accepted(contract, submit(isolated, contract, clients[0], hidden, round_number=2))
    fair = accepted(contract, submit(isolated, contract, clients[1], balanced, round_number=2))
    # Assert
    assert [(e["along"], e["against"], e["counted"], e["reward"]) for e in pushed] == [
        (0, 1_000, False, 0)
    ]
    assert [(e["along"], e["against"], e["counted"]) for e in fair] == [(1, 1, True)]
    assert directional_l1(model, hidden, step) == (0, 1_000)
    assert credit_of(contract, clients[0]) == earned


def test_sample_count_inflater_over_three_rounds_wins_every_reward_only_without_the_cap(
    isolated: Chain, deploy_coordinator: Any, clients: list[str], relayer: str
) -> None:
    """The issue's inflater: 65,535 samples against two honest clients declaring 100, three
    rounds, paid by the aggregate reference. Without a cap the new model lies within one
    quantum a weight of its vector every round and it alone takes the top tier (the honest
    clients: a lower one); with ``maxShareBps`` 5,000 it weighs what the other two weigh together
    and is paid no more than either of them."""
    earned: dict[int, list[list[int]]] = {}
    for share_bps in (0, 5_000):
        # Prepare
        contract = deploy_coordinator(
            aggregation="sample_weighted",
            max_sample_count=MAX_SAMPLES,
            max_share_bps=share_bps,
            min_submissions=3,
            reward_reference="aggregate",
        )
        inflater, a, b = clients[:3]
        counts = dict(zip((inflater, a, b), (MAX_SAMPLES, 100, 100), strict=True))
        earned[share_bps] = []
        for round_number in (1, 2, 3):
            model = model_of(contract)
            updates = {
                inflater: model + 60,
                a: model + ramp(-40, 40),
                b: model + ramp(40, -40) - 20,
            }
            # Execute
            _, closes = play(
                isolated, contract, relayer, updates, round_number=round_number, samples=counts
            )
            new = model_of(contract)
            rewards = settled(contract, closes)
            earned[share_bps].append([rewards[c]["reward"] for c in (inflater, a, b)])
            # Assert: the model is the capped average, each paid as the reference pays
            weights = capped_weights(list(counts.values()), share_bps)
            assert new.tolist() == integer_average(list(updates.values()), weights).tolist()
            assert [rewards[c]["reward"] for c in updates] == [
                paid(u, new)[1] for u in updates.values()
            ]
            if share_bps == 0:
                assert int(np.abs(new - updates[inflater]).max()) <= 1
    # Assert: uncapped, the inflater is paid the top tier and more than each honest client
    assert all(r[0] == REWARDS[0] and r[0] > max(r[1:]) for r in earned[0])
    # Assert: capped, never more than an honest client
    assert all(r[0] <= min(r[1:]) for r in earned[5_000])


# ---------------------------------------------------------------- the benchmark's pure functions

FMT = FixedPointFormat(scale=1_024, max_abs=3_000)


def crafted(strategy: incentives.CraftedUpdate, models: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The quantized updates ``strategy`` sends against ``models``, round by round."""
    out = []
    for round_number, model in enumerate(models, start=1):
        fitted = strategy.fit(dequantize(model, FMT), round_number=round_number)
        out.append(quantize(fitted.weights, FMT).values)
    return out


@pytest.mark.parametrize("guard", [7, 15, 23, 40])
def test_bench_free_rider_moves_exactly_the_guard_along_the_last_step(guard: int) -> None:
    """Round 2: exactly ``guard`` quanta, every one along the step (alignment +1), the largest
    moves first and round after round over the moved weights when the guard exceeds them;
    round 1 (no step): ``guard`` quanta on the first weights."""
    # Prepare: the step moved weights 0-9 up by 5 and 10-14 down by 3
    first = ramp(-100, 100)
    second = first.copy()
    second[:10] += 5
    second[10:15] -= 3
    rider = incentives.FreeRider(guard=guard, fmt=FMT, num_weights=SMALL_WEIGHTS, sample_count=1)
    # Execute
    round1, round2 = crafted(rider, [first, second])
    # Assert
    step = step_signs(first, second)
    assert distance(first, round1, "l1") == guard
    assert distance(second, round2, "l1") == guard
    assert directional_l1(second, round2, step) == (guard, 0)
    moved = np.flatnonzero(round2 != second)
    if guard <= 10:
        assert moved.tolist() == list(range(guard))  # the moves of 5 before those of 3
    else:
        assert set(moved.tolist()) == set(range(15))


def test_bench_stale_and_copycat_send_what_they_could_have_seen() -> None:
    """The stale resubmitter sends the previous round's model (round 1: the current one); the
    copycat the best-paid update revealed in the previous round (the first of equals), and the
    current model when nothing was revealed."""
    # Prepare
    models = [ramp(0, 39), ramp(10, 49), ramp(20, 59)]
    board = incentives.PublicBoard()
    board.revealed[1] = [(5, ramp(1, 2)), (9, ramp(3, 4)), (9, ramp(5, 6))]
    board.revealed[2] = []
    stale = incentives.StaleModel(fmt=FMT, num_weights=SMALL_WEIGHTS, sample_count=1)
    copycat = incentives.Copycat(board=board, fmt=FMT, num_weights=SMALL_WEIGHTS, sample_count=1)
    # Execute
    stale_sent = crafted(stale, models)
    copied = crafted(copycat, models)
    # Assert
    assert [v.tolist() for v in stale_sent] == [m.tolist() for m in (models[0], *models[:2])]
    assert [v.tolist() for v in copied] == [
        models[0].tolist(),
        ramp(3, 4).tolist(),
        models[2].tolist(),
    ]


@pytest.mark.parametrize("size", [1, 39, 40, 41, 1_234])
def test_bench_noise_and_sybils_have_exactly_the_honest_size(size: int) -> None:
    """Noise and the Sybils' push lie exactly ``size(round)`` from the model (L1); the Sybils all
    send the same move, along their fixed direction (class 0 up, the others down)."""
    # Prepare
    model = np.zeros(SMALL_WEIGHTS, dtype=np.int64)
    direction = incentives.push_direction(SMALL_WEIGHTS, 4)  # 4 classes x 9 features + 4 biases
    noise = incentives.NoiseSubmitter(
        size=lambda _: size, seed=3, fmt=FMT, num_weights=SMALL_WEIGHTS, sample_count=1
    )
    sybils = [
        incentives.Sybil(
            direction=direction,
            size=lambda _: size,
            fmt=FMT,
            num_weights=SMALL_WEIGHTS,
            sample_count=1,
        )
        for _ in range(3)
    ]
    # Execute
    [noisy] = crafted(noise, [model])
    pushes = [crafted(s, [model])[0] for s in sybils]
    # Assert
    assert distance(model, noisy, "l1") == size
    assert all(distance(model, p, "l1") == size for p in pushes)
    assert pushes[0].tolist() == pushes[1].tolist() == pushes[2].tolist()
    assert direction[:9].tolist() == [1.0] * 9
    assert direction[36] == 1.0
    assert np.all(direction[9:36] < 0)
    assert np.all(direction[37:] < 0)
    assert np.all(pushes[0] * np.sign(direction) >= 0)  # never against the direction


def member(client: int, role: str, reward: int, *, counted: bool = True) -> incentives.MemberRound:
    """An account's round with a reward (distances irrelevant to the bar)."""
    return incentives.MemberRound(client, role, 100, counted, 0, reward, 10, 5, 1, 0)


def record(
    strategy: str,
    rewards: Sequence[Sequence[int]],
    roles: Sequence[str],
    *,
    accuracy: float = 0.9,
    reference: str = "aggregate",
    bounds: str = "on",
) -> incentives.RunRecord:
    """A run of ``len(roles)`` accounts with ``rewards[round][client]``."""
    rounds = tuple(
        incentives.RoundRecord(
            i + 1,
            accuracy,
            tuple(member(c, roles[c], r) for c, r in enumerate(row)),
            0,
        )
        for i, row in enumerate(rewards)
    )
    return incentives.RunRecord("iid", strategy, reference, bounds, "plain", rounds, (), 1.0)


def test_bench_relative_reward_of_crafted_updates_is_against_the_honest_clients_of_the_run() -> (
    None
):
    """A non-training strategy is compared with the mean honest reward of its own run and round;
    0/0 is ``None``, a reward when the honest clients earned nothing is infinite."""
    # Prepare
    clean = record("honest", [[9, 9, 9]] * 4, ["honest"] * 3)
    rider = record(
        "free_rider",
        [[5, 4, 6], [0, 0, 0], [3, 0, 0], [6, 6, 6]],
        ["free_rider", "honest", "honest"],
    )
    # Execute
    relative = incentives.relative_rewards(rider, "free_rider", clean)
    summary = incentives.attack_summary(rider, clean)
    # Assert
    assert relative == [1.0, None, math.inf, 1.0]
    assert summary["relative_reward_by_round"] == [1.0, None, "inf", 1.0]
    assert summary["relative_reward_total"] == round(14 / 11, 3)
    assert summary["reward_bar"] is False


def test_bench_relative_reward_of_the_inflater_is_against_its_own_clean_run() -> None:
    """The inflater trains: its reward is compared with what the same account earned in the clean
    run (its true count declared), not with the other clients of its own run."""
    # Prepare
    clean = record("honest", [[4, 8, 8], [6, 8, 8]], ["honest"] * 3)
    inflater = record("inflater", [[4, 1, 1], [6, 1, 1]], ["inflater", "honest", "honest"])
    greedy = record("inflater", [[4, 1, 1], [7, 1, 1]], ["inflater", "honest", "honest"])
    # Execute
    same = incentives.attack_summary(inflater, clean)
    more = incentives.attack_summary(greedy, clean)
    # Assert: exactly what training earned passes ("not more"), one wei more does not
    assert (same["relative_reward_by_round"], same["reward_bar"]) == ([1.0, 1.0], True)
    assert (more["worst_relative_reward_after_round_1"], more["reward_bar"]) == (
        round(7 / 6, 3),
        False,
    )


@pytest.mark.parametrize(
    ("total", "later", "trains", "expected"),
    [
        (0.999, [0.999, 0.0], False, True),
        (1.0, [0.5], False, False),  # exactly honest: not strictly less
        (0.5, [0.5, 1.0], False, False),  # one round after the first at 1
        (0.5, [None], False, False),  # 0/0: nobody paid is not "less"
        (math.inf, [0.5], False, False),
        (1.0, [1.0, None], True, True),  # a strategy that trains: not more
        (1.001, [1.0], True, False),
    ],
)
def test_bench_reward_bar_at_its_boundary(
    total: float, later: list[float | None], trains: bool, expected: bool
) -> None:
    """Strictly below honest training for a crafted update, not above for one that trains, in
    total and in every round after the first."""
    assert incentives.meets_reward_bar(total, later, trains=trains) is expected


@pytest.mark.parametrize(
    ("final", "expected"),
    [(0.891, True), (0.911, True), (0.8909, False), (0.9111, False)],
)
def test_bench_accuracy_bar_is_inclusive_at_one_point(final: float, expected: bool) -> None:
    """Within 1 pp of the clean run's 0.901, both ways, exactly 1 pp included (no float noise)."""
    # Prepare
    clean = record("honest", [[1, 1, 1]], ["honest"] * 3, accuracy=0.901)
    stale = record("stale", [[0, 1, 1]], ["stale", "honest", "honest"], accuracy=final)
    # Execute
    summary = incentives.attack_summary(stale, clean)
    # Assert
    assert summary["accuracy_bar"] is expected
    assert abs(summary["accuracy_gap_pp"] - 100 * (final - 0.901)) < 1e-6


def test_bench_last_three_rounds_gap_averages_rounds_8_to_10_beside_the_final_one() -> None:
    """The mean of the last three rounds' accuracy less the clean run's, in pp: a bad final
    round shows in the bar's figure, a lasting cost in this one."""
    # Prepare: the attacked run is 2 pp down in rounds 1-9 and level in round 10
    clean = record("honest", [[1, 1]] * 10, ["honest"] * 2, accuracy=0.88)
    rounds = record("copycat", [[0, 1]] * 10, ["copycat", "honest"], accuracy=0.86).rounds
    copycat = replace(
        record("copycat", [], ["copycat", "honest"]),
        rounds=(*rounds[:9], replace(rounds[9], accuracy=0.88)),
    )
    # Execute
    summary = incentives.attack_summary(copycat, clean)
    # Assert
    assert summary["accuracy_gap_pp"] == 0.0
    assert summary["accuracy_bar"]
    assert summary["last_three_gap_pp"] == pytest.approx(-1.33, abs=0.005)  # (-2 - 2 + 0) / 3


def test_bench_tier_ladder_separates_distances_a_ratio_apart() -> None:
    """Thresholds rise by the ratio from ``low * ratio`` until one reaches ``high``, strictly."""
    ladder = incentives.tier_ladder(100, 200, 1.15)
    assert ladder == (115, 133, 153, 175, 202)
    assert incentives.tier_ladder(1, 3, 1.01) == (2, 3)  # at least one apart


def test_bench_calibration_leaves_every_honest_update_paid_and_bounds_every_honest_step() -> None:
    """From a pilot's honest distances and models: the guard is ``GUARD_FRACTION`` of the
    smallest honest distance after round 1 (from the current or the new model), the ladder
    reaches ``TIERS_ABOVE`` x the farthest from the new model, ``maxCountedDistance``
    ``BOUND_MARGIN`` x the farthest honest distance (round 1 included), and the bounds are the
    largest step and window drift after round 1."""
    # Prepare: 3 rounds of 2 honest clients, the models of 4 weights
    rows = [[(900, 400), (1_000, 500)], [(300, 200), (250, 260)], [(280, 150), (270, 300)]]
    rounds = tuple(
        incentives.RoundRecord(
            i + 1,
            0.9,
            tuple(
                incentives.MemberRound(c, "honest", 100, True, 0, 1, cur, new, 0, 0)
                for c, (cur, new) in enumerate(row)
            ),
            0,
        )
        for i, row in enumerate(rows)
    )
    models = ((0, 0, 0, 0), (50, -50, 20, 0), (60, -58, 20, 3), (63, -60, 26, 3))
    pilot = incentives.RunRecord("iid", "honest", "aggregate", "off", "plain", rounds, models, 1.0)
    # Execute
    settings, evidence = incentives.calibrate(pilot, 3)
    # Assert
    assert evidence["smallest_honest_distance_after_round_1"] == 150
    assert settings.min_reward_distance == int(incentives.GUARD_FRACTION * 150)
    assert settings.tier_thresholds[-1] >= incentives.TIERS_ABOVE * 300
    assert settings.tier_rewards[0] == incentives.TOP_REWARD_WEI
    assert list(settings.tier_rewards) == sorted(settings.tier_rewards, reverse=True)
    assert settings.max_counted_distance == math.ceil(incentives.BOUND_MARGIN * 1_000)
    assert (settings.max_step, evidence["largest_step_after_round_1"]) == (10, 10)
    assert settings.max_share_bps == 10_000 // incentives.CLIENTS
    for row in rows[1:]:
        for cur, new in row:
            assert settings.min_reward_distance <= min(cur, new)
    off = settings.with_bounds(False)
    assert (off.max_share_bps, off.max_step, off.max_drift, off.drift_window) == (0, 0, 0, 0)
    assert settings.with_bounds(True) == settings == settings.under("on")
    assert settings.under("off") == off
    assert settings.under("trimmed") == replace(settings, trim_each=incentives.TRIM)
    # The progress ladder spans the honest shortfalls after round 1 (the steps: 21 and 11 quanta)
    shortfalls = [
        shortfall_bps(new, cur, step)
        for row, step in ((rows[1], 21), (rows[2], 11))
        for cur, new in row
    ]
    assert evidence["honest_shortfall_bps_after_round_1"] == [min(shortfalls), max(shortfalls)]
    ladder = settings.progress_thresholds
    assert list(ladder) == sorted(set(ladder))
    assert ladder[0] <= max(1, min(shortfalls)) * incentives.TIER_RATIO + 1
    assert settings.progress_thresholds[-1] < incentives.STOOD_STILL_BPS
    # It reaches TIERS_ABOVE x the largest, or its last rung below an update that stood still
    assert settings.progress_thresholds[-1] * incentives.TIER_RATIO >= min(
        incentives.STOOD_STILL_BPS - 1, incentives.TIERS_ABOVE * max(shortfalls)
    )
    assert len(settings.progress_rewards) == len(settings.progress_thresholds)
    assert settings.progress_rewards[0] == incentives.TOP_REWARD_WEI


def test_bench_report_rebuilds_the_verdict_from_its_runs(tmp_path: Path) -> None:
    """``write`` recomputes every attack summary from the runs in the report and names what
    fails the bar under the recommended settings and under the seed's rule; ``--render`` gives
    the same files from the JSON alone."""
    # Prepare: under the recommended settings the free rider earns less, under current/off as much
    runs = []
    for (reference, bounds), rider in ((incentives.RECOMMENDED, 0), (incentives.SEED, 9)):
        clean = record(
            "honest", [[9, 9, 9]] * 3, ["honest"] * 3, reference=reference, bounds=bounds
        )
        attacked = record(
            "free_rider",
            [[9, 9, 9], [rider, 9, 9], [rider, 9, 9]],
            ["free_rider", "honest", "honest"],
            reference=reference,
            bounds=bounds,
        )
        runs += [incentives._run_json(clean), incentives._run_json(attacked)]
    part: dict[str, Any] = {
        "partition": "iid",
        "alpha": None,
        "num_weights": SMALL_WEIGHTS,
        "settings": asdict(incentives.pilot_settings()),
        "settings_per_weight": incentives.pilot_settings().per_weight(SMALL_WEIGHTS),
        "calibration": {"smallest_honest_distance_after_round_1": 1},
        "pilot_distances_per_weight": [],
        "honest_alignment": {"by_round": []},
        "clean": {},
        "attacks": [],
        "runs": runs,
    }
    report: dict[str, Any] = {
        "command": incentives.COMMAND,
        "machine": {"cpus": 2, "load_average_at_start": [0.0]},
        "grid": {"rounds": 3},
        "seconds": 60.0,
        "partitions": [part],
    }
    # Execute
    text = incentives.write(report, tmp_path)
    written = json.loads((tmp_path / "incentives.json").read_text(encoding="utf-8"))
    assert incentives.main(["--render", "--out", str(tmp_path)]) == 0
    # Assert
    verdict = written["verdict"]
    assert (verdict["recommended"]["bar_met"], verdict["recommended"]["failing"]) == (True, [])
    assert (verdict["seed"]["bar_met"], verdict["seed"]["failing"]) == (False, ["iid/free_rider"])
    assert [a["relative_reward_total"] for a in written["partitions"][0]["attacks"]] == [
        round(9 / 27, 3),
        1.0,
    ]
    assert "reference `progress`, bounds trimmed: **met**" in text
    assert "reference `current`, bounds off: **NOT met** (iid/free_rider)" in text
    assert (tmp_path / "incentives.md").read_text(encoding="utf-8") == text
