//! Blocks of whole pages: large blocks are spans of a segment (up to
//! `LARGE_MAX`), huge blocks have mappings of their own. Either way the page
//! allocator does the work under its lock; the heap counts them.

use core::ptr::null_mut;
use core::sync::atomic::Ordering;

use super::counters::sample_peaks;
use super::slabs::pages_freed;
use super::Heap;
use crate::meta::span::{Span, SpanKind};
use crate::os::{memory, PAGE_SIZE};
use crate::pages::{pages_for, Pages, LARGE_MAX, MAX_SPAN_PAGES, PAGES};
use crate::slab::size_class::{SizeClass, MAX_SMALL};

impl Heap {
    /// Allocates `size` bytes at `align` from whole pages.
    pub(crate) fn alloc_large(&self, size: usize, align: usize, zero: bool) -> *mut u8 {
        // A zero-byte request with a large alignment still needs a page: with
        // none, no span (null) or an empty, unregistered huge mapping.
        let size = size.max(1);
        let pages = pages_for(size);
        let align_pages = (align / PAGE_SIZE).max(1);
        let span = {
            let mut pages_lock = PAGES.lock();
            if size <= LARGE_MAX && pages + align_pages - 1 <= MAX_SPAN_PAGES {
                let span = pages_lock.alloc_span(pages, align_pages, 0);
                if !span.is_null() {
                    // SAFETY: fresh descriptor.
                    unsafe { (*span).set_kind(SpanKind::Large) };
                }
                span
            } else {
                pages_lock.alloc_huge(size, align.max(PAGE_SIZE))
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
        self.large_live_bytes.add(s.bytes() as u64);
        self.add_live_bytes(s.bytes() as u64);
        sample_peaks(SizeClass::from_index(0));
        s.start() as *mut u8
    }

    pub(super) fn free_large(&self, span: *mut Span) {
        // SAFETY: the caller validated `span` as a live large or huge block.
        let s = unsafe { &*span };
        self.large_frees.add(1);
        self.large_live_bytes.add((s.bytes() as u64).wrapping_neg());
        self.live_bytes.add((s.bytes() as u64).wrapping_neg());
        let dirty = {
            let mut pages = PAGES.lock();
            // SAFETY: validated live block of ours, and the caller gives it up.
            unsafe {
                if s.kind() == SpanKind::Huge {
                    pages.free_huge(span);
                } else {
                    pages.free_span(span);
                }
            }
            pages.dirty_bytes
        };
        pages_freed(dirty);
    }

    /// Resizes a large block in place when its pages allow. Returns whether it
    /// did.
    pub(crate) fn resize_large_in_place(&self, span: *mut Span, new_size: usize) -> bool {
        // SAFETY: the caller validated `span` as a live large or huge block.
        let s = unsafe { &*span };
        let old = s.bytes();
        // A size near usize::MAX has no page count that fits: not in place.
        let Some(new_bytes) = pages_for(new_size).checked_mul(PAGE_SIZE) else {
            return false;
        };
        if s.kind() == SpanKind::Huge {
            if new_bytes <= Pages::huge_reserved(s) && new_bytes > LARGE_MAX {
                if new_bytes < old {
                    memory::decommit_tail(s.start() + new_bytes, s.start() + old);
                }
                s.bytes.store(new_bytes, Ordering::Relaxed);
                self.large_bytes_changed(new_bytes, old);
                return true;
            }
            return false;
        }
        if new_size > LARGE_MAX || new_size <= MAX_SMALL {
            return false;
        }
        if new_bytes == old {
            return true;
        }
        let mut pages = PAGES.lock();
        let done = if new_bytes < old {
            // SAFETY: live large span; the tail holds no block.
            unsafe { pages.shrink_large(span, new_bytes / PAGE_SIZE) };
            true
        } else {
            // SAFETY: live large span.
            unsafe { pages.grow_large(span, new_bytes / PAGE_SIZE) }
        };
        if done {
            self.large_bytes_changed(s.bytes(), old);
        }
        done
    }

    /// A large block went from `old` to `new` bytes in place.
    fn large_bytes_changed(&self, new: usize, old: usize) {
        let delta = (new as u64).wrapping_sub(old as u64);
        self.large_live_bytes.add(delta);
        self.add_live_bytes(delta);
    }
}
