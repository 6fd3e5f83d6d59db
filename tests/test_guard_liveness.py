"""The direction guard cannot freeze the model: a round that ends without moving a weight (a
step of zero, nothing counted, or no model at all) disarms the guard for the next round, which
counts every update as round 1 does; the first step that moves a weight arms it again.

Before this rule a single such round left every later update "against" the stored step (the
weights it left alone count as against), every later round ended without a model, and the
direction entries were never written again: the federation was frozen for good. Found by an
attack review; each test below froze the model before the fix (three of them are its scenarios:
Sybils resubmitting the model, one account cancelling round 1's mean, a relayer withholding
round 1's words; the fourth is a step that moves a single weight)."""

from __future__ import annotations

import numpy as np
from web3.contract import Contract

from fl_client.chain import Chain, deploy, read_round
from fl_client.codec import pack
from tests.conftest import SMALL_WEIGHTS, events, relay, signed, small_params, submit
from tests.pipeline_helpers import close_round, mine_at, model_values, window_end

ZERO = np.zeros(SMALL_WEIGHTS, dtype=np.int64)


def guarded(chain: Chain, owner: str) -> Contract:
    """Guard at 0, three places a round, two to close, a model in segments of three words."""
    params = small_params(
        min_alignment_bps=0, words_per_segment=3, target_submissions=3, min_submissions=2
    )
    return deploy(chain, params, initial_words=pack(ZERO), pool_wei=10**6, deployer=owner)


def submit_all(
    chain: Chain, contract: Contract, updates: dict[str, np.ndarray], round_number: int
) -> list[bool]:
    """Each update submitted directly; whether each was counted."""
    counted = []
    for client, update in updates.items():
        [receipt] = submit(chain, contract, client, update, round_number=round_number)
        counted.append(bool(events(contract, "SubmissionAccepted", receipt)[0]["counted"]))
    return counted


def honest(clients: list[str], base: np.ndarray, step: int) -> dict[str, np.ndarray]:
    """Three clients that each move every weight about ``step`` the same way from ``base``."""
    return {c: base + step + i for i, c in enumerate(clients[:3])}


def end_without_a_model(chain: Chain, contract: Contract, sender: str) -> None:
    mine_at(chain, window_end(contract) + 1)
    contract.functions.finalize().transact({"from": sender})


def test_sybils_resubmitting_the_model_disarm_the_guard_for_one_round_only(
    isolated: Chain, owner: str, clients: list[str], relayer: str
) -> None:
    contract = guarded(isolated, owner)
    first = honest(clients, ZERO, 9)
    assert submit_all(isolated, contract, first, 1) == [True] * 3
    close_round(isolated, contract, relayer, first, round_number=1)
    m1 = np.array(model_values(contract))
    second = honest(clients, m1, 9)
    assert submit_all(isolated, contract, second, 2) == [True] * 3
    close_round(isolated, contract, relayer, second, round_number=2)
    m2 = np.array(model_values(contract))
    # Round 3: three Sybils resubmit the model (distance 0 passes a guard at 0) and fill it.
    sybils = {s: m2.copy() for s in clients[5:8]}
    assert submit_all(isolated, contract, sybils, 3) == [True] * 3
    close_round(isolated, contract, relayer, sybils, round_number=3)
    assert np.array_equal(model_values(contract), m2)
    # Round 4: the step of round 3 moved nothing, so the guard is off: the honest updates count
    # (before the fix: all three left out, and every round after).
    fourth = honest(clients, m2, 9)
    assert submit_all(isolated, contract, fourth, 4) == [True] * 3
    close_round(isolated, contract, relayer, fourth, round_number=4)
    m4 = np.array(model_values(contract))
    assert (m4 > m2).all()
    # Round 5: round 4 moved every weight up, so the guard is armed again: an update that moves
    # every weight down is left out, the honest ones are counted.
    fifth = {clients[0]: m4 + 9, clients[1]: m4 + 10, clients[9]: m4 - 9}
    assert submit_all(isolated, contract, fifth, 5) == [True, True, False]


def test_one_account_cancelling_round_ones_mean_does_not_freeze_the_model(
    isolated: Chain, owner: str, clients: list[str], relayer: str
) -> None:
    contract = guarded(isolated, owner)
    u1, u2 = ZERO + 12, ZERO + 7
    cancel = 3 * ZERO - u1 - u2  # the mean of the three is the initial model, exactly
    updates = {clients[0]: u1, clients[1]: u2, clients[9]: cancel}
    submit_all(isolated, contract, updates, 1)
    close_round(isolated, contract, relayer, updates, round_number=1)
    assert int(contract.functions.modelVersion().call()) == 1
    assert np.array_equal(model_values(contract), ZERO)
    second = honest(clients, ZERO, 10)
    assert submit_all(isolated, contract, second, 2) == [True] * 3
    close_round(isolated, contract, relayer, second, round_number=2)
    assert (np.array(model_values(contract)) > 0).all()


def test_a_relayer_withholding_round_ones_words_does_not_freeze_the_model(
    isolated: Chain, owner: str, clients: list[str], relayer: str
) -> None:
    contract = guarded(isolated, owner)
    updates = honest(clients, ZERO, 10)
    relay(
        isolated, contract, relayer, [signed(isolated, contract, c, u) for c, u in updates.items()]
    )
    mine_at(isolated, window_end(contract))
    close_round(isolated, contract, relayer, {}, round_number=1, omitted=[0, 1, 2])
    assert int(contract.functions.modelVersion().call()) == 1
    assert submit_all(isolated, contract, updates, 2) == [True] * 3
    close_round(isolated, contract, relayer, updates, round_number=2)
    assert (np.array(model_values(contract)) > 0).all()


def test_a_step_that_moves_one_weight_costs_one_round_without_a_model_then_the_guard_recovers(
    isolated: Chain, owner: str, clients: list[str], relayer: str
) -> None:
    contract = guarded(isolated, owner)
    # Round 1 (no guard yet): the mean moves weight 0 alone, by one quantum.
    nudge = {c: ZERO.copy() for c in clients[5:8]}
    nudge[clients[5]][0] = 3
    submit_all(isolated, contract, nudge, 1)
    close_round(isolated, contract, relayer, nudge, round_number=1)
    m1 = np.array(model_values(contract))
    assert m1[0] == 1
    assert not m1[1:].any()
    # Round 2: against a step that left every other weight alone, honest updates count as
    # against on all of them and are left out; the round ends without a model.
    second = honest(clients, m1, 9)
    assert submit_all(isolated, contract, second, 2) == [False] * 3
    end_without_a_model(isolated, contract, relayer)
    assert read_round(contract).number == 3
    # Round 3: a round that moved nothing disarms the guard, and the federation moves again
    # (before the fix: left out in every round from 2 on).
    third = honest(clients, m1, 9)
    assert submit_all(isolated, contract, third, 3) == [True] * 3
    close_round(isolated, contract, relayer, third, round_number=3)
    assert (np.array(model_values(contract))[1:] > 0).all()
