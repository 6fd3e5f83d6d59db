"""FLCoordinator's life cycle on the round pipeline v2: deployment checks, Setup (loading the
initial model), direct submissions (one or several transactions), the allowlist, closing a round
segment by segment, ending it with ``finalize``, and the views.

Every test runs on a snapshot of the embedded chain (``isolated``) and rolls back. Every revert is
asserted by its custom error's name and all of its arguments.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from web3.contract import Contract

from fl_client.aggregation import distance, integer_average
from fl_client.chain import Chain, deploy, deploy_units, read_progress, read_round, send
from fl_client.codec import OFFSET, pack, split_segments, vector_hash, words_hash
from tests.conftest import (
    SMALL_WEIGHTS,
    close,
    events,
    signed,
    small_params,
    submit,
    submit_segments,
)
from tests.pipeline_helpers import (
    PHASE,
    ZERO_ADDRESS,
    ZERO_WORD,
    block_time,
    close_round,
    close_segment,
    constant,
    constructor_outcome,
    constructor_revert,
    deadline_of,
    deploy_in_setup,
    mine_at,
    model_values,
    module_deployments,
    next_block_at,
    random_vector,
    raw_send,
    reverts,
    view_call,
    window_end,
    with_lane,
    with_value,
)

CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},  # 40 weights in 3 words, one segment, target 3, minimum 2
    "three": {"words_per_segment": 1},  # three one-word segments
    "target2": {"target_submissions": 2, "min_submissions": 2},
    "maxabs1": {"max_abs_weight": 1, "target_submissions": 2, "min_submissions": 2},
    "maxabs16383": {"max_abs_weight": 2**14 - 1, "target_submissions": 2, "min_submissions": 2},
    "initial": {"initial": np.arange(-20, 20, dtype=np.int64) * 150},
    "getters": {
        "num_weights": 100,
        "words_per_segment": 3,
        "aggregation": "sample_weighted",
        "distance": "squared_l2",
        "min_reward_distance": 5,
        "max_counted_distance": 0,
        "min_alignment_bps": -2500,
    },
}
IN_SETUP: dict[str, dict[str, Any]] = {
    "setup": {"words_per_segment": 1},
    "setup100": {"num_weights": 100, "words_per_segment": 3},
}
BY_MAX_ABS = {1: "maxabs1", 3000: "target2", 2**14 - 1: "maxabs16383"}


@pytest.fixture(scope="module")
def deployed(chain: Chain) -> Iterator[dict[str, Contract]]:
    """The module's coordinators, deployed once (see ``CONFIGS`` and ``IN_SETUP``)."""
    yield from module_deployments(chain, CONFIGS, IN_SETUP)


@pytest.fixture
def coordinator(isolated: Chain, deployed: dict[str, Contract]) -> Contract:
    """40 weights, one segment, target 3, minimum 2, round 1 open (on the test's snapshot)."""
    return deployed["default"]


DAY = 86_400
MAX_DURATION = 365 * DAY
U128 = 2**128
U64 = 2**64


# ---------------------------------------------------------------- deployment parameters

INVALID_PARAMETERS: list[tuple[dict[str, Any], str, int]] = [
    ({"num_weights": 0}, "numWeights", 0),
    ({"num_weights": 2**24 + 1}, "numWeights", 2**24 + 1),
    ({"scale": 0}, "scale", 0),
    ({"scale": U64}, "scale", U64),
    ({"max_abs_weight": 0}, "maxAbsWeight", 0),
    ({"max_abs_weight": 2**14}, "maxAbsWeight", 2**14),
    ({"max_abs_weight": 32767}, "maxAbsWeight", 32767),
    ({"target_submissions": 0}, "targetSubmissions", 0),
    ({"target_submissions": 2**32}, "targetSubmissions", 2**32),
    ({"min_submissions": 0}, "minSubmissions", 0),
    ({"min_submissions": 4}, "minSubmissions", 4),  # above the target, 3
    ({"round_duration": 0}, "roundDuration", 0),
    ({"round_duration": MAX_DURATION + 1}, "roundDuration", MAX_DURATION + 1),
    ({"max_sample_count": 0}, "maxSampleCount", 0),
    ({"max_sample_count": 2**32}, "maxSampleCount", 2**32),
    ({"words_per_segment": 0}, "wordsPerSegment", 0),
    ({"tier_thresholds": (), "tier_rewards": ()}, "tierCount", 0),
    (
        {"tier_thresholds": tuple(range(1, 18)), "tier_rewards": tuple(range(17, 0, -1))},
        "tierCount",
        17,
    ),
    ({"tier_rewards": (300, 200)}, "tierRewards", 2),  # fewer rewards than thresholds
    ({"tier_thresholds": (1_000, 1_000, 50_000)}, "tierThresholds", 1),
    ({"tier_thresholds": (1_000, 10_000, 9_999)}, "tierThresholds", 2),
    ({"tier_rewards": (300, 300, 100)}, "tierRewards", 1),
    ({"tier_rewards": (100, 200, 300)}, "tierRewards", 1),
    ({"tier_rewards": (300, 200, 0)}, "tierRewards", 2),
    ({"tier_thresholds": (1_000,), "tier_rewards": (0,)}, "tierRewards", 0),
    ({"min_reward_distance": U128}, "minRewardDistance", U128),
    ({"max_counted_distance": U128}, "maxCountedDistance", U128),
    ({"min_reward_distance": 500, "max_counted_distance": 499}, "maxCountedDistance", 499),
    ({"close_window": 0}, "closeWindow", 0),
    ({"close_window": MAX_DURATION + 1}, "closeWindow", MAX_DURATION + 1),
    ({"close_fee": U128}, "closeFee", U128),
    ({"relay_fee": U128}, "relayFee", U128),
    ({"max_share_bps": 10_001}, "maxShareBps", 10_001),
    ({"max_step": OFFSET}, "maxStep", OFFSET),
    ({"max_drift": OFFSET, "drift_window": 1}, "maxDrift", OFFSET),
    ({"max_drift": 5, "drift_window": 0}, "driftWindow", 0),
    ({"max_drift": 5, "drift_window": 2**32}, "driftWindow", 2**32),
    ({"rdp_per_participation": (1,), "epsilon_budget": 10}, "rdpConversion", 0),
    ({"epsilon_budget": 10}, "epsilonBudget", 10),  # a budget without orders
    ({"rdp_per_participation": (1,), "rdp_conversion": (1,)}, "epsilonBudget", 0),
    (
        {"rdp_per_participation": (1,), "rdp_conversion": (1,), "epsilon_budget": U64},
        "epsilonBudget",
        U64,
    ),
    (
        {"rdp_per_participation": (1, U64), "rdp_conversion": (1, 1), "epsilon_budget": 9},
        "rdpPerParticipation",
        1,
    ),
    (
        {"rdp_per_participation": (1, 1), "rdp_conversion": (U64, 1), "epsilon_budget": 9},
        "rdpConversion",
        0,
    ),
    # CommitReveal
    (
        {"mode": "commit_reveal", "reveal_duration": 0, "commit_bond": 10},
        "revealDuration",
        0,
    ),
    (
        {"mode": "commit_reveal", "reveal_duration": MAX_DURATION + 1, "commit_bond": 10},
        "revealDuration",
        MAX_DURATION + 1,
    ),
    ({"mode": "commit_reveal", "reveal_duration": 60, "commit_bond": 0}, "commitBond", 0),
    ({"mode": "commit_reveal", "reveal_duration": 60, "commit_bond": U128}, "commitBond", U128),
]


