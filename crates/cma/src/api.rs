//! The explicit API: the original system's `cma_malloc` family as Rust
//! functions, plus checked variants that return errors instead of aborting.
//! Every function enters through an `AllocatorGuard`.
//!
//! C conventions hold: `malloc` and friends return null when memory (or an
//! allocation limit) runs out, and their blocks are aligned to 16 bytes when
//! they are 16 bytes or larger (8 below). Misuse of a pointer (double free,
//! interior pointer, a pointer cma never handed out) is reported on stderr
//! and aborts; the `checked_` functions return it as a `CmaError` instead.

use core::ptr::{null_mut, NonNull};

use crate::canary;
use crate::checks::{self, Found};
use crate::error::CmaError;
use crate::global;
use crate::guard::AllocatorGuard;
use crate::heap::{FastFree, Heap};
use crate::limits;
use crate::os::PAGE_SIZE;
use crate::page_alloc::pages_for;
use crate::report;
use crate::size_class::{class_for, class_of, MAX_SMALL};
use crate::span::Span;

/// The alignment C's malloc promises for a block of `size` bytes.
#[inline(always)]
fn c_align(size: usize) -> usize {
    if size >= 16 {
        16
    } else {
        8
    }
}

/// The slot size that serves `size` bytes at `align` (at most 16).
#[inline(always)]
fn small_slot(size: usize, align: usize) -> usize {
    if align > 8 {
        // A zero-byte request too: class 0 holds 8-byte slots, 8 apart.
        ((size + 15) & !15).max(16)
    } else {
        size
    }
}

