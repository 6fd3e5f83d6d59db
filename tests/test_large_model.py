"""The 101,770-weight MLP (784 -> 128 -> 10 on mnist5k) through the chain, beside plain FedAvg.

The full 5 x 5 run is the benchmark (``python -m bench.large_model``); its stored figures are
checked against the bar here. A short run (2 clients x 2 rounds, same model and segments) goes
through an anvil started on a free port and stopped by its process id (``bench.common``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.large_model import TOLERANCE_PP, markdown, measure, passed, settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "large_model.json"
TX_GAS_CAP = 16_777_216
TX_BYTES_LIMIT = 131_072


def test_the_benchmark_figures_meet_the_bar_and_render_as_the_readme_table() -> None:
    record = json.loads(RESULTS.read_text(encoding="utf-8"))
    assert record["num_weights"] == 101_770
    assert (record["settings"]["clients"], record["settings"]["rounds"]) == (5, 5)
    assert record["num_segments"] >= 2
    assert passed(record)
    assert abs(record["final_gap_pp"]) <= TOLERANCE_PP
    assert record["max_tx_gas"] <= TX_GAS_CAP
    assert record["max_tx_encoded_bytes"] <= TX_BYTES_LIMIT
    assert all(row["close_transactions"] == record["num_segments"] for row in record["rounds"])
    assert markdown(record) == RESULTS.with_suffix(".md").read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.anvil
def test_a_short_run_of_the_mlp_closes_within_every_limit_beside_plain_fedavg() -> None:
    # Prepare: 2 clients x 2 rounds with the benchmark's model and settings
    fl = settings(clients=2, rounds=2)
    # Execute
    record = measure(fl, "anvil")
    # Assert: every round closed segment by segment, exactly, within both limits, beside plain
    assert record["num_weights"] == 101_770
    assert record["num_segments"] >= 2
    for row in record["rounds"]:
        assert row["close_transactions"] == record["num_segments"]
        assert row["submission_transactions"] >= 2 * fl.clients  # two submits per client
        assert row["exact_average"]
    assert record["every_transaction_within_limits"]
    assert record["max_tx_gas"] <= TX_GAS_CAP
    assert record["max_tx_encoded_bytes"] <= TX_BYTES_LIMIT
    assert record["encoded_bytes_measured"]
    assert abs(record["final_gap_pp"]) <= TOLERANCE_PP, record["final_gap_pp"]
    assert record["final_accuracy_chain"] >= 0.9
