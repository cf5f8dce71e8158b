//! Large blocks resized in place: a shrink frees the tail pages, a growth
//! takes the free pages right after the block when there are enough.

use core::sync::atomic::Ordering;

use super::spans::header_bytes;
use super::Pages;
use crate::meta::span::{Span, SpanKind, PAGES_PER_SEGMENT};
use crate::os::PAGE_SIZE;

impl Pages {
    /// Shrinks a large span in place to `pages`, freeing its tail.
    ///
    /// # Safety
    /// `span` is a live large span of ours and `pages` is below its size.
    pub(crate) unsafe fn shrink_large(&mut self, span: *mut Span, pages: usize) {
        // SAFETY: guaranteed by the caller.
        let s = unsafe { &*span };
        let old_pages = s.pages();
        let seg = s.segment.get();
        let tail_start = s.start() + pages * PAGE_SIZE;
        s.bytes.store(pages * PAGE_SIZE, Ordering::Relaxed);
        let tail = self.meta.alloc(header_bytes()).cast::<Span>();
        if tail.is_null() {
            // Keep the span whole: nothing changes but the usable size.
            s.bytes.store(old_pages * PAGE_SIZE, Ordering::Relaxed);
            return;
        }
        // SAFETY: fresh descriptor for the tail pages, which hold no block.
        unsafe {
            let t = &*tail;
            t.start.store(tail_start, Ordering::Relaxed);
            t.bytes
                .store((old_pages - pages) * PAGE_SIZE, Ordering::Relaxed);
            t.segment.set(seg);
            t.set_kind(SpanKind::Large);
            (*seg).set_pages(t.first_page(), old_pages - pages, tail);
            self.free_span(tail);
        }
    }

    /// Grows a large span in place to `pages` when the pages after it are
    /// free. Returns whether it did.
    ///
    /// # Safety
    /// `span` is a live large span of ours.
    pub(crate) unsafe fn grow_large(&mut self, span: *mut Span, pages: usize) -> bool {
        // SAFETY: guaranteed by the caller.
        let s = unsafe { &*span };
        let seg = unsafe { &*s.segment.get() };
        let last = s.first_page() + s.pages();
        let need = pages - s.pages();
        if last + need > PAGES_PER_SEGMENT {
            return false;
        }
        let right = seg.span_at(last);
        let end = s.end();
        if !self.is_free_neighbour(right, seg, |r| r.start() == end) {
            return false;
        }
        // SAFETY: `right` was just validated as a free neighbour.
        let r = unsafe { &*right };
        if r.pages() < need {
            return false;
        }
        let (r_end, zeroed, dirty, freed_at) =
            (r.end(), r.zeroed.get(), r.dirty.get(), r.freed_at_ms.get());
        self.unlink(right);
        if dirty {
            self.dirty_bytes -= r.bytes();
        }
        // SAFETY: unlinked above; no page points at it once rewritten below.
        unsafe { self.meta.free(right.cast(), header_bytes()) };
        let new_end = end + need * PAGE_SIZE;
        if r_end > new_end {
            self.insert_new_free(seg, new_end, r_end, zeroed, dirty, freed_at);
        }
        seg.free_pages.set(seg.free_pages.get() - need);
        seg.set_pages(last, need, span);
        s.bytes.store(pages * PAGE_SIZE, Ordering::Relaxed);
        true
    }
}
