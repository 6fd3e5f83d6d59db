"""One exception hierarchy for the whole package.

Everything the package raises on purpose derives from :class:`FLError`, so a caller can catch
the family, or a single member when it wants to react to one failure.
"""

from __future__ import annotations


class FLError(Exception):
    """Base class of every error raised on purpose by ``fl_client``."""


class ConfigError(FLError):
    """The configuration file or a command-line setting is missing or invalid."""


class DataError(FLError):
    """A dataset cannot be loaded or partitioned as asked."""


class CodecError(FLError):
    """Weights cannot be quantized, packed or unpacked."""


class ShapeError(CodecError):
    """A tensor or vector has the wrong shape or length."""


class NonFiniteWeightError(CodecError):
    """A weight is NaN or infinite."""


class OutOfRangeError(CodecError):
    """A quantized value lies outside the contract's fixed-point range."""


class CompileError(FLError):
    """The Solidity compiler is missing or rejected a source."""


class ChainError(FLError):
    """Talking to the chain failed."""


class NodeUnreachableError(ChainError):
    """The JSON-RPC node does not answer."""


class ChainIdMismatchError(ChainError):
    """The node's chain id differs from the one the network is configured with."""


class InsufficientFundsError(ChainError):
    """The sending account cannot pay for the transaction."""


class OutOfGasError(ChainError):
    """A transaction ran out of gas or would exceed a gas cap."""


class TransactionDroppedError(ChainError):
    """A transaction was not mined after the bounded number of retries."""


class TransactionTooLargeError(ChainError):
    """A transaction's calldata exceeds what a transaction pool takes (128 KiB encoded)."""


class ContractRevertError(ChainError):
    """The contract reverted; ``name`` and ``args`` are its decoded custom error."""

    def __init__(self, name: str, args: dict[str, object], message: str | None = None) -> None:
        self.name = name
        self.error_args = args
        rendered = ", ".join(f"{key}={value!r}" for key, value in args.items())
        super().__init__(message or f"{name}({rendered})")


class UpdateRefusedError(FLError):
    """A relay refused a signed update (wrong round, bad signature, malformed words, ...)."""


class RelayUnreachableError(FLError):
    """The relay does not answer."""


class DeploymentNotFoundError(ChainError):
    """No deployment record exists for the network."""


class ClientStateError(FLError):
    """A client cannot act in the chain's current state (for example, it already submitted)."""


class PrivacyLedgerMismatchError(ChainError):
    """The contract's privacy ledger disagrees with the accountant's figure for an account."""


class AccuracyMismatchError(FLError):
    """The chain-based run and the plain federated run disagree beyond the tolerance."""
