// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {CoordinatorBase} from "../CoordinatorBase.sol";
import {PackedVectors} from "../PackedVectors.sol";

/// @title SecureAggregationUnit
/// @notice Secure aggregation that survives dropouts (after Bonawitz et al. 2017), settled
/// on-chain. Runs on the coordinator's storage (DELEGATECALL from `FLCoordinator`).
/// @dev Each round forms its cohort anew:
/// 1. `Register`: a member registers a fresh secp256k1 masking key and proves it holds it (an
///    ECDSA signature by that key over the round and its account, checked with ECRECOVER). A key
///    whose x-coordinate is registered already this round is refused (a copy, or its negation).
/// 2. `Share`: each member splits its masking key with Shamir's scheme (threshold `registered -
///    maxDropouts`, over the secp256k1 group order) and posts one share per member, encrypted to
///    that member, with a commitment to each share; the contract keeps the root of the commitments.
/// 3. `Open`: members submit their update masked with pairwise masks: for a pair, the seed is
///    derived from their ECDH point's address and both addresses in a fixed order, and the mask is
///    a keccak counter stream, lane by lane modulo `2**laneBits`; the member with the lower index
///    adds it, the other subtracts it, so the masks of a pair cancel in the sum. A submission
///    leaves the hash of each segment; its words stay in the calldata.
/// 4. `Recover` (when members dropped out, at most `maxDropouts`): the survivors reveal their shares
///    of each dropped member's key, each checked against the dealer's commitment; `threshold` of
///    them rebuild the key (Lagrange at 0), checked against the registered key. The dropped
///    member's own update was never submitted (submissions end at the deadline, before recovery
///    starts), so nothing of it is revealed. A member that sent part of its update (some
///    segments) is never recovered: its rebuilt key would unmask them (there is no self-mask);
///    the round ends instead. A dealer whose committed shares do not rebuild its key ends the
///    round too, and may not join a cohort again.
/// 5. The close (segment by segment) re-supplies the survivors' masked words, sums them, removes
///    the dropped members' masks (recomputed here from their rebuilt keys with ECRECOVER as a scalar
///    multiplication), clamps each mean to `[-maxAbsWeight, maxAbsWeight]` (so that no member can
///    push a weight or the padding out of range), and pays every survivor the first tier. A round
///    that produced no model pays nothing.
contract SecureAggregationUnit is CoordinatorBase {
    using PackedVectors for uint256;

    // secp256k1: the group order and the generator's x-coordinate (its y is even: v = 27).
    uint256 private constant N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
    uint256 private constant GX = 0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798;
    uint256 private constant MEMBER_SHARED = 1;
    uint256 private constant MEMBER_SUBMITTED = 2;
    uint256 private constant MEMBER_DROPPED = 4;
    uint256 private constant MEMBER_RECOVERED = 8;
    bytes32 private constant KEY_PROOF_TAG = keccak256("FLCoordinator masking key");

    // ---------------------------------------------------------------- setup

    /// @notice See `FLCoordinator.registerKey`.
    function registerKey(uint256 round, uint256 x, uint256 y, uint8 v, bytes32 r, bytes32 s) external {
        _onlyDelegated();
        RoundState memory state = _secAggRound(round, Phase.Register);
        if (!_eligible(msg.sender, round)) revert CoordinatorNotEligible(msg.sender, round);
        if (_member(msg.sender, round) != 0) revert CoordinatorAlreadyRegistered(msg.sender);
        if (_faultyDealers[msg.sender]) revert CoordinatorFaultyDealer(msg.sender);
        _requireBudget(msg.sender); // a member that cannot submit would only drop out
        // The cohort cannot be full here: its last registration moves the round to Share.
        CohortState memory cohort = _cohortState;
        bytes32 digest = keccak256(abi.encode(KEY_PROOF_TAG, block.chainid, address(this), round, msg.sender, x, y));
        // x below the group order: the recovery uses x as an ECDSA `r` (see `_pointAddress`).
        if (x == 0 || x >= N || ecrecover(digest, v, r, s) != _keyAddress(x, y)) {
            revert CoordinatorInvalidKeyProof(msg.sender);
        }
        if (_keyRound[x] == round) revert CoordinatorKeyReused(x);
        _keyRound[x] = round;
        uint256 index = cohort.registered;
        _members[index] = msg.sender;
        _memberState[msg.sender] = (round << 192) | (index << 160);
        _maskKeys[msg.sender] = [x, y];
        ++cohort.registered;
        emit KeyRegistered(round, msg.sender, index, x, y);
        if (cohort.registered == _config.targetSubmissions) _startSharing(state, cohort);
        _cohortState = cohort;
        _round = state;
    }

    /// @notice See `FLCoordinator.postShares`.
    function postShares(uint256 round, bytes32[] calldata commitments, bytes32[] calldata encrypted) external {
        _onlyDelegated();
        RoundState memory state = _secAggRound(round, Phase.Share);
        uint256 packed = _member(msg.sender, round);
        if (packed == 0) revert CoordinatorNotRegistered(msg.sender);
        if (packed & MEMBER_SHARED != 0) revert CoordinatorAlreadyRegistered(msg.sender);
        CohortState memory cohort = _cohortState;
        if (commitments.length != cohort.registered) revert CoordinatorWrongLength(cohort.registered, commitments.length);
        if (encrypted.length != cohort.registered) revert CoordinatorWrongLength(cohort.registered, encrypted.length);
        _shareRoots[msg.sender] = keccak256(abi.encodePacked(commitments));
        _memberState[msg.sender] = packed | MEMBER_SHARED;
        ++cohort.shared;
        emit SharesPosted(round, msg.sender, commitments, encrypted);
        if (cohort.shared == cohort.registered) _startMasking(state);
        _cohortState = cohort;
        _round = state;
    }

    // ---------------------------------------------------------------- submissions

    /// @notice See `FLCoordinator.submitMasked`.
    function submitMasked(uint256 round, uint256 sampleCount, uint256 firstSegment, uint256[] calldata words)
        external
    {
        _onlyDelegated();
        RoundState memory state = _secAggRound(round, Phase.Open);
        uint256 packed = _member(msg.sender, round);
        if (packed & MEMBER_SHARED == 0) revert CoordinatorNotRegistered(msg.sender);
        if (packed & MEMBER_SUBMITTED != 0) revert CoordinatorAlreadySubmitted(round, msg.sender);
        _checkSampleCount(sampleCount);
        Progress memory progress = _unpack(_progress[msg.sender]);
        if (progress.round != round) progress = Progress(round, 0, sampleCount, false, false, 0, 0, 0);
        if (sampleCount != progress.sampleCount) revert CoordinatorSampleCountChanged(progress.sampleCount, sampleCount);
        if (firstSegment != progress.done) revert CoordinatorWrongSegment(progress.done, firstSegment);
        uint256 perWord = _config.laneBits / 16;
        uint256 offset;
        assembly ("memory-safe") {
            offset := words.offset
        }
        uint256 used = 0;
        uint256 segment = progress.done;
        do {
            if (segment >= _config.numSegments) revert CoordinatorWrongLength(used, words.length);
            (, uint256 count) = _segmentBounds(segment);
            count *= perWord;
            if (used + count > words.length) revert CoordinatorWrongLength(used + count, words.length);
            _segmentHashes[msg.sender][segment] = _hashCalldata(offset + used * 32, count);
            used += count;
            ++segment;
        } while (used < words.length);
        progress.done = segment;
        _progress[msg.sender] = _pack(progress);
        if (segment < _config.numSegments) {
            emit SegmentsReceived(round, msg.sender, firstSegment, segment - firstSegment);
            return;
        }
        _chargePrivacy(msg.sender);
        _memberState[msg.sender] = (packed & ~(uint256(type(uint32).max) << 128)) | (sampleCount << 128) | MEMBER_SUBMITTED;
        CohortState memory cohort = _cohortState;
        ++cohort.submitted;
        ++state.completed;
        ++state.entries;
        _cohortState = cohort;
        _round = state;
        emit MaskedSubmitted(round, msg.sender, sampleCount);
    }

    // ---------------------------------------------------------------- dropouts

    /// @notice See `FLCoordinator.finalize` (SecureAggregation: moves the round's phases on).
    function finalize() external {
        _onlyDelegated();
        RoundState memory state = _round;
        CohortState memory cohort = _cohortState;
        uint256 minimum = _config.minSubmissions;
        uint256 maxDropouts = _config.maxDropouts;
        bool end;
        if (state.phase == Phase.Register) {
            _notBefore(state, state.deadline);
            uint256 needed = minimum > maxDropouts + 1 ? minimum : maxDropouts + 1;
            end = cohort.registered < needed || cohort.registered < 2;
            if (!end) _startSharing(state, cohort);
        } else if (state.phase == Phase.Share) {
            _notBefore(state, state.deadline);
            end = cohort.shared < minimum || cohort.registered - cohort.shared > maxDropouts;
            if (!end) _startMasking(state);
        } else if (state.phase == Phase.Open) {
            // A complete round is ended only when nobody closed it within the window.
            bool complete = cohort.submitted == cohort.shared;
            _notBefore(state, complete ? state.deadline + _config.closeWindow : state.deadline);
            end = complete || cohort.submitted < minimum || cohort.registered - cohort.submitted > maxDropouts
                || _partlySubmitted(state.number, cohort.registered);
            if (!end) _startRecovery(state, cohort);
        } else if (state.phase == Phase.Recover) {
            bool recovered = !cohort.failed && cohort.recovered == cohort.dropped;
            _notBefore(state, recovered ? state.deadline + _config.closeWindow : state.deadline);
            end = true;
        } else {
            revert CoordinatorWrongPhase(state.phase);
        }
        if (end) {
            _abandon(state);
        } else {
            _cohortState = cohort;
            _round = state;
        }
    }

    /// @notice See `FLCoordinator.revealShares`.
    function revealShares(uint256 round, RevealedShare[] calldata shares) external {
        _onlyDelegated();
        _secAggRound(round, Phase.Recover);
        uint256 holder = _member(msg.sender, round);
        if (holder & MEMBER_SUBMITTED == 0) revert CoordinatorNotRegistered(msg.sender);
        uint256 holderIndex = uint32(holder >> 160);
        CohortState memory cohort = _cohortState;
        for (uint256 i = 0; i < shares.length; ++i) {
            RevealedShare calldata revealed = shares[i];
            address dealer = revealed.dealer;
            uint256 dealerState = _member(dealer, round);
            if (dealerState & MEMBER_DROPPED == 0) revert CoordinatorNotDropped(dealer);
            // A share that arrives once the key is rebuilt changes nothing (survivors reveal at once).
            if (dealerState & MEMBER_RECOVERED != 0) continue;
            if (
                revealed.commitments.length != cohort.registered
                    || keccak256(abi.encodePacked(revealed.commitments)) != _shareRoots[dealer]
                    || keccak256(abi.encode(round, dealer, holderIndex, revealed.share))
                        != revealed.commitments[holderIndex]
            ) revert CoordinatorBadShare(dealer, holderIndex);
            uint256 mask = _revealedMask[dealer];
            if (mask >> 192 != round) mask = round << 192;
            if (mask & (uint256(1) << holderIndex) != 0) continue; // revealed already
            mask |= uint256(1) << holderIndex;
            _revealedMask[dealer] = mask;
            _revealedShares[dealer][holderIndex] = revealed.share;
            emit ShareRevealed(round, dealer, msg.sender);
            if (_popcount(uint128(mask)) == cohort.threshold) _rebuild(round, dealer, dealerState, mask, cohort);
        }
        _cohortState = cohort;
    }

    // ---------------------------------------------------------------- the close

    /// @notice See `FLCoordinator.closeMasked`.
    function closeMasked(uint256 round, uint256 segment, uint256[] calldata words) external {
        _onlyDelegated();
        if (_config.mode != Mode.SecureAggregation) revert CoordinatorWrongMode(_config.mode);
        RoundState memory state = _round;
        if (round != state.number) revert CoordinatorWrongRound(round, state.number);
        CohortState memory cohort = _cohortState;
        bool first = state.phase != Phase.Closing;
        if (first) {
            bool ready = (state.phase == Phase.Open && cohort.submitted == cohort.shared && cohort.shared > 0)
                || (state.phase == Phase.Recover && !cohort.failed && cohort.recovered == cohort.dropped);
            if (!ready) revert CoordinatorWrongPhase(state.phase);
            if (segment != 0) revert CoordinatorWrongSegment(0, segment);
        } else if (segment != state.closedSegments) {
            revert CoordinatorWrongSegment(state.closedSegments, segment);
        }
        (uint256 firstWord, uint256 count) = _segmentBounds(segment);
        uint256 perWord = _config.laneBits / 16;
        uint256[] memory sums = new uint256[](count * perWord);
        uint256 weightSum = _sumSurvivors(round, segment, words, sums, cohort.registered);
        if (cohort.dropped > 0) _unmask(round, firstWord * perWord, sums, cohort.registered);
        uint256[] memory next = new uint256[](count);
        _average(sums, next, weightSum, firstWord);
        uint256 pointer;
        assembly ("memory-safe") {
            pointer := add(next, 0x20)
        }
        uint256 clamped = _boundStep(segment, pointer, count);
        bytes32 wordsHash = _writeChunk(segment, _currentSet ^ 1, pointer, count, 0);
        uint256 fee = _credit(msg.sender, _config.closeFee);
        emit SegmentClosed(round, segment, msg.sender, cohort.submitted, 0, fee, clamped);
        bytes32 chain = _chainHash(first ? bytes32(0) : _pendingHash, wordsHash);
        if (segment + 1 == _config.numSegments) {
            _paySurvivors(round, cohort.registered);
            _finishRound(state, chain, cohort.submitted);
        } else {
            _pendingHash = chain;
            if (first) _closeStartedAt = block.timestamp;
            state.phase = Phase.Closing;
            state.closedSegments = uint24(segment + 1);
            _round = state;
        }
    }

    /// Bounds the unmasked mean's step (`maxStep`, `maxDrift`) as a plain close does: the only
    /// poisoning bound that applies to masked updates, since no single one can be measured.
    function _boundStep(uint256 segment, uint256 next, uint256 count) private view returns (uint256 clamped) {
        uint256 maxStep = _config.maxStep;
        uint256 maxDrift = _config.maxDrift;
        if (maxStep == 0 && maxDrift == 0) return 0;
        uint256 current = _readChunk(segment);
        uint256 checkpoint = maxDrift == 0 ? current : _readChunkOf(segment, CHECKPOINT_SET);
        return PackedVectors.clampStep(next, current, checkpoint, count, maxStep, maxDrift);
    }

    // ---------------------------------------------------------------- internal: phases

    function _secAggRound(uint256 round, Phase phase) private view returns (RoundState memory state) {
        if (_config.mode != Mode.SecureAggregation) revert CoordinatorWrongMode(_config.mode);
        state = _round;
        if (state.phase != phase) revert CoordinatorWrongPhase(state.phase);
        if (round != state.number) revert CoordinatorWrongRound(round, state.number);
        if (block.timestamp >= state.deadline) revert CoordinatorDeadlinePassed(round, state.deadline);
    }

    function _notBefore(RoundState memory state, uint256 opensAt) private view {
        if (block.timestamp < opensAt) {
            revert CoordinatorNotClosable(
                state.number, state.entries, _config.targetSubmissions, _config.minSubmissions, opensAt
            );
        }
    }

    function _startSharing(RoundState memory state, CohortState memory cohort) private {
        state.phase = Phase.Share;
        state.deadline = uint64(block.timestamp + _config.setupDuration);
        cohort.threshold = uint32(cohort.registered - _config.maxDropouts);
        emit PhaseStarted(state.number, Phase.Share, state.deadline);
    }

    function _startMasking(RoundState memory state) private {
        state.phase = Phase.Open;
        state.deadline = uint64(block.timestamp + _config.roundDuration);
        emit PhaseStarted(state.number, Phase.Open, state.deadline);
    }

    /// Whether a member that did not complete its masked submission sent part of it: rebuilding
    /// that member's key would unmask the segments it sent (there is no self-mask, as in Bonawitz
    /// et al., to keep them hidden), so the round ends instead of recovering it.
    function _partlySubmitted(uint256 round, uint256 registered) private view returns (bool) {
        for (uint256 i = 0; i < registered; ++i) {
            address member = _members[i];
            if (_memberState[member] & MEMBER_SUBMITTED != 0) continue;
            Progress memory progress = _unpack(_progress[member]);
            if (progress.round == round && progress.done > 0) return true;
        }
        return false;
    }

    /// Marks the members that posted shares and did not submit as dropped; survivors reveal.
    function _startRecovery(RoundState memory state, CohortState memory cohort) private {
        uint256 round = state.number;
        for (uint256 i = 0; i < cohort.registered; ++i) {
            address member = _members[i];
            uint256 packed = _memberState[member];
            if (packed & MEMBER_SHARED != 0 && packed & MEMBER_SUBMITTED == 0) {
                _memberState[member] = packed | MEMBER_DROPPED;
                ++cohort.dropped;
                emit MemberDropped(round, member);
            }
        }
        state.phase = Phase.Recover;
        state.deadline = uint64(block.timestamp + _config.recoveryDuration);
        emit PhaseStarted(round, Phase.Recover, state.deadline);
    }

    /// `account`'s packed state in `round` (0: not a member; a member's is never 0, its round
    /// being at least 1).
    function _member(address account, uint256 round) private view returns (uint256 packed) {
        packed = _memberState[account];
        if (packed >> 192 != round) return 0;
    }

    // ---------------------------------------------------------------- internal: keys

    /// The Ethereum address of the point `(x, y)`: the last 20 bytes of keccak256(x || y).
    function _keyAddress(uint256 x, uint256 y) private pure returns (address) {
        return address(uint160(uint256(keccak256(abi.encodePacked(x, y)))));
    }

    /// The address of `scalar` times the point with x-coordinate `x` and y parity `yOdd`, by
    /// ECRECOVER: for hash 0, signature `(r = x, s = scalar * x)` recovers `x^-1 * (s * P) =
    /// scalar * P`. Both the dealer's key check (P = G) and the pair seeds use it.
    function _pointAddress(uint256 scalar, uint256 x, bool yOdd) private view returns (address) {
        return ecrecover(bytes32(0), yOdd ? 28 : 27, bytes32(x), bytes32(mulmod(scalar, x, N)));
    }

    /// Rebuilds dropped `dealer`'s key from `threshold` revealed shares (Lagrange at 0, modulo
    /// the group order) and checks it against the key it registered.
    function _rebuild(uint256 round, address dealer, uint256 dealerState, uint256 mask, CohortState memory cohort)
        private
    {
        uint256 registered = cohort.registered;
        uint256 secret = 0;
        for (uint256 i = 0; i < registered; ++i) {
            if (mask & (uint256(1) << i) == 0) continue;
            uint256 numerator = 1;
            uint256 denominator = 1;
            for (uint256 j = 0; j < registered; ++j) {
                if (j == i || mask & (uint256(1) << j) == 0) continue;
                numerator = mulmod(numerator, j + 1, N);
                denominator = mulmod(denominator, (j + N - i) % N, N); // (x_j - x_i), x = index + 1
            }
            uint256 lagrange = mulmod(numerator, _inverse(denominator), N);
            secret = addmod(secret, mulmod(_revealedShares[dealer][i], lagrange, N), N);
        }
        uint256[2] memory key = _maskKeys[dealer];
        bool ok = secret != 0 && _pointAddress(secret, GX, false) == _keyAddress(key[0], key[1]);
        if (ok) {
            _recoveredKeys[dealer] = secret;
            _memberState[dealer] = dealerState | MEMBER_RECOVERED;
            ++cohort.recovered;
        } else {
            cohort.failed = true;
            _faultyDealers[dealer] = true; // its own commitments: the shares were checked on them
        }
        emit KeyRecovered(round, dealer, ok);
    }

    /// a^-1 modulo the (prime) group order, by Fermat (the MODEXP precompile).
    function _inverse(uint256 a) private view returns (uint256 result) {
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, 0x20)
            mstore(add(p, 0x20), 0x20)
            mstore(add(p, 0x40), 0x20)
            mstore(add(p, 0x60), a)
            mstore(add(p, 0x80), sub(N, 2))
            mstore(add(p, 0xa0), N)
            if iszero(staticcall(gas(), 0x05, p, 0xc0, p, 0x20)) { revert(0, 0) }
            result := mload(p)
        }
    }

    function _popcount(uint256 x) private pure returns (uint256 count) {
        while (x != 0) {
            x &= x - 1;
            ++count;
        }
    }

    // ---------------------------------------------------------------- internal: the close

    /// Adds the survivors' masked words of `segment` (from the calldata, in member order) into
    /// `sums`, lane by lane modulo `2**laneBits`; returns their weight.
    function _sumSurvivors(
        uint256 round,
        uint256 segment,
        uint256[] calldata words,
        uint256[] memory sums,
        uint256 registered
    ) private view returns (uint256 weightSum) {
        uint256 bits = _config.laneBits;
        uint256 highBits = PackedVectors.broadcast(uint256(1) << (bits - 1), bits);
        bool mean = _config.aggregation == Aggregation.Mean;
        uint256 count = sums.length;
        uint256 cursor = 0;
        for (uint256 i = 0; i < registered; ++i) {
            address member = _members[i];
            uint256 packed = _memberState[member];
            if (packed >> 192 != round || packed & MEMBER_SUBMITTED == 0) continue;
            if (cursor + count > words.length) revert CoordinatorWrongLength(cursor + count, words.length);
            uint256 data;
            assembly ("memory-safe") {
                data := add(words.offset, shl(5, cursor))
            }
            if (_hashCalldata(data, count) != _segmentHashes[member][segment]) {
                revert CoordinatorWordsMismatch(i, member);
            }
            for (uint256 j = 0; j < count; ++j) {
                sums[j] = sums[j].addLanes(words[cursor + j], highBits);
            }
            cursor += count;
            weightSum += mean ? 1 : uint32(packed >> 128);
        }
        if (cursor != words.length) revert CoordinatorWrongLength(cursor, words.length);
    }

    /// Removes the masks between every dropped member and every survivor from `sums` (masked
    /// words `firstMasked ..`): the survivor had added the pair's mask when its index is the lower,
    /// subtracted it otherwise.
    function _unmask(uint256 round, uint256 firstMasked, uint256[] memory sums, uint256 registered) private view {
        uint256 bits = _config.laneBits;
        uint256 highBits = PackedVectors.broadcast(uint256(1) << (bits - 1), bits);
        for (uint256 d = 0; d < registered; ++d) {
            address dropped = _members[d];
            uint256 droppedState = _memberState[dropped];
            if (droppedState >> 192 != round || droppedState & MEMBER_DROPPED == 0) continue;
            uint256 secret = _recoveredKeys[dropped];
            for (uint256 v = 0; v < registered; ++v) {
                address survivor = _members[v];
                uint256 survivorState = _memberState[survivor];
                if (survivorState >> 192 != round || survivorState & MEMBER_SUBMITTED == 0) continue;
                uint256[2] memory key = _maskKeys[survivor];
                address shared = _pointAddress(secret, key[0], key[1] & 1 == 1);
                bytes32 seed = _pairSeed(shared, round, dropped, survivor);
                for (uint256 j = 0; j < sums.length; ++j) {
                    uint256 maskWord = uint256(keccak256(abi.encode(seed, firstMasked + j)));
                    sums[j] = v < d ? sums[j].subLanes(maskWord, highBits) : sums[j].addLanes(maskWord, highBits);
                }
            }
        }
    }

    /// The seed of a pair's masks: the address of their ECDH point, bound to the chain, this
    /// contract, the round and both members' addresses in a fixed order.
    function _pairSeed(address shared, uint256 round, address a, address b) private view returns (bytes32) {
        (address low, address high) = a < b ? (a, b) : (b, a);
        return keccak256(abi.encode(shared, block.chainid, address(this), round, low, high));
    }

    /// The mean of each weight from the unmasked sums (natural layout: masked word `m` holds the
    /// lanes of values `m * lanes ..`), clamped to the weights' range; padding lanes are zero.
    /// @dev Per lane: the signed sum is `(lane - OFFSET * weightSum) mod 2**bits` as two's
    /// complement, rounded with `PackedVectors.roundedDiv`'s rule.
    function _average(uint256[] memory sums, uint256[] memory next, uint256 weightSum, uint256 firstWord)
        private
        view
    {
        uint256 bits = _config.laneBits;
        uint256 lanes = 256 / bits;
        uint256 maxAbs = _config.maxAbsWeight;
        uint256 numWeights = _config.numWeights;
        uint256 mask = bits == 256 ? type(uint256).max : (uint256(1) << bits) - 1;
        uint256 bias = PackedVectors.OFFSET * weightSum;
        for (uint256 j = 0; j < next.length; ++j) {
            uint256 word = 0;
            for (uint256 lane = 0; lane < 16; ++lane) {
                uint256 value = 0x8000;
                if ((firstWord + j) * 16 + lane < numWeights) {
                    uint256 position = j * 16 + lane;
                    uint256 raw = (sums[position / lanes] >> ((position % lanes) * bits)) & mask;
                    uint256 shifted;
                    unchecked {
                        shifted = (raw - bias) & mask; // modular: the lane's signed sum
                    }
                    int256 signedSum = shifted >> (bits - 1) == 1 ? -int256((mask - shifted) + 1) : int256(shifted);
                    int256 mean = PackedVectors.roundedDiv(signedSum, weightSum);
                    if (mean > int256(maxAbs)) mean = int256(maxAbs);
                    if (mean < -int256(maxAbs)) mean = -int256(maxAbs);
                    value = uint256(mean + int256(PackedVectors.OFFSET));
                }
                word |= value << (lane * 16);
            }
            next[j] = word;
        }
    }

    /// Credits every survivor the first tier (masked updates have no distance).
    function _paySurvivors(uint256 round, uint256 registered) private {
        uint256 reward = _tierRewards[0];
        for (uint256 i = 0; i < registered; ++i) {
            address member = _members[i];
            uint256 packed = _memberState[member];
            if (packed >> 192 != round || packed & MEMBER_SUBMITTED == 0) continue;
            emit RewardSettled(round, member, 0, 0, _credit(member, reward));
        }
    }
}
