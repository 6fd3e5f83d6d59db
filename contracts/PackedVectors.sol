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
    /// them, `against` every other lane (moved the other way, or moved where the step left the
    /// weight alone).
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
            along = ((diff & alongLanes) * ONE_OF_32) >> 224;
            // Every other move counts against, the moves of weights the step left alone included:
            // an update cannot hide its push in the weights the guard has no direction for.
            against = ((diff * ONE_OF_32) >> 224) - along;
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

    // ---------------------------------------------------------------- kernels of the round pipeline
    // The loops below run once per word per client: written in assembly (via-IR re-reads
    // calldata inside Solidity loops), each against the reference functions above, which the
    // tests hold them to.

    // Masks over the 16 wire lanes: the top bit of each, the other fifteen, and 1 in each.
    uint256 private constant TOP16 = 0x8000800080008000800080008000800080008000800080008000800080008000;
    uint256 private constant LOW15 = 0x7FFF7FFF7FFF7FFF7FFF7FFF7FFF7FFF7FFF7FFF7FFF7FFF7FFF7FFF7FFF7FFF;
    uint256 private constant ONE16 = 0x0001000100010001000100010001000100010001000100010001000100010001;

    /// @notice Every lane of `word` shifted from offset binary to `q + maxAbs`, lane-parallel:
    /// `z = (u + 32768 + maxAbs) mod 2**16` (a lane in range lands in `[0, 2 * maxAbs]`).
    /// @param maxAbs16 `maxAbs` in every 16-bit lane (`maxAbs < 2**14`).
    /// @dev Hacker's Delight 2-18 (add without carries between lanes): the low fifteen bits add
    /// with no carry out of the lane (`0x7FFF + maxAbs < 2**16`), and the top bit is the xor of
    /// the top bits (`u`'s and the constant's, which is 1) and the carry into it.
    function shifted(uint256 word, uint256 maxAbs16) internal pure returns (uint256) {
        unchecked {
            return ((word & LOW15) + maxAbs16) ^ (~word & TOP16);
        }
    }

    /// @notice Checks the range of `count` wire words at calldata offset `data` and measures
    /// their L1 distance from the model whose words, `shifted` by `maxAbs`, are at memory `model`.
    /// @param maxAbs16 `maxAbs` in every 16-bit lane; @param spare16 `0x7FFF - 2 * maxAbs` in
    /// every 16-bit lane (`maxAbs < 2**14`).
    /// @return l1 The L1 distance (`l1Distance` summed over the words).
    /// @return inRangeAll Whether every lane of every word lies in `[-maxAbs, maxAbs]`.
    /// @dev All sixteen lanes at once. A lane of `z = shifted(w)` is in range exactly when its top
    /// bit is clear and `(z & 0x7FFF) + spare` does not reach it (`z <= 2 * maxAbs`); the top bits
    /// of every word are or-ed together and looked at once, after the loop. Between two in-range
    /// lanes, `t = (zm | 0x8000) - z` stays within the lane (`|zm - z| < 2**15`): its top bit says
    /// `zm >= z`, and `|zm - z|` is `t`'s low fifteen bits, or their negation where `zm < z`
    /// (`(t ^ 0x7FFF) + 1`). The differences (below 2**15) add into eight 32-bit lanes, each
    /// growing by less than 2**16 a word: `count` below 2**16 cannot overflow a lane; one
    /// horizontal sum at the end (`l1Distance`'s trick). Out-of-range words give a meaningless
    /// distance, and the caller reverts on `inRangeAll` first.
    function measureL1(uint256 data, uint256 count, uint256 model, uint256 maxAbs16, uint256 spare16)
        internal
        pure
        returns (uint256 l1, bool inRangeAll)
    {
        assembly ("memory-safe") {
            let end := add(data, shl(5, count))
            let acc := 0
            let failed := 0
            for {} lt(data, end) {
                data := add(data, 0x20)
                model := add(model, 0x20)
            } {
                let w := calldataload(data)
                let z := xor(add(and(w, LOW15), maxAbs16), and(not(w), TOP16))
                failed := or(failed, or(z, add(and(z, LOW15), spare16)))
                let t := sub(or(mload(model), TOP16), z)
                let below := xor(and(shr(15, t), ONE16), ONE16) // 1 where zm < z
                let d := add(and(xor(t, mul(below, 0x7FFF)), LOW15), below)
                acc := add(acc, add(and(d, LOW16_OF_32), and(shr(16, d), LOW16_OF_32)))
            }
            l1 := shr(224, mul(acc, ONE_OF_32))
            inRangeAll := iszero(and(failed, TOP16))
        }
    }

    /// @notice Squared L2 distance of `count` wire words at calldata offset `data` from the words
    /// at memory `model` (`squaredL2Distance` summed over the words).
    function measureSquaredL2(uint256 data, uint256 count, uint256 model) internal pure returns (uint256 total) {
        for (uint256 i = 0; i < count; ++i) {
            uint256 w;
            uint256 m;
            assembly ("memory-safe") {
                w := calldataload(add(data, shl(5, i)))
                m := mload(add(model, shl(5, i)))
            }
            total += squaredL2Distance(m, w);
        }
    }

    /// @notice The rounded weighted mean of `n` updates, as `count` wire words written to memory
    /// `out`: per lane `roundedDiv(sum(weight_e * q_e), weightSum) + OFFSET`, the update `e`
    /// being `count` wire words at calldata offset `mload(sources + 64 e)` with weight
    /// `mload(sources + 64 e + 32)`.
    /// @param laneBits Width of the sum lanes (32, 64 or 128): it must hold `weightSum * 2**16`.
    /// @param weightSum The sum of the weights, above 0.
    /// @dev Sums the offset-binary values `u = q + 32768 >= 0` (so no lane wraps), word by word
    /// over the updates, then rounds. With `h = weightSum / 2`, rounding to nearest with ties away
    /// from zero is `floor((sum + h) / weightSum)` when the mean is not negative and `floor((sum +
    /// h - t) / weightSum)` when it is, where `t` is 1 for an even `weightSum` (a tie then exists
    /// and must go down) and 0 for an odd one (two loops, one per parity): one division a lane; the offset cancels
    /// exactly (`OFFSET * weightSum / weightSum = OFFSET`). 32-bit lanes (the plain mean) sum the
    /// even and the odd wire lanes in two words, whose lanes sit where the wire lanes go back; when
    /// the weights sum to their count, each is 1 (weights are positive) and none is multiplied.
    function averageOf(
        uint256 sources,
        uint256 n,
        uint256 count,
        uint256 laneBits,
        uint256 weightSum,
        uint256 out
    ) internal pure {
        assembly ("memory-safe") {
            let bias := mul(OFFSET, weightSum)
            let half := shr(1, weightSum)
            let tie := iszero(and(weightSum, 1))
            let sourcesEnd := add(sources, shl(6, n))
            let end := add(out, shl(5, count))
            switch laneBits
            case 32 {
                for { let offset := 0 } lt(out, end) {
                    out := add(out, 0x20)
                    offset := add(offset, 0x20)
                } {
                    let even := 0
                    let odd := 0
                    switch eq(weightSum, n)
                    case 1 {
                        // every weight is 1 (the plain mean)
                        for { let e := sources } lt(e, sourcesEnd) { e := add(e, 0x40) } {
                            let w := calldataload(add(mload(e), offset))
                            even := add(even, and(w, LOW16_OF_32))
                            odd := add(odd, and(shr(16, w), LOW16_OF_32))
                        }
                    }
                    default {
                        for { let e := sources } lt(e, sourcesEnd) { e := add(e, 0x40) } {
                            let w := calldataload(add(mload(e), offset))
                            let weight := mload(add(e, 0x20))
                            even := add(even, mul(and(w, LOW16_OF_32), weight))
                            odd := add(odd, mul(and(shr(16, w), LOW16_OF_32), weight))
                        }
                    }
                    let word := 0
                    switch tie
                    case 0 {
                        let s := and(even, 0xFFFFFFFF)
                        word := div(add(s, half), weightSum)
                        s := and(odd, 0xFFFFFFFF)
                        word := or(word, shl(16, div(add(s, half), weightSum)))
                        s := and(shr(32, even), 0xFFFFFFFF)
                        word := or(word, shl(32, div(add(s, half), weightSum)))
                        s := and(shr(32, odd), 0xFFFFFFFF)
                        word := or(word, shl(48, div(add(s, half), weightSum)))
                        s := and(shr(64, even), 0xFFFFFFFF)
                        word := or(word, shl(64, div(add(s, half), weightSum)))
                        s := and(shr(64, odd), 0xFFFFFFFF)
                        word := or(word, shl(80, div(add(s, half), weightSum)))
                        s := and(shr(96, even), 0xFFFFFFFF)
                        word := or(word, shl(96, div(add(s, half), weightSum)))
                        s := and(shr(96, odd), 0xFFFFFFFF)
                        word := or(word, shl(112, div(add(s, half), weightSum)))
                        s := and(shr(128, even), 0xFFFFFFFF)
                        word := or(word, shl(128, div(add(s, half), weightSum)))
                        s := and(shr(128, odd), 0xFFFFFFFF)
                        word := or(word, shl(144, div(add(s, half), weightSum)))
                        s := and(shr(160, even), 0xFFFFFFFF)
                        word := or(word, shl(160, div(add(s, half), weightSum)))
                        s := and(shr(160, odd), 0xFFFFFFFF)
                        word := or(word, shl(176, div(add(s, half), weightSum)))
                        s := and(shr(192, even), 0xFFFFFFFF)
                        word := or(word, shl(192, div(add(s, half), weightSum)))
                        s := and(shr(192, odd), 0xFFFFFFFF)
                        word := or(word, shl(208, div(add(s, half), weightSum)))
                        s := and(shr(224, even), 0xFFFFFFFF)
                        word := or(word, shl(224, div(add(s, half), weightSum)))
                        s := and(shr(224, odd), 0xFFFFFFFF)
                        word := or(word, shl(240, div(add(s, half), weightSum)))
                    }
                    default {
                        let s := and(even, 0xFFFFFFFF)
                        word := div(sub(add(s, half), lt(s, bias)), weightSum)
                        s := and(odd, 0xFFFFFFFF)
                        word := or(word, shl(16, div(sub(add(s, half), lt(s, bias)), weightSum)))
                        s := and(shr(32, even), 0xFFFFFFFF)
                        word := or(word, shl(32, div(sub(add(s, half), lt(s, bias)), weightSum)))
                        s := and(shr(32, odd), 0xFFFFFFFF)
                        word := or(word, shl(48, div(sub(add(s, half), lt(s, bias)), weightSum)))
                        s := and(shr(64, even), 0xFFFFFFFF)
                        word := or(word, shl(64, div(sub(add(s, half), lt(s, bias)), weightSum)))
                        s := and(shr(64, odd), 0xFFFFFFFF)
                        word := or(word, shl(80, div(sub(add(s, half), lt(s, bias)), weightSum)))
                        s := and(shr(96, even), 0xFFFFFFFF)
                        word := or(word, shl(96, div(sub(add(s, half), lt(s, bias)), weightSum)))
                        s := and(shr(96, odd), 0xFFFFFFFF)
                        word := or(word, shl(112, div(sub(add(s, half), lt(s, bias)), weightSum)))
                        s := and(shr(128, even), 0xFFFFFFFF)
                        word := or(word, shl(128, div(sub(add(s, half), lt(s, bias)), weightSum)))
                        s := and(shr(128, odd), 0xFFFFFFFF)
                        word := or(word, shl(144, div(sub(add(s, half), lt(s, bias)), weightSum)))
                        s := and(shr(160, even), 0xFFFFFFFF)
                        word := or(word, shl(160, div(sub(add(s, half), lt(s, bias)), weightSum)))
                        s := and(shr(160, odd), 0xFFFFFFFF)
                        word := or(word, shl(176, div(sub(add(s, half), lt(s, bias)), weightSum)))
                        s := and(shr(192, even), 0xFFFFFFFF)
                        word := or(word, shl(192, div(sub(add(s, half), lt(s, bias)), weightSum)))
                        s := and(shr(192, odd), 0xFFFFFFFF)
                        word := or(word, shl(208, div(sub(add(s, half), lt(s, bias)), weightSum)))
                        s := and(shr(224, even), 0xFFFFFFFF)
                        word := or(word, shl(224, div(sub(add(s, half), lt(s, bias)), weightSum)))
                        s := and(shr(224, odd), 0xFFFFFFFF)
                        word := or(word, shl(240, div(sub(add(s, half), lt(s, bias)), weightSum)))
                    }
                    mstore(out, word)
                }
            }
            default {
                let perWord := shr(4, laneBits)
                let lanes := div(256, laneBits)
                let mask := sub(shl(laneBits, 1), 1)
                let spreadMask := 0
                for { let shift := 0 } lt(shift, 256) { shift := add(shift, laneBits) } {
                    spreadMask := or(spreadMask, shl(shift, 0xFFFF))
                }
                let acc := mload(0x40) // scratch: perWord sum words
                for { let offset := 0 } lt(out, end) {
                    out := add(out, 0x20)
                    offset := add(offset, 0x20)
                } {
                    for { let k := 0 } lt(k, perWord) { k := add(k, 1) } { mstore(add(acc, shl(5, k)), 0) }
                    for { let e := sources } lt(e, sourcesEnd) { e := add(e, 0x40) } {
                        let w := calldataload(add(mload(e), offset))
                        let weight := mload(add(e, 0x20))
                        for { let k := 0 } lt(k, perWord) { k := add(k, 1) } {
                            let q := add(acc, shl(5, k))
                            mstore(q, add(mload(q), mul(and(shr(shl(4, k), w), spreadMask), weight)))
                        }
                    }
                    let word := 0
                    for { let k := 0 } lt(k, perWord) { k := add(k, 1) } {
                        let sums := mload(add(acc, shl(5, k)))
                        let position := shl(4, k)
                        for { let t := 0 } lt(t, lanes) { t := add(t, 1) } {
                            let s := and(sums, mask)
                            sums := shr(laneBits, sums)
                            word := or(word, shl(position, div(sub(add(s, half), and(lt(s, bias), tie)), weightSum)))
                            position := add(position, shl(4, perWord))
                        }
                    }
                    mstore(out, word)
                }
            }
        }
    }

    /// @notice The rounded coordinate-wise trimmed mean of `n` updates (every weight 1), as `count`
    /// wire words written to memory `out`: per lane, the `cut` largest and the `cut` smallest of
    /// the `n` values are left out and the other `n - 2 cut` averaged, `roundedDiv(sum(q), n - 2
    /// cut) + OFFSET`. The update `e` is `count` wire words at calldata offset `mload(sources + 64
    /// e)` (its weight, at `sources + 64 e + 32`, is not read).
    /// @param cut Values left out at each end, with `2 cut < n`.
    /// @dev Lane-parallel (SWAR): each wire word is split in its even and odd lanes, eight 16-bit
    /// offset-binary values in the 32-bit lanes of a word, and each half is worked on whole. A
    /// compare-exchange of two such words takes each lane's minimum and maximum at once (bit 16 of
    /// `(a | 2**16) - b` is set exactly where `a >= b`, and no lane borrows). `cut` passes carry
    /// the running maximum through the values still in play and remove it, `cut` more the
    /// minimum; the removed values are subtracted from the lanes' sums (no lane borrows either:
    /// they are part of the sum). The division rounds as `averageOf` does.
    function trimmedMeanOf(uint256 sources, uint256 n, uint256 count, uint256 cut, uint256 out) internal pure {
        assembly ("memory-safe") {
            // The lanes of `a` and `b` where each is the smaller and the larger.
            function exchange(a, b) -> low, high {
                let mask := mul(and(shr(16, sub(or(a, BIT16_OF_32), b)), ONE_OF_32), 0xFFFF)
                let swap := and(xor(a, b), mask)
                high := xor(b, swap)
                low := xor(a, swap)
            }
            // Removes the `cut` largest and smallest values of each lane of the `n` words at
            // `values` (reordering them) and returns their lane sums.
            function extremes(values, count_, cut_) -> removed {
                let low := values
                let high := add(values, shl(5, count_))
                for { let k := 0 } lt(k, cut_) { k := add(k, 1) } {
                    let carried := mload(low)
                    for { let p := add(low, 0x20) } lt(p, high) { p := add(p, 0x20) } {
                        let smaller, larger := exchange(carried, mload(p))
                        mstore(sub(p, 0x20), smaller)
                        carried := larger
                    }
                    removed := add(removed, carried)
                    high := sub(high, 0x20)
                    carried := mload(low)
                    for { let p := add(low, 0x20) } lt(p, high) { p := add(p, 0x20) } {
                        let smaller, larger := exchange(carried, mload(p))
                        mstore(p, larger)
                        carried := smaller
                    }
                    removed := add(removed, carried)
                    low := add(low, 0x20)
                }
            }
            let kept := sub(n, shl(1, cut))
            let bias := mul(OFFSET, kept)
            let half := shr(1, kept)
            let tie := iszero(and(kept, 1))
            let sourcesEnd := add(sources, shl(6, n))
            let end := add(out, shl(5, count))
            let evens := mload(0x40) // scratch: the even halves, then the odd ones
            let odds := add(evens, shl(5, n))
            for { let offset := 0 } lt(out, end) {
                out := add(out, 0x20)
                offset := add(offset, 0x20)
            } {
                let evenSum := 0
                let oddSum := 0
                let p := 0
                for { let e := sources } lt(e, sourcesEnd) { e := add(e, 0x40) } {
                    let w := calldataload(add(mload(e), offset))
                    let even := and(w, LOW16_OF_32)
                    let odd := and(shr(16, w), LOW16_OF_32)
                    mstore(add(evens, p), even)
                    mstore(add(odds, p), odd)
                    evenSum := add(evenSum, even)
                    oddSum := add(oddSum, odd)
                    p := add(p, 0x20)
                }
                evenSum := sub(evenSum, extremes(evens, n, cut))
                oddSum := sub(oddSum, extremes(odds, n, cut))
                let word := 0
                for { let shift := 0 } lt(shift, 256) { shift := add(shift, 32) } {
                    let s := and(shr(shift, evenSum), 0xFFFFFFFF)
                    word := or(word, shl(shift, div(sub(add(s, half), and(lt(s, bias), tie)), kept)))
                    s := and(shr(shift, oddSum), 0xFFFFFFFF)
                    word := or(word, shl(add(shift, 16), div(sub(add(s, half), and(lt(s, bias), tie)), kept)))
                }
                mstore(out, word)
            }
        }
    }

    /// @notice Bounds the step of a new segment, lane by lane, in place: each weight of the
    /// `count` words at memory `next` is clamped to within `maxStep` of the current model's
    /// (`current`) and within `maxDrift` of the checkpoint's (`checkpoint`); a bound of 0 is off.
    /// @return clamped The number of weights that were moved back.
    /// @dev The two intervals always meet (the current model lies within `maxDrift` of the
    /// checkpoint: it was clamped so, or it is the checkpoint), and they lie within the weights'
    /// range whenever the new weight does, so the result stays a valid weight.
    function clampStep(uint256 next, uint256 current, uint256 checkpoint, uint256 count, uint256 maxStep, uint256 maxDrift)
        internal
        pure
        returns (uint256 clamped)
    {
        assembly ("memory-safe") {
            let noStep := iszero(maxStep)
            let noDrift := iszero(maxDrift)
            for { let j := 0 } lt(j, count) { j := add(j, 1) } {
                let offset := shl(5, j)
                let n := mload(add(next, offset))
                let o := mload(add(current, offset))
                let k := mload(add(checkpoint, offset))
                let word := 0
                for { let shift := 0 } lt(shift, 256) { shift := add(shift, 16) } {
                    let v := and(shr(shift, n), 0xFFFF)
                    let low := 0
                    let high := 0xFFFF
                    if iszero(noStep) {
                        let a := and(shr(shift, o), 0xFFFF)
                        if gt(a, maxStep) { low := sub(a, maxStep) }
                        high := add(a, maxStep)
                    }
                    if iszero(noDrift) {
                        let b := and(shr(shift, k), 0xFFFF)
                        if gt(b, maxDrift) { if gt(sub(b, maxDrift), low) { low := sub(b, maxDrift) } }
                        if lt(add(b, maxDrift), high) { high := add(b, maxDrift) }
                    }
                    if lt(v, low) {
                        v := low
                        clamped := add(clamped, 1)
                    }
                    if gt(v, high) {
                        v := high
                        clamped := add(clamped, 1)
                    }
                    word := or(word, shl(shift, v))
                }
                mstore(add(next, offset), word)
            }
        }
    }

    /// @notice The weight cap that keeps every one of `weights` at most `shareBps` basis points of
    /// their capped total: the largest weights are lowered to a common cap `T` with
    /// `T = floor(shareBps * U / (10000 - shareBps * c))`, `c` the number of weights capped and `U`
    /// the sum of the others, for the smallest `c` whose uncapped weights all fit under `T`. When no
    /// `c` works (`shareBps * n < 10000`: even equal weights hold more), the smallest weight: every
    /// weight becomes equal. Returns at least the largest weight when nothing needs capping.
    /// @dev Sorts a copy (insertion sort: a round has at most `targetSubmissions` updates).
    function shareCap(uint256[] memory weights, uint256 shareBps) internal pure returns (uint256) {
        uint256 n = weights.length;
        if (n == 0) return 0;
        uint256[] memory sorted = new uint256[](n);
        uint256 total = 0;
        for (uint256 i = 0; i < n; ++i) {
            uint256 w = weights[i];
            total += w;
            uint256 j = i;
            while (j > 0 && sorted[j - 1] < w) {
                sorted[j] = sorted[j - 1];
                --j;
            }
            sorted[j] = w;
        }
        uint256 capped = 0; // the sum of the c largest
        for (uint256 c = 0; c < n; ++c) {
            if (shareBps * c >= 10_000) break;
            uint256 cap = (shareBps * (total - capped)) / (10_000 - shareBps * c);
            if (sorted[c] <= cap) return c == 0 ? sorted[0] : cap;
            capped += sorted[c];
        }
        return sorted[n - 1];
    }

    /// @notice Lane-wise `a - b` modulo `2**laneBits`, with no borrow between lanes.
    /// @param highBits the top bit of every lane.
    /// @dev Hacker's Delight 2-18: subtract the lanes with their top bits set in `a` and cleared
    /// in `b` (no borrow can leave a lane), then set each top bit to the xor of the two top bits
    /// and the borrow into it.
    function subLanes(uint256 a, uint256 b, uint256 highBits) internal pure returns (uint256) {
        unchecked {
            return ((a | highBits) - (b & ~highBits)) ^ ((a ^ ~b) & highBits);
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
