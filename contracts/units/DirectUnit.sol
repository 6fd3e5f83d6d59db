// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {CoordinatorBase} from "../CoordinatorBase.sol";

/// @title DirectUnit
/// @notice The direct path: a client sends its own update from its own account and is paid on
/// submit by its distance from the current global model. Runs on the coordinator's storage
/// (DELEGATECALL from `FLCoordinator.submit`).
/// @dev The update is measured and its hash kept; the words themselves stay in the transaction's
/// calldata, where the close reads them again (`ClosingUnit`). Nothing is added into storage per
/// weight: a submission costs about its calldata.
contract DirectUnit is CoordinatorBase {
    /// @notice See `FLCoordinator.submit`.
    function submit(uint256 round, uint256 sampleCount, uint256 firstSegment, uint256[] calldata words) external {
        _onlyDelegated();
        if (_config.mode != Mode.Plain) revert CoordinatorWrongMode(_config.mode);
        RoundState memory state = _round;
        _checkRound(state, round, Phase.Open);
        if (block.timestamp >= state.deadline) revert CoordinatorDeadlinePassed(round, state.deadline);
        Progress memory progress = _startSubmission(state, round, sampleCount, firstSegment);
        _takeSegments(progress, words);
        if (progress.done == _config.numSegments) {
            progress.leftOut = !_stillCounted(progress);
            _complete(state, progress);
            _round = state;
        } else {
            emit SegmentsReceived(round, msg.sender, firstSegment, progress.done - firstSegment);
        }
        _progress[msg.sender] = _pack(progress);
    }
}