@pytest.mark.parametrize(
    ("changes", "name", "value"),
    INVALID_PARAMETERS,
    ids=[f"{name}={value}-{i}" for i, (_, name, value) in enumerate(INVALID_PARAMETERS)],
)
def test_deploy_rejects_invalid_parameter(
    isolated: Chain, owner: str, changes: dict[str, Any], name: str, value: int
) -> None:
    # Prepare
    params = small_params(**changes)
    # Execute / Assert
    with reverts("CoordinatorInvalidParameter", name=name, value=value):
        deploy(isolated, params, deployer=owner)


@pytest.mark.parametrize(
    "changes",
    [
        {"max_abs_weight": 2**14 - 1},
        {"min_submissions": 3},  # == target
        {"round_duration": MAX_DURATION, "close_window": MAX_DURATION},
        {"close_window": 1},
        {"max_sample_count": 2**32 - 1, "aggregation": "sample_weighted"},
        {"min_reward_distance": 500, "max_counted_distance": 500},
        {"min_reward_distance": 500, "max_counted_distance": 0},  # 0: the bound is off
        {"tier_thresholds": tuple(range(1, 17)), "tier_rewards": tuple(range(16, 0, -1))},
        {"close_fee": U128 - 1, "relay_fee": U128 - 1},
        {"mode": "commit_reveal", "reveal_duration": MAX_DURATION, "commit_bond": U128 - 1},
        {"min_alignment_bps": -10_000},
        {"min_alignment_bps": -9_999},
        {"min_alignment_bps": 10_000},
        {
            "max_share_bps": 10_000,
            "max_step": OFFSET - 1,
            "max_drift": OFFSET - 1,
            "drift_window": 2**32 - 1,
        },
    ],
    ids=[
        "maxAbs-2**14-1",
        "min-eq-target",
        "durations-1y",
        "window-1s",
        "samples-u32",
        "max-eq-min",
        "max-off",
        "16-tiers",
        "fees-u128",
        "commit-reveal-bounds",
        "guard-off",
        "guard-lowest",
        "guard-highest",
        "bounds-highest",
    ],
)
def test_deploy_accepts_boundary_parameters(
    isolated: Chain, owner: str, changes: dict[str, Any]
) -> None:
    assert constructor_outcome(isolated, small_params(**changes), sender=owner) is None


@pytest.mark.parametrize(
    ("changes", "value"),
    [
        ({"min_alignment_bps": -10_001}, -10_001),
        ({"min_alignment_bps": 10_001}, 10_001),
    ],
    ids=["below-minus-one", "above-one"],
)
def test_deploy_rejects_invalid_min_alignment(
    isolated: Chain, owner: str, changes: dict[str, Any], value: int
) -> None:
    """The direction guard lies in [-10000, 10000] basis points."""
    with reverts("CoordinatorInvalidSignedParameter", name="minAlignment", value=value):
        deploy(isolated, small_params(**changes), deployer=owner)


@pytest.mark.parametrize(
    "position", range(5), ids=["direct", "relay", "closing", "commitReveal", "secureAggregation"]
)
def test_deploy_rejects_a_unit_that_is_not_a_contract(
    isolated: Chain, owner: str, outsider: str, position: int
) -> None:
    # Prepare: the real units, one of them replaced by an account without code
    units = list(deploy_units(isolated, sender=owner))
    units[position] = outsider
    # Execute
    error = constructor_revert(isolated, small_params(), units, sender=owner)
    # Assert
    assert (error.name, error.error_args) == (
        "CoordinatorInvalidParameter",
        {"name": "units", "value": 0},
    )


def test_deploy_rejects_the_zero_address_as_a_unit(isolated: Chain, owner: str) -> None:
    units = list(deploy_units(isolated, sender=owner))
    units[2] = ZERO_ADDRESS
    error = constructor_revert(isolated, small_params(), units, sender=owner)
    assert (error.name, error.error_args) == (
        "CoordinatorInvalidParameter",
        {"name": "units", "value": 0},
    )


def test_deployment_value_funds_the_pool_and_sets_the_owner(
    isolated: Chain, coordinator: Contract, owner: str
) -> None:
    assert coordinator.functions.totalFunded().call() == 10**6
    assert coordinator.functions.availableRewards().call() == 10**6
    assert coordinator.functions.owner().call() == owner


# ---------------------------------------------------------------- Setup: the initial model


@pytest.fixture
def setup_coordinator(isolated: Chain, deployed: dict[str, Contract]) -> Contract:
    """A coordinator in Setup with three one-word segments (40 weights), no model loaded."""
    return deployed["setup"]


def test_calls_before_the_model_is_loaded_revert_wrong_phase(
    isolated: Chain, setup_coordinator: Contract, client_a: str, relayer: str
) -> None:
    # Prepare
    f = setup_coordinator.functions
    words = pack(constant(1))
    update = signed(isolated, setup_coordinator, client_a, constant(1), round_number=0)
    # Execute / Assert
    assert read_round(setup_coordinator).phase == "Setup"
    with reverts("CoordinatorWrongPhase", phase=PHASE["Setup"]):
        send(isolated, f.submit(1, 1, 0, words), client_a)
    with reverts("CoordinatorWrongPhase", phase=PHASE["Setup"]):
        send(isolated, f.submitRelayed(0, [update.as_tuple()]), relayer)
    with reverts("CoordinatorWrongPhase", phase=PHASE["Setup"]):
        send(isolated, f.closeSegment(0, 0, words, []), relayer)
    with reverts("CoordinatorWrongRound", given=1, current=0):
        send(isolated, f.closeSegment(1, 0, words, []), relayer)
    with reverts("CoordinatorWrongPhase", phase=PHASE["Setup"]):
        send(isolated, f.finalize(), relayer)


