"""The dashboard: its history rebuilt from the coordinator's events and calldata, and the page in a
real browser.

The first tests hold the pure parts (the ledger's reasons and gas, the models rebuilt from closes)
to the contract's rules on synthetic events. The end-to-end test starts anvil on a free port of
127.0.0.1 (stopped by its process id, also when the test fails), deploys with the command line,
plays two rounds with three clients in this process, serves the dashboard from its own process
(``python -m fl_client.dashboard``), opens the page in Debian's headless Chromium driven by
Playwright, and compares what the page shows with what ``query`` prints. Node and deployment
records go to temporary folders (``FL_STATE_DIR``, ``FL_DEPLOYMENTS_DIR``).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_utils.address import to_checksum_address

from fl_client.aggregation import NO_TIER, integer_average, trimmed_average
from fl_client.cli import main as cli_main
from fl_client.codec import pack, split_segments, unpack, vector_hash
from fl_client.config import ALIGNMENT_OFF, PROJECT_ROOT, FixedPointFormat, load_config
from fl_client.dashboard.cli import main as dashboard_main
from fl_client.dashboard.history import (
    INITIAL_SOURCE,
    NOT_EVALUATED,
    READ_SOURCE,
    History,
    Parameters,
)
from fl_client.dashboard.ledger import (
    DISTANCE_BOUND_OFF,
    ChainEvent,
    Entry,
    Ledger,
    Rules,
    unpaid_reason,
)
from fl_client.dashboard.models import CloseCall, ModelHistory
from fl_client.dashboard.tracker import Tracker
from fl_client.evaluation import Evaluator
from fl_client.node import free_port

CHROMIUM = Path("/usr/bin/chromium")
# Debian's Chromium as the machine's notes start it: no sandbox as root, and no background
# networking (the machine has no network beyond the package registries).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WEI_PER_ETH = Decimal(10**18)
ALICE = to_checksum_address("0x" + "a1" * 20)
BOB = to_checksum_address("0x" + "b2" * 20)
CAROL = to_checksum_address("0x" + "c3" * 20)
DAVE = to_checksum_address("0x" + "d4" * 20)
CLOSER = to_checksum_address("0x" + "e5" * 20)
ZERO = to_checksum_address("0x" + "00" * 20)
RULES = Rules(
    max_counted_distance=5_000,
    min_alignment_bps=0,
    min_reward_distance=10,
    tier_thresholds=(1_000, 3_000),
    tier_rewards=(300, 100),
)


# ---------------------------------------------------------------- the ledger (pure)


class Events:
    """Synthetic coordinator events in chain order, one transaction at a time."""

    def __init__(self) -> None:
        self.items: list[ChainEvent] = []
        self.block = 0

    def tx(self, *events: tuple[str, dict[str, Any]]) -> str:
        self.block += 1
        transaction = f"0x{self.block:064x}"
        for index, (name, args) in enumerate(events):
            self.items.append(ChainEvent(name, args, self.block, transaction, index))
        return transaction


def _opened(round_number: int, deadline: int) -> tuple[str, dict[str, Any]]:
    return ("RoundOpened", {"round": round_number, "deadline": deadline})


def _accepted(
    round_number: int,
    client: str,
    distance: int,
    *,
    tier: int,
    reward: int,
    counted: bool = True,
    relayed: bool = False,
    along: int = 0,
    against: int = 0,
    samples: int = 1,
) -> tuple[str, dict[str, Any]]:
    return (
        "SubmissionAccepted",
        {
            "round": round_number,
            "client": client,
            "sampleCount": samples,
            "distance": distance,
            "along": along,
            "against": against,
            "tier": tier,
            "reward": reward,
            "counted": counted,
            "relayed": relayed,
        },
    )


def test_ledger_tells_who_was_paid_what_and_why_updates_were_left_out() -> None:
    # Prepare: round 1 with a paid update, a poisoner above the bound, a sign flipper below the
    # guard, a relayed update nobody supplied, and a free-rider; then a close, a withdrawal.
    events = Events()
    deploy = events.tx(
        ("OwnershipTransferred", {"previousOwner": ZERO, "newOwner": CLOSER}),
        ("PoolFunded", {"funder": CLOSER, "amount": 10_000}),
    )
    events.tx(("InitialModelLoaded", {"firstSegment": 0, "count": 1}), _opened(1, 600))
    submit_alice = events.tx(_accepted(1, ALICE, 900, tier=0, reward=300))
    events.tx(_accepted(1, BOB, 9_000, tier=NO_TIER, reward=0, counted=False))
    events.tx(
        _accepted(1, CAROL, 2_000, tier=NO_TIER, reward=0, counted=False, along=100, against=900)
    )
    relay = events.tx(
        ("UpdateRelayed", {"round": 1, "client": DAVE, "relayer": CLOSER, "sampleCount": 1})
    )
    events.tx(_accepted(1, CLOSER, 5, tier=NO_TIER, reward=0))
    close = events.tx(
        _accepted(1, DAVE, 0, tier=NO_TIER, reward=0, counted=False, relayed=True),
        (
            "SegmentClosed",
            {"round": 1, "segment": 0, "closer": CLOSER, "entries": 2, "relayed": 0, "fee": 7},
        ),
        (
            "RoundClosed",
            {"round": 1, "modelVersion": 1, "modelHash": b"\x01" * 32, "submissions": 2},
        ),
        _opened(2, 1_200),
    )
    events.tx(("CreditWithdrawn", {"client": ALICE, "amount": 300}))

    # Execute
    ledger = Ledger(RULES)
    for event in events.items:
        ledger.apply(event)
    for gas, transaction in enumerate((deploy, submit_alice, relay, close), start=1):
        ledger.record_gas(transaction, 1_000 * gas)

    # Assert: the history, the reasons, the money and the gas of each round.
    notes = {s.client: s.note for s in ledger.submissions}
    assert notes[ALICE] is None
    assert notes[BOB] == "distance 9,000 above the poisoning bound 5,000 (maxCountedDistance)"
    assert notes[CAROL] == "alignment -0.800 below the direction guard +0.00 (minAlignment)"
    assert notes[DAVE] == "dropped by a close: its relayer did not supply its words in time"
    assert notes[CLOSER] == "unpaid: distance 5 below the free-rider guard 10 (minRewardDistance)"
    assert ledger.failed_in(close) == frozenset({DAVE})
    assert [e.client for e in ledger.rounds[1].entries] == [ALICE, DAVE, CLOSER]
    first = ledger.rounds[1]
    assert (first.status, first.model_version, first.counted) == ("closed", 1, 2)
    assert (first.rewards, first.fees) == (300, 7)
    assert first.gas == {"submissions": 2_000 + 3_000, "closes": 4_000, "other": 0}
    assert ledger.rounds[2].status == "open"
    assert ledger.deployment_gas == 1_000
    assert ledger.created_block == 1
    alice, closer = ledger.accounts[ALICE], ledger.accounts[CLOSER]
    assert (alice.rewards, alice.withdrawn, alice.left_out) == (300, 300, 0)
    assert (closer.fees, closer.rewards, closer.submissions) == (7, 0, 1)
    assert ledger.accounts[BOB].left_out == 1
    assert [(f.funder, f.amount) for f in ledger.fundings] == [(CLOSER, 10_000)]


def test_ledger_notes_a_reward_cut_short_by_an_empty_pool_and_rules_that_are_off() -> None:
    off = Rules(DISTANCE_BOUND_OFF, ALIGNMENT_OFF, 0, (1_000,), (300,))
    events = Events()
    events.tx(_opened(1, 600))
    events.tx(_accepted(1, ALICE, 900, tier=0, reward=120))
    events.tx(_accepted(1, BOB, 10**9, tier=NO_TIER, reward=0, counted=False, against=10**9))
    ledger = Ledger(off)
    for event in events.items:
        ledger.apply(event)
    notes = [s.note for s in ledger.submissions]
    assert notes == ["paid what was left in the pool (T1 pays 300 wei)", "left out of the average"]


def test_ledger_explains_an_unpaid_update_under_the_progress_reference_by_its_shortfall() -> None:
    """Under ``progress`` the close's ``RewardSettled`` carries the shortfall in basis points, not
    a distance: an unpaid update's note names the shortfall and both guards, and a paid one has
    none."""
    rules = Rules(DISTANCE_BOUND_OFF, ALIGNMENT_OFF, 400, (5_000, 10_000), (300, 100), "progress")
    assert unpaid_reason(rules, distance=15_000, tier=NO_TIER, reward=0) == (
        "unpaid: shortfall 15,000 bps beyond the last reward tier, or closer than the free-rider "
        "guard 400 to the old or the new model"
    )
    assert unpaid_reason(rules, distance=4_000, tier=0, reward=300) is None


# ---------------------------------------------------------------- models rebuilt from closes (pure)


def _vector(seed: int, size: int = 40) -> np.ndarray:
    return np.random.default_rng(seed).integers(-3000, 3001, size=size)


@pytest.mark.parametrize("sample_weighted", [False, True])
def test_a_model_is_rebuilt_from_its_closes_as_the_contract_averages(
    sample_weighted: bool,
) -> None:
    # Prepare: 40 weights in 3 words, 2 words a segment. Entries: A direct, B relayed and left out
    # by the close of segment 1 (measured there, so its words are in that close but unused), C
    # direct, D relayed and omitted by the first close (no words at all).
    initial, a, b, c, d = (_vector(seed) for seed in range(5))
    entries = [
        Entry(ALICE, 10, relayed=False),
        Entry(BOB, 20, relayed=True),
        Entry(CAROL, 30, relayed=False),
        Entry(DAVE, 40, relayed=True),
    ]
    del d  # never on chain
    segments = [split_segments(pack(v), 2) for v in (a, b, c)]
    models = ModelHistory(num_words=3, words_per_segment=2, sample_weighted=sample_weighted)
    models.load(0, pack(initial))

    # Execute: the two closes as their calldata carries them.
    models.close_segment(
        CloseCall(1, 0, tuple(segments[0][0] + segments[1][0] + segments[2][0]), (3,), frozenset()),
        entries,
    )
    models.close_segment(
        CloseCall(
            1, 1, tuple(segments[0][1] + segments[1][1] + segments[2][1]), (), frozenset({BOB})
        ),
        entries,
    )
    weights = [10, 20, 30] if sample_weighted else None
    first = integer_average([unpack(segments[i][0], 32) for i in range(3)], weights)
    second = integer_average(
        [unpack(segments[i][1], 16) for i in (0, 2)], [10, 30] if sample_weighted else None
    )
    expected = pack(np.concatenate([first, second]))
    rebuilt = models.finish(vector_hash(expected, 2))

    # Assert: the contract's average segment by segment, trusted by its hash, and now current.
    assert rebuilt == expected
    assert models.words() == expected
    # The padding lanes (40..47) averaged to zero: the model is still a 40-weight vector.
    assert unpack(expected, 40).shape == (40,)


def test_a_trimmed_deployments_model_is_rebuilt_with_the_trimmed_mean() -> None:
    """``trimEach`` 1 and three entries: each weight is the middle of the three values
    (``trimmed_average``), not their mean, and the rebuilt model is trusted by its hash."""
    # Prepare: 40 weights in 3 words, one segment; three direct entries
    initial, a, b, c = (_vector(seed) for seed in range(4))
    entries = [Entry(ALICE, 1, relayed=False), Entry(BOB, 1, relayed=False)]
    entries.append(Entry(CAROL, 1, relayed=False))
    models = ModelHistory(num_words=3, words_per_segment=3, sample_weighted=False, trim_each=1)
    models.load(0, pack(initial))
    expected = pack(trimmed_average([a, b, c], 1))
    # Execute
    models.close_segment(
        CloseCall(1, 0, tuple(pack(a) + pack(b) + pack(c)), (), frozenset()), entries
    )
    rebuilt = models.finish(vector_hash(expected, 3))
    # Assert: the median of each weight, which the plain mean is not
    assert rebuilt == expected
    assert unpack(expected, 40).tolist() == np.median(np.stack([a, b, c]), axis=0).tolist()
    assert expected != pack(integer_average([a, b, c]))


def test_a_rebuilt_model_that_does_not_hash_to_modelhash_is_not_trusted() -> None:
    models = ModelHistory(num_words=3, words_per_segment=3, sample_weighted=False)
    models.load(0, pack(_vector(0)))
    words = pack(_vector(1))
    models.close_segment(CloseCall(1, 0, tuple(words), (), frozenset()), [Entry(ALICE, 1, False)])
    assert models.finish(b"\x00" * 32) is None
    assert models.words() is None
    # The model read from the chain afterwards is taken when it hashes right.
    assert models.hash_matches(words, vector_hash(words, 3))
    models.adopt(words)
    assert models.words() == words


def test_a_close_that_averages_nothing_keeps_the_segment_and_an_unread_close_loses_it() -> None:
    initial = pack(_vector(7))
    models = ModelHistory(num_words=3, words_per_segment=2, sample_weighted=False)
    models.load(0, initial)
    relayed = [Entry(DAVE, 1, relayed=True)]
    models.close_segment(CloseCall(2, 0, (), (0,), frozenset()), relayed)  # omitted: nothing summed
    models.close_segment(CloseCall(2, 1, (), (), frozenset()), relayed)
    assert models.finish(vector_hash(initial, 2)) == initial
    models.unknown_segment(0)  # a close sent through another contract
    models.close_segment(
        CloseCall(3, 1, tuple(initial[2:]), (), frozenset()), [Entry(ALICE, 1, False)]
    )
    assert models.finish(vector_hash(initial, 2)) is None


class _VersionAsAccuracy(Evaluator):
    """An evaluator that needs no task: model ``v`` scores ``v / 10``."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, list[int]]] = []

    def accuracy(self, version: int, words: Sequence[int]) -> float:
        self.seen.append((version, list(words)))
        return version / 10


