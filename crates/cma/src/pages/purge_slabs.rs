//! The slab purge pass: decommits the whole pages of free slots inside
//! slabs that no thread allocates from, so that resident memory follows the
//! live blocks when frees leave slabs partly used (a free slot holds nothing
//! cma needs: slot metadata lives out of line).
//!
//! The purge thread runs it. Under the page lock it walks the segments and
//! holds (`slab::page_purge`) the slabs that lost blocks since they were
//! last purged and then stayed unchanged for one pass (a quiet period, so a
//! slab that is being freed into and reused is left alone); then, without
//! the lock, it scans each held slab's bitmap for pages that no allocated
//! slot touches, decommits them in runs, and lets go. A current slab's
//! cached word is left alone: its owner hands out those slots without
//! asking anyone. A slot freed by another thread and not yet collected
//! still reads as allocated: its page waits for a later pass.

use core::sync::atomic::Ordering;

use super::{Pages, PAGES};
use crate::meta::span::{Span, SpanKind, PAGES_PER_SEGMENT};
use crate::os::{memory, PAGE_SIZE};
use crate::slab::page_purge;
use crate::util::bits::count_ones;

/// Slabs one pass holds at most; the rest wait for the next pass.
const BATCH: usize = 256;

/// What one pass did.
pub(crate) struct SlabPass {
    /// Slabs whose free pages were decommitted.
    pub(crate) purged: usize,
    /// Whether some slab changed since the previous pass (the next pass may
    /// purge it).
    pub(crate) changing: bool,
}

/// Runs one pass; see the module docs. Takes the page lock itself.
pub(crate) fn purge_slab_pages() -> SlabPass {
    let mut held = [(core::ptr::null::<Span>(), (0u32, 0u64)); BATCH];
    let (n, changing) = PAGES.lock().hold_slabs_to_purge(&mut held);
    for &(slab, cached) in &held[..n] {
        // SAFETY: the pass holds the slab (`page_purge::try_hold`), so it
        // stays a live slab: it cannot be retired, and its owner hands out
        // only the cached slots.
        let s = unsafe { &*slab };
        let used = allocated_slots(s);
        decommit_free_pages(s, cached);
        s.used_at_purge.store(used, Ordering::Relaxed);
        page_purge::release(s);
    }
    SlabPass {
        purged: n,
        changing,
    }
}

impl Pages {
    /// Holds (into `out`) the slabs worth purging; returns how many, and
    /// whether a slab changed since the last pass. Under the lock, so every
    /// descriptor a page table names is live while it looks.
    fn hold_slabs_to_purge(&self, out: &mut [(*const Span, (u32, u64)); BATCH]) -> (usize, bool) {
        let (mut n, mut changing) = (0, false);
        let mut seg = self.segments;
        while !seg.is_null() && n < BATCH {
            // SAFETY: listed segment tables are live under the lock.
            let table = unsafe { &*seg };
            let mut page = 0;
            while page < PAGES_PER_SEGMENT && n < BATCH {
                let span = table.span_at(page);
                if span.is_null() {
                    page += 1;
                    continue;
                }
                // SAFETY: page entries point at descriptors in the metadata
                // region; a stale one is caught by `contains`.
                let s = unsafe { &*span };
                if !s.contains(table.base + page * PAGE_SIZE) {
                    page += 1;
                    continue;
                }
                if s.kind() == SpanKind::Slab {
                    match wants_purge(s) {
                        Wants::Now => {
                            if let Some(cached) = page_purge::try_hold(s) {
                                out[n] = (s, cached);
                                n += 1;
                            }
                        }
                        Wants::Changing => changing = true,
                        Wants::No => {}
                    }
                }
                page = s.first_page() + s.pages().max(1);
            }
            seg = table.next.get();
        }
        (n, changing)
    }
}

enum Wants {
    Now,
    Changing,
    No,
}

/// The allocated slots of `slab`, counted in its bitmap: the pass's measure
/// of how used a slab is (`Span::used` is its owner's alone). Slots in the
/// owner's cache are not in it, which changes no comparison the pass makes
/// between its own counts: fewer than at the last purge still means slots
/// were freed since.
fn allocated_slots(slab: &Span) -> u32 {
    (0..slab.words.get() as usize)
        .map(|w| count_ones(slab.allocated_word(w).load(Ordering::Relaxed)))
        .sum()
}

/// Whether an idle slab's free pages should be decommitted now: slots were
/// freed since it was last purged, and it has not changed since the
/// previous pass looked (`used_seen`, which this updates).
fn wants_purge(slab: &Span) -> Wants {
    let state = slab.purge_state.load(Ordering::Acquire);
    if state != page_purge::IDLE && state != page_purge::CURRENT {
        return Wants::No;
    }
    let used = allocated_slots(slab);
    let seen = slab.used_seen.swap(used, Ordering::Relaxed);
    if used >= slab.used_at_purge.load(Ordering::Relaxed) {
        Wants::No
    } else if used == seen {
        Wants::Now
    } else {
        Wants::Changing
    }
}

/// Decommits, in runs, every page of `slab` that no allocated slot touches,
/// nor a cached one (`cached`: a bitmap word and its cached slots, which the
/// owner may be handing out). The caller holds the slab.
fn decommit_free_pages(slab: &Span, cached: (u32, u64)) {
    let start = slab.start();
    let pages = slab.pages();
    let block_size = slab.slot_size();
    let capacity = slab.capacity.load(Ordering::Relaxed) as usize;
    if block_size == 0 || capacity == 0 {
        return;
    }
    let mut run: Option<usize> = None;
    for page in 0..=pages {
        let free = page < pages && {
            let first = page * PAGE_SIZE / block_size;
            let last = ((page + 1) * PAGE_SIZE - 1) / block_size;
            first >= capacity
                || (!any_cached(first, last, cached)
                    && slots_free(slab, first, last.min(capacity - 1)))
        };
        match (free, run) {
            (true, None) => run = Some(page),
            (false, Some(from)) => {
                memory::decommit(
                    (start + from * PAGE_SIZE) as *mut u8,
                    (page - from) * PAGE_SIZE,
                );
                run = None;
            }
            _ => {}
        }
    }
}

/// Whether any of slots `first..=last` is in the owner's cache.
fn any_cached(first: usize, last: usize, (word, mask): (u32, u64)) -> bool {
    let w = word as usize;
    if word == page_purge::NO_CACHE_WORD || w < first / 64 || w > last / 64 {
        return false;
    }
    let lo = if w == first / 64 { first % 64 } else { 0 };
    let hi = if w == last / 64 { last % 64 } else { 63 };
    mask & (u64::MAX >> (63 - hi)) & (u64::MAX << lo) != 0
}

/// Whether slots `first..=last` of `slab` are all free in its allocated
/// bitmap.
fn slots_free(slab: &Span, first: usize, last: usize) -> bool {
    for w in first / 64..=last / 64 {
        let lo = if w == first / 64 { first % 64 } else { 0 };
        let hi = if w == last / 64 { last % 64 } else { 63 };
        let mask = (u64::MAX >> (63 - hi)) & (u64::MAX << lo);
        if slab.allocated_word(w).load(Ordering::Relaxed) & mask != 0 {
            return false;
        }
    }
    true
}
