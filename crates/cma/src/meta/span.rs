//! Span descriptors: the out-of-line metadata of every run of pages that cma
//! hands out (a slab, a large or huge block) or keeps free. A slab's
//! descriptor is followed by its slot bitmaps (allocated, freed by other
//! threads, quarantined, and two planes of allocation kinds); what a slot's
//! bits mean is `slab::slot`'s to say.
//!
//! Segment tables live here too (the two point at each other): a segment is
//! 4 MiB of user memory, aligned to 4 MiB, and a table mapping each of its
//! 1024 pages to the descriptor of the span that holds it. Every page of a
//! live span points to its descriptor; pages of free spans may hold stale
//! pointers, so readers always check that the descriptor really covers the
//! address (`Span::contains`). A page that never held a span points to
//! `NO_SPAN`, a descriptor that owns nothing and covers nothing, so that the
//! free fast path can read any entry's fields without a null check.

use core::cell::Cell;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use super::segment_map::SEGMENT_SIZE;
use crate::os::{PAGE_SHIFT, PAGE_SIZE};
use crate::slab::size_class::slot_of_offset;

pub(crate) const PAGES_PER_SEGMENT: usize = SEGMENT_SIZE / PAGE_SIZE;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(crate) enum SpanKind {
    /// Free pages inside a segment, owned by the page allocator.
    Free = 0,
    /// A slab of one size class, owned by one heap.
    Slab = 1,
    /// One large block, page-aligned, inside a segment.
    Large = 2,
    /// One huge block with a mapping of its own.
    Huge = 3,
    /// A huge mapping kept, decommitted, after its block was freed.
    HugeFree = 4,
}

/// Where a slab sits in its owner heap's bookkeeping (owner-only).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum SlabList {
    Current,
    Partial,
    Full,
}