def test_only_the_owner_loads_the_model_and_manages_the_allowlist(
    isolated: Chain, setup_coordinator: Contract, outsider: str
) -> None:
    f = setup_coordinator.functions
    with reverts("CoordinatorUnauthorized", caller=outsider):
        send(isolated, f.loadInitialModel(0, [ZERO_WORD]), outsider)
    with reverts("CoordinatorUnauthorized", caller=outsider):
        send(isolated, f.loadZeroModel(0, 3), outsider)
    with reverts("CoordinatorUnauthorized", caller=outsider):
        send(isolated, f.setAllowed([outsider], True), outsider)
    with reverts("CoordinatorUnauthorized", caller=outsider):
        send(isolated, f.transferOwnership(outsider), outsider)


def test_model_segments_must_be_loaded_in_order(
    isolated: Chain, setup_coordinator: Contract, owner: str
) -> None:
    # Prepare
    f = setup_coordinator.functions
    words = pack(constant(5))
    # Execute / Assert
    with reverts("CoordinatorWrongSegment", expected=0, given=1):
        send(isolated, f.loadInitialModel(1, words[1:2]), owner)
    send(isolated, f.loadInitialModel(0, words[:1]), owner)
    with reverts("CoordinatorWrongSegment", expected=1, given=0):
        send(isolated, f.loadInitialModel(0, words[:1]), owner)
    with reverts("CoordinatorWrongSegment", expected=1, given=2):
        send(isolated, f.loadZeroModel(2, 1), owner)


def test_model_load_with_wrong_lengths_reverts(
    isolated: Chain, setup_coordinator: Contract, owner: str
) -> None:
    f = setup_coordinator.functions
    words = pack(constant(5))
    # too many words: a fourth segment does not exist
    with reverts("CoordinatorWrongLength", expected=3, given=4):
        send(isolated, f.loadInitialModel(0, [*words, ZERO_WORD]), owner)
    # no words at all
    with reverts("CoordinatorWrongLength", expected=1, given=0):
        send(isolated, f.loadInitialModel(0, []), owner)
    # zero segments, or past the last one
    with reverts("CoordinatorWrongLength", expected=3, given=0):
        send(isolated, f.loadZeroModel(0, 0), owner)
    with reverts("CoordinatorWrongLength", expected=3, given=4):
        send(isolated, f.loadZeroModel(0, 4), owner)
    # a count that would wrap around is refused by name, not by an arithmetic panic
    send(isolated, f.loadZeroModel(0, 1), owner)
    with reverts("CoordinatorWrongLength", expected=2, given=2**256 - 1):
        send(isolated, f.loadZeroModel(1, 2**256 - 1), owner)


def test_model_load_with_segments_of_several_words_needs_whole_segments(
    isolated: Chain, deployed: dict[str, Contract], owner: str
) -> None:
    # Prepare: 100 weights, 7 words, segments of 3, 3 and 1 words
    contract = deployed["setup100"]
    words = pack(constant(2, 100))
    # Execute / Assert
    with reverts("CoordinatorWrongLength", expected=3, given=2):
        send(isolated, contract.functions.loadInitialModel(0, words[:2]), owner)
    with reverts("CoordinatorWrongLength", expected=6, given=5):
        send(isolated, contract.functions.loadInitialModel(0, words[:5]), owner)
    send(isolated, contract.functions.loadInitialModel(0, words), owner)
    assert model_values(contract) == [2] * 100


@pytest.mark.parametrize(
    ("index", "value"),
    [(0, 3001), (17, -3001), (39, 32767), (5, -32768)],
)
def test_initial_model_weight_out_of_range_reverts(
    isolated: Chain, setup_coordinator: Contract, owner: str, index: int, value: int
) -> None:
    # Prepare
    words = with_value(pack(constant(0)), index, value)
    # Execute / Assert
    with reverts("CoordinatorWeightOutOfRange", index=index, value=value, maxAbs=3000):
        send(isolated, setup_coordinator.functions.loadInitialModel(0, words), owner)


@pytest.mark.parametrize(("index", "value"), [(40, 1), (47, -1)])
def test_initial_model_with_nonzero_padding_reverts(
    isolated: Chain, setup_coordinator: Contract, owner: str, index: int, value: int
) -> None:
    words = with_value(pack(constant(0)), index, value)
    with reverts("CoordinatorWeightOutOfRange", index=index, value=value, maxAbs=0):
        send(isolated, setup_coordinator.functions.loadInitialModel(0, words), owner)


def test_model_loaded_in_chunks_is_exact_and_opens_round_one(
    isolated: Chain, setup_coordinator: Contract, owner: str
) -> None:
    # Prepare
    rng = np.random.default_rng(1)
    values = random_vector(rng)
    values[:2] = (3000, -3000)
    words = pack(values)
    f = setup_coordinator.functions
    # Execute
    first = send(isolated, f.loadInitialModel(0, words[:1]), owner)
    last = send(isolated, f.loadInitialModel(1, words[1:]), owner)
    # Assert
    assert events(setup_coordinator, "InitialModelLoaded", first) == [
        {"firstSegment": 0, "count": 1}
    ]
    assert events(setup_coordinator, "InitialModelLoaded", last) == [
        {"firstSegment": 1, "count": 2}
    ]
    assert events(setup_coordinator, "RoundOpened", first) == []
    [opened] = events(setup_coordinator, "RoundOpened", last)
    assert opened == {"round": 1, "deadline": block_time(isolated, last) + 600}
    assert model_values(setup_coordinator) == values.tolist()
    assert f.globalModel().call() == words
    assert [f.globalModelSegment(s).call() for s in range(3)] == split_segments(words, 1)
    assert f.modelHash().call() == vector_hash(words, 1)
    assert f.modelVersion().call() == 0
    assert read_round(setup_coordinator).phase == "Open"
    with reverts("CoordinatorWrongPhase", phase=PHASE["Open"]):
        send(isolated, f.loadInitialModel(0, words), owner)
    with reverts("CoordinatorWrongPhase", phase=PHASE["Open"]):
        send(isolated, f.loadZeroModel(0, 3), owner)
    with reverts("CoordinatorWrongSegment", expected=2, given=3):
        view_call(f.globalModelSegment(3))


def test_zero_model_loads_without_calldata(
    isolated: Chain, setup_coordinator: Contract, owner: str
) -> None:
    f = setup_coordinator.functions
    send(isolated, f.loadZeroModel(0, 2), owner)
    assert read_round(setup_coordinator).phase == "Setup"
    send(isolated, f.loadZeroModel(2, 1), owner)
    assert model_values(setup_coordinator) == [0] * SMALL_WEIGHTS
    assert f.modelHash().call() == vector_hash(pack(constant(0)), 1)


