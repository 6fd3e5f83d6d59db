"""The issue's attacks replayed under the recommended settings, on small vectors.

The recommended settings (``bench/incentives.py``): the reward reference ``progress`` (each
counted update paid at the close by its shortfall, :func:`fl_client.aggregation.shortfall_bps`,
tiers in basis points), the coordinate-wise trimmed mean (``trimEach`` 2 of a round of 5: per
weight the median), the step and drift bounds, the free-rider guard ``minRewardDistance`` (from
the current model and from the new one) and the direction guard at 0 (an update that moves
more against the last global step than along it, the moves of weights the step left alone
counted against, is left out and unpaid).

Every scenario plays two rounds on one coordinator of 40 weights (``small_params``), starting
from the zero model: round 1, five honest clients; round 2, honest clients and the attack.
Honest clients make noisy moves around a common direction (``DIRECTION``, drawn once with
``numpy.random.default_rng(SEED)``; each client's noise from ``default_rng([SEED, round])``).
The attacks are crafted as ``bench.incentives`` crafts them (``FreeRider``, ``StaleModel``,
``NoiseSubmitter``, ``Sybil``, ``Copycat``; the inflater declares 65,535 samples). Each test
checks the chain against the references of :mod:`fl_client.aggregation` (the model is
:func:`clamp_step` of :func:`trimmed_average`; ``SubmissionAccepted``'s ``along``/``against``/
``counted`` are :func:`directional_l1`/:func:`aligned`; ``RewardSettled`` is the shortfall and
tier of ``expected_settlement``) and states exactly what the attacker and each honest client of
round 2 were paid.

Tiers: ``THRESHOLDS_BPS`` (2,500, 5,000, 10,000) bps paying ``(300, 200, 100)`` wei; every
honest client is paid 300 in both rounds. Two updates reach the last tier: the noise of seed 5
(it passes the direction guard and falls 9,440 bps short) and the Sybils on the bench's own push
direction (9,645 bps): 100 wei each, still less than the honest 300.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from web3.contract import Contract
from web3.types import TxReceipt

from bench import incentives
from fl_client.aggregation import (
    NO_TIER,
    aligned,
    clamp_step,
    directional_l1,
    distance,
    integer_average,
    step_signs,
    trimmed_average,
)
from fl_client.chain import Chain
from fl_client.config import FixedPointFormat
from tests.conftest import SMALL_WEIGHTS, events, submit
from tests.pipeline_helpers import close_round, module_deployments
from tests.test_incentives import accepted, crafted, credit_of, model_of, settled
from tests.test_robust_rewards import THRESHOLDS_BPS, expected_settlement, settlement

SEED = 7
GUARD = 80  # minRewardDistance: below every honest distance of round 1 (the least: 99)
TRIM = 2
TARGET = 5
MIN_ALIGNMENT_BPS = 0
MAX_STEP = 24
MAX_DRIFT = 40
DRIFT_WINDOW = 5  # rounds 1 and 2 share the initial model as their checkpoint
MAX_SAMPLES = 65_535
TRUE_SAMPLES = 100
TOP = 300  # the top tier's reward: what every honest client of these rounds earns
FMT = FixedPointFormat(scale=1_024, max_abs=3_000)  # small_params' format
ZERO = np.zeros(SMALL_WEIGHTS, dtype=np.int64)
CHECKPOINT = ZERO  # the drift bound's checkpoint in rounds 1 and 2

_direction_rng = np.random.default_rng(SEED)
DIRECTION = _direction_rng.choice([-1, 1], size=SMALL_WEIGHTS) * _direction_rng.integers(
    12, 25, size=SMALL_WEIGHTS
)  # every weight moves 12 to 24 quanta, up or down

CONFIGS: dict[str, dict[str, Any]] = {
    "recommended": {
        "reward_reference": "progress",
        "tier_thresholds": THRESHOLDS_BPS,
        "trim_each": TRIM,
        "target_submissions": TARGET,
        "min_submissions": TARGET,
        "min_reward_distance": GUARD,
        "min_alignment_bps": MIN_ALIGNMENT_BPS,
        "max_step": MAX_STEP,
        "max_drift": MAX_DRIFT,
        "drift_window": DRIFT_WINDOW,
        "max_sample_count": MAX_SAMPLES,
    },
}


@pytest.fixture(scope="module")
def deployed(chain: Chain) -> Iterator[dict[str, Contract]]:
    """The module's coordinator, deployed once (each test runs on a snapshot)."""
    yield from module_deployments(chain, CONFIGS)


