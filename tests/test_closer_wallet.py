"""A submission made through another contract (a smart wallet, a forwarder): its words are not in
any transaction's own input, only in an inner call. The closer finds them in the node's call trace
(anvil here) and closes the round; on a node that cannot trace calls it raises a ``ChainError``
that says so, before sending anything (it used to raise web3's decoding error, and the round then
ended without a model). Found by an attack review."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pytest
import solcx
from web3.contract import Contract

from bench.common import anvil_node
from fl_client.chain import Chain, CoordinatorView, connect, deploy, read_round
from fl_client.closer import RoundCloser
from fl_client.codec import pack
from fl_client.compile import find_compiler
from fl_client.config import load_config
from fl_client.errors import ChainError
from tests.conftest import SMALL_WEIGHTS, small_params, submit
from tests.pipeline_helpers import model_values

WALLET = """
// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;
contract Wallet {
    function exec(address target, bytes calldata data) external {
        (bool ok, bytes memory ret) = target.call(data);
        if (!ok) assembly { revert(add(ret, 32), mload(ret)) }
    }
    // A call that reverts inside the same transaction: its words must not be taken.
    function execTwice(address target, bytes calldata bad, bytes calldata good) external {
        (bool ok,) = target.call(bad);
        require(!ok, "expected a revert");
        (ok,) = target.call(good);
        require(ok, "the submission failed");
    }
}
"""
A = np.full(SMALL_WEIGHTS, 5, dtype=np.int64)
B = np.full(SMALL_WEIGHTS, 9, dtype=np.int64)
W = np.full(SMALL_WEIGHTS, 1, dtype=np.int64)


def wallet_of(chain: Chain, owner: str) -> Contract:
    solc = find_compiler(load_config().compiler.version)
    out: Any = solcx.compile_standard(
        {
            "language": "Solidity",
            "sources": {"Wallet.sol": {"content": WALLET}},
            "settings": {"outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}}},
        },
        solc_binary=solc,
    )
    built = out["contracts"]["Wallet.sol"]["Wallet"]
    factory = chain.w3.eth.contract(abi=built["abi"], bytecode=built["evm"]["bytecode"]["object"])
    receipt = chain.w3.eth.wait_for_transaction_receipt(
        factory.constructor().transact({"from": owner})
    )
    return cast(
        Contract, chain.w3.eth.contract(address=receipt["contractAddress"], abi=built["abi"])
    )


def three_entries(chain: Chain, contract: Contract, clients: list[str]) -> Contract:
    """Two direct submissions and one through a wallet (after a reverted inner call of other
    words): the round is full."""
    submit(chain, contract, clients[0], A)
    submit(chain, contract, clients[1], B)
    wallet = wallet_of(chain, clients[2])
    bad = contract.encode_abi("submit", args=[1, 1, 1, pack(W)])  # segment 1 first: refused
    good = contract.encode_abi("submit", args=[1, 1, 0, pack(W)])
    receipt = chain.w3.eth.wait_for_transaction_receipt(
        wallet.functions.execTwice(contract.address, bad, good).transact(
            {"from": clients[2], "gas": 3_000_000}
        )
    )
    assert receipt["status"] == 1
    assert read_round(contract).submissions == 3
    return wallet


def test_a_node_that_cannot_trace_gets_a_chain_error_and_nothing_is_sent(
    isolated: Chain, owner: str, clients: list[str], relayer: str
) -> None:
    params = small_params(target_submissions=3, min_submissions=2)
    contract = deploy(isolated, params, initial_words=pack(0 * A), pool_wei=10**6, deployer=owner)
    wallet = three_entries(isolated, contract, clients)
    closer = RoundCloser(
        chain=isolated,
        contract=contract,
        account=relayer,
        view=CoordinatorView.read(isolated, contract),
    )
    block = isolated.w3.eth.block_number
    with pytest.raises(ChainError, match="through another contract") as error:
        closer.close(now=isolated.timestamp())
    assert wallet.address in str(error.value)
    assert "cannot trace calls" in str(error.value)
    assert isolated.w3.eth.block_number == block  # nothing sent
    assert read_round(contract).phase == "Open"


@pytest.mark.anvil
def test_the_closer_reads_a_wallets_words_from_the_call_trace_and_closes_the_round() -> None:
    with anvil_node(accounts=6) as node:
        chain = connect("anvil", url=node.url)
        owner, relayer, *clients = chain.accounts
        params = small_params(target_submissions=3, min_submissions=2)
        contract = deploy(chain, params, initial_words=pack(0 * A), pool_wei=10**6, deployer=owner)
        three_entries(chain, contract, clients)
        closer = RoundCloser(
            chain=chain,
            contract=contract,
            account=relayer,
            view=CoordinatorView.read(chain, contract),
        )
        receipts = closer.close(now=chain.timestamp())
        assert receipts
        assert all(r["status"] == 1 for r in receipts)
        assert read_round(contract).number == 2
        # The mean of 5, 9 and the wallet's 1 (not the reverted call's words, the same here,
        # but sent for segment 1: taking them would have failed the length check).
        assert model_values(contract) == [5] * SMALL_WEIGHTS
