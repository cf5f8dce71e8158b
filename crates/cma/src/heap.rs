//! Thread heaps: the allocation fast path, the local and remote free paths,
//! and slab bookkeeping.
//!
//! One heap per thread. For each size class it keeps a current slab and a
//! one-word cache of that slab's free slots: allocating pops the lowest bit
//! of the cache (no lock, no atomic read-modify-write). Local frees of slots
//! in the cached word go into a second word, `freed`, which becomes the
//! cache when the cache runs dry (so an allocation never waits on the free
//! just before it); past that a slow path refills the cache from the slab's
//! bitmap, collects remote frees, or takes another slab. A slab belongs to
//! exactly one heap for its whole life; frees from other threads go through
//! `remote_free` and are collected by the owner.
//!
//! Field ownership: everything in `ClassState` and the slabs' owner fields is
//! touched only by the thread that holds the heap; the counters are written
//! only by that thread (plain load + store) and read by anyone; `delayed` is
//! the lock-free list remote threads push slabs onto.

use core::cell::Cell;
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use crate::canary;
use crate::error::{BlockKind, CmaError};
use crate::global::{self, GLOBAL};
use crate::os::PAGE_SIZE;
use crate::page_alloc::{pages_for, PageAlloc, MAX_SPAN_PAGES};
use crate::purge;
use crate::remote_free::{self, RemoteFree};
use crate::report;
use crate::size_class::{class_block_sizes, SizeClass, NUM_CLASSES};
use crate::span::{SlabList, Span, SpanKind};

/// Blocks above this size get a mapping of their own; below, they are spans
/// of a segment, which reuse freed pages without a system call.
pub const LARGE_MAX: usize = 2 << 20;

/// A counter written by one thread and read by any.
#[derive(Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    #[inline(always)]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    #[inline(always)]
    pub fn add(&self, n: u64) {
        self.0.store(self.get().wrapping_add(n), Ordering::Relaxed);
    }
    #[inline(always)]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
}

/// Per size class state of one heap (one cache line).
#[repr(C, align(64))]
pub(crate) struct ClassState {
    /// Free slots of word `word` of `slab`, ready to hand out.
    cache: Cell<u64>,
    /// Address of slot `word * 64` of `slab`.
    cache_base: Cell<usize>,
    slab: Cell<*mut Span>,
    word: Cell<u32>,
    block_size: Cell<u32>,
    /// Slots of the cached word freed since the cache was loaded. Frees go
    /// here rather than into `cache`, so the next allocation does not wait
    /// on the free before it (the free's whole validation chain would
    /// otherwise sit between the two); allocation takes them when the cache
    /// runs dry. Like the cache, they count as used.
    freed: Cell<u64>,
    pub allocs: Counter,
    pub frees: Counter,
    /// Most blocks of this class this heap has had live at once.
    pub peak_live: Counter,
}

/// What `Heap::free_fast` did.
pub(crate) enum FastFree {
    /// The slot is free.
    Done,
    /// A valid slot (its index) that needs the rest of the fast path;
    /// nothing changed.
    Other(usize),
    /// Not an allocated slot of this slab; nothing changed.
    Invalid,
}

pub(crate) struct Heap {
    classes: [ClassState; NUM_CLASSES],
    /// Per class: slabs with free slots, other than the current one.
    partial: [Cell<*mut Span>; NUM_CLASSES],
    /// Slabs with remote frees to collect (Treiber stack, see `remote_free`).
    delayed: AtomicPtr<Span>,
    pub large_allocs: Counter,
    pub large_frees: Counter,
    /// Bytes allocated minus bytes freed through this heap (may wrap below
    /// zero when other threads free this heap's blocks).
    pub live_bytes: Counter,
    pub peak_live_bytes: Counter,
    /// Next heap ever created (append-only list for statistics).
    pub next_all: AtomicPtr<Heap>,
    /// Next abandoned heap in the pool (global lock).
    pub next_free: Cell<*mut Heap>,
    pub in_use: AtomicBool,
}

impl Heap {
    /// Initialises a zeroed heap in place.
    pub(crate) fn init(&self) {
        let sizes = class_block_sizes();
        for (st, bs) in self.classes.iter().zip(sizes) {
            st.block_size.set(bs as u32);
        }
    }

    pub(crate) fn class(&self, class: usize) -> &ClassState {
        &self.classes[class]
    }