def test_given_initial_model_is_returned_exactly(
    isolated: Chain, deployed: dict[str, Contract]
) -> None:
    values = np.arange(-20, 20, dtype=np.int64) * 150
    contract = deployed["initial"]
    assert model_values(contract) == values.tolist()
    assert contract.functions.modelHash().call() == vector_hash(pack(values), 3)


# ---------------------------------------------------------------- direct submissions: checks


def test_submit_for_another_round_reverts_wrong_round(
    isolated: Chain, coordinator: Contract, client_a: str
) -> None:
    with reverts("CoordinatorWrongRound", given=2, current=1):
        submit(isolated, coordinator, client_a, constant(1), round_number=2)
    with reverts("CoordinatorWrongRound", given=0, current=1):
        submit(isolated, coordinator, client_a, constant(1), round_number=0)


def test_second_submission_reverts_already_submitted(
    isolated: Chain, coordinator: Contract, client_a: str
) -> None:
    submit(isolated, coordinator, client_a, constant(1))
    with reverts("CoordinatorAlreadySubmitted", round=1, account=client_a):
        submit(isolated, coordinator, client_a, constant(2))
    assert coordinator.functions.hasSubmitted(client_a, 1).call() is True


@pytest.mark.parametrize(
    ("length", "expected", "given"),
    [(0, 3, 0), (2, 3, 2), (4, 3, 4)],
    ids=["empty", "short", "long"],
)
def test_submit_with_wrong_length_reverts(
    isolated: Chain, coordinator: Contract, client_a: str, length: int, expected: int, given: int
) -> None:
    words = [*pack(constant(1)), ZERO_WORD][:length]
    with reverts("CoordinatorWrongLength", expected=expected, given=given):
        send(isolated, coordinator.functions.submit(1, 1, 0, words), client_a)


@pytest.mark.parametrize(
    ("max_abs", "index", "value"),
    [
        (3000, 0, 3001),
        (3000, 19, -3001),
        (3000, 39, 32767),
        (3000, 16, -32768),
        (2**14 - 1, 7, 2**14),
        (2**14 - 1, 8, -(2**14)),
        (2**14 - 1, 31, 32767),
        (2**14 - 1, 32, -32768),
        (1, 3, 2),
        (1, 4, -2),
    ],
)
def test_submit_weight_out_of_range_reverts(
    isolated: Chain,
    deployed: dict[str, Contract],
    client_a: str,
    max_abs: int,
    index: int,
    value: int,
) -> None:
    # Prepare: every other weight at the bound, one lane past it
    contract = deployed[BY_MAX_ABS[max_abs]]
    values = np.array(
        [max_abs if i % 2 else -max_abs for i in range(SMALL_WEIGHTS)], dtype=np.int64
    )
    words = with_value(pack(values), index, value)
    # Execute / Assert
    with reverts("CoordinatorWeightOutOfRange", index=index, value=value, maxAbs=max_abs):
        send(isolated, contract.functions.submit(1, 1, 0, words), client_a)


def test_submit_reports_the_first_weight_out_of_range(
    isolated: Chain, coordinator: Contract, client_a: str
) -> None:
    words = with_value(with_value(pack(constant(0)), 35, -4000), 21, 3001)
    with reverts("CoordinatorWeightOutOfRange", index=21, value=3001, maxAbs=3000):
        send(isolated, coordinator.functions.submit(1, 1, 0, words), client_a)


def test_submit_out_of_range_in_a_later_segment_reports_its_global_index(
    isolated: Chain, deployed: dict[str, Contract], client_a: str
) -> None:
    contract = deployed["three"]
    words = with_value(pack(constant(0)), 33, -3001)
    send(isolated, contract.functions.submit(1, 1, 0, words[:1]), client_a)
    with reverts("CoordinatorWeightOutOfRange", index=33, value=-3001, maxAbs=3000):
        send(isolated, contract.functions.submit(1, 1, 1, words[1:]), client_a)


@pytest.mark.parametrize("max_abs", [1, 3000, 2**14 - 1])
def test_submit_accepts_weights_at_the_bounds(
    isolated: Chain, deployed: dict[str, Contract], clients: list[str], max_abs: int
) -> None:
    # Prepare
    contract = deployed[BY_MAX_ABS[max_abs]]
    plus = np.array([max_abs if i % 3 else -max_abs for i in range(SMALL_WEIGHTS)], dtype=np.int64)
    # Execute
    submit(isolated, contract, clients[0], plus)
    submit(isolated, contract, clients[1], plus)
    close(isolated, contract, clients[2], [plus, plus])
    # Assert
    assert model_values(contract) == plus.tolist()


@pytest.mark.parametrize(("index", "value"), [(40, 1), (44, -1), (47, 3000)])
def test_submit_with_nonzero_padding_reverts(
    isolated: Chain, coordinator: Contract, client_a: str, index: int, value: int
) -> None:
    words = with_value(pack(constant(0)), index, value)
    with reverts("CoordinatorWeightOutOfRange", index=index, value=value, maxAbs=0):
        send(isolated, coordinator.functions.submit(1, 1, 0, words), client_a)


def test_padding_lane_out_of_range_reports_the_range(
    isolated: Chain, coordinator: Contract, client_a: str
) -> None:
    """A raw lane of 0 decodes to -32768: the range check, which runs before the padding check,
    reports it with the range's bound."""
    words = with_lane(pack(constant(0)), 45, 0)
    with reverts("CoordinatorWeightOutOfRange", index=45, value=-32768, maxAbs=3000):
        send(isolated, coordinator.functions.submit(1, 1, 0, words), client_a)


@pytest.mark.parametrize("sample_count", [0, 1001])
def test_submit_with_invalid_sample_count_reverts(
    isolated: Chain, coordinator: Contract, client_a: str, sample_count: int
) -> None:
    with reverts("CoordinatorInvalidSampleCount", sampleCount=sample_count, max=1000):
        submit(isolated, coordinator, client_a, constant(1), sample_count=sample_count)


def test_submit_accepts_the_largest_sample_count(
    isolated: Chain, coordinator: Contract, client_a: str
) -> None:
    [receipt] = submit(isolated, coordinator, client_a, constant(1), sample_count=1000)
    [accepted] = events(coordinator, "SubmissionAccepted", receipt)
    assert accepted["sampleCount"] == 1000
    assert read_progress(coordinator, client_a).sample_count == 1000


def test_submit_when_the_round_is_full_reverts_round_full(
    isolated: Chain, coordinator: Contract, clients: list[str]
) -> None:
    for client in clients[:3]:
        submit(isolated, coordinator, client, constant(1))
    with reverts("CoordinatorRoundFull", round=1, entries=3):
        submit(isolated, coordinator, clients[3], constant(1))