def _unrebuildable_round(evaluator: Evaluator) -> tuple[History, list[int], list[int]]:
    """A history whose round 1 was closed by a transaction to another contract (no calldata to
    rebuild its model from); its initial words and model 1's words."""
    initial, closed = pack(_vector(1)), pack(_vector(2))
    params = Parameters(
        num_weights=40,
        num_words=3,
        words_per_segment=3,
        num_segments=1,
        fixed_point=FixedPointFormat(1024, 3000),
        target=1,
        minimum=1,
        round_duration=600,
        close_window=60,
        mode="plain",
        aggregation="mean",
        distance="l1",
        rules=RULES,
        close_fee=0,
        relay_fee=0,
        owner=CLOSER,
    )
    history = History(params, evaluator, first_block=1)
    events = Events()
    events.tx(("InitialModelLoaded", {"firstSegment": 0, "count": 1}), _opened(1, 600))
    events.tx(_accepted(1, ALICE, 900, tier=0, reward=300))
    events.tx(
        (
            "SegmentClosed",
            {"round": 1, "segment": 0, "closer": CLOSER, "entries": 1, "relayed": 0, "fee": 0},
        ),
        (
            "RoundClosed",
            {"round": 1, "modelVersion": 1, "modelHash": vector_hash(closed, 3), "submissions": 1},
        ),
        _opened(2, 1_200),
    )
    load = ("loadInitialModel", {"firstSegment": 0, "words": initial})
    for event in events.items:
        history.apply(event, load if event.name == "InitialModelLoaded" else None)
    return history, initial, closed


