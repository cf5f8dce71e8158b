//! The allocation entry points: the fast path (a cached slot, inline, for
//! the `fast` level), the `default` level's fast path with its trailer, and
//! the generic path (limits, large blocks, big alignments, errors).
//!
//! C conventions hold: allocation returns null when memory (or an
//! allocation limit) runs out, and blocks are aligned to 16 bytes when they
//! are 16 bytes or larger (8 below).

use core::ptr::{null_mut, NonNull};

use super::init::thread_heap;
use super::small_slot;
use crate::check::error::CmaError;
use crate::check::level::{self, MODE_FAST, MODE_TRAILERS};
use crate::check::trailer::{self, TRAILER};
use crate::heap::guard::AllocatorGuard;
use crate::heap::Heap;
use crate::observe::limits;
use crate::os::PAGE_SIZE;
use crate::pages::pages_for;
use crate::slab::size_class::{class_for, class_of, MAX_SMALL};

/// The engine's allocation entry: `size` bytes at `align` (a power of two).
///
/// The `fast` level's path is inline and calls nothing before it returns;
/// everything else leaves through a tail call, so the hot path saves no
/// registers.
#[inline(always)]
pub(crate) fn alloc(size: usize, align: usize) -> *mut u8 {
    let guard = AllocatorGuard::enter();
    let heap = guard.current_heap();
    if !heap.is_null() && align <= 16 && size <= MAX_SMALL - TRAILER {
        let mode = level::mode();
        if mode == MODE_FAST {
            // SAFETY: the guard's heap belongs to this thread.
            if let Some(p) = unsafe { (*heap).alloc_from_cache(class_of(small_slot(size, align))) }
            {
                return p.as_ptr();
            }
        } else if mode == MODE_TRAILERS {
            guard.hand_over();
            return alloc_with_trailer(size, align);
        }
    }
    guard.hand_over();
    alloc_generic(size, align)
}

/// The allocation fast path at the `default` level: a cached slot with room
/// for the trailer, armed; the generic path when the cache is empty.
#[inline(never)]
fn alloc_with_trailer(size: usize, align: usize) -> *mut u8 {
    let guard = AllocatorGuard::enter();
    let heap = guard.current_heap();
    if !heap.is_null() {
        let class = class_of(small_slot(size + TRAILER, align));
        // SAFETY: the guard's heap belongs to this thread.
        if let Some(p) = unsafe { (*heap).alloc_from_cache(class) } {
            // SAFETY: a fresh slot of the class's size, which holds
            // size + TRAILER bytes.
            unsafe { trailer::arm(p.as_ptr(), class.block_size(), size) };
            return p.as_ptr();
        }
    }
    drop(guard);
    alloc_generic(size, align)
}

#[cold]
#[inline(never)]
fn alloc_generic(size: usize, align: usize) -> *mut u8 {
    let mut guard = AllocatorGuard::enter();
    let heap = thread_heap(&mut guard);
    match alloc_slow(heap, size, align, false) {
        Ok(p) => p.as_ptr(),
        Err(_) => null_mut(),
    }
}

/// Allocation outside the fast path: limits, large blocks, big alignments,
/// errors. The caller holds a guard.
#[cold]
#[inline(never)]
pub(super) fn alloc_slow(
    heap: *mut Heap,
    size: usize,
    align: usize,
    zero: bool,
) -> Result<NonNull<u8>, CmaError> {
    if !align.is_power_of_two() || align > isize::MAX as usize / 2 {
        return Err(CmaError::InvalidAlignment { align });
    }
    if size > isize::MAX as usize - align {
        return Err(CmaError::OutOfMemory { size });
    }
    if heap.is_null() {
        return Err(CmaError::OutOfMemory { size });
    }
    // SAFETY: the caller's guard heap belongs to this thread.
    let heap = unsafe { &*heap };
    let trailer = level::trailer_bytes();
    let class = class_for(size + trailer, align);
    if limits::active() {
        let usable = match class {
            Some(c) => c.block_size(),
            None => pages_for(size) * PAGE_SIZE,
        };
        limits::check(size, usable)?;
    }
    let p = match class {
        Some(class) => {
            let p = heap.alloc_small(class);
            if !p.is_null() {
                let bs = class.block_size();
                if zero {
                    // SAFETY: a fresh block of `bs` bytes.
                    unsafe { core::ptr::write_bytes(p, 0, bs - trailer) };
                }
                if trailer != 0 {
                    // SAFETY: a fresh slot of `bs` bytes; size + trailer <= bs.
                    unsafe { trailer::arm(p, bs, size) };
                }
            }
            p
        }
        None => heap.alloc_large(size, align, zero),
    };
    NonNull::new(p).ok_or(CmaError::OutOfMemory { size })
}

/// Allocates zeroed memory.
#[inline]
pub(crate) fn alloc_zeroed(size: usize, align: usize) -> *mut u8 {
    let mut guard = AllocatorGuard::enter();
    let heap = thread_heap(&mut guard);
    alloc_slow(heap, size, align, true).map_or(null_mut(), NonNull::as_ptr)
}
