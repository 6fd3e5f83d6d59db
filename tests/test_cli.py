"""The command line through ``main(argv)``: the configuration it reads, every newcomer's mistake as
one clear line (no traceback), and what ``simulate``, ``query``, ``client`` and ``withdraw`` print.

Commands that need a node run against an anvil of this module on a free port of 127.0.0.1,
recorded in a temporary ``FL_STATE_DIR``; deployment records go to a temporary
``FL_DEPLOYMENTS_DIR``. Neither touches the project's own records.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from eth_abi.abi import encode as abi_encode
from eth_utils.abi import function_signature_to_4byte_selector

import fl_client.config as config_module
from fl_client.chain import (
    Chain,
    DeploymentRecord,
    connect,
    contract_at,
    decode_revert,
    deploy,
    read_record,
    read_round,
    record_path,
    write_record,
)
from fl_client.cli import build_parser, client_account, main
from fl_client.cli.client import secret_name
from fl_client.cli.options import fl_overrides
from fl_client.compile import get_contract
from fl_client.config import PROJECT_ROOT, load_config
from fl_client.errors import ConfigError
from fl_client.node import NodeRecord, free_port, start_anvil, stop_process
from tests.conftest import small_params
from tests.pipeline_helpers import reverts

CONFIG_TEXT = (PROJECT_ROOT / "brownie-config.yaml").read_text(encoding="utf-8")
DEPLOYER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # anvil's account 0 (the test mnemonic)
CLIENT_0 = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # anvil's account 1


def error_line(err: str) -> str:
    """The one line an error printed: exactly one, ``error: ...``, and no traceback."""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------- the configuration


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


def test_unknown_network_and_unknown_keys_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown network 'nope'"):
        load_config().network("nope")
    bad = tmp_path / "brownie-config.yaml"
    bad.write_text(CONFIG_TEXT.replace("clients: 5", "clientz: 5"))
    with pytest.raises(ConfigError, match="unknown federated_learning keys: clientz"):
        load_config(bad)
    for value in ("-10001", "0.5", "true"):
        bad.write_text(
            CONFIG_TEXT.replace("min_alignment_bps: -10000", f"min_alignment_bps: {value}")
        )
        with pytest.raises(ConfigError, match="min_alignment_bps must be an integer from -10000"):
            load_config(bad)


@pytest.mark.parametrize(
    ("written", "shown"),
    [("five", "'five'"), ("2.5", "2.5"), ("0", "0"), ("true", "True")],
)
def test_a_bad_number_of_clients_in_the_config_is_one_line_naming_the_setting(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    written: str,
    shown: str,
) -> None:
    # Prepare: a copy of the project's file with `clients: five` (and the like)
    config = tmp_path / "brownie-config.yaml"
    config.write_text(re.sub(r"(?m)^  clients: 5$", f"  clients: {written}", CONFIG_TEXT))
    expected = f"federated_learning.clients must be an integer >= 1, got {shown}"
    # Execute / Assert: read directly, and by the CLI (which reads the project's file)
    with pytest.raises(ConfigError) as raised:
        load_config(config)
    assert str(raised.value) == expected
    monkeypatch.setattr(config_module, "CONFIG_PATH", config)
    assert main(["simulate"]) == 1
    captured = capsys.readouterr()
    assert error_line(captured.err) == f"error: {expected}"
    assert captured.out == ""


def test_commands_that_need_a_lasting_chain_refuse_the_embedded_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["deploy", "--network", "embedded"]) == 1
    assert "embedded chain lives inside one process" in error_line(capsys.readouterr().err)
    for command in (["query"], ["client", "--account", "0"], ["withdraw", "--account", "0"]):
        assert main(command) == 1
        assert "python -m fl_client node" in error_line(capsys.readouterr().err)


def test_unknown_network_exits_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", "--network", "nope"]) == 1
    assert error_line(capsys.readouterr().err).startswith("error: unknown network 'nope'")


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as raised:
        main([])
    assert raised.value.code == 2
    with pytest.raises(SystemExit) as raised:
        main(["simulate", "--dataset", "cifar"])
    assert raised.value.code == 2


def test_a_client_index_maps_to_its_own_account_or_a_clear_error() -> None:
    node = ["0xdeployer", "0xclient0", "0xclient1"]
    assert client_account(node, 0) == "0xclient0"
    assert client_account(node, 1) == "0xclient1"
    assert client_account(node, -1) == "0xdeployer"  # -1 names the deployer
    assert client_account(["0xkey"], 7) == "0xkey"  # a private key: that account, any index
    with pytest.raises(ConfigError, match="client 2 needs the node's account 3, but it manages 3"):
        client_account(node, 2)


# ---------------------------------------------------------------- reverts as sentences


def _revert_data(name: str, value: int) -> bytes:
    selector = function_signature_to_4byte_selector("CoordinatorInvalidParameter(string,uint256)")
    return selector + abi_encode(["string", "uint256"], [name, value])


def test_an_invalid_list_parameter_is_rendered_as_a_position_in_the_list() -> None:
    abi = get_contract("FLCoordinator").abi
    error = decode_revert(abi, _revert_data("tierThresholds", 1))
    assert error.name == "CoordinatorInvalidParameter"
    assert error.error_args == {"name": "tierThresholds", "value": 1}
    assert str(error).startswith(
        "CoordinatorInvalidParameter(name='tierThresholds', value=1): entry 1 (counting from 0) "
        "of tierThresholds is invalid"
    )
    scalar = decode_revert(abi, _revert_data("scale", 0))
    assert (
        str(scalar)
        == "CoordinatorInvalidParameter(name='scale', value=0): scale = 0 is out of range"
    )


def test_thresholds_that_do_not_ascend_are_refused_at_deployment_naming_the_entry(
    isolated: Chain, owner: str
) -> None:
    params = small_params(tier_thresholds=(5_000, 1_000, 50_000))
    with reverts("CoordinatorInvalidParameter", name="tierThresholds", value=1) as raised:
        deploy(isolated, params, deployer=owner)
    assert "entry 1 (counting from 0) of tierThresholds is invalid" in str(raised.value)


# ---------------------------------------------------------------- a deployment's settings


@pytest.fixture
def digits_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DeploymentRecord:
    """A deployment record for anvil (digits, 5 clients), in a temporary FL_DEPLOYMENTS_DIR."""
    monkeypatch.setenv("FL_DEPLOYMENTS_DIR", str(tmp_path / "deployments"))
    record = DeploymentRecord(
        network="anvil",
        chain_id=31337,
        address="0x" + "11" * 20,
        block_number=0,
        num_weights=650,
        dataset="digits",
        deployer=DEPLOYER,
        clients=5,
        rounds=5,
        training={"epochs": 5, "batch_size": 10, "learning_rate": 0.3, "algorithm": "fedavg"},
    )
    write_record(record)
    return record


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (
            ["--dataset", "mnist5k"],
            "error: --dataset mnist5k differs from the deployment's digits: every client must use "
            "the deployment's data split and model",
        ),
        (
            ["--clients", "3"],
            "error: --clients 3 differs from the deployment's 5: every client must use the "
            "deployment's data split and model",
        ),
        (
            ["--epochs", "1"],
            "error: --epochs 1 differs from the deployment's 5: every client trains with the "
            "deployment's settings",
        ),
    ],
    ids=["dataset", "clients", "epochs"],
)
def test_a_client_flag_that_differs_from_the_deployment_is_refused(
    digits_record: DeploymentRecord,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    expected: str,
) -> None:
    # No node is needed: the flags are checked against the record first
    assert main(["client", "--network", "anvil", "--account", "0", *flags]) == 1
    captured = capsys.readouterr()
    assert error_line(captured.err) == expected
    assert captured.out == ""


# ---------------------------------------------------------------- simulate


@pytest.mark.slow
def test_the_main_job_reaches_the_bar_prints_its_table_writes_the_same_columns_and_no_bar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m fl_client simulate` as the README runs it: 5 clients x 5 rounds of digits,
    >= 90 % test accuracy within 1 pp of plain federated learning. stderr is captured here, so not
    a terminal: no progress bar."""
    # Execute
    code = main(["simulate", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    # Assert: the bar (the command itself fails beyond the 1 pp tolerance)
    assert code == 0, captured.err
    lines = captured.out.splitlines()
    assert lines[0].startswith("Federated run on the embedded chain: digits, 5 clients x 5 rounds")
    final = re.search(r"final test accuracy: chain ([\d.]+)%  plain ([\d.]+)%", captured.out)
    assert final is not None, captured.out
    assert float(final[1]) >= 90.0
    assert abs(float(final[1]) - float(final[2])) <= 1.0
    assert "on-chain model == integer average of the submitted vectors in every round: True" in (
        captured.out
    )
    # Assert: the table, with every tier of the config as a column, labelled T1.. in its order
    start = lines.index("") + 1
    table = lines[start : lines.index("", start)]
    header, rule, *rows = [re.split(r"\s{2,}", line.strip()) for line in table]
    amounts = load_config().fl.rewards.amounts_wei
    tiers = [f"T{i + 1}" for i in range(len(amounts))] + ["none"]
    assert header[:8] == [
        "round",
        "acc chain %",
        "acc plain %",
        "gap pp",
        "submissions",
        "relayed",
        "median distance",
        "gas used",
    ]
    assert header[8:] == [f"{tier} (n x wei)" for tier in tiers]  # every tier, occurring or not
    assert len(rule) == len(header)
    assert [row[0] for row in rows] == ["1", "2", "3", "4", "5"]
    for row in rows:
        assert len(row) == len(header)
        assert sum(int(cell.split(" x ")[0]) for cell in row[8:] if cell != "-") == 5
        for tier, cell in zip(tiers, row[8:], strict=True):
            if cell != "-":  # T1 pays the first (largest) amount of the config, and so on
                paid = float(cell.split(" x ")[1])
                assert paid == (0 if tier == "none" else amounts[int(tier[1:]) - 1])
    # Assert: rounds.csv holds exactly the printed table
    with (tmp_path / "rounds.csv").open(newline="", encoding="utf-8") as handle:
        written = list(csv.reader(handle))
    assert written == [header, *rows]
    # Assert: no progress bar (tqdm would draw with carriage returns and a rate)
    assert "\r" not in captured.err
    assert "submission/s" not in captured.err
    assert "it/s" not in captured.err
    assert "%|" not in captured.err


# ---------------------------------------------------------------- on a node


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeRecord]:
    """An anvil on a free port, recorded in a private FL_STATE_DIR (so `--network anvil` finds it),
    with a private FL_DEPLOYMENTS_DIR; stopped by its pid."""
    workspace = tmp_path_factory.mktemp("cli-node")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FL_STATE_DIR", str(workspace / "state"))
        patch.setenv("FL_DEPLOYMENTS_DIR", str(workspace / "deployments"))
        patch.delenv("FL_PRIVATE_KEY", raising=False)
        process, info = start_anvil(load_config().network("anvil"), port=free_port())
        try:
            yield info
        finally:
            stop_process(info.pid, timeout=10)
            process.wait()


def deploy_with_cli(capsys: pytest.CaptureFixture[str], *flags: str) -> str:
    """Deploy with ``python -m fl_client deploy --network anvil``; the address it printed."""
    assert main(["deploy", "--network", "anvil", *flags]) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    address = captured.out.strip()
    assert re.fullmatch(r"0x[0-9a-fA-F]{40}", address), captured.out
    return address


@pytest.mark.anvil
def test_query_prints_the_deadline_as_a_utc_time_and_how_far_it_is(
    node: NodeRecord, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    address = deploy_with_cli(capsys, "--clients", "2", "--rounds", "1")
    chain = connect("anvil")
    deadline = read_round(contract_at(chain, address)).deadline
    moment = datetime.fromtimestamp(deadline, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    # Execute: before the deadline, then after it
    assert main(["query", "--network", "anvil", "--no-eval"]) == 0
    before = capsys.readouterr().out
    now_before = chain.timestamp()
    chain.advance_time(deadline - now_before + 25)
    assert main(["query", "--network", "anvil", "--no-eval"]) == 0
    after = capsys.readouterr().out
    now_after = chain.timestamp()
    # Assert
    assert f"coordinator {address} on anvil (chain id 31337)" in before
    assert (
        f"round 1 (Open): 0/2 submissions (min 2), deadline {moment} (in {deadline - now_before} s)"
        in before
    )
    assert f"deadline {moment} (passed {now_after - deadline} s ago)" in after
    assert now_after - deadline >= 25
    assert "global model v0: 650 weights" in before


@pytest.mark.anvil
def test_query_prints_each_clients_epsilon_against_the_on_chain_budget(
    node: NodeRecord, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: update-level DP with a budget of 10 (the contract holds the ledger)
    deploy_with_cli(
        capsys,
        "--clients",
        "2",
        "--rounds",
        "1",
        "--dp",
        "--dp-level",
        "update",
        "--noise-multiplier",
        "2",
        "--epsilon-budget",
        "10",
    )
    # Execute
    assert main(["query", "--network", "anvil", "--no-eval", "--account", "0"]) == 0
    out = capsys.readouterr().out
    # Assert: the budget, and client 0's spend before it took part
    assert "privacy ledger: epsilon budget 10 per client" in out
    assert re.search(r"credit 0 wei, epsilon spent 0\.000 of 10 \(0 participations\)", out), out


@pytest.mark.anvil
@pytest.mark.parametrize("key", ["0x1234", "notakey"])
def test_a_malformed_private_key_is_one_line_naming_the_variable(
    node: NodeRecord,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    key: str,
) -> None:
    deploy_with_cli(capsys, "--clients", "2", "--rounds", "1")
    monkeypatch.setenv("FL_PRIVATE_KEY", key)
    assert main(["withdraw", "--network", "anvil", "--account", "0"]) == 1
    line = error_line(capsys.readouterr().err)
    assert "FL_PRIVATE_KEY" in line
    assert "64 hexadecimal digits (32 bytes)" in line
    assert key not in line  # a key, even a malformed one, is not echoed


@pytest.mark.anvil
def test_the_client_prints_each_line_with_its_index_and_account_and_withdraw_the_amount(
    node: NodeRecord, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: one client, one round (the client closes it itself)
    address = deploy_with_cli(capsys, "--clients", "1", "--rounds", "1", "--epochs", "1")
    contract = contract_at(connect("anvil"), address)
    # Execute
    assert main(["client", "--network", "anvil", "--account", "0", "--poll", "0.1"]) == 0
    client_out = capsys.readouterr().out
    credit = int(contract.functions.credit(CLIENT_0).call())
    assert main(["withdraw", "--network", "anvil", "--account", "0"]) == 0
    withdraw_out = capsys.readouterr().out
    # Assert
    lines = client_out.splitlines()
    assert lines, client_out
    assert all(line.startswith(f"[client 0 {CLIENT_0[:10]}] ") for line in lines), client_out
    assert lines[0].endswith("task digits, 650 weights, direct path on anvil")
    assert any(
        re.search(r"\] round 1: distance [\d,]+, tier (T\d|none), reward \d+ wei", line)
        for line in lines
    )
    assert any(re.search(r"\] closed round 1 \(gas [\d,]+\)$", line) for line in lines)
    assert lines[-1].endswith("done after round 1")
    assert credit > 0  # at least the close fee
    assert re.fullmatch(rf"{CLIENT_0} withdrew {credit} wei \(gas [\d,]+\)\n", withdraw_out), (
        withdraw_out
    )
    assert int(contract.functions.credit(CLIENT_0).call()) == 0
    assert read_record("anvil").address == address


@pytest.mark.anvil
def test_withdraw_for_account_minus_one_acts_for_the_deployer(
    node: NodeRecord, capsys: pytest.CaptureFixture[str]
) -> None:
    # -1 names the deployer (the account a relay pays from by default); it has earned nothing here
    deploy_with_cli(capsys, "--clients", "2", "--rounds", "1")
    assert main(["withdraw", "--network", "anvil", "--account", "-1"]) == 1
    line = error_line(capsys.readouterr().err)
    assert line == f"error: CoordinatorNothingToWithdraw(account='{DEPLOYER}')"


@pytest.mark.anvil
def test_an_account_below_minus_one_is_refused_naming_the_range_that_is_accepted(
    node: NodeRecord, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy_with_cli(capsys, "--clients", "2", "--rounds", "1")
    assert main(["withdraw", "--network", "anvil", "--account", "-2"]) == 1
    line = error_line(capsys.readouterr().err)
    assert "(got -2)" in line
    # -1 is accepted (the deployer): a message that says "0 or more" contradicts it
    assert "0 or more" not in line
    assert "-1" in line


@pytest.mark.anvil
def test_a_stale_or_wrong_deployment_record_is_one_line_before_anything_is_sent(
    node: NodeRecord, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a deployment, then its record edited the ways a stale one goes wrong
    address = deploy_with_cli(capsys, "--clients", "2", "--rounds", "1")
    chain = connect("anvil")
    path = record_path("anvil")
    good = json.loads(path.read_text(encoding="utf-8"))
    assert (
        good["block_hash"]
        == "0x" + bytes(chain.w3.eth.get_block(good["block_number"])["hash"]).hex()
    )
    unit = contract_at(chain, address).functions.units().call()[0]
    cases = {
        "no contract": ({"address": "0x" + "de" * 20}, "there is no contract at"),
        "another contract": ({"address": unit}, "does not answer as a coordinator"),
        "another chain history": (
            {"block_hash": "0x" + "00" * 32},
            "is not the one it was deployed in",
        ),
        "another size": ({"num_weights": 651}, "holds 650 weights, the record 651"),
    }
    for name, (change, message) in cases.items():
        path.write_text(json.dumps({**good, **change}), encoding="utf-8")
        sent = chain.w3.eth.get_transaction_count(chain.accounts[1])  # type: ignore[arg-type]
        # Execute
        codes = [
            main(["query", "--network", "anvil", "--no-eval"]),
            main(["withdraw", "--network", "anvil", "--account", "0"]),
        ]
        # Assert
        err = capsys.readouterr().err
        assert codes == [1, 1], name
        assert err.count("error: the deployment record of 'anvil' is stale") == 2, (name, err)
        assert message in err, (name, err)
        assert "Traceback" not in err
        after = chain.w3.eth.get_transaction_count(chain.accounts[1])  # type: ignore[arg-type]
        assert after == sent
    path.write_text(json.dumps(good), encoding="utf-8")
    assert main(["query", "--network", "anvil", "--no-eval"]) == 0


def test_ctrl_c_is_one_line_and_exit_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr("fl_client.cli.query.run", interrupted)
    assert main(["query", "--network", "anvil"]) == 130
    assert capsys.readouterr().err == "interrupted: run the command again to resume\n"


def test_a_new_deployment_at_the_same_address_gets_a_new_client_secret() -> None:
    first = DeploymentRecord("anvil", 31337, "0x" + "11" * 20, 5, 650, "digits", "0x")
    again = replace(first, block_hash="0x" + "aa" * 32)
    other = replace(first, block_hash="0x" + "bb" * 32)
    assert secret_name("anvil", first, "0xC") == f"anvil-{first.address}-0xC.key"  # older records
    assert secret_name("anvil", again, "0xC") == f"anvil-{first.address}-{'aa' * 8}-0xC.key"
    assert secret_name("anvil", again, "0xC") != secret_name("anvil", other, "0xC")


def test_reward_reference_and_trim_flags_override_the_configured_contract() -> None:
    """``--reward-reference`` and ``--trim-each`` replace the contract's settings of
    brownie-config.yaml; a trim with sample-weighted aggregation is refused by name."""
    # Prepare
    parser = build_parser()
    project = load_config()
    # Execute
    args = parser.parse_args(["simulate", "--reward-reference", "progress", "--trim-each", "2"])
    fl = fl_overrides(project, args)
    default = fl_overrides(project, parser.parse_args(["simulate"]))
    # Assert
    assert (fl.contract.reward_reference, fl.contract.trim_each) == ("progress", 2)
    assert (default.contract.reward_reference, default.contract.trim_each) == ("current", 0)
    weighted = replace(
        project.fl, contract=replace(project.fl.contract, aggregation="sample_weighted")
    )
    with pytest.raises(ConfigError, match="trim_each needs aggregation mean"):
        fl_overrides(replace(project, fl=weighted), args)
