"""The main job: federated runs on the embedded chain against the plain PyTorch run, and their
report (``fl_client.report``: the table, ``rounds.csv``, ``result.json``, the plots).

The default main job (5 clients x 5 rounds) and its acceptance bar run through the command line,
as a user runs it: ``tests/test_cli.py``.
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from eth_utils.address import to_checksum_address

from fl_client.chain import connect
from fl_client.compile import get_contract
from fl_client.config import load_config
from fl_client.errors import AccuracyMismatchError, PrivacyLedgerMismatchError
from fl_client.privacy import LedgerCurve
from fl_client.report import format_table, table_rows, tier_columns, write_outputs
from fl_client.simulation import (
    RoundReport,
    SimulationResult,
    _check_ledger,
    run_simulation,
    tier_label,
)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def three_by_two() -> SimulationResult:
    """3 clients x 2 rounds of digits, one of them handing its updates to the in-process relay."""
    fl = load_config().fl.with_overrides(clients=3, rounds=2, relayed_clients=1)
    return run_simulation(fl, chain=connect("embedded"), check_accuracy=False)


@pytest.mark.slow
def test_accuracy_rises_and_the_chain_matches_plain_federated_learning(
    three_by_two: SimulationResult,
) -> None:
    rounds = three_by_two.rounds
    assert three_by_two.initial_accuracy < rounds[0].accuracy_chain <= rounds[1].accuracy_chain
    assert rounds[1].accuracy_chain >= 0.85
    assert all(abs(r.gap_pp) <= 1.0 for r in rounds)


@pytest.mark.slow
def test_the_on_chain_model_is_exactly_the_integer_average_of_the_submissions(
    three_by_two: SimulationResult,
) -> None:
    assert all(r.exact_average for r in three_by_two.rounds)
    assert [(r.submissions, r.relayed) for r in three_by_two.rounds] == [(3, 1), (3, 1)]
    assert len({r.model_hash for r in three_by_two.rounds}) == 2
    assert three_by_two.num_weights == 650
    assert three_by_two.settings["relayed_clients"] == 1


@pytest.mark.slow
def test_rewards_are_accounted_per_tier_and_per_client(three_by_two: SimulationResult) -> None:
    paid = sum(sum(r.rewards_by_tier.values()) for r in three_by_two.rounds)
    assert paid == sum(three_by_two.rewards_by_client.values())
    assert all(sum(r.submissions_by_tier.values()) == r.submissions for r in three_by_two.rounds)
    labels = {label for r in three_by_two.rounds for label in r.submissions_by_tier}
    assert labels <= {"T1", "T2", "T3", "none"}


@pytest.mark.slow
def test_the_outputs_hold_the_table_the_json_and_two_plots(
    three_by_two: SimulationResult, tmp_path: Path
) -> None:
    # Execute
    paths = write_outputs(three_by_two, tmp_path)
    # Assert
    assert [p.name for p in paths] == ["result.json", "rounds.csv", "accuracy.png", "rewards.png"]
    header, rows = table_rows(three_by_two)
    with (tmp_path / "rounds.csv").open(newline="", encoding="utf-8") as handle:
        assert list(csv.reader(handle)) == [header, *rows]
    result = json.loads((tmp_path / "result.json").read_text(encoding="utf-8"))
    assert [r["round_number"] for r in result["rounds"]] == [1, 2]
    assert result["final_gap_pp"] == pytest.approx(three_by_two.final_gap_pp)
    assert result["contract_address"] == three_by_two.contract_address
    for name in ("accuracy.png", "rewards.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG


@pytest.mark.slow
def test_a_gap_beyond_the_tolerance_fails_loudly() -> None:
    fl = load_config().fl.with_overrides(clients=2, rounds=1, epochs=1)
    # A negative tolerance cannot be met: the check itself must fire.
    with pytest.raises(AccuracyMismatchError, match="differs from plain federated learning"):
        run_simulation(fl, chain=connect("embedded"), tolerance_pp=-1.0)


# ---------------------------------------------------------------- the table, on made-up results


def report(
    round_number: int, tiers: dict[str, tuple[int, int]], epsilon: float | None = None
) -> RoundReport:
    """A round's report whose submissions fell in ``tiers`` (label -> (count, wei each))."""
    return RoundReport(
        round_number=round_number,
        accuracy_chain=0.9,
        accuracy_plain=0.9,
        loss_chain=0.3,
        submissions=sum(count for count, _ in tiers.values()),
        relayed=0,
        gas_used=1_000_000,
        rewards_by_tier={label: count * wei for label, (count, wei) in tiers.items()},
        submissions_by_tier={label: count for label, (count, _) in tiers.items()},
        clipped=0,
        distances=(10, 20),
        model_hash="0x" + "00" * 32,
        exact_average=True,
        seconds=1.0,
        epsilon=epsilon,
    )


