//! Arena heaps: heaps that belong to no thread, behind `cma::Arena` and the
//! C library's `cma_arena_*`.
//!
//! An arena is a `Heap` like a thread's (size classes, slabs, a cache per
//! class, the remote-free protocol, the quarantine), plus what a thread heap
//! does not need: a list of every slab and large block it holds, so that
//! `reset` gives them all back to the page allocator at once instead of
//! freeing its blocks one by one; statistics of its own; and a byte limit.
//!
//! Who touches what:
//!
//! - the arena's user, one thread at a time (whoever holds the `Arena`, or
//!   calls `cma_arena_*`), plays the owner of a thread heap: it allocates,
//!   frees its own blocks, collects remote frees, resets. Everything owner
//!   only in `Heap` and `Span` is the user's here, and `slabs` and the
//!   statistics too;
//! - any thread may free an arena's block through `cma::free` (or `free`,
//!   `realloc`...). A slot goes through the remote-free protocol like any
//!   heap's: its slab's owner token is the arena's, which is never a
//!   thread's, so no thread's free fast path takes it, and the user collects
//!   the free at its next refill. A large block (its descriptor's `owner`
//!   holds the arena's token, see `Span::owner`) leaves the arena's list
//!   under `large`, a lock that only large allocations and frees take;
//! - `reset` and destroy must not overlap a free of one of the arena's
//!   blocks by another thread: that is a use after reset, which cma reports
//!   when it sees it (the block's pages are free) but cannot order.
//!
//! Arena heaps are never freed: a destroyed arena's heap waits in a pool
//! for the next arena, so an owner token always names a heap, and it stays
//! on the list of every heap, so the process-wide statistics and the total
//! limit count arena blocks like any others. A block released by `reset`
//! counts as freed there.

use core::cell::Cell;
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicU64, Ordering};

use super::guard::AllocatorGuard;
use super::pool::publish_heap;
use super::slabs::pages_freed;
use super::{ClassState, Heap};
use crate::check::error::CmaError;
use crate::check::kind::AllocKind;
use crate::check::level::{self, MODE_CHECKED, MODE_FAST};
use crate::check::lookup::{self, large_block, Found};
use crate::check::report;
use crate::check::switches::{self, CheckSwitch};
use crate::check::trailer::{self, TRAILER};
use crate::meta::segment_map;
use crate::meta::span::{SlabList, Span};
use crate::observe::limits;
use crate::os::PAGE_SIZE;
use crate::pages::{pages_for, PAGES};
use crate::slab::page_purge;
use crate::slab::size_class::{class_for, SizeClass, NUM_CLASSES, SMALL_TABLE_MAX};
use crate::slab::slot::slot_at;
use crate::util::spin_lock::SpinLock;
use crate::util::zero::wipe;

/// No byte limit.
const NO_LIMIT: u64 = u64::MAX;

/// Requests up to this size (the trailer included) take the arena's
/// allocation fast path.
const FAST_MAX: usize = SMALL_TABLE_MAX - TRAILER;

/// An arena's heap and its bookkeeping. Lives in the metadata region, at
/// the address of its heap (its owner token).
#[repr(C)]
pub(crate) struct ArenaHeap {
    /// First: a token names the heap, and the heap is the arena.
    heap: Heap,
    /// Every slab of the arena, linked through `Span::arena_next` (user
    /// only; see `Heap::arena_slab_added`).
    slabs: Cell<*mut Span>,
    /// Large and huge blocks, shared with the threads that free them.
    large: SpinLock<LargeBlocks>,
    /// Set (under `large`) when another path freed one of them: the user
    /// looks under the lock only then.
    large_freed_elsewhere: AtomicU64,
    /// The statistics (user only; see `ArenaCounts`).
    counts: ArenaCounts,
    /// The byte limit (`NO_LIMIT`: none). User only.
    limit: Cell<u64>,
    /// Next arena heap in the pool (pool lock).
    next_pooled: Cell<*mut ArenaHeap>,
}

/// The arena's large blocks, and those that other paths freed since the
/// user last looked.
struct LargeBlocks {
    head: *mut Span,
    freed_elsewhere: u64,
    bytes_freed_elsewhere: u64,
}

// SAFETY: the descriptors on the list are only followed under the lock.
unsafe impl Send for LargeBlocks {}

