//! The page allocator: segments carved into page-granular spans.
//!
//! A request takes the first free span that fits (binned by page count) and
//! splits off what it does not need; a freed span merges with its free
//! neighbours (the original system's split and merge, at page granularity).
//! Free spans stay committed for `purge_delay` and are then decommitted, so
//! resident memory follows what the program really uses; empty segments
//! beyond a small reserve go back to the kernel. Huge blocks get mappings of
//! their own, kept decommitted for a while after they are freed so a double
//! free of them is still recognised.
//!
//! Everything here runs under the global lock.

use core::ptr::null_mut;

use crate::meta_alloc::MetaAlloc;
use crate::os::{self, PAGE_SIZE};
use crate::segment_map::{self, SEGMENT_SIZE, TAG_HUGE};
use crate::span::{
    descriptor_bytes, Segment, Span, SpanKind, PAGES_PER_SEGMENT, SEGMENT_META_BYTES,
};

const BINS: usize = 11; // floor(log2(pages)) for 1..=1024 pages
/// Empty segments kept (decommitted after the purge delay, so they cost
/// address space, not memory) for reuse instead of unmapped.
const EMPTY_SEGMENTS_KEPT: usize = 8;
/// Freed huge mappings kept (decommitted after the purge delay) for reuse and
/// double-free checks.
const HUGE_CACHE_MAX: usize = 16;
const HUGE_CACHE_MAX_BYTES: usize = 1 << 30;

pub(crate) struct PageAlloc {
    bins: [*mut Span; BINS],
    huge_cache: *mut Span,
    huge_cached: usize,
    huge_cached_bytes: usize,
    last_purge_ms: u64,
    pub purge_delay_ms: u64,
    /// Whether segments ask for transparent huge pages.
    pub huge_pages: bool,
    /// The first segment, while it has not asked for huge pages yet (0
    /// otherwise); see `hint_segment`.
    unhinted_segment: usize,
    /// Bytes mapped for segments and huge blocks (for the statistics).
    pub mapped: usize,
    /// Bytes in free spans that are still committed (dirty).
    pub dirty_bytes: usize,
}

fn bin_of(pages: usize) -> usize {
    (usize::BITS - 1 - pages.leading_zeros()) as usize
}

fn header_bytes() -> usize {
    descriptor_bytes(0)
}

impl PageAlloc {
    pub(crate) const fn new() -> Self {
        PageAlloc {
            bins: [null_mut(); BINS],
            huge_cache: null_mut(),
            huge_cached: 0,
            huge_cached_bytes: 0,
            last_purge_ms: 0,
            purge_delay_ms: 250,
            huge_pages: true,
            unhinted_segment: 0,
            mapped: 0,
            dirty_bytes: 0,
        }
    }

