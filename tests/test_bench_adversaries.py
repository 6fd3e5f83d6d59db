"""The adversaries benchmark (bench/adversaries.py): its poisoners, the thresholds it sets from the
clean run, the summaries it reports, and a reduced end-to-end run on anvil. (The reward rule's
attackers are bench/incentives.py's: tests/test_incentives.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.adversaries import (
    ATTACKS,
    FIXED_SETTINGS,
    NO_DEFENCE,
    Attacker,
    RandomUpdate,
    alignment_summary,
    calibrate,
    distance_summary,
    lean,
    main,
)
from fl_client.codec import quantize
from fl_client.config import ALIGNMENT_OFF, FixedPointFormat
from fl_client.trainer import FitResult

FMT = FixedPointFormat(scale=1024, max_abs=3000)


class FixedTrainer:
    """A trainer that returns the global model plus one, and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    @property
    def num_samples(self) -> int:
        return 7

    @property
    def num_weights(self) -> int:
        return 4

    def fit(self, global_weights: np.ndarray, *, round_number: int) -> FitResult:
        self.calls += 1
        return FitResult(global_weights + 1.0, 0.5)


@pytest.mark.parametrize(("name", "k"), ATTACKS)
def test_an_attacker_trains_then_scales_its_step(name: str, k: float) -> None:
    trainer = FixedTrainer()
    attacker = Attacker(trainer, k)
    start = np.array([0.5, -1.0, 2.0, 0.0])
    fit = attacker.fit(start, round_number=3)
    assert trainer.calls == 1  # it trains like an honest client
    assert np.allclose(fit.weights, start + k)  # global + k x (trained - global)
    assert fit.loss == 0.5
    assert attacker.num_samples == 7  # it declares the honest count
    assert attacker.num_weights == 4


def test_the_gas_workload_is_seeded_in_range_and_exact_in_fixed_point() -> None:
    def update(client: int, round_number: int) -> np.ndarray:
        trainer = RandomUpdate(client=client, num_weights=500, fmt=FMT, seed=0)
        return trainer.fit(np.zeros(500), round_number=round_number).weights

    first = update(0, 1)
    assert np.array_equal(first, update(0, 1))  # seeded: the same twice
    assert not np.array_equal(first, update(1, 1))  # per client
    assert not np.array_equal(first, update(0, 2))  # and per round
    values = quantize(first, FMT).values
    assert np.abs(values).max() <= FMT.max_abs
    assert np.allclose(values / FMT.scale, first)  # the float weights quantize exactly
    assert RandomUpdate(client=0, num_weights=500, fmt=FMT, seed=0).num_samples == 100


def clean_record(distances: list[list[int]], models: list[list[int]]) -> dict[str, Any]:
    """A clean run's record: per round the honest clients' distances, and the global models."""
    return {
        "num_weights": len(models[0]),
        "models": models,
        "rounds": [
            {
                "round": number,
                "members": [
                    {"role": "honest", "distance": d, "alignment": None} for d in round_distances
                ],
                "weights_step_left_alone": None,
            }
            for number, round_distances in enumerate(distances, start=1)
        ],
    }


def test_the_thresholds_come_from_the_clean_run() -> None:
    # 4 weights; the largest honest distance 420, 105 per weight: x 1.5 = 157.5, so the bound is
    # the next multiple of the tier step 32, 160 per weight (640 over the model).
    models = [[0, 0, 0, 0], [10, -4, 0, 2], [14, -10, 1, 2]]
    clean = clean_record([[400, 420, 380], [100, 90, 120]], models)
    calibration = calibrate(clean, tier_step=32, rounds=2)
    assert calibration.bound_per_weight == 160
    assert calibration.max_counted_distance == 640
    assert calibration.max_step == 15  # 1.5 x 10, the largest move of one weight in one round
    assert calibration.max_drift == 21  # 1.5 x 14, the largest move from the initial model
    assert calibration.drift_window == 2
    # A largest distance on a multiple of the step: 1.5 x 64 = 96 is the bound itself.
    exact = calibrate(clean_record([[256]], models[:2]), tier_step=32, rounds=1)
    assert exact.bound_per_weight == 96


def test_the_five_columns_turn_on_what_they_name() -> None:
    clean = clean_record([[400]], [[0, 0, 0, 0], [10, -4, 0, 2]])
    columns = {d.name: d for d in calibrate(clean, tier_step=32, rounds=1).defences()}
    assert list(columns) == ["none", "bound", "bound + guard", "step bounds", "all"]
    assert columns["none"] == NO_DEFENCE
    assert columns["none"].min_alignment_bps == ALIGNMENT_OFF
    bound, guarded = columns["bound"], columns["bound + guard"]
    assert bound.max_counted_distance == guarded.max_counted_distance == 640
    assert bound.min_alignment_bps == ALIGNMENT_OFF
    assert guarded.min_alignment_bps == 0
    assert (bound.max_step, guarded.max_step) == (0, 0)
    steps = columns["step bounds"]
    assert (steps.max_step, steps.max_drift, steps.drift_window) == (15, 15, 1)
    assert steps.max_counted_distance == 0
    assert steps.min_alignment_bps == ALIGNMENT_OFF
    described = columns["all"].describe()
    assert described["maxCountedDistance"] == 640
    assert described["minAlignment"] == 0
    assert (described["maxStep"], described["maxDrift"], described["driftWindow"]) == (15, 15, 1)
    # Whatever the column, the plain mean and the seed paper's reward rule, nothing else on.
    for column in columns.values():
        assert {key: column.describe()[key] for key in FIXED_SETTINGS} == {
            "aggregation": "mean",
            "rewardReference": "current",
            "mode": "plain",
            "minRewardDistance": 0,
            "maxShareBps": 0,
        }


