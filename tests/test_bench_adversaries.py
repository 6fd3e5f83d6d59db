"""The adversaries benchmark (bench/adversaries.py): its strategies against the reward rule, the
bar it records, and a reduced end-to-end run on anvil."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.adversaries import (
    MAX_SAMPLES,
    RECOMMENDED,
    Calibration,
    FreeRider,
    NoiseSubmitter,
    PublicBoard,
    Recorded,
    RevealCopycat,
    RewardCalibration,
    SameRoundCopycat,
    SampleInflater,
    StaleModel,
    Sybil,
    calibrate_rewards,
    exact_l1,
    push_direction,
    reward_markdown,
    reward_rule,
    reward_table,
)
from fl_client.codec import pack, quantize
from fl_client.config import FixedPointFormat, load_config
from fl_client.participant import RoundOutcome
from fl_client.trainer import FitResult

FMT = FixedPointFormat(scale=1024, max_abs=3000)


def quantized(fit: FitResult) -> np.ndarray:
    return np.asarray(quantize(fit.weights, FMT).values, dtype=np.int64)


def as_float(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64) / FMT.scale


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


def test_the_free_rider_moves_exactly_the_guard_along_the_last_step() -> None:
    rider = FreeRider(guard=7, fmt=FMT, num_weights=5, sample_count=3)
    first = np.array([0, 0, 0, 0, 0])
    sent = quantized(rider.fit(as_float(first), round_number=1))
    assert int(np.abs(sent - first).sum()) == 7  # round 1: no step, the first weights up
    assert np.all(sent >= first)
    second = np.array([4, -2, 0, 0, 1])  # the last step moved weights 0, 1 and 4
    sent = quantized(rider.fit(as_float(second), round_number=2))
    moved = sent - second
    assert int(np.abs(moved).sum()) == 7  # exactly the guard: the strict `<` lets it through
    assert list(moved[[2, 3]]) == [0, 0]  # nothing on weights the step left alone
    assert np.all(np.sign(moved[[0, 1, 4]]) == np.sign(second - first)[[0, 1, 4]])
    assert rider.num_samples == 3


def test_the_stale_model_sends_the_previous_global_model() -> None:
    stale = StaleModel(fmt=FMT, num_weights=3, sample_count=1)
    first, second = np.array([1, 2, 3]), np.array([5, 5, 5])
    assert list(quantized(stale.fit(as_float(first), round_number=1))) == [1, 2, 3]
    assert list(quantized(stale.fit(as_float(second), round_number=2))) == [1, 2, 3]


@pytest.mark.parametrize("size", [1, 17, 650, 5_000])
def test_exact_l1_has_exactly_the_requested_norm(size: int) -> None:
    rng = np.random.default_rng(size)
    values = exact_l1(rng.standard_normal(650), size, rng)
    assert int(np.abs(values).sum()) == size
    assert not exact_l1(np.zeros(4), 10, rng).any()


def test_noise_and_sybils_move_a_typical_honest_distance() -> None:
    current = np.zeros(650, dtype=np.int64)
    noise = NoiseSubmitter(size=lambda r: 100 * r, seed=0, fmt=FMT, num_weights=650, sample_count=1)
    sent = quantized(noise.fit(as_float(current), round_number=3))
    assert int(np.abs(sent).sum()) == 300
    direction = push_direction(650, 10)
    assert direction[0] == 1.0
    assert direction[640] == 1.0
    assert direction[64] == pytest.approx(-1 / 9)  # class 1's first weight
    sybils = [
        Sybil(direction=direction, size=lambda r: 500, fmt=FMT, num_weights=650, sample_count=1)
        for _ in range(3)
    ]
    moves = [quantized(s.fit(as_float(current), round_number=2)) for s in sybils]
    assert all(np.array_equal(moves[0], m) for m in moves)  # they collude: one move
    assert int(np.abs(moves[0]).sum()) == 500
    assert moves[0][:64].sum() > 0 > moves[0][64:640].sum()


def test_the_inflater_trains_and_declares_the_most_samples() -> None:
    trainer = FixedTrainer()
    inflater = SampleInflater(trainer, MAX_SAMPLES)
    fit = inflater.fit(np.zeros(4), round_number=1)
    assert trainer.calls == 1
    assert list(fit.weights) == [1.0] * 4
    assert inflater.num_samples == 65_535


def test_the_same_round_copycat_sends_its_victims_words() -> None:
    trainer = FixedTrainer()
    victim = Recorded(trainer)
    copycat = SameRoundCopycat(victim)
    honest = victim.fit(np.zeros(4), round_number=1)
    copied = copycat.fit(np.full(4, 9.0), round_number=1)
    assert np.array_equal(copied.weights, honest.weights)
    assert trainer.calls == 1  # copied, not trained
    assert copycat.num_samples == victim.num_samples == 7
    copycat.fit(np.zeros(4), round_number=2)  # the victim has not sent yet: it recomputes
    assert trainer.calls == 2


def outcome(client: int, reward: int, words: tuple[int, ...]) -> RoundOutcome:
    return RoundOutcome(
        round_number=1,
        client_id=client,
        account=f"0x{client:040x}",
        path="commit_reveal",
        sample_count=1,
        train_loss=math.nan,
        clipped=0,
        distance=0,
        tier=0,
        reward_wei=reward,
        counted=True,
        relayed=False,
        gas_used=0,
        closed_round=False,
        words=words,
    )


def test_the_commit_reveal_copycat_copies_only_the_previous_rounds_best_reveal() -> None:
    board = PublicBoard()
    copycat = RevealCopycat(board=board, fmt=FMT, num_weights=2, sample_count=1)
    current = np.array([3, 4])
    assert list(quantized(copycat.fit(as_float(current), round_number=1))) == [3, 4]
    low, high = tuple(pack([1, 1])), tuple(pack([7, -7]))
    board.post(1, [outcome(0, 10, low), outcome(1, 50, high)], 2)
    assert list(quantized(copycat.fit(as_float(current), round_number=2))) == [7, -7]
    assert board.best_of(2) is None


def run_record(rewards: list[list[tuple[str, int]]]) -> dict[str, Any]:
    return {
        "rounds": [
            {
                "round": number,
                "members": [
                    {
                        "role": role,
                        "reward_wei": reward,
                        "counted": reward > 0,
                        "distance_current": 1,
                        "distance_new": 1,
                    }
                    for role, reward in members
                ],
            }
            for number, members in enumerate(rewards, start=1)
        ]
    }


def test_the_bar_asks_strictly_less_after_the_first_round_and_in_total() -> None:
    # Round 1: the free rider is paid, the honest clients not; later it earns less.
    record = run_record(
        [
            [("honest", 0), ("honest", 0), ("free_rider", 10)],
            [("honest", 100), ("honest", 50), ("free_rider", 10)],
            [("honest", 100), ("honest", 100), ("free_rider", 0)],
        ]
    )
    table = reward_table(record, "free_rider")
    assert [r["relative"] for r in table["rounds"]] == [None, round(10 / 75, 3), 0.0]
    assert table["strategy_total_wei"] == 20
    assert table["honest_mean_total_wei"] == 175
    assert table["rounds_honest_unpaid"] == [1]
    assert table["bar_total"]
    assert table["bar_every_round_after_first"]
    assert table["counted"] == 2
    assert table["submissions"] == 3
    # Equal pay in a later round misses it for a strategy that does not train...
    tied = reward_table(
        run_record([[("honest", 5), ("stale", 0)], [("honest", 5), ("stale", 5)]]), "stale"
    )
    assert tied["bar_total"]
    assert not tied["bar_every_round_after_first"]
    # ...and meets it for the inflater, which trains: it must only not be paid more.
    inflated = reward_table(
        run_record([[("honest", 5), ("inflater", 5)], [("honest", 5), ("inflater", 5)]]),
        "inflater",
    )
    assert inflated["bar_total"]
    assert inflated["bar_every_round_after_first"]
    # Given what the same client earned training honestly, the inflater is held to that.
    held = reward_table(
        run_record([[("honest", 5), ("inflater", 5)], [("honest", 5), ("inflater", 6)]]),
        "inflater",
        [5, 4],
    )
    assert [r["reference_wei"] for r in held["rounds"]] == [5, 4]
    assert held["relative_total"] == round(11 / 9, 3)
    assert not held["bar_total"]
    assert not held["bar_every_round_after_first"]
    assert held["honest_mean_total_wei"] == 10
    # A strategy that does not train is always held to the honest mean of its run.
    assert reward_table(run_record([[("honest", 5), ("noise", 4)]]), "noise", [1])["bar_total"]
    # The Sybils' reward is their mean.
    sybils = reward_table(
        run_record([[("honest", 6), ("sybils", 0), ("sybils", 3), ("sybils", 6)]]), "sybils"
    )
    assert sybils["rounds"][0]["strategy_wei"] == 3
    assert sybils["rounds"][0]["relative"] == 0.5


def test_the_guard_lets_every_honest_update_of_the_pilot_through() -> None:
    models = [np.zeros(4, dtype=np.int64), np.full(4, 10), np.full(4, 14)]
    pilot = {
        "num_weights": 4,
        "models": [m.tolist() for m in models],
        "rounds": [
            {
                "members": [
                    {"role": "honest", "distance": d, "distance_current": d, "distance_new": n}
                    for d, n in ((40, 9), (44, 12), (48, 30))
                ]
            },
            {
                "members": [
                    {"role": "honest", "distance": d, "distance_current": d, "distance_new": n}
                    for d, n in ((16, 5), (20, 6), (30, 8))
                ]
            },
        ],
    }
    calibration = calibrate_rewards(pilot, tier_step=32, rounds=2)
    assert calibration.guard == int(0.9 * 5)  # the nearest honest distance, from the new model
    assert calibration.sizes == (44, 20)
    assert calibration.size(1) == 44
    assert calibration.size(7) == 20
    assert calibration.defences.max_step == 15  # 1.5 x the largest per-weight step
    columns = {c.name: c for c in calibration.columns(clients=10)}
    assert list(columns) == ["current", "current + defences", "aggregate", RECOMMENDED]
    assert all(c.min_reward_distance == calibration.guard for c in columns.values())
    assert all(c.aggregation == "sample_weighted" for c in columns.values())
    recommended = columns[RECOMMENDED]
    assert recommended.reward_reference == "aggregate"
    assert recommended.max_share_bps == 1_000
    assert recommended.min_alignment_bps == 0
    assert columns["current"].max_counted_distance == 0
    assert columns["current"].reward_reference == "current"


def test_a_reward_calibration_names_its_thresholds() -> None:
    calibration = RewardCalibration(
        guard=3,
        sizes=(10,),
        defences=Calibration(
            bound_per_weight=32, max_counted_distance=128, max_step=2, max_drift=4, drift_window=2
        ),
    )
    described = calibration.columns(clients=4)[1].describe()
    assert described["minRewardDistance"] == 3
    assert described["maxCountedDistance"] == 128
    assert described["maxShareBps"] == 2_500
    assert described["rewardReference"] == "current"


@pytest.mark.slow
@pytest.mark.anvil
def test_the_free_rider_is_paid_more_than_honest_under_the_seed_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2 rounds, 10 clients on digits: the seed's `current` rule pays the free rider at the guard
    more than honest training; measured from the round's new model it earns less."""
    from bench.common import anvil_node
    from fl_client.chain import connect

    monkeypatch.setenv("FL_STATE_DIR", str(tmp_path / "state"))
    fl = load_config().fl.with_overrides(dataset="digits", seed=0)
    with anvil_node(accounts=22) as node:
        chain = connect("anvil", url=node.url)
        report = reward_rule(
            chain, fl, rounds=2, clients=10, strategies=["free_rider"], log=lambda _: None
        )
    runs = report["runs"]["free_rider"]
    assert set(runs) == {"current", "current + defences", "aggregate", RECOMMENDED}
    seed = runs["current"]
    assert seed["counted"] == 2  # it passes the guard: counted and paid
    assert seed["strategy_total_wei"] > seed["honest_mean_total_wei"]
    assert not seed["bar_total"]
    aggregate = runs["aggregate"]
    assert aggregate["strategy_total_wei"] < aggregate["honest_mean_total_wei"]
    for record in runs.values():
        assert record["within_accuracy_bar"]
        assert record["honest_submissions_excluded"] == 0
    assert report["calibration"]["minRewardDistance"] > 0
    text = "\n".join(reward_markdown(report))
    assert "| free_rider |" in text
