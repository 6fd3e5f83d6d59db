// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {CoordinatorBase} from "../CoordinatorBase.sol";

/// @title CommitRevealUnit
/// @notice The commit-reveal path, against copycats: a client commits to a salted hash of its
/// update with a bond, and reveals the update once commits are closed, when copying it is too
/// late. A reveal is handled like a direct submission (measured, paid, kept for the close) and
/// returns the bond; a bond never revealed goes to the pool when the round ends. Runs on the
/// coordinator's storage (DELEGATECALL from `FLCoordinator.commit` and `.reveal`).
contract CommitRevealUnit is CoordinatorBase {
    /// @notice See `FLCoordinator.commit`.
    function commit(uint256 round, bytes32 commitment) external payable {
        _onlyDelegated();
        if (_config.mode != Mode.CommitReveal) revert CoordinatorWrongMode(_config.mode);
        RoundState memory state = _round;
        _checkRound(state, round, Phase.Commit);
        if (block.timestamp >= state.deadline) revert CoordinatorDeadlinePassed(round, state.deadline);
        // Zero is what "no commitment" reads as.
        if (commitment == bytes32(0)) revert CoordinatorEmptyCommitment();
        uint256 bond = _config.commitBond;
        if (msg.value != bond) revert CoordinatorWrongBond(msg.value, bond);
        Commitment storage held = _commitments[msg.sender];
        if (held.round == round) revert CoordinatorAlreadyCommitted(round, msg.sender);
        uint256 target = _config.targetSubmissions;
        if (state.commits >= target) revert CoordinatorRoundFull(round, state.commits);
        _requireBudget(msg.sender); // a reveal past the budget would be refused: the bond lost
        held.digest = commitment;
        held.round = round;
        _bondsHeld += bond;
        ++state.commits;
        emit CommitmentAccepted(round, msg.sender, bond);
        if (state.commits == target) _startReveal(state);
        _round = state;
    }

    /// @notice See `FLCoordinator.reveal`.
    function reveal(uint256 round, uint256 sampleCount, uint256 firstSegment, uint256[] calldata words, bytes32 salt)
        external
    {
        _onlyDelegated();
        if (_config.mode != Mode.CommitReveal) revert CoordinatorWrongMode(_config.mode);
        RoundState memory state = _round;
        _checkRound(state, round, Phase.Reveal);
        if (block.timestamp >= state.deadline) revert CoordinatorDeadlinePassed(round, state.deadline);
        Commitment memory held = _commitments[msg.sender];
        if (held.round != round) revert CoordinatorNoCommitment(round, msg.sender);
        Progress memory progress = _startSubmission(state, round, sampleCount, firstSegment);
        uint256 from = progress.done;
        _takeSegments(progress, words);
        bytes32 chain = from == 0 ? bytes32(0) : _revealChain[msg.sender];
        for (uint256 segment = from; segment < progress.done; ++segment) {
            chain = _chainHash(chain, _segmentHashes[msg.sender][segment]);
        }
        if (progress.done == _config.numSegments) {
            if (_commitmentOf(round, msg.sender, sampleCount, salt, chain) != held.digest) {
                revert CoordinatorRevealMismatch(round, msg.sender);
            }
            progress.leftOut = !_stillCounted(progress);
            _complete(state, progress);
            _returnBond(round);
            _round = state;
        } else {
            _revealChain[msg.sender] = chain;
            emit SegmentsReceived(round, msg.sender, firstSegment, progress.done - firstSegment);
        }
        _progress[msg.sender] = _pack(progress);
    }

    /// Credits the caller its bond back: it leaves the held bonds, and the pool is not touched.
    function _returnBond(uint256 round) private {
        uint256 bond = _config.commitBond;
        _bondsHeld -= bond;
        _bondsReturned += bond;
        _credits[msg.sender] += bond;
        emit BondReturned(round, msg.sender, bond);
    }
}
