//! The canary trailer of the checked levels: a trailer after every small
//! block that catches buffer overflows when the block is freed or resized
//! (the rest of the level, wiping and quarantine, is `heap::checked`).
//!
//! Slot layout at `default` (block size `bs`):
//!
//! ```text
//! [0, n)            the caller's n bytes
//! [n, bs-8)         slack, its first 16 bytes (at most) filled with 0xCE
//! [bs-8, bs-4)      canary: a hash of a per-process secret, the slot address
//!                   and the slack length
//! [bs-4, bs)        the slack length bs-8-n
//! ```
//!
//! With `canary=0` (`check::switches`) the trailer records the slack length
//! only, and nothing is checked.
//!
//! The trailer is checking data, not allocator metadata: the allocator never
//! trusts it for its own state; a damaged trailer only produces a report.

use core::sync::atomic::{AtomicU64, Ordering};

use super::error::Requested;
use super::switches::{self, CheckSwitch};
use crate::os::{clock, process};

static SECRET: AtomicU64 = AtomicU64::new(0);

/// Bytes the trailer takes from every small block at `default`.
pub(crate) const TRAILER: usize = 8;
/// Slack bytes after the caller's data that hold a checked pattern.
const SLACK_CHECKED: usize = 16;
const SLACK_WORD: u64 = 0xCECE_CECE_CECE_CECE;

/// Makes sure the per-process secret exists before any trailer is armed.
pub(crate) fn ensure_secret() {
    if SECRET.load(Ordering::Relaxed) == 0 {
        SECRET.store(random_secret(), Ordering::Relaxed);
    }
}

fn random_secret() -> u64 {
    let secret = match process::random_u64() {
        Some(secret) if secret != 0 => secret,
        // No entropy yet (very early boot): fall back to address and time.
        _ => {
            let local = 0u8;
            (&local as *const u8 as u64) ^ clock::now_ms().rotate_left(32) ^ 0x9E37_79B9_7F4A_7C15
        }
    };
    secret | 1
}

fn canary(slot: usize, slack: u32) -> u32 {
    let mut x = SECRET.load(Ordering::Relaxed) ^ (slot as u64) ^ ((slack as u64) << 40);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x as u32
}

/// Writes the trailer of a slot of `block_size` bytes holding `requested`.
///
/// # Safety
/// `slot` is a live slot of `block_size` bytes and `requested <= block_size - TRAILER`.
pub(crate) unsafe fn arm(slot: *mut u8, block_size: usize, requested: usize) {
    debug_assert!(requested + TRAILER <= block_size);
    let slack = block_size - TRAILER - requested;
    if !switches::on(CheckSwitch::Canary) {
        // SAFETY: the trailer lies inside the slot.
        unsafe { record_slack(slot, block_size, slack) };
        return;
    }
    let (second, _, _) = slack_windows(block_size, requested);
    // SAFETY: both pattern words and the trailer lie inside the slot. The
    // pattern goes first: where the slack is shorter than 16 bytes it spills
    // into the trailer, which then overwrites it.
    unsafe {
        slot.add(requested)
            .cast::<u64>()
            .write_unaligned(SLACK_WORD);
        slot.add(second).cast::<u64>().write_unaligned(SLACK_WORD);
        let trailer = slot.add(block_size - TRAILER);
        trailer
            .cast::<u32>()
            .write_unaligned(canary(slot as usize, slack as u32));
        trailer.add(4).cast::<u32>().write_unaligned(slack as u32);
    }
}

/// With `canary=0`: the trailer records the slack length only (the
/// requested size, for `malloc_usable_size` and `realloc`), with a zero
/// canary.
///
/// # Safety
/// `slot` is a live slot of `block_size` bytes.
#[cold]
unsafe fn record_slack(slot: *mut u8, block_size: usize, slack: usize) {
    // SAFETY: the caller's.
    unsafe {
        let trailer = slot.add(block_size - TRAILER);
        trailer.cast::<u32>().write_unaligned(0);
        trailer.add(4).cast::<u32>().write_unaligned(slack as u32);
    }
}

/// The two 8-byte words that hold the checked slack of a slot of
/// `block_size` bytes holding `requested`: the first at `requested`, the
/// second at the returned offset (the next 8 bytes, or the trailer when the
/// slack is shorter than 8), and the masks of their bytes that are slack (the
/// first `SLACK_CHECKED` bytes at most). Branch-free: the slack length is
/// different for every request, so branches on it would be mispredicted.
#[inline(always)]
fn slack_windows(block_size: usize, requested: usize) -> (usize, u64, u64) {
    let slack = block_size - TRAILER - requested;
    let second = (requested + 8).min(block_size - TRAILER);
    let low_bytes = |n: usize| u64::MAX.checked_shr((64 - 8 * n) as u32).unwrap_or(0);
    let first_mask = low_bytes(slack.min(8));
    let second_mask = low_bytes(slack.min(SLACK_CHECKED).saturating_sub(8));
    (second, first_mask, second_mask)
}

