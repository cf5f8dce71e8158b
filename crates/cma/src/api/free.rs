//! The free entry points: the fast path (an allocated slot of this thread's
//! slab at the `fast` level, inline), the rest of the fast path out of line
//! (a trailer to check, a remote free), and the generic path, which finds
//! the block from scratch and reports what is wrong with the pointer.
//!
//! Null is accepted; misuse is reported and aborts, or returned as an error
//! by `try_free` for the checked API.

use super::init::thread_heap;
use crate::check::error::CmaError;
use crate::check::level;
use crate::check::lookup::{self, Found};
use crate::check::report;
use crate::check::trailer;
use crate::heap::guard::AllocatorGuard;
use crate::heap::{FastFree, Heap};
use crate::meta::span::Span;

/// The engine's free entry. Null is accepted; misuse is reported and aborts.
#[inline(always)]
pub(crate) fn free_with(p: *mut u8, operation: &str) {
    let guard = AllocatorGuard::enter();
    let heap = guard.current_heap();
    if !heap.is_null() {
        if let Some(slab) = lookup::slab_of(p as usize) {
            // SAFETY: the guard's heap belongs to this thread.
            match unsafe { (*heap).free_fast(slab, p as usize) } {
                FastFree::Done => return,
                FastFree::Other(index) => {
                    return free_checked_or_remote(heap, slab, p, index, operation)
                }
                FastFree::Invalid => {}
            }
        }
    }
    guard.hand_over();
    free_generic(p, operation)
}

/// The rest of the free fast path (a trailer to check, a remote free), out
/// of line; anything it cannot free goes to the full path.
#[inline(never)]
fn free_checked_or_remote(heap: *mut Heap, slab: &Span, p: *mut u8, index: usize, operation: &str) {
    // SAFETY: the caller's guard heap belongs to this thread.
    if !unsafe { (*heap).free_allocated_slot(slab, p as usize, index) } {
        free_generic(p, operation);
    }
}

#[cold]
#[inline(never)]
fn free_generic(p: *mut u8, operation: &str) {
    if let Err(e) = try_free(p) {
        report::fatal(operation, e);
    }
}

/// Frees `p` after validating it from scratch, or returns why it cannot;
/// nothing changes then.
pub(super) fn try_free(p: *mut u8) -> Result<(), CmaError> {
    if p.is_null() {
        return Ok(());
    }
    let mut guard = AllocatorGuard::enter();
    let heap = thread_heap(&mut guard);
    if heap.is_null() {
        // No memory even for a heap: keep the block rather than guess.
        return Ok(());
    }
    // SAFETY: the guard's heap belongs to this thread.
    let heap = unsafe { &*heap };
    // The full lookup (not `slab_of`): a stale page-table entry must read as
    // freed pages, not as some other slab's interior.
    free_slow(heap, p as usize)
}

#[cold]
#[inline(never)]
fn free_slow(heap: &Heap, addr: usize) -> Result<(), CmaError> {
    let found = lookup::find_block(addr)?;
    if level::trailers_enabled() {
        if let Found::Slot { span, .. } = found {
            lookup::live_size(&found)?;
            // SAFETY: `live_size` validated a live slot of this block size.
            unsafe { trailer::junk(addr as *mut u8, span.slot_size()) };
        }
    }
    heap.free_block(found)
}
