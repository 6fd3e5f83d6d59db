"""Transaction limits: the constructor refuses a configuration whose largest close would not fit a
transaction, ``fl_client.limits`` mirrors that check exactly (the planner's segment size deploys,
one word more does not), the close's gas bound holds for the heaviest closes measured, the largest
SSTORE2 chunk deploys, ``send`` refuses calldata above 128 KiB before sending, and a
101,770-weight model (an MLP 784 -> 128 -> 10) runs full rounds within every limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest
from hexbytes import HexBytes
from web3.contract import Contract
from web3.types import TxReceipt

from fl_client.aggregation import integer_average, trimmed_average
from fl_client.chain import (
    MAX_CALLDATA_BYTES,
    Chain,
    DeployParams,
    close_function,
    deploy,
    read_model_words,
    send,
    submit_calls,
)
from fl_client.codec import encode, pack, unpack, vector_hash, words_for
from fl_client.config import ALIGNMENT_OFF, load_config
from fl_client.errors import ConfigError, TransactionTooLargeError
from fl_client.limits import MAX_CALLDATA_BYTES as LIMITS_MAX_CALLDATA_BYTES
from fl_client.limits import (
    MAX_CHUNK_WORDS,
    PLAIN_CLOSE,
    CloseWork,
    accumulator_bits,
    close_cost,
    fits,
    masked_close_cost,
    plan_words_per_segment,
)
from fl_client.model import build_model, get_flat_parameters
from tests.conftest import events, relay, signed, small_params, submit
from tests.pipeline_helpers import (
    ZERO_WORD,
    close_round,
    constructor_outcome,
    model_values,
    module_deployments,
    random_vector,
    reverts,
    segment_words,
)
from tests.secagg_helpers import RECOVERY_SECONDS, SETUP_SECONDS, Cohort, finish_phase

TX_GAS_CAP = 16_777_216  # EIP-7825
SUBMIT_HEAD_BYTES = 4 + 5 * 32  # selector, round, sample count, first segment, offset, length


@dataclass(frozen=True)
class Limits:
    """A configuration of the transaction limits."""

    target: int
    aggregation: str = "mean"
    max_sample_count: int = 1000
    guard: bool = False
    gas_cap: int = TX_GAS_CAP
    mode: str = "plain"
    work: CloseWork = PLAIN_CLOSE  # what the close does besides averaging

    @property
    def max_weight(self) -> int:
        return self.max_sample_count if self.aggregation == "sample_weighted" else 1

    def largest_segment(self) -> int:
        """The largest segment that fits (from the mirror), by search."""
        sizes = [
            w
            for w in range(1, MAX_CHUNK_WORDS + 2)
            if fits(
                words_per_segment=w,
                target=self.target,
                max_weight=self.max_weight,
                guard=self.guard,
                gas_cap=self.gas_cap,
                work=self.work,
            )
        ]
        assert sizes == list(range(1, len(sizes) + 1)), "the sizes that fit are not a prefix"
        return sizes[-1]

    def params(self, num_weights: int, words_per_segment: int, **changes: Any) -> DeployParams:
        extra: dict[str, Any] = {}
        if self.mode == "commit_reveal":
            extra = {"reveal_duration": 60, "commit_bond": 1}
        if self.work.squared_l2:
            extra["distance"] = "squared_l2"
        if self.work.progress:
            extra["reward_reference"] = "progress"
        elif self.work.aggregate:
            extra["reward_reference"] = "aggregate"
        if self.work.step:
            extra["max_step"] = 40
        if self.work.drift:
            extra.update(max_drift=80, drift_window=1)
        if self.work.trim:
            extra["trim_each"] = self.work.trim
        base: dict[str, Any] = {
            "num_weights": num_weights,
            "words_per_segment": words_per_segment,
            "target_submissions": self.target,
            "min_submissions": 1,
            "aggregation": self.aggregation,
            "max_sample_count": self.max_sample_count,
            "min_alignment_bps": 0 if self.guard else ALIGNMENT_OFF,
            "tx_gas_cap": self.gas_cap,
            "mode": self.mode,
        }
        return small_params(**{**base, **extra, **changes})  # changes win


LIMIT_CASES = {
    "t10-mean": Limits(10),
    "t10-weighted-guard": Limits(10, "sample_weighted", 65_535, guard=True),
    "t3-chunk": Limits(3),
    "t3-chunk-guard": Limits(3, guard=True),
    "t5-gas-3M": Limits(5, gas_cap=3_000_000),
    "t20-weighted-u32-guard-8M": Limits(
        20, "sample_weighted", 2**32 - 1, guard=True, gas_cap=8_000_000
    ),
    "t4-commit-reveal-2.5M": Limits(4, gas_cap=2_500_000, mode="commit_reveal"),
    "t120-bytes": Limits(120),
    "t10-squared-l2-aggregate": Limits(10, work=CloseWork(squared_l2=True, aggregate=True)),
    "t6-step-drift-4M": Limits(6, gas_cap=4_000_000, work=CloseWork(step=True, drift=True)),
    "t5-progress-squared-l2": Limits(
        5, work=CloseWork(squared_l2=True, aggregate=True, progress=True)
    ),
    "t5-trim-2": Limits(5, work=CloseWork(trim=2)),
    "t10-trim-4-aggregate-3M": Limits(
        10, gas_cap=3_000_000, work=CloseWork(trim=4, aggregate=True)
    ),
}


def expected_limit(limits: Limits, words_per_segment: int) -> tuple[str, int, int]:
    """The limit the contract names for a segment size that does not fit: (name, needed, allowed),
    checked in the constructor's order."""
    cost = close_cost(
        words_per_segment=words_per_segment,
        target=limits.target,
        max_weight=limits.max_weight,
        guard=limits.guard,
        work=limits.work,
    )
    if cost.chunk_words > MAX_CHUNK_WORDS:
        return "chunkWords", cost.chunk_words, MAX_CHUNK_WORDS
    if cost.calldata_bytes > MAX_CALLDATA_BYTES:
        return "closeSegmentBytes", cost.calldata_bytes, MAX_CALLDATA_BYTES
    return "closeSegmentGas", cost.gas, limits.gas_cap


