"""The privacy benchmark (``bench.privacy``): its pure helpers and its report on made-up figures
(no chain, no training), and a smoke run of the whole benchmark on anvil (under a minute)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.privacy import (
    Grid,
    best_within_goal_epsilon,
    close_within_bound,
    dropout_schedule,
    gas_per_weight,
    main,
    markdown,
    meets_goal,
    micro_after,
    plot,
    within_ledger_step,
)
from fl_client.privacy import MICRO, LedgerCurve


def test_the_goal_needs_both_the_accuracy_and_the_epsilon() -> None:
    assert meets_goal(0.85, 8.0)
    assert not meets_goal(0.849, 2.0)
    assert not meets_goal(0.97, 8.01)
    assert not meets_goal(0.97, None)  # no DP never meets a privacy goal


def test_the_ledger_step_is_one_micro_unit_per_rounded_term() -> None:
    assert within_ledger_step(0.0, 10)
    assert within_ledger_step(11 / MICRO, 10)
    assert not within_ledger_step(12 / MICRO, 10)
    assert not within_ledger_step(-1e-9, 10)  # the chain never reports less than was spent


def test_micro_after_is_what_the_ledger_curve_reports() -> None:
    # Prepare: a made-up curve of three orders
    curve = LedgerCurve(
        orders=(2.0, 4.0, 8.0),
        rdp_micro=(100_000, 250_000, 600_000),
        conversion_micro=(11_000_000, 3_000_000, 1_500_000),
        budget_micro=20_000_000,
        delta=1e-5,
    )
    # Execute / Assert
    for n in range(12):
        assert micro_after(curve, n) == round(curve.epsilon_after(n) * MICRO)
    assert micro_after(curve, 0) == 0


def test_the_dropout_schedule_is_seeded_and_drops_distinct_members() -> None:
    schedule = dropout_schedule(0, 8, 2, 3)
    assert schedule == dropout_schedule(0, 8, 2, 3)
    assert len(schedule) == 3
    assert all(len(set(r)) == 2 and r == sorted(r) and set(r) <= set(range(8)) for r in schedule)
    assert dropout_schedule(0, 8, 0, 2) == [[], []]
    assert dropout_schedule(1, 8, 2, 3) != schedule


def test_gas_per_weight_per_client() -> None:
    assert gas_per_weight(7_850 * 6 * 200, 7_850, 6) == pytest.approx(200.0)
    assert gas_per_weight(1_000, 7_850, 0) is None


def test_the_quick_and_smoke_grids_are_smaller() -> None:
    full, quick, smoke = Grid(), Grid.quick(), Grid.smoke()
    assert smoke.rounds <= quick.rounds < full.rounds
    assert len(smoke.sample_sigmas) <= len(quick.sample_sigmas) < len(full.sample_sigmas)
    assert full.secagg_cases == (0, 1, full.secagg_max_dropouts)  # 0, 1 and t dropouts
    assert (full.secagg_members, full.secagg_max_dropouts) == (8, 2)
    assert full.clients == (5, 10)


def test_the_best_row_is_the_most_accurate_within_the_goal_epsilon() -> None:
    rows: list[dict[str, Any]] = [
        {"epsilon": None, "accuracy": 0.9},  # no DP: never the best private row
        {"epsilon": 6.5, "accuracy": 0.86},
        {"epsilon": 4.6, "accuracy": 0.86},  # as accurate, smaller epsilon: preferred
        {"epsilon": 15.0, "accuracy": 0.88},  # above the goal's epsilon
        {"epsilon": 2.2, "accuracy": 0.80},
    ]
    assert best_within_goal_epsilon(rows) == rows[2]
    assert best_within_goal_epsilon(rows[:1] + rows[3:4]) is None


def test_a_close_above_the_planner_bound_is_flagged() -> None:
    case: dict[str, dict[str, int | None]] = {
        "largest_close_gas": {"masked": 11_068_537, "direct": 5_000_000, "relayed": None},
        "close_gas_bound": {"masked": 10_619_352, "direct": 8_000_000, "relayed": 8_000_000},
    }
    assert not close_within_bound(case)
    case["largest_close_gas"]["masked"] = 10_619_352  # at the bound
    assert close_within_bound(case)


def made_up_results() -> dict[str, Any]:
    """The shape ``bench.privacy.main`` writes, with invented figures."""
    ledger = {
        "deployed_curve_matches_python": True,
        "budget": 100.0,
        "every_client_charged_every_round": True,
        "max_abs_chain_minus_curve_micro": 0,
        "max_abs_chain_minus_accountant": 2e-6,
        "step_bound": 11e-6,
        "within_step": True,
        "never_below_own_accountant": True,
        "clients": [{"epsilon_chain": 6.540002, "epsilon_accountant": 6.54}],
    }

    def row(
        level: str, sigma: float | None, epsilon: float | None, accuracy: float
    ) -> dict[str, Any]:
        return {
            "clients": 5,
            "level": level,
            "sigma": sigma,
            "clip": None if level == "none" else 1.0,
            "epsilon": epsilon,
            "accuracy": accuracy,
            "accuracy_no_chain_no_dp": 0.9,
            "meets_goal": meets_goal(accuracy, epsilon),
            "seconds": 42.0,
            **({"ledger": ledger} if level == "sample" else {}),
        }

    def path_round(gas: int, completed: bool = True, failed: int = 0) -> dict[str, Any]:
        return {
            "transactions": 9,
            "gas": gas,
            "seconds": 1.5,
            "completed": completed,
            "failed_transactions": failed,
            "failed_functions": ["revealShares"] if failed else [],
        }

    rounds = [
        {
            "round": 1,
            "dropped": [2, 5],
            "masked": path_round(28_000_000, failed=1),
            "direct": path_round(9_700_000),
            "relayed": path_round(7_400_000),
        }
    ]
    case = {
        "case": "2 dropouts per round (t)",
        "rounds": rounds,
        "rounds_completed": {"masked": 1, "direct": 1, "relayed": 1},
        "same_model_every_round": True,
        "gas_per_weight_per_client": {"masked": 611.0, "direct": 206.0, "relayed": None},
        "largest_close_gas": {"masked": 11_068_537, "direct": 6_000_000, "relayed": 7_000_000},
        "close_gas_bound": {"masked": 10_619_352, "direct": 8_052_248, "relayed": 8_052_248},
        "failed_transactions": {"masked": 1, "direct": 0, "relayed": 0},
        "t_plus_one_round": {
            "ended_without_model": True,
            "paid_nothing": True,
            "next_round_open": True,
            "next_phase": "Register",
            "next_round_completed": True,
            "direct_credited_wei": 35 * 10**14,
            "relayed_credited_wei": 0,
        },
    }
    return {
        "command": ".venv/bin/python -m bench.privacy",
        "seconds": 600.0,
        "cpu_seconds": {"python": 300.0, "children": 60.0},
        "machine": {"cpus": 2, "load_average_at_start": [1.0, 1.0, 1.0]},
        "load_average_at_end": [2.0, 1.0, 1.0],
        "settings": {
            "weights": 7_850,
            "epochs": 2,
            "batch_size": 32,
            "learning_rate": 0.5,
            "rounds": 10,
        },
        "accuracy": [
            row("none", None, None, 0.9),
            row("sample", 1.0, 6.54, 0.864),
            row("update", 2.0, 8.09, 0.12),
        ],
        "refusal": {
            "clients": 5,
            "sigma": 1.0,
            "admits": 2,
            "budget_micro": 3_300_013,
            "boundary_admitted": True,
            "next_refused_with_budget_error": True,
            "attempts": [{"epsilon_micro": 3_823_655, "budget_micro": 3_300_013}],
        },
        "secure_aggregation": {
            "members": 8,
            "max_dropouts": 2,
            "min_submissions": 6,
            "weights": 7_850,
            "tx_gas_cap": 16_777_216,
            "cases": [case],
        },
    }


def test_the_report_renders_every_table(tmp_path: Path) -> None:
    # Prepare
    data = made_up_results()
    # Execute
    text = markdown(data)
    plot(data, tmp_path / "privacy.png")
    # Assert: the rows and the verdicts are there; the plot is a PNG
    assert "| 5 | DP-SGD (sample) | 1.0 | 1.0 | 6.54 | 86.4 | 90.0 | yes | 42 |" in text
    assert "| 5 | update-level | 2.0 | 1.0 | 8.09 | 12.0 | 90.0 | no | 42 |" in text
    assert "Goal met by: 5 clients, DP-SGD (sample) sigma 1 (86.4 % at epsilon 6.54)." in text
    assert "Best accuracy at epsilon <= 8: 86.4 % (5 clients, DP-SGD (sample) sigma 1" in text
    assert "| 5 | 1 | all 10 | 6.540002 | 6.540000 | 0 | 2.00 | 11 | yes | yes | yes |" in text
    assert "| 2 dropouts per round (t) | 1/1 / 1/1 / 1/1 | yes | 611.0 | 206.0 | - |" in text
    assert "| 2 dropouts per round (t) | 11,068,537 | 10,619,352 | 6,000,000 |" in text
    assert "| NO |" in text  # the masked close above its bound
    assert "| 1 | [2, 5] | 9 (1: revealShares) | 28,000,000 |" in text
    assert "CoordinatorPrivacyBudgetExceeded(client, 3823655, 3300013)" in text
    assert "Abadi et al. 2016" in text
    assert (tmp_path / "privacy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.anvil
def test_a_smoke_run_measures_every_part_and_passes_its_checks(tmp_path: Path) -> None:
    # Prepare / Execute: the whole benchmark on the smoke grid (one anvil, under a minute)
    code = main(["--smoke", "--out", str(tmp_path)])
    # Assert: every check holds, and the figures are the run's own
    data = json.loads((tmp_path / "privacy.json").read_text(encoding="utf-8"))
    assert code == 0
    assert all(data["checks"].values()), data["checks"]
    assert data["settings"]["grid"]["rounds"] == 1
    (row,) = data["accuracy"]  # 4 clients, DP-SGD at sigma 1
    assert (row["clients"], row["level"], row["sigma"]) == (4, "sample", 1.0)
    assert 0 < row["epsilon"] < 8
    assert 0 <= row["accuracy"] <= 1
    assert row["exact_average_every_round"]
    ledger = row["ledger"]
    assert all(c["participations"] == 1 for c in ledger["clients"])
    assert 0 <= ledger["max_abs_chain_minus_accountant"] <= 2e-6
    assert data["refusal"]["next_refused_with_budget_error"]
    (case,) = data["secure_aggregation"]["cases"]  # t+1 dropouts, then a full round
    assert [r["masked"]["completed"] for r in case["rounds"]] == [False, True]
    assert case["same_model_every_round"]
    masked, direct = (case["gas_per_weight_per_client"][p] for p in ("masked", "direct"))
    assert masked is not None
    assert direct is not None
    assert masked > direct > 0
    assert (tmp_path / "privacy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## Secure aggregation with dropouts" in (tmp_path / "privacy.md").read_text("utf-8")
