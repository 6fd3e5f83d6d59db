"""FLCoordinator's arithmetic against the Python reference (``fl_client.aggregation``), exactly.

The average (nearest, ties away from zero) on every path of the pipeline: direct updates in one or
several transactions, relayed updates whose words arrive in the close, and mixes of both, plain
and sample-weighted, over models of 1 to 5 segments and at the range's extremes; Hypothesis draws
the mixes. Then the distances (L1, squared L2) on both paths, and the direction guard against
``step_signs``, ``directional_l1`` and ``aligned``.

The coordinators are deployed once per module; each Hypothesis example runs on a snapshot of the
chain that it reverts (Hypothesis does not reset fixtures between examples).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from web3.contract import Contract
from web3.types import TxReceipt

from fl_client.aggregation import aligned, directional_l1, distance, integer_average, step_signs
from fl_client.chain import Chain, close_function, deploy, read_progress, send
from fl_client.codec import pack, vector_hash, words_for
from tests.conftest import (
    SMALL_WEIGHTS,
    events,
    relay,
    signed,
    small_params,
    submit,
    submit_segments,
)
from tests.pipeline_helpers import (
    close_round,
    close_segment,
    deadline_of,
    mine_at,
    model_values,
    module_deployments,
    random_vector,
    reverts,
)

MAX_ABS = 2**14 - 1
U32 = 2**32 - 1


@dataclass(frozen=True)
class Setting:
    """A deployment the examples draw from."""

    num_weights: int
    words_per_segment: int
    aggregation: str
    max_sample_count: int
    max_abs: int

    @property
    def segments(self) -> int:
        return -(-words_for(self.num_weights) // self.words_per_segment)

    def params(self) -> dict[str, Any]:
        return {
            "num_weights": self.num_weights,
            "words_per_segment": self.words_per_segment,
            "aggregation": self.aggregation,
            "max_sample_count": self.max_sample_count,
            "max_abs_weight": self.max_abs,
            "target_submissions": TARGET,
            "min_submissions": 1,
        }


TARGET = 4
SETTINGS: dict[str, Setting] = {
    "one40": Setting(40, 3, "mean", 1000, 3000),  # one segment
    "three40w": Setting(40, 1, "sample_weighted", 1000, MAX_ABS),  # three segments
    "five129": Setting(129, 2, "mean", 1000, MAX_ABS),  # 9 words: 2, 2, 2, 2, 1
    "four200w64": Setting(200, 4, "sample_weighted", U32, MAX_ABS),  # 13 words; 64-bit sums
    "one200": Setting(200, 13, "mean", 1000, 3000),  # 13 words in one segment
}
DISTANCE_CONFIGS: dict[str, dict[str, Any]] = {
    f"{metric}_{start}": {
        "num_weights": 40,
        "words_per_segment": 1,
        "max_abs_weight": MAX_ABS,
        "distance": metric,
        "target_submissions": 2,
        "min_submissions": 1,
        "initial": np.full(40, -MAX_ABS, dtype=np.int64)
        if start == "low"
        else np.random.default_rng(7).integers(-MAX_ABS, MAX_ABS + 1, size=40),
    }
    for metric in ("l1", "squared_l2")
    for start in ("low", "random")
}


@pytest.fixture(scope="module")
def deployed(chain: Chain) -> Iterator[dict[str, Contract]]:
    """One coordinator per setting and per distance configuration."""
    configs = {name: s.params() for name, s in SETTINGS.items()} | DISTANCE_CONFIGS
    yield from module_deployments(chain, configs)


# ---------------------------------------------------------------- rounds of mixed paths


@dataclass(frozen=True)
class Update:
    """One client's update: how it travels, its values and sample count."""

    path: str  # "direct" or "relayed"
    values: tuple[int, ...]
    sample_count: int = 1
    segments_per_tx: int = 1  # direct: whole segments per transaction


@dataclass(frozen=True)
class Scenario:
    """A round on one of the ``SETTINGS``."""

    setting: str
    updates: tuple[Update, ...]

    def expected(self) -> np.ndarray:
        vectors = [np.array(u.values, dtype=np.int64) for u in self.updates]
        weighted = SETTINGS[self.setting].aggregation == "sample_weighted"
        return integer_average(
            vectors, [u.sample_count for u in self.updates] if weighted else None
        )