    /// The class state on the fast paths, without a bounds check.
    #[inline(always)]
    fn class_state(&self, class: usize) -> &ClassState {
        debug_assert!(class < NUM_CLASSES);
        // SAFETY: class indices come from `SizeClass` values or from slab
        // descriptors written by cma itself, all below NUM_CLASSES.
        unsafe { self.classes.get_unchecked(class) }
    }

    #[inline(always)]
    fn count_alloc(&self, st: &ClassState, bytes: usize) {
        let allocs = st.allocs.get() + 1;
        st.allocs.set(allocs);
        // Signed comparisons: a heap whose blocks other threads free can see
        // more frees than allocations; its own peaks then stay put.
        let live = allocs.wrapping_sub(st.frees.get());
        if live as i64 > st.peak_live.get() as i64 {
            st.peak_live.set(live);
        }
        let live_bytes = self.live_bytes.get().wrapping_add(bytes as u64);
        self.live_bytes.set(live_bytes);
        if live_bytes as i64 > self.peak_live_bytes.get() as i64 {
            self.peak_live_bytes.set(live_bytes);
        }
    }

    #[inline(always)]
    fn count_free(&self, st: &ClassState, bytes: usize) {
        st.frees.add(1);
        self.live_bytes.add((bytes as u64).wrapping_neg());
    }

    // ----- allocation -----

    /// Allocates a block of `class`, or null when memory runs out.
    #[inline(always)]
    pub(crate) fn alloc_small(&self, class: SizeClass) -> *mut u8 {
        match self.alloc_from_cache(class) {
            Some(p) => p.as_ptr(),
            None => self.alloc_small_refill(class),
        }
    }

    /// The allocation fast path: pops a slot from the class's cache, or
    /// `None` when the cache is empty.
    #[inline(always)]
    pub(crate) fn alloc_from_cache(&self, class: SizeClass) -> Option<NonNull<u8>> {
        let st = self.class_state(class.index());
        let mut cache = st.cache.get();
        if cache == 0 {
            cache = st.freed.get();
            if cache == 0 {
                return None;
            }
            st.freed.set(0);
        }
        let bit = cache.trailing_zeros() as usize;
        st.cache.set(cache & (cache - 1));
        // SAFETY: a non-empty cache always belongs to the current slab,
        // which this heap owns.
        let slab = unsafe { &*st.slab.get() };
        let word = slab.allocated_word(st.word.get() as usize);
        word.store(word.load(Ordering::Relaxed) | (1 << bit), Ordering::Relaxed);
        let bs = st.block_size.get() as usize;
        self.count_alloc(st, bs);
        // SAFETY: slot addresses lie inside a mapped segment, never at 0.
        Some(unsafe { NonNull::new_unchecked((st.cache_base.get() + bit * bs) as *mut u8) })
    }

    #[cold]
    #[inline(never)]
    fn alloc_small_refill(&self, class: SizeClass) -> *mut u8 {
        if !self.delayed.load(Ordering::Relaxed).is_null() {
            self.collect_delayed();
            // Collected slots of the cached word land in `freed`; take them
            // before the bitmap is read again (it shows them free too).
            if let Some(p) = self.alloc_from_cache(class) {
                return p.as_ptr();
            }
        }
        let st = &self.classes[class.index()];
        let current = st.slab.get();
        if !current.is_null() {
            if self.load_cache(st, current) {
                return self.alloc_small(class);
            }
            // SAFETY: the current slab is ours.
            unsafe { (*current).list.set(SlabList::Full) };
            st.slab.set(null_mut());
        }
        loop {
            let partial = self.partial[class.index()].get();
            if partial.is_null() {
                break;
            }
            self.unlink_partial(class.index(), partial);
            // SAFETY: slabs on our partial list are ours.
            unsafe { (*partial).list.set(SlabList::Current) };
            st.slab.set(partial);
            st.word.set(0);
            if self.load_cache(st, partial) {
                return self.alloc_small(class);
            }
            // SAFETY: as above.
            unsafe { (*partial).list.set(SlabList::Full) };
            st.slab.set(null_mut());
        }
        let slab = self.new_slab(class);
        if slab.is_null() {
            return null_mut();
        }
        st.slab.set(slab);
        st.word.set(0);
        global::sample_peaks(class);
        if self.load_cache(st, slab) {
            self.alloc_small(class)
        } else {
            null_mut()
        }
    }

