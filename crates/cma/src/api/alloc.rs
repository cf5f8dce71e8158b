//! The allocation entry points: the fast path (a cached slot, inline, for
//! the `fast` level), and past it the path that gives the thread a heap,
//! refills (where a heap's sampled block, when due, comes from the guarded
//! pool instead: `heap::sample`), arms the `default` level's trailer, checks
//! limits, and serves large blocks and big alignments.
//!
//! C conventions hold: allocation returns null when memory (or an
//! allocation limit) runs out, and blocks are aligned to 16 bytes when they
//! are 16 bytes or larger (8 below).

use core::ptr::{null_mut, NonNull};

use super::init::thread_heap;
use super::{c_align, small_slot};
use crate::check::error::CmaError;
use crate::check::kind::{set_slot_kind, AllocKind};
use crate::check::level::{self, checked_size_limit, fast_size_limit, MODE_CHECKED, MODE_FAST};
use crate::check::lookup::{self, Found};
use crate::check::switches::{self, CheckSwitch};
use crate::check::trailer::TRAILER;
use crate::guarded::zero;
use crate::heap::guard::{fast_heap, AllocatorGuard};
use crate::heap::profile;
use crate::heap::{ClassState, Heap};
use crate::observe::{alloc_log, limits};
use crate::os::{process, PAGE_SIZE};
use crate::pages::pages_for;
use crate::slab::size_class::{class_for, class_of, SizeClass, MAX_SMALL};
use crate::track::ignored;

/// The engine's allocation entry: `size` bytes at `align` (a power of two).
///
/// The `fast` level's path is inline and calls nothing before it returns;
/// everything else leaves through a tail call, so the hot path saves no
/// registers.
#[inline(always)]
pub(crate) fn alloc(size: usize, align: usize) -> *mut u8 {
    alloc_or(size, align, alloc_other)
}

/// `alloc`, leaving through `other` for everything the fast path does not
/// serve (which is where cma initialises: `CmaFast` asks for its level
/// there, at no cost to the fast path).
#[inline(always)]
pub(crate) fn alloc_or(
    size: usize,
    align: usize,
    other: extern "C" fn(usize, usize) -> *mut u8,
) -> *mut u8 {
    if align <= 8 && size < fast_size_limit() {
        let st = fast_heap().state_for(size);
        return match st.pop() {
            Some(p) => p.as_ptr(),
            None => refill(st, size, 8),
        };
    }
    other(size, align)
}

/// C's `malloc`: `alloc(size, c_align(size))`, with the alignment folded
/// into the size-class table.
#[inline(always)]
pub(crate) fn malloc(size: usize) -> *mut u8 {
    if size < fast_size_limit() {
        let st = fast_heap().c_state_for(size);
        return match st.pop() {
            Some(p) => p.as_ptr(),
            None => refill(st, size, c_align(size)),
        };
    }
    alloc_other(size, c_align(size))
}

/// `malloc` for the C library: null with `errno` set to `ENOMEM` on
/// failure, set on the slow paths only, so the fast path stays as short as
/// `malloc`'s and its misses are tail calls.
#[inline(always)]
pub(crate) fn c_malloc(size: usize) -> *mut u8 {
    if size < fast_size_limit() {
        let st = fast_heap().c_state_for(size);
        return match st.pop() {
            Some(p) => p.as_ptr(),
            None => c_refill(size),
        };
    }
    c_alloc_other(size)
}

/// Everything C's `malloc` fast path does not serve; the checked level's
/// fast path first (here, so that the `fast` level's path stays free of
/// it).
#[inline(never)]
extern "C" fn c_alloc_other(size: usize) -> *mut u8 {
    // Zero bytes leave the fast path: a checked level serves them from the
    // pool of zero-byte blocks.
    if size < checked_size_limit() && size != 0 {
        if let Some(p) = fast_heap().c_state_for(size + TRAILER).pop_checked(size) {
            return p.as_ptr();
        }
    }
    enomem_if_null(alloc_other(size, c_align(size)))
}

// The size alone, in the register `malloc` received it in: the class state
// is found again here, so the fast path needs no pointer to it of its own
// (its fields are addressed from the heap and the table's offset).
#[inline(never)]
extern "C" fn c_refill(size: usize) -> *mut u8 {
    let st = fast_heap().c_state_for(size);
    enomem_if_null(refill(st, size, c_align(size)))
}

/// The fast path found the cache of `st` (the state serving `size` at
/// `align`, in the thread's heap or in the empty heap) dry: refills it and
/// allocates. A thread without a heap gets one first, and cma may have
/// initialised on the way (a level read from `CMA_OPTIONS` then changes the
/// path): both go the generic way.
//
// `extern "C"`: see `alloc_other`.
#[inline(never)]
extern "C" fn refill(st: &ClassState, size: usize, align: usize) -> *mut u8 {
    let heap = fast_heap();
    if heap.is_empty_heap() {
        return alloc_other(size, align);
    }
    let class = heap.class_of_state(st);
    let _guard = AllocatorGuard::enter();
    if level::mode() != MODE_FAST {
        drop(_guard);
        return alloc_other(size, align);
    }
    if heap.sample_due(class) {
        if let Some(p) = heap.take_sample(class, size, align) {
            return p;
        }
    }
    if heap.profile_due(class) {
        if let Some(p) = heap.take_profiled(class, size, align) {
            return p;
        }
    }
    heap.alloc_small_refill_inline(class)
}

