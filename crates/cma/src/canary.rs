//! The check levels, and what the `default` level adds: a trailer after every
//! small block that catches buffer overflows when the block is freed, and junk
//! written over freed slots so that a use-after-free read sees garbage.
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
//! The trailer is checking data, not allocator metadata: the allocator never
//! trusts it for its own state; a damaged trailer only produces a report.
//! The level is chosen once, when cma starts (`CMA_OPTIONS=check=default`).

use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// How much checking cma does; see README for what each level costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckLevel {
    /// Ownership, slot-start and double-free checks on every pointer.
    Fast,
    /// `Fast`, plus a canary trailer after each small block, checked on free
    /// and realloc, and junk written over freed slots.
    Default,
}

static LEVEL: AtomicU8 = AtomicU8::new(0);
static SECRET: AtomicU64 = AtomicU64::new(0);

/// Bytes the trailer takes from every small block at `default`.
pub(crate) const TRAILER: usize = 8;
/// Slack bytes after the caller's data that hold a checked pattern.
const SLACK_CHECKED: usize = 16;
const SLACK_WORD: u64 = 0xCECE_CECE_CECE_CECE;
/// Freed slots are overwritten with this byte, up to `JUNK_MAX` bytes (the
/// start of a block is where stale pointers and vtables live).
const JUNK_WORD: u64 = 0xDFDF_DFDF_DFDF_DFDF;
const JUNK_MAX: usize = 128;

/// The check level in force.
pub fn check_level() -> CheckLevel {
    crate::global::ensure_init();
    if enabled() {
        CheckLevel::Default
    } else {
        CheckLevel::Fast
    }
}

pub(crate) fn set_level(level: CheckLevel) {
    if SECRET.load(Ordering::Relaxed) == 0 {
        SECRET.store(random_secret(), Ordering::Relaxed);
    }
    LEVEL.store(level as u8, Ordering::Relaxed);
    crate::global::update_mode();
}

/// Whether blocks carry trailers (the `default` level).
#[inline(always)]
pub(crate) fn enabled() -> bool {
    LEVEL.load(Ordering::Relaxed) != 0
}

fn random_secret() -> u64 {
    let mut secret = 0u64;
    // SAFETY: getrandom writes at most 8 bytes into `secret`.
    let n = unsafe { libc::getrandom((&mut secret as *mut u64).cast(), 8, libc::GRND_NONBLOCK) };
    if n != 8 || secret == 0 {
        // No entropy yet (very early boot): fall back to address and time.
        secret = (&secret as *const u64 as u64)
            ^ crate::os::now_ms().rotate_left(32)
            ^ 0x9E37_79B9_7F4A_7C15;
    }
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
    // SAFETY: every byte written lies inside the slot.
    unsafe {
        pattern(slot.add(requested), slack.min(SLACK_CHECKED), true);
        let trailer = slot.add(block_size - TRAILER);
        trailer
            .cast::<u32>()
            .write_unaligned(canary(slot as usize, slack as u32));
        trailer.add(4).cast::<u32>().write_unaligned(slack as u32);
    }
}

/// Checks a slot's trailer; returns the requested size it records, or `None`
/// when the trailer or the checked slack was overwritten.
///
/// # Safety
/// `slot` is a live slot of `block_size` bytes armed by `arm`.
pub(crate) unsafe fn verify(slot: *const u8, block_size: usize) -> Option<usize> {
    // SAFETY: the trailer and slack lie inside the slot.
    unsafe {
        let trailer = slot.add(block_size - TRAILER);
        let stored = trailer.cast::<u32>().read_unaligned();
        let slack = trailer.add(4).cast::<u32>().read_unaligned() as usize;
        if slack > block_size - TRAILER || stored != canary(slot as usize, slack as u32) {
            return None;
        }
        let requested = block_size - TRAILER - slack;
        if !pattern(
            slot.add(requested) as *mut u8,
            slack.min(SLACK_CHECKED),
            false,
        ) {
            return None;
        }
        Some(requested)
    }
}

/// Writes (`write`) or checks the slack pattern over `n <= 16` bytes at `p`,
/// with two overlapping loads or stores of the widest size that fits.
///
/// # Safety
/// `[p, p+n)` is inside one slot.
#[inline(always)]
unsafe fn pattern(p: *mut u8, n: usize, write: bool) -> bool {
    debug_assert!(n <= 16);
    // SAFETY: both accesses of each pair lie inside [p, p+n).
    unsafe {
        macro_rules! pair {
            ($t:ty) => {{
                let (a, b) = (
                    p.cast::<$t>(),
                    p.add(n - core::mem::size_of::<$t>()).cast::<$t>(),
                );
                let v = SLACK_WORD as $t;
                if write {
                    a.write_unaligned(v);
                    b.write_unaligned(v);
                    true
                } else {
                    a.read_unaligned() == v && b.read_unaligned() == v
                }
            }};
        }
        match n {
            8..=16 => pair!(u64),
            4..=7 => pair!(u32),
            2..=3 => pair!(u16),
            1 => pair!(u8),
            _ => true,
        }
    }
}

/// Overwrites the start of a slot that is being freed.
///
/// # Safety
/// `slot` is a slot of `block_size` bytes (a multiple of 8) that nobody uses
/// any more.
#[inline(always)]
pub(crate) unsafe fn junk(slot: *mut u8, block_size: usize) {
    let n = block_size.min(JUNK_MAX);
    let pair = (JUNK_WORD as u128) << 64 | JUNK_WORD as u128;
    // 16 bytes a store, and one 8-byte store for an odd word at the end.
    for i in 0..n / 16 {
        // SAFETY: inside the slot; unaligned stores need no alignment.
        unsafe { slot.cast::<u128>().add(i).write_unaligned(pair) };
    }
    if n % 16 != 0 {
        // SAFETY: the last 8 bytes of the first n, inside the slot.
        unsafe { slot.add(n - 8).cast::<u64>().write_unaligned(JUNK_WORD) };
    }
}
