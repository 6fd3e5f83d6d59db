"""Participants on the embedded chain: each submission path end to end with its outcome read back
from the chain, restarts and resumed submissions, the relayed client's direct fallback, and bad
inputs caught before any transaction is sent.

The participants train a softmax regression (7 features -> 5 classes: 40 weights, the size of
``small_params``) on small synthetic shards, so that a round takes a fraction of a second.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from web3.contract import Contract
from web3.types import TxReceipt

import fl_client.chain.coordinator as coordinator_module
from fl_client.aggregation import distance, integer_average, reward_tier
from fl_client.chain import (
    MAX_CALLDATA_BYTES,
    Chain,
    CoordinatorView,
    connect,
    deploy,
    masked_calls,
    read_entries,
    read_model_words,
    read_progress,
    read_round,
    reveal_calls,
    send,
    settlement_receipt,
    submit_calls,
)
from fl_client.client_secret import simulation_secret
from fl_client.closer import MaskedRoundCloser, RoundCloser, closer_for
from fl_client.codec import OFFSET, encode, pack, unpack, vector_hash
from fl_client.config import FixedPointFormat
from fl_client.data import Shard
from fl_client.errors import (
    ClientStateError,
    InsufficientFundsError,
    NodeUnreachableError,
    NonFiniteWeightError,
    OutOfRangeError,
    ShapeError,
    TransactionTooLargeError,
)
from fl_client.model import build_model, get_flat_parameters
from fl_client.node import free_port
from fl_client.participant import Participant, RoundOutcome
from fl_client.paths import (
    CommitRevealPath,
    DirectPath,
    MaskedPath,
    PathContext,
    RelayedPath,
    RelayEndpoint,
    SubmissionPath,
    own_words_first,
)
from fl_client.relay import Relay, RelayClient
from fl_client.trainer import FitResult, LocalTrainer, ShardTrainer
from fl_client.training import TrainConfig
from tests.conftest import SMALL_WEIGHTS, events, small_params
from tests.pipeline_helpers import mine_at, module_deployments, reverts, with_value
from tests.secagg_helpers import secure_params

FEATURES, CLASSES = 7, 5  # 7 x 5 + 5 = 40 weights
SEED = 3
SAMPLES = 30
FIXED_POINT = FixedPointFormat(scale=1024, max_abs=3000)
TRAIN = TrainConfig(epochs=1, batch_size=10, learning_rate=0.2)
THRESHOLDS, REWARDS = (1_000, 10_000, 50_000), (300, 200, 100)  # small_params' tiers
CLOSE_FEE, RELAY_FEE = 7, 3  # small_params' fees
BOND = 1_000

PathFactory = Callable[[PathContext], SubmissionPath]


# ---------------------------------------------------------------- participants


def synthetic_shard(client: int, samples: int = SAMPLES) -> Shard:
    """A small shard of random features and labels, its own for each client."""
    generator = torch.Generator().manual_seed(100 + client)
    x = torch.randn(samples, FEATURES, generator=generator)
    y = torch.randint(0, CLASSES, (samples,), generator=generator)
    return Shard(x, y)


def shard_trainer(client: int) -> ShardTrainer:
    """The built-in trainer on client ``client``'s synthetic shard."""
    return ShardTrainer(
        shard=synthetic_shard(client),
        num_features=FEATURES,
        num_classes=CLASSES,
        config=TRAIN,
        seed=SEED,
        client_id=client,
    )


def initial_words() -> list[int]:
    """The packed initial model every deployment of these tests starts from."""
    words, _ = encode(get_flat_parameters(build_model(FEATURES, CLASSES, seed=SEED)), FIXED_POINT)
    return words


def deploy_small(chain: Chain, owner: str, **changes: object) -> Contract:
    """A coordinator for the 40-weight model (``small_params`` with ``changes``), round 1 open."""
    return deploy(
        chain,
        small_params(**changes),
        initial_words=initial_words(),
        pool_wei=10**6,
        deployer=owner,
    )


# Deployments shared by the module (each test still runs on a snapshot of its own). An hour per
# round: the chain's clock follows the wall clock, and round 1 must stay open for the whole module.
ROUND_SECONDS = 3600
DEPLOYMENTS: dict[str, dict[str, object]] = {
    "plain": {},
    "segmented": {"words_per_segment": 1},
    "commit_reveal": {"mode": "commit_reveal", "commit_bond": BOND, "reveal_duration": 300},
    "masked": secure_params(3, 1, min_submissions=3),
}


