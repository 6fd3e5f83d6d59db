"""The coordinator on a real node: anvil, one process per account, deadlines, dropouts, restarts.

Every anvil listens on a free port of 127.0.0.1 and is stopped by its process id, also when a
test fails; so is every client process. Node records go to a temporary ``FL_STATE_DIR``, and
deployment records to a temporary directory (the client processes are ``python -m fl_client``'s
``main`` with ``fl_client.chain.read_record`` pointed at it).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from web3.contract import Contract
from web3.types import Wei

import fl_client.chain as chain_module
from fl_client.aggregation import integer_average
from fl_client.chain import (
    Chain,
    DeploymentRecord,
    DeployParams,
    connect,
    deploy,
    read_model_words,
    read_round,
    send,
    submit_words,
)
from fl_client.cli import main
from fl_client.client import Participant, simulation_secret
from fl_client.codec import encode, pack, unpack
from fl_client.config import PROJECT_ROOT, NetworkConfig, load_config
from fl_client.data import Dataset, Shard, load_dataset, make_shards
from fl_client.errors import (
    ChainIdMismatchError,
    ClientStateError,
    ContractRevertError,
    NodeUnreachableError,
    TransactionDroppedError,
)
from fl_client.model import build_model, get_flat_parameters
from fl_client.node import NodeRecord, free_port, start_anvil, stop_process
from fl_client.training import TrainConfig

pytestmark = pytest.mark.anvil

CAST = PROJECT_ROOT / "node_modules" / "@foundry-rs" / "cast-linux-amd64" / "bin" / "cast"
DIGITS_WEIGHTS = 650
TRAIN = TrainConfig(epochs=1, batch_size=10, learning_rate=0.3)
# `python -m fl_client <args>` with its deployment records in $FL_TEST_DEPLOYMENTS.
LAUNCHER = (
    "import functools, os, pathlib, sys\n"
    "import fl_client.chain as chain\n"
    "directory = pathlib.Path(os.environ['FL_TEST_DEPLOYMENTS'])\n"
    "chain.read_record = functools.partial(chain.read_record, directory=directory)\n"
    "chain.write_record = functools.partial(chain.write_record, directory=directory)\n"
    "from fl_client.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


# ---------------------------------------------------------------- nodes and processes


class Node:
    """One anvil on a fixed free port, restartable (with ``state``: keeping its chain)."""

    def __init__(
        self, network: NetworkConfig, *, state: Path | None = None, record: bool = False
    ) -> None:
        self.network = network
        self.port = free_port()
        self.state = state
        self.record = record
        self.process: subprocess.Popen[bytes] | None = None
        self.info: NodeRecord | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Node:
        self.process, self.info = start_anvil(
            self.network, port=self.port, state=self.state, record=self.record
        )
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process.pid, timeout=10)
            self.process.wait()
            self.process = None

    def rpc(self, method: str, *params: Any) -> Any:
        chain = connect("anvil", url=self.url)
        return chain.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def network() -> NetworkConfig:
    return load_config().network("anvil")


@pytest.fixture(scope="module")
def node(network: NetworkConfig) -> Iterator[Node]:
    """One anvil for the tests that do not stop or reconfigure it."""
    shared = Node(network).start()
    try:
        yield shared
    finally:
        shared.stop()


@pytest.fixture
def fresh_node(network: NetworkConfig) -> Iterator[Node]:
    """An anvil of this test's own (mining mode changes, restarts)."""
    own = Node(network).start()
    try:
        yield own
    finally:
        own.stop()