@pytest.fixture
def contract(isolated: Chain, deployed: dict[str, Contract]) -> Contract:
    """The recommended coordinator, on the test's snapshot, round 1 open."""
    return deployed["recommended"]


# ---------------------------------------------------------------- helpers


def honest_updates(
    model: np.ndarray, accounts: Sequence[str], round_number: int
) -> dict[str, np.ndarray]:
    """The honest clients' updates of ``round_number``: ``model + DIRECTION`` plus noise in
    [-6, 6] on every weight, one row of ``default_rng([SEED, round])`` per client (the same rows
    in every test: the first ``len(accounts)`` of five)."""
    rng = np.random.default_rng([SEED, round_number])
    noise = rng.integers(-6, 7, size=(TARGET, SMALL_WEIGHTS), dtype=np.int64)
    assert len(accounts) <= TARGET
    return {a: model + DIRECTION + noise[i] for i, a in enumerate(accounts)}


def play_round(
    chain: Chain,
    contract: Contract,
    closer: str,
    updates: Mapping[str, np.ndarray],
    *,
    round_number: int,
    samples: Mapping[str, int] | None = None,
) -> tuple[dict[str, dict[str, Any]], list[TxReceipt]]:
    """Submit ``updates`` directly, in order (an update the direction guard leaves out is no
    entry and does not fill the round), then close the round: each client's
    ``SubmissionAccepted`` and the close's receipts."""
    receipts: list[TxReceipt] = []
    for client, values in updates.items():
        count = 1 if samples is None else samples[client]
        receipts += submit(
            chain, contract, client, values, round_number=round_number, sample_count=count
        )
    submissions = {str(e["client"]): e for e in accepted(contract, receipts)}
    assert len(submissions) == len(updates)
    closes = close_round(chain, contract, closer, updates, round_number=round_number)
    return submissions, closes


def expected_model(old: np.ndarray, counted: Mapping[str, np.ndarray]) -> tuple[np.ndarray, int]:
    """The reference close: the trimmed mean of the counted updates, bounded by ``maxStep`` from
    ``old`` and ``maxDrift`` from the checkpoint; and the weights the bounds held back."""
    trimmed = trimmed_average(list(counted.values()), TRIM)
    return clamp_step(trimmed, old, CHECKPOINT, max_step=MAX_STEP, max_drift=MAX_DRIFT)


def clamped_of(contract: Contract, receipts: Sequence[TxReceipt]) -> int:
    """Weights the bounds held back in the closes of ``receipts`` (``SegmentClosed.clamped``)."""
    return sum(int(e["clamped"]) for r in receipts for e in events(contract, "SegmentClosed", r))


def first_round(
    chain: Chain, contract: Contract, accounts: Sequence[str], closer: str
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, dict[str, Any]]]:
    """Round 1: five honest clients, all counted (round 1 has no step), the model the reference
    close (``maxStep`` holds back four weights), each paid the top tier. The new model, the
    updates and their ``RewardSettled``."""
    updates = honest_updates(ZERO, accounts, 1)
    submissions, closes = play_round(chain, contract, closer, updates, round_number=1)
    assert [e["counted"] for e in submissions.values()] == [True] * TARGET
    new, held = expected_model(ZERO, updates)
    assert model_of(contract).tolist() == new.tolist()
    assert clamped_of(contract, closes) == held == 4  # the step bound holds back four weights
    rewards = settled(contract, closes)
    assert settlement(rewards) == expected_settlement(ZERO, new, updates, guard=GUARD)
    assert [e["reward"] for e in rewards.values()] == [TOP] * TARGET
    return new, updates, rewards