def test_a_model_that_cannot_be_rebuilt_is_read_while_current_and_checked_by_its_hash() -> None:
    evaluator = _VersionAsAccuracy()
    history, initial, closed = _unrebuildable_round(evaluator)
    noted = history.page_data(None)["accuracy"]
    wanted = history.wanted_model(1)
    assert wanted is not None
    assert history.adopt(*wanted, closed) is True

    # The initial model was evaluated from its load; model 1 noted until read, then read.
    assert [(p["version"], p["accuracy"], p["note"]) for p in noted] == [
        (0, 0.0, None),
        (1, None, NOT_EVALUATED),
    ]
    points = history.page_data(None)["accuracy"]
    assert [(p["version"], p["accuracy"], p["source"]) for p in points] == [
        (0, 0.0, INITIAL_SOURCE),
        (1, 0.1, READ_SOURCE),
    ]
    assert evaluator.seen == [(0, initial), (1, closed)]
    assert history.page_data(None)["rounds"][0]["accuracy"] == 0.1


def test_words_that_are_not_the_closed_model_and_replaced_models_stay_unevaluated() -> None:
    history, _, _ = _unrebuildable_round(_VersionAsAccuracy())
    wanted = history.wanted_model(1)
    assert wanted is not None
    assert history.adopt(*wanted, pack(_vector(3))) is False
    assert history.wanted_model(1) is None  # read once: the words match or never will
    replaced, _, _ = _unrebuildable_round(_VersionAsAccuracy())
    assert replaced.wanted_model(2) is None  # model 1 is no longer the contract's
    for done in (history, replaced):
        assert [p["note"] for p in done.page_data(None)["accuracy"]] == [None, NOT_EVALUATED]


