//! realloc: the common case of a valid small block with no limit set stays
//! in its slot or moves through the allocation and free fast paths
//! (`realloc_fast`); everything else, errors included, takes `try_realloc`.

use core::ptr::null_mut;

use super::alloc::{alloc, alloc_slow};
use super::init::thread_heap;
use super::small_slot;
use crate::check::error::CmaError;
use crate::check::kind::AllocKind;
use crate::check::level::{self, MODE_FAST};
use crate::check::lookup::{self, Found};
use crate::check::report;
use crate::check::trailer::{self, TRAILER};
use crate::heap::guard::AllocatorGuard;
use crate::heap::profile;
use crate::observe::alloc_log;
use crate::observe::limits;
use crate::os::PAGE_SIZE;
use crate::pages::pages_for;
use crate::slab::size_class::{class_of, MAX_SMALL};
use crate::track::sampling;

/// Resizes with C `realloc` semantics at `align`; null keeps the old block.
pub(crate) fn realloc_aligned(
    p: *mut u8,
    new_size: usize,
    align: usize,
    operation: &str,
) -> *mut u8 {
    if let Some(q) = realloc_fast(p, new_size, align) {
        return q;
    }
    match try_realloc(p, new_size, align) {
        Ok(p) => p,
        Err(e) if e.is_misuse() => report::fatal(operation, e),
        Err(_) => null_mut(),
    }
}

/// The common realloc of a valid small block at the `fast` level with no
/// limit set: stays in its slot when the new size fits (and uses at least
/// half of it), or moves through the allocation and free fast paths. A
/// checked level's blocks move through its own allocation and free
/// (verified zero, armed, quarantined) in `try_realloc`. `None` sends
/// everything else (and every error) to `try_realloc`, which reports it.
#[inline]
fn realloc_fast(p: *mut u8, new_size: usize, align: usize) -> Option<*mut u8> {
    if align > 16 || new_size > MAX_SMALL || level::mode() != MODE_FAST {
        return None;
    }
    let guard = AllocatorGuard::enter();
    let heap = guard.current_heap();
    if heap.is_null() {
        return None;
    }
    let slab = lookup::slab_of(p as usize)?;
    // SAFETY: the guard's heap belongs to this thread.
    let heap = unsafe { &*heap };
    let bs = heap.live_slot_size(slab, p as usize)?;
    if new_size <= bs && new_size >= bs / 2 {
        return Some(p);
    }
    let target = growth_target(new_size, bs, MAX_SMALL);
    let class = class_of(small_slot(target, align));
    let q = heap.alloc_small(class);
    if q.is_null() {
        return None;
    }
    // SAFETY: `p` holds `bs` bytes of the caller's data, `q` at least
    // `new_size`; distinct blocks.
    unsafe { core::ptr::copy_nonoverlapping(p, q, bs.min(new_size)) };
    let freed = heap.try_free_fast(slab, p as usize);
    debug_assert!(freed, "a slot validated as live could not be freed");
    Some(q)
}

/// The size to allocate when a small block of `old_block` bytes moves to
/// hold `new_size`: a block that grows gets at least a quarter more room, so
/// a buffer grown a little at a time moves about three times per doubling
/// instead of once per size class (eight per doubling). Shrinks and large
/// requests get what they asked for; `cap` bounds the headroom.
#[inline(always)]
fn growth_target(new_size: usize, old_block: usize, cap: usize) -> usize {
    if new_size > old_block {
        new_size.max((old_block + old_block / 4).min(cap))
    } else {
        new_size
    }
}

/// realloc from scratch: validates `p`, resizes in place when the block
/// allows, else moves. On error the old block is intact. Logged as one
/// `realloc` event when allocation logging is on.
pub(super) fn try_realloc(p: *mut u8, new_size: usize, align: usize) -> Result<*mut u8, CmaError> {
    if !alloc_log::events_on() || p.is_null() {
        return try_realloc_unlogged(p, new_size, align);
    }
    // The event at depth 1, as every engine event (a callback that
    // allocates is then nested, and not logged).
    let _guard = AllocatorGuard::enter();
    let r = try_realloc_unlogged(p, new_size, align);
    let q = r.as_ref().map_or(0, |&q| q as usize);
    alloc_log::engine_event("realloc", q, new_size, Some(p as usize));
    r
}