def checked_round(
    contract: Contract,
    old: np.ndarray,
    updates: Mapping[str, np.ndarray],
    submissions: Mapping[str, Mapping[str, Any]],
    closes: Sequence[TxReceipt],
) -> tuple[np.ndarray, dict[str, tuple[int, int, int]]]:
    """Round 2 against the references: the direction guard (``along``, ``against``,
    ``counted``) of every update against the last step, the model (the bounded trimmed mean of
    the counted ones) and each counted update's ``RewardSettled`` (shortfall, tier, reward) with
    the free-rider guard; a left-out update gets none. The new model and the settlement."""
    step = step_signs(CHECKPOINT, old)
    for client, update in updates.items():
        along, against = directional_l1(old, update, step)
        seen = submissions[client]
        assert (seen["along"], seen["against"], seen["counted"]) == (
            along,
            against,
            aligned(along, against, MIN_ALIGNMENT_BPS),
        ), client
        assert (seen["distance"], seen["tier"], seen["reward"]) == (
            distance(old, update, "l1"),
            NO_TIER,
            0,
        ), client
    counted = {c: u for c, u in updates.items() if submissions[c]["counted"]}
    new, held = expected_model(old, counted)
    assert model_of(contract).tolist() == new.tolist()
    assert clamped_of(contract, closes) == held
    found = settlement(settled(contract, closes))
    assert found == expected_settlement(old, new, counted, guard=GUARD)
    return new, found


def earned(found: Mapping[str, tuple[int, int, int]], accounts: Sequence[str]) -> list[int]:
    """What each of ``accounts`` was paid in the round (0: no ``RewardSettled``, left out)."""
    return [found[a][2] if a in found else 0 for a in accounts]


# ---------------------------------------------------------------- a. the free rider


def test_free_rider_at_exactly_the_guard_along_the_last_step_scores_17292_bps_and_is_unpaid(
    isolated: Chain, contract: Contract, clients: list[str], relayer: str
) -> None:
    """``bench.incentives.FreeRider`` moves exactly ``minRewardDistance`` (80) quanta, every one
    along the last global step: it passes the direction guard (80 along, 0 against) and the
    free-rider guard (80 from the current model, 511 from the new one), is counted and trimmed,
    and scores a shortfall of 17,292 bps (it went 80 of the model's 591 quanta): beyond every
    tier, paid 0 while each of the four honest clients is paid 300."""
    # Arrange: round 1, five honest clients; round 2, four honest clients and the free rider
    old, _, _ = first_round(isolated, contract, clients[:5], relayer)
    honest, rider = clients[:4], clients[5]
    sent = crafted(
        incentives.FreeRider(guard=GUARD, fmt=FMT, num_weights=SMALL_WEIGHTS, sample_count=1),
        [ZERO, old],
    )[1]
    updates = {rider: sent, **honest_updates(old, honest, 2)}
    # Act
    submissions, closes = play_round(isolated, contract, relayer, updates, round_number=2)
    # Assert: the chain is the references
    new, found = checked_round(contract, old, updates, submissions, closes)
    # Assert: exactly the guard, all along, counted; scored far beyond the tiers
    assert distance(old, sent, "l1") == GUARD
    assert directional_l1(old, sent, step_signs(ZERO, old)) == (GUARD, 0)
    assert (distance(new, sent, "l1"), distance(old, new, "l1")) == (511, 591)
    assert found[rider] == (17_292, NO_TIER, 0)
    assert earned(found, [rider, *honest]) == [0, TOP, TOP, TOP, TOP]
    assert earned(found, [rider])[0] < min(earned(found, honest))
    assert credit_of(contract, rider) == 0
    assert [credit_of(contract, h) for h in honest] == [2 * TOP] * 4


# ---------------------------------------------------------------- b. the stale resubmitter


