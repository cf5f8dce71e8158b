//! `Arena`: a heap of its own that is released all at once.
//!
//! The engine's side is `heap::arena`; this is the Rust face: ownership
//! (dropping releases), the thread rule in the type (`Send`, not `Sync`),
//! misuse reported as everywhere else in cma, and the stable-Rust allocator
//! trait of `allocator-api2`, which `hashbrown`, `bumpalo` and
//! `allocator_api2::vec::Vec` take.

use core::cell::Cell;
use core::marker::PhantomData;
use core::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator, Layout};

use crate::api::free::free_with;
use crate::api::init::ensure_init;
use crate::check::error::CmaError;
use crate::check::kind::AllocKind;
use crate::check::report;
use crate::heap::arena::{ArenaFree, ArenaHeap};

/// A heap of its own, released all at once: its blocks can be freed one by
/// one, and [`reset`](Arena::reset) or dropping the arena releases whatever
/// is left in one go, giving its memory back to cma's page allocator
/// without freeing the blocks one at a time. Each arena has its own
/// statistics ([`stats`](Arena::stats)) and an optional byte limit.
///
/// It implements `allocator_api2::alloc::Allocator`, so collections that
/// take that trait on stable Rust allocate in it:
///
/// ```
/// use allocator_api2::vec::Vec;
///
/// let mut arena = cma::Arena::new();
/// {
///     let mut v = Vec::new_in(&arena);
///     v.extend_from_slice(b"request-scoped");
///     assert_eq!(arena.stats().blocks_in_use, 1);
/// }
/// arena.reset(); // everything still in the arena goes at once
/// assert_eq!(arena.stats().bytes_in_use, 0);
/// ```
///
/// Thread rules: one thread at a time uses an arena (it is `Send`, not
/// `Sync`); any thread may free an arena's block with [`crate::free`] (or a
/// collection's drop through its allocator elsewhere), which cma routes to
/// the arena without racing its user. Blocks are checked as the check level
/// in force says (at `default`, a trailer after every block, wiped and
/// quarantined slots); see README for what `reset` does not check.
pub struct Arena {
    heap: NonNull<ArenaHeap>,
    /// Not `Sync`: the arena's bookkeeping is its user's alone.
    _one_thread_at_a_time: PhantomData<Cell<()>>,
}

// SAFETY: an arena's state is touched by the thread that holds it (moving
// it to another thread hands everything over with it); other threads only
// free its blocks, through the engine's remote-free protocol and the lock of
// its large blocks, which take any thread.
unsafe impl Send for Arena {}

/// An arena's statistics ([`Arena::stats`]). Bytes are usable sizes, as in
/// [`crate::Stats`]: the size class of a small block, whole pages for a
/// large one. Blocks of the arena that other threads freed count once the
/// arena has collected them, which reading the statistics does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArenaStats {
    /// Blocks allocated in the arena since it was made (a `realloc` that
    /// moves counts one allocation and one free).
    pub allocations: u64,
    /// Blocks freed: one by one, or released by `reset`.
    pub frees: u64,
    /// `allocations` minus `frees`.
    pub blocks_in_use: u64,
    /// Usable bytes of the blocks in use.
    pub bytes_in_use: u64,
    /// The highest `bytes_in_use` since the arena was made (exact).
    pub peak_bytes_in_use: u64,
    /// The arena's byte limit, if any.
    pub limit: Option<usize>,
}

impl Arena {
    /// A new, empty arena with no limit.
    ///
    /// # Panics
    /// When no memory is left even for the arena's bookkeeping (about 10
    /// KiB of cma's metadata); [`Arena::try_new`] returns that as an error.
    pub fn new() -> Arena {
        Arena::try_new().expect("cma: no memory for an arena")
    }

    /// A new, empty arena, or `CmaError::OutOfMemory`.
    pub fn try_new() -> Result<Arena, CmaError> {
        ensure_init();
        let heap = ArenaHeap::create();
        NonNull::new(heap)
            .map(|heap| Arena {
                heap,
                _one_thread_at_a_time: PhantomData,
            })
            .ok_or(CmaError::OutOfMemory {
                size: core::mem::size_of::<ArenaHeap>(),
            })
    }

    /// A new arena whose blocks may take at most `limit` usable bytes
    /// together (see [`Arena::set_limit`]).
    pub fn with_limit(limit: usize) -> Arena {
        let arena = Arena::new();
        arena.set_limit(Some(limit));
        arena
    }

