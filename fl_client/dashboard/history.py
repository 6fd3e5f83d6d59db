"""One deployment's history as the dashboard shows it: the ledger of its events, its models and
their accuracy, and the page's data built from them and from the latest free reads.

Pure: the tracker reads the chain and hands over decoded events, the calls of the transactions
that made a model, and the free reads; nothing here talks to the chain.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fl_client.config import FixedPointFormat
from fl_client.dashboard.ledger import ChainEvent, Ledger, Rules, Submission, tier_label
from fl_client.dashboard.models import CloseCall, ModelHistory
from fl_client.evaluation import Evaluator

logger = logging.getLogger(__name__)

NOT_EVALUATED = "not evaluated: before this dashboard started (its closes could not be rebuilt)"
INITIAL_SOURCE = "the initial model (the owner's load calldata)"
REBUILT_SOURCE = "rebuilt from the closes' calldata, hash checked"
READ_SOURCE = "read with globalModel() at its close, hash checked"
# Events whose transaction's calldata a model is rebuilt from.
CALLDATA_EVENTS = frozenset({"InitialModelLoaded", "SegmentClosed"})

# A coordinator function a transaction called, and its arguments.
FunctionCall = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Parameters:
    """The deployment's settings, read once with free calls."""

    num_weights: int
    num_words: int
    words_per_segment: int
    num_segments: int
    fixed_point: FixedPointFormat
    target: int
    minimum: int
    round_duration: int
    close_window: int
    mode: str
    aggregation: str
    distance: str
    rules: Rules
    close_fee: int
    relay_fee: int
    owner: str
    trim_each: int = 0  # the trimmed mean's values left out at each end (0: the mean)


@dataclass(frozen=True)
class ModelPoint:
    """A global model and its test accuracy."""

    version: int
    round_number: int  # the round whose close made it; 0 for the initial model
    accuracy: float | None
    source: str | None  # how its words were obtained
    note: str | None = None  # why it has no accuracy


