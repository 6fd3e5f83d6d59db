// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {PackedVectors} from "./PackedVectors.sol";

/// @title FLCoordinator
/// @notice Takes the place of a federated-learning aggregation server. Clients submit quantized,
/// packed model weights once per round; the contract averages them (plain mean or FedAvg weighted
/// by sample count) with exact integer arithmetic, stores the global model, and credits every
/// submitter a tiered reward by the distance of its weights from the current global model.
/// Rewards are pulled with `withdraw`.
/// @dev Life cycle: deployed in `Setup`; the owner loads the initial global model (in chunks if it
/// is large); the last chunk opens round 1. A round closes when `targetSubmissions` complete
/// submissions arrived, or, once its deadline passed, as soon as `minSubmissions` did (on the
/// next submission or a `finalize` call). A round whose deadline passes below the minimum is not
/// lost: `finalize` moves its deadline to one `roundDuration` after the call, keeping every
/// submission and credit it holds. Closing computes the new model, opens the next round and never loops over
/// participants: per-round sums live in packed storage words that a submission updates in place.
///
/// A vector too large for one transaction is sent in segments of `wordsPerSegment` words, in
/// order. Each segment's sum and weight are kept apart, so a segment that arrived counts in its
/// segment's average even if its sender never finishes; the reward is paid on the last segment.
contract FLCoordinator {
    using PackedVectors for uint256;

    // ---------------------------------------------------------------- types

    /// @notice How a round's submissions are combined.
    enum Aggregation {
        Mean, // plain mean, as in the seed paper
        SampleWeighted // FedAvg: weighted by each client's sample count
    }

    /// @notice The distance between a submission and the current global model, on quantized integers.
    enum Distance {
        L1,
        SquaredL2
    }

    /// @notice How clients hand in their weights.
    enum Mode {
        Direct, // `submit` in the clear
        CommitReveal, // `commit` a salted hash, then `reveal` once commits are closed
        SecureAggregation // `submitMasked`: pairwise masks that cancel in the sum
    }

    /// @notice Where the contract is in its life cycle.
    enum Phase {
        Setup,
        Open, // Direct and SecureAggregation rounds
        Commit, // CommitReveal: taking commitments
        Reveal // CommitReveal: taking reveals
    }

    /// @notice Deployment parameters. All are validated by the constructor.
    struct Parameters {
        uint256 numWeights; // length of the model vector
        uint256 scale; // fixed point: weight = q / scale (read by clients)
        uint256 maxAbsWeight; // |q| <= maxAbsWeight <= 32767
        uint256 targetSubmissions; // a round closes as soon as this many complete
        uint256 minSubmissions; // after the deadline, a round closes with this many
        uint256 roundDuration; // seconds from a round's opening to its deadline
        Aggregation aggregation;
        uint256 maxSampleCount; // bound on the sample count a client may declare
        Distance distance;
        bool allowlistEnabled; // true: only accounts the owner allowed may submit
        uint256 minRewardDistance; // closer than this to the global model earns nothing (0: off)
        uint256 maxCountedDistance; // farther than this: no reward, left out of the average (0: off)
        uint256 wordsPerSegment; // words per transaction for large vectors (>= words: one segment)
        uint256[] tierThresholds; // ascending distance thresholds, inclusive
        uint256[] tierRewards; // descending rewards in wei, one per threshold
        Mode mode;
        uint256 revealDuration; // CommitReveal: seconds from the end of commits to the reveal deadline
        int256 minAlignment; // direction guard, basis points (-10000: off); see `minAlignment`
    }

    // ---------------------------------------------------------------- errors

    /// @notice A deployment parameter is invalid.
    error CoordinatorInvalidParameter(string name, uint256 value);
    /// @notice A signed deployment parameter is invalid.
    error CoordinatorInvalidSignedParameter(string name, int256 value);
    /// @notice `caller` is not the owner.
    error CoordinatorUnauthorized(address caller);
    /// @notice The contract is in `phase`, which does not allow this call.
    error CoordinatorWrongPhase(Phase phase);
    /// @notice `account` is not on the allowlist.
    error CoordinatorNotEligible(address account);
    /// @notice A submission named round `given` while round `current` is open.
    error CoordinatorWrongRound(uint256 given, uint256 current);
    /// @notice `account` already completed its submission for `round`.
    error CoordinatorAlreadySubmitted(uint256 round, address account);
    /// @notice `round` already has `targetSubmissions` submissions under way.
    error CoordinatorRoundFull(uint256 round, uint256 started);
    /// @notice Segment (or model chunk) `given` arrived where `expected` was due.
    error CoordinatorWrongSegment(uint256 expected, uint256 given);
    /// @notice The packed vector has `given` words where `expected` were due.
    error CoordinatorWrongLength(uint256 expected, uint256 given);
    /// @notice Weight `index` decodes to `value`, outside `[-maxAbs, maxAbs]` (or nonzero padding).
    error CoordinatorWeightOutOfRange(uint256 index, int256 value, uint256 maxAbs);
    /// @notice A later segment declares `given` samples where the first declared `declared`.
    error CoordinatorSampleCountChanged(uint256 declared, uint256 given);
    /// @notice The declared sample count is zero or above `max`.
    error CoordinatorInvalidSampleCount(uint256 sampleCount, uint256 max);
    /// @notice The round cannot be finalized before its deadline.
    error CoordinatorNotClosable(uint256 round, uint256 deadline, uint256 completed, uint256 minimum);
    /// @notice `account` has no credit to withdraw.
    error CoordinatorNothingToWithdraw(address account);
    /// @notice Sending `amount` to `account` failed; its credit is unchanged.
    error CoordinatorWithdrawalFailed(address account, uint256 amount);
    /// @notice Funding with zero value.
    error CoordinatorZeroFunding();
    /// @notice The call belongs to another submission mode than the deployment's `mode`.
    error CoordinatorWrongMode(Mode mode);
    /// @notice `account` committed already in `round`.
    error CoordinatorAlreadyCommitted(uint256 round, address account);
    /// @notice A commitment of zero (reserved for "no commitment").
    error CoordinatorEmptyCommitment();
    /// @notice `account` reveals in `round` without a commitment.
    error CoordinatorNoCommitment(uint256 round, address account);
    /// @notice The reveal of `account` in `round` does not match its commitment.
    error CoordinatorRevealMismatch(uint256 round, address account);
    /// @notice The reveal phase of `round` ended at `deadline`.
    error CoordinatorRevealClosed(uint256 round, uint256 deadline);
    /// @notice `account` registered a key already.
    error CoordinatorAlreadyRegistered(address account);
    /// @notice `account` has no key in the secure-aggregation cohort.
    error CoordinatorNotRegistered(address account);
    /// @notice The cohort already has `size` members.
    error CoordinatorCohortFull(uint256 size);
    /// @notice Masked submissions need the whole cohort: `registered` of `required` keys so far.
    error CoordinatorCohortIncomplete(uint256 registered, uint256 required);

    // ---------------------------------------------------------------- events

    /// @notice The owner loaded `count` words of the initial model starting at `firstWord`.
    event InitialModelLoaded(uint256 firstWord, uint256 count);
    /// @notice Round `round` opened; it can be finalized from `deadline` on.
    event RoundOpened(uint256 indexed round, uint256 deadline);
    /// @notice Round `round` reached its deadline below the minimum; its deadline moved to `deadline`.
    event RoundExtended(uint256 indexed round, uint256 deadline);
    /// @notice Round `round` closed with `submissions` complete submissions; model `modelVersion`
    /// with hash `modelHash` is now the global model.
    event RoundClosed(uint256 indexed round, uint256 modelVersion, bytes32 modelHash, uint256 submissions);
    /// @notice `client` sent segment `segment` of its round-`round` vector (multi-segment vectors only).
    event SegmentAccepted(uint256 indexed round, address indexed client, uint256 segment, bool counted);
    /// @notice `client` completed its round-`round` submission and was credited `reward` wei.
    /// `along` and `against` split its L1 distance by the direction of the last global step
    /// (see `minAlignment`; both 0 while the guard is off). `tier` is the index of the reward
    /// tier, or 255 for none; `counted` is false when the distance exceeded `maxCountedDistance`
    /// or the update moved against the last step (`minAlignment`): a one-segment submission is
    /// then left out of the average; of a segmented one, the segments sent before the running
    /// figures failed stay in (that part of the vector passed), the rest are left out.
    event SubmissionAccepted(
        uint256 indexed round,
        address indexed client,
        uint256 sampleCount,
        uint256 distance,
        uint256 along,
        uint256 against,
        uint8 tier,
        uint256 reward,
        bool counted
    );
    /// @notice `client` committed to its round-`round` update.
    event CommitmentAccepted(uint256 indexed round, address indexed client);
    /// @notice Commits of `round` closed; reveals are taken until `deadline`.
    event RevealOpened(uint256 indexed round, uint256 deadline);
    /// @notice Round `round` ended without a new model (too few reveals, or a masked client dropped
    /// out so that the masks cannot cancel); its sums were discarded.
    event RoundAbandoned(uint256 indexed round, uint256 submissions);
    /// @notice `client` joined the secure-aggregation cohort as member `index` with an X25519 key.
    event KeyRegistered(address indexed client, bytes32 publicKey, uint256 index);
    /// @notice `funder` added `amount` wei to the reward pool.
    event PoolFunded(address indexed funder, uint256 amount);
    /// @notice `client` withdrew `amount` wei of credit.
    event CreditWithdrawn(address indexed client, uint256 amount);
    /// @notice The owner set `account`'s eligibility to `allowed`.
    event AllowlistUpdated(address indexed account, bool allowed);
    /// @notice Ownership moved from `previousOwner` to `newOwner`.
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    // ---------------------------------------------------------------- constants and immutables

    /// @notice Tier index reported when no tier applies.
    uint8 public constant NO_TIER = 255;
    uint256 private constant MAX_WEIGHTS = 1 << 24;
    uint256 private constant MAX_TIERS = 16;
    // Storage regions (ERC-7201 style namespaced slots) for the model and the round sums.
    uint256 private constant MODEL_BASE = uint256(keccak256("fl.coordinator.model")) - 1;
    uint256 private constant SUM_BASE = uint256(keccak256("fl.coordinator.sums")) - 1;
    // Direction of the last global step: one 32-bit entry per model word, eight per slot.
    uint256 private constant DIRECTION_BASE = uint256(keccak256("fl.coordinator.direction")) - 1;
    int256 private constant ALIGNMENT_OFF = -10_000;

    /// @notice Length of the model vector.
    uint256 public immutable numWeights;
    /// @notice Words of 16 lanes that hold the model.
    uint256 public immutable numWords;
    /// @notice Fixed-point scale: weight = q / scale.
    uint256 public immutable scale;
    /// @notice Largest |q| a submission may carry.
    uint256 public immutable maxAbsWeight;
    /// @notice Complete submissions that close a round at once.
    uint256 public immutable targetSubmissions;
    /// @notice Complete submissions needed to close a round after its deadline.
    uint256 public immutable minSubmissions;
    /// @notice Seconds from a round's opening to its deadline.
    uint256 public immutable roundDuration;
    /// @notice Plain mean or sample-weighted FedAvg.
    Aggregation public immutable aggregation;
    /// @notice Largest sample count a client may declare.
    uint256 public immutable maxSampleCount;
    /// @notice L1 or squared L2 distance.
    Distance public immutable distance;
    /// @notice Whether only allowlisted accounts may submit.
    bool public immutable allowlistEnabled;
    /// @notice Free-rider guard: a distance below this earns nothing.
    uint256 public immutable minRewardDistance;
    /// @notice Poisoning bound: a distance above this earns nothing and is not averaged.
    uint256 public immutable maxCountedDistance;
    /// @notice Direction guard, in basis points. Each closing round stores which way it moved
    /// every weight. A later update's L1 distance splits into `along` (weights it moves the same
    /// way) and `against` (the other way); weights the last step left alone count in neither.
    /// Its alignment is `(along - against) / (along + against)`, from -1 (a sign-flipped step) to
    /// +1. Below `minAlignment / 10000`, the update earns nothing and is left out of the average.
    /// Round 1 has no step yet, so every update passes; -10000 turns the guard off.
    int256 public immutable minAlignment;
    /// @notice Words per segment; a vector of more words is sent in several transactions.
    uint256 public immutable wordsPerSegment;
    /// @notice Segments per vector.
    uint256 public immutable numSegments;
    /// @notice Bits per lane of the round sums (16, 32, 64 or 128), chosen from the parameters.
    uint256 public immutable laneBits;
    /// @notice How clients hand in their weights.
    Mode public immutable mode;
    /// @notice CommitReveal: seconds for reveals once commits closed.
    uint256 public immutable revealDuration;
    /// @notice Sum words per model word (laneBits / 16); a masked submission has numWords times this.
    uint256 public immutable sumWordsPerWord;

    uint256 private immutable _sumWordsPerWord; // laneBits / 16
    uint256 private immutable _lanesPerSumWord; // 256 / laneBits
    uint256 private immutable _spreadMask; // 0xFFFF at the bottom of every sum lane
    uint256 private immutable _sumHighBits; // top bit of every sum lane
    uint256 private immutable _sumStart; // 1 in every sum lane: keeps sum words nonzero (cheap SSTORE)
    uint256 private immutable _lows; // OFFSET - maxAbsWeight in every 32-bit lane
    uint256 private immutable _highs; // OFFSET + maxAbsWeight in every 32-bit lane

    // ---------------------------------------------------------------- storage

    /// @notice The account that loads the initial model and manages the allowlist.
    address public owner;

    // One slot: the open round. Deadlines and counters fit their widths for any realistic chain.
    struct RoundState {
        uint64 number;
        uint64 deadline;
        uint32 started; // submissions with at least one segment in
        uint32 completed; // submissions with every segment in
        uint32 commits; // CommitReveal: commitments taken
        Phase phase;
    }

    RoundState private _round;

    /// @notice Closed rounds so far; the initial model is version 0.
    uint256 public modelVersion;
    /// @notice keccak256 of the packed global model words.
    bytes32 public modelHash;

    uint256 private _loadedWords;
    uint256[] private _tierThresholds;
    uint256[] private _tierRewards;

    // round << 128 | weight sum of the segment in that round: stale rounds read as zero, and
    // the slot never returns to zero, so its writes stay at the nonzero-to-nonzero price.
    mapping(uint256 segment => uint256 roundAndWeight) private _segmentWeight;
    // round << 216 | segments done << 192 | sample count << 160 | left out << 159
    // | distance so far << 96 | along so far << 48 | against so far (see `_pack`)
    mapping(address client => uint256 packedProgress) private _progress;

    /// @notice The commitment `client` made in `round` (zero: none).
    mapping(uint256 round => mapping(address client => bytes32 commitment)) public commitments;
    address[] private _cohort;
    /// @notice The X25519 public key `client` registered for secure aggregation (zero: none).
    mapping(address client => bytes32 publicKey) public publicKeyOf;

    /// @notice Whether `account` may submit when the allowlist is enabled.
    mapping(address account => bool isAllowed) public allowed;
    /// @notice Wei credited to `account` and not yet withdrawn.
    mapping(address account => uint256 amount) public credit;

    /// @notice Wei ever paid into the reward pool.
    uint128 public totalFunded;
    /// @notice Wei ever credited to clients (shares a slot with totalFunded).
    uint128 public totalCredited;
    /// @notice Wei ever withdrawn by clients.
    uint256 public totalWithdrawn;

    // ---------------------------------------------------------------- modifiers

    modifier onlyOwner() {
        if (msg.sender != owner) revert CoordinatorUnauthorized(msg.sender);
        _;
    }

    // ---------------------------------------------------------------- constructor

    /// @notice Deploys a coordinator in `Setup`; any value sent funds the reward pool.
    /// @param params The deployment parameters (see `Parameters`).
    constructor(Parameters memory params) payable {
        _validate(params);
        uint256 maxWeight = params.aggregation == Aggregation.Mean ? 1 : params.maxSampleCount;
        uint256 sumBound = params.targetSubmissions * maxWeight * params.maxAbsWeight;
        uint256 bits = 16;
        // Smallest lane that holds the largest possible signed sum and one offset-binary value
        // times the largest weight (so that `spread` cannot spill into a neighbour lane).
        while (bits < 128 && (sumBound >= (uint256(1) << (bits - 1)) || (maxWeight << 16) > (uint256(1) << bits))) {
            bits *= 2;
        }
        // The validated bounds keep sumBound below 2**79 (targets and sample counts below 2**32,
        // |q| below 2**15), so the loop always ends with a lane that holds every sum.

        numWeights = params.numWeights;
        numWords = PackedVectors.wordsFor(params.numWeights);
        scale = params.scale;
        maxAbsWeight = params.maxAbsWeight;
        targetSubmissions = params.targetSubmissions;
        minSubmissions = params.minSubmissions;
        roundDuration = params.roundDuration;
        aggregation = params.aggregation;
        maxSampleCount = params.maxSampleCount;
        distance = params.distance;
        allowlistEnabled = params.allowlistEnabled;
        minRewardDistance = params.minRewardDistance;
        maxCountedDistance = params.maxCountedDistance == 0 ? type(uint256).max : params.maxCountedDistance;
        uint256 words = PackedVectors.wordsFor(params.numWeights);
        wordsPerSegment = params.wordsPerSegment < words ? params.wordsPerSegment : words;
        numSegments = (words + wordsPerSegment - 1) / wordsPerSegment;
        laneBits = bits;
        mode = params.mode;
        revealDuration = params.revealDuration;
        minAlignment = params.minAlignment;
        sumWordsPerWord = bits / 16;
        _sumWordsPerWord = bits / 16;
        _lanesPerSumWord = 256 / bits;
        _spreadMask = PackedVectors.broadcast(0xFFFF, bits);
        _sumHighBits = PackedVectors.broadcast(uint256(1) << (bits - 1), bits);
        _sumStart = PackedVectors.broadcast(1, bits);
        _lows = PackedVectors.broadcast(PackedVectors.OFFSET - params.maxAbsWeight, 32);
        _highs = PackedVectors.broadcast(PackedVectors.OFFSET + params.maxAbsWeight, 32);
        _tierThresholds = params.tierThresholds;
        _tierRewards = params.tierRewards;

        owner = msg.sender;
        emit OwnershipTransferred(address(0), msg.sender);
        if (msg.value > 0) _fund();
    }

    // ---------------------------------------------------------------- setup (owner)

    /// @notice Loads the next `words.length` words of the initial global model; the last chunk
    /// opens round 1.
    /// @param firstWord Index of the first word in this chunk; must follow the previous chunk.
    /// @param words Packed words (wire format of `PackedVectors`).
    function loadInitialModel(uint256 firstWord, uint256[] calldata words) external onlyOwner {
        _beforeLoad(firstWord, words.length);
        for (uint256 i = 0; i < words.length; ++i) {
            _checkRange(firstWord + i, words[i]);
            _storeInitialWord(firstWord + i, words[i]);
        }
        _afterLoad(firstWord, words.length);
    }

    /// @notice Loads the next `count` words of the initial global model as zeros, without
    /// calldata; the last chunk opens round 1.
    /// @param firstWord Index of the first word; must follow the previous chunk.
    /// @param count Number of words to load.
    function loadZeroModel(uint256 firstWord, uint256 count) external onlyOwner {
        _beforeLoad(firstWord, count);
        uint256 zeros = PackedVectors.broadcast(PackedVectors.OFFSET, 16);
        for (uint256 i = 0; i < count; ++i) {
            _storeInitialWord(firstWord + i, zeros);
        }
        _afterLoad(firstWord, count);
    }

    /// @notice Sets whether each of `accounts` may submit (used when the allowlist is enabled).
    /// @param accounts The accounts to update.
    /// @param isAllowed Their new eligibility.
    function setAllowed(address[] calldata accounts, bool isAllowed) external onlyOwner {
        for (uint256 i = 0; i < accounts.length; ++i) {
            allowed[accounts[i]] = isAllowed;
            emit AllowlistUpdated(accounts[i], isAllowed);
        }
    }

    /// @notice Hands ownership to `newOwner`.
    /// @param newOwner The new owner; not the zero address.
    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert CoordinatorInvalidParameter("newOwner", 0);
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    // ---------------------------------------------------------------- rounds

    /// @notice Submits (a segment of) the caller's quantized weights for the open round, and on
    /// the last segment credits its reward. Closes the round when it reaches its target, or when
    /// its deadline passed and it reached its minimum. Direct mode only.
    /// @param round The open round's number (guards against a stale submission).
    /// @param sampleCount Training samples behind the update (the FedAvg weight); the same for
    /// every segment.
    /// @param segment Index of this segment (0 for a vector that fits one transaction).
    /// @param words The segment's packed words.
    function submit(uint256 round, uint256 sampleCount, uint256 segment, uint256[] calldata words) external {
        if (mode != Mode.Direct) revert CoordinatorWrongMode(mode);
        RoundState memory state = _round;
        _checkRound(state, round, Phase.Open);
        _accept(state, round, sampleCount, segment, words);
        if (
            state.completed == targetSubmissions
                || (block.timestamp >= state.deadline && state.completed >= minSubmissions)
        ) {
            _close(state);
        } else {
            _round = state;
        }
    }

    /// @notice Commits to the caller's update for `round` (CommitReveal mode): the hash that
    /// `commitmentOf` computes. Commits close when `targetSubmissions` arrived, or once the
    /// deadline passed with `minSubmissions` (on a commit or `finalize`); then reveals open.
    /// @param round The round in its commit phase.
    /// @param commitment `commitmentOf(round, msg.sender, sampleCount, salt, segmentHashes)`.
    function commit(uint256 round, bytes32 commitment) external {
        if (mode != Mode.CommitReveal) revert CoordinatorWrongMode(mode);
        RoundState memory state = _round;
        _checkRound(state, round, Phase.Commit);
        // Zero is what "no commitment" reads as: it would let the same account commit again.
        if (commitment == bytes32(0)) revert CoordinatorEmptyCommitment();
        if (commitments[round][msg.sender] != bytes32(0)) revert CoordinatorAlreadyCommitted(round, msg.sender);
        if (state.commits >= targetSubmissions) revert CoordinatorRoundFull(round, state.commits);
        commitments[round][msg.sender] = commitment;
        ++state.commits;
        emit CommitmentAccepted(round, msg.sender);
        if (
            state.commits == targetSubmissions
                || (block.timestamp >= state.deadline && state.commits >= minSubmissions)
        ) {
            _startReveal(state);
        }
        _round = state;
    }

    /// @notice Reveals (a segment of) the update the caller committed to, then handles it like
    /// `submit`. The round closes when every committer revealed, or at `finalize` after the
    /// reveal deadline. CommitReveal mode only.
    /// @param round The round in its reveal phase.
    /// @param sampleCount As committed.
    /// @param segment Index of this segment.
    /// @param words The segment's packed words; their keccak256 must be `segmentHashes[segment]`.
    /// @param salt The secret that made the commitment unguessable.
    /// @param segmentHashes keccak256 of every segment's packed words, as committed.
    function reveal(
        uint256 round,
        uint256 sampleCount,
        uint256 segment,
        uint256[] calldata words,
        bytes32 salt,
        bytes32[] calldata segmentHashes
    ) external {
        if (mode != Mode.CommitReveal) revert CoordinatorWrongMode(mode);
        RoundState memory state = _round;
        _checkRound(state, round, Phase.Reveal);
        if (block.timestamp >= state.deadline) revert CoordinatorRevealClosed(round, state.deadline);
        bytes32 committed = commitments[round][msg.sender];
        if (committed == bytes32(0)) revert CoordinatorNoCommitment(round, msg.sender);
        if (
            segmentHashes.length != numSegments || segment >= numSegments
                || segmentHashes[segment] != keccak256(abi.encodePacked(words))
                || commitmentOf(round, msg.sender, sampleCount, salt, segmentHashes) != committed
        ) revert CoordinatorRevealMismatch(round, msg.sender);
        _accept(state, round, sampleCount, segment, words);
        if (state.completed == state.commits) {
            _close(state);
        } else {
            _round = state;
        }
    }

    /// @notice Joins the secure-aggregation cohort with an X25519 public key (SecureAggregation
    /// mode). The cohort has `targetSubmissions` members; masked rounds start once it is full.
    /// @param publicKey The raw 32-byte X25519 public key.
    function registerKey(bytes32 publicKey) external {
        if (mode != Mode.SecureAggregation) revert CoordinatorWrongMode(mode);
        if (allowlistEnabled && !allowed[msg.sender]) revert CoordinatorNotEligible(msg.sender);
        if (publicKey == bytes32(0)) revert CoordinatorInvalidParameter("publicKey", 0);
        if (publicKeyOf[msg.sender] != bytes32(0)) revert CoordinatorAlreadyRegistered(msg.sender);
        if (_cohort.length >= targetSubmissions) revert CoordinatorCohortFull(_cohort.length);
        publicKeyOf[msg.sender] = publicKey;
        _cohort.push(msg.sender);
        emit KeyRegistered(msg.sender, publicKey, _cohort.length - 1);
    }

    /// @notice Submits the caller's masked update (SecureAggregation mode): `numWords *
    /// sumWordsPerWord` words in the layout of the round sums, each lane `weight * (q + 32768)`
    /// plus the client's pairwise masks, modulo `2**laneBits`. The masks of the whole cohort
    /// cancel in the sum, so the average is exact while no single submission reveals its update.
    /// No distance can be measured on masked words: every submission earns the first tier's
    /// reward. The round closes when the whole cohort submitted.
    /// @param round The open round.
    /// @param sampleCount Training samples behind the update.
    /// @param words The masked words.
    function submitMasked(uint256 round, uint256 sampleCount, uint256[] calldata words) external {
        if (mode != Mode.SecureAggregation) revert CoordinatorWrongMode(mode);
        RoundState memory state = _round;
        _checkRound(state, round, Phase.Open);
        if (_cohort.length < targetSubmissions) revert CoordinatorCohortIncomplete(_cohort.length, targetSubmissions);
        if (publicKeyOf[msg.sender] == bytes32(0)) revert CoordinatorNotRegistered(msg.sender);
        if (sampleCount == 0 || sampleCount > maxSampleCount) {
            revert CoordinatorInvalidSampleCount(sampleCount, maxSampleCount);
        }
        if (_unpack(_progress[msg.sender]).round == round) revert CoordinatorAlreadySubmitted(round, msg.sender);
        uint256 expected = numWords * _sumWordsPerWord;
        if (words.length != expected) revert CoordinatorWrongLength(expected, words.length);

        _addSegmentWeight(round, 0, aggregation == Aggregation.Mean ? 1 : sampleCount);
        uint256 highBits = _sumHighBits;
        for (uint256 i = 0; i < words.length; ++i) {
            uint256 slot = SUM_BASE + i;
            _store(slot, _load(slot).addLanes(words[i], highBits));
        }
        _progress[msg.sender] = _pack(Progress(round, numSegments, sampleCount, false, 0, 0, 0));
        ++state.started;
        ++state.completed;
        uint256 reward = _credit(_tierRewards[0]);
        emit SubmissionAccepted(round, msg.sender, sampleCount, 0, 0, 0, 0, reward, true);
        if (state.completed == targetSubmissions) {
            _close(state);
        } else {
            _round = state;
        }
    }

    /// @notice Moves the open round on once its deadline passed. Direct: closes it with
    /// `minSubmissions`, else moves the deadline to `roundDuration` from now. CommitReveal: after the
    /// commit deadline, opens reveals with `minSubmissions` commitments (else extends); after the
    /// reveal deadline, closes with `minSubmissions` reveals, else abandons the round.
    /// SecureAggregation: a round that some of the cohort left abandons (the masks cannot cancel);
    /// one nobody submitted to is extended.
    function finalize() external {
        RoundState memory state = _round;
        if (state.phase == Phase.Setup) revert CoordinatorWrongPhase(state.phase);
        if (block.timestamp < state.deadline) {
            revert CoordinatorNotClosable(state.number, state.deadline, state.completed, minSubmissions);
        }
        if (state.phase == Phase.Commit) {
            if (state.commits >= minSubmissions) {
                _startReveal(state);
            } else {
                _extend(state);
            }
            _round = state;
        } else if (state.phase == Phase.Reveal) {
            if (state.completed >= minSubmissions) _close(state);
            else _abandon(state);
        } else if (mode == Mode.SecureAggregation) {
            if (state.completed > 0) {
                _abandon(state);
            } else {
                _extend(state);
                _round = state;
            }
        } else if (state.completed >= minSubmissions) {
            _close(state);
        } else {
            _extend(state);
            _round = state;
        }
    }

    /// @notice The commitment a client makes in CommitReveal mode.
    /// @return keccak256 of (chain id, this contract, round, client, sample count, salt, segment hashes).
    function commitmentOf(
        uint256 round,
        address client,
        uint256 sampleCount,
        bytes32 salt,
        bytes32[] calldata segmentHashes
    ) public view returns (bytes32) {
        return keccak256(abi.encode(block.chainid, address(this), round, client, sampleCount, salt, segmentHashes));
    }

    /// @notice The secure-aggregation cohort: members in registration order and their keys.
    function cohort() external view returns (address[] memory accounts, bytes32[] memory keys) {
        accounts = _cohort;
        keys = new bytes32[](accounts.length);
        for (uint256 i = 0; i < accounts.length; ++i) {
            keys[i] = publicKeyOf[accounts[i]];
        }
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
        uint256 amount = credit[msg.sender];
        if (amount == 0) revert CoordinatorNothingToWithdraw(msg.sender);
        credit[msg.sender] = 0;
        totalWithdrawn += amount;
        emit CreditWithdrawn(msg.sender, amount);
        (bool sent,) = payable(msg.sender).call{value: amount}("");
        if (!sent) revert CoordinatorWithdrawalFailed(msg.sender, amount);
    }

    // ---------------------------------------------------------------- free reads

    /// @notice The open round: its number, the phase, its deadline and its submissions.
    /// @return number Round number (0 while in Setup).
    /// @return phase Setup or Open.
    /// @return deadline Unix time from which the round can be finalized.
    /// @return started Submissions with at least one segment in.
    /// @return completed Complete submissions.
    function roundInfo()
        external
        view
        returns (uint256 number, Phase phase, uint256 deadline, uint256 started, uint256 completed)
    {
        RoundState memory state = _round;
        return (state.number, state.phase, state.deadline, state.started, state.completed);
    }

    /// @notice The global model in wire format (16 offset-binary lanes per word).
    /// @return words The packed model.
    function globalModel() external view returns (uint256[] memory words) {
        return _modelWords();
    }

    /// @notice The global model decoded to signed quantized weights (weight = q / scale).
    /// @return weights One entry per model weight.
    function globalModelWeights() external view returns (int256[] memory weights) {
        weights = new int256[](numWeights);
        for (uint256 i = 0; i < weights.length; ++i) {
            weights[i] = _load(MODEL_BASE + i / 16).signedLane(i % 16);
        }
    }

    /// @notice Progress of `client` in its latest round.
    /// @return round The round it last submitted to (0: never).
    /// @return segmentsDone Segments it sent in that round (`numSegments` means complete).
    /// @return sampleCount The sample count it declared.
    /// @return distanceSoFar Its distance over the segments sent.
    function submissionOf(address client)
        external
        view
        returns (uint256 round, uint256 segmentsDone, uint256 sampleCount, uint256 distanceSoFar)
    {
        Progress memory progress = _unpack(_progress[client]);
        return (progress.round, progress.done, progress.sampleCount, progress.distance);
    }

    /// @notice Whether `client` completed its submission for `round`.
    function hasSubmitted(address client, uint256 round) external view returns (bool) {
        Progress memory progress = _unpack(_progress[client]);
        return progress.round == round && progress.done == numSegments;
    }

    /// @notice The reward tiers.
    /// @return thresholds Ascending inclusive distance thresholds.
    /// @return rewards Wei paid within each threshold.
    function rewardTiers() external view returns (uint256[] memory thresholds, uint256[] memory rewards) {
        return (_tierThresholds, _tierRewards);
    }

    /// @notice Wei in the pool not yet credited to anyone.
    function availableRewards() public view returns (uint256) {
        return uint256(totalFunded) - uint256(totalCredited);
    }

    // ---------------------------------------------------------------- internal

    function _validate(Parameters memory p) private pure {
        if (p.numWeights == 0 || p.numWeights > MAX_WEIGHTS) revert CoordinatorInvalidParameter("numWeights", p.numWeights);
        if (p.scale == 0) revert CoordinatorInvalidParameter("scale", p.scale);
        if (p.maxAbsWeight == 0 || p.maxAbsWeight >= PackedVectors.OFFSET) {
            revert CoordinatorInvalidParameter("maxAbsWeight", p.maxAbsWeight);
        }
        if (p.targetSubmissions == 0 || p.targetSubmissions > type(uint32).max) {
            revert CoordinatorInvalidParameter("targetSubmissions", p.targetSubmissions);
        }
        if (p.minSubmissions == 0 || p.minSubmissions > p.targetSubmissions) {
            revert CoordinatorInvalidParameter("minSubmissions", p.minSubmissions);
        }
        if (p.roundDuration == 0 || p.roundDuration > 365 days) {
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
        if (p.maxCountedDistance != 0 && p.maxCountedDistance < p.minRewardDistance) {
            revert CoordinatorInvalidParameter("maxCountedDistance", p.maxCountedDistance);
        }
        if (p.mode == Mode.CommitReveal && (p.revealDuration == 0 || p.revealDuration > 365 days)) {
            revert CoordinatorInvalidParameter("revealDuration", p.revealDuration);
        }
        if (p.minAlignment < ALIGNMENT_OFF || p.minAlignment > 10_000) {
            revert CoordinatorInvalidSignedParameter("minAlignment", p.minAlignment);
        }
        if (p.mode == Mode.SecureAggregation) {
            // Masks cancel only in the sum of the whole cohort; masked words carry no distance.
            if (p.minSubmissions != p.targetSubmissions) {
                revert CoordinatorInvalidParameter("minSubmissions", p.minSubmissions);
            }
            if (p.wordsPerSegment < PackedVectors.wordsFor(p.numWeights)) {
                revert CoordinatorInvalidParameter("wordsPerSegment", p.wordsPerSegment);
            }
            if (p.minRewardDistance != 0 || p.maxCountedDistance != 0) {
                revert CoordinatorInvalidParameter("distanceBounds", 0);
            }
            if (p.minAlignment != ALIGNMENT_OFF) revert CoordinatorInvalidSignedParameter("minAlignment", p.minAlignment);
        }
    }

    function _beforeLoad(uint256 firstWord, uint256 count) private view {
        if (_round.phase != Phase.Setup) revert CoordinatorWrongPhase(_round.phase);
        if (firstWord != _loadedWords) revert CoordinatorWrongSegment(_loadedWords, firstWord);
        if (count == 0 || firstWord + count > numWords) {
            revert CoordinatorWrongLength(numWords - firstWord, count);
        }
    }

    function _afterLoad(uint256 firstWord, uint256 count) private {
        _loadedWords = firstWord + count;
        emit InitialModelLoaded(firstWord, count);
        if (_loadedWords == numWords) {
            modelHash = _hash(_modelWords());
            _open(1);
        }
    }

    function _storeInitialWord(uint256 word, uint256 value) private {
        _store(MODEL_BASE + word, value);
        uint256 first = word * _sumWordsPerWord;
        for (uint256 k = 0; k < _sumWordsPerWord; ++k) {
            _store(SUM_BASE + first + k, _sumStart);
        }
    }

    function _open(uint256 number) private {
        uint256 deadline = block.timestamp + roundDuration;
        _round = RoundState({
            number: uint64(number),
            deadline: uint64(deadline),
            started: 0,
            completed: 0,
            commits: 0,
            phase: mode == Mode.CommitReveal ? Phase.Commit : Phase.Open
        });
        emit RoundOpened(number, deadline);
    }

    function _checkRound(RoundState memory state, uint256 round, Phase phase) private view {
        if (state.phase != phase) revert CoordinatorWrongPhase(state.phase);
        if (round != state.number) revert CoordinatorWrongRound(round, state.number);
        if (allowlistEnabled && !allowed[msg.sender]) revert CoordinatorNotEligible(msg.sender);
    }

    function _startReveal(RoundState memory state) private {
        state.phase = Phase.Reveal;
        state.deadline = uint64(block.timestamp + revealDuration);
        emit RevealOpened(state.number, state.deadline);
    }

    function _extend(RoundState memory state) private {
        state.deadline = uint64(block.timestamp + roundDuration);
        emit RoundExtended(state.number, state.deadline);
    }

    /// Takes segment `segment` of the caller's vector: checks, measures, adds it to the round sums
    /// (unless beyond `maxCountedDistance`) and, on the last segment, credits the reward.
    function _accept(
        RoundState memory state,
        uint256 round,
        uint256 sampleCount,
        uint256 segment,
        uint256[] calldata words
    ) private {
        if (sampleCount == 0 || sampleCount > maxSampleCount) {
            revert CoordinatorInvalidSampleCount(sampleCount, maxSampleCount);
        }
        Progress memory progress = _unpack(_progress[msg.sender]);
        if (progress.round == round) {
            if (progress.done == numSegments) revert CoordinatorAlreadySubmitted(round, msg.sender);
            if (sampleCount != progress.sampleCount) {
                revert CoordinatorSampleCountChanged(progress.sampleCount, sampleCount);
            }
        } else {
            if (state.started >= targetSubmissions) revert CoordinatorRoundFull(round, state.started);
            ++state.started;
            progress = Progress(round, 0, sampleCount, false, 0, 0, 0);
        }
        if (segment != progress.done) revert CoordinatorWrongSegment(progress.done, segment);

        uint256 firstWord = segment * wordsPerSegment;
        uint256 remaining = numWords - firstWord;
        uint256 expected = remaining < wordsPerSegment ? remaining : wordsPerSegment;
        if (words.length != expected) revert CoordinatorWrongLength(expected, words.length);

        _measure(firstWord, words, progress);
        // A loop of its own, so that the guard costs nothing while it is off.
        if (_directionGuard()) _split(firstWord, words, progress);
        // Once a segment is left out, so is the rest of the vector (and it earns nothing).
        progress.leftOut = progress.leftOut || progress.distance > maxCountedDistance
            || !_aligned(progress.along, progress.against);
        bool counted = !progress.leftOut;
        if (counted) _accumulate(round, segment, words, aggregation == Aggregation.Mean ? 1 : sampleCount);
        ++progress.done;
        _progress[msg.sender] = _pack(progress);

        if (numSegments > 1) emit SegmentAccepted(round, msg.sender, segment, counted);
        if (progress.done == numSegments) {
            ++state.completed;
            (uint8 tier, uint256 reward) = counted ? _reward(progress.distance) : (NO_TIER, 0);
            emit SubmissionAccepted(
                round, msg.sender, sampleCount, progress.distance, progress.along, progress.against, tier, reward, counted
            );
        }
    }

    /// Whether an update that moved `along` quanta the way of the last global step and `against`
    /// quanta the other way passes the direction guard: `along - against >= minAlignment / 10000
    /// * (along + against)`. Both are below 2**41, so the products cannot overflow.
    function _aligned(uint256 along, uint256 against) private view returns (bool) {
        return (int256(along) - int256(against)) * 10_000 >= minAlignment * int256(along + against);
    }

    /// Whether the direction guard is on (at -10000 every update would pass it).
    function _directionGuard() private view returns (bool) {
        return minAlignment > ALIGNMENT_OFF;
    }

    // A client's progress in its latest round, unpacked from its `_progress` slot.
    struct Progress {
        uint256 round;
        uint256 done; // segments sent
        uint256 sampleCount;
        bool leftOut; // a segment failed the distance bound or the direction guard
        uint256 distance; // so far
        uint256 along; // so far
        uint256 against; // so far
    }

    // Widths: round 40 bits (2**40 rounds cannot be reached), segments 24 (numWords <= 2**20),
    // sample count 32, flag 1, distance 63 (squared L2 < 2**24 * 2**32), along and against 48
    // each (L1 < 2**24 * 2**16).
    function _unpack(uint256 packed) private pure returns (Progress memory) {
        return Progress(
            packed >> 216,
            (packed >> 192) & type(uint24).max,
            (packed >> 160) & type(uint32).max,
            (packed >> 159) & 1 == 1,
            (packed >> 96) & (type(uint64).max >> 1),
            (packed >> 48) & type(uint48).max,
            packed & type(uint48).max
        );
    }

    function _pack(Progress memory p) private pure returns (uint256) {
        return (p.round << 216) | (p.done << 192) | (p.sampleCount << 160) | (uint256(p.leftOut ? 1 : 0) << 159)
            | (p.distance << 96) | (p.along << 48) | p.against;
    }

    function _addSegmentWeight(uint256 round, uint256 segment, uint256 weight) private {
        uint256 segmentWeight = _segmentWeight[segment];
        uint256 sum = segmentWeight >> 128 == round ? uint128(segmentWeight) : 0;
        _segmentWeight[segment] = (round << 128) | (sum + weight);
    }

    /// Adds the distance of `words` from the global model at `firstWord`, and (direction guard
    /// on) its L1 split along and against the last global step, to `progress`; reverts on a
    /// weight out of range.
    function _measure(uint256 firstWord, uint256[] calldata words, Progress memory progress) private view {
        uint256 total = 0;
        bool squared = distance == Distance.SquaredL2;
        uint256 lows = _lows;
        uint256 highs = _highs;
        uint256 slot = MODEL_BASE + firstWord;
        for (uint256 i = 0; i < words.length; ++i) {
            uint256 word = words[i];
            if (!word.inRange(lows, highs)) _revertOutOfRange(firstWord + i, word);
            uint256 model = _load(slot + i);
            total += squared ? model.squaredL2Distance(word) : model.l1Distance(word);
        }
        if (firstWord + words.length == numWords) _checkPadding(words[words.length - 1]);
        progress.distance += total;
    }

    /// Adds the L1 distance of `words` from the model at `firstWord`, along and against the last
    /// step, to `progress`.
    function _split(uint256 firstWord, uint256[] calldata words, Progress memory progress) private view {
        uint256 along = 0;
        uint256 against = 0;
        uint256 entries = 0;
        uint256 end = firstWord + words.length;
        // unchecked: j < numWords <= 2**20, and each word adds below 2**21 to along and against
        unchecked {
            for (uint256 j = firstWord; j < end; ++j) {
                if (j == firstWord || j & 7 == 0) entries = _load(DIRECTION_BASE + (j >> 3));
                (uint256 a, uint256 b) = _load(MODEL_BASE + j).directionalL1(
                    words[j - firstWord], (entries >> ((j & 7) << 5)) & 0xFFFFFFFF
                );
                along += a;
                against += b;
            }
        }
        progress.along += along;
        progress.against += against;
    }

    /// Adds segment `segment` (`words`) times `weight` into the round sums, lane-parallel.
    function _accumulate(uint256 round, uint256 segment, uint256[] calldata words, uint256 weight) private {
        _addSegmentWeight(round, segment, weight);
        uint256 perWord = _sumWordsPerWord;
        uint256 mask = _spreadMask;
        uint256 highBits = _sumHighBits;
        uint256 slot = SUM_BASE + segment * wordsPerSegment * perWord;
        for (uint256 i = 0; i < words.length; ++i) {
            uint256 word = words[i];
            for (uint256 k = 0; k < perWord; ++k) {
                _store(slot, _load(slot).addLanes(word.spread(k, weight, mask), highBits));
                unchecked {
                    ++slot;
                }
            }
        }
    }

    /// Computes and stores the new global model, then opens the next round.
    function _close(RoundState memory state) private {
        uint256 round = state.number;
        bool guard = _directionGuard();
        uint256[] memory before = guard ? _modelWords() : new uint256[](0);
        uint256[] memory model = new uint256[](numWords);
        for (uint256 segment = 0; segment < numSegments; ++segment) {
            (uint256 first, uint256 end, uint256 weightSum) = _segmentOf(segment, round);
            for (uint256 j = first; j < end; ++j) {
                model[j] = weightSum == 0 ? _load(MODEL_BASE + j) : _averageWord(j, weightSum);
            }
        }
        if (guard) _storeDirection(before, model, round);
        modelHash = _hash(model);
        uint256 version = modelVersion + 1;
        modelVersion = version;
        emit RoundClosed(round, version, modelHash, state.completed);
        _open(round + 1);
    }

    /// Words `first .. end - 1` of segment `segment`, and the weight its round-`round` sums hold.
    function _segmentOf(uint256 segment, uint256 round)
        private
        view
        returns (uint256 first, uint256 end, uint256 weightSum)
    {
        first = segment * wordsPerSegment;
        end = first + wordsPerSegment < numWords ? first + wordsPerSegment : numWords;
        uint256 segmentWeight = _segmentWeight[segment];
        weightSum = segmentWeight >> 128 == round ? uint128(segmentWeight) : 0;
    }

    /// Stores which way the round moved every weight, eight words' entries per slot. A segment
    /// nobody counted keeps the direction of the last step that moved it.
    function _storeDirection(uint256[] memory before, uint256[] memory model, uint256 round) private {
        uint256 entries = 0; // new entries of the words j & ~7 .. j
        uint256 keep = 0; // the bits of those entries that stay as stored
        for (uint256 segment = 0; segment < numSegments; ++segment) {
            (uint256 first, uint256 end, uint256 weightSum) = _segmentOf(segment, round);
            for (uint256 j = first; j < end; ++j) {
                uint256 shift = (j & 7) << 5;
                if (weightSum == 0) keep |= uint256(0xFFFFFFFF) << shift;
                else entries |= before[j].stepSigns(model[j]) << shift;
                if (j & 7 == 7 || j == numWords - 1) {
                    uint256 slot = DIRECTION_BASE + (j >> 3);
                    if (keep != 0) entries |= _load(slot) & keep;
                    _store(slot, entries);
                    (entries, keep) = (0, 0);
                }
            }
        }
    }

    function _modelWords() private view returns (uint256[] memory words) {
        words = new uint256[](numWords);
        for (uint256 j = 0; j < words.length; ++j) {
            words[j] = _load(MODEL_BASE + j);
        }
    }

    /// Ends the round without a new model: resets the sums it added to, opens the next round.
    function _abandon(RoundState memory state) private {
        uint256 round = state.number;
        uint256 perWord = _sumWordsPerWord;
        uint256 start = _sumStart;
        for (uint256 segment = 0; segment < numSegments; ++segment) {
            uint256 segmentWeight = _segmentWeight[segment];
            if (segmentWeight >> 128 != round || uint128(segmentWeight) == 0) continue;
            uint256 first = segment * wordsPerSegment * perWord;
            uint256 end = (segment + 1) * wordsPerSegment < numWords ? (segment + 1) * wordsPerSegment : numWords;
            for (uint256 slot = SUM_BASE + first; slot < SUM_BASE + end * perWord; ++slot) {
                _store(slot, start);
            }
        }
        emit RoundAbandoned(round, state.completed);
        _open(round + 1);
    }

    /// Averages the sums behind model word `j`, resets them, stores and returns the new word.
    /// @dev Per lane: the signed sum is `(lane - 1 - OFFSET * weightSum) mod 2**bits` read as two's
    /// complement (`PackedVectors.signedSum`), divided with `PackedVectors.roundedDiv`'s rule
    /// (nearest, ties away from zero) and written back in offset binary. Inlined in assembly
    /// because it runs once per weight per round; the reference in `PackedVectors` is the spec
    /// that the tests hold this to.
    function _averageWord(uint256 j, uint256 weightSum) private returns (uint256 word) {
        uint256 perWord = _sumWordsPerWord;
        uint256 lanes = _lanesPerSumWord;
        uint256 bits = laneBits;
        uint256 start = _sumStart;
        uint256 slot = SUM_BASE + j * perWord;
        // What every lane started with plus the offsets that the encoding added.
        uint256 bias = 1 + PackedVectors.OFFSET * weightSum;
        for (uint256 k = 0; k < perWord; ++k) {
            uint256 sums = _load(slot + k);
            _store(slot + k, start);
            assembly ("memory-safe") {
                let modulus := shl(bits, 1) // bits <= 128
                let mask := sub(modulus, 1)
                let top := shr(1, modulus)
                let half := shr(1, weightSum)
                for { let t := 0 } lt(t, lanes) { t := add(t, 1) } {
                    let value := and(sub(shr(mul(t, bits), sums), bias), mask)
                    let mean := 0
                    switch lt(value, top)
                    case 1 { mean := add(0x8000, div(add(value, half), weightSum)) }
                    default { mean := sub(0x8000, div(add(sub(modulus, value), half), weightSum)) }
                    word := or(word, shl(shl(4, add(k, mul(perWord, t))), mean))
                }
            }
        }
        _store(MODEL_BASE + j, word);
    }

    function _reward(uint256 total) private returns (uint8 tier, uint256 reward) {
        if (total < minRewardDistance) return (NO_TIER, 0);
        uint256 tiers = _tierThresholds.length;
        tier = NO_TIER;
        for (uint256 i = 0; i < tiers; ++i) {
            if (total <= _tierThresholds[i]) {
                tier = uint8(i);
                reward = _tierRewards[i];
                break;
            }
        }
        reward = _credit(reward);
    }

    /// Credits the caller `amount`, or what is left in the pool: a valid submission never reverts
    /// for lack of funds.
    function _credit(uint256 amount) private returns (uint256 credited) {
        uint256 available = availableRewards();
        credited = amount < available ? amount : available;
        if (credited > 0) {
            credit[msg.sender] += credited;
            totalCredited += uint128(credited);
        }
    }

    function _fund() private {
        if (msg.value == 0) revert CoordinatorZeroFunding();
        totalFunded += uint128(msg.value);
        emit PoolFunded(msg.sender, msg.value);
    }

    function _checkRange(uint256 wordIndex, uint256 word) private view {
        if (!word.inRange(_lows, _highs)) _revertOutOfRange(wordIndex, word);
        if (wordIndex == numWords - 1) _checkPadding(word);
    }

    function _checkPadding(uint256 lastWord) private view {
        for (uint256 lane = numWeights - (numWords - 1) * 16; lane < 16; ++lane) {
            int256 value = lastWord.signedLane(lane);
            if (value != 0) revert CoordinatorWeightOutOfRange((numWords - 1) * 16 + lane, value, 0);
        }
    }

    function _revertOutOfRange(uint256 wordIndex, uint256 word) private view {
        for (uint256 lane = 0; lane < 16; ++lane) {
            int256 value = word.signedLane(lane);
            if (value > int256(maxAbsWeight) || value < -int256(maxAbsWeight)) {
                revert CoordinatorWeightOutOfRange(wordIndex * 16 + lane, value, maxAbsWeight);
            }
        }
    }

    function _hash(uint256[] memory words) private pure returns (bytes32 digest) {
        assembly ("memory-safe") {
            digest := keccak256(add(words, 0x20), shl(5, mload(words)))
        }
    }

    function _load(uint256 slot) private view returns (uint256 value) {
        assembly ("memory-safe") {
            value := sload(slot)
        }
    }

    function _store(uint256 slot, uint256 value) private {
        assembly ("memory-safe") {
            sstore(slot, value)
        }
    }
}