    #[inline(always)]
    fn heap(&self) -> &ArenaHeap {
        // SAFETY: the heap lives until `drop` destroys it, and only this
        // arena (on one thread at a time) uses it as its user.
        unsafe { self.heap.as_ref() }
    }

    /// The byte limit, `None` for none.
    pub fn limit(&self) -> Option<usize> {
        self.heap().limit()
    }

    /// Sets (`Some`) or lifts (`None`) the byte limit: an allocation that
    /// would take the usable bytes in use past it fails with
    /// `CmaError::TotalLimitExceeded` (null, or `AllocError`), and nothing
    /// changes. Blocks already allocated stay. The process-wide limits
    /// ([`crate::set_alloc_limits`]) apply to arenas too.
    pub fn set_limit(&self, limit: Option<usize>) {
        self.heap().set_limit(limit)
    }

    /// Allocates `size` bytes aligned to `align` (a power of two; at least
    /// 8 is used), or returns why it cannot (out of memory, over a limit,
    /// an alignment that is not a power of two).
    #[inline]
    pub fn alloc(&self, size: usize, align: usize) -> Result<NonNull<u8>, CmaError> {
        self.heap().alloc(size, at_least_8(align))
    }

    /// Allocates `size` zeroed bytes aligned to `align`, as [`Arena::alloc`].
    pub fn alloc_zeroed(&self, size: usize, align: usize) -> Result<NonNull<u8>, CmaError> {
        self.heap().alloc_zeroed(size, at_least_8(align))
    }

    /// Resizes `p` to `size` bytes at `align` (C `realloc` semantics:
    /// contents kept up to the smaller size; null `p` allocates). A block of
    /// this arena stays in place when its slot holds the new size, else
    /// moves to a new block of the arena; a live block of another heap or
    /// arena moves into this one. On error the old block is intact.
    /// Misuse of `p` (not a live cma block) is reported and aborts.
    ///
    /// # Safety
    /// `p` is null or a live block, not used after a successful call that
    /// moved it.
    pub unsafe fn realloc(
        &self,
        p: *mut u8,
        size: usize,
        align: usize,
    ) -> Result<NonNull<u8>, CmaError> {
        // SAFETY: the caller's contract.
        unsafe { self.realloc_as(p, size, align, "Arena::realloc") }
    }

    /// `realloc`, naming `operation` in a misuse report.
    ///
    /// # Safety
    /// As for `realloc`.
    pub(crate) unsafe fn realloc_as(
        &self,
        p: *mut u8,
        size: usize,
        align: usize,
        operation: &'static str,
    ) -> Result<NonNull<u8>, CmaError> {
        let align = at_least_8(align);
        match self.heap().realloc(p, size, align) {
            Ok(Some(q)) => Ok(q),
            Ok(None) => {
                // Another heap's block: moved into this arena.
                let old_size = match crate::checked_block_size(p) {
                    Ok(n) => n,
                    Err(e) => report::fatal(operation, e),
                };
                let q = self.heap().alloc(size, align)?;
                // SAFETY: both blocks are live and distinct; the copy stays
                // inside both.
                unsafe { core::ptr::copy_nonoverlapping(p, q.as_ptr(), old_size.min(size)) };
                free_with(p, operation, AllocKind::Malloc);
                Ok(q)
            }
            Err(e) if e.is_misuse() => report::fatal(operation, e),
            Err(e) => Err(e),
        }
    }

    /// Frees one block of the arena (null is accepted). A live block of
    /// another heap or arena is freed there, as [`crate::free`] would;
    /// anything else (a double free, a block of an arena that was reset...)
    /// is reported and aborts.
    ///
    /// # Safety
    /// `p` is not used after the call.
    #[inline]
    pub unsafe fn free(&self, p: *mut u8) {
        self.free_as(p, "Arena::free")
    }

    #[inline]
    fn free_as(&self, p: *mut u8, operation: &'static str) {
        match self.heap().free(p) {
            Ok(ArenaFree::Freed) => {}
            Ok(ArenaFree::NotThisArena) => free_with(p, operation, AllocKind::Malloc),
            Err(e) => report::fatal(operation, e),
        }
    }

    /// Like [`Arena::free`], but returns the misuse as an error instead of
    /// aborting; nothing changes then.
    ///
    /// # Safety
    /// As for `free`.
    pub unsafe fn checked_free(&self, p: *mut u8) -> Result<(), CmaError> {
        match self.heap().free(p)? {
            ArenaFree::Freed => Ok(()),
            // SAFETY: the caller's contract.
            ArenaFree::NotThisArena => unsafe { crate::checked_free(p) },
        }
    }