def run_round(chain: Chain, contract: Contract, scenario: Scenario) -> list[TxReceipt]:
    """Submit and relay every update in order (consecutive relayed ones in one batch), close the
    round (after the deadline when it is not full); every receipt."""
    setting = SETTINGS[scenario.setting]
    clients = chain.accounts[1 : 1 + len(scenario.updates)]
    relayer = chain.accounts[13]
    receipts: list[TxReceipt] = []
    pending: list[Any] = []
    for client, update in zip(clients, scenario.updates, strict=True):
        values = np.array(update.values, dtype=np.int64)
        if update.path == "relayed":
            pending.append(
                signed(chain, contract, client, values, sample_count=update.sample_count)
            )
            continue
        if pending:
            receipts.append(relay(chain, contract, relayer, pending))
            pending = []
        for first in range(0, setting.segments, update.segments_per_tx):
            segments = list(range(first, min(first + update.segments_per_tx, setting.segments)))
            receipts.append(
                submit_segments(
                    chain, contract, client, values, segments, sample_count=update.sample_count
                )
            )
    if pending:
        receipts.append(relay(chain, contract, relayer, pending))
    if len(scenario.updates) < TARGET:
        mine_at(chain, deadline_of(contract))
    words = {
        c: np.array(u.values, dtype=np.int64)
        for c, u in zip(clients, scenario.updates, strict=True)
    }
    receipts.extend(close_round(chain, contract, relayer, words))
    return receipts


def check_scenario(chain: Chain, deployed: dict[str, Contract], scenario: Scenario) -> list[int]:
    """Run ``scenario`` on a snapshot and assert the new model, its hash and every update's
    distance against the reference; the model."""
    contract = deployed[scenario.setting]
    setting = SETTINGS[scenario.setting]
    snapshot = chain.snapshot()
    try:
        receipts = run_round(chain, contract, scenario)
        expected = scenario.expected()
        words = pack(expected)
        onchain = model_values(contract)
        assert onchain == expected.tolist()
        assert contract.functions.globalModel().call() == words
        assert contract.functions.modelHash().call() == vector_hash(
            words, setting.words_per_segment
        )
        [closed] = [e for r in receipts for e in events(contract, "RoundClosed", r)]
        assert closed == {
            "round": 1,
            "modelVersion": 1,
            "modelHash": vector_hash(words, setting.words_per_segment),
            "submissions": len(scenario.updates),
        }
        accepted = {
            e["client"]: e for r in receipts for e in events(contract, "SubmissionAccepted", r)
        }
        zero = np.zeros(setting.num_weights, dtype=np.int64)
        for client, update in zip(chain.accounts[1:], scenario.updates, strict=False):
            event = accepted[client]
            assert event["distance"] == distance(zero, np.array(update.values), "l1")
            assert (event["counted"], event["relayed"]) == (True, update.path == "relayed")
            assert event["sampleCount"] == update.sample_count
        return onchain
    finally:
        chain.revert(snapshot)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """A setting, 1..TARGET updates on random paths, in-range values that favour the extremes
    and small numbers (exact ties), sample counts that favour 1 and the maximum."""
    name = draw(st.sampled_from(sorted(SETTINGS)))
    setting = SETTINGS[name]
    count = draw(st.integers(1, TARGET))
    bound = setting.max_abs
    value = st.one_of(
        st.integers(-bound, bound), st.sampled_from([-bound, bound, 0]), st.integers(-2, 2)
    )
    updates = []
    for _ in range(count):
        values = tuple(
            draw(st.lists(value, min_size=setting.num_weights, max_size=setting.num_weights))
        )
        samples = 1
        if setting.aggregation == "sample_weighted":
            top = setting.max_sample_count
            samples = draw(st.one_of(st.integers(1, top), st.sampled_from([1, 2, 3, top])))
        updates.append(
            Update(
                path=draw(st.sampled_from(["direct", "relayed"])),
                values=values,
                sample_count=samples,
                segments_per_tx=draw(st.integers(1, setting.segments)),
            )
        )
    return Scenario(name, tuple(updates))


def uniform(setting: str, specs: Sequence[tuple[str, int, int]]) -> Scenario:
    """Updates that carry one value everywhere: ``(path, value, sample count)`` each."""
    size = SETTINGS[setting].num_weights
    return Scenario(setting, tuple(Update(p, (v,) * size, n) for p, v, n in specs))