def test_no_submission_at_or_after_the_deadline(
    isolated: Chain, coordinator: Contract, clients: list[str]
) -> None:
    # Prepare
    deadline = deadline_of(coordinator)
    f = coordinator.functions
    words = pack(constant(1))
    # Execute: one second before the deadline is still in time
    next_block_at(isolated, deadline - 1)
    early = raw_send(isolated, f.submit(1, 1, 0, words), clients[0])
    # at the deadline: the transaction fails, and the client's pre-check names the error
    next_block_at(isolated, deadline)
    late = raw_send(isolated, f.submit(1, 1, 0, words), clients[1])
    mine_at(isolated, deadline + 5)
    # Assert
    assert (early["status"], block_time(isolated, early)) == (1, deadline - 1)
    assert (late["status"], block_time(isolated, late)) == (0, deadline)
    with reverts("CoordinatorDeadlinePassed", round=1, deadline=deadline):
        send(isolated, f.submit(1, 1, 0, words), clients[1])
    assert read_round(coordinator).submissions == 1


# ---------------------------------------------------------------- the allowlist


@pytest.fixture
def allowlisted(isolated: Chain, owner: str, clients: list[str]) -> Contract:
    """Allowlist on, the first three clients allowed in Setup (so from round 1), model loaded."""
    contract = deploy_in_setup(
        isolated, small_params(allowlist_enabled=True, target_submissions=2), owner=owner
    )
    receipt = send(isolated, contract.functions.setAllowed(clients[:3], True), owner)
    assert events(contract, "AllowlistUpdated", receipt) == [
        {"account": c, "allowed": True, "fromRound": 1} for c in clients[:3]
    ]
    send(isolated, contract.functions.loadZeroModel(0, 1), owner)
    return contract


def test_allowlist_gates_submissions(
    isolated: Chain, allowlisted: Contract, clients: list[str], outsider: str
) -> None:
    f = allowlisted.functions
    assert f.allowed(clients[0]).call() is True
    assert f.allowed(outsider).call() is False
    with reverts("CoordinatorNotEligible", account=outsider, round=1):
        submit(isolated, allowlisted, outsider, constant(1))
    submit(isolated, allowlisted, clients[0], constant(1))


def test_allowlist_changes_take_effect_from_the_next_round(
    isolated: Chain,
    allowlisted: Contract,
    owner: str,
    clients: list[str],
    outsider: str,
    relayer: str,
) -> None:
    f = allowlisted.functions
    # Execute: allowed during round 1, removed during round 1
    receipt = send(isolated, f.setAllowed([outsider], True), owner)
    send(isolated, f.setAllowed([clients[1]], False), owner)
    # Assert: nothing changes inside the open round
    assert events(allowlisted, "AllowlistUpdated", receipt) == [
        {"account": outsider, "allowed": True, "fromRound": 2}
    ]
    assert (f.isEligible(outsider, 1).call(), f.isEligible(outsider, 2).call()) == (False, True)
    assert (f.isEligible(clients[1], 1).call(), f.isEligible(clients[1], 2).call()) == (True, False)
    with reverts("CoordinatorNotEligible", account=outsider, round=1):
        submit(isolated, allowlisted, outsider, constant(1))
    submit(isolated, allowlisted, clients[1], constant(1))
    submit(isolated, allowlisted, clients[0], constant(3))
    close(isolated, allowlisted, relayer, [constant(1), constant(3)])
    # round 2: the new rules
    assert read_round(allowlisted).number == 2
    assert f.allowed(outsider).call() is True
    with reverts("CoordinatorNotEligible", account=clients[1], round=2):
        submit(isolated, allowlisted, clients[1], constant(1), round_number=2)
    submit(isolated, allowlisted, outsider, constant(1), round_number=2)


def test_allowlist_toggled_twice_in_a_round_keeps_the_rule_in_force(
    isolated: Chain, allowlisted: Contract, owner: str, clients: list[str]
) -> None:
    f = allowlisted.functions
    for allowed in (False, True, False):
        send(isolated, f.setAllowed([clients[2]], allowed), owner)
    assert f.isEligible(clients[2], 1).call() is True
    assert f.isEligible(clients[2], 2).call() is False
    submit(isolated, allowlisted, clients[2], constant(1))


def test_allowlist_is_ignored_when_disabled(
    isolated: Chain, coordinator: Contract, outsider: str
) -> None:
    assert coordinator.functions.allowed(outsider).call() is True
    submit(isolated, coordinator, outsider, constant(1))


def test_transfer_ownership(
    isolated: Chain, coordinator: Contract, owner: str, funder: str, outsider: str
) -> None:
    f = coordinator.functions
    with reverts("CoordinatorInvalidParameter", name="newOwner", value=0):
        send(isolated, f.transferOwnership(ZERO_ADDRESS), owner)
    receipt = send(isolated, f.transferOwnership(funder), owner)
    assert events(coordinator, "OwnershipTransferred", receipt) == [
        {"previousOwner": owner, "newOwner": funder}
    ]
    assert f.owner().call() == funder
    with reverts("CoordinatorUnauthorized", caller=owner):
        send(isolated, f.setAllowed([outsider], True), owner)
    send(isolated, f.setAllowed([outsider], True), funder)


# ---------------------------------------------------------------- closing a round


def test_round_closes_when_full_before_the_deadline(
    isolated: Chain, coordinator: Contract, clients: list[str], relayer: str
) -> None:
    # Prepare
    rng = np.random.default_rng(2)
    vectors = [random_vector(rng) for _ in range(3)]
    for client, vector in zip(clients, vectors, strict=False):
        submit(isolated, coordinator, client, vector)
    deadline = deadline_of(coordinator)
    # Execute
    [receipt] = close(isolated, coordinator, relayer, vectors)
    # Assert
    expected = integer_average(vectors)
    words = pack(expected)
    assert block_time(isolated, receipt) < deadline
    assert events(coordinator, "RoundClosed", receipt) == [
        {"round": 1, "modelVersion": 1, "modelHash": vector_hash(words, 3), "submissions": 3}
    ]
    assert events(coordinator, "RoundOpened", receipt) == [
        {"round": 2, "deadline": block_time(isolated, receipt) + 600}
    ]
    assert model_values(coordinator) == expected.tolist()
    assert coordinator.functions.globalModel().call() == words
    assert coordinator.functions.modelHash().call() == vector_hash(words, 3)
    info = read_round(coordinator)
    assert (info.number, info.phase, info.submissions, info.closed_segments) == (2, "Open", 0, 0)


