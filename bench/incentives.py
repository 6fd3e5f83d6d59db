"""Incentive benchmark: does the reward pay for training, or for standing still?

Run: ``.venv/bin/python -m bench.incentives`` (the whole grid, about an hour on 2 busy cores;
``--quick``: IID only, 5 rounds, bounds on and trimmed, about fifteen minutes; ``--render``: rebuild the verdict
and the Markdown from the JSON, running nothing). Writes
``bench/results/incentives.json`` and ``bench/results/incentives.md``.

Ten clients train softmax regression on MNIST 5k (784 -> 10, 7,850 weights; E=5, B=10, lr 0.3)
for ten rounds, on IID and on Dirichlet(0.5) shards, through one ``FLCoordinator`` per run on an
anvil (a free port, a temporary ``FL_STATE_DIR``, stopped by its process id), with the
participants, paths and closer of :mod:`fl_client.federation`. Averaging is sample-weighted
(FedAvg; ``maxSampleCount`` 65,535).

Strategies (each replaces one honest client, the Sybils three, so that there are always ten
accounts; they are :class:`~fl_client.trainer.LocalTrainer` implementations):

- ``honest``: trains on its shard.
- ``free_rider``: the global model with exactly ``minRewardDistance`` quanta moved the way the last
  global step went (its distance is the guard's threshold, which passes the strict ``<``).
- ``stale``: the previous round's global model.
- ``noise``: the global model plus Gaussian noise whose L1 norm is a typical honest update's
  distance (the median of the clean run's honest distances that round).
- ``inflater``: trains honestly, declares 65,535 samples.
- ``sybils``: three accounts, each the global model plus the same fixed direction (raise class 0's
  score, lower the others') scaled to a typical honest update's distance, every round.
- ``copycat``: in commit-reveal mode, copies the best-paid update revealed in the previous round
  (the round's own reveals open only after its commits close).

Every strategy runs under each reward reference of the issue (``current``: distance from the
model at submit time, the seed's rule; ``aggregate``: from the round's new model, paid by the
close) with the bounds on influence (the share cap ``maxShareBps``, ``maxStep``,
``maxDrift``/``driftWindow``) off (the seed) and on, and under the recommended settings
(``progress``: the shortfall from the round's step, paid by the close; bounds ``trimmed``: on,
with the plain coordinate-wise trimmed mean, ``TRIM`` values cut at each end, in place of
FedAvg), beside a clean run of ten honest clients with the same settings (``SETTINGS``).
Recorded per run and round: each account's reward, whether it was counted, its distances from
the model it trained on and from the new one, the test accuracy. An attacker's *relative
reward* in a round is its reward (the Sybils: their mean) divided by the mean reward of the
honest clients that round (the inflater, which trains: by what the same account earned in the
clean run, its true sample count declared); when that is nothing it is ``0/0`` (``null``) if
the attacker earned nothing too, else infinite (``"inf"``).

The bar (with the recommended settings, ``RECOMMENDED``: ``progress``, bounds trimmed): every
non-training strategy earns strictly less than honest training, in total over the run and in
every round after the first, and the final accuracy stays within 1 pp of the clean run. The
inflater trains: for it the bar asks only that inflating does not pay more. The report's
``verdict`` gives the bar under the recommended settings and under the seed's rule (``current``,
bounds off).

Settings are calibrated per partition from a pilot run (ten honest clients, the direction guard
at 0, the share cap, no reward rules): see :func:`calibrate`. The pilot runs ``--pilot-rounds``
(20) rounds and also gives the honest clients' alignment under the direction guard.
"""

from __future__ import annotations

import abc
import argparse
import hashlib
import itertools
import json
import math
import signal
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch

from bench.common import anvil_node, machine
from fl_client.aggregation import (
    capped_weights,
    directional_l1,
    guard_step,
    integer_average,
    shortfall_bps,
    trimmed_average,
)
from fl_client.chain import Chain, DeployParams, connect, deploy, read_model_words, read_round
from fl_client.client_secret import simulation_secret
from fl_client.codec import dequantize, pack, quantize, unpack
from fl_client.config import FixedPointFormat, FLConfig, load_config
from fl_client.errors import ChainError
from fl_client.federation import Federation, Member
from fl_client.model import get_flat_parameters, set_flat_parameters
from fl_client.participant import RoundOutcome
from fl_client.simulation import data_spec, task_of, train_config
from fl_client.tasks import LoadedTask, make_trainer
from fl_client.trainer import FitResult, LocalTrainer

RESULTS = Path(__file__).resolve().parent / "results"
COMMAND = ".venv/bin/python -m bench.incentives"
DATASET = "mnist5k"
CLIENTS = 10
ROUNDS = 10
PILOT_ROUNDS = 20
PARTITIONS = ("iid", "dirichlet")
REFERENCES = ("current", "aggregate", "progress")
BOUNDS = ("off", "on", "trimmed")
# What the grid runs, (reward reference, bounds): the four, and the recommended settings.
SETTINGS = (
    ("current", "off"),
    ("aggregate", "off"),
    ("current", "on"),
    ("aggregate", "on"),
    ("progress", "trimmed"),
)
TRIM = 3  # bounds "trimmed": the trimmed mean's values left out at each end (as many as Sybils)
STRATEGIES = ("free_rider", "stale", "noise", "inflater", "sybils", "copycat")
TRAINING = frozenset({"honest", "inflater"})
MAX_SAMPLES = 65_535  # maxSampleCount: the most a client may declare, what the inflater declares
SYBILS = 3
BAR_PP = 1.0
POOL_WEI = 10 * 10**18  # never runs dry over a run
TOP_REWARD_WEI = 10**15
# Calibration (see `calibrate`).
GUARD_FRACTION = 0.9
TIER_RATIO = 1.15
TIERS_ABOVE = 1.5  # the ladder reaches this times the largest honest distance after round 1
BOUND_MARGIN = 1.5
MIN_ALIGNMENT_BPS = 0
DRIFT_WINDOW = 5
STOOD_STILL_BPS = 20_000  # the shortfall of an update equal to the current model (L1)
RECOMMENDED = ("progress", "trimmed")  # (reward reference, bounds)
SEED = ("current", "off")  # the seed paper's rule, no bounds on influence
GUARD_RULE = (
    "moves of weights the last global step left alone count as against; an update is counted "
    f"when along - against >= {MIN_ALIGNMENT_BPS} bps of along + against (round 1: no step, "
    "every update counted)"
)

# ---------------------------------------------------------------- strategies

SizeOracle = Callable[[int], int]  # round -> a typical honest update's L1 distance, in quanta


class CraftedUpdate(abc.ABC):
    """What every crafted (non-training) strategy shares: the fixed-point format, the model's
    size, the sample count it declares, and the global model of the last round it played (a
    client sees every global model: it reads it to take part)."""

    def __init__(self, *, fmt: FixedPointFormat, num_weights: int, sample_count: int) -> None:
        self.fmt = fmt
        self._num_weights = num_weights
        self._sample_count = sample_count
        self.previous: np.ndarray | None = None

    @property
    def num_samples(self) -> int:
        """The sample count it declares (that of the honest client it replaces)."""
        return self._sample_count

    @property
    def num_weights(self) -> int:
        """Length of the flat parameter vector."""
        return self._num_weights

    def fit(self, global_weights: np.ndarray, *, round_number: int) -> FitResult:
        """The crafted update for ``round_number``, as float weights that quantize to it exactly."""
        current = quantize(global_weights, self.fmt).values
        update = self.craft(current, round_number)
        self.previous = current
        return FitResult(dequantize(update, self.fmt), math.nan)

    @abc.abstractmethod
    def craft(self, current: np.ndarray, round_number: int) -> np.ndarray:
        """The quantized update sent when ``current`` is the global model."""