def alternating(setting: str, specs: Sequence[tuple[str, int, int]]) -> Scenario:
    """Updates of ``+value, -value, ...``: ``(path, value, sample count)`` each."""
    size = SETTINGS[setting].num_weights
    return Scenario(
        setting,
        tuple(Update(p, tuple(v if i % 2 else -v for i in range(size)), n) for p, v, n in specs),
    )


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(scenario=scenarios())
@example(scenario=uniform("four200w64", [("direct", MAX_ABS, U32), ("relayed", MAX_ABS, U32)] * 2))
@example(
    scenario=uniform("four200w64", [("relayed", -MAX_ABS, U32), ("direct", -MAX_ABS, U32)] * 2)
)
@example(
    scenario=alternating("four200w64", [("relayed", MAX_ABS, U32), ("direct", -MAX_ABS, 1)] * 2)
)
@example(scenario=uniform("one40", [("direct", 3000, 1), ("relayed", 2999, 1)]))  # 2999.5
@example(scenario=uniform("one40", [("relayed", -3000, 1), ("direct", -2999, 1)]))  # -2999.5
@example(
    scenario=uniform(
        "five129", [("relayed", MAX_ABS, 1), ("relayed", -MAX_ABS, 1), ("relayed", 1, 1)]
    )
)
def test_average_equals_the_reference_on_any_mix_of_paths(
    isolated: Chain, deployed: dict[str, Contract], scenario: Scenario
) -> None:
    check_scenario(isolated, deployed, scenario)


# ---------------------------------------------------------------- rounding ties on each path

TIE_MEAN_2 = (
    (1, -1, 3, -3, 2999, -2999, 1, -1),
    (0, 0, 0, 0, 3000, -3000, 0, 0),
)
TIE_MEAN_2_EXPECTED = [1, -1, 2, -2, 3000, -3000, 1, -1]  # every entry a tie, away from zero
TIE_MEAN_4 = (
    (3, -3, 2, -2, 4, -4, 1),
    (1, -1, 1, -1, 1, -1, 1),
    (1, -1, 1, -1, 1, -1, 1),
    (1, -1, 1, -1, 1, -1, -1),
)
TIE_MEAN_4_EXPECTED = [2, -2, 1, -1, 2, -2, 1]  # 6/4 and -6/4 tie; 5/4, 7/4 do not
TIE_WEIGHTED = ((2, -2, 0, 0, 1, 3, 1, -1), (0, 0, 2, -2, 1, -1, 0, 0))  # sample counts 1 and 3
TIE_WEIGHTED_EXPECTED = [1, -1, 2, -2, 1, 0, 0, 0]  # 2/4, 6/4 and negatives tie

PATH_MIXES = {
    "direct": ("direct", "direct", "direct", "direct"),
    "relayed": ("relayed", "relayed", "relayed", "relayed"),
    "mixed": ("relayed", "direct", "relayed", "direct"),
}


def padded(values: Sequence[int], size: int) -> tuple[int, ...]:
    return tuple(values) + (0,) * (size - len(values))


@pytest.mark.parametrize("paths", sorted(PATH_MIXES))
@pytest.mark.parametrize(
    ("setting", "vectors", "samples", "expected"),
    [
        ("one40", TIE_MEAN_2, (1, 1), TIE_MEAN_2_EXPECTED),
        ("one40", TIE_MEAN_4, (1, 1, 1, 1), TIE_MEAN_4_EXPECTED),
        ("three40w", TIE_WEIGHTED, (1, 3), TIE_WEIGHTED_EXPECTED),
    ],
    ids=["mean-of-2", "mean-of-4", "weighted-1-3"],
)
def test_rounding_ties_go_away_from_zero(
    isolated: Chain,
    deployed: dict[str, Contract],
    paths: str,
    setting: str,
    vectors: tuple[tuple[int, ...], ...],
    samples: tuple[int, ...],
    expected: list[int],
) -> None:
    # Prepare
    size = SETTINGS[setting].num_weights
    scenario = Scenario(
        setting,
        tuple(
            Update(path, padded(v, size), n)
            for path, v, n in zip(PATH_MIXES[paths], vectors, samples, strict=False)
        ),
    )
    # the reference itself rounds the ties away from zero
    assert scenario.expected().tolist() == list(padded(expected, size))
    # Execute / Assert
    assert check_scenario(isolated, deployed, scenario) == list(padded(expected, size))


@pytest.mark.parametrize(("setting", "bits"), [("one40", 32), ("three40w", 32), ("four200w64", 64)])
def test_accumulator_width_follows_the_largest_weight_sum(
    deployed: dict[str, Contract], setting: str, bits: int
) -> None:
    assert deployed[setting].functions.accumulatorBits().call() == bits