def test_round_below_target_cannot_close_before_the_deadline(
    isolated: Chain, coordinator: Contract, clients: list[str], relayer: str
) -> None:
    vectors = [constant(1), constant(2)]
    for client, vector in zip(clients, vectors, strict=False):
        submit(isolated, coordinator, client, vector)
    deadline = deadline_of(coordinator)
    with reverts(
        "CoordinatorNotClosable", round=1, entries=2, target=3, minimum=2, opensAt=deadline
    ):
        close(isolated, coordinator, relayer, vectors)
    # from the deadline on, the minimum is enough
    next_block_at(isolated, deadline)
    words = pack(constant(1)) + pack(constant(2))
    receipt = raw_send(isolated, coordinator.functions.closeSegment(1, 0, words, []), relayer)
    assert (receipt["status"], block_time(isolated, receipt)) == (1, deadline)
    assert model_values(coordinator) == [2] * SMALL_WEIGHTS  # 1.5 rounds away from zero


def test_round_below_minimum_never_closes_and_finalize_ends_it_after_the_window(
    isolated: Chain, coordinator: Contract, client_a: str, relayer: str
) -> None:
    # Prepare
    f = coordinator.functions
    submit(isolated, coordinator, client_a, constant(9))
    deadline = deadline_of(coordinator)
    opens_at = window_end(coordinator)
    assert opens_at == deadline + 120
    mine_at(isolated, deadline + 1)
    # Execute / Assert: below the minimum, the close never opens
    with reverts(
        "CoordinatorNotClosable", round=1, entries=1, target=3, minimum=2, opensAt=deadline
    ):
        close(isolated, coordinator, relayer, [constant(9)])
    with reverts(
        "CoordinatorNotClosable", round=1, entries=1, target=3, minimum=2, opensAt=opens_at
    ):
        send(isolated, f.finalize(), relayer)
    next_block_at(isolated, opens_at - 1)
    assert raw_send(isolated, f.finalize(), relayer)["status"] == 0
    next_block_at(isolated, opens_at)
    receipt = raw_send(isolated, f.finalize(), relayer)
    # Assert
    assert receipt["status"] == 1
    assert events(coordinator, "RoundAbandoned", receipt) == [{"round": 1, "submissions": 1}]
    assert events(coordinator, "RoundOpened", receipt) == [{"round": 2, "deadline": opens_at + 600}]
    assert model_values(coordinator) == [0] * SMALL_WEIGHTS
    assert f.modelVersion().call() == 0
    assert f.modelHash().call() == vector_hash(pack(constant(0)), 3)
    info = read_round(coordinator)
    assert (info.number, info.phase, info.submissions) == (2, "Open", 0)
    # the client of the abandoned round submits again in the next one
    submit(isolated, coordinator, client_a, constant(9), round_number=2)


def test_finalize_ends_a_full_round_that_nobody_closes_within_the_window(
    isolated: Chain, coordinator: Contract, clients: list[str], relayer: str
) -> None:
    f = coordinator.functions
    for client in clients[:3]:
        submit(isolated, coordinator, client, constant(4))
    # A round that holds its minimum can be closed by anyone from the window's end: closers get
    # one more window alone before it can be ended.
    window = int(f.closeWindow().call())
    opens = window_end(coordinator) + window
    for moment in (None, window_end(coordinator)):
        if moment is not None:
            mine_at(isolated, moment)
        with reverts(
            "CoordinatorNotClosable", round=1, entries=3, target=3, minimum=2, opensAt=opens
        ):
            send(isolated, f.finalize(), relayer)
    mine_at(isolated, opens)
    receipt = send(isolated, f.finalize(), relayer)
    assert events(coordinator, "RoundAbandoned", receipt) == [{"round": 1, "submissions": 3}]
    assert model_values(coordinator) == [0] * SMALL_WEIGHTS
    assert f.modelVersion().call() == 0
    # the abandoned round's entries are gone: round 2 starts empty
    assert read_round(coordinator).submissions == 0
    assert [list(column) for column in f.entries().call()] == [[], [], [], []]


def test_a_close_may_still_start_after_the_window_while_nobody_finalized(
    isolated: Chain, coordinator: Contract, clients: list[str], relayer: str
) -> None:
    for client in clients[:2]:
        submit(isolated, coordinator, client, constant(4))
    mine_at(isolated, window_end(coordinator) + 1000)
    close(isolated, coordinator, relayer, [constant(4), constant(4)])
    assert model_values(coordinator) == [4] * SMALL_WEIGHTS
    assert coordinator.functions.modelVersion().call() == 1


def test_close_naming_another_round_reverts_wrong_round(
    isolated: Chain, coordinator: Contract, clients: list[str], relayer: str
) -> None:
    for client in clients[:3]:
        submit(isolated, coordinator, client, constant(1))
    with reverts("CoordinatorWrongRound", given=2, current=1):
        close(isolated, coordinator, relayer, [constant(1)] * 3, round_number=2)


@pytest.fixture
def three_segments(isolated: Chain, deployed: dict[str, Contract]) -> Contract:
    """Three one-word segments (40 weights), target 3, minimum 2."""
    return deployed["three"]


def test_model_is_double_buffered_while_the_segments_close(
    isolated: Chain, three_segments: Contract, clients: list[str], relayer: str
) -> None:
    # Prepare
    contract = three_segments
    f = contract.functions
    rng = np.random.default_rng(3)
    vectors = [random_vector(rng) for _ in range(3)]
    updates = dict(zip(clients, vectors, strict=False))
    for client, vector in updates.items():
        submit(isolated, contract, client, vector)
    old_words = f.globalModel().call()
    old_hash = f.modelHash().call()
    deadline = deadline_of(contract)
    expected = integer_average(vectors)
    # Execute / Assert: segment 0 of 3
    first = close_segment(isolated, contract, relayer, updates, 0)
    assert events(contract, "SegmentClosed", first)[0]["segment"] == 0
    assert events(contract, "RoundClosed", first) == []
    assert f.globalModel().call() == old_words
    assert f.globalModelSegment(0).call() == old_words[:1]
    assert f.modelHash().call() == old_hash
    assert f.modelVersion().call() == 0
    info = read_round(contract)
    assert (info.number, info.phase, info.deadline, info.submissions, info.closed_segments) == (
        1,
        "Closing",
        deadline,
        3,
        1,
    )
    assert f.roundDetails().call()[2] == block_time(isolated, first)
    # segment 1 of 3: still the old model
    close_segment(isolated, contract, relayer, updates, 1)
    assert f.globalModel().call() == old_words
    assert read_round(contract).closed_segments == 2
    # the last segment: the new model at once
    last = close_segment(isolated, contract, relayer, updates, 2)
    new_words = pack(expected)
    assert f.globalModel().call() == new_words
    assert model_values(contract) == expected.tolist()
    assert (
        f.modelHash().call() == vector_hash(new_words, 1) == vector_hash(f.globalModel().call(), 1)
    )
    assert f.modelVersion().call() == 1
    assert events(contract, "RoundClosed", last) == [
        {"round": 1, "modelVersion": 1, "modelHash": vector_hash(new_words, 1), "submissions": 3}
    ]
    assert f.roundDetails().call()[2] == 0


