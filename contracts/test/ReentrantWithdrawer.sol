// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @dev The part of FLCoordinator that the attacker uses.
interface IFLCoordinator {
    function submit(uint256 round, uint256 sampleCount, uint256 segment, uint256[] calldata words) external;
    function withdraw() external;
}

/// @title ReentrantWithdrawer
/// @notice Test-only participant that attacks `FLCoordinator.withdraw` (never deploy it for real).
/// @dev It submits through the coordinator like any client, so it earns a credit of its own, then
/// calls `withdraw` and, from the `receive` that the payout triggers, calls `withdraw` again.
/// `Mode.Reenter` lets the inner revert propagate (the payout fails as a whole);
/// `Mode.ReenterSwallow` catches it and keeps the ETH of the outer payout; `Mode.Reject` re-enters
/// nothing and refuses every ETH transfer.
contract ReentrantWithdrawer {
    enum Mode {
        Reenter,
        ReenterSwallow,
        Reject
    }

    /// @notice The coordinator under attack.
    IFLCoordinator public immutable coordinator;
    /// @notice What `receive` does.
    Mode public immutable mode;
    /// @notice Reentrant `withdraw` calls made (at most `MAX_REENTRIES`).
    uint256 public reentries;
    /// @notice Reentrant `withdraw` calls that succeeded (a safe coordinator keeps this at 0).
    uint256 public reentrySuccesses;
    /// @notice The revert data of the last reentrant call that failed (swallow mode only).
    bytes public lastInnerRevert;
    /// @notice ETH received through `receive`, in wei.
    uint256 public received;

    uint256 private constant MAX_REENTRIES = 3;

    constructor(IFLCoordinator target, Mode receiverMode) {
        coordinator = target;
        mode = receiverMode;
    }

    /// @notice Submits `words` (a one-segment vector) for `round` as this contract.
    function participate(uint256 round, uint256 sampleCount, uint256[] calldata words) external {
        coordinator.submit(round, sampleCount, 0, words);
    }

    /// @notice Withdraws this contract's credit; `receive` re-enters as `mode` says.
    function attack() external {
        coordinator.withdraw();
    }

    receive() external payable {
        if (mode == Mode.Reject) revert("ReentrantWithdrawer: ETH rejected");
        received += msg.value;
        if (reentries >= MAX_REENTRIES) return;
        ++reentries;
        if (mode == Mode.Reenter) {
            coordinator.withdraw();
            ++reentrySuccesses;
        } else {
            try coordinator.withdraw() {
                ++reentrySuccesses;
            } catch (bytes memory reason) {
                lastInnerRevert = reason;
            }
        }
    }
}
