// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title PackedVectors
/// @notice Pure arithmetic on packed fixed-point vectors: the wire format of weights, the distance
/// between two packed vectors, its split along and against the direction of a step, and the
/// lane-parallel (SWAR) sums the coordinator keeps per round.
/// @dev Wire format: a vector of `n` quantized weights `q` with `|q| <= maxAbs <= 32767` travels as
/// `ceil(n / 16)` words; lane `i` of word `j` (bits `16*i .. 16*i+15`) holds weight `16*j + i` in
/// offset binary, `u = q + 32768`, so every lane of a valid word is nonzero. Lanes past `n` in the
/// last word hold `q = 0`.
///
/// Sums live in wider lanes of `laneBits` (16, 32, 64 or 128) bits. The lanes of one wire word are
/// split over `laneBits / 16` accumulator words: accumulator word `k` of wire word `j` holds wire
/// lanes `k, k + r, k + 2r, ...` (r = laneBits / 16) at its lanes `0, 1, 2, ...`. Each accumulator
/// lane adds `u * weight` modulo `2**laneBits` with no carry into its neighbour; the signed sum
/// `sum(q * weight)` is recovered exactly when it is below `2**(laneBits - 1)` in magnitude, which
/// the coordinator guarantees by choosing `laneBits` from its parameters.
library PackedVectors {
    uint256 internal constant LANES = 16;
    uint256 internal constant LANE_BITS = 16;
    uint256 internal constant LANE_MASK = 0xFFFF;
    /// Offset of the wire encoding: u = q + OFFSET.
    uint256 internal constant OFFSET = 0x8000;

    /// @notice Number of wire words that hold `count` weights.
    function wordsFor(uint256 count) internal pure returns (uint256) {
        return (count + LANES - 1) / LANES;
    }

    /// @notice A word with the value `value` in every lane of `laneBits` bits.
    function broadcast(uint256 value, uint256 laneBits) internal pure returns (uint256 word) {
        for (uint256 shift = 0; shift < 256; shift += laneBits) {
            word |= value << shift;
        }
    }

    /// @notice Reads wire lane `index` (0..15) of `word` as a signed quantized weight.
    function signedLane(uint256 word, uint256 index) internal pure returns (int256) {
        return int256((word >> (index * LANE_BITS)) & LANE_MASK) - int256(OFFSET);
    }

    // Masks over the 16-bit wire lanes viewed as 8 lanes of 32 bits (even lanes at the bottom).
    uint256 private constant LOW16_OF_32 = 0x0000FFFF0000FFFF0000FFFF0000FFFF0000FFFF0000FFFF0000FFFF0000FFFF;
    uint256 private constant BIT16_OF_32 = 0x0001000000010000000100000001000000010000000100000001000000010000;
    uint256 private constant ONE_OF_32 = 0x0000000100000001000000010000000100000001000000010000000100000001;

    /// @notice Whether every lane of `update` lies in `[low, high]` (offset-binary bounds).
    /// @param lows `low` in every 32-bit lane; @param highs `high` in every 32-bit lane.
    /// @dev Lane-parallel on 32-bit lanes: `(x | 2**16) - y` stays within its lane for 16-bit x, y,
    /// and its bit 16 says whether x >= y.
    function inRange(uint256 update, uint256 lows, uint256 highs) internal pure returns (bool) {
        unchecked {
            uint256 even = update & LOW16_OF_32;
            uint256 odd = (update >> 16) & LOW16_OF_32;
            uint256 ok = ((even | BIT16_OF_32) - lows) & ((highs | BIT16_OF_32) - even)
                & ((odd | BIT16_OF_32) - lows) & ((highs | BIT16_OF_32) - odd);
            return ok & BIT16_OF_32 == BIT16_OF_32;
        }
    }

    /// @notice L1 distance between two wire words: the sum of the 16 lane differences.
    /// @dev Lane-parallel: |a - b| per 32-bit lane from the two biased differences, then the
    /// horizontal sum by multiplying with 1 in every lane (the top lane collects the sum of all
    /// lanes, at most 8 * 65535 < 2**32, so no lane overflows).
    function l1Distance(uint256 model, uint256 update) internal pure returns (uint256) {
        unchecked {
            return _absDiffSum(model & LOW16_OF_32, update & LOW16_OF_32)
                + _absDiffSum((model >> 16) & LOW16_OF_32, (update >> 16) & LOW16_OF_32);
        }
    }

    function _absDiffSum(uint256 a, uint256 b) private pure returns (uint256) {
        unchecked {
            uint256 forward = (a | BIT16_OF_32) - b; // 2**16 + a - b per lane
            uint256 backward = (b | BIT16_OF_32) - a; // 2**16 + b - a per lane
            // 0xFFFF in the lanes where a >= b
            uint256 select = ((forward & BIT16_OF_32) >> 16) * 0xFFFF;
            uint256 diff = ((forward & select) | (backward & ~select)) & LOW16_OF_32;
            return (diff * ONE_OF_32) >> 224;
        }
    }

    // Direction entries: 32 bits per wire word, four bytes: the even lanes (0, 2, .., 14) the
    // last global step raised, the odd lanes (1, 3, .., 15) it raised, the even lanes it lowered,
    // the odd lanes it lowered; bit k of a byte is lane 2k (even) or 2k + 1 (odd).
    // Spreads 8 bits (bit k) to bit 0 of 32-bit lane k: each product bit lands alone, no carries.
    uint256 private constant SPREAD_8_TO_32 = 0x2000000040000000800000010000000200000004000000080000001;
    // Gathers bit 0 of the eight 32-bit lanes into bits 224..231 (the rest land below or overflow).
    uint256 private constant GATHER_32_TO_8 = 0x100000002000000040000000800000010000000200000004000000080;

    /// @notice The direction entry of the step from `before` to `next` (layout above; unchanged
    /// lanes are in neither half).
    function stepSigns(uint256 before, uint256 next) internal pure returns (uint256) {
        unchecked {
            (uint256 upEven, uint256 downEven) = _steps(before & LOW16_OF_32, next & LOW16_OF_32);
            (uint256 upOdd, uint256 downOdd) = _steps((before >> 16) & LOW16_OF_32, (next >> 16) & LOW16_OF_32);
            return upEven | (upOdd << 8) | (downEven << 16) | (downOdd << 24);
        }
    }

    /// @notice The L1 distance between `model` and `update`, split by the direction entry
    /// `entry` of the last global step: `along` sums the lanes that moved the way that step moved
    /// them, `against` the lanes that moved the other way (lanes the step left alone are in
    /// neither).
    function directionalL1(uint256 model, uint256 update, uint256 entry)
        internal
        pure
        returns (uint256 along, uint256 against)
    {
        unchecked {
            (uint256 a0, uint256 b0) = _split(
                model & LOW16_OF_32, update & LOW16_OF_32, _spread(entry & 0xFF), _spread((entry >> 16) & 0xFF)
            );
            (uint256 a1, uint256 b1) = _split(
                (model >> 16) & LOW16_OF_32,
                (update >> 16) & LOW16_OF_32,
                _spread((entry >> 8) & 0xFF),
                _spread((entry >> 24) & 0xFF)
            );
            return (a0 + a1, b0 + b1);
        }
    }

    // One half (8 lanes of 32 bits) of `stepSigns`: 8-bit masks of the lanes that rose and fell.
    function _steps(uint256 a, uint256 b) private pure returns (uint256 up, uint256 down) {
        unchecked {
            // bit 16 of (a | 2**16) - b is set where a >= b
            uint256 notUp = (((a | BIT16_OF_32) - b) & BIT16_OF_32) >> 16;
            uint256 notDown = (((b | BIT16_OF_32) - a) & BIT16_OF_32) >> 16;
            return (_gather(notUp ^ ONE_OF_32), _gather(notDown ^ ONE_OF_32));
        }
    }

    // One half of `directionalL1`; `up` and `down` hold 1 in the 32-bit lanes the step raised or
    // lowered.
    function _split(uint256 a, uint256 b, uint256 up, uint256 down)
        private
        pure
        returns (uint256 along, uint256 against)
    {
        unchecked {
            // The absolute difference as in `_absDiffSum`, written out again: a shared helper
            // that returns it with the comparison costs ~5,000 gas more per 7,850-weight
            // submission (measured), in the hottest loop of the contract.
            uint256 forward = (a | BIT16_OF_32) - b; // 2**16 + a - b per lane
            uint256 backward = (b | BIT16_OF_32) - a; // 2**16 + b - a per lane
            uint256 lowered = (forward & BIT16_OF_32) >> 16; // 1 where b <= a: the update went down
            uint256 select = lowered * 0xFFFF;
            uint256 diff = ((forward & select) | (backward & ~select)) & LOW16_OF_32;
            uint256 raised = lowered ^ ONE_OF_32;
            uint256 alongLanes = ((up & raised) | (down & lowered)) * 0xFFFF;
            uint256 againstLanes = ((down & raised) | (up & lowered)) * 0xFFFF;
            along = ((diff & alongLanes) * ONE_OF_32) >> 224;
            against = ((diff & againstLanes) * ONE_OF_32) >> 224;
        }
    }

    // Bit k of an 8-bit value to bit 0 of 32-bit lane k.
    function _spread(uint256 bits8) private pure returns (uint256) {
        unchecked {
            return (bits8 * SPREAD_8_TO_32) & ONE_OF_32;
        }
    }

    // Bit 0 of 32-bit lane k to bit k.
    function _gather(uint256 lanes) private pure returns (uint256) {
        unchecked {
            return ((lanes * GATHER_32_TO_8) >> 224) & 0xFF;
        }
    }

    /// @notice Squared L2 distance between two wire words.
    /// @dev A lane difference is at most 65535, so each square is below 2**32 and 16 of them
    /// cannot overflow.
    function squaredL2Distance(uint256 model, uint256 update) internal pure returns (uint256 distance) {
        assembly ("memory-safe") {
            for { let shift := 0 } lt(shift, 256) { shift := add(shift, 16) } {
                let a := and(shr(shift, model), 0xFFFF)
                let b := and(shr(shift, update), 0xFFFF)
                let d := sub(a, b)
                if lt(a, b) { d := sub(b, a) }
                distance := add(distance, mul(d, d))
            }
        }
    }

    /// @notice The wire lanes `part, part + r, ...` of `word` (r = laneBits / 16), each times
    /// `weight`, as lanes of `laneBits` bits.
    /// @param spreadMask `0xFFFF` at the bottom of every `laneBits`-bit lane.
    /// @dev `u * weight < 2**16 * weight <= 2**laneBits` (the coordinator checks the bound on
    /// `weight`), so no product spills into the next lane.
    function spread(uint256 word, uint256 part, uint256 weight, uint256 spreadMask)
        internal
        pure
        returns (uint256)
    {
        unchecked {
            return ((word >> (part * LANE_BITS)) & spreadMask) * weight;
        }
    }

    /// @notice Lane-wise `a + b` modulo `2**laneBits`, with no carry between lanes.
    /// @param highBits the top bit of every lane.
    /// @dev Hacker's Delight 2-18: add the lanes without their top bits (cannot carry out of a
    /// lane), then set each top bit to the xor of the two top bits and the carry into it.
    function addLanes(uint256 a, uint256 b, uint256 highBits) internal pure returns (uint256) {
        unchecked {
            return ((a & ~highBits) + (b & ~highBits)) ^ ((a ^ b) & highBits);
        }
    }

    /// @notice Rounds `sum / total` to the nearest integer, ties away from zero.
    /// @dev `total > 0`. |result| <= max |q| whenever |sum| <= total * max |q|.
    function roundedDiv(int256 sum, uint256 total) internal pure returns (int256) {
        uint256 magnitude = uint256(sum < 0 ? -sum : sum);
        int256 quotient = int256((magnitude + total / 2) / total);
        return sum < 0 ? -quotient : quotient;
    }

    /// @notice Lane `index` of an accumulator word as a signed sum, given the lane's starting
    /// value `base` and the bias `bias = OFFSET * weightSum` that the offset encoding added.
    function signedSum(uint256 word, uint256 index, uint256 laneBits, uint256 base, uint256 bias)
        internal
        pure
        returns (int256)
    {
        unchecked {
            uint256 mask = laneBits == 256 ? type(uint256).max : (uint256(1) << laneBits) - 1;
            // Modular arithmetic in the lane: the true sum is the lane minus what it started with
            // and minus the offsets, taken mod 2**laneBits and read as two's complement.
            uint256 value = (((word >> (index * laneBits)) & mask) - base - bias) & mask;
            if (value >> (laneBits - 1) == 1) {
                return -int256((~value + 1) & mask);
            }
            return int256(value);
        }
    }
}