# ---------------------------------------------------------------- the planner mirrors the constructor


def test_the_mirror_uses_the_contracts_constants(isolated: Chain, owner: str) -> None:
    contract = deploy(isolated, small_params(), deployer=owner)
    assert (
        contract.functions.MAX_CALLDATA_BYTES().call()
        == LIMITS_MAX_CALLDATA_BYTES
        == MAX_CALLDATA_BYTES
    )
    assert contract.functions.MAX_CHUNK_WORDS().call() == MAX_CHUNK_WORDS
    assert [accumulator_bits(n) for n in (1, 65_535, 65_536, 2**48 - 1, 2**48)] == [
        32,
        32,
        64,
        64,
        128,
    ]


@pytest.mark.parametrize("case", sorted(LIMIT_CASES))
def test_planned_segment_deploys_and_one_word_more_does_not(
    isolated: Chain, owner: str, case: str
) -> None:
    # Prepare: a model of three segments of the largest size that fits
    limits = LIMIT_CASES[case]
    largest = limits.largest_segment()
    num_weights = 16 * largest * 3
    planned = plan_words_per_segment(
        num_weights,
        target=limits.target,
        max_weight=limits.max_weight,
        guard=limits.guard,
        gas_cap=limits.gas_cap,
        work=limits.work,
    )
    # Assert: the planner picks it, the constructor takes it, and refuses one word more
    assert planned == largest
    assert constructor_outcome(isolated, limits.params(num_weights, planned), sender=owner) is None
    error = constructor_outcome(isolated, limits.params(num_weights, planned + 1), sender=owner)
    assert error is not None, f"{case}: {planned + 1} words per segment were accepted"
    name, needed, allowed = expected_limit(limits, planned + 1)
    assert (error.name, error.error_args) == (
        "CoordinatorExceedsTransactionLimit",
        {"limit": name, "needed": needed, "allowed": allowed},
    )
    print(f"{case}: {planned} words per segment; one more breaks {name} ({needed:,} > {allowed:,})")