    /// Hands out `pages` pages starting at a multiple of `align_pages` pages,
    /// with a fresh descriptor of `words` bitmap words. The descriptor's
    /// `zeroed` says whether the pages are known to read as zero. Returns null
    /// when the kernel refuses memory.
    pub(crate) fn alloc_span(
        &mut self,
        meta: &mut MetaAlloc,
        pages: usize,
        align_pages: usize,
        words: usize,
    ) -> *mut Span {
        debug_assert!(pages >= 1 && pages + align_pages - 1 <= PAGES_PER_SEGMENT);
        self.maybe_purge(meta, os::now_ms());
        let mut found = self.find_fit(pages, align_pages);
        if found.is_null() {
            if !self.add_segment(meta) {
                return null_mut();
            }
            found = self.find_fit(pages, align_pages);
            if found.is_null() {
                return null_mut();
            }
        }
        let desc = meta.alloc(descriptor_bytes(words)).cast::<Span>();
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
            meta.free(found.cast(), header_bytes());
            if start > free_start {
                self.insert_new_free(meta, seg, free_start, start, zeroed, dirty, freed_at);
            }
            if free_end > end {
                self.insert_new_free(meta, seg, end, free_end, zeroed, dirty, freed_at);
            }
            let d = &*desc;
            d.start.store(start, core::sync::atomic::Ordering::Relaxed);
            d.bytes
                .store(pages * PAGE_SIZE, core::sync::atomic::Ordering::Relaxed);
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
    pub(crate) unsafe fn free_span(&mut self, meta: &mut MetaAlloc, span: *mut Span) {
        let now = os::now_ms();
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
                    meta.free(left.cast(), header_bytes());
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
                    meta.free(right.cast(), header_bytes());
                }
            }
            meta.free(span.cast(), descriptor_bytes(words));
            self.insert_new_free(meta, seg, start, end, zeroed, true, now);
        }
        self.maybe_purge(meta, now);
    }

    fn is_free_neighbour(
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
    fn insert_new_free(
        &mut self,
        meta: &mut MetaAlloc,
        seg: &Segment,
        start: usize,
        end: usize,
        zeroed: bool,
        dirty: bool,
        freed_at: u64,
    ) {
        let desc = meta.alloc(header_bytes()).cast::<Span>();
        if desc.is_null() {
            // Out of metadata: the pages are lost to reuse, but nothing is
            // damaged. Give their memory back at least.
            os::decommit(start as *mut u8, end - start);
            return;
        }
        // SAFETY: freshly allocated, zeroed descriptor.
        let d = unsafe { &*desc };
        d.start.store(start, core::sync::atomic::Ordering::Relaxed);
        d.bytes
            .store(end - start, core::sync::atomic::Ordering::Relaxed);
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

    fn find_fit(&self, pages: usize, align_pages: usize) -> *mut Span {
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

    fn link(&mut self, span: *mut Span) {
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

    fn unlink(&mut self, span: *mut Span) {
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

    fn add_segment(&mut self, meta: &mut MetaAlloc) -> bool {
        if !segment_map::init() {
            return false;
        }
        let table = meta.alloc(SEGMENT_META_BYTES).cast::<Segment>();
        if table.is_null() {
            return false;
        }
        let base = os::map_aligned(SEGMENT_SIZE, SEGMENT_SIZE);
        if base.is_null() || !segment_map::in_range(base as usize, SEGMENT_SIZE) {
            if !base.is_null() {
                os::unmap(base, SEGMENT_SIZE);
            }
            // SAFETY: allocated just above and never published.
            unsafe { meta.free(table.cast(), SEGMENT_META_BYTES) };
            return false;
        }
        self.mapped += SEGMENT_SIZE;
        self.hint_segment(base as usize);
        // SAFETY: freshly allocated, zeroed table.
        let seg = unsafe { &mut *table };
        seg.base = base as usize;
        seg.free_pages.set(PAGES_PER_SEGMENT);
        self.insert_new_free(
            meta,
            seg,
            base as usize,
            base as usize + SEGMENT_SIZE,
            true,
            false,
            0,
        );
        segment_map::set_range(base as usize, SEGMENT_SIZE, table as usize);
        true
    }

    /// Decommits free spans idle for longer than the purge delay (all of them
    /// when `force`), and unmaps empty segments beyond a small reserve.
    pub(crate) fn purge(&mut self, meta: &mut MetaAlloc, now: u64, force: bool) {
        self.last_purge_ms = now;
        let mut empty_seen = 0;
        for bin in 0..BINS {
            let mut cur = self.bins[bin];
            while !cur.is_null() {
                // SAFETY: spans in the bins are live free-span descriptors.
                let s = unsafe { &*cur };
                let next = s.free_next.get();
                if s.pages() == PAGES_PER_SEGMENT {
                    empty_seen += 1;
                    if empty_seen > EMPTY_SEGMENTS_KEPT {
                        self.release_segment(meta, cur);
                        cur = next;
                        continue;
                    }
                }
                if s.dirty.get()
                    && (force || now.saturating_sub(s.freed_at_ms.get()) >= self.purge_delay_ms)
                {
                    os::decommit(s.start() as *mut u8, s.bytes());
                    s.dirty.set(false);
                    s.zeroed.set(true);
                    self.dirty_bytes -= s.bytes();
                }
                cur = next;
            }
        }
        let mut cur = self.huge_cache;
        while !cur.is_null() {
            // SAFETY: cached huge descriptors are live.
            let s = unsafe { &*cur };
            if s.dirty.get()
                && (force || now.saturating_sub(s.freed_at_ms.get()) >= self.purge_delay_ms)
            {
                os::decommit(s.start() as *mut u8, s.reserved.get());
                s.dirty.set(false);
                self.dirty_bytes -= s.reserved.get();
            }
            cur = s.free_next.get();
        }
    }

    fn maybe_purge(&mut self, meta: &mut MetaAlloc, now: u64) {
        if self.dirty_bytes > 0 && now.saturating_sub(self.last_purge_ms) >= self.purge_delay_ms / 2
        {
            self.purge(meta, now, false);
        }
    }

    /// Asks for transparent huge pages on a new segment, except on the
    /// process's first mapping: most processes (a shell tool, `git
    /// --version`) never use more than a few hundred KiB, and a huge page
    /// makes the kernel zero 2 MiB at their first allocation (250 us on a
    /// virtual machine, a tenth of `git --version`). The first segment asks
    /// too once a second mapping shows the process is bigger.
    fn hint_segment(&mut self, base: usize) {
        if !self.huge_pages {
            return;
        }
        if self.mapped == SEGMENT_SIZE {
            self.unhinted_segment = base;
            return;
        }
        os::hint_huge_pages(base as *mut u8, SEGMENT_SIZE);
        self.hint_first_segment();
    }

    /// The first segment asks for huge pages now, if it has not yet.
    fn hint_first_segment(&mut self) {
        if self.unhinted_segment != 0 {
            os::hint_huge_pages(self.unhinted_segment as *mut u8, SEGMENT_SIZE);
            self.unhinted_segment = 0;
        }
    }

    fn release_segment(&mut self, meta: &mut MetaAlloc, span: *mut Span) {
        self.unlink(span);
        // SAFETY: `span` is the free span covering a whole, empty segment.
        unsafe {
            let s = &*span;
            if s.dirty.get() {
                self.dirty_bytes -= s.bytes();
            }
            let seg = s.segment.get();
            let base = (*seg).base;
            segment_map::set_range(base, SEGMENT_SIZE, 0);
            if self.unhinted_segment == base {
                // The range may be the kernel's to reuse for anything.
                self.unhinted_segment = 0;
            }
            os::unmap(base as *mut u8, SEGMENT_SIZE);
            self.mapped -= SEGMENT_SIZE;
            meta.free(seg.cast(), SEGMENT_META_BYTES);
            meta.free(span.cast(), header_bytes());
        }
    }

    /// Maps a huge block of at least `bytes` aligned to `align`, with a
    /// header-only descriptor. Returns null when the kernel refuses.
    pub(crate) fn alloc_huge(
        &mut self,
        meta: &mut MetaAlloc,
        bytes: usize,
        align: usize,
    ) -> *mut Span {
        let Some(bytes) = bytes
            .checked_add(PAGE_SIZE - 1)
            .map(|b| b & !(PAGE_SIZE - 1))
        else {
            return null_mut();
        };
        // Reuse the smallest cached mapping that is big enough.
        let (mut best, mut best_prev) = (null_mut::<Span>(), null_mut::<Span>());
        let mut prev: *mut Span = null_mut();
        let mut cur = self.huge_cache;
        while !cur.is_null() {
            // SAFETY: cached huge descriptors are live.
            let s = unsafe { &*cur };
            let reserved = s.reserved.get();
            // SAFETY: as above.
            let smaller = best.is_null() || reserved < unsafe { (*best).reserved.get() };
            if reserved >= bytes && s.start() % align == 0 && smaller {
                (best, best_prev) = (cur, prev);
            }
            prev = cur;
            cur = s.free_next.get();
        }
        if !best.is_null() {
            // SAFETY: `best` and `best_prev` are cached descriptors.
            let s = unsafe { &*best };
            let next = s.free_next.get();
            if best_prev.is_null() {
                self.huge_cache = next;
            } else {
                // SAFETY: as above.
                unsafe { (*best_prev).free_next.set(next) };
            }
            let reserved = s.reserved.get();
            self.huge_cached -= 1;
            self.huge_cached_bytes -= reserved;
            s.bytes.store(bytes, core::sync::atomic::Ordering::Relaxed);
            s.zeroed.set(!s.dirty.get());
            if s.dirty.get() {
                // Keep at most as much again as the block needs committed
                // (it may grow into it, and the next reuse of the mapping
                // faults less); give back the rest of a far larger mapping.
                if reserved > 2 * bytes + SEGMENT_SIZE {
                    os::decommit_tail(s.start() + 2 * bytes, s.start() + reserved);
                }
                self.dirty_bytes -= reserved;
                s.dirty.set(false);
            }
            s.set_kind(SpanKind::Huge);
            return best;
        }
        if !segment_map::init() {
            return null_mut();
        }
        let Some(reserved) = bytes
            .checked_add(SEGMENT_SIZE - 1)
            .map(|b| b & !(SEGMENT_SIZE - 1))
        else {
            return null_mut();
        };
        let desc = meta.alloc(header_bytes()).cast::<Span>();
        if desc.is_null() {
            return null_mut();
        }
        let base = os::map_aligned(reserved, align.max(SEGMENT_SIZE));
        if base.is_null() || !segment_map::in_range(base as usize, reserved) {
            if !base.is_null() {
                os::unmap(base, reserved);
            }
            // SAFETY: allocated above, never published.
            unsafe { meta.free(desc.cast(), header_bytes()) };
            return null_mut();
        }
        self.mapped += reserved;
        if self.huge_pages {
            os::hint_huge_pages(base, reserved);
            self.hint_first_segment();
        }
        // No cached mapping is big enough: move the committed pages of the
        // largest freed one to the start of the new mapping, so the new block
        // does not fault (and the kernel does not zero) all of them again.
        let donor = self.take_largest_dirty_huge(reserved);
        if !donor.is_null() {
            // SAFETY: a cached huge descriptor, now out of the cache.
            let d = unsafe { &*donor };
            let (from, len) = (d.start(), d.reserved.get());
            segment_map::set_range(from, len, 0);
            self.dirty_bytes -= len;
            self.mapped -= len;
            if !os::move_pages(from, len, base as usize) {
                // The kernel refused: forget the donor's pages instead.
                os::unmap(from as *mut u8, len);
            }
            // SAFETY: no map entry points at the donor any more.
            unsafe { meta.free(donor.cast(), header_bytes()) };
            // SAFETY: fresh zeroed descriptor.
            let n = unsafe { &*desc };
            n.start
                .store(base as usize, core::sync::atomic::Ordering::Relaxed);
            n.bytes.store(bytes, core::sync::atomic::Ordering::Relaxed);
            n.reserved.set(reserved);
            n.zeroed.set(false);
            n.set_kind(SpanKind::Huge);
            segment_map::set_range(base as usize, reserved, desc as usize | TAG_HUGE);
            return desc;
        }
        // SAFETY: fresh zeroed descriptor.
        let d = unsafe { &*desc };
        d.start
            .store(base as usize, core::sync::atomic::Ordering::Relaxed);
        d.bytes.store(bytes, core::sync::atomic::Ordering::Relaxed);
        d.reserved.set(reserved);
        d.zeroed.set(true);
        d.set_kind(SpanKind::Huge);
        segment_map::set_range(base as usize, reserved, desc as usize | TAG_HUGE);
        desc
    }

    /// Takes the committed (dirty) cached huge mapping with the most pages
    /// below `limit` bytes out of the cache, or returns null.
    fn take_largest_dirty_huge(&mut self, limit: usize) -> *mut Span {
        let (mut best, mut best_prev, mut best_size) = (null_mut::<Span>(), null_mut::<Span>(), 0);
        let mut prev: *mut Span = null_mut();
        let mut cur = self.huge_cache;
        while !cur.is_null() {
            // SAFETY: cached huge descriptors are live.
            let s = unsafe { &*cur };
            let r = s.reserved.get();
            if s.dirty.get() && r < limit && r > best_size {
                (best, best_prev, best_size) = (cur, prev, r);
            }
            prev = cur;
            cur = s.free_next.get();
        }
        if best.is_null() {
            return best;
        }
        // SAFETY: `best` and `best_prev` are cached descriptors.
        unsafe {
            let next = (*best).free_next.get();
            if best_prev.is_null() {
                self.huge_cache = next;
            } else {
                (*best_prev).free_next.set(next);
            }
        }
        self.huge_cached -= 1;
        self.huge_cached_bytes -= best_size;
        best
    }

    /// Bytes a huge block may grow to in place.
    pub(crate) fn huge_reserved(span: &Span) -> usize {
        span.reserved.get()
    }

    /// Frees a huge block: the mapping is kept (so that a second free of it is
    /// recognised, and a new huge block can reuse it without page faults) and
    /// decommitted after the purge delay like any free span.
    ///
    /// # Safety
    /// `span` is a live huge block of ours.
    pub(crate) unsafe fn free_huge(&mut self, meta: &mut MetaAlloc, span: *mut Span) {
        // SAFETY: the caller guarantees `span` is a live huge descriptor.
        let s = unsafe { &*span };
        let reserved = Self::huge_reserved(s);
        s.set_kind(SpanKind::HugeFree);
        s.dirty.set(true);
        s.freed_at_ms.set(os::now_ms());
        self.dirty_bytes += reserved;
        s.free_next.set(self.huge_cache);
        self.huge_cache = span;
        self.huge_cached += 1;
        self.huge_cached_bytes += reserved;
        while self.huge_cached > HUGE_CACHE_MAX || self.huge_cached_bytes > HUGE_CACHE_MAX_BYTES {
            self.release_oldest_huge(meta);
        }
    }

    fn release_oldest_huge(&mut self, meta: &mut MetaAlloc) {
        let mut prev: *mut Span = null_mut();
        let mut cur = self.huge_cache;
        // SAFETY: cached huge descriptors are live; the list is non-empty.
        unsafe {
            while !(*cur).free_next.get().is_null() {
                prev = cur;
                cur = (*cur).free_next.get();
            }
            if prev.is_null() {
                self.huge_cache = null_mut();
            } else {
                (*prev).free_next.set(null_mut());
            }
            let s = &*cur;
            let reserved = Self::huge_reserved(s);
            if s.dirty.get() {
                self.dirty_bytes -= reserved;
            }
            segment_map::set_range(s.start(), reserved, 0);
            os::unmap(s.start() as *mut u8, reserved);
            self.mapped -= reserved;
            self.huge_cached -= 1;
            self.huge_cached_bytes -= reserved;
            meta.free(cur.cast(), header_bytes());
        }
    }

    /// Shrinks a large span in place to `pages`, freeing its tail.
    ///
    /// # Safety
    /// `span` is a live large span of ours and `pages` is below its size.
    pub(crate) unsafe fn shrink_large(
        &mut self,
        meta: &mut MetaAlloc,
        span: *mut Span,
        pages: usize,
    ) {
        // SAFETY: guaranteed by the caller.
        let s = unsafe { &*span };
        let old_pages = s.pages();
        let seg = s.segment.get();
        let tail_start = s.start() + pages * PAGE_SIZE;
        s.bytes
            .store(pages * PAGE_SIZE, core::sync::atomic::Ordering::Relaxed);
        let tail = meta.alloc(header_bytes()).cast::<Span>();
        if tail.is_null() {
            // Keep the span whole: nothing changes but the usable size.
            s.bytes
                .store(old_pages * PAGE_SIZE, core::sync::atomic::Ordering::Relaxed);
            return;
        }
        // SAFETY: fresh descriptor for the tail pages, which hold no block.
        unsafe {
            let t = &*tail;
            t.start
                .store(tail_start, core::sync::atomic::Ordering::Relaxed);
            t.bytes.store(
                (old_pages - pages) * PAGE_SIZE,
                core::sync::atomic::Ordering::Relaxed,
            );
            t.segment.set(seg);
            t.set_kind(SpanKind::Large);
            (*seg).set_pages(t.first_page(), old_pages - pages, tail);
            self.free_span(meta, tail);
        }
    }

    /// Grows a large span in place to `pages` when the pages after it are
    /// free. Returns whether it did.
    ///
    /// # Safety
    /// `span` is a live large span of ours.
    pub(crate) unsafe fn grow_large(
        &mut self,
        meta: &mut MetaAlloc,
        span: *mut Span,
        pages: usize,
    ) -> bool {
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
        unsafe { meta.free(right.cast(), header_bytes()) };
        let new_end = end + need * PAGE_SIZE;
        if r_end > new_end {
            self.insert_new_free(meta, seg, new_end, r_end, zeroed, dirty, freed_at);
        }
        seg.free_pages.set(seg.free_pages.get() - need);
        seg.set_pages(last, need, span);
        s.bytes
            .store(pages * PAGE_SIZE, core::sync::atomic::Ordering::Relaxed);
        true
    }
}

/// Pages needed for `bytes`.
pub(crate) fn pages_for(bytes: usize) -> usize {
    bytes.div_ceil(PAGE_SIZE)
}

pub(crate) const MAX_SPAN_PAGES: usize = PAGES_PER_SEGMENT;
