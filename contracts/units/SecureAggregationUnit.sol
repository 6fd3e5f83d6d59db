// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {CoordinatorBase} from "../CoordinatorBase.sol";
import {PackedVectors} from "../PackedVectors.sol";

/// @title SecureAggregationUnit
/// @notice Secure aggregation: clients register X25519 keys, then submit their words masked with
/// pairwise masks that cancel in the sum (Bonawitz et al. 2016), so no single submission shows its
/// update. Runs on the coordinator's storage (DELEGATECALL from `FLCoordinator.registerKey` and
/// `.submitMasked`).
/// @dev Masked words carry no distance: every submission earns the first tier. The masks cancel
/// only in the sum of the whole cohort, so the round closes on the cohort's last submission, and a
/// round that someone left is ended by `finalize` after its deadline. Masked sums are added in
/// storage (the layout of `PackedVectors.spread`, modulo `2**laneBits`); the model fits one
/// segment.
contract SecureAggregationUnit is CoordinatorBase {
    using PackedVectors for uint256;

    /// @notice See `FLCoordinator.registerKey`.
    function registerKey(bytes32 publicKey) external {
        _onlyDelegated();
        if (_config.mode != Mode.SecureAggregation) revert CoordinatorWrongMode(_config.mode);
        uint256 round = _round.number == 0 ? 1 : _round.number;
        if (!_eligible(msg.sender, round)) revert CoordinatorNotEligible(msg.sender, round);
        if (publicKey == bytes32(0)) revert CoordinatorInvalidParameter("publicKey", 0);
        if (_publicKeys[msg.sender] != bytes32(0)) revert CoordinatorAlreadyRegistered(msg.sender);
        if (_cohort.length >= _config.targetSubmissions) revert CoordinatorCohortFull(_cohort.length);
        _publicKeys[msg.sender] = publicKey;
        _cohort.push(msg.sender);
        emit KeyRegistered(msg.sender, publicKey, _cohort.length - 1);
    }

    /// @notice See `FLCoordinator.submitMasked`.
    function submitMasked(uint256 round, uint256 sampleCount, uint256[] calldata words) external {
        _onlyDelegated();
        if (_config.mode != Mode.SecureAggregation) revert CoordinatorWrongMode(_config.mode);
        RoundState memory state = _round;
        _checkRound(state, round, Phase.Open);
        if (block.timestamp >= state.deadline) revert CoordinatorDeadlinePassed(round, state.deadline);
        uint256 target = _config.targetSubmissions;
        if (_cohort.length < target) revert CoordinatorCohortIncomplete(_cohort.length, target);
        if (_publicKeys[msg.sender] == bytes32(0)) revert CoordinatorNotRegistered(msg.sender);
        _checkSampleCount(sampleCount);
        if (_unpack(_progress[msg.sender]).round == round) revert CoordinatorAlreadySubmitted(round, msg.sender);
        _chargePrivacy(msg.sender);
        uint256 bits = _config.laneBits;
        uint256 expected = uint256(_config.numWords) * (bits / 16);
        if (words.length != expected) revert CoordinatorWrongLength(expected, words.length);

        uint256 weight = _config.aggregation == Aggregation.Mean ? 1 : sampleCount;
        uint256 tagged = _maskedWeight;
        // The round's first submission writes over the last round's sums (no reset needed).
        bool fresh = tagged >> 128 != round;
        uint256 weightSum = (fresh ? 0 : uint128(tagged)) + weight;
        _maskedWeight = (round << 128) | weightSum;
        uint256 highBits = PackedVectors.broadcast(uint256(1) << (bits - 1), bits);
        uint256 start = PackedVectors.broadcast(1, bits); // keeps the slots nonzero: cheap writes
        for (uint256 i = 0; i < words.length; ++i) {
            uint256 slot = SUM_BASE + i;
            uint256 sums;
            assembly ("memory-safe") {
                sums := sload(slot)
            }
            sums = (fresh ? start : sums).addLanes(words[i], highBits);
            assembly ("memory-safe") {
                sstore(slot, sums)
            }
        }
        _progress[msg.sender] =
            _pack(Progress(round, _config.numSegments, sampleCount, false, false, 0, 0, 0));
        ++state.completed;
        ++state.entries;
        uint256 reward = _credit(msg.sender, _tierRewards[0]);
        emit SubmissionAccepted(round, msg.sender, sampleCount, 0, 0, 0, 0, reward, true, false);
        if (state.completed == target) {
            _closeMasked(state, weightSum);
        } else {
            _round = state;
        }
    }

    /// Averages the masked sums (the masks cancelled) into the next model and makes it global.
    /// @dev Per lane: the signed sum is `(lane - 1 - OFFSET * weightSum) mod 2**bits` read as two's
    /// complement (`PackedVectors.signedSum`), divided with `PackedVectors.roundedDiv`'s rule.
    function _closeMasked(RoundState memory state, uint256 weightSum) private {
        uint256 numWords = _config.numWords;
        uint256 bits = _config.laneBits;
        uint256 perWord = bits / 16;
        uint256[] memory next = new uint256[](numWords);
        uint256 bias = 1 + PackedVectors.OFFSET * weightSum;
        for (uint256 j = 0; j < numWords; ++j) {
            uint256 word = 0;
            for (uint256 k = 0; k < perWord; ++k) {
                uint256 slot = SUM_BASE + j * perWord + k;
                assembly ("memory-safe") {
                    let sums := sload(slot)
                    let modulus := shl(bits, 1) // bits <= 128
                    let mask := sub(modulus, 1)
                    let top := shr(1, modulus)
                    let half := shr(1, weightSum)
                    for { let t := 0 } lt(t, div(256, bits)) { t := add(t, 1) } {
                        let value := and(sub(shr(mul(t, bits), sums), bias), mask)
                        let mean := 0
                        switch lt(value, top)
                        case 1 { mean := add(0x8000, div(add(value, half), weightSum)) }
                        default { mean := sub(0x8000, div(add(sub(modulus, value), half), weightSum)) }
                        word := or(word, shl(shl(4, add(k, mul(perWord, t))), mean))
                    }
                }
            }
            next[j] = word;
        }
        uint256 pointer;
        assembly ("memory-safe") {
            pointer := add(next, 0x20)
        }
        bytes32 wordsHash = _writeChunk(0, _currentSet ^ 1, pointer, numWords, 0);
        _finishRound(state, _chainHash(bytes32(0), wordsHash));
    }
}
