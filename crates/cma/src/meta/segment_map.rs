//! The segment map: for any address, "is this ours, and which segment or huge
//! block?" in O(1), without touching the address itself.
//!
//! One word per 4 MiB granule of the 47-bit user address space, in a reserved
//! mapping that the kernel fills lazily (256 MiB of address space, a few
//! pages of memory). Writers hold the page allocator's lock; readers are lock-free.

use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use crate::os::memory::{self, Charge};

pub(crate) const SEGMENT_SHIFT: u32 = 22;
pub(crate) const SEGMENT_SIZE: usize = 1 << SEGMENT_SHIFT;
const ADDRESS_BITS: u32 = 47;
const ENTRIES: usize = 1 << (ADDRESS_BITS - SEGMENT_SHIFT);

/// An entry is 0 (not ours), a `*mut Segment` (tag 0) or a `*mut Span` of a
/// huge block (tag 1).
pub(crate) const TAG_HUGE: usize = 1;

static MAP: AtomicPtr<AtomicUsize> = AtomicPtr::new(null_mut());

/// Reserves the map. Called under the page allocator's lock, before any segment
/// exists. Returns false when the kernel refuses.
pub(crate) fn init() -> bool {
    if !MAP.load(Ordering::Acquire).is_null() {
        return true;
    }
    let p = memory::map(ENTRIES * core::mem::size_of::<usize>(), Charge::Sparse);
    if p.is_null() {
        return false;
    }
    MAP.store(p.cast(), Ordering::Release);
    true
}

#[inline(always)]
pub(crate) fn lookup(addr: usize) -> usize {
    let map = MAP.load(Ordering::Relaxed);
    let index = addr >> SEGMENT_SHIFT;
    if index >= ENTRIES || map.is_null() {
        return 0;
    }
    // SAFETY: index < ENTRIES, inside the reserved map.
    unsafe { (*map.add(index)).load(Ordering::Acquire) }
}

/// `lookup` for a thread that holds a heap: heaps are handed out only once
/// the map exists (`heap::pool::acquire_heap` makes sure of it under the page
/// allocator's lock, which also orders the map's publication before the heap's use), so
/// the map needs no null check here.
#[inline(always)]
pub(crate) fn lookup_with_heap(addr: usize) -> usize {
    let map = MAP.load(Ordering::Relaxed);
    debug_assert!(!map.is_null(), "a heap exists before the segment map");
    let index = addr >> SEGMENT_SHIFT;
    if index >= ENTRIES {
        return 0;
    }
    // SAFETY: index < ENTRIES, inside the reserved map, which exists (above).
    unsafe { (*map.add(index)).load(Ordering::Acquire) }
}

/// Points every granule of `[base, base+bytes)` at `entry` (0 to forget).
/// Caller holds the page allocator's lock.
pub(crate) fn set_range(base: usize, bytes: usize, entry: usize) {
    let map = MAP.load(Ordering::Relaxed);
    debug_assert!(!map.is_null());
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
