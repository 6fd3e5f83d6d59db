"""Differential privacy: update-level noise, sample-level DP-SGD (Opacus) and its accountant, and
the privacy budget the contract enforces per participation on every submission path.

The accountant is checked against Opacus's ``RDPAccountant`` driven step by step and against the
Gaussian mechanism's exact RDP; the chain's ledger against ``LedgerCurve`` (exactly) and the
Python accountant (within its fixed-point step).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import pytest
import torch
from web3.contract import Contract
from web3.types import TxReceipt

from fl_client.chain import Chain, commitment, read_round, reveal_calls, send
from fl_client.codec import pack, vector_hash
from fl_client.data import Shard
from fl_client.dpsgd import (
    DPSGDConfig,
    DPSGDTrainer,
    Participation,
    epsilon_after,
    ledger_curve,
    participation_curve,
    train_dp_sgd,
)
from fl_client.errors import ConfigError, DataError
from fl_client.model import build_model, get_flat_parameters
from fl_client.privacy import (
    LEDGER_ORDERS,
    MICRO,
    DPConfig,
    LedgerCurve,
    epsilon,
    epsilon_of_rdp,
    privatize,
    rdp_curve,
)
from fl_client.training import TrainConfig
from tests.conftest import DeployFactory, relay, signed, submit
from tests.pipeline_helpers import random_vector, reverts, window_end
from tests.secagg_helpers import Cohort, finish_phase, secure_params

DELTA = 1e-5
SHARD_SIZES = (60, 80)
DP_TRAIN = TrainConfig(epochs=2, batch_size=15, learning_rate=0.1)
DP_SGD = DPSGDConfig(max_grad_norm=1.0, noise_multiplier=1.0, delta=DELTA)


def synthetic_shard(samples: int, *, seed: int = 0, scale: float = 1.0) -> Shard:
    """``samples`` examples of seven features and five classes (a 40-weight softmax regression)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, 7, generator=generator) * scale
    y = torch.randint(0, 5, (samples,), generator=generator)
    return Shard(x, y)


def examples(shard: Shard) -> torch.utils.data.TensorDataset:
    """A shard's examples as the torch dataset DP-SGD trains on."""
    return torch.utils.data.TensorDataset(shard.x, shard.y)


def micro_after(curve: LedgerCurve, participations: int) -> int:
    """The contract's epsilon after ``participations`` (1e-6 units): the minimum over the orders
    of the composed RDP plus the order's conversion term."""
    if participations == 0:
        return 0
    return min(
        participations * r + c for r, c in zip(curve.rdp_micro, curve.conversion_micro, strict=True)
    )


def balle_conversion(order: float, delta: float) -> float:
    """Balle et al. 2020 (Theorem 21): what turns RDP at ``order`` into epsilon at ``delta``."""
    return math.log((order - 1) / order) - (math.log(delta) + math.log(order)) / (order - 1)


# ---------------------------------------------------------------- update-level noise


def test_clipping_bounds_the_update_norm_and_the_noise_is_seeded() -> None:
    # Prepare
    base = np.zeros(100)
    trained = np.full(100, 0.5)  # an update of norm 5
    noisy = DPConfig(clip_norm=1.0, noise_multiplier=2.0)
    # Execute
    clipped = privatize(base, trained, DPConfig(clip_norm=1.0, noise_multiplier=0.0), seed=1)
    first, again, other = (privatize(base, trained, noisy, seed=s).weights for s in (7, 7, 8))
    small = privatize(np.zeros(4), np.array([0.1, 0, 0, 0]), DPConfig(1.0, 0.0), seed=0)
    # Assert
    assert clipped.clipped
    assert clipped.update_norm == pytest.approx(5.0)
    assert np.linalg.norm(clipped.weights - base) == pytest.approx(1.0)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert np.std(first - clipped.weights) == pytest.approx(2.0, rel=0.25)  # sigma * C
    assert not small.clipped
    np.testing.assert_allclose(small.weights, [0.1, 0, 0, 0])


