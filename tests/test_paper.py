"""The seed paper's reproduction (bench/paper.py): its cost arithmetic, and a reduced run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.paper import (
    BAR_PP,
    Prices,
    ServerCostModel,
    break_even_gas_price,
    break_even_models,
    gas_to_currency,
    gas_to_eth,
    main,
    model_cost,
    paper_chain_cost,
    rounds_to_target,
    server_cost,
    side_by_side,
    train_config,
)
from fl_client.config import load_config
from fl_client.data import load_dataset, make_shards
from fl_client.federated import run_plain_federated


def test_the_paper_cost_model_reproduces_its_own_figures() -> None:
    model = (
        ServerCostModel()
    )  # 5,000,000 KRW server for ~100 users; 10 KRW per submit and per round
    # 100 users x 2,000 rounds: 2,000 x (100 x 10 + 10) = 2,020,000 KRW ("about 2,000,000").
    assert paper_chain_cost(100, 2000, model) == 2_020_000
    assert server_cost(100, model) == 5_000_000
    assert server_cost(101, model) == 10_000_000  # a second server beyond 100 users
    # 2 models: 4,040,000 < 5,000,000; 3 models: 6,060,000 > 5,000,000: the server wins from 3 on.
    assert break_even_models(2_020_000, 5_000_000) == 3


def test_break_even_counts_the_first_model_at_which_the_server_is_cheaper() -> None:
    assert break_even_models(2_500_000, 5_000_000) == 3  # equal at 2 models, cheaper from 3
    assert break_even_models(1_000_000, 5_000_000) == 6
    assert break_even_models(6_000_000, 5_000_000) == 1  # one model already costs more
    assert break_even_models(60, 5_000_000) == 83_334  # 83,333 x 60 = 4,999,980
    with pytest.raises(ValueError, match="positive"):
        break_even_models(0, 5_000_000)


def test_gas_is_priced_at_the_assumed_gas_and_eth_prices() -> None:
    prices = Prices(gas_price_gwei=20, eth_price=5_000_000, currency="KRW")
    assert gas_to_eth(1_000_000, 20) == pytest.approx(0.02)
    assert gas_to_currency(1_000_000, prices) == pytest.approx(100_000)
    # 50,000,000 gas per model costs 5,000,000 KRW (one server) at 20 gwei and 5,000,000 KRW/ETH.
    assert break_even_gas_price(50_000_000, 5_000_000, 5_000_000) == pytest.approx(20)


def test_a_model_costs_the_deployment_and_the_rounds_to_the_target() -> None:
    prices = Prices(gas_price_gwei=20, eth_price=5_000_000, currency="KRW")
    accuracies = [0.80, 0.86, 0.89, 0.91]
    assert rounds_to_target(accuracies, 0.85) == 2
    assert rounds_to_target(accuracies, 0.95) is None
    cost = model_cost(
        users=5,
        deploy_gas=20_000_000,
        round_gas=[10_000_000, 11_000_000, 12_000_000, 13_000_000],
        accuracies=accuracies,
        target=0.85,
        prices=prices,
        server=ServerCostModel(),
    )
    # 20M + 10M + 11M = 41M gas = 0.82 ETH = 4,100,000 KRW: the server is cheaper from 2 models.
    assert cost["rounds"] == 2
    assert cost["gas"] == 41_000_000
    assert cost["eth"] == pytest.approx(0.82)
    assert cost["cost"] == pytest.approx(4_100_000)
    assert cost["server_cheaper_from_models"] == 2
    # The paper's prices: 2 rounds x (5 x 10 + 10) = 120 KRW; 41,666 x 120 = 4,999,920.
    assert cost["paper_cost"] == 120
    assert cost["server_cheaper_from_models_paper_prices"] == 41_667
    missed = model_cost(
        users=5,
        deploy_gas=1,
        round_gas=[1],
        accuracies=[0.5],
        target=0.9,
        prices=prices,
        server=ServerCostModel(),
    )
    assert missed["rounds"] is None
    assert missed["cost"] is None


def test_a_longer_run_begins_with_the_shorter_one() -> None:
    """Why the 10-round cells may be read from the 30-round run: seeds depend only on the round."""
    fl = load_config().fl.with_overrides(clients=3)
    dataset = load_dataset(fl.dataset, test_fraction=fl.test_fraction, seed=fl.seed)
    shards = make_shards(dataset, 3, scheme="dirichlet", alpha=0.5, seed=fl.seed)
    short = run_plain_federated(dataset, shards, rounds=1, config=train_config(fl), seed=fl.seed)
    long = run_plain_federated(dataset, shards, rounds=2, config=train_config(fl), seed=fl.seed)
    assert long.rounds[0] == short.rounds[0]


def synthetic_report() -> dict[str, Any]:
    """The parts of a report that the side-by-side table reads."""
    model = ServerCostModel()
    prices = Prices()
    return {
        "accuracy": {
            "cells": [
                {"users": 5, "rounds": 10, "partition": "iid", "gap_pp": -0.1, "within_bar": True},
                {"users": 5, "rounds": 30, "partition": "iid", "gap_pp": 0.6, "within_bar": False},
            ]
        },
        "time": {
            "block_time": 12,
            "plain": [{"users": 5, "seconds_per_round": [2.0, 4.0]}],
            "instant": [{"users": 5, "seconds_per_round": [4.0, 5.0]}],
            "blocks": [{"users": 5, "seconds_per_round": [20.0, 22.0], "blocks_per_round": [2, 2]}],
        },
        "cost": {
            "prices": {"gas_price_gwei": 20.0, "eth_price": 5_000_000.0, "currency": "KRW"},
            "server_model": {
                "server_cost": model.server_cost,
                "server_users": model.server_users,
                "submit_fee": model.submit_fee,
                "compute_fee": model.compute_fee,
            },
            "transactions": [
                {
                    "users": 5,
                    "segments": 1,
                    "submission_gas": 600_000,
                    "closes_gas_per_round": 5_000_000,
                    "submission_cost": gas_to_currency(600_000, prices),
                    "closes_cost": gas_to_currency(5_000_000, prices),
                }
            ],
            "models": [
                {
                    "users": 5,
                    "partition": "iid",
                    "rounds_run": 2,
                    "targets": [
                        model_cost(
                            users=5,
                            deploy_gas=20_000_000,
                            round_gas=[8_000_000, 8_000_000],
                            accuracies=[0.86, 0.91],
                            target=target,
                            prices=prices,
                            server=model,
                        )
                        for target in (0.85, 0.95)
                    ],
                }
            ],
        },
    }


def test_the_side_by_side_table_sets_the_papers_figures_beside_the_measured_ones() -> None:
    rows = {row["figure"]: row for row in side_by_side(synthetic_report())}
    accuracy = rows["accuracy, chain-based vs ordinary FL (Fig. 6)"]
    assert "negligible" in accuracy["paper"]
    assert "0.60 pp over 2 cells" in accuracy["ours"]  # the largest gap, whatever its sign
    assert "1/2 within 0.5 pp" in accuracy["ours"]
    added = rows["time added per round by the chain (Figs. 7-8)"]
    assert added["paper"].startswith("15-18 s")
    assert added["ours"] == "5 users: +18.0 s with 12 s blocks (2 blocks a round)"  # 21 - 3
    assert rows["time added per round, instant mining (no block wait)"]["ours"] == (
        "5 users: +1.5 s"
    )
    submit = rows["cost of one submit transaction (Fig. 9)"]
    assert submit["paper"] == "10 KRW"
    assert submit["ours"] == "5 users: 600,000 gas = 60,000 KRW"  # 0.012 ETH at 20 gwei
    assert (
        "5,000,000 gas in 1 close(s) = 500,000 KRW"
        in rows["cost of a round's contract computation"]["ours"]
    )
    assert "2,000 rounds to 85%" in rows["rounds to the target accuracy"]["paper"]
    assert rows["rounds to the target accuracy"]["ours"] == (
        "5 users iid: 85% in 1, 95% not reached in 2"
    )
    # One model to 85%: 20M + 8M gas = 0.56 ETH = 2,800,000 KRW; the server is cheaper from 2.
    assert rows["cost of one trained model on the chain"]["ours"] == (
        "5 users iid to 85%: 2,800,000 KRW (measured gas)"
    )
    assert rows["the server is cheaper from"]["paper"] == "3 models"
    assert rows["the server is cheaper from"]["ours"] == "5 users iid to 85%: 2 model(s)"


@pytest.mark.slow
@pytest.mark.anvil
def test_the_reduced_reproduction_meets_the_accuracy_bar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """5 users x 3 rounds, IID, on anvil: chain-based within 0.5 pp of plain FL every round."""
    monkeypatch.setenv("FL_STATE_DIR", str(tmp_path / "state"))
    out = tmp_path / "results"
    argv = ["--users", "5", "--rounds", "3", "--partitions", "iid", "--block-rounds", "0"]
    assert main([*argv, "--out", str(out)]) == 0

    report = json.loads((out / "paper.json").read_text(encoding="utf-8"))
    assert report["command"].startswith(".venv/bin/python -m bench.paper --users 5")
    (run,) = report["accuracy"]["runs"]
    assert run["users"] == 5
    assert run["rounds"] == 3
    assert run["exact_average"]
    assert all(abs(gap) <= BAR_PP for gap in run["gap_pp"])
    (cell,) = report["accuracy"]["cells"]
    assert cell["within_bar"]
    assert abs(cell["chain"] - cell["plain"]) * 100 <= BAR_PP
    assert cell["chain"] >= 0.85
    assert 0 < cell["central"] <= 1

    assert len(report["time"]["plain"][0]["seconds_per_round"]) == 3
    assert len(report["time"]["instant"][0]["seconds_per_round"]) == 3
    (cost,) = report["cost"]["models"]
    assert all(gas > 0 for gas in cost["gas_per_round"])
    reached = [m for m in cost["targets"] if m["rounds"] is not None]
    assert reached
    assert reached[0]["gas"] == cost["deploy_gas"] + sum(
        cost["gas_per_round"][: reached[0]["rounds"]]
    )

    table = (out / "paper.md").read_text(encoding="utf-8")
    assert "met in 1/1 cells" in table
    assert "### The paper's figures beside ours" in table
    assert "| cost of one submit transaction (Fig. 9) | 10 KRW |" in table
    for name in ("paper.accuracy.png", "paper.time.png", "paper.cost.png"):
        assert (out / name).stat().st_size > 0