/// One span. Fields fall in groups by who may write them:
/// - published: written under the page allocator's lock (or by the heap
///   that takes a fresh slab) before the span is handed out, read by any
///   thread (atomics);
/// - owner: the heap that owns a slab, from its own thread only (`Cell`s);
/// - remote protocol: the remote bitmap, `remote_summary` and
///   `next_delayed`, see `remote_free`;
/// - page allocator: free-list links and purge state, under its lock.
///
/// The first cache line holds everything the fast paths read.
#[repr(C, align(64))]
pub(crate) struct Span {
    // published (hot)
    pub(crate) start: AtomicUsize,
    /// A slab: the token of the heap that owns it, with the remote
    /// protocol's `OWNER_PENDING` flag. A large or huge block of an arena:
    /// the arena's token (`heap::arena`). 0 for every other descriptor.
    /// `capacity` is 0 on every descriptor but a live slab's (a thread
    /// without a heap compares 0 here, see `heap::guard`). Opaque at this
    /// layer: only `heap` makes and reads tokens.
    pub(crate) owner: AtomicU64,
    /// Slab only: `ClassGeometry::inverse` of its class (with `shift`, see
    /// `size_class::slot_of_offset`).
    pub(crate) inverse: AtomicU64,
    // remote protocol (hot)
    pub(crate) remote_summary: AtomicU64,
    // published (hot)
    /// Slab only: its slots; 0 on every other descriptor. A word, so that
    /// the free fast path compares a slot index with it in place.
    pub(crate) capacity: AtomicU64,
    // owner (hot): allocated slots plus the slots in the owner's cache, and
    // `USED_FULL_BIT` while the slab is `Full` (see `used_count`, `set_list`).
    // The owner's alone (the purge pass counts the allocated bitmap
    // instead, `pages::purge_slabs`).
    pub(crate) used: OwnerCount,
    pub(crate) kind: AtomicU8,
    pub(crate) class: AtomicU8,
    pub(crate) list: Cell<SlabList>,
    /// Slab only: `ClassGeometry::shift` of its class.
    pub(crate) shift: AtomicU8,
    /// Slab only: the address of the owner heap's counter of frees of this
    /// slab's class, which the owner's free fast path bumps without finding
    /// its heap or the class. Opaque at this layer, like `owner`.
    pub(crate) owner_frees: AtomicUsize,
    // published (hot)
    pub(crate) block_size: AtomicU32,
    // published (cold)
    pub(crate) bytes: AtomicUsize,
    /// Slab only: how many bitmap words trail this descriptor (see
    /// `allocated_word` and `remote_word`).
    pub(crate) words: Cell<u32>,
    pub(crate) next_delayed: AtomicPtr<Span>,
    /// Slab only: who may touch its free pages (`slab::page_purge`).
    pub(crate) purge_state: AtomicU8,
    /// Slab only, purge pass only: its allocated slots (counted in the
    /// bitmap, `pages::purge_slabs`) when the pass last decommitted its
    /// free pages (`u32::MAX`: never since it was current), and when the
    /// pass last looked at it.
    pub(crate) used_at_purge: AtomicU32,
    pub(crate) used_seen: AtomicU32,
    /// Slab only: the bitmap word the owner's cache came from while the slab
    /// is current, and the slots it took into the cache (`slab::page_purge`).
    pub(crate) cache_word: AtomicU32,
    pub(crate) cache_mask: AtomicU64,
    /// Slab only, owner only: its quarantined slots (set in the quarantine
    /// bitmap), the quarantine generation they belong to, and the next slab
    /// of that generation (`heap::quarantine`).
    pub(crate) held: Cell<u32>,
    pub(crate) held_generation: Cell<u8>,
    pub(crate) next_held: Cell<*mut Span>,
    pub(crate) prev_held: Cell<*mut Span>,
    // owner (cold)
    pub(crate) prev: Cell<*mut Span>,
    pub(crate) next: Cell<*mut Span>,
    /// A slab or large block of an arena only: its links in the arena's
    /// list of everything it holds, which `reset` gives back at once
    /// (`heap::arena`). A slab's are its arena's owner's; a large block's
    /// are under the arena's large-block lock.
    pub(crate) arena_prev: Cell<*mut Span>,
    pub(crate) arena_next: Cell<*mut Span>,
    // page allocator
    pub(crate) segment: Cell<*mut Segment>,
    pub(crate) free_prev: Cell<*mut Span>,
    pub(crate) free_next: Cell<*mut Span>,
    pub(crate) dirty: Cell<bool>,
    pub(crate) zeroed: Cell<bool>,
    /// Freed huge blocks only: the mapping was made inaccessible (a checked
    /// level's free), so any access through a stale pointer faults.
    pub(crate) sealed: Cell<bool>,
    /// A large block served from a mapping of its own at a checked level
    /// (`pages::huge`): only its first `bytes` are readable and writable,
    /// the rest of the mapping (a guard page at least) has no access and no
    /// charge. Stays set on the freed mapping until it is reused, so that
    /// the purge and the accounting go by `committed`, not the whole
    /// mapping.
    pub(crate) guarded: Cell<bool>,
    /// Guarded large blocks only: how far from `start` the mapping may
    /// hold memory (at least `bytes` while live; pages past the block are
    /// kept committed, inaccessible, up to twice its size, so that its
    /// mapping reused for a larger block faults less). 0 once purged.
    pub(crate) committed: Cell<usize>,
    pub(crate) freed_at_ms: Cell<u64>,
    /// Large and huge blocks only: the allocation kind (`check::kind`, at the
    /// checked levels).
    pub(crate) alloc_kind: Cell<u8>,
    /// Huge blocks only: the readable and writable part of the mapping
    /// (charged against the commit limit), from `start`: at least `bytes`, a
    /// whole number of segment-map granules.
    pub(crate) reserved: Cell<usize>,
    /// Huge blocks only: address space reserved right after `reserved`, no
    /// access and no charge, for the block to grow into in place (a live
    /// block that grew by moving; 0 otherwise, and always 0 once freed). A
    /// whole number of granules; the segment map names the block for all of
    /// it.
    pub(crate) headroom: Cell<usize>,
}

/// A count that only a slab's owner reads and writes (or whoever holds an
/// arena's lock), with plain loads and stores: a `Cell`, so that the owner's
/// free decrements it in memory.
///
/// Kept as the count minus one (wrapping): the owner's free fast path
/// decrements the stored word and tests its sign, which the decrement sets
/// (`release_one`), where testing the count itself for zero or below
/// would take one more instruction. `get` and `set` see the count.
pub(crate) struct OwnerCount(Cell<u32>);