/// A block of small `class` for `size` bytes at `align`: a cached slot, or
/// at a refill, when this heap's sample is due, a sampled block (`true`),
/// which has no slot and so no trailer, or a profile sample (`true`: whole
/// pages, zeroed, see `heap::profile`). The caller holds a guard and a real
/// heap.
#[inline(always)]
fn small_block(h: &Heap, class: SizeClass, size: usize, align: usize) -> (*mut u8, bool) {
    if let Some(p) = h.class(class.index()).pop() {
        return (p.as_ptr(), false);
    }
    if h.sample_due(class) {
        if let Some(p) = h.take_sample(class, size, align) {
            return (p, true);
        }
    }
    if h.profile_due(class) {
        if let Some(p) = h.take_profiled(class, size, align) {
            return (p, true);
        }
    }
    (h.alloc_small_refill(class), false)
}

/// `calloc` of `size` bytes (the product, already checked) for the C
/// library: null with `errno` set to `ENOMEM` on failure.
#[inline(always)]
pub(crate) fn c_calloc(size: usize) -> *mut u8 {
    if size < fast_size_limit() {
        if let Some(p) = fast_heap().c_state_for(size).pop() {
            // SAFETY: a fresh block of at least `size` bytes.
            unsafe { core::ptr::write_bytes(p.as_ptr(), 0, size) };
            return p.as_ptr();
        }
    }
    c_calloc_other(size)
}

#[inline(never)]
extern "C" fn c_calloc_other(size: usize) -> *mut u8 {
    enomem_if_null(alloc_zeroed_slow(size, c_align(size)))
}

fn enomem_if_null(p: *mut u8) -> *mut u8 {
    if p.is_null() {
        process::set_errno(libc::ENOMEM);
    }
    p
}

/// Everything the fast path does not serve: a thread's first allocation, a
/// refill, the `default` level's trailer, limits, large blocks, big
/// alignments. Null when memory (or a limit) runs out.
//
// `extern "C"`: cannot unwind, so libcma's `extern "C"` entry points need no
// landing pad around the call and make it a tail call.
#[inline(never)]
pub(crate) extern "C" fn alloc_other(size: usize, align: usize) -> *mut u8 {
    if align <= 16 && size < checked_size_limit() && size != 0 {
        if let Some(p) = checked_alloc_fast(size, align) {
            return p;
        }
    }
    let mut guard = AllocatorGuard::enter();
    let heap = thread_heap(&mut guard);
    if heap.is_null() {
        return null_mut();
    }
    // SAFETY: the guard's heap belongs to this thread.
    let h = unsafe { &*heap };
    if align <= 16 {
        let mode = level::mode();
        if mode == MODE_FAST && size <= MAX_SMALL {
            return small_block(h, class_of(small_slot(size, align)), size, align).0;
        }
        if mode == MODE_CHECKED && size <= MAX_SMALL - TRAILER {
            if let Some(p) = zero_byte_block(size) {
                return p;
            }
            return h.alloc_checked(class_of(small_slot(size + TRAILER, align)), size, align);
        }
    }
    let p = match alloc_slow(heap, size, align, false) {
        Ok(p) => p.as_ptr(),
        Err(_) => null_mut(),
    };
    if alloc_log::events_on() {
        alloc_log::engine_event("alloc", p as usize, size, None);
    }
    p
}

/// At a checked level, a request for zero bytes gets an address nobody may
/// touch (`guarded::zero`); `None` for any other size, or when the pool
/// cannot serve (an ordinary block then).
#[inline(always)]
fn zero_byte_block(size: usize) -> Option<*mut u8> {
    if size != 0 {
        return None;
    }
    let p = zero::alloc(AllocKind::Malloc)?;
    if ignored::ignoring() {
        // An address handed out again is tracked again.
        ignored::handing_out(p as usize);
    }
    Some(p)
}

