"""The command line through ``main(argv)``, and the configuration it reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fl_client.cli import main
from fl_client.config import PROJECT_ROOT, load_config
from fl_client.errors import ConfigError


def test_the_project_config_parses_with_all_three_networks() -> None:
    config = load_config()
    assert config.default_network == "embedded"
    assert config.network("embedded").is_embedded
    assert config.network("anvil").url == "http://127.0.0.1:8545"
    assert config.network("anvil").expected_chain_id() == 31337
    assert config.compiler.evm_version == "prague"
    assert config.fl.fixed_point.max_abs * config.fl.clients < 2**15  # default fits 16-bit lanes


def test_a_remote_network_takes_url_and_chain_id_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    remote = load_config().network("remote")
    monkeypatch.delenv("FL_RPC_URL", raising=False)
    with pytest.raises(ConfigError, match="FL_RPC_URL is not set"):
        _ = remote.url
    monkeypatch.setenv("FL_RPC_URL", "https://rpc.example.invalid")
    monkeypatch.setenv("FL_CHAIN_ID", "11155111")
    assert remote.url == "https://rpc.example.invalid"
    assert remote.expected_chain_id() == 11155111


def test_unknown_network_and_bad_config_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown network 'nope'"):
        load_config().network("nope")
    bad = tmp_path / "brownie-config.yaml"
    bad.write_text(
        (PROJECT_ROOT / "brownie-config.yaml").read_text().replace("clients: 5", "clientz: 5")
    )
    with pytest.raises(ConfigError, match="unknown federated_learning keys: clientz"):
        load_config(bad)
    for value in ("-10001", "0.5", "true"):
        bad.write_text(
            (PROJECT_ROOT / "brownie-config.yaml")
            .read_text()
            .replace("min_alignment_bps: -10000", f"min_alignment_bps: {value}")
        )
        with pytest.raises(ConfigError, match="min_alignment_bps must be an integer from -10000"):
            load_config(bad)


def test_commands_that_need_a_lasting_chain_refuse_the_embedded_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["deploy", "--network", "embedded"]) == 1
    assert "embedded chain lives inside one process" in capsys.readouterr().err
    assert main(["query"]) == 1
    assert main(["client", "--account", "0"]) == 1
    assert main(["withdraw", "--account", "0"]) == 1


def test_unknown_network_exits_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", "--network", "nope"]) == 1
    assert "unknown network 'nope'" in capsys.readouterr().err


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as raised:
        main([])
    assert raised.value.code == 2
    with pytest.raises(SystemExit) as raised:
        main(["simulate", "--dataset", "cifar"])
    assert raised.value.code == 2


@pytest.mark.slow
def test_simulate_runs_end_to_end_and_writes_its_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute
    code = main(["simulate", "--clients", "3", "--rounds", "2", "--out", str(tmp_path), "--quiet"])
    # Assert
    out = capsys.readouterr().out
    assert code == 0
    assert "acc chain %" in out
    assert "on-chain model == integer average of the submitted vectors in every round: True" in out
    result = json.loads((tmp_path / "result.json").read_text())
    assert [r["round_number"] for r in result["rounds"]] == [1, 2]
    assert abs(result["final_gap_pp"]) <= 1.0
    assert (tmp_path / "rounds.csv").read_text().count("\n") == 3
    for name in ("accuracy.png", "rewards.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_client_index_maps_to_its_own_account_or_a_clear_error() -> None:
    from fl_client.cli import client_account

    node = ["0xdeployer", "0xclient0", "0xclient1"]
    assert client_account(node, 0) == "0xclient0"
    assert client_account(node, 1) == "0xclient1"
    assert client_account(["0xkey"], 7) == "0xkey"  # a private key: that account, any index
    with pytest.raises(ConfigError, match="needs the node's account 3, but it manages 3"):
        client_account(node, 2)
