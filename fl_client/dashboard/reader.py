"""The dashboard's reads of one coordinator: its events decoded, the function a transaction
called, its parameters, the block it was created in and the free reads the page shows. Every
read goes to the node; nothing is kept here but the ABI's event topics."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, cast

from eth_typing import ABIEvent
from eth_utils.abi import event_abi_to_log_topic
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.types import LogReceipt

from fl_client.chain import AGGREGATION_CODES, DISTANCE_CODES, MODE_CODES, PHASES, REFERENCE_CODES
from fl_client.config import FixedPointFormat
from fl_client.dashboard.history import FunctionCall, Parameters
from fl_client.dashboard.ledger import ChainEvent, Rules

logger = logging.getLogger(__name__)

CREATION_WINDOW = 5_000  # blocks searched at a time, backwards, for the constructor's event
CREATION_WINDOWS = 40

_NAMES = {
    "mode": {code: name for name, code in MODE_CODES.items()},
    "aggregation": {code: name for name, code in AGGREGATION_CODES.items()},
    "distance": {code: name for name, code in DISTANCE_CODES.items()},
    "reference": {code: name for name, code in REFERENCE_CODES.items()},
}


def _hex(value: Any) -> str:
    return "0x" + bytes(value).hex()


class CoordinatorReader:
    """Reads one coordinator through ``w3``."""

    def __init__(self, w3: Web3, address: str, abi: Sequence[dict[str, Any]]) -> None:
        self.w3 = w3
        self.contract: Contract = w3.eth.contract(
            address=to_checksum_address(address), abi=list(abi)
        )
        self._events: dict[bytes, str] = {
            bytes(event_abi_to_log_topic(cast(ABIEvent, item))): str(item["name"])
            for item in abi
            if item.get("type") == "event"
        }

    def decode(self, log: LogReceipt) -> ChainEvent | None:
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

    def call_of(self, transaction: str) -> FunctionCall | None:
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

    def read_parameters(self) -> Parameters:
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
                reward_reference=_NAMES["reference"].get(
                    int(f.rewardReference().call()), "unknown"
                ),
            ),
            close_fee=int(f.closeFee().call()),
            relay_fee=int(f.relayFee().call()),
            owner=str(f.owner().call()),
            trim_each=int(f.trimEach().call()),
        )

    def creation_block(self, end: int, fallback: int) -> int:
        """The block of the constructor's ``OwnershipTransferred(0, owner)``, searched backwards
        from ``end`` (``fallback`` when it is not found)."""
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
        return fallback

    def read_state(self, block: int, accounts: Iterable[str]) -> dict[str, Any]:
        """The free reads the page shows, all at ``block``; ``accounts``: whose credit to read."""
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
            "credits": {address: int(call(f.credit(address))) for address in accounts},
        }