/// The checked level's allocation fast path: a cached slot of the thread's
/// heap (none on the empty heap), verified still zero and armed. `None`
/// when the cache is dry. Calls nothing: no guard needed.
#[inline(always)]
fn checked_alloc_fast(size: usize, align: usize) -> Option<*mut u8> {
    let bytes = size + TRAILER;
    let heap = fast_heap();
    // C's alignment (16 from 16 bytes up) serves alignments up to 16 once
    // the slot is at least 16 bytes; alignment 8 may use the 8-byte steps.
    let st = if align <= 8 {
        heap.state_for(bytes)
    } else {
        heap.c_state_for(bytes.max(16))
    };
    st.pop_checked(size).map(|p| p.as_ptr())
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
    if trailer != 0 && align <= 16 {
        if let Some(p) = zero_byte_block(size) {
            profile::recorded_alloc(p, 0);
            // SAFETY: the pool's addresses are never null.
            return Ok(unsafe { NonNull::new_unchecked(p) });
        }
    }
    let class = class_for(size + trailer, align);
    if limits::active() {
        let usable = match class {
            Some(c) => c.block_size(),
            None => pages_for(size) * PAGE_SIZE,
        };
        limits::check(size, usable)?;
    }
    let p = match class {
        // A checked level's slot reads as zero already (verified), unless
        // freed slots are not wiped.
        Some(class) if trailer != 0 => {
            let p = heap.alloc_checked(class, size, align);
            if !p.is_null() && zero && !switches::on(CheckSwitch::Wipe) {
                // SAFETY: a fresh block of at least `size` bytes.
                unsafe { core::ptr::write_bytes(p, 0, size) };
            }
            p
        }
        Some(class) => {
            let (p, sampled) = small_block(heap, class, size, align);
            if !p.is_null() && zero {
                // A slot is the class's size; a sampled block (guarded or
                // profiled) has `size` bytes of its own.
                let n = if sampled { size } else { class.block_size() };
                // SAFETY: a fresh block of at least `n` bytes.
                unsafe { core::ptr::write_bytes(p, 0, n) };
            }
            p
        }
        None => {
            let p = heap.alloc_large(size + trailer, align, zero);
            if trailer != 0 && !p.is_null() {
                arm_large(p, size);
            }
            heap.count_large(p, size);
            p
        }
    };
    profile::recorded_alloc(p, size);
    NonNull::new(p).ok_or(CmaError::OutOfMemory { size })
}

/// Arms the trailer of a large or huge block that holds `size` bytes (a
/// checked level's; the block has room for it after `size`).
pub(super) fn arm_large(p: *mut u8, size: usize) {
    if let Ok(Found::Large(span)) = lookup::find_block(p as usize) {
        // SAFETY: a live block of `span.bytes()` bytes of this thread's
        // making; size + TRAILER <= its bytes.
        unsafe { crate::check::trailer::arm(p, span.bytes(), size) };
    }
}

/// Allocates zeroed memory: the fast path and a clear of the bytes asked
/// for when a cached slot serves it, the slow path (which knows when fresh
/// pages are zero already) otherwise.
#[inline]
pub(crate) fn alloc_zeroed(size: usize, align: usize) -> *mut u8 {
    if align <= 8 && size < fast_size_limit() {
        if let Some(p) = fast_heap().state_for(size).pop() {
            // SAFETY: a fresh block of at least `size` bytes.
            unsafe { core::ptr::write_bytes(p.as_ptr(), 0, size) };
            return p.as_ptr();
        }
    }
    alloc_zeroed_slow(size, align)
}

// `extern "C"`: see `alloc_other`.
#[inline(never)]
extern "C" fn alloc_zeroed_slow(size: usize, align: usize) -> *mut u8 {
    let mut guard = AllocatorGuard::enter();
    let heap = thread_heap(&mut guard);
    let p = alloc_slow(heap, size, align, true).map_or(null_mut(), NonNull::as_ptr);
    if alloc_log::events_on() {
        alloc_log::engine_event("alloc_zeroed", p as usize, size, None);
    }
    p
}

/// C's `calloc` of `size` bytes (the product, already checked).
#[inline]
pub(crate) fn calloc(size: usize) -> *mut u8 {
    if size < fast_size_limit() {
        if let Some(p) = fast_heap().c_state_for(size).pop() {
            // SAFETY: a fresh block of at least `size` bytes.
            unsafe { core::ptr::write_bytes(p.as_ptr(), 0, size) };
            return p.as_ptr();
        }
    }
    alloc_zeroed_slow(size, c_align(size))
}

/// C++'s `operator new` family: `c_malloc`'s block (or `align`'s, above
/// 16), recorded as `kind` at a checked level so that a release by another
/// family is reported (`check::kind`). Null when memory runs out.
pub(crate) fn alloc_of_kind(size: usize, align: usize, kind: AllocKind) -> *mut u8 {
    let p = if align <= 16 {
        c_malloc(size)
    } else {
        alloc_other(size, align)
    };
    if !p.is_null() && kind != AllocKind::Malloc && switches::on(CheckSwitch::KindCheck) {
        record_kind(p, kind);
    }
    p
}

#[cold]
#[inline(never)]
fn record_kind(p: *mut u8, kind: AllocKind) {
    let _guard = AllocatorGuard::enter();
    match lookup::find_block(p as usize) {
        // The slot was just handed out on this thread: its owner's.
        Ok(Found::Slot { span, index }) => set_slot_kind(span, index, kind),
        Ok(Found::Large(span)) => span.alloc_kind.set(kind as u8),
        Ok(Found::Sampled(slot)) => slot.set_kind(kind as u8),
        Ok(Found::Zero(index)) => zero::set_kind(index, kind),
        Err(_) => {}
    }
}
