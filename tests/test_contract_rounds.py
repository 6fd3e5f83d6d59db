"""FLCoordinator life cycle: deployment checks, setup, submissions, round closure, segments, views.

Every test runs on a snapshot of the embedded chain (the ``isolated`` fixture) and rolls back.
Reverts are checked by their decoded custom error: name and every argument.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from web3.contract import Contract
from web3.types import TxReceipt

from fl_client.aggregation import distance, integer_average
from fl_client.chain import Chain, deploy, send
from fl_client.chain import submit_words as send_in_segments
from fl_client.codec import OFFSET, model_hash, pack
from fl_client.compile import CompiledContract
from fl_client.errors import ContractRevertError
from tests.conftest import SMALL_WEIGHTS, DeployFactory, events, revert_args, small_params, submit

SMALL_WORDS = 3  # SMALL_WEIGHTS = 40 weights in 16-lane words
SETUP, OPEN = 0, 1  # FLCoordinator.Phase
MAX_UINT256 = 2**256 - 1
ZERO_ADDRESS = "0x" + "00" * 20
RAW_GAS = 16_000_000


# ---------------------------------------------------------------- helpers


def block_time(chain: Chain, receipt: TxReceipt) -> int:
    """Timestamp of the block that holds ``receipt``."""
    return int(chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"])


def submit_words(
    chain: Chain,
    contract: Contract,
    sender: str,
    words: list[int],
    *,
    round_number: int = 1,
    sample_count: int = 1,
    segment: int = 0,
) -> TxReceipt:
    """Submit raw packed words."""
    return send(
        chain, contract.functions.submit(round_number, sample_count, segment, words), sender
    )


def round_info(contract: Contract) -> tuple[int, int, int, int, int]:
    """(number, phase, deadline, started, completed)."""
    number, phase, deadline, started, completed = contract.functions.roundInfo().call()
    return int(number), int(phase), int(deadline), int(started), int(completed)


def model_weights(contract: Contract) -> list[int]:
    """The global model as signed quantized weights."""
    return [int(w) for w in contract.functions.globalModelWeights().call()]


def constant(value: int) -> np.ndarray:
    """A SMALL_WEIGHTS vector with every entry ``value``."""
    return np.full(SMALL_WEIGHTS, value, dtype=np.int64)


def random_vector(rng: np.random.Generator, bound: int = 3000) -> np.ndarray:
    """A random in-range quantized vector."""
    return rng.integers(-bound, bound + 1, size=SMALL_WEIGHTS, dtype=np.int64)


def deploy_in_setup(chain: Chain, compiled: dict[str, CompiledContract], owner: str) -> Contract:
    """Deploy with web3 directly, loading no model: the coordinator stays in Setup."""
    artifact = compiled["FLCoordinator"]
    factory = chain.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    tx_hash = factory.constructor(small_params().as_tuple()).transact(
        {"from": owner, "gas": RAW_GAS}
    )
    receipt = chain.w3.eth.wait_for_transaction_receipt(tx_hash)
    assert receipt["status"] == 1
    address = receipt["contractAddress"]
    assert address is not None
    return chain.w3.eth.contract(address=address, abi=artifact.abi)


@pytest.fixture
def setup_coordinator(
    isolated: Chain, compiled: dict[str, CompiledContract], owner: str
) -> Contract:
    """A coordinator in Setup: deployed, no model loaded."""
    return deploy_in_setup(isolated, compiled, owner)


# ---------------------------------------------------------------- deployment parameters

INVALID_PARAMETERS: list[tuple[dict[str, Any], str, int]] = [
    ({"num_weights": 0}, "numWeights", 0),
    ({"num_weights": 2**24 + 1}, "numWeights", 2**24 + 1),
    ({"scale": 0}, "scale", 0),
    ({"max_abs_weight": 0}, "maxAbsWeight", 0),
    ({"max_abs_weight": 32768}, "maxAbsWeight", 32768),
    ({"target_submissions": 0}, "targetSubmissions", 0),
    ({"target_submissions": 2**32}, "targetSubmissions", 2**32),
    ({"min_submissions": 0}, "minSubmissions", 0),
    ({"min_submissions": 4}, "minSubmissions", 4),  # above target 3
    ({"round_duration": 0}, "roundDuration", 0),
    ({"round_duration": 365 * 86_400 + 1}, "roundDuration", 365 * 86_400 + 1),
    ({"max_sample_count": 0}, "maxSampleCount", 0),
    ({"max_sample_count": 2**32}, "maxSampleCount", 2**32),
    ({"words_per_segment": 0}, "wordsPerSegment", 0),
    ({"tier_thresholds": (), "tier_rewards": ()}, "tierCount", 0),
    (
        {"tier_thresholds": tuple(range(1, 18)), "tier_rewards": tuple(range(17, 0, -1))},
        "tierCount",
        17,
    ),
    ({"tier_thresholds": (1_000, 10_000, 50_000), "tier_rewards": (300, 200)}, "tierRewards", 2),
    ({"tier_thresholds": (1_000, 1_000, 50_000)}, "tierThresholds", 1),
    ({"tier_thresholds": (1_000, 10_000, 9_999)}, "tierThresholds", 2),
    ({"tier_rewards": (300, 300, 100)}, "tierRewards", 1),
    ({"tier_rewards": (100, 200, 300)}, "tierRewards", 1),
    ({"tier_rewards": (300, 200, 0)}, "tierRewards", 2),
    ({"tier_thresholds": (1_000,), "tier_rewards": (0,)}, "tierRewards", 0),
    ({"min_reward_distance": 500, "max_counted_distance": 499}, "maxCountedDistance", 499),
]


@pytest.mark.parametrize(
    ("changes", "name", "value"),
    INVALID_PARAMETERS,
    ids=[f"{name}={value}" for _, name, value in INVALID_PARAMETERS],
)
def test_deploy_rejects_invalid_parameter(
    isolated: Chain, owner: str, changes: dict[str, Any], name: str, value: int
) -> None:
    # Prepare
    params = small_params(**changes)
    # Execute
    with pytest.raises(ContractRevertError) as caught:
        deploy(isolated, params, deployer=owner)
    # Assert
    assert caught.value.name == "CoordinatorInvalidParameter"
    assert revert_args(caught.value) == {"name": name, "value": value}


@pytest.mark.parametrize(
    "changes",
    [
        {"max_abs_weight": 32767, "target_submissions": 1, "min_submissions": 1},
        {"min_submissions": 3},  # == target
        {"round_duration": 365 * 86_400},
        {"max_sample_count": 2**32 - 1},
        {"min_reward_distance": 500, "max_counted_distance": 500},
        {"min_reward_distance": 500, "max_counted_distance": 0},  # 0: the bound is off
        {"tier_thresholds": tuple(range(1, 17)), "tier_rewards": tuple(range(16, 0, -1))},
    ],
    ids=[
        "maxAbs-32767",
        "min-eq-target",
        "duration-1y",
        "samples-u32",
        "max-eq-min",
        "max-off",
        "16-tiers",
    ],
)
def test_deploy_accepts_boundary_parameters(
    deploy_coordinator: DeployFactory, changes: dict[str, Any]
) -> None:
    # Execute
    contract = deploy_coordinator(**changes)
    # Assert
    assert round_info(contract)[:2] == (1, OPEN)


@pytest.mark.parametrize(
    ("changes", "value"),
    [
        ({"min_alignment_bps": -10_001}, -10_001),
        ({"min_alignment_bps": 10_001}, 10_001),
        ({"mode": "secure_aggregation", "min_submissions": 3, "min_alignment_bps": 0}, 0),
    ],
    ids=["below-minus-one", "above-one", "masked-updates"],
)
def test_deploy_rejects_invalid_min_alignment(
    isolated: Chain, owner: str, changes: dict[str, Any], value: int
) -> None:
    """The direction guard lies in [-10000, 10000] basis points, and masked updates (secure
    aggregation) carry no direction to measure."""
    # Execute
    with pytest.raises(ContractRevertError) as caught:
        deploy(isolated, small_params(**changes), deployer=owner)
    # Assert
    assert caught.value.name == "CoordinatorInvalidSignedParameter"
    assert revert_args(caught.value) == {"name": "minAlignment", "value": value}


@pytest.mark.parametrize("bps", [-10_000, -1, 0, 10_000])
def test_deploy_accepts_min_alignment_in_range(deploy_coordinator: DeployFactory, bps: int) -> None:
    # Execute
    contract = deploy_coordinator(min_alignment_bps=bps)
    # Assert
    assert contract.functions.minAlignment().call() == bps


# ---------------------------------------------------------------- setup phase


def test_submit_and_finalize_before_model_loaded_revert_wrong_phase(
    isolated: Chain, setup_coordinator: Contract, client_a: str
) -> None:
    # Prepare
    assert round_info(setup_coordinator) == (0, SETUP, 0, 0, 0)
    # Execute / Assert
    with pytest.raises(ContractRevertError) as caught:
        submit(isolated, setup_coordinator, client_a, constant(1), round_number=0)
    assert caught.value.name == "CoordinatorWrongPhase"
    assert revert_args(caught.value) == {"phase": SETUP}
    with pytest.raises(ContractRevertError) as caught:
        send(isolated, setup_coordinator.functions.finalize(), client_a)
    assert caught.value.name == "CoordinatorWrongPhase"
    assert revert_args(caught.value) == {"phase": SETUP}


def test_model_loading_by_non_owner_is_unauthorized(
    isolated: Chain, setup_coordinator: Contract, outsider: str
) -> None:
    # Prepare
    words = pack(constant(0))
    # Execute / Assert
    with pytest.raises(ContractRevertError) as caught:
        send(isolated, setup_coordinator.functions.loadInitialModel(0, words), outsider)
    assert caught.value.name == "CoordinatorUnauthorized"
    assert revert_args(caught.value) == {"caller": outsider}
    with pytest.raises(ContractRevertError) as caught:
        send(isolated, setup_coordinator.functions.loadZeroModel(0, SMALL_WORDS), outsider)
    assert caught.value.name == "CoordinatorUnauthorized"
    assert revert_args(caught.value) == {"caller": outsider}
    assert round_info(setup_coordinator)[1] == SETUP


def test_model_chunk_at_wrong_offset_reverts_wrong_segment(
    isolated: Chain, setup_coordinator: Contract, owner: str
) -> None:
    # Execute / Assert: the first chunk must start at word 0
    with pytest.raises(ContractRevertError) as caught:
        send(isolated, setup_coordinator.functions.loadZeroModel(1, 1), owner)
    assert caught.value.name == "CoordinatorWrongSegment"
    assert revert_args(caught.value) == {"expected": 0, "given": 1}
    # Prepare: one word in, the next chunk must start at word 1
    send(isolated, setup_coordinator.functions.loadZeroModel(0, 1), owner)
    for offset in (0, 2):
        with pytest.raises(ContractRevertError) as caught:
            send(isolated, setup_coordinator.functions.loadZeroModel(offset, 1), owner)
        assert caught.value.name == "CoordinatorWrongSegment"
        assert revert_args(caught.value) == {"expected": 1, "given": offset}


def test_model_chunk_with_too_many_or_no_words_reverts_wrong_length(
    isolated: Chain, setup_coordinator: Contract, owner: str
) -> None:
    # Prepare
    too_long = pack(np.zeros(SMALL_WORDS * 16 + 1, dtype=np.int64))  # 4 words
    # Execute / Assert
    with pytest.raises(ContractRevertError) as caught:
        send(isolated, setup_coordinator.functions.loadInitialModel(0, too_long), owner)
    assert caught.value.name == "CoordinatorWrongLength"
    assert revert_args(caught.value) == {"expected": 3, "given": 4}
    with pytest.raises(ContractRevertError) as caught:
        send(isolated, setup_coordinator.functions.loadZeroModel(0, 0), owner)
    assert caught.value.name == "CoordinatorWrongLength"
    assert revert_args(caught.value) == {"expected": 3, "given": 0}
    send(isolated, setup_coordinator.functions.loadZeroModel(0, 2), owner)
    with pytest.raises(ContractRevertError) as caught:
        send(isolated, setup_coordinator.functions.loadZeroModel(2, 2), owner)
    assert caught.value.name == "CoordinatorWrongLength"
    assert revert_args(caught.value) == {"expected": 1, "given": 2}


@pytest.mark.parametrize(("index", "value"), [(17, 3001), (0, -3001), (39, 32767)])
def test_initial_model_weight_out_of_range_reverts(
    isolated: Chain, setup_coordinator: Contract, owner: str, index: int, value: int
) -> None:
    # Prepare
    values = constant(5)
    values[index] = value
    # Execute
    with pytest.raises(ContractRevertError) as caught:
        send(isolated, setup_coordinator.functions.loadInitialModel(0, pack(values)), owner)
    # Assert
    assert caught.value.name == "CoordinatorWeightOutOfRange"
    assert revert_args(caught.value) == {"index": index, "value": value, "maxAbs": 3000}


def test_initial_model_with_nonzero_padding_reverts(
    isolated: Chain, setup_coordinator: Contract, owner: str
) -> None:
    # Prepare: lane 8 of word 2 is weight 40, past the end of the 40-weight vector
    words = pack(constant(0))
    words[2] += 7 << (8 * 16)
    # Execute
    with pytest.raises(ContractRevertError) as caught:
        send(isolated, setup_coordinator.functions.loadInitialModel(0, words), owner)
    # Assert
    assert caught.value.name == "CoordinatorWeightOutOfRange"
    assert revert_args(caught.value) == {"index": 40, "value": 7, "maxAbs": 0}


def test_chunked_initial_model_is_stored_exactly_and_opens_round_one(
    isolated: Chain, setup_coordinator: Contract, owner: str
) -> None:
    # Prepare
    values = random_vector(np.random.default_rng(1))
    values[0], values[1] = 3000, -3000
    words = pack(values)
    # Execute
    first = send(isolated, setup_coordinator.functions.loadInitialModel(0, words[:2]), owner)
    phase_after_first = round_info(setup_coordinator)[1]
    last = send(isolated, setup_coordinator.functions.loadInitialModel(2, words[2:]), owner)
    # Assert
    assert phase_after_first == SETUP
    assert events(setup_coordinator, "InitialModelLoaded", first) == [{"firstWord": 0, "count": 2}]
    assert events(setup_coordinator, "InitialModelLoaded", last) == [{"firstWord": 2, "count": 1}]
    assert events(setup_coordinator, "RoundOpened", last) == [
        {"round": 1, "deadline": block_time(isolated, last) + 600}
    ]
    assert round_info(setup_coordinator) == (1, OPEN, block_time(isolated, last) + 600, 0, 0)
    assert model_weights(setup_coordinator) == values.tolist()
    assert setup_coordinator.functions.globalModel().call() == words
    assert setup_coordinator.functions.modelHash().call() == model_hash(words)
    assert setup_coordinator.functions.modelVersion().call() == 0


def test_loading_after_setup_reverts_wrong_phase(
    isolated: Chain, coordinator: Contract, owner: str
) -> None:
    # Execute / Assert
    with pytest.raises(ContractRevertError) as caught:
        send(isolated, coordinator.functions.loadZeroModel(0, 1), owner)
    assert caught.value.name == "CoordinatorWrongPhase"
    assert revert_args(caught.value) == {"phase": OPEN}
    with pytest.raises(ContractRevertError) as caught:
        send(isolated, coordinator.functions.loadInitialModel(0, pack(constant(1))), owner)
    assert caught.value.name == "CoordinatorWrongPhase"
    assert revert_args(caught.value) == {"phase": OPEN}


def test_default_initial_model_is_zeros(coordinator: Contract) -> None:
    # Assert
    zeros = pack(constant(0))
    assert model_weights(coordinator) == [0] * SMALL_WEIGHTS
    assert coordinator.functions.globalModel().call() == zeros
    assert zeros == [sum(OFFSET << (16 * lane) for lane in range(16))] * SMALL_WORDS
    assert coordinator.functions.modelHash().call() == model_hash(zeros)
    assert coordinator.functions.modelVersion().call() == 0


def test_given_initial_model_is_returned_exactly(deploy_coordinator: DeployFactory) -> None:
    # Prepare
    values = random_vector(np.random.default_rng(2))
    # Execute
    contract = deploy_coordinator(initial=values)
    # Assert
    assert model_weights(contract) == values.tolist()
    assert contract.functions.modelHash().call() == model_hash(pack(values))


# ---------------------------------------------------------------- submissions


@pytest.mark.parametrize("given", [0, 2])
def test_submit_for_wrong_round_reverts(
    isolated: Chain, coordinator: Contract, client_a: str, given: int
) -> None:
    with pytest.raises(ContractRevertError) as caught:
        submit(isolated, coordinator, client_a, constant(1), round_number=given)
    assert caught.value.name == "CoordinatorWrongRound"
    assert revert_args(caught.value) == {"given": given, "current": 1}


def test_second_submission_reverts_already_submitted(
    isolated: Chain, coordinator: Contract, client_a: str
) -> None:
    # Prepare
    submit(isolated, coordinator, client_a, constant(1))
    # Execute
    with pytest.raises(ContractRevertError) as caught:
        submit(isolated, coordinator, client_a, constant(2))
    # Assert
    assert caught.value.name == "CoordinatorAlreadySubmitted"
    assert revert_args(caught.value) == {"round": 1, "account": client_a}
    assert round_info(coordinator)[3:] == (1, 1)


@pytest.mark.parametrize("length", [0, 2, 4])
def test_submit_with_wrong_length_reverts(
    isolated: Chain, coordinator: Contract, client_a: str, length: int
) -> None:
    # Prepare
    words = pack(np.zeros(16 * 4, dtype=np.int64))[:length]
    # Execute
    with pytest.raises(ContractRevertError) as caught:
        submit_words(isolated, coordinator, client_a, words)
    # Assert
    assert caught.value.name == "CoordinatorWrongLength"
    assert revert_args(caught.value) == {"expected": SMALL_WORDS, "given": length}


@pytest.mark.parametrize(("index", "value"), [(21, 3001), (21, -3001), (0, 32767), (39, -32768)])
def test_submit_weight_out_of_range_reverts(
    isolated: Chain, coordinator: Contract, client_a: str, index: int, value: int
) -> None:
    # Prepare: write the lane directly (pack cannot encode -32768)
    words = pack(constant(3000))
    lane_shift = 16 * (index % 16)
    word = words[index // 16] & ~(0xFFFF << lane_shift)
    words[index // 16] = word | ((value + OFFSET) << lane_shift)
    # Execute
    with pytest.raises(ContractRevertError) as caught:
        submit_words(isolated, coordinator, client_a, words)
    # Assert
    assert caught.value.name == "CoordinatorWeightOutOfRange"
    assert revert_args(caught.value) == {"index": index, "value": value, "maxAbs": 3000}


def test_submit_reports_first_weight_out_of_range(
    isolated: Chain, coordinator: Contract, client_a: str
) -> None:
    # Prepare
    values = constant(0)
    values[5], values[30] = -3001, 3001
    # Execute
    with pytest.raises(ContractRevertError) as caught:
        submit(isolated, coordinator, client_a, values)
    # Assert
    assert caught.value.name == "CoordinatorWeightOutOfRange"
    assert revert_args(caught.value) == {"index": 5, "value": -3001, "maxAbs": 3000}


def test_submit_accepts_weights_at_the_bounds(
    isolated: Chain, coordinator: Contract, client_a: str
) -> None:
    # Prepare
    values = np.array([3000, -3000] * (SMALL_WEIGHTS // 2), dtype=np.int64)
    # Execute
    receipt = submit(isolated, coordinator, client_a, values)
    # Assert
    [accepted] = events(coordinator, "SubmissionAccepted", receipt)
    assert accepted["distance"] == 3000 * SMALL_WEIGHTS


@pytest.mark.parametrize(("lane", "value", "max_abs"), [(8, 1, 0), (15, -1, 0), (8, 3001, 3000)])
def test_submit_with_nonzero_padding_reverts(
    isolated: Chain, coordinator: Contract, client_a: str, lane: int, value: int, max_abs: int
) -> None:
    """A padding lane must hold zero; a padding value beyond maxAbs fails the range check first."""
    # Prepare
    words = pack(constant(0))
    words[2] += value << (16 * lane)
    # Execute
    with pytest.raises(ContractRevertError) as caught:
        submit_words(isolated, coordinator, client_a, words)
    # Assert
    assert caught.value.name == "CoordinatorWeightOutOfRange"
    assert revert_args(caught.value) == {"index": 32 + lane, "value": value, "maxAbs": max_abs}


@pytest.mark.parametrize("sample_count", [0, 1001, 2**32])
def test_submit_with_invalid_sample_count_reverts(
    isolated: Chain, coordinator: Contract, client_a: str, sample_count: int
) -> None:
    with pytest.raises(ContractRevertError) as caught:
        submit(isolated, coordinator, client_a, constant(1), sample_count=sample_count)
    assert caught.value.name == "CoordinatorInvalidSampleCount"
    assert revert_args(caught.value) == {"sampleCount": sample_count, "max": 1000}


def test_submit_accepts_max_sample_count(
    isolated: Chain, coordinator: Contract, client_a: str
) -> None:
    receipt = submit(isolated, coordinator, client_a, constant(1), sample_count=1000)
    [accepted] = events(coordinator, "SubmissionAccepted", receipt)
    assert accepted["sampleCount"] == 1000
    assert coordinator.functions.submissionOf(client_a).call() == [1, 1, 1000, SMALL_WEIGHTS]


def test_allowlist_gates_submissions(
    isolated: Chain,
    deploy_coordinator: DeployFactory,
    owner: str,
    client_a: str,
    client_b: str,
    outsider: str,
) -> None:
    # Prepare
    contract = deploy_coordinator(allowlist_enabled=True)
    # Execute / Assert: nobody is allowed at first
    with pytest.raises(ContractRevertError) as caught:
        submit(isolated, contract, outsider, constant(1))
    assert caught.value.name == "CoordinatorNotEligible"
    assert revert_args(caught.value) == {"account": outsider}
    # only the owner manages the list
    with pytest.raises(ContractRevertError) as caught:
        send(isolated, contract.functions.setAllowed([outsider], True), outsider)
    assert caught.value.name == "CoordinatorUnauthorized"
    assert revert_args(caught.value) == {"caller": outsider}
    # the owner allows two accounts
    receipt = send(isolated, contract.functions.setAllowed([client_a, client_b], True), owner)
    assert events(contract, "AllowlistUpdated", receipt) == [
        {"account": client_a, "allowed": True},
        {"account": client_b, "allowed": True},
    ]
    assert contract.functions.allowed(client_a).call() is True
    assert contract.functions.allowed(outsider).call() is False
    submit(isolated, contract, client_a, constant(1))
    assert contract.functions.hasSubmitted(client_a, 1).call() is True
    # and revokes one
    receipt = send(isolated, contract.functions.setAllowed([client_b], False), owner)
    assert events(contract, "AllowlistUpdated", receipt) == [
        {"account": client_b, "allowed": False}
    ]
    with pytest.raises(ContractRevertError) as caught:
        submit(isolated, contract, client_b, constant(1))
    assert caught.value.name == "CoordinatorNotEligible"
    assert revert_args(caught.value) == {"account": client_b}


def test_allowlist_is_ignored_when_disabled(
    isolated: Chain, coordinator: Contract, outsider: str
) -> None:
    submit(isolated, coordinator, outsider, constant(1))
    assert coordinator.functions.hasSubmitted(outsider, 1).call() is True


def test_transfer_ownership(
    isolated: Chain, coordinator: Contract, owner: str, client_a: str, outsider: str
) -> None:
    # Execute / Assert: the zero address is rejected
    with pytest.raises(ContractRevertError) as caught:
        send(isolated, coordinator.functions.transferOwnership(ZERO_ADDRESS), owner)
    assert caught.value.name == "CoordinatorInvalidParameter"
    assert revert_args(caught.value) == {"name": "newOwner", "value": 0}
    # only the owner may transfer
    with pytest.raises(ContractRevertError) as caught:
        send(isolated, coordinator.functions.transferOwnership(outsider), outsider)
    assert caught.value.name == "CoordinatorUnauthorized"
    assert revert_args(caught.value) == {"caller": outsider}
    # a real transfer
    receipt = send(isolated, coordinator.functions.transferOwnership(client_a), owner)
    assert events(coordinator, "OwnershipTransferred", receipt) == [
        {"previousOwner": owner, "newOwner": client_a}
    ]
    assert coordinator.functions.owner().call() == client_a
    # the old owner lost its rights, the new one manages
    with pytest.raises(ContractRevertError) as caught:
        send(isolated, coordinator.functions.setAllowed([outsider], True), owner)
    assert caught.value.name == "CoordinatorUnauthorized"
    assert revert_args(caught.value) == {"caller": owner}
    send(isolated, coordinator.functions.setAllowed([outsider], True), client_a)
    assert coordinator.functions.allowed(outsider).call() is True


# ---------------------------------------------------------------- round closure


def test_round_closes_when_target_reached(
    isolated: Chain, coordinator: Contract, clients: list[str]
) -> None:
    # Prepare
    rng = np.random.default_rng(3)
    vectors = [random_vector(rng) for _ in range(3)]
    # Execute
    receipts = [submit(isolated, coordinator, c, v) for c, v in zip(clients, vectors, strict=False)]
    # Assert
    assert events(coordinator, "RoundClosed", receipts[0]) == []
    assert events(coordinator, "RoundClosed", receipts[1]) == []
    words = coordinator.functions.globalModel().call()
    closed_at = block_time(isolated, receipts[2])
    assert events(coordinator, "RoundClosed", receipts[2]) == [
        {"round": 1, "modelVersion": 1, "modelHash": model_hash(words), "submissions": 3}
    ]
    assert events(coordinator, "RoundOpened", receipts[2]) == [
        {"round": 2, "deadline": closed_at + 600}
    ]
    assert model_weights(coordinator) == integer_average(vectors).tolist()
    assert words == pack(integer_average(vectors))
    assert coordinator.functions.modelVersion().call() == 1
    assert coordinator.functions.modelHash().call() == model_hash(words)
    assert round_info(coordinator) == (2, OPEN, closed_at + 600, 0, 0)


def test_finalize_before_deadline_reverts_not_closable(
    isolated: Chain, coordinator: Contract, client_a: str, client_b: str, outsider: str
) -> None:
    # Prepare
    deadline = round_info(coordinator)[2]
    submit(isolated, coordinator, client_a, constant(1))
    # Execute / Assert: below the minimum
    with pytest.raises(ContractRevertError) as caught:
        send(isolated, coordinator.functions.finalize(), outsider)
    assert caught.value.name == "CoordinatorNotClosable"
    assert revert_args(caught.value) == {
        "round": 1,
        "deadline": deadline,
        "completed": 1,
        "minimum": 2,
    }
    # at the minimum, still before the deadline
    submit(isolated, coordinator, client_b, constant(2))
    with pytest.raises(ContractRevertError) as caught:
        send(isolated, coordinator.functions.finalize(), outsider)
    assert caught.value.name == "CoordinatorNotClosable"
    assert revert_args(caught.value) == {
        "round": 1,
        "deadline": deadline,
        "completed": 2,
        "minimum": 2,
    }
    assert round_info(coordinator) == (1, OPEN, deadline, 2, 2)


def test_finalize_after_deadline_with_minimum_closes(
    isolated: Chain, coordinator: Contract, client_a: str, client_b: str, outsider: str
) -> None:
    # Prepare
    a, b = constant(10), constant(-3)
    submit(isolated, coordinator, client_a, a)
    submit(isolated, coordinator, client_b, b)
    isolated.advance_time(600)
    # Execute
    receipt = send(isolated, coordinator.functions.finalize(), outsider)
    # Assert
    words = coordinator.functions.globalModel().call()
    assert events(coordinator, "RoundClosed", receipt) == [
        {"round": 1, "modelVersion": 1, "modelHash": model_hash(words), "submissions": 2}
    ]
    assert model_weights(coordinator) == [4] * SMALL_WEIGHTS  # 7 / 2 = 3.5 -> 4
    assert round_info(coordinator) == (2, OPEN, block_time(isolated, receipt) + 600, 0, 0)


def test_finalize_below_minimum_extends_round_and_keeps_submissions(
    isolated: Chain, coordinator: Contract, client_a: str, client_b: str, outsider: str
) -> None:
    # Prepare
    first = submit(isolated, coordinator, client_a, constant(100))
    old_deadline = round_info(coordinator)[2]
    credit_a = coordinator.functions.credit(client_a).call()
    assert credit_a == 200  # L1 4,000: tier 1
    isolated.advance_time(600)
    # Execute
    receipt = send(isolated, coordinator.functions.finalize(), outsider)
    # Assert: extended by one roundDuration from the finalize block
    new_deadline = block_time(isolated, receipt) + 600
    assert new_deadline >= old_deadline + 600
    assert events(coordinator, "RoundExtended", receipt) == [{"round": 1, "deadline": new_deadline}]
    assert events(coordinator, "RoundClosed", receipt) == []
    assert round_info(coordinator) == (1, OPEN, new_deadline, 1, 1)
    assert coordinator.functions.hasSubmitted(client_a, 1).call() is True
    assert coordinator.functions.credit(client_a).call() == credit_a
    assert block_time(isolated, first) < old_deadline
    # not closable again before the new deadline
    with pytest.raises(ContractRevertError) as caught:
        send(isolated, coordinator.functions.finalize(), outsider)
    assert caught.value.name == "CoordinatorNotClosable"
    assert revert_args(caught.value) == {
        "round": 1,
        "deadline": new_deadline,
        "completed": 1,
        "minimum": 2,
    }
    # a second client before the new deadline: minimum reached, but not the target or deadline
    second = submit(isolated, coordinator, client_b, constant(-50))
    assert events(coordinator, "RoundClosed", second) == []
    assert round_info(coordinator) == (1, OPEN, new_deadline, 2, 2)
    isolated.advance_time(600)
    closing = send(isolated, coordinator.functions.finalize(), outsider)
    [closed] = events(coordinator, "RoundClosed", closing)
    assert (closed["round"], closed["submissions"]) == (1, 2)
    assert model_weights(coordinator) == [25] * SMALL_WEIGHTS  # the first submission was kept
    assert coordinator.functions.credit(client_a).call() == credit_a


def test_submission_after_deadline_reaching_minimum_closes_round(
    isolated: Chain, coordinator: Contract, client_a: str, client_b: str
) -> None:
    # Prepare
    submit(isolated, coordinator, client_a, constant(8))
    isolated.advance_time(600)
    # Execute
    receipt = submit(isolated, coordinator, client_b, constant(2))
    # Assert
    words = coordinator.functions.globalModel().call()
    assert events(coordinator, "RoundClosed", receipt) == [
        {"round": 1, "modelVersion": 1, "modelHash": model_hash(words), "submissions": 2}
    ]
    assert model_weights(coordinator) == [5] * SMALL_WEIGHTS
    assert round_info(coordinator)[:2] == (2, OPEN)


def test_submission_after_deadline_below_minimum_keeps_round_open(
    isolated: Chain, coordinator: Contract, client_a: str
) -> None:
    # Prepare
    deadline = round_info(coordinator)[2]
    isolated.advance_time(600)
    # Execute
    receipt = submit(isolated, coordinator, client_a, constant(8))
    # Assert
    assert events(coordinator, "RoundClosed", receipt) == []
    assert round_info(coordinator) == (1, OPEN, deadline, 1, 1)


def test_round_with_nobody_counted_leaves_model_unchanged(
    isolated: Chain,
    deploy_coordinator: DeployFactory,
    client_a: str,
    client_b: str,
    outsider: str,
) -> None:
    # Prepare: every submission is farther than maxCountedDistance from the model
    initial = random_vector(np.random.default_rng(4), bound=100)
    contract = deploy_coordinator(initial=initial, max_counted_distance=10)
    words_before = contract.functions.globalModel().call()
    hash_before = contract.functions.modelHash().call()
    far_a, far_b = initial + 1, initial - 1  # L1 40 each
    for client, vector in ((client_a, far_a), (client_b, far_b)):
        receipt = submit(isolated, contract, client, vector)
        [accepted] = events(contract, "SubmissionAccepted", receipt)
        assert (accepted["distance"], accepted["counted"]) == (40, False)
    isolated.advance_time(600)
    # Execute
    receipt = send(isolated, contract.functions.finalize(), outsider)
    # Assert
    assert events(contract, "RoundClosed", receipt) == [
        {"round": 1, "modelVersion": 1, "modelHash": hash_before, "submissions": 2}
    ]
    assert contract.functions.globalModel().call() == words_before
    assert model_weights(contract) == initial.tolist()
    # and the untouched sums stay clean for the next round
    near = initial.copy()
    near[0] += 5
    submit(isolated, contract, client_a, near, round_number=2)
    submit(isolated, contract, client_b, initial, round_number=2)
    isolated.advance_time(600)
    send(isolated, contract.functions.finalize(), outsider)
    assert model_weights(contract) == integer_average([near, initial]).tolist()


# ---------------------------------------------------------------- segments


@pytest.fixture
def segmented(deploy_coordinator: DeployFactory) -> Contract:
    """A coordinator whose 3-word vectors travel in 3 one-word segments."""
    return deploy_coordinator(words_per_segment=1)


def send_segments(
    chain: Chain,
    contract: Contract,
    sender: str,
    values: np.ndarray,
    segments: range,
    *,
    sample_count: int = 1,
    round_number: int = 1,
) -> list[TxReceipt]:
    """Send the given one-word segments of ``values``."""
    words = pack(values)
    return [
        submit_words(
            chain,
            contract,
            sender,
            [words[s]],
            round_number=round_number,
            sample_count=sample_count,
            segment=s,
        )
        for s in segments
    ]


def test_segment_parameters(segmented: Contract) -> None:
    assert segmented.functions.wordsPerSegment().call() == 1
    assert segmented.functions.numSegments().call() == 3


def test_segments_must_come_in_order(isolated: Chain, segmented: Contract, client_a: str) -> None:
    # Prepare
    words = pack(constant(1))
    # Execute / Assert
    with pytest.raises(ContractRevertError) as caught:
        submit_words(isolated, segmented, client_a, [words[1]], segment=1)
    assert caught.value.name == "CoordinatorWrongSegment"
    assert revert_args(caught.value) == {"expected": 0, "given": 1}
    submit_words(isolated, segmented, client_a, [words[0]], segment=0)
    for given in (0, 2):
        with pytest.raises(ContractRevertError) as caught:
            submit_words(isolated, segmented, client_a, [words[given]], segment=given)
        assert caught.value.name == "CoordinatorWrongSegment"
        assert revert_args(caught.value) == {"expected": 1, "given": given}
    # a segment has exactly wordsPerSegment words
    with pytest.raises(ContractRevertError) as caught:
        submit_words(isolated, segmented, client_a, words[1:3], segment=1)
    assert caught.value.name == "CoordinatorWrongLength"
    assert revert_args(caught.value) == {"expected": 1, "given": 2}


def test_segments_emit_events_and_reward_on_last_segment(
    isolated: Chain, segmented: Contract, client_a: str
) -> None:
    # Prepare
    values = constant(20)  # L1 800: tier 0, 300 wei
    words = pack(values)
    receipts = []
    progress = []
    credits = []
    # Execute
    for segment in range(3):
        receipts.append(
            submit_words(
                isolated, segmented, client_a, [words[segment]], segment=segment, sample_count=7
            )
        )
        progress.append(segmented.functions.submissionOf(client_a).call())
        credits.append(segmented.functions.credit(client_a).call())
    # Assert
    for segment, receipt in enumerate(receipts):
        assert events(segmented, "SegmentAccepted", receipt) == [
            {"round": 1, "client": client_a, "segment": segment, "counted": True}
        ]
    assert events(segmented, "SubmissionAccepted", receipts[0]) == []
    assert events(segmented, "SubmissionAccepted", receipts[1]) == []
    assert events(segmented, "SubmissionAccepted", receipts[2]) == [
        {
            "round": 1,
            "client": client_a,
            "sampleCount": 7,
            "distance": 800,
            "along": 0,
            "against": 0,
            "tier": 0,
            "reward": 300,
            "counted": True,
        }
    ]
    assert progress == [[1, 1, 7, 320], [1, 2, 7, 640], [1, 3, 7, 800]]
    assert credits == [0, 0, 300]
    assert segmented.functions.hasSubmitted(client_a, 1).call() is True
    assert round_info(segmented)[3:] == (1, 1)


def test_segments_need_the_same_sample_count(
    isolated: Chain, segmented: Contract, client_a: str
) -> None:
    # Prepare
    words = pack(constant(1))
    submit_words(isolated, segmented, client_a, [words[0]], segment=0, sample_count=5)
    # Execute
    with pytest.raises(ContractRevertError) as caught:
        submit_words(isolated, segmented, client_a, [words[1]], segment=1, sample_count=6)
    # Assert
    assert caught.value.name == "CoordinatorSampleCountChanged"
    assert revert_args(caught.value) == {"declared": 5, "given": 6}
    assert segmented.functions.submissionOf(client_a).call() == [1, 1, 5, 16]


@pytest.mark.parametrize(
    ("aggregation", "words_per_segment", "segments"),
    [("mean", 1, 3), ("sample_weighted", 1, 3), ("mean", 2, 2), ("sample_weighted", 2, 2)],
)
def test_segmented_average_equals_reference(
    isolated: Chain,
    deploy_coordinator: DeployFactory,
    clients: list[str],
    aggregation: str,
    words_per_segment: int,
    segments: int,
) -> None:
    # Prepare
    contract = deploy_coordinator(words_per_segment=words_per_segment, aggregation=aggregation)
    assert contract.functions.numSegments().call() == segments
    rng = np.random.default_rng(5)
    vectors = [random_vector(rng) for _ in range(3)]
    counts = [1, 250, 1000]
    # Execute: through the client library's segmenting sender
    for client, vector, count in zip(clients, vectors, counts, strict=False):
        receipts = send_in_segments(
            isolated,
            contract,
            client,
            round_number=1,
            sample_count=count,
            words=pack(vector),
            words_per_segment=words_per_segment,
        )
        assert len(receipts) == segments
    # Assert
    expected = integer_average(vectors, counts if aggregation == "sample_weighted" else None)
    assert round_info(contract)[0] == 2
    assert model_weights(contract) == expected.tolist()
    assert contract.functions.modelHash().call() == model_hash(pack(expected))


def test_partial_segments_count_in_their_segments_and_round_fills(
    isolated: Chain, segmented: Contract, clients: list[str], outsider: str
) -> None:
    """A client that sent only some segments counts in those segments' averages.

    Observed behaviour (as the contract's documentation says): each segment keeps its own sum
    and weight, so client C, which sent segments 0 and 1 but never segment 2, is averaged into
    weights 0..31 but not into weights 32..39; it does not count as a completed submission
    (RoundClosed reports 2), earns nothing and has not "submitted". It still takes one of the
    ``targetSubmissions`` places: a fourth client gets CoordinatorRoundFull.
    """
    # Prepare
    a_client, b_client, c_client, d_client = clients[:4]
    rng = np.random.default_rng(6)
    a, b, c, d = (random_vector(rng) for _ in range(4))
    send_segments(isolated, segmented, a_client, a, range(3))
    send_segments(isolated, segmented, b_client, b, range(3))
    send_segments(isolated, segmented, c_client, c, range(2))
    # Execute / Assert: the round is full
    with pytest.raises(ContractRevertError) as caught:
        send_segments(isolated, segmented, d_client, d, range(1))
    assert caught.value.name == "CoordinatorRoundFull"
    assert revert_args(caught.value) == {"round": 1, "started": 3}
    assert round_info(segmented)[3:] == (3, 2)
    isolated.advance_time(600)
    receipt = send(isolated, segmented.functions.finalize(), outsider)
    # Assert
    [closed] = events(segmented, "RoundClosed", receipt)
    assert closed["submissions"] == 2
    with_c = integer_average([a, b, c])
    without_c = integer_average([a, b])
    expected = np.concatenate([with_c[:32], without_c[32:]])
    assert model_weights(segmented) == expected.tolist()
    assert segmented.functions.hasSubmitted(c_client, 1).call() is False
    assert segmented.functions.credit(c_client).call() == 0
    assert segmented.functions.submissionOf(c_client).call()[:2] == [1, 2]
    # the next round starts afresh: C must begin again at segment 0
    words = pack(c)
    with pytest.raises(ContractRevertError) as caught:
        submit_words(isolated, segmented, c_client, [words[2]], round_number=2, segment=2)
    assert caught.value.name == "CoordinatorWrongSegment"
    assert revert_args(caught.value) == {"expected": 0, "given": 2}
    send_segments(isolated, segmented, d_client, d, range(1), round_number=2)
    assert round_info(segmented)[3:] == (1, 0)


def test_poisoning_bound_with_segments_keeps_segments_sent_before_crossing_it(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str]
) -> None:
    """The poisoning bound is applied per segment, to the distance summed so far.

    Observed behaviour: client A's segment 0 (distance 80 <= 100) is counted and stays in the
    average of weights 0..15; its segment 1 takes the running distance to 240 > 100, so segments
    1 and 2 are left out, and its SubmissionAccepted reports ``counted=False`` (no reward) even
    though part of its vector was averaged in.
    """
    # Prepare
    contract = deploy_coordinator(words_per_segment=1, max_counted_distance=100)
    a = np.concatenate([np.full(16, 5), np.full(16, 10), np.zeros(8)]).astype(np.int64)
    b = constant(1)
    c = constant(0)
    # Execute
    a_receipts = send_segments(isolated, contract, clients[0], a, range(3))
    send_segments(isolated, contract, clients[1], b, range(3))
    send_segments(isolated, contract, clients[2], c, range(3))
    # Assert
    assert [events(contract, "SegmentAccepted", r)[0]["counted"] for r in a_receipts] == [
        True,
        False,
        False,
    ]
    [accepted] = events(contract, "SubmissionAccepted", a_receipts[2])
    assert (accepted["distance"], accepted["tier"], accepted["reward"], accepted["counted"]) == (
        240,
        255,
        0,
        False,
    )
    assert contract.functions.modelVersion().call() == 1
    expected = np.concatenate([integer_average([a, b, c])[:16], integer_average([b, c])[16:]])
    assert model_weights(contract) == expected.tolist()
    assert model_weights(contract) == [2] * 16 + [1] * 24


def test_direction_guard_on_segments_is_sticky_and_keeps_the_step_of_unaveraged_segments(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str]
) -> None:
    """Segmented vectors under the direction guard (``minAlignment = 0``, one-word segments).

    Round 1 moves every weight up by 10. In round 2, A and C follow the step in segment 0 (by 3)
    and go against it in segment 1 (by 5): from there on they are left out, even where the
    running figures recover (A's segment 2); B goes against it from segment 0. Only segment 0 is
    averaged, so segments 1 and 2 keep round 1's step (up), which round 3 is measured against.
    """
    # Prepare
    contract = deploy_coordinator(words_per_segment=1, min_alignment_bps=0)
    for client in clients[:3]:
        send_segments(isolated, contract, client, constant(10), range(3))
    word = [slice(0, 16), slice(16, 32), slice(32, 40)]

    def moved(*steps: int) -> np.ndarray:
        values = constant(10)
        for part, step in zip(word, steps, strict=True):
            values[part] += step
        return values

    # Execute
    a = send_segments(isolated, contract, clients[0], moved(3, -5, 5), range(3), round_number=2)
    b = send_segments(isolated, contract, clients[1], moved(-5, 5, 5), range(3), round_number=2)
    c = send_segments(isolated, contract, clients[2], moved(3, -5, -5), range(3), round_number=2)
    model2 = model_weights(contract)
    third = send_segments(isolated, contract, clients[0], moved(4, -1, 1), range(3), round_number=3)
    # Assert
    counted = [[events(contract, "SegmentAccepted", r)[0]["counted"] for r in x] for x in (a, b, c)]
    assert counted == [[True, False, False], [False, False, False], [True, False, False]]
    [a_done] = events(contract, "SubmissionAccepted", a[2])
    assert (a_done["along"], a_done["against"], a_done["counted"], a_done["reward"]) == (
        48 + 40,
        80,
        False,
        0,
    )
    assert model2 == [13] * 16 + [10] * 24
    # Round 3 from model2: +1 in segment 0 along round 2's step; -1 in segment 1 against the
    # kept round-1 step, +1 in segment 2 along it.
    [done] = events(contract, "SubmissionAccepted", third[2])
    assert (done["along"], done["against"], done["counted"]) == (16 + 8, 16, True)


# ---------------------------------------------------------------- views


def test_round_and_submission_views(
    isolated: Chain, coordinator: Contract, client_a: str, client_b: str
) -> None:
    # Prepare
    assert coordinator.functions.submissionOf(client_a).call() == [0, 0, 0, 0]
    assert coordinator.functions.hasSubmitted(client_a, 1).call() is False
    deadline = round_info(coordinator)[2]
    # Execute
    submit(isolated, coordinator, client_a, constant(-2), sample_count=42)
    # Assert
    assert round_info(coordinator) == (1, OPEN, deadline, 1, 1)
    assert coordinator.functions.submissionOf(client_a).call() == [1, 1, 42, 80]
    assert coordinator.functions.hasSubmitted(client_a, 1).call() is True
    assert coordinator.functions.hasSubmitted(client_a, 2).call() is False
    assert coordinator.functions.hasSubmitted(client_b, 1).call() is False


def test_parameter_getters(coordinator: Contract, owner: str) -> None:
    f = coordinator.functions
    assert f.rewardTiers().call() == [[1_000, 10_000, 50_000], [300, 200, 100]]
    assert f.numWeights().call() == SMALL_WEIGHTS
    assert f.numWords().call() == SMALL_WORDS
    assert f.scale().call() == 1024
    assert f.maxAbsWeight().call() == 3000
    assert f.targetSubmissions().call() == 3
    assert f.minSubmissions().call() == 2
    assert f.roundDuration().call() == 600
    assert f.aggregation().call() == 0
    assert f.maxSampleCount().call() == 1000
    assert f.distance().call() == 0
    assert f.allowlistEnabled().call() is False
    assert f.minRewardDistance().call() == 0
    assert f.maxCountedDistance().call() == MAX_UINT256  # 0 at deployment: the bound is off
    assert f.wordsPerSegment().call() == SMALL_WORDS  # 512 clamped to the vector's words
    assert f.numSegments().call() == 1
    assert f.laneBits().call() == 16
    assert f.owner().call() == owner
    assert f.NO_TIER().call() == 255
    assert f.totalFunded().call() == 10**6
    assert f.totalCredited().call() == 0
    assert f.totalWithdrawn().call() == 0
    assert f.availableRewards().call() == 10**6


def test_parameter_getters_of_other_settings(deploy_coordinator: DeployFactory) -> None:
    contract = deploy_coordinator(
        aggregation="sample_weighted",
        distance="squared_l2",
        allowlist_enabled=True,
        min_reward_distance=7,
        max_counted_distance=9_999,
        words_per_segment=2,
    )
    f = contract.functions
    assert f.aggregation().call() == 1
    assert f.distance().call() == 1
    assert f.allowlistEnabled().call() is True
    assert f.minRewardDistance().call() == 7
    assert f.maxCountedDistance().call() == 9_999
    assert f.wordsPerSegment().call() == 2
    assert f.numSegments().call() == 2


def expected_lane_bits(target: int, max_weight: int, max_abs: int) -> int:
    """The contract's rule: the smallest lane that holds the largest signed sum and one
    offset-binary value times the largest weight."""
    for bits in (16, 32, 64):
        if target * max_weight * max_abs < 2 ** (bits - 1) and max_weight * 65536 <= 2**bits:
            return bits
    return 128


LANE_CASES: list[tuple[str, int, int, int, int]] = [
    # aggregation, target, maxAbs, maxSampleCount, expected laneBits
    ("mean", 3, 3000, 1000, 16),
    ("mean", 10, 3276, 1000, 16),  # 32,760 < 32,768
    ("mean", 10, 3277, 1000, 32),  # 32,770
    ("mean", 20, 3000, 1000, 32),
    ("mean", 1, 32767, 1000, 16),
    ("mean", 2, 32767, 1000, 32),
    ("mean", 2**32 - 1, 32767, 1000, 64),
    ("sample_weighted", 3, 3000, 1, 16),  # 1 * 65,536 <= 2**16
    ("sample_weighted", 3, 3000, 2, 32),
    ("sample_weighted", 3, 3000, 1000, 32),
    ("sample_weighted", 1, 1, 65536, 32),  # 65,536 * 65,536 == 2**32
    ("sample_weighted", 1, 1, 65537, 64),
    ("sample_weighted", 10, 3000, 65535, 32),  # 1,966,050,000 < 2**31
    ("sample_weighted", 11, 3000, 65535, 64),  # 2,162,655,000 >= 2**31
    ("sample_weighted", 2**32 - 1, 32767, 2**32 - 1, 128),
]


@pytest.mark.parametrize(
    ("aggregation", "target", "max_abs", "max_samples", "bits"),
    LANE_CASES,
    ids=[f"{a}-t{t}-abs{m}-s{s}" for a, t, m, s, _ in LANE_CASES],
)
def test_lane_bits_follow_parameters(
    isolated: Chain,
    compiled: dict[str, CompiledContract],
    owner: str,
    aggregation: str,
    target: int,
    max_abs: int,
    max_samples: int,
    bits: int,
) -> None:
    # Prepare
    params = small_params(
        aggregation=aggregation,
        target_submissions=target,
        min_submissions=1,
        max_abs_weight=max_abs,
        max_sample_count=max_samples,
    )
    artifact = compiled["FLCoordinator"]
    factory = isolated.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    # Execute
    tx_hash = factory.constructor(params.as_tuple()).transact({"from": owner, "gas": RAW_GAS})
    receipt = isolated.w3.eth.wait_for_transaction_receipt(tx_hash)
    # Assert
    assert receipt["status"] == 1
    address = receipt["contractAddress"]
    assert address is not None
    contract = isolated.w3.eth.contract(address=address, abi=artifact.abi)
    max_weight = 1 if aggregation == "mean" else max_samples
    assert expected_lane_bits(target, max_weight, max_abs) == bits
    assert contract.functions.laneBits().call() == bits


def test_submission_distance_matches_reference(
    isolated: Chain, deploy_coordinator: DeployFactory, client_a: str
) -> None:
    # Prepare
    rng = np.random.default_rng(7)
    initial, update = random_vector(rng), random_vector(rng)
    contract = deploy_coordinator(initial=initial)
    # Execute
    receipt = submit(isolated, contract, client_a, update)
    # Assert
    [accepted] = events(contract, "SubmissionAccepted", receipt)
    assert accepted["distance"] == distance(initial, update, "l1")