impl OwnerCount {
    const fn new(v: u32) -> OwnerCount {
        OwnerCount(Cell::new(v.wrapping_sub(1)))
    }
    #[inline(always)]
    pub(crate) fn get(&self) -> u32 {
        self.0.get().wrapping_add(1)
    }
    #[inline(always)]
    pub(crate) fn set(&self, v: u32) {
        self.0.set(v.wrapping_sub(1));
    }
    /// Owner only: takes one off the count; true when the count is now zero
    /// or below as an `i32` (for `Span::used`: the slab became empty, or it
    /// is `Full`), which is exactly when the stored word went below zero.
    #[inline(always)]
    pub(crate) fn release_one(&self) -> bool {
        let stored = self.0.get().wrapping_sub(1);
        self.0.set(stored);
        (stored as i32) < 0
    }
}

/// The top bit of `Span::used`: set while the slab is `Full` (on no list of
/// its owner), so that the owner's free finds both events that need its
/// cold path, the slab became empty or a full slab gained a free slot, with
/// one signed test of `used` after its decrement. Counts never reach it.
/// While the bit is set the count stays at the capacity until the owner's
/// next free (every other way a count falls moves the slab off `Full` at
/// once: `Heap::slab_gained_space`), so that free's decrement never leaves
/// the bit alone with a count of zero, which `OwnerCount::release_one`
/// would not tell from a count above zero.
pub(crate) const USED_FULL_BIT: u32 = 1 << 31;

impl Span {
    /// Huge blocks and guarded large blocks (live or freed): the bytes of
    /// the mapping, from `start`, that may hold memory (counted as dirty
    /// once freed, decommitted by the purge).
    pub(crate) fn committable(&self) -> usize {
        if self.guarded.get() {
            self.committed.get()
        } else {
            self.reserved.get()
        }
    }
    /// Slab only: allocated slots plus the slots in the owner's cache.
    #[inline(always)]
    pub(crate) fn used_count(&self) -> u32 {
        self.used.get() & !USED_FULL_BIT
    }
    /// Slab only: moves the slab to `list` in its owner's bookkeeping.
    #[inline(always)]
    pub(crate) fn set_list(&self, list: SlabList) {
        self.list.set(list);
        let full = if list == SlabList::Full {
            USED_FULL_BIT
        } else {
            0
        };
        self.used.set(self.used_count() | full);
    }
    /// Slab only: where the slot of byte offset `offset` starts, as
    /// `size_class::slot_of_offset` answers it, for the slab's owner, which
    /// reads `start`, `inverse`, `shift` and `capacity` with plain loads:
    /// folded into the arithmetic, they cost the free fast path no
    /// instruction of their own.
    ///
    /// # Safety
    /// The calling thread owns the slab: its owner word, read before, holds
    /// the caller's token. Only the owner's thread writes these fields while
    /// the slab is live (`Heap::new_slab`, `retire_slab`), so no write
    /// races with these reads; other threads only read them.
    #[inline(always)]
    pub(crate) unsafe fn owned_slot_of(&self, addr: usize) -> Option<usize> {
        // SAFETY: the fields are plain integers in a live descriptor, and the
        // caller's contract excludes concurrent writes.
        let (start, inverse, shift, capacity) = unsafe {
            (
                *self.start.as_ptr(),
                *self.inverse.as_ptr(),
                *self.shift.as_ptr(),
                *self.capacity.as_ptr(),
            )
        };
        slot_of_offset(
            addr.wrapping_sub(start),
            inverse,
            shift as u32,
            capacity as usize,
        )
    }
    #[inline(always)]
    pub(crate) fn start(&self) -> usize {
        self.start.load(Ordering::Relaxed)
    }
    #[inline(always)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
    #[inline(always)]
    pub(crate) fn pages(&self) -> usize {
        self.bytes() >> PAGE_SHIFT
    }
    #[inline(always)]
    pub(crate) fn end(&self) -> usize {
        self.start() + self.bytes()
    }
    #[inline(always)]
    pub(crate) fn kind(&self) -> SpanKind {
        match self.kind.load(Ordering::Acquire) {
            0 => SpanKind::Free,
            1 => SpanKind::Slab,
            2 => SpanKind::Large,
            3 => SpanKind::Huge,
            _ => SpanKind::HugeFree,
        }
    }
    pub(crate) fn set_kind(&self, kind: SpanKind) {
        self.kind.store(kind as u8, Ordering::Release);
    }
    /// Slab only: the size of every slot.
    #[inline(always)]
    pub(crate) fn slot_size(&self) -> usize {
        self.block_size.load(Ordering::Relaxed) as usize
    }
    #[inline(always)]
    pub(crate) fn contains(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.start()) < self.bytes()
    }
    /// Slab only: word `w` of the bitmap of allocated slots (bit set while the
    /// slot is allocated). Only the owner writes it, with a plain load and
    /// store; other threads read it.
    #[inline(always)]
    pub(crate) fn allocated_word(&self, w: usize) -> &AtomicU64 {
        debug_assert!(w < self.words.get() as usize);
        // SAFETY: a slab descriptor is allocated with `5 * words` bitmap words
        // after the header (`descriptor_bytes`), allocated bitmap first.
        unsafe { &*(self as *const Span).add(1).cast::<AtomicU64>().add(w) }
    }
    /// Slab only: word `w` of the bitmap of quarantined slots (freed, held
    /// back from reuse for a while at a checked level; see
    /// `heap::quarantine`). Only the owner writes it.
    #[inline(always)]
    pub(crate) fn quarantine_word(&self, w: usize) -> &AtomicU64 {
        debug_assert!(w < self.words.get() as usize);
        // SAFETY: as in `allocated_word`; the quarantine bitmap follows the
        // remote one.
        unsafe {
            &*(self as *const Span)
                .add(1)
                .cast::<AtomicU64>()
                .add(2 * self.words.get() as usize + w)
        }
    }
    /// Slab only: word `w` of plane `plane` (0 or 1) of the slots' allocation
    /// kinds, two bits a slot (`check::kind`; only the checked levels write
    /// them). Only the owner writes them.
    #[inline(always)]
    pub(crate) fn kind_word(&self, plane: usize, w: usize) -> &AtomicU64 {
        debug_assert!(plane < 2 && w < self.words.get() as usize);
        // SAFETY: as in `allocated_word`; the two kind planes follow the
        // quarantine bitmap.
        unsafe {
            &*(self as *const Span)
                .add(1)
                .cast::<AtomicU64>()
                .add((3 + plane) * self.words.get() as usize + w)
        }
    }
    /// Slab only: word `w` of the bitmap of slots freed by other threads and
    /// not yet collected by the owner (see `remote_free`).
    #[inline(always)]
    pub(crate) fn remote_word(&self, w: usize) -> &AtomicU64 {
        debug_assert!(w < self.words.get() as usize);
        // SAFETY: as in `allocated_word`; the remote bitmap follows it.
        unsafe {
            &*(self as *const Span)
                .add(1)
                .cast::<AtomicU64>()
                .add(self.words.get() as usize + w)
        }
    }
    pub(crate) fn first_page(&self) -> usize {
        (self.start() & (SEGMENT_SIZE - 1)) >> PAGE_SHIFT
    }
}