fn try_realloc_unlogged(p: *mut u8, new_size: usize, align: usize) -> Result<*mut u8, CmaError> {
    if p.is_null() {
        let q = alloc(new_size, align);
        return if q.is_null() {
            Err(CmaError::OutOfMemory { size: new_size })
        } else {
            Ok(q)
        };
    }
    let mut guard = AllocatorGuard::enter();
    let heap = thread_heap(&mut guard);
    if heap.is_null() {
        return Err(CmaError::OutOfMemory { size: new_size });
    }
    // SAFETY: the guard's heap belongs to this thread.
    let heap_ref = unsafe { &*heap };
    let found = lookup::find_block(p as usize)?;
    let old_size = lookup::live_size(&found)?;
    if level::checked() {
        // realloc is the malloc family's: a `new` block is a mismatch.
        lookup::check_kind(&found, AllocKind::Malloc)?;
    }
    if limits::active() {
        // In place, a slot keeps its size; a large block grows by whole
        // pages. A move is checked again by `alloc_slow`.
        let growth = match found {
            Found::Slot { .. } | Found::Sampled(_) | Found::Zero(_) => 0,
            Found::Large(span) => (pages_for(new_size) * PAGE_SIZE).saturating_sub(span.bytes()),
        };
        limits::check(new_size, growth)?;
    }
    let trailer = level::trailer_bytes();
    match found {
        Found::Slot { span, .. } => {
            let bs = span.slot_size();
            if new_size <= bs - trailer && new_size >= bs / 2 {
                if trailer != 0 {
                    // SAFETY: a live slot of `bs` bytes; new_size + trailer <= bs.
                    unsafe { trailer::arm(p, bs, new_size) };
                }
                if sampling::on() {
                    profile::resized(p as usize, p as usize, new_size);
                }
                return Ok(p);
            }
        }
        // An arena's large block moves instead (its arena counts its pages).
        Found::Large(span) if span.owner.load(core::sync::atomic::Ordering::Relaxed) == 0 => {
            let q = heap_ref.resize_large(
                span as *const _ as *mut _,
                new_size.saturating_add(trailer),
                align,
            );
            if !q.is_null() {
                if trailer != 0 {
                    // SAFETY: the resized block of `span.bytes()` bytes holds
                    // new_size + TRAILER; its old trailer lies in the data now.
                    unsafe { trailer::arm(q, span.bytes(), new_size) };
                }
                if sampling::on() {
                    profile::resized(p as usize, q as usize, new_size);
                }
                return Ok(q);
            }
        }
        // Right-aligned on its page: it stays only at the same size (and a
        // sufficient alignment); anything else moves.
        Found::Sampled(_) => {
            if new_size == old_size && p as usize % align == 0 {
                return Ok(p);
            }
        }
        // No byte to keep: a new block (another zero-byte one for 0).
        Found::Large(_) | Found::Zero(_) => {}
    }
    // Headroom only without limits: a limit must judge the size asked for.
    let target = match found {
        Found::Slot { span, .. } if !limits::active() => {
            growth_target(new_size, span.slot_size(), MAX_SMALL - TRAILER)
        }
        _ => new_size,
    };
    let q = alloc_slow(heap, target, align, false)?.as_ptr();
    if target != new_size && trailer != 0 {
        if let Some(slab) = lookup::slab_of(q as usize) {
            // SAFETY: `q` is a fresh slot of its slab's size holding at least
            // new_size + TRAILER; its trailer must guard the bytes asked for,
            // not the headroom.
            unsafe { trailer::arm(q, slab.slot_size(), new_size) };
        }
    }
    // SAFETY: both blocks are live and distinct; the copy stays inside both.
    unsafe { core::ptr::copy_nonoverlapping(p, q, old_size.min(new_size)) };
    let large = !matches!(found, Found::Slot { .. });
    let taken = profile::freeing(p as usize, large);
    if let Err(e) = heap_ref.free_block(found, AllocKind::Malloc) {
        profile::free_failed(p as usize, taken);
        return Err(e);
    }
    Ok(q)
}