@pytest.fixture(scope="module")
def coordinators(chain: Chain) -> Iterator[dict[str, Contract]]:
    """One coordinator of each kind, deployed once for the module, round 1 open."""
    initial = unpack(initial_words(), SMALL_WEIGHTS)
    configs = {
        name: {"round_duration": ROUND_SECONDS, **changes, "initial": initial}
        for name, changes in DEPLOYMENTS.items()
    }
    yield from module_deployments(chain, configs)


def make_participant(
    chain: Chain,
    contract: Contract,
    account: str,
    client_id: int,
    path: PathFactory = DirectPath,
    *,
    trainer: LocalTrainer | None = None,
) -> Participant:
    """A participant (a fresh process, as far as it knows) for ``account`` with its path."""
    view = CoordinatorView.read(chain, contract)
    secret = simulation_secret(SEED, client_id)
    return Participant(
        chain=chain,
        contract=contract,
        account=account,
        client_id=client_id,
        trainer=trainer or shard_trainer(client_id),
        path=path(PathContext(chain, contract, account, view, secret)),
        view=view,
        secret=secret,
    )


def relayed_participant(
    chain: Chain, contract: Contract, account: str, relay: RelayEndpoint, margin: int
) -> Participant:
    """Client 0 on the relayed path through ``relay``, falling back ``margin`` s before the
    deadline."""
    return make_participant(
        chain,
        contract,
        account,
        0,
        lambda context: RelayedPath(context, relay, fallback_margin=margin),
    )


def act(participant: Participant, *, now: int | None = None) -> list[TxReceipt]:
    """Send what the participant's path asks now in the open round; the receipts."""
    info = read_round(participant.contract)
    calls = participant.pending(info, now=now)
    receipts = [
        send(participant.chain, call.function, call.sender, value=call.value, what=call.label)
        for call in calls
    ]
    participant.record(info.number, receipts)
    return receipts


def model_values(contract: Contract) -> np.ndarray:
    """The global model as quantized integers."""
    return unpack(read_model_words(contract), SMALL_WEIGHTS)


def values_of(outcome: RoundOutcome) -> np.ndarray:
    """The quantized update an outcome carried."""
    return unpack(list(outcome.words), SMALL_WEIGHTS)


def nonce(chain: Chain, account: str) -> int:
    """Transactions ``account`` has sent."""
    return int(chain.w3.eth.get_transaction_count(account))  # type: ignore[arg-type]


def credit(contract: Contract, account: str) -> int:
    """``account``'s credited rewards (and returned bonds)."""
    return int(contract.functions.credit(account).call())


@dataclass
class FixedTrainer:
    """A trainer that returns given weights whatever the global model (a broken or hostile one)."""

    weights: np.ndarray
    declared_weights: int | None = None
    num_samples: int = 10

    @property
    def num_weights(self) -> int:
        """The length it declares (its model's), by default that of its weights."""
        return self.declared_weights or int(self.weights.size)

    def fit(self, global_weights: np.ndarray, *, round_number: int) -> FitResult:
        """The fixed weights."""
        return FitResult(self.weights.copy(), 0.0)


# ---------------------------------------------------------------- each path end to end


