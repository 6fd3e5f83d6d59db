"""FLCoordinator arithmetic against the Python reference (fl_client.aggregation), exactly.

The lane-parallel (SWAR) sums, the rounding of the average (nearest, ties away from zero) and the
distances are checked on random vectors with Hypothesis, in every lane width the contract picks
(16, 32, 64 and 128 bits, forced through the parameters), plus explicit extremes.

The coordinators are deployed once per module; every example runs on a snapshot of the chain
that it reverts (Hypothesis does not reset fixtures between examples).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from web3.contract import Contract
from web3.types import TxReceipt

from fl_client.aggregation import distance, integer_average
from fl_client.chain import Chain, deploy, send
from fl_client.codec import model_hash, pack
from fl_client.errors import ContractRevertError
from tests.conftest import SMALL_WEIGHTS, DeployFactory, events, revert_args, small_params, submit

ROUND_DURATION = 600
MAX_ABS = 32767


# ---------------------------------------------------------------- deployments


@dataclass(frozen=True)
class Setting:
    """Coordinator parameters that force one lane width."""

    aggregation: str
    target: int
    max_abs: int
    max_samples: int
    lane_bits: int
    max_clients: int  # how many clients an example may draw (<= target)


SETTINGS: dict[str, Setting] = {
    # target * maxAbs < 2**15: 16-bit lanes
    "mean16": Setting("mean", 3, 3000, 1000, 16, 3),
    "mean16_full_range": Setting("mean", 1, MAX_ABS, 1000, 16, 1),
    # 12 * 3000 = 36,000 >= 2**15: 32-bit lanes
    "mean32": Setting("mean", 12, 3000, 1000, 32, 12),
    # sample weights up to 1000: 1000 * 2**16 <= 2**32
    "weighted32": Setting("sample_weighted", 3, 3000, 1000, 32, 3),
    # 4 * 65,535 * 32,767 >= 2**31: 64-bit lanes
    "weighted64": Setting("sample_weighted", 4, MAX_ABS, 65535, 64, 4),
    # (2**32 - 1)**2 * 32,767 >= 2**63: 128-bit lanes (closed by finalize)
    "weighted128": Setting("sample_weighted", 2**32 - 1, MAX_ABS, 2**32 - 1, 128, 4),
}

DISTANCE_SETTINGS = {"l1": "dist_l1", "squared_l2": "dist_squared_l2"}


@pytest.fixture(scope="module")
def deployments(chain: Chain) -> Iterator[dict[str, Contract]]:
    """One coordinator per setting (and per distance metric), rolled back after the module."""
    snapshot = chain.snapshot()
    owner = chain.accounts[0]
    contracts: dict[str, Contract] = {}
    for name, setting in SETTINGS.items():
        params = small_params(
            aggregation=setting.aggregation,
            target_submissions=setting.target,
            min_submissions=1,
            max_abs_weight=setting.max_abs,
            max_sample_count=setting.max_samples,
            round_duration=ROUND_DURATION,
        )
        contracts[name] = deploy(chain, params, pool_wei=10**6, deployer=owner)
        assert contracts[name].functions.laneBits().call() == setting.lane_bits
    for metric, name in DISTANCE_SETTINGS.items():
        params = small_params(
            target_submissions=1, min_submissions=1, max_abs_weight=MAX_ABS, distance=metric
        )
        contracts[name] = deploy(chain, params, pool_wei=10**6, deployer=owner)
    yield contracts
    chain.revert(snapshot)


# ---------------------------------------------------------------- helpers


def model_weights(contract: Contract) -> list[int]:
    """The global model as signed quantized weights."""
    return [int(w) for w in contract.functions.globalModelWeights().call()]


@dataclass(frozen=True)
class Case:
    """One round: the setting, every client's vector and sample count."""

    setting: str
    vectors: tuple[tuple[int, ...], ...]
    samples: tuple[int, ...]


def run_round(chain: Chain, contract: Contract, case: Case) -> TxReceipt:
    """Submit every vector of ``case`` to round 1 and close it; the closing receipt."""
    setting = SETTINGS[case.setting]
    receipt: TxReceipt | None = None
    for index, (vector, count) in enumerate(zip(case.vectors, case.samples, strict=True)):
        values = np.array(vector, dtype=np.int64)
        receipt = submit(chain, contract, chain.accounts[1 + index], values, sample_count=count)
    if len(case.vectors) < setting.target:
        chain.advance_time(ROUND_DURATION)
        receipt = send(chain, contract.functions.finalize(), chain.accounts[0])
    assert receipt is not None
    return receipt