# ---------------------------------------------------------------- the tracker without a node


def test_the_tracker_reports_a_node_that_does_not_answer_once() -> None:
    from fl_client.chain import DeploymentRecord
    from fl_client.compile import get_contract

    record = DeploymentRecord("anvil", 31337, ALICE, 1, 650, "digits", CLOSER)
    tracker = Tracker(
        record=record,
        url=f"http://127.0.0.1:{free_port()}",
        abi=get_contract("FLCoordinator").abi,
        network="anvil",
        evaluate=False,
        clock=lambda: 1_000.0,
    )
    assert tracker.poll() is True
    assert tracker.poll() is False  # still down: nothing new to show
    snapshot = tracker.snapshot()
    assert snapshot["node"]["reachable"] is False
    assert snapshot["node"]["down_since"] == 1_000.0
    assert "does not answer" in snapshot["node"]["message"]
    assert snapshot["ready"] is False


# ---------------------------------------------------------------- the command


def test_the_dashboard_refuses_a_busy_port_with_a_clear_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = dashboard_main(["--network", "anvil", "--port", str(port)])
    assert code == 1
    assert capsys.readouterr().err.strip() == (
        f"error: port {port} on 127.0.0.1 is in use (another dashboard, a relay or a node?): "
        "choose another with --port"
    )


