//! Span descriptors and segment tables: the out-of-line metadata of every
//! run of pages that cma hands out.
//!
//! A segment is 4 MiB of user memory, aligned to 4 MiB, and a table (in the
//! metadata region) mapping each of its 1024 pages to the descriptor of the
//! span that holds it. Every page of a live span points to its descriptor;
//! pages of free spans may hold stale pointers, so readers always check that
//! the descriptor really covers the address (`Span::contains`).

use core::cell::Cell;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use crate::heap::Heap;
use crate::os::{PAGE_SHIFT, PAGE_SIZE};
use crate::segment_map::SEGMENT_SIZE;

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
/// - published: written under the global lock before the span is handed
///   out, read by any thread (atomics);
/// - owner: the heap that owns a slab, from its own thread only (`Cell`s);
/// - remote protocol: the remote bitmap, `remote_summary` and
///   `next_delayed`, see `remote_free`;
/// - page allocator: free-list links and purge state, under the global lock.
///
/// The first cache line holds everything the fast paths read.
#[repr(C, align(64))]
pub(crate) struct Span {
    // published (hot)
    pub start: AtomicUsize,
    pub owner: AtomicPtr<Heap>,
    /// Slab only: ceil(2^64 / block_size), see `size_class::slot_of_offset`.
    pub reciprocal: AtomicU64,
    // remote protocol (hot)
    pub remote_summary: AtomicU64,
    // published (hot)
    pub block_size: AtomicU32,
    pub capacity: AtomicU32,
    // owner (hot): allocated slots plus the slots in the owner's cache.
    pub used: Cell<u32>,
    pub kind: AtomicU8,
    pub class: AtomicU8,
    pub list: Cell<SlabList>,
    // published (cold)
    pub bytes: AtomicUsize,
    /// Slab only: how many bitmap words trail this descriptor (see
    /// `allocated_word` and `remote_word`).
    pub words: Cell<u32>,
    pub next_delayed: AtomicPtr<Span>,
    // owner (cold)
    pub prev: Cell<*mut Span>,
    pub next: Cell<*mut Span>,
    // page allocator
    pub segment: Cell<*mut Segment>,
    pub free_prev: Cell<*mut Span>,
    pub free_next: Cell<*mut Span>,
    pub dirty: Cell<bool>,
    pub zeroed: Cell<bool>,
    pub freed_at_ms: Cell<u64>,
    /// Huge blocks only: the size of the whole mapping.
    pub reserved: Cell<usize>,
}

impl Span {
    #[inline(always)]
    pub fn start(&self) -> usize {
        self.start.load(Ordering::Relaxed)
    }
    #[inline(always)]
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
    #[inline(always)]
    pub fn pages(&self) -> usize {
        self.bytes() >> PAGE_SHIFT
    }
    #[inline(always)]
    pub fn end(&self) -> usize {
        self.start() + self.bytes()
    }
    #[inline(always)]
    pub fn kind(&self) -> SpanKind {
        match self.kind.load(Ordering::Acquire) {
            0 => SpanKind::Free,
            1 => SpanKind::Slab,
            2 => SpanKind::Large,
            3 => SpanKind::Huge,
            _ => SpanKind::HugeFree,
        }
    }
    pub fn set_kind(&self, kind: SpanKind) {
        self.kind.store(kind as u8, Ordering::Release);
    }
    #[inline(always)]
    pub fn contains(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.start()) < self.bytes()
    }
    /// Slab only: word `w` of the bitmap of allocated slots (bit set while the
    /// slot is allocated). Only the owner writes it, with a plain load and
    /// store; other threads read it.
    #[inline(always)]
    pub fn allocated_word(&self, w: usize) -> &AtomicU64 {
        debug_assert!(w < self.words.get() as usize);
        // SAFETY: a slab descriptor is allocated with `2 * words` bitmap words
        // after the header (`descriptor_bytes`), allocated bitmap first.
        unsafe { &*(self as *const Span).add(1).cast::<AtomicU64>().add(w) }
    }
    /// Slab only: word `w` of the bitmap of slots freed by other threads and
    /// not yet collected by the owner (see `remote_free`).
    #[inline(always)]
    pub fn remote_word(&self, w: usize) -> &AtomicU64 {
        debug_assert!(w < self.words.get() as usize);
        // SAFETY: as in `allocated_word`; the remote bitmap follows it.
        unsafe {
            &*(self as *const Span)
                .add(1)
                .cast::<AtomicU64>()
                .add(self.words.get() as usize + w)
        }
    }
    pub fn first_page(&self) -> usize {
        (self.start() & (SEGMENT_SIZE - 1)) >> PAGE_SHIFT
    }
}

/// A segment's page table. Lives in the metadata region.
#[repr(C)]
pub(crate) struct Segment {
    pub base: usize,
    /// Pages of this segment now in free spans.
    pub free_pages: Cell<usize>,
    pub pages: [AtomicPtr<Span>; PAGES_PER_SEGMENT],
}

impl Segment {
    #[inline(always)]
    pub fn page_index(&self, addr: usize) -> usize {
        // Segments are aligned to their size, so the index needs no load of
        // `base`: one dependent load less on every free.
        debug_assert!(self.base % SEGMENT_SIZE == 0 && addr - self.base < SEGMENT_SIZE);
        (addr & (SEGMENT_SIZE - 1)) >> PAGE_SHIFT
    }
    #[inline(always)]
    pub fn span_at(&self, page: usize) -> *mut Span {
        debug_assert!(page < PAGES_PER_SEGMENT);
        // SAFETY: callers pass the page index of an address inside this
        // segment, which is below PAGES_PER_SEGMENT.
        unsafe { self.pages.get_unchecked(page) }.load(Ordering::Acquire)
    }
    /// Points pages `[first, first+count)` at `span`. Global lock held.
    pub fn set_pages(&self, first: usize, count: usize, span: *mut Span) {
        for page in &self.pages[first..first + count] {
            page.store(span, Ordering::Release);
        }
    }
    /// Points only the first and last page of a free span at it: enough for
    /// neighbours to find it when they merge.
    pub fn set_free_ends(&self, first: usize, count: usize, span: *mut Span) {
        self.pages[first].store(span, Ordering::Release);
        self.pages[first + count - 1].store(span, Ordering::Release);
    }
}

/// Bytes to allocate for a descriptor with `words` bitmap words per bitmap.
pub(crate) const fn descriptor_bytes(words: usize) -> usize {
    core::mem::size_of::<Span>() + 2 * words * 8
}
pub(crate) const SEGMENT_META_BYTES: usize = core::mem::size_of::<Segment>();