    /// Fills the cache from the first bitmap word of `slab` with free slots,
    /// starting at the current word. Returns false when the slab is full.
    fn load_cache(&self, st: &ClassState, slab: *mut Span) -> bool {
        // SAFETY: `slab` is owned by this heap.
        let s = unsafe { &*slab };
        // The bitmap shows these slots free as well: reloading over them
        // would hand them out twice.
        debug_assert!(st.cache.get() == 0 && st.freed.get() == 0);
        let class = SizeClass::from_index(s.class.load(Ordering::Relaxed) as usize);
        let g = class.geometry();
        if s.used.get() >= g.capacity {
            return false;
        }
        let words = s.words.get() as usize;
        let start = (st.word.get() as usize).min(words - 1);
        for w in (start..words).chain(0..start) {
            let free = !s.allocated_word(w).load(Ordering::Relaxed) & valid_mask(g.capacity, w);
            if free != 0 {
                // The cached slots count as used until they come back.
                s.used.set(s.used.get() + free.count_ones());
                st.cache.set(free);
                st.word.set(w as u32);
                st.cache_base
                    .set(s.start() + w * 64 * g.block_size as usize);
                return true;
            }
        }
        false
    }

    fn new_slab(&self, class: SizeClass) -> *mut Span {
        let g = class.geometry();
        let words = (g.capacity as usize).div_ceil(64);
        let slab = {
            let mut global = GLOBAL.lock();
            let global = &mut *global;
            let slab = global
                .pages
                .alloc_span(&mut global.meta, g.slab_pages as usize, 1, words);
            if !slab.is_null() {
                // SAFETY: a fresh descriptor. It must stop reading as a free
                // span before the lock is released: a neighbour freed by
                // another thread would merge it (and free its descriptor).
                unsafe { (*slab).set_kind(SpanKind::Slab) };
            }
            slab
        };
        if slab.is_null() {
            return null_mut();
        }
        // SAFETY: a fresh span descriptor, not yet visible as a slab.
        let s = unsafe { &*slab };
        s.class.store(class.index() as u8, Ordering::Relaxed);
        s.block_size.store(g.block_size, Ordering::Relaxed);
        s.capacity.store(g.capacity, Ordering::Relaxed);
        s.reciprocal.store(g.reciprocal, Ordering::Relaxed);
        s.owner
            .store(self as *const Heap as *mut Heap, Ordering::Relaxed);
        s.used.set(0);
        s.list.set(SlabList::Current);
        slab
    }

    fn push_partial(&self, class: usize, slab: *mut Span) {
        // SAFETY: `slab` is ours and on no list.
        let s = unsafe { &*slab };
        let list = &self.partial[class];
        let head = list.get();
        s.list.set(SlabList::Partial);
        s.prev.set(null_mut());
        s.next.set(head);
        if !head.is_null() {
            // SAFETY: list members are ours.
            unsafe { (*head).prev.set(slab) };
        }
        list.set(slab);
    }

    fn unlink_partial(&self, class: usize, slab: *mut Span) {
        // SAFETY: `slab` is ours and on the partial list of `class`.
        let s = unsafe { &*slab };
        let (prev, next) = (s.prev.get(), s.next.get());
        if prev.is_null() {
            self.partial[class].set(next);
        } else {
            // SAFETY: list members are ours.
            unsafe { (*prev).next.set(next) };
        }
        if !next.is_null() {
            // SAFETY: list members are ours.
            unsafe { (*next).prev.set(prev) };
        }
    }

    /// A slab that is not current gained free slots: make it partial, or give
    /// it back when it is empty.
    #[cold]
    fn slab_gained_space(&self, slab: *mut Span) {
        // SAFETY: `slab` is owned by this heap.
        let s = unsafe { &*slab };
        let class = s.class.load(Ordering::Relaxed) as usize;
        match s.list.get() {
            SlabList::Current => {}
            SlabList::Full => {
                if s.used.get() == 0 {
                    self.retire_slab(slab);
                } else {
                    self.push_partial(class, slab);
                }
            }
            SlabList::Partial => {
                if s.used.get() == 0 {
                    self.unlink_partial(class, slab);
                    self.retire_slab(slab);
                }
            }
        }
    }

    fn retire_slab(&self, slab: *mut Span) {
        // SAFETY: `slab` is ours, empty, and on no list.
        let dirty = unsafe {
            (*slab).owner.store(null_mut(), Ordering::Relaxed);
            let mut global = GLOBAL.lock();
            let global = &mut *global;
            global.pages.free_span(&mut global.meta, slab);
            global.pages.dirty_bytes
        };
        purge::note_dirty(dirty);
    }