def test_the_dashboard_needs_a_node(capsys: pytest.CaptureFixture[str]) -> None:
    assert dashboard_main(["--network", "embedded", "--port", str(free_port())]) == 1
    assert "the embedded chain lives inside one" in capsys.readouterr().err


# ---------------------------------------------------------------- end to end: anvil, page, browser


@dataclass(frozen=True)
class QueryReport:
    """What ``python -m fl_client query --network anvil --all`` printed."""

    round_number: int
    phase: str
    accuracy: str  # as printed, e.g. "94.72%"
    pool: dict[str, int]
    credits: dict[str, int]


def _query(capsys: pytest.CaptureFixture[str]) -> QueryReport:
    capsys.readouterr()
    assert cli_main(["query", "--network", "anvil", "--all"]) == 0
    out = capsys.readouterr().out
    round_line = re.search(r"^round (\d+) \((\w+)\)", out, re.MULTILINE)
    accuracy = re.search(
        r"^test accuracy of the global model on \w+: ([\d.]+%)$", out, re.MULTILINE
    )
    pool = re.search(
        r"^pool: funded (\d+) wei, credited (\d+) wei, withdrawn (\d+) wei, available (\d+) wei$",
        out,
        re.MULTILINE,
    )
    assert round_line is not None, out
    assert accuracy is not None, out
    assert pool is not None, out
    credits = {
        m[1]: int(m[2])
        for m in re.finditer(r"^  (0x[0-9a-fA-F]{40}): credit (\d+) wei$", out, re.MULTILINE)
    }
    return QueryReport(
        int(round_line[1]),
        round_line[2],
        accuracy[1],
        dict(
            zip(
                ("funded", "credited", "withdrawn", "available"),
                map(int, pool.groups()),
                strict=True,
            )
        ),
        credits,
    )


