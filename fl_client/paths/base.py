"""What every submission path shares: the update to send and the path's interface."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from web3.contract import Contract

from fl_client.chain import Call, Chain, CoordinatorView, RoundInfo, read_progress


@dataclass(frozen=True)
class Update:
    """A client's quantized update for one round."""

    round_number: int
    words: tuple[int, ...]  # packed (wire format)
    values: np.ndarray  # the quantized integers
    sample_count: int


UpdateFactory = Callable[[], Update]


@dataclass(frozen=True)
class PathContext:
    """Where a path sends: the chain, the coordinator, the account and what it needs to know."""

    chain: Chain
    contract: Contract
    account: str
    view: CoordinatorView
    secret: bytes

    def submitted(self, round_number: int) -> bool:
        """Whether this account has a whole update in ``round_number`` (sent, revealed, relayed)."""
        progress = read_progress(self.contract, self.account)
        return progress.round_number == round_number and (
            progress.relayed or progress.segments_done >= self.view.num_segments
        )

    def next_segment(self, round_number: int) -> int:
        """The first segment this account still has to send in ``round_number``."""
        progress = read_progress(self.contract, self.account)
        return progress.segments_done if progress.round_number == round_number else 0


class SubmissionPath(Protocol):
    """How a client hands in its update: each path is a small class of its own."""

    name: str

    def act(self, info: RoundInfo, update: UpdateFactory, *, now: int) -> list[Call]:
        """The transactions this account should send now in the open round (none when it has
        nothing to do); ``update`` trains on first use."""
        ...
