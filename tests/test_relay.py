"""The relay: what it refuses (before spending gas), how it registers and closes, its HTTP server
on 127.0.0.1, and the client's handle on it.

The HTTP server runs in a thread of this process (aiohttp's runner on its own event loop), on a
free port; its chain work runs on the server's single worker thread, so the test thread touches the
embedded chain only while the server is idle (its poller sleeps) or stopped.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import requests
from aiohttp import web
from web3.contract import Contract

from fl_client.aggregation import integer_average
from fl_client.chain import (
    Chain,
    CoordinatorView,
    SignedUpdate,
    UpdateSignature,
    read_entries,
    read_progress,
    read_round,
    relay_function,
    send,
    sign_update,
    update_typed_data,
)
from fl_client.chain.signing import malleable_twin
from fl_client.codec import pack, segment_hashes, unpack, vector_hash
from fl_client.errors import RelayUnreachableError, UpdateRefusedError
from fl_client.node import free_port
from fl_client.relay import Relay, RelayClient
from fl_client.relay.server import make_app
from fl_client.relay.wire import to_json, words_to_hex
from tests.conftest import SMALL_WEIGHTS, close, events, signed, submit
from tests.pipeline_helpers import mine_at, model_values, module_deployments, with_lane, with_value

CLOSE_FEE, RELAY_FEE = 7, 3  # small_params' fees


def vector(seed: int) -> np.ndarray:
    """A small update, its own for each seed."""
    return np.random.default_rng(seed).integers(-200, 201, SMALL_WEIGHTS, dtype=np.int64)


@pytest.fixture(scope="module")
def coordinators(chain: Chain) -> Iterator[dict[str, Contract]]:
    """A coordinator expecting three updates (two suffice after the deadline), and another one on
    the same chain (for updates signed for the wrong contract)."""
    hour = {"round_duration": 3600}  # round 1 stays open for the whole module
    yield from module_deployments(chain, {"main": hour, "other": hour})


@pytest.fixture
def coordinator(isolated: Chain, coordinators: dict[str, Contract]) -> Contract:
    return coordinators["main"]


@pytest.fixture
def relay(isolated: Chain, coordinator: Contract, relayer: str) -> Relay:
    return Relay(
        chain=isolated,
        contract=coordinator,
        account=relayer,
        view=CoordinatorView.read(isolated, coordinator),
    )


def nonce(chain: Chain, account: str) -> int:
    return int(chain.w3.eth.get_transaction_count(account))  # type: ignore[arg-type]


def signed_for(chain: Chain, update: SignedUpdate, *, contract: str, chain_id: int) -> SignedUpdate:
    """``update`` signed by its client for the coordinator ``contract`` on chain ``chain_id``."""
    data = update_typed_data(
        chain_id=chain_id,
        contract=contract,
        round_number=update.round_number,
        segments=1,
        sample_count=update.sample_count,
        words_hash=vector_hash(update.words, 512),
    )
    return replace(update, signature=sign_update(chain.signer(update.client), data))


# ---------------------------------------------------------------- refusals


def refused(relay: Relay, update: SignedUpdate, reason: str) -> None:
    """``relay`` refuses ``update`` with ``reason`` and queues nothing."""
    pending = relay.pending()
    with pytest.raises(UpdateRefusedError) as raised:
        relay.hand_over(update)
    assert str(raised.value) == reason
    assert relay.pending() == pending


def test_an_update_for_another_round_is_refused(
    relay: Relay, isolated: Chain, coordinator: Contract, client_a: str
) -> None:
    refused(
        relay,
        signed(isolated, coordinator, client_a, vector(1), round_number=2),
        "round 2 is not open for relayed updates (the contract is at round 1, Open)",
    )


def test_an_update_for_a_closed_round_is_refused(
    relay: Relay, isolated: Chain, coordinator: Contract, clients: list[str], relayer: str
) -> None:
    late = signed(isolated, coordinator, clients[3], vector(4))
    vectors = [vector(i) for i in range(3)]
    for i in range(3):
        submit(isolated, coordinator, clients[i], vectors[i])
    close(isolated, coordinator, relayer, vectors)
    assert read_round(coordinator).number == 2
    refused(
        relay, late, "round 1 is not open for relayed updates (the contract is at round 2, Open)"
    )


def test_an_update_after_the_deadline_is_refused(
    relay: Relay, isolated: Chain, coordinator: Contract, client_a: str
) -> None:
    update = signed(isolated, coordinator, client_a, vector(1))
    mine_at(isolated, read_round(coordinator).deadline)
    refused(relay, update, "round 1's deadline has passed")


def test_an_update_signed_by_another_key_is_refused(
    relay: Relay, isolated: Chain, coordinator: Contract, client_a: str, client_b: str
) -> None:
    by_b = signed(isolated, coordinator, client_b, vector(1))
    refused(
        relay,
        replace(by_b, client=client_a),
        f"the signature recovers to {client_b}, not {client_a} (signed for another round, "
        "contract or chain, or altered)",
    )


def test_altered_words_or_sample_count_break_the_signature(
    relay: Relay, isolated: Chain, coordinator: Contract, client_a: str
) -> None:
    honest = signed(isolated, coordinator, client_a, vector(1), sample_count=10)
    words = tuple(pack(vector(1) + 1))  # other words, with their own (matching) segment hashes
    altered_words = replace(honest, words=words, segment_hashes=tuple(segment_hashes(words, 512)))
    altered_count = replace(honest, sample_count=11)
    for altered in (altered_words, altered_count):
        with pytest.raises(UpdateRefusedError, match=f"not {client_a} \\(signed for another"):
            relay.hand_over(altered)
    assert relay.pending() == 0


def test_an_update_signed_for_another_contract_or_chain_is_refused(
    relay: Relay,
    isolated: Chain,
    coordinator: Contract,
    coordinators: dict[str, Contract],
    client_a: str,
) -> None:
    honest = signed(isolated, coordinator, client_a, vector(1))
    chain_id = isolated.chain_id()
    other_contract = signed_for(
        isolated, honest, contract=coordinators["other"].address, chain_id=chain_id
    )
    other_chain = signed_for(isolated, honest, contract=coordinator.address, chain_id=chain_id + 1)
    for update in (other_contract, other_chain):
        with pytest.raises(UpdateRefusedError, match="signed for another round, contract or chain"):
            relay.hand_over(update)
    # the control: signed again for this contract and chain, it is taken
    relay.hand_over(signed_for(isolated, honest, contract=coordinator.address, chain_id=chain_id))
    assert relay.pending() == 1


def test_malformed_words_are_refused(
    relay: Relay, isolated: Chain, coordinator: Contract, client_a: str
) -> None:
    honest = signed(isolated, coordinator, client_a, vector(1))
    short = honest.words[:2]
    refused(
        relay,
        replace(honest, words=short, segment_hashes=tuple(segment_hashes(short, 512))),
        "words: 2 where the model has 3",
    )
    beyond = tuple(with_value(honest.words, 5, 3001))
    refused(
        relay,
        replace(honest, words=beyond, segment_hashes=tuple(segment_hashes(beyond, 512))),
        "weight 5 is 3001, outside +-3000",
    )
    padded = tuple(with_lane(honest.words, SMALL_WEIGHTS + 1, 1))  # a padding lane not zero
    refused(
        relay,
        replace(honest, words=padded, segment_hashes=tuple(segment_hashes(padded, 512))),
        "words: padding lanes past the last weight are not zero",
    )
    refused(relay, replace(honest, sample_count=0), "sampleCount 0 is out of range")


def test_segment_hashes_that_do_not_match_the_words_are_refused(
    relay: Relay, isolated: Chain, coordinator: Contract, client_a: str
) -> None:
    honest = signed(isolated, coordinator, client_a, vector(1))
    other = tuple(segment_hashes(pack(vector(2)), 512))
    refused(
        relay, replace(honest, segment_hashes=other), "the segment hashes do not match the words"
    )


def test_a_duplicate_and_a_client_that_already_submitted_are_refused(
    relay: Relay, isolated: Chain, coordinator: Contract, client_a: str, client_b: str
) -> None:
    update = signed(isolated, coordinator, client_a, vector(1))
    relay.hand_over(update)
    refused(relay, update, f"{client_a} already handed an update for round 1")
    submit(isolated, coordinator, client_b, vector(2))
    refused(
        relay,
        signed(isolated, coordinator, client_b, vector(2)),
        f"{client_b} already has an update in round 1",
    )


def test_a_refusal_costs_the_relay_nothing(
    relay: Relay, isolated: Chain, coordinator: Contract, client_a: str, relayer: str
) -> None:
    sent = nonce(isolated, relayer)
    with pytest.raises(UpdateRefusedError):
        relay.hand_over(signed(isolated, coordinator, client_a, vector(1), round_number=3))
    assert relay.register() == []
    assert relay.poll() == []
    assert nonce(isolated, relayer) == sent


def test_signature_forms_the_contract_refuses_are_refused_at_hand_over(
    relay: Relay, isolated: Chain, coordinator: Contract, client_a: str
) -> None:
    good = signed(isolated, coordinator, client_a, vector(1))
    sig = good.signature
    # eth-account recovers the signer from each of these; the contract takes none of them, and
    # one of them in a batch would revert the batch.
    refused(
        relay,
        replace(good, signature=replace(sig, v=sig.v - 27)),
        f"signature.v is {sig.v - 27}: the contract takes 27 or 28",
    )
    refused(
        relay,
        replace(good, signature=replace(sig, v=300)),
        "signature.v is 300: the contract takes 27 or 28",
    )
    refused(
        relay,
        replace(good, signature=malleable_twin(sig)),
        "signature r or s is out of range (the contract takes 0 < r < n and a low s, "
        "0 < s <= n/2, so that a signature has one form)",
    )
    relay.hand_over(good)  # the canonical form is taken
    assert relay.pending() == 1


def test_what_the_contract_would_refuse_is_refused_at_hand_over_with_its_error(
    relay: Relay, isolated: Chain, coordinator: Contract, client_a: str, relayer: str
) -> None:
    sent = nonce(isolated, relayer)
    refused(
        relay,
        signed(isolated, coordinator, client_a, vector(1), sample_count=1001),
        "the contract would refuse it: CoordinatorInvalidSampleCount(sampleCount=1001, max=1000)",
    )
    assert nonce(isolated, relayer) == sent  # a free call, nothing sent


def test_a_round_refuses_more_relayed_updates_than_it_has_places(
    relay: Relay, isolated: Chain, coordinator: Contract, clients: list[str]
) -> None:
    for i in range(3):
        relay.hand_over(signed(isolated, coordinator, clients[i], vector(i)))
    refused(
        relay,
        signed(isolated, coordinator, clients[3], vector(3)),
        "round 1 is full: 0 update(s) registered and 3 waiting here, for 3 places",
    )


def test_register_sends_no_more_updates_than_the_places_left(
    relay: Relay, isolated: Chain, coordinator: Contract, clients: list[str]
) -> None:
    # Prepare: three pending for three places, then a fourth client takes one directly
    for i in range(3):
        relay.hand_over(signed(isolated, coordinator, clients[i], vector(i)))
    submit(isolated, coordinator, clients[3], vector(3))
    # Execute: the batch of three would revert (CoordinatorRoundFull); two are sent
    receipts = relay.register()
    # Assert
    assert [e["client"] for r in receipts for e in events(coordinator, "UpdateRelayed", r)] == [
        clients[0],
        clients[1],
    ]
    assert read_round(coordinator).submissions == 3
    assert relay.register() == []  # the third waits, and goes when the round does


def test_an_update_registered_first_by_someone_else_keeps_its_words_for_the_close(
    relay: Relay, isolated: Chain, coordinator: Contract, clients: list[str]
) -> None:
    # Prepare: someone copies a's signed update (from the relay's pending batch) and registers it
    updates = [signed(isolated, coordinator, clients[i], vector(i)) for i in range(3)]
    for update in updates:
        relay.hand_over(update)
    front_runner = clients[5]
    send(
        isolated,
        relay_function(coordinator, 1, [updates[0]]),
        front_runner,
        what="front-run",
    )
    # Execute
    relay.register()
    # Assert: a's entry is the front-runner's registration; the relay still has its words and
    # closes the round with them
    assert relay.words(1, clients[0]) == updates[0].words
    assert [e.client for e in read_entries(coordinator)] == clients[:3]
    mine_at(isolated, read_round(coordinator).deadline)
    relay.poll()
    assert read_round(coordinator).number == 2
    expected = integer_average([vector(i) for i in range(3)])
    assert np.array_equal(model_values(coordinator), expected)


# ---------------------------------------------------------------- registering and closing


def test_register_sends_the_pending_updates_in_one_batch(
    relay: Relay, isolated: Chain, coordinator: Contract, clients: list[str], relayer: str
) -> None:
    updates = [signed(isolated, coordinator, clients[i], vector(i)) for i in range(2)]
    for update in updates:
        relay.hand_over(update)
    receipts = relay.register()
    assert len(receipts) == 1
    relayed = events(coordinator, "UpdateRelayed", receipts[0])
    assert [(e["round"], e["client"], e["relayer"]) for e in relayed] == [
        (1, clients[0], relayer),
        (1, clients[1], relayer),
    ]
    assert [(e.client, e.relayed) for e in read_entries(coordinator)] == [
        (clients[0], True),
        (clients[1], True),
    ]
    assert relay.pending() == 0
    assert relay.words(1, clients[0]) == updates[0].words
    assert relay.register() == []  # nothing left


def test_register_splits_batches_to_fit_the_transaction_gas_cap(
    isolated: Chain, coordinator: Contract, clients: list[str], relayer: str
) -> None:
    # A chain whose per-transaction cap holds one registration: one transaction per update
    capped = replace(isolated, network=replace(isolated.network, tx_gas_cap=200_000))
    relay = Relay(
        chain=capped,
        contract=coordinator,
        account=relayer,
        view=CoordinatorView.read(capped, coordinator),
    )
    for i in range(3):
        relay.hand_over(signed(isolated, coordinator, clients[i], vector(i)))
    receipts = relay.register()
    assert len(receipts) == 3
    assert [len(events(coordinator, "UpdateRelayed", r)) for r in receipts] == [1, 1, 1]
    assert all(int(r["gasUsed"]) <= 200_000 for r in receipts)
    assert [e.client for e in read_entries(coordinator)] == clients[:3]


def test_register_drops_the_update_of_a_client_that_submitted_directly_meanwhile(
    relay: Relay, isolated: Chain, coordinator: Contract, client_a: str, client_b: str
) -> None:
    # Prepare: client a's relayed update is still pending when a falls back to submitting directly
    relay.hand_over(signed(isolated, coordinator, client_a, vector(1)))
    relay.hand_over(signed(isolated, coordinator, client_b, vector(2)))
    submit(isolated, coordinator, client_a, vector(1))
    # Execute
    receipts = relay.register()
    # Assert: b's update is registered; a's direct submission stands
    assert [e["client"] for r in receipts for e in events(coordinator, "UpdateRelayed", r)] == [
        client_b
    ]
    assert [(e.client, e.relayed) for e in read_entries(coordinator)] == [
        (client_a, False),
        (client_b, True),
    ]
    assert relay.pending() == 0


def test_poll_registers_and_closes_a_full_round(
    relay: Relay, isolated: Chain, coordinator: Contract, clients: list[str], relayer: str
) -> None:
    # Prepare: two relayed updates and a direct one make the round full
    vectors = [vector(i) for i in range(3)]
    for i in range(2):
        relay.hand_over(signed(isolated, coordinator, clients[i], vectors[i], sample_count=5))
    submit(isolated, coordinator, clients[2], vectors[2])
    # Execute
    receipts = relay.poll()
    # Assert: one registration and one close; the new model is the exact average
    assert len(receipts) == 2
    assert [e["round"] for e in events(coordinator, "RoundClosed", receipts[-1])] == [1]
    assert model_values(coordinator) == integer_average(vectors).tolist()
    assert read_round(coordinator).number == 2
    paid = {
        e["client"]: e["reward"] for e in events(coordinator, "SubmissionAccepted", receipts[-1])
    }
    assert set(paid) == set(clients[:2])  # the relayed updates are settled by the close
    assert int(coordinator.functions.credit(relayer).call()) == CLOSE_FEE + 2 * RELAY_FEE
    assert relay.words(1, clients[0]) is not None  # kept for a round, for late readers


def test_poll_waits_while_the_round_is_not_full(
    relay: Relay, isolated: Chain, coordinator: Contract, clients: list[str]
) -> None:
    relay.hand_over(signed(isolated, coordinator, clients[0], vector(0)))
    receipts = relay.poll()
    assert len(receipts) == 1  # the registration only
    assert read_round(coordinator).number == 1
    assert read_progress(coordinator, clients[0]).relayed


# ---------------------------------------------------------------- the HTTP server and its client


@contextmanager
def serving(relay: Relay, *, poll_interval: float = 3600.0) -> Iterator[str]:
    """The relay's aiohttp app on 127.0.0.1 on a free port, in a thread; its URL. Returns once
    the first poll is done (the poller then sleeps ``poll_interval``); stops on exit."""
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(make_app(relay, poll_interval=poll_interval))
    started = threading.Event()
    failures: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)
            started.set()
            return
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, name="relay-server")
    thread.start()
    try:
        assert started.wait(10), "the relay server did not start"
        assert not failures, failures
        url = f"http://127.0.0.1:{port}"
        # /status runs on the worker after the first poll: once it answers, the worker is idle
        assert requests.get(f"{url}/status", timeout=30).status_code == 200
        yield url
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        assert not thread.is_alive(), "the relay server did not stop"


def test_the_server_takes_refuses_and_reports(
    relay: Relay, isolated: Chain, coordinator: Contract, clients: list[str], relayer: str
) -> None:
    # Prepare (the chain is read here, before the server's worker uses it)
    good = signed(isolated, coordinator, clients[0], vector(0))
    bad = replace(signed(isolated, coordinator, clients[1], vector(1)), sample_count=2)
    address = str(coordinator.address)
    with serving(relay) as url:
        # Execute
        taken = requests.post(f"{url}/updates", json=to_json(good), timeout=30)
        refusal = requests.post(f"{url}/updates", json=to_json(bad), timeout=30)
        not_json = requests.post(
            f"{url}/updates", data=b"{", headers={"Content-Type": "application/json"}, timeout=30
        )
        incomplete = requests.post(f"{url}/updates", json={"round": 1}, timeout=30)
        status = requests.get(f"{url}/status", timeout=30)
        unregistered = requests.get(f"{url}/rounds/1/clients/{clients[0]}/words", timeout=30)
    # Assert
    assert taken.status_code == 202
    assert taken.json() == {"accepted": True, "client": clients[0], "round": 1}
    assert refusal.status_code == 400
    assert f"not {clients[1]} (signed for another round" in refusal.json()["error"]
    assert (not_json.status_code, not_json.json()) == (400, {"error": "the body is not JSON"})
    assert incomplete.status_code == 400
    assert incomplete.json()["error"].startswith("missing field(s): client, sampleCount")
    assert status.status_code == 200
    assert status.json() == {"round": 1, "phase": "Open", "pending": 1, "address": address}
    assert unregistered.status_code == 404  # taken, not registered yet
    assert relay.pending() == 1
    assert read_entries(coordinator) == []


def test_the_server_serves_the_words_of_registered_updates(
    relay: Relay, isolated: Chain, coordinator: Contract, clients: list[str]
) -> None:
    update = signed(isolated, coordinator, clients[0], vector(0))
    relay.hand_over(update)
    relay.register()
    with serving(relay) as url:
        found = requests.get(f"{url}/rounds/1/clients/{clients[0].lower()}/words", timeout=30)
        other_round = requests.get(f"{url}/rounds/2/clients/{clients[0]}/words", timeout=30)
        bad_round = requests.get(f"{url}/rounds/one/clients/{clients[0]}/words", timeout=30)
        bad_client = requests.get(f"{url}/rounds/1/clients/0x1234/words", timeout=30)
        via_client = RelayClient(url).words(1, clients[0])
        unknown = RelayClient(url).words(1, clients[1])
    assert found.status_code == 200
    assert found.json() == {"words": words_to_hex(update.words)}
    assert other_round.status_code == 404
    assert (bad_round.status_code, bad_round.json()) == (400, {"error": "round must be an integer"})
    assert (bad_client.status_code, bad_client.json()) == (
        400,
        {"error": "client must be an address"},
    )
    assert via_client == update.words
    assert unknown is None


def test_clients_hand_over_through_http_and_the_poller_closes_the_round(
    relay: Relay, isolated: Chain, coordinator: Contract, clients: list[str], relayer: str
) -> None:
    # Prepare: three signed updates (the chain is read before the server starts)
    vectors = [vector(i) for i in range(3)]
    updates = [signed(isolated, coordinator, clients[i], vectors[i]) for i in range(3)]
    with serving(relay, poll_interval=0.05) as url:
        handle = RelayClient(url)
        # Execute
        handle.hand_over(updates[0])
        with pytest.raises(UpdateRefusedError) as refused_twice:
            handle.hand_over(updates[0])  # the round cannot close before the other two
        for update in updates[1:]:
            handle.hand_over(update)
        for _ in range(600):
            status = requests.get(f"{url}/status", timeout=30).json()
            if status["round"] == 2:
                break
        words = handle.words(1, clients[2])
    # Assert: registered and closed by the relay; the model is the exact average
    assert status == {"round": 2, "phase": "Open", "pending": 0, "address": coordinator.address}
    assert str(refused_twice.value) == (
        f"the relay refused the update (400): {clients[0]} already handed an update for round 1"
    )
    assert words == updates[2].words
    assert unpack(list(words), SMALL_WEIGHTS).tolist() == vectors[2].tolist()
    assert model_values(coordinator) == integer_average(vectors).tolist()
    assert int(coordinator.functions.credit(relayer).call()) == CLOSE_FEE + 3 * RELAY_FEE


def test_a_relay_client_with_nothing_listening_raises_relay_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    handle = RelayClient(url, timeout=5)
    update = SignedUpdate(
        round_number=1,
        client="0x" + "11" * 20,
        sample_count=1,
        segment_hashes=(bytes(32),),
        signature=UpdateSignature(v=27, r=bytes(32), s=bytes(32)),  # never leaves this process
        words=(0,),
    )
    with pytest.raises(
        RelayUnreachableError, match=f"no relay answers at {url} \\(ConnectionError\\)"
    ):
        handle.hand_over(update)
    assert handle.words(1, update.client) is None  # a closer goes on without it


def test_the_poller_outlives_a_poll_that_fails_unexpectedly(
    relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    original = relay.poll

    def flaky() -> list[Any]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("not a chain error")
        return original()

    monkeypatch.setattr(relay, "poll", flaky)
    with serving(relay, poll_interval=0.05):
        deadline = time.monotonic() + 20
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(calls) >= 3


def test_the_server_refuses_words_that_are_not_hex_with_a_400(
    relay: Relay, isolated: Chain, coordinator: Contract, client_a: str
) -> None:
    body = {**to_json(signed(isolated, coordinator, client_a, vector(1))), "words": "0xzz"}
    with serving(relay) as url:
        answer = requests.post(f"{url}/updates", json=body, timeout=30)
    assert (answer.status_code, answer.json()) == (
        400,
        {"error": "words is not a hex string of whole bytes"},
    )
