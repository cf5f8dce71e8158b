//! Spans inside segments: first fit by page count (binned by the floor of
//! its log2), split on allocation, merged with free neighbours on free.

use core::ptr::null_mut;
use core::sync::atomic::Ordering;

use super::{Pages, BINS};
use crate::meta::span::{descriptor_bytes, Segment, Span, SpanKind, PAGES_PER_SEGMENT};
use crate::os::{clock, memory, PAGE_SIZE};

pub(super) fn bin_of(pages: usize) -> usize {
    (usize::BITS - 1 - pages.leading_zeros()) as usize
}

/// Bytes of a descriptor without bitmaps (free spans, large and huge blocks).
pub(super) fn header_bytes() -> usize {
    descriptor_bytes(0)
}

impl Pages {
    /// Hands out `pages` pages starting at a multiple of `align_pages` pages,
    /// with a fresh descriptor of `words` bitmap words. The descriptor's
    /// `zeroed` says whether the pages are known to read as zero. Returns null
    /// when the kernel refuses memory.
    pub(crate) fn alloc_span(
        &mut self,
        pages: usize,
        align_pages: usize,
        words: usize,
    ) -> *mut Span {
        debug_assert!(pages >= 1 && pages + align_pages - 1 <= PAGES_PER_SEGMENT);
        self.maybe_purge(clock::now_ms());
        let mut found = self.find_fit(pages, align_pages);
        if found.is_null() {
            if !self.add_segment() {
                return null_mut();
            }
            found = self.find_fit(pages, align_pages);
            if found.is_null() {
                return null_mut();
            }
        }
        let desc = self.meta.alloc(descriptor_bytes(words)).cast::<Span>();
        if desc.is_null() {
            return null_mut();
        }
        // SAFETY: `found` is a free span from our bins; its segment is live.
        unsafe {
            let free = &*found;
            self.unlink(found);
            let seg = &*free.segment.get();
            let align_bytes = align_pages * PAGE_SIZE;
            let start = (free.start() + align_bytes - 1) & !(align_bytes - 1);
            let end = start + pages * PAGE_SIZE;
            let (zeroed, dirty, freed_at) =
                (free.zeroed.get(), free.dirty.get(), free.freed_at_ms.get());
            if dirty {
                self.dirty_bytes -= free.bytes();
            }
            let (free_start, free_end) = (free.start(), free.end());
            self.meta.free(found.cast(), header_bytes());
            if start > free_start {
                self.insert_new_free(seg, free_start, start, zeroed, dirty, freed_at);
            }
            if free_end > end {
                self.insert_new_free(seg, end, free_end, zeroed, dirty, freed_at);
            }
            let d = &*desc;
            d.start.store(start, Ordering::Relaxed);
            d.bytes.store(pages * PAGE_SIZE, Ordering::Relaxed);
            d.words.set(words as u32);
            d.segment.set(seg as *const Segment as *mut Segment);
            d.zeroed.set(zeroed);
            seg.free_pages.set(seg.free_pages.get() - pages);
            seg.set_pages(d.first_page(), pages, desc);
        }
        desc
    }

    /// Returns a span from `alloc_span` and merges it with free neighbours.
    ///
    /// # Safety
    /// `span` is a live span of ours that holds no live block any more.
    pub(crate) unsafe fn free_span(&mut self, span: *mut Span) {
        let now = clock::now_ms();
        // SAFETY: the caller guarantees `span` is ours and unused.
        unsafe {
            let s = &*span;
            let seg = &*s.segment.get();
            let mut start = s.start();
            let mut end = s.end();
            let words = s.words.get() as usize;
            seg.free_pages.set(seg.free_pages.get() + s.pages());
            s.set_kind(SpanKind::Free);
            let mut zeroed = false;
            let first = s.first_page();
            if first > 0 {
                let left = seg.span_at(first - 1);
                if self.is_free_neighbour(left, seg, |l| l.end() == start) {
                    start = (*left).start();
                    zeroed = false;
                    self.unlink(left);
                    if (*left).dirty.get() {
                        self.dirty_bytes -= (*left).bytes();
                    }
                    self.meta.free(left.cast(), header_bytes());
                }
            }
            let last = first + s.pages();
            if last < PAGES_PER_SEGMENT {
                let right = seg.span_at(last);
                if self.is_free_neighbour(right, seg, |r| r.start() == end) {
                    end = (*right).end();
                    self.unlink(right);
                    if (*right).dirty.get() {
                        self.dirty_bytes -= (*right).bytes();
                    }
                    self.meta.free(right.cast(), header_bytes());
                }
            }
            self.meta.free(span.cast(), descriptor_bytes(words));
            self.insert_new_free(seg, start, end, zeroed, true, now);
        }
        self.maybe_purge(now);
    }

