//! Slabs: taking a new one from the page allocator, the per-class partial
//! lists, and giving an empty one back.
//!
//! A slab is on at most one list of its owner: `Current` (the class's
//! cached slab), `Partial` (has free slots) or `Full` (on no list; a free
//! into it makes it partial again).

use core::ptr::null_mut;
use core::sync::atomic::Ordering;

use super::guard;
use super::Heap;
use crate::check::level;
use crate::check::switches::{self, CheckSwitch};
use crate::meta::span::{SlabList, Span, SpanKind};
use crate::pages::{purge_thread, PAGES};
use crate::slab::page_purge;
use crate::slab::size_class::SizeClass;

impl Heap {
    /// A fresh slab of `class`, owned by this heap and current; null when
    /// memory runs out.
    pub(super) fn new_slab(&self, class: SizeClass) -> *mut Span {
        let g = class.geometry();
        let words = (g.capacity as usize).div_ceil(64);
        let slab = {
            let mut pages = PAGES.lock();
            let slab = pages.alloc_span(g.slab_pages as usize, 1, words);
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
        if level::checked() && switches::on(CheckSwitch::Wipe) && !s.zeroed.get() {
            // A checked level hands out only slots that read as zero.
            // SAFETY: the span's pages are ours and hold no block yet.
            unsafe { core::ptr::write_bytes(s.start() as *mut u8, 0, s.bytes()) };
        }
        // The owner before the capacity: no descriptor has owner 0 and a
        // capacity (see `Span::owner`).
        s.owner.store(self.owner_token(), Ordering::Relaxed);
        s.owner_frees.store(
            &self.frees[class.index()] as *const _ as usize,
            Ordering::Relaxed,
        );
        s.class.store(class.index() as u8, Ordering::Relaxed);
        s.block_size.store(g.block_size, Ordering::Relaxed);
        s.inverse.store(g.inverse, Ordering::Relaxed);
        s.shift.store(g.shift, Ordering::Relaxed);
        s.capacity.store(g.capacity as u64, Ordering::Relaxed);
        s.used.set(0);
        s.set_list(SlabList::Current);
        page_purge::start_current(s);
        if self.is_arena.get() {
            self.arena_slab_added(s);
        }
        slab
    }

    /// Takes the first slab off the partial list of `class`.
    pub(super) fn take_partial(&self, class: usize) -> Option<*mut Span> {
        let head = self.partial[class].get();
        if head.is_null() {
            return None;
        }
        self.unlink_partial(class, head);
        Some(head)
    }

    pub(super) fn push_partial(&self, class: usize, slab: *mut Span) {
        // SAFETY: `slab` is ours and on no list.
        let s = unsafe { &*slab };
        let list = &self.partial[class];
        let head = list.get();
        s.set_list(SlabList::Partial);
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
    pub(super) fn slab_gained_space(&self, slab: *mut Span) {
        // SAFETY: `slab` is owned by this heap.
        let s = unsafe { &*slab };
        let class = s.class.load(Ordering::Relaxed) as usize;
        match s.list.get() {
            SlabList::Current => {}
            SlabList::Full => {
                if s.used_count() == 0 {
                    self.retire_slab(slab);
                } else {
                    if purge_thread::slab_went_partial(s.bytes()) {
                        guard::defer_purge_start();
                    }
                    self.push_partial(class, slab);
                }
            }
            SlabList::Partial => {
                if s.used_count() == 0 {
                    self.unlink_partial(class, slab);
                    self.retire_slab(slab);
                }
            }
        }
    }

    /// Gives an empty slab, on no list, back to the page allocator.
    pub(super) fn retire_slab(&self, slab: *mut Span) {
        if self.is_arena.get() {
            // SAFETY: `slab` is ours.
            self.arena_slab_removed(unsafe { &*slab });
        }
        // SAFETY: `slab` is ours, empty, and on no list.
        page_purge::retire(unsafe { &*slab });
        // Owner 0 goes with capacity 0: what a thread without a heap finds
        // when a page table still names this descriptor (see `Span::owner`).
        // SAFETY: as above.
        unsafe {
            (*slab).capacity.store(0, Ordering::Relaxed);
            (*slab).owner.store(0, Ordering::Relaxed);
        }
        let dirty = {
            let mut pages = PAGES.lock();
            // SAFETY: as above; the slab holds no live block.
            unsafe { pages.free_span(slab) };
            pages.dirty_bytes
        };
        pages_freed(dirty);
    }
}

/// Pages went back to the page allocator, which now holds `dirty_bytes`
/// waiting to be purged: perhaps time for the purge thread, which must be
/// started outside cma (see `pages::purge_thread`).
#[inline]
pub(super) fn pages_freed(dirty_bytes: usize) {
    if purge_thread::wants_start(dirty_bytes) {
        guard::defer_purge_start();
    }
}
