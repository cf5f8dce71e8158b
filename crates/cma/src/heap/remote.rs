//! Frees by other threads: a thread that frees a slot of a slab it does not
//! own records the free in the slab's remote bitmap (`slab::remote_free`)
//! and, when it is the first since the owner last looked, pushes the slab
//! onto the owner heap's delayed list (a Treiber stack). The owner collects
//! the list when its allocation cache runs dry.

use core::ptr::null_mut;
use core::sync::atomic::Ordering;

use super::guard::{fast_heap, fast_token};
use super::{Heap, CHECKED_OWNER};
use crate::check::kind::{self as kinds, AllocKind};
use crate::check::level;
use crate::check::lookup::slot_error;
use crate::check::report;
use crate::meta::span::{SlabList, Span};
use crate::slab::remote_free::{self, RemoteFree, OWNER_PENDING};
use crate::slab::slot::{slot_at, SlotState};

/// The remote free's fast path: the calling thread frees an allocated slot
/// of another heap's slab, at the `fast` level, with no guard (it calls
/// nothing that could re-enter cma, and writes only the slab's remote words,
/// the owner's delayed list, which are atomic, and its own heap's counter).
/// Returns false, having changed nothing, for anything else (no slab, a
/// checked level's slab, not an allocated slot, a slot another thread freed
/// already, a thread without a heap): the full path decides and reports.
/// `span` may be stale or `NO_SPAN`: the slot check only accepts an address
/// inside the slab it names.
#[inline]
pub(crate) fn free_remote_fast(span: &Span, addr: usize) -> bool {
    let heap = fast_heap();
    let owner = span.owner.load(Ordering::Relaxed);
    // Not a slab (owner 0), a checked level's slab, the thread's own slab
    // (with remote frees pending: the full path frees it locally), or no
    // heap to count the free in.
    if owner == 0
        || owner & CHECKED_OWNER != 0
        || owner & !OWNER_PENDING == fast_token()
        || heap.is_empty_heap()
    {
        return false;
    }
    let Some(index) = slot_at(span, addr) else {
        return false;
    };
    let (w, bit) = (index / 64, 1u64 << (index % 64));
    if span.allocated_word(w).load(Ordering::Relaxed) & bit == 0 {
        return false;
    }
    heap.free_slot_remote(span, index)
}

impl Heap {
    /// Another thread than the owner frees allocated slot `index` of
    /// `slab`. False (nothing changed) when another thread freed it already.
    #[inline(never)]
    pub(super) fn free_slot_remote(&self, slab: &Span, index: usize) -> bool {
        let (w, bit) = (index / 64, 1u64 << (index % 64));
        match remote_free::mark_freed(slab.remote_word(w), &slab.remote_summary, w, bit) {
            RemoteFree::AlreadyFreed => return false,
            RemoteFree::NotifyOwner => {
                remote_free::flag_owner(&slab.owner);
                let owner = Heap::from_owner_word(slab.owner.load(Ordering::Relaxed));
                // SAFETY: a slab with an allocated slot has a live owner heap
                // (heaps are never freed, only pooled).
                unsafe { (*owner).push_delayed(slab as *const Span as *mut Span) };
            }
            RemoteFree::Recorded => {}
        }
        self.frees[slab.class.load(Ordering::Relaxed) as usize].add(1);
        true
    }

    /// Any thread: tells this heap that `slab` has remote frees to collect.
    fn push_delayed(&self, slab: *mut Span) {
        let mut head = self.delayed.load(Ordering::Relaxed);
        loop {
            // SAFETY: `slab` is live; only the thread that made its summary
            // non-zero links it, so no one else writes `next_delayed` now.
            unsafe { (*slab).next_delayed.store(head, Ordering::Relaxed) };
            match self.delayed.compare_exchange_weak(
                head,
                slab,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }

    /// Owner only: collects the remote frees of every slab on the delayed list.
    pub(super) fn collect_delayed(&self) {
        let mut cur = self.delayed.swap(null_mut(), Ordering::Acquire);
        while !cur.is_null() {
            // SAFETY: slabs on our delayed list are ours and live (a slab with
            // uncollected frees has used > 0 and is never retired).
            let s = unsafe { &*cur };
            let next = s.next_delayed.load(Ordering::Relaxed);
            let is_current = s.list.get() == SlabList::Current;
            let checked = level::checked();
            remote_free::take_pending(
                &s.owner,
                &s.remote_summary,
                |w| s.remote_word(w),
                |w, bits| {
                    let word = s.allocated_word(w);
                    let a = word.load(Ordering::Relaxed);
                    if a & bits != bits {
                        // A slot freed by another thread was also freed here.
                        let index = w * 64 + (bits & !a).trailing_zeros() as usize;
                        report::fatal("free", slot_error(s, index, SlotState::FreedByOtherThread));
                    }
                    word.store(a & !bits, Ordering::Relaxed);
                    let taken = bits.count_ones() as u64;
                    self.remote_frees_collected.add(taken);
                    self.remote_bytes_collected
                        .add(taken * s.slot_size() as u64);
                    if checked {
                        // The freeing thread wiped them: they wait in this
                        // heap's quarantine, as its own frees do.
                        let mut rest = bits;
                        while rest != 0 {
                            let index = w * 64 + rest.trailing_zeros() as usize;
                            rest &= rest - 1;
                            // The remote free checked its kind; the kind
                            // bits are the owner's to clear.
                            kinds::set_slot_kind(s, index, AllocKind::Malloc);
                            self.quarantine_slot(s, index, s.slot_size());
                        }
                    } else {
                        s.used.set(s.used.get() - bits.count_ones());
                    }
                },
            );
            if !is_current {
                self.slab_gained_space(cur);
            }
            cur = next;
        }
    }
}