@pytest.mark.parametrize(
    ("limits", "words_per_segment", "name"),
    [
        (Limits(3), MAX_CHUNK_WORDS + 1, "chunkWords"),
        (Limits(3, guard=True), 700, "chunkWords"),  # 700 words and 88 of directions
        (Limits(10), 700, "closeSegmentBytes"),
        (Limits(3, gas_cap=1_000_000), 200, "closeSegmentGas"),
    ],
    ids=["chunk", "chunk-with-directions", "bytes", "gas"],
)
def test_each_limit_is_named_with_its_figures(
    isolated: Chain, owner: str, limits: Limits, words_per_segment: int, name: str
) -> None:
    expected = expected_limit(limits, words_per_segment)
    assert expected[0] == name
    with reverts(
        "CoordinatorExceedsTransactionLimit", limit=name, needed=expected[1], allowed=expected[2]
    ):
        deploy(isolated, limits.params(16 * 800, words_per_segment), deployer=owner)


def test_a_small_model_is_one_segment_whatever_the_size_asked(isolated: Chain, owner: str) -> None:
    """The segment size is capped at the model's words: a large configured size is no error."""
    assert (
        constructor_outcome(isolated, small_params(words_per_segment=10**6), sender=owner) is None
    )
    assert plan_words_per_segment(40, target=3) == 3
    assert plan_words_per_segment(16 * 1_000, target=3, limit=100) == 100


def test_the_planner_evens_out_the_segments() -> None:
    # 1,000 words where 767 fit: two segments of 500, not 767 + 233
    assert plan_words_per_segment(16 * 1_000, target=3) == 500
    assert plan_words_per_segment(16 * 1_000 - 15, target=3) == 500


@pytest.mark.parametrize(
    "changes",
    [
        {"target": 5_000},
        {"target": 3, "gas_cap": 100_000},
        {"target": 2_100, "max_weight": 2**32 - 1},
    ],
    ids=["target-too-large", "gas-cap-too-small", "bytes"],
)
def test_the_planner_refuses_a_configuration_that_nothing_fits(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="cannot be closed in one transaction"):
        plan_words_per_segment(7_850, **changes)


def test_deploy_params_from_config_plan_the_segments() -> None:
    fl = load_config().fl
    params = DeployParams.from_config(fl, num_weights=101_770, clients=10)
    assert params.target_submissions == 10
    assert params.words_per_segment == plan_words_per_segment(101_770, target=10)
    with pytest.raises(ConfigError):
        DeployParams.from_config(fl, num_weights=7_850, clients=5_000)


def test_deploy_params_plan_for_what_the_close_does() -> None:
    """Squared-L2 distances, the aggregate reward reference and the step bounds make a close
    heavier, so the planned segments are smaller (and the constructor's bound accounts for them)."""
    fl = load_config().fl
    plain = DeployParams.from_config(fl, num_weights=101_770, clients=10).words_per_segment
    heavier = replace(
        fl,
        contract=replace(
            fl.contract,
            distance="squared_l2",
            reward_reference="aggregate",
            max_step=40,
            max_drift=80,
            drift_window=2,
        ),
    )
    planned = DeployParams.from_config(heavier, num_weights=101_770, clients=10).words_per_segment
    work = CloseWork(squared_l2=True, aggregate=True, step=True, drift=True)
    assert planned == plan_words_per_segment(101_770, target=10, work=work) < plain


# ---------------------------------------------------------------- the close's gas bound holds


