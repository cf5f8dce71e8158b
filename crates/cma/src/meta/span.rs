//! Span descriptors: the out-of-line metadata of every run of pages that cma
//! hands out (a slab, a large or huge block) or keeps free. A slab's
//! descriptor is followed by its two slot bitmaps (allocated, and freed by
//! other threads); what a slot's bits mean is `slab::slot`'s to say.
//!
//! Segment tables live here too (the two point at each other): a segment is
//! 4 MiB of user memory, aligned to 4 MiB, and a table mapping each of its
//! 1024 pages to the descriptor of the span that holds it. Every page of a
//! live span points to its descriptor; pages of free spans may hold stale
//! pointers, so readers always check that the descriptor really covers the
//! address (`Span::contains`).

use core::cell::Cell;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use super::segment_map::SEGMENT_SIZE;
use crate::os::{PAGE_SHIFT, PAGE_SIZE};

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
    /// Slab only: the address of the heap that owns it (0 when none). Opaque
    /// at this layer: only `heap` turns it back into a heap.
    pub(crate) owner: AtomicUsize,
    /// Slab only: ceil(2^64 / block_size), see `size_class::slot_of_offset`.
    pub(crate) reciprocal: AtomicU64,
    // remote protocol (hot)
    pub(crate) remote_summary: AtomicU64,
    // published (hot)
    pub(crate) block_size: AtomicU32,
    pub(crate) capacity: AtomicU32,
    // owner (hot): allocated slots plus the slots in the owner's cache.
    pub(crate) used: Cell<u32>,
    pub(crate) kind: AtomicU8,
    pub(crate) class: AtomicU8,
    pub(crate) list: Cell<SlabList>,
    // published (cold)
    pub(crate) bytes: AtomicUsize,
    /// Slab only: how many bitmap words trail this descriptor (see
    /// `allocated_word` and `remote_word`).
    pub(crate) words: Cell<u32>,
    pub(crate) next_delayed: AtomicPtr<Span>,
    // owner (cold)
    pub(crate) prev: Cell<*mut Span>,
    pub(crate) next: Cell<*mut Span>,
    // page allocator
    pub(crate) segment: Cell<*mut Segment>,
    pub(crate) free_prev: Cell<*mut Span>,
    pub(crate) free_next: Cell<*mut Span>,
    pub(crate) dirty: Cell<bool>,
    pub(crate) zeroed: Cell<bool>,
    pub(crate) freed_at_ms: Cell<u64>,
    /// Huge blocks only: the size of the whole mapping.
    pub(crate) reserved: Cell<usize>,
}

impl Span {
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
        // SAFETY: a slab descriptor is allocated with `2 * words` bitmap words
        // after the header (`descriptor_bytes`), allocated bitmap first.
        unsafe { &*(self as *const Span).add(1).cast::<AtomicU64>().add(w) }
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

/// A segment's page table. Lives in the metadata region.
#[repr(C)]
pub(crate) struct Segment {
    pub(crate) base: usize,
    /// Pages of this segment now in free spans.
    pub(crate) free_pages: Cell<usize>,
    pub(crate) pages: [AtomicPtr<Span>; PAGES_PER_SEGMENT],
}

impl Segment {
    #[inline(always)]
    pub(crate) fn page_index(&self, addr: usize) -> usize {
        // Segments are aligned to their size, so the index needs no load of
        // `base`: one dependent load less on every free.
        debug_assert!(self.base % SEGMENT_SIZE == 0 && addr - self.base < SEGMENT_SIZE);
        (addr & (SEGMENT_SIZE - 1)) >> PAGE_SHIFT
    }
    #[inline(always)]
    pub(crate) fn span_at(&self, page: usize) -> *mut Span {
        debug_assert!(page < PAGES_PER_SEGMENT);
        // SAFETY: callers pass the page index of an address inside this
        // segment, which is below PAGES_PER_SEGMENT.
        unsafe { self.pages.get_unchecked(page) }.load(Ordering::Acquire)
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

/// Bytes to allocate for a descriptor with `words` bitmap words per bitmap.
pub(crate) const fn descriptor_bytes(words: usize) -> usize {
    core::mem::size_of::<Span>() + 2 * words * 8
}
