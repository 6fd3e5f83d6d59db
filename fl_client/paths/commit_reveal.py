"""The commit-reveal path, against copycats: commit to a salted hash with a bond, reveal after
commits close (the bond comes back with the reveal)."""

from __future__ import annotations

from fl_client.chain import Call, RoundInfo, commitment, reveal_calls
from fl_client.client_secret import derive
from fl_client.codec import vector_hash
from fl_client.paths.base import PathContext, UpdateFactory


class CommitRevealPath:
    """``commit`` in the commit phase, ``reveal`` in the reveal phase."""

    name = "commit_reveal"

    def __init__(self, context: PathContext) -> None:
        self.context = context

    def salt(self, round_number: int) -> bytes:
        """This client's salt for ``round_number`` (from its secret: a restart finds it again)."""
        return derive(self.context.secret, "salt", round_number)

    def committed(self, round_number: int) -> bool:
        """Whether this account committed in ``round_number``."""
        ctx = self.context
        value = ctx.contract.functions.commitments(round_number, ctx.account).call()
        return bytes(value) != bytes(32)

    def act(self, info: RoundInfo, update: UpdateFactory, *, now: int) -> list[Call]:
        """The commit, or the remaining reveal transactions, as the phase asks."""
        ctx = self.context
        if now >= info.deadline:
            return []
        if info.phase == "Commit" and not self.committed(info.number):
            chosen = update()
            digest = commitment(
                chain_id=ctx.view.chain_id,
                contract_address=ctx.view.address,
                round_number=info.number,
                client=ctx.account,
                sample_count=chosen.sample_count,
                salt=self.salt(info.number),
                vector_hash=vector_hash(chosen.words, ctx.view.words_per_segment),
            )
            function = ctx.contract.functions.commit(info.number, digest)
            return [
                Call(function, ctx.account, f"commit round {info.number}", ctx.view.commit_bond)
            ]
        if (
            info.phase == "Reveal"
            and self.committed(info.number)
            and not ctx.submitted(info.number)
        ):
            chosen = update()
            return reveal_calls(
                ctx.contract,
                ctx.account,
                round_number=info.number,
                sample_count=chosen.sample_count,
                words=chosen.words,
                words_per_segment=ctx.view.words_per_segment,
                salt=self.salt(info.number),
                start_segment=ctx.next_segment(info.number),
            )
        return []