def test_closing_phase_refuses_finalize_submissions_and_out_of_order_segments(
    isolated: Chain, three_segments: Contract, clients: list[str], relayer: str
) -> None:
    # Prepare: two entries, the deadline passed, segment 0 closed
    contract = three_segments
    f = contract.functions
    updates = {clients[0]: constant(2), clients[1]: constant(6)}
    for client, vector in updates.items():
        submit(isolated, contract, client, vector)
    late = signed(isolated, contract, clients[3], constant(1))
    mine_at(isolated, window_end(contract) + 1)
    close_segment(isolated, contract, relayer, updates, 0)
    # Execute / Assert
    with reverts("CoordinatorWrongPhase", phase=PHASE["Closing"]):
        send(isolated, f.finalize(), relayer)
    with reverts("CoordinatorWrongPhase", phase=PHASE["Closing"]):
        submit(isolated, contract, clients[2], constant(1))
    with reverts("CoordinatorWrongPhase", phase=PHASE["Closing"]):
        send(isolated, f.submitRelayed(1, [late.as_tuple()]), relayer)
    with reverts("CoordinatorWrongSegment", expected=1, given=2):
        close_segment(isolated, contract, relayer, updates, 2)
    with reverts("CoordinatorWrongSegment", expected=1, given=0):
        close_segment(isolated, contract, relayer, updates, 0)
    # another account finishes the close
    close_segment(isolated, contract, clients[5], updates, 1)
    close_segment(isolated, contract, clients[5], updates, 2)
    assert model_values(contract) == [4] * SMALL_WEIGHTS


def test_first_close_must_start_at_segment_zero(
    isolated: Chain, three_segments: Contract, clients: list[str], relayer: str
) -> None:
    updates = {c: constant(1) for c in clients[:3]}
    for client, vector in updates.items():
        submit(isolated, three_segments, client, vector)
    with reverts("CoordinatorWrongSegment", expected=0, given=1):
        close_segment(isolated, three_segments, relayer, updates, 1)


def test_model_version_counts_closed_rounds_only(
    isolated: Chain, coordinator: Contract, clients: list[str], relayer: str
) -> None:
    f = coordinator.functions
    # round 1 closes, round 2 is abandoned, round 3 closes
    for client in clients[:3]:
        submit(isolated, coordinator, client, constant(5))
    close(isolated, coordinator, relayer, [constant(5)] * 3)
    mine_at(isolated, window_end(coordinator))
    send(isolated, f.finalize(), relayer)
    for client in clients[:3]:
        submit(isolated, coordinator, client, constant(-7), round_number=3)
    [receipt] = close(isolated, coordinator, relayer, [constant(-7)] * 3, round_number=3)
    assert f.modelVersion().call() == 2
    assert events(coordinator, "RoundClosed", receipt)[0]["modelVersion"] == 2
    assert read_round(coordinator).number == 4
    assert model_values(coordinator) == [-7] * SMALL_WEIGHTS


# ---------------------------------------------------------------- direct submissions in several transactions


def test_submission_in_several_transactions(
    isolated: Chain, three_segments: Contract, client_a: str
) -> None:
    # Prepare
    contract = three_segments
    f = contract.functions
    values = np.arange(SMALL_WEIGHTS, dtype=np.int64) * 7 - 100
    words = pack(values)
    # Execute: segment 0 alone, then segments 1 and 2 in one transaction
    first = submit_segments(isolated, contract, client_a, values, [0], sample_count=9)
    # Assert: a part holds no place
    assert events(contract, "SegmentsReceived", first) == [
        {"round": 1, "client": client_a, "firstSegment": 0, "count": 1}
    ]
    assert events(contract, "SubmissionAccepted", first) == []
    progress = read_progress(contract, client_a)
    assert (
        progress.round_number,
        progress.segments_done,
        progress.sample_count,
        progress.relayed,
    ) == (
        1,
        1,
        9,
        False,
    )
    assert progress.distance_so_far == distance(np.zeros(16, dtype=np.int64), values[:16], "l1")
    assert f.hasSubmitted(client_a, 1).call() is False
    assert read_round(contract).submissions == 0
    assert f.segmentHash(client_a, 0).call() == split_hash(words, 0)
    # Execute: the rest
    last = submit_segments(isolated, contract, client_a, values, [1, 2], sample_count=9)
    # Assert
    [accepted] = events(contract, "SubmissionAccepted", last)
    assert accepted["distance"] == distance(constant(0), values, "l1")
    assert (accepted["counted"], accepted["relayed"], accepted["sampleCount"]) == (True, False, 9)
    assert f.hasSubmitted(client_a, 1).call() is True
    assert read_round(contract).submissions == 1
    assert [f.segmentHash(client_a, s).call() for s in range(3)] == [
        split_hash(words, s) for s in range(3)
    ]


def split_hash(words: list[int], segment: int) -> bytes:
    """keccak256 of one one-word segment of ``words``."""
    return words_hash(split_segments(words, 1)[segment])


def test_submission_resumes_from_its_next_segment(
    isolated: Chain, three_segments: Contract, client_a: str
) -> None:
    values = constant(11)
    submit_segments(isolated, three_segments, client_a, values, [0])
    receipts = submit(isolated, three_segments, client_a, values, start_segment=1)
    assert len(receipts) == 1  # segments 1 and 2 in one transaction
    assert three_segments.functions.hasSubmitted(client_a, 1).call() is True


def test_segments_must_come_in_order(
    isolated: Chain, three_segments: Contract, client_a: str, client_b: str
) -> None:
    values = constant(3)
    with reverts("CoordinatorWrongSegment", expected=0, given=1):
        submit_segments(isolated, three_segments, client_a, values, [1])
    submit_segments(isolated, three_segments, client_a, values, [0])
    with reverts("CoordinatorWrongSegment", expected=1, given=0):
        submit_segments(isolated, three_segments, client_a, values, [0])
    with reverts("CoordinatorWrongSegment", expected=1, given=2):
        submit_segments(isolated, three_segments, client_a, values, [2])
    # too many words after the last segment
    words = [*pack(values)[1:], ZERO_WORD]
    with reverts("CoordinatorWrongLength", expected=2, given=3):
        send(isolated, three_segments.functions.submit(1, 1, 1, words), client_a)
    with reverts("CoordinatorWrongLength", expected=1, given=0):
        send(isolated, three_segments.functions.submit(1, 1, 1, []), client_a)
    submit_segments(isolated, three_segments, client_b, values, [0, 1, 2])