# ---------------------------------------------------------------- distances


@pytest.mark.parametrize("metric", ["l1", "squared_l2"])
def test_distances_equal_the_reference_on_both_paths(
    isolated: Chain, deployed: dict[str, Contract], clients: list[str], relayer: str, metric: str
) -> None:
    """Distances from a random model of three segments, measured on submit (direct, and its
    running figure between transactions) and in the close (relayed, segment by segment)."""
    # Prepare
    contract = deployed[f"{metric}_random"]
    model = np.array(model_values(contract), dtype=np.int64)
    rng = np.random.default_rng(8)
    direct, relayed = (random_vector(rng, bound=MAX_ABS) for _ in range(2))
    # Execute / Assert: direct, segment 0, then the rest
    submit_segments(isolated, contract, clients[0], direct, [0])
    assert read_progress(contract, clients[0]).distance_so_far == distance(
        model[:16], direct[:16], metric
    )
    [receipt] = submit(isolated, contract, clients[0], direct, start_segment=1)
    assert events(contract, "SubmissionAccepted", receipt)[0]["distance"] == distance(
        model, direct, metric
    )
    # relayed: measured as its segments close
    relay(isolated, contract, relayer, [signed(isolated, contract, clients[1], relayed)])
    updates = {clients[0]: direct, clients[1]: relayed}
    prefixes = []
    for segment in range(3):
        receipt = close_segment(isolated, contract, relayer, updates, segment)
        if segment < 2:
            prefixes.append(read_progress(contract, clients[1]).distance_so_far)
    assert prefixes == [distance(model[: 16 * s], relayed[: 16 * s], metric) for s in (1, 2)]
    [accepted] = events(contract, "SubmissionAccepted", receipt)
    assert (accepted["client"], accepted["distance"]) == (
        clients[1],
        distance(model, relayed, metric),
    )
    assert model_values(contract) == integer_average([direct, relayed]).tolist()


@pytest.mark.parametrize(
    ("metric", "per_weight"), [("l1", 2 * MAX_ABS), ("squared_l2", (2 * MAX_ABS) ** 2)]
)
def test_largest_lane_difference_distances(
    isolated: Chain,
    deployed: dict[str, Contract],
    clients: list[str],
    relayer: str,
    metric: str,
    per_weight: int,
) -> None:
    """From a model at -maxAbs everywhere to an update at +maxAbs: the widest lane difference."""
    contract = deployed[f"{metric}_low"]
    top = np.full(SMALL_WEIGHTS, MAX_ABS, dtype=np.int64)
    expected = SMALL_WEIGHTS * per_weight
    assert distance(np.full(SMALL_WEIGHTS, -MAX_ABS), top, metric) == expected
    [receipt] = submit(isolated, contract, clients[0], top)
    assert events(contract, "SubmissionAccepted", receipt)[0]["distance"] == expected
    relay(isolated, contract, relayer, [signed(isolated, contract, clients[1], top)])
    receipts = close_round(isolated, contract, relayer, {clients[0]: top, clients[1]: top})
    assert events(contract, "SubmissionAccepted", receipts[-1])[0]["distance"] == expected
    assert model_values(contract) == top.tolist()


# ---------------------------------------------------------------- the direction guard


def guarded(
    chain: Chain, owner: str, bps: int, words_per_segment: int, initial: np.ndarray
) -> Contract:
    """A coordinator with the direction guard at ``bps``, target 3, minimum 1."""
    params = small_params(
        min_alignment_bps=bps,
        words_per_segment=words_per_segment,
        target_submissions=3,
        min_submissions=1,
    )
    return deploy(chain, params, initial_words=pack(initial), pool_wei=10**6, deployer=owner)


@pytest.mark.parametrize("path", ["direct", "relayed"])
def test_round_one_has_no_step_so_every_update_passes_the_guard(
    isolated: Chain, owner: str, clients: list[str], relayer: str, path: str
) -> None:
    """``minAlignment``'s documentation: "Round 1 has no step yet, so every update passes"."""
    # Prepare
    initial = np.zeros(SMALL_WEIGHTS, dtype=np.int64)
    contract = guarded(isolated, owner, 0, 3, initial)
    update = np.arange(SMALL_WEIGHTS, dtype=np.int64) - 10
    # Execute
    if path == "direct":
        [receipt] = submit(isolated, contract, clients[0], update)
    else:
        relay(isolated, contract, relayer, [signed(isolated, contract, clients[0], update)])
        mine_at(isolated, deadline_of(contract))
        [receipt] = close_round(isolated, contract, relayer, {clients[0]: update})
    # Assert
    [accepted] = events(contract, "SubmissionAccepted", receipt)
    assert accepted["counted"] is True, accepted
    assert accepted["reward"] > 0


