//! Pluggable backends: memory from somewhere else, routed by owner.
//!
//! A [`Backend`] hands out blocks of its own (a bump arena, a pool in
//! shared memory, a counting wrapper). While one is set
//! ([`set_backend`]), new blocks of [`CmaWithBackends`] and of this
//! module's functions ([`malloc`], [`realloc`] ...) come from it; every
//! block goes back to whoever handed it out: a block that a backend
//! [owns](Backend::owns) to that backend, any other to cma. So backends
//! can be set, replaced and cleared while blocks of every kind are live: a
//! cleared backend is still asked about pointers while it holds blocks,
//! and up to 16 backends can hold blocks at once. A pointer that no one
//! owns is misuse, reported by cma as always (an invalid free).
//!
//! `cma::Cma`, `cma::malloc`, `cma::free` and the rest of the engine's API
//! never look at backends: routing costs them nothing. Blocks of a backend
//! go back through this module or `CmaWithBackends` only (`cma::free` of
//! one reports it as not a cma block).
//!
//! # What is counted
//!
//! Backend blocks are counted apart from cma's, by the size each
//! backend's [`usable_size`](Backend::usable_size) reports ([`stats`]:
//! allocations, frees, bytes in use, peak); `cma::stats()` stays cma's own.
//! Their bytes count against the total allocation limit
//! (`AllocLimits::max_bytes_in_use`) with cma's, and both limits refuse a
//! request before it reaches a backend. A realloc that moves a block
//! counts one allocation and one free, as cma's own do.
//!
//! The leak API covers them the same way, apart from cma's:
//! [`leak_summary`], [`for_each_leak`], [`untrack_leak`] and
//! [`track_leak`] are `cma::leak_summary()`, `cma::leaks()` and the rest
//! for backend blocks (libcma's C leak API adds the two).
//!
//! # Layout of the module
//!
//! `table` is the slot table and the routing, the one implementation
//! behind both faces (this module's, and libcma's `cma_set_backend`);
//! `routed` is the Rust face's table and functions; `global_alloc` is
//! `CmaWithBackends`.

use core::alloc::Layout;
use core::fmt;
use core::ptr::NonNull;

pub(crate) mod global_alloc;
mod routed;
pub(crate) mod table;

pub use global_alloc::CmaWithBackends;
pub use routed::{
    aligned_alloc, backend_is_enabled, block_size, bzero_and_free, calloc, checked_free,
    clear_backend, for_each_leak, free, leak_summary, malloc, realloc, set_backend, stats,
    track_leak, untrack_leak,
};

/// A source of blocks other than cma, for [`set_backend`].
///
/// The table keeps a `&'static dyn Backend`, and calls it from any thread,
/// concurrently: implementations synchronise themselves (`Sync`).
///
/// ```
/// use std::alloc::Layout;
/// use std::cell::UnsafeCell;
/// use std::ptr::NonNull;
/// use std::sync::atomic::{AtomicBool, Ordering};
///
/// use cma::Backend;
///
/// const SLOT: usize = 256;
/// const SLOTS: usize = 64;
///
/// /// 64 blocks of 256 bytes, each live or not.
/// #[repr(C, align(256))]
/// struct Slots {
///     memory: UnsafeCell<[[u8; SLOT]; SLOTS]>,
///     live: [AtomicBool; SLOTS],
/// }
///
/// // SAFETY: a slot's bytes belong to whoever claimed its `live` flag.
/// unsafe impl Sync for Slots {}
///
/// impl Slots {
///     fn index(&self, p: *const u8) -> Option<usize> {
///         let offset = (p as usize).checked_sub(self.memory.get() as usize)?;
///         (offset % SLOT == 0 && offset / SLOT < SLOTS).then_some(offset / SLOT)
///     }
/// }
///
/// // SAFETY: a slot goes to one owner at a time, 256-aligned, until it is
/// // given back; `owns` reads only the flags; nothing unwinds or allocates.
/// unsafe impl Backend for Slots {
///     fn allocate(&self, layout: Layout) -> *mut u8 {
///         if layout.size() > SLOT || layout.align() > SLOT {
///             return std::ptr::null_mut();
///         }
///         for (i, live) in self.live.iter().enumerate() {
///             if !live.swap(true, Ordering::Acquire) {
///                 // SAFETY: slot `i` lies inside `memory`.
///                 return unsafe { self.memory.get().cast::<u8>().add(i * SLOT) };
///             }
///         }
///         std::ptr::null_mut()
///     }
///
///     unsafe fn deallocate(&self, ptr: NonNull<u8>, _size: usize) {
///         if let Some(i) = self.index(ptr.as_ptr()) {
///             self.live[i].store(false, Ordering::Release);
///         }
///     }
///
///     fn owns(&self, ptr: *const u8) -> bool {
///         self.index(ptr).is_some_and(|i| self.live[i].load(Ordering::Acquire))
///     }
///
///     unsafe fn usable_size(&self, _ptr: NonNull<u8>) -> usize {
///         SLOT
///     }
/// }
///
/// static POOL: Slots = Slots {
///     memory: UnsafeCell::new([[0; SLOT]; SLOTS]),
///     live: [const { AtomicBool::new(false) }; SLOTS],
/// };
///
/// cma::set_backend(&POOL).expect("a free slot in the table");
/// let p = cma::backend::malloc(100); // POOL's
/// assert!(POOL.owns(p));
/// cma::clear_backend();
/// let q = cma::backend::malloc(100); // cma's
/// assert!(!q.is_null() && !POOL.owns(q));
/// // SAFETY: live blocks, each given back to its owner.
/// unsafe {
///     cma::backend::free(p);
///     cma::backend::free(q);
/// }
/// assert!(!POOL.owns(p));
/// assert_eq!(cma::backend::stats().bytes_in_use, 0);
/// ```
///
/// # Safety
///
/// cma hands a backend's blocks to safe code (through
/// [`CmaWithBackends`], the global allocator), so an implementation
/// promises, like a `GlobalAlloc`:
///
/// - `allocate` returns null, or a block of at least `layout.size()` bytes
///   (never asked for 0) aligned to `layout.align()`, readable and
///   writable, that overlaps no other live block, and stays valid until it
///   is given back by `deallocate` or moved by `reallocate`;
/// - `owns(p)` answers for any address without reading memory at `p`: true
///   exactly for the start of a block it handed out and has not taken back
///   (never for cma's blocks or another backend's);
/// - `usable_size(p)` of a live block is at least the size it was
///   allocated with, and does not change while the block lives;
///   `usable_size(p)` bytes at `p` may all be written;
/// - `reallocate` returns null and leaves the block as it was, or returns
///   a block as `allocate` would for `new_layout`, holding the first
///   `min(old_size, new_layout.size())` bytes of the old one, which it
///   took back (unless it returned the same address);
/// - no method unwinds, and none allocates or frees through
///   `CmaWithBackends` or this module's functions (they would come back to
///   it): use `cma::malloc`, `std::alloc::System` or memory of its own.
pub unsafe trait Backend: Sync {
    /// A new block for `layout` (`layout.size()` is at least 1), or null
    /// when there is none.
    fn allocate(&self, layout: Layout) -> *mut u8;

