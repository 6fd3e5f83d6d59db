// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC5267} from "@openzeppelin/contracts/interfaces/IERC5267.sol";
import {CoordinatorBase} from "./CoordinatorBase.sol";
import {PackedVectors} from "./PackedVectors.sol";

/// @title FLCoordinator
/// @notice Takes the place of a federated-learning aggregation server. Clients submit quantized,
/// packed model weights once per round; the contract averages them (plain mean or FedAvg weighted
/// by sample count) with exact integer arithmetic, keeps the global model on-chain, and credits
/// every submitter a tiered reward by the distance of its weights from the current global model.
/// Rewards are pulled with `withdraw`.
/// @dev Life cycle: deployed in `Setup`; the owner loads the initial model segment by segment; the
/// last segment opens round 1. A round takes submissions until its deadline: directly (`submit`),
/// through a relayer (`submitRelayed`: signed updates), by commit and reveal, or masked.
/// Once it is full, or from its deadline with at least `minSubmissions`, anyone closes it with
/// `closeSegment`, one segment of the model per transaction, from the data the submissions left in
/// their calldata; the closer is paid `closeFee`. A round that nobody starts closing within
/// `closeWindow` of its deadline can be ended by anyone (`finalize`): it never waits on an account.
///
/// This contract holds the state and the money, answers every read, and hands each submission
/// path to its unit (`DirectUnit`, `RelayUnit`, `ClosingUnit`, `CommitRevealUnit`,
/// `SecureAggregationUnit`),
/// which runs on this contract's storage through DELEGATECALL: each part reads on its own and
/// deploys under EIP-170's size limit.
contract FLCoordinator is CoordinatorBase, IERC5267 {
    using PackedVectors for uint256;

    // ---------------------------------------------------------------- limits

    uint256 private constant MAX_WEIGHTS = 1 << 24;
    uint256 private constant MAX_TIERS = 16;
    uint256 private constant MAX_DURATION = 365 days;
    /// Largest encoded transaction that geth-style pools take (128 KiB), less room for the
    /// envelope (nonce, fees, signature) around the calldata.
    uint256 public constant MAX_CALLDATA_BYTES = 131_072 - 1_024;
    /// An SSTORE2 chunk is a contract: at most 24,576 bytes of code, one of them a STOP.
    uint256 public constant MAX_CHUNK_WORDS = 767;
    // The calldata of `closeSegment`: selector and head, then 32 bytes a word and an omitted index.
    uint256 private constant CLOSE_HEAD_BYTES = 196;
    // Upper bounds of a close's execution gas (measured: tests/test_limits.py holds the largest
    // closes under them).
    uint256 private constant CLOSE_FIXED_GAS = 250_000;
    uint256 private constant CLOSE_UPDATE_GAS = 90_000; // an update's books; a relayed one's reward
    uint256 private constant CLOSE_UPDATE_WORD_GAS = 300; // hash, sum, distances (relayed, aggregate)
    uint256 private constant CLOSE_ACC_WORD_GAS = 175; // per update word and accumulator word
    uint256 private constant CLOSE_WORD_GAS = 2_500; // averaging, step bounds and direction, per word
    // 64- and 128-bit accumulator lanes (sample-weighted, `targetSubmissions * maxSampleCount >=
    // 2**16`): averaging's loops, per word and accumulator word beyond the 32-bit branch's two
    uint256 private constant WIDE_LANE_WORD_GAS = 2_000;
    // The direction guard, from round 2 on: a relayed update word measured along the last step
    uint256 private constant GUARD_WORD_GAS = 900;
    uint256 private constant CODE_DEPOSIT_GAS = 200; // per byte of an SSTORE2 chunk
    uint256 private constant MASKED_WORD_GAS = 400; // a survivor's masked word: hash and lane sum
    uint256 private constant MASKED_PAIR_GAS = 20_000; // a (dropped, survivor) pair: its seed
    uint256 private constant MASK_WORD_GAS = 500; // a mask word: keccak and lane subtraction
    uint256 private constant MASKED_AVERAGE_WORD_GAS = 24_000; // sixteen lanes averaged and clamped
    uint256 private constant MEASURE_WORD_GAS = 400; // RewardReference.Aggregate: an update word measured again
    uint256 private constant SQUARED_L2_WORD_GAS = 3_000; // per update word and measurement, lane by lane
    uint256 private constant TRIM_WORD_GAS = 900; // per update word and value trimmed at each end
    uint256 private constant STEP_MEASURE_WORD_GAS = 2_500; // RewardReference.Progress: a model word of the step
    uint256 private constant STEP_WORD_GAS = 6_000; // maxStep or maxDrift: a model word clamped
    uint256 private constant DRIFT_WORD_GAS = 1_500; // maxDrift: the checkpoint's word besides

    // ---------------------------------------------------------------- units

    address private immutable _directUnit;
    address private immutable _relayUnit;
    address private immutable _closingUnit;
    address private immutable _commitRevealUnit;
    address private immutable _secureAggregationUnit;

    modifier onlyOwner() {
        if (msg.sender != _owner) revert CoordinatorUnauthorized(msg.sender);
        _;
    }

    // ---------------------------------------------------------------- constructor

    /// @notice Deploys a coordinator in `Setup`; any value sent funds the reward pool.
    /// @param params The deployment parameters (see `Parameters`).
    /// @param deployedUnits The deployed units the coordinator hands its submission paths to.
    constructor(Parameters memory params, Units memory deployedUnits) payable {
        _validate(params);
        if (
            deployedUnits.direct.code.length == 0 || deployedUnits.relay.code.length == 0
                || deployedUnits.closing.code.length == 0 || deployedUnits.commitReveal.code.length == 0
                || deployedUnits.secureAggregation.code.length == 0
        ) revert CoordinatorInvalidParameter("units", 0);
        uint256 words = PackedVectors.wordsFor(params.numWeights);
        uint256 perSegment = params.wordsPerSegment < words ? params.wordsPerSegment : words;
        uint256 maxWeight = params.aggregation == Aggregation.Mean ? 1 : params.maxSampleCount;
        Config storage config = _config;
        config.numWeights = uint32(params.numWeights);
        config.numWords = uint32(words);
        config.wordsPerSegment = uint32(perSegment);
        config.numSegments = uint32((words + perSegment - 1) / perSegment);
        config.targetSubmissions = uint32(params.targetSubmissions);
        config.minSubmissions = uint32(params.minSubmissions);
        config.maxSampleCount = uint32(params.maxSampleCount);
        config.maxAbsWeight = uint16(params.maxAbsWeight);
        config.aggregation = params.aggregation;
        config.distance = params.distance;
        config.mode = params.mode;
        config.allowlistEnabled = params.allowlistEnabled;
        config.minAlignment = int16(params.minAlignment);
        config.accBits = uint8(_accumulatorBits(params.targetSubmissions * maxWeight));
        config.laneBits = uint8(_maskedLaneBits(params.targetSubmissions, maxWeight, params.maxAbsWeight));
        config.roundDuration = uint32(params.roundDuration);
        config.revealDuration = uint32(params.revealDuration);
        config.closeWindow = uint32(params.closeWindow);
        config.scale = uint64(params.scale);
        config.minRewardDistance = uint128(params.minRewardDistance);
        config.maxCountedDistance =
            params.maxCountedDistance == 0 ? type(uint128).max : uint128(params.maxCountedDistance);
        config.closeFee = uint128(params.closeFee);
        config.relayFee = uint128(params.relayFee);
        config.commitBond = uint128(params.commitBond);
        config.rewardReference = params.rewardReference;
        config.maxShareBps = uint16(params.maxShareBps);
        config.maxStep = uint16(params.maxStep);
        config.maxDrift = uint16(params.maxDrift);
        config.driftWindow = uint32(params.driftWindow);
        config.epsilonBudget = uint64(params.epsilonBudget);
        config.maxDropouts = uint32(params.maxDropouts);
        config.setupDuration = uint32(params.setupDuration);
        config.recoveryDuration = uint32(params.recoveryDuration);
        config.trimEach = uint8(params.trimEach);
        _rdpPerParticipation = params.rdpPerParticipation;
        _rdpConversion = params.rdpConversion;
        _checkTransactionLimits(params, perSegment, config.accBits / 16);
        _tierThresholds = params.tierThresholds;
        _tierRewards = params.tierRewards;
        _directUnit = deployedUnits.direct;
        _relayUnit = deployedUnits.relay;
        _closingUnit = deployedUnits.closing;
        _commitRevealUnit = deployedUnits.commitReveal;
        _secureAggregationUnit = deployedUnits.secureAggregation;
        _owner = msg.sender;
        emit OwnershipTransferred(address(0), msg.sender);
        if (msg.value > 0) _fund();
    }

    // ---------------------------------------------------------------- setup (owner)

    /// @notice Loads segments `firstSegment ..` of the initial global model from `words` (whole
    /// segments, in order); the last segment opens round 1.
    /// @param firstSegment The next segment to load.
    /// @param words Packed words (wire format of `PackedVectors`) of one or more whole segments.
    function loadInitialModel(uint256 firstSegment, uint256[] calldata words) external onlyOwner {
        _beforeLoad(firstSegment);
        uint256 lows = PackedVectors.broadcast(PackedVectors.OFFSET - _config.maxAbsWeight, 32);
        uint256 highs = PackedVectors.broadcast(PackedVectors.OFFSET + _config.maxAbsWeight, 32);
        uint256 used = 0;
        uint256 segment = firstSegment;
        uint256[] memory chunk = new uint256[](_config.wordsPerSegment);
        do {
            if (segment >= _config.numSegments) revert CoordinatorWrongLength(used, words.length);
            (uint256 first, uint256 count) = _segmentBounds(segment);
            if (used + count > words.length) revert CoordinatorWrongLength(used + count, words.length);
            for (uint256 i = 0; i < count; ++i) {
                uint256 word = words[used + i];
                if (!word.inRange(lows, highs)) _revertOutOfRange(first + i, word, _config.maxAbsWeight);
                chunk[i] = word;
            }
            if (first + count == _config.numWords) _checkPadding(chunk[count - 1]);
            _storeInitialSegment(segment, chunk, count);
            used += count;
            ++segment;
        } while (used < words.length);
        _afterLoad(firstSegment, segment);
    }

    /// @notice Loads `count` segments of zeros from `firstSegment` on, without calldata; the last
    /// segment opens round 1.
    /// @param firstSegment The next segment to load.
    /// @param count Number of segments to load.
    function loadZeroModel(uint256 firstSegment, uint256 count) external onlyOwner {
        _beforeLoad(firstSegment);
        if (count == 0 || count > _config.numSegments - firstSegment) {
            revert CoordinatorWrongLength(_config.numSegments - firstSegment, count);
        }
        uint256[] memory chunk = new uint256[](_config.wordsPerSegment);
        uint256 zeros = PackedVectors.broadcast(PackedVectors.OFFSET, 16);
        for (uint256 i = 0; i < chunk.length; ++i) {
            chunk[i] = zeros;
        }
        for (uint256 segment = firstSegment; segment < firstSegment + count; ++segment) {
            (, uint256 words) = _segmentBounds(segment);
            _storeInitialSegment(segment, chunk, words);
        }
        _afterLoad(firstSegment, firstSegment + count);
    }

    /// @notice Sets whether each of `accounts` may take part (when the allowlist is enabled).
    /// The change takes effect from the next round, so that no round's rules change while it runs.
    /// @param accounts The accounts to update.
    /// @param isAllowed Their new eligibility.
    function setAllowed(address[] calldata accounts, bool isAllowed) external onlyOwner {
        uint256 current = _round.number;
        uint256 from = current + 1;
        for (uint256 i = 0; i < accounts.length; ++i) {
            uint256 packed = _eligibility[accounts[i]];
            // The value in force in the open round stays in force for it.
            uint256 previous = uint64(packed) <= current ? (packed >> 64) & 1 : (packed >> 65) & 1;
            _eligibility[accounts[i]] = from | (isAllowed ? uint256(1) << 64 : 0) | (previous << 65);
            emit AllowlistUpdated(accounts[i], isAllowed, from);
        }
    }

    /// @notice Hands ownership to `newOwner`.
    /// @param newOwner The new owner; not the zero address.
    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert CoordinatorInvalidParameter("newOwner", 0);
        emit OwnershipTransferred(_owner, newOwner);
        _owner = newOwner;
    }

    // ---------------------------------------------------------------- submission paths (units)

    /// @notice Submits the caller's quantized weights for the open round (Plain mode) and, once
    /// every segment is in, credits its reward by its distance from the current global model.
    /// @param round The open round's number (guards against a stale submission).
    /// @param sampleCount Training samples behind the update (the FedAvg weight); the same in
    /// every transaction of a submission.
    /// @param firstSegment The first segment `words` carries: 0, or the next one due when a large
    /// update takes several transactions.
    /// @param words Packed words of one or more whole segments, in order.
    function submit(uint256 round, uint256 sampleCount, uint256 firstSegment, uint256[] calldata words) external {
        round;
        sampleCount;
        firstSegment;
        words;
        _delegate(_directUnit);
    }

    /// @notice Registers signed updates that a relayer carries (Plain mode, before the deadline):
    /// each client's EIP-712 signature over `Update(round, segments, sampleCount, wordsHash)`, with
    /// `wordsHash` the hash chain of `segmentHashes` (see `updateDigest`). The words follow in the
    /// closes, which measure and pay each update. Anyone may relay; the caller pays the gas.
    /// @param round The open round.
    /// @param updates The signed updates, each with the keccak256 of every segment's words.
    function submitRelayed(uint256 round, RelayedUpdate[] calldata updates) external {
        round;
        updates;
        _delegate(_relayUnit);
    }

    /// @notice Writes segment `segment` of the round's new model from segment `segment` of every
    /// update it holds, and pays the caller `closeFee` (plus `relayFee` per relayed update it
    /// carries). The last segment makes the new model global and opens the next round. Anyone may
    /// call it; the first segment only once the round is full (`targetSubmissions`; CommitReveal:
    /// every commitment revealed), or from its deadline on with at least `minSubmissions`.
    /// @param round The round being closed.
    /// @param segment The next segment to write (`roundInfo`'s `closedSegments`).
    /// @param words Segment `segment` of each update in `entries()` order, concatenated (each
    /// must hash to what its submission registered), except the omitted and the dropped ones.
    /// @param omitted Indexes (ascending) of relayed entries left out because their relayer did
    /// not supply their words: allowed from `closeWindow` after the deadline on; they are dropped
    /// from the round, unpaid.
    function closeSegment(uint256 round, uint256 segment, uint256[] calldata words, uint256[] calldata omitted)
        external
    {
        round;
        segment;
        words;
        omitted;
        _delegate(_closingUnit);
    }

    /// @notice Commits to the caller's update for `round` (CommitReveal mode) with a bond of
    /// exactly `commitBond` wei, returned on reveal and forfeited to the pool without one. Commits
    /// close when `targetSubmissions` arrived, or at the deadline (`finalize`).
    /// @param round The round in its commit phase.
    /// @param commitment `commitmentOf(round, msg.sender, sampleCount, salt, vectorHash)`.
    function commit(uint256 round, bytes32 commitment) external payable {
        round;
        commitment;
        _delegate(_commitRevealUnit);
    }

    /// @notice Reveals (whole segments of) the update the caller committed to; handled like
    /// `submit`. The last segment checks the commitment, pays, and returns the bond.
    /// @param round The round in its reveal phase.
    /// @param sampleCount As committed.
    /// @param firstSegment The first segment `words` carries.
    /// @param words Packed words of one or more whole segments, in order.
    /// @param salt The secret that made the commitment unguessable.
    function reveal(uint256 round, uint256 sampleCount, uint256 firstSegment, uint256[] calldata words, bytes32 salt)
        external
    {
        round;
        sampleCount;
        firstSegment;
        words;
        salt;
        _delegate(_commitRevealUnit);
    }

    /// @notice Joins round `round`'s secure-aggregation cohort (Register phase) with a fresh
    /// secp256k1 masking key `(x, y)` and a proof that the caller holds it: an ECDSA signature
    /// `(v, r, s)` by that key over keccak256(abi.encode(keccak256("FLCoordinator masking key"),
    /// chain id, this contract, round, caller, x, y)). The cohort has at most `targetSubmissions`
    /// members; it is complete when full, or at the deadline (`finalize`).
    function registerKey(uint256 round, uint256 x, uint256 y, uint8 v, bytes32 r, bytes32 s) external {
        round;
        x;
        y;
        v;
        r;
        s;
        _delegate(_secureAggregationUnit);
    }

    /// @notice Posts the caller's key shares (Share phase): for each registered member, in order,
    /// keccak256(abi.encode(round, caller, member index, share)) and the share encrypted to that
    /// member. The caller joins the masking cohort.
    /// @param round The round in its Share phase.
    /// @param commitments One commitment per registered member.
    /// @param encrypted One encrypted share per registered member.
    function postShares(uint256 round, bytes32[] calldata commitments, bytes32[] calldata encrypted) external {
        round;
        commitments;
        encrypted;
        _delegate(_secureAggregationUnit);
    }

    /// @notice Submits (whole segments of) the caller's masked update (Open phase of a
    /// SecureAggregation round): per weight `weight * (q + 32768)` plus the pairwise masks, modulo
    /// `2**laneBits`, `256 / laneBits` weights a word, `sumWordsPerWord` words per model word.
    /// @param round The round.
    /// @param sampleCount Training samples behind the update.
    /// @param firstSegment The first segment `words` carries.
    /// @param words The masked words of one or more whole segments.
    function submitMasked(uint256 round, uint256 sampleCount, uint256 firstSegment, uint256[] calldata words)
        external
    {
        round;
        sampleCount;
        firstSegment;
        words;
        _delegate(_secureAggregationUnit);
    }

    /// @notice Reveals the caller's shares of dropped members' keys (Recover phase); each is checked
    /// against its dealer's commitments. The `threshold`-th share of a key rebuilds it.
    /// @param round The round in its Recover phase.
    /// @param shares The dealer, the share, and the dealer's commitments, for each dropped member.
    function revealShares(uint256 round, RevealedShare[] calldata shares) external {
        round;
        shares;
        _delegate(_secureAggregationUnit);
    }

    /// @notice Writes segment `segment` of a SecureAggregation round's new model from the survivors'
    /// masked words (in member order, each checked against its hash), with the dropped members'
    /// masks removed; pays the caller `closeFee`, and every survivor the first tier with the last
    /// segment. Possible once every member of the cohort submitted, or every dropped key was rebuilt.
    /// @param round The round.
    /// @param segment The next segment to write.
    /// @param words The survivors' masked words of that segment, concatenated.
    function closeMasked(uint256 round, uint256 segment, uint256[] calldata words) external {
        round;
        segment;
        words;
        _delegate(_secureAggregationUnit);
    }

    /// @notice Moves the round on when nobody else can. CommitReveal, after the commit deadline:
    /// opens reveals (or ends a round nobody committed to). SecureAggregation, after each phase's
    /// deadline: the next phase (the cohort's key shares, the masked submissions, the recovery of
    /// the members that dropped out), or the end of the round when too few are left. Otherwise,
    /// from `closeWindow` after the deadline when the round is below its minimum (CommitReveal: at
    /// once when every commitment was revealed), from twice `closeWindow` after it when it holds
    /// its minimum (anyone can close it from `closeWindow` on), while the round has not started
    /// closing: ends it without a new model and opens the next one.
    function finalize() external {
        if (_config.mode == Mode.SecureAggregation) _delegate(_secureAggregationUnit);
        RoundState memory state = _round;
        if (state.phase == Phase.Setup || state.phase == Phase.Closing) revert CoordinatorWrongPhase(state.phase);
        uint256 opensAt = state.deadline;
        Mode submissionMode = _config.mode;
        if (state.phase == Phase.Commit) {
            _requireTime(state, opensAt, state.commits);
            if (state.commits == 0) {
                _abandon(state);
            } else {
                _startReveal(state);
                _round = state;
            }
            return;
        }
        bool settled = submissionMode == Mode.CommitReveal && state.completed >= state.commits
            && state.entries < _config.minSubmissions;
        // A round that holds its minimum can be closed by anyone from `deadline + closeWindow`
        // (leaving out relayed updates whose words never came): closers get that window alone,
        // so that a relayer withholding words cannot end the round by sending `finalize` first.
        uint256 window = _config.closeWindow;
        opensAt = settled ? 0 : opensAt + (state.entries >= _config.minSubmissions ? 2 * window : window);
        _requireTime(state, opensAt, state.entries);
        _abandon(state);
    }

    // ---------------------------------------------------------------- money

    /// @notice Adds the sent value to the reward pool. Anyone may fund.
    function fund() external payable {
        _fund();
    }

    /// @notice Plain transfers fund the reward pool too.
    receive() external payable {
        _fund();
    }

    /// @notice Sends the caller its whole credit (pull payment).
    /// @dev Checks-effects-interactions: the credit is zeroed and the total updated before the
    /// call, so a reentrant call finds nothing to withdraw.
    function withdraw() external {
        uint256 amount = _credits[msg.sender];
        if (amount == 0) revert CoordinatorNothingToWithdraw(msg.sender);
        _credits[msg.sender] = 0;
        _totalWithdrawn += amount;
        emit CreditWithdrawn(msg.sender, amount);
        (bool sent,) = payable(msg.sender).call{value: amount}("");
        if (!sent) revert CoordinatorWithdrawalFailed(msg.sender, amount);
    }

    // ---------------------------------------------------------------- free reads: rounds

    /// @notice The open round.
    /// @return number Round number (0 while in Setup).
    /// @return phase Setup, Open, Commit, Reveal or Closing.
    /// @return deadline Unix time until which submissions (Commit: commitments; Reveal: reveals)
    /// are taken, and from which the round may close with its minimum.
    /// @return submissions Counted complete submissions so far.
    /// @return closedSegments Segments of the new model written so far (Closing).
    function roundInfo()
        external
        view
        returns (uint256 number, Phase phase, uint256 deadline, uint256 submissions, uint256 closedSegments)
    {
        RoundState memory state = _round;
        return (state.number, state.phase, state.deadline, state.entries, state.closedSegments);
    }

    /// @notice The open round's counters beyond `roundInfo`.
    /// @return completed Complete submissions, counted or not (CommitReveal: reveals; relayed
    /// ones count once registered).
    /// @return commits Commitments taken (CommitReveal).
    /// @return closeStartedAt When the first segment closed (Closing), else 0.
    /// @return windowEnds `closeWindow` after the deadline: from then on a close may leave out
    /// relayed updates, and a round nobody started closing may be ended (`finalize`).
    function roundDetails()
        external
        view
        returns (uint256 completed, uint256 commits, uint256 closeStartedAt, uint256 windowEnds)
    {
        RoundState memory state = _round;
        if (state.phase == Phase.Closing) closeStartedAt = _closeStartedAt;
        return (state.completed, state.commits, closeStartedAt, state.deadline + _config.closeWindow);
    }

    /// @notice The open round's registered submissions, in the order a close takes them.
    /// @return clients Their accounts.
    /// @return sampleCounts Their declared sample counts.
    /// @return relayed Whether a relayer carried each.
    /// @return dropped Whether a relayed one was left out of the rest of the close.
    function entries()
        external
        view
        returns (address[] memory clients, uint256[] memory sampleCounts, bool[] memory relayed, bool[] memory dropped)
    {
        uint256 count = _round.entries;
        clients = new address[](count);
        sampleCounts = new uint256[](count);
        relayed = new bool[](count);
        dropped = new bool[](count);
        for (uint256 i = 0; i < count; ++i) {
            uint256 entry = _entries[i];
            clients[i] = address(uint160(entry));
            sampleCounts[i] = uint32(entry >> 160);
            relayed[i] = entry & ENTRY_RELAYED != 0;
            dropped[i] = entry & ENTRY_DROPPED != 0;
        }
    }

    /// @notice keccak256 of segment `segment` of `client`'s latest submission.
    function segmentHash(address client, uint256 segment) external view returns (bytes32) {
        return _segmentHashes[client][segment];
    }

    /// @notice Progress of `client` in its latest round.
    /// @return round The round it last submitted to (0: never).
    /// @return segmentsDone Segments it sent in that round (`numSegments` means complete).
    /// @return sampleCount The sample count it declared.
    /// @return distanceSoFar Its distance over the segments sent (relayed: measured so far).
    /// @return relayed Whether a relayer registered it (its segments are measured by the closes).
    function submissionOf(address client)
        external
        view
        returns (uint256 round, uint256 segmentsDone, uint256 sampleCount, uint256 distanceSoFar, bool relayed)
    {
        Progress memory progress = _unpack(_progress[client]);
        return (progress.round, progress.done, progress.sampleCount, progress.distance, progress.relayed);
    }

    /// @notice Whether `client` has a whole update in `round` (submitted, revealed or relayed).
    function hasSubmitted(address client, uint256 round) external view returns (bool) {
        Progress memory progress = _unpack(_progress[client]);
        return progress.round == round && (progress.relayed || progress.done == _config.numSegments);
    }

    /// @notice The commitment `client` made in `round` (zero: none).
    function commitments(uint256 round, address client) external view returns (bytes32) {
        Commitment memory held = _commitments[client];
        return held.round == round ? held.digest : bytes32(0);
    }

    /// @notice The commitment a client makes in CommitReveal mode.
    /// @param vectorHash The hash chain of the update's segments (`h = keccak256(h || keccak256(
    /// segment words))` from `h = 0`), as for `modelHash`.
    /// @return keccak256 of (chain id, this contract, round, client, sample count, salt, vectorHash).
    function commitmentOf(uint256 round, address client, uint256 sampleCount, bytes32 salt, bytes32 vectorHash)
        external
        view
        returns (bytes32)
    {
        return _commitmentOf(round, client, sampleCount, salt, vectorHash);
    }

    /// @notice The EIP-712 digest a client signs for a relayed update (type `Update(uint256
    /// round,uint256 segments,uint256 sampleCount,bytes32 wordsHash)`, domain `eip712Domain`).
    /// @param segments The model's number of segments (`numSegments`).
    /// @param wordsHash The hash chain of the update's segments (as for `modelHash`).
    function updateDigest(uint256 round, uint256 segments, uint256 sampleCount, bytes32 wordsHash)
        external
        view
        returns (bytes32)
    {
        return _updateDigest(round, segments, sampleCount, wordsHash, _domainSeparator());
    }

    /// @inheritdoc IERC5267
    function eip712Domain()
        external
        view
        returns (
            bytes1 fields,
            string memory name,
            string memory version,
            uint256 chainId,
            address verifyingContract,
            bytes32 salt,
            uint256[] memory extensions
        )
    {
        return (hex"0f", "FLCoordinator", "2", block.chainid, address(this), bytes32(0), new uint256[](0));
    }

    /// @notice The open round's secure-aggregation cohort, in registration order.
    /// @return members The members.
    /// @return keysX Their masking keys' x-coordinates.
    /// @return keysY Their masking keys' y-coordinates.
    /// @return flags Per member: 1 shares posted, 2 submitted, 4 dropped out, 8 key rebuilt.
    /// @return threshold Shares that rebuild a dropped member's key.
    function cohort()
        external
        view
        returns (
            address[] memory members,
            uint256[] memory keysX,
            uint256[] memory keysY,
            uint256[] memory flags,
            uint256 threshold
        )
    {
        CohortState memory state = _cohortState;
        uint256 count = _round.phase == Phase.Setup ? 0 : state.registered;
        members = new address[](count);
        keysX = new uint256[](count);
        keysY = new uint256[](count);
        flags = new uint256[](count);
        for (uint256 i = 0; i < count; ++i) {
            address member = _members[i];
            members[i] = member;
            (keysX[i], keysY[i]) = (_maskKeys[member][0], _maskKeys[member][1]);
            flags[i] = _memberState[member] & 0xFF;
        }
        return (members, keysX, keysY, flags, state.threshold);
    }

    // ---------------------------------------------------------------- free reads: the model

    /// @notice The global model in wire format (16 offset-binary lanes per word).
    /// @return words The packed model.
    function globalModel() external view returns (uint256[] memory words) {
        words = new uint256[](_config.numWords);
        uint256 segments = _config.numSegments;
        for (uint256 segment = 0; segment < segments; ++segment) {
            (uint256 first, uint256 count) = _segmentBounds(segment);
            uint256 chunk = _readChunk(segment);
            assembly ("memory-safe") {
                mcopy(add(add(words, 0x20), shl(5, first)), chunk, shl(5, count))
            }
        }
    }

    /// @notice One segment of the global model in wire format.
    /// @param segment The segment (`numSegments` of them).
    /// @return words Its packed words.
    function globalModelSegment(uint256 segment) external view returns (uint256[] memory words) {
        if (segment >= _config.numSegments) revert CoordinatorWrongSegment(_config.numSegments - 1, segment);
        (, uint256 count) = _segmentBounds(segment);
        words = new uint256[](count);
        uint256 chunk = _readChunk(segment);
        assembly ("memory-safe") {
            mcopy(add(words, 0x20), chunk, shl(5, count))
        }
    }

    /// @notice The global model decoded to signed quantized weights (weight = q / scale).
    /// @return weights One entry per model weight.
    function globalModelWeights() external view returns (int256[] memory weights) {
        weights = new int256[](_config.numWeights);
        uint256 segments = _config.numSegments;
        for (uint256 segment = 0; segment < segments; ++segment) {
            (uint256 first, uint256 count) = _segmentBounds(segment);
            uint256 chunk = _readChunk(segment);
            for (uint256 j = 0; j < count; ++j) {
                uint256 word;
                assembly ("memory-safe") {
                    word := mload(add(chunk, shl(5, j)))
                }
                for (uint256 lane = 0; lane < 16 && (first + j) * 16 + lane < weights.length; ++lane) {
                    weights[(first + j) * 16 + lane] = word.signedLane(lane);
                }
            }
        }
    }

    /// @notice Closed rounds so far; the initial model is version 0.
    function modelVersion() external view returns (uint256) {
        return _modelVersion;
    }

    /// @notice The hash chain of the global model's segments: `h = keccak256(h || keccak256(words
    /// of segment s))` for s = 0, 1, .. from `h = 0`.
    function modelHash() external view returns (bytes32) {
        return _modelHash;
    }

    /// @notice The SSTORE2 contract holding segment `segment` of the global model.
    function modelChunk(uint256 segment) external view returns (address) {
        return _chunks[segment * 4 + _currentSet];
    }

    // ---------------------------------------------------------------- free reads: money

    /// @notice Wei credited to `account` and not yet withdrawn.
    function credit(address account) external view returns (uint256) {
        return _credits[account];
    }

    /// @notice Wei ever paid into the reward pool (funding and forfeited bonds).
    function totalFunded() external view returns (uint256) {
        return _totalFunded;
    }

    /// @notice Wei ever credited from the pool (rewards and fees).
    function totalCredited() external view returns (uint256) {
        return _totalCredited;
    }

    /// @notice Wei ever withdrawn by clients.
    function totalWithdrawn() external view returns (uint256) {
        return _totalWithdrawn;
    }

    /// @notice CommitReveal: bonds held for the open round, and bonds ever returned.
    function bonds() external view returns (uint256 held, uint256 returned) {
        return (_bondsHeld, _bondsReturned);
    }

    /// @notice Wei in the pool not yet credited to anyone.
    function availableRewards() external view returns (uint256) {
        return uint256(_totalFunded) - uint256(_totalCredited);
    }

    /// @notice The reward tiers.
    /// @return thresholds Ascending inclusive distance thresholds.
    /// @return rewards Wei paid within each threshold.
    function rewardTiers() external view returns (uint256[] memory thresholds, uint256[] memory rewards) {
        return (_tierThresholds, _tierRewards);
    }

    // ---------------------------------------------------------------- free reads: settings

    /// @notice The account that loads the initial model and manages the allowlist.
    function owner() external view returns (address) {
        return _owner;
    }

    /// @notice Whether `account` may take part in `round` (always true with the allowlist off).
    function isEligible(address account, uint256 round) external view returns (bool) {
        return _eligible(account, round);
    }

    /// @notice Whether `account` may take part in the open round (round 1 while in Setup).
    function allowed(address account) external view returns (bool) {
        uint256 round = _round.number;
        return _eligible(account, round == 0 ? 1 : round);
    }

    /// @notice The units the coordinator delegates its submission paths to.
    function units() external view returns (Units memory) {
        return Units(_directUnit, _relayUnit, _closingUnit, _commitRevealUnit, _secureAggregationUnit);
    }

    /// @notice Length of the model vector.
    function numWeights() external view returns (uint256) {
        return _config.numWeights;
    }

    /// @notice Words of 16 lanes that hold the model.
    function numWords() external view returns (uint256) {
        return _config.numWords;
    }

    /// @notice Words per segment (the last segment may be shorter).
    function wordsPerSegment() external view returns (uint256) {
        return _config.wordsPerSegment;
    }

    /// @notice Segments of the model: a close handles one.
    function numSegments() external view returns (uint256) {
        return _config.numSegments;
    }

    /// @notice Fixed-point scale: weight = q / scale.
    function scale() external view returns (uint256) {
        return _config.scale;
    }

    /// @notice Largest |q| a submission may carry.
    function maxAbsWeight() external view returns (uint256) {
        return _config.maxAbsWeight;
    }

    /// @notice Counted submissions that let a round close before its deadline.
    function targetSubmissions() external view returns (uint256) {
        return _config.targetSubmissions;
    }

    /// @notice Counted submissions a round needs to close after its deadline.
    function minSubmissions() external view returns (uint256) {
        return _config.minSubmissions;
    }

    /// @notice Seconds from a round's opening to its deadline.
    function roundDuration() external view returns (uint256) {
        return _config.roundDuration;
    }

    /// @notice CommitReveal: seconds for reveals once commits closed.
    function revealDuration() external view returns (uint256) {
        return _config.revealDuration;
    }

    /// @notice Seconds after a deadline (or a first close) reserved for relayers; after it a
    /// round that nobody started closing can be ended.
    function closeWindow() external view returns (uint256) {
        return _config.closeWindow;
    }

    /// @notice Wei credited to whoever closes a segment.
    function closeFee() external view returns (uint256) {
        return _config.closeFee;
    }

    /// @notice Wei credited per relayed update a close carries.
    function relayFee() external view returns (uint256) {
        return _config.relayFee;
    }

    /// @notice CommitReveal: wei a commitment locks.
    function commitBond() external view returns (uint256) {
        return _config.commitBond;
    }

    /// @notice Plain mean or sample-weighted FedAvg.
    function aggregation() external view returns (Aggregation) {
        return _config.aggregation;
    }

    /// @notice Mean: the values of each weight the round's average leaves out at each end (a
    /// coordinate-wise trimmed mean; 0: the plain mean). A round of `n` updates leaves out at most
    /// `(n - 1) / 2` at each end.
    function trimEach() external view returns (uint256) {
        return _config.trimEach;
    }

    /// @notice L1 or squared L2 distance.
    function distance() external view returns (Distance) {
        return _config.distance;
    }

    /// @notice How clients hand in their weights.
    function mode() external view returns (Mode) {
        return _config.mode;
    }

    /// @notice Largest sample count a client may declare.
    function maxSampleCount() external view returns (uint256) {
        return _config.maxSampleCount;
    }

    /// @notice Whether only allowlisted accounts may take part.
    function allowlistEnabled() external view returns (bool) {
        return _config.allowlistEnabled;
    }

    /// @notice Free-rider guard: a distance below this earns nothing.
    function minRewardDistance() external view returns (uint256) {
        return _config.minRewardDistance;
    }

    /// @notice Poisoning bound: a distance above this earns nothing and is not averaged.
    function maxCountedDistance() external view returns (uint256) {
        return _config.maxCountedDistance;
    }

    /// @notice Direction guard, in basis points. Each close stores which way it moved every
    /// weight. A later update's L1 distance splits into `along` (weights it moves the same way)
    /// and `against` (the other way, and every move of a weight the last step left alone). Its
    /// alignment is `(along - against) / (along + against)`, from -1 (a sign-flipped step) to +1.
    /// Below `minAlignment / 10000`, the update earns nothing and is left out of the average.
    /// Round 1 has no step yet, so every update passes; -10000 turns the guard off.
    function minAlignment() external view returns (int256) {
        return _config.minAlignment;
    }

    /// @notice What a reward is read from: Current, the distance from the current model (paid on
    /// submit); Aggregate, the distance from the round's new model (paid by the close); Progress,
    /// paid by the close, the shortfall `(d(u, new) + d(old, new) - d(u, old)) * 10000 / d(old,
    /// new)` in basis points: 10000 minus the update's progress. Under L1 it lies from 0 (the
    /// update went at least the model's whole way) to 20000 (it stood still, or went the other
    /// way). The tiers' thresholds are distances under the first two, basis points under
    /// Progress; lower is better under all three.
    function rewardReference() external view returns (RewardReference) {
        return _config.rewardReference;
    }

    /// @notice SampleWeighted: the largest share of a round's weight one update may hold, in basis
    /// points (0: no cap).
    function maxShareBps() external view returns (uint256) {
        return _config.maxShareBps;
    }

    /// @notice Quanta a weight may move in one round (0: no bound); a close clamps the rest.
    function maxStep() external view returns (uint256) {
        return _config.maxStep;
    }

    /// @notice Quanta a weight may move from the checkpoint, the model that began the current
    /// window of `driftWindow` rounds (0: no bound); a close clamps the rest.
    function maxDrift() external view returns (uint256) {
        return _config.maxDrift;
    }

    /// @notice Rounds per drift window: the model closing a round whose number is a multiple of
    /// it becomes the next checkpoint.
    function driftWindow() external view returns (uint256) {
        return _config.driftWindow;
    }

    /// @notice The privacy ledger: one participation's RDP per order, the per-order conversion
    /// term at the deployment's delta, and the epsilon budget (all in 1e-6 units; budget 0: off).
    function privacyLedger()
        external
        view
        returns (uint256[] memory rdpPerParticipation, uint256[] memory rdpConversion, uint256 epsilonBudget)
    {
        return (_rdpPerParticipation, _rdpConversion, _config.epsilonBudget);
    }

    /// @notice Participations `account` has spent against its privacy budget.
    function participations(address account) external view returns (uint256) {
        return _participations[account];
    }

    /// @notice The epsilon (1e-6 units, at the deployment's delta) `account` has spent: the
    /// minimum over the ledger's orders of its composed RDP plus the order's conversion term.
    function epsilonSpent(address account) external view returns (uint256) {
        return _epsilonAfter(_participations[account]);
    }

    /// @notice SecureAggregation: bits per lane of the masked sums (16, 32, 64 or 128).
    function laneBits() external view returns (uint256) {
        return _config.laneBits;
    }

    /// @notice SecureAggregation: how many of a round's cohort may drop out after the masking was
    /// set up (their masks are then recovered from the survivors' shares), and the durations of
    /// the registration window and of the recovery.
    function secureAggregation()
        external
        view
        returns (uint256 maxDropouts, uint256 setupDuration, uint256 recoveryDuration)
    {
        return (_config.maxDropouts, _config.setupDuration, _config.recoveryDuration);
    }

    /// @notice SecureAggregation: sum words per model word (laneBits / 16).
    function sumWordsPerWord() external view returns (uint256) {
        return _config.laneBits / 16;
    }

    /// @notice Bits per lane of a close's in-memory sums (32, 64 or 128).
    function accumulatorBits() external view returns (uint256) {
        return _config.accBits;
    }

    // ---------------------------------------------------------------- internal

    /// Runs the calling function in `unit` on this contract's storage and returns what it returns.
    function _delegate(address unit) private {
        assembly ("memory-safe") {
            let pointer := mload(0x40)
            calldatacopy(pointer, 0, calldatasize())
            let ok := delegatecall(gas(), unit, pointer, calldatasize(), 0, 0)
            returndatacopy(pointer, 0, returndatasize())
            if iszero(ok) { revert(pointer, returndatasize()) }
            return(pointer, returndatasize())
        }
    }

    function _requireTime(RoundState memory state, uint256 opensAt, uint256 count) private view {
        if (block.timestamp < opensAt) {
            revert CoordinatorNotClosable(
                state.number, count, _config.targetSubmissions, _config.minSubmissions, opensAt
            );
        }
    }

    function _fund() private {
        if (msg.value == 0) revert CoordinatorZeroFunding();
        _totalFunded += uint128(msg.value);
        emit PoolFunded(msg.sender, msg.value);
    }

    function _beforeLoad(uint256 firstSegment) private view {
        if (_round.phase != Phase.Setup || _round.number != 0) revert CoordinatorWrongPhase(_round.phase);
        if (firstSegment != _loadedSegments) revert CoordinatorWrongSegment(_loadedSegments, firstSegment);
    }

    function _afterLoad(uint256 firstSegment, uint256 endSegment) private {
        _loadedSegments = endSegment;
        emit InitialModelLoaded(firstSegment, endSegment - firstSegment);
        if (endSegment == _config.numSegments) {
            _modelHash = _pendingHash;
            _pendingHash = bytes32(0);
            _open(1);
        }
    }

    /// Writes segment `segment` of the initial model (with empty direction entries when the guard
    /// is on: there is no step yet) and chains its hash.
    function _storeInitialSegment(uint256 segment, uint256[] memory chunk, uint256 count) private {
        uint256 pointer;
        assembly ("memory-safe") {
            pointer := add(chunk, 0x20)
        }
        uint256 directions = 0;
        if (_directionGuard()) {
            uint256[] memory none = new uint256[]((count + 7) / 8);
            assembly ("memory-safe") {
                directions := add(none, 0x20)
            }
        }
        bytes32 wordsHash = _writeChunk(segment, _currentSet, pointer, count, directions);
        _pendingHash = _chainHash(_pendingHash, wordsHash);
    }

    /// Smallest accumulator lane (32, 64, 128 bits) that holds `maxWeightSum * 2**16`.
    function _accumulatorBits(uint256 maxWeightSum) private pure returns (uint256 bits) {
        bits = 32;
        while (bits < 128 && (maxWeightSum << 16) >= (uint256(1) << bits)) {
            bits *= 2;
        }
    }

    /// SecureAggregation: smallest lane that holds the largest possible signed sum and one
    /// offset-binary value times the largest weight (so that a masked word cannot spill).
    function _maskedLaneBits(uint256 target, uint256 maxWeight, uint256 maxAbs) private pure returns (uint256 bits) {
        uint256 sumBound = target * maxWeight * maxAbs;
        bits = 16;
        while (bits < 128 && (sumBound >= (uint256(1) << (bits - 1)) || (maxWeight << 16) > (uint256(1) << bits))) {
            bits *= 2;
        }
    }

    /// Refuses a configuration whose transactions cannot reach a block: a close (the largest: a
    /// full round of relayed updates) above `MAX_CALLDATA_BYTES` or the gas cap, or a segment
    /// larger than an SSTORE2 chunk.
    function _checkTransactionLimits(Parameters memory p, uint256 perSegment, uint256 accWords) private pure {
        uint256 dirWords = p.minAlignment > ALIGNMENT_OFF ? (perSegment + 7) / 8 : 0;
        if (perSegment + dirWords > MAX_CHUNK_WORDS) {
            revert CoordinatorExceedsTransactionLimit("chunkWords", perSegment + dirWords, MAX_CHUNK_WORDS);
        }
        uint256 target = p.targetSubmissions;
        if (p.mode == Mode.SecureAggregation) {
            _checkMaskedLimits(p, perSegment);
            return;
        }
        uint256 closeBytes = CLOSE_HEAD_BYTES + target * (perSegment * 32 + 32);
        if (closeBytes > MAX_CALLDATA_BYTES) {
            revert CoordinatorExceedsTransactionLimit("closeSegmentBytes", closeBytes, MAX_CALLDATA_BYTES);
        }
        uint256 chunkBytes = (perSegment + dirWords) * 32;
        uint256 memoryWords = closeBytes / 32 + perSegment * (accWords + 4) + dirWords + 64;
        // A relayed update is measured in the close, and every update again against the new model
        // with the aggregate reward reference; squared L2 measures lane by lane.
        // The trimmed mean's passes cost per update word and value left out at each end, and the
        // direction guard splits a relayed update's distance along the last step (from round 2).
        uint256 measures = p.rewardReference == RewardReference.Current ? 1 : 2;
        uint256 updateWordGas = CLOSE_UPDATE_WORD_GAS + (measures - 1) * MEASURE_WORD_GAS
            + (p.distance == Distance.SquaredL2 ? measures * SQUARED_L2_WORD_GAS : 0) + p.trimEach * TRIM_WORD_GAS
            + (dirWords != 0 ? GUARD_WORD_GAS : 0);
        uint256 execution = CLOSE_FIXED_GAS + target * (CLOSE_UPDATE_GAS + perSegment * updateWordGas)
            + target * perSegment * accWords * CLOSE_ACC_WORD_GAS
            + perSegment * (CLOSE_WORD_GAS + (accWords - 2) * WIDE_LANE_WORD_GAS + _stepWordGas(p))
            + (p.rewardReference == RewardReference.Progress ? perSegment * _stepMeasureGas(p) : 0)
            + 32_000
            + chunkBytes * CODE_DEPOSIT_GAS + 3 * memoryWords + memoryWords * memoryWords / 512;
        uint256 standard = 21_000 + 16 * closeBytes + execution;
        uint256 floor = 21_000 + 40 * closeBytes;
        uint256 gas = standard > floor ? standard : floor;
        if (gas > p.txGasCap) revert CoordinatorExceedsTransactionLimit("closeSegmentGas", gas, p.txGasCap);
    }

    /// SecureAggregation: the close carries every member's masked words of a segment (`laneBits
    /// / 16` words per model word) and removes up to `maxDropouts x targetSubmissions` pairs of
    /// masks, a keccak per masked word each.
    function _checkMaskedLimits(Parameters memory p, uint256 perSegment) private pure {
        uint256 target = p.targetSubmissions;
        uint256 maxWeight = p.aggregation == Aggregation.Mean ? 1 : p.maxSampleCount;
        uint256 maskedWords = perSegment * (_maskedLaneBits(target, maxWeight, p.maxAbsWeight) / 16);
        uint256 closeBytes = CLOSE_HEAD_BYTES + target * maskedWords * 32;
        if (closeBytes > MAX_CALLDATA_BYTES) {
            revert CoordinatorExceedsTransactionLimit("closeMaskedBytes", closeBytes, MAX_CALLDATA_BYTES);
        }
        uint256 execution = CLOSE_FIXED_GAS + target * (CLOSE_UPDATE_GAS + maskedWords * MASKED_WORD_GAS)
            + p.maxDropouts * target * (MASKED_PAIR_GAS + maskedWords * MASK_WORD_GAS)
            + perSegment * (MASKED_AVERAGE_WORD_GAS + _stepWordGas(p)) + 32_000 + perSegment * 32 * CODE_DEPOSIT_GAS;
        uint256 gas = 21_000 + 16 * closeBytes + execution;
        if (gas < 21_000 + 40 * closeBytes) gas = 21_000 + 40 * closeBytes;
        if (gas > p.txGasCap) revert CoordinatorExceedsTransactionLimit("closeMaskedGas", gas, p.txGasCap);
    }

    /// RewardReference Progress: gas per model word of measuring the round's step.
    function _stepMeasureGas(Parameters memory p) private pure returns (uint256) {
        return STEP_MEASURE_WORD_GAS + (p.distance == Distance.SquaredL2 ? SQUARED_L2_WORD_GAS : 0);
    }

    /// Gas per model word of a close's step and drift bounds.
    function _stepWordGas(Parameters memory p) private pure returns (uint256) {
        if (p.maxStep == 0 && p.maxDrift == 0) return 0;
        return p.maxDrift == 0 ? STEP_WORD_GAS : STEP_WORD_GAS + DRIFT_WORD_GAS;
    }

    function _validate(Parameters memory p) private pure {
        if (p.numWeights == 0 || p.numWeights > MAX_WEIGHTS) revert CoordinatorInvalidParameter("numWeights", p.numWeights);
        if (p.scale == 0 || p.scale > type(uint64).max) revert CoordinatorInvalidParameter("scale", p.scale);
        // Below 2**14, so that 2 * maxAbsWeight fits fifteen bits: range checks and distances
        // then run on all sixteen lanes of a word at once (`PackedVectors.measureL1`).
        if (p.maxAbsWeight == 0 || p.maxAbsWeight >= 1 << 14) {
            revert CoordinatorInvalidParameter("maxAbsWeight", p.maxAbsWeight);
        }
        if (p.targetSubmissions == 0 || p.targetSubmissions > type(uint32).max) {
            revert CoordinatorInvalidParameter("targetSubmissions", p.targetSubmissions);
        }
        if (p.minSubmissions == 0 || p.minSubmissions > p.targetSubmissions) {
            revert CoordinatorInvalidParameter("minSubmissions", p.minSubmissions);
        }
        if (p.roundDuration == 0 || p.roundDuration > MAX_DURATION) {
            revert CoordinatorInvalidParameter("roundDuration", p.roundDuration);
        }
        if (p.maxSampleCount == 0 || p.maxSampleCount > type(uint32).max) {
            revert CoordinatorInvalidParameter("maxSampleCount", p.maxSampleCount);
        }
        if (p.wordsPerSegment == 0) revert CoordinatorInvalidParameter("wordsPerSegment", 0);
        uint256 tiers = p.tierThresholds.length;
        if (tiers == 0 || tiers > MAX_TIERS) revert CoordinatorInvalidParameter("tierCount", tiers);
        if (p.tierRewards.length != tiers) revert CoordinatorInvalidParameter("tierRewards", p.tierRewards.length);
        for (uint256 i = 0; i < tiers; ++i) {
            if (i > 0 && p.tierThresholds[i] <= p.tierThresholds[i - 1]) {
                revert CoordinatorInvalidParameter("tierThresholds", i);
            }
            if (p.tierRewards[i] == 0 || (i > 0 && p.tierRewards[i] >= p.tierRewards[i - 1])) {
                revert CoordinatorInvalidParameter("tierRewards", i);
            }
        }
        if (p.minRewardDistance > type(uint128).max) {
            revert CoordinatorInvalidParameter("minRewardDistance", p.minRewardDistance);
        }
        if (
            p.maxCountedDistance > type(uint128).max
                || (p.maxCountedDistance != 0 && p.maxCountedDistance < p.minRewardDistance)
        ) revert CoordinatorInvalidParameter("maxCountedDistance", p.maxCountedDistance);
        if (p.mode == Mode.CommitReveal) {
            if (p.revealDuration == 0 || p.revealDuration > MAX_DURATION) {
                revert CoordinatorInvalidParameter("revealDuration", p.revealDuration);
            }
            if (p.commitBond == 0 || p.commitBond > type(uint128).max) {
                revert CoordinatorInvalidParameter("commitBond", p.commitBond);
            }
        }
        if (p.minAlignment < ALIGNMENT_OFF || p.minAlignment > 10_000) {
            revert CoordinatorInvalidSignedParameter("minAlignment", p.minAlignment);
        }
        if (p.closeWindow == 0 || p.closeWindow > MAX_DURATION) {
            revert CoordinatorInvalidParameter("closeWindow", p.closeWindow);
        }
        if (p.closeFee > type(uint128).max) revert CoordinatorInvalidParameter("closeFee", p.closeFee);
        if (p.relayFee > type(uint128).max) revert CoordinatorInvalidParameter("relayFee", p.relayFee);
        if (p.maxShareBps > 10_000) revert CoordinatorInvalidParameter("maxShareBps", p.maxShareBps);
        // The trimmed mean weighs every update 1, and leaves at least one value in play.
        if (
            p.trimEach != 0
                && (p.trimEach > type(uint8).max || p.aggregation != Aggregation.Mean || 2 * p.trimEach >= p.targetSubmissions)
        ) {
            revert CoordinatorInvalidParameter("trimEach", p.trimEach);
        }
        if (p.maxStep >= PackedVectors.OFFSET) revert CoordinatorInvalidParameter("maxStep", p.maxStep);
        if (p.maxDrift >= PackedVectors.OFFSET) revert CoordinatorInvalidParameter("maxDrift", p.maxDrift);
        if (p.maxDrift != 0 && (p.driftWindow == 0 || p.driftWindow > type(uint32).max)) {
            revert CoordinatorInvalidParameter("driftWindow", p.driftWindow);
        }
        _validateLedger(p);
        if (p.mode == Mode.SecureAggregation) {
            // Shamir over at most 128 members (a bitmask of revealed shares); the threshold
            // (registered - maxDropouts) must stay at least 1.
            if (p.targetSubmissions > 128 || p.targetSubmissions < 2) {
                revert CoordinatorInvalidParameter("targetSubmissions", p.targetSubmissions);
            }
            if (p.maxDropouts >= p.targetSubmissions) revert CoordinatorInvalidParameter("maxDropouts", p.maxDropouts);
            if (p.setupDuration == 0 || p.setupDuration > MAX_DURATION) {
                revert CoordinatorInvalidParameter("setupDuration", p.setupDuration);
            }
            if (p.recoveryDuration == 0 || p.recoveryDuration > MAX_DURATION) {
                revert CoordinatorInvalidParameter("recoveryDuration", p.recoveryDuration);
            }
            // Masked words carry no distance.
            if (p.minRewardDistance != 0 || p.maxCountedDistance != 0) {
                revert CoordinatorInvalidParameter("distanceBounds", 0);
            }
            if (p.minAlignment != ALIGNMENT_OFF) revert CoordinatorInvalidSignedParameter("minAlignment", p.minAlignment);
            // Each member weights its own masked words: no share can be capped after the sum.
            if (p.maxShareBps != 0) revert CoordinatorInvalidParameter("maxShareBps", p.maxShareBps);
            if (p.rewardReference != RewardReference.Current) {
                revert CoordinatorInvalidParameter("rewardReference", uint256(p.rewardReference));
            }
            // The close sees only the masked sum.
            if (p.trimEach != 0) revert CoordinatorInvalidParameter("trimEach", p.trimEach);
        }
    }

    /// The privacy ledger: as many conversion terms as RDP orders (at most 32), a budget exactly
    /// when there are orders, every value below 2**64.
    function _validateLedger(Parameters memory p) private pure {
        uint256 orders = p.rdpPerParticipation.length;
        if (orders > 32 || p.rdpConversion.length != orders) {
            revert CoordinatorInvalidParameter("rdpConversion", p.rdpConversion.length);
        }
        if (p.epsilonBudget > type(uint64).max || (orders == 0) != (p.epsilonBudget == 0)) {
            revert CoordinatorInvalidParameter("epsilonBudget", p.epsilonBudget);
        }
        for (uint256 k = 0; k < orders; ++k) {
            if (p.rdpPerParticipation[k] > type(uint64).max) {
                revert CoordinatorInvalidParameter("rdpPerParticipation", k);
            }
            if (p.rdpConversion[k] > type(uint64).max) revert CoordinatorInvalidParameter("rdpConversion", k);
        }
    }
}