/// Checks a slot's trailer; returns the requested size it records, or `None`
/// when the trailer or the checked slack was overwritten.
///
/// # Safety
/// `slot` is a live slot of `block_size` bytes armed by `arm`.
pub(crate) unsafe fn verify(slot: *const u8, block_size: usize) -> Option<usize> {
    // SAFETY: the trailer and the two slack words lie inside the slot, and
    // `arm` wrote all of them.
    unsafe {
        let trailer = slot.add(block_size - TRAILER);
        let stored = trailer.cast::<u32>().read_unaligned();
        let slack = trailer.add(4).cast::<u32>().read_unaligned() as usize;
        if slack > block_size - TRAILER {
            return None;
        }
        let requested = block_size - TRAILER - slack;
        if !switches::on(CheckSwitch::Canary) {
            // Nothing to check (`record_slack`).
            return Some(requested);
        }
        if stored != canary(slot as usize, slack as u32) {
            return None;
        }
        let (second, first_mask, second_mask) = slack_windows(block_size, requested);
        let first = slot.add(requested).cast::<u64>().read_unaligned();
        let second = slot.add(second).cast::<u64>().read_unaligned();
        if ((first ^ SLACK_WORD) & first_mask) | ((second ^ SLACK_WORD) & second_mask) != 0 {
            return None;
        }
        Some(requested)
    }
}

/// What a slot's trailer says of the size it was requested with, for a
/// report: the size while the trailer itself is intact (its canary still
/// matches its slack length, though the slack pattern before it may have
/// been overwritten: a small overflow), else `Overwritten`.
///
/// # Safety
/// `slot` is a live slot of `block_size` bytes armed by `arm`.
#[cold]
pub(crate) unsafe fn recorded_size(slot: *const u8, block_size: usize) -> Requested {
    // SAFETY: the trailer lies inside the slot (the caller's).
    let (stored, slack) = unsafe {
        let trailer = slot.add(block_size - TRAILER);
        (
            trailer.cast::<u32>().read_unaligned(),
            trailer.add(4).cast::<u32>().read_unaligned() as usize,
        )
    };
    let intact = slack <= block_size - TRAILER
        && (!switches::on(CheckSwitch::Canary) || stored == canary(slot as usize, slack as u32));
    if intact {
        Requested::Bytes(block_size - TRAILER - slack)
    } else {
        Requested::Overwritten
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every block size up to 256 B and every request that fits: the armed
    /// slot verifies with its requested size, a change to any checked slack
    /// byte (the first 16 after the request, at most) or to the trailer is
    /// caught, and the caller's bytes are never part of the check.
    #[test]
    fn every_checked_slack_byte_and_no_data_byte_is_guarded() {
        ensure_secret();
        let mut buf = [0u8; 256];
        for bs in (8..=256).step_by(8) {
            for requested in 0..=bs - TRAILER {
                let slot = buf.as_mut_ptr();
                buf[..bs].fill(0x11);
                // SAFETY: `buf` holds `bs` bytes; requested + TRAILER <= bs.
                unsafe { arm(slot, bs, requested) };
                // SAFETY: armed just above.
                assert_eq!(
                    unsafe { verify(slot, bs) },
                    Some(requested),
                    "bs {bs} n {requested}"
                );
                let slack = bs - TRAILER - requested;
                let checked = requested..requested + slack.min(SLACK_CHECKED);
                for i in 0..bs {
                    let keep = buf[i];
                    buf[i] ^= 0x5a;
                    // SAFETY: as above.
                    let seen = unsafe { verify(buf.as_ptr(), bs) };
                    buf[i] = keep;
                    if checked.contains(&i) || i >= bs - TRAILER {
                        assert_eq!(seen, None, "bs {bs} n {requested}: byte {i} unguarded");
                        // The size survives an overwritten slack pattern,
                        // not an overwritten trailer.
                        buf[i] ^= 0x5a;
                        // SAFETY: as above.
                        let said = unsafe { recorded_size(buf.as_ptr(), bs) };
                        buf[i] = keep;
                        if i < bs - TRAILER {
                            assert_eq!(said, Requested::Bytes(requested), "bs {bs} byte {i}");
                        } else {
                            assert_eq!(said, Requested::Overwritten, "bs {bs} byte {i}");
                        }
                    } else if i < requested {
                        assert_eq!(
                            seen,
                            Some(requested),
                            "bs {bs} n {requested}: data byte {i}"
                        );
                    }
                }
            }
        }
    }
}
