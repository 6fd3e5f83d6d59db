"""The secure-aggregation path: each round register a fresh masking key (with its proof), post
its shares to the cohort, submit masked words, and reveal the shares of members that dropped out."""

from __future__ import annotations

from eth_account import Account

from fl_client.chain import (
    Call,
    Cohort,
    RoundInfo,
    masked_calls,
    read_cohort,
    round_opened_block,
    shares_posted,
)
from fl_client.client_secret import derive
from fl_client.paths.base import PathContext, UpdateFactory
from fl_client.secagg import (
    MaskingKey,
    key_proof_digest,
    masked_update,
    masking_key,
    pair_seed,
    shamir_split,
    share_commitment,
    share_pad,
    shared_address,
)


class MaskedPath:
    """Acts in each secure-aggregation phase of the open round."""

    name = "masked"

    def __init__(self, context: PathContext) -> None:
        self.context = context

    def key(self, round_number: int) -> MaskingKey:
        """This member's masking key for ``round_number`` (fresh every round, from its secret)."""
        return masking_key(derive(self.context.secret, "mask key", round_number))

    def act(self, info: RoundInfo, update: UpdateFactory, *, now: int) -> list[Call]:
        """The transaction the phase asks of this member, if any."""
        if now >= info.deadline:
            return []
        cohort = read_cohort(self.context.contract)
        me = cohort.member(self.context.account)
        if info.phase == "Register" and me is None:
            return [self._register(info.number)]
        if me is None:
            return []
        if info.phase == "Share" and not me.shared:
            return [self._post_shares(info.number, cohort)]
        if info.phase == "Open" and me.shared and not me.submitted:
            return self._submit(info.number, cohort, update)
        if info.phase == "Recover" and me.submitted:
            return self._reveal(info.number, cohort, me.index)
        return []

    def _register(self, round_number: int) -> Call:
        ctx = self.context
        key = self.key(round_number)
        digest = key_proof_digest(
            chain_id=ctx.view.chain_id,
            contract=ctx.view.address,
            round_number=round_number,
            member=ctx.account,
            x=key.x,
            y=key.y,
        )
        proof = Account.unsafe_sign_hash(digest, key.secret.to_bytes(32, "big"))
        function = ctx.contract.functions.registerKey(
            round_number,
            key.x,
            key.y,
            proof.v,
            proof.r.to_bytes(32, "big"),
            proof.s.to_bytes(32, "big"),
        )
        return Call(function, ctx.account, f"registerKey round {round_number}")

    def _post_shares(self, round_number: int, cohort: Cohort) -> Call:
        ctx = self.context
        key = self.key(round_number)
        count = len(cohort.members)
        shares = shamir_split(
            key.secret,
            threshold=cohort.threshold,
            count=count,
            randomness=derive(ctx.secret, "shamir", round_number),
        )
        commitments = [
            share_commitment(
                round_number=round_number, dealer=ctx.account, holder=m.index, share=shares[m.index]
            )
            for m in cohort.members
        ]
        encrypted = [
            (
                shares[m.index]
                ^ share_pad(
                    shared_address(key.secret, m.x, m.y),
                    round_number=round_number,
                    dealer=ctx.account,
                    holder=m.index,
                )
            ).to_bytes(32, "big")
            for m in cohort.members
        ]
        function = ctx.contract.functions.postShares(round_number, commitments, encrypted)
        return Call(function, ctx.account, f"postShares round {round_number}")

    def _submit(self, round_number: int, cohort: Cohort, update: UpdateFactory) -> list[Call]:
        ctx = self.context
        key = self.key(round_number)
        me = cohort.member(ctx.account)
        assert me is not None
        seeds = {
            m.index: pair_seed(
                shared_address(key.secret, m.x, m.y),
                chain_id=ctx.view.chain_id,
                contract=ctx.view.address,
                round_number=round_number,
                a=ctx.account,
                b=m.account,
            )
            for m in cohort.members
            if m.shared and m.account != ctx.account
        }
        chosen = update()
        words = masked_update(
            chosen.values,
            weight=chosen.sample_count if ctx.view.sample_weighted else 1,
            lane_bits=ctx.view.lane_bits,
            own_index=me.index,
            peer_seeds=seeds,
        )
        return masked_calls(
            ctx.contract,
            ctx.account,
            round_number=round_number,
            sample_count=chosen.sample_count,
            words=words,
            words_per_segment=ctx.view.words_per_segment * (ctx.view.lane_bits // 16),
            start_segment=ctx.next_segment(round_number),
        )

    def _reveal(self, round_number: int, cohort: Cohort, own_index: int) -> list[Call]:
        ctx = self.context
        key = self.key(round_number)
        done = {
            str(log["args"]["dealer"])
            for log in ctx.contract.events.ShareRevealed().get_logs(
                from_block=round_opened_block(ctx.contract, round_number),
                argument_filters={"round": round_number, "holder": ctx.account},
            )
        }
        revealed = []
        for dealer in cohort.members:
            if not dealer.dropped or dealer.recovered or dealer.account in done:
                continue
            posted = shares_posted(ctx.contract, round_number, dealer.account)
            if posted is None:
                continue
            commitments, encrypted = posted
            pad = share_pad(
                shared_address(key.secret, dealer.x, dealer.y),
                round_number=round_number,
                dealer=dealer.account,
                holder=own_index,
            )
            share = int.from_bytes(encrypted[own_index], "big") ^ pad
            revealed.append((dealer.account, share, commitments))
        if not revealed:
            return []
        function = ctx.contract.functions.revealShares(round_number, revealed)
        return [Call(function, ctx.account, f"revealShares round {round_number}")]
