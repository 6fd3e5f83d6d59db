"""The relay: takes clients' signed updates, registers them on-chain in batches, and carries their
words into the round's closes (it pays the gas and is reimbursed from the pool by the fees).

It checks an update before it spends gas on it: the open round, the signature (eth-account
recovers the signer; the form the contract takes: ``v`` 27 or 28, low ``s``), the words against
the signed hashes, the range of every weight, that the client has no update in the round yet and
that the round has a place left, and then runs the registration of that update alone as a free
call, so that whatever else the contract would refuse (eligibility, sample count, privacy
budget) is refused at hand-over with the contract's error. Before each batch it runs every
update alone again and drops the ones the chain would now refuse: one bad update cannot revert
the batch of the others. It cannot change an update: the contract checks the signature again and
the close checks the words against the signed hashes.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
from web3.contract import Contract
from web3.types import TxReceipt

from fl_client.chain import (
    Chain,
    CoordinatorView,
    SignedUpdate,
    call_with_retry,
    read_progress,
    read_round,
    recover_update_signer,
    relay_function,
    send,
    translate,
    update_typed_data,
)
from fl_client.closer import RoundCloser
from fl_client.codec import segment_hashes, unpack, vector_hash
from fl_client.errors import CodecError, ContractRevertError, UpdateRefusedError

logger = logging.getLogger(__name__)

# Gas of registering one update, an upper bound: signature and books, plus a fresh slot per
# segment hash (measured: bench/results/gas.json, "relay_registration_gas").
_REGISTER_GAS = 90_000
_REGISTER_GAS_PER_SEGMENT = 25_000
_REGISTER_BYTES = 32 * 8  # an update's tuple in the calldata, without its hashes
# secp256k1's group order: the contract (OpenZeppelin ECDSA) takes s <= n / 2 only.
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class Relay:
    """Relays the signed updates of one coordinator's clients."""

    def __init__(
        self, *, chain: Chain, contract: Contract, account: str, view: CoordinatorView
    ) -> None:
        self.chain = chain
        self.contract = contract
        self.account = account
        self.view = view
        self._lock = threading.Lock()
        self._pending: dict[tuple[int, str], SignedUpdate] = {}
        self._registered: dict[tuple[int, str], SignedUpdate] = {}
        self.closer = RoundCloser(
            chain=chain, contract=contract, account=account, view=view, relayed_words=self.words
        )

    # ------------------------------------------------------------ taking updates

    def hand_over(self, update: SignedUpdate) -> None:
        """Check ``update`` and queue it for registration.

        Raises
        ------
        UpdateRefusedError
            The update would be refused on-chain, or is malformed.
        """
        info = read_round(self.contract)
        if info.phase != "Open" or update.round_number != info.number:
            raise UpdateRefusedError(
                f"round {update.round_number} is not open for relayed updates (the contract is at "
                f"round {info.number}, {info.phase})"
            )
        if self.chain.timestamp() >= info.deadline:
            raise UpdateRefusedError(f"round {info.number}'s deadline has passed")
        self._check(update)
        key = (update.round_number, update.client)
        with self._lock:
            if key in self._pending or key in self._registered:
                raise UpdateRefusedError(
                    f"{update.client} already handed an update for round {info.number}"
                )
            if read_progress(self.contract, update.client).round_number == info.number:
                raise UpdateRefusedError(
                    f"{update.client} already has an update in round {info.number}"
                )
            waiting = sum(1 for k in self._pending if k[0] == info.number)
            if info.submissions + waiting >= self.view.target:
                raise UpdateRefusedError(
                    f"round {info.number} is full: {info.submissions} update(s) registered and "
                    f"{waiting} waiting here, for {self.view.target} places"
                )
        self._refusal(update, info.number, raise_it=True)
        with self._lock:
            if key in self._pending:
                raise UpdateRefusedError(
                    f"{update.client} already handed an update for round {info.number}"
                )
            self._pending[key] = update
        logger.info("relay: took %s's update for round %d", update.client, info.number)

    def _refusal(
        self, update: SignedUpdate, round_number: int, *, raise_it: bool = False
    ) -> ContractRevertError | None:
        """What the contract would say to registering ``update`` alone now (a free call):
        ``None`` when it would take it. With ``raise_it``, a refusal is raised as
        :class:`UpdateRefusedError`."""
        function = relay_function(self.contract, round_number, [update])
        try:
            call_with_retry(lambda: function.call({"from": self.account}))
        except Exception as exc:
            error = translate(exc, self.contract.abi, "submitRelayed")
            if not isinstance(error, ContractRevertError):
                raise error from exc
            if raise_it:
                raise UpdateRefusedError(f"the contract would refuse it: {error}") from None
            return error
        return None

    def _check(self, update: SignedUpdate) -> None:
        view = self.view
        if len(update.words) != view.num_words:
            raise UpdateRefusedError(
                f"words: {len(update.words)} where the model has {view.num_words}"
            )
        try:
            values = unpack(list(update.words), view.num_weights)
        except CodecError as exc:
            raise UpdateRefusedError(f"words: {exc}") from None
        bad = np.flatnonzero(np.abs(values) > view.fixed_point.max_abs)
        if bad.size:
            raise UpdateRefusedError(
                f"weight {int(bad[0])} is {int(values[bad[0]])}, outside +-{view.fixed_point.max_abs}"
            )
        if list(update.segment_hashes) != segment_hashes(update.words, view.words_per_segment):
            raise UpdateRefusedError("the segment hashes do not match the words")
        if not 0 < update.sample_count <= 2**32 - 1:
            raise UpdateRefusedError(f"sampleCount {update.sample_count} is out of range")
        signature = update.signature
        if signature.v not in (27, 28):
            raise UpdateRefusedError(f"signature.v is {signature.v}: the contract takes 27 or 28")
        r, s = int.from_bytes(signature.r, "big"), int.from_bytes(signature.s, "big")
        if not (0 < r < _SECP256K1_N and 0 < s <= _SECP256K1_N // 2):
            raise UpdateRefusedError(
                "signature r or s is out of range (the contract takes 0 < r < n and a low s, "
                "0 < s <= n/2, so that a signature has one form)"
            )
        typed = update_typed_data(
            chain_id=view.chain_id,
            contract=view.address,
            round_number=update.round_number,
            segments=view.num_segments,
            sample_count=update.sample_count,
            words_hash=vector_hash(update.words, view.words_per_segment),
        )
        try:
            signer = recover_update_signer(typed, update.signature)
        except (ValueError, TypeError) as exc:
            raise UpdateRefusedError(f"the signature is malformed: {exc}") from None
        if signer != update.client:
            raise UpdateRefusedError(
                f"the signature recovers to {signer}, not {update.client} (signed for another "
                "round, contract or chain, or altered)"
            )

    def words(self, round_number: int, client: str) -> tuple[int, ...] | None:
        """The words of ``client``'s relayed update in ``round_number`` (for closers)."""
        with self._lock:
            found = self._registered.get((round_number, client))
        return None if found is None else found.words

    def pending(self) -> int:
        """Updates taken and not registered yet."""
        with self._lock:
            return len(self._pending)

    # ------------------------------------------------------------ on-chain work

    def register(self) -> list[TxReceipt]:
        """Register the open round's pending updates (``submitRelayed``), in batches that fit a
        transaction; updates of a round that moved on are dropped."""
        info = read_round(self.contract)
        with self._lock:
            due = [u for key, u in self._pending.items() if key[0] == info.number]
            self._pending = {k: u for k, u in self._pending.items() if k[0] >= info.number}
        if not due or info.phase != "Open":
            return []
        # Each update is run alone first (a free call): whatever changed since hand-over drops
        # that update alone, before it can revert a batch. A client may have fallen back to
        # submitting directly meanwhile, or someone may have registered its signed update first
        # (copied from this relay's pending transaction): both are replays. When the chain holds
        # this very update, the relay keeps its words for the close.
        for update in list(due):
            error = self._refusal(update, info.number)
            if error is None:
                continue
            due.remove(update)
            key = (update.round_number, update.client)
            held = error.name == "CoordinatorUpdateReplayed" and self._holds_on_chain(update)
            with self._lock:
                self._pending.pop(key, None)
                if held:
                    self._registered[key] = update
            if held:
                logger.info(
                    "relay: %s's update for round %d is on-chain already (registered by another "
                    "account, or sent directly): its words are kept for the close",
                    update.client,
                    info.number,
                )
            else:
                logger.warning(
                    "relay: dropped %s's update for round %d: %s", update.client, info.number, error
                )
        due = due[: max(0, self.view.target - read_round(self.contract).submissions)]
        if not due:
            return []
        per_update_gas = _REGISTER_GAS + _REGISTER_GAS_PER_SEGMENT * self.view.num_segments
        per_update_bytes = _REGISTER_BYTES + 32 * self.view.num_segments
        batch = max(
            1,
            min(int(self.chain.tx_gas_cap * 0.8) // per_update_gas, 120_000 // per_update_bytes),
        )
        receipts = []
        for start in range(0, len(due), batch):
            part = due[start : start + batch]
            function = relay_function(self.contract, info.number, part)
            receipts.append(
                send(self.chain, function, self.account, what=f"submitRelayed round {info.number}")
            )
            with self._lock:
                for update in part:
                    key = (update.round_number, update.client)
                    self._pending.pop(key, None)
                    self._registered[key] = update
            logger.info("relay: registered %d update(s) for round %d", len(part), info.number)
        return receipts

    def _holds_on_chain(self, update: SignedUpdate) -> bool:
        """Whether the chain's segment hashes for ``update.client`` are ``update``'s."""
        functions = self.contract.functions
        for segment, expected in enumerate(update.segment_hashes):
            function = functions.segmentHash(update.client, segment)
            if bytes(call_with_retry(function.call)) != expected:
                return False
        return True

    def poll(self) -> list[TxReceipt]:
        """Register what is pending and close the round when it can be closed."""
        receipts = self.register()
        info = read_round(self.contract)
        now = max(self.chain.timestamp(), int(time.time()))
        if self.closer.closable(info, now):
            receipts.extend(self.closer.close(now=now))
        with self._lock:
            self._registered = {
                k: u for k, u in self._registered.items() if k[0] >= info.number - 1
            }
        return receipts
