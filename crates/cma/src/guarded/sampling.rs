//! How often a block is sampled: `sample=N` makes about one small
//! allocation in N a sampled block (0: none), the gaps between samples
//! drawn at random, uniform in `[1, 2N-1]` (mean N), from a generator each
//! heap keeps, so that no allocation pattern of the program lines up with
//! them. `sample_seed=S` makes the draws repeat from run to run (each new
//! heap takes the next seed of the sequence S starts).
//!
//! Where the countdown runs: never on the allocation fast path. A heap
//! counts allocations when its refill loads a cache (every slot loaded will
//! be handed out by an allocation of that class), so the fast path pays
//! nothing. When the countdown ends among the slots of a load, the refill
//! loads only the slots before it and marks the class due; the class's
//! next refill, whose own allocation is the one the countdown reached,
//! serves it from the pool (`heap::sample`). So the sampled allocation is
//! not merely one that happened to meet a refill: its class is drawn in
//! proportion to the class's allocations (the slots its loads cover), and
//! its place among them is uniform (the countdown's), whatever the
//! program's allocation pattern. Blocks above a page, which sampling does
//! not serve, do not count.

use core::cell::Cell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::os::process;

/// The sampling rate when `sample` does not say: about one small
/// allocation in this many is a sampled block.
pub const DEFAULT_RATE: u64 = 32768;

static RATE: AtomicU64 = AtomicU64::new(DEFAULT_RATE);
/// The seed of the next heap's generator, once drawn or set.
static SEED: AtomicU64 = AtomicU64::new(0);
static SEEDED: AtomicBool = AtomicBool::new(false);

/// The countdown of a heap that samples nothing.
pub(crate) const NEVER: u64 = u64::MAX;

pub(crate) fn set_rate(rate: u64) {
    RATE.store(rate, Ordering::Relaxed);
}

pub(crate) fn rate() -> u64 {
    RATE.load(Ordering::Relaxed)
}

pub(crate) fn set_seed(seed: u64) {
    SEED.store(seed, Ordering::Relaxed);
    SEEDED.store(true, Ordering::Release);
}

/// A seed for a new heap's generator: the next of the sequence that
/// `sample_seed` (or, without it, the kernel's entropy) starts.
pub(crate) fn heap_seed() -> u64 {
    if !SEEDED.load(Ordering::Acquire) {
        let seed = process::random_u64().unwrap_or(0x2545_F491_4F6C_DD1D);
        if SEEDED
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            SEED.store(seed, Ordering::Relaxed);
        }
    }
    let n = SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    // splitmix64's finaliser: neighbouring seeds give unrelated streams.
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) | 1
}

/// Allocations until the next sampled one, drawn from `state` (a heap's
/// generator): uniform in `[1, 2N-1]`, or `NEVER` when sampling is off.
pub(crate) fn next_countdown(state: &Cell<u64>) -> u64 {
    let rate = rate();
    if rate == 0 {
        return NEVER;
    }
    // xorshift64
    let mut x = state.get();
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    state.set(x);
    1 + x % (2 * rate - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_average_the_rate_and_stay_in_range() {
        let state = Cell::new(12345);
        set_rate(1000);
        let n = 100_000;
        let mut sum = 0u64;
        for _ in 0..n {
            let c = next_countdown(&state);
            assert!((1..=1999).contains(&c));
            sum += c;
        }
        let mean = sum as f64 / n as f64;
        assert!((mean - 1000.0).abs() < 15.0, "mean gap {mean}");
        set_rate(1);
        assert_eq!(next_countdown(&state), 1);
        set_rate(0);
        assert_eq!(next_countdown(&state), NEVER);
        set_rate(DEFAULT_RATE);
    }
}
