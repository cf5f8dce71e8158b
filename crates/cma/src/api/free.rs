//! The free entry points: the fast path (an allocated slot of this thread's
//! own slab at the `fast` level, inline), and the path that validates the
//! pointer from scratch and frees anything valid (a remote free, a trailer
//! to check, a large block) or reports what is wrong with it.
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
use crate::heap::{free_local_fast, free_remote_fast, Heap};

/// The engine's free entry. Null is accepted; misuse is reported and aborts.
#[inline(always)]
pub(crate) fn free_with(p: *mut u8, operation: &'static str) {
    if let Some(span) = lookup::span_fast(p as usize) {
        if free_local_fast(span, p as usize) {
            return;
        }
    }
    free_other(p, operation)
}

/// Everything the fast path does not free: another thread's block (its own
/// fast path first), null, a slab with remote frees pending, a trailer to
/// check, a large block, or misuse, which is reported.
// `extern "C"`: cannot unwind, so libcma's `extern "C"` entry points need no
// landing pad around the call and make it a tail call.
#[allow(improper_ctypes_definitions)]
#[inline(never)]
extern "C" fn free_other(p: *mut u8, operation: &'static str) {
    if let Some(span) = lookup::span_fast(p as usize) {
        if free_remote_fast(span, p as usize) {
            return;
        }
    }
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
    // The full lookup (not `span_fast`): a stale page-table entry must read
    // as freed pages, not as some other slab's interior.
    free_slow(heap, p as usize)
}

#[inline(never)]
fn free_slow(heap: &Heap, addr: usize) -> Result<(), CmaError> {
    let found = lookup::find_block(addr)?;
    if let Found::Sampled(_) = found {
        // At every level: its head and slack patterns.
        lookup::live_size(&found)?;
    }
    if level::trailers_enabled() {
        if let Found::Slot { span, .. } = found {
            lookup::live_size(&found)?;
            // SAFETY: `live_size` validated a live slot of this block size.
            unsafe { trailer::junk(addr as *mut u8, span.slot_size()) };
        }
    }
    heap.free_block(found)
}