def reference(case: Case) -> np.ndarray:
    """The Python reference of the round's new model."""
    vectors = [np.array(v, dtype=np.int64) for v in case.vectors]
    weighted = SETTINGS[case.setting].aggregation == "sample_weighted"
    return integer_average(vectors, list(case.samples) if weighted else None)


def check_round(chain: Chain, deployments: dict[str, Contract], case: Case) -> list[int]:
    """Run ``case`` on a snapshot, assert the model equals the reference, return the model."""
    contract = deployments[case.setting]
    snapshot = chain.snapshot()
    try:
        receipt = run_round(chain, contract, case)
        expected = reference(case)
        words = contract.functions.globalModel().call()
        [closed] = events(contract, "RoundClosed", receipt)
        assert closed == {
            "round": 1,
            "modelVersion": 1,
            "modelHash": model_hash(pack(expected)),
            "submissions": len(case.vectors),
        }
        onchain = model_weights(contract)
        assert onchain == expected.tolist()
        assert words == pack(expected)
        assert contract.functions.modelHash().call() == model_hash(words)
        return onchain
    finally:
        chain.revert(snapshot)


def constant_case(setting: str, values: list[int], samples: list[int] | None = None) -> Case:
    """One client per entry of ``values``, each sending that value in every weight."""
    counts = samples or [1] * len(values)
    return Case(setting, tuple((v,) * SMALL_WEIGHTS for v in values), tuple(counts))


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """A setting, 1..max_clients random in-range vectors and sample counts."""
    name = draw(st.sampled_from(sorted(SETTINGS)))
    setting = SETTINGS[name]
    clients = draw(st.integers(1, setting.max_clients))
    bound = setting.max_abs
    value = st.one_of(
        st.integers(-bound, bound),
        st.sampled_from([-bound, bound, 0]),
        st.integers(-3, 3),  # small values make exact ties frequent
    )
    vector = st.lists(value, min_size=SMALL_WEIGHTS, max_size=SMALL_WEIGHTS).map(tuple)
    vectors = tuple(draw(st.lists(vector, min_size=clients, max_size=clients)))
    if setting.aggregation == "mean":
        samples = (1,) * clients
    else:
        count = st.one_of(
            st.integers(1, setting.max_samples), st.sampled_from([1, setting.max_samples])
        )
        samples = tuple(draw(st.lists(count, min_size=clients, max_size=clients)))
    return Case(name, vectors, samples)


MIXED = tuple(
    (3000 if i % 2 else -3000) if i % 3 else (-1) ** i * (i * 71 % 3001)
    for i in range(SMALL_WEIGHTS)
)


# ---------------------------------------------------------------- averages


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases())
@example(case=constant_case("mean16", [3000, 3000, 3000]))
@example(case=constant_case("mean16", [-3000, -3000, -3000]))
@example(case=constant_case("mean16_full_range", [MAX_ABS]))
@example(case=constant_case("mean16_full_range", [-MAX_ABS]))
@example(
    case=Case(
        "mean16_full_range",
        (tuple(MAX_ABS if i % 2 else -MAX_ABS for i in range(SMALL_WEIGHTS)),),
        (1,),
    )
)
@example(case=constant_case("mean32", [3000] * 12))
@example(case=constant_case("mean32", [-3000] * 12))
@example(case=constant_case("mean32", [3000, -3000] * 6))
@example(case=Case("mean32", (MIXED, tuple(-v for v in MIXED), MIXED), (1, 1, 1)))
@example(case=constant_case("weighted32", [3000, 3000, 3000], [1000, 1000, 1000]))
@example(case=constant_case("weighted32", [-3000, 3000, -3000], [1000, 1, 1000]))
@example(case=constant_case("weighted64", [MAX_ABS] * 4, [65535] * 4))
@example(case=constant_case("weighted64", [-MAX_ABS] * 4, [65535] * 4))
@example(case=constant_case("weighted128", [MAX_ABS] * 4, [2**32 - 1] * 4))
@example(
    case=constant_case("weighted128", [-MAX_ABS, -MAX_ABS, MAX_ABS], [2**32 - 1, 2**32 - 1, 1])
)
def test_on_chain_average_equals_reference(
    chain: Chain, deployments: dict[str, Contract], case: Case
) -> None:
    check_round(chain, deployments, case)