def result_of(*rounds: RoundReport, tiers: int = 3) -> SimulationResult:
    return SimulationResult(
        dataset="digits",
        clients=2,
        rounds=rounds,
        initial_accuracy=0.1,
        rewards_by_client={},
        contract_address="0x" + "11" * 20,
        deploy_gas=1,
        num_weights=650,
        num_segments=1,
        tiers=tiers,
    )


def test_tiers_are_labelled_as_the_config_lists_them() -> None:
    assert tier_label(0) == "T1"  # the contract's tier 0: the first and largest reward
    assert tier_label(2) == "T3"
    assert tier_label(255) == "none"
    assert tier_columns(result_of(report(1, {}), tiers=3)) == ["T1", "T2", "T3", "none"]


def test_the_table_has_every_tier_column_whether_or_not_a_tier_occurs() -> None:
    # Prepare: one run where nobody was paid, one where only T2 occurred
    unpaid = result_of(report(1, {"none": (2, 0)}))
    paid = result_of(report(1, {"T2": (2, 5 * 10**14)}))
    # Execute
    unpaid_header, unpaid_rows = table_rows(unpaid)
    paid_header, paid_rows = table_rows(paid)
    # Assert
    assert unpaid_header == paid_header
    assert unpaid_header[-4:] == ["T1 (n x wei)", "T2 (n x wei)", "T3 (n x wei)", "none (n x wei)"]
    assert unpaid_rows[0][-4:] == ["-", "-", "-", "2 x 0"]
    assert paid_rows[0][-4:] == ["-", "2 x 5e+14", "-", "-"]


def test_the_epsilon_column_appears_with_differential_privacy_and_the_csv_follows(
    tmp_path: Path,
) -> None:
    private = result_of(report(1, {"T1": (2, 10**15)}, epsilon=3.5))
    header, rows = table_rows(private)
    assert header[8] == "epsilon"
    assert rows[0][8] == "3.50"
    write_outputs(private, tmp_path)
    with (tmp_path / "rounds.csv").open(newline="", encoding="utf-8") as handle:
        assert list(csv.reader(handle)) == [header, *rows]


def test_format_table_aligns_columns_to_the_right() -> None:
    text = format_table(["a", "long name"], [["1", "2"], ["333", "4"]])
    assert text.splitlines() == [
        "  a  long name",
        "---  ---------",
        "  1          2",
        "333          4",
    ]
    assert replace(report(1, {}), accuracy_plain=0.8).gap_pp == pytest.approx(10.0)


# ---------------------------------------------------------------- the on-chain privacy ledger


@pytest.mark.slow
def test_a_dp_sgd_run_with_a_budget_holds_the_chains_ledger_to_the_accountant() -> None:
    # Prepare: DP-SGD with a budget of a few participations; the run checks the ledger each round
    fl = load_config().fl.with_overrides(clients=2, rounds=2, epochs=1)
    fl = replace(
        fl,
        privacy=replace(
            fl.privacy, dp=True, level="sample", noise_multiplier=1.0, epsilon_budget=50.0
        ),
    )
    chain = connect("embedded")
    # Execute
    result = run_simulation(fl, chain=chain, check_accuracy=False)
    # Assert: both rounds ran with both clients, each charged twice on-chain
    assert [r.submissions for r in result.rounds] == [2, 2]
    assert result.rounds[-1].epsilon is not None
    assert 0 < result.rounds[-1].epsilon <= 50.0
    contract = chain.w3.eth.contract(
        address=to_checksum_address(result.contract_address), abi=get_contract("FLCoordinator").abi
    )
    for account in result.rewards_by_client:
        assert contract.functions.participations(account).call() == 2
        assert 0 < contract.functions.epsilonSpent(account).call() <= 50 * 10**6


def test_a_ledger_that_disagrees_with_the_accountant_is_a_typed_error() -> None:
    # Prepare: a contract stand-in that reports one participation more than the client made
    curve = LedgerCurve.of(noise_multiplier=2.0, delta=1e-5, epsilon_budget=10.0)

    class Calls:
        def __init__(self, value: int) -> None:
            self.value = value

        def call(self) -> int:
            return self.value

    class Functions:
        def participations(self, _account: str) -> Calls:
            return Calls(2)

        def epsilonSpent(self, _account: str) -> Calls:  # noqa: N802 - the contract's name
            return Calls(curve.micro_after(2))

    class Contract:
        functions = Functions()

    outcome = SimpleNamespace(client_id=0, account="0x" + "11" * 20)
    # Execute / Assert: the accountant counted one participation
    with pytest.raises(PrivacyLedgerMismatchError, match="counts 2 participation"):
        _check_ledger(Contract(), curve, [outcome], [1])  # type: ignore[list-item]
    _check_ledger(Contract(), curve, [outcome], [2])  # type: ignore[list-item]