@pytest.fixture
def anvil(node: Node) -> Chain:
    return connect("anvil", url=node.url)


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Private node and deployment records, for this process and the client processes."""
    monkeypatch.setenv("FL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("FL_TEST_DEPLOYMENTS", str(tmp_path / "deployments"))
    directory = tmp_path / "deployments"
    monkeypatch.setattr(
        chain_module,
        "read_record",
        functools.partial(chain_module.read_record, directory=directory),
    )
    monkeypatch.setattr(
        chain_module,
        "write_record",
        functools.partial(chain_module.write_record, directory=directory),
    )
    return tmp_path


@pytest.fixture
def recorded_node(network: NetworkConfig, workspace: Path) -> Iterator[Node]:
    """An anvil recorded in FL_STATE_DIR (so `--network anvil` finds it), dumping its state."""
    own = Node(network, state=workspace / "anvil-state.json", record=True).start()
    try:
        yield own
    finally:
        own.stop()


class Processes:
    """Client processes of one test; whatever still runs at the end is killed."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.started: list[subprocess.Popen[str]] = []

    def client(self, account: int, name: str, *args: str) -> subprocess.Popen[str]:
        output = (self.workspace / f"{name}.out").open("w")
        errors = (self.workspace / f"{name}.err").open("w")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-c", LAUNCHER, "client", "--network", "anvil"]
        command += ["--account", str(account), "--poll", "0.2", "--timeout", "90", *args]
        with output, errors:
            process = subprocess.Popen(
                command, cwd=PROJECT_ROOT, env=env, stdout=output, stderr=errors, text=True
            )
        self.started.append(process)
        return process

    def output(self, name: str) -> tuple[str, str]:
        out = (self.workspace / f"{name}.out").read_text(encoding="utf-8")
        err = (self.workspace / f"{name}.err").read_text(encoding="utf-8")
        return out, err

    def wait_for_text(self, name: str, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output(name)[0]:
                return
            time.sleep(0.02)
        raise AssertionError(f"{name} did not print {text!r} within {timeout} s")

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
            process.wait()


@pytest.fixture
def processes(workspace: Path) -> Iterator[Processes]:
    group = Processes(workspace)
    try:
        yield group
    finally:
        group.stop_all()


def _finish(process: subprocess.Popen[str], timeout: float = 90.0) -> int:
    return process.wait(timeout=timeout)


def _wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout} s")


# ---------------------------------------------------------------- deployments


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def shards(digits: Dataset) -> list[Shard]:
    return make_shards(digits, 3, seed=0)


def _digits_params(clients: int, **changes: Any) -> DeployParams:
    fl = load_config().fl
    return replace(
        DeployParams.from_config(fl, num_weights=DIGITS_WEIGHTS, clients=clients), **changes
    )


def _deploy_digits(chain: Chain, clients: int, **changes: Any) -> Contract:
    """A coordinator for the digits model (the configured initial model), as `deploy` makes it."""
    fl = load_config().fl
    dataset = load_dataset(fl.dataset, test_fraction=fl.test_fraction, seed=fl.seed)
    model = build_model(dataset.num_features, dataset.num_classes, seed=fl.seed)
    words, _ = encode(get_flat_parameters(model), fl.fixed_point)
    return deploy(
        chain,
        _digits_params(clients, **changes),
        initial_words=words,
        pool_wei=fl.rewards.pool_wei,
    )


def _record(chain: Chain, contract: Contract) -> DeploymentRecord:
    record = DeploymentRecord(
        network="anvil",
        chain_id=int(chain.w3.eth.chain_id),
        address=str(contract.address),
        block_number=0,
        num_weights=DIGITS_WEIGHTS,
        dataset="digits",
        deployer=chain.accounts[0],
    )
    chain_module.write_record(record)
    return record


def _participant(
    chain: Chain, contract: Contract, client_id: int, shards: list[Shard], digits: Dataset
) -> Participant:
    return Participant(
        chain=chain,
        contract=contract,
        account=chain.accounts[1 + client_id],
        client_id=client_id,
        shard=shards[client_id],
        num_features=digits.num_features,
        num_classes=digits.num_classes,
        train_config=TRAIN,
        seed=0,
        secret=simulation_secret(0, client_id),
    )


def _random_words(seed: int, max_abs: int = 3000) -> list[int]:
    rng = np.random.default_rng(seed)
    return pack(rng.integers(-max_abs, max_abs + 1, DIGITS_WEIGHTS))