def test_bad_privacy_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="clip_norm"):
        DPConfig(clip_norm=0.0, noise_multiplier=1.0)
    with pytest.raises(ConfigError, match="noise_multiplier"):
        DPConfig(clip_norm=1.0, noise_multiplier=-1.0)
    with pytest.raises(ConfigError, match="delta"):
        DPConfig(clip_norm=1.0, noise_multiplier=1.0, delta=1.0)
    with pytest.raises(ConfigError, match="noise_multiplier"):
        DPSGDConfig(max_grad_norm=1.0, noise_multiplier=0.0)
    with pytest.raises(ConfigError, match="needs noise"):
        LedgerCurve.of(noise_multiplier=0.0, delta=DELTA, epsilon_budget=1.0)


# ---------------------------------------------------------------- sample-level DP-SGD


def test_dp_sgd_training_is_deterministic_given_its_seed() -> None:
    # Prepare
    shard = synthetic_shard(60)
    start = get_flat_parameters(build_model(7, 5, seed=0))

    def trainer(seed: int) -> DPSGDTrainer:
        return DPSGDTrainer(
            model=build_model(7, 5, seed=0), data=shard, config=DP_TRAIN, dp=DP_SGD, noise_seed=seed
        )

    # Execute
    first = trainer(41).fit(start, round_number=1).weights
    again = trainer(41).fit(start, round_number=1).weights
    other_seed = trainer(42).fit(start, round_number=1).weights
    other_round = trainer(41).fit(start, round_number=2).weights
    # Assert
    assert first.shape == (40,)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other_seed)
    assert not np.array_equal(first, other_round)
    assert not np.array_equal(first, start)


def test_dp_sgd_clips_every_example_before_averaging() -> None:
    # Prepare: one full-batch step (sampling rate 1: every example in the batch) with examples
    # whose gradients are far above the clipping norm, and next to no noise.
    samples, clip, rate = 24, 0.05, 0.5
    shard = synthetic_shard(samples, seed=3, scale=3.0)
    config = TrainConfig(epochs=1, batch_size=0, learning_rate=rate)
    reference = build_model(7, 5, seed=0)
    start = get_flat_parameters(reference)
    parameters = list(reference.parameters())
    gradients = []
    for i in range(samples):
        loss = torch.nn.functional.cross_entropy(reference(shard.x[i : i + 1]), shard.y[i : i + 1])
        per_parameter = torch.autograd.grad(loss, parameters)
        gradients.append(torch.cat([g.reshape(-1) for g in per_parameter]).double().numpy())
    per_example = np.array(gradients)
    norms = np.linalg.norm(per_example, axis=1)
    clipped = per_example * np.minimum(1.0, clip / norms)[:, None]
    model = build_model(7, 5, seed=0)
    # Execute
    train_dp_sgd(
        model,
        examples(shard),
        config,
        DPSGDConfig(max_grad_norm=clip, noise_multiplier=1e-6),
        seed=5,
    )
    # Assert: the step is the mean of the clipped per-example gradients, not of the raw ones
    assert Participation.of(samples, config) == Participation(sampling_rate=1.0, steps=1)
    assert norms.min() > 10 * clip
    trained = get_flat_parameters(model)
    np.testing.assert_allclose(trained, start - rate * clipped.mean(axis=0), atol=1e-6)
    assert np.abs(trained - (start - rate * per_example.mean(axis=0))).max() > 0.1
    assert np.linalg.norm(trained - start) <= rate * clip + 1e-6


@pytest.mark.parametrize(
    ("samples", "epochs", "batch", "rate", "steps"),
    [(100, 2, 32, 0.32, 8), (60, 2, 15, 0.25, 8), (100, 3, 0, 1.0, 3), (10, 1, 32, 1.0, 1)],
)
def test_a_participation_is_epochs_times_batches_at_the_batch_sampling_rate(
    samples: int, epochs: int, batch: int, rate: float, steps: int
) -> None:
    config = TrainConfig(epochs=epochs, batch_size=batch, learning_rate=0.1)
    assert Participation.of(samples, config) == Participation(sampling_rate=rate, steps=steps)