TIE_CASES: list[tuple[Case, list[int]]] = [
    # mean of 2: sums of 1, -1, 3, -3, 5999, -5999 are exactly k + 0.5 times 2
    (
        Case(
            "mean16",
            (
                (1, -1, 3, -3, 2999, -2999, 1, -1) + (0,) * 32,
                (0, 0, 0, 0, 3000, -3000, 0, 0) + (0,) * 32,
            ),
            (1, 1),
        ),
        [1, -1, 2, -2, 3000, -3000, 1, -1] + [0] * 32,
    ),
    # mean of 4: 6/4 and -6/4 tie; 5/4, 7/4 and their negatives do not
    (
        Case(
            "mean32",
            (
                (3, -3, 2, -2, 4, -4, 1) + (0,) * 33,
                (1, -1, 1, -1, 1, -1, 1) + (0,) * 33,
                (1, -1, 1, -1, 1, -1, 1) + (0,) * 33,
                (1, -1, 1, -1, 1, -1, -1) + (0,) * 33,
            ),
            (1, 1, 1, 1),
        ),
        [2, -2, 1, -1, 2, -2, 1] + [0] * 33,
    ),
    # FedAvg with sample counts 1 and 3 (weight sum 4): 2/4, 6/4 and negatives tie
    (
        Case(
            "weighted32",
            ((2, -2, 0, 0, 1, 3, 1, -1) + (0,) * 32, (0, 0, 2, -2, 1, -1, 0, 0) + (0,) * 32),
            (1, 3),
        ),
        [1, -1, 2, -2, 1, 0, 0, 0] + [0] * 32,
    ),
    # FedAvg at the range limits: (32,767 + 32,766) / 2 = 32,766.5 with weight sum 131,070
    (
        Case(
            "weighted64",
            ((MAX_ABS, -MAX_ABS) + (0,) * 38, (MAX_ABS - 1, -(MAX_ABS - 1)) + (0,) * 38),
            (65535, 65535),
        ),
        [MAX_ABS, -MAX_ABS] + [0] * 38,
    ),
    # 128-bit lanes, weight sum 2 * (2**32 - 1)
    (
        Case(
            "weighted128",
            (
                (MAX_ABS, -MAX_ABS, 1, -1) + (0,) * 36,
                (MAX_ABS - 1, -(MAX_ABS - 1), 0, 0) + (0,) * 36,
            ),
            (2**32 - 1, 2**32 - 1),
        ),
        [MAX_ABS, -MAX_ABS, 1, -1] + [0] * 36,
    ),
]


@pytest.mark.parametrize(("case", "expected"), TIE_CASES, ids=[c.setting for c, _ in TIE_CASES])
def test_rounding_ties_go_away_from_zero(
    chain: Chain, deployments: dict[str, Contract], case: Case, expected: list[int]
) -> None:
    # Assert the reference itself first, then the chain against it
    assert reference(case).tolist() == expected
    assert check_round(chain, deployments, case) == expected


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_sums_are_reset_for_the_next_round(
    chain: Chain, deployments: dict[str, Contract], name: str
) -> None:
    """Closing resets every sum lane: round 2 averages only round 2's vectors, in every width."""
    # Prepare
    setting = SETTINGS[name]
    contract = deployments[name]
    rng = np.random.default_rng(21)
    clients = min(setting.max_clients, 3)
    bound = setting.max_abs
    rounds = [
        [
            rng.integers(-bound, bound + 1, size=SMALL_WEIGHTS, dtype=np.int64)
            for _ in range(clients)
        ]
        for _ in range(2)
    ]
    counts = [int(c) for c in rng.integers(1, setting.max_samples + 1, size=clients)]
    weights = counts if setting.aggregation == "sample_weighted" else None
    snapshot = chain.snapshot()
    try:
        # Execute
        for round_number, vectors in enumerate(rounds, start=1):
            for index, vector in enumerate(vectors):
                submit(
                    chain,
                    contract,
                    chain.accounts[1 + index],
                    vector,
                    round_number=round_number,
                    sample_count=counts[index],
                )
            if clients < setting.target:
                chain.advance_time(ROUND_DURATION)
                send(chain, contract.functions.finalize(), chain.accounts[0])
            # Assert
            assert contract.functions.modelVersion().call() == round_number
            assert model_weights(contract) == integer_average(vectors, weights).tolist()
    finally:
        chain.revert(snapshot)


