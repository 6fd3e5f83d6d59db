"""Differential privacy (clipping, noise, accountant) and secure aggregation (masks that cancel)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm as normal  # type: ignore[import-untyped]
from web3.contract import Contract
from web3.logs import DISCARD

from fl_client.aggregation import integer_average
from fl_client.chain import Chain, read_cohort, read_model_words, read_round, send
from fl_client.codec import OFFSET, pack, unpack
from fl_client.errors import ConfigError, ContractRevertError
from fl_client.privacy import (
    DPConfig,
    MaskContext,
    add_lanes,
    epsilon,
    masked_words,
    pair_seed,
    private_key_from_seed,
    privatize,
    public_key_bytes,
    sum_layout,
)
from tests.conftest import SMALL_WEIGHTS, DeployFactory

# ---------------------------------------------------------------- differential privacy


def test_clipping_bounds_the_update_norm_and_noise_is_seeded() -> None:
    base = np.zeros(100)
    trained = np.full(100, 0.5)  # norm 5
    config = DPConfig(clip_norm=1.0, noise_multiplier=0.0)
    clipped = privatize(base, trained, config, seed=1)
    assert clipped.clipped
    assert clipped.update_norm == pytest.approx(5.0)
    assert np.linalg.norm(clipped.weights - base) == pytest.approx(1.0)
    noisy = DPConfig(clip_norm=1.0, noise_multiplier=2.0)
    a = privatize(base, trained, noisy, seed=7).weights
    b = privatize(base, trained, noisy, seed=7).weights
    c = privatize(base, trained, noisy, seed=8).weights
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # noise std sigma * C = 2 per coordinate
    assert np.std(a - clipped.weights) == pytest.approx(2.0, rel=0.25)


def test_a_small_update_is_not_clipped() -> None:
    result = privatize(np.zeros(4), np.array([0.1, 0, 0, 0]), DPConfig(1.0, 0.0), seed=0)
    assert not result.clipped
    np.testing.assert_allclose(result.weights, [0.1, 0, 0, 0])


def _exact_gaussian_delta(eps: float, sigma: float) -> float:
    """Balle & Wang (2018): the exact delta of the Gaussian mechanism with sensitivity 1."""
    return float(
        normal.cdf(-eps * sigma + 1 / (2 * sigma))
        - math.exp(eps) * normal.cdf(-eps * sigma - 1 / (2 * sigma))
    )


def test_the_accountant_matches_known_values() -> None:
    # One release of sigma = 1 at delta = 1e-5: the exact Gaussian-mechanism epsilon is ~4.38
    # (its delta at 4.38 is 1e-5); RDP is an upper bound on it, within 10%.
    sigma, delta = 1.0, 1e-5
    eps = epsilon(sigma, 1, delta)
    exact = 4.3772
    assert _exact_gaussian_delta(exact, sigma) == pytest.approx(delta, rel=0.01)
    assert exact <= eps <= 1.1 * exact
    # Composition: k releases of sigma equal one release of sigma / sqrt(k) in RDP.
    assert epsilon(4.0, 16, delta) == pytest.approx(epsilon(1.0, 1, delta), rel=1e-6)
    # More noise, less epsilon; more rounds, more epsilon; no noise, no privacy.
    assert epsilon(2.0, 10, delta) < epsilon(1.0, 10, delta)
    assert epsilon(1.0, 30, delta) > epsilon(1.0, 10, delta)
    assert epsilon(0.0, 1, delta) == math.inf
    assert epsilon(1.0, 0, delta) == 0.0


def test_bad_privacy_settings_are_rejected() -> None:
    with pytest.raises(ConfigError, match="clip_norm"):
        DPConfig(clip_norm=0.0, noise_multiplier=1.0)
    with pytest.raises(ConfigError, match="noise_multiplier"):
        DPConfig(clip_norm=1.0, noise_multiplier=-1.0)
    with pytest.raises(ConfigError, match="delta"):
        DPConfig(clip_norm=1.0, noise_multiplier=1.0, delta=1.0)


# ---------------------------------------------------------------- secure aggregation, off-chain


def _keys(count: int) -> list[bytes]:
    return [bytes([i + 1]) * 32 for i in range(count)]


def _masked_cohort(
    vectors: list[np.ndarray], lane_bits: int, context: MaskContext
) -> list[list[int]]:
    keys = [private_key_from_seed(seed) for seed in _keys(len(vectors))]
    publics = [public_key_bytes(k) for k in keys]
    out = []
    for i, vector in enumerate(vectors):
        seeds = {j: pair_seed(keys[i], publics[j], context) for j in range(len(vectors)) if j != i}
        out.append(
            masked_words(vector, weight=1, lane_bits=lane_bits, own_index=i, peer_seeds=seeds)
        )
    return out


@pytest.mark.parametrize("lane_bits", [16, 32, 64])
def test_masks_cancel_exactly_in_the_lane_sum(lane_bits: int) -> None:
    rng = np.random.default_rng(0)
    vectors = [rng.integers(-3000, 3001, 37) for _ in range(4)]
    context = MaskContext(chain_id=1, contract="0x" + "11" * 20, round_number=3)
    masked = _masked_cohort(vectors, lane_bits, context)
    plain = [
        sum_layout([v + OFFSET for v in vec.tolist()] + [OFFSET] * 11, 37, lane_bits)
        for vec in vectors
    ]
    total_masked = masked[0]
    total_plain = plain[0]
    for i in range(1, 4):
        total_masked = add_lanes(total_masked, masked[i], lane_bits)
        total_plain = add_lanes(total_plain, plain[i], lane_bits)
    assert total_masked == total_plain
    assert masked[0] != plain[0]


def test_a_masked_submission_is_uncorrelated_with_its_update() -> None:
    rng = np.random.default_rng(1)
    vectors = [rng.integers(-3000, 3001, 640) for _ in range(3)]
    context = MaskContext(chain_id=1, contract="0x" + "22" * 20, round_number=1)
    masked = _masked_cohort(vectors, 16, context)
    lanes = [(masked[0][w] >> (16 * t)) & 0xFFFF for w in range(40) for t in range(16)]
    correlation = np.corrcoef(np.array(lanes, dtype=np.float64), vectors[0].astype(np.float64))[
        0, 1
    ]
    assert abs(correlation) < 0.15  # 640 pairs: the standard error of r is ~0.04
    # the masked lanes spread over the whole 16-bit range, unlike the update (|q| <= 3000)
    assert max(lanes) - min(lanes) > 60_000


def test_masks_differ_from_round_to_round() -> None:
    key_a, key_b = (private_key_from_seed(s) for s in _keys(2))
    peer = public_key_bytes(key_b)
    contract = "0x" + "33" * 20
    first = pair_seed(key_a, peer, MaskContext(1, contract, 1))
    second = pair_seed(key_a, peer, MaskContext(1, contract, 2))
    assert first != second
    assert first == pair_seed(key_b, public_key_bytes(key_a), MaskContext(1, contract, 1))


# ---------------------------------------------------------------- secure aggregation, on-chain


def _secure(deploy_coordinator: DeployFactory) -> Contract:
    return deploy_coordinator(mode="secure_aggregation", target_submissions=3, min_submissions=3)


def _register(chain: Chain, contract: Contract, clients: list[str]) -> list[bytes]:
    seeds = _keys(len(clients))
    for account, seed in zip(clients, seeds, strict=True):
        send(
            chain,
            contract.functions.registerKey(public_key_bytes(private_key_from_seed(seed))),
            account,
        )
    return seeds


def _submit_masked(
    chain: Chain,
    contract: Contract,
    clients: list[str],
    seeds: list[bytes],
    vectors: list[np.ndarray],
    round_number: int,
) -> None:
    cohort = read_cohort(contract)
    lane_bits = int(contract.functions.laneBits().call())
    context = MaskContext(int(chain.w3.eth.chain_id), str(contract.address), round_number)
    for i, (account, vector) in enumerate(zip(clients, vectors, strict=False)):
        own = private_key_from_seed(seeds[i])
        peers = {j: pair_seed(own, key, context) for j, (_, key) in enumerate(cohort) if j != i}
        words = masked_words(vector, weight=1, lane_bits=lane_bits, own_index=i, peer_seeds=peers)
        send(chain, contract.functions.submitMasked(round_number, 10, words), account)


def test_the_on_chain_average_of_masked_submissions_is_the_unmasked_average(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str]
) -> None:
    # Prepare
    contract = _secure(deploy_coordinator)
    members = clients[:3]
    seeds = _register(isolated, contract, members)
    rng = np.random.default_rng(2)
    vectors = [rng.integers(-3000, 3001, SMALL_WEIGHTS) for _ in range(3)]
    # Execute
    _submit_masked(isolated, contract, members, seeds, vectors, 1)
    # Assert
    assert read_round(contract).number == 2
    model = unpack(read_model_words(contract), SMALL_WEIGHTS)
    np.testing.assert_array_equal(model, integer_average(vectors))
    assert [a for a, _ in read_cohort(contract)] == members
    # the flat reward: every member got the first tier's amount
    assert all(contract.functions.credit(a).call() == 300 for a in members)


def test_a_round_with_a_dropped_masked_client_is_abandoned_and_the_next_one_works(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str]
) -> None:
    contract = _secure(deploy_coordinator)
    members = clients[:3]
    seeds = _register(isolated, contract, members)
    before = read_model_words(contract)
    rng = np.random.default_rng(3)
    vectors = [rng.integers(-3000, 3001, SMALL_WEIGHTS) for _ in range(3)]
    # Round 1: the third member drops out; the round cannot close, and after its deadline
    # finalize abandons it (the two masked sums cannot be unmasked).
    _submit_masked(isolated, contract, members[:2], seeds, vectors[:2], 1)
    with pytest.raises(ContractRevertError) as raised:
        send(isolated, contract.functions.finalize(), members[0])
    assert raised.value.name == "CoordinatorNotClosable"
    isolated.advance_time(601)
    receipt = send(isolated, contract.functions.finalize(), members[0])
    abandoned = contract.events.RoundAbandoned().process_receipt(receipt, errors=DISCARD)
    assert abandoned[0]["args"]["round"] == 1
    assert abandoned[0]["args"]["submissions"] == 2
    assert read_model_words(contract) == before
    assert int(contract.functions.modelVersion().call()) == 0
    # Round 2: everyone submits; the sums of round 1 are gone, the average is exact.
    _submit_masked(isolated, contract, members, seeds, vectors, 2)
    np.testing.assert_array_equal(
        unpack(read_model_words(contract), SMALL_WEIGHTS), integer_average(vectors)
    )


def test_secure_aggregation_checks_its_cohort(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str], outsider: str
) -> None:
    contract = _secure(deploy_coordinator)
    seeds = _register(isolated, contract, clients[:2])
    words = pack(np.zeros(SMALL_WEIGHTS, dtype=np.int64))
    with pytest.raises(ContractRevertError) as raised:
        send(isolated, contract.functions.submitMasked(1, 10, words), clients[0])
    assert raised.value.name == "CoordinatorCohortIncomplete"
    assert raised.value.error_args == {"registered": 2, "required": 3}
    with pytest.raises(ContractRevertError) as raised:
        send(
            isolated,
            contract.functions.registerKey(public_key_bytes(private_key_from_seed(seeds[0]))),
            clients[0],
        )
    assert raised.value.name == "CoordinatorAlreadyRegistered"
    _register(isolated, contract, [clients[2]])
    with pytest.raises(ContractRevertError) as raised:
        send(isolated, contract.functions.registerKey(b"\x07" * 32), outsider)
    assert raised.value.name == "CoordinatorCohortFull"
    with pytest.raises(ContractRevertError) as raised:
        send(isolated, contract.functions.submitMasked(1, 10, words), outsider)
    assert raised.value.name == "CoordinatorNotRegistered"
    with pytest.raises(ContractRevertError) as raised:
        send(isolated, contract.functions.submitMasked(1, 10, words[:-1]), clients[0])
    assert raised.value.name == "CoordinatorWrongLength"
    with pytest.raises(ContractRevertError) as raised:
        send(isolated, contract.functions.submit(1, 10, 0, words), clients[0])
    assert raised.value.name == "CoordinatorWrongMode"


def test_secure_aggregation_rejects_parameters_it_cannot_honour(
    deploy_coordinator: DeployFactory,
) -> None:
    with pytest.raises(ContractRevertError) as raised:
        deploy_coordinator(mode="secure_aggregation", target_submissions=3, min_submissions=2)
    assert raised.value.error_args == {"name": "minSubmissions", "value": 2}
    with pytest.raises(ContractRevertError) as raised:
        deploy_coordinator(
            mode="secure_aggregation",
            target_submissions=3,
            min_submissions=3,
            max_counted_distance=5,
        )
    assert raised.value.error_args == {"name": "distanceBounds", "value": 0}
