"""Gas at realistic sizes: every transaction of a round (model loading, direct submissions, relay
registrations, the close of every segment) fits the EIP-7825 per-transaction cap and the 128 KiB
calldata limit, for the MNIST-sized model (784 -> 10: 7,850 weights) with 10 clients and the
digits-sized one (650 weights) with sample-weighted FedAvg, on both submission paths.

The 101,770-weight model is in ``tests/test_limits.py`` (slow).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hexbytes import HexBytes
from web3.contract import Contract
from web3.types import TxReceipt

from fl_client.aggregation import integer_average
from fl_client.chain import MAX_CALLDATA_BYTES, Chain, DeployParams, deploy
from fl_client.codec import pack, vector_hash
from fl_client.config import load_config
from tests.conftest import events, relay, signed, submit
from tests.pipeline_helpers import close_round, model_values

TX_GAS_CAP = 16_777_216  # EIP-7825


def transactions_since(chain: Chain, first_block: int) -> list[tuple[int, int]]:
    """(gas used, calldata bytes) of every transaction mined from ``first_block`` on."""
    found = []
    for number in range(first_block, chain.w3.eth.block_number + 1):
        block = chain.w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            assert not isinstance(tx, bytes)
            receipt = chain.w3.eth.get_transaction_receipt(tx["hash"])
            assert receipt["status"] == 1
            found.append(
                (int(receipt["gasUsed"]), len(HexBytes(tx.get("input", tx.get("data", b"")))))
            )
    return found


def mixed_round(
    chain: Chain,
    contract: Contract,
    clients: list[str],
    relayer: str,
    vectors: list[np.ndarray],
    counts: list[int],
    *,
    round_number: int,
) -> dict[str, list[TxReceipt]]:
    """The first half of the clients submit directly, the rest are relayed; the round closes.
    The receipts by kind."""
    half = len(clients) // 2
    receipts: dict[str, list[TxReceipt]] = {"direct": [], "relay": [], "close": []}
    for client, vector, count in zip(clients[:half], vectors[:half], counts[:half], strict=True):
        receipts["direct"].extend(
            submit(chain, contract, client, vector, round_number=round_number, sample_count=count)
        )
    batch = [
        signed(chain, contract, c, v, round_number=round_number, sample_count=n)
        for c, v, n in zip(clients[half:], vectors[half:], counts[half:], strict=True)
    ]
    receipts["relay"].append(relay(chain, contract, relayer, batch, round_number=round_number))
    updates = dict(zip(clients, vectors, strict=True))
    receipts["close"] = close_round(chain, contract, relayer, updates, round_number=round_number)
    return receipts


@pytest.mark.parametrize(
    ("num_weights", "aggregation", "max_sample_count", "rounds"),
    [(7_850, "mean", 65_535, 1), (650, "sample_weighted", 65_535, 2)],
    ids=["mnist-mean", "digits-weighted"],
)
def test_rounds_fit_the_transaction_limits(
    isolated: Chain,
    owner: str,
    clients: list[str],
    relayer: str,
    num_weights: int,
    aggregation: str,
    max_sample_count: int,
    rounds: int,
) -> None:
    # Prepare: the configuration's deployment for 10 clients
    fl = load_config().fl
    fl = replace(
        fl,
        contract=replace(fl.contract, aggregation=aggregation, max_sample_count=max_sample_count),
    )
    params = DeployParams.from_config(fl, num_weights=num_weights, clients=10)
    assert (params.target_submissions, params.aggregation) == (10, aggregation)
    rng = np.random.default_rng(70)
    bound = params.max_abs_weight
    initial = rng.integers(-bound, bound + 1, size=num_weights)
    first_block = isolated.w3.eth.block_number + 1
    contract = deploy(
        isolated, params, initial_words=pack(initial), pool_wei=10**18, deployer=owner
    )
    per_segment = int(contract.functions.wordsPerSegment().call())
    weighted = aggregation == "sample_weighted"
    # Execute / Assert: each round exact, half direct and half relayed
    by_kind: dict[str, list[TxReceipt]] = {"direct": [], "relay": [], "close": []}
    for round_number in range(1, rounds + 1):
        vectors = [rng.integers(-bound, bound + 1, size=num_weights) for _ in clients]
        counts = [int(c) for c in rng.integers(1, max_sample_count + 1, size=len(clients))]
        receipts = mixed_round(
            isolated, contract, clients, relayer, vectors, counts, round_number=round_number
        )
        for kind, found in receipts.items():
            by_kind[kind].extend(found)
        expected = integer_average(vectors, counts if weighted else None)
        assert model_values(contract) == expected.tolist()
        assert contract.functions.modelHash().call() == vector_hash(pack(expected), per_segment)
        [closed] = events(contract, "RoundClosed", receipts["close"][-1])
        assert (closed["round"], closed["submissions"]) == (round_number, len(clients))
    # every transaction, the deployment and the model's loading included
    transactions = transactions_since(isolated, first_block)
    assert max(gas for gas, _ in transactions) < TX_GAS_CAP, transactions
    assert max(size for _, size in transactions) <= MAX_CALLDATA_BYTES, transactions
    report = {kind: max(int(r["gasUsed"]) for r in found) for kind, found in by_kind.items()}
    print(f"{num_weights} weights, {per_segment} words per segment: largest gas by kind {report}")