def test_stale_resubmitter_of_the_previous_model_is_left_out_by_the_direction_guard(
    isolated: Chain, contract: Contract, clients: list[str], relayer: str
) -> None:
    """``bench.incentives.StaleModel`` resends the previous round's model (the zero model): it
    moves every weight back against the last step (0 along, 699 against), is left out (no entry,
    no ``RewardSettled``) and paid 0; the five honest clients fill the round and are paid 300
    each."""
    # Arrange
    old, _, _ = first_round(isolated, contract, clients[:5], relayer)
    honest, stale = clients[:5], clients[5]
    sent = crafted(
        incentives.StaleModel(fmt=FMT, num_weights=SMALL_WEIGHTS, sample_count=1), [ZERO, old]
    )[1]
    updates = {stale: sent, **honest_updates(old, honest, 2)}
    # Act
    submissions, closes = play_round(isolated, contract, relayer, updates, round_number=2)
    # Assert
    _, found = checked_round(contract, old, updates, submissions, closes)
    assert sent.tolist() == ZERO.tolist()
    seen = submissions[stale]
    assert (seen["along"], seen["against"], seen["counted"], seen["reward"]) == (0, 699, False, 0)
    assert stale not in found
    assert earned(found, [stale, *honest]) == [0, TOP, TOP, TOP, TOP, TOP]
    assert earned(found, [stale])[0] < min(earned(found, honest))
    assert credit_of(contract, stale) == 0


# ---------------------------------------------------------------- c. noise of honest size


@pytest.mark.parametrize(
    ("seed", "along", "against", "outcome"),
    [
        (0, 290, 424, None),  # left out by the direction guard
        (2, 457, 257, (10_485, NO_TIER, 0)),  # counted, scored beyond the last tier
        (5, 474, 240, (9_440, 2, 100)),  # counted, scored in the last tier: paid 100
    ],
    ids=["left-out", "counted-unpaid", "counted-paid-last-tier"],
)
def test_noise_of_honest_size_is_paid_less_than_every_honest_client(
    isolated: Chain,
    contract: Contract,
    clients: list[str],
    relayer: str,
    seed: int,
    along: int,
    against: int,
    outcome: tuple[int, int, int] | None,
) -> None:
    """``bench.incentives.NoiseSubmitter``: Gaussian noise of exactly the honest size (714, the
    median of the five honest updates' distances). The last step moved every weight, so its
    alignment is chance: seed 0 goes more against than along and is left out; seeds 2 and 5 pass
    the guard, are counted and trimmed, and score 10,485 bps (unpaid) and 9,440 bps (the last
    tier, paid 100 wei). Every honest client of the round is paid 300."""
    # Arrange: the honest round without the attacker: five updates, their median size
    old, _, _ = first_round(isolated, contract, clients[:5], relayer)
    size = sorted(distance(old, u, "l1") for u in honest_updates(old, clients[:5], 2).values())[2]
    noise = crafted(
        incentives.NoiseSubmitter(
            size=lambda _: size, seed=seed, fmt=FMT, num_weights=SMALL_WEIGHTS, sample_count=1
        ),
        [ZERO, old],
    )[1]
    attacker = clients[5]
    honest = clients[:5] if outcome is None else clients[:4]  # a counted one fills a place
    updates = {attacker: noise, **honest_updates(old, honest, 2)}
    # Act
    submissions, closes = play_round(isolated, contract, relayer, updates, round_number=2)
    # Assert
    _, found = checked_round(contract, old, updates, submissions, closes)
    assert size == 714
    assert distance(old, noise, "l1") == size
    seen = submissions[attacker]
    assert (seen["along"], seen["against"], seen["counted"]) == (
        along,
        against,
        outcome is not None,
    )
    assert found.get(attacker) == outcome
    paid = 0 if outcome is None else outcome[2]
    assert earned(found, [attacker, *honest]) == [paid] + [TOP] * len(honest)
    assert paid < min(earned(found, honest))
    assert credit_of(contract, attacker) == paid


# ---------------------------------------------------------------- d. colluding Sybils


def sybil_pushes(old: np.ndarray, direction: np.ndarray, size: int) -> list[np.ndarray]:
    """Two ``bench.incentives.Sybil`` accounts' round-2 updates along ``direction``, each
    ``size`` from ``old``."""
    return [
        crafted(
            incentives.Sybil(
                direction=direction,
                size=lambda _: size,
                fmt=FMT,
                num_weights=SMALL_WEIGHTS,
                sample_count=1,
            ),
            [ZERO, old],
        )[1]
        for _ in range(2)
    ]