WEIGHTED_U32 = Limits(4, "sample_weighted", 2**32 - 1, gas_cap=2_000_000)
MAINNET_U32 = replace(WEIGHTED_U32, gas_cap=TX_GAS_CAP)  # 64-bit accumulator lanes
EVERY_UPDATE_PASSES = -9_999  # minAlignmentBps: the guard splits every update, and sums them all
MEASURED: dict[str, tuple[Limits, dict[str, Any]]] = {
    # the planned segment of each, a full round of relayed updates (each measured in the close)
    "mean-3M": (Limits(5, gas_cap=3_000_000), {}),
    "weighted-u32": (WEIGHTED_U32, {}),
    "squared-l2": (replace(WEIGHTED_U32, work=CloseWork(squared_l2=True)), {}),
    "aggregate-reward": (replace(WEIGHTED_U32, work=CloseWork(aggregate=True)), {}),
    "aggregate-squared-l2": (
        replace(WEIGHTED_U32, work=CloseWork(squared_l2=True, aggregate=True)),
        {},
    ),
    "share-cap": (WEIGHTED_U32, {"max_share_bps": 5_000}),
    "step-bound": (replace(WEIGHTED_U32, work=CloseWork(step=True)), {}),
    "drift-bound": (replace(WEIGHTED_U32, work=CloseWork(drift=True)), {}),
    "step-and-drift": (replace(WEIGHTED_U32, work=CloseWork(step=True, drift=True)), {}),
    "guard-3M": (Limits(4, gas_cap=3_000_000, guard=True), {}),
    "guard-weighted-u32": (replace(WEIGHTED_U32, guard=True), {}),
    # Mainnet's cap, where segments are long enough for the per-word terms to show. Under the
    # earlier constants (CLOSE_ACC_WORD_GAS 60, no term for 64-bit lanes nor for the guard's
    # split): 4 x 767 words used 12,884,060 gas, bound 10,917,981; 2 x 679 words of squared L2
    # needed more than the 16,777,216 cap (the round could never close); the guard's 10 x 404
    # words used 13,863,725 gas, bound 9,512,584.
    "weighted-u32-16M": (MAINNET_U32, {}),
    "squared-l2-aggregate-weighted-16M": (
        Limits(2, "sample_weighted", 65_535, work=CloseWork(squared_l2=True, aggregate=True)),
        {},
    ),
    "guard-weighted-u32-16M": (replace(MAINNET_U32, target=10, guard=True), {}),
    "step-and-drift-weighted-u32-16M": (
        replace(MAINNET_U32, target=1, work=CloseWork(step=True, drift=True)),
        {},
    ),
}
SLOW = {case for case in MEASURED if case.endswith("-16M")}


def heaviest_close(
    chain: Chain,
    owner: str,
    clients: list[str],
    relayer: str,
    limits: Limits,
    changes: dict[str, Any],
) -> tuple[Contract, list[np.ndarray], TxReceipt, int]:
    """One segment of the largest size, full rounds of relayed random updates over the full
    16-bit range, the last one closed with the gas the constructor's bound allows (no more):
    the coordinator, that round's updates, its close's receipt and the bound. With the direction
    guard, or a step or drift bound, the close of round 2 (the guard splits every distance along
    the last step from then on; the drift bound reads its checkpoint)."""
    per_segment = limits.largest_segment()
    if limits.guard:
        changes = {"min_alignment_bps": EVERY_UPDATE_PASSES, **changes}
    params = limits.params(16 * per_segment, per_segment, max_abs_weight=2**14 - 1, **changes)
    contract = deploy(chain, params, pool_wei=10**18, deployer=owner)
    bound = close_cost(
        words_per_segment=per_segment,
        target=limits.target,
        max_weight=limits.max_weight,
        guard=limits.guard,
        work=limits.work,
    ).gas
    rng = np.random.default_rng(50)
    rounds = 2 if limits.guard or limits.work.step or limits.work.drift else 1
    for round_number in range(1, rounds + 1):
        vectors = [
            rng.integers(-(2**14) + 1, 2**14, size=16 * per_segment) for _ in range(limits.target)
        ]
        counts = [int(c) for c in rng.integers(1, limits.max_sample_count + 1, size=limits.target)]
        updates = dict(zip(clients, vectors, strict=False))
        batch = [
            signed(chain, contract, c, v, sample_count=n, round_number=round_number)
            for (c, v), n in zip(updates.items(), counts, strict=True)
        ]
        for start in range(0, len(batch), 5):
            relay(chain, contract, relayer, batch[start : start + 5], round_number=round_number)
        if round_number < rounds:
            close_round(chain, contract, relayer, updates, round_number=round_number)
    close = close_function(
        contract,
        round_number=rounds,
        segment=0,
        words=segment_words(contract, updates, 0),
        omitted=(),
    )
    tx_hash = close.transact({"from": relayer, "gas": bound})
    receipt = chain.w3.eth.wait_for_transaction_receipt(tx_hash)
    return contract, vectors, receipt, bound


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(case, marks=pytest.mark.slow) if case in SLOW else case
        for case in sorted(MEASURED)
    ],
)
def test_the_heaviest_close_stays_under_the_constructors_bound(
    isolated: Chain, owner: str, relayer: str, case: str
) -> None:
    """The largest close the constructor lets through fits the gas its bound counts (sent with
    that much gas, it succeeds), and the bound the cap."""
    # Prepare / Execute
    limits, changes = MEASURED[case]
    accounts = [a for a in isolated.accounts if a not in (owner, relayer)]
    contract, vectors, receipt, bound = heaviest_close(
        isolated, owner, accounts, relayer, limits, changes
    )
    # Assert
    used = int(receipt["gasUsed"])
    print(
        f"{case}: close of {limits.target} x {len(vectors[0]) // 16} words used {used:,} gas, "
        f"bound {bound:,} ({used / bound:.3f})"
    )
    assert receipt["status"] == 1, f"{case}: the close ran out of the bound's {bound:,} gas"
    assert events(contract, "RoundClosed", receipt)
    assert used <= bound <= limits.gas_cap


