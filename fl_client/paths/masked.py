"""The secure-aggregation path: register an X25519 key once, then submit words masked with
pairwise masks that cancel in the cohort's sum."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fl_client.chain import Call, RoundInfo, read_cohort
from fl_client.client_secret import derive
from fl_client.paths.base import PathContext, UpdateFactory
from fl_client.privacy import (
    MaskContext,
    masked_words,
    pair_seed,
    private_key_from_seed,
    public_key_bytes,
)


class MaskedPath:
    """``registerKey`` until the cohort is whole, then ``submitMasked`` once a round."""

    name = "masked"

    def __init__(self, context: PathContext) -> None:
        self.context = context

    def key(self) -> X25519PrivateKey:
        """This client's X25519 key (from its secret)."""
        return private_key_from_seed(derive(self.context.secret, "x25519"))

    def act(self, info: RoundInfo, update: UpdateFactory, *, now: int) -> list[Call]:
        """The key registration, or the masked submission once the cohort is whole."""
        ctx = self.context
        functions = ctx.contract.functions
        if bytes(functions.publicKeyOf(ctx.account).call()) == bytes(32):
            return [
                Call(
                    functions.registerKey(public_key_bytes(self.key())), ctx.account, "registerKey"
                )
            ]
        cohort = read_cohort(ctx.contract)
        if (
            info.phase != "Open"
            or now >= info.deadline
            or len(cohort) < ctx.view.target
            or ctx.submitted(info.number)
        ):
            return []
        chosen = update()
        own = self.key()
        index = [account for account, _ in cohort].index(ctx.account)
        mask_context = MaskContext(ctx.view.chain_id, ctx.view.address, info.number)
        seeds = {
            j: pair_seed(own, key, mask_context) for j, (_, key) in enumerate(cohort) if j != index
        }
        words = masked_words(
            chosen.values,
            weight=chosen.sample_count if ctx.view.sample_weighted else 1,
            lane_bits=ctx.view.lane_bits,
            own_index=index,
            peer_seeds=seeds,
        )
        function = functions.submitMasked(info.number, chosen.sample_count, words)
        return [Call(function, ctx.account, f"submitMasked round {info.number}")]
