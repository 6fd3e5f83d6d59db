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
from typing import Any, cast

import requests
from eth_typing import ABIEvent
from eth_utils.abi import event_abi_to_log_topic
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.exceptions import Web3Exception
from web3.types import LogReceipt

from fl_client.chain import AGGREGATION_CODES, DISTANCE_CODES, MODE_CODES, PHASES, DeploymentRecord
from fl_client.config import FixedPointFormat
from fl_client.dashboard.history import CALLDATA_EVENTS, FunctionCall, History, Parameters
from fl_client.dashboard.ledger import ChainEvent, Rules
from fl_client.errors import FLError
from fl_client.evaluation import Evaluator

logger = logging.getLogger(__name__)

LOG_RANGE = 10_000  # blocks per eth_getLogs
MAX_BLOCKS_PER_POLL = 200_000  # a long history is read over several polls, each one shown
CREATION_WINDOW = 5_000  # blocks searched at a time, backwards, for the constructor's event
CREATION_WINDOWS = 40
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
_NAMES = {
    "mode": {code: name for name, code in MODE_CODES.items()},
    "aggregation": {code: name for name, code in AGGREGATION_CODES.items()},
    "distance": {code: name for name, code in DISTANCE_CODES.items()},
}


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


def _hex(value: Any) -> str:
    return "0x" + bytes(value).hex()


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
        self.contract: Contract = self.w3.eth.contract(
            address=to_checksum_address(record.address), abi=list(abi)
        )
        self._events: dict[bytes, str] = {
            bytes(event_abi_to_log_topic(cast(ABIEvent, item))): str(item["name"])
            for item in abi
            if item.get("type") == "event"
        }
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
            reads = self.read_state(latest)
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
        events = [event for event in map(self._decode, logs) if event is not None]
        calls = {
            tx: self._call_of(tx)
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

    def _decode(self, log: LogReceipt) -> ChainEvent | None:
        topics = log["topics"]
        name = self._events.get(bytes(topics[0])) if topics else None
        if name is None:
            return None  # not an event of this ABI
        decoded = getattr(self.contract.events, name)().process_log(log)
        return ChainEvent(
            name=name,
            args=dict(decoded["args"]),
            block_number=int(log["blockNumber"]),
            transaction=_hex(log["transactionHash"]),
            log_index=int(log["logIndex"]),
        )

    def _call_of(self, transaction: str) -> FunctionCall | None:
        """The coordinator function a transaction called and its arguments (``None`` when it
        called another contract, which then called the coordinator)."""
        tx = self.w3.eth.get_transaction(HexBytes(transaction))
        to = tx.get("to")
        if to is None or to_checksum_address(str(to)) != self.contract.address:
            return None
        try:
            function, args = self.contract.decode_function_input(tx["input"])
        except ValueError:
            return None
        return str(function.fn_name), dict(args)

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
        params = self._read_parameters()
        evaluator = Evaluator(self.record, params.fixed_point) if self.evaluate else None
        history = History(
            params,
            evaluator,
            first_block=self._creation_block(min(latest, self.record.block_number)),
        )
        self.history = history
        return history

    def _read_parameters(self) -> Parameters:
        f = self.contract.functions
        thresholds, rewards = f.rewardTiers().call()
        return Parameters(
            num_weights=int(f.numWeights().call()),
            num_words=int(f.numWords().call()),
            words_per_segment=int(f.wordsPerSegment().call()),
            num_segments=int(f.numSegments().call()),
            fixed_point=FixedPointFormat(
                scale=int(f.scale().call()), max_abs=int(f.maxAbsWeight().call())
            ),
            target=int(f.targetSubmissions().call()),
            minimum=int(f.minSubmissions().call()),
            round_duration=int(f.roundDuration().call()),
            close_window=int(f.closeWindow().call()),
            mode=_NAMES["mode"].get(int(f.mode().call()), "unknown"),
            aggregation=_NAMES["aggregation"].get(int(f.aggregation().call()), "unknown"),
            distance=_NAMES["distance"].get(int(f.distance().call()), "unknown"),
            rules=Rules(
                max_counted_distance=int(f.maxCountedDistance().call()),
                min_alignment_bps=int(f.minAlignment().call()),
                min_reward_distance=int(f.minRewardDistance().call()),
                tier_thresholds=tuple(int(t) for t in thresholds),
                tier_rewards=tuple(int(r) for r in rewards),
            ),
            close_fee=int(f.closeFee().call()),
            relay_fee=int(f.relayFee().call()),
            owner=str(f.owner().call()),
        )

    def _creation_block(self, end: int) -> int:
        """The block of the constructor's ``OwnershipTransferred(0, owner)``, searched backwards
        from the block the deployment record names (that block when it is not found)."""
        topic = next(
            "0x" + t.hex() for t, name in self._events.items() if name == "OwnershipTransferred"
        )
        for _ in range(CREATION_WINDOWS):
            start = max(0, end - CREATION_WINDOW + 1)
            logs = self.w3.eth.get_logs(
                {
                    "address": self.contract.address,
                    "fromBlock": start,
                    "toBlock": end,
                    "topics": [topic, "0x" + "00" * 32],
                }
            )
            if logs:
                return int(logs[0]["blockNumber"])
            if start == 0:
                break
            end = start - 1
        logger.warning("the coordinator's creation was not found: reading from the record's block")
        return self.record.block_number

    # ---------------------------------------------------------------- free reads

    def read_state(self, block: int) -> dict[str, Any]:
        """The free reads the page shows, all at ``block``."""
        assert self.history is not None
        f = self.contract.functions

        def call(function: Any) -> Any:
            return function.call(block_identifier=block)

        number, phase, deadline, submissions, closed = call(f.roundInfo())
        completed, commits, close_started, window_ends = call(f.roundDetails())
        return {
            "block": block,
            "block_time": int(self.w3.eth.get_block(block)["timestamp"]),
            "round": {
                "number": int(number),
                "phase": PHASES[int(phase)] if int(phase) < len(PHASES) else str(phase),
                "deadline": int(deadline),
                "submissions": int(submissions),
                "closed_segments": int(closed),
                "completed": int(completed),
                "commits": int(commits),
                "close_started_at": int(close_started),
                "window_ends": int(window_ends),
            },
            "model_version": int(call(f.modelVersion())),
            "model_hash": _hex(call(f.modelHash())),
            "pool": {
                "funded": int(call(f.totalFunded())),
                "credited": int(call(f.totalCredited())),
                "withdrawn": int(call(f.totalWithdrawn())),
                "available": int(call(f.availableRewards())),
                "balance": int(self.w3.eth.get_balance(self.contract.address, block)),
            },
            "credits": {
                address: int(call(f.credit(address))) for address in self.history.ledger.accounts
            },
        }

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