    // ----- large and huge blocks -----

    /// Allocates `size` bytes at `align` from whole pages.
    pub(crate) fn alloc_large(&self, size: usize, align: usize, zero: bool) -> *mut u8 {
        // A zero-byte request with a large alignment still needs a page: with
        // none, no span (null) or an empty, unregistered huge mapping.
        let size = size.max(1);
        let pages = pages_for(size);
        let align_pages = (align / PAGE_SIZE).max(1);
        let span = {
            let mut global = GLOBAL.lock();
            let global = &mut *global;
            if size <= LARGE_MAX && pages + align_pages - 1 <= MAX_SPAN_PAGES {
                let span = global
                    .pages
                    .alloc_span(&mut global.meta, pages, align_pages, 0);
                if !span.is_null() {
                    // SAFETY: fresh descriptor.
                    unsafe { (*span).set_kind(SpanKind::Large) };
                }
                span
            } else {
                global
                    .pages
                    .alloc_huge(&mut global.meta, size, align.max(PAGE_SIZE))
            }
        };
        if span.is_null() {
            return null_mut();
        }
        // SAFETY: the span is live and ours.
        let s = unsafe { &*span };
        if zero && !s.zeroed.get() {
            // SAFETY: the span's pages are mapped and belong to this block.
            unsafe { core::ptr::write_bytes(s.start() as *mut u8, 0, s.bytes()) };
        }
        self.large_allocs.add(1);
        self.live_bytes.add(s.bytes() as u64);
        let lb = self.live_bytes.get();
        if lb > self.peak_live_bytes.get() && (lb as i64) > 0 {
            self.peak_live_bytes.set(lb);
        }
        global::sample_peaks(SizeClass::from_index(0));
        s.start() as *mut u8
    }

    fn free_large(&self, span: *mut Span) {
        // SAFETY: the caller validated `span` as a live large or huge block.
        let s = unsafe { &*span };
        self.large_frees.add(1);
        self.live_bytes.add((s.bytes() as u64).wrapping_neg());
        let dirty = {
            let mut global = GLOBAL.lock();
            let global = &mut *global;
            // SAFETY: validated live block of ours, and the caller gives it up.
            unsafe {
                if s.kind() == SpanKind::Huge {
                    global.pages.free_huge(&mut global.meta, span);
                } else {
                    global.pages.free_span(&mut global.meta, span);
                }
            }
            global.pages.dirty_bytes
        };
        purge::note_dirty(dirty);
    }

    /// Resizes a large block in place when its pages allow. Returns whether it
    /// did.
    pub(crate) fn resize_large_in_place(&self, span: *mut Span, new_size: usize) -> bool {
        // SAFETY: the caller validated `span` as a live large or huge block.
        let s = unsafe { &*span };
        let old = s.bytes();
        let new_bytes = pages_for(new_size) * PAGE_SIZE;
        if s.kind() == SpanKind::Huge {
            if new_bytes <= PageAlloc::huge_reserved(s) && new_bytes > LARGE_MAX {
                if new_bytes < old {
                    crate::os::decommit_tail(s.start() + new_bytes, s.start() + old);
                }
                s.bytes.store(new_bytes, Ordering::Relaxed);
                self.live_bytes
                    .add((new_bytes as u64).wrapping_sub(old as u64));
                return true;
            }
            return false;
        }
        if new_size > LARGE_MAX || new_size <= crate::size_class::MAX_SMALL {
            return false;
        }
        if new_bytes == old {
            return true;
        }
        let mut global = GLOBAL.lock();
        let global = &mut *global;
        let done = if new_bytes < old {
            // SAFETY: live large span; the tail holds no block.
            unsafe {
                global
                    .pages
                    .shrink_large(&mut global.meta, span, new_bytes / PAGE_SIZE)
            };
            true
        } else {
            // SAFETY: live large span.
            unsafe {
                global
                    .pages
                    .grow_large(&mut global.meta, span, new_bytes / PAGE_SIZE)
            }
        };
        if done {
            self.live_bytes
                .add((s.bytes() as u64).wrapping_sub(old as u64));
        }
        done
    }

    // ----- free -----

