"""The incentive bar across data splits (bench/incentive_seeds.py): the attacker's seats left
empty for the honest-alone baseline, the seats each strategy takes, the near-copy ratio, the
summary's bar at exactly 1 pp, a short real run (MNIST 5k, IID, two rounds) whose gaps are its
own accuracies' differences, and seed 0 replaying the chain's recorded runs exactly."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict
from typing import Any

import numpy as np
import pytest

from bench import incentive_rules as rules
from bench import incentive_seeds as seeds
from bench.incentives import calibrate, make_context, warm_up
from fl_client.aggregation import trimmed_average
from fl_client.config import load_config
from tests.test_bench_incentive_rules import SETTINGS  # one ladder, no guards or bounds


def row(seed: int, strategy: str, vs_ten: float, vs_alone: float, **extra: Any) -> dict[str, Any]:
    return {
        "partition": "dirichlet",
        "seed": seed,
        "aggregator": "trimmed",
        "strategy": strategy,
        "vs_ten_pp": vs_ten,
        "vs_alone_pp": vs_alone,
        "vs_alone_last_3_pp": extra.get("last_3", vs_alone),
        "beats_all": extra.get("beats_all", []),
        "relative_reward_total": extra.get("total", 0.5),
        "worst_relative_reward_after_round_1": extra.get("worst", 0.9),
        "reward_bar": extra.get("reward_bar", True),
        "near_copy_fixed": extra.get("near_copy"),
        "near_copy_by_round": extra.get("near_copy"),
    }


def test_the_sybils_take_three_seats_and_every_other_attacker_one() -> None:
    assert seeds.seats("sybils") == 3
    assert seeds.seats("sybils_noisy") == 3
    for strategy in (
        "free_rider",
        "predictor",
        "stale",
        "noise",
        "copycat",
        "copycat_paid",
        "copycat_masked",
    ):
        assert seeds.seats(strategy) == 1


def test_summary_lists_a_seed_only_beyond_one_pp_below_each_baseline() -> None:
    rows = [
        row(0, "copycat", -1.0, -1.0, near_copy=0.0),  # exactly on the bar: within it
        row(1, "copycat", -1.01, -0.2, last_3=-0.5, near_copy=1.5),
        row(2, "copycat", -2.5, -1.5, beats_all=[3, 4], worst="inf", reward_bar=False),
        row(0, "stale", -1.8, 0.0, total=None, worst=None),
    ]
    by_strategy = {s["strategy"]: s for s in seeds.summary(rows)}
    copycat = by_strategy["copycat"]
    assert copycat["seeds"] == [0, 1, 2]
    assert copycat["below_ten"] == [1, 2]
    assert copycat["below_alone"] == [2]
    assert copycat["worst_vs_ten_pp"] == -2.5
    assert copycat["mean_vs_ten_pp"] == pytest.approx(-1.5, abs=0.01)
    assert copycat["worst_vs_alone_pp"] == -1.5
    assert copycat["mean_vs_alone_pp"] == pytest.approx(-0.9, abs=0.01)
    assert copycat["worst_vs_alone_last_3_pp"] == -1.5
    assert copycat["outscores_all"] == [2]
    assert copycat["reward_bar_fails"] == [2]
    assert copycat["worst_relative_reward_total"] == 0.5
    assert copycat["worst_relative_reward_after_round_1"] == "inf"  # only the copycat was paid
    assert copycat["lowest_near_copy_fixed"] == 0.0  # seed 2's run has none
    assert copycat["lowest_near_copy_by_round"] == 0.0
    stale = by_strategy["stale"]
    assert stale["lowest_near_copy_fixed"] is None
    assert stale["below_ten"] == [0]
    assert stale["below_alone"] == []
    assert stale["reward_bar_fails"] == []
    assert stale["worst_relative_reward_total"] is None  # nobody was paid
    table = seeds.markdown(
        {
            "command": seeds.COMMAND,
            "seconds": 60.0,
            "machine": {"cpus": 2},
            "seeds": [0, 1, 2],
            "rounds": 10,
            "summary": seeds.summary(rows),
            "runs": [{**r, "clean": 90.0, "alone": 89.0, "accuracy": 88.0} for r in rows],
        }
    )
    assert (
        "| dirichlet | trimmed | copycat | 1 2 | -2.5 / -1.5 | 2 | -1.5 / -0.9 | -1.5 | 2 "
        "| 0.5 / inf | 2 | 0.0 / 0.0 |" in table
    )
    assert (
        "| dirichlet | trimmed | stale | 0 | -1.8 / -1.8 | none | +0.0 / +0.0 | +0.0 | none "
        "| - / - | none | - / - |" in table
    )


@pytest.mark.slow
def test_empty_seats_are_left_out_of_the_average_and_unscored() -> None:
    fl = load_config().fl.with_overrides(dataset="mnist5k", clients=10, rounds=1)
    ctx = make_context(fl, "iid")
    warm_up(ctx)
    trace: list[Any] = []
    result = rules.run(
        ctx, "absent_3", "trimmed", "progress", SETTINGS, rounds=1, size=lambda r: 0, trace=trace
    )
    record = result["rounds"][0]
    assert record["roles"] == ["absent"] * 3 + ["honest"] * 7
    assert record["counted"] == [False] * 3 + [True] * 7
    assert record["scores"]["progress"][:3] == [None] * 3
    assert all(isinstance(s, int) for s in record["scores"]["progress"][3:])
    model, updates, _, new = trace[0]
    # The seven honest clients alone: three cut at each end leaves one value of each weight.
    assert np.array_equal(new, trimmed_average(updates[3:], 3))
    assert not np.array_equal(new, trimmed_average(updates, 3))
    assert not np.array_equal(new, model)


@pytest.mark.slow
def test_a_short_run_measures_each_attack_against_both_baselines() -> None:
    logged: list[str] = []
    split = seeds.seed_report(
        "iid", 1, SETTINGS, aggregators=("trimmed",), rounds=2, log=logged.append
    )
    assert split["settings"] == asdict(SETTINGS)
    rows = split["runs"]
    assert [r["strategy"] for r in rows] == list(seeds.STRATEGIES)
    for r in rows:
        assert r["seed"] == 1
        assert r["vs_ten_pp"] == pytest.approx(r["accuracy"] - r["clean"], abs=0.005)
        assert r["vs_alone_pp"] == pytest.approx(r["accuracy"] - r["alone"], abs=0.005)
    alone = {r["strategy"]: r["alone"] for r in rows}
    # One empty seat is one baseline, three another: each attacker is measured against its own.
    assert alone["free_rider"] == alone["copycat"] == alone["stale"]
    assert alone["sybils"] == alone["sybils_noisy"]
    assert any("seat(s) empty" in line for line in logged)
    # The rewards are the progress tiers of the paid seats: an attacker that is never paid has
    # a total of 0 or, when nobody was paid either, none; a ratio is never negative.
    for r in rows:
        assert (
            r["relative_reward_total"] is None
            or r["relative_reward_total"] == "inf"
            or (r["relative_reward_total"] >= 0)
        )
        assert isinstance(r["reward_bar"], bool)


@pytest.mark.slow
def test_seed_0_replays_the_chains_recommended_dirichlet_runs_exactly() -> None:
    """The offline rounds are the chain's: on seed 0 the offline pilot calibrates the settings
    ``bench.incentives`` recorded, and the free rider's and the paid copycat's final accuracy
    and rewards equal what it recorded on anvil."""
    recorded = json.loads((seeds.RESULTS / "incentives.json").read_text(encoding="utf-8"))
    part = next(p for p in recorded["partitions"] if p["partition"] == "dirichlet")
    on_chain = {
        a["strategy"]: a
        for a in part["attacks"]
        if (a["reference"], a["bounds"]) == ("progress", "trimmed")
    }
    settings = rules.settings_from_report(part["settings"])
    fl = load_config().fl.with_overrides(dataset="mnist5k", clients=10, rounds=10, seed=0)
    ctx = make_context(fl, "dirichlet")
    warm_up(ctx)
    # The pilot played offline calibrates exactly the settings the chain's pilot gave.
    calibrated, _ = calibrate(seeds.offline_pilot(ctx, "dirichlet", 10), 10)
    assert calibrated == settings
    clean = rules.run(ctx, "honest", "mean", "progress", settings, rounds=10, size=lambda r: 0)
    typical = [int(statistics.median(d)) for d in clean["honest_distances"]]
    for offline, chain_name in (("free_rider", "free_rider"), ("copycat_paid", "copycat")):
        trace: list[Any] = []
        result = rules.run(
            ctx, offline, "trimmed", "progress", settings, rounds=10,
            size=lambda r: typical[min(r, len(typical)) - 1], trace=trace,
        )  # fmt: skip
        result["rewards"] = seeds.paid_rewards(settings, result, trace)
        chain = on_chain[chain_name]
        assert result["accuracy"] == pytest.approx(100 * chain["final_accuracy"], abs=1e-9)
        bar = seeds.reward_bar(result)
        assert bar["relative_reward_total"] == chain["relative_reward_total"]
        assert (
            bar["worst_relative_reward_after_round_1"]
            == (chain["worst_relative_reward_after_round_1"])
        )
        assert bar["reward_bar"] == chain["reward_bar"]


def test_near_copy_ratios_set_the_attackers_nearest_distance_against_the_honest_smallest() -> None:
    def step(*updates: list[int]) -> tuple[Any, list[np.ndarray], Any, Any]:
        return (None, [np.array(u) for u in updates], None, None)

    roles = ["copycat", "honest", "honest", "absent"]
    trace = [
        step([0, 0], [10, 0], [0, 10], [99, 99]),
        # Round 2: the copy lies 1 from round 1's [10, 0], the honest clients 4 and 8 from
        # theirs. The absent seat's vector counts neither as an update nor as one to copy.
        step([10, 1], [10, 4], [8, 10], [99, 98]),
        # Round 3: the attacker 22 from [8, 10], the nearest honest client 2 from [10, 4].
        step([20, 20], [10, 6], [0, 0], [10, 4]),
    ]
    # By round: 1 / 4, then 22 / 2. Fixed: the attacker's nearest over the run (1) over the
    # honest clients' (2): a threshold of 2 would refuse it in round 2 and nobody else.
    assert seeds.near_copy_ratios(roles, trace) == {"fixed": 0.5, "by_round": 0.25}
    assert seeds.near_copy_ratios(roles, trace[1:]) == {"fixed": 11.0, "by_round": 11.0}
    assert seeds.near_copy_ratios(roles, trace[:1]) == {"fixed": None, "by_round": None}
    assert seeds.near_copy_ratios(["honest", "absent"], trace) == {
        "fixed": None,
        "by_round": None,
    }