# The trimmed mean (Mean only) and RewardReference Progress (measured as Aggregate, and the
# step besides, per model word).
PROGRESS = CloseWork(aggregate=True, progress=True)
MEASURED_ROBUST: dict[str, tuple[Limits, dict[str, Any]]] = {
    "trim-1-t3": (Limits(3, gas_cap=2_000_000, work=CloseWork(trim=1)), {}),
    "trim-1-t10": (Limits(10, gas_cap=3_000_000, work=CloseWork(trim=1)), {}),
    "trim-2-t5": (Limits(5, gas_cap=3_000_000, work=CloseWork(trim=2)), {}),
    "trim-4-t10": (Limits(10, gas_cap=3_000_000, work=CloseWork(trim=4)), {}),
    "trim-4-t9-guard": (Limits(9, gas_cap=3_000_000, guard=True, work=CloseWork(trim=4)), {}),
    "trim-2-progress-squared-l2-t5": (
        Limits(5, gas_cap=3_000_000, work=replace(PROGRESS, trim=2, squared_l2=True)),
        {},
    ),
    "progress-weighted-u32": (replace(WEIGHTED_U32, work=PROGRESS), {}),
    "progress-squared-l2-weighted-u32": (
        replace(WEIGHTED_U32, work=replace(PROGRESS, squared_l2=True)),
        {},
    ),
    "progress-t1": (Limits(1, gas_cap=2_000_000, work=PROGRESS), {}),
    "progress-t5": (Limits(5, gas_cap=3_000_000, work=PROGRESS), {}),
    "progress-squared-l2-t1": (
        Limits(1, gas_cap=2_000_000, work=replace(PROGRESS, squared_l2=True)),
        {},
    ),
    # 18 updates (every account but the owner and the relayer) under mainnet's cap, which binds
    # (92 to 155 words a segment; 224 would fill the calldata)
    "trim-3-t18-guard": (Limits(18, guard=True, work=CloseWork(trim=3)), {}),
    "trim-8-t18": (Limits(18, work=CloseWork(trim=8)), {}),
}


