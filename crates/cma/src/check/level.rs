//! The check levels, and the mode byte: what the allocation and free paths
//! must do besides their core work, in one byte so that each call reads one
//! flag. `MODE_FAST` (nothing: the `fast` level), the `MODE_CHECKED` bit
//! (the `default` level: canaries, freed slots wiped and verified on reuse, a
//! quarantine; see `heap::checked`), the `MODE_LIMITS` bit (an allocation
//! limit is set: allocations leave the fast path, see `observe::limits`)
//! and the `MODE_PROFILE` bit (`profile=all`: every block is recorded, see
//! `track::sampling`).
//!
//! `default` is the level in force when nothing is set; the level is chosen
//! once, when cma starts (`CMA_OPTIONS=check=fast`).
//!
//! Each level is a preset of switches (`check::switches`: `canary`, `wipe`,
//! `kind_check`, `large_guard`, `stacks`), which options may override one
//! by one. Blocks take the checked paths (`MODE_CHECKED`) at `default` and
//! `strict`, and at `fast` when a switch is on; each check there asks its
//! switch.
//!
//! `strict` is `default` plus the `stacks` switch and a larger quarantine:
//! with `stacks` the mode byte carries `MODE_PROFILE`, every block is
//! recorded in the live-allocation registry whatever `profile=` says
//! (`track::sampling::refresh`), the stack of each free is kept while the
//! freed block is remembered (`track::registry`), and the recorded stacks
//! are printed in every diagnostic about a block (`check::report`). The
//! switch (`strict()`) is read only off the fast paths.

use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use super::switches::{self, CheckSwitch};
use super::trailer;
use crate::slab::size_class::SMALL_TABLE_MAX;

/// How much checking cma does; see README for what each level costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckLevel {
    /// Ownership, slot-start and double-free checks on every pointer.
    Fast,
    /// The level in force when nothing is set: `Fast`, plus a canary
    /// trailer after each small block, checked on free and realloc; freed
    /// slots wiped to zero, verified still zero when handed out again, and
    /// held back from reuse for a while (a quarantine).
    Default,
    /// The debugging level: `Default`, plus every block's allocation stack,
    /// thread, requested size and time recorded, the stack of each free
    /// kept while the freed block is remembered, a larger quarantine, and
    /// all of it printed in every diagnostic about a block.
    Strict,
}

static MODE: AtomicU8 = AtomicU8::new(MODE_CHECKED);
pub(crate) const MODE_FAST: u8 = 0;
pub(crate) const MODE_CHECKED: u8 = 1;
pub(crate) const MODE_LIMITS: u8 = 2;
/// `profile=all`: every allocation and free leaves the fast paths, to be
/// recorded (`track::sampling`).
pub(crate) const MODE_PROFILE: u8 = 4;
/// Allocation logging is on: every allocation and free leaves the fast
/// paths, to be logged (`observe::alloc_log`).
pub(crate) const MODE_EVENTS: u8 = 8;

impl CheckLevel {
    /// The level's name in `CMA_OPTIONS` (`check=NAME`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            CheckLevel::Fast => "fast",
            CheckLevel::Default => "default",
            CheckLevel::Strict => "strict",
        }
    }
}

/// The mode byte; see the module docs.
#[inline(always)]
pub(crate) fn mode() -> u8 {
    MODE.load(Ordering::Relaxed)
}

/// The allocation fast paths serve requests below this: `SMALL_TABLE_MAX +
/// 1` while the mode is `MODE_FAST`, 0 otherwise (every request, `malloc(0)`
/// too, then takes the path that the mode asks for). One compare against
/// it tells the fast path both that the size is small and that nothing else
/// is on.
static FAST_SIZE_LIMIT: AtomicUsize = AtomicUsize::new(0);

/// The checked level's allocation fast path serves requests below this:
/// `SMALL_TABLE_MAX + 1 - TRAILER` while the mode is `MODE_CHECKED` alone,
/// 0 otherwise. Looked at only when the `fast` level's limit turned the
/// request down, so the `fast` level's path does not pay for it.
static CHECKED_SIZE_LIMIT: AtomicUsize = AtomicUsize::new(SMALL_TABLE_MAX + 1 - trailer::TRAILER);

