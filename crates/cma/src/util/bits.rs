//! Bit counting where the target's baseline lacks the instruction: the
//! x86-64 baseline has no POPCNT, and without it `u64::count_ones` is a
//! score of instructions. Every x86-64 CPU made since 2008 has it, so it is
//! used when the CPU says so (`count_ones`).

/// The number of set bits of `x`: the POPCNT instruction when the CPU has
/// it (asked once, then read from std's cache of CPU features: no
/// allocation), else the portable sequence.
#[inline(always)]
pub(crate) fn count_ones(x: u64) -> u32 {
    #[cfg(all(target_arch = "x86_64", not(target_feature = "popcnt")))]
    {
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU has POPCNT, which is all the function needs.
            return unsafe { count_ones_popcnt(x) };
        }
    }
    x.count_ones()
}

#[cfg(all(target_arch = "x86_64", not(target_feature = "popcnt")))]
#[target_feature(enable = "popcnt")]
unsafe fn count_ones_popcnt(x: u64) -> u32 {
    x.count_ones()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_agree_with_the_portable_count() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            for v in [x, x & (x >> 3), !x, 0, u64::MAX] {
                assert_eq!(count_ones(v), v.count_ones());
            }
        }
    }
}