    /// Frees a validated slot of `slab`.
    #[inline(always)]
    pub(crate) fn free_slot(
        &self,
        slab: &Span,
        index: u32,
        operation: &str,
    ) -> Result<(), CmaError> {
        if core::ptr::eq(slab.owner.load(Ordering::Relaxed), self) {
            self.free_local(slab, index, operation)
        } else {
            self.free_remote(slab, index)
        }
    }

    /// Where `addr` is an allocated slot of `slab`, not already freed by
    /// another thread: its slot index, block size and the value of its
    /// bitmap word. `None` for anything else (an interior pointer, a free
    /// slot).
    #[inline(always)]
    fn allocated_slot(slab: &Span, addr: usize) -> Option<(usize, usize, u64)> {
        let offset = addr.wrapping_sub(slab.start());
        let index =
            ((offset as u128 * slab.reciprocal.load(Ordering::Relaxed) as u128) >> 64) as usize;
        let bs = slab.block_size.load(Ordering::Relaxed) as usize;
        if index * bs != offset || index >= slab.capacity.load(Ordering::Relaxed) as usize {
            return None;
        }
        let (w, bit) = (index / 64, 1u64 << (index % 64));
        let a = slab.allocated_word(w).load(Ordering::Relaxed);
        // The summary first, on its own: the remote word's address (which
        // needs the bitmap length) is worked out only when frees are pending.
        if a & bit == 0
            || (slab.remote_summary.load(Ordering::Acquire) != 0
                && remote_free::is_pending(slab.remote_word(w), &slab.remote_summary, bit))
        {
            return None;
        }
        Some((index, bs, a))
    }

    /// The hottest free: the owner frees an allocated slot at the `fast`
    /// level. It makes no call that needs anything afterwards, so the caller
    /// stays free of register saves. `Other(index)` (nothing changed) sends a
    /// valid slot that needs more (a trailer check, a remote free) to
    /// `free_live_slot`; `Invalid` (nothing changed) sends the pointer to the
    /// full path to be reported.
    #[inline(always)]
    pub(crate) fn free_fast(&self, slab: &Span, addr: usize) -> FastFree {
        let Some((index, bs, a)) = Self::allocated_slot(slab, addr) else {
            return FastFree::Invalid;
        };
        if global::mode() & global::MODE_CANARY != 0
            || !core::ptr::eq(slab.owner.load(Ordering::Relaxed), self)
        {
            return FastFree::Other(index);
        }
        self.release_local(slab, index / 64, 1u64 << (index % 64), bs, a);
        FastFree::Done
    }

    /// The free fast path in full: an allocated slot of a live slab, freed by
    /// its owner or (through `remote_free`) by another thread, its trailer
    /// checked at the `default` level. Returns false, having changed nothing,
    /// for anything else (an interior pointer, a slot that is not allocated
    /// or already freed by another thread, a damaged trailer), which the
    /// caller then takes to the full path to be reported.
    #[inline]
    pub(crate) fn try_free_fast(&self, slab: &Span, addr: usize) -> bool {
        match Self::allocated_slot(slab, addr) {
            Some((index, _, _)) => self.free_live_slot(slab, addr, index),
            None => false,
        }
    }

    /// The rest of `try_free_fast` for slot `index` (at `addr`), which
    /// `allocated_slot` found allocated: the trailer check, then a local or
    /// remote free. False, nothing changed, when the trailer is damaged or
    /// another thread freed the slot meanwhile.
    #[inline(always)]
    pub(crate) fn free_live_slot(&self, slab: &Span, addr: usize, index: usize) -> bool {
        let (w, bit) = (index / 64, 1u64 << (index % 64));
        let bs = slab.block_size.load(Ordering::Relaxed) as usize;
        if global::mode() & global::MODE_CANARY != 0 && !verify_and_junk(addr, bs) {
            return false;
        }
        if !core::ptr::eq(slab.owner.load(Ordering::Relaxed), self) {
            return self.free_remote_fast(slab, w, bit, bs);
        }
        let a = slab.allocated_word(w).load(Ordering::Relaxed);
        self.release_local(slab, w, bit, bs, a);
        true
    }