/// An arena's statistics, kept by its user. Frees that other threads make
/// reach them when the user collects them (`absorb_elsewhere`).
struct ArenaCounts {
    allocations: Cell<u64>,
    frees: Cell<u64>,
    /// Usable bytes of the blocks in use (block sizes, or whole pages).
    bytes: Cell<u64>,
    peak_bytes: Cell<u64>,
    /// The heap's `remote_frees_collected` and `remote_bytes_collected` as
    /// of the last look.
    remote_frees_seen: Cell<u64>,
    remote_bytes_seen: Cell<u64>,
}

/// An arena's statistics, as its user reads them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) allocations: u64,
    pub(crate) frees: u64,
    pub(crate) bytes_in_use: u64,
    pub(crate) peak_bytes_in_use: u64,
}

/// What the arena's free did with a pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArenaFree {
    /// It was one of the arena's blocks, and is freed.
    Freed,
    /// It is a live block of another heap or arena: the caller routes it
    /// there.
    NotThisArena,
}

/// Arena heaps whose arenas were destroyed, linked through `next_pooled`.
struct Pool(*mut ArenaHeap);

// SAFETY: the pooled heaps are only followed under the lock.
unsafe impl Send for Pool {}

static POOL: SpinLock<Pool> = SpinLock::new(Pool(null_mut()));

impl ArenaHeap {
    /// A new, empty arena heap (from the pool, or fresh metadata); null when
    /// memory runs out. cma must be initialised.
    pub(crate) fn create() -> *mut ArenaHeap {
        let pooled = {
            let mut pool = POOL.lock();
            let head = pool.0;
            if !head.is_null() {
                // SAFETY: pooled heaps are live and unused.
                pool.0 = unsafe { (*head).next_pooled.get() };
            }
            head
        };
        if !pooled.is_null() {
            // SAFETY: the pool gave it to us alone.
            unsafe { (*pooled).start_afresh() };
            return pooled;
        }
        let _guard = AllocatorGuard::enter();
        let arena = {
            let mut pages = PAGES.lock();
            // The free paths read the segment map without a null check once
            // a heap exists (see `pool::new_heap`).
            if !segment_map::init() {
                return null_mut();
            }
            pages
                .meta
                .alloc(core::mem::size_of::<ArenaHeap>())
                .cast::<ArenaHeap>()
        };
        if arena.is_null() {
            return arena;
        }
        // SAFETY: fresh metadata for an arena heap, ours until published.
        unsafe {
            arena.write(ArenaHeap {
                heap: Heap::empty(),
                slabs: Cell::new(null_mut()),
                large: SpinLock::new(LargeBlocks {
                    head: null_mut(),
                    freed_elsewhere: 0,
                    bytes_freed_elsewhere: 0,
                }),
                large_freed_elsewhere: AtomicU64::new(0),
                counts: ArenaCounts {
                    allocations: Cell::new(0),
                    frees: Cell::new(0),
                    bytes: Cell::new(0),
                    peak_bytes: Cell::new(0),
                    remote_frees_seen: Cell::new(0),
                    remote_bytes_seen: Cell::new(0),
                },
                limit: Cell::new(NO_LIMIT),
                next_pooled: Cell::new(null_mut()),
            });
            (*arena).heap.init();
            // Sampled blocks live in the pool, outside any arena's lists:
            // an arena's blocks are never sampled.
            (*arena).heap.never_sample();
            (*arena).heap.is_arena.set(true);
            publish_heap(&raw mut (*arena).heap);
        }
        arena
    }

    /// A pooled heap starts a new arena: statistics from zero, no limit.
    fn start_afresh(&self) {
        let c = &self.counts;
        c.allocations.set(0);
        c.frees.set(0);
        c.bytes.set(0);
        c.peak_bytes.set(0);
        c.remote_frees_seen
            .set(self.heap.remote_frees_collected.get());
        c.remote_bytes_seen
            .set(self.heap.remote_bytes_collected.get());
        self.limit.set(NO_LIMIT);
    }

    /// Releases everything and puts the heap back in the pool.
    ///
    /// # Safety
    /// `arena` came from `create` and is not used again.
    pub(crate) unsafe fn destroy(arena: *mut ArenaHeap) {
        // SAFETY: live until it goes to the pool.
        let a = unsafe { &*arena };
        a.release(false);
        let mut pool = POOL.lock();
        a.next_pooled.set(pool.0);
        pool.0 = arena;
    }