class History:
    """What the events of one deployment tell, applied in chain order."""

    def __init__(
        self, params: Parameters, evaluator: Evaluator | None, *, first_block: int = 0
    ) -> None:
        self.params = params
        self.first_block = first_block  # where the events are read from: the creation block
        self.evaluator = evaluator
        self.ledger = Ledger(params.rules)
        self.models = ModelHistory(
            num_words=params.num_words,
            words_per_segment=params.words_per_segment,
            sample_weighted=params.aggregation == "sample_weighted",
            trim_each=params.trim_each,
        )
        self.points: dict[int, ModelPoint] = {}
        self.unrebuilt: list[tuple[int, int, bytes]] = []  # (round, version, modelHash)

    # ---------------------------------------------------------------- events

    def apply(self, event: ChainEvent, call: FunctionCall | None = None) -> None:
        """Take one event; ``call`` is what its transaction called on the coordinator (needed for
        :data:`CALLDATA_EVENTS`; ``None`` when the transaction called another contract)."""
        self.ledger.apply(event)
        if event.name == "InitialModelLoaded":
            self._initial_model(call)
        elif event.name == "RoundOpened" and int(event.args["round"]) == 1:
            self._model_ready(0, 0, INITIAL_SOURCE)
        elif event.name == "SegmentClosed":
            self._segment_closed(event, call)
        elif event.name == "RoundClosed":
            self._round_closed(event)

    def _initial_model(self, call: FunctionCall | None) -> None:
        if call is None:
            return
        name, args = call
        if name == "loadInitialModel":
            self.models.load(int(args["firstSegment"]), [int(w) for w in args["words"]])
        elif name == "loadZeroModel":
            self.models.load_zero(int(args["firstSegment"]), int(args["count"]))

    def _segment_closed(self, event: ChainEvent, call: FunctionCall | None) -> None:
        round_number = int(event.args["round"])
        segment = int(event.args["segment"])
        if call is None or call[0] != "closeSegment":
            self.models.unknown_segment(segment)
            return
        args = call[1]
        self.models.close_segment(
            CloseCall(
                round_number=round_number,
                segment=segment,
                words=tuple(int(w) for w in args["words"]),
                omitted=tuple(int(i) for i in args["omitted"]),
                failed=self.ledger.failed_in(event.transaction),
            ),
            self.ledger.rounds[round_number].entries,
        )

    def _round_closed(self, event: ChainEvent) -> None:
        round_number = int(event.args["round"])
        version = int(event.args["modelVersion"])
        model_hash = bytes(event.args["modelHash"])
        if self.models.finish(model_hash) is not None:
            self._model_ready(version, round_number, REBUILT_SOURCE)
        else:
            self.points[version] = ModelPoint(version, round_number, None, None, NOT_EVALUATED)
            self.unrebuilt.append((round_number, version, model_hash))

    def _model_ready(self, version: int, round_number: int, source: str) -> None:
        """The current model is version ``version``: evaluate it."""
        words = self.models.words()
        if words is None:
            self.points[version] = ModelPoint(version, round_number, None, None, NOT_EVALUATED)
        elif self.evaluator is None:
            self.points[version] = ModelPoint(
                version, round_number, None, source, "not evaluated (--no-eval)"
            )
        else:
            try:
                accuracy = self.evaluator.accuracy(version, words)
            except Exception as exc:  # a task that fails here must not stop the history
                logger.warning("model v%d not evaluated: %s", version, exc)
                self.points[version] = ModelPoint(
                    version, round_number, None, source, f"not evaluated: {exc}"
                )
                return
            self.points[version] = ModelPoint(version, round_number, accuracy, source)

    def wanted_model(self, current_version: int) -> tuple[int, int, bytes] | None:
        """The model that could not be rebuilt and is the current one, if any: its words can
        still be read (``globalModel()``), then :meth:`adopt` takes them. The others are gone
        from the contract's storage for good."""
        wanted = [item for item in self.unrebuilt if item[1] == current_version]
        if not wanted:
            self.unrebuilt = []
        return wanted[-1] if wanted else None

    def adopt(
        self, round_number: int, version: int, model_hash: bytes, words: Sequence[int]
    ) -> bool:
        """Take the words read for model ``version`` if they hash to ``model_hash``."""
        self.unrebuilt = []
        if not self.models.hash_matches(words, model_hash):
            return False
        self.models.adopt(words)
        self._model_ready(version, round_number, READ_SOURCE)
        return True

    # ---------------------------------------------------------------- the page's data

    def page_data(self, reads: dict[str, Any] | None) -> dict[str, Any]:
        """The deployment's part of the page's data; ``reads`` are the latest free reads (see
        :meth:`fl_client.dashboard.tracker.Tracker.read_state`). Wei are decimal strings: they
        exceed what a JavaScript number holds exactly."""
        params, ledger = self.params, self.ledger
        rules = params.rules
        data: dict[str, Any] = {
            "parameters": {
                "num_weights": params.num_weights,
                "segments": params.num_segments,
                "mode": params.mode,
                "aggregation": params.aggregation,
                "distance": params.distance,
                "target": params.target,
                "minimum": params.minimum,
                "round_duration": params.round_duration,
                "close_window": params.close_window,
                "close_fee": str(params.close_fee),
                "relay_fee": str(params.relay_fee),
                "owner": params.owner,
                "max_counted_distance": rules.max_counted_distance if rules.bound_on else None,
                "min_alignment_bps": rules.min_alignment_bps if rules.guard_on else None,
                "min_reward_distance": rules.min_reward_distance,
                "tiers": [
                    {"label": tier_label(i), "threshold": t, "reward": str(r)}
                    for i, (t, r) in enumerate(
                        zip(rules.tier_thresholds, rules.tier_rewards, strict=True)
                    )
                ],
                "deployment_gas": ledger.deployment_gas,
                "created_block": ledger.created_block,
                "first_block": self.first_block,
            },
            "accuracy": [
                {
                    "version": p.version,
                    "round": p.round_number,
                    "accuracy": p.accuracy,
                    "source": p.source,
                    "note": p.note,
                }
                for p in sorted(self.points.values(), key=lambda p: p.version)
            ],
            "fundings": [
                {"funder": f.funder, "amount": str(f.amount), "block": f.block_number}
                for f in ledger.fundings
            ],
            "rounds": self._rounds(),
            "submissions": [_submission(s) for s in ledger.submissions],
        }
        credits: dict[str, int] = reads["credits"] if reads else {}
        data["accounts"] = [
            {
                "address": a.address,
                "submissions": a.submissions,
                "left_out": a.left_out,
                "rewards": str(a.rewards),
                "fees": str(a.fees),
                "bonds_returned": str(a.bonds_returned),
                "credit": str(credits[a.address]) if a.address in credits else None,
                "withdrawn": str(a.withdrawn),
            }
            for a in sorted(ledger.accounts.values(), key=lambda a: a.address.lower())
        ]
        if reads:
            current = self.points.get(reads["model_version"])
            data["round"] = reads["round"]
            data["model"] = {
                "version": reads["model_version"],
                "hash": reads["model_hash"],
                "accuracy": current.accuracy if current else None,
                "note": current.note if current else None,
            }
            data["pool"] = {key: str(value) for key, value in reads["pool"].items()}
        return data

    def _rounds(self) -> list[dict[str, Any]]:
        settled: dict[int, list[Submission]] = {}
        for s in self.ledger.submissions:
            settled.setdefault(s.round_number, []).append(s)
        points = {p.round_number: p for p in self.points.values() if p.round_number}
        rows = []
        for r in sorted(self.ledger.rounds.values(), key=lambda r: r.number):
            mine = settled.get(r.number, [])
            point = points.get(r.number) if r.status == "closed" else None
            rows.append(
                {
                    "number": r.number,
                    "status": r.status,
                    "deadline": r.deadline,
                    "opened_block": r.opened_block,
                    "closed_block": r.closed_block,
                    "model_version": r.model_version,
                    "model_hash": r.model_hash,
                    "counted": r.counted,
                    "settled": len(mine),
                    "left_out": sum(not s.counted for s in mine),
                    "commits": r.commits,
                    "rewards": str(r.rewards),
                    "fees": str(r.fees),
                    "forfeited": str(r.forfeited),
                    "gas": {**r.gas, "total": sum(r.gas.values())},
                    "accuracy": point.accuracy if point else None,
                    "accuracy_note": point.note if point else None,
                    "accuracy_source": point.source if point else None,
                }
            )
        return rows


def _submission(s: Submission) -> dict[str, Any]:
    return {
        "round": s.round_number,
        "client": s.client,
        "sample_count": s.sample_count,
        "distance": s.distance,
        "alignment": s.alignment,
        "tier": tier_label(s.tier),
        "reward": str(s.reward),
        "counted": s.counted,
        "relayed": s.relayed,
        "note": s.note,
        "block": s.block_number,
    }