def test_an_empty_shard_has_no_participation() -> None:
    with pytest.raises(DataError, match="empty shard"):
        Participation.of(0, DP_TRAIN)


def test_dp_sgd_runs_the_participations_steps_through_opacus_accountant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: record the privacy engine the trainer builds
    import opacus  # imported where needed, as the library does: it is slow to import

    engines: list[Any] = []
    original = opacus.PrivacyEngine

    def recording(*args: Any, **kwargs: Any) -> Any:
        engine = original(*args, **kwargs)
        engines.append(engine)
        return engine

    monkeypatch.setattr(opacus, "PrivacyEngine", recording)
    participation = Participation.of(60, DP_TRAIN)
    # Execute
    train_dp_sgd(build_model(7, 5, seed=0), examples(synthetic_shard(60)), DP_TRAIN, DP_SGD, seed=9)
    # Assert: Opacus counted the documented steps at the documented rate, and its epsilon is ours
    assert participation == Participation(sampling_rate=0.25, steps=8)
    assert [tuple(h) for h in engines[0].accountant.history] == [(1.0, 0.25, 8)]
    opacus_epsilon = engines[0].accountant.get_epsilon(DELTA, alphas=list(LEDGER_ORDERS))
    assert epsilon_after(1, participation, DP_SGD) == pytest.approx(opacus_epsilon, rel=1e-12)


@pytest.mark.parametrize(
    ("sigma", "rate", "steps"), [(1.0, 0.25, 8), (1.0, 0.1, 50), (1.2, 0.25, 40), (2.0, 1.0, 4)]
)
def test_the_accountant_matches_opacus_rdp_accountant_step_by_step(
    sigma: float, rate: float, steps: int
) -> None:
    # Prepare: Opacus's accountant, stepped as an optimizer steps it
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    for _ in range(steps):
        accountant.step(noise_multiplier=sigma, sample_rate=rate)
    # Execute
    ours = epsilon(sigma, steps, DELTA, sampling_rate=rate)
    at_our_orders = accountant.get_epsilon(DELTA, alphas=list(LEDGER_ORDERS))
    at_dense_orders = accountant.get_epsilon(DELTA)
    # Assert: the same at the ledger's orders; at most 5% above Opacus's dense grid of orders
    assert ours == pytest.approx(at_our_orders, rel=1e-12)
    assert at_dense_orders <= ours <= 1.05 * at_dense_orders


def test_participations_compose_additively_in_rdp() -> None:
    # Prepare
    from opacus.accountants import RDPAccountant

    participation = Participation.of(60, DP_TRAIN)
    one = participation_curve(participation, DP_SGD)
    accountant = RDPAccountant()
    # Execute / Assert: k participations are k times the steps, in Opacus's accountant too
    for k in (1, 2, 3):
        for _ in range(participation.steps):
            accountant.step(noise_multiplier=1.0, sample_rate=participation.sampling_rate)
        ours = epsilon_after(k, participation, DP_SGD)
        assert ours == pytest.approx(
            accountant.get_epsilon(DELTA, alphas=list(LEDGER_ORDERS)), rel=1e-12
        )
        assert ours == pytest.approx(epsilon_of_rdp([k * v for v in one], DELTA), rel=1e-12)
    assert epsilon_after(0, participation, DP_SGD) == 0.0


