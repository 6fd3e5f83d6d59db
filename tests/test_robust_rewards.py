"""The coordinate-wise trimmed mean (``trimEach``) and the reward reference ``Progress``, at their
boundaries, on small vectors.

Trimmed mean: per weight, ``cut = min(trimEach, (n - 1) // 2)`` of the ``n`` counted updates'
largest and smallest values are left out and the rest averaged, rounded like the mean (ties away
from zero). The model a close writes is :func:`fl_client.aggregation.trimmed_average` exactly:
random values over the full range (``maxAbsWeight`` 3,000 and 16,383) with a full round, the cut
clamped when a round closes short (``n`` 4 and 3 under ``trimEach`` 2), no cut at all (``n`` 2:
the plain mean), half values (two and four values kept, negative and positive, at the range's
ends), three one-word segments, relayed updates with one left out after the close window; one
update at ``+maxAbsWeight`` everywhere does not move the model out of the others' range.

Progress: paid by the close by the shortfall :func:`fl_client.aggregation.shortfall_bps` (the
``distance`` of ``RewardSettled``), tiers read on it in basis points, inclusive: exactly on a
threshold and one basis point above it; an update that stood still (or went the other way) scores
20,000 under L1, every update 10,000 when the model did not move, an update the other way more
than 20,000 under squared L2; the free-rider guard holds twice: an update closer than
``minRewardDistance`` to the current model (flagged) or to the new one is scored and paid nothing;
updates beyond ``maxCountedDistance`` are neither; the step is summed over segments (a relayed
update measured in the close among them) and starts from 0 again in the next round.

Deployment: the constructor's refusals (``CoordinatorInvalidParameter("trimEach", v)``) and the
values it takes at the boundary, the views, and the configuration's refusals (``ConfigError``)
before anything is sent: among them a ``trimEach`` whose double would overflow, and one above
the 255 the contract holds.

Every coordinator has 40 weights (``small_params``) and starts from a zero model; tiers under
Progress are ``THRESHOLDS_BPS`` (2,500, 5,000, 10,000) basis points, with the guard
``GUARDED_BPS`` (2,500, 10,000, 15,000), paying ``(300, 200, 100)`` wei; expected values come from
the references of :mod:`fl_client.aggregation`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from web3.contract import Contract
from web3.types import TxReceipt

from fl_client.aggregation import (
    NO_TIER,
    distance,
    integer_average,
    reward_tier,
    shortfall_bps,
    trim_cut,
    trimmed_average,
)
from fl_client.chain import Chain, CoordinatorView, DeployParams, deploy
from fl_client.config import CONFIG_PATH, ContractConfig, RewardConfig, load_config
from fl_client.errors import ConfigError
from fl_client.limits import CloseWork, plan_words_per_segment
from fl_client.simulation import run_simulation
from tests.conftest import SMALL_WEIGHTS, events, relay, signed, small_params, submit
from tests.pipeline_helpers import (
    close_round,
    constructor_outcome,
    deadline_of,
    module_deployments,
    reverts,
    window_end,
)
from tests.secagg_helpers import secure_params
from tests.test_incentives import accepted, credit_of, model_of, settled

THRESHOLDS_BPS = (2_500, 5_000, 10_000)
GUARDED_BPS = (2_500, 10_000, 15_000)  # beyond 10,000: a flagged update could be in a tier
GUARD = 400
REWARDS = (300, 200, 100)
WIDE = 2**14 - 1  # the largest maxAbsWeight
PROGRESS = {"reward_reference": "progress", "tier_thresholds": THRESHOLDS_BPS}
FULL3 = {"target_submissions": 3, "min_submissions": 3}
CONFIGS: dict[str, dict[str, Any]] = {
    "trim1": {"trim_each": 1, "target_submissions": 5, "min_submissions": 2},
    "trim2": {"trim_each": 2, "target_submissions": 5, "min_submissions": 2},
    "trim1_wide": {
        "trim_each": 1,
        "target_submissions": 6,
        "min_submissions": 6,
        "max_abs_weight": WIDE,
    },
    "trim2_segments": {
        "trim_each": 2,
        "target_submissions": 6,
        "min_submissions": 2,
        "words_per_segment": 1,
    },
    "trim_progress": {**PROGRESS, "trim_each": 1, "target_submissions": 5, "min_submissions": 5},
    "progress": {**PROGRESS, **FULL3},
    "progress_guarded": {
        **PROGRESS,
        **FULL3,
        "tier_thresholds": GUARDED_BPS,
        "min_reward_distance": GUARD,
        "max_counted_distance": 5_000,
    },
    "progress_l2": {**PROGRESS, **FULL3, "distance": "squared_l2"},
    "progress_segments": {**PROGRESS, **FULL3, "words_per_segment": 1},
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


def play(
    chain: Chain,
    contract: Contract,
    closer: str,
    updates: Mapping[str, np.ndarray],
    *,
    round_number: int = 1,
) -> tuple[list[dict[str, Any]], list[TxReceipt]]:
    """Submit ``updates`` directly (in order) and close the round, at its deadline when they do
    not fill it: the submissions' ``SubmissionAccepted`` and the close's receipts."""
    receipts = []
    for client, values in updates.items():
        receipts += submit(chain, contract, client, values, round_number=round_number)
    if len(updates) < int(contract.functions.targetSubmissions().call()):
        chain.advance_time(max(0, deadline_of(contract) - chain.timestamp()))
    closes = close_round(chain, contract, closer, updates, round_number=round_number)
    return accepted(contract, receipts), closes


def full_range(rng: np.random.Generator, count: int, bound: int) -> list[np.ndarray]:
    """``count`` random vectors over ``[-bound, bound]``, each with both ends somewhere."""
    vectors = []
    for _ in range(count):
        values = rng.integers(-bound, bound + 1, size=SMALL_WEIGHTS, dtype=np.int64)
        high, low = rng.choice(SMALL_WEIGHTS, size=2, replace=False)
        values[high], values[low] = bound, -bound
        vectors.append(values)
    return vectors


def shuffled_columns(rng: np.random.Generator, columns: Sequence[Sequence[int]]) -> np.ndarray:
    """Vectors (rows) whose weight ``i`` takes the values of ``columns[i]``, which update holds
    which at random (so the ends are not always the same updates'); the weights after the columns
    random within 100."""
    count = len(columns[0])
    stack = rng.integers(-100, 101, size=(count, SMALL_WEIGHTS), dtype=np.int64)
    for index, column in enumerate(columns):
        stack[:, index] = rng.permutation(np.asarray(column, dtype=np.int64))
    return stack


def progress_scores(
    old: np.ndarray, new: np.ndarray, updates: Mapping[str, np.ndarray], metric: str = "l1"
) -> dict[str, int]:
    """The reference shortfall of each update (``shortfall_bps``)."""
    step = distance(old, new, metric)
    return {
        client: shortfall_bps(distance(new, u, metric), distance(old, u, metric), step)
        for client, u in updates.items()
    }


def expected_settlement(
    old: np.ndarray,
    new: np.ndarray,
    updates: Mapping[str, np.ndarray],
    *,
    metric: str = "l1",
    guard: int = 0,
    thresholds: Sequence[int] = THRESHOLDS_BPS,
) -> dict[str, tuple[int, int, int]]:
    """(score, tier, reward) of each update under Progress: its shortfall, and the tier read on
    it unless the update lies closer than ``guard`` to the old model (flagged) or to the new one
    (nothing then)."""
    out = {}
    for client, score in progress_scores(old, new, updates, metric).items():
        update = updates[client]
        if min(distance(old, update, metric), distance(new, update, metric)) < guard:
            out[client] = (score, NO_TIER, 0)
        else:
            decision = reward_tier(score, thresholds, REWARDS)
            out[client] = (score, decision.tier, decision.amount_wei)
    return out


def settlement(rewards: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[int, int, int]]:
    """(distance, tier, reward) of each ``RewardSettled``."""
    return {c: (e["distance"], e["tier"], e["reward"]) for c, e in rewards.items()}


def ramp(low: int, high: int) -> np.ndarray:
    """40 weights from ``low`` to ``high`` (integers, evenly spaced)."""
    return np.linspace(low, high, SMALL_WEIGHTS).round().astype(np.int64)


def full(value: int) -> np.ndarray:
    """40 weights of ``value``."""
    return np.full(SMALL_WEIGHTS, value, dtype=np.int64)


ZERO = full(0)


# ---------------------------------------------------------------- the trimmed mean


@pytest.mark.parametrize(
    ("name", "bound", "cut"),
    [("trim1", 3_000, 1), ("trim2", 3_000, 2), ("trim1_wide", WIDE, 1)],
)
def test_trimmed_mean_of_a_full_round_is_the_reference_over_the_full_range(
    isolated: Chain,
    coordinators: dict[str, Contract],
    clients: list[str],
    relayer: str,
    name: str,
    bound: int,
    cut: int,
) -> None:
    """A full round (``n`` = target, so ``cut`` = ``trimEach``) of random values over
    ``[-maxAbsWeight, maxAbsWeight]``, both ends in every update: the model is
    ``trimmed_average`` exactly (and not the plain mean)."""
    # Prepare
    contract = coordinators[name]
    target = int(contract.functions.targetSubmissions().call())
    vectors = full_range(np.random.default_rng(target * 10 + cut), target, bound)
    updates = dict(zip(clients, vectors, strict=False))
    # Execute
    submissions, closes = play(isolated, contract, relayer, updates)
    # Assert
    trim = int(contract.functions.trimEach().call())
    assert trim_cut(trim, target) == cut
    expected = trimmed_average(vectors, trim)
    assert [e["counted"] for e in submissions] == [True] * target
    assert [e["entries"] for r in closes for e in events(contract, "SegmentClosed", r)] == [target]
    assert model_of(contract).tolist() == expected.tolist()
    assert expected.tolist() != integer_average(vectors).tolist()


@pytest.mark.parametrize(
    ("name", "count", "cut"),
    [
        ("trim2", 4, 1),  # (4 - 1) // 2 = 1 < 2
        ("trim2", 3, 1),  # the median
        ("trim2", 2, 0),  # the plain mean
        ("trim1", 4, 1),  # two values kept
        ("trim1", 3, 1),
        ("trim1", 2, 0),
    ],
)
def test_trimmed_mean_of_a_short_round_clamps_the_cut_to_keep_a_value(
    isolated: Chain,
    coordinators: dict[str, Contract],
    clients: list[str],
    relayer: str,
    name: str,
    count: int,
    cut: int,
) -> None:
    """A round closed at its deadline with ``n`` < target: ``cut = min(trimEach, (n - 1) // 2)``
    (``trimEach`` 2 with 4 and 3 updates leaves out one at each end; 2 updates are the plain
    mean)."""
    # Prepare
    contract = coordinators[name]
    vectors = full_range(np.random.default_rng(100 + count), count, 3_000)
    updates = dict(zip(clients, vectors, strict=False))
    # Execute
    _, closes = play(isolated, contract, relayer, updates)
    # Assert
    trim = int(contract.functions.trimEach().call())
    assert trim_cut(trim, count) == cut
    ordered = np.sort(np.stack(vectors), axis=0)[cut : count - cut]
    assert trimmed_average(vectors, trim).tolist() == integer_average(list(ordered)).tolist()
    assert model_of(contract).tolist() == trimmed_average(vectors, trim).tolist()
    if cut == 0:
        assert model_of(contract).tolist() == integer_average(vectors).tolist()
    assert [e["entries"] for r in closes for e in events(contract, "SegmentClosed", r)] == [count]


def test_trimmed_mean_rounds_two_kept_half_values_away_from_zero(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    """``trimEach`` 1 with 4 updates keeps two values per weight: an odd sum is a half value,
    rounded away from zero both ways (0.5 to 1, -0.5 to -1, 2.5 to 3, -2.5 to -3), at the range's
    ends too (-3,000 and 2,999 to -1), with equal values on either end."""
    # Prepare: the first ten weights' values (which update holds which is shuffled)
    columns = [
        (-5, 0, 1, 9),  # 0.5
        (-9, -1, 0, 5),  # -0.5
        (-3_000, 2, 3, 3_000),  # 2.5
        (-3_000, -3, -2, 3_000),  # -2.5
        (-3_000, -3_000, 2_999, 3_000),  # -0.5
        (-3_000, -2_999, 3_000, 3_000),  # 0.5
        (7, 7, 7, 7),
        (-1, -1, 0, 0),  # -0.5
        (0, 1, 2, 2),  # 1.5
        (-2, -2, -1, 0),  # -1.5
    ]
    stack = shuffled_columns(np.random.default_rng(7), columns)
    vectors = list(stack)
    updates = dict(zip(clients, vectors, strict=False))
    contract = coordinators["trim1"]
    # Execute
    play(isolated, contract, relayer, updates)
    # Assert
    model = model_of(contract)
    assert model[:10].tolist() == [1, -1, 3, -3, -1, 1, 7, -1, 2, -2]
    assert model.tolist() == trimmed_average(vectors, 1).tolist()


def test_trimmed_mean_rounds_four_kept_values_at_the_ends_of_the_widest_range(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    """``trimEach`` 1 with 6 updates keeps four values per weight (``maxAbsWeight`` 16,383): sums
    of 2 and 6 mod 4 are half values, away from zero both ways; quarters round to the nearest;
    the largest lane sums (four values of 16,383 and their negatives) stay exact."""
    # Prepare
    m = WIDE
    columns = [
        (-m, 0, 0, 0, 2, m),  # 0.5
        (-m, -2, 0, 0, 0, m),  # -0.5
        (-m, 1, 1, 1, 3, m),  # 1.5
        (-m, -3, -1, -1, -1, m),  # -1.5
        (-m, -m, -m, m, m, m),  # 0
        (-m, -m, -m + 1, m, m, m),  # 0.25
        (-m, -m, -m, -m, m - 1, m),  # -8,191.75
        (-m, -m, -m, -m + 2, m, m),  # -8,191
        (-m, m - 2, m, m, m, m),  # 16,382.5
        (-m, -m, -m, -m, -m + 2, m),  # -16,382.5
    ]
    vectors = list(shuffled_columns(np.random.default_rng(11), columns))
    updates = dict(zip(clients, vectors, strict=False))
    contract = coordinators["trim1_wide"]
    # Execute
    play(isolated, contract, relayer, updates)
    # Assert
    model = model_of(contract)
    assert model[:10].tolist() == [1, -1, 2, -2, 0, 0, -8_192, -8_191, m, -m]
    assert model.tolist() == trimmed_average(vectors, 1).tolist()


@pytest.mark.parametrize(("count", "cut"), [(6, 2), (4, 1)])
def test_trimmed_mean_over_three_segments_is_the_reference(
    isolated: Chain,
    coordinators: dict[str, Contract],
    clients: list[str],
    relayer: str,
    count: int,
    cut: int,
) -> None:
    """One-word segments (16, 16 and 8 weights): each close trims its segment, ``n`` updates in
    each; the model is ``trimmed_average`` of the whole vectors (a short round: the cut
    clamped)."""
    # Prepare
    contract = coordinators["trim2_segments"]
    vectors = full_range(np.random.default_rng(200 + count), count, 3_000)
    updates = dict(zip(clients, vectors, strict=False))
    # Execute
    _, closes = play(isolated, contract, relayer, updates)
    # Assert
    closed = [e for r in closes for e in events(contract, "SegmentClosed", r)]
    assert [(e["segment"], e["entries"]) for e in closed] == [(s, count) for s in range(3)]
    assert trim_cut(2, count) == cut
    assert model_of(contract).tolist() == trimmed_average(vectors, 2).tolist()


def test_trimmed_mean_takes_relayed_updates_and_counts_only_those_supplied(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    """Two direct and three relayed updates under ``trimEach`` 2; the relayer never supplies the
    last one, left out after the close window: the close trims the four it holds, so the cut is
    clamped to 1 (not the 2 of five entries); the lost update is settled uncounted."""
    # Prepare
    contract = coordinators["trim2"]
    rng = np.random.default_rng(5)
    a, b, r1, r2, lost = clients[:5]
    direct = {a: full_range(rng, 1, 3_000)[0], b: full_range(rng, 1, 3_000)[0]}
    carried = {r1: full_range(rng, 1, 3_000)[0], r2: full_range(rng, 1, 3_000)[0]}
    for client, values in direct.items():
        submit(isolated, contract, client, values)
    batch = [signed(isolated, contract, c, v) for c, v in carried.items()]
    batch.append(signed(isolated, contract, lost, full(-3_000)))
    relay(isolated, contract, relayer, batch)
    isolated.advance_time(window_end(contract) - isolated.timestamp())
    # Execute: entry 4 (the lost one) omitted
    closes = close_round(isolated, contract, relayer, {**direct, **carried}, omitted=(4,))
    # Assert
    vectors = [*direct.values(), *carried.values()]
    closed = [e for r in closes for e in events(contract, "SegmentClosed", r)]
    assert [(e["entries"], e["relayed"]) for e in closed] == [(4, 2)]
    assert model_of(contract).tolist() == trimmed_average(vectors, 2).tolist()
    with_lost = trimmed_average([*vectors, full(-3_000)], 2)
    assert trimmed_average(vectors, 2).tolist() != with_lost.tolist()
    relayed = {e["client"]: e["counted"] for e in accepted(contract, closes)}
    assert relayed == {r1: True, r2: True, lost: False}


def test_trimmed_mean_leaves_out_an_update_at_the_bound_everywhere(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    """Five updates, ``trimEach`` 1, one at +3,000 on every weight: it is the largest everywhere
    and left out, so every weight of the model lies within the other four's range (the plain
    mean would lie above it on every weight); under Progress its score is its shortfall from
    the trimmed model, paid by its tier like the others'."""
    # Prepare
    contract = coordinators["trim_progress"]
    rng = np.random.default_rng(9)
    honest = {c: rng.integers(-100, 101, size=SMALL_WEIGHTS, dtype=np.int64) for c in clients[:4]}
    attacker = clients[4]
    updates = {**honest, attacker: full(3_000)}
    # Execute
    _, closes = play(isolated, contract, relayer, updates)
    # Assert: the model
    model = model_of(contract)
    stack = np.stack(list(honest.values()))
    assert model.tolist() == trimmed_average(list(updates.values()), 1).tolist()
    assert np.all(model >= stack.min(axis=0))
    assert np.all(model <= stack.max(axis=0))
    assert np.all(integer_average(list(updates.values())) > stack.max(axis=0))
    # Assert: every update scored from the trimmed model
    expected = expected_settlement(ZERO, model, updates)
    assert settlement(settled(contract, closes)) == expected


# ---------------------------------------------------------------- reward reference Progress


def test_progress_reads_the_tiers_on_the_shortfall_inclusive_on_a_threshold(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    """The new model is 500 everywhere (step 20,000): an update 5,000 short of it scores exactly
    2,500 bps (tier 0), one 5,002 short 2,501 (tier 1), one beyond it on every weight 0; nothing
    is paid on submit."""
    # Prepare: a and b leave weights 0-4 at 0, b weight 5 at 499; c makes the mean 500
    contract = coordinators["progress"]
    a, b, c = clients[:3]
    at = full(500)
    at[:5] = 0
    above = at.copy()
    above[5] = 499
    updates = {a: at, b: above, c: 1_500 - at - above}
    # Execute
    submissions, closes = play(isolated, contract, relayer, updates)
    # Assert
    new = model_of(contract)
    assert new.tolist() == [500] * SMALL_WEIGHTS
    assert [(e["distance"], e["tier"], e["reward"]) for e in submissions] == [
        (17_500, NO_TIER, 0),
        (17_499, NO_TIER, 0),
        (25_001, NO_TIER, 0),
    ]
    scores = progress_scores(ZERO, new, updates)
    assert scores == {a: 2_500, b: 2_501, c: 0}
    rewards = settled(contract, closes)
    assert settlement(rewards) == {a: (2_500, 0, 300), b: (2_501, 1, 200), c: (0, 0, 300)}
    assert {e["round"] for e in rewards.values()} == {1}
    assert [credit_of(contract, x) for x in (a, b, c)] == [300, 200, 300]


@pytest.mark.parametrize("other", [0, -100], ids=["stood-still", "other-way"])
def test_progress_scores_an_update_that_stood_still_or_went_back_20000(
    isolated: Chain,
    coordinators: dict[str, Contract],
    clients: list[str],
    relayer: str,
    other: int,
) -> None:
    """Under L1 an update equal to the current model (or on its other side on every weight)
    scores 20,000 bps, beyond every tier: unpaid; those beyond the new model score 0."""
    # Prepare
    contract = coordinators["progress"]
    a, b, c = clients[:3]
    updates = {a: ramp(300, 600), b: ramp(900, 450), c: full(other)}
    # Execute
    _, closes = play(isolated, contract, relayer, updates)
    # Assert
    new = model_of(contract)
    assert new.tolist() == integer_average(list(updates.values())).tolist()
    scores = progress_scores(ZERO, new, updates)
    assert scores[c] == 20_000
    rewards = settled(contract, closes)
    assert settlement(rewards) == expected_settlement(ZERO, new, updates)
    assert (rewards[c]["tier"], rewards[c]["reward"]) == (NO_TIER, 0)


def test_progress_scores_a_flagged_free_rider_and_pays_it_nothing(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    """``minRewardDistance`` 400, tiers up to 15,000 bps: an update 399 from the current model is
    flagged; it counts in the mean and is scored (10,025 bps, tier 2's range) but paid nothing;
    one exactly 400 from both models scores exactly 10,000 and is paid tier 1."""
    # Prepare: the new model is 20 everywhere (step 800)
    contract = coordinators["progress_guarded"]
    at, rider, beyond = clients[:3]
    near = full(10)
    near[0] = 9  # L1 399 from the zero model
    far = full(40)
    far[0] = 41
    updates = {at: full(10), rider: near, beyond: far}
    # Execute
    submissions, closes = play(isolated, contract, relayer, updates)
    # Assert
    new = model_of(contract)
    assert [(e["distance"], e["counted"]) for e in submissions] == [
        (400, True),
        (399, True),
        (1_601, True),
    ]
    assert new.tolist() == [20] * SMALL_WEIGHTS  # the rider's 9 is in the mean
    assert [distance(new, u, "l1") for u in updates.values()] == [400, 401, 801]
    rewards = settled(contract, closes)
    assert settlement(rewards) == {
        at: (10_000, 1, 200),
        rider: (10_025, NO_TIER, 0),
        beyond: (0, 0, 300),
    }
    expected = expected_settlement(ZERO, new, updates, guard=GUARD, thresholds=GUARDED_BPS)
    assert settlement(rewards) == expected
    assert reward_tier(10_025, GUARDED_BPS, REWARDS).tier == 2  # what the flag takes away
    assert credit_of(contract, rider) == 0


def test_progress_pays_nothing_to_an_update_within_the_guard_of_the_new_model(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    """``minRewardDistance`` applies to the distance from the new model too (an update that
    guessed the step): 399 from it is paid nothing although its shortfall is 0, exactly 400 is
    paid tier 0; an update 1 from the current model is flagged as well."""
    # Prepare: the new model is 20 everywhere (step 800)
    contract = coordinators["progress_guarded"]
    guesser, at, rider = clients[:3]
    guessed = full(30)
    guessed[0] = 29  # 399 from the new model, 1,199 from the current one
    still = full(0)
    still[0] = 1
    updates = {guesser: guessed, at: full(30), rider: still}
    # Execute
    submissions, closes = play(isolated, contract, relayer, updates)
    # Assert
    new = model_of(contract)
    assert new.tolist() == [20] * SMALL_WEIGHTS
    assert [e["distance"] for e in submissions] == [1_199, 1_200, 1]
    assert [distance(new, u, "l1") for u in updates.values()] == [399, 400, 799]
    rewards = settled(contract, closes)
    assert settlement(rewards) == {
        guesser: (0, NO_TIER, 0),
        at: (0, 0, 300),
        rider: (19_975, NO_TIER, 0),
    }
    expected = expected_settlement(ZERO, new, updates, guard=GUARD, thresholds=GUARDED_BPS)
    assert settlement(rewards) == expected


def test_progress_does_not_settle_an_update_beyond_the_counted_distance(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    """``maxCountedDistance`` 5,000: an update 5,001 away is settled uncounted on submit, is no
    entry and gets no ``RewardSettled``; one exactly 5,000 away counts and is scored."""
    # Prepare
    contract = coordinators["progress_guarded"]
    a, b, c, poisoner = clients[:4]
    beyond = full(125)
    beyond[0] += 1
    receipts = submit(isolated, contract, poisoner, beyond)
    updates = {a: full(125), b: ramp(50, 150), c: full(100)}
    # Execute
    submissions, closes = play(isolated, contract, relayer, updates)
    # Assert
    assert [(e["distance"], e["counted"]) for e in accepted(contract, receipts)] == [(5_001, False)]
    assert (submissions[0]["distance"], submissions[0]["counted"]) == (5_000, True)
    new = model_of(contract)
    assert new.tolist() == integer_average(list(updates.values())).tolist()
    rewards = settled(contract, closes)
    assert set(rewards) == {a, b, c}
    assert settlement(rewards) == expected_settlement(ZERO, new, updates, guard=GUARD)
    assert credit_of(contract, poisoner) == 0


def test_progress_gives_every_update_10000_when_the_model_does_not_move(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    """Two updates that cancel and one that stands still: the mean is the current model, the
    step 0, and every update scores 10,000 bps (tier 2, inclusive), whatever it moved."""
    # Prepare
    contract = coordinators["progress"]
    a, b, c = clients[:3]
    updates = {a: ramp(100, 300), b: -ramp(100, 300), c: ZERO}
    # Execute
    _, closes = play(isolated, contract, relayer, updates)
    # Assert
    assert model_of(contract).tolist() == [0] * SMALL_WEIGHTS
    assert progress_scores(ZERO, ZERO, updates) == dict.fromkeys(updates, 10_000)
    rewards = settled(contract, closes)
    assert settlement(rewards) == dict.fromkeys(updates, (10_000, 2, 100))


def test_progress_under_squared_l2_is_the_reference(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    """Squared L2 distances in the shortfall: each score is ``shortfall_bps`` of squared
    distances; an update opposite to another (on the model's other side) scores more than
    20,000."""
    # Prepare
    contract = coordinators["progress_l2"]
    rng = np.random.default_rng(21)
    a, b, c = clients[:3]
    forward = rng.integers(150, 451, size=SMALL_WEIGHTS, dtype=np.int64)
    updates = {
        a: forward,
        b: rng.integers(0, 301, size=SMALL_WEIGHTS, dtype=np.int64),
        c: -forward,
    }
    # Execute
    submissions, closes = play(isolated, contract, relayer, updates)
    # Assert
    new = model_of(contract)
    assert new.tolist() == integer_average(list(updates.values())).tolist()
    assert [e["distance"] for e in submissions] == [
        distance(ZERO, u, "squared_l2") for u in updates.values()
    ]
    scores = progress_scores(ZERO, new, updates, "squared_l2")
    assert scores[c] > 20_000
    expected = expected_settlement(ZERO, new, updates, metric="squared_l2")
    assert settlement(settled(contract, closes)) == expected


def test_progress_sums_the_step_over_segments_with_a_relayed_update(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    """One-word segments: the step is the sum of the three segments' steps and each update's
    distances are its whole vector's (a relayed one measured from the current model in the
    close); with the last segment's step alone the scores would differ."""
    # Prepare: two direct updates, one relayed
    contract = coordinators["progress_segments"]
    a, b, carried = clients[:3]
    direct = {a: ramp(-200, 400), b: ramp(300, -100)}
    relayed = ramp(150, 250)
    relayed[::3] = -50
    for client, values in direct.items():
        submit(isolated, contract, client, values)
    relay(isolated, contract, relayer, [signed(isolated, contract, carried, relayed)])
    updates = {**direct, carried: relayed}
    # Execute
    closes = close_round(isolated, contract, relayer, updates)
    # Assert
    assert len(closes) == 3
    new = model_of(contract)
    assert new.tolist() == integer_average(list(updates.values())).tolist()
    measured = [e for e in accepted(contract, closes) if e["client"] == carried]
    assert [(e["distance"], e["relayed"]) for e in measured] == [
        (distance(ZERO, relayed, "l1"), True)
    ]
    scores = progress_scores(ZERO, new, updates)
    last_step = distance(ZERO[32:], new[32:], "l1")
    assert scores != {
        c: shortfall_bps(distance(new, u, "l1"), distance(ZERO, u, "l1"), last_step)
        for c, u in updates.items()
    }
    assert settlement(settled(contract, closes)) == expected_settlement(ZERO, new, updates)


def test_progress_step_starts_from_zero_in_the_next_round(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    """Two rounds in a row over three segments: round 2's scores use round 2's step alone (with
    round 1's step added they would differ)."""
    # Prepare
    contract = coordinators["progress_segments"]
    a, b, c = clients[:3]
    first = {a: ramp(0, 400), b: ramp(400, 0), c: full(100)}
    # Execute: round 1
    _, closes1 = play(isolated, contract, relayer, first)
    new1 = model_of(contract)
    second = {a: new1 + ramp(-50, 50), b: new1 + 40, c: new1 - ramp(0, 30)}
    _, closes2 = play(isolated, contract, relayer, second, round_number=2)
    new2 = model_of(contract)
    # Assert
    assert settlement(settled(contract, closes1)) == expected_settlement(ZERO, new1, first)
    scores2 = progress_scores(new1, new2, second)
    both_steps = distance(ZERO, new1, "l1") + distance(new1, new2, "l1")
    assert scores2 != {
        x: shortfall_bps(distance(new2, u, "l1"), distance(new1, u, "l1"), both_steps)
        for x, u in second.items()
    }
    rewards2 = settled(contract, closes2)
    assert {e["round"] for e in rewards2.values()} == {2}
    assert settlement(rewards2) == expected_settlement(new1, new2, second)


# ---------------------------------------------------------------- deployment


@pytest.mark.parametrize(
    ("changes", "value"),
    [
        ({"trim_each": 1, "aggregation": "sample_weighted"}, 1),
        ({"trim_each": 1, "target_submissions": 2, "min_submissions": 2}, 1),  # 2 >= 2
        ({"trim_each": 2, "target_submissions": 4, "min_submissions": 2}, 2),  # 4 >= 4
        ({"trim_each": 1, "target_submissions": 1, "min_submissions": 1}, 1),
        ({"trim_each": 2**128}, 2**128),
        (secure_params(5, 1, trim_each=2), 2),  # 4 < 5, but the close sees only the sum
    ],
    ids=["sample-weighted", "t2", "t4-trim2", "t1", "2**128", "secure-aggregation"],
)
def test_deploy_refuses_a_trim_that_leaves_nothing_or_cannot_apply(
    isolated: Chain, owner: str, changes: dict[str, Any], value: int
) -> None:
    """``trimEach`` needs the mean, less than half the target, and updates in the clear."""
    with reverts("CoordinatorInvalidParameter", name="trimEach", value=value):
        deploy(isolated, small_params(**changes), deployer=owner)


def test_deploy_refuses_a_trim_whose_double_overflows_by_name(isolated: Chain, owner: str) -> None:
    """``trimEach`` 2**255: the refusal names it, as every out-of-range parameter's does."""
    with reverts("CoordinatorInvalidParameter", name="trimEach", value=2**255):
        deploy(isolated, small_params(trim_each=2**255), deployer=owner)


def test_deploy_refuses_a_trim_above_what_the_contract_holds(isolated: Chain, owner: str) -> None:
    """``trimEach`` 256 with a target of 600 (a gas cap that lets it deploy): refused by name,
    never held as another value (the contract keeps it in 8 bits); 255 deploys and reads back."""
    # Prepare
    common = {"target_submissions": 600, "num_weights": 16, "words_per_segment": 1}
    params = small_params(trim_each=256, tx_gas_cap=10**12, **common)
    # Execute
    outcome = constructor_outcome(isolated, params, sender=owner)
    # Assert
    assert outcome is not None
    assert (outcome.name, outcome.error_args) == (
        "CoordinatorInvalidParameter",
        {"name": "trimEach", "value": 256},
    )
    contract = deploy(isolated, replace(params, trim_each=255), deployer=owner)
    assert contract.functions.trimEach().call() == 255


@pytest.mark.parametrize(
    "changes",
    [
        {"trim_each": 1, "target_submissions": 3},  # 2 < 3
        {"trim_each": 2, "target_submissions": 5},
        {"trim_each": 255, "target_submissions": 511, "num_weights": 16, "tx_gas_cap": 10**12},
        {"trim_each": 1, **PROGRESS, "distance": "squared_l2"},
        {"trim_each": 0, "aggregation": "sample_weighted", **PROGRESS},
    ],
    ids=["t3-trim1", "t5-trim2", "t511-trim255", "progress-squared-l2", "weighted-progress"],
)
def test_deploy_takes_a_trim_just_below_half_the_target(
    isolated: Chain, owner: str, changes: dict[str, Any]
) -> None:
    assert constructor_outcome(isolated, small_params(**changes), sender=owner) is None


def test_views_show_the_trim_and_the_reward_reference(
    isolated: Chain, coordinators: dict[str, Contract]
) -> None:
    """``trimEach()`` and ``rewardReference()`` (2: Progress), and ``CoordinatorView``'s
    ``trim_each`` and ``reward_reference``."""
    # Execute
    seen = {
        name: (
            int(coordinators[name].functions.trimEach().call()),
            int(coordinators[name].functions.rewardReference().call()),
            CoordinatorView.read(isolated, coordinators[name]),
        )
        for name in ("trim2", "trim_progress", "progress")
    }
    # Assert
    assert {name: (t, r, v.trim_each, v.reward_reference) for name, (t, r, v) in seen.items()} == {
        "trim2": (2, 0, 2, "current"),
        "trim_progress": (1, 2, 1, "progress"),
        "progress": (0, 2, 0, "progress"),
    }


# ---------------------------------------------------------------- the configuration


def with_contract(**changes: Any) -> Any:
    """The project's ``federated_learning`` section with ``contract`` changed."""
    fl = load_config().fl
    return replace(fl, contract=replace(fl.contract, **changes))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"trim_each": 1, "aggregation": "sample_weighted"},
            r"contract\.trim_each needs aggregation mean",
        ),
        ({"trim_each": 1, "mode": "secure_aggregation"}, "secure_aggregation .*trim_each"),
        ({"trim_each": -1}, r"contract\.trim_each must be an integer >= 0, got -1"),
        ({"trim_each": True}, r"contract\.trim_each must be an integer >= 0, got True"),
        ({"reward_reference": "shortfall"}, "current, aggregate, progress, got 'shortfall'"),
        ({"trim_each": 256}, r"contract\.trim_each must be at most 255, got 256"),
    ],
    ids=["sample-weighted", "secure-aggregation", "negative", "bool", "unknown-reference", "256"],
)
def test_contract_config_refuses_what_the_contract_would(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        ContractConfig(**changes)


@pytest.mark.parametrize(
    ("trim", "target", "clients", "refused"),
    [
        (2, 4, 10, True),  # 4 >= 4
        (2, 5, 10, False),
        (5, None, 10, True),  # the target from the clients: 10
        (5, None, 11, False),
    ],
)
def test_deploy_params_refuse_a_trim_of_half_the_target(
    trim: int, target: int | None, clients: int, refused: bool
) -> None:
    """``DeployParams.from_config`` refuses ``2 * trim_each >= target`` (the target configured or
    the number of clients), and otherwise plans smaller segments for the trim's passes (under a
    3M gas cap, where gas and not calldata bounds them)."""
    fl = with_contract(trim_each=trim, target_submissions=target, min_submissions=None)
    rounds = target or clients
    if refused:
        expected = f"contract.trim_each {trim} leaves no update of a round of {rounds} "
        with pytest.raises(ConfigError, match=re.escape(expected)):
            DeployParams.from_config(fl, num_weights=101_770, clients=clients)
        return
    params = DeployParams.from_config(
        fl, num_weights=101_770, clients=clients, tx_gas_cap=3_000_000
    )
    planned = plan_words_per_segment(
        101_770, target=rounds, gas_cap=3_000_000, work=CloseWork(trim=trim)
    )
    assert (params.trim_each, params.target_submissions) == (trim, rounds)
    assert params.words_per_segment == planned
    assert planned < plan_words_per_segment(101_770, target=rounds, gas_cap=3_000_000)


def test_progress_thresholds_are_the_basis_points_of_the_configuration() -> None:
    """Under ``progress`` the tiers are ``rewards.thresholds_bps`` (default 9,000, 12,000, 15,000),
    whatever the model's size; under the other references the per-weight distances scaled."""
    # Prepare
    fl = load_config().fl
    rewards = fl.rewards
    # Execute
    progress = DeployParams.from_config(
        with_contract(reward_reference="progress"), num_weights=7_850, clients=5
    )
    current = DeployParams.from_config(fl, num_weights=7_850, clients=5)
    # Assert
    assert rewards.thresholds_bps == RewardConfig.thresholds_bps == (9_000, 12_000, 15_000)
    assert rewards.thresholds(7_850, "progress") == (9_000, 12_000, 15_000)
    assert progress.tier_thresholds == (9_000, 12_000, 15_000)
    assert progress.reward_reference == "progress"
    assert current.tier_thresholds == tuple(t * 7_850 for t in rewards.thresholds_per_weight)
    assert progress.words_per_segment == plan_words_per_segment(
        7_850, target=5, work=CloseWork(aggregate=True)
    )


@pytest.mark.parametrize(
    "bps",
    [[5_000, 2_500, 7_500], [2_500, 5_000], [-1, 5_000, 7_500]],
    ids=["descending", "too-few", "negative"],
)
def test_configuration_refuses_thresholds_bps_that_cannot_be_tiers(
    tmp_path: Path, bps: list[int]
) -> None:
    # Prepare: the project's file with other thresholds_bps
    raw = yaml.safe_load(CONFIG_PATH.read_text(encoding="utf-8"))
    raw["federated_learning"]["rewards"]["thresholds_bps"] = bps
    path = tmp_path / "brownie-config.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    # Execute / Assert
    with pytest.raises(ConfigError, match=r"rewards\.thresholds_bps must be ascending"):
        load_config(path)


def test_a_simulation_with_too_large_a_trim_sends_nothing(isolated: Chain) -> None:
    """``trim_each`` 3 with five clients (target 5): the simulation stops with the
    ``ConfigError`` before its deployment, no block mined and no gas spent."""
    # Prepare
    fl = replace(
        with_contract(trim_each=3, target_submissions=None, min_submissions=None),
        clients=5,
        rounds=1,
    )
    block = isolated.w3.eth.block_number
    sent = len(isolated.gas_used)
    # Execute / Assert
    with pytest.raises(
        ConfigError, match=r"contract\.trim_each 3 leaves no update of a round of 5"
    ):
        run_simulation(fl, chain=isolated, check_accuracy=False)
    assert (isolated.w3.eth.block_number, len(isolated.gas_used)) == (block, sent)
