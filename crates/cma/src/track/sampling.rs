//! Which blocks the live-allocation registry (`registry`) records, and
//! with what weight:
//! `profile=off` (the default: none, and the fast paths pay nothing),
//! `profile=sample` (about one block per `profile_rate` bytes allocated,
//! 512 KiB by default, with weights that make every per-site sum an
//! unbiased estimate) or `profile=all` (every block, exact).
//!
//! Sampling: each heap keeps a countdown of bytes to its next sample,
//! drawn from an exponential distribution (mean `profile_rate`), and
//! advances it where it already counts (`heap::profile`): when a refill loads a cache (each
//! slot loaded will be handed out, so its block size counts), and at each
//! large block (`heap::profile`). The sample point thus falls on each byte
//! allocated with the same small chance, whatever the allocation pattern,
//! and a block of `b` bytes is sampled with probability
//! `1 - exp(-b / rate)`; a sampled block stands for the inverse of that
//! (its weight). A sampled small block is served from whole pages, as a
//! large block (jemalloc's and tcmalloc's samplers do the same): so its
//! free takes the large blocks' path, which looks it up, and the free fast
//! paths never look at the registry. It counts as a large block in the
//! statistics.
//!
//! Recording every block: `profile=all` sets the `MODE_PROFILE` bit of the
//! mode byte, which sends every allocation past the fast paths (as an
//! allocation limit does), and tags the owner words of the heaps' slabs
//! (`Heap::owner_token`), which sends every free past them too.
//!
//! Start-up: blocks allocated before the program's own code runs (by the
//! loader and the C library, before the engine's constructor) are recorded
//! at sites marked as such, so that a leak report can put them apart.

use core::cell::Cell;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use super::registry;
use crate::check::level::{self, MODE_PROFILE};

/// What `profile=` chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileMode {
    /// No registry (the default).
    Off,
    /// About one block per `profile_rate` bytes, weighted.
    Sample,
    /// Every block.
    All,
}

impl ProfileMode {
    /// The name `profile=` takes.
    pub fn name(self) -> &'static str {
        match self {
            ProfileMode::Off => "off",
            ProfileMode::Sample => "sample",
            ProfileMode::All => "all",
        }
    }
}

/// The mean number of bytes between samples when `profile_rate` does not
/// say: 512 KiB, jemalloc's and tcmalloc's default.
pub const DEFAULT_PROFILE_RATE: u64 = 512 << 10;

static MODE: AtomicU8 = AtomicU8::new(0);
static RATE: AtomicU64 = AtomicU64::new(DEFAULT_PROFILE_RATE);
/// Set by the engine's constructor: the program's own code runs now.
static STARTED: AtomicBool = AtomicBool::new(false);

/// The countdown of a heap that samples nothing.
pub(crate) const NEVER: u64 = u64::MAX;

/// The mode in force.
#[inline(always)]
pub(crate) fn mode() -> ProfileMode {
    match MODE.load(Ordering::Relaxed) {
        0 => ProfileMode::Off,
        1 => ProfileMode::Sample,
        _ => ProfileMode::All,
    }
}

/// Whether the registry records anything.
#[inline(always)]
pub(crate) fn on() -> bool {
    MODE.load(Ordering::Relaxed) != 0
}

/// What `profile=` asked for; `MODE` is what is in force, which the
/// `strict` level makes `all` whatever was asked (`refresh`).
static REQUESTED: AtomicU8 = AtomicU8::new(0);

fn encode(mode: ProfileMode) -> u8 {
    match mode {
        ProfileMode::Off => 0,
        ProfileMode::Sample => 1,
        ProfileMode::All => 2,
    }
}

/// The mode `profile=` asked for (`mode()` is the one in force).
pub(crate) fn requested_mode() -> ProfileMode {
    match REQUESTED.load(Ordering::Relaxed) {
        0 => ProfileMode::Off,
        1 => ProfileMode::Sample,
        _ => ProfileMode::All,
    }
}

/// Sets the mode asked for (before any heap exists: `options::apply`
/// checks).
pub(crate) fn set_mode(mode: ProfileMode) {
    REQUESTED.store(encode(mode), Ordering::Relaxed);
    refresh();
}

/// Puts the mode in force: the one asked for, or `all` at the `strict`
/// level, whose diagnostics print every block's allocation stack (and whose
/// figures are then exact: a `profile=sample` there gives `all`'s). Called
/// when the mode asked for or the level changes, before any heap exists.
pub(crate) fn refresh() {
    let mode = if level::strict() {
        ProfileMode::All
    } else {
        requested_mode()
    };
    MODE.store(encode(mode), Ordering::Relaxed);
    level::set_mode_bit(MODE_PROFILE, mode == ProfileMode::All);
    if mode != ProfileMode::Off {
        registry::start_clock();
    }
}

/// Sets the mean bytes between samples (at least 1).
pub(crate) fn set_rate(bytes: u64) {
    RATE.store(bytes.max(1), Ordering::Relaxed);
}

/// The mean bytes between samples.
pub(crate) fn rate() -> u64 {
    RATE.load(Ordering::Relaxed)
}

/// Whether the program's own code has not started yet (see the module
/// docs).
pub(crate) fn starting_up() -> bool {
    !STARTED.load(Ordering::Relaxed)
}

extern "C" fn program_starts() {
    STARTED.store(true, Ordering::Relaxed);
}

// The engine's constructor, in whatever links it (the executable, or
// libcma): the loader and the C library have started by then.
#[used]
#[link_section = ".init_array"]
static PROGRAM_STARTS: extern "C" fn() = program_starts;

/// Bytes until a heap's first sample, or `NEVER` when sampling is off,
/// drawn from the heap's generator `state`.
pub(crate) fn next_countdown(state: &Cell<u64>) -> u64 {
    if mode() != ProfileMode::Sample {
        return NEVER;
    }
    // xorshift64, then an exponential draw of mean `rate`.
    let mut x = state.get();
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    state.set(x);
    // Uniform in (0, 1].
    let u = ((x >> 11) + 1) as f64 / (1u64 << 53) as f64;
    let bytes = -(rate() as f64) * u.ln();
    (bytes as u64).max(1)
}

/// The weight of a block sampled when the countdown fell among the `unit`
/// bytes it was counted by: one over the chance that a sample point fell
/// among them.
pub(crate) fn weight(unit: usize) -> f64 {
    let p = -(-(unit as f64) / rate() as f64).exp_m1();
    if p > 0.0 {
        1.0 / p
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countdowns_average_the_rate_and_weights_undo_the_chance() {
        MODE.store(1, Ordering::Relaxed);
        set_rate(1 << 19);
        let state = Cell::new(0x1234_5678_9abc_def1);
        let n = 200_000;
        let sum: f64 = (0..n).map(|_| next_countdown(&state) as f64).sum();
        let mean = sum / n as f64;
        assert!((mean / (1 << 19) as f64 - 1.0).abs() < 0.01, "mean {mean}");
        // A block far larger than the rate is always sampled (weight 1); a
        // small one stands for about rate / size blocks.
        assert!((weight(64 << 20) - 1.0).abs() < 1e-9);
        assert!((weight(64) / ((1 << 19) as f64 / 64.0) - 1.0).abs() < 1e-3);
        MODE.store(0, Ordering::Relaxed);
        assert_eq!(next_countdown(&state), NEVER);
        set_rate(DEFAULT_PROFILE_RATE);
    }
}