impl Span {
    /// A descriptor with every field zero: the free-span state, owner 0.
    const fn zeroed() -> Span {
        Span {
            start: AtomicUsize::new(0),
            owner: AtomicU64::new(0),
            inverse: AtomicU64::new(0),
            remote_summary: AtomicU64::new(0),
            capacity: AtomicU64::new(0),
            used: OwnerCount::new(0),
            kind: AtomicU8::new(0),
            class: AtomicU8::new(0),
            list: Cell::new(SlabList::Current),
            shift: AtomicU8::new(0),
            owner_frees: AtomicUsize::new(0),
            block_size: AtomicU32::new(0),
            bytes: AtomicUsize::new(0),
            words: Cell::new(0),
            next_delayed: AtomicPtr::new(core::ptr::null_mut()),
            purge_state: AtomicU8::new(0),
            used_at_purge: AtomicU32::new(0),
            used_seen: AtomicU32::new(0),
            cache_word: AtomicU32::new(0),
            cache_mask: AtomicU64::new(0),
            held: Cell::new(0),
            held_generation: Cell::new(0),
            next_held: Cell::new(core::ptr::null_mut()),
            prev_held: Cell::new(core::ptr::null_mut()),
            prev: Cell::new(core::ptr::null_mut()),
            next: Cell::new(core::ptr::null_mut()),
            arena_prev: Cell::new(core::ptr::null_mut()),
            arena_next: Cell::new(core::ptr::null_mut()),
            segment: Cell::new(core::ptr::null_mut()),
            free_prev: Cell::new(core::ptr::null_mut()),
            free_next: Cell::new(core::ptr::null_mut()),
            dirty: Cell::new(false),
            zeroed: Cell::new(false),
            sealed: Cell::new(false),
            guarded: Cell::new(false),
            committed: Cell::new(0),
            freed_at_ms: Cell::new(0),
            alloc_kind: Cell::new(0),
            reserved: Cell::new(0),
            headroom: Cell::new(0),
        }
    }
}

