"""Helpers of the secure-aggregation and privacy tests: a cohort whose members act through their
masked path (``fl_client.paths.MaskedPath``), and what a member computes by hand from
``fl_client.secagg`` (keys, proofs, masked words, shares) when a test departs from the honest path.

Not a test module: the test modules import it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from eth_account import Account
from web3.contract import Contract
from web3.types import TxReceipt

from fl_client.aggregation import rounded_div
from fl_client.chain import (
    Chain,
    CoordinatorView,
    read_cohort,
    read_round,
    send,
    shares_posted,
)
from fl_client.client_secret import simulation_secret
from fl_client.closer import MaskedRoundCloser
from fl_client.codec import LANES, OFFSET, pack, words_for
from fl_client.paths import MaskedPath, PathContext, Update
from fl_client.secagg import (
    MaskingKey,
    add_lanes,
    key_proof_digest,
    masked_update,
    pair_seed,
    share_commitment,
    share_pad,
    shared_address,
)
from tests.conftest import SMALL_WEIGHTS

# Phases as the contract numbers them (CoordinatorTypes.Phase).
OPEN, REGISTER, SHARE, RECOVER = 1, 5, 6, 7
SETUP_SECONDS = 300
RECOVERY_SECONDS = 300
ROUND_SECONDS = 600  # small_params' roundDuration: the Open phase


def secure_params(
    members: int, max_dropouts: int, *, min_submissions: int = 2, **changes: Any
) -> dict[str, Any]:
    """Changes to ``small_params`` for a secure-aggregation deployment of ``members`` per cohort."""
    return {
        "mode": "secure_aggregation",
        "target_submissions": members,
        "min_submissions": min_submissions,
        "max_dropouts": max_dropouts,
        "setup_duration": SETUP_SECONDS,
        "recovery_duration": RECOVERY_SECONDS,
        **changes,
    }


# ---------------------------------------------------------------- honest members


@dataclass
class Cohort:
    """Accounts of one deployment, each with its masked path and this round's update."""

    chain: Chain
    contract: Contract
    accounts: list[str]
    paths: list[MaskedPath]
    updates: dict[int, Update]

    @classmethod
    def of(cls, chain: Chain, contract: Contract, accounts: Sequence[str]) -> Cohort:
        """Masked paths for ``accounts`` (each with its reproducible client secret)."""
        view = CoordinatorView.read(chain, contract)
        paths = [
            MaskedPath(PathContext(chain, contract, account, view, simulation_secret(7, i)))
            for i, account in enumerate(accounts)
        ]
        return cls(chain, contract, list(accounts), paths, {})

    def set_updates(
        self, vectors: Mapping[int, np.ndarray], *, round_number: int, samples: int = 1
    ) -> None:
        """The update each member (by position) would submit in ``round_number``."""
        self.updates = {
            i: Update(round_number, tuple(pack(v)), np.asarray(v, dtype=np.int64), samples)
            for i, v in vectors.items()
        }

    def act(self, members: Sequence[int] | None = None) -> list[TxReceipt]:
        """Every chosen member (default: all) sends what its path asks in the open phase."""
        chosen = range(len(self.accounts)) if members is None else members
        receipts: list[TxReceipt] = []
        for i in chosen:
            info = read_round(self.contract)
            update = partial(self.updates.__getitem__, i)
            calls = self.paths[i].act(info, update, now=self.chain.timestamp())
            receipts.extend(send(self.chain, call.function, call.sender) for call in calls)
        return receipts

    def key(self, member: int, round_number: int) -> MaskingKey:
        """Member ``member``'s masking key in ``round_number``."""
        return self.paths[member].key(round_number)

    def close(self, closer: str) -> list[TxReceipt]:
        """Close the open round with the masked closer (every segment)."""
        view = self.paths[0].context.view
        masked = MaskedRoundCloser(
            chain=self.chain, contract=self.contract, account=closer, view=view
        )
        return masked.close(now=self.chain.timestamp())


def finish_phase(chain: Chain, contract: Contract, sender: str) -> TxReceipt:
    """Let the open phase's deadline pass and ``finalize``: the next phase, or the round's end."""
    deadline = read_round(contract).deadline
    if chain.timestamp() < deadline:
        chain.advance_time(deadline - chain.timestamp())
    return send(chain, contract.functions.finalize(), sender)


# ---------------------------------------------------------------- by hand


def key_proof(
    chain: Chain,
    contract: Contract,
    *,
    account: str,
    x: int,
    y: int,
    round_number: int,
    secret: int,
) -> tuple[int, bytes, bytes]:
    """``(v, r, s)``: the signature by ``secret`` over the key proof digest of ``account``'s key
    ``(x, y)`` in ``round_number`` (valid only when ``secret`` is the key's)."""
    digest = key_proof_digest(
        chain_id=chain.chain_id(),
        contract=str(contract.address),
        round_number=round_number,
        member=account,
        x=x,
        y=y,
    )
    signature = Account.unsafe_sign_hash(digest, secret.to_bytes(32, "big"))
    return (
        int(signature.v),
        int(signature.r).to_bytes(32, "big"),
        int(signature.s).to_bytes(32, "big"),
    )


def register(
    chain: Chain,
    contract: Contract,
    account: str,
    *,
    x: int,
    y: int,
    proof: tuple[int, bytes, bytes],
    round_number: int = 1,
) -> TxReceipt:
    """``registerKey`` with the given key and proof."""
    v, r, s = proof
    return send(chain, contract.functions.registerKey(round_number, x, y, v, r, s), account)