def test_two_sybils_pushing_one_direction_are_trimmed_from_every_weight_and_unpaid(
    isolated: Chain, contract: Contract, clients: list[str], relayer: str
) -> None:
    """Two colluding Sybils send the same push of honest size (714): the last step's way, hard,
    on weights 0-9 (71 quanta, 72 on one: about three times an honest move), and a single
    quantum up on three other weights (``exact_l1`` making up the size). 713 along the last
    step, 1 against: counted. On every weight both lie strictly outside the three honest values
    (beyond them on 0-9, behind them elsewhere: every honest move is at least 6), so the trim (2
    at each end of 5) cuts both from every weight: the model is the trimmed mean of all five
    (bounded), within the honest values on every weight before the bounds, and differs from the
    plain mean on 38 weights. They score 14,023 bps, unpaid; each honest client is paid 300."""
    # Arrange
    old, _, _ = first_round(isolated, contract, clients[:5], relayer)
    honest, sybils = clients[:3], clients[5:7]
    step = step_signs(ZERO, old)
    size = sorted(distance(old, u, "l1") for u in honest_updates(old, clients[:5], 2).values())[2]
    direction = np.where(np.arange(SMALL_WEIGHTS) < 10, step, 0).astype(np.float64)
    pushes = sybil_pushes(old, direction, size)
    trained = honest_updates(old, honest, 2)
    updates = {**dict(zip(sybils, pushes, strict=True)), **trained}
    # Act
    submissions, closes = play_round(isolated, contract, relayer, updates, round_number=2)
    # Assert: the chain is the references
    new, found = checked_round(contract, old, updates, submissions, closes)
    # Assert: one push of honest size, all along
    assert pushes[0].tolist() == pushes[1].tolist()
    assert distance(old, pushes[0], "l1") == size == 714
    assert [(submissions[s]["along"], submissions[s]["against"]) for s in sybils] == [(713, 1)] * 2
    assert all(submissions[c]["counted"] for c in updates)
    # Assert: outside the honest values on every weight, so trimmed from every weight
    stack = np.stack(list(trained.values()))
    low, high = stack.min(axis=0), stack.max(axis=0)
    assert bool(np.all((pushes[0] > high) | (pushes[0] < low)))
    five = list(updates.values())
    trimmed = trimmed_average(five, TRIM)
    assert bool(np.all((low <= trimmed) & (trimmed <= high)))
    assert new.tolist() == expected_model(old, updates)[0].tolist()
    assert int(np.count_nonzero(trimmed != integer_average(five))) == 38
    # Assert: unpaid, each honest client paid the top tier
    assert [found[s] for s in sybils] == [(14_023, NO_TIER, 0)] * 2
    assert earned(found, [*sybils, *honest]) == [0, 0, TOP, TOP, TOP]
    assert max(earned(found, sybils)) < min(earned(found, honest))
    assert [credit_of(contract, s) for s in sybils] == [0, 0]


def test_two_sybils_on_the_bench_push_direction_are_trimmed_on_35_weights_and_paid_the_last_tier(
    isolated: Chain, contract: Contract, clients: list[str], relayer: str
) -> None:
    """The bench's own Sybil direction (``push_direction``: class 0's nine weights and bias up,
    the others down by a third), at honest size: 452 along the last step, 262 against, counted.
    On 5 of the 40 weights the push falls inside the honest values, so the trim does not cut it
    everywhere; the Sybils score 9,645 bps, the last tier: 100 wei each, less than the 300 of
    each honest client."""
    # Arrange
    old, _, _ = first_round(isolated, contract, clients[:5], relayer)
    honest, sybils = clients[:3], clients[5:7]
    size = sorted(distance(old, u, "l1") for u in honest_updates(old, clients[:5], 2).values())[2]
    pushes = sybil_pushes(old, incentives.push_direction(SMALL_WEIGHTS, 4), size)
    trained = honest_updates(old, honest, 2)
    updates = {**dict(zip(sybils, pushes, strict=True)), **trained}
    # Act
    submissions, closes = play_round(isolated, contract, relayer, updates, round_number=2)
    # Assert
    _, found = checked_round(contract, old, updates, submissions, closes)
    assert pushes[0].tolist() == pushes[1].tolist()
    assert distance(old, pushes[0], "l1") == size
    assert [
        (submissions[s]["along"], submissions[s]["against"], submissions[s]["counted"])
        for s in sybils
    ] == [(452, 262, True)] * 2
    stack = np.stack(list(trained.values()))
    outside = (pushes[0] > stack.max(axis=0)) | (pushes[0] < stack.min(axis=0))
    assert int(np.count_nonzero(outside)) == 35
    assert [found[s] for s in sybils] == [(9_645, 2, 100)] * 2
    assert earned(found, [*sybils, *honest]) == [100, 100, TOP, TOP, TOP]
    assert max(earned(found, sybils)) < min(earned(found, honest))