def test_second_round_measures_from_new_model(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str]
) -> None:
    # Prepare
    contract = deploy_coordinator()
    rng = np.random.default_rng(20)
    first = [rng.integers(-3000, 3001, size=SMALL_WEIGHTS, dtype=np.int64) for _ in range(3)]
    second = [rng.integers(-3000, 3001, size=SMALL_WEIGHTS, dtype=np.int64) for _ in range(3)]
    for client, vector in zip(clients, first, strict=False):
        submit(isolated, contract, client, vector)
    model_1 = integer_average(first)
    assert model_weights(contract) == model_1.tolist()
    # Execute
    with pytest.raises(ContractRevertError) as caught:
        submit(isolated, contract, clients[0], second[0], round_number=1)
    receipts = [
        submit(isolated, contract, client, vector, round_number=2)
        for client, vector in zip(clients, second, strict=False)
    ]
    # Assert
    assert caught.value.name == "CoordinatorWrongRound"
    assert revert_args(caught.value) == {"given": 1, "current": 2}
    distances = [events(contract, "SubmissionAccepted", r)[0]["distance"] for r in receipts]
    assert distances == [distance(model_1, v, "l1") for v in second]
    assert distances != [distance(np.zeros(SMALL_WEIGHTS, dtype=np.int64), v, "l1") for v in second]
    [closed] = events(contract, "RoundClosed", receipts[-1])
    assert (closed["round"], closed["modelVersion"]) == (2, 2)
    assert model_weights(contract) == integer_average(second).tolist()
    assert contract.functions.modelHash().call() == model_hash(pack(integer_average(second)))


# ---------------------------------------------------------------- distances

vectors_full_range = st.lists(
    st.one_of(st.integers(-MAX_ABS, MAX_ABS), st.sampled_from([-MAX_ABS, MAX_ABS])),
    min_size=SMALL_WEIGHTS,
    max_size=SMALL_WEIGHTS,
)
LOW = [-MAX_ABS] * SMALL_WEIGHTS
HIGH = [MAX_ABS] * SMALL_WEIGHTS


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    metric=st.sampled_from(sorted(DISTANCE_SETTINGS)),
    model=vectors_full_range,
    update=vectors_full_range,
)
@example(metric="l1", model=LOW, update=HIGH)
@example(metric="l1", model=HIGH, update=LOW)
@example(metric="squared_l2", model=LOW, update=HIGH)
@example(metric="squared_l2", model=HIGH, update=LOW)
@example(metric="squared_l2", model=HIGH, update=HIGH)
def test_submission_distance_equals_reference(
    chain: Chain,
    deployments: dict[str, Contract],
    metric: str,
    model: list[int],
    update: list[int],
) -> None:
    # Prepare: target 1, so round 1's only submission becomes the model exactly
    contract = deployments[DISTANCE_SETTINGS[metric]]
    model_q = np.array(model, dtype=np.int64)
    update_q = np.array(update, dtype=np.int64)
    snapshot = chain.snapshot()
    try:
        first = submit(chain, contract, chain.accounts[1], model_q)
        assert model_weights(contract) == model
        # Execute
        second = submit(chain, contract, chain.accounts[2], update_q, round_number=2)
        # Assert
        zeros = np.zeros(SMALL_WEIGHTS, dtype=np.int64)
        assert events(contract, "SubmissionAccepted", first)[0]["distance"] == distance(
            zeros, model_q, metric
        )
        assert events(contract, "SubmissionAccepted", second)[0]["distance"] == distance(
            model_q, update_q, metric
        )
        assert contract.functions.submissionOf(chain.accounts[2]).call()[3] == distance(
            model_q, update_q, metric
        )
    finally:
        chain.revert(snapshot)


def test_maximum_lane_difference_distances() -> None:
    """The reference at the extremes, as the explicit examples above hold the chain to it."""
    low, high = np.array(LOW, dtype=np.int64), np.array(HIGH, dtype=np.int64)
    assert distance(low, high, "l1") == SMALL_WEIGHTS * 65534
    assert distance(low, high, "squared_l2") == SMALL_WEIGHTS * 65534**2
