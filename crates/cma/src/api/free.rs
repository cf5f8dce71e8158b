//! The free entry points: the fast path (an allocated slot of this thread's
//! own slab at the `fast` level, inline), and the path that validates the
//! pointer from scratch and frees anything valid (a remote free, a trailer
//! to check, a large block) or reports what is wrong with it.
//!
//! Null is accepted; misuse is reported and aborts, or returned as an error
//! by `try_free` for the checked API.

use super::init::thread_heap;
use crate::check::error::{BlockKind, CmaError};
use crate::check::kind::AllocKind;
use crate::check::level::{self, MODE_CHECKED};
use crate::check::lookup::{self, Found};
use crate::check::report;
use crate::check::switches::{self, CheckSwitch};
use crate::heap::guard::AllocatorGuard;
use crate::heap::profile;
use crate::heap::{free_checked_local_fast, free_local_fast, free_remote_fast, Heap};
use crate::meta::span::Span;
use crate::observe::alloc_log;

/// The engine's free entry for blocks of `kind`'s family (checked at the
/// `default` level). Null is accepted; misuse is reported and aborts.
#[inline(always)]
pub(crate) fn free_with(p: *mut u8, operation: &'static str, kind: AllocKind) {
    if let Some(span) = lookup::span_fast(p as usize) {
        if free_local_fast(span, p as usize) {
            return;
        }
        return free_not_local(p, span, operation, kind);
    }
    free_other(p, operation, kind)
}

/// The fast path's miss with the slab it found: the checked level's free,
/// or another thread's block (their own fast paths first), else the full
/// path.
// `p` first, as in `free`: the fast path keeps it where it came in, with no
// copy to make room for `span`.
#[allow(improper_ctypes_definitions)]
#[inline(never)]
extern "C" fn free_not_local(p: *mut u8, span: &Span, operation: &'static str, kind: AllocKind) {
    if level::mode() == MODE_CHECKED {
        if free_checked_local_fast(span, p as usize, kind) {
            return;
        }
    } else if free_remote_fast(span, p as usize) {
        return;
    }
    if let Err(e) = try_free(p, kind) {
        report::fatal(operation, e);
    }
}

/// Everything the fast path does not free: another thread's block (its own
/// fast path first), null, a slab with remote frees pending, a trailer to
/// check, a large block, or misuse, which is reported.
// `extern "C"`: cannot unwind, so libcma's `extern "C"` entry points need no
// landing pad around the call and make it a tail call.
#[allow(improper_ctypes_definitions)]
#[inline(never)]
extern "C" fn free_other(p: *mut u8, operation: &'static str, kind: AllocKind) {
    if let Some(span) = lookup::span_fast(p as usize) {
        if level::mode() == MODE_CHECKED {
            if free_checked_local_fast(span, p as usize, kind) {
                return;
            }
        } else if free_remote_fast(span, p as usize) {
            return;
        }
    }
    if let Err(e) = try_free(p, kind) {
        report::fatal(operation, e);
    }
}

/// Frees `p` after validating it from scratch, or returns why it cannot;
/// nothing changes then.
pub(super) fn try_free(p: *mut u8, kind: AllocKind) -> Result<(), CmaError> {
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
    free_slow(heap, p as usize, kind)
}

#[inline(never)]
fn free_slow(heap: &Heap, addr: usize, kind: AllocKind) -> Result<(), CmaError> {
    // With `kind_check=0` no block records its family (`alloc_of_kind`):
    // every release is taken as the malloc family's.
    let kind = if switches::on(CheckSwitch::KindCheck) {
        kind
    } else {
        AllocKind::Malloc
    };
    let found = lookup::find_block(addr)?;
    if let Found::Sampled(_) = found {
        // At every level: its head and slack patterns.
        lookup::live_size(&found)?;
    }
    let logged_size = if alloc_log::events_on() {
        lookup::live_size(&found).ok()
    } else {
        None
    };
    // Out of the registry first: once freed, the address may be handed out
    // again at once.
    let taken = profile::freeing(addr, !matches!(found, Found::Slot { .. }));
    let freed = heap.free_block(found, kind);
    if freed.is_err() {
        profile::free_failed(addr, taken);
    } else if let Some(size) = logged_size {
        alloc_log::engine_event("free", addr, size, None);
    }
    freed
}

/// A sized release (`free_sized`, `free_aligned_sized`, the sized and
/// aligned `operator delete`s) of a block of `kind`'s family: at a checked
/// level the size must be the one the block was allocated with and the
/// block must have the
/// alignment; then the block is freed as by `free_with`.
pub(crate) fn free_sized(
    p: *mut u8,
    size: Option<usize>,
    align: usize,
    operation: &'static str,
    kind: AllocKind,
) {
    if !p.is_null() && switches::on(CheckSwitch::KindCheck) {
        if let Err(e) = check_sized(p, size, align) {
            report::fatal(operation, e);
        }
    }
    free_with(p, operation, kind)
}

#[cold]
#[inline(never)]
fn check_sized(p: *mut u8, size: Option<usize>, align: usize) -> Result<(), CmaError> {
    let _guard = AllocatorGuard::enter();
    let found = lookup::find_block(p as usize)?;
    let actual = lookup::live_size(&found)?;
    let block = match found {
        lookup::Found::Slot { span, .. } => lookup::class_block(span, p as usize),
        lookup::Found::Large(span) => lookup::large_block(span),
        lookup::Found::Sampled(slot) => BlockKind::Sampled { size: slot.size() },
        lookup::Found::Zero(_) => BlockKind::ZeroByte,
    };
    // At a checked level `live_size` is the size asked for, large or small.
    if size.is_some_and(|size| size != actual) {
        return Err(CmaError::SizeMismatch {
            addr: p as usize,
            size: size.unwrap_or(0),
            actual,
            block,
        });
    }
    if align > 1 && p as usize % align != 0 {
        return Err(CmaError::AlignMismatch {
            addr: p as usize,
            align,
            block,
        });
    }
    Ok(())
}
