//! Blocks of whole pages: large blocks are spans of a segment (up to
//! `LARGE_MAX`), huge blocks have mappings of their own. Either way the page
//! allocator does the work under its lock; the heap counts them.

use core::ptr::null_mut;

use super::counters::sample_peaks;
use super::slabs::pages_freed;
use super::Heap;
use crate::check::kind::AllocKind;
use crate::check::level;
use crate::check::switches::{self, CheckSwitch};
use crate::meta::span::{Span, SpanKind};
use crate::os::PAGE_SIZE;
use crate::pages::{pages_for, resize_huge, GUARDED_LARGE_MAX, LARGE_MAX, MAX_SPAN_PAGES, PAGES};
use crate::slab::size_class::{SizeClass, MAX_SMALL};
use crate::track::ignored;

impl Heap {
    /// Allocates `size` bytes at `align` from whole pages.
    pub(crate) fn alloc_large(&self, size: usize, align: usize, zero: bool) -> *mut u8 {
        // A zero-byte request with a large alignment still needs a page: with
        // none, no span (null) or an empty, unregistered huge mapping.
        let size = size.max(1);
        let pages = pages_for(size);
        let align_pages = (align / PAGE_SIZE).max(1);
        let checked = level::checked() && switches::on(CheckSwitch::LargeGuard);
        let span = {
            let mut pages_lock = PAGES.lock();
            if checked
                && size > MAX_SMALL
                && size <= LARGE_MAX
                && pages_lock.guarded_live < GUARDED_LARGE_MAX
            {
                // A checked level's large block: a mapping of its own with a
                // guard after it (`pages::huge`), up to the mapping budget.
                // (A small block that is here for its alignment is not
                // guarded: its slot would not be either.)
                pages_lock.alloc_huge(size, align.max(PAGE_SIZE), true)
            } else if size <= LARGE_MAX && pages + align_pages - 1 <= MAX_SPAN_PAGES {
                let span = pages_lock.alloc_span(pages, align_pages, 0);
                if !span.is_null() {
                    // SAFETY: fresh descriptor.
                    unsafe { (*span).set_kind(SpanKind::Large) };
                }
                span
            } else {
                pages_lock.alloc_huge(size, align.max(PAGE_SIZE), false)
            }
        };
        if span.is_null() {
            return null_mut();
        }
        // SAFETY: the span is live and ours.
        let s = unsafe { &*span };
        if s.guarded.get() && !crate::os::signal::fault_handler_installed() {
            // A touch of its guard faults: the handler says whose.
            super::guard::defer_fault_handler();
        }
        if zero && !s.zeroed.get() {
            // SAFETY: the span's pages are mapped and belong to this block.
            unsafe { core::ptr::write_bytes(s.start() as *mut u8, 0, s.bytes()) };
        }
        // A reused descriptor (a cached huge mapping) may still name the
        // family of its last block.
        s.alloc_kind.set(AllocKind::Malloc as u8);
        if ignored::ignoring() {
            ignored::handing_out(s.start());
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
                    let seal = (level::checked() && switches::on(CheckSwitch::LargeGuard))
                        || s.guarded.get();
                    if seal && !crate::os::signal::fault_handler_installed() {
                        // A touch of the sealed mapping faults: the handler
                        // says whose.
                        super::guard::defer_fault_handler();
                    }
                    pages.free_huge(span, seal);
                } else {
                    pages.free_span(span);
                }
            }
            pages.dirty_bytes
        };
        pages_freed(dirty);
    }

    /// Resizes a large or huge block without copying it: a large block in
    /// place when the pages after it allow, a huge block in place or by
    /// moving its pages (`pages::resize_huge`; `align` is kept if it moves).
    /// Returns the block's address, a new one when it moved, or null when
    /// the caller must copy it into a new block (the block is then
    /// unchanged). A move counts as one allocation and one free, as a copy
    /// does.
    pub(crate) fn resize_large(&self, span: *mut Span, new_size: usize, align: usize) -> *mut u8 {
        // SAFETY: the caller validated `span` as a live large or huge block.
        let s = unsafe { &*span };
        if new_size > isize::MAX as usize / 2 {
            // Beyond any mapping (near usize::MAX, no page count even fits):
            // not in place; `alloc_slow` reports it.
            return null_mut();
        }
        let old = s.bytes();
        let new_bytes = pages_for(new_size) * PAGE_SIZE;
        if s.guarded.get() {
            // In its mapping while it stays a large block; a huge or small
            // one is copied.
            if new_size > LARGE_MAX || new_size <= MAX_SMALL {
                return null_mut();
            }
            if new_bytes != old {
                // SAFETY: a live guarded block, resized by its owner's realloc.
                if !unsafe { PAGES.lock().resize_guarded(span, new_bytes) } {
                    return null_mut();
                }
                self.large_bytes_changed(new_bytes, old);
                if new_bytes > old {
                    sample_peaks(SizeClass::from_index(0));
                }
            }
            return s.start() as *mut u8;
        }
        if s.kind() == SpanKind::Huge {
            if new_bytes <= LARGE_MAX {
                // Into a segment: copied.
                return null_mut();
            }
            let old_start = s.start();
            // SAFETY: a live huge block, resized by its owner's realloc.
            let Some(start) = (unsafe { resize_huge(span, new_bytes, align) }) else {
                return null_mut();
            };
            if start != old_start {
                self.large_allocs.add(1);
                self.large_frees.add(1);
            }
            self.large_bytes_changed(new_bytes, old);
            if new_bytes > old {
                sample_peaks(SizeClass::from_index(0));
            }
            return start as *mut u8;
        }
        if new_size > LARGE_MAX || new_size <= MAX_SMALL {
            return null_mut();
        }
        if new_bytes == old {
            return s.start() as *mut u8;
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
        drop(pages);
        if !done {
            return null_mut();
        }
        self.large_bytes_changed(s.bytes(), old);
        s.start() as *mut u8
    }

    /// A large block went from `old` to `new` bytes in place.
    fn large_bytes_changed(&self, new: usize, old: usize) {
        let delta = (new as u64).wrapping_sub(old as u64);
        self.large_live_bytes.add(delta);
        self.add_live_bytes(delta);
    }
}
