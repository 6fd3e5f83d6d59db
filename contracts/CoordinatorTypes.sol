// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title CoordinatorTypes
/// @notice The vocabulary the coordinator and its units share: enums, the deployment parameters,
/// custom errors and events. `FLCoordinator` and every unit inherit it, so the coordinator's ABI
/// lists every error and event whichever unit raises or emits it.
interface CoordinatorTypes {
    // ---------------------------------------------------------------- enums and structs

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
        Plain, // in the clear: `submit` from the client's own account, or signed and relayed
        CommitReveal, // `commit` a salted hash with a bond, then `reveal` once commits are closed
        SecureAggregation // `submitMasked`: pairwise masks that cancel in the sum
    }

    /// @notice What a submission's reward distance is measured from.
    enum RewardReference {
        Current, // the model at submit time: paid on submit (the seed paper's rule)
        Aggregate, // the round's new model: measured and paid by the close
        Progress // how far the update went the way the model went: measured and paid by the close
    }

    /// @notice Where the open round is in its life cycle.
    enum Phase {
        Setup, // the initial model is being loaded
        Open, // Plain and SecureAggregation: taking submissions until the deadline
        Commit, // CommitReveal: taking commitments
        Reveal, // CommitReveal: taking reveals
        Closing, // some segments of the new model are written, the rest are due
        Register, // SecureAggregation: the round's cohort registers its masking keys
        Share, // SecureAggregation: members post their key shares (encrypted) and commitments
        Recover // SecureAggregation: survivors reveal the shares of the members that dropped out
    }

    /// @notice Deployment parameters, all validated by the constructor.
    struct Parameters {
        uint256 numWeights; // length of the model vector
        uint256 scale; // fixed point: weight = q / scale (read by clients)
        uint256 maxAbsWeight; // |q| <= maxAbsWeight <= 32767
        uint256 targetSubmissions; // a round may close before its deadline once this many are in
        uint256 minSubmissions; // after the deadline, a round closes with at least this many
        uint256 roundDuration; // seconds from a round's opening to its deadline
        Aggregation aggregation;
        uint256 maxSampleCount; // bound on the sample count a client may declare
        Distance distance;
        bool allowlistEnabled; // true: only accounts the owner allowed may submit
        uint256 minRewardDistance; // closer than this to the global model earns nothing (0: off)
        uint256 maxCountedDistance; // farther than this: no reward, left out of the average (0: off)
        uint256 wordsPerSegment; // words of the model per segment (a close transaction handles one)
        uint256[] tierThresholds; // ascending distance thresholds, inclusive
        uint256[] tierRewards; // descending rewards in wei, one per threshold
        Mode mode;
        uint256 revealDuration; // CommitReveal: seconds from the end of commits to the reveal deadline
        int256 minAlignment; // direction guard, basis points (-10000: off); see `minAlignment`
        uint256 closeWindow; // seconds after the deadline for relayers to supply their updates' words
        uint256 closeFee; // wei credited from the pool to whoever closes a segment
        uint256 relayFee; // wei credited from the pool per relayed update a close carries (per segment)
        uint256 commitBond; // CommitReveal: wei a commitment locks until its reveal
        uint256 txGasCap; // per-transaction gas cap the configuration must fit (EIP-7825)
        RewardReference rewardReference;
        uint256 maxShareBps; // SampleWeighted: cap of one update's share of a round's weight (0: off)
        uint256 maxStep; // quanta a weight may move in one round (0: off)
        uint256 maxDrift; // quanta a weight may move from the window's checkpoint (0: off)
        uint256 driftWindow; // rounds per checkpoint (with maxDrift)
        uint256[] rdpPerParticipation; // privacy ledger: RDP of one participation per order, 1e-6 units
        uint256[] rdpConversion; // per order: the term that turns RDP into epsilon at delta, 1e-6 units
        uint256 epsilonBudget; // privacy ledger: largest epsilon a client may spend, 1e-6 units (0: off)
        uint256 maxDropouts; // SecureAggregation: members that may drop out and the round still closes
        uint256 setupDuration; // SecureAggregation: seconds for each of the Register and Share phases
        uint256 recoveryDuration; // SecureAggregation: seconds for the survivors to reveal shares
        uint256 trimEach; // Mean: values left out at each end of every weight (trimmed mean; 0: off)
    }

    /// @notice The units that carry the submission paths, each a contract of its own that the
    /// coordinator delegates to (they run on the coordinator's storage).
    struct Units {
        address direct; // `submit`
        address relay; // `submitRelayed`
        address closing; // `closeSegment`
        address commitReveal; // `commit`, `reveal`
        address secureAggregation; // `registerKey`, `postShares`, `submitMasked`, `revealShares`, `closeMasked`
    }

    /// @notice A member's revealed share of a dropped member's masking key, with the dealer's
    /// share commitments (checked against the root it posted).
    struct RevealedShare {
        address dealer;
        uint256 share;
        bytes32[] commitments;
    }

    /// @notice An update signed by its client (EIP-712 `Update`, see `updateDigest`) and carried
    /// by a relayer: the hashes of its segments now, its words in the close.
    struct RelayedUpdate {
        address client;
        uint256 sampleCount;
        bytes32[] segmentHashes;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    // ---------------------------------------------------------------- errors

    /// @notice A deployment parameter is invalid: `value` is the offending value (or, for a
    /// list, the position of the offending entry).
    error CoordinatorInvalidParameter(string name, uint256 value);
    /// @notice A signed deployment parameter is invalid.
    error CoordinatorInvalidSignedParameter(string name, int256 value);
    /// @notice The configuration needs a transaction of `needed` (bytes or gas, as `limit` says)
    /// where the network allows `allowed`.
    error CoordinatorExceedsTransactionLimit(string limit, uint256 needed, uint256 allowed);
    /// @notice `caller` is not the owner.
    error CoordinatorUnauthorized(address caller);
    /// @notice The round is in `phase`, which does not allow this call.
    error CoordinatorWrongPhase(Phase phase);
    /// @notice `account` may not take part in round `round`.
    error CoordinatorNotEligible(address account, uint256 round);
    /// @notice A call named round `given` while round `current` is open.
    error CoordinatorWrongRound(uint256 given, uint256 current);
    /// @notice The deadline of `round` passed at `deadline`: no more submissions.
    error CoordinatorDeadlinePassed(uint256 round, uint256 deadline);
    /// @notice `account` already completed its submission for `round`.
    error CoordinatorAlreadySubmitted(uint256 round, address account);
    /// @notice `round` already holds `entries` submissions, its target.
    error CoordinatorRoundFull(uint256 round, uint256 entries);
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
    /// @notice Round `round` cannot be closed or ended yet: it holds `entries` submissions
    /// (target `target`, minimum `minimum`) and `opensAt` is when this call becomes possible.
    error CoordinatorNotClosable(uint256 round, uint256 entries, uint256 target, uint256 minimum, uint256 opensAt);
    /// @notice The words given for entry `index` (`client`) do not hash to what it submitted.
    error CoordinatorWordsMismatch(uint256 index, address client);
    /// @notice A close left out entry `index`, which it may not: only relayed entries may be
    /// left out, and only from `allowedFrom` on.
    error CoordinatorCannotOmit(uint256 index, uint256 allowedFrom);
    /// @notice The signature over `client`'s update does not recover to `client` (forged,
    /// altered, or signed for another chain, contract or round).
    error CoordinatorInvalidSignature(address client);
    /// @notice The signature over `client`'s update has a high `s` (malleable).
    error CoordinatorMalleableSignature(address client);
    /// @notice `client` has an update in `round` already: a signed update is taken once.
    error CoordinatorUpdateReplayed(address client, uint256 round);
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
    /// @notice A commitment came with `sent` wei where the bond is `required`.
    error CoordinatorWrongBond(uint256 sent, uint256 required);
    /// @notice `account` reveals in `round` without a commitment.
    error CoordinatorNoCommitment(uint256 round, address account);
    /// @notice The reveal of `account` in `round` does not match its commitment.
    error CoordinatorRevealMismatch(uint256 round, address account);
    /// @notice `account` registered a key already.
    error CoordinatorAlreadyRegistered(address account);
    /// @notice `account` is not a member of the round's cohort (or not at this step).
    error CoordinatorNotRegistered(address account);
    /// @notice The masking key of `account` is not a valid secp256k1 key it proved to hold.
    error CoordinatorInvalidKeyProof(address account);
    /// @notice A masking key with x-coordinate `x` is registered already this round (a copy, or
    /// its negation: the same key to the masks).
    error CoordinatorKeyReused(uint256 x);
    /// @notice `dealer` once committed to shares that did not rebuild its masking key (which
    /// ended that round): it may not join a cohort again.
    error CoordinatorFaultyDealer(address dealer);
    /// @notice `dealer`'s share for member `holder` does not match the dealer's commitment.
    error CoordinatorBadShare(address dealer, uint256 holder);
    /// @notice `account` did not drop out of the round.
    error CoordinatorNotDropped(address account);
    /// @notice A unit was called directly; units only run through the coordinator.
    error CoordinatorUnitCalledDirectly();
    /// @notice A participation of `client` would spend `epsilon` (1e-6 units) of its privacy
    /// budget `budget`.
    error CoordinatorPrivacyBudgetExceeded(address client, uint256 epsilon, uint256 budget);

    // ---------------------------------------------------------------- events

    /// @notice The owner loaded segments `firstSegment ..` (`count` of them) of the initial model.
    event InitialModelLoaded(uint256 firstSegment, uint256 count);
    /// @notice Round `round` opened; it takes submissions until `deadline`.
    event RoundOpened(uint256 indexed round, uint256 deadline);
    /// @notice Round `round` closed with `submissions` counted submissions; model `modelVersion`
    /// with hash `modelHash` is now the global model.
    event RoundClosed(uint256 indexed round, uint256 modelVersion, bytes32 modelHash, uint256 submissions);
    /// @notice Round `round` ended without a new model (below its minimum when it could be ended,
    /// or a masked client dropped out); `submissions` had been counted.
    event RoundAbandoned(uint256 indexed round, uint256 submissions);
    /// @notice `closer` wrote segment `segment` of round `round`'s new model from `entries`
    /// updates (`relayed` of them carried in this transaction) and was credited `fee` wei;
    /// `clamped` weights were held back by the step or drift bound.
    event SegmentClosed(
        uint256 indexed round,
        uint256 segment,
        address indexed closer,
        uint256 entries,
        uint256 relayed,
        uint256 fee,
        uint256 clamped
    );
    /// @notice RewardReference Aggregate or Progress, at the close: `client`'s round-`round` update
    /// scored `distance`, the value its tier is read from (lower is better): Aggregate, its
    /// distance from the round's new model; Progress, its shortfall in basis points of the step
    /// (see `FLCoordinator.rewardReference`). It was credited `reward` wei (`tier` 255: none).
    event RewardSettled(uint256 indexed round, address indexed client, uint256 distance, uint8 tier, uint256 reward);
    /// @notice `relayer` registered `client`'s signed round-`round` update (its words follow in
    /// the close, which measures and pays it).
    event UpdateRelayed(uint256 indexed round, address indexed client, address indexed relayer, uint256 sampleCount);
    /// @notice `client` sent segments `firstSegment ..` (`count` of them) of its round-`round`
    /// update; emitted for the transactions of a submission before its last one.
    event SegmentsReceived(uint256 indexed round, address indexed client, uint256 firstSegment, uint256 count);
    /// @notice `client` completed its round-`round` submission and was credited `reward` wei.
    /// `along` and `against` split its L1 distance by the direction of the last global step
    /// (see `minAlignment`; both 0 while the guard is off). `tier` is the index of the reward
    /// tier, or 255 for none; `counted` is false when the distance exceeded `maxCountedDistance`
    /// or the update moved against the last step (`minAlignment`): it is then left out of the
    /// average. `relayed` tells whether a relayer carried it (it is then measured and paid in the
    /// close).
    event SubmissionAccepted(
        uint256 indexed round,
        address indexed client,
        uint256 sampleCount,
        uint256 distance,
        uint256 along,
        uint256 against,
        uint8 tier,
        uint256 reward,
        bool counted,
        bool relayed
    );
    /// @notice `client` committed to its round-`round` update and locked `bond` wei.
    event CommitmentAccepted(uint256 indexed round, address indexed client, uint256 bond);
    /// @notice Commits of `round` closed; reveals are taken until `deadline`.
    event RevealOpened(uint256 indexed round, uint256 deadline);
    /// @notice SecureAggregation: round `round` moved to `phase`, which lasts until `deadline`.
    event PhaseStarted(uint256 indexed round, Phase phase, uint256 deadline);
    /// @notice `client` revealed and got its bond of `amount` wei back as credit.
    event BondReturned(uint256 indexed round, address indexed client, uint256 amount);
    /// @notice Bonds of `amount` wei that were never revealed went to the reward pool.
    event BondsForfeited(uint256 indexed round, uint256 amount);
    /// @notice `client` joined round `round`'s secure-aggregation cohort as member `index`, with
    /// the secp256k1 masking key `(x, y)` it proved to hold.
    event KeyRegistered(uint256 indexed round, address indexed client, uint256 index, uint256 x, uint256 y);
    /// @notice `dealer` posted its key shares for round `round`: a commitment per member, and each
    /// share encrypted to its member (readable only with that member's key).
    event SharesPosted(uint256 indexed round, address indexed dealer, bytes32[] commitments, bytes32[] encrypted);
    /// @notice `client` submitted its masked update for round `round`.
    event MaskedSubmitted(uint256 indexed round, address indexed client, uint256 sampleCount);
    /// @notice `client` left round `round` after the masks were set up; its masks will be removed.
    event MemberDropped(uint256 indexed round, address indexed client);
    /// @notice `holder` revealed its share of dropped `dealer`'s key.
    event ShareRevealed(uint256 indexed round, address indexed dealer, address indexed holder);
    /// @notice The key of dropped `dealer` was rebuilt from the revealed shares (`ok`), or the
    /// shares did not rebuild its registered key (`ok` false: the round cannot close).
    event KeyRecovered(uint256 indexed round, address indexed dealer, bool ok);
    /// @notice `funder` added `amount` wei to the reward pool.
    event PoolFunded(address indexed funder, uint256 amount);
    /// @notice `client` withdrew `amount` wei of credit.
    event CreditWithdrawn(address indexed client, uint256 amount);
    /// @notice The owner set `account`'s eligibility to `allowed`, in force from round `fromRound`.
    event AllowlistUpdated(address indexed account, bool allowed, uint256 fromRound);
    /// @notice Ownership moved from `previousOwner` to `newOwner`.
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
}
