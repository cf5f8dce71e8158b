//! The checks of the checked levels, one switch each: each level is a
//! preset of them (`CMA_OPTIONS`'s `check=`), and a switch named in the
//! options overrides its level's preset whichever comes first
//! (`check=default,wipe=0` and `wipe=0,check=default` are the same).
//!
//! | switch        | fast | default | strict | what it does                                    |
//! |---------------|------|---------|--------|-------------------------------------------------|
//! | `canary`      | off  | on      | on     | a canary after each block, checked at free      |
//! | `wipe`        | off  | on      | on     | freed slots zeroed, verified zero when reused   |
//! | `kind_check`  | off  | on      | on     | mismatched and mis-sized releases reported      |
//! | `large_guard` | off  | on      | on     | large blocks guarded, sealed when freed         |
//! | `stacks`      | off  | off     | on     | every block's and free's stack, in diagnostics  |
//!
//! (The quarantine and the exit-time heap check have their own options,
//! `quarantine`, `quarantine_slots` and `exit_check`.)
//!
//! Any switch on sends blocks down the checked paths (`MODE_CHECKED`):
//! `check=fast,canary=1` is the fast level's preset plus canaries (with the
//! trailer, which records the requested size). There each check asks its
//! switch, one load of one byte. Like the level, the switches are chosen
//! before the first allocation.

use core::sync::atomic::{AtomicU8, Ordering};

use super::level::CheckLevel;

/// One check of the checked levels (see the module docs for what each
/// level turns on).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CheckSwitch {
    /// `canary`: a canary trailer after each block (and a pattern in its
    /// first 16 bytes of slack), checked when the block is freed or
    /// resized and by the heap check, so that an overflow is reported.
    /// Off, the trailer still records the requested size.
    Canary,
    /// `wipe`: freed slots are zeroed (no data leaks from a freed block),
    /// and a slot handed out again is verified still zero, so that a write
    /// after free is reported. Off, `calloc` zeroes its blocks itself.
    Wipe,
    /// `kind_check`: each block's allocating family is recorded (malloc,
    /// `new`, `new[]`) and a release by another family, or a sized or
    /// aligned release with the wrong size or alignment, is reported.
    KindCheck,
    /// `large_guard`: a large block (128 KiB to 2 MiB) gets a mapping of
    /// its own with a guard page after it, and freed large and huge blocks
    /// are sealed (no access), so that an overflow past a large block's
    /// page or a use after free of either faults.
    LargeGuard,
    /// `stacks`: every block's allocation stack, thread and time, and each
    /// free's, are recorded, and printed in every diagnostic about a block.
    Stacks,
}

impl CheckSwitch {
    /// Every switch, in the order of the table.
    pub const ALL: [CheckSwitch; 5] = [
        CheckSwitch::Canary,
        CheckSwitch::Wipe,
        CheckSwitch::KindCheck,
        CheckSwitch::LargeGuard,
        CheckSwitch::Stacks,
    ];

    /// The switch's key in `CMA_OPTIONS`.
    pub fn name(self) -> &'static str {
        match self {
            CheckSwitch::Canary => "canary",
            CheckSwitch::Wipe => "wipe",
            CheckSwitch::KindCheck => "kind_check",
            CheckSwitch::LargeGuard => "large_guard",
            CheckSwitch::Stacks => "stacks",
        }
    }

    /// The switch named `key` in `CMA_OPTIONS`.
    pub(crate) fn from_name(key: &[u8]) -> Option<CheckSwitch> {
        CheckSwitch::ALL
            .into_iter()
            .find(|s| s.name().as_bytes() == key)
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// The switches each level turns on.
const fn preset(level: CheckLevel) -> u8 {
    const DEFAULT: u8 = CheckSwitch::Canary.bit()
        | CheckSwitch::Wipe.bit()
        | CheckSwitch::KindCheck.bit()
        | CheckSwitch::LargeGuard.bit();
    match level {
        CheckLevel::Fast => 0,
        CheckLevel::Default => DEFAULT,
        CheckLevel::Strict => DEFAULT | CheckSwitch::Stacks.bit(),
    }
}

/// The switches in force: the level's preset, overridden where an option
/// named a switch.
static ON: AtomicU8 = AtomicU8::new(preset(CheckLevel::Default));
/// The switches an option named, and the values it gave them.
static NAMED: AtomicU8 = AtomicU8::new(0);
static NAMED_ON: AtomicU8 = AtomicU8::new(0);

/// Whether `switch` is on.
#[inline(always)]
pub(crate) fn on(switch: CheckSwitch) -> bool {
    ON.load(Ordering::Relaxed) & switch.bit() != 0
}

/// The switches for `level`, with the named ones as named.
pub(crate) fn for_level(level: CheckLevel) -> u8 {
    let named = NAMED.load(Ordering::Relaxed);
    (preset(level) & !named) | (NAMED_ON.load(Ordering::Relaxed) & named)
}

/// Puts `switches` in force (`level::set_level` and `level::set_switch`
/// call it, then set the mode byte from it).
pub(super) fn store(switches: u8) {
    ON.store(switches, Ordering::Relaxed);
}

/// Records an option's value for `switch`; the caller recomputes what is
/// in force.
pub(super) fn name(switch: CheckSwitch, on: bool) {
    NAMED.fetch_or(switch.bit(), Ordering::Relaxed);
    if on {
        NAMED_ON.fetch_or(switch.bit(), Ordering::Relaxed);
    } else {
        NAMED_ON.fetch_and(!switch.bit(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_level_is_a_preset_and_names_round_trip() {
        for s in CheckSwitch::ALL {
            assert_eq!(CheckSwitch::from_name(s.name().as_bytes()), Some(s));
            let on = |level| preset(level) & s.bit() != 0;
            assert!(!on(CheckLevel::Fast), "{s:?} at fast");
            assert!(on(CheckLevel::Strict), "{s:?} at strict");
            assert_eq!(on(CheckLevel::Default), s != CheckSwitch::Stacks);
        }
        assert_eq!(CheckSwitch::from_name(b"canaries"), None);
    }
}
