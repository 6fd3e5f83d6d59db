"""EIP-712 signatures over relayed updates, made and checked with eth-account.

A client signs ``Update(uint256 round, uint256 segments, uint256 sampleCount, bytes32 wordsHash)``
in the domain ``FLCoordinator`` / ``2`` / chain id / coordinator address, where ``wordsHash`` is the
hash chain of its segments (:func:`fl_client.codec.vector_hash`). The contract recovers the signer
(`RelayUnit`); a relayer can carry the update but cannot change it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address

DOMAIN_NAME = "FLCoordinator"
DOMAIN_VERSION = "2"
UPDATE_TYPES = {
    "Update": [
        {"name": "round", "type": "uint256"},
        {"name": "segments", "type": "uint256"},
        {"name": "sampleCount", "type": "uint256"},
        {"name": "wordsHash", "type": "bytes32"},
    ]
}
# secp256k1's group order: a signature with s above half of it is the malleable twin of another.
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@dataclass(frozen=True)
class UpdateSignature:
    """An ECDSA signature in the contract's form."""

    v: int
    r: bytes
    s: bytes

    def as_tuple(self) -> tuple[int, bytes, bytes]:
        """``(v, r, s)`` for the ABI."""
        return self.v, self.r, self.s


def update_typed_data(
    *,
    chain_id: int,
    contract: str,
    round_number: int,
    segments: int,
    sample_count: int,
    words_hash: bytes,
) -> dict[str, Any]:
    """The full EIP-712 message of an update (``eth_signTypedData_v4``'s shape)."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            **UPDATE_TYPES,
        },
        "primaryType": "Update",
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": chain_id,
            "verifyingContract": to_checksum_address(contract),
        },
        "message": {
            "round": round_number,
            "segments": segments,
            "sampleCount": sample_count,
            "wordsHash": bytes(words_hash),
        },
    }


def sign_update(signer: LocalAccount, typed_data: dict[str, Any]) -> UpdateSignature:
    """Sign an update (eth-account signs with a low ``s``)."""
    signed = signer.sign_message(encode_typed_data(full_message=typed_data))
    return UpdateSignature(
        v=int(signed.v), r=int(signed.r).to_bytes(32, "big"), s=int(signed.s).to_bytes(32, "big")
    )


def recover_update_signer(typed_data: dict[str, Any], signature: UpdateSignature) -> str:
    """The address that signed ``typed_data``."""
    vrs = (signature.v, int.from_bytes(signature.r, "big"), int.from_bytes(signature.s, "big"))
    return str(Account.recover_message(encode_typed_data(full_message=typed_data), vrs=vrs))


def malleable_twin(signature: UpdateSignature) -> UpdateSignature:
    """The other valid signature of the same message (``s -> n - s``, ``v`` flipped): what an
    attacker makes of a signature it saw, and what the contract refuses."""
    s = int.from_bytes(signature.s, "big")
    return UpdateSignature(
        v=55 - signature.v, r=signature.r, s=(SECP256K1_N - s).to_bytes(32, "big")
    )