def test_segments_need_the_same_sample_count(
    isolated: Chain, three_segments: Contract, client_a: str
) -> None:
    submit_segments(isolated, three_segments, client_a, constant(3), [0], sample_count=5)
    with reverts("CoordinatorSampleCountChanged", declared=5, given=6):
        submit_segments(isolated, three_segments, client_a, constant(3), [1], sample_count=6)
    with reverts("CoordinatorInvalidSampleCount", sampleCount=0, max=1000):
        submit_segments(isolated, three_segments, client_a, constant(3), [1], sample_count=0)


def test_incomplete_submission_holds_no_place(
    isolated: Chain, three_segments: Contract, clients: list[str], relayer: str
) -> None:
    # Prepare: one client stops after segment 0; three others complete and fill the round
    contract = three_segments
    partial, others = clients[0], clients[1:4]
    submit_segments(isolated, contract, partial, constant(3000), [0])
    vectors = [constant(10), constant(20), constant(-30)]
    for client, vector in zip(others, vectors, strict=True):
        submit(isolated, contract, client, vector)
    # Execute / Assert: the round is full; the partial submission cannot complete
    assert read_round(contract).submissions == 3
    with reverts("CoordinatorRoundFull", round=1, entries=3):
        submit(isolated, contract, partial, constant(3000), start_segment=1)
    receipts = close(isolated, contract, relayer, vectors)
    assert model_values(contract) == integer_average(vectors).tolist()
    assert events(contract, "RoundClosed", receipts[-1])[0]["submissions"] == 3
    assert contract.functions.credit(partial).call() == 0
    assert contract.functions.hasSubmitted(partial, 1).call() is False
    # next round: the partial client starts afresh from segment 0
    submit(isolated, contract, partial, constant(1), round_number=2)
    assert contract.functions.hasSubmitted(partial, 2).call() is True


def test_incomplete_submission_at_the_deadline_is_left_out(
    isolated: Chain, three_segments: Contract, clients: list[str], relayer: str
) -> None:
    contract = three_segments
    submit_segments(isolated, contract, clients[0], constant(-3000), [0, 1])
    vectors = [constant(100), constant(301)]
    for client, vector in zip(clients[1:3], vectors, strict=True):
        submit(isolated, contract, client, vector)
    deadline = deadline_of(contract)
    mine_at(isolated, deadline)
    with reverts("CoordinatorDeadlinePassed", round=1, deadline=deadline):
        submit(isolated, contract, clients[0], constant(-3000), start_segment=2)
    close(isolated, contract, relayer, vectors)
    assert model_values(contract) == [201] * SMALL_WEIGHTS  # 200.5 away from zero
    assert contract.functions.credit(clients[0]).call() == 0


# ---------------------------------------------------------------- views


def test_parameter_getters(isolated: Chain, deployed: dict[str, Contract], owner: str) -> None:
    contract = deployed["getters"]
    f = contract.functions
    assert (
        f.numWeights().call(),
        f.numWords().call(),
        f.wordsPerSegment().call(),
        f.numSegments().call(),
    ) == (
        100,
        7,
        3,
        3,
    )
    assert (f.scale().call(), f.maxAbsWeight().call()) == (1024, 3000)
    assert (f.targetSubmissions().call(), f.minSubmissions().call()) == (3, 2)
    assert (f.roundDuration().call(), f.closeWindow().call()) == (600, 120)
    assert (f.closeFee().call(), f.relayFee().call(), f.commitBond().call()) == (7, 3, 0)
    assert (f.aggregation().call(), f.distance().call(), f.mode().call()) == (1, 1, 0)
    assert f.maxSampleCount().call() == 1000
    assert f.allowlistEnabled().call() is False
    assert f.minRewardDistance().call() == 5
    assert f.maxCountedDistance().call() == U128 - 1  # 0 at deployment: off
    assert f.minAlignment().call() == -2500
    assert f.rewardTiers().call() == [[1_000, 10_000, 50_000], [300, 200, 100]]
    assert f.accumulatorBits().call() == 32  # 3 * 1000 * 2**16 < 2**32
    assert f.MAX_CALLDATA_BYTES().call() == 131_072 - 1_024
    assert f.MAX_CHUNK_WORDS().call() == 767
    assert f.owner().call() == owner
    _, name, version, chain_id, verifying, _, _ = f.eip712Domain().call()
    assert (name, version, chain_id, verifying) == (
        "FLCoordinator",
        "2",
        isolated.chain_id(),
        contract.address,
    )


def test_words_per_segment_is_capped_at_the_model_size(coordinator: Contract) -> None:
    contract = coordinator  # deployed with 512 words per segment
    assert (
        contract.functions.wordsPerSegment().call(),
        contract.functions.numSegments().call(),
    ) == (3, 1)


def test_entries_list_the_round_in_order(
    isolated: Chain, coordinator: Contract, clients: list[str], relayer: str
) -> None:
    submit(isolated, coordinator, clients[1], constant(1), sample_count=4)
    update = signed(isolated, coordinator, clients[0], constant(2), sample_count=7)
    send(isolated, coordinator.functions.submitRelayed(1, [update.as_tuple()]), relayer)
    assert [list(column) for column in coordinator.functions.entries().call()] == [
        [clients[1], clients[0]],
        [4, 7],
        [False, True],
        [False, False],
    ]
    completed, commits, started, window = coordinator.functions.roundDetails().call()
    assert (completed, commits, started, window) == (2, 0, 0, deadline_of(coordinator) + 120)


def test_close_round_helper_reads_entries(
    isolated: Chain, three_segments: Contract, clients: list[str], relayer: str
) -> None:
    """The helper the other modules rely on: a close follows ``entries()`` order."""
    updates = {clients[2]: constant(9), clients[0]: constant(-3), clients[1]: constant(0)}
    for client, vector in updates.items():
        submit(isolated, three_segments, client, vector)
    close_round(isolated, three_segments, relayer, updates)
    assert model_values(three_segments) == [2] * SMALL_WEIGHTS


def test_a_close_with_altered_direct_words_reverts(
    isolated: Chain, coordinator: Contract, clients: list[str], relayer: str
) -> None:
    """The words of a direct entry are in its submission's calldata; a closer cannot change them."""
    updates = {c: constant(i) for i, c in enumerate(clients[:3])}
    for client, vector in updates.items():
        submit(isolated, coordinator, client, vector)
    with reverts("CoordinatorWordsMismatch", index=2, client=clients[2]):
        close_round(isolated, coordinator, relayer, {**updates, clients[2]: constant(3)})
