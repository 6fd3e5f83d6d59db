// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {CoordinatorBase} from "../CoordinatorBase.sol";
import {PackedVectors} from "../PackedVectors.sol";

/// @title ClosingUnit
/// @notice Closes a round one segment at a time. Runs on the coordinator's storage (DELEGATECALL
/// from `FLCoordinator.closeSegment`).
/// @dev A close of segment `s` gets, in its calldata, segment `s` of every update the round holds,
/// in `entries()` order, each checked against the hash its submission (direct, revealed or
/// relayed) left. It sums them in memory, writes the averaged segment of the next model as an
/// SSTORE2 chunk and, on the last segment, makes that model the global one. Sums never touch
/// storage, so a close costs about its calldata, and each close handles one segment whatever the
/// model's size. Relayed updates, whose words reach the chain only here, are measured against the
/// current model and paid by the close of their last segment. Their relayer must supply them until
/// `closeWindow` after the deadline; from then on a close may leave them out (`omitted`), so a
/// relayer that went away delays the round by at most that window.
contract ClosingUnit is CoordinatorBase {
    // Working state of one close, in memory.
    struct Close {
        uint256 round;
        uint256 segment;
        uint256 count; // words in the segment
        uint256 model; // memory: the current model's segment (words, then direction entries)
        uint256 sources; // memory: (calldata offset, weight) of each update summed
        uint256 indexes; // memory: the entry index of each update summed
        uint256 start; // calldata offset of the first word
        uint256 cursor; // calldata offset of the next update's words
        uint256 end; // calldata offset past the last word
        uint256 weightSum;
        uint256 included; // updates summed
        uint256 relayedIncluded; // relayed updates summed (each earns the closer `relayFee`)
        bool mean; // every update weighs 1
        uint256 trimEach; // values the trimmed mean leaves out at each end (0: the mean)
    }

    /// @notice See `FLCoordinator.closeSegment`.
    function closeSegment(uint256 round, uint256 segment, uint256[] calldata words, uint256[] calldata omitted)
        external
    {
        _onlyDelegated();
        Mode mode = _config.mode;
        if (mode == Mode.SecureAggregation) revert CoordinatorWrongMode(mode);
        RoundState memory state = _round;
        if (round != state.number) revert CoordinatorWrongRound(round, state.number);
        bool first = state.phase != Phase.Closing;
        if (first) {
            Phase due = mode == Mode.Plain ? Phase.Open : Phase.Reveal;
            if (state.phase != due) revert CoordinatorWrongPhase(state.phase);
            if (segment != 0) revert CoordinatorWrongSegment(0, segment);
            _checkClosable(state);
        } else if (segment != state.closedSegments) {
            revert CoordinatorWrongSegment(state.closedSegments, segment);
        }

        Close memory c = _begin(round, segment, words, state.entries);
        _takeEntries(c, state, omitted);
        if (c.cursor != c.end) revert CoordinatorWrongLength((c.cursor - c.start) / 32, words.length);

        (bytes32 wordsHash, uint256 clamped) = _writeNext(c);
        // A segment that averaged nothing (every update left out) earns no fee: closing nothing
        // must not be a way to farm the pool.
        uint256 fee = c.included == 0 ? 0 : _credit(msg.sender, _config.closeFee + _config.relayFee * c.relayedIncluded);
        emit SegmentClosed(round, segment, msg.sender, c.included, c.relayedIncluded, fee, clamped);
        bytes32 chain = _chainHash(first ? bytes32(0) : _pendingHash, wordsHash);
        if (segment + 1 == _config.numSegments) {
            if (_config.rewardReference != RewardReference.Current) _settleAtClose(state);
            _finishRound(state, chain, c.included); // the last segment's: dropped entries left out
        } else {
            _pendingHash = chain;
            if (first) _closeStartedAt = block.timestamp;
            state.phase = Phase.Closing;
            state.closedSegments = uint24(segment + 1);
            _round = state;
        }
    }

    // ---------------------------------------------------------------- the steps of a close

    /// The round may start closing: it holds its minimum, and before the deadline it is full
    /// (Plain: `targetSubmissions`; CommitReveal: every commitment revealed).
    function _checkClosable(RoundState memory state) private view {
        uint256 target = _config.targetSubmissions;
        uint256 minimum = _config.minSubmissions;
        bool full = _config.mode == Mode.Plain ? state.entries >= target : state.completed >= state.commits;
        if (state.entries < minimum || (block.timestamp < state.deadline && !full)) {
            revert CoordinatorNotClosable(state.number, state.entries, target, minimum, state.deadline);
        }
    }

    function _begin(uint256 round, uint256 segment, uint256[] calldata words, uint256 maxUpdates)
        private
        view
        returns (Close memory c)
    {
        (, uint256 count) = _segmentBounds(segment);
        uint256[] memory sources = new uint256[](2 * maxUpdates);
        uint256[] memory indexes = new uint256[](maxUpdates);
        uint256 sourcesPointer;
        uint256 indexesPointer;
        uint256 start;
        assembly ("memory-safe") {
            sourcesPointer := add(sources, 0x20)
            indexesPointer := add(indexes, 0x20)
            start := words.offset
        }
        c.round = round;
        c.segment = segment;
        c.count = count;
        c.model = _readChunk(segment);
        c.sources = sourcesPointer;
        c.indexes = indexesPointer;
        c.start = start;
        c.cursor = start;
        c.end = start + words.length * 32;
        c.mean = _config.aggregation == Aggregation.Mean;
        c.trimEach = _config.trimEach;
    }

    /// Takes segment `c.segment` of every entry in order: checks its words against its hash and
    /// sums it; a relayed entry is measured on the way, and one in `omitted` (strictly ascending
    /// entry indexes) is dropped from the round.
    function _takeEntries(Close memory c, RoundState memory state, uint256[] calldata omitted) private {
        uint256 registered = state.entries;
        Measure memory measure; // prepared for the first relayed entry (direct ones were measured)
        uint256 allowedFrom = state.deadline + _config.closeWindow;
        uint256 next = 0; // the next omitted index
        for (uint256 index = 0; index < registered; ++index) {
            uint256 entry = _entries[index];
            if (next < omitted.length && omitted[next] == index) {
                if (entry & ENTRY_RELAYED == 0 || block.timestamp < allowedFrom) {
                    revert CoordinatorCannotOmit(index, allowedFrom);
                }
                ++next;
                if (entry & ENTRY_DROPPED == 0) _drop(state, index, entry);
                continue;
            }
            if (entry & ENTRY_DROPPED != 0) continue; // dropped in an earlier segment: no words
            address client = address(uint160(entry));
            uint256 data = _nextWords(c);
            if (_hashCalldata(data, c.count) != _segmentHashes[client][c.segment]) {
                revert CoordinatorWordsMismatch(index, client);
            }
            if (entry & ENTRY_RELAYED == 0) {
                _sum(c, data, uint32(entry >> 160), index);
            } else {
                if (measure.count == 0) measure = _prepareMeasure(c.segment, c.count, c.model);
                _takeRelayed(c, measure, state, index, entry, data);
            }
        }
        if (next < omitted.length) revert CoordinatorCannotOmit(omitted[next], allowedFrom);
    }

    /// The next `c.count` words of the calldata, or a revert when they run out.
    function _nextWords(Close memory c) private pure returns (uint256 data) {
        data = c.cursor;
        uint256 after_ = data + c.count * 32;
        if (after_ > c.end) revert CoordinatorWrongLength((after_ - c.start) / 32, (c.end - c.start) / 32);
        c.cursor = after_;
    }

    /// One segment of a relayed entry: measured against the current model; summed while its
    /// running figures pass the distance bound and the guard (it is dropped for good once they do
    /// not); settled (paid) with its last segment.
    function _takeRelayed(
        Close memory c,
        Measure memory measure,
        RoundState memory state,
        uint256 index,
        uint256 entry,
        uint256 data
    ) private {
        address client = address(uint160(entry));
        Progress memory progress = _unpack(_progress[client]);
        _measureAgainst(measure, data, progress);
        progress.leftOut = !_stillCounted(progress);
        ++progress.done;
        if (progress.leftOut) {
            _entries[index] = entry | ENTRY_DROPPED;
            progress.done = _config.numSegments;
        } else {
            _sum(c, data, progress.sampleCount, index);
            ++c.relayedIncluded;
            if (progress.done == _config.numSegments && progress.distance < _config.minRewardDistance) {
                _entries[index] = entry | ENTRY_FREE_RIDER;
            }
        }
        if (progress.done == _config.numSegments) _settle(state.number, client, progress);
        _progress[client] = _pack(progress);
    }

    /// A relayed entry whose words its relayer did not supply in time: out of the round, unpaid.
    function _drop(RoundState memory state, uint256 index, uint256 entry) private {
        address client = address(uint160(entry));
        _entries[index] = entry | ENTRY_DROPPED;
        Progress memory progress = _unpack(_progress[client]);
        progress.leftOut = true;
        progress.done = _config.numSegments;
        _progress[client] = _pack(progress);
        _settle(state.number, client, progress);
    }

    /// Adds the update at calldata `data` (entry `index`) to the ones the segment's average is
    /// taken over.
    function _sum(Close memory c, uint256 data, uint256 sampleCount, uint256 index) private pure {
        uint256 weight = c.mean ? 1 : sampleCount;
        uint256 slot = c.sources + c.included * 64;
        uint256 indexSlot = c.indexes + c.included * 32;
        assembly ("memory-safe") {
            mstore(slot, data)
            mstore(add(slot, 0x20), weight)
            mstore(indexSlot, index)
        }
        c.weightSum += weight;
        ++c.included;
    }

    /// Writes the segment of the next model: the rounded mean of what was summed (each update's
    /// weight capped by `maxShareBps`, the step bounded by `maxStep` and `maxDrift`), or the
    /// current segment as it is when nothing was (it then keeps the direction of the last step
    /// that moved it). Returns the hash of its words and the number of weights the bounds held back.
    function _writeNext(Close memory c) private returns (bytes32 wordsHash, uint256 clamped) {
        uint256 current = _currentSet;
        uint256 segment = c.segment;
        if (c.weightSum == 0) {
            address pointer = _chunks[segment * 4 + current];
            _chunks[segment * 4 + (current ^ 1)] = pointer;
            if (_checkpointDue(current ^ 1)) _chunks[segment * 4 + CHECKPOINT_SET] = pointer;
            uint256 model = c.model;
            uint256 length = c.count * 32;
            assembly ("memory-safe") {
                wordsHash := keccak256(model, length)
            }
            return (wordsHash, 0);
        }
        if (_config.maxShareBps != 0 && !c.mean) _capShares(c);
        uint256[] memory next = new uint256[](c.count);
        uint256 out;
        assembly ("memory-safe") {
            out := add(next, 0x20)
        }
        // The trimmed mean leaves out at most what keeps one value in play.
        uint256 cut = c.trimEach < (c.included - 1) / 2 ? c.trimEach : (c.included - 1) / 2;
        if (cut == 0) {
            PackedVectors.averageOf(c.sources, c.included, c.count, _config.accBits, c.weightSum, out);
        } else {
            PackedVectors.trimmedMeanOf(c.sources, c.included, c.count, cut, out);
        }
        uint256 maxStep = _config.maxStep;
        uint256 maxDrift = _config.maxDrift;
        if (maxStep != 0 || maxDrift != 0) {
            uint256 checkpoint = maxDrift == 0 ? c.model : _readChunkOf(segment, CHECKPOINT_SET);
            clamped = PackedVectors.clampStep(out, c.model, checkpoint, c.count, maxStep, maxDrift);
        }
        RewardReference rule = _config.rewardReference;
        if (rule != RewardReference.Current) _measureToNext(c, out);
        if (rule == RewardReference.Progress) _roundStep += _measureStep(c, out);
        uint256 directions = 0;
        if (_directionGuard()) {
            bool moved;
            (directions, moved) = _directions(c.model, out, c.count);
            if (moved && _stepFlags & STEP_MOVING == 0) _stepFlags |= STEP_MOVING;
        }
        wordsHash = _writeChunk(segment, current ^ 1, out, c.count, directions);
    }

    /// Caps each summed update's weight so that none holds more than `maxShareBps` of the
    /// segment's total (water-filling: the largest weights are lowered to a common cap `T` with `T
    /// = maxShareBps / 10000 * sum(min(w, T))`, the smallest cap that needs; when even equal
    /// weights cannot meet the share, every update weighs the same).
    function _capShares(Close memory c) private view {
        uint256 n = c.included;
        uint256[] memory weights = new uint256[](n);
        for (uint256 i = 0; i < n; ++i) {
            weights[i] = _weightAt(c, i);
        }
        uint256 cap = PackedVectors.shareCap(weights, _config.maxShareBps);
        uint256 total = 0;
        for (uint256 i = 0; i < n; ++i) {
            uint256 w = weights[i] < cap ? weights[i] : cap;
            uint256 slot = c.sources + i * 64 + 32;
            assembly ("memory-safe") {
                mstore(slot, w)
            }
            total += w;
        }
        c.weightSum = total;
    }

    function _weightAt(Close memory c, uint256 i) private pure returns (uint256 weight) {
        uint256 slot = c.sources + i * 64 + 32;
        assembly ("memory-safe") {
            weight := mload(slot)
        }
    }

    /// RewardReference Aggregate and Progress: adds each summed update's distance from the new
    /// segment to its entry (paid when the last segment closes).
    function _measureToNext(Close memory c, uint256 next) private {
        Measure memory m = _prepareMeasure(c.segment, c.count, next);
        bool squared = _config.distance == Distance.SquaredL2;
        for (uint256 i = 0; i < c.included; ++i) {
            uint256 data;
            uint256 index;
            uint256 slot = c.sources + i * 64;
            uint256 indexSlot = c.indexes + i * 32;
            assembly ("memory-safe") {
                data := mload(slot)
                index := mload(indexSlot)
            }
            uint256 distance_;
            if (squared) {
                distance_ = PackedVectors.measureSquaredL2(data, c.count, next);
            } else {
                (distance_,) = PackedVectors.measureL1(data, c.count, m.shiftedModel, m.maxAbs16, m.spare16);
            }
            _entries[index] += distance_ << ENTRY_DISTANCE_SHIFT;
        }
    }

    /// RewardReference Progress: the distance of the new segment at memory `next` from the
    /// current one.
    function _measureStep(Close memory c, uint256 next) private view returns (uint256 step) {
        bool squared = _config.distance == Distance.SquaredL2;
        uint256 model = c.model;
        for (uint256 j = 0; j < c.count; ++j) {
            uint256 a;
            uint256 b;
            assembly ("memory-safe") {
                a := mload(add(model, shl(5, j)))
                b := mload(add(next, shl(5, j)))
            }
            step += squared ? PackedVectors.squaredL2Distance(a, b) : PackedVectors.l1Distance(a, b);
        }
    }

    /// RewardReference Aggregate or Progress: pays every entry still in the round by the score
    /// its tier is read from, under the free-rider guard twice: nothing for an update closer than
    /// `minRewardDistance` to the old model (flagged) or to the new one (a free rider that guessed
    /// the step). Aggregate: the score is its distance from the new model. Progress: its
    /// shortfall, `(d(u, new) + d(old, new) - d(u, old)) * 10000 / d(old, new)` basis points
    /// (under L1 from 0, when it went at least the model's whole way, to 20000, when it stood
    /// still or went the other way; 10000 for every update when the model did not move).
    function _settleAtClose(RoundState memory state) private {
        uint256 count = state.entries;
        bool progress = _config.rewardReference == RewardReference.Progress;
        uint256 step = _roundStep;
        if (progress) _roundStep = 0;
        for (uint256 index = 0; index < count; ++index) {
            uint256 entry = _entries[index];
            if (entry & ENTRY_DROPPED != 0) continue;
            address client = address(uint160(entry));
            uint256 score = entry >> ENTRY_DISTANCE_SHIFT;
            uint8 tier = NO_TIER;
            uint256 reward = 0;
            bool guarded = entry & ENTRY_FREE_RIDER == 0 && score >= _config.minRewardDistance;
            if (progress) score = _shortfall(score, _unpack(_progress[client]).distance, step);
            if (guarded) (tier, reward) = _payTier(client, score);
            emit RewardSettled(state.number, client, score, tier, reward);
        }
    }

    /// RewardReference Progress: the shortfall of an update `toNew` from the new model and
    /// `fromOld` from the old, the two `step` apart, in basis points of the step (at least 0).
    function _shortfall(uint256 toNew, uint256 fromOld, uint256 step) private pure returns (uint256) {
        if (step == 0) return 10_000;
        uint256 behind = toNew + step;
        return behind > fromOld ? (behind - fromOld) * 10_000 / step : 0;
    }

    /// The direction entries of the step from the words at memory `before` to those at `next`
    /// (eight 32-bit entries a word, `PackedVectors.stepSigns`); returns a memory pointer, and
    /// whether the step moved any weight.
    function _directions(uint256 before, uint256 next, uint256 count)
        private
        pure
        returns (uint256 pointer, bool moved)
    {
        uint256[] memory entries = new uint256[]((count + 7) / 8);
        for (uint256 j = 0; j < count; ++j) {
            uint256 a;
            uint256 b;
            assembly ("memory-safe") {
                a := mload(add(before, shl(5, j)))
                b := mload(add(next, shl(5, j)))
            }
            if (a != b) moved = true;
            entries[j >> 3] |= PackedVectors.stepSigns(a, b) << ((j & 7) << 5);
        }
        assembly ("memory-safe") {
            pointer := add(entries, 0x20)
        }
    }
}