/// The engine's allocation entry: `size` bytes at `align` (a power of two).
///
/// The `fast` level's path is inline and calls nothing before it returns;
/// everything else leaves through a tail call, so the hot path saves no
/// registers.
#[inline(always)]
pub(crate) fn alloc(size: usize, align: usize) -> *mut u8 {
    let guard = AllocatorGuard::enter();
    let heap = guard.current_heap();
    if !heap.is_null() && align <= 16 && size <= MAX_SMALL - canary::TRAILER {
        let mode = global::mode();
        if mode == global::MODE_FAST {
            // SAFETY: the guard's heap belongs to this thread.
            if let Some(p) = unsafe { (*heap).alloc_from_cache(class_of(small_slot(size, align))) }
            {
                return p.as_ptr();
            }
        } else if mode == global::MODE_CANARY {
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
        let class = class_of(small_slot(size + canary::TRAILER, align));
        // SAFETY: the guard's heap belongs to this thread.
        if let Some(p) = unsafe { (*heap).alloc_from_cache(class) } {
            // SAFETY: a fresh slot of the class's size, which holds
            // size + TRAILER bytes.
            unsafe { canary::arm(p.as_ptr(), class.block_size(), size) };
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
    let heap = guard.heap();
    match alloc_slow(heap, size, align, false) {
        Ok(p) => p.as_ptr(),
        Err(_) => null_mut(),
    }
}

/// Allocation outside the fast path: limits, large blocks, big alignments,
/// errors. The caller holds a guard.
#[cold]
#[inline(never)]
fn alloc_slow(
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
    let trailer = if canary::enabled() {
        canary::TRAILER
    } else {
        0
    };
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
                    unsafe { canary::arm(p, bs, size) };
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
    let heap = guard.heap();
    alloc_slow(heap, size, align, true).map_or(null_mut(), NonNull::as_ptr)
}

/// The engine's free entry. Null is accepted; misuse is reported and aborts.
#[inline(always)]
pub(crate) fn free_with(p: *mut u8, operation: &str) {
    let guard = AllocatorGuard::enter();
    let heap = guard.current_heap();
    if !heap.is_null() {
        if let Some(slab) = checks::slab_of(p as usize) {
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
    if !unsafe { (*heap).free_live_slot(slab, p as usize, index) } {
        free_generic(p, operation);
    }
}

#[cold]
#[inline(never)]
fn free_generic(p: *mut u8, operation: &str) {
    if let Err(e) = try_free(p, operation) {
        report::fatal(operation, e);
    }
}

fn try_free(p: *mut u8, operation: &str) -> Result<(), CmaError> {
    if p.is_null() {
        return Ok(());
    }
    let mut guard = AllocatorGuard::enter();
    let heap = guard.heap();
    if heap.is_null() {
        // No memory even for a heap: keep the block rather than guess.
        return Ok(());
    }
    // SAFETY: the guard's heap belongs to this thread.
    let heap = unsafe { &*heap };
    // The full lookup (not `slab_of`): a stale page-table entry must read as
    // freed pages, not as some other slab's interior.
    free_slow(heap, p as usize, operation)
}

#[cold]
#[inline(never)]
fn free_slow(heap: &Heap, addr: usize, operation: &str) -> Result<(), CmaError> {
    let found = checks::find_block(addr)?;
    if canary::enabled() {
        if let Found::Slot { span, .. } = found {
            checks::live_size(&found)?;
            // SAFETY: `live_size` validated a live slot of this block size.
            unsafe {
                canary::junk(
                    addr as *mut u8,
                    span.block_size.load(core::sync::atomic::Ordering::Relaxed) as usize,
                )
            };
        }
    }
    heap.free_block(found, operation)
}

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
    match try_realloc(p, new_size, align, operation) {
        Ok(p) => p,
        Err(e) if e.is_misuse() => report::fatal(operation, e),
        Err(_) => null_mut(),
    }
}

/// The common realloc of a valid small block with no limit set: stays in
/// its slot when the new size fits (and uses at least half of it), or moves
/// through the allocation and free fast paths. At the `default` level the
/// old trailer is checked first and the block keeps a trailer for exactly
/// the new size. `None` sends everything else (and every error, a damaged
/// trailer included) to `try_realloc`, which reports it.
#[inline]
fn realloc_fast(p: *mut u8, new_size: usize, align: usize) -> Option<*mut u8> {
    let mode = global::mode();
    if align > 16 || new_size > MAX_SMALL - canary::TRAILER || mode & global::MODE_LIMITS != 0 {
        return None;
    }
    let trailer = if mode & global::MODE_CANARY != 0 {
        canary::TRAILER
    } else {
        0
    };
    let guard = AllocatorGuard::enter();
    let heap = guard.current_heap();
    if heap.is_null() {
        return None;
    }
    let slab = checks::slab_of(p as usize)?;
    // SAFETY: the guard's heap belongs to this thread.
    let heap = unsafe { &*heap };
    let bs = heap.live_slot_size(slab, p as usize)?;
    let old_size = if trailer != 0 {
        // SAFETY: a live slot of `bs` bytes, armed when it was handed out.
        unsafe { canary::verify(p, bs) }?
    } else {
        bs
    };
    if new_size + trailer <= bs && new_size >= bs / 2 {
        if trailer != 0 {
            // SAFETY: a live slot of `bs` bytes; new_size + TRAILER <= bs.
            unsafe { canary::arm(p, bs, new_size) };
        }
        return Some(p);
    }
    let target = growth_target(new_size, bs, MAX_SMALL - trailer);
    let class = class_of(small_slot(target + trailer, align));
    let q = heap.alloc_small(class);
    if q.is_null() {
        return None;
    }
    if trailer != 0 {
        // SAFETY: a fresh slot of the class's size, which holds
        // target + TRAILER >= new_size + TRAILER bytes.
        unsafe { canary::arm(q, class.block_size(), new_size) };
    }
    // SAFETY: `p` holds `old_size` bytes of the caller's data, `q` at least
    // `new_size`; distinct blocks.
    unsafe { core::ptr::copy_nonoverlapping(p, q, old_size.min(new_size)) };
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

fn try_realloc(
    p: *mut u8,
    new_size: usize,
    align: usize,
    operation: &str,
) -> Result<*mut u8, CmaError> {
    if p.is_null() {
        let q = alloc(new_size, align);
        return if q.is_null() {
            Err(CmaError::OutOfMemory { size: new_size })
        } else {
            Ok(q)
        };
    }
    let mut guard = AllocatorGuard::enter();
    let heap = guard.heap();
    if heap.is_null() {
        return Err(CmaError::OutOfMemory { size: new_size });
    }
    // SAFETY: the guard's heap belongs to this thread.
    let heap_ref = unsafe { &*heap };
    let found = checks::find_block(p as usize)?;
    let old_size = checks::live_size(&found)?;
    if limits::active() {
        // In place, a slot keeps its size; a large block grows by whole
        // pages. A move is checked again by `alloc_slow`.
        let growth = match found {
            Found::Slot { .. } => 0,
            Found::Large(span) => (pages_for(new_size) * PAGE_SIZE).saturating_sub(span.bytes()),
        };
        limits::check(new_size, growth)?;
    }
    match found {
        Found::Slot { span, .. } => {
            let bs = span.block_size.load(core::sync::atomic::Ordering::Relaxed) as usize;
            let trailer = if canary::enabled() {
                canary::TRAILER
            } else {
                0
            };
            if new_size <= bs - trailer && new_size >= bs / 2 {
                if trailer != 0 {
                    // SAFETY: a live slot of `bs` bytes; new_size + trailer <= bs.
                    unsafe { canary::arm(p, bs, new_size) };
                }
                return Ok(p);
            }
        }
        Found::Large(span) => {
            if heap_ref.resize_large_in_place(span as *const _ as *mut _, new_size) {
                return Ok(p);
            }
        }
    }
    // Headroom only without limits: a limit must judge the size asked for.
    let target = match found {
        Found::Slot { span, .. } if !limits::active() => {
            let bs = span.block_size.load(core::sync::atomic::Ordering::Relaxed) as usize;
            growth_target(new_size, bs, MAX_SMALL - canary::TRAILER)
        }
        _ => new_size,
    };
    let q = alloc_slow(heap, target, align, false)?.as_ptr();
    if target != new_size && canary::enabled() {
        if let Some(slab) = checks::slab_of(q as usize) {
            let bs = slab.block_size.load(core::sync::atomic::Ordering::Relaxed) as usize;
            // SAFETY: `q` is a fresh slot of `bs` bytes holding at least
            // new_size + TRAILER; its trailer must guard the bytes asked for,
            // not the headroom.
            unsafe { canary::arm(q, bs, new_size) };
        }
    }
    // SAFETY: both blocks are live and distinct; the copy stays inside both.
    unsafe { core::ptr::copy_nonoverlapping(p, q, old_size.min(new_size)) };
    heap_ref.free_block(found, operation)?;
    Ok(q)
}

// ----- the public explicit API -----

/// Allocates `size` bytes (C `malloc`). Returns null when memory or an
/// allocation limit runs out. `malloc(0)` returns a unique minimal block.
#[inline]
pub fn malloc(size: usize) -> *mut u8 {
    alloc(size, c_align(size))
}

/// Allocates `count * size` zeroed bytes (C `calloc`). Returns null on
/// overflow of the product, or when memory runs out.
#[inline]
pub fn calloc(count: usize, size: usize) -> *mut u8 {
    match count.checked_mul(size) {
        Some(total) => alloc_zeroed(total, c_align(total)),
        None => null_mut(),
    }
}

/// Allocates `size` bytes aligned to `align`, any power of two. Returns null
/// for an alignment that is not a power of two or when memory runs out.
#[inline]
pub fn aligned_alloc(align: usize, size: usize) -> *mut u8 {
    if !align.is_power_of_two() {
        return null_mut();
    }
    alloc(size, align.max(8))
}

/// Resizes a block (C `realloc`): in place when the block allows, otherwise
/// by moving `min(old usable size, size)` bytes to a new block. Null `p`
/// allocates. On failure returns null and leaves `p` intact and usable.
/// `realloc(p, 0)` frees `p` and returns a minimal block.
///
/// # Safety
/// `p` is null or a live block from cma that nobody else uses during the call;
/// anything else is detected and aborts with a diagnostic, but other code
/// still holding `p` must not use it after a successful move.
pub unsafe fn realloc(p: *mut u8, size: usize) -> *mut u8 {
    realloc_aligned(p, size, c_align(size), "realloc")
}

/// Frees a block (C `free`). Null is accepted. A pointer that is not a live
/// block from cma aborts the process with a one-line diagnostic.
///
/// # Safety
/// `p` must not be used after this call.
#[inline]
pub unsafe fn free(p: *mut u8) {
    free_with(p, "free")
}

/// Like `free`, but returns the misuse as an error instead of aborting; the
/// allocator's state is unchanged when it does.
///
/// # Safety
/// As for `free`.
pub unsafe fn checked_free(p: *mut u8) -> Result<(), CmaError> {
    try_free(p, "checked_free")
}

/// Overwrites the block's whole usable size with zeros, then frees it.
///
/// # Safety
/// As for `free`.
pub unsafe fn bzero_and_free(p: *mut u8) {
    if p.is_null() {
        return;
    }
    let size = block_size(p);
    // SAFETY: `block_size` validated `p` as a live block of `size` bytes.
    unsafe {
        for i in 0..size {
            core::ptr::write_volatile(p.add(i), 0);
        }
    }
    free_with(p, "bzero_and_free")
}

/// The usable size of a live block: at least what was requested. Aborts with
/// a diagnostic when `p` is not a live block from cma.
pub fn block_size(p: *const u8) -> usize {
    match checked_block_size(p) {
        Ok(n) => n,
        Err(e) => report::fatal("block_size", e),
    }
}

/// Same as `block_size` (the name C programs know from `malloc_usable_size`).
pub fn usable_size(p: *const u8) -> usize {
    block_size(p)
}

/// The usable size of a live block, or why `p` is not one.
pub fn checked_block_size(p: *const u8) -> Result<usize, CmaError> {
    let _guard = AllocatorGuard::enter();
    let found = checks::find_block(p as usize)?;
    checks::live_size(&found)
}

/// Allocates `size` bytes at `align`, returning why it could not.
pub fn try_alloc(size: usize, align: usize) -> Result<NonNull<u8>, CmaError> {
    let mut guard = AllocatorGuard::enter();
    let heap = guard.heap();
    alloc_slow(heap, size, at_least_8(align), false)
}

/// Allocates `size` zeroed bytes at `align`, returning why it could not.
pub fn try_alloc_zeroed(size: usize, align: usize) -> Result<NonNull<u8>, CmaError> {
    let mut guard = AllocatorGuard::enter();
    let heap = guard.heap();
    alloc_slow(heap, size, at_least_8(align), true)
}

/// Raises a power-of-two alignment to 8; leaves anything else (0, 3, 24...)
/// for `alloc_slow` to refuse as `InvalidAlignment`.
fn at_least_8(align: usize) -> usize {
    if align.is_power_of_two() {
        align.max(8)
    } else {
        align
    }
}

/// Resizes like `realloc`, returning why it could not; on error the old block
/// is intact (and a misuse of `p` is returned, not reported).
///
/// # Safety
/// As for `realloc`.
pub unsafe fn try_realloc_checked(p: *mut u8, size: usize) -> Result<NonNull<u8>, CmaError> {
    try_realloc(p, size, c_align(size), "try_realloc")
        .map(|q| NonNull::new(q).expect("realloc result"))
}

/// Gives idle free pages back to the kernel now instead of after the purge
/// delay.
pub fn trim() {
    let _guard = AllocatorGuard::enter();
    crate::global::purge_now();
}