    /// Marks an allocated slot of our own slab free (`a` is the value of its
    /// bitmap word `w`): into `freed` when it is the cached word, else
    /// the slab's count goes down and the slab may move lists.
    #[inline(always)]
    fn release_local(&self, slab: &Span, w: usize, bit: u64, bs: usize, a: u64) {
        slab.allocated_word(w).store(a & !bit, Ordering::Relaxed);
        let st = self.class_state(slab.class.load(Ordering::Relaxed) as usize);
        self.count_free(st, bs);
        let is_current = core::ptr::eq(st.slab.get(), slab);
        // Whether the slot goes back into the cache decides nothing else, and
        // with random frees it is a coin toss: arithmetic, not a branch.
        let cached = is_current & (st.word.get() as usize == w);
        st.freed
            .set(st.freed.get() | (bit & (cached as u64).wrapping_neg()));
        // Cached slots count as used; only a slot that leaves for the bitmap
        // lowers the count.
        let used = slab.used.get() - u32::from(!cached);
        slab.used.set(used);
        if !is_current && (used == 0 || slab.list.get() == SlabList::Full) {
            self.slab_gained_space(slab as *const Span as *mut Span);
        }
    }

    /// The block size of `addr` when it is an allocated slot of `slab` (and
    /// not freed by another thread); `None` otherwise. Changes nothing.
    #[inline(always)]
    pub(crate) fn live_slot_size(&self, slab: &Span, addr: usize) -> Option<usize> {
        Self::allocated_slot(slab, addr).map(|(_, bs, _)| bs)
    }

    /// The remote half of `try_free_fast`: the slot is allocated; record the
    /// free for the owner. False (nothing changed) when another thread freed
    /// it already.
    #[inline(never)]
    fn free_remote_fast(&self, slab: &Span, w: usize, bit: u64, bs: usize) -> bool {
        match remote_free::mark_freed(slab.remote_word(w), &slab.remote_summary, w, bit) {
            RemoteFree::AlreadyFreed => return false,
            RemoteFree::NotifyOwner => {
                let owner = slab.owner.load(Ordering::Relaxed);
                // SAFETY: a slab with an allocated slot has a live owner heap
                // (heaps are never freed, only pooled).
                unsafe { (*owner).push_delayed(slab as *const Span as *mut Span) };
            }
            RemoteFree::Recorded => {}
        }
        let st = self.class_state(slab.class.load(Ordering::Relaxed) as usize);
        self.count_free(st, bs);
        true
    }

    fn free_local(&self, slab: &Span, index: u32, _operation: &str) -> Result<(), CmaError> {
        let w = (index / 64) as usize;
        let bit = 1u64 << (index % 64);
        let word = slab.allocated_word(w);
        let a = word.load(Ordering::Relaxed);
        if a & bit == 0 {
            return Err(slot_error(slab, index, false));
        }
        if remote_free::is_pending(slab.remote_word(w), &slab.remote_summary, bit) {
            return Err(slot_error(slab, index, true));
        }
        word.store(a & !bit, Ordering::Relaxed);
        let class = slab.class.load(Ordering::Relaxed) as usize;
        let st = &self.classes[class];
        let is_current = core::ptr::eq(st.slab.get(), slab);
        self.count_free(st, st.block_size.get() as usize);
        if is_current && st.word.get() as usize == w {
            st.freed.set(st.freed.get() | bit);
            return Ok(());
        }
        let used = slab.used.get() - 1;
        slab.used.set(used);
        if !is_current && (used == 0 || slab.list.get() == SlabList::Full) {
            self.slab_gained_space(slab as *const Span as *mut Span);
        }
        Ok(())
    }

    #[inline]
    fn free_remote(&self, slab: &Span, index: u32) -> Result<(), CmaError> {
        let w = (index / 64) as usize;
        let bit = 1u64 << (index % 64);
        if slab.allocated_word(w).load(Ordering::Acquire) & bit == 0 {
            return Err(slot_error(slab, index, false));
        }
        match remote_free::mark_freed(slab.remote_word(w), &slab.remote_summary, w, bit) {
            RemoteFree::AlreadyFreed => return Err(slot_error(slab, index, true)),
            RemoteFree::NotifyOwner => {
                let owner = slab.owner.load(Ordering::Relaxed);
                // SAFETY: a slab with an allocated slot has a live owner heap
                // (heaps are never freed, only pooled).
                unsafe { (*owner).push_delayed(slab as *const Span as *mut Span) };
            }
            RemoteFree::Recorded => {}
        }
        let class = slab.class.load(Ordering::Relaxed) as usize;
        let st = &self.classes[class];
        self.count_free(st, st.block_size.get() as usize);
        Ok(())
    }

