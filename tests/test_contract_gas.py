"""FLCoordinator at full model size: every transaction fits the EIP-7825 per-transaction cap.

The MNIST-sized model (784 -> 10: 7,850 weights, 491 words) with 10 clients, two full rounds,
and optionally the digits-sized one (650 weights) with sample-weighted FedAvg. Each checks the
gas of every transaction and the on-chain model against the reference average after each round.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from web3.logs import DISCARD
from web3.types import TxReceipt

from fl_client.aggregation import integer_average
from fl_client.chain import Chain, DeployParams, deploy, send
from fl_client.codec import model_hash, pack
from fl_client.config import ALIGNMENT_OFF, load_config

pytestmark = pytest.mark.slow

TX_GAS_CAP = 16_777_216  # EIP-7825


def run_two_rounds(
    chain: Chain, params: DeployParams, clients: list[str], owner: str, *, seed: int
) -> tuple[list[int], list[TxReceipt]]:
    """Deploy, run two full rounds of random in-range vectors; the gas of the deployment and
    model loading, and every submission's receipt. Asserts the model after each round."""
    assert params.target_submissions == len(clients)
    rng = np.random.default_rng(seed)
    bound = params.max_abs_weight
    weighted = params.aggregation == "sample_weighted"
    first_gas_entry = len(chain.gas_used)
    contract = deploy(chain, params, pool_wei=10**18, deployer=owner)
    setup_gas = chain.gas_used[first_gas_entry:]
    receipts: list[TxReceipt] = []
    for round_number in (1, 2):
        vectors = [
            rng.integers(-bound, bound + 1, size=params.num_weights, dtype=np.int64)
            for _ in clients
        ]
        counts = [int(c) for c in rng.integers(1, params.max_sample_count + 1, size=len(clients))]
        for client, vector, count in zip(clients, vectors, counts, strict=True):
            function = contract.functions.submit(round_number, count, 0, pack(vector))
            receipts.append(send(chain, function, client))
        closed = contract.events.RoundClosed().process_receipt(receipts[-1], errors=DISCARD)
        assert [event["args"]["round"] for event in closed] == [round_number]
        expected = integer_average(vectors, counts if weighted else None)
        words = contract.functions.globalModel().call()
        assert [int(w) for w in contract.functions.globalModelWeights().call()] == expected.tolist()
        assert words == pack(expected)
        assert contract.functions.modelHash().call() == model_hash(words)
        assert contract.functions.modelVersion().call() == round_number
    return setup_gas, receipts


@pytest.mark.parametrize(
    "min_alignment_bps",
    # on at -9,999: the direction is measured and stored, and every random update passes
    [ALIGNMENT_OFF, -9_999],
    ids=["guard-off", "guard-on"],
)
def test_mnist_sized_rounds_fit_the_transaction_gas_cap(
    isolated: Chain, owner: str, clients: list[str], min_alignment_bps: int
) -> None:
    # Prepare
    params = DeployParams.from_config(load_config().fl, num_weights=7850, clients=10)
    params = replace(
        params,
        target_submissions=10,
        min_submissions=10,
        aggregation="mean",
        min_alignment_bps=min_alignment_bps,
    )
    assert params.max_abs_weight * params.target_submissions < 2**15  # 16-bit lanes
    # Execute
    setup_gas, receipts = run_two_rounds(isolated, params, clients, owner, seed=30)
    # Assert
    assert len(setup_gas) >= 2  # the deployment and at least one model chunk
    assert max(setup_gas) < TX_GAS_CAP, setup_gas
    assert len(receipts) == 20
    submission_gas = [int(r["gasUsed"]) for r in receipts]
    assert max(submission_gas) < TX_GAS_CAP, submission_gas
    # the closing submissions carry the averaging and cost the most
    assert submission_gas[9] == max(submission_gas[:10])
    assert submission_gas[19] == max(submission_gas[10:])


def test_digits_sized_weighted_rounds_fit_the_transaction_gas_cap(
    isolated: Chain, owner: str, clients: list[str]
) -> None:
    # Prepare: FedAvg with sample counts up to 65,535 needs 32-bit lanes
    params = DeployParams.from_config(load_config().fl, num_weights=650, clients=10)
    params = replace(
        params,
        target_submissions=10,
        min_submissions=10,
        aggregation="sample_weighted",
        max_sample_count=65535,
    )
    # Execute
    setup_gas, receipts = run_two_rounds(isolated, params, clients, owner, seed=31)
    # Assert
    assert max(setup_gas) < TX_GAS_CAP, setup_gas
    assert max(int(r["gasUsed"]) for r in receipts) < TX_GAS_CAP