def _wei(shown: str) -> int:
    """The exact wei of an amount the page shows (``"0.0015 ETH"``)."""
    assert shown.endswith(" ETH"), shown
    amount = Decimal(shown.removesuffix(" ETH").replace(",", "")) * WEI_PER_ETH
    assert amount == amount.to_integral_value(), shown
    return int(amount)


# What the page shows, read from its DOM (and the accuracy chart's points).
PAGE_FIGURES = """() => {
  const text = (selector) => document.querySelector(selector).textContent.trim();
  const clients = {};
  for (const row of document.querySelectorAll("#clients tbody tr[data-account]")) {
    const rounds = {};
    for (const td of row.querySelectorAll("td.reward")) {
      rounds[td.dataset.round] = td.firstChild ? td.firstChild.textContent.trim() : "";
    }
    clients[row.dataset.account] = {
      credit: row.querySelector("td.credit").textContent.trim(),
      withdrawn: row.querySelector("td.withdrawn").textContent.trim(),
      rewards: row.querySelector("td.rewards").textContent.trim(),
      rounds,
    };
  }
  const accuracy = {};
  for (const row of document.querySelectorAll("#rounds tbody tr[data-round]")) {
    accuracy[row.dataset.round] = row.querySelector("td.accuracy").textContent.trim();
  }
  const pool = {};
  for (const key of ["funded", "credited", "withdrawn", "available"]) pool[key] = text(`#pool-${key}`);
  return {
    round: text("#round-number"),
    phase: text("#round-phase"),
    model_version: text("#model-version"),
    model_accuracy: text("#model-accuracy"),
    pool,
    clients,
    accuracy,
    chart: window.flDashboard.charts.accuracy.data.datasets[0].data,
    chart_labels: window.flDashboard.charts.accuracy.data.labels,
  };
}"""


# Elements that reach past the right edge of the screen, outside a scrolling table box.
WIDER_THAN_SCREEN = """() => [...document.querySelectorAll("body *")]
  .filter((e) => !e.closest(".table-wrap") && e.getBoundingClientRect().right > window.innerWidth + 1)
  .map((e) => `${e.tagName}#${e.id}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`)
  .concat(document.documentElement.scrollWidth > window.innerWidth ? ["the page scrolls sideways"] : [])"""


class Node:
    """anvil on a fixed free port, recorded in FL_STATE_DIR, restartable with its chain."""

    def __init__(self, state: Path) -> None:
        self.port = free_port()
        self.state = state
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        from fl_client.node import start_anvil

        self.process, _ = start_anvil(
            load_config().network("anvil"), port=self.port, state=self.state
        )

    def stop(self) -> None:
        from fl_client.node import stop_process

        if self.process is not None:
            stop_process(self.process.pid, timeout=10)  # SIGTERM: anvil dumps its state
            self.process.wait()
            self.process = None


