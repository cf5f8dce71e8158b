//! The segment map: for any address, "is this ours, and which segment or huge
//! block?" in O(1), without touching the address itself.
//!
//! One word per 4 MiB granule of the 47-bit user address space, in a reserved
//! mapping that the kernel fills lazily (256 MiB of address space, a few
//! pages of memory). Writers hold the page allocator's lock; readers are
//! lock-free.
//!
//! Until the map exists, `MAP` points at one zero word and `INDEX_MASK` is
//! 0, so a lookup from any thread at any time reads a valid word without a
//! null check: the free fast path runs before cma has initialised too (a
//! thread that has no heap yet may free a foreign pointer).

use core::ptr::addr_of;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use crate::os::memory::{self, Charge};

pub(crate) const SEGMENT_SHIFT: u32 = 22;
pub(crate) const SEGMENT_SIZE: usize = 1 << SEGMENT_SHIFT;
const ADDRESS_BITS: u32 = 47;
const ENTRIES: usize = 1 << (ADDRESS_BITS - SEGMENT_SHIFT);

/// An entry is 0 (not ours), a `*mut Segment` (positive), a huge block's
/// `*mut Span` with the top bit set (`TAG_HUGE`), or `SAMPLED_POOL` for the
/// granules of the sampled blocks' pool (`guarded`): one signed comparison
/// tells the fast path that an entry is a segment.
pub(crate) const TAG_HUGE: usize = 1 << 63;

/// The entry of the sampled blocks' pool: the top bit, as for a huge block,
/// and bit 0, which no descriptor's address has.
pub(crate) const SAMPLED_POOL: usize = TAG_HUGE | 1;

/// The entry of the zero-byte blocks' pool (`guarded::zero`): the top bit
/// and bit 1, which no descriptor's address has either.
pub(crate) const ZERO_POOL: usize = TAG_HUGE | 2;

/// The map before it exists: one entry, 0.
static NO_MAP: AtomicUsize = AtomicUsize::new(0);
static MAP: AtomicPtr<AtomicUsize> = AtomicPtr::new(addr_of!(NO_MAP) as *mut AtomicUsize);
/// `ENTRIES - 1` once the map exists, 0 before. Published after `MAP`.
static INDEX_MASK: AtomicUsize = AtomicUsize::new(0);

/// Reserves the map. Called under the page allocator's lock, before any segment
/// exists. Returns false when the kernel refuses.
pub(crate) fn init() -> bool {
    if INDEX_MASK.load(Ordering::Acquire) != 0 {
        return true;
    }
    let p = memory::map(ENTRIES * core::mem::size_of::<usize>(), Charge::Sparse);
    if p.is_null() {
        return false;
    }
    MAP.store(p.cast(), Ordering::Release);
    INDEX_MASK.store(ENTRIES - 1, Ordering::Release);
    true
}

/// The map entry for `addr`. Addresses at or above 2^47 wrap onto the
/// entry of a lower address: the caller validates the address against
/// what the entry names (a span covers it, or it is reported).
#[inline(always)]
fn entry(addr: usize) -> usize {
    // The mask first: once it is non-zero, the map it was published after
    // is the real one.
    let mask = INDEX_MASK.load(Ordering::Acquire);
    let map = MAP.load(Ordering::Relaxed);
    // SAFETY: the index is at most `mask`, and `MAP` has `mask + 1` entries.
    unsafe { (*map.add((addr >> SEGMENT_SHIFT) & mask)).load(Ordering::Acquire) }
}

/// The entry for `addr`: 0 for an address that is not ours, including
/// every address at or above 2^47.
#[inline(always)]
pub(crate) fn lookup(addr: usize) -> usize {
    if addr >> ADDRESS_BITS != 0 {
        return 0;
    }
    entry(addr)
}

/// The segment table that the map names for `addr`, on the fast path:
/// `None` for anything but a segment (not ours, a huge block). For an
/// address at or above 2^47 it may name the segment of a lower address; the
/// caller's slot check rejects it (see `entry`).
#[inline(always)]
pub(crate) fn segment_fast(addr: usize) -> Option<usize> {
    let e = entry(addr);
    if (e as isize) <= 0 {
        None
    } else {
        Some(e)
    }
}

/// Points every granule of `[base, base+bytes)` at `entry` (0 to forget).
/// Caller holds the page allocator's lock, and the map exists.
pub(crate) fn set_range(base: usize, bytes: usize, entry: usize) {
    let map = MAP.load(Ordering::Relaxed);
    debug_assert!(INDEX_MASK.load(Ordering::Relaxed) != 0);
    let first = base >> SEGMENT_SHIFT;
    let last = (base + bytes - 1) >> SEGMENT_SHIFT;
    for index in first..=last.min(ENTRIES - 1) {
        // SAFETY: index < ENTRIES, inside the reserved map.
        unsafe { (*map.add(index)).store(entry, Ordering::Release) };
    }
}

/// Whether an address is representable in the map at all.
pub(crate) fn in_range(base: usize, bytes: usize) -> bool {
    (base + bytes - 1) >> SEGMENT_SHIFT < ENTRIES
}