def test_update_level_noise_has_the_gaussian_mechanisms_exact_rdp() -> None:
    # Prepare
    sigma = 2.0
    # Execute
    curves = {k: rdp_curve(sigma, steps=k) for k in (1, 3)}
    # Assert: RDP of the Gaussian mechanism at sampling rate 1 is alpha / (2 sigma^2) per release
    for k, curve in curves.items():
        assert curve == pytest.approx([k * a / (2 * sigma**2) for a in LEDGER_ORDERS], rel=1e-12)
        closed_form = min(
            k * a / (2 * sigma**2) + balle_conversion(a, DELTA) for a in LEDGER_ORDERS
        )
        assert epsilon(sigma, k, DELTA) == pytest.approx(closed_form, rel=1e-12)
    # k releases of sigma are one release of sigma / sqrt(k)
    assert epsilon(4.0, 16, DELTA) == pytest.approx(epsilon(1.0, 1, DELTA), rel=1e-12)
    assert epsilon(1.0, 0, DELTA) == 0.0
    assert epsilon(0.0, 1, DELTA) == math.inf


def test_the_accountant_bounds_the_exact_gaussian_epsilon_closely() -> None:
    # One release of sigma = 1 at delta = 1e-5: the exact epsilon (Balle & Wang 2018) is 4.3772;
    # RDP is an upper bound on it, within 10%.
    def exact_delta(eps: float, sigma: float) -> float:
        def phi(t: float) -> float:
            return 0.5 * (1 + math.erf(t / math.sqrt(2)))

        return phi(-eps * sigma + 1 / (2 * sigma)) - math.exp(eps) * phi(
            -eps * sigma - 1 / (2 * sigma)
        )

    exact = 4.3772
    assert exact_delta(exact, 1.0) == pytest.approx(DELTA, rel=0.01)
    assert exact <= epsilon(1.0, 1, DELTA) <= 1.1 * exact


def test_the_ledger_curve_rounds_each_term_up_to_the_micro_unit() -> None:
    # Prepare
    floats = rdp_curve(2.0)
    # Execute
    curve = LedgerCurve.of(noise_multiplier=2.0, delta=DELTA, epsilon_budget=5.0)
    # Assert
    assert curve.orders == LEDGER_ORDERS
    assert curve.rdp_micro == tuple(math.ceil(v * MICRO) for v in floats)
    assert curve.conversion_micro == tuple(
        max(0, math.ceil(balle_conversion(a, DELTA) * MICRO)) for a in LEDGER_ORDERS
    )
    assert curve.budget_micro == 5_000_000
    for n in range(1, 6):
        python = epsilon_of_rdp([n * v for v in floats], DELTA)
        assert python <= curve.epsilon_after(n) <= python + (n + 1) / MICRO
    assert curve.participations_allowed() == 4  # 4.752729 after four, 5.377729 after five


def test_a_budget_given_as_the_epsilon_of_k_participations_admits_k() -> None:
    # Prepare: a budget set to the epsilon the ledger reports after k participations
    shortfalls = []
    for sigma in (1.0, 2.0, 3.0):
        curve = LedgerCurve.of(noise_multiplier=sigma, delta=DELTA, epsilon_budget=100.0)
        for k in range(1, 11):
            # Execute
            budgeted = LedgerCurve.of(
                noise_multiplier=sigma, delta=DELTA, epsilon_budget=curve.epsilon_after(k)
            )
            if (budgeted.budget_micro, budgeted.participations_allowed()) != (
                micro_after(curve, k),
                k,
            ):
                shortfalls.append((sigma, k, budgeted.budget_micro, micro_after(curve, k)))
    # Assert
    assert shortfalls == []


@pytest.mark.parametrize(
    "config",
    [DP_TRAIN, TrainConfig(epochs=1, batch_size=32, learning_rate=0.1)],
    ids=["batch15x2", "batch32x1"],
)
def test_the_ledger_charges_no_client_less_than_it_spends(config: TrainConfig) -> None:
    # Prepare: clients of 60 and 80 samples; the ledger has one curve for all of them
    curve = ledger_curve(SHARD_SIZES, config, DP_SGD, epsilon_budget=50.0)
    # Execute: each client's own epsilon after n participations (Opacus's analysis)
    undercharged = [
        (size, n, epsilon_after(n, Participation.of(size, config), DP_SGD), curve.epsilon_after(n))
        for size in SHARD_SIZES
        for n in (1, 2, 3)
        if epsilon_after(n, Participation.of(size, config), DP_SGD) > curve.epsilon_after(n)
    ]
    # Assert: the charge is never below what a client spends
    assert undercharged == []
    assert curve.budget_micro == 50 * MICRO