@pytest.mark.parametrize("case", sorted(MEASURED_ROBUST))
def test_the_heaviest_trimmed_and_progress_closes_stay_under_the_constructors_bound(
    isolated: Chain, owner: str, relayer: str, case: str
) -> None:
    """The trimmed mean's passes (``TRIM_WORD_GAS`` per update word and value left out at each
    end, ``trimEach`` up to its largest, ``(target - 1) // 2``) and Progress's measures, in the
    largest close the constructor lets through; a trimmed model is the reference's exactly."""
    # Prepare / Execute
    limits, changes = MEASURED_ROBUST[case]
    accounts = [a for a in isolated.accounts if a not in (owner, relayer)]
    contract, vectors, receipt, bound = heaviest_close(
        isolated, owner, accounts, relayer, limits, changes
    )
    # Assert
    used = int(receipt["gasUsed"])
    print(
        f"{case}: close of {limits.target} x {len(vectors[0]) // 16} words used {used:,} gas, "
        f"bound {bound:,} ({used / bound:.3f})"
    )
    assert receipt["status"] == 1, f"{case}: the close ran out of the bound's {bound:,} gas"
    assert events(contract, "RoundClosed", receipt)
    assert used <= bound <= limits.gas_cap
    assert int(contract.functions.trimEach().call()) == limits.work.trim
    if limits.work.trim:
        assert model_values(contract) == trimmed_average(vectors, limits.work.trim).tolist()