/// See `CHECKED_SIZE_LIMIT`.
#[inline(always)]
pub(crate) fn checked_size_limit() -> usize {
    CHECKED_SIZE_LIMIT.load(Ordering::Relaxed)
}

/// See `FAST_SIZE_LIMIT`.
#[inline(always)]
pub(crate) fn fast_size_limit() -> usize {
    FAST_SIZE_LIMIT.load(Ordering::Relaxed)
}

/// Turns one `MODE_*` bit on or off.
pub(crate) fn set_mode_bit(bit: u8, on: bool) {
    if on {
        MODE.fetch_or(bit, Ordering::AcqRel);
    } else {
        MODE.fetch_and(!bit, Ordering::AcqRel);
    }
    // Another thread may change another bit meanwhile: store the limit for
    // the mode as it is after the store, whoever stores last.
    loop {
        let mode = MODE.load(Ordering::Acquire);
        let limit = if mode == MODE_FAST {
            SMALL_TABLE_MAX + 1
        } else {
            0
        };
        FAST_SIZE_LIMIT.store(limit, Ordering::Release);
        let checked = if mode == MODE_CHECKED {
            SMALL_TABLE_MAX + 1 - trailer::TRAILER
        } else {
            0
        };
        CHECKED_SIZE_LIMIT.store(checked, Ordering::Release);
        if MODE.load(Ordering::Acquire) == mode {
            break;
        }
    }
}

/// The check level chosen (its switches may be overridden one by one).
pub(crate) fn level() -> CheckLevel {
    match LEVEL.load(Ordering::Relaxed) {
        0 => CheckLevel::Fast,
        2 => CheckLevel::Strict,
        _ => CheckLevel::Default,
    }
}

/// The level chosen, as `CheckLevel as u8` (`Default` until chosen).
static LEVEL: AtomicU8 = AtomicU8::new(CheckLevel::Default as u8);

/// Whether every block's and free's stack is recorded (the `stacks`
/// switch, on at `strict`).
#[inline]
pub(crate) fn strict() -> bool {
    switches::on(CheckSwitch::Stacks)
}

/// Whether something chose the level (an option), as opposed to the level
/// in force by default; `api::init` lets a `GlobalAlloc` type's preference
/// apply only then.
static CHOSEN: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Whether an option chose the level.
pub(crate) fn chosen() -> bool {
    CHOSEN.load(Ordering::Relaxed)
}

pub(crate) fn set_level(level: CheckLevel) {
    CHOSEN.store(true, Ordering::Relaxed);
    LEVEL.store(level as u8, Ordering::Relaxed);
    crate::heap::quarantine::apply_level_defaults(level);
    apply_switches();
}

/// Sets one switch, as an option named it: it overrides the level's
/// preset, whichever was named first.
pub(crate) fn set_switch(switch: CheckSwitch, on: bool) {
    switches::name(switch, on);
    apply_switches();
}

/// Puts the level's switches in force (with those options named) and sets
/// the mode byte from them.
fn apply_switches() {
    let level = level();
    let on = switches::for_level(level);
    if on != 0 {
        trailer::ensure_secret();
    }
    switches::store(on);
    let checked = level != CheckLevel::Fast || on != 0;
    set_mode_bit(MODE_CHECKED, checked);
    // `stacks` records every block whatever `profile=` says.
    crate::track::sampling::refresh();
}

/// Whether blocks carry trailers (the `default` level): the mode byte's
/// trailer bit is the one record of the level.
#[inline(always)]
pub(crate) fn checked() -> bool {
    mode() & MODE_CHECKED != 0
}

/// The bytes every small block gives to its trailer at the level in force.
#[inline(always)]
pub(crate) fn trailer_bytes() -> usize {
    if checked() {
        trailer::TRAILER
    } else {
        0
    }
}