# ---------------------------------------------------------------- the budget on-chain


@functools.cache
def curves() -> dict[str, tuple[LedgerCurve, list[float]]]:
    """The ledgers of the on-chain tests and their float curves: update-level noise (sigma 2) and
    DP-SGD (the smallest shard's participation). Computed on first use: Opacus is slow to import."""
    return {
        "update_level": (
            LedgerCurve.of(noise_multiplier=2.0, delta=DELTA, epsilon_budget=10.0),
            rdp_curve(2.0),
        ),
        "dp_sgd": (
            ledger_curve(SHARD_SIZES, DP_TRAIN, DP_SGD, epsilon_budget=50.0),
            participation_curve(Participation.of(60, DP_TRAIN), DP_SGD),
        ),
    }


def ledger(curve: LedgerCurve, budget: int) -> dict[str, Any]:
    """The deployment parameters of a privacy ledger of ``curve`` with ``budget``."""
    return {
        "rdp_per_participation": curve.rdp_micro,
        "rdp_conversion": curve.conversion_micro,
        "epsilon_budget": budget,
    }


def spent(contract: Contract, account: str) -> tuple[int, int]:
    """``account``'s participations and epsilon spent (1e-6 units)."""
    f = contract.functions
    return int(f.participations(account).call()), int(f.epsilonSpent(account).call())


def abandon(chain: Chain, contract: Contract, sender: str) -> None:
    """End the open (Plain) round once its close window has passed."""
    chain.advance_time(window_end(contract) - chain.timestamp())
    send(chain, contract.functions.finalize(), sender)


def test_the_ledger_is_deployed_from_a_ledger_curve(deploy_coordinator: DeployFactory) -> None:
    # Prepare
    curve, _ = curves()["update_level"]
    # Execute
    contract = deploy_coordinator(**ledger(curve, curve.budget_micro))
    # Assert
    rdp, conversion, budget = contract.functions.privacyLedger().call()
    assert (tuple(rdp), tuple(conversion), budget) == (
        curve.rdp_micro,
        curve.conversion_micro,
        10 * MICRO,
    )


@pytest.mark.parametrize(
    ("curve_name", "budget_offset", "admitted"),
    [("update_level", 0, 3), ("dp_sgd", 0, 3), ("dp_sgd", -1, 2)],
)
def test_a_budget_at_the_epsilon_of_k_participations_admits_k_and_refuses_the_next(
    isolated: Chain,
    deploy_coordinator: DeployFactory,
    client_a: str,
    relayer: str,
    curve_name: str,
    budget_offset: int,
    admitted: int,
) -> None:
    # Prepare: the budget exactly at the epsilon of three participations (or 1e-6 below it)
    curve, floats = curves()[curve_name]
    budget = micro_after(curve, 3) + budget_offset
    contract = deploy_coordinator(**ledger(curve, budget))
    rng = np.random.default_rng(1)
    # Execute / Assert: each admitted participation spends exactly what the curve says
    for n in range(1, admitted + 1):
        submit(isolated, contract, client_a, random_vector(rng), round_number=n)
        count, epsilon_micro = spent(contract, client_a)
        assert (count, epsilon_micro) == (n, micro_after(curve, n))
        assert epsilon_micro == round(curve.epsilon_after(n) * MICRO)
        assert epsilon_micro / MICRO == curve.epsilon_after(n)
        python = epsilon_of_rdp([n * v for v in floats], DELTA)
        assert python <= epsilon_micro / MICRO <= python + (n + 1) / MICRO
        abandon(isolated, contract, relayer)
    with reverts(
        "CoordinatorPrivacyBudgetExceeded",
        client=client_a,
        epsilon=micro_after(curve, admitted + 1),
        budget=budget,
    ):
        submit(isolated, contract, client_a, random_vector(rng), round_number=admitted + 1)
    assert spent(contract, client_a) == (admitted, micro_after(curve, admitted))
    assert micro_after(curve, admitted + 1) > budget >= micro_after(curve, admitted)


