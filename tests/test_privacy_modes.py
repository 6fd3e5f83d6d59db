"""The privacy modes end to end on the embedded chain (digits, 650 weights).

Secure aggregation and commit-reveal end in exactly the models of direct submission; client-side
DP reports the accountant's epsilon per round and changes the model; a masked round that one
member of the cohort leaves is abandoned and the next one closes with everyone.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from web3.contract import Contract
from web3.logs import DISCARD

from fl_client.aggregation import integer_average
from fl_client.chain import Chain, DeployParams, connect, deploy, read_model_words, read_round, send
from fl_client.client import Participant, simulation_secret
from fl_client.codec import encode, unpack
from fl_client.config import FLConfig, load_config
from fl_client.data import Dataset, Shard, load_dataset, make_shards
from fl_client.model import build_model, get_flat_parameters
from fl_client.privacy import epsilon
from fl_client.simulation import SimulationResult, run_simulation, table_rows
from fl_client.training import TrainConfig

pytestmark = pytest.mark.slow

SIGMA = 0.5
CLIP_NORM = 2.0


def _fl(mode: str = "direct") -> FLConfig:
    fl = load_config().fl.with_overrides(dataset="digits", clients=3, rounds=2)
    return fl.with_overrides(contract=replace(fl.contract, mode=mode))


def _run(fl: FLConfig) -> SimulationResult:
    return run_simulation(fl, chain=connect("embedded"), check_accuracy=False)


@pytest.fixture(scope="module")
def direct() -> SimulationResult:
    return _run(_fl("direct"))


@pytest.fixture(scope="module")
def secure() -> SimulationResult:
    return _run(_fl("secure_aggregation"))


@pytest.fixture(scope="module")
def commit_reveal() -> SimulationResult:
    return _run(_fl("commit_reveal"))


@pytest.fixture(scope="module")
def private() -> SimulationResult:
    fl = _fl("direct")
    privacy = replace(fl.privacy, dp=True, noise_multiplier=SIGMA, clip_norm=CLIP_NORM)
    return _run(fl.with_overrides(privacy=privacy))


def _same_models(result: SimulationResult, direct: SimulationResult) -> None:
    assert result.settings["mode"] != direct.settings["mode"]
    assert [r.accuracy_chain for r in result.rounds] == [r.accuracy_chain for r in direct.rounds]
    assert [r.model_hash for r in result.rounds] == [r.model_hash for r in direct.rounds]
    assert all(r.exact_average for r in result.rounds)
    assert [r.submissions for r in result.rounds] == [3, 3]


def test_secure_aggregation_ends_in_exactly_the_models_of_direct_submission(
    secure: SimulationResult, direct: SimulationResult
) -> None:
    # The masks cancel exactly in the contract's sum, and training is deterministic.
    _same_models(secure, direct)
    assert all(r.exact_average for r in direct.rounds)
    assert len({r.model_hash for r in direct.rounds}) == 2


def test_commit_reveal_ends_in_exactly_the_models_of_direct_submission(
    commit_reveal: SimulationResult, direct: SimulationResult
) -> None:
    _same_models(commit_reveal, direct)


def test_dp_reports_the_accountants_epsilon_per_round_and_changes_the_model(
    private: SimulationResult, direct: SimulationResult
) -> None:
    delta = private.settings["delta"]
    expected = [epsilon(SIGMA, r, delta) for r in (1, 2)]
    assert [r.epsilon for r in private.rounds] == expected
    assert expected[0] < expected[1]
    header, rows = table_rows(private)
    column = header.index("epsilon")
    assert [row[column] for row in rows] == [f"{e:.2f}" for e in expected]
    assert "epsilon" not in table_rows(direct)[0]
    # The noisy model differs from the non-private one, and the chain still averages exactly.
    assert all(
        a.model_hash != b.model_hash for a, b in zip(private.rounds, direct.rounds, strict=True)
    )
    assert all(r.exact_average for r in private.rounds)
    assert all(r.epsilon is None for r in direct.rounds)


# ---------------------------------------------------------------- a dropped masked client

TRAIN = TrainConfig(epochs=1, batch_size=10, learning_rate=0.3)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def shards(digits: Dataset) -> list[Shard]:
    return make_shards(digits, 3, seed=0)


def _secure_deployment(chain: Chain, owner: str, digits: Dataset) -> Contract:
    fl = load_config().fl
    weights = get_flat_parameters(build_model(digits.num_features, digits.num_classes, seed=0))
    words, _ = encode(weights, fl.fixed_point)
    params = replace(
        DeployParams.from_config(fl, num_weights=weights.size, clients=3),
        mode="secure_aggregation",
        target_submissions=3,
        min_submissions=3,
    )
    return deploy(chain, params, initial_words=words, pool_wei=10**18, deployer=owner)


def test_a_masked_round_that_a_member_leaves_is_abandoned_and_the_next_closes_with_all(
    isolated: Chain, owner: str, clients: list[str], digits: Dataset, shards: list[Shard]
) -> None:
    # Prepare: three members register their keys; the third never submits in round 1.
    contract = _secure_deployment(isolated, owner, digits)
    members = [
        Participant(
            chain=isolated,
            contract=contract,
            account=clients[i],
            client_id=i,
            shard=shards[i],
            num_features=digits.num_features,
            num_classes=digits.num_classes,
            train_config=TRAIN,
            seed=0,
            secret=simulation_secret(0, i),
        )
        for i in range(3)
    ]
    assert all(member.register() for member in members)
    before = read_model_words(contract)
    duration = int(contract.functions.roundDuration().call())
    # Execute: round 1 with two of the three
    first = [members[0].step(1), members[1].step(1)]
    assert all(outcome is not None for outcome in first)
    assert read_round(contract).completed == 2
    assert members[0].finalize() is False  # the deadline has not passed
    isolated.advance_time(duration + 1)
    receipt = send(isolated, contract.functions.finalize(), clients[0])
    # Assert: abandoned, nothing of the two masked sums left in the model
    abandoned = contract.events.RoundAbandoned().process_receipt(receipt, errors=DISCARD)
    assert [(e["args"]["round"], e["args"]["submissions"]) for e in abandoned] == [(1, 2)]
    assert not contract.events.RoundClosed().process_receipt(receipt, errors=DISCARD)
    assert read_model_words(contract) == before
    assert int(contract.functions.modelVersion().call()) == 0
    assert read_round(contract).number == 2
    # Round 2: everyone submits; the last submission closes the round with the exact average.
    second = [member.step(2) for member in members]
    assert all(outcome is not None for outcome in second)
    assert [o.closed_round for o in second if o is not None] == [False, False, True]
    assert read_round(contract).number == 3
    assert int(contract.functions.modelVersion().call()) == 1
    num_weights = members[0].view.num_weights
    expected = integer_average(
        [unpack(list(o.words), num_weights) for o in second if o is not None]
    )
    np.testing.assert_array_equal(unpack(read_model_words(contract), num_weights), expected)