    /// The heap of the arena whose token is `owner` (a descriptor's owner
    /// word that names an arena).
    fn from_owner_word(owner: u64) -> &'static ArenaHeap {
        // SAFETY: only arenas give tokens to large blocks, an arena heap
        // starts with its heap (`repr(C)`), and arena heaps are never freed.
        unsafe { &*(Heap::from_owner_word(owner) as *const ArenaHeap) }
    }

    // ----- statistics and the limit -----

    /// The byte limit, `None` for none.
    pub(crate) fn limit(&self) -> Option<usize> {
        let limit = self.limit.get();
        (limit != NO_LIMIT).then_some(limit as usize)
    }

    /// Sets (or lifts) the byte limit. Blocks already allocated stay.
    pub(crate) fn set_limit(&self, limit: Option<usize>) {
        self.limit.set(limit.map_or(NO_LIMIT, |l| l as u64));
    }

    /// The statistics now. Collects what other threads freed first.
    pub(crate) fn counts(&self) -> Counts {
        let _guard = AllocatorGuard::enter();
        self.heap.collect_delayed();
        self.absorb_elsewhere();
        let c = &self.counts;
        Counts {
            allocations: c.allocations.get(),
            frees: c.frees.get(),
            bytes_in_use: c.bytes.get(),
            peak_bytes_in_use: c.peak_bytes.get(),
        }
    }

    #[inline(always)]
    fn count_alloc(&self, usable: usize) {
        let c = &self.counts;
        c.allocations.set(c.allocations.get() + 1);
        let bytes = c.bytes.get() + usable as u64;
        c.bytes.set(bytes);
        if bytes > c.peak_bytes.get() {
            c.peak_bytes.set(bytes);
        }
    }

    #[inline(always)]
    fn count_free(&self, usable: usize) {
        let c = &self.counts;
        c.frees.set(c.frees.get() + 1);
        c.bytes.set(c.bytes.get().saturating_sub(usable as u64));
    }

    /// Takes into the statistics the frees of the arena's blocks made
    /// elsewhere: slots other threads freed that the heap has collected,
    /// and large blocks freed through `cma::free`.
    fn absorb_elsewhere(&self) {
        let c = &self.counts;
        let (frees, bytes) = (
            self.heap.remote_frees_collected.get(),
            self.heap.remote_bytes_collected.get(),
        );
        let mut freed = frees.wrapping_sub(c.remote_frees_seen.get());
        let mut freed_bytes = bytes.wrapping_sub(c.remote_bytes_seen.get());
        c.remote_frees_seen.set(frees);
        c.remote_bytes_seen.set(bytes);
        if self.large_freed_elsewhere.load(Ordering::Relaxed) != 0 {
            let mut large = self.large.lock();
            freed += large.freed_elsewhere;
            freed_bytes += large.bytes_freed_elsewhere;
            large.freed_elsewhere = 0;
            large.bytes_freed_elsewhere = 0;
            self.large_freed_elsewhere.store(0, Ordering::Relaxed);
        }
        c.frees.set(c.frees.get() + freed);
        c.bytes.set(c.bytes.get().saturating_sub(freed_bytes));
    }

    // ----- allocation -----

    /// The class state that serves `bytes` at `align` (at most 16).
    #[inline(always)]
    fn state_for(&self, bytes: usize, align: usize) -> &ClassState {
        if align <= 8 {
            self.heap.state_for(bytes)
        } else {
            // C's table serves 16-byte alignment from 16 bytes up.
            self.heap.c_state_for(bytes.max(16))
        }
    }

    /// Allocates `size` bytes at `align` (a power of two, at least 8), or
    /// returns why it cannot. The fast path pops a cached slot of the arena's
    /// heap, as a thread's does, and counts it.
    #[inline]
    pub(crate) fn alloc(&self, size: usize, align: usize) -> Result<NonNull<u8>, CmaError> {
        match self.alloc_cached(size, align) {
            Some(p) => Ok(p),
            None => self.alloc_slow(size, align, false),
        }
    }

    /// Allocates `size` zeroed bytes at `align`.
    pub(crate) fn alloc_zeroed(&self, size: usize, align: usize) -> Result<NonNull<u8>, CmaError> {
        match self.alloc_cached(size, align) {
            Some(p) => {
                if !level::checked() || !switches::on(CheckSwitch::Wipe) {
                    // SAFETY: a fresh block of at least `size` bytes. (A
                    // checked level's slots read as zero when handed out,
                    // when freed slots are wiped.)
                    unsafe { core::ptr::write_bytes(p.as_ptr(), 0, size) };
                }
                Ok(p)
            }
            None => self.alloc_slow(size, align, true),
        }
    }

    /// The fast path: a cached slot of the class serving `size` at `align`,
    /// counted (and at a checked level verified zero and armed); `None` when
    /// the cache is dry, the request is not small, or a limit is set.
    #[inline(always)]
    fn alloc_cached(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        if align > 16 || size > FAST_MAX || self.limit.get() != NO_LIMIT {
            return None;
        }
        let mode = level::mode();
        let (st, p) = if mode == MODE_FAST {
            let st = self.state_for(size, align);
            (st, st.pop()?)
        } else if mode == MODE_CHECKED {
            let st = self.state_for(size + TRAILER, align);
            (st, st.pop_checked(size)?)
        } else {
            return None;
        };
        self.count_alloc(st.block_size.get());
        Some(p)
    }

    /// Everything the fast path does not serve: a refill, a limit, a large
    /// block, a big alignment, errors.
    #[cold]
    #[inline(never)]
    fn alloc_slow(&self, size: usize, align: usize, zero: bool) -> Result<NonNull<u8>, CmaError> {
        if !align.is_power_of_two() || align > isize::MAX as usize / 2 {
            return Err(CmaError::InvalidAlignment { align });
        }
        if size > isize::MAX as usize - align {
            return Err(CmaError::OutOfMemory { size });
        }
        let _guard = AllocatorGuard::enter();
        let trailer = level::trailer_bytes();
        let class = class_for(size + trailer, align);
        let usable = match class {
            Some(c) => c.block_size(),
            None => pages_for(size + trailer) * PAGE_SIZE,
        };
        if limits::active() {
            limits::check(size, usable)?;
        }
        self.check_limit(size, usable)?;
        let (p, usable) = match class {
            // A checked level's slot reads as zero already (verified),
            // unless freed slots are not wiped.
            Some(class) if trailer != 0 => {
                let p = self.heap.alloc_checked(class, size, align);
                if !p.is_null() && zero && !switches::on(CheckSwitch::Wipe) {
                    // SAFETY: a fresh block of at least `size` bytes.
                    unsafe { core::ptr::write_bytes(p, 0, size) };
                }
                (p, usable)
            }
            Some(class) => {
                let p = self.heap.alloc_small(class);
                if !p.is_null() && zero {
                    // SAFETY: a fresh block of the class's size.
                    unsafe { core::ptr::write_bytes(p, 0, class.block_size()) };
                }
                (p, usable)
            }
            None => self.alloc_large(size, align, zero),
        };
        let p = NonNull::new(p).ok_or(CmaError::OutOfMemory { size })?;
        self.count_alloc(usable);
        // A refill may have collected frees of other threads.
        self.absorb_elsewhere();
        Ok(p)
    }

    /// Refuses `usable` more bytes past the arena's limit (after collecting
    /// what other threads freed, which may make room).
    fn check_limit(&self, size: usize, usable: usize) -> Result<(), CmaError> {
        let limit = self.limit.get();
        if limit == NO_LIMIT {
            return Ok(());
        }
        let over = || self.counts.bytes.get().saturating_add(usable as u64) > limit;
        if over() {
            self.heap.collect_delayed();
            self.absorb_elsewhere();
        }
        if over() {
            return Err(CmaError::TotalLimitExceeded {
                size,
                in_use: self.counts.bytes.get() as usize,
                limit: limit as usize,
            });
        }
        Ok(())
    }

    /// A large or huge block of `size` bytes (and a trailer at a checked
    /// level), on the arena's list, with its bytes. Null when memory runs
    /// out.
    fn alloc_large(&self, size: usize, align: usize, zero: bool) -> (*mut u8, usize) {
        let trailer = level::trailer_bytes();
        let p = self.heap.alloc_large(size + trailer, align, zero);
        if p.is_null() {
            return (p, 0);
        }
        let Ok(Found::Large(span)) = lookup::find_block(p as usize) else {
            unreachable!("a fresh large block is not found");
        };
        if trailer != 0 {
            // SAFETY: a fresh block of `span.bytes()` bytes; size + TRAILER
            // fits.
            unsafe { trailer::arm(p, span.bytes(), size) };
        }
        let mut large = self.large.lock();
        span.owner.store(self.heap.owner_token(), Ordering::Relaxed);
        link(&mut large.head, span);
        (p, span.bytes())
    }

    // ----- free -----

    /// Frees `p` when it is one of the arena's blocks; says so when it is a
    /// live block of someone else; returns the misuse otherwise (nothing
    /// changed then). Null is freed.
    #[inline]
    pub(crate) fn free(&self, p: *mut u8) -> Result<ArenaFree, CmaError> {
        let addr = p as usize;
        if let Some(span) = lookup::span_fast(addr) {
            // The arena's own slab, no remote free pending (a large block
            // of the arena has no slots: `slot_at` refuses it).
            if span.owner.load(Ordering::Relaxed) == self.heap.owner_token() {
                if level::checked() {
                    if let Some(index) = slot_at(span, addr) {
                        if self
                            .heap
                            .free_checked(span, index, AllocKind::Malloc)
                            .is_ok()
                        {
                            self.count_free(span.slot_size());
                            return Ok(ArenaFree::Freed);
                        }
                    }
                } else if self.heap.try_free_fast(span, addr) {
                    self.count_free(span.slot_size());
                    return Ok(ArenaFree::Freed);
                }
            }
        }
        self.free_slow(p)
    }

    #[cold]
    #[inline(never)]
    fn free_slow(&self, p: *mut u8) -> Result<ArenaFree, CmaError> {
        if p.is_null() {
            return Ok(ArenaFree::Freed);
        }
        let _guard = AllocatorGuard::enter();
        let found = lookup::find_block(p as usize)?;
        match found {
            Found::Slot { span, index } => {
                if !self.heap.owns(span) {
                    return Ok(ArenaFree::NotThisArena);
                }
                if level::checked() {
                    self.heap.free_checked(span, index, AllocKind::Malloc)?;
                } else {
                    self.heap.free_slot_checked(span, index)?;
                }
                self.count_free(span.slot_size());
            }
            // Arenas never sample (`create`).
            Found::Sampled(_) | Found::Zero(_) => return Ok(ArenaFree::NotThisArena),
            Found::Large(span) => {
                if !self.owns_large(span) {
                    return Ok(ArenaFree::NotThisArena);
                }
                if level::checked() {
                    lookup::live_size(&found)?;
                    lookup::check_kind(&found, AllocKind::Malloc)?;
                }
                self.free_own_large(span)?;
            }
        }
        Ok(ArenaFree::Freed)
    }

    fn owns_large(&self, span: &Span) -> bool {
        let owner = span.owner.load(Ordering::Relaxed);
        owner != 0 && core::ptr::eq(Heap::from_owner_word(owner), &self.heap)
    }

    /// The user frees one of the arena's large blocks (validated). A free
    /// of it through `cma::free` on another thread that got there first is
    /// a double free.
    fn free_own_large(&self, span: &Span) -> Result<(), CmaError> {
        {
            let mut large = self.large.lock();
            if !self.owns_large(span) {
                return Err(CmaError::DoubleFree {
                    addr: span.start(),
                    block: large_block(span),
                });
            }
            unlink(&mut large.head, span);
            span.owner.store(0, Ordering::Relaxed);
        }
        self.count_free(span.bytes());
        self.heap.free_large(span as *const Span as *mut Span);
        Ok(())
    }

    // ----- realloc -----

    /// Resizes one of the arena's blocks: in place when its slot (or its
    /// pages) hold the new size and it would not waste more than half,
    /// else by moving it to a new block of the arena. `Ok(None)`: `p` is a
    /// live block of someone else (the caller moves it into the arena).
    /// On error the block is intact.
    pub(crate) fn realloc(
        &self,
        p: *mut u8,
        new_size: usize,
        align: usize,
    ) -> Result<Option<NonNull<u8>>, CmaError> {
        let Some(old) = NonNull::new(p) else {
            return self.alloc(new_size, align).map(Some);
        };
        let (old_size, room) = match self.own_live_slot(p as usize) {
            Some(sizes) => sizes,
            None => {
                let _guard = AllocatorGuard::enter();
                let found = lookup::find_block(p as usize)?;
                let room = match found {
                    Found::Slot { span, .. } if self.heap.owns(span) => span.slot_size(),
                    Found::Large(span) if self.owns_large(span) => span.bytes(),
                    _ => return Ok(None),
                };
                (lookup::live_size(&found)?, room)
            }
        };
        let trailer = level::trailer_bytes();
        let aligned = p as usize % align == 0;
        if aligned && new_size <= room - trailer && new_size >= room / 2 {
            if trailer != 0 {
                // SAFETY: a live block of `room` bytes; new_size + TRAILER
                // fits.
                unsafe { trailer::arm(p, room, new_size) };
            }
            return Ok(Some(old));
        }
        let q = self.alloc(new_size, align)?;
        // SAFETY: both blocks are live and distinct; the copy stays inside
        // both.
        unsafe { core::ptr::copy_nonoverlapping(p, q.as_ptr(), old_size.min(new_size)) };
        let freed = self.free(p);
        debug_assert_eq!(freed, Ok(ArenaFree::Freed));
        Ok(Some(q))
    }

    /// The common case of `realloc`: `addr` is an allocated slot of one of
    /// the arena's slabs with no remote free pending (and, at a checked
    /// level, an intact trailer): its size (the request's at a checked
    /// level) and its slot's. `None` for anything else.
    #[inline]
    fn own_live_slot(&self, addr: usize) -> Option<(usize, usize)> {
        let span = lookup::span_fast(addr)?;
        if span.owner.load(Ordering::Relaxed) != self.heap.owner_token() {
            return None;
        }
        let index = slot_at(span, addr)?;
        let word = span.allocated_word(index / 64).load(Ordering::Relaxed);
        if word & (1u64 << (index % 64)) == 0 {
            return None;
        }
        let bs = span.slot_size();
        if !level::checked() {
            return Some((bs, bs));
        }
        // SAFETY: an allocated slot of the arena, armed when handed out.
        let requested = unsafe { trailer::verify(addr as *const u8, bs) }?;
        Some((requested, bs))
    }

    // ----- reset -----

    /// Releases every block of the arena at once, without freeing them one
    /// by one: the slab each size class was allocating from stays with the
    /// arena, emptied (so that a loop of requests does not take and give
    /// back the same slabs each time); every other slab and every large
    /// block goes back to the page allocator, under one lock for the slabs.
    /// The blocks count as freed, here and in the process-wide statistics.
    /// At a checked level their trailers are verified first (an overflow is
    /// reported as a free would), and the slots of the kept slabs are wiped.
    pub(crate) fn reset(&self) {
        self.release(true)
    }

    fn release(&self, keep_current: bool) {
        let _guard = AllocatorGuard::enter();
        let heap = &self.heap;
        // What other threads freed, and the quarantine, go first: they may
        // retire slabs, and their counts must be in before the rest.
        heap.collect_delayed();
        heap.flush_quarantine();
        self.absorb_elsewhere();
        for st in &heap.classes {
            let slab = st.slab.get();
            if !slab.is_null() {
                // SAFETY: the class's current slab is the arena's. Its
                // cached slots go back to its bitmap (they were counted in
                // `used`, never allocated).
                let s = unsafe { &*slab };
                let unserved = st.drop_cache();
                s.used.set(s.used.get() - unserved.count_ones());
            }
            st.drop_cache();
            st.word.set(0);
            if !keep_current {
                st.slab.set(null_mut());
            }
        }
        for partial in &heap.partial {
            partial.set(null_mut());
        }
        self.release_slabs(keep_current);
        for (class, st) in heap.classes.iter().enumerate() {
            heap.sample_class(st, SizeClass::from_index(class));
        }
        self.release_large();
        // Anything on the delayed list now was freed during the reset (a
        // use after reset): its slab is gone or empty.
        heap.delayed.store(null_mut(), Ordering::Relaxed);
        let c = &self.counts;
        c.frees.set(c.allocations.get());
        c.bytes.set(0);
    }

    /// Empties every slab; keeps the current ones (with `keep_current`) and
    /// gives the others back to the page allocator, under one lock. Counts
    /// the blocks still allocated in them as freed.
    fn release_slabs(&self, keep_current: bool) {
        let heap = &self.heap;
        let checked = level::checked();
        let mut freed = [0u64; NUM_CLASSES];
        let (mut kept, mut to_free) = (null_mut(), null_mut());
        let mut cur = self.slabs.replace(null_mut());
        while !cur.is_null() {
            // SAFETY: slabs on the arena's list are its own and live.
            let s = unsafe { &*cur };
            let next = s.arena_next.get();
            let keep = keep_current && s.list.get() == SlabList::Current;
            freed[s.class.load(Ordering::Relaxed) as usize] += empty_slab(s, checked, keep);
            if keep {
                link(&mut kept, s);
            } else {
                // As `Heap::retire_slab`: out of the purge pass's reach, and
                // reading as no slab to a stale page-table lookup.
                page_purge::retire(s);
                s.capacity.store(0, Ordering::Relaxed);
                s.owner.store(0, Ordering::Relaxed);
                link(&mut to_free, s);
            }
            cur = next;
        }
        self.slabs.set(kept);
        for (counter, n) in heap.frees.iter().zip(freed) {
            counter.add(n);
        }
        if to_free.is_null() {
            return;
        }
        let dirty = {
            let mut pages = PAGES.lock();
            let mut cur = to_free;
            while !cur.is_null() {
                // SAFETY: as above; read the link before the descriptor goes.
                let next = unsafe { (*cur).arena_next.get() };
                // SAFETY: the arena's slab, retired above; its blocks are
                // released with it.
                unsafe { pages.free_span(cur) };
                cur = next;
            }
            pages.dirty_bytes
        };
        pages_freed(dirty);
    }

    /// Frees every large block of the arena (counted in its heap).
    fn release_large(&self) {
        let mut cur = {
            let mut large = self.large.lock();
            let head = core::mem::replace(&mut large.head, null_mut());
            let mut s = head;
            while !s.is_null() {
                // SAFETY: listed descriptors are live under the lock. From
                // now on no other path takes them for the arena's.
                unsafe {
                    (*s).owner.store(0, Ordering::Relaxed);
                    s = (*s).arena_next.get();
                }
            }
            head
        };
        while !cur.is_null() {
            // SAFETY: taken off the list above: ours alone.
            let s = unsafe { &*cur };
            let next = s.arena_next.get();
            if level::checked() {
                // SAFETY: a live large block of the arena, armed when it was
                // handed out.
                if unsafe { trailer::verify(s.start() as *const u8, s.bytes()) }.is_none() {
                    report::fatal(
                        RESET,
                        CmaError::BufferOverflow {
                            addr: s.start(),
                            block: large_block(s),
                        },
                    );
                }
            }
            self.heap.free_large(cur);
            cur = next;
        }
    }
}

