// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {SSTORE2} from "solady/utils/SSTORE2.sol";
import {CoordinatorTypes} from "./CoordinatorTypes.sol";
import {PackedVectors} from "./PackedVectors.sol";

/// @title CoordinatorBase
/// @notice What every part of the coordinator shares: the storage layout, the round life cycle,
/// the global model and the money. `FLCoordinator` and each unit inherit it; the units run on the
/// coordinator's storage through DELEGATECALL, so this contract is the only place that declares
/// state, and nothing that inherits it may add any.
/// @dev The global model lives in code, not in storage: each segment of it is an SSTORE2 data
/// contract (Solady), read with one EXTCODECOPY. A submission measures its distance from the model
/// for ~3 gas a word instead of a cold SLOAD (2,100) a word. Two sets of segment pointers
/// alternate: a close writes the next model's segments into the set that is not current, and the
/// last segment's close flips the sets, so readers always see one whole model.
abstract contract CoordinatorBase is CoordinatorTypes {
    using PackedVectors for uint256;

    // ---------------------------------------------------------------- types

    /// The deployment's settings, written once by the constructor (packed: three slots).
    struct Config {
        uint32 numWeights;
        uint32 numWords;
        uint32 wordsPerSegment;
        uint32 numSegments;
        uint32 targetSubmissions;
        uint32 minSubmissions;
        uint32 maxSampleCount;
        uint16 maxAbsWeight;
        Aggregation aggregation;
        Distance distance;
        // slot 2
        Mode mode;
        bool allowlistEnabled;
        int16 minAlignment;
        uint8 accBits; // lane width of the close's accumulators (32, 64 or 128)
        uint8 laneBits; // SecureAggregation: lane width of the masked sums (16 .. 128)
        uint32 roundDuration;
        uint32 revealDuration;
        uint32 closeWindow;
        uint64 scale;
        // slot 3
        uint128 minRewardDistance;
        uint128 maxCountedDistance;
        // slot 4
        uint128 closeFee;
        uint128 relayFee;
        // slot 5
        uint128 commitBond;
        uint16 maxShareBps;
        RewardReference rewardReference;
        uint16 maxStep;
        uint16 maxDrift;
        uint32 driftWindow;
        // slot 6
        uint64 epsilonBudget; // 1e-6 units; 0: no privacy ledger
        uint32 maxDropouts;
        uint32 setupDuration;
        uint32 recoveryDuration;
        uint8 trimEach;
    }

    /// SecureAggregation: the open round's cohort (one slot).
    struct CohortState {
        uint32 registered; // members with a masking key, in `_members` order
        uint32 shared; // of them, members that posted their shares (the cohort the masks span)
        uint32 submitted; // of them, members whose masked update is complete
        uint32 dropped; // members of the cohort that did not submit in time
        uint32 recovered; // dropped members whose key was rebuilt
        uint32 threshold; // shares that rebuild a key: registered - maxDropouts
        bool failed; // a dropped member's shares did not rebuild its key: the round cannot close
    }

    /// The open round (one slot).
    struct RoundState {
        uint64 number;
        uint64 deadline; // Open, Commit: until when submissions are taken; Reveal: reveals
        uint32 entries; // counted complete submissions, in `_entries` order
        uint32 completed; // complete submissions, counted or not (CommitReveal: reveals)
        uint32 commits; // CommitReveal: commitments taken
        Phase phase;
        uint24 closedSegments; // Closing: segments of the new model written so far
    }

    /// A client's progress in its latest round, unpacked from its `_progress` slot.
    struct Progress {
        uint256 round;
        uint256 done; // segments sent
        uint256 sampleCount;
        bool leftOut; // the update failed the distance bound or the direction guard
        bool relayed; // a relayer registered it; the close measures it segment by segment
        uint256 distance; // so far
        uint256 along; // so far
        uint256 against; // so far
    }

    /// A commitment and the round it belongs to.
    struct Commitment {
        bytes32 digest;
        uint256 round;
    }

    // ---------------------------------------------------------------- constants

    uint8 internal constant NO_TIER = 255;
    int256 internal constant ALIGNMENT_OFF = -10_000;
    // Entry flags and the aggregate distance (see `_entries`).
    uint256 internal constant ENTRY_RELAYED = 1 << 192;
    uint256 internal constant STEP_ARMED = 1; // `_stepFlags`
    uint256 internal constant STEP_MOVING = 2;
    uint256 internal constant ENTRY_DROPPED = 1 << 193;
    uint256 internal constant ENTRY_FREE_RIDER = 1 << 194;
    uint256 internal constant ENTRY_DISTANCE_SHIFT = 195;
    // Pointer sets of the model's segments: the global model and the next one alternate between
    // sets 0 and 1; set 2 holds the drift bound's checkpoint.
    uint256 internal constant CHECKPOINT_SET = 2;
    // EIP-712 (signatures over relayed updates): domain and the `Update` type.
    bytes32 internal constant EIP712_NAME_HASH = keccak256("FLCoordinator");
    bytes32 internal constant EIP712_VERSION_HASH = keccak256("2");
    bytes32 internal constant UPDATE_TYPEHASH =
        keccak256("Update(uint256 round,uint256 segments,uint256 sampleCount,bytes32 wordsHash)");

    // The contract's own address: a unit compares it with `address(this)` to refuse direct calls.
    address private immutable _self = address(this);

    // ---------------------------------------------------------------- storage (shared layout)

    Config internal _config;
    RoundState internal _round;
    /// When the open round's first segment closed (Closing only).
    uint256 internal _closeStartedAt;
    /// Hash chain of the next model's segments, as far as they are written.
    bytes32 internal _pendingHash;
    /// Closed rounds so far; the initial model is version 0.
    uint256 internal _modelVersion;
    /// Hash chain of the global model's segments (see `_chainHash`).
    bytes32 internal _modelHash;
    /// Which of the two pointer sets holds the global model (0 or 1).
    uint256 internal _currentSet;
    /// Segments of the initial model loaded so far (Setup).
    uint256 internal _loadedSegments;
    address internal _owner;
    uint256[] internal _tierThresholds;
    uint256[] internal _tierRewards;
    // segment * 4 + set => SSTORE2 pointer of that segment's words (and direction entries)
    mapping(uint256 key => address pointer) internal _chunks;
    // index => client | sampleCount << 160 | relayed << 192 | dropped << 193 | free rider << 194
    // | distance from the new model << 195 (RewardReference Aggregate). The open round's counted
    // complete submissions in order; slots are reused every round (nonzero-to-nonzero writes
    // after the first).
    mapping(uint256 index => uint256 entry) internal _entries;
    // keccak256 of each segment's words as the client sent them, for the close to check against.
    mapping(address client => mapping(uint256 segment => bytes32 wordsHash)) internal _segmentHashes;
    // round << 216 | segments done << 192 | sample count << 160 | left out << 159 | relayed << 158
    // | distance so far << 96 | along so far << 48 | against so far (see `_pack`)
    mapping(address client => uint256 packedProgress) internal _progress;
    // CommitReveal: hash chain of the segments revealed so far.
    mapping(address client => bytes32 chain) internal _revealChain;
    mapping(address client => Commitment) internal _commitments;
    // fromRound | current << 64 | previous << 65: eligibility changes take effect next round.
    mapping(address account => uint256 packed) internal _eligibility;
    mapping(address account => uint256 amount) internal _credits;
    uint128 internal _totalFunded;
    uint128 internal _totalCredited;
    uint256 internal _totalWithdrawn;
    /// CommitReveal: bonds of the open round not yet returned.
    uint256 internal _bondsHeld;
    /// CommitReveal: bonds ever returned as credit (they never were in the pool).
    uint256 internal _bondsReturned;
    // SecureAggregation, the open round: its cohort, each member's state (round << 192 | index
    // << 160 | sample count << 128 | flags, see the MEMBER_ constants), masking key, share root
    // and, once dropped, the shares revealed of its key (holder bitmask and count, round-tagged)
    // and the key rebuilt from them.
    CohortState internal _cohortState;
    mapping(uint256 index => address member) internal _members;
    mapping(address member => uint256 packed) internal _memberState;
    mapping(address member => uint256[2] key) internal _maskKeys;
    mapping(uint256 x => uint256 round) internal _keyRound;
    mapping(address dealer => bytes32 root) internal _shareRoots;
    mapping(address dealer => mapping(uint256 holder => uint256 share)) internal _revealedShares;
    mapping(address dealer => uint256 packed) internal _revealedMask;
    mapping(address dealer => uint256 secret) internal _recoveredKeys;
    // Dealers whose committed shares did not rebuild their key: kept out of every later cohort.
    mapping(address dealer => bool) internal _faultyDealers;
    // Privacy ledger: one participation's RDP per order and the per-order conversion term, and
    // each client's participations (every participation has the same curve).
    uint256[] internal _rdpPerParticipation;
    uint256[] internal _rdpConversion;
    mapping(address client => uint256 count) internal _participations;
    /// RewardReference Progress: the distance of the round's new model from the current one, as
    /// far as its segments are closed. The close of the last segment reads it and sets it back to
    /// 0 (a round that started closing always finishes: `finalize` refuses it).
    uint256 internal _roundStep;
    /// The direction guard's record (guard on): `STEP_ARMED` while the global model's last step
    /// moved a weight, so that updates are measured against it; `STEP_MOVING` once a close of the
    /// open round has moved a weight. A round that ends without moving one (nothing counted, a
    /// step of zero, or no model at all) disarms the guard for the next round, so that a round
    /// whose step left (nearly) every weight alone cannot leave every later update "against" it
    /// and the model frozen for good.
    uint256 internal _stepFlags;

    // ---------------------------------------------------------------- guards

    /// Units run only through the coordinator (DELEGATECALL); called directly they would act on
    /// their own, empty storage.
    function _onlyDelegated() internal view {
        if (address(this) == _self) revert CoordinatorUnitCalledDirectly();
    }

    /// Whether `account` may take part in `round`.
    function _eligible(address account, uint256 round) internal view returns (bool) {
        if (!_config.allowlistEnabled) return true;
        uint256 packed = _eligibility[account];
        return round >= uint64(packed) ? (packed >> 64) & 1 == 1 : (packed >> 65) & 1 == 1;
    }

    /// Reverts unless `round` is the open round, in `phase`, and the caller may take part.
    function _checkRound(RoundState memory state, uint256 round, Phase phase) internal view {
        if (state.phase != phase) revert CoordinatorWrongPhase(state.phase);
        if (round != state.number) revert CoordinatorWrongRound(round, state.number);
        if (!_eligible(msg.sender, round)) revert CoordinatorNotEligible(msg.sender, round);
    }

    function _checkSampleCount(uint256 sampleCount) internal view {
        uint256 max = _config.maxSampleCount;
        if (sampleCount == 0 || sampleCount > max) revert CoordinatorInvalidSampleCount(sampleCount, max);
    }

    // ---------------------------------------------------------------- segments and the model

    /// The first word of `segment` and its number of words.
    function _segmentBounds(uint256 segment) internal view returns (uint256 first, uint256 count) {
        uint256 perSegment = _config.wordsPerSegment;
        first = segment * perSegment;
        uint256 remaining = _config.numWords - first;
        count = remaining < perSegment ? remaining : perSegment;
    }

    /// Whether the chunks carry the direction of the last step (the guard is on).
    function _directionGuard() internal view returns (bool) {
        return _config.minAlignment > ALIGNMENT_OFF;
    }

    /// The current model's `segment` in memory: a pointer to its words, then (guard on) its
    /// direction entries.
    function _readChunk(uint256 segment) internal view returns (uint256 words) {
        return _readChunkOf(segment, _currentSet);
    }

    /// Segment `segment` of pointer set `set` in memory (see `_readChunk`).
    function _readChunkOf(uint256 segment, uint256 set) internal view returns (uint256 words) {
        bytes memory data = SSTORE2.read(_chunks[segment * 4 + set]);
        assembly ("memory-safe") {
            words := add(data, 0x20)
        }
    }

    /// Stores `count` words at memory `words` (with their direction entries when the guard is
    /// on) as segment `segment` of the pointer set `set`, and returns the words' hash.
    function _writeChunk(uint256 segment, uint256 set, uint256 words, uint256 count, uint256 directions)
        internal
        returns (bytes32 wordsHash)
    {
        uint256 dirWords = directions == 0 ? 0 : (count + 7) / 8;
        bytes memory data = new bytes((count + dirWords) * 32);
        assembly ("memory-safe") {
            wordsHash := keccak256(words, shl(5, count))
            mcopy(add(data, 0x20), words, shl(5, count))
            if dirWords { mcopy(add(data, add(0x20, shl(5, count))), directions, shl(5, dirWords)) }
        }
        address pointer = SSTORE2.write(data);
        _chunks[segment * 4 + set] = pointer;
        if (_checkpointDue(set)) _chunks[segment * 4 + CHECKPOINT_SET] = pointer;
    }

    /// Whether a segment written into pointer set `set` also becomes the drift bound's
    /// checkpoint: the initial model, and the model that ends every window of `driftWindow` rounds.
    function _checkpointDue(uint256 set) internal view returns (bool) {
        if (_config.maxDrift == 0) return false;
        uint256 round = _round.number;
        return round == 0 ? set == _currentSet : round % _config.driftWindow == 0;
    }

    /// The model hash is a chain over the segments: `h = keccak256(h || keccak256(words of
    /// segment s))` from `h = 0`, so a model of any size is hashed one segment per transaction.
    function _chainHash(bytes32 previous, bytes32 wordsHash) internal pure returns (bytes32 digest) {
        assembly ("memory-safe") {
            mstore(0x00, previous)
            mstore(0x20, wordsHash)
            digest := keccak256(0x00, 0x40)
        }
    }

    /// keccak256 of `count` words at calldata offset `data` (abi.encodePacked of the words).
    function _hashCalldata(uint256 data, uint256 count) internal pure returns (bytes32 digest) {
        assembly ("memory-safe") {
            let scratch := mload(0x40)
            calldatacopy(scratch, data, shl(5, count))
            digest := keccak256(scratch, shl(5, count))
        }
    }

    /// The EIP-712 domain separator: name "FLCoordinator", version "2", this chain, this contract.
    function _domainSeparator() internal view returns (bytes32) {
        return MessageHashUtils.toDomainSeparator(
            bytes1(0x0f), EIP712_NAME_HASH, EIP712_VERSION_HASH, block.chainid, address(this), bytes32(0)
        );
    }

    /// The EIP-712 digest a client signs for its update in `round`: `segments` segments whose
    /// hash chain (`_chainHash`, as for the model) is `wordsHash`.
    function _updateDigest(uint256 round, uint256 segments, uint256 sampleCount, bytes32 wordsHash, bytes32 domain)
        internal
        pure
        returns (bytes32)
    {
        return MessageHashUtils.toTypedDataHash(
            domain, keccak256(abi.encode(UPDATE_TYPEHASH, round, segments, sampleCount, wordsHash))
        );
    }

    // ---------------------------------------------------------------- measuring an update

    /// Checks the range of segment `segment`'s words at calldata `data` (`count` of them) and adds
    /// their distance from the current model, and (guard on) its split along and against the last
    /// step, to `progress`.
    function _measure(uint256 segment, uint256 data, uint256 count, Progress memory progress) internal view {
        Measure memory m = _prepareMeasure(segment, count, _readChunk(segment));
        _measureAgainst(m, data, progress);
    }

    /// What measuring updates against one segment of the model needs, computed once.
    struct Measure {
        uint256 segment;
        uint256 count;
        uint256 model; // memory: the segment's words, then (guard on) its direction entries
        uint256 shiftedModel; // memory: the words `PackedVectors.shifted`
        uint256 maxAbs16; // maxAbs in every 16-bit lane
        uint256 spare16; // 0x7FFF - 2 * maxAbs in every 16-bit lane
    }

    function _prepareMeasure(uint256 segment, uint256 count, uint256 model) internal view returns (Measure memory m) {
        uint256 maxAbs = _config.maxAbsWeight;
        m.segment = segment;
        m.count = count;
        m.model = model;
        m.maxAbs16 = PackedVectors.broadcast(maxAbs, 16);
        m.spare16 = PackedVectors.broadcast(0x7FFF - 2 * maxAbs, 16);
        uint256[] memory shiftedWords = new uint256[](count);
        for (uint256 j = 0; j < count; ++j) {
            uint256 word;
            assembly ("memory-safe") {
                word := mload(add(model, shl(5, j)))
            }
            shiftedWords[j] = PackedVectors.shifted(word, m.maxAbs16);
        }
        uint256 pointer;
        assembly ("memory-safe") {
            pointer := add(shiftedWords, 0x20)
        }
        m.shiftedModel = pointer;
    }

    /// `_measure` with what `_prepareMeasure` computed.
    function _measureAgainst(Measure memory m, uint256 data, Progress memory progress) internal view {
        uint256 count = m.count;
        (uint256 l1, bool inRange) = PackedVectors.measureL1(data, count, m.shiftedModel, m.maxAbs16, m.spare16);
        uint256 firstWord = m.segment * _config.wordsPerSegment;
        if (!inRange) {
            uint256 maxAbs = _config.maxAbsWeight;
            for (uint256 i = 0; i < count; ++i) {
                _revertOutOfRange(firstWord + i, _calldataWord(data, i), maxAbs);
            }
        }
        if (firstWord + count == _config.numWords) _checkPadding(_calldataWord(data, count - 1));
        progress.distance +=
            _config.distance == Distance.SquaredL2 ? PackedVectors.measureSquaredL2(data, count, m.model) : l1;
        // No step to compare with (round 1, or the last round moved nothing): nothing to split.
        if (_directionGuard() && _stepFlags & STEP_ARMED != 0) {
            uint256 model = m.model;
            uint256 along = 0;
            uint256 against = 0;
            uint256 directions = model + count * 32;
            // unchecked: count < 2**10 words a segment, each adds below 2**21 to along and against
            unchecked {
                for (uint256 i = 0; i < count; ++i) {
                    uint256 entries;
                    uint256 modelWord;
                    assembly ("memory-safe") {
                        entries := mload(add(directions, shl(5, shr(3, i))))
                        modelWord := mload(add(model, shl(5, i)))
                    }
                    (uint256 a, uint256 b) = modelWord.directionalL1(
                        _calldataWord(data, i), (entries >> ((i & 7) << 5)) & 0xFFFFFFFF
                    );
                    along += a;
                    against += b;
                }
            }
            progress.along += along;
            progress.against += against;
        }
    }

    function _calldataWord(uint256 data, uint256 index) internal pure returns (uint256 word) {
        assembly ("memory-safe") {
            word := calldataload(add(data, shl(5, index)))
        }
    }

    function _checkPadding(uint256 lastWord) internal view {
        uint256 numWords = _config.numWords;
        for (uint256 lane = _config.numWeights - (numWords - 1) * 16; lane < 16; ++lane) {
            int256 value = lastWord.signedLane(lane);
            if (value != 0) revert CoordinatorWeightOutOfRange((numWords - 1) * 16 + lane, value, 0);
        }
    }

    function _revertOutOfRange(uint256 wordIndex, uint256 word, uint256 maxAbs) internal pure {
        for (uint256 lane = 0; lane < 16; ++lane) {
            int256 value = word.signedLane(lane);
            if (value > int256(maxAbs) || value < -int256(maxAbs)) {
                revert CoordinatorWeightOutOfRange(wordIndex * 16 + lane, value, maxAbs);
            }
        }
    }

    /// Whether an update that moved `along` quanta the way of the last global step and `against`
    /// quanta the other way passes the direction guard: `along - against >= minAlignment / 10000
    /// * (along + against)`. Both are below 2**41, so the products cannot overflow.
    function _aligned(uint256 along, uint256 against) internal view returns (bool) {
        return (int256(along) - int256(against)) * 10_000 >= int256(_config.minAlignment) * int256(along + against);
    }

    /// Whether the running figures of `progress` still pass the distance bound and the guard.
    function _stillCounted(Progress memory progress) internal view returns (bool) {
        return progress.distance <= _config.maxCountedDistance && _aligned(progress.along, progress.against);
    }

    // ---------------------------------------------------------------- submissions

    /// The caller's progress in `round` once a transaction carrying `firstSegment ..` is
    /// allowed: a new submission starts at segment 0 while the round has room, a continued one
    /// at its next segment with the same sample count.
    function _startSubmission(RoundState memory state, uint256 round, uint256 sampleCount, uint256 firstSegment)
        internal
        view
        returns (Progress memory progress)
    {
        _checkSampleCount(sampleCount);
        progress = _unpack(_progress[msg.sender]);
        if (progress.round == round) {
            if (progress.relayed || progress.done == _config.numSegments) {
                revert CoordinatorAlreadySubmitted(round, msg.sender);
            }
            if (sampleCount != progress.sampleCount) {
                revert CoordinatorSampleCountChanged(progress.sampleCount, sampleCount);
            }
        } else {
            if (state.entries >= _config.targetSubmissions) revert CoordinatorRoundFull(round, state.entries);
            progress = Progress(round, 0, sampleCount, false, false, 0, 0, 0);
        }
        if (firstSegment != progress.done) revert CoordinatorWrongSegment(progress.done, firstSegment);
    }

    /// Takes the whole segments in `words`, from the caller's next segment on: checks and
    /// measures them against the current model and keeps each segment's hash for the close.
    function _takeSegments(Progress memory progress, uint256[] calldata words) internal {
        uint256 numSegments = _config.numSegments;
        uint256 offset;
        assembly ("memory-safe") {
            offset := words.offset
        }
        uint256 used = 0;
        uint256 segment = progress.done;
        do {
            if (segment >= numSegments) revert CoordinatorWrongLength(used, words.length);
            (, uint256 count) = _segmentBounds(segment);
            if (used + count > words.length) revert CoordinatorWrongLength(used + count, words.length);
            uint256 data = offset + used * 32;
            _measure(segment, data, count, progress);
            _segmentHashes[msg.sender][segment] = _hashCalldata(data, count);
            used += count;
            ++segment;
        } while (used < words.length);
        progress.done = segment;
    }

    /// Finishes the caller's submission once every segment is in: charges its privacy budget,
    /// registers it for the close when it counts, and settles it.
    function _complete(RoundState memory state, Progress memory progress) internal {
        _chargePrivacy(msg.sender);
        if (!progress.leftOut) {
            if (state.entries >= _config.targetSubmissions) revert CoordinatorRoundFull(state.number, state.entries);
            _entries[state.entries] = uint256(uint160(msg.sender)) | (progress.sampleCount << 160)
                | (progress.distance < _config.minRewardDistance ? ENTRY_FREE_RIDER : 0);
            ++state.entries;
        }
        ++state.completed;
        _settle(state.number, msg.sender, progress);
    }

    /// Credits a measured update its tier's reward by its distance from the current model
    /// (nothing when it is left out, or with RewardReference Aggregate: the close pays then) and
    /// emits `SubmissionAccepted`.
    function _settle(uint256 round, address client, Progress memory progress) internal {
        bool counted = !progress.leftOut;
        bool paidNow = counted && _config.rewardReference == RewardReference.Current;
        (uint8 tier, uint256 reward) = paidNow ? _reward(client, progress.distance) : (NO_TIER, 0);
        emit SubmissionAccepted(
            round,
            client,
            progress.sampleCount,
            progress.distance,
            progress.along,
            progress.against,
            tier,
            reward,
            counted,
            progress.relayed
        );
    }

    /// The tier of the distance `total` and what was credited for it to `client` (nothing below
    /// the free-rider guard).
    function _reward(address client, uint256 total) internal returns (uint8 tier, uint256 reward) {
        if (total < _config.minRewardDistance) return (NO_TIER, 0); // the free-rider guard
        return _payTier(client, total);
    }

    /// The tier of `score` (the first threshold at or above it) and what was credited for it to
    /// `client`.
    function _payTier(address client, uint256 score) internal returns (uint8 tier, uint256 reward) {
        tier = NO_TIER;
        uint256 tiers = _tierThresholds.length;
        for (uint256 i = 0; i < tiers; ++i) {
            if (score <= _tierThresholds[i]) {
                tier = uint8(i);
                reward = _tierRewards[i];
                break;
            }
        }
        reward = _credit(client, reward);
    }

    /// Credits `account` `amount` from the pool, or what is left of it: a valid call never
    /// reverts for lack of funds.
    function _credit(address account, uint256 amount) internal returns (uint256 credited) {
        uint256 available = uint256(_totalFunded) - uint256(_totalCredited);
        credited = amount < available ? amount : available;
        if (credited > 0) {
            _credits[account] += credited;
            _totalCredited += uint128(credited);
        }
    }

    /// Records one participation of `client` against its privacy budget, or reverts when it
    /// would exceed it (no ledger: nothing to do).
    function _chargePrivacy(address client) internal {
        uint256 count = _requireBudget(client);
        if (count != 0) _participations[client] = count;
    }

    /// Reverts when one more participation of `client` would exceed the privacy budget (paths
    /// that take a bond or a cohort place check it first, so that nothing is forfeited for it);
    /// the participation count it would reach (0: no budget kept).
    function _requireBudget(address client) internal view returns (uint256 count) {
        uint256 budget = _config.epsilonBudget;
        if (budget == 0) return 0;
        count = _participations[client] + 1;
        uint256 epsilon = _epsilonAfter(count);
        if (epsilon > budget) revert CoordinatorPrivacyBudgetExceeded(client, epsilon, budget);
    }

    /// Epsilon (1e-6 units) after `count` participations: RDP composes additively at each order,
    /// and the conversion at delta is the minimum over the orders of `rdp + conversion`.
    function _epsilonAfter(uint256 count) internal view returns (uint256 epsilon) {
        if (count == 0) return 0;
        epsilon = type(uint256).max;
        uint256 orders = _rdpPerParticipation.length;
        for (uint256 k = 0; k < orders; ++k) {
            uint256 candidate = count * _rdpPerParticipation[k] + _rdpConversion[k];
            if (candidate < epsilon) epsilon = candidate;
        }
    }

    function _unpack(uint256 packed) internal pure returns (Progress memory) {
        return Progress(
            packed >> 216,
            (packed >> 192) & type(uint24).max,
            (packed >> 160) & type(uint32).max,
            (packed >> 159) & 1 == 1,
            (packed >> 158) & 1 == 1,
            (packed >> 96) & (type(uint64).max >> 2),
            (packed >> 48) & type(uint48).max,
            packed & type(uint48).max
        );
    }

    // Widths: round 40 bits (2**40 rounds cannot be reached), segments 24, sample count 32, two
    // flags, distance 62 (squared L2 < 2**24 * 2**32), along and against 48 each (L1 < 2**24 * 2**16).
    function _pack(Progress memory p) internal pure returns (uint256) {
        return (p.round << 216) | (p.done << 192) | (p.sampleCount << 160) | (uint256(p.leftOut ? 1 : 0) << 159)
            | (uint256(p.relayed ? 1 : 0) << 158) | (p.distance << 96) | (p.along << 48) | p.against;
    }

    // ---------------------------------------------------------------- the round life cycle

    function _open(uint256 number) internal {
        uint256 deadline = block.timestamp + _config.roundDuration;
        _round = RoundState({
            number: uint64(number),
            deadline: uint64(deadline),
            entries: 0,
            completed: 0,
            commits: 0,
            phase: _config.mode == Mode.CommitReveal
                ? Phase.Commit
                : _config.mode == Mode.SecureAggregation ? Phase.Register : Phase.Open,
            closedSegments: 0
        });
        if (_config.mode == Mode.SecureAggregation) {
            _round.deadline = uint64(block.timestamp + _config.setupDuration);
            delete _cohortState;
        }
        emit RoundOpened(number, _round.deadline);
    }

    /// The new model is whole (the average of `counted` updates): makes it the global model and
    /// opens the next round.
    function _finishRound(RoundState memory state, bytes32 modelHash, uint256 counted) internal {
        _currentSet ^= 1;
        uint256 version = _modelVersion + 1;
        _modelVersion = version;
        _modelHash = modelHash;
        _settleStepFlags(_stepFlags & STEP_MOVING != 0);
        _forfeitBonds(state.number);
        emit RoundClosed(state.number, version, modelHash, counted);
        _open(state.number + 1);
    }

    /// Ends the round without a new model and opens the next one.
    function _abandon(RoundState memory state) internal {
        _settleStepFlags(false);
        _forfeitBonds(state.number);
        emit RoundAbandoned(state.number, state.entries);
        _open(state.number + 1);
    }

    /// The guard is armed for the next round if and only if this round's step moved a weight.
    function _settleStepFlags(bool moved) private {
        uint256 next = moved ? STEP_ARMED : 0;
        if (_stepFlags != next) _stepFlags = next;
    }

    /// CommitReveal: commits close, reveals are taken for `revealDuration`.
    function _startReveal(RoundState memory state) internal {
        state.phase = Phase.Reveal;
        state.deadline = uint64(block.timestamp + _config.revealDuration);
        emit RevealOpened(state.number, state.deadline);
    }

    /// The commitment a client makes in CommitReveal mode: keccak256 of (chain id, this
    /// contract, round, client, sample count, salt, the hash chain of its segments).
    function _commitmentOf(uint256 round, address client, uint256 sampleCount, bytes32 salt, bytes32 vectorHash)
        internal
        view
        returns (bytes32)
    {
        return keccak256(abi.encode(block.chainid, address(this), round, client, sampleCount, salt, vectorHash));
    }

    /// CommitReveal: the bonds nobody revealed for go to the pool.
    function _forfeitBonds(uint256 round) internal {
        uint256 held = _bondsHeld;
        if (held == 0) return;
        _bondsHeld = 0;
        _totalFunded += uint128(held);
        emit BondsForfeited(round, held);
    }
}