@pytest.mark.parametrize("guard", [False, True], ids=["guard-off", "guard-on"])
def test_the_largest_model_chunk_deploys(isolated: Chain, owner: str, guard: bool) -> None:
    """767 words of chunk (the words, and their direction entries with the guard on): 24,545
    bytes of code, under EIP-170."""
    limits = Limits(1, guard=guard)
    per_segment = limits.largest_segment()
    assert per_segment + (-(-per_segment // 8) if guard else 0) == MAX_CHUNK_WORDS
    contract = deploy(isolated, limits.params(16 * per_segment, per_segment), deployer=owner)
    code = isolated.w3.eth.get_code(contract.functions.modelChunk(0).call())
    assert len(code) == 1 + 32 * MAX_CHUNK_WORDS


def test_a_close_writes_the_largest_model_chunk(
    isolated: Chain, owner: str, clients: list[str], relayer: str
) -> None:
    limits = Limits(1)
    per_segment = limits.largest_segment()
    contract = deploy(
        isolated, limits.params(16 * per_segment, per_segment), pool_wei=10**6, deployer=owner
    )
    values = np.arange(16 * per_segment, dtype=np.int64) % 601 - 300
    submit(isolated, contract, clients[0], values)
    close_round(isolated, contract, relayer, {clients[0]: values})
    assert model_values(contract) == values.tolist()
    assert (
        len(isolated.w3.eth.get_code(contract.functions.modelChunk(0).call()))
        == 1 + 32 * MAX_CHUNK_WORDS
    )


# ---------------------------------------------------------------- the client refuses oversized calldata


@pytest.fixture(scope="module")
def deployed(chain: Chain) -> Iterator[dict[str, Contract]]:
    """A small coordinator, deployed once for the module."""
    yield from module_deployments(chain, {"default": {}})


def test_send_refuses_calldata_above_the_limit_before_sending(
    isolated: Chain, deployed: dict[str, Contract], client_a: str
) -> None:
    # Prepare: the most words a submit may carry, and one more
    contract = deployed["default"]
    fitting = (MAX_CALLDATA_BYTES - SUBMIT_HEAD_BYTES) // 32
    small, large = (
        contract.functions.submit(1, 1, 0, [ZERO_WORD] * n) for n in (fitting, fitting + 1)
    )
    assert (
        len(bytes.fromhex(contract.encode_abi("submit", [1, 1, 0, [ZERO_WORD] * fitting])[2:]))
        <= MAX_CALLDATA_BYTES
    )
    assert (
        len(
            bytes.fromhex(contract.encode_abi("submit", [1, 1, 0, [ZERO_WORD] * (fitting + 1)])[2:])
        )
        > MAX_CALLDATA_BYTES
    )
    block = isolated.w3.eth.block_number
    sent = len(isolated.gas_used)
    # Execute / Assert: the fitting one reaches the contract (which finds the length wrong)
    with reverts("CoordinatorWrongLength", expected=3, given=fitting):
        send(isolated, small, client_a)
    with pytest.raises(TransactionTooLargeError, match=f"{MAX_CALLDATA_BYTES:,}"):
        send(isolated, large, client_a)
    assert isolated.w3.eth.block_number == block
    assert len(isolated.gas_used) == sent


def test_submit_calls_split_a_large_update_under_the_limit(
    deployed: dict[str, Contract], client_a: str
) -> None:
    contract = deployed["default"]
    words = [ZERO_WORD] * 10_000
    calls = submit_calls(
        contract, client_a, round_number=1, sample_count=1, words=words, words_per_segment=400
    )
    sizes = [
        len(bytes.fromhex(contract.encode_abi("submit", call.function.args)[2:])) for call in calls
    ]
    assert all(size <= MAX_CALLDATA_BYTES for size in sizes), sizes
    assert sum(len(call.function.args[3]) for call in calls) == 10_000
    assert [call.function.args[2] for call in calls] == [0, 10, 20][: len(calls)]


# ---------------------------------------------------------------- a 101,770-weight model


def transactions_since(chain: Chain, first_block: int) -> list[tuple[int, int, str]]:
    """(gas used, calldata bytes, label) of every transaction mined from ``first_block`` on."""
    found = []
    for number in range(first_block, chain.w3.eth.block_number + 1):
        block = chain.w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            assert not isinstance(tx, bytes)
            receipt = chain.w3.eth.get_transaction_receipt(tx["hash"])
            found.append(
                (
                    int(receipt["gasUsed"]),
                    len(HexBytes(tx.get("input", tx.get("data", b"")))),
                    f"block {number}",
                )
            )
    return found


def run_round(
    chain: Chain,
    contract: Contract,
    clients: list[str],
    relayer: str,
    vectors: list[np.ndarray],
    *,
    round_number: int,
    relayed: int,
) -> list[TxReceipt]:
    """Submit (the first ones directly, the last ``relayed`` through the relayer) and close."""
    receipts: list[TxReceipt] = []
    direct = len(vectors) - relayed
    for client, vector in zip(clients[:direct], vectors[:direct], strict=True):
        receipts.extend(submit(chain, contract, client, vector, round_number=round_number))
    batch = [
        signed(chain, contract, c, v, round_number=round_number)
        for c, v in zip(clients[direct:], vectors[direct:], strict=True)
    ]
    if batch:
        receipts.append(relay(chain, contract, relayer, batch, round_number=round_number))
    updates = dict(zip(clients, vectors, strict=True))
    receipts.extend(close_round(chain, contract, relayer, updates, round_number=round_number))
    return receipts


@pytest.mark.slow
def test_a_101770_weight_model_runs_a_full_round_within_every_limit(
    isolated: Chain, owner: str, clients: list[str], relayer: str
) -> None:
    # Prepare: the MLP 784 -> 128 -> 10, quantized, and the deployment the configuration plans
    fl = load_config().fl
    model = build_model(784, 10, seed=0, hidden=(128,))
    flat = get_flat_parameters(model)
    assert flat.size == 101_770
    fmt = fl.fixed_point
    initial_words, quantized = encode(flat, fmt)
    params = DeployParams.from_config(fl, num_weights=flat.size, clients=10)
    params = replace(params, min_submissions=params.target_submissions)
    assert params.target_submissions == 10
    first_block = isolated.w3.eth.block_number + 1
    contract = deploy(
        isolated, params, initial_words=initial_words, pool_wei=10**18, deployer=owner
    )
    per_segment = int(contract.functions.wordsPerSegment().call())
    assert contract.functions.globalModel().call() == initial_words
    assert contract.functions.modelHash().call() == vector_hash(initial_words, per_segment)
    rng = np.random.default_rng(60)
    bound = fmt.max_abs
    current = quantized.values
    # Execute: a full round of 6 direct and 4 relayed updates (the heaviest close: it measures
    # the relayed ones); tests/test_large_model.py runs this model for two rounds on anvil.
    vectors = [
        np.clip(current + rng.integers(-40, 41, size=flat.size), -bound, bound) for _ in clients
    ]
    run_round(isolated, contract, clients, relayer, vectors, round_number=1, relayed=4)
    # Assert: the exact mean, written and hashed segment by segment
    expected = integer_average(vectors)
    words = read_model_words(contract)
    assert unpack(words, flat.size).tolist() == expected.tolist()
    assert words == pack(expected)
    assert contract.functions.modelHash().call() == vector_hash(words, per_segment)
    assert contract.functions.modelVersion().call() == 1
    segments = int(contract.functions.numSegments().call())
    assert segments >= 16
    transactions = transactions_since(isolated, first_block)
    # Each direct update takes at least two transactions (its words exceed one's calldata), the
    # relayed ones one batch registration, and the close one a segment.
    assert len(transactions) >= 6 * 2 + 1 + segments
    heaviest = max(transactions)
    largest = max(transactions, key=lambda t: t[1])
    assert heaviest[0] < TX_GAS_CAP, heaviest
    assert largest[1] <= MAX_CALLDATA_BYTES, largest
    print(
        f"101,770 weights ({words_for(flat.size):,} words, {per_segment} per segment): "
        f"{len(transactions)} transactions, the heaviest {heaviest[0]:,} gas, "
        f"the largest {largest[1]:,} bytes of calldata"
    )


# ---------------------------------------------------------------- the masked close's gas bound


@pytest.mark.slow
@pytest.mark.parametrize(
    ("members", "max_dropouts", "dropped"),
    [(5, 2, (1, 4))],
    ids=["5-members-2-dropped"],
)
def test_the_heaviest_masked_close_stays_under_the_constructors_bound(
    isolated: Chain,
    owner: str,
    clients: list[str],
    relayer: str,
    members: int,
    max_dropouts: int,
    dropped: tuple[int, ...],
) -> None:
    # Prepare: MNIST's 7,850 weights in the segments the planner picks for a masked deployment
    # under mainnet's cap, and a round with the most dropouts the deployment recovers from
    fl = load_config().fl
    fl = replace(
        fl,
        contract=replace(
            fl.contract,
            mode="secure_aggregation",
            max_dropouts=max_dropouts,
            min_submissions=members - max_dropouts,
            setup_duration=SETUP_SECONDS,
            recovery_duration=RECOVERY_SECONDS,
        ),
    )
    params = DeployParams.from_config(fl, num_weights=7_850, clients=members)
    contract = deploy(isolated, params, pool_wei=10**18, deployer=owner)
    accounts = clients[:members]
    rng = np.random.default_rng(members)
    vectors = {i: random_vector(rng, size=7_850) for i in range(members)}
    cohort = Cohort.of(isolated, contract, accounts)
    cohort.set_updates(vectors, round_number=1)
    cohort.act()  # keys
    cohort.act()  # shares
    survivors = [i for i in range(members) if i not in dropped]
    cohort.act(survivors)  # masked updates
    finish_phase(isolated, contract, relayer)  # Recover
    cohort.act(survivors)  # the dropped members' shares
    # Execute
    receipts = cohort.close(relayer)
    # Assert: every close within the bound the constructor checked, the bound within the cap
    lane_bits = int(contract.functions.laneBits().call())
    per_segment = int(contract.functions.wordsPerSegment().call())
    bound = masked_close_cost(
        words_per_segment=per_segment,
        target=members,
        lane_bits=lane_bits,
        max_dropouts=max_dropouts,
    ).gas
    closes = [r for r in receipts if events(contract, "SegmentClosed", r)]
    assert len(closes) == int(contract.functions.numSegments().call())
    heaviest = max(int(r["gasUsed"]) for r in closes)
    assert heaviest <= bound <= TX_GAS_CAP, f"the close used {heaviest:,} gas, bound {bound:,}"
    assert model_values(contract) == integer_average([vectors[i] for i in survivors]).tolist()
    print(
        f"{members} members, {len(dropped)} dropped: masked close of {per_segment} words "
        f"({lane_bits}-bit lanes) used {heaviest:,} gas, bound {bound:,}"
    )