impl Heap {
    /// An arena's heap took a new slab: onto the arena's list.
    pub(super) fn arena_slab_added(&self, slab: &Span) {
        // SAFETY: only arena heaps call this, and an arena heap starts with
        // its heap.
        let arena = unsafe { &*(self as *const Heap as *const ArenaHeap) };
        let mut head = arena.slabs.get();
        link(&mut head, slab);
        arena.slabs.set(head);
    }

    /// An arena's heap gives an empty slab back: off the arena's list.
    pub(super) fn arena_slab_removed(&self, slab: &Span) {
        // SAFETY: as in `arena_slab_added`.
        let arena = unsafe { &*(self as *const Heap as *const ArenaHeap) };
        let mut head = arena.slabs.get();
        unlink(&mut head, slab);
        arena.slabs.set(head);
    }

    /// Another path than the arena's own (`cma::free`, `realloc`, on any
    /// thread) frees an arena's large block, validated: it leaves the
    /// arena's list under its lock, and is freed and counted here. A
    /// double free that raced this one is reported.
    pub(super) fn free_arena_large_elsewhere(&self, span: &Span) -> Result<(), CmaError> {
        let owner = span.owner.load(Ordering::Relaxed);
        let arena = ArenaHeap::from_owner_word(owner);
        {
            let mut large = arena.large.lock();
            if span.owner.load(Ordering::Relaxed) != owner {
                return Err(CmaError::DoubleFree {
                    addr: span.start(),
                    block: large_block(span),
                });
            }
            unlink(&mut large.head, span);
            span.owner.store(0, Ordering::Relaxed);
            large.freed_elsewhere += 1;
            large.bytes_freed_elsewhere += span.bytes() as u64;
            arena.large_freed_elsewhere.store(1, Ordering::Relaxed);
        }
        self.free_large(span as *const Span as *mut Span);
        Ok(())
    }
}