class Dashboard:
    """``python -m fl_client.dashboard`` in a process of its own."""

    def __init__(self, workspace: Path, name: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workspace / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Dashboard:
        command = [sys.executable, "-m", "fl_client.dashboard", "--network", "anvil"]
        command += ["--port", str(self.port), "--poll", "0.3"]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=PROJECT_ROOT, env=dict(os.environ), stdout=log, stderr=log
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the dashboard exited: {self.output()}"
            try:
                with urllib.request.urlopen(f"{self.url}/api/snapshot", timeout=2) as response:
                    if json.load(response).get("ready"):
                        return self
            except (urllib.error.URLError, ConnectionError, ValueError):
                pass
            time.sleep(0.2)
        pytest.fail(f"the dashboard was not ready within 60 s: {self.output()}")

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        from fl_client.node import stop_process

        if self.process is not None:
            stop_process(self.process.pid, timeout=10)
            self.process.wait()
            self.process = None


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Private node and deployment records, for this process and the dashboard's."""
    monkeypatch.setenv("FL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("FL_DEPLOYMENTS_DIR", str(tmp_path / "deployments"))
    return tmp_path


@pytest.fixture
def node(workspace: Path) -> Iterator[Node]:
    own = Node(workspace / "anvil-state.json")
    own.start()
    try:
        yield own
    finally:
        own.stop()


@pytest.fixture
def dashboards(workspace: Path) -> Iterator[list[Dashboard]]:
    started: list[Dashboard] = []
    try:
        yield started
    finally:
        for dashboard in started:
            dashboard.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A page in Debian's headless Chromium, driven by Playwright (no browser of its own)."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"Debian's Chromium is not installed ({CHROMIUM}): run `bash tools/setup.sh`, which "
            "installs it (apt package chromium)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


def _federation(network: str, clients: int) -> tuple[Any, list[str]]:
    """The deployment's clients in this process (``Federation``), each built as ``client`` builds
    it from the deployment record (its task, its share of the split)."""
    from fl_client.chain import connect, contract_at, read_record
    from fl_client.client_secret import simulation_secret
    from fl_client.federation import Federation, Member
    from fl_client.simulation import train_config
    from fl_client.tasks import DataSpec, load_task, make_trainer

    record = read_record(network)
    chain = connect(network)
    task = load_task(record.task or record.dataset, hidden_layers=record.hidden_layers)
    spec = DataSpec(
        num_clients=clients,
        partition=record.partition,
        dirichlet_alpha=record.dirichlet_alpha,
        seed=record.seed,
        test_fraction=record.test_fraction,
    )
    config = train_config(load_config().fl.with_overrides(epochs=1))
    members = [
        Member(
            account=chain.accounts[1 + i],
            trainer=make_trainer(task, client=i, spec=spec, config=config, seed=record.seed),
            secret=simulation_secret(record.seed, i),
        )
        for i in range(clients)
    ]
    federation = Federation(
        chain=chain,
        contract=contract_at(chain, record.address),
        members=members,
        closer_account=chain.accounts[0],
    )
    return federation, [m.account for m in members]


@pytest.mark.anvil
@pytest.mark.slow
def test_the_page_shows_what_query_reports_live_and_through_a_node_outage(
    workspace: Path,
    node: Node,
    dashboards: list[Dashboard],
    browser: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from playwright.sync_api import expect

    # Prepare: a deployment of three clients, round 1 played, the dashboard started.
    assert cli_main(["deploy", "--network", "anvil", "--clients", "3", "--rounds", "2"]) == 0
    federation, accounts = _federation("anvil", 3)
    rewards: dict[tuple[int, str], int] = {}
    for outcome in federation.play_round(1, [0, 1, 2]):
        rewards[(1, outcome.account)] = outcome.reward_wei
    after_round_1 = _query(capsys)
    dashboard = Dashboard(workspace, "dashboard").start()
    dashboards.append(dashboard)
    page = browser.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(dashboard.url)
    expect(page.locator("#round-number")).to_have_text(str(after_round_1.round_number))
    expect(page.locator("#model-accuracy")).to_have_text(after_round_1.accuracy)

    # Execute: round 2 while the page is open: it follows without a reload.
    for outcome in federation.play_round(2, [0, 1, 2]):
        rewards[(2, outcome.account)] = outcome.reward_wei
    after_round_2 = _query(capsys)
    expect(page.locator("#round-number")).to_have_text(
        str(after_round_2.round_number), timeout=20_000
    )
    expect(page.locator("#model-accuracy")).to_have_text(after_round_2.accuracy)

    # Assert: the round, the accuracy points, every client's rewards and the pool equal query's.
    shown = page.evaluate(PAGE_FIGURES)
    assert (shown["round"], shown["phase"]) == ("3", after_round_2.phase) == ("3", "Open")
    assert shown["model_version"] == "2"
    assert [shown["accuracy"]["1"], shown["accuracy"]["2"]] == [
        after_round_1.accuracy,
        after_round_2.accuracy,
    ]
    assert shown["chart_labels"] == ["v0 (initial)", "v1 (round 1)", "v2 (round 2)"]
    assert [f"{value:.2f}%" for value in shown["chart"][1:]] == [
        after_round_1.accuracy,
        after_round_2.accuracy,
    ]
    assert 0 < shown["chart"][0] < 50  # the untrained initial model, from its load calldata
    assert {key: _wei(value) for key, value in shown["pool"].items()} == after_round_2.pool
    # query --all lists the clients and the account that closed the rounds (paid the close fee)
    assert set(after_round_2.credits) == {*accounts, federation.closer.account}
    for account in accounts:
        figures = shown["clients"][account]
        assert _wei(figures["credit"]) == after_round_2.credits[account]
        assert {n: _wei(figures["rounds"][str(n)]) for n in (1, 2)} == {
            n: rewards[(n, account)] for n in (1, 2)
        }
        assert _wei(figures["rewards"]) == rewards[(1, account)] + rewards[(2, account)]
    assert sum(rewards.values()) > 0  # round 2's updates are within a paid tier
    assert requested
    assert all(url.startswith(dashboard.url + "/") for url in requested), requested

    # Execute: the node goes away mid-run.
    node.stop()
    outage = page.locator("#outage")
    expect(outage).to_be_visible(timeout=15_000)
    expect(outage).to_contain_text("Node unreachable since")
    expect(page.locator("#live")).to_have_text("node unreachable")
    assert page.evaluate(PAGE_FIGURES) == shown  # the last state stays on the page

    # ... and comes back with its chain: the page recovers and follows again.
    node.start()
    expect(outage).to_be_hidden(timeout=15_000)
    expect(page.locator("#notice")).to_contain_text("Node back since")
    capsys.readouterr()
    assert cli_main(["withdraw", "--network", "anvil", "--account", "0"]) == 0
    after_withdrawal = _query(capsys)
    client = accounts[0]
    row = page.locator(f'#clients tr[data-account="{client}"]')
    expect(row.locator("td.credit")).to_have_text("0 ETH", timeout=15_000)
    shown = page.evaluate(PAGE_FIGURES)
    assert _wei(shown["clients"][client]["withdrawn"]) == after_round_2.credits[client]
    assert {key: _wei(value) for key, value in shown["pool"].items()} == after_withdrawal.pool
    assert {a: _wei(shown["clients"][a]["credit"]) for a in accounts} == {
        a: after_withdrawal.credits[a] for a in accounts
    }

    # A restarted dashboard rebuilds the same history from the chain alone.
    dashboard.stop()
    expect(page.locator("#live")).to_contain_text("dashboard server unreachable", timeout=10_000)
    again = Dashboard(workspace, "dashboard-again").start()
    dashboards.append(again)
    page.goto(again.url)
    expect(page.locator("#round-number")).to_have_text("3")
    assert page.evaluate(PAGE_FIGURES) == shown

    # On a phone-width screen the page needs no sideways scrolling (tables scroll in their box).
    page.set_viewport_size({"width": 390, "height": 844})
    overflowing = page.evaluate(WIDER_THAN_SCREEN)
    deadline = time.monotonic() + 5  # the charts follow the new width on the next frames
    while overflowing and time.monotonic() < deadline:
        page.wait_for_timeout(100)
        overflowing = page.evaluate(WIDER_THAN_SCREEN)
    assert overflowing == []
    expect(page.locator("#round-number")).to_be_in_viewport()
    page.screenshot(path=str(workspace / "phone.png"), full_page=True)
    assert (workspace / "phone.png").read_bytes().startswith(b"\x89PNG")
