"""Submission paths: one small class per way a client hands in its update.

- :class:`DirectPath`: ``submit`` from the client's own account, paid on submit.
- :class:`RelayedPath`: signed (EIP-712) and handed to a relayer; gasless for the client.
- :class:`CommitRevealPath`: commit with a bond, reveal after commits close (against copycats).
- :class:`MaskedPath`: secure aggregation, masked words that cancel in the sum.
"""

from fl_client.paths.base import PathContext, SubmissionPath, Update, UpdateFactory
from fl_client.paths.commit_reveal import CommitRevealPath
from fl_client.paths.direct import DirectPath
from fl_client.paths.masked import MaskedPath
from fl_client.paths.relayed import RelayedPath, RelayEndpoint, own_words_first, signed_update


def path_for(
    context: PathContext, relay: RelayEndpoint | None = None, *, fallback_margin: int = 60
) -> SubmissionPath:
    """The path of a client of the deployment ``context.view`` describes: the mode's (commit-reveal,
    masked), else relayed when the client has a ``relay`` (in the clear only), else direct."""
    mode = context.view.mode
    if mode == "commit_reveal":
        return CommitRevealPath(context)
    if mode == "secure_aggregation":
        return MaskedPath(context)
    if relay is not None:
        return RelayedPath(context, relay, fallback_margin=fallback_margin)
    return DirectPath(context)


__all__ = [
    "CommitRevealPath",
    "DirectPath",
    "MaskedPath",
    "PathContext",
    "RelayEndpoint",
    "RelayedPath",
    "SubmissionPath",
    "Update",
    "UpdateFactory",
    "own_words_first",
    "path_for",
    "signed_update",
]