/// The operation a report at reset names.
const RESET: &str = "arena reset";

/// Empties a slab of an arena that is being reset: counts its allocated
/// slots (returned), and at a checked level verifies their trailers (an
/// overflow is reported) and, when the slab is `kept`, wipes them so that
/// its free slots read as zero again; a kept slab's bitmaps are cleared.
/// Runs over the bitmap words, a run of slots at a time: no block is freed
/// one by one.
fn empty_slab(s: &Span, checked: bool, kept: bool) -> u64 {
    let bs = s.slot_size();
    let mut live = 0u64;
    for w in 0..s.words.get() as usize {
        let bits = s.allocated_word(w).load(Ordering::Relaxed);
        if bits == 0 {
            continue;
        }
        live += bits.count_ones() as u64;
        if checked {
            let mut rest = bits;
            while rest != 0 {
                let index = w * 64 + rest.trailing_zeros() as usize;
                rest &= rest - 1;
                let addr = s.start() + index * bs;
                // SAFETY: an allocated slot, armed when it was handed out.
                if unsafe { trailer::verify(addr as *const u8, bs) }.is_none() {
                    report::fatal(
                        RESET,
                        CmaError::BufferOverflow {
                            addr,
                            block: lookup::class_block(s, addr),
                        },
                    );
                }
            }
            if kept && switches::on(CheckSwitch::Wipe) {
                // Runs of allocated slots, each wiped at once.
                let mut rest = bits;
                while rest != 0 {
                    let first = rest.trailing_zeros() as usize;
                    let run = (rest >> first).trailing_ones() as usize;
                    let start = s.start() + (w * 64 + first) * bs;
                    // SAFETY: `run` allocated slots of the slab, released
                    // here; block sizes are multiples of 8.
                    unsafe { wipe(start as *mut u8, run * bs) };
                    let run_bits = (((1u128 << run) - 1) as u64) << first;
                    rest &= !run_bits;
                }
            }
        }
        if kept {
            s.allocated_word(w).store(0, Ordering::Relaxed);
            s.kind_word(0, w).store(0, Ordering::Relaxed);
            s.kind_word(1, w).store(0, Ordering::Relaxed);
        }
    }
    if kept {
        // Current and empty: no cached slot, no allocated one.
        s.used.set(0);
    }
    live
}

