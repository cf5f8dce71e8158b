//! Segments: 4 MiB mappings, aligned to their size, each with a page table
//! in the metadata region; transparent huge-page hints for them; empty ones
//! unmapped again.

use super::spans::header_bytes;
use super::Pages;
use crate::meta::segment_map::{self, SEGMENT_SIZE};
use crate::meta::span::{Segment, Span, PAGES_PER_SEGMENT, SEGMENT_META_BYTES};
use crate::os::memory;

impl Pages {
    pub(super) fn add_segment(&mut self) -> bool {
        if !segment_map::init() {
            return false;
        }
        let table = self.meta.alloc(SEGMENT_META_BYTES).cast::<Segment>();
        if table.is_null() {
            return false;
        }
        let base = memory::map_aligned(SEGMENT_SIZE, SEGMENT_SIZE);
        if base.is_null() || !segment_map::in_range(base as usize, SEGMENT_SIZE) {
            if !base.is_null() {
                memory::unmap(base, SEGMENT_SIZE);
            }
            // SAFETY: allocated just above and never published.
            unsafe { self.meta.free(table.cast(), SEGMENT_META_BYTES) };
            return false;
        }
        self.mapped += SEGMENT_SIZE;
        self.hint_segment(base as usize);
        // SAFETY: freshly allocated, zeroed table.
        let seg = unsafe { &mut *table };
        seg.clear_pages();
        seg.base = base as usize;
        seg.free_pages.set(PAGES_PER_SEGMENT);
        self.insert_new_free(
            seg,
            base as usize,
            base as usize + SEGMENT_SIZE,
            true,
            false,
            0,
        );
        segment_map::set_range(base as usize, SEGMENT_SIZE, table as usize);
        seg.next.set(self.segments);
        if !self.segments.is_null() {
            // SAFETY: listed segment tables are live.
            unsafe { (*self.segments).prev.set(table) };
        }
        self.segments = table;
        true
    }

    /// Asks for transparent huge pages on a new segment, except on the
    /// process's first mapping: most processes (a shell tool, `git
    /// --version`) never use more than a few hundred KiB, and a huge page
    /// makes the kernel zero 2 MiB at their first allocation (250 us on a
    /// virtual machine, a tenth of `git --version`). The first segment asks
    /// too once a second mapping shows the process is bigger.
    pub(super) fn hint_segment(&mut self, base: usize) {
        if !self.huge_pages {
            memory::forbid_huge_pages(base as *mut u8, SEGMENT_SIZE);
            return;
        }
        if self.mapped == SEGMENT_SIZE {
            self.unhinted_segment = base;
            return;
        }
        memory::hint_huge_pages(base as *mut u8, SEGMENT_SIZE);
        self.hint_first_segment();
    }

    /// The first segment asks for huge pages now, if it has not yet.
    pub(super) fn hint_first_segment(&mut self) {
        if self.unhinted_segment != 0 {
            memory::hint_huge_pages(self.unhinted_segment as *mut u8, SEGMENT_SIZE);
            self.unhinted_segment = 0;
        }
    }

    pub(super) fn release_segment(&mut self, span: *mut Span) {
        self.unlink(span);
        // SAFETY: `span` is the free span covering a whole, empty segment.
        unsafe {
            let s = &*span;
            if s.dirty.get() {
                self.dirty_bytes -= s.bytes();
            }
            let seg = s.segment.get();
            let base = (*seg).base;
            let (prev, next) = ((*seg).prev.get(), (*seg).next.get());
            if prev.is_null() {
                self.segments = next;
            } else {
                (*prev).next.set(next);
            }
            if !next.is_null() {
                (*next).prev.set(prev);
            }
            segment_map::set_range(base, SEGMENT_SIZE, 0);
            if self.unhinted_segment == base {
                // The range may be the kernel's to reuse for anything.
                self.unhinted_segment = 0;
            }
            memory::unmap(base as *mut u8, SEGMENT_SIZE);
            self.mapped -= SEGMENT_SIZE;
            self.meta.free(seg.cast(), SEGMENT_META_BYTES);
            self.meta.free(span.cast(), header_bytes());
        }
    }
}
