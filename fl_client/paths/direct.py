"""The direct path: the client sends its update from its own account and is paid on submit."""

from __future__ import annotations

from fl_client.chain import Call, RoundInfo, submit_calls
from fl_client.paths.base import PathContext, UpdateFactory


class DirectPath:
    """``submit`` until every segment is in (a restarted client resumes at its next segment)."""

    name = "direct"

    def __init__(self, context: PathContext) -> None:
        self.context = context

    def act(self, info: RoundInfo, update: UpdateFactory, *, now: int) -> list[Call]:
        """The remaining ``submit`` transactions while the round is open."""
        ctx = self.context
        if info.phase != "Open" or now >= info.deadline or ctx.submitted(info.number):
            return []
        chosen = update()
        return submit_calls(
            ctx.contract,
            ctx.account,
            round_number=info.number,
            sample_count=chosen.sample_count,
            words=chosen.words,
            words_per_segment=ctx.view.words_per_segment,
            start_segment=ctx.next_segment(info.number),
        )
