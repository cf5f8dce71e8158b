//! The original system's backend hooks (`cma_set_backend`): while a backend
//! is set, new blocks of the `cma_*` API come from it; a block goes back to
//! whoever handed it out, so backends can be set, replaced and cleared
//! while blocks of every kind are live.
//!
//! The slot table, the routing and the counting are the engine's
//! (`engine::faces::BackendTable`, the same code as the Rust API's
//! `cma::Backend`); this module makes a `cma_backend_hooks` table a
//! `cma::Backend` and keeps libcma's own table of them. Hooks are copied
//! into the table; hooks equal to a slot's (the same functions and
//! `user_data`) are the same backend.
//!
//! # What is counted
//!
//! The table counts backend blocks (allocations, frees, bytes by the
//! backend's `get_allocation_size`, peak bytes) and reports their bytes to
//! the engine's total allocation limit. The C API's statistics add these
//! counters to the engine's. The table lists the live backend blocks too,
//! for the leak API (`crate::leaks`).

use core::alloc::Layout;
use core::ffi::c_void;
use core::ptr::{null_mut, NonNull};

pub(crate) use engine::faces::Routed;
use engine::faces::{BackendTable, LiveBackendBlock};
use engine::{Backend, BackendStats};

/// `cma_backend_hooks` in cma.h.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CmaBackendHooks {
    /// `void *(*allocate)(size_t size, void *user_data)`: required.
    pub allocate: Option<unsafe extern "C" fn(usize, *mut c_void) -> *mut c_void>,
    /// `void *(*reallocate)(void *ptr, size_t size, void *user_data)`:
    /// optional (without it: allocate, copy, deallocate).
    pub reallocate: Option<unsafe extern "C" fn(*mut c_void, usize, *mut c_void) -> *mut c_void>,
    /// `void (*deallocate)(void *ptr, void *user_data)`: required.
    pub deallocate: Option<unsafe extern "C" fn(*mut c_void, *mut c_void)>,
    /// `void *(*aligned_allocate)(size_t alignment, size_t size, void
    /// *user_data)`: optional (without it: `allocate`, when its block
    /// happens to be aligned).
    pub aligned_allocate: Option<unsafe extern "C" fn(usize, usize, *mut c_void) -> *mut c_void>,
    /// `size_t (*get_allocation_size)(const void *ptr, void *user_data)`:
    /// required.
    pub get_allocation_size: Option<unsafe extern "C" fn(*const c_void, *mut c_void) -> usize>,
    /// `bool (*owns_allocation)(const void *ptr, void *user_data)`:
    /// required.
    pub owns_allocation: Option<unsafe extern "C" fn(*const c_void, *mut c_void) -> bool>,
    /// Passed to every hook.
    pub user_data: *mut c_void,
}

impl CmaBackendHooks {
    /// The hooks as plain words, to compare tables.
    fn words(&self) -> [usize; 7] {
        [
            self.allocate.map_or(0, |f| f as usize),
            self.reallocate.map_or(0, |f| f as usize),
            self.deallocate.map_or(0, |f| f as usize),
            self.aligned_allocate.map_or(0, |f| f as usize),
            self.get_allocation_size.map_or(0, |f| f as usize),
            self.owns_allocation.map_or(0, |f| f as usize),
            self.user_data as usize,
        ]
    }

    fn has_required_hooks(&self) -> bool {
        self.allocate.is_some()
            && self.deallocate.is_some()
            && self.get_allocation_size.is_some()
            && self.owns_allocation.is_some()
    }
}

/// The same functions and `user_data`: the same backend.
impl PartialEq for CmaBackendHooks {
    fn eq(&self, other: &Self) -> bool {
        self.words() == other.words()
    }
}

// SAFETY: cma.h's contract: every hook may be called from any thread, with
// its `user_data`.
unsafe impl Send for CmaBackendHooks {}
// SAFETY: as for `Send`; the table only copies the hooks and calls them.
unsafe impl Sync for CmaBackendHooks {}

// SAFETY: `cma_set_backend`'s contract: the hooks keep cma.h's contracts
// (blocks of at least the size asked for, `aligned_allocate`'s aligned,
// `owns_allocation` true for their own live blocks only,
// `get_allocation_size` the size of one). `allocate` is asked with an
// alignment of 1 for the calls that have none (`cma_malloc` & co.), and
// checks an `allocate` block against any other.
unsafe impl Backend for CmaBackendHooks {
    fn allocate(&self, layout: Layout) -> *mut u8 {
        let Some(allocate) = self.allocate else {
            return null_mut();
        };
        let (size, align) = (layout.size(), layout.align());
        if align > 1 {
            if let Some(aligned) = self.aligned_allocate {
                // SAFETY: the backend's contract.
                return unsafe { aligned(align, size, self.user_data) }.cast();
            }
        }
        // SAFETY: the backend's contract.
        let p = unsafe { allocate(size, self.user_data) };
        if let Some(misaligned) = NonNull::new(p).filter(|p| p.as_ptr() as usize % align != 0) {
            // SAFETY: the backend's live block, just handed out.
            unsafe { self.deallocate(misaligned.cast(), 0) };
            return null_mut();
        }
        p.cast()
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, _size: usize) {
        if let Some(deallocate) = self.deallocate {
            // SAFETY: `ptr` is the backend's live block, given up by the
            // caller.
            unsafe { deallocate(ptr.as_ptr().cast(), self.user_data) }
        }
    }

