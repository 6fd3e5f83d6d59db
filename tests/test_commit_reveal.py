"""Commit-reveal mode: the honest path, phases, deadlines and abandoned rounds."""

from __future__ import annotations

import numpy as np
import pytest
from web3.contract import Contract
from web3.logs import DISCARD

from fl_client.aggregation import integer_average
from fl_client.chain import (
    Chain,
    commit_words,
    commitment,
    read_model_words,
    read_round,
    reveal_words,
    segment_hashes,
    send,
)
from fl_client.codec import pack, unpack
from fl_client.errors import ContractRevertError
from tests.conftest import SMALL_WEIGHTS, DeployFactory

SALT = b"\x5a" * 32


def _deploy(deploy_coordinator: DeployFactory, **changes: object) -> Contract:
    return deploy_coordinator(mode="commit_reveal", reveal_duration=300, **changes)


def _commit_all(
    chain: Chain, contract: Contract, accounts: list[str], vectors: list[np.ndarray], segment: int
) -> None:
    for account, vector in zip(accounts, vectors, strict=True):
        commit_words(
            chain,
            contract,
            account,
            round_number=1,
            sample_count=10,
            words=pack(vector),
            words_per_segment=segment,
            salt=SALT,
        )


def _reveal(
    chain: Chain, contract: Contract, account: str, vector: np.ndarray, segment: int
) -> None:
    reveal_words(
        chain,
        contract,
        account,
        round_number=1,
        sample_count=10,
        words=pack(vector),
        words_per_segment=segment,
        salt=SALT,
    )


def test_the_local_commitment_equals_the_contracts(
    isolated: Chain, deploy_coordinator: DeployFactory, client_a: str
) -> None:
    contract = _deploy(deploy_coordinator)
    words = pack(np.arange(SMALL_WEIGHTS, dtype=np.int64))
    hashes = segment_hashes(words, 512)
    local = commitment(
        chain_id=int(isolated.w3.eth.chain_id),
        contract_address=str(contract.address),
        round_number=1,
        client=client_a,
        sample_count=10,
        salt=SALT,
        hashes=hashes,
    )
    assert local == bytes(contract.functions.commitmentOf(1, client_a, 10, SALT, hashes).call())


@pytest.mark.parametrize("words_per_segment", [512, 1])
def test_commits_then_reveals_give_the_exact_average(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str], words_per_segment: int
) -> None:
    # Prepare
    contract = _deploy(deploy_coordinator, words_per_segment=words_per_segment)
    accounts = clients[:3]
    rng = np.random.default_rng(5)
    vectors = [rng.integers(-3000, 3001, SMALL_WEIGHTS) for _ in accounts]
    # Execute: commits; the third closes the commit phase
    _commit_all(isolated, contract, accounts[:2], vectors[:2], words_per_segment)
    assert read_round(contract).phase == "Commit"
    with pytest.raises(ContractRevertError) as raised:
        _reveal(isolated, contract, accounts[0], vectors[0], words_per_segment)
    assert raised.value.name == "CoordinatorWrongPhase"
    _commit_all(isolated, contract, accounts[2:], vectors[2:], words_per_segment)
    assert read_round(contract).phase == "Reveal"
    for account, vector in zip(accounts, vectors, strict=True):
        _reveal(isolated, contract, account, vector, words_per_segment)
    # Assert: the last reveal closed the round
    info = read_round(contract)
    assert (info.number, info.phase) == (2, "Commit")
    np.testing.assert_array_equal(
        unpack(read_model_words(contract), SMALL_WEIGHTS), integer_average(vectors)
    )


def test_a_second_commit_is_rejected(
    isolated: Chain, deploy_coordinator: DeployFactory, client_a: str
) -> None:
    contract = _deploy(deploy_coordinator)
    vector = np.zeros(SMALL_WEIGHTS, dtype=np.int64)
    _commit_all(isolated, contract, [client_a], [vector], 512)
    with pytest.raises(ContractRevertError) as raised:
        _commit_all(isolated, contract, [client_a], [vector], 512)
    assert raised.value.name == "CoordinatorAlreadyCommitted"
    assert raised.value.error_args == {"round": 1, "account": client_a}


def test_deadlines_move_the_phases_and_too_few_reveals_abandon_the_round(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str]
) -> None:
    contract = _deploy(deploy_coordinator)  # target 3, min 2, round 600 s, reveals 300 s
    before = read_model_words(contract)
    accounts = clients[:2]
    vectors = [
        np.full(SMALL_WEIGHTS, 7, dtype=np.int64),
        np.full(SMALL_WEIGHTS, -7, dtype=np.int64),
    ]
    _commit_all(isolated, contract, accounts[:1], vectors[:1], 512)
    # below the minimum at the commit deadline: extended
    isolated.advance_time(601)
    receipt = send(isolated, contract.functions.finalize(), accounts[0])
    assert contract.events.RoundExtended().process_receipt(receipt, errors=DISCARD)
    _commit_all(isolated, contract, accounts[1:], vectors[1:], 512)
    isolated.advance_time(601)
    receipt = send(isolated, contract.functions.finalize(), accounts[0])
    assert contract.events.RevealOpened().process_receipt(receipt, errors=DISCARD)
    _reveal(isolated, contract, accounts[0], vectors[0], 512)
    # the reveal deadline passes with one reveal of the two needed
    isolated.advance_time(301)
    with pytest.raises(ContractRevertError) as raised:
        _reveal(isolated, contract, accounts[1], vectors[1], 512)
    assert raised.value.name == "CoordinatorRevealClosed"
    receipt = send(isolated, contract.functions.finalize(), accounts[0])
    abandoned = contract.events.RoundAbandoned().process_receipt(receipt, errors=DISCARD)
    assert abandoned[0]["args"]["submissions"] == 1
    assert read_model_words(contract) == before
    assert read_round(contract).number == 2