class FreeRider(CraftedUpdate):
    """The global model with exactly ``guard`` quanta moved the way the last global step went:
    one quantum on each weight that step moved, the largest moves first, and round after round
    over them while quanta are left (``guard`` above the number of moved weights). Its distance
    from the model is the guard's threshold exactly (``minRewardDistance``: the guard refuses only
    ``distance <`` it) and every quantum lies along the last step. Round 1 has no step: it moves
    the first weights up."""

    def __init__(
        self, *, guard: int, fmt: FixedPointFormat, num_weights: int, sample_count: int
    ) -> None:
        super().__init__(fmt=fmt, num_weights=num_weights, sample_count=sample_count)
        self.guard = guard

    def craft(self, current: np.ndarray, round_number: int) -> np.ndarray:
        update = current.copy()
        if self.previous is None or not np.any(current != self.previous):
            direction = np.ones_like(current)
            order = np.arange(current.size)
        else:
            moved = current - self.previous
            direction = np.sign(moved)
            order = np.argsort(-np.abs(moved), kind="stable")
            order = order[moved[order] != 0]
        left = self.guard
        while left > 0:
            room = np.abs(update[order] + direction[order]) <= self.fmt.max_abs
            usable = order[room][:left]
            if usable.size == 0:
                break
            update[usable] += direction[usable]
            left -= int(usable.size)
        return update


class StaleModel(CraftedUpdate):
    """Sends the previous round's global model (in round 1, the current one: it has no other)."""

    def craft(self, current: np.ndarray, round_number: int) -> np.ndarray:
        return current.copy() if self.previous is None else self.previous.copy()