def test_the_summaries_split_roles_and_skip_round_1s_alignment() -> None:
    run = {
        "num_weights": 10,
        "rounds": [
            {
                "round": 1,
                "weights_step_left_alone": None,
                "members": [
                    {"role": "honest", "distance": 100, "alignment": None},
                    {"role": "honest", "distance": 300, "alignment": None},
                    {"role": "attacker", "distance": 5_000, "alignment": None},
                ],
            },
            {
                "round": 2,
                "weights_step_left_alone": 3,
                "members": [
                    {"role": "honest", "distance": 50, "alignment": 0.5},
                    {"role": "honest", "distance": 70, "alignment": 0.25},
                    {"role": "honest", "distance": 90, "alignment": None},  # moved nothing
                    {"role": "attacker", "distance": 4_000, "alignment": -1.0},
                ],
            },
        ],
        "models": [[0]],
    }
    assert distance_summary(run, "honest") == [
        {"round": 1, "min": 10.0, "median": 20.0, "max": 30.0},
        {"round": 2, "min": 5.0, "median": 7.0, "max": 9.0},
    ]
    assert [r["max"] for r in distance_summary(run, "attacker")] == [500.0, 400.0]
    assert alignment_summary(run) == [
        {"round": 2, "min": 0.25, "median": 0.375, "max": 0.5, "weights_step_left_alone": 3}
    ]
    assert alignment_summary(run, "attacker")[0]["min"] == -1.0
    assert "models" not in lean(run)
    assert lean(run)["rounds"] is run["rounds"]


@pytest.mark.slow
@pytest.mark.anvil
def test_a_reduced_run_measures_every_attack_under_every_defence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """4 clients (1 attacker), 2 poisoning rounds and 2 long rounds on digits, no gas part: the
    whole table and its report, rewritten the same from the JSON."""
    monkeypatch.setenv("FL_STATE_DIR", str(tmp_path / "state"))
    arguments = ["--rounds", "2", "--long-rounds", "2", "--clients", "4", "--attackers", "1"]
    status = main([*arguments, "--skip-gas", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "adversaries.json").read_text(encoding="utf-8"))
    assert "reward_rule" not in report
    assert "commit_reveal_gas" not in report
    p = report["poisoning"]
    assert p["attackers"] == [0]
    assert [a["attack"] for a in p["attacks"]] == [name for name, _ in ATTACKS]
    assert list(p["defences"]) == ["none", "bound", "bound + guard", "step bounds", "all"]
    assert set(p["clean_with_defences"]) == {"bound", "bound + guard", "step bounds", "all"}
    for attack in p["attacks"]:
        none = attack["runs"]["none"]
        assert none["attacker_submissions_counted"] == 2  # nothing on: every attack counts
        for run in attack["runs"].values():
            assert len(run["accuracy_by_round"]) == 2
            assert "models" not in run
    # Ten times an honest step lies beyond a bound at 1.5 x the largest honest distance.
    flipped_x10 = next(a for a in p["attacks"] if a["k"] == -10)
    assert flipped_x10["runs"]["bound"]["attacker_submissions_counted"] == 0
    assert flipped_x10["runs"]["bound"]["rewards_wei"]["attackers"] == 0
    # The guard turns a sign-flipped step away from round 2 on (round 1 has no step).
    flipped = next(a for a in p["attacks"] if a["k"] == -1)
    assert flipped["runs"]["bound + guard"]["attacker_submissions_counted"] == 1
    assert [r["round"] for r in flipped["attacker_alignment"]] == [2]
    assert flipped["attacker_alignment"][0]["max"] < 0
    assert [r["partition"] for r in report["long_runs"]] == ["iid", "dirichlet"]
    assert not report["contracts_changed_during_run"]
    attacks_ok = all(a["within_bar_all"] and a["within_bar_bound_guard"] for a in p["attacks"])
    honest_ok = all(r["honest_submissions_left_out"] == 0 for r in report["long_runs"])
    assert status == (0 if attacks_ok and honest_ok else 1)
    text = (tmp_path / "adversaries.md").read_text(encoding="utf-8")
    assert "| sign-flipped x10 | -10 |" in text
    assert "`bench.incentives`" in text
    assert "### The reward rule" not in text
    assert main(["--render-only", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "adversaries.md").read_text(encoding="utf-8") == text