    /// Any thread: tells this heap that `slab` has remote frees to collect.
    fn push_delayed(&self, slab: *mut Span) {
        let mut head = self.delayed.load(Ordering::Relaxed);
        loop {
            // SAFETY: `slab` is live; only the thread that made its summary
            // non-zero links it, so no one else writes `next_delayed` now.
            unsafe { (*slab).next_delayed.store(head, Ordering::Relaxed) };
            match self.delayed.compare_exchange_weak(
                head,
                slab,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }

    /// Owner only: collects the remote frees of every slab on the delayed list.
    pub(crate) fn collect_delayed(&self) {
        let mut cur = self.delayed.swap(null_mut(), Ordering::Acquire);
        while !cur.is_null() {
            // SAFETY: slabs on our delayed list are ours and live (a slab with
            // uncollected frees has used > 0 and is never retired).
            let s = unsafe { &*cur };
            let next = s.next_delayed.load(Ordering::Relaxed);
            let class = s.class.load(Ordering::Relaxed) as usize;
            let st = &self.classes[class];
            let is_current = core::ptr::eq(st.slab.get(), s);
            remote_free::take_pending(
                &s.remote_summary,
                |w| s.remote_word(w),
                |w, bits| {
                    let word = s.allocated_word(w);
                    let a = word.load(Ordering::Relaxed);
                    if a & bits != bits {
                        // A slot freed by another thread was also freed here.
                        let index = w as u32 * 64 + (bits & !a).trailing_zeros();
                        report::fatal("free", slot_error(s, index, true));
                    }
                    word.store(a & !bits, Ordering::Relaxed);
                    if is_current && st.word.get() as usize == w {
                        st.freed.set(st.freed.get() | bits);
                    } else {
                        s.used.set(s.used.get() - bits.count_ones());
                    }
                },
            );
            if !is_current {
                self.slab_gained_space(cur);
            }
            cur = next;
        }
    }

    /// Frees the block at `addr`, whatever its kind, after validating it.
    pub(crate) fn free_block(
        &self,
        found: crate::checks::Found,
        operation: &str,
    ) -> Result<(), CmaError> {
        match found {
            crate::checks::Found::Slot { span, index } => self.free_slot(span, index, operation),
            crate::checks::Found::Large(span) => {
                self.free_large(span as *const Span as *mut Span);
                Ok(())
            }
        }
    }

    /// The thread is ending: collect what others freed and give back empty
    /// slabs, so the heap waits in the pool holding only live blocks.
    pub(crate) fn abandon(&self) {
        self.collect_delayed();
        for (class, st) in self.classes.iter().enumerate() {
            let slab = st.slab.get();
            if slab.is_null() {
                continue;
            }
            // SAFETY: the current slab is ours.
            let s = unsafe { &*slab };
            let cached = st.cache.get() | st.freed.get();
            s.used.set(s.used.get() - cached.count_ones());
            st.cache.set(0);
            st.freed.set(0);
            st.slab.set(null_mut());
            if s.used.get() == 0 {
                self.retire_slab(slab);
            } else {
                self.push_partial(class, slab);
            }
        }
    }
}

/// The `default` level's part of the free fast path, out of line: checks
/// the trailer of an allocated slot and junks the slot. False (the slot
/// untouched) when the trailer was overwritten, for the full path to report.
#[inline(never)]
fn verify_and_junk(addr: usize, bs: usize) -> bool {
    // SAFETY: the caller found the slot allocated, so it was armed when
    // handed out.
    if unsafe { canary::verify(addr as *const u8, bs) }.is_none() {
        return false;
    }
    // SAFETY: the slot is being freed; nobody may use it any more.
    unsafe { canary::junk(addr as *mut u8, bs) };
    true
}

/// Bits of bitmap word `w` that name real slots of a slab with `capacity`.
#[inline(always)]
fn valid_mask(capacity: u32, w: usize) -> u64 {
    let remaining = capacity as usize - w * 64;
    if remaining >= 64 {
        u64::MAX
    } else {
        (1u64 << remaining) - 1
    }
}

#[cold]
fn slot_error(slab: &Span, index: u32, by_other_thread: bool) -> CmaError {
    let class = slab.class.load(Ordering::Relaxed) as usize;
    let block_size = SizeClass::from_index(class).block_size();
    let addr = slab.start() + index as usize * block_size;
    let block = BlockKind::Class { class, block_size };
    if by_other_thread {
        CmaError::DoubleFreeByOtherThread { addr, block }
    } else {
        CmaError::DoubleFree { addr, block }
    }
}