    /// Releases every block still in the arena at once: its slabs and large
    /// blocks go back to cma's page allocator, without the blocks being
    /// freed one by one. They count as freed in the arena's statistics and
    /// in [`crate::stats`]. The arena can be used again; its peak stays.
    ///
    /// `&mut self`: no collection can still hold the arena. A block's
    /// address kept elsewhere is dangling: a free of it is reported (`double
    /// free ... (in freed pages)`) while its pages are not handed out again.
    pub fn reset(&mut self) {
        self.heap().reset()
    }

    /// The arena's statistics now (collects what other threads freed).
    pub fn stats(&self) -> ArenaStats {
        let c = self.heap().counts();
        ArenaStats {
            allocations: c.allocations,
            frees: c.frees,
            blocks_in_use: c.allocations - c.frees,
            bytes_in_use: c.bytes_in_use,
            peak_bytes_in_use: c.peak_bytes_in_use,
            limit: self.limit(),
        }
    }

    /// For cma's C face: the arena as an opaque pointer, not dropped.
    #[doc(hidden)]
    pub fn into_raw(self) -> NonNull<core::ffi::c_void> {
        let heap = self.heap.cast();
        core::mem::forget(self);
        heap
    }

    /// For cma's C face: the arena that `into_raw` gave.
    ///
    /// # Safety
    /// `raw` came from `into_raw`, and this is the one `Arena` made from it
    /// (dropping it destroys the arena; `ManuallyDrop` borrows it).
    #[doc(hidden)]
    pub unsafe fn from_raw(raw: NonNull<core::ffi::c_void>) -> Arena {
        Arena {
            heap: raw.cast(),
            _one_thread_at_a_time: PhantomData,
        }
    }
}

impl Default for Arena {
    fn default() -> Arena {
        Arena::new()
    }
}

impl core::fmt::Debug for Arena {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Arena")
            .field("heap", &self.heap)
            .field("limit", &self.limit())
            .finish()
    }
}

impl Drop for Arena {
    /// Releases everything still in the arena, at once, as `reset` does.
    fn drop(&mut self) {
        // SAFETY: the heap came from `create`, and this is its last use.
        unsafe { ArenaHeap::destroy(self.heap.as_ptr()) }
    }
}

/// Raises a power-of-two alignment to 8; leaves anything else for the
/// engine to refuse as `InvalidAlignment`.
fn at_least_8(align: usize) -> usize {
    if align.is_power_of_two() {
        align.max(8)
    } else {
        align
    }
}

// SAFETY: blocks come from the arena's heap, honour the layout's size and
// alignment, and stay valid until they are deallocated or the arena is
// reset or dropped; `reset` takes `&mut self` and `drop` the arena itself,
// so neither can happen while a collection holds `&Arena`, and a collection
// that holds the `Arena` by value drops its blocks before it drops the
// arena.
unsafe impl Allocator for Arena {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        match self.heap().alloc(layout.size(), layout.align().max(8)) {
            Ok(p) => Ok(NonNull::slice_from_raw_parts(p, layout.size())),
            Err(_) => Err(AllocError),
        }
    }

    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        match self
            .heap()
            .alloc_zeroed(layout.size(), layout.align().max(8))
        {
            Ok(p) => Ok(NonNull::slice_from_raw_parts(p, layout.size())),
            Err(_) => Err(AllocError),
        }
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, _layout: Layout) {
        self.free_as(ptr.as_ptr(), "Arena::deallocate")
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        _old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the trait's contract: `ptr` is a live block of this arena.
        match unsafe {
            self.realloc_as(
                ptr.as_ptr(),
                new_layout.size(),
                new_layout.align(),
                "Arena::grow",
            )
        } {
            Ok(p) => Ok(NonNull::slice_from_raw_parts(p, new_layout.size())),
            Err(_) => Err(AllocError),
        }
    }

    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        _old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: as in `grow`.
        match unsafe {
            self.realloc_as(
                ptr.as_ptr(),
                new_layout.size(),
                new_layout.align(),
                "Arena::shrink",
            )
        } {
            Ok(p) => Ok(NonNull::slice_from_raw_parts(p, new_layout.size())),
            Err(_) => Err(AllocError),
        }
    }
}