def register_key(
    chain: Chain, contract: Contract, account: str, key: MaskingKey, *, round_number: int = 1
) -> TxReceipt:
    """Register ``key`` from ``account`` with a valid proof of possession."""
    proof = key_proof(
        chain,
        contract,
        account=account,
        x=key.x,
        y=key.y,
        round_number=round_number,
        secret=key.secret,
    )
    return register(
        chain, contract, account, x=key.x, y=key.y, proof=proof, round_number=round_number
    )


def post_shares(
    chain: Chain,
    contract: Contract,
    account: str,
    key: MaskingKey,
    shares: Sequence[int],
    *,
    round_number: int = 1,
) -> TxReceipt:
    """``postShares`` of the given share values: each committed to and encrypted to its holder
    as an honest dealer would (whatever the values are)."""
    members = read_cohort(contract).members
    commitments = [
        share_commitment(
            round_number=round_number, dealer=account, holder=m.index, share=shares[m.index]
        )
        for m in members
    ]
    encrypted = [
        (
            shares[m.index]
            ^ share_pad(
                shared_address(key.secret, m.x, m.y),
                round_number=round_number,
                dealer=account,
                holder=m.index,
            )
        ).to_bytes(32, "big")
        for m in members
    ]
    return send(chain, contract.functions.postShares(round_number, commitments, encrypted), account)


def masked_words(
    chain: Chain,
    contract: Contract,
    account: str,
    key: MaskingKey,
    values: np.ndarray,
    *,
    round_number: int = 1,
    weight: int = 1,
) -> list[int]:
    """What ``account`` submits for ``values``: its masks with every member that posted shares."""
    cohort = read_cohort(contract)
    me = cohort.member(account)
    assert me is not None, f"{account} is not in the cohort"
    seeds = {
        m.index: pair_seed(
            shared_address(key.secret, m.x, m.y),
            chain_id=chain.chain_id(),
            contract=str(contract.address),
            round_number=round_number,
            a=account,
            b=m.account,
        )
        for m in cohort.members
        if m.shared and m.account != account
    }
    lane_bits = int(contract.functions.laneBits().call())
    return masked_update(
        values, weight=weight, lane_bits=lane_bits, own_index=me.index, peer_seeds=seeds
    )


def submit_masked(
    chain: Chain,
    contract: Contract,
    account: str,
    words: Sequence[int],
    *,
    round_number: int = 1,
    sample_count: int = 1,
) -> TxReceipt:
    """``submitMasked`` of the whole masked vector in one transaction."""
    function = contract.functions.submitMasked(
        round_number, sample_count, 0, [int(w) for w in words]
    )
    return send(chain, function, account)


# ---------------------------------------------------------------- the masked layout


def lane_position(index: int, lane_bits: int) -> tuple[int, int]:
    """Masked word and bit shift of weight ``index`` (natural layout, padding included)."""
    per_word = 256 // lane_bits
    return index // per_word, (index % per_word) * lane_bits


def lane_of(words: Sequence[int], index: int, lane_bits: int) -> int:
    """The raw lane of weight ``index`` in masked ``words``."""
    word, shift = lane_position(index, lane_bits)
    return (int(words[word]) >> shift) & ((1 << lane_bits) - 1)


def plain_lanes(values: np.ndarray, *, weight: int = 1, size: int = SMALL_WEIGHTS) -> list[int]:
    """``weight * (q + 32768)`` for every weight and padding lane: an unmasked lane's contents."""
    lanes = [weight * OFFSET] * (words_for(size) * LANES)
    for i, value in enumerate(values.tolist()):
        lanes[i] = weight * (int(value) + OFFSET)
    return lanes


def clamped_mean(lane_sum: int, weight_sum: int, *, lane_bits: int, max_abs: int) -> int:
    """What the close makes of a lane whose (modular) sum is ``lane_sum``: the signed sum
    ``lane_sum - 32768 * weight_sum`` modulo ``2**lane_bits`` in two's complement, divided and
    rounded as the contract does, then clamped to ``[-max_abs, max_abs]``."""
    modulus = 1 << lane_bits
    shifted = (lane_sum - OFFSET * weight_sum) % modulus
    signed = shifted - modulus if shifted >= modulus // 2 else shifted
    return max(-max_abs, min(max_abs, rounded_div(signed, weight_sum)))


def add_to_lane(words: Sequence[int], index: int, amount: int, lane_bits: int) -> list[int]:
    """``words`` with ``amount`` added to the lane of weight ``index`` (modulo ``2**lane_bits``)."""
    out = [int(w) for w in words]
    word, shift = lane_position(index, lane_bits)
    out[word] = add_lanes(out[word], (amount % (1 << lane_bits)) << shift, lane_bits)
    return out


def share_for(
    contract: Contract, *, holder: MaskingKey, holder_index: int, dealer: str, round_number: int = 1
) -> tuple[int, list[bytes]]:
    """The share of ``dealer``'s key that member ``holder_index`` decrypts from the dealer's
    ``SharesPosted`` event, and the dealer's commitments."""
    posted = shares_posted(contract, round_number, dealer)
    assert posted is not None, f"{dealer} posted no shares in round {round_number}"
    commitments, encrypted = posted
    member = read_cohort(contract).member(dealer)
    assert member is not None
    pad = share_pad(
        shared_address(holder.secret, member.x, member.y),
        round_number=round_number,
        dealer=dealer,
        holder=holder_index,
    )
    return int.from_bytes(encrypted[holder_index], "big") ^ pad, commitments