def _submissions(contract: Contract) -> list[dict[str, Any]]:
    """Every completed submission: round, client and the words it sent (from its calldata)."""
    found = []
    w3 = contract.w3
    for event in contract.events.SubmissionAccepted().get_logs(from_block=0):
        tx = w3.eth.get_transaction(event["transactionHash"])
        _, args = contract.decode_function_input(tx["input"])
        found.append(
            {
                "round": int(event["args"]["round"]),
                "client": str(event["args"]["client"]),
                "words": [int(w) for w in args["words"]],
                "type": int(tx["type"]),
            }
        )
    return found


def _closings(contract: Contract) -> dict[int, dict[str, int]]:
    """Round -> submissions it closed with and the timestamp of the closing block."""
    closed = {}
    for event in contract.events.RoundClosed().get_logs(from_block=0):
        block = contract.w3.eth.get_block(event["blockNumber"])
        closed[int(event["args"]["round"])] = {
            "submissions": int(event["args"]["submissions"]),
            "timestamp": int(block["timestamp"]),
        }
    return closed


def _opened(contract: Contract) -> dict[int, int]:
    """Round -> its deadline when it opened."""
    return {
        int(e["args"]["round"]): int(e["args"]["deadline"])
        for e in contract.events.RoundOpened().get_logs(from_block=0)
    }


# ---------------------------------------------------------------- sending


def test_transactions_are_eip1559_type_2(anvil: Chain) -> None:
    contract = _deploy_digits(anvil, 3)
    receipt = send(anvil, contract.functions.fund(), anvil.accounts[5], value=1)
    sent = anvil.w3.eth.get_transaction(receipt["transactionHash"])
    block = anvil.w3.eth.get_block(receipt["blockNumber"])
    assert sent["type"] == 2
    assert "gasPrice" not in sent or sent["maxFeePerGas"] >= sent["gasPrice"]
    assert sent["maxFeePerGas"] >= block["baseFeePerGas"]
    assert sent["maxPriorityFeePerGas"] > 0


