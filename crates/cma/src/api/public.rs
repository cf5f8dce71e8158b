//! The explicit API: the original system's `cma_malloc` family as Rust
//! functions, plus checked variants that return errors instead of aborting.
//!
//! C conventions hold: `malloc` and friends return null when memory (or an
//! allocation limit) runs out, and their blocks are aligned to 16 bytes when
//! they are 16 bytes or larger (8 below). Misuse of a pointer (double free,
//! interior pointer, a pointer cma never handed out) is reported on stderr
//! and aborts; the `checked_` functions return it as a `CmaError` instead.

use core::ptr::{null_mut, NonNull};

use super::alloc::{alloc, alloc_slow};
use super::c_align;
use super::free::{free_with, try_free};
use super::init::{ensure_init, thread_heap};
use super::realloc::{realloc_aligned, try_realloc};
use crate::check::error::CmaError;
use crate::check::heap_check::{self, HeapCheck};
use crate::check::kind::AllocKind;
use crate::check::level::{self, CheckLevel};
use crate::check::lookup;
use crate::check::report;
use crate::heap::guard::AllocatorGuard;
use crate::observe::alloc_log;
use crate::os::clock;
use crate::pages::PAGES;

/// Allocates `size` bytes (C `malloc`). Returns null when memory or an
/// allocation limit runs out. `malloc(0)` returns a unique minimal block.
#[inline]
pub fn malloc(size: usize) -> *mut u8 {
    super::alloc::malloc(size)
}

/// Allocates `count * size` zeroed bytes (C `calloc`). Returns null on
/// overflow of the product, or when memory runs out.
#[inline]
pub fn calloc(count: usize, size: usize) -> *mut u8 {
    match count.checked_mul(size) {
        Some(total) => super::alloc::calloc(total),
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
    free_with(p, "free", AllocKind::Malloc)
}

/// Like `free`, but returns the misuse as an error instead of aborting; the
/// allocator's state is unchanged when it does.
///
/// # Safety
/// As for `free`.
pub unsafe fn checked_free(p: *mut u8) -> Result<(), CmaError> {
    try_free(p, AllocKind::Malloc)
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
    free_with(p, "bzero_and_free", AllocKind::Malloc)
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
    let found = lookup::find_block(p as usize)?;
    lookup::live_size(&found)
}

/// Verifies the whole heap at once, at the `default` level: every live
/// block's trailer (an overflow of a block that was never freed) and every
/// quarantined block (a write into a freed block that was never handed out
/// again). Returns what it looked at, or the first damage found. At the
/// `fast` level there is nothing to verify and it returns zeros.
///
/// Threads may go on allocating and freeing meanwhile; the check holds the
/// page allocator's lock while it walks (a thread that needs new pages
/// waits), about 3 ms per 100,000 live blocks (28 ms for a million on a
/// loaded 2-core machine; release build). At exit the same
/// check runs by itself (`exit_check=0` turns it off).
pub fn check_heap() -> Result<HeapCheck, CmaError> {
    let _guard = AllocatorGuard::enter();
    heap_check::check_heap()
}

/// Allocates `size` bytes at `align`, returning why it could not.
pub fn try_alloc(size: usize, align: usize) -> Result<NonNull<u8>, CmaError> {
    let mut guard = AllocatorGuard::enter();
    let heap = thread_heap(&mut guard);
    let r = alloc_slow(heap, size, at_least_8(align), false);
    if alloc_log::events_on() {
        alloc_log::engine_event("alloc", r.map_or(0, |p| p.as_ptr() as usize), size, None);
    }
    r
}

/// Allocates `size` zeroed bytes at `align`, returning why it could not.
pub fn try_alloc_zeroed(size: usize, align: usize) -> Result<NonNull<u8>, CmaError> {
    let mut guard = AllocatorGuard::enter();
    let heap = thread_heap(&mut guard);
    let r = alloc_slow(heap, size, at_least_8(align), true);
    if alloc_log::events_on() {
        let p = r.map_or(0, |p| p.as_ptr() as usize);
        alloc_log::engine_event("alloc_zeroed", p, size, None);
    }
    r
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
    try_realloc(p, size, c_align(size)).map(|q| NonNull::new(q).expect("realloc result"))
}

/// Gives idle free pages back to the kernel now instead of after the purge
/// delay.
pub fn trim() {
    let _guard = AllocatorGuard::enter();
    PAGES.lock().purge(clock::now_ms(), true);
}

/// The check level in force.
pub fn check_level() -> CheckLevel {
    ensure_init();
    level::level()
}

/// Applies a `CMA_OPTIONS`-style list of options now (see
/// `options::parse` for the keys); an option it cannot honour is reported
/// on stderr and ignored.
pub fn apply_options(options: &[u8]) {
    crate::options::apply(options);
}