def closed_first_round(
    chain: Chain,
    contract: Contract,
    clients: Sequence[str],
    relayer: str,
    vectors: Sequence[np.ndarray],
) -> None:
    """Round 1 of a guarded coordinator: ``vectors`` submitted directly and closed."""
    for client, vector in zip(clients, vectors, strict=False):
        submit(chain, contract, client, vector)
    close_round(chain, contract, relayer, dict(zip(clients, vectors, strict=False)))
    assert contract.functions.modelVersion().call() == 1, "round 1 did not close"


@pytest.mark.parametrize(
    ("path", "words_per_segment"),
    [("direct", 3), ("direct", 1), ("relayed", 3)],
    ids=["direct-one-segment", "direct-three-segments", "relayed"],
)
@pytest.mark.parametrize("bps", [0, 5000])
def test_guard_after_a_step_follows_the_reference(
    isolated: Chain,
    owner: str,
    clients: list[str],
    relayer: str,
    path: str,
    words_per_segment: int,
    bps: int,
) -> None:
    # Prepare: round 1 moves the model from M0 to M1 (weights 0..3 stay put)
    rng = np.random.default_rng(30 + bps)
    m0 = random_vector(rng, bound=1000)
    contract = guarded(isolated, owner, bps, words_per_segment, m0)
    first = [m0 + rng.integers(-200, 201, size=SMALL_WEIGHTS) for _ in range(3)]
    for vector in first:
        vector[:4] = m0[:4]
    closed_first_round(isolated, contract, clients[:3], relayer, first)
    m1 = integer_average(first)
    assert model_values(contract) == m1.tolist()
    step = step_signs(m0, m1)
    # round 2: along the step, against it, sideways (only weights the step left alone), noise
    candidates = [
        m1 + 40 * step,
        m1 - 40 * step,
        np.where(step == 0, m1 + 25, m1),
        m1 + rng.integers(-60, 61, size=SMALL_WEIGHTS),
    ]
    expected = [directional_l1(m1, c, step) for c in candidates]
    verdicts = [aligned(a, b, bps) for a, b in expected]
    assert verdicts[0], "moving along the step passes"
    assert not verdicts[1], "moving against the step fails"
    # Execute: the first three, one per client (target 3)
    chosen = list(zip(clients[3:6], candidates, expected, verdicts, strict=False))
    receipts: list[TxReceipt] = []
    if path == "direct":
        for client, vector, _, _ in chosen:
            receipts.extend(submit(isolated, contract, client, vector, round_number=2))
    else:
        batch = [signed(isolated, contract, c, v, round_number=2) for c, v, _, _ in chosen]
        relay(isolated, contract, relayer, batch, round_number=2)
    kept = [v for _, v, _, ok in chosen if ok]
    if path == "direct" and len(kept) < 3:  # a direct update left out holds no place
        mine_at(isolated, deadline_of(contract))
    entries = {c: v for c, v, _, ok in chosen if ok or path == "relayed"}
    receipts.extend(close_round(isolated, contract, relayer, entries, round_number=2))
    # Assert: each update's split and verdict, its pay, and the average of the aligned ones
    accepted = {e["client"]: e for r in receipts for e in events(contract, "SubmissionAccepted", r)}
    for client, _, (along, against), ok in chosen:
        event = accepted[client]
        assert (event["along"], event["against"], event["counted"]) == (along, against, ok), client
        assert (event["reward"] > 0) == ok
    assert model_values(contract) == integer_average(kept).tolist()
    assert contract.functions.modelHash().call() == vector_hash(
        pack(integer_average(kept)), words_per_segment
    )


def test_a_close_must_carry_the_direct_words_again(
    isolated: Chain, deployed: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    """A close carries direct words again: a close without them reverts (they are not in storage)."""
    contract = deployed["one40"]
    submit(isolated, contract, clients[0], np.ones(40, dtype=np.int64))
    mine_at(isolated, deadline_of(contract))
    with reverts("CoordinatorWrongLength", expected=3, given=0):
        send(isolated, close_function(contract, round_number=1, segment=0, words=[]), relayer)