def test_a_dropped_transaction_is_sent_again_with_the_same_nonce(
    fresh_node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: the node holds transactions unmined; a helper drops the first one and resumes mining
    chain = connect("anvil", url=fresh_node.url)
    contract = _deploy_digits(chain, 3)
    sender = chain.accounts[4]
    nonce = chain.w3.eth.get_transaction_count(sender)  # type: ignore[arg-type]
    fresh_node.rpc("evm_setAutomine", False)

    def drop_then_mine() -> None:
        _wait_until(
            lambda: int(fresh_node.rpc("txpool_status")["result"]["pending"], 16) == 1,
            10,
            "the transaction reaching the pool",
        )
        fresh_node.rpc("anvil_dropAllTransactions")
        fresh_node.rpc("evm_setAutomine", True)

    helper = threading.Thread(target=drop_then_mine)
    helper.start()
    # Execute
    with caplog.at_level(logging.WARNING, logger="fl_client.chain"):
        receipt = send(chain, contract.functions.fund(), sender, value=7, wait_timeout=1.0)
    helper.join()
    # Assert: mined once, with the nonce of the dropped one
    sent = chain.w3.eth.get_transaction(receipt["transactionHash"])
    assert receipt["status"] == 1
    assert sent["nonce"] == nonce
    assert chain.w3.eth.get_transaction_count(sender) == nonce + 1  # type: ignore[arg-type]
    assert int(contract.functions.totalFunded().call()) == load_config().fl.rewards.pool_wei + 7
    assert "was dropped" in caplog.text


def test_a_transaction_that_is_never_mined_raises_transaction_dropped_error(
    fresh_node: Node,
) -> None:
    # Prepare: nothing gets mined
    chain = connect("anvil", url=fresh_node.url)
    contract = _deploy_digits(chain, 3)
    sender = chain.accounts[4]
    nonce = chain.w3.eth.get_transaction_count(sender)  # type: ignore[arg-type]
    fresh_node.rpc("evm_setAutomine", False)
    # Execute
    started = time.monotonic()
    with pytest.raises(TransactionDroppedError) as raised:
        send(chain, contract.functions.fund(), sender, value=7, wait_timeout=0.5, attempts=2)
    elapsed = time.monotonic() - started
    pool = fresh_node.rpc("txpool_content")["result"]["pending"]
    # Assert: two versions with the same nonce (the second one outbidding the first), then a clear
    # error within the bound; nothing was mined
    message = str(raised.value)
    assert "fund: not mined after 2 attempt(s)" in message
    assert "still pending after 0.5 s" in message
    assert f"nonce {nonce}" in message
    assert elapsed < 5
    versions = [tx for by_nonce in pool.values() for tx in by_nonce.values()]
    assert len(versions) == 1  # the replacement took the place of the first version
    assert int(versions[0]["nonce"], 16) == nonce
    assert int(versions[0]["maxPriorityFeePerGas"], 16) > 10**9  # bumped from 1 gwei
    assert chain.w3.eth.get_transaction_count(sender) == nonce  # type: ignore[arg-type]


def test_a_nonce_taken_by_another_transaction_is_retried(
    anvil: Chain, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: right after `send` reads its nonce, another transaction of the account takes it
    contract = _deploy_digits(anvil, 3)
    sender = anvil.accounts[6]
    eth = anvil.w3.eth
    original = eth.get_transaction_count
    raced: list[int] = []

    def racing_count(account: Any, block: Any = None) -> Any:
        nonce = original(account, block)
        if not raced:
            raced.append(nonce)
            tx = eth.send_transaction({"from": sender, "to": anvil.accounts[7], "value": Wei(1)})
            eth.wait_for_transaction_receipt(tx)
        return nonce

    monkeypatch.setattr(eth, "get_transaction_count", racing_count)
    # Execute
    with caplog.at_level(logging.WARNING, logger="fl_client.chain"):
        receipt = send(anvil, contract.functions.fund(), sender, value=3)
    # Assert: the first attempt was rejected ("nonce too low"), the second went through
    monkeypatch.undo()
    assert receipt["status"] == 1
    assert "nonce too low" in caplog.text
    assert eth.get_transaction(receipt["transactionHash"])["nonce"] == raced[0] + 1


def test_a_stale_gas_estimate_is_estimated_again(
    anvil: Chain, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: clients 1 and 2 submitted; client 3 estimates its submission while the round would
    # stay open, then client 4's lands first, so client 3's closes the round (and costs more).
    contract = _deploy_digits(anvil, 4)
    for index in (1, 2):
        submit_words(
            anvil,
            contract,
            anvil.accounts[index],
            round_number=1,
            sample_count=10,
            words=_random_words(index),
            words_per_segment=512,
        )
    late = anvil.accounts[3]
    function = contract.functions.submit(1, 10, 0, _random_words(3))
    # A stale estimate so low that even the headroom does not cover the closing submission.
    estimates = iter([function.estimate_gas({"from": late}) // 4])
    eth = anvil.w3.eth
    original = eth.estimate_gas

    def stale_then_fresh(*args: Any, **kwargs: Any) -> int:
        fresh = original(*args, **kwargs)
        return next(estimates, fresh)

    submit_words(
        anvil,
        contract,
        anvil.accounts[4],
        round_number=1,
        sample_count=10,
        words=_random_words(4),
        words_per_segment=512,
    )
    monkeypatch.setattr(eth, "estimate_gas", stale_then_fresh)
    # Execute
    with caplog.at_level(logging.WARNING, logger="fl_client.chain"):
        receipt = send(anvil, function, late)
    monkeypatch.undo()
    # Assert: the first transaction ran out of gas, the second closed the round
    assert receipt["status"] == 1
    assert "ran out of gas" in caplog.text
    assert read_round(contract).number == 2


def test_a_revert_on_the_node_is_decoded_before_anything_is_sent(anvil: Chain) -> None:
    contract = _deploy_digits(anvil, 3)
    sender = anvil.accounts[8]
    nonce = anvil.w3.eth.get_transaction_count(sender)  # type: ignore[arg-type]
    with pytest.raises(ContractRevertError) as wrong_round:
        send(anvil, contract.functions.submit(7, 10, 0, _random_words(0)), sender)
    with pytest.raises(ContractRevertError) as too_early:
        send(anvil, contract.functions.finalize(), sender)
    assert wrong_round.value.name == "CoordinatorWrongRound"
    assert wrong_round.value.error_args == {"given": 7, "current": 1}
    assert too_early.value.name == "CoordinatorNotClosable"
    assert anvil.w3.eth.get_transaction_count(sender) == nonce  # type: ignore[arg-type]


# ---------------------------------------------------------------- networks


def test_the_chain_id_is_checked_on_connect(
    node: Node, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The `remote` template: URL and chain id from the environment.
    monkeypatch.setenv("FL_RPC_URL", node.url)
    monkeypatch.delenv("FL_PRIVATE_KEY", raising=False)
    monkeypatch.setenv("FL_CHAIN_ID", "31337")
    remote = connect("remote")
    assert remote.w3.eth.chain_id == 31337
    assert len(remote.accounts) == load_config().network("anvil").accounts  # the node's accounts

    monkeypatch.setenv("FL_CHAIN_ID", "1")
    with pytest.raises(ChainIdMismatchError, match=r"expects chain id 1, but the node at .* 31337"):
        connect("remote")
    monkeypatch.setattr(
        chain_module,
        "read_record",
        lambda network: DeploymentRecord("remote", 1, "0x" + "11" * 20, 0, 650, "digits", "0x"),
    )
    assert main(["query", "--network", "remote", "--no-eval"]) == 1
    assert "error: network 'remote' expects chain id 1" in capsys.readouterr().err


def test_a_node_that_is_down_gives_a_clear_error_in_the_cli(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("FL_RPC_URL", url)
    monkeypatch.setenv("FL_CHAIN_ID", "31337")
    write = chain_module.write_record
    write(DeploymentRecord("remote", 31337, "0x" + "11" * 20, 0, 650, "digits", "0x"))
    code = main(["client", "--network", "remote", "--account", "0"])
    assert code == 1
    assert f"error: no Ethereum node answers at {url}" in capsys.readouterr().err
    with pytest.raises(NodeUnreachableError):
        connect("remote")


# ---------------------------------------------------------------- standard clients


def _cast_call(url: str, address: str, signature: str, *args: str) -> Any:
    result = subprocess.run(
        [str(CAST), "call", "--rpc-url", url, "--json", address, signature, *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return json.loads(result.stdout)


def test_cast_reads_the_same_round_model_and_credit_as_web3(node: Node, anvil: Chain) -> None:
    # Prepare: a coordinator with one submission in, so that round, model and credit are non-trivial
    contract = _deploy_digits(anvil, 3)
    client = anvil.accounts[1]
    submit_words(
        anvil,
        contract,
        client,
        round_number=1,
        sample_count=10,
        words=_random_words(1, max_abs=40),
        words_per_segment=512,
    )
    address = str(contract.address)
    # Execute
    round_info = _cast_call(node.url, address, "roundInfo()(uint256,uint8,uint256,uint256,uint256)")
    (model,) = _cast_call(node.url, address, "globalModel()(uint256[])")
    (weights,) = _cast_call(node.url, address, "globalModelWeights()(int256[])")
    (credit,) = _cast_call(node.url, address, "credit(address)(uint256)", client)
    # Assert
    assert [int(v) for v in round_info] == list(contract.functions.roundInfo().call())
    assert [int(w) for w in model] == read_model_words(contract)
    assert [int(w) for w in weights] == unpack(read_model_words(contract), DIGITS_WEIGHTS).tolist()
    assert int(credit) == contract.functions.credit(client).call() > 0


# ---------------------------------------------------------------- deadlines and restarts


def test_a_round_closes_at_its_deadline_once_the_minimum_is_in(
    anvil: Chain, digits: Dataset, shards: list[Shard]
) -> None:
    # Prepare: 3 expected, 2 suffice after a 3 s deadline; client 2 never shows up. The node mines
    # only on demand, so no block moves its clock: the participants go by the wall clock.
    contract = _deploy_digits(anvil, 3, min_submissions=2, round_duration=3)
    first, second = (_participant(anvil, contract, i, shards, digits) for i in (0, 1))
    deadline = read_round(contract).deadline
    assert first.step() is not None
    assert second.step() is not None
    assert read_round(contract).number == 1
    # Execute
    started = time.monotonic()
    opened = first.wait_for_close(1, poll_interval=0.1, timeout=20)
    waited = time.monotonic() - started
    # Assert: closed by `finalize` at the deadline with 2 submissions; nothing more to do
    closed = _closings(contract)[1]
    assert opened == 2
    assert closed["submissions"] == 2
    assert closed["timestamp"] >= deadline
    assert waited < 6
    assert second.wait_for_close(1, poll_interval=0.1, timeout=5) == 2
    assert second.finalize() is False  # the new round's deadline has not passed: nothing sent


def test_a_round_below_its_minimum_is_extended_not_closed(
    anvil: Chain, digits: Dataset, shards: list[Shard]
) -> None:
    contract = _deploy_digits(anvil, 3, min_submissions=2, round_duration=600)
    only = _participant(anvil, contract, 0, shards, digits)
    assert only.step() is not None
    before = read_round(contract).deadline
    anvil.advance_time(601)  # evm_increaseTime + evm_mine
    with pytest.raises(ClientStateError, match="round 1 did not close within 1 s"):
        only.wait_for_close(1, poll_interval=0.2, timeout=1.0)
    after = read_round(contract)
    assert after.number == 1
    assert after.completed == 1
    assert after.deadline >= before + 600


def test_a_round_that_closes_while_a_participant_trains_is_skipped(
    anvil: Chain,
    digits: Dataset,
    shards: list[Shard],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Prepare: 1 submission suffices after the deadline; while client 1 trains for round 1, the
    # deadline passes and client 0 closes the round.
    contract = _deploy_digits(anvil, 3, min_submissions=1, round_duration=600)
    early = _participant(anvil, contract, 0, shards, digits)
    late = _participant(anvil, contract, 1, shards, digits)
    assert early.step() is not None
    train = late.train

    def train_while_the_round_closes(round_number: int) -> Any:
        result = train(round_number)
        anvil.advance_time(601)
        assert early.finalize() is True
        return result

    monkeypatch.setattr(late, "train", train_while_the_round_closes)
    # Execute
    with caplog.at_level(logging.WARNING, logger="fl_client.client"):
        outcomes = late.run(1, poll_interval=0.1, timeout=20)
    # Assert: its submission was refused before sending (round 1 is over); it waited, and stopped
    assert outcomes == []
    assert "no part in round 1" in caplog.text
    assert "CoordinatorWrongRound" in caplog.text
    assert read_round(contract).number == 2
    assert not contract.functions.hasSubmitted(late.account, 1).call()


def test_a_restarted_participant_never_submits_twice(
    anvil: Chain, digits: Dataset, shards: list[Shard]
) -> None:
    contract = _deploy_digits(anvil, 3)
    assert _participant(anvil, contract, 0, shards, digits).step() is not None
    restarted = _participant(anvil, contract, 0, shards, digits)
    nonce = anvil.w3.eth.get_transaction_count(restarted.account)  # type: ignore[arg-type]
    assert restarted.step() is None
    assert restarted.step(1) is None
    assert anvil.w3.eth.get_transaction_count(restarted.account) == nonce  # type: ignore[arg-type]
    assert read_round(contract).completed == 1


def test_a_participant_waits_for_a_node_that_restarts(
    network: NetworkConfig,
    tmp_path: Path,
    digits: Dataset,
    shards: list[Shard],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Prepare: a node that dumps its chain on exit; client 0 submitted and waits for client 1
    restartable = Node(network, state=tmp_path / "state.json").start()
    try:
        chain = connect("anvil", url=restartable.url)
        contract = _deploy_digits(chain, 2)
        waiting = _participant(chain, contract, 0, shards, digits)
        outcomes: list[Any] = []
        errors: list[BaseException] = []

        def run() -> None:
            try:
                outcomes.extend(waiting.run(1, poll_interval=0.1, timeout=30))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        with caplog.at_level(logging.WARNING, logger="fl_client.client"):
            thread = threading.Thread(target=run)
            thread.start()
            _wait_until(
                lambda: contract.functions.hasSubmitted(waiting.account, 1).call(),
                20,
                "client 0's submission",
            )
            # Execute: the node goes away for a while and comes back with its chain
            restartable.stop()
            _wait_until(lambda: "does not answer" in caplog.text, 20, "the outage warning")
            restartable.start()
            chain = connect("anvil", url=restartable.url)
            submit_words(
                chain,
                contract,
                chain.accounts[2],
                round_number=1,
                sample_count=10,
                words=_random_words(2),
                words_per_segment=512,
            )
            thread.join(timeout=30)
        # Assert: client 0 saw the round close and stopped; it submitted once
        assert not thread.is_alive()
        assert errors == []
        assert [o.round_number for o in outcomes] == [1]
        assert read_round(contract).number == 2
        assert "answers again" in caplog.text
    finally:
        restartable.stop()


def test_a_participant_gives_up_on_a_node_that_stays_down(
    network: NetworkConfig, digits: Dataset, shards: list[Shard]
) -> None:
    gone = Node(network).start()
    try:
        chain = connect("anvil", url=gone.url)
        contract = _deploy_digits(chain, 2)
        participant = _participant(chain, contract, 0, shards, digits)
        assert participant.step() is not None
    finally:
        gone.stop()
    started = time.monotonic()
    with pytest.raises(NodeUnreachableError, match="the node has not answered for"):
        participant.run(1, poll_interval=0.2, timeout=2.0)
    assert time.monotonic() - started < 30


# ---------------------------------------------------------------- one process per account


def _check_exact_average(contract: Contract, round_number: int, expected_clients: int) -> None:
    submitted = [s for s in _submissions(contract) if s["round"] == round_number]
    assert len(submitted) == expected_clients
    vectors = [unpack(s["words"], DIGITS_WEIGHTS) for s in submitted]
    model_after = unpack(read_model_words(contract), DIGITS_WEIGHTS)
    if read_round(contract).number == round_number + 1:
        np.testing.assert_array_equal(model_after, integer_average(vectors))


@pytest.mark.slow
def test_three_client_processes_run_two_rounds(
    recorded_node: Node, workspace: Path, processes: Processes, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: `deploy` as the CLI does it (its record in the private directory)
    assert main(["deploy", "--network", "anvil", "--clients", "3", "--rounds", "2"]) == 0
    address = capsys.readouterr().out.strip()
    chain = connect("anvil")
    contract = chain_module.contract_at(chain, address)
    # Execute: one process per account
    clients = [
        processes.client(i, f"client{i}", "--clients", "3", "--rounds", "2", "--epochs", "1")
        for i in range(3)
    ]
    codes = [_finish(process) for process in clients]
    # Assert: every client finished both rounds; round 3 is open; each round's model is the exact
    # integer average of the vectors the three processes sent (read back from their calldata)
    outputs = [processes.output(f"client{i}") for i in range(3)]
    assert codes == [0, 0, 0], outputs
    for out, _ in outputs:
        assert "round 1: distance" in out
        assert "round 2: distance" in out
        assert "done after round 2" in out
    assert read_round(contract).number == 3
    submissions = _submissions(contract)
    assert sorted((s["round"], s["client"]) for s in submissions) == sorted(
        (r, chain.accounts[1 + i]) for r in (1, 2) for i in range(3)
    )
    assert {s["type"] for s in submissions} == {2}
    _check_exact_average(contract, 2, 3)
    closed = _closings(contract)
    assert closed[1]["submissions"] == closed[2]["submissions"] == 3


@pytest.mark.slow
def test_a_killed_client_does_not_stop_the_others_and_resumes(
    recorded_node: Node, workspace: Path, processes: Processes
) -> None:
    # Prepare: 3 clients expected, 2 suffice after the deadline
    chain = connect("anvil")
    contract = _deploy_digits(chain, 3, min_submissions=2, round_duration=60)
    _record(chain, contract)
    common = ("--clients", "3", "--rounds", "2", "--epochs", "1")
    survivors = [processes.client(i, f"client{i}", *common) for i in (0, 1)]
    # client 2 trains for long, so that it is killed mid-round, before it submits
    doomed = processes.client(2, "doomed", *common, "--epochs", "400")
    processes.wait_for_text("doomed", "client 2 (")
    # Execute: kill it; once the survivors are in, the deadline passes (evm_increaseTime)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    _wait_until(
        lambda: all(
            contract.functions.hasSubmitted(chain.accounts[1 + i], 1).call() for i in (0, 1)
        ),
        60,
        "the survivors' submissions",
    )
    chain.advance_time(61)
    passed_at = time.monotonic()
    _wait_until(lambda: read_round(contract).number == 2, 30, "round 1 closing")
    closed_after = time.monotonic() - passed_at
    restarted = processes.client(2, "client2", *common)
    codes = [_finish(process) for process in [*survivors, restarted]]
    # Assert: round 1 closed at its deadline with the two survivors (one of them finalized it);
    # the restarted client took part in round 2, which closed with all three; nobody submitted
    # twice
    outputs = {name: processes.output(name) for name in ("client0", "client1", "client2")}
    assert codes == [0, 0, 0], outputs
    assert not contract.functions.hasSubmitted(chain.accounts[3], 1).call()
    closed = _closings(contract)
    assert closed[1]["submissions"] == 2
    assert closed[1]["timestamp"] >= _opened(contract)[1]
    assert closed_after < 10
    assert closed[2]["submissions"] == 3
    pairs = [(s["round"], s["client"]) for s in _submissions(contract)]
    assert len(pairs) == len(set(pairs)) == 5
    assert "round 1: distance" not in outputs["client2"][0]
    assert "round 2: distance" in outputs["client2"][0]
    _check_exact_average(contract, 2, 3)


@pytest.mark.slow
def test_a_client_process_waits_for_its_node_to_come_back(
    recorded_node: Node, workspace: Path, processes: Processes
) -> None:
    # Prepare: client 0 submits and waits for client 1 (target 2)
    chain = connect("anvil")
    contract = _deploy_digits(chain, 2)
    _record(chain, contract)
    waiting = processes.client(0, "client0", "--clients", "2", "--rounds", "1", "--epochs", "1")
    _wait_until(
        lambda: contract.functions.hasSubmitted(chain.accounts[1], 1).call(),
        60,
        "client 0's submission",
    )
    # Execute: the node stops (dumping its chain) and starts again on the same port
    recorded_node.stop()
    _wait_until(
        lambda: "does not answer" in processes.output("client0")[1], 30, "the outage warning"
    )
    recorded_node.start()
    chain = connect("anvil")
    submit_words(
        chain,
        contract,
        chain.accounts[2],
        round_number=1,
        sample_count=10,
        words=_random_words(2),
        words_per_segment=512,
    )
    code = _finish(waiting, timeout=60)
    # Assert: the client reported the outage, carried on, and submitted exactly once
    out, err = processes.output("client0")
    assert code == 0, (out, err)
    assert "the node does not answer" in err
    assert "the node answers again" in err
    assert "done after round 1" in out
    assert read_round(contract).number == 2
    assert [s["client"] for s in _submissions(contract)].count(chain.accounts[1]) == 1
