"""A participant on the embedded chain: one round, restart, resume, and bad inputs caught before sending."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from web3.contract import Contract

from fl_client.aggregation import distance
from fl_client.chain import Chain, DeployParams, connect, deploy, send, submit_words
from fl_client.client import Participant, simulation_secret
from fl_client.codec import encode, pack, unpack
from fl_client.config import load_config
from fl_client.data import Dataset, Shard, load_dataset, make_shards
from fl_client.errors import (
    ContractRevertError,
    InsufficientFundsError,
    NodeUnreachableError,
    ShapeError,
)
from fl_client.model import build_model, get_flat_parameters
from fl_client.training import TrainConfig

CONFIG = TrainConfig(epochs=1, batch_size=10, learning_rate=0.3)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def shards(digits: Dataset) -> list[Shard]:
    return make_shards(digits, 3, seed=0)


def _deploy(chain: Chain, owner: str, digits: Dataset, **changes: object) -> Contract:
    fl = load_config().fl
    model = build_model(digits.num_features, digits.num_classes, seed=0)
    words, _ = encode(get_flat_parameters(model), fl.fixed_point)
    params = replace(DeployParams.from_config(fl, num_weights=650, clients=3), **changes)  # type: ignore[arg-type]
    return deploy(chain, params, initial_words=words, pool_wei=10**18, deployer=owner)


def _participant(
    chain: Chain,
    contract: Contract,
    account: str,
    client_id: int,
    shards: list[Shard],
    digits: Dataset,
) -> Participant:
    return Participant(
        chain=chain,
        contract=contract,
        account=account,
        client_id=client_id,
        shard=shards[client_id],
        num_features=digits.num_features,
        num_classes=digits.num_classes,
        train_config=CONFIG,
        seed=0,
        secret=simulation_secret(0, client_id),
    )


def test_a_participant_submits_once_per_round_and_a_restart_does_not_resubmit(
    isolated: Chain, owner: str, clients: list[str], digits: Dataset, shards: list[Shard]
) -> None:
    # Prepare
    contract = _deploy(isolated, owner, digits)
    first = _participant(isolated, contract, clients[0], 0, shards, digits)
    # Execute
    outcome = first.step()
    restarted = _participant(isolated, contract, clients[0], 0, shards, digits)
    again = restarted.step()
    # Assert
    assert outcome is not None
    assert outcome.round_number == 1
    assert outcome.sample_count == shards[0].num_samples
    assert contract.functions.hasSubmitted(clients[0], 1).call()
    assert again is None
    assert contract.functions.roundInfo().call()[4] == 1  # one completed submission, not two


def test_training_is_deterministic_so_a_restart_recomputes_the_same_words(
    isolated: Chain, owner: str, clients: list[str], digits: Dataset, shards: list[Shard]
) -> None:
    contract = _deploy(isolated, owner, digits)
    a = _participant(isolated, contract, clients[0], 0, shards, digits)
    b = _participant(isolated, contract, clients[0], 0, shards, digits)
    weights_a, loss_a = a.train(1)
    weights_b, loss_b = b.train(1)
    np.testing.assert_array_equal(weights_a, weights_b)
    assert loss_a == loss_b


def test_a_client_that_crashed_mid_segments_resumes_where_the_chain_says(
    isolated: Chain, owner: str, clients: list[str], digits: Dataset, shards: list[Shard]
) -> None:
    # Prepare: 41 words in segments of 10 -> 5 segments; the "crashed" client sent two of them.
    contract = _deploy(isolated, owner, digits, words_per_segment=10)
    crashed = _participant(isolated, contract, clients[1], 1, shards, digits)
    model_before = unpack([int(w) for w in contract.functions.globalModel().call()], 650)
    weights, _ = crashed.train(1)
    words, quantized = encode(weights, crashed.view.fixed_point)
    submit_words(
        isolated,
        contract,
        clients[1],
        round_number=1,
        sample_count=shards[1].num_samples,
        words=words[:20],
        words_per_segment=10,
    )
    assert crashed.progress(1) == 2
    # Execute: a fresh process for the same account
    resumed = _participant(isolated, contract, clients[1], 1, shards, digits)
    outcome = resumed.step()
    # Assert: it sent segments 2..4 of the same vector; the distance covers the whole vector
    assert outcome is not None
    assert outcome.words == tuple(words)
    assert resumed.progress(1) == 5
    assert outcome.distance == distance(model_before, quantized.values, "l1")
    assert resumed.step() is None


def test_a_second_submission_is_rejected_before_any_transaction_is_sent(
    isolated: Chain, owner: str, clients: list[str], digits: Dataset, shards: list[Shard]
) -> None:
    contract = _deploy(isolated, owner, digits)
    words = pack(np.zeros(650, dtype=np.int64))
    submit_words(
        isolated,
        contract,
        clients[0],
        round_number=1,
        sample_count=5,
        words=words,
        words_per_segment=512,
    )
    nonce = isolated.w3.eth.get_transaction_count(clients[0])  # type: ignore[arg-type]
    with pytest.raises(ContractRevertError) as raised:
        submit_words(
            isolated,
            contract,
            clients[0],
            round_number=1,
            sample_count=5,
            words=words,
            words_per_segment=512,
        )
    assert raised.value.name == "CoordinatorAlreadySubmitted"
    assert raised.value.error_args == {"round": 1, "account": clients[0]}
    assert isolated.w3.eth.get_transaction_count(clients[0]) == nonce  # type: ignore[arg-type]


def test_a_closed_round_is_reported_with_its_number(
    isolated: Chain, owner: str, clients: list[str], digits: Dataset
) -> None:
    contract = _deploy(isolated, owner, digits)
    words = pack(np.zeros(650, dtype=np.int64))
    with pytest.raises(ContractRevertError) as raised:
        submit_words(
            isolated,
            contract,
            clients[0],
            round_number=7,
            sample_count=5,
            words=words,
            words_per_segment=512,
        )
    assert raised.value.name == "CoordinatorWrongRound"
    assert raised.value.error_args == {"given": 7, "current": 1}


def test_an_account_without_funds_gets_a_typed_error_and_sends_nothing(
    isolated: Chain, owner: str, digits: Dataset
) -> None:
    assert isolated.tester is not None
    poor = isolated.tester.add_account("0x" + "42" * 32)
    contract = _deploy(isolated, owner, digits)
    words = pack(np.zeros(650, dtype=np.int64))
    with pytest.raises(InsufficientFundsError, match="holds 0 wei, not enough"):
        send(isolated, contract.functions.submit(1, 5, 0, words), poor)
    assert isolated.w3.eth.get_transaction_count(poor) == 0


def test_a_wrong_model_size_is_caught_on_the_python_side(
    isolated: Chain, owner: str, clients: list[str], digits: Dataset, shards: list[Shard]
) -> None:
    contract = _deploy(isolated, owner, digits)
    participant = _participant(isolated, contract, clients[0], 0, shards, digits)
    with pytest.raises(ShapeError, match="expected 650 weights, got 649"):
        encode(np.zeros(649), participant.view.fixed_point, expected=participant.view.num_weights)


def test_a_node_that_is_down_gives_a_clear_error() -> None:
    from fl_client.node import free_port

    with pytest.raises(NodeUnreachableError, match="no Ethereum node answers"):
        connect("anvil", url=f"http://127.0.0.1:{free_port()}", timeout=2.0)


def test_an_outcome_whose_receipt_was_lost_is_read_back_from_the_chain(
    isolated: Chain, owner: str, clients: list[str], digits: Dataset, shards: list[Shard]
) -> None:
    # Prepare: the submission lands, but this process never saw its receipt
    contract = _deploy(isolated, owner, digits)
    participant = _participant(isolated, contract, clients[0], 0, shards, digits)
    assert participant.recover_outcome(1) is None  # nothing computed, nothing sent
    weights, _ = participant.train(1)
    words, quantized = encode(weights, participant.view.fixed_point)
    update = participant._update_for(1)
    assert update.words == words
    submit_words(
        isolated,
        contract,
        clients[0],
        round_number=1,
        sample_count=shards[0].num_samples,
        words=words,
        words_per_segment=512,
    )
    # Execute
    outcome = participant.recover_outcome(1)
    # Assert
    model = unpack([int(w) for w in contract.functions.globalModel().call()], 650)
    assert outcome is not None
    assert outcome.round_number == 1
    assert outcome.words == tuple(words)
    assert outcome.distance == distance(model, quantized.values, "l1")
    assert participant.step() is None  # and it does not submit again
