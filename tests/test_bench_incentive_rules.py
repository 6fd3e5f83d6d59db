"""The offline rule exploration (bench/incentive_rules.py): the progress score at its ends, the
robust averages (the winsorized mean too), the tier rewards the paid copycat reads and
FoolsGold's weights on small vectors, the guards it copies from the contract, the summary of a
run (the bar's "outscores every honest client" at exactly a tie), the predictor's and the masked
copycat's crafted updates, and two rounds of a real run (MNIST 5k, IID) whose mean equals the
contract's reference."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import incentive_rules as rules
from bench.incentives import (
    Copycat,
    Incentives,
    PublicBoard,
    Sybil,
    make_context,
    push_direction,
    warm_up,
)
from fl_client.aggregation import capped_weights, integer_average, trimmed_average
from fl_client.codec import quantize
from fl_client.config import FixedPointFormat, load_config

FMT = FixedPointFormat(scale=1024, max_abs=3000)
ZERO = np.zeros(2, dtype=np.int64)
SETTINGS = Incentives(
    tier_thresholds=(1,),
    tier_rewards=(1,),
    min_reward_distance=0,
    max_counted_distance=0,
    min_alignment_bps=0,
    max_share_bps=1000,
    max_step=0,
    max_drift=0,
    drift_window=0,
)


def test_progress_runs_from_minus_the_step_for_the_old_model_to_the_step_for_the_new_one() -> None:
    current = np.array([0, 0, 0, 0])
    new = np.array([4, -2, 0, 2])
    assert rules.progress_bps(current, new, current) == -10_000
    assert rules.progress_bps(current, new, new) == 10_000
    # Overshooting along the step pays no more than reaching it: L1 caps each weight's part.
    assert rules.progress_bps(current, new, 10 * new) == 10_000
    # Against the step on every weight: as far behind as the old model.
    assert rules.progress_bps(current, new, -new) == -10_000
    # Half the step on every moved weight: as near the new model as the old one.
    assert rules.progress_bps(current, new, new // 2) == 0
    assert rules.progress_bps(current, current, new) == 0  # no step: nothing to score against


def test_score_distance_new_is_minus_the_l1_distance_and_an_unknown_rule_is_refused() -> None:
    current, new, update = np.zeros(3, int), np.array([1, 1, 1]), np.array([3, 0, 1])
    assert rules.score("distance_new", current, new, update) == -3
    with pytest.raises(ValueError, match="unknown rule"):
        rules.score("closest", current, new, update)


def test_median_and_trimmed_mean_ignore_three_equal_outliers_of_ten() -> None:
    honest = [np.array([v, -v]) for v in (1, 2, 3, 4, 5, 6, 7)]
    outliers = [np.array([1000, -1000])] * 3
    updates = honest + outliers
    assert rules.robust_average(updates, "median", ZERO).tolist() == [6, -6]  # (5 + 7) / 2 rounded
    # Cut 3 at each end: 4, 5, 6, 7 remain.
    assert rules.robust_average(updates, "trimmed", ZERO).tolist() == [6, -6]
    assert integer_average(updates).tolist() == [303, -303]  # the mean follows them
    with pytest.raises(ValueError, match="unknown aggregator"):
        rules.robust_average(updates, "mode", ZERO)


def test_winsorized_mean_sets_three_outliers_of_ten_to_the_nearest_kept_value() -> None:
    honest = [np.array([v, -v]) for v in (1, 2, 3, 4, 5, 6, 7)]
    updates = honest + [np.array([1000, -1000])] * 3
    # Cut 3 at each end: 1, 2, 3 become 4, and the three outliers 7: (4*4 + 5 + 6 + 7*4) / 10.
    assert rules.robust_average(updates, "winsorized", ZERO).tolist() == [6, -6]
    assert rules.winsorized_average(updates, 3).tolist() == [6, -6]
    # A pair of equal values weighs 2 of 10 (the trimmed mean: 2 of the 4 it keeps).
    pair = [np.array([v]) for v in (0, 0, 0, 0, 8, 8, 10, 10, 10, 10)]
    assert rules.winsorized_average(pair, 3).tolist() == [6]  # 56 / 10 = 5.6
    assert rules.robust_average(pair, "trimmed", np.zeros(1, dtype=np.int64)).tolist() == [
        7
    ]  # (0 + 8 + 8 + 10) / 4 = 6.5
    # Too few values to cut (one left in play at most): the plain mean, rounded half away.
    assert rules.winsorized_average([np.array([1]), np.array([2])], 3).tolist() == [2]


def test_filtered_mean_drops_updates_far_behind_the_trimmed_step_and_averages_the_rest() -> None:
    honest = [np.array([v, v]) for v in (4, 5, 6, 7, 8, 9, 10)]
    updates = honest + [np.array([-30, -30])] * 3
    # The trimmed mean is (6, 6), a step of 12; shortfalls: 4 -> 6666, 5 -> 3333, 6..10 -> 0,
    # the outliers 20000. Median 1666.5, bound 2500: 6..10 are averaged, (8, 8).
    assert rules.filtered_average(updates, ZERO).tolist() == [8, 8]
    assert rules.robust_average(updates, "filtered", ZERO).tolist() == [8, 8]
    # Its weakness: when most updates overshoot the trimmed step, the median shortfall is 0 and
    # only they are averaged (7..10 here, whose mean 8.5 rounds to 9).
    assert rules.filtered_average(honest, ZERO).tolist() == [9, 9]


def test_tier_reward_reads_each_rules_ladder_at_its_inclusive_thresholds() -> None:
    settings = replace(
        SETTINGS,
        tier_thresholds=(4, 8),
        tier_rewards=(10, 5),
        progress_thresholds=(10_000,),
        progress_rewards=(7,),
    )
    current, new = np.zeros(2, dtype=np.int64), np.array([2, 2])
    assert rules.tier_reward(settings, "distance_new", current, new, np.array([4, 4])) == 10
    assert rules.tier_reward(settings, "distance_new", current, new, np.array([5, 4])) == 5
    assert rules.tier_reward(settings, "distance_new", current, new, np.array([9, 4])) == 0
    # Shortfall: the old model, 20000 bps (no tier); the new model, 0; half the step, 10000.
    assert rules.tier_reward(settings, "progress", current, new, current) == 0
    assert rules.tier_reward(settings, "progress", current, new, new) == 7
    assert rules.tier_reward(settings, "progress", current, new, np.array([1, 1])) == 7


def test_foolsgold_zeroes_identical_accounts_and_keeps_distinct_ones() -> None:
    history = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 1.0], [0, 0, 1.0, 1.0]])
    weights = rules.foolsgold_weights(history)
    assert weights[2] == 0
    assert weights[3] == 0
    assert weights[0] == pytest.approx(1.0)
    assert weights[1] == pytest.approx(1.0)


def test_counted_applies_the_distance_bound_and_the_direction_guard() -> None:
    current = np.zeros(4, dtype=np.int64)
    step = np.array([1, 1, 0, 0])
    bounded = replace(SETTINGS, max_counted_distance=4)
    assert rules.counted(bounded, current, None, np.array([1, 1, 1, 1]))  # exactly on the bound
    assert not rules.counted(bounded, current, None, np.array([1, 1, 1, 2]))
    # along 2, against 2 (weights the step left alone count against): alignment exactly 0.
    assert rules.counted(SETTINGS, current, step, np.array([1, 1, 1, 1]))
    assert not rules.counted(SETTINGS, current, step, np.array([1, 1, 1, 2]))
    assert rules.counted(SETTINGS, current, None, np.array([-5, -5, 0, 0]))  # round 1: no step


def record(round_number: int, scores: list[int | None], roles: list[str]) -> dict[str, Any]:
    return {"round": round_number, "roles": roles, "scores": {"progress": scores}}


def test_summary_counts_a_tie_with_the_best_honest_client_as_outscoring_every_one() -> None:
    roles = ["attacker", "honest", "honest", "honest"]
    result = {
        "rounds": [
            record(1, [9000, 1, 2, 3], roles),  # round 1 is not judged
            record(2, [3, 1, 2, 3], roles),  # ties the best: any tiers pay it as much
            record(3, [2, 1, 2, 3], roles),  # the median honest, not the best
            record(4, [1, 1, 2, 3], roles),
            record(5, [None, 1, 2, 3], roles),  # unpaid
        ]
    }
    summary = rules.summarize(result, "progress")
    assert summary == {"paid": [2, 3, 4], "beats_all": [2], "beats_median": [2, 3]}


def test_verdict_names_each_attack_that_outscores_every_honest_client_or_costs_accuracy() -> None:
    runs = [
        {"aggregator": "mean", "rule": "progress", "strategy": "sybils", "beats_all": [3],
         "vs_clean_pp": -1.01},
        {"aggregator": "mean", "rule": "progress", "strategy": "stale", "beats_all": [],
         "vs_clean_pp": -1.0},
    ]  # fmt: skip
    rows = rules.verdict([{"partition": "iid", "runs": runs}])
    row = next(r for r in rows if r["aggregator"] == "mean" and r["rule"] == "progress")
    assert row["outscore_every_honest"] == ["iid/sybils"]
    assert row["accuracy_off_by_more_than_1pp"] == ["iid/sybils"]  # exactly 1 pp is within
    other = next(r for r in rows if r["aggregator"] == "median" and r["rule"] == "progress")
    assert other["outscore_every_honest"] == []
    assert other["accuracy_off_by_more_than_1pp"] == []


def test_noisy_sybils_share_the_push_and_differ_by_their_own_noise() -> None:
    direction = push_direction(7850, 10)
    push = Sybil(
        direction=direction, size=lambda r: 100_000, fmt=FMT, num_weights=7850, sample_count=500
    )
    members = [
        rules.NoisySybil(push=push, seed=s, fmt=FMT, num_weights=7850, sample_count=500)
        for s in (1, 2)
    ]
    current = np.zeros(7850, dtype=np.int64)
    first, second = (m.craft(current, 2) for m in members)
    assert not np.array_equal(first, second)
    shared = push.craft(current, 2)
    # Each one's noise (its update less the push) has the honest size, within the clipping.
    for update in (first, second):
        assert abs(int(np.abs(update - shared).sum()) - 100_000) <= 2_000


@pytest.mark.slow
def test_two_rounds_on_mnist_give_the_contracts_mean_and_score_every_paid_update(
    tmp_path: Path,
) -> None:
    fl = load_config().fl.with_overrides(dataset="mnist5k", clients=10, rounds=2)
    ctx = make_context(fl, "iid")
    warm_up(ctx)
    trace: list[Any] = []
    result = rules.run(
        ctx, "sybils", "mean", "progress", SETTINGS, rounds=2, size=lambda r: 150_000, trace=trace
    )
    assert [r["round"] for r in result["rounds"]] == [1, 2]
    first = result["rounds"][0]
    assert first["roles"][:3] == ["sybils"] * 3
    assert set(first["roles"][3:]) == {"honest"}
    assert all(first["counted"])  # round 1: no step, no bound set
    for scores in first["scores"].values():
        assert all(isinstance(s, int) for s in scores)
    assert 0.0 < result["accuracy"] <= 100.0
    # The mean is the contract's (the share-capped sample-weighted average of the reference).
    for model, updates, samples, new in trace:
        expected = integer_average(updates, capped_weights(samples, 1000))
        assert np.array_equal(new, expected)
        assert not np.array_equal(new, model)
    # Round 2 starts from round 1's new model, and scores by its step.
    assert np.array_equal(trace[1][0], trace[0][3])
    paid = [i for i, s in enumerate(result["rounds"][1]["scores"]["progress"]) if s is not None]
    for i in paid:
        model, updates, _, new = trace[1]
        assert result["rounds"][1]["scores"]["progress"][i] == rules.progress_bps(
            model, new, updates[i]
        )


@pytest.mark.slow
def test_trimmed_guarded_leaves_an_update_under_the_free_rider_guard_out_of_the_mean() -> None:
    fl = load_config().fl.with_overrides(dataset="mnist5k", clients=10, rounds=1)
    ctx = make_context(fl, "iid")
    warm_up(ctx)
    guarded = replace(SETTINGS, min_reward_distance=1)  # an update that moved at all passes
    traces: dict[str, list[Any]] = {}
    for aggregator in ("trimmed", "trimmed_guarded"):
        traces[aggregator] = []
        rules.run(
            ctx, "stale", aggregator, "progress", guarded, rounds=1, size=lambda r: 0,
            trace=traces[aggregator],
        )  # fmt: skip
    model, updates, _, new = traces["trimmed_guarded"][0]
    # Round 1: the stale resubmitter sends the model it was given, 0 from it.
    assert np.array_equal(updates[0], model)
    assert np.array_equal(new, trimmed_average(updates[1:], 3))
    _, same_updates, _, averaged_in = traces["trimmed"][0]
    assert np.array_equal(averaged_in, trimmed_average(same_updates, 3))
    assert not np.array_equal(averaged_in, new)


def test_predictor_moves_along_the_last_step_by_an_honest_size_and_stays_put_in_round_one() -> None:
    predictor = rules.Predictor(size=lambda r: 40, fmt=FMT, num_weights=4, sample_count=10)
    first = np.array([0, 0, 0, 0], dtype=np.int64)
    assert np.array_equal(predictor.fit(first / 1024, round_number=1).weights, first / 1024)
    second = np.array([2, -1, 0, 1], dtype=np.int64)
    sent = quantize(predictor.fit(second / 1024, round_number=2).weights, FMT).values
    move = sent - second
    assert int(np.abs(move).sum()) == 40
    # The last step was `second - first`: the predictor continues it, on the weights it moved
    # only (a move of the weight it left alone would count against it at the direction guard).
    assert move[0] > 0
    assert move[1] < 0
    assert move[2] == 0
    assert move[3] > 0


def test_masked_copycat_moves_the_copy_along_the_last_step_by_the_public_median_distance() -> None:
    # Prepare: two rounds revealed, the copied update is round 2's best paid.
    board = PublicBoard()
    round_1 = [np.array([10, 0, 0, 0]), np.array([0, 10, 0, 0]), np.array([0, 0, 0, 4])]
    board.revealed[1] = [(5, round_1[0]), (3, round_1[1]), (1, round_1[2])]
    best = np.array([12, 1, 0, 0])
    board.revealed[2] = [(7, best), (2, np.array([0, 30, 0, 0])), (2, np.array([0, 0, 7, 0]))]
    copycat = Copycat(board=board, fmt=FMT, num_weights=4, sample_count=10)
    masked = rules.MaskedCopycat(
        copycat=copycat, board=board, fmt=FMT, num_weights=4, sample_count=10
    )
    first = np.array([0, 0, 0, 0], dtype=np.int64)
    second = np.array([3, -2, 0, 0], dtype=np.int64)
    # Execute / Assert: round 1, nothing public: the model as it is
    assert np.array_equal(masked.fit(first / 1024, round_number=1).weights, first / 1024)
    # Round 2 knows one round: the distances between two of round 1's are 20, 14 and 14.
    assert masked.margin(2) == 14
    # Round 3: round 2's updates lie 3, 20 and 11 from the nearest of round 1's.
    assert masked.margin(3) == 11
    sent = quantize(masked.fit(second / 1024, round_number=3).weights, FMT).values
    move = sent - best
    assert int(np.abs(move).sum()) == 11
    # Along the last step (`second - first`), on the weights it moved only.
    assert move[0] >= 0
    assert move[1] <= 0
    assert move[2] == move[3] == 0
    assert rules.nearest_distance(sent, [u for _, u in board.revealed[2]]) == 11