# ---------------------------------------------------------------- e. the copycat


def test_copycat_of_last_rounds_best_paid_update_is_counted_and_unpaid(
    isolated: Chain, contract: Contract, clients: list[str], relayer: str
) -> None:
    """``bench.incentives.Copycat`` resends the best-paid update of round 1 (all five were paid
    300: the first, client 0's), submitted directly in round 2. Against the new current model it
    moves 103 quanta (63 along, 40 against): counted, past the free-rider guard; but it lies a
    whole step behind the new model (568) and scores 17,868 bps: unpaid, while each of the four
    honest clients is paid 300."""
    # Arrange
    old, first, rewards = first_round(isolated, contract, clients[:5], relayer)
    board = incentives.PublicBoard()
    board.revealed[1] = [(int(rewards[c]["reward"]), first[c]) for c in clients[:5]]
    honest, copycat = clients[:4], clients[5]
    sent = crafted(
        incentives.Copycat(board=board, fmt=FMT, num_weights=SMALL_WEIGHTS, sample_count=1),
        [ZERO, old],
    )[1]
    updates = {copycat: sent, **honest_updates(old, honest, 2)}
    # Act
    submissions, closes = play_round(isolated, contract, relayer, updates, round_number=2)
    # Assert
    new, found = checked_round(contract, old, updates, submissions, closes)
    assert sent.tolist() == first[clients[0]].tolist()
    seen = submissions[copycat]
    assert (seen["distance"], seen["along"], seen["against"], seen["counted"]) == (
        103,
        63,
        40,
        True,
    )
    assert distance(new, sent, "l1") == 568
    assert found[copycat] == (17_868, NO_TIER, 0)
    assert earned(found, [copycat, *honest]) == [0, TOP, TOP, TOP, TOP]
    assert earned(found, [copycat])[0] < min(earned(found, honest))
    assert credit_of(contract, copycat) == 0


# ---------------------------------------------------------------- f. the sample-count inflater


def test_sample_count_inflater_moves_the_model_and_earns_exactly_as_with_its_true_count(
    isolated: Chain, contract: Contract, clients: list[str], relayer: str
) -> None:
    """The inflater trains honestly (the fifth honest update) and declares 65,535 samples beside
    four clients declaring 100. Under the plain trimmed mean every update weighs 1: the model is
    the trimmed mean of the five whatever it declares, and on a snapshot where it declares its
    true 100 the model, every ``RewardSettled`` and every credit are the same. It is paid what
    its training earns, 300, as each honest client (inflating gains nothing; it does not earn
    less, as it trains)."""
    # Arrange
    old, _, _ = first_round(isolated, contract, clients[:5], relayer)
    honest, inflater = clients[:4], clients[5]
    trained = honest_updates(old, clients[:5], 2)
    updates = {**{h: trained[h] for h in honest}, inflater: trained[clients[4]]}
    before = isolated.snapshot()
    outcomes = []
    for declared in (MAX_SAMPLES, TRUE_SAMPLES):
        isolated.revert(before)
        samples = {**dict.fromkeys(honest, TRUE_SAMPLES), inflater: declared}
        # Act
        submissions, closes = play_round(
            isolated, contract, relayer, updates, round_number=2, samples=samples
        )
        # Assert: each run is the references (the declared count appears nowhere in them)
        new, found = checked_round(contract, old, updates, submissions, closes)
        assert submissions[inflater]["sampleCount"] == declared
        credits = [credit_of(contract, c) for c in updates]
        outcomes.append((new.tolist(), found, credits))
    # Assert: inflating changed nothing
    inflated, true = outcomes
    assert inflated == true
    new_list, found, credits = inflated
    assert new_list == expected_model(old, updates)[0].tolist()
    assert earned(found, [inflater, *honest]) == [TOP] * 5
    assert credits == [2 * TOP] * 4 + [TOP]
