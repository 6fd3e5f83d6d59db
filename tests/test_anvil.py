"""The coordinator on a real node: sending by mainnet's rules, networks, a standard client (cast),
and users' processes (``python -m fl_client``): clients, a relay, a kill, a node outage.

Every anvil listens on a free port of 127.0.0.1 and is stopped by its process id, also when a test
fails; so is every process a test starts. Node records go to a temporary ``FL_STATE_DIR`` and
deployment records to a temporary ``FL_DEPLOYMENTS_DIR`` (the processes inherit both), so the
project's own records are never touched.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from web3.contract import Contract
from web3.types import Wei

from fl_client.aggregation import integer_average
from fl_client.chain import (
    Chain,
    DeploymentRecord,
    DeployParams,
    connect,
    contract_at,
    deploy,
    read_model_words,
    read_progress,
    read_record,
    read_round,
    send,
    submit_calls,
    write_record,
)
from fl_client.cli import main
from fl_client.codec import pack, split_segments, unpack, vector_hash
from fl_client.config import PROJECT_ROOT, NetworkConfig, load_config
from fl_client.errors import (
    ChainIdMismatchError,
    NodeUnreachableError,
    TransactionDroppedError,
)
from fl_client.node import NodeRecord, free_port, start_anvil, stop_process
from tests.pipeline_helpers import reverts

pytestmark = pytest.mark.anvil

CAST = PROJECT_ROOT / "node_modules" / ".bin" / "cast"
DIGITS_WEIGHTS = 650
CLIENT_WAIT = 240.0  # seconds a client process may take, at most (2 cores, shared)


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
        """SIGTERM (anvil dumps its ``--state``), then wait; by its pid."""
        if self.process is not None:
            stop_process(self.process.pid, timeout=10)
            self.process.wait()
            self.process = None

    def rpc(self, method: str, *params: Any) -> Any:
        """A raw JSON-RPC request; the whole response."""
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
        return requests.post(self.url, json=body, timeout=30).json()


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
    """An anvil of this test's own (mining mode changes)."""
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
    """Private node and deployment records, for this process and the processes it starts."""
    monkeypatch.setenv("FL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("FL_DEPLOYMENTS_DIR", str(tmp_path / "deployments"))
    monkeypatch.delenv("FL_PRIVATE_KEY", raising=False)
    return tmp_path


class Processes:
    """``python -m fl_client`` processes of one test; whatever still runs at the end is killed."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.started: dict[str, subprocess.Popen[str]] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with (
            (self.workspace / f"{name}.out").open("w") as output,
            (self.workspace / f"{name}.err").open("w") as errors,
        ):
            process = subprocess.Popen(
                [sys.executable, "-m", "fl_client", *args],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=output,
                stderr=errors,
                text=True,
            )
        self.started[name] = process
        return process

    def client(self, account: int, name: str, *args: str) -> subprocess.Popen[str]:
        return self.start(
            name,
            "client",
            "--network",
            "anvil",
            "--account",
            str(account),
            "--poll",
            "0.2",
            "--timeout",
            str(CLIENT_WAIT),
            *args,
        )

    def output(self, name: str) -> tuple[str, str]:
        out = (self.workspace / f"{name}.out").read_text(encoding="utf-8")
        err = (self.workspace / f"{name}.err").read_text(encoding="utf-8")
        return out, err

    def wait_for_text(self, name: str, text: str, *, stream: int = 0, timeout: float = 120) -> None:
        """Until ``name`` printed ``text`` (``stream`` 0: stdout, 1: stderr)."""
        process = self.started[name]
        wait_until(
            lambda: text in self.output(name)[stream] or process.poll() is not None,
            timeout,
            f"{name} printing {text!r}",
        )
        assert text in self.output(name)[stream], (name, self.output(name))

    def stop_all(self) -> None:
        for process in self.started.values():
            if process.poll() is None:
                stop_process(process.pid, timeout=5)
            process.wait()


@pytest.fixture
def processes(workspace: Path) -> Iterator[Processes]:
    group = Processes(workspace)
    try:
        yield group
    finally:
        group.stop_all()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout} s")


# ---------------------------------------------------------------- deployments


def digits_params(clients: int, **changes: Any) -> DeployParams:
    fl = load_config().fl
    base = DeployParams.from_config(fl, num_weights=DIGITS_WEIGHTS, clients=clients)
    return replace(base, **changes)


def deploy_digits(chain: Chain, clients: int, **changes: Any) -> Contract:
    """A coordinator for the digits model (from a zero model), funded as configured."""
    return deploy(
        chain, digits_params(clients, **changes), pool_wei=load_config().fl.rewards.pool_wei
    )


def random_words(seed: int, max_abs: int = 3000) -> list[int]:
    rng = np.random.default_rng(seed)
    return pack(rng.integers(-max_abs, max_abs + 1, DIGITS_WEIGHTS))


def submit_words(chain: Chain, contract: Contract, sender: str, words: list[int]) -> None:
    """A whole direct submission of ``words`` in round 1."""
    per_segment = int(contract.functions.wordsPerSegment().call())
    for call in submit_calls(
        contract,
        sender,
        round_number=1,
        sample_count=10,
        words=words,
        words_per_segment=per_segment,
    ):
        send(chain, call.function, call.sender)


def nonce(chain: Chain, account: str) -> int:
    return int(chain.w3.eth.get_transaction_count(account))  # type: ignore[arg-type]


# ---------------------------------------------------------------- sending


def test_transactions_are_eip1559_type_2(anvil: Chain) -> None:
    contract = deploy_digits(anvil, 3)
    receipt = send(anvil, contract.functions.fund(), anvil.accounts[5], value=1)
    sent = anvil.w3.eth.get_transaction(receipt["transactionHash"])
    block = anvil.w3.eth.get_block(receipt["blockNumber"])
    assert sent["type"] == 2
    assert sent["maxFeePerGas"] >= block["baseFeePerGas"]
    assert sent["maxPriorityFeePerGas"] > 0


def test_a_dropped_transaction_is_sent_again_with_the_same_nonce(
    fresh_node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: the node holds transactions unmined; a helper drops the first one and resumes mining
    chain = connect("anvil", url=fresh_node.url)
    contract = deploy_digits(chain, 3)
    sender = chain.accounts[4]
    first_nonce = nonce(chain, sender)
    fresh_node.rpc("evm_setAutomine", False)

    def drop_then_mine() -> None:
        wait_until(
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
    assert sent["nonce"] == first_nonce
    assert nonce(chain, sender) == first_nonce + 1
    assert int(contract.functions.totalFunded().call()) == load_config().fl.rewards.pool_wei + 7
    assert "was dropped" in caplog.text


def test_a_transaction_that_is_never_mined_raises_transaction_dropped_error(
    fresh_node: Node,
) -> None:
    # Prepare: nothing gets mined
    chain = connect("anvil", url=fresh_node.url)
    contract = deploy_digits(chain, 3)
    sender = chain.accounts[4]
    first_nonce = nonce(chain, sender)
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
    assert f"nonce {first_nonce}" in message
    assert elapsed < 10
    versions = [tx for by_nonce in pool.values() for tx in by_nonce.values()]
    assert len(versions) == 1  # the replacement took the place of the first version
    assert int(versions[0]["nonce"], 16) == first_nonce
    assert int(versions[0]["maxPriorityFeePerGas"], 16) > 10**9  # bumped from 1 gwei
    assert nonce(chain, sender) == first_nonce


def test_a_nonce_taken_by_another_transaction_is_retried(
    anvil: Chain, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: right after `send` reads its nonce, another transaction of the account takes it
    contract = deploy_digits(anvil, 3)
    sender = anvil.accounts[6]
    eth = anvil.w3.eth
    original = eth.get_transaction_count
    raced: list[int] = []

    def racing_count(account: Any, block: Any = None) -> Any:
        taken = original(account, block)
        if not raced:
            raced.append(taken)
            tx = eth.send_transaction({"from": sender, "to": anvil.accounts[7], "value": Wei(1)})
            eth.wait_for_transaction_receipt(tx)
        return taken

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
    # Prepare: the node's first estimate of a submission is far too low (the state changed
    # between the estimate and the transaction)
    contract = deploy_digits(anvil, 3)
    late = anvil.accounts[3]
    function = contract.functions.submit(1, 10, 0, random_words(3))
    estimates = iter([function.estimate_gas({"from": late}) // 4])
    eth = anvil.w3.eth
    original = eth.estimate_gas

    def stale_then_fresh(*args: Any, **kwargs: Any) -> int:
        fresh = original(*args, **kwargs)
        return next(estimates, fresh)

    monkeypatch.setattr(eth, "estimate_gas", stale_then_fresh)
    # Execute
    with caplog.at_level(logging.WARNING, logger="fl_client.chain"):
        receipt = send(anvil, function, late)
    monkeypatch.undo()
    # Assert: the first transaction ran out of gas, the second one went through
    assert receipt["status"] == 1
    assert "ran out of gas or failed" in caplog.text
    # both transactions were mined and paid for: both count
    assert len(anvil.gas_used) >= 2
    assert anvil.gas_used[-1] == int(receipt["gasUsed"])
    assert anvil.gas_used[-2] < anvil.gas_used[-1]  # the first ran out of a quarter estimate
    assert read_progress(contract, late).round_number == 1


def test_a_revert_on_the_node_is_decoded_before_anything_is_sent(anvil: Chain) -> None:
    contract = deploy_digits(anvil, 3)
    sender = anvil.accounts[8]
    sent = nonce(anvil, sender)
    info = read_round(contract)
    window = int(contract.functions.closeWindow().call())
    with reverts("CoordinatorWrongRound", given=7, current=1):
        send(anvil, contract.functions.submit(7, 10, 0, random_words(0)), sender)
    with reverts(
        "CoordinatorNotClosable",
        round=1,
        entries=0,
        target=3,
        minimum=3,
        opensAt=info.deadline + window,
    ):
        send(anvil, contract.functions.finalize(), sender)
    assert nonce(anvil, sender) == sent


# ---------------------------------------------------------------- networks


def test_the_chain_id_is_checked_on_connect(
    node: Node,
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The `remote` template: URL and chain id from the environment.
    monkeypatch.setenv("FL_RPC_URL", node.url)
    monkeypatch.setenv("FL_CHAIN_ID", "31337")
    remote = connect("remote")
    assert remote.w3.eth.chain_id == 31337
    assert len(remote.accounts) == load_config().network("anvil").accounts  # the node's accounts

    monkeypatch.setenv("FL_CHAIN_ID", "1")
    with pytest.raises(ChainIdMismatchError, match=r"expects chain id 1, but the node at .* 31337"):
        connect("remote")
    write_record(DeploymentRecord("remote", 1, "0x" + "11" * 20, 0, 650, "digits", "0x"))
    assert main(["query", "--network", "remote", "--no-eval"]) == 1
    assert capsys.readouterr().err.startswith("error: network 'remote' expects chain id 1")


def test_a_node_that_is_down_gives_a_clear_error_in_the_cli(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("FL_RPC_URL", url)
    monkeypatch.setenv("FL_CHAIN_ID", "31337")
    write_record(
        DeploymentRecord("remote", 31337, "0x" + "11" * 20, 0, 650, "digits", "0x", clients=2)
    )
    assert main(["client", "--network", "remote", "--account", "0"]) == 1
    err = capsys.readouterr().err
    assert err == f"error: no Ethereum node answers at {url} (ConnectionError)\n"
    with pytest.raises(NodeUnreachableError):
        connect("remote")


# ---------------------------------------------------------------- a standard client


def cast_call(url: str, address: str, signature: str, *args: str) -> Any:
    result = subprocess.run(
        [str(CAST), "call", "--rpc-url", url, "--json", address, signature, *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(result.stdout)


def test_cast_reads_the_same_round_model_hash_and_credit_as_web3(node: Node, anvil: Chain) -> None:
    # Prepare: a coordinator with one paid submission in, so that the reads are not trivial
    contract = deploy_digits(anvil, 3)
    client = anvil.accounts[1]
    submit_words(anvil, contract, client, random_words(1, max_abs=40))
    address = str(contract.address)
    # Execute
    round_info = cast_call(node.url, address, "roundInfo()(uint256,uint8,uint256,uint256,uint256)")
    (weights,) = cast_call(node.url, address, "globalModelWeights()(int256[])")
    (model_hash,) = cast_call(node.url, address, "modelHash()(bytes32)")
    (credit,) = cast_call(node.url, address, "credit(address)(uint256)", client)
    # Assert
    assert len(round_info) == 5
    assert [int(v) for v in round_info] == list(contract.functions.roundInfo().call())
    words = read_model_words(contract)
    assert [int(w) for w in weights] == unpack(words, DIGITS_WEIGHTS).tolist()
    assert bytes.fromhex(model_hash.removeprefix("0x")) == bytes(
        contract.functions.modelHash().call()
    )
    per_segment = int(contract.functions.wordsPerSegment().call())
    assert bytes.fromhex(model_hash.removeprefix("0x")) == vector_hash(words, per_segment)
    assert int(credit) == contract.functions.credit(client).call() > 0


# ---------------------------------------------------------------- users' processes


def calls_from(chain: Chain, contract: Contract, sender: str) -> list[tuple[str, dict[str, Any]]]:
    """Every call ``sender`` sent to ``contract`` that was mined: (function, arguments)."""
    found = []
    for number in range(int(chain.w3.eth.block_number) + 1):
        block = chain.w3.eth.get_block(number, full_transactions=True)
        for transaction in block["transactions"]:
            assert not isinstance(transaction, bytes)  # full transactions, not hashes
            if transaction["from"] == sender and transaction["to"] == contract.address:
                function, args = contract.decode_function_input(transaction["input"])
                found.append((function.fn_name, dict(args)))
    return found


def close_words(chain: Chain, contract: Contract, round_number: int) -> list[list[int]]:
    """The updates the close of ``round_number`` carried, from its calldata (one segment)."""
    (log,) = contract.events.RoundClosed().get_logs(
        from_block=0, argument_filters={"round": round_number}
    )
    transaction = chain.w3.eth.get_transaction(log["transactionHash"])
    function, args = contract.decode_function_input(transaction["input"])
    assert function.fn_name == "closeSegment"
    return split_segments(
        [int(w) for w in args["words"]], int(contract.functions.numWords().call())
    )


@pytest.mark.slow
def test_client_processes_a_relay_a_kill_and_a_node_outage(
    network: NetworkConfig, workspace: Path, processes: Processes
) -> None:
    """Three clients for two rounds, each its own process: client 0 submits directly, clients 1
    and 2 hand their updates to a relay process. Client 0 is killed after its round-1 submission
    and restarted; the node then stops (dumping its chain) and comes back from its state."""
    restartable = Node(network, state=workspace / "anvil-state.json", record=True).start()
    try:
        # Prepare: deploy as a user does (the CLI), and start the relay
        assert (
            main(
                ["deploy", "--network", "anvil", "--clients", "3", "--rounds", "2", "--epochs", "1"]
            )
            == 0
        )
        address = read_record("anvil").address
        chain = connect("anvil")
        contract = contract_at(chain, address)
        accounts = chain.accounts[1:4]
        relay_port = free_port()
        relay_url = f"http://127.0.0.1:{relay_port}"
        processes.start(
            "relay", "relay", "--network", "anvil", "--port", str(relay_port), "--poll", "0.2"
        )
        processes.wait_for_text("relay", relay_url)
        wait_until(
            lambda: requests.get(f"{relay_url}/status", timeout=5).ok,
            60,
            "the relay answering",
        )
        # Execute: client 0 submits, is killed, and a new process takes its place
        first = processes.client(0, "client0")
        wait_until(
            lambda: (
                read_progress(contract, accounts[0]).round_number == 1 or first.poll() is not None
            ),
            CLIENT_WAIT,
            "client 0's round-1 submission",
        )
        first.send_signal(signal.SIGKILL)
        first.wait()
        restarted = processes.client(0, "client0-restarted")
        processes.wait_for_text("client0-restarted", "direct path on anvil", timeout=CLIENT_WAIT)
        # Execute: the node goes away while client 0 waits for the others, then comes back
        restartable.stop()
        processes.wait_for_text(
            "client0-restarted", "the node does not answer", stream=1, timeout=60
        )
        restartable.start()
        relayed = [processes.client(i, f"client{i}", "--relay-url", relay_url) for i in (1, 2)]
        codes = [process.wait(timeout=CLIENT_WAIT) for process in (restarted, *relayed)]
        # Assert: everyone finished both rounds, each line prefixed with its index and account
        names = ("client0-restarted", "client1", "client2")
        outputs = {name: processes.output(name) for name in names}
        assert codes == [0, 0, 0], outputs
        for index, name in enumerate(names):
            out, _ = outputs[name]
            prefix = f"[client {index} {accounts[index][:10]}] "
            assert all(line.startswith(prefix) for line in out.splitlines()), out
            assert "round 2: distance" in out
            assert out.splitlines()[-1] == f"{prefix}done after round 2"
        assert "direct path" in outputs["client0-restarted"][0].splitlines()[0]
        for name in ("client1", "client2"):
            out = outputs[name][0]
            assert "relayed path" in out.splitlines()[0]
            assert "round 2: distance" in out
            assert "gas 0" in out  # the relay paid
        # the restarted client found its round-1 update on the chain and did not train again
        assert "round 1: distance" not in outputs["client0-restarted"][0]
        err = outputs["client0-restarted"][1]
        assert "the node does not answer" in err
        assert "the node answers again" in err
        # Assert: on the chain, one update per client and round, client 0's in one transaction
        chain = connect("anvil")
        contract = contract_at(chain, address)
        accepted = contract.events.SubmissionAccepted().get_logs(from_block=0)
        by_round = {
            r: sorted(
                (str(e["args"]["client"]), bool(e["args"]["relayed"]))
                for e in accepted
                if e["args"]["round"] == r
            )
            for r in (1, 2)
        }
        expected = sorted([(accounts[0], False), (accounts[1], True), (accounts[2], True)])
        assert by_round == {1: expected, 2: expected}
        submits = [
            args["round"]
            for name, args in calls_from(chain, contract, accounts[0])
            if name == "submit"
        ]
        assert submits == [1, 2]  # the restarted process sent nothing more in round 1
        closed = contract.events.RoundClosed().get_logs(from_block=0)
        assert [(e["args"]["round"], e["args"]["submissions"]) for e in closed] == [(1, 3), (2, 3)]
        assert read_round(contract).number == 3
        vectors = [unpack(words, DIGITS_WEIGHTS) for words in close_words(chain, contract, 2)]
        assert len(vectors) == 3
        model = unpack(read_model_words(contract), DIGITS_WEIGHTS)
        assert model.tolist() == integer_average(vectors).tolist()
        # each relayed client reported round 1 too (settled by the close, after it handed over)
        for name in ("client1", "client2"):
            assert "round 1: distance" in outputs[name][0], outputs[name]
    finally:
        processes.stop_all()
        restartable.stop()
