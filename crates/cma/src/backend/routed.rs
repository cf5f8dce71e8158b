//! The Rust face's backend table (`BACKENDS`) and the functions that route
//! through it: C conventions as in `cma::malloc` and friends (null when
//! memory or a limit runs out; blocks aligned to 16 bytes from 16 bytes
//! up, 8 below), with new blocks from the current backend and every block
//! back to its owner.

use core::ptr::null_mut;

use super::table::{Routed, Table};
use super::{Backend, BackendError, BackendStats};
use crate::api::{c_align, public};
use crate::check::error::CmaError;
use crate::observe::leaks::{LeakEntry, LeakSummary};

/// A backend of the Rust face, as the table keeps it.
#[derive(Clone, Copy)]
pub(super) struct DynBackend(&'static dyn Backend);

/// The same object through the same vtable. A backend seen through two
/// copies of its vtable is taken for two backends: that costs a slot
/// (`table`'s module docs), never a wrong answer.
impl PartialEq for DynBackend {
    fn eq(&self, other: &Self) -> bool {
        core::ptr::eq(self.0, other.0)
    }
}

// SAFETY: delegates every call to the backend the program set, whose
// implementation keeps the contract.
unsafe impl Backend for DynBackend {
    fn allocate(&self, layout: core::alloc::Layout) -> *mut u8 {
        self.0.allocate(layout)
    }

    unsafe fn deallocate(&self, ptr: core::ptr::NonNull<u8>, size: usize) {
        // SAFETY: the caller's contract is the backend's.
        unsafe { self.0.deallocate(ptr, size) }
    }

    unsafe fn reallocate(
        &self,
        ptr: core::ptr::NonNull<u8>,
        old_size: usize,
        new_layout: core::alloc::Layout,
    ) -> *mut u8 {
        // SAFETY: the caller's contract is the backend's.
        unsafe { self.0.reallocate(ptr, old_size, new_layout) }
    }

    fn owns(&self, ptr: *const u8) -> bool {
        self.0.owns(ptr)
    }

    unsafe fn usable_size(&self, ptr: core::ptr::NonNull<u8>) -> usize {
        // SAFETY: the caller's contract is the backend's.
        unsafe { self.0.usable_size(ptr) }
    }
}

/// The Rust face's table (libcma has one of its own for the C hooks).
pub(super) static BACKENDS: Table<DynBackend> = Table::new();

/// From now on, new blocks of [`CmaWithBackends`](super::CmaWithBackends)
/// and of this module's functions come from `backend`. Blocks that earlier
/// backends (or cma) handed out keep going back to them. Setting a backend
/// that is already in the table (the same object) makes it current again.
///
/// Fails with [`BackendError::TooManyBackends`] when 16 other backends
/// still hold live blocks.
pub fn set_backend(backend: &'static dyn Backend) -> Result<(), BackendError> {
    BACKENDS.set(DynBackend(backend))
}

/// No backend: new blocks come from cma again. The backends' live blocks
/// still go back to them when freed.
pub fn clear_backend() {
    BACKENDS.clear();
}

/// Whether a backend is set.
pub fn backend_is_enabled() -> bool {
    BACKENDS.is_enabled()
}

/// The counters of the blocks backends handed out through the Rust API
/// (cma's own blocks are in `cma::stats()`).
pub fn stats() -> BackendStats {
    BACKENDS.stats()
}

/// The live and ignored blocks that backends hold through the Rust API
/// and their bytes, as `cma::leak_summary()` gives cma's (a program adds
/// the two for its whole heap).
pub fn leak_summary() -> LeakSummary {
    BACKENDS.leak_summary()
}

/// Calls `each` with every live block that backends hold through the Rust
/// API and that is not ignored ([`untrack_leak`]): its address and size
/// by its backend's `usable_size`, in no particular order. It runs under
/// the list's lock: `each` must not call this module's functions nor
/// allocate through [`CmaWithBackends`](super::CmaWithBackends) (cma's own
/// allocator is fine).
pub fn for_each_leak(mut each: impl FnMut(LeakEntry)) {
    BACKENDS.for_each_live(|address, b| {
        if !b.ignored {
            each(LeakEntry {
                address,
                size: b.size,
                site: None,
            });
        }
    });
}

/// Leaves the backend block at `p` out of [`for_each_leak`] and of the
/// live counts of [`leak_summary`] (it is counted as ignored) until
/// [`track_leak`] or until it is freed, as `cma::untrack_leak` does for
/// cma's blocks. `CmaError::NotOurs` when no backend holds a live block
/// at `p`.
pub fn untrack_leak(p: *const u8) -> Result<(), CmaError> {
    set_tracked(p, false)
}

/// Counts the backend block at `p` as live again (after
/// [`untrack_leak`]). `CmaError::NotOurs` when no backend holds a live
/// block at `p`.
pub fn track_leak(p: *const u8) -> Result<(), CmaError> {
    set_tracked(p, true)
}

fn set_tracked(p: *const u8, tracked: bool) -> Result<(), CmaError> {
    if BACKENDS.set_ignored(p, !tracked) {
        Ok(())
    } else {
        Err(CmaError::NotOurs { addr: p as usize })
    }
}

/// `size` bytes (C `malloc`), from the current backend when one is set,
/// from cma otherwise. Null when memory, the backend or an allocation
/// limit runs out.
pub fn malloc(size: usize) -> *mut u8 {
    match BACKENDS.allocate(size, c_align(size)) {
        Routed::Cma => public::malloc(size),
        Routed::Backend(p) => p,
    }
}

/// `count * size` zeroed bytes (C `calloc`), from the current backend
/// when one is set. Null on overflow of the product, or as `malloc`.
pub fn calloc(count: usize, size: usize) -> *mut u8 {
    let Some(total) = count.checked_mul(size) else {
        return null_mut();
    };
    match BACKENDS.allocate(total, c_align(total)) {
        Routed::Cma => public::calloc(count, size),
        Routed::Backend(p) => {
            if !p.is_null() {
                // SAFETY: a fresh backend block of at least `total` bytes.
                unsafe { core::ptr::write_bytes(p, 0, total) };
            }
            p
        }
    }
}

/// `size` bytes aligned to `align`, any power of two (at least 8), from
/// the current backend when one is set. Null for another alignment, or as
/// `malloc`.
pub fn aligned_alloc(align: usize, size: usize) -> *mut u8 {
    if !align.is_power_of_two() {
        return null_mut();
    }
    match BACKENDS.allocate(size, align.max(8)) {
        Routed::Cma => public::aligned_alloc(align, size),
        Routed::Backend(p) => p,
    }
}

/// Resizes a block (C `realloc`) by its owner: a backend's block by that
/// backend (its `reallocate`), a cma block by cma (`cma::realloc`). Null
/// `p` allocates as `malloc`. On failure returns null and leaves `p`
/// intact.
///
/// # Safety
/// `p` is null or a live block (of cma or of a backend) that nobody else
/// uses during the call, and not used after a successful call.
pub unsafe fn realloc(p: *mut u8, size: usize) -> *mut u8 {
    if p.is_null() {
        return malloc(size);
    }
    // SAFETY: the caller's contract.
    match unsafe { BACKENDS.reallocate(p, size, c_align(size)) } {
        // SAFETY: the caller's contract is cma's.
        Routed::Cma => unsafe { public::realloc(p, size) },
        Routed::Backend(q) => q,
    }
}

/// Gives a block back to its owner (C `free`): the backend that owns it,
/// or cma. Null is accepted. A pointer that no one owns aborts with cma's
/// diagnostic (`cma: invalid free: not a cma block`).
///
/// # Safety
/// `p` is not used after the call.
pub unsafe fn free(p: *mut u8) {
    // SAFETY: the caller gives up `p`.
    if let Routed::Cma = unsafe { BACKENDS.free(p, false) } {
        // SAFETY: as above; cma validates `p`.
        unsafe { public::free(p) }
    }
}

/// Like [`free`], but a pointer that no one owns (or a cma block's misuse)
/// is returned as an error instead of aborting, nothing changed.
///
/// # Safety
/// As for [`free`].
pub unsafe fn checked_free(p: *mut u8) -> Result<(), CmaError> {
    // SAFETY: the caller gives up `p`.
    match unsafe { BACKENDS.free(p, false) } {
        Routed::Backend(_) => Ok(()),
        // SAFETY: as above; cma validates `p`.
        Routed::Cma => unsafe { public::checked_free(p) },
    }
}

/// Overwrites the block's whole usable size with zeros (a backend's block:
/// the size its `usable_size` reports), then gives it back to its owner.
///
/// # Safety
/// As for [`free`].
pub unsafe fn bzero_and_free(p: *mut u8) {
    // SAFETY: the caller gives up `p`.
    if let Routed::Cma = unsafe { BACKENDS.free(p, true) } {
        // SAFETY: as above; cma validates `p`.
        unsafe { public::bzero_and_free(p) }
    }
}

/// The usable size of a live block, by its owner (a backend's
/// `usable_size`, or `cma::block_size`, which aborts with a diagnostic for
/// a pointer that is no one's block).
pub fn block_size(p: *const u8) -> usize {
    match BACKENDS.usable_size(p) {
        Routed::Cma => public::block_size(p),
        Routed::Backend(size) => size,
    }
}