/// Puts `span` at the head of an arena list.
fn link(head: &mut *mut Span, span: &Span) {
    let this = span as *const Span as *mut Span;
    span.arena_prev.set(null_mut());
    span.arena_next.set(*head);
    if !head.is_null() {
        // SAFETY: listed descriptors are live.
        unsafe { (**head).arena_prev.set(this) };
    }
    *head = this;
}

/// Takes `span` off an arena list.
fn unlink(head: &mut *mut Span, span: &Span) {
    let (prev, next) = (span.arena_prev.get(), span.arena_next.get());
    if prev.is_null() {
        *head = next;
    } else {
        // SAFETY: listed descriptors are live.
        unsafe { (*prev).arena_next.set(next) };
    }
    if !next.is_null() {
        // SAFETY: as above.
        unsafe { (*next).arena_prev.set(prev) };
    }
    span.arena_prev.set(null_mut());
    span.arena_next.set(null_mut());
}

/// Takes the pool's lock before `fork` (see `api::init`).
pub(crate) fn lock_for_fork() {
    POOL.lock_for_fork();
}

/// Releases the lock `lock_for_fork` took, in the parent or the child.
///
/// # Safety
/// Only after `lock_for_fork`, on the thread that forked.
pub(crate) unsafe fn unlock_after_fork() {
    // SAFETY: guaranteed by the caller.
    unsafe { POOL.force_unlock() };
}