    pub(super) fn is_free_neighbour(
        &self,
        candidate: *mut Span,
        seg: &Segment,
        touches: impl Fn(&Span) -> bool,
    ) -> bool {
        if candidate.is_null() {
            return false;
        }
        // SAFETY: page-table entries only ever point at descriptors in the
        // metadata region, which is never unmapped; a stale one is rejected
        // by the checks below.
        let c = unsafe { &*candidate };
        c.kind() == SpanKind::Free && core::ptr::eq(c.segment.get(), seg) && touches(c)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn insert_new_free(
        &mut self,
        seg: &Segment,
        start: usize,
        end: usize,
        zeroed: bool,
        dirty: bool,
        freed_at: u64,
    ) {
        let desc = self.meta.alloc(header_bytes()).cast::<Span>();
        if desc.is_null() {
            // Out of metadata: the pages are lost to reuse, but nothing is
            // damaged. Give their memory back at least.
            memory::decommit(start as *mut u8, end - start);
            return;
        }
        // SAFETY: freshly allocated, zeroed descriptor.
        let d = unsafe { &*desc };
        d.start.store(start, Ordering::Relaxed);
        d.bytes.store(end - start, Ordering::Relaxed);
        d.segment.set(seg as *const Segment as *mut Segment);
        d.set_kind(SpanKind::Free);
        d.zeroed.set(zeroed);
        d.dirty.set(dirty);
        d.freed_at_ms.set(freed_at);
        if dirty {
            self.dirty_bytes += end - start;
        }
        seg.set_free_ends(d.first_page(), d.pages(), desc);
        self.link(desc);
    }

    pub(super) fn find_fit(&self, pages: usize, align_pages: usize) -> *mut Span {
        let align_bytes = align_pages * PAGE_SIZE;
        for bin in bin_of(pages)..BINS {
            let mut cur = self.bins[bin];
            while !cur.is_null() {
                // SAFETY: spans in the bins are live free-span descriptors.
                let s = unsafe { &*cur };
                let start = (s.start() + align_bytes - 1) & !(align_bytes - 1);
                if start + pages * PAGE_SIZE <= s.end() {
                    return cur;
                }
                cur = s.free_next.get();
            }
        }
        null_mut()
    }

    pub(super) fn link(&mut self, span: *mut Span) {
        // SAFETY: `span` is a free-span descriptor not in any bin.
        let s = unsafe { &*span };
        let bin = bin_of(s.pages());
        let head = self.bins[bin];
        s.free_prev.set(null_mut());
        s.free_next.set(head);
        if !head.is_null() {
            // SAFETY: bin heads are live descriptors.
            unsafe { (*head).free_prev.set(span) };
        }
        self.bins[bin] = span;
    }

    pub(super) fn unlink(&mut self, span: *mut Span) {
        // SAFETY: `span` is a free-span descriptor in its bin.
        let s = unsafe { &*span };
        let (prev, next) = (s.free_prev.get(), s.free_next.get());
        if prev.is_null() {
            self.bins[bin_of(s.pages())] = next;
        } else {
            // SAFETY: linked descriptors are live.
            unsafe { (*prev).free_next.set(next) };
        }
        if !next.is_null() {
            // SAFETY: linked descriptors are live.
            unsafe { (*next).free_prev.set(prev) };
        }
    }
}
