// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {CoordinatorBase} from "../CoordinatorBase.sol";

/// @title RelayUnit
/// @notice The relayed path, gasless for clients: a client signs its update (EIP-712 `Update`:
/// chain id, contract, round, number of segments, sample count, hash chain of its segments) and
/// hands it to a relayer; anyone may register a batch of signed updates while the round is open.
/// Runs on the coordinator's storage (DELEGATECALL from `FLCoordinator.submitRelayed`).
/// @dev Registration keeps each update's segment hashes, not its words: the words travel once,
/// in the closes, which measure each relayed update against the current model and pay it. A
/// relayer can leave a client out (the client sees it on-chain before the deadline and submits
/// directly) but cannot forge or change an update: the signature covers the hashes the close
/// checks the words against.
contract RelayUnit is CoordinatorBase {
    /// @notice See `FLCoordinator.submitRelayed`.
    function submitRelayed(uint256 round, RelayedUpdate[] calldata updates) external {
        _onlyDelegated();
        if (_config.mode != Mode.Plain) revert CoordinatorWrongMode(_config.mode);
        RoundState memory state = _round;
        if (state.phase != Phase.Open) revert CoordinatorWrongPhase(state.phase);
        if (round != state.number) revert CoordinatorWrongRound(round, state.number);
        if (block.timestamp >= state.deadline) revert CoordinatorDeadlinePassed(round, state.deadline);
        bytes32 domain = _domainSeparator();
        for (uint256 i = 0; i < updates.length; ++i) {
            _register(state, updates[i], domain);
        }
        _round = state;
    }

    /// Checks one signed update and registers it as an entry of the round.
    function _register(RoundState memory state, RelayedUpdate calldata update, bytes32 domain) private {
        uint256 segments = _config.numSegments;
        uint256 round = state.number;
        address client = update.client;
        if (update.segmentHashes.length != segments) {
            revert CoordinatorWrongLength(segments, update.segmentHashes.length);
        }
        bytes32 chain = bytes32(0);
        for (uint256 s = 0; s < segments; ++s) {
            chain = _chainHash(chain, update.segmentHashes[s]);
        }
        bytes32 digest = _updateDigest(round, segments, update.sampleCount, chain, domain);
        (address signer, ECDSA.RecoverError error,) = ECDSA.tryRecover(digest, update.v, update.r, update.s);
        if (error == ECDSA.RecoverError.InvalidSignatureS) revert CoordinatorMalleableSignature(client);
        if (error != ECDSA.RecoverError.NoError || signer != client) revert CoordinatorInvalidSignature(client);
        if (!_eligible(client, round)) revert CoordinatorNotEligible(client, round);
        _checkSampleCount(update.sampleCount);
        if (_unpack(_progress[client]).round == round) revert CoordinatorUpdateReplayed(client, round);
        if (state.entries >= _config.targetSubmissions) revert CoordinatorRoundFull(round, state.entries);
        _chargePrivacy(client);

        for (uint256 s = 0; s < segments; ++s) {
            _segmentHashes[client][s] = update.segmentHashes[s];
        }
        _progress[client] = _pack(Progress(round, 0, update.sampleCount, false, true, 0, 0, 0));
        _entries[state.entries] = uint256(uint160(client)) | (update.sampleCount << 160) | ENTRY_RELAYED;
        ++state.entries;
        ++state.completed;
        emit UpdateRelayed(round, client, msg.sender, update.sampleCount);
    }
}