/// The descriptor that page-table entries of pages without a span point to:
/// owner 0 (no heap), capacity 0, zero bytes. Never written.
pub(crate) struct NoSpan(Span);

// SAFETY: nobody writes `NO_SPAN` (every writer first finds a span through
// a page-table entry and checks that it owns it, or that it covers the
// address, which `NO_SPAN` never does).
unsafe impl Sync for NoSpan {}

pub(crate) static NO_SPAN: NoSpan = NoSpan(Span::zeroed());

/// The address of `NO_SPAN`.
#[inline(always)]
pub(crate) fn no_span() -> *mut Span {
    &NO_SPAN.0 as *const Span as *mut Span
}

/// A segment's page table. Lives in the metadata region.
#[repr(C)]
pub(crate) struct Segment {
    pub(crate) base: usize,
    /// Pages of this segment now in free spans.
    pub(crate) free_pages: Cell<usize>,
    /// The page allocator's list of segments (under its lock).
    pub(crate) prev: Cell<*mut Segment>,
    pub(crate) next: Cell<*mut Segment>,
    pub(crate) pages: [AtomicPtr<Span>; PAGES_PER_SEGMENT],
}

impl Segment {
    #[inline(always)]
    pub(crate) fn page_index(&self, addr: usize) -> usize {
        // Segments are aligned to their size, so the index needs no load of
        // `base`: one dependent load less on every free. (An address at or
        // above 2^47 may reach here through the map's wrap; its index is
        // still in range, and the slot check rejects it.)
        debug_assert!(self.base % SEGMENT_SIZE == 0);
        (addr & (SEGMENT_SIZE - 1)) >> PAGE_SHIFT
    }
    /// The descriptor page `page` points to, null for none.
    #[inline(always)]
    pub(crate) fn span_at(&self, page: usize) -> *mut Span {
        let span = self.span_at_fast(page);
        if span == no_span() {
            core::ptr::null_mut()
        } else {
            span
        }
    }
    /// The descriptor page `page` points to, `NO_SPAN` for none: never null.
    #[inline(always)]
    pub(crate) fn span_at_fast(&self, page: usize) -> *mut Span {
        debug_assert!(page < PAGES_PER_SEGMENT);
        // SAFETY: callers pass the page index of an address inside this
        // segment, which is below PAGES_PER_SEGMENT.
        unsafe { self.pages.get_unchecked(page) }.load(Ordering::Acquire)
    }
    /// Points every page at `NO_SPAN`: a new table, before it is published.
    pub(crate) fn clear_pages(&self) {
        for page in &self.pages {
            page.store(no_span(), Ordering::Relaxed);
        }
    }
    /// Points pages `[first, first+count)` at `span`. Page allocator's lock held.
    pub(crate) fn set_pages(&self, first: usize, count: usize, span: *mut Span) {
        for page in &self.pages[first..first + count] {
            page.store(span, Ordering::Release);
        }
    }
    /// Points only the first and last page of a free span at it: enough for
    /// neighbours to find it when they merge.
    pub(crate) fn set_free_ends(&self, first: usize, count: usize, span: *mut Span) {
        self.pages[first].store(span, Ordering::Release);
        self.pages[first + count - 1].store(span, Ordering::Release);
    }
}

/// Bytes of one segment table.
pub(crate) const SEGMENT_META_BYTES: usize = core::mem::size_of::<Segment>();

/// Bytes to allocate for a descriptor with `words` bitmap words in each of
/// its five bitmaps (allocated, remote, quarantined, two kind planes).
pub(crate) const fn descriptor_bytes(words: usize) -> usize {
    core::mem::size_of::<Span>() + 5 * words * 8
}