    /// Takes back one of this backend's live blocks; `size` is what
    /// `usable_size` says of it.
    ///
    /// # Safety
    /// `ptr` is a live block of this backend; the caller gives it up.
    unsafe fn deallocate(&self, ptr: NonNull<u8>, size: usize);

    /// Resizes one of this backend's live blocks (`old_size` is what
    /// `usable_size` says of it): null when it cannot, the block intact.
    /// The default allocates a new block from this backend, copies and
    /// gives the old one back ([`reallocate_by_moving`]).
    ///
    /// # Safety
    /// `ptr` is a live block of this backend; on success the caller uses
    /// the returned block instead.
    unsafe fn reallocate(&self, ptr: NonNull<u8>, old_size: usize, new_layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract.
        unsafe { reallocate_by_moving(self, ptr, old_size, new_layout) }
    }

    /// Whether `ptr` is the start of one of this backend's live blocks.
    /// Called with any address (cma's blocks, other backends', garbage).
    fn owns(&self, ptr: *const u8) -> bool;

    /// The usable size of one of this backend's live blocks.
    ///
    /// # Safety
    /// `ptr` is a live block of this backend.
    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> usize;
}

/// [`Backend::reallocate`] by moving: a new block from `backend`, the
/// first `min(old_size, new_layout.size())` bytes copied, the old block
/// given back. Null (the old block intact) when `backend` has no new
/// block. For implementations that resize in place when they can and move
/// otherwise.
///
/// # Safety
/// `ptr` is a live block of `backend` of `old_size` usable bytes.
pub unsafe fn reallocate_by_moving<B: Backend + ?Sized>(
    backend: &B,
    ptr: NonNull<u8>,
    old_size: usize,
    new_layout: Layout,
) -> *mut u8 {
    let Some(new) = NonNull::new(backend.allocate(new_layout)) else {
        return core::ptr::null_mut();
    };
    // SAFETY: a fresh block, distinct from `ptr`, of at least
    // `new_layout.size()` bytes; `ptr` has `old_size`.
    unsafe {
        core::ptr::copy_nonoverlapping(ptr.as_ptr(), new.as_ptr(), old_size.min(new_layout.size()));
        backend.deallocate(ptr, old_size);
    }
    new.as_ptr()
}

/// Why [`set_backend`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendError {
    /// Every one of the 16 slots holds the current backend or a backend
    /// with live blocks: free some of their blocks first.
    TooManyBackends,
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::TooManyBackends => f.write_str("too many backends hold live blocks"),
        }
    }
}

impl core::error::Error for BackendError {}

/// Counters of the blocks backends handed out ([`stats`]), by the sizes
/// their [`usable_size`](Backend::usable_size) reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// Blocks allocated from backends so far.
    pub allocations: u64,
    /// Backend blocks given back so far.
    pub frees: u64,
    /// Bytes of the backend blocks allocated and not freed.
    pub bytes_in_use: u64,
    /// The highest `bytes_in_use` seen.
    pub peak_bytes_in_use: u64,
}
