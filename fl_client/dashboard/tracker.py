"""Following one deployment on its node: its events since creation, its free reads, its models.

Nothing is stored but in memory. On start the tracker finds the block that created the
coordinator (its constructor's ``OwnershipTransferred`` from the zero address), reads every log of
the coordinator from there with ``eth_getLogs`` (in ranges, then incrementally on each poll), and
hands them to a :class:`~fl_client.dashboard.history.History` with the calldata of the
transactions that made a model (``loadInitialModel``, ``closeSegment``) and the gas of every
transaction. Once it has read up to the latest block it reads the free calls that give the current
figures (``roundInfo``, ``roundDetails``, ``modelVersion``, ``modelHash``, ``totalFunded``,
``totalCredited``, ``totalWithdrawn``, ``availableRewards``, ``credit`` of every account seen).
A restarted tracker reads the same chain and shows the same history.

A node that stops answering leaves the last state in place, and the status says since when; the
next poll that gets an answer carries on from the last block read. A node that comes back with a
shorter chain (restarted without its state) is read again from scratch.

Every method runs on one thread (the server's worker): web3 is not shared between threads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import requests
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.exceptions import Web3Exception

from fl_client.chain import DeploymentRecord
from fl_client.dashboard.history import CALLDATA_EVENTS, History
from fl_client.dashboard.reader import CoordinatorReader
from fl_client.errors import FLError
from fl_client.evaluation import Evaluator

logger = logging.getLogger(__name__)

LOG_RANGE = 10_000  # blocks per eth_getLogs
MAX_BLOCKS_PER_POLL = 200_000  # a long history is read over several polls, each one shown
REQUEST_TIMEOUT = 5.0

UNREACHABLE_ERRORS: tuple[type[BaseException], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    ConnectionError,
    TimeoutError,
)
# The node answered, but not with what was asked (an HTTP error, a JSON-RPC error, a bad value).
READ_ERRORS: tuple[type[BaseException], ...] = (
    requests.RequestException,
    Web3Exception,
    FLError,
    ValueError,
    KeyError,
)


class DeploymentMissingError(FLError):
    """The node answers but does not hold the deployment (another chain, or a node restarted
    without its state)."""


@dataclass(frozen=True)
class NodeStatus:
    """Whether the node answers, and since when it does not."""

    reachable: bool = False
    down_since: float | None = None  # wall time of the first failed poll of this outage
    back_since: float | None = None  # wall time the node answered again after an outage
    message: str | None = None


class Tracker:
    """The dashboard's view of one deployment, kept up to date by :meth:`poll`."""

    def __init__(
        self,
        *,
        record: DeploymentRecord,
        url: str,
        abi: Sequence[dict[str, Any]],
        network: str,
        evaluate: bool = True,
        request_timeout: float = REQUEST_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.record = record
        self.url = url
        self.network = network
        self.evaluate = evaluate
        self.clock = clock
        # No retries inside web3: the next poll retries, and an outage shows at once.
        provider = HTTPProvider(
            url, request_kwargs={"timeout": request_timeout}, exception_retry_configuration=None
        )
        self.w3 = Web3(provider)
        self.reader = CoordinatorReader(self.w3, record.address, abi)
        self.contract: Contract = self.reader.contract
        self.status = NodeStatus()
        self.revision = 0
        self.history: History | None = None
        self.read_block: int | None = None  # the last block whose logs were taken
        self.latest_block: int | None = None
        self.reads: dict[str, Any] = {}

    def _forget(self) -> None:
        self.history = None
        self.read_block = None
        self.reads = {}

    # ---------------------------------------------------------------- polling

    def poll(self) -> bool:
        """Catch up with the chain. Returns whether anything the page shows changed; never
        raises for the chain's sake (failures become the node status)."""
        now = self.clock()
        try:
            changed = self._catch_up()
        except UNREACHABLE_ERRORS as exc:
            return self._failed(
                now, f"the node at {self.url} does not answer ({type(exc).__name__})"
            )
        except DeploymentMissingError as exc:
            self._forget()
            return self._failed(now, str(exc), reachable=True)
        except READ_ERRORS as exc:
            logger.warning("dashboard: reading the chain failed: %s", exc)
            return self._failed(now, f"reading the chain failed: {exc}", reachable=True)
        status = self.status
        if not status.reachable or status.message is not None:
            self.status = NodeStatus(
                reachable=True, back_since=now if status.down_since is not None else None
            )
            changed = True
        if changed:
            self.revision += 1
        return changed

    def _failed(self, now: float, message: str, *, reachable: bool = False) -> bool:
        status = self.status
        if status.reachable == reachable and status.message == message:
            return False
        logger.warning("dashboard: %s", message)
        self.status = NodeStatus(
            reachable=reachable,
            down_since=None if reachable else (status.down_since or now),
            message=message,
        )
        self.revision += 1
        return True

    def _catch_up(self) -> bool:
        latest = int(self.w3.eth.block_number)
        if self.read_block is not None and latest < self.read_block:
            logger.warning("the node's chain is shorter than the one read: reading it again")
            self._forget()
        history = self.history or self._first_contact(latest)
        changed = False
        if self.read_block is None or self.read_block < latest:
            created = history.first_block
            start = created if self.read_block is None else self.read_block + 1
            end = min(latest, start + MAX_BLOCKS_PER_POLL - 1)
            for first in range(start, end + 1, LOG_RANGE):
                self._read_range(history, first, min(end, first + LOG_RANGE - 1))
            changed = True
        self.latest_block = latest
        if self.read_block == latest and self.reads.get("block") != latest:
            reads = self.reader.read_state(latest, history.ledger.accounts)
            wanted = history.wanted_model(int(reads["model_version"]))
            if wanted is not None:
                words = [int(w) for w in self.contract.functions.globalModel().call()]
                history.adopt(*wanted, words)
            self.reads = reads
            changed = True
        return changed

    def _read_range(self, history: History, first: int, last: int) -> None:
        """Take the logs of blocks ``first..last``. Everything they need from the node is read
        before the first one is applied, so a node that fails half-way leaves the history as it
        was, and the next poll reads the range again."""
        logs = self.w3.eth.get_logs(
            {"address": self.contract.address, "fromBlock": first, "toBlock": last}
        )
        events = [event for event in map(self.reader.decode, logs) if event is not None]
        calls = {
            tx: self.reader.call_of(tx)
            for tx in dict.fromkeys(e.transaction for e in events if e.name in CALLDATA_EVENTS)
        }
        gas = {
            tx: int(self.w3.eth.get_transaction_receipt(HexBytes(tx))["gasUsed"])
            for tx in dict.fromkeys(e.transaction for e in events)
        }
        try:
            for event in events:
                history.apply(event, calls.get(event.transaction))
            for tx, used in gas.items():
                history.ledger.record_gas(tx, used)
        except BaseException:
            self._forget()  # half a range was applied: read everything again next time
            raise
        self.read_block = last

    # ---------------------------------------------------------------- first contact

    def _first_contact(self, latest: int) -> History:
        chain_id = int(self.w3.eth.chain_id)
        if chain_id != self.record.chain_id:
            raise DeploymentMissingError(
                f"the node at {self.url} is chain {chain_id}; the deployment is on chain "
                f"{self.record.chain_id}"
            )
        if not self.w3.eth.get_code(self.contract.address):
            raise DeploymentMissingError(
                f"no coordinator at {self.record.address} on the node at {self.url} (a node "
                "restarted without its state loses every deployment)"
            )
        params = self.reader.read_parameters()
        evaluator = Evaluator(self.record, params.fixed_point) if self.evaluate else None
        history = History(
            params,
            evaluator,
            first_block=self.reader.creation_block(
                min(latest, self.record.block_number), self.record.block_number
            ),
        )
        self.history = history
        return history

    # ---------------------------------------------------------------- the page's data

    def snapshot(self) -> dict[str, Any]:
        """Everything the page shows, JSON-ready."""
        status = self.status
        data: dict[str, Any] = {
            "revision": self.revision,
            "ready": bool(self.reads),
            "server_time": self.clock(),
            "block_time": self.reads.get("block_time"),
            "deployment": {
                "network": self.network,
                "chain_id": self.record.chain_id,
                "address": to_checksum_address(self.record.address),
                "dataset": self.record.dataset,
                "task": self.record.task or self.record.dataset,
                "hidden_layers": list(self.record.hidden_layers),
                "record_block": self.record.block_number,
            },
            "node": {
                "url": self.url,
                "reachable": status.reachable,
                "down_since": status.down_since,
                "back_since": status.back_since,
                "message": status.message,
                "read_block": self.read_block,
                "latest_block": self.latest_block,
            },
        }
        if self.history is not None:
            data.update(self.history.page_data(self.reads or None))
        return data