def test_a_direct_participant_is_paid_on_submit_and_averaged_by_the_close(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    # Prepare
    contract = coordinators["plain"]
    participants = [make_participant(isolated, contract, clients[i], i) for i in range(3)]
    model_before = model_values(contract)
    # Execute: each submits, and reads what it earned before the round closes
    outcomes = []
    for participant in participants:
        receipts = act(participant)
        outcome = participant.outcome(1)
        assert outcome is not None
        assert outcome.gas_used == sum(int(r["gasUsed"]) for r in receipts) > 0
        assert credit(contract, participant.account) == outcome.reward_wei
        outcomes.append(outcome)
    closer = RoundCloser(
        chain=isolated, contract=contract, account=relayer, view=participants[0].view
    )
    receipts = closer.close(now=isolated.timestamp())
    # Assert: paid by its distance from the model it trained on; the new model is the exact
    # integer average of the three updates; the closer was paid its fee
    for participant, outcome in zip(participants, outcomes, strict=True):
        expected = distance(model_before, values_of(outcome), "l1")
        tier = reward_tier(expected, THRESHOLDS, REWARDS)
        assert (outcome.round_number, outcome.path, outcome.account) == (
            1,
            "direct",
            participant.account,
        )
        assert (outcome.sample_count, outcome.counted, outcome.relayed) == (SAMPLES, True, False)
        assert (outcome.distance, outcome.tier, outcome.reward_wei) == (
            expected,
            tier.tier,
            tier.amount_wei,
        )
        assert outcome.reward_wei > 0
        assert credit(contract, participant.account) == outcome.reward_wei  # unchanged by the close
        assert not outcome.closed_round
    average = integer_average([values_of(o) for o in outcomes])
    assert len(receipts) == 1
    assert model_values(contract).tolist() == average.tolist()
    assert bytes(contract.functions.modelHash().call()) == vector_hash(pack(average), 3)
    assert read_round(contract).number == 2
    assert credit(contract, relayer) == CLOSE_FEE


def test_a_relayed_participant_is_registered_and_closed_by_the_relay_and_settled_by_the_close(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    # Prepare
    contract = coordinators["plain"]
    view = CoordinatorView.read(isolated, contract)
    relay = Relay(chain=isolated, contract=contract, account=relayer, view=view)
    participants = [
        make_participant(
            isolated,
            contract,
            clients[i],
            i,
            lambda context: RelayedPath(context, relay, fallback_margin=60),
        )
        for i in range(3)
    ]
    model_before = model_values(contract)
    nonces = [nonce(isolated, p.account) for p in participants]
    # Execute: hand over (nothing sent by the clients), register, then the relay's poll closes
    handed = [act(p) for p in participants]
    taken = relay.pending()
    registered = relay.register()
    entries = read_entries(contract)
    before_close = [p.outcome(1) for p in participants]
    closes = relay.poll()
    # Assert
    assert handed == [[], [], []]
    assert [nonce(isolated, p.account) for p in participants] == nonces  # gasless
    assert taken == 3
    assert len(registered) == 1  # one batch
    relayed = events(contract, "UpdateRelayed", registered[0])
    assert [(e["client"], e["relayer"], e["sampleCount"]) for e in relayed] == [
        (p.account, relayer, SAMPLES) for p in participants
    ]
    assert [(e.client, e.relayed) for e in entries] == [(p.account, True) for p in participants]
    assert all(read_progress(contract, p.account).relayed for p in participants)
    assert before_close == [None, None, None]  # a relayed update is settled by the close
    assert len(closes) == 1
    outcomes = [p.outcome(1) for p in participants]
    for participant, outcome in zip(participants, outcomes, strict=True):
        assert outcome is not None
        expected = distance(model_before, values_of(outcome), "l1")
        tier = reward_tier(expected, THRESHOLDS, REWARDS)
        assert (outcome.path, outcome.relayed, outcome.counted, outcome.gas_used) == (
            "relayed",
            True,
            True,
            0,
        )
        assert (outcome.distance, outcome.tier, outcome.reward_wei) == (
            expected,
            tier.tier,
            tier.amount_wei,
        )
        assert credit(contract, participant.account) == outcome.reward_wei > 0
        settled = settlement_receipt(isolated, contract, participant.account, 1)
        assert settled is not None
        assert settled["transactionHash"] == closes[0]["transactionHash"]
    average = integer_average([values_of(o) for o in outcomes if o is not None])
    assert model_values(contract).tolist() == average.tolist()
    assert read_round(contract).number == 2
    # the close paid its fee and the relay fee of each update it carried
    assert credit(contract, relayer) == CLOSE_FEE + 3 * RELAY_FEE
    assert relay.words(1, participants[0].account) == participants[0].trained(1).update.words


def test_a_relayed_client_closes_with_its_own_words_when_its_relay_went_away(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    # Prepare: one relayed client and two direct ones; the relay registers the relayed update,
    # then goes away with its words
    contract = coordinators["plain"]
    view = CoordinatorView.read(isolated, contract)
    relay = Relay(chain=isolated, contract=contract, account=relayer, view=view)
    paths: list[RelayedPath] = []

    def relayed(context: PathContext) -> RelayedPath:
        paths.append(RelayedPath(context, relay, fallback_margin=60))
        return paths[-1]

    participants = [make_participant(isolated, contract, clients[0], 0, relayed)] + [
        make_participant(isolated, contract, clients[i], i) for i in (1, 2)
    ]
    for participant in participants:
        act(participant)
    relay.register()
    path = paths[0]

    def gone(round_number: int, client: str) -> tuple[int, ...] | None:
        return None

    closer = closer_for(
        chain=isolated,
        contract=contract,
        account=clients[0],
        view=view,
        relayed_words=own_words_first(path.words, gone),
    )
    # Execute: the relayed client closes the round itself, before the close window ends
    receipts = closer.close(now=isolated.timestamp())
    # Assert: closed with every update in; the client knows only its own words
    assert len(receipts) == 1
    assert read_round(contract).number == 2
    outcomes = [p.outcome(1) for p in participants]
    assert all(o is not None and o.counted for o in outcomes)
    average = integer_average([values_of(o) for o in outcomes if o is not None])
    assert model_values(contract).tolist() == average.tolist()
    assert path.words(1, clients[0]) == participants[0].trained(1).update.words
    assert path.words(1, clients[1]) is None
    assert path.words(2, clients[0]) is None


def test_a_commit_reveal_participant_posts_its_bond_and_gets_it_back_with_its_reveal(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    # Prepare
    contract = coordinators["commit_reveal"]
    participants = [
        make_participant(isolated, contract, clients[i], i, CommitRevealPath) for i in range(3)
    ]
    model_before = model_values(contract)
    held_before = int(isolated.w3.eth.get_balance(contract.address))
    # Execute: commit (with the bond) while the phase is Commit, reveal once it is Reveal
    commits = [act(p) for p in participants]
    phase_after_commits = read_round(contract).phase
    held_after_commits = int(isolated.w3.eth.get_balance(contract.address))
    unrevealed = [p.outcome(1) for p in participants]
    reveals = [act(p) for p in participants]
    outcomes = [p.outcome(1) for p in participants]
    closer = RoundCloser(
        chain=isolated, contract=contract, account=relayer, view=participants[0].view
    )
    closer.close(now=isolated.timestamp())
    # Assert
    for receipts in commits:
        assert len(receipts) == 1
        sent = isolated.w3.eth.get_transaction(receipts[0]["transactionHash"])
        assert sent["value"] == BOND
        assert [e["bond"] for e in events(contract, "CommitmentAccepted", receipts[0])] == [BOND]
    assert phase_after_commits == "Reveal"  # every expected client committed
    assert held_after_commits == held_before + 3 * BOND
    assert unrevealed == [None, None, None]
    for participant, receipts, outcome in zip(participants, reveals, outcomes, strict=True):
        assert outcome is not None
        returned = events(contract, "BondReturned", receipts[-1])
        assert [(e["client"], e["amount"]) for e in returned] == [(participant.account, BOND)]
        expected = distance(model_before, values_of(outcome), "l1")
        assert (outcome.path, outcome.distance) == ("commit_reveal", expected)
        assert outcome.reward_wei == reward_tier(expected, THRESHOLDS, REWARDS).amount_wei > 0
        assert credit(contract, participant.account) == outcome.reward_wei + BOND
    average = integer_average([values_of(o) for o in outcomes if o is not None])
    assert model_values(contract).tolist() == average.tolist()
    info = read_round(contract)
    assert (info.number, info.phase) == (2, "Commit")


def test_a_masked_participant_registers_shares_submits_and_is_paid_by_the_close(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], relayer: str
) -> None:
    # Prepare
    contract = coordinators["masked"]
    participants = [
        make_participant(isolated, contract, clients[i], i, MaskedPath) for i in range(3)
    ]
    # Execute: one pass per phase: keys, shares, masked words; then the masked close
    phases = []
    sent: list[list[TxReceipt]] = []
    for _ in range(3):
        phases.append(read_round(contract).phase)
        sent = [act(p) for p in participants]
    before_close = [p.outcome(1) for p in participants]
    closer = MaskedRoundCloser(
        chain=isolated, contract=contract, account=relayer, view=participants[0].view
    )
    closer.close(now=isolated.timestamp())
    outcomes = [p.outcome(1) for p in participants]
    # Assert: the sum of the masked words is the sum of the updates; each survivor is paid the
    # first tier (no distance can be measured on masked words)
    assert phases == ["Register", "Share", "Open"]
    assert before_close == [None, None, None]
    for participant, receipts, outcome in zip(participants, sent, outcomes, strict=True):
        assert outcome is not None
        assert (outcome.path, outcome.tier, outcome.reward_wei) == ("masked", 0, REWARDS[0])
        assert credit(contract, participant.account) == REWARDS[0]
        transaction = isolated.w3.eth.get_transaction(receipts[0]["transactionHash"])
        _, args = contract.decode_function_input(transaction["input"])
        assert [int(w) for w in args["words"]] != list(outcome.words)  # masked on the wire
    average = integer_average([values_of(o) for o in outcomes if o is not None])
    assert model_values(contract).tolist() == average.tolist()
    assert read_round(contract).number == 2


# ---------------------------------------------------------------- restarts


def test_a_restarted_participant_never_submits_twice(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str]
) -> None:
    # Prepare
    contract = coordinators["plain"]
    first = make_participant(isolated, contract, clients[0], 0)
    assert len(act(first)) == 1
    sent = nonce(isolated, clients[0])
    # Execute: the same process asks again, and a fresh process for the same account asks
    again = first.pending(read_round(contract))
    restarted = make_participant(isolated, contract, clients[0], 0)
    after_restart = restarted.pending(read_round(contract))
    # Assert: nothing to send; one submission in the round
    assert again == []
    assert after_restart == []
    assert restarted.trained_round is None  # it did not even train
    assert restarted.outcome(1) is None  # its outcome belongs to the process that trained it
    assert nonce(isolated, clients[0]) == sent
    assert read_round(contract).submissions == 1


def test_a_restarted_participant_resumes_a_multi_transaction_submission_at_its_next_segment(
    isolated: Chain,
    coordinators: dict[str, Contract],
    clients: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: one word per segment (three segments), and a calldata budget of one segment per
    # transaction, as a model of thousands of words would need
    contract = coordinators["segmented"]
    call_head = 4 + 32 * 6  # selector, round, sample count, first segment, offset, length
    monkeypatch.setattr(coordinator_module, "MAX_CALLDATA_BYTES", call_head + 32)
    model_before = model_values(contract)
    crashed = make_participant(isolated, contract, clients[1], 1)
    calls = crashed.pending(read_round(contract))
    # Execute: the first process dies after its first transaction; a new one takes over
    send(isolated, calls[0].function, calls[0].sender)
    progress_at_crash = read_progress(contract, clients[1])
    counted_at_crash = read_round(contract).submissions
    restarted = make_participant(isolated, contract, clients[1], 1)
    resumed_calls = restarted.pending(read_round(contract))
    receipts = [send(isolated, c.function, c.sender) for c in resumed_calls]
    restarted.record(1, receipts)
    outcome = restarted.outcome(1)
    # Assert: it sent segments 1 and 2 of the same vector (training is deterministic), and the
    # whole vector counted once
    assert [c.label for c in calls] == [f"submit round 1 segments {s}.." for s in range(3)]
    assert (progress_at_crash.segments_done, counted_at_crash) == (1, 0)  # half-way holds nothing
    assert [c.label for c in resumed_calls] == [f"submit round 1 segments {s}.." for s in (1, 2)]
    assert [c.function.args[2] for c in resumed_calls] == [1, 2]
    assert restarted.trained(1).update.words == crashed.trained(1).update.words
    assert read_progress(contract, clients[1]).segments_done == 3
    assert read_round(contract).submissions == 1
    assert outcome is not None
    assert outcome.words == crashed.trained(1).update.words
    assert outcome.distance == distance(model_before, values_of(outcome), "l1")
    assert restarted.pending(read_round(contract)) == []


def test_an_outcome_whose_receipt_was_lost_is_read_back_from_the_chain(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str]
) -> None:
    # Prepare: the submission lands, but this process never saw its receipt
    contract = coordinators["plain"]
    participant = make_participant(isolated, contract, clients[0], 0)
    model_before = model_values(contract)
    for call in participant.pending(read_round(contract)):
        send(isolated, call.function, call.sender)
    # Execute
    outcome = participant.outcome(1)
    # Assert
    assert outcome is not None
    assert outcome.distance == distance(model_before, values_of(outcome), "l1")
    assert outcome.reward_wei == credit(contract, clients[0]) > 0
    assert outcome.gas_used == 0  # none recorded by this process
    assert participant.pending(read_round(contract)) == []


# ---------------------------------------------------------------- the relayed client's fallback


def test_a_relayed_client_the_relay_leaves_out_submits_directly_at_the_fallback_margin(
    isolated: Chain,
    coordinators: dict[str, Contract],
    clients: list[str],
    relayer: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Prepare: a relay that takes the update and never registers it
    contract = coordinators["plain"]
    view = CoordinatorView.read(isolated, contract)
    relay = Relay(chain=isolated, contract=contract, account=relayer, view=view)
    margin = 100
    participant = relayed_participant(isolated, contract, clients[0], relay, margin)
    deadline = read_round(contract).deadline
    # Execute: hand over; wait while the margin is not reached; then the chain's clock reaches it
    handed = act(participant)
    mine_at(isolated, deadline - margin - 1)
    waiting = act(participant)
    mine_at(isolated, deadline - margin)
    with caplog.at_level(logging.WARNING, logger="fl_client.paths.relayed"):
        fallback = act(participant)
    outcome = participant.outcome(1)
    # Assert: one direct submission before the deadline, paid on submit
    assert handed == []
    assert relay.pending() == 1
    assert waiting == []
    assert len(fallback) == 1
    assert "the relay has not registered its round-1 update" in caplog.text
    progress = read_progress(contract, clients[0])
    assert (progress.round_number, progress.segments_done, progress.relayed) == (1, 1, False)
    assert outcome is not None
    assert (outcome.path, outcome.relayed, outcome.counted) == ("relayed", False, True)
    assert outcome.reward_wei == credit(contract, clients[0]) > 0
    assert act(participant) == []  # and nothing more


def test_a_relayed_client_whose_relay_cannot_be_reached_retries_then_submits_directly(
    isolated: Chain,
    coordinators: dict[str, Contract],
    clients: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Prepare: a relay URL where nothing listens
    contract = coordinators["plain"]
    relay = RelayClient(f"http://127.0.0.1:{free_port()}", timeout=2)
    margin = 100
    participant = relayed_participant(isolated, contract, clients[0], relay, margin)
    deadline = read_round(contract).deadline
    # Execute: before the margin it waits (and tries again); at the margin it submits directly
    with caplog.at_level(logging.WARNING, logger="fl_client.paths.relayed"):
        early = act(participant)
        mine_at(isolated, deadline - margin)
        fallback = act(participant)
    # Assert
    assert early == []
    assert "no relay answers at" in caplog.text
    assert "trying again" in caplog.text
    assert "submitting directly" in caplog.text
    assert len(fallback) == 1
    progress = read_progress(contract, clients[0])
    assert (progress.round_number, progress.relayed) == (1, False)


# ---------------------------------------------------------------- bad inputs, refused unsent


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_weights_are_refused_before_anything_is_sent(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str], bad: float
) -> None:
    contract = coordinators["plain"]
    weights = np.zeros(SMALL_WEIGHTS)
    weights[3] = bad
    participant = make_participant(isolated, contract, clients[0], 0, trainer=FixedTrainer(weights))
    with pytest.raises(
        NonFiniteWeightError, match=r"1 weight\(s\) are NaN or infinite \(first at index 3: "
    ):
        participant.pending(read_round(contract))
    assert nonce(isolated, clients[0]) == 0


def test_a_model_of_the_wrong_size_is_refused_before_anything_is_sent(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str]
) -> None:
    contract = coordinators["plain"]
    with pytest.raises(
        ClientStateError,
        match="the contract holds 40 weights but the model has 39: wrong dataset or model",
    ):
        make_participant(
            isolated, contract, clients[0], 0, trainer=FixedTrainer(np.zeros(SMALL_WEIGHTS - 1))
        )
    # A trainer that declares the right size and returns another one
    liar = make_participant(
        isolated,
        contract,
        clients[0],
        0,
        trainer=FixedTrainer(np.zeros(SMALL_WEIGHTS - 1), declared_weights=SMALL_WEIGHTS),
    )
    with pytest.raises(ShapeError, match="expected 40 weights, got 39"):
        liar.pending(read_round(contract))
    assert nonce(isolated, clients[0]) == 0


def test_weights_beyond_the_range_are_clipped_and_out_of_range_words_refused_unsent(
    isolated: Chain,
    coordinators: dict[str, Contract],
    clients: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Prepare: a trainer whose weights 1 and 2 lie beyond +-3000/1024
    contract = coordinators["plain"]
    weights = np.zeros(SMALL_WEIGHTS)
    weights[1], weights[2] = 5.0, -4.0
    participant = make_participant(isolated, contract, clients[0], 0, trainer=FixedTrainer(weights))
    # Execute / Assert: the participant clips them (and says so)
    with caplog.at_level(logging.WARNING, logger="fl_client.participant"):
        act(participant)
    outcome = participant.outcome(1)
    assert outcome is not None
    assert outcome.clipped == 2
    assert values_of(outcome)[:3].tolist() == [0, 3000, -3000]
    assert "2 weight(s) clipped to +-3000/1024" in caplog.text
    # Execute / Assert: words holding 3001 are refused by the contract's check, decoded unsent
    words = with_value(pack(np.zeros(SMALL_WEIGHTS, dtype=np.int64)), 5, 3001)
    sent = nonce(isolated, clients[1])
    with reverts("CoordinatorWeightOutOfRange", index=5, value=3001, maxAbs=3000):
        send(isolated, contract.functions.submit(1, 10, 0, words), clients[1])
    assert nonce(isolated, clients[1]) == sent


def test_calldata_over_the_transaction_limit_is_refused_before_sending(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str]
) -> None:
    contract = coordinators["plain"]
    zero_word = sum(OFFSET << (16 * lane) for lane in range(16))
    words = [zero_word] * 4_100
    size = 4 + 32 * 5 + 32 * len(words)  # selector, 3 values, offset, length, words
    assert size > MAX_CALLDATA_BYTES
    with pytest.raises(TransactionTooLargeError) as raised:
        send(isolated, contract.functions.submit(1, 10, 0, words), clients[0], what="submit")
    assert str(raised.value) == (
        f"submit: {size:,} bytes of calldata, above the {MAX_CALLDATA_BYTES:,} that a transaction "
        "may carry to pass geth-style pools (128 KiB encoded)"
    )
    assert nonce(isolated, clients[0]) == 0


def test_an_account_without_funds_gets_a_typed_error_and_sends_nothing(
    isolated: Chain, coordinators: dict[str, Contract]
) -> None:
    assert isolated.tester is not None
    poor = isolated.tester.add_account("0x" + "42" * 32)
    contract = coordinators["plain"]
    participant = make_participant(isolated, contract, poor, 0)
    calls = participant.pending(read_round(contract))
    with pytest.raises(InsufficientFundsError, match=f"account {poor} holds 0 wei, not enough"):
        send(isolated, calls[0].function, calls[0].sender, what=calls[0].label)
    assert nonce(isolated, poor) == 0


def test_a_wrong_round_and_a_second_submission_are_refused_by_name_unsent(
    isolated: Chain, coordinators: dict[str, Contract], clients: list[str]
) -> None:
    contract = coordinators["plain"]
    words = pack(np.zeros(SMALL_WEIGHTS, dtype=np.int64))
    with reverts("CoordinatorWrongRound", given=7, current=1):
        send(isolated, contract.functions.submit(7, 5, 0, words), clients[0])
    send(isolated, contract.functions.submit(1, 5, 0, words), clients[0])
    sent = nonce(isolated, clients[0])
    with reverts("CoordinatorAlreadySubmitted", round=1, account=clients[0]):
        send(isolated, contract.functions.submit(1, 5, 0, words), clients[0])
    assert nonce(isolated, clients[0]) == sent


def test_a_node_that_is_down_gives_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(NodeUnreachableError, match=f"no Ethereum node answers at {url}"):
        connect("anvil", url=url, timeout=2.0)


@pytest.mark.parametrize("word", [-1, 2**256, 1.5], ids=["negative", "2**256", "float"])
@pytest.mark.parametrize("builder", ["submit", "reveal", "masked"])
def test_a_word_that_is_not_a_uint256_is_refused_typed_before_anything_is_encoded(
    coordinators: dict[str, Contract], clients: list[str], word: Any, builder: str
) -> None:
    contract = coordinators["plain"]
    words: list[int] = [0, word, 0]
    common: dict[str, Any] = {"round_number": 1, "sample_count": 1, "words": words}
    builders: dict[str, Callable[[], object]] = {
        "submit": lambda: submit_calls(contract, clients[0], words_per_segment=512, **common),
        "reveal": lambda: reveal_calls(
            contract, clients[0], words_per_segment=512, salt=b"\x00" * 32, **common
        ),
        "masked": lambda: masked_calls(contract, clients[0], words_per_segment=512, **common),
    }
    with pytest.raises(
        OutOfRangeError, match=r"word 1 is .*: a word is an integer in 0\.\.2\*\*256-1"
    ):
        builders[builder]()