BOND = 1_000


class PathDriver(Protocol):
    """One submission path, split around the call that spends a participation."""

    def prepare(self, round_number: int) -> None:
        """What comes before the participation."""

    def participate(self, round_number: int) -> TxReceipt:
        """The call that is charged."""

    def end(self, round_number: int) -> None:
        """End the round (after the participation)."""


class DirectDriver:
    """``submit`` (Plain); the round ends unclosed."""

    def __init__(self, chain: Chain, contract: Contract, accounts: Sequence[str]) -> None:
        self.chain = chain
        self.contract = contract
        self.client = accounts[0]
        self.other = accounts[1]
        self.values = random_vector(np.random.default_rng(2))

    def prepare(self, round_number: int) -> None:
        pass

    def participate(self, round_number: int) -> TxReceipt:
        return submit(
            self.chain, self.contract, self.client, self.values, round_number=round_number
        )[-1]

    def end(self, round_number: int) -> None:
        abandon(self.chain, self.contract, self.other)


class RelayedDriver(DirectDriver):
    """``submitRelayed`` of the client's signed update by another account."""

    def participate(self, round_number: int) -> TxReceipt:
        update = signed(
            self.chain, self.contract, self.client, self.values, round_number=round_number
        )
        return relay(self.chain, self.contract, self.other, [update], round_number=round_number)


class RevealDriver(DirectDriver):
    """``commit``, then ``reveal`` once the commit deadline passed (CommitReveal)."""

    salt = b"\x05" * 32

    def prepare(self, round_number: int) -> None:
        per_segment = int(self.contract.functions.wordsPerSegment().call())
        digest = commitment(
            chain_id=self.chain.chain_id(),
            contract_address=str(self.contract.address),
            round_number=round_number,
            client=self.client,
            sample_count=1,
            salt=self.salt,
            vector_hash=vector_hash(pack(self.values), per_segment),
        )
        function = self.contract.functions.commit(round_number, digest)
        send(self.chain, function, self.client, value=BOND)
        finish_phase(self.chain, self.contract, self.other)  # the reveals open

    def participate(self, round_number: int) -> TxReceipt:
        (call,) = reveal_calls(
            self.contract,
            self.client,
            round_number=round_number,
            sample_count=1,
            words=pack(self.values),
            words_per_segment=int(self.contract.functions.wordsPerSegment().call()),
            salt=self.salt,
        )
        return send(self.chain, call.function, call.sender)

    def end(self, round_number: int) -> None:
        send(self.chain, self.contract.functions.finalize(), self.other)  # below the minimum


class MaskedDriver(DirectDriver):
    """``submitMasked`` in a cohort of two (no dropout tolerated); the partner submits after."""

    def __init__(self, chain: Chain, contract: Contract, accounts: Sequence[str]) -> None:
        super().__init__(chain, contract, accounts)
        self.cohort = Cohort.of(chain, contract, accounts[:2])
        self.closer = accounts[2]

    def prepare(self, round_number: int) -> None:
        rng = np.random.default_rng(round_number)
        self.cohort.set_updates({0: self.values, 1: random_vector(rng)}, round_number=round_number)
        self.cohort.act()  # keys
        self.cohort.act()  # shares

    def participate(self, round_number: int) -> TxReceipt:
        return self.cohort.act([0])[-1]

    def end(self, round_number: int) -> None:
        self.cohort.act([1])
        self.cohort.close(self.closer)


