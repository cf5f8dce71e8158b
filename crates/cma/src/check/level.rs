//! The check levels, and the mode byte: what the allocation and free fast
//! paths must do besides their core work, in one byte so that each call
//! reads one flag. `MODE_FAST` (nothing), the `MODE_TRAILERS` bit (the
//! `default` level) and the `MODE_LIMITS` bit (an allocation limit is set:
//! allocations leave the fast path, see `observe::limits`).
//!
//! The level is chosen once, when cma starts (`CMA_OPTIONS=check=default`).

use core::sync::atomic::{AtomicU8, Ordering};

use super::trailer;

/// How much checking cma does; see README for what each level costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckLevel {
    /// Ownership, slot-start and double-free checks on every pointer.
    Fast,
    /// `Fast`, plus a canary trailer after each small block, checked on free
    /// and realloc, and junk written over freed slots.
    Default,
}

static MODE: AtomicU8 = AtomicU8::new(MODE_FAST);
pub(crate) const MODE_FAST: u8 = 0;
pub(crate) const MODE_TRAILERS: u8 = 1;
pub(crate) const MODE_LIMITS: u8 = 2;

impl CheckLevel {
    /// The level's name in `CMA_OPTIONS` (`check=NAME`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            CheckLevel::Fast => "fast",
            CheckLevel::Default => "default",
        }
    }
}

/// The mode byte; see the module docs.
#[inline(always)]
pub(crate) fn mode() -> u8 {
    MODE.load(Ordering::Relaxed)
}

/// Turns one `MODE_*` bit on or off.
pub(crate) fn set_mode_bit(bit: u8, on: bool) {
    if on {
        MODE.fetch_or(bit, Ordering::Release);
    } else {
        MODE.fetch_and(!bit, Ordering::Release);
    }
}

/// The check level in force.
pub(crate) fn level() -> CheckLevel {
    if trailers_enabled() {
        CheckLevel::Default
    } else {
        CheckLevel::Fast
    }
}

pub(crate) fn set_level(level: CheckLevel) {
    trailer::ensure_secret();
    set_mode_bit(MODE_TRAILERS, level == CheckLevel::Default);
}

/// Whether blocks carry trailers (the `default` level): the mode byte's
/// trailer bit is the one record of the level.
#[inline(always)]
pub(crate) fn trailers_enabled() -> bool {
    mode() & MODE_TRAILERS != 0
}

/// The bytes every small block gives to its trailer at the level in force.
#[inline(always)]
pub(crate) fn trailer_bytes() -> usize {
    if trailers_enabled() {
        trailer::TRAILER
    } else {
        0
    }
}