    unsafe fn reallocate(&self, ptr: NonNull<u8>, old_size: usize, new_layout: Layout) -> *mut u8 {
        match self.reallocate {
            // SAFETY: `ptr` is the backend's live block; its contract.
            Some(reallocate) => unsafe {
                reallocate(ptr.as_ptr().cast(), new_layout.size(), self.user_data).cast()
            },
            // SAFETY: the caller's contract.
            None => unsafe {
                engine::backend::reallocate_by_moving(self, ptr, old_size, new_layout)
            },
        }
    }

    fn owns(&self, ptr: *const u8) -> bool {
        match self.owns_allocation {
            // SAFETY: the backend's contract: owns_allocation accepts any
            // pointer and answers whether it is one of its live blocks.
            Some(owns) => unsafe { owns(ptr.cast(), self.user_data) },
            None => false,
        }
    }

    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> usize {
        match self.get_allocation_size {
            // SAFETY: `ptr` is one of the backend's live blocks.
            Some(size) => unsafe { size(ptr.as_ptr().cast_const().cast(), self.user_data) },
            None => 0,
        }
    }
}

/// libcma's backends.
static TABLE: BackendTable<CmaBackendHooks> = BackendTable::new();

/// Why `set` refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SetRefused {
    /// A required hook is null.
    MissingHook,
    /// Every slot is current or still holds live blocks.
    TableFull,
}

/// Copies `hooks` into the table and makes them current.
pub(crate) fn set(hooks: &CmaBackendHooks) -> Result<(), SetRefused> {
    if !hooks.has_required_hooks() {
        return Err(SetRefused::MissingHook);
    }
    // The table's one refusal: `TooManyBackends`.
    TABLE.set(*hooks).map_err(|_| SetRefused::TableFull)
}

/// No backend: new blocks come from cma again. The old backend's live
/// blocks still go back to it.
pub(crate) fn clear() {
    TABLE.clear();
}

/// Whether a backend is set.
pub(crate) fn is_enabled() -> bool {
    TABLE.is_enabled()
}

fn to_c<T>(routed: Routed<*mut T>) -> Routed<*mut c_void> {
    match routed {
        Routed::Cma => Routed::Cma,
        Routed::Backend(p) => Routed::Backend(p.cast()),
    }
}

/// A new block of `size` bytes (at `align`, when given) from the current
/// backend. `Backend(null)` when the backend or an allocation limit
/// refused.
pub(crate) fn allocate(size: usize, align: Option<usize>) -> Routed<*mut c_void> {
    to_c(TABLE.allocate(size, align.unwrap_or(1)))
}

/// Gives `p` back to the backend that owns it (its whole size zeroed
/// first, with `wipe`); `Backend(size)` with the block's size, or `Cma`
/// when no backend owns it.
pub(crate) fn free(p: *mut c_void, wipe: bool) -> Routed<usize> {
    // SAFETY: the `cma_*` functions that call this give `p` up.
    unsafe { TABLE.free(p.cast(), wipe) }
}

/// The size of `p` by the backend that owns it.
pub(crate) fn size_of(p: *const c_void) -> Routed<usize> {
    TABLE.usable_size(p.cast())
}

/// Resizes `p` when a backend owns it: with its `reallocate` hook, or by
/// allocating from the same backend, copying and giving `p` back.
/// `Backend(null)` when that failed (then `p` is intact).
pub(crate) fn reallocate(p: *mut c_void, size: usize) -> Routed<*mut c_void> {
    // SAFETY: `cma_realloc` gives `p` up when the call succeeds.
    to_c(unsafe { TABLE.reallocate(p.cast(), size, 1) })
}

/// Calls `each` with every live backend block, in no particular order
/// (under the table's lock: `each` must not call into the backends).
pub(crate) fn for_each_live(each: impl FnMut(usize, LiveBackendBlock)) {
    TABLE.for_each_live(each);
}

/// The backends' live and ignored blocks and bytes.
pub(crate) fn leak_summary() -> engine::LeakSummary {
    TABLE.leak_summary()
}

/// Marks the live backend block `p` as left out of leak reports (or
/// counted again); false when no backend holds a live block at `p`.
pub(crate) fn set_ignored(p: *const c_void, ignored: bool) -> bool {
    TABLE.set_ignored(p.cast(), ignored)
}

/// The counters of the backends' blocks.
pub(crate) fn counts() -> BackendStats {
    TABLE.stats()
}