PATHS: dict[str, tuple[type[DirectDriver], dict[str, Any]]] = {
    "direct": (DirectDriver, {}),
    "relayed": (RelayedDriver, {}),
    "reveal": (
        RevealDriver,
        {"mode": "commit_reveal", "reveal_duration": 300, "commit_bond": BOND},
    ),
    "masked": (MaskedDriver, secure_params(2, 0)),
}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_every_path_charges_a_participation_against_the_budget(
    isolated: Chain, deploy_coordinator: DeployFactory, clients: list[str], path: str
) -> None:
    # Prepare: a budget of exactly one participation
    driver_type, params = PATHS[path]
    curve, _ = curves()["update_level"]
    one = micro_after(curve, 1)
    contract = deploy_coordinator(**params, **ledger(curve, one))
    client, other = clients[:2]
    driver: PathDriver = driver_type(isolated, contract, clients[:3])
    # Execute: round 1 is charged ...
    driver.prepare(1)
    driver.participate(1)
    assert spent(contract, client) == (1, one)
    driver.end(1)
    assert read_round(contract).number == 2
    # Assert: ... and the participation of round 2 would exceed the budget. A path that takes a
    # bond or a cohort place first (commit, registerKey) refuses there, so that nothing is
    # forfeited and no cohort waits for a member that cannot submit.
    bonds = contract.functions.bonds().call()
    prepared: list[int] = []
    with reverts(
        "CoordinatorPrivacyBudgetExceeded",
        client=client,
        epsilon=micro_after(curve, 2),
        budget=one,
    ):
        driver.prepare(2)
        prepared.append(2)
        driver.participate(2)
    assert prepared == ([] if path in ("reveal", "masked") else [2])
    assert spent(contract, client) == (1, one)
    assert contract.functions.bonds().call() == bonds  # no bond taken for it
    # the other account (relayer, closer) spends nothing; a masked partner its own participation
    assert spent(contract, other) == ((1, one) if path == "masked" else (0, 0))


@pytest.mark.parametrize(
    ("rdp", "conversion", "budget", "name", "value"),
    [
        ((1, 2, 3), (1, 2), 5, "rdpConversion", 2),  # mismatched lengths
        ((), (), 5, "epsilonBudget", 5),  # a budget without orders
        ((1,), (1,), 0, "epsilonBudget", 0),  # orders without a budget
        ((1,) * 33, (1,) * 33, 5, "rdpConversion", 33),  # more than 32 orders
        ((1, 2**64), (1, 1), 5, "rdpPerParticipation", 1),  # a term above 2**64 - 1
        ((1, 1), (1, 2**64), 5, "rdpConversion", 1),
        ((1,), (1,), 2**64, "epsilonBudget", 2**64),
    ],
)
def test_invalid_ledger_parameters_are_refused(
    deploy_coordinator: DeployFactory,
    rdp: tuple[int, ...],
    conversion: tuple[int, ...],
    budget: int,
    name: str,
    value: int,
) -> None:
    with reverts("CoordinatorInvalidParameter", name=name, value=value):
        deploy_coordinator(
            rdp_per_participation=rdp, rdp_conversion=conversion, epsilon_budget=budget
        )


def test_a_ledger_of_32_orders_is_taken(deploy_coordinator: DeployFactory, client_a: str) -> None:
    # Execute
    contract = deploy_coordinator(
        rdp_per_participation=tuple(range(1, 33)),
        rdp_conversion=(2**64 - 1,) * 32,
        epsilon_budget=2**64 - 1,
    )
    # Assert
    rdp, conversion, budget = contract.functions.privacyLedger().call()
    assert (list(rdp), list(conversion), budget) == (
        list(range(1, 33)),
        [2**64 - 1] * 32,
        2**64 - 1,
    )
    assert read_round(contract).phase == "Open"
    assert spent(contract, client_a) == (0, 0)