def exact_l1(direction: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Integers along ``direction`` whose L1 norm is exactly ``size``: the scaled direction
    rounded, then single quanta added (away from zero, the direction's way where it is zero) or
    taken on random entries until the norm matches."""
    total = float(np.abs(direction).sum())
    if total == 0 or size <= 0:
        return np.zeros(direction.size, dtype=np.int64)
    values = np.rint(direction * (size / total)).astype(np.int64)
    signs = np.where(direction >= 0, 1, -1).astype(np.int64)
    gap = size - int(np.abs(values).sum())
    while gap != 0:
        picks = rng.choice(direction.size, size=min(abs(gap), direction.size), replace=False)
        if gap > 0:
            step = np.where(values[picks] == 0, signs[picks], np.sign(values[picks]))
            values[picks] += step
            gap -= picks.size
        else:
            picks = picks[values[picks] != 0]
            values[picks] -= np.sign(values[picks])
            gap += picks.size
    return values


def within_range(current: np.ndarray, move: np.ndarray, max_abs: int) -> np.ndarray:
    """``current + move``, clipped to the weights' range."""
    return np.asarray(np.clip(current + move, -max_abs, max_abs), dtype=np.int64)


class NoiseSubmitter(CraftedUpdate):
    """The global model plus Gaussian noise whose L1 norm is ``size(round)``, a typical honest
    update's distance."""

    def __init__(
        self,
        *,
        size: SizeOracle,
        seed: int,
        fmt: FixedPointFormat,
        num_weights: int,
        sample_count: int,
    ) -> None:
        super().__init__(fmt=fmt, num_weights=num_weights, sample_count=sample_count)
        self.size = size
        self.seed = seed

    def craft(self, current: np.ndarray, round_number: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, round_number])
        noise = exact_l1(rng.standard_normal(current.size), self.size(round_number), rng)
        return within_range(current, noise, self.fmt.max_abs)


def push_direction(num_weights: int, num_classes: int) -> np.ndarray:
    """The Sybils' fixed direction in a linear layer's layout (``classes x features`` weights row
    by row, then the biases): +1 on class 0's weights and bias, ``-1 / (classes - 1)`` on every
    other class's, so that the model scores class 0 higher on every input."""
    features = num_weights // num_classes - 1
    direction = np.full(num_weights, -1.0 / (num_classes - 1))
    direction[:features] = 1.0
    direction[num_classes * features] = 1.0  # class 0's bias
    return direction


class Sybil(CraftedUpdate):
    """One of a group of colluding accounts: the global model plus the group's fixed
    ``direction`` scaled to ``size(round)``, a typical honest update's distance (every member
    sends the same move)."""

    def __init__(
        self,
        *,
        direction: np.ndarray,
        size: SizeOracle,
        fmt: FixedPointFormat,
        num_weights: int,
        sample_count: int,
    ) -> None:
        super().__init__(fmt=fmt, num_weights=num_weights, sample_count=sample_count)
        self.direction = direction
        self.size = size

    def craft(self, current: np.ndarray, round_number: int) -> np.ndarray:
        rng = np.random.default_rng([0x5B1, round_number])  # the group's shared stream
        move = exact_l1(self.direction, self.size(round_number), rng)
        return within_range(current, move, self.fmt.max_abs)


@dataclass
class PublicBoard:
    """What commit-reveal rounds made public: each revealed update and what it was paid, by
    round (posted when the round has closed)."""

    revealed: dict[int, list[tuple[int, np.ndarray]]] = field(default_factory=dict)

    def best_of(self, round_number: int) -> np.ndarray | None:
        """The update revealed in ``round_number`` that was paid most (the first of them)."""
        entries = self.revealed.get(round_number, [])
        if not entries:
            return None
        best = max(reward for reward, _ in entries)
        return next(update for reward, update in entries if reward == best)


class Copycat(CraftedUpdate):
    """A copycat in commit-reveal mode: it must commit before the round's reveals open, so it
    can copy only what was revealed already, the previous round's updates; it copies the
    best-paid one. In round 1 nothing is public yet: it sends the global model."""

    def __init__(
        self, *, board: PublicBoard, fmt: FixedPointFormat, num_weights: int, sample_count: int
    ) -> None:
        super().__init__(fmt=fmt, num_weights=num_weights, sample_count=sample_count)
        self.board = board

    def craft(self, current: np.ndarray, round_number: int) -> np.ndarray:
        copied = self.board.best_of(round_number - 1)
        return current.copy() if copied is None else copied.copy()


class SampleInflater:
    """Trains honestly (``trainer``) but declares ``declared`` samples."""

    def __init__(self, trainer: LocalTrainer, declared: int = MAX_SAMPLES) -> None:
        self.trainer = trainer
        self.declared = declared

    @property
    def num_samples(self) -> int:
        """The inflated count."""
        return self.declared

    @property
    def num_weights(self) -> int:
        """Length of the flat parameter vector."""
        return self.trainer.num_weights

    def fit(self, global_weights: np.ndarray, *, round_number: int) -> FitResult:
        """Honest training."""
        return self.trainer.fit(global_weights, round_number=round_number)


TrainingCache = dict[tuple[int, int, str], tuple[FitResult, int]]


class CachedTrainer:
    """Honest client ``client``'s trainer, its results kept by (round, global model): runs that
    reach the same global model (the same attack under the other reward reference, which changes
    no average) train once. Training is deterministic per (client, round, global model), so only
    the time changes."""

    def __init__(self, trainer: LocalTrainer, client: int, cache: TrainingCache) -> None:
        self.trainer = trainer
        self.client = client
        self.cache = cache
        self._samples: int | None = None

    @property
    def num_samples(self) -> int:
        """The honest sample count (known once it trained)."""
        return self.trainer.num_samples if self._samples is None else self._samples

    @property
    def num_weights(self) -> int:
        """Length of the flat parameter vector."""
        return self.trainer.num_weights

    def fit(self, global_weights: np.ndarray, *, round_number: int) -> FitResult:
        """Train, or return what training from this global model in this round gave before."""
        digest = hashlib.sha256(np.ascontiguousarray(global_weights).tobytes()).hexdigest()
        key = (self.client, round_number, digest)
        if key not in self.cache:
            fitted = self.trainer.fit(global_weights, round_number=round_number)
            self.cache[key] = (fitted, self.trainer.num_samples)
        fitted, self._samples = self.cache[key]
        return fitted


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class Incentives:
    """The incentive settings of a deployment (distances in quanta over the whole model)."""

    tier_thresholds: tuple[int, ...]
    tier_rewards: tuple[int, ...]
    min_reward_distance: int
    max_counted_distance: int
    min_alignment_bps: int
    max_share_bps: int
    max_step: int
    max_drift: int
    drift_window: int
    progress_thresholds: tuple[int, ...] = ()  # RewardReference Progress: shortfall tiers, bps
    progress_rewards: tuple[int, ...] = ()
    trim_each: int = 0  # the trimmed mean (aggregation mean); 0: sample-weighted FedAvg

    def per_weight(self, num_weights: int) -> dict[str, Any]:
        """The distances per weight (what a deployment of another size would scale)."""
        return {
            "tier_thresholds": [round(t / num_weights, 2) for t in self.tier_thresholds],
            "min_reward_distance": round(self.min_reward_distance / num_weights, 2),
            "max_counted_distance": round(self.max_counted_distance / num_weights, 2),
        }

    def with_bounds(self, on: bool) -> Incentives:
        """These settings with the bounds on influence (the share cap, the step and drift
        bounds) on, or off (the seed's unbounded sample-weighted FedAvg)."""
        if on:
            return self
        return replace(self, max_share_bps=0, max_step=0, max_drift=0, drift_window=0)

    def under(self, bounds: str) -> Incentives:
        """These settings for the grid's ``bounds``: ``off``, ``on``, or ``trimmed`` (on, and
        the plain coordinate-wise trimmed mean, ``TRIM`` values left out at each end, in place of
        sample-weighted FedAvg)."""
        if bounds == "trimmed":
            return replace(self, trim_each=TRIM)
        return self.with_bounds(bounds == "on")


def deploy_params(
    fl: FLConfig,
    settings: Incentives,
    *,
    num_weights: int,
    reference: str,
    mode: str,
    tx_gas_cap: int,
) -> DeployParams:
    """A sample-weighted deployment for ``CLIENTS`` clients with ``settings`` (with
    ``trim_each``: the plain trimmed mean; under ``progress``: its shortfall tiers)."""
    contract = replace(
        fl.contract,
        aggregation="mean" if settings.trim_each else "sample_weighted",
        trim_each=settings.trim_each,
        max_sample_count=MAX_SAMPLES,
        target_submissions=CLIENTS,
        min_submissions=1,  # a round with updates left out closes at its deadline
        mode=mode,
        reward_reference=reference,
        min_reward_distance=settings.min_reward_distance,
        max_counted_distance=settings.max_counted_distance,
        min_alignment_bps=settings.min_alignment_bps,
        max_share_bps=settings.max_share_bps,
        max_step=settings.max_step,
        max_drift=settings.max_drift,
        drift_window=settings.drift_window,
    )
    params = DeployParams.from_config(
        replace(fl, contract=contract),
        num_weights=num_weights,
        clients=CLIENTS,
        tx_gas_cap=tx_gas_cap,
    )
    progress = reference == "progress"
    return replace(
        params,
        tier_thresholds=settings.progress_thresholds if progress else settings.tier_thresholds,
        tier_rewards=settings.progress_rewards if progress else settings.tier_rewards,
    )


def pilot_settings() -> Incentives:
    """The pilot's settings: the direction guard and the share cap, no reward rules or bounds."""
    return Incentives(
        tier_thresholds=(2**62,),
        tier_rewards=(TOP_REWARD_WEI,),
        min_reward_distance=0,
        max_counted_distance=0,
        min_alignment_bps=MIN_ALIGNMENT_BPS,
        max_share_bps=10_000 // CLIENTS,
        max_step=0,
        max_drift=0,
        drift_window=0,
    )


def tier_ladder(low: int, high: int, ratio: float) -> tuple[int, ...]:
    """Thresholds from ``low * ratio`` up by ``ratio`` until one reaches ``high``."""
    thresholds: list[int] = []
    value = float(low)
    while not thresholds or thresholds[-1] < high:
        value *= ratio
        thresholds.append(max(math.ceil(value), thresholds[-1] + 1 if thresholds else 1))
    return tuple(thresholds)


def linear_rewards(count: int) -> tuple[int, ...]:
    """``count`` tier rewards falling linearly from ``TOP_REWARD_WEI``."""
    return tuple(TOP_REWARD_WEI * (count - k) // count for k in range(count))


def calibrate(pilot: RunRecord, rounds: int) -> tuple[Incentives, dict[str, Any]]:
    """The recommended settings, from the honest distances of the pilot's first ``rounds`` rounds.

    - ``minRewardDistance`` (the free-rider guard): ``GUARD_FRACTION`` of the smallest honest
      distance after round 1, from the current model or from the new one (in Aggregate mode the
      guard applies to both), so that every honest update passes it.
    - tiers: a geometric ladder (ratio ``TIER_RATIO``) from the guard up to ``TIERS_ABOVE`` times
      the largest honest distance from the new model after round 1; rewards fall linearly from
      ``TOP_REWARD_WEI``. With ratio r, two distances more than a factor r apart always fall in
      different tiers.
    - progress tiers (RewardReference Progress): the same ladder over the honest shortfalls
      after round 1, from the smallest up to ``TIERS_ABOVE`` times the largest, but below 20000
      bps (an update that stood still).
    - ``maxCountedDistance``: ``BOUND_MARGIN`` times the largest honest distance (round 1
      included), a bound that leaves every honest update in and a scaled one out.
    - ``minAlignment`` 0 (no more moved against the last step than along it); ``maxShareBps``
      10000 / clients (no update above an equal share: an IID client's own).
    - bounds: ``maxStep`` the largest per-weight step of the pilot after round 1, ``maxDrift``
      the largest per-weight drift over any window of ``DRIFT_WINDOW`` rounds after round 1
      (``driftWindow`` that): they never bind on an honest run once its first, largest step is
      taken.
    """
    honest = [r for r in pilot.rounds[:rounds]]
    after_first = honest[1:] or honest
    nearest = min(
        min(min(m.distance_current, m.distance_new or m.distance_current) for m in r.members)
        for r in after_first
    )
    farthest_new = max(max(m.distance_new or 0 for m in r.members) for r in after_first)
    farthest = max(max(m.distance_current for m in r.members) for r in honest)
    guard = int(GUARD_FRACTION * nearest)
    thresholds = tier_ladder(guard, int(TIERS_ABOVE * farthest_new), TIER_RATIO)
    models = [np.asarray(m) for m in pilot.models[: rounds + 1]]
    shortfalls = [
        shortfall_bps(m.distance_new, m.distance_current, int(np.abs(after - before).sum()))
        for r, before, after in zip(honest, models, models[1:], strict=False)
        if r.round_number > 1 or len(honest) == 1
        for m in r.members
        if m.distance_new is not None
    ]
    progress_thresholds = tier_ladder(
        max(1, int(min(shortfalls) / TIER_RATIO)),
        min(STOOD_STILL_BPS - 1, int(TIERS_ABOVE * max(shortfalls))),
        TIER_RATIO,
    )
    progress_thresholds = tuple(t for t in progress_thresholds if t < STOOD_STILL_BPS)
    steps = [np.abs(b - a) for a, b in itertools.pairwise(models[1:])]
    max_step = int(max((int(s.max()) for s in steps), default=0))
    drifts = [
        int(np.abs(models[i + DRIFT_WINDOW] - models[i]).max())
        for i in range(1, len(models) - DRIFT_WINDOW)
    ] or [int(np.abs(models[-1] - models[min(1, len(models) - 1)]).max())]
    settings = Incentives(
        tier_thresholds=thresholds,
        tier_rewards=linear_rewards(len(thresholds)),
        progress_thresholds=progress_thresholds,
        progress_rewards=linear_rewards(len(progress_thresholds)),
        min_reward_distance=guard,
        max_counted_distance=math.ceil(BOUND_MARGIN * farthest),
        min_alignment_bps=MIN_ALIGNMENT_BPS,
        max_share_bps=10_000 // CLIENTS,
        max_step=max(1, max_step),
        max_drift=max(1, max(drifts)),
        drift_window=DRIFT_WINDOW,
    )
    evidence = {
        "smallest_honest_distance_after_round_1": nearest,
        "largest_honest_distance_from_new_model_after_round_1": farthest_new,
        "largest_honest_distance": farthest,
        "honest_shortfall_bps_after_round_1": [min(shortfalls), max(shortfalls)],
        "largest_step_after_round_1": max_step,
        "largest_window_drift_after_round_1": max(drifts),
    }
    return settings, evidence


# ---------------------------------------------------------------- runs


@dataclass(frozen=True)
class MemberRound:
    """One account in one round."""

    client: int
    role: str  # honest, or the strategy
    sample_count: int
    counted: bool
    tier: int
    reward_wei: int
    distance_current: int  # L1 from the model it was sent against
    distance_new: int | None  # L1 from the round's new model (counted updates)
    along: int  # its move split by the last global step (the guard's measure)
    against: int

    @property
    def alignment(self) -> float | None:
        """``(along - against) / (along + against)``; ``None`` when it did not move."""
        moved = self.along + self.against
        return None if moved == 0 else (self.along - self.against) / moved


@dataclass(frozen=True)
class RoundRecord:
    """One round of a run."""

    round_number: int
    accuracy: float
    members: tuple[MemberRound, ...]
    clamped: int  # weights the bounds held back (new model vs the plain capped average)


@dataclass(frozen=True)
class RunRecord:
    """One run."""

    partition: str
    strategy: str
    reference: str
    bounds: str
    mode: str
    rounds: tuple[RoundRecord, ...]
    models: tuple[tuple[int, ...], ...]  # the global model before round 1, then after each
    seconds: float

    @property
    def final_accuracy(self) -> float:
        """Test accuracy of the last model."""
        return self.rounds[-1].accuracy


@dataclass
class Context:
    """What every run of one partition shares."""

    fl: FLConfig
    task: LoadedTask
    partition: str
    trainers: list[LocalTrainer]
    test_data: Any
    initial: np.ndarray  # quantized
    num_weights: int
    num_classes: int
    cache: TrainingCache = field(default_factory=dict)


def make_context(fl: FLConfig, partition: str) -> Context:
    """Trainers, test data and the quantized initial model of ``partition``."""
    fl = fl.with_overrides(partition=partition)
    task = task_of(fl)
    spec = data_spec(fl)
    config = train_config(fl)
    trainers = [
        make_trainer(task, client=i, spec=spec, config=config, seed=fl.seed) for i in range(CLIENTS)
    ]
    model = task.model(seed=fl.seed)
    flat = get_flat_parameters(model)
    initial = quantize(flat, fl.fixed_point).values
    classes = int(list(model.parameters())[-1].numel())
    return Context(
        fl=fl,
        task=task,
        partition=partition,
        trainers=trainers,
        test_data=task.test_data(spec),
        initial=initial,
        num_weights=int(flat.size),
        num_classes=classes,
    )


def members_for(
    ctx: Context, strategy: str, *, guard: int, size: SizeOracle, board: PublicBoard
) -> tuple[list[LocalTrainer], list[str]]:
    """The ten trainers of a run and each one's role."""
    honest: list[LocalTrainer] = [
        CachedTrainer(t, i, ctx.cache) for i, t in enumerate(ctx.trainers)
    ]
    roles = ["honest"] * CLIENTS
    trainers = list(honest)
    fmt = ctx.fl.fixed_point

    def common(i: int) -> dict[str, Any]:
        return {"fmt": fmt, "num_weights": ctx.num_weights, "sample_count": honest[i].num_samples}

    if strategy == "free_rider":
        trainers[0] = FreeRider(guard=guard, **common(0))
    elif strategy == "stale":
        trainers[0] = StaleModel(**common(0))
    elif strategy == "noise":
        trainers[0] = NoiseSubmitter(size=size, seed=ctx.fl.seed + 7, **common(0))
    elif strategy == "inflater":
        trainers[0] = SampleInflater(honest[0])
    elif strategy == "sybils":
        direction = push_direction(ctx.num_weights, ctx.num_classes)
        for i in range(SYBILS):
            trainers[i] = Sybil(direction=direction, size=size, **common(i))
    elif strategy == "copycat":
        trainers[0] = Copycat(board=board, **common(0))
    elif strategy != "honest":
        raise ValueError(f"unknown strategy {strategy!r}")
    for i, trainer in enumerate(trainers):
        if trainer is not honest[i]:
            roles[i] = strategy
    return trainers, roles


def warm_up(ctx: Context) -> None:
    """Train every honest client once from the initial model (it is round 1 of every run, and
    the sample counts are known only after training)."""
    weights = dequantize(ctx.initial, ctx.fl.fixed_point)
    for i, trainer in enumerate(ctx.trainers):
        CachedTrainer(trainer, i, ctx.cache).fit(weights, round_number=1)


def evaluate(ctx: Context, quantized: np.ndarray) -> float:
    """Test accuracy of a quantized model."""
    model = ctx.task.model(seed=ctx.fl.seed)
    set_flat_parameters(model, dequantize(quantized, ctx.fl.fixed_point))
    return float(ctx.task.evaluate(model, ctx.test_data).accuracy)


def run(
    ctx: Context,
    strategy: str,
    settings: Incentives,
    *,
    reference: str,
    bounds: str,
    rounds: int,
    size: SizeOracle,
) -> RunRecord:
    """Deploy a coordinator with ``settings`` on a fresh anvil and play ``rounds`` rounds with
    ``strategy`` (a node per run keeps its log queries short)."""
    started = time.perf_counter()
    with anvil_node(accounts=CLIENTS + 2) as node:
        chain = connect("anvil", url=node.url)
        return _run_on(
            chain,
            ctx,
            strategy,
            settings,
            reference=reference,
            bounds=bounds,
            rounds=rounds,
            size=size,
            started=started,
        )


def _run_on(
    chain: Chain,
    ctx: Context,
    strategy: str,
    settings: Incentives,
    *,
    reference: str,
    bounds: str,
    rounds: int,
    size: SizeOracle,
    started: float,
) -> RunRecord:
    mode = "commit_reveal" if strategy == "copycat" else "plain"
    params = deploy_params(
        ctx.fl,
        settings,
        num_weights=ctx.num_weights,
        reference=reference,
        mode=mode,
        tx_gas_cap=chain.tx_gas_cap,
    )
    contract = deploy(chain, params, initial_words=_words(ctx), pool_wei=POOL_WEI)
    board = PublicBoard()
    trainers, roles = members_for(
        ctx, strategy, guard=settings.min_reward_distance, size=size, board=board
    )
    federation = Federation(
        chain=chain,
        contract=contract,
        members=[
            Member(
                account=chain.accounts[1 + i],
                trainer=trainer,
                secret=simulation_secret(ctx.fl.seed, i),
            )
            for i, trainer in enumerate(trainers)
        ],
        closer_account=chain.accounts[0],
    )
    models = [ctx.initial.copy()]
    step: np.ndarray | None = None
    records = []
    for round_number in range(1, rounds + 1):
        # A round that some updates were left out of is not full: the federation moves the
        # clock past its deadline and closes it with the updates it counted.
        outcomes = federation.play_round(round_number, list(range(CLIENTS)))
        if len(outcomes) != CLIENTS:
            raise ChainError(f"round {round_number}: {len(outcomes)} of {CLIENTS} outcomes")
        before = models[-1]
        after = unpack(read_model_words(contract), ctx.num_weights)
        record = _round_record(
            ctx, round_number, outcomes, roles, before, after, step, settings, reference
        )
        records.append(record)
        if mode == "commit_reveal":
            board.revealed[round_number] = [
                (o.reward_wei, unpack(list(o.words), ctx.num_weights))
                for o in outcomes
                if roles[o.client_id] == "honest"
            ]
        step = guard_step(before, after)
        models.append(after)
    if read_round(contract).number != rounds + 1:
        raise ChainError("the run ended with the wrong round open")
    return RunRecord(
        partition=ctx.partition,
        strategy=strategy,
        reference=reference,
        bounds=bounds,
        mode=mode,
        rounds=tuple(records),
        models=tuple(tuple(int(v) for v in m) for m in models),
        seconds=round(time.perf_counter() - started, 1),
    )


def _words(ctx: Context) -> list[int]:
    return pack(ctx.initial, max_abs=ctx.fl.fixed_point.max_abs)


def _round_record(
    ctx: Context,
    round_number: int,
    outcomes: Sequence[RoundOutcome],
    roles: Sequence[str],
    before: np.ndarray,
    after: np.ndarray,
    step: np.ndarray | None,
    settings: Incentives,
    reference: str,
) -> RoundRecord:
    """The round as the chain settled it, with the distances recomputed from the words (and
    held to what the chain reported)."""
    members = []
    counted_vectors = []
    counted_weights = []
    moved = int(np.abs(after - before).sum())  # the round's step (RewardReference Progress)
    for outcome in sorted(outcomes, key=lambda o: o.client_id):
        update = unpack(list(outcome.words), ctx.num_weights)
        from_current = int(np.abs(update - before).sum())
        from_new = int(np.abs(update - after).sum()) if outcome.counted else None
        reported = from_current
        if reference == "aggregate" and outcome.counted:
            reported = from_new if from_new is not None else from_current
        elif reference == "progress" and outcome.counted and from_new is not None:
            reported = shortfall_bps(from_new, from_current, moved)
        if outcome.distance != reported:
            raise ChainError(
                f"round {round_number}, client {outcome.client_id}: the chain reports distance "
                f"{outcome.distance}, the words give {reported}"
            )
        along, against = (0, 0) if step is None else directional_l1(before, update, step)
        members.append(
            MemberRound(
                client=outcome.client_id,
                role=roles[outcome.client_id],
                sample_count=outcome.sample_count,
                counted=outcome.counted,
                tier=outcome.tier,
                reward_wei=outcome.reward_wei,
                distance_current=from_current,
                distance_new=from_new,
                along=along,
                against=against,
            )
        )
        if outcome.counted:
            counted_vectors.append(update)
            counted_weights.append(outcome.sample_count)
    clamped = 0
    if counted_vectors:
        average = (
            trimmed_average(counted_vectors, settings.trim_each)
            if settings.trim_each
            else integer_average(
                counted_vectors, capped_weights(counted_weights, settings.max_share_bps)
            )
        )
        clamped = int(np.count_nonzero(average != after))
    return RoundRecord(
        round_number=round_number,
        accuracy=evaluate(ctx, after),
        members=tuple(members),
        clamped=clamped,
    )


# ---------------------------------------------------------------- analysis


def honest_sizes(record: RunRecord) -> list[int]:
    """Per round, the median honest distance from the current model (a typical honest update)."""
    return [
        int(statistics.median(m.distance_current for m in r.members if m.role == "honest"))
        for r in record.rounds
    ]


def ratio(attacker: float, honest: float) -> float | None:
    """``attacker / honest``; ``None`` for 0/0 (nobody paid), infinite when only the attacker
    was paid."""
    if honest > 0:
        return attacker / honest
    return None if attacker == 0 else math.inf


def reward_pairs(record: RunRecord, role: str, clean: RunRecord) -> list[tuple[float, float]]:
    """Per round, (the mean reward of the ``role`` accounts, what honest training earned).

    For a strategy that does not train, honest training is the mean reward of the honest
    clients of the same run and round. For one that trains (the inflater) it is what the same
    accounts earned in the clean run that round (the same shard and training, its true sample
    count): the difference is what the lie earned."""
    pairs = []
    accounts = {m.client for m in record.rounds[0].members if m.role == role}
    for r, c in zip(record.rounds, clean.rounds, strict=True):
        attacker = statistics.fmean(m.reward_wei for m in r.members if m.role == role)
        if role in TRAINING:
            honest = statistics.fmean(m.reward_wei for m in c.members if m.client in accounts)
        else:
            honest = statistics.fmean(m.reward_wei for m in r.members if m.role == "honest")
        pairs.append((attacker, honest))
    return pairs


def relative_rewards(record: RunRecord, role: str, clean: RunRecord) -> list[float | None]:
    """Per round, the ``role`` accounts' mean reward relative to honest training
    (:func:`reward_pairs`, :func:`ratio`)."""
    return [ratio(a, h) for a, h in reward_pairs(record, role, clean)]


def meets_reward_bar(total: float | None, later: Sequence[float | None], *, trains: bool) -> bool:
    """The bar's reward half: strictly below honest training (a strategy that trains: not
    above it) in ``total`` and in each of the ``later`` rounds. 0/0 (nobody paid) is not
    strictly less; for a strategy that trains it is not more."""

    def below(value: float | None) -> bool:
        if value is None:
            return trains
        return value <= 1.0 if trains else value < 1.0

    return below(total) and all(below(v) for v in later)


def accuracy_gap_pp(final: float, clean: float) -> float:
    """``final - clean`` in percentage points, to 1e-6 pp (accuracies are counts over the test
    set: a gap of exactly 1 pp must not read 1.0000000000000009)."""
    return round(100 * (final - clean), 6)


def last_three_gap(mine: Sequence[float], clean: Sequence[float]) -> float:
    """The mean accuracy of the last three rounds of ``mine`` less ``clean``'s, in their unit: the
    final round alone swings by about a point on Dirichlet shards, so this tells a lasting cost
    from a bad last round (reported beside the bar, which reads the final accuracy as the issue
    does)."""
    return statistics.mean(mine[-3:]) - statistics.mean(clean[-3:])


def attack_summary(record: RunRecord, clean: RunRecord) -> dict[str, Any]:
    """What the bar asks of one attacked run (``clean``: ten honest clients, same settings)."""
    role = record.strategy
    pairs = reward_pairs(record, role, clean)
    per_round = [ratio(a, h) for a, h in pairs]
    average = ratio(sum(a for a, _ in pairs), sum(h for _, h in pairs))
    counted = [all(m.counted for m in r.members if m.role == role) for r in record.rounds]
    later = per_round[1:]
    gap = accuracy_gap_pp(record.final_accuracy, clean.final_accuracy)
    trains = role in TRAINING
    reward_bar = meets_reward_bar(average, later, trains=trains)
    return {
        "strategy": role,
        "reference": record.reference,
        "bounds": record.bounds,
        "relative_reward_by_round": [_finite(v) for v in per_round],
        "relative_reward_total": _finite(average),
        "worst_relative_reward_after_round_1": _finite(_worst(later)),
        "rounds_counted": sum(counted),
        "counted_by_round": counted,
        "final_accuracy": record.final_accuracy,
        "clean_final_accuracy": clean.final_accuracy,
        "accuracy_gap_pp": round(gap, 2),
        "last_three_gap_pp": round(
            100
            * last_three_gap(
                [r.accuracy for r in record.rounds], [r.accuracy for r in clean.rounds]
            ),
            2,
        ),
        "reward_bar": reward_bar,
        "accuracy_bar": abs(gap) <= BAR_PP,
        "bar": reward_bar and abs(gap) <= BAR_PP,
        "trains": trains,
    }


def _worst(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _finite(value: float | None) -> float | str | None:
    """JSON has no infinity: ``"inf"``."""
    if value is None:
        return None
    return "inf" if math.isinf(value) else round(value, 3)


def honest_alignment(record: RunRecord) -> dict[str, Any]:
    """The honest clients' alignment with the last step, by round (from round 2), and how many
    the guard left out."""
    by_round = []
    left_out = 0
    for r in record.rounds[1:]:
        values = [m.alignment for m in r.members if m.role == "honest" and m.alignment is not None]
        left_out += sum(not m.counted for m in r.members if m.role == "honest")
        if values:
            by_round.append(
                {
                    "round": r.round_number,
                    "min": round(min(values), 3),
                    "median": round(statistics.median(values), 3),
                    "max": round(max(values), 3),
                }
            )
    return {
        "partition": record.partition,
        "rounds": len(record.rounds),
        "left_out": left_out,
        "submissions_judged": CLIENTS * (len(record.rounds) - 1),
        "by_round": by_round,
        "final_accuracy": record.final_accuracy,
    }


def distance_table(record: RunRecord) -> list[dict[str, Any]]:
    """Per round, the honest distances per weight (from the current and from the new model)."""
    rows = []
    for r in record.rounds:
        honest = [m for m in r.members if m.role == "honest"]
        current = [m.distance_current for m in honest]
        new = [m.distance_new for m in honest if m.distance_new is not None]
        step = int(
            np.abs(
                np.asarray(record.models[r.round_number])
                - np.asarray(record.models[r.round_number - 1])
            ).sum()
        )
        weights = len(record.models[0])
        rows.append(
            {
                "round": r.round_number,
                "current_min": round(min(current) / weights, 2),
                "current_median": round(statistics.median(current) / weights, 2),
                "current_max": round(max(current) / weights, 2),
                "new_min": round(min(new) / weights, 2) if new else None,
                "new_max": round(max(new) / weights, 2) if new else None,
                "step": round(step / weights, 2),
                "accuracy": r.accuracy,
            }
        )
    return rows


# ---------------------------------------------------------------- the benchmark


@dataclass(frozen=True)
class Grid:
    """What to run."""

    partitions: tuple[str, ...]
    references: tuple[str, ...]
    bounds: tuple[str, ...]
    strategies: tuple[str, ...]
    rounds: int
    pilot_rounds: int


def full_grid(pilot_rounds: int = PILOT_ROUNDS) -> Grid:
    """The issue's grid."""
    return Grid(PARTITIONS, REFERENCES, BOUNDS, STRATEGIES, ROUNDS, max(ROUNDS, pilot_rounds))


def quick_grid() -> Grid:
    """A smaller grid: IID, 5 rounds, the recommended settings and ``current`` with bounds on."""
    return Grid(("iid",), REFERENCES, ("on", "trimmed"), STRATEGIES, 5, 5)


def benchmark(grid: Grid, *, log: Callable[[str], None]) -> dict[str, Any]:
    """Run ``grid`` (a fresh anvil per run) and return the report."""
    fl = load_config().fl.with_overrides(dataset=DATASET, clients=CLIENTS, rounds=grid.rounds)
    return {"partitions": [partition_report(fl, p, grid, log=log) for p in grid.partitions]}


def partition_report(
    fl: FLConfig, partition: str, grid: Grid, *, log: Callable[[str], None]
) -> dict[str, Any]:
    """The pilot, the calibration and every run of one partition."""
    ctx = make_context(fl, partition)
    warm_up(ctx)
    log(f"{partition}: pilot, {grid.pilot_rounds} rounds")
    pilot = run(
        ctx,
        "honest",
        pilot_settings(),
        reference="aggregate",
        bounds="off",
        rounds=grid.pilot_rounds,
        size=lambda _: 0,
    )
    settings, evidence = calibrate(pilot, grid.rounds)
    log(f"{partition}: {settings} ({pilot.seconds} s)")
    runs: list[RunRecord] = []
    summaries: list[dict[str, Any]] = []
    cleans: dict[tuple[str, str], RunRecord] = {}
    sizes: list[int] = []  # the clean run's typical honest distance, by round

    def size(round_number: int, sizes: list[int] = sizes) -> int:
        return sizes[round_number - 1]

    for bounds in grid.bounds:
        chosen = settings.under(bounds)
        references = [r for r in grid.references if (r, bounds) in SETTINGS]
        for strategy in ("honest", *grid.strategies):
            for reference in references:
                record = run(
                    ctx,
                    strategy,
                    chosen,
                    reference=reference,
                    bounds=bounds,
                    rounds=grid.rounds,
                    size=size,
                )
                runs.append(record)
                message = (
                    f"{partition} bounds {bounds} {reference} {strategy}: final "
                    f"{record.final_accuracy:.4f} ({record.seconds} s)"
                )
                if strategy == "honest":
                    cleans[(reference, bounds)] = record
                    sizes[:] = honest_sizes(record)
                else:
                    summary = attack_summary(record, cleans[(reference, bounds)])
                    summaries.append(summary)
                    message += f" relative {summary['relative_reward_total']}, bar {summary['bar']}"
                log(message)
            ctx.cache.clear()  # the next strategy reaches other models
    first = {b: next(r for r, b_ in cleans if b_ == b) for _, b in cleans}
    return {
        "partition": partition,
        "alpha": fl.dirichlet_alpha if partition == "dirichlet" else None,
        "num_weights": ctx.num_weights,
        "settings": asdict(settings),
        "settings_per_weight": settings.per_weight(ctx.num_weights),
        "calibration": evidence,
        "pilot_seconds": pilot.seconds,
        "pilot_distances_per_weight": distance_table(pilot),
        "honest_alignment": honest_alignment(pilot),
        "clean": {
            f"{reference}/{bounds}": {
                "final_accuracy": record.final_accuracy,
                "accuracy_by_round": [r.accuracy for r in record.rounds],
                "clamped_by_round": [r.clamped for r in record.rounds],
                "same_models_as_the_other_reference": record.models
                == cleans[(first[bounds], bounds)].models,
            }
            for (reference, bounds), record in cleans.items()
        },
        "attacks": summaries,
        "runs": [_run_json(r) for r in runs],
    }


MEMBER_FIELDS = (
    "client",
    "role",
    "sample_count",
    "counted",
    "tier",
    "reward_wei",
    "distance_current",
    "distance_new",
    "along",
    "against",
)


def _run_json(record: RunRecord) -> dict[str, Any]:
    """A run, compact: its models left out, each member a row of ``MEMBER_FIELDS``."""
    return {
        "strategy": record.strategy,
        "reference": record.reference,
        "bounds": record.bounds,
        "mode": record.mode,
        "seconds": record.seconds,
        "member_fields": list(MEMBER_FIELDS),
        "rounds": [
            {
                "round": r.round_number,
                "accuracy": r.accuracy,
                "clamped": r.clamped,
                "members": [[getattr(m, f) for f in MEMBER_FIELDS] for m in r.members],
            }
            for r in record.rounds
        ],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, write its results; exit 1 if an attack meets no bar... never: the
    results are reported, not enforced (0)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="IID, 5 rounds, bounds on and trimmed")
    parser.add_argument("--pilot-rounds", type=int, default=PILOT_ROUNDS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--render",
        action="store_true",
        help="run nothing: rebuild the verdict and the Markdown from OUT/incentives.json",
    )
    args = parser.parse_args(argv)
    if args.render:
        report = json.loads((args.out / "incentives.json").read_text(encoding="utf-8"))
        write(report, args.out)
        return 0
    torch.set_num_threads(1)  # 2 shared cores; training and evaluation are tiny matrices
    started = time.perf_counter()
    # SIGTERM unwinds like Ctrl-C, so that the anvil is stopped on the way out.
    signal.signal(signal.SIGTERM, _raise_exit)

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f} s] {message}", flush=True)

    grid = quick_grid() if args.quick else full_grid(args.pilot_rounds)
    report = {
        "command": COMMAND + (" --quick" if args.quick else ""),
        "machine": machine(),
        "grid": asdict(grid),
        **benchmark(grid, log=log),
    }
    report["seconds"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    # The measurements first: the verdict and the Markdown can be rebuilt from them (--render).
    (args.out / "incentives.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(write(report, args.out))
    return 0


def write(report: dict[str, Any], out: Path) -> str:
    """Add the verdict to ``report``, write ``incentives.json`` and ``incentives.md`` to ``out``;
    the Markdown. The attack summaries and the verdict are rebuilt from the runs the report
    holds (:func:`summaries_from_runs`), so that ``--render`` gives what a run gives."""
    for part in report["partitions"]:
        part["attacks"] = summaries_from_runs(part["partition"], part["runs"])
    report["verdict"] = verdict(report["partitions"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "incentives.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    text = markdown(report)
    (out / "incentives.md").write_text(text, encoding="utf-8")
    return text


def record_from_json(partition: str, run: dict[str, Any]) -> RunRecord:
    """A run as :func:`_run_json` wrote it (its models left out)."""
    fields = run["member_fields"]
    rounds = tuple(
        RoundRecord(
            round_number=r["round"],
            accuracy=r["accuracy"],
            members=tuple(MemberRound(**dict(zip(fields, m, strict=True))) for m in r["members"]),
            clamped=r["clamped"],
        )
        for r in run["rounds"]
    )
    return RunRecord(
        partition=partition,
        strategy=run["strategy"],
        reference=run["reference"],
        bounds=run["bounds"],
        mode=run["mode"],
        rounds=rounds,
        models=(),
        seconds=run["seconds"],
    )


def summaries_from_runs(partition: str, runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every attacked run's :func:`attack_summary` against the clean run of its settings, in
    the order of ``runs``."""
    records = [record_from_json(partition, run) for run in runs]
    cleans = {(r.reference, r.bounds): r for r in records if r.strategy == "honest"}
    return [
        attack_summary(r, cleans[(r.reference, r.bounds)])
        for r in records
        if r.strategy != "honest"
    ]


def verdict(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The bar under the recommended settings and under the seed's rule, strategy by strategy
    (``None`` for settings the grid did not run)."""

    def under(reference: str, bounds: str) -> dict[str, Any] | None:
        rows = [
            {
                "partition": part["partition"],
                "strategy": a["strategy"],
                "relative_reward_total": a["relative_reward_total"],
                "worst_relative_reward_after_round_1": a["worst_relative_reward_after_round_1"],
                "accuracy_gap_pp": a["accuracy_gap_pp"],
                "last_three_gap_pp": a["last_three_gap_pp"],
                "reward_bar": a["reward_bar"],
                "accuracy_bar": a["accuracy_bar"],
                "bar": a["bar"],
            }
            for part in parts
            for a in part["attacks"]
            if (a["reference"], a["bounds"]) == (reference, bounds)
        ]
        if not rows:
            return None
        return {
            "reference": reference,
            "bounds": bounds,
            "bar_met": all(r["bar"] for r in rows),
            "failing": [f"{r['partition']}/{r['strategy']}" for r in rows if not r["bar"]],
            "strategies": rows,
        }

    return {
        "guard_rule": GUARD_RULE,
        "recommended": under(*RECOMMENDED),
        "seed": under(*SEED),
    }


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


LABELS = {
    "free_rider": "free rider at the guard",
    "stale": "stale model",
    "noise": "noise of honest size",
    "inflater": "sample-count inflater",
    "sybils": "3 colluding Sybils",
    "copycat": "copycat (commit-reveal)",
}


def _ratio(value: float | str | None) -> str:
    if value is None:
        return "0/0"
    if value == "inf":
        return "inf"
    return f"{float(value):.2f}"


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def markdown(report: dict[str, Any]) -> str:
    """The report's tables (what the README quotes)."""
    grid = report["grid"]
    lines = [
        "# Incentive benchmark",
        "",
        f"`{report['command']}`: {report['seconds'] / 60:.0f} minutes on "
        f"{report['machine']['cpus']} cores (load average at the start "
        f"{report['machine']['load_average_at_start'][0]:.1f}). MNIST 5k, {CLIENTS} clients, "
        f"{grid['rounds']} rounds, E=5 B=10 lr 0.3, sample-weighted FedAvg (bounds trimmed: the "
        f"plain trimmed mean, {TRIM} values cut at each end of every weight), a fresh anvil per "
        "run. "
        "Relative reward: the attacker's reward (the Sybils: their mean) over the mean honest "
        "reward of the same round; *total* is the ratio of the sums over the run; 0/0: nobody was "
        "paid; for the inflater, which trains, the reference is what the same account earned in "
        "the clean run with its true sample count. Bar: every non-training strategy earns "
        "strictly less than honest training in total and in every round after the first (the "
        "inflater: not more), and the final accuracy stays within "
        f"{BAR_PP:g} pp of the clean run of the same settings. Bounds on: `maxShareBps`, "
        "`maxStep`, `maxDrift`/`driftWindow` as calibrated; off: none of them (the seed); "
        f"trimmed: on, and `trimEach` {TRIM}. Reference `progress` reads its tiers on the "
        "shortfall from the round's step, in basis points (`FLCoordinator.rewardReference`). "
        "*Last 3 rounds vs clean*: the mean accuracy of rounds 8-10 against the clean run's "
        "(the final round alone swings by about 1 pp on Dirichlet shards; not part of the bar).",
    ]
    lines += _verdict_markdown(report["verdict"])
    for part in report["partitions"]:
        lines += _partition_markdown(part)
    lines += _alignment_markdown(report["partitions"], report["verdict"]["guard_rule"])
    lines += _failures_markdown(report["partitions"])
    return "\n".join(lines) + "\n"


def _verdict_markdown(verdict: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for key, title in (
        ("recommended", "The bar with the recommended settings"),
        ("seed", "The bar with the seed's rule"),
    ):
        v = verdict[key]
        if v is None:
            continue
        result = "**met**" if v["bar_met"] else "**NOT met** (" + ", ".join(v["failing"]) + ")"
        lines += [
            "",
            f"## {title}: reference `{v['reference']}`, bounds {v['bounds']}: {result}",
            "",
            "| shards | strategy | relative reward, total | worst round after 1 "
            "| vs clean (pp) | last 3 rounds vs clean (pp) | bar |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
        for r in v["strategies"]:
            lines.append(
                f"| {r['partition']} | {LABELS[r['strategy']]} | "
                f"{_ratio(r['relative_reward_total'])} | "
                f"{_ratio(r['worst_relative_reward_after_round_1'])} | "
                f"{r['accuracy_gap_pp']:+.2f} | {r['last_three_gap_pp']:+.2f} | "
                f"{_verdict_cell(r)} |"
            )
    return lines


def _verdict_cell(row: dict[str, Any]) -> str:
    if row["bar"]:
        return "pass"
    reasons = []
    if not row["reward_bar"]:
        reasons.append("paid")
    if not row["accuracy_bar"]:
        reasons.append("accuracy")
    return f"FAIL ({', '.join(reasons)})"


def _partition_markdown(part: dict[str, Any]) -> list[str]:
    name = "IID" if part["alpha"] is None else f"Dirichlet({part['alpha']})"
    weights = part["num_weights"]
    settings = part["settings"]
    per_weight = part["settings_per_weight"]
    evidence = part["calibration"]
    lines = [
        "",
        f"## {name}",
        "",
        "Settings, calibrated on the pilot (per weight = over the whole model / "
        f"{weights:,}): `minRewardDistance` {settings['min_reward_distance']:,} "
        f"({per_weight['min_reward_distance']} per weight, {GUARD_FRACTION} x the smallest honest "
        f"distance after round 1, {evidence['smallest_honest_distance_after_round_1']:,}); tiers "
        f"at {', '.join(f'{t:g}' for t in per_weight['tier_thresholds'])} per weight (ratio "
        f"{TIER_RATIO}, up to {TIERS_ABOVE} x the largest honest distance from the new model after "
        f"round 1), paying {TOP_REWARD_WEI:.0e} wei down to "
        f"{settings['tier_rewards'][-1]:.2e}; `maxCountedDistance` "
        f"{settings['max_counted_distance']:,} ({per_weight['max_counted_distance']} per weight); "
        f"`minAlignment` {settings['min_alignment_bps']}; bounds on: `maxShareBps` "
        f"{settings['max_share_bps']}, `maxStep` {settings['max_step']}, `maxDrift` "
        f"{settings['max_drift']}, "
        f"`driftWindow` {settings['drift_window']}. Progress tiers at "
        f"{', '.join(str(t) for t in settings.get('progress_thresholds', ()))} bps of the step "
        f"(ratio {TIER_RATIO}, from the smallest honest shortfall after round 1 up to "
        f"{TIERS_ABOVE} x the largest, "
        f"{', '.join(str(v) for v in evidence.get('honest_shortfall_bps_after_round_1', ()))}, "
        f"below {STOOD_STILL_BPS} bps: an update that stood still).",
        "",
        "| strategy | reference | bounds | relative reward, total | worst round after 1 "
        "| by round | rounds counted | final accuracy % | vs clean (pp) | last 3 rounds vs clean "
        "(pp) | bar |",
        "|---|---|---|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for key, clean in part["clean"].items():
        reference, bounds = key.split("/")
        lines.append(
            f"| honest (clean run) | {reference} | {bounds} | 1 | 1 | | all | "
            f"{_pct(clean['final_accuracy'])} | | | |"
        )
    for a in part["attacks"]:
        by_round = " ".join(_ratio(v) for v in a["relative_reward_by_round"])
        rounds = len(a["counted_by_round"])
        verdict = _verdict_cell(a)
        lines.append(
            f"| {LABELS[a['strategy']]} | {a['reference']} | {a['bounds']} | "
            f"{_ratio(a['relative_reward_total'])} | "
            f"{_ratio(a['worst_relative_reward_after_round_1'])} | {by_round} | "
            f"{a['rounds_counted']}/{rounds} | {_pct(a['final_accuracy'])} | "
            f"{a['accuracy_gap_pp']:+.1f} | {a['last_three_gap_pp']:+.1f} | {verdict} |"
        )
    lines += [
        "",
        "Honest distances per weight in the pilot (from the model they trained on; from the "
        "round's new model) and the global step:",
        "",
        "| round | current min | median | max | new min | new max | step | accuracy % |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in part["pilot_distances_per_weight"]:
        lines.append(
            f"| {row['round']} | {row['current_min']} | {row['current_median']} | "
            f"{row['current_max']} | {row['new_min']} | {row['new_max']} | {row['step']} | "
            f"{_pct(row['accuracy'])} |"
        )
    return lines


def _alignment_markdown(parts: Sequence[dict[str, Any]], rule: str) -> list[str]:
    lines = [
        "",
        "## Honest alignment under the direction guard",
        "",
        f"The pilots: {CLIENTS} honest clients, `minAlignment` {MIN_ALIGNMENT_BPS}, the share cap "
        f"on. The guard's rule: {rule}.",
        "",
        "| shards | rounds | left out by the guard | lowest alignment (round) "
        "| median, last round | final accuracy % |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for part in parts:
        a = part["honest_alignment"]
        name = "IID" if part["alpha"] is None else f"Dirichlet({part['alpha']})"
        if not a["by_round"]:
            continue
        lowest = min(a["by_round"], key=lambda r: r["min"])
        lines.append(
            f"| {name} | {a['rounds']} | {a['left_out']} of {a['submissions_judged']} | "
            f"{lowest['min']:+.3f} ({lowest['round']}) | {a['by_round'][-1]['median']:+.3f} | "
            f"{_pct(a['final_accuracy'])} |"
        )
    return lines


def _failures_markdown(parts: Sequence[dict[str, Any]]) -> list[str]:
    lines = ["", "## Every failure of the bar in the grid", ""]
    for part in parts:
        name = "IID" if part["alpha"] is None else f"Dirichlet({part['alpha']})"
        for a in part["attacks"]:
            if a["bar"]:
                continue
            why = []
            if not a["reward_bar"]:
                why.append(
                    f"relative reward {_ratio(a['relative_reward_total'])} in total, up to "
                    f"{_ratio(a['worst_relative_reward_after_round_1'])} in a round after the first"
                )
            if not a["accuracy_bar"]:
                why.append(f"accuracy {a['accuracy_gap_pp']:+.1f} pp")
            lines.append(
                f"- {name}, {a['reference']}, bounds {a['bounds']}: {LABELS[a['strategy']]}: "
                + "; ".join(why)
            )
    if len(lines) == 3:
        lines.append("- nowhere")
    return lines


if __name__ == "__main__":
    sys.exit(main())
