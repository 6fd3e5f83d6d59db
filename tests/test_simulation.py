"""End-to-end federated runs on the embedded chain against the plain PyTorch run."""

from __future__ import annotations

import numpy as np
import pytest

from fl_client.chain import connect
from fl_client.config import load_config
from fl_client.errors import AccuracyMismatchError
from fl_client.simulation import SimulationResult, format_table, run_simulation, table_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def three_by_two() -> SimulationResult:
    fl = load_config().fl.with_overrides(clients=3, rounds=2)
    return run_simulation(fl, chain=connect("embedded"), check_accuracy=False)


def test_accuracy_rises_and_the_chain_matches_plain_federated_learning(
    three_by_two: SimulationResult,
) -> None:
    rounds = three_by_two.rounds
    assert three_by_two.initial_accuracy < rounds[0].accuracy_chain <= rounds[1].accuracy_chain
    assert rounds[1].accuracy_chain >= 0.85
    assert all(abs(r.gap_pp) <= 1.0 for r in rounds)


def test_the_on_chain_model_is_exactly_the_integer_average_of_the_submissions(
    three_by_two: SimulationResult,
) -> None:
    assert all(r.exact_average for r in three_by_two.rounds)
    assert [r.submissions for r in three_by_two.rounds] == [3, 3]
    assert len({r.model_hash for r in three_by_two.rounds}) == 2


def test_rewards_are_accounted_per_tier_and_per_client(three_by_two: SimulationResult) -> None:
    paid = sum(sum(r.rewards_by_tier.values()) for r in three_by_two.rounds)
    assert paid == sum(three_by_two.rewards_by_client.values())
    assert all(sum(r.submissions_by_tier.values()) == r.submissions for r in three_by_two.rounds)
    header, rows = table_rows(three_by_two)
    assert header[:4] == ["round", "acc chain %", "acc plain %", "gap pp"]
    assert len(rows) == 2
    assert "acc chain %" in format_table(header, rows)


def test_a_gap_beyond_the_tolerance_fails_loudly() -> None:
    fl = load_config().fl.with_overrides(clients=2, rounds=1)
    # A negative tolerance cannot be met: the check itself must fire.
    with pytest.raises(AccuracyMismatchError, match="differs from plain federated learning"):
        run_simulation(fl, chain=connect("embedded"), tolerance_pp=-1.0)


def test_the_default_main_job_reaches_the_acceptance_bar() -> None:
    """5 clients x 5 rounds of digits: >= 90% and within 1 pp of plain federated learning."""
    result = run_simulation(load_config().fl, chain=connect("embedded"))
    final = result.rounds[-1]
    assert final.accuracy_chain >= 0.90
    assert abs(final.gap_pp) <= 1.0
    assert np.all([r.exact_average for r in result.rounds])
