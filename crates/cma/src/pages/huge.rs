//! Huge blocks: above `LARGE_MAX`, each block gets a mapping of its own
//! (resized in `huge_resize`). A freed mapping is kept in a small cache, decommitted after the purge
//! delay: a second free of it is still recognised as a double free, and a
//! new huge block reuses it (or moves its committed pages) instead of
//! faulting fresh ones.
//!
//! At a checked level, large blocks (above `MAX_SMALL`, up to `LARGE_MAX`)
//! are served here too, guarded (`Span::guarded`): a mapping of one segment-map granule whose
//! first `bytes` are the block and whose rest, a guard page at least, has no
//! access, so that an access past the block's page-rounded end faults at
//! once; freed, the mapping is sealed like a huge one. Each live guarded
//! block costs two mappings (block and guard), so only `GUARDED_LARGE_MAX`
//! of them live at once; beyond that, large blocks are segment spans as at
//! `fast` (see DESIGN.md, "Mapping count").

use core::ptr::null_mut;
use core::sync::atomic::Ordering;

use super::spans::header_bytes;
use super::Pages;
use crate::meta::segment_map::{self, SEGMENT_SIZE, TAG_HUGE};
use crate::meta::span::{Span, SpanKind};
use crate::os::{clock, memory, PAGE_SIZE};

/// Freed huge mappings kept (decommitted after the purge delay) for reuse and
/// double-free checks.
const HUGE_CACHE_MAX: usize = 16;
const HUGE_CACHE_MAX_BYTES: usize = 1 << 30;

/// Live guarded large blocks at most (two mappings each, of the 65530 the
/// kernel allows a process by default).
pub(crate) const GUARDED_LARGE_MAX: usize = 4096;

impl Pages {
    /// Maps a huge block of at least `bytes` aligned to `align`, with a
    /// header-only descriptor; `guarded`: a large block followed by a guard
    /// (see the module docs). Returns null when the kernel refuses.
    pub(crate) fn alloc_huge(&mut self, bytes: usize, align: usize, guarded: bool) -> *mut Span {
        let Some(bytes) = bytes
            .checked_add(PAGE_SIZE - 1)
            .map(|b| b & !(PAGE_SIZE - 1))
        else {
            return null_mut();
        };
        // Reuse the smallest cached mapping that is big enough. For a
        // guarded block (any one-granule mapping is big enough), the one
        // whose committed pages fit it best, so that it faults and
        // decommits least; among equals the oldest (the list is newest
        // first), and the newest only when nothing else fits: a freed,
        // sealed mapping is not handed out again at once, so that a use
        // after free right after the free faults.
        let (mut best, mut best_prev, mut best_score) =
            (null_mut::<Span>(), null_mut::<Span>(), usize::MAX);
        let mut prev: *mut Span = null_mut();
        let mut cur = self.huge_cache;
        while !cur.is_null() {
            // SAFETY: cached huge descriptors are live.
            let s = unsafe { &*cur };
            let reserved = s.reserved.get();
            let score = if !guarded {
                reserved
            } else {
                let committed = if s.dirty.get() { s.committable() } else { 0 };
                if committed >= bytes {
                    committed - bytes
                } else {
                    (1 << 40) + bytes - committed
                }
            };
            // The newest counts as worse than any other.
            let score = if guarded && prev.is_null() {
                score | (1 << 50)
            } else {
                score
            };
            let better = if guarded {
                // One granule (room for the guard page after the block):
                // a larger mapping is left to the huge blocks that need it.
                reserved == SEGMENT_SIZE && reserved > bytes && score <= best_score
            } else {
                reserved >= bytes && score < best_score
            };
            if better && s.start() % align == 0 {
                (best, best_prev, best_score) = (cur, prev, score);
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
            // What may hold memory, what is readable and writable now, and
            // what must be.
            let committed = s.committable();
            let open = if s.sealed.get() {
                0
            } else if s.guarded.get() {
                s.bytes()
            } else {
                reserved
            };
            let want = if guarded { bytes } else { reserved };
            if want > open && !memory::protect((s.start() + open) as *mut u8, want - open, true) {
                // The kernel refused to charge it again (the commit
                // limit): a new mapping would be refused too.
                self.release_uncached_huge(best);
                return null_mut();
            }
            if want < open {
                // The guard and what lies before it: no access, no charge.
                // Should the kernel refuse, the block is only unguarded.
                memory::protect((s.start() + want) as *mut u8, open - want, false);
            }
            if guarded {
                // Past the block, pages stay committed up to twice its
                // size (as a huge block keeps them, below): a reuse for a
                // larger block then faults less. The rest goes back now.
                let keep = committed.min(2 * bytes);
                if keep < committed {
                    memory::decommit((s.start() + keep) as *mut u8, committed - keep);
                }
                s.committed.set(keep.max(bytes));
            }
            s.sealed.set(false);
            if s.guarded.get() != guarded {
                self.advise_huge_pages(s.start() as *mut u8, reserved, guarded);
            }
            s.guarded.set(guarded);
            s.bytes.store(bytes, Ordering::Relaxed);
            s.zeroed.set(!s.dirty.get());
            if s.dirty.get() {
                // Keep at most as much again as the block needs committed
                // (it may grow into it, and the next reuse of the mapping
                // faults less); give back the rest of a far larger mapping.
                if !guarded && reserved > 2 * bytes + SEGMENT_SIZE {
                    memory::decommit_tail(s.start() + 2 * bytes, s.start() + reserved);
                }
                // As counted when it was freed.
                self.dirty_bytes -= committed;
                s.dirty.set(false);
            }
            if guarded {
                self.guarded_live += 1;
            }
            s.set_kind(SpanKind::Huge);
            self.link_live_huge(best);
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
        let desc = self.meta.alloc(header_bytes()).cast::<Span>();
        if desc.is_null() {
            return null_mut();
        }
        let align = align.max(SEGMENT_SIZE);
        // No cached mapping is big enough: move the committed pages of the
        // largest freed one to the start of the new mapping, so the new block
        // does not fault (and the kernel does not zero) all of them again.
        let mut base = 0;
        // A guarded block needs one granule, which any cached mapping has:
        // there is no donor for it.
        let mut donor = if guarded {
            null_mut()
        } else {
            self.take_largest_dirty_huge(reserved)
        };
        // SAFETY (both): a cached huge descriptor, out of the cache.
        if !donor.is_null() && unsafe { (*donor).sealed.get() } {
            let d = unsafe { &*donor };
            if memory::protect(d.start() as *mut u8, d.reserved.get(), true) {
                d.sealed.set(false);
            } else {
                self.return_to_cache(donor);
                donor = null_mut();
            }
        }
        if !donor.is_null() {
            // SAFETY: a cached huge descriptor, now out of the cache.
            let d = unsafe { &*donor };
            let (from, len, committable) = (d.start(), d.reserved.get(), d.committable());
            segment_map::set_range(from, len, 0);
            (base, _) = move_to_new_space(from, len, reserved, reserved, align);
            if base == 0 {
                // The kernel refused; the donor's mapping is as it was.
                segment_map::set_range(from, len, donor as usize | TAG_HUGE);
                self.return_to_cache(donor);
            } else {
                self.dirty_bytes -= committable;
                self.mapped -= len;
                // SAFETY: no map entry points at the donor any more.
                unsafe { self.meta.free(donor.cast(), header_bytes()) };
            }
        }
        let zeroed = base == 0;
        if base == 0 {
            // A guarded block: the whole granule reserved (no access, no
            // charge), then its block made memory; the rest is its guard.
            let p = if guarded {
                memory::reserve_aligned(reserved, align)
            } else {
                memory::map_aligned(reserved, align)
            };
            if p.is_null()
                || !segment_map::in_range(p as usize, reserved)
                || (guarded && !memory::protect(p, bytes, true))
            {
                if !p.is_null() {
                    memory::unmap(p, reserved);
                }
                // SAFETY: allocated above, never published.
                unsafe { self.meta.free(desc.cast(), header_bytes()) };
                return null_mut();
            }
            self.advise_huge_pages(p, reserved, guarded);
            base = p as usize;
        }
        self.mapped += reserved;
        if self.huge_pages {
            self.hint_first_segment();
        }
        // SAFETY: fresh zeroed descriptor.
        let d = unsafe { &*desc };
        d.start.store(base, Ordering::Relaxed);
        d.bytes.store(bytes, Ordering::Relaxed);
        d.reserved.set(reserved);
        d.zeroed.set(zeroed);
        d.guarded.set(guarded);
        d.committed.set(if guarded { bytes } else { 0 });
        if guarded {
            self.guarded_live += 1;
        }
        d.set_kind(SpanKind::Huge);
        segment_map::set_range(base, reserved, desc as usize | TAG_HUGE);
        self.link_live_huge(desc);
        desc
    }

    /// Sets the transparent-huge-page advice of the mapping `[p, p+bytes)`
    /// for a huge block or, `guarded`, a large one. A huge block asks for
    /// huge pages whatever segments do (`huge_pages=` is theirs): its
    /// memory is given back whole, never a page here and there inside a
    /// live 2 MiB region, and a block of megabytes faults 512 times less. A
    /// guarded large block is a segment span's size and is advised as
    /// segments are, so that what the purge decommits stays decommitted
    /// (`os::memory::forbid_huge_pages`).
    fn advise_huge_pages(&self, p: *mut u8, bytes: usize, guarded: bool) {
        if !guarded || self.huge_pages {
            memory::hint_huge_pages(p, bytes);
        } else {
            memory::forbid_huge_pages(p, bytes);
        }
    }

    /// Puts a block that just became a live huge block on the live list.
    fn link_live_huge(&mut self, span: *mut Span) {
        // SAFETY: a live huge descriptor, on no list.
        let s = unsafe { &*span };
        s.prev.set(null_mut());
        s.next.set(self.huge_live);
        if !self.huge_live.is_null() {
            // SAFETY: listed descriptors are live huge blocks.
            unsafe { (*self.huge_live).prev.set(span) };
        }
        self.huge_live = span;
    }

    /// The live huge blocks, newest first: the first, then each one's `next`.
    pub(crate) fn live_huge(&self) -> *mut Span {
        self.huge_live
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

    /// Puts a dirty cached mapping that `take_largest_dirty_huge` took back
    /// into the cache, as it was.
    fn return_to_cache(&mut self, span: *mut Span) {
        // SAFETY: a cached huge descriptor, out of the cache.
        let s = unsafe { &*span };
        s.free_next.set(self.huge_cache);
        self.huge_cache = span;
        self.huge_cached += 1;
        self.huge_cached_bytes += s.reserved.get();
    }

    /// Resizes the guarded large block `span` in place to `bytes` (whole
    /// pages, at most `LARGE_MAX`): its guard moves with its end. False when
    /// the kernel refuses to charge the growth (the block is then as it
    /// was).
    ///
    /// # Safety
    /// `span` is a live guarded large block of ours, owned by the caller.
    pub(crate) unsafe fn resize_guarded(&mut self, span: *mut Span, bytes: usize) -> bool {
        // SAFETY: guaranteed by the caller.
        let s = unsafe { &*span };
        debug_assert!(s.guarded.get() && bytes + PAGE_SIZE <= s.reserved.get());
        let (start, old) = (s.start(), s.bytes());
        if bytes > old && !memory::protect((start + old) as *mut u8, bytes - old, true) {
            return false;
        }
        if bytes < old {
            // The pages given up become guard: no memory, no access.
            memory::decommit((start + bytes) as *mut u8, old - bytes);
            memory::protect((start + bytes) as *mut u8, old - bytes, false);
        }
        s.committed.set(s.committed.get().max(bytes));
        s.bytes.store(bytes, Ordering::Relaxed);
        true
    }

    /// Frees a huge block: the mapping is kept (so that a second free of it is
    /// recognised, and a new huge block can reuse it without page faults) and
    /// decommitted after the purge delay like any free span. Its headroom
    /// goes back to the kernel now: only a live block grows into it.
    ///
    /// # Safety
    /// `span` is a live huge block of ours.
    pub(crate) unsafe fn free_huge(&mut self, span: *mut Span, seal: bool) {
        // SAFETY: the caller guarantees `span` is a live huge descriptor.
        let s = unsafe { &*span };
        let reserved = s.reserved.get();
        let headroom = s.headroom.get();
        if headroom > 0 {
            segment_map::set_range(s.start() + reserved, headroom, 0);
            // Should the kernel refuse, the range stays reserved, costing
            // address space only (no access, no charge).
            memory::unmap((s.start() + reserved) as *mut u8, headroom);
            s.headroom.set(0);
        }
        let (prev, next) = (s.prev.get(), s.next.get());
        if prev.is_null() {
            self.huge_live = next;
        } else {
            // SAFETY: listed descriptors are live huge blocks.
            unsafe { (*prev).next.set(next) };
        }
        if !next.is_null() {
            // SAFETY: as above.
            unsafe { (*next).prev.set(prev) };
        }
        // A checked level's freed huge block faults when touched until its
        // mapping is reused (should the kernel refuse, it stays readable).
        // A guarded block is sealed whatever the level is now: it was made
        // at a checked one, and its mapping is sealed or live, never half.
        let guarded = s.guarded.get();
        if guarded {
            self.guarded_live -= 1;
        }
        if (seal || guarded) && memory::protect(s.start() as *mut u8, reserved, false) {
            s.sealed.set(true);
        }
        s.set_kind(SpanKind::HugeFree);
        s.dirty.set(true);
        s.freed_at_ms.set(clock::now_ms());
        self.dirty_bytes += s.committable();
        s.free_next.set(self.huge_cache);
        self.huge_cache = span;
        self.huge_cached += 1;
        self.huge_cached_bytes += reserved;
        while self.huge_cached > HUGE_CACHE_MAX || self.huge_cached_bytes > HUGE_CACHE_MAX_BYTES {
            self.release_oldest_huge();
        }
    }

    fn release_oldest_huge(&mut self) {
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
            let reserved = (*cur).reserved.get();
            self.huge_cached -= 1;
            self.huge_cached_bytes -= reserved;
            self.release_uncached_huge(cur);
        }
    }

    /// Unmaps a freed huge mapping already out of the cache and frees its
    /// descriptor.
    fn release_uncached_huge(&mut self, span: *mut Span) {
        // SAFETY: a freed huge descriptor on no list.
        let s = unsafe { &*span };
        let reserved = s.reserved.get();
        if s.dirty.get() {
            self.dirty_bytes -= s.committable();
        }
        segment_map::set_range(s.start(), reserved, 0);
        memory::unmap(s.start() as *mut u8, reserved);
        self.mapped -= reserved;
        // SAFETY: no map entry or list names it any more.
        unsafe { self.meta.free(span.cast(), header_bytes()) };
    }
}

/// Reserves `space` bytes of address space at `align` (both whole
/// segment-map granules) for a huge mapping, inside the segment map's range,
/// hinted for transparent huge pages (what becomes memory there keeps the
/// hint; see `alloc_huge`). Returns 0 when the kernel refuses.
fn reserve_huge_space(space: usize, align: usize) -> usize {
    let p = memory::reserve_aligned(space, align);
    if p.is_null() {
        return 0;
    }
    if !segment_map::in_range(p as usize, space) {
        memory::unmap(p, space);
        return 0;
    }
    memory::hint_huge_pages(p, space);
    p as usize
}

/// Moves the pages of the huge mapping `[from, from+len)` to the start of
/// fresh address space at `align`, of which the first `reserved` bytes (more
/// than `len`) are then readable and writable, charged, and the rest (up to
/// `space` bytes when the kernel grants that much address space, else none)
/// stays reserved as headroom. Returns the new start and the size of the
/// address space taken, or 0 when the kernel refuses: `from` is then as it
/// was. The caller clears the map entries of `from` first, and names the
/// new range in the map once the move is done.
///
/// One `mremap` moves the mapping and grows it, charging the growth against
/// the commit limit. A move that also resizes is one the kernel does only
/// for a mapping it holds in one piece, and then all at once or not at all:
/// one it has cut in several (say, by the program's own `mprotect` on part
/// of its block) is refused, and the caller copies instead. (A plain move
/// of several pieces, which Linux allows since 6.17, could stop halfway,
/// some pieces moved and some not.)
pub(super) fn move_to_new_space(
    from: usize,
    len: usize,
    reserved: usize,
    space: usize,
    align: usize,
) -> (usize, usize) {
    debug_assert!(len < reserved && reserved <= space);
    let (target, space) = match reserve_huge_space(space, align) {
        0 if space > reserved => (reserve_huge_space(reserved, align), reserved),
        target => (target, space),
    };
    if target == 0 {
        return (0, 0);
    }
    if memory::remap(from, len, target, reserved) {
        return (target, space);
    }
    // A refused mremap may have unmapped its destination first: then
    // `[target, target+reserved)` is a hole that another thread's mapping
    // can take at any time, so it is left alone (at worst, address space
    // stays reserved there, without access or charge). The rest is ours.
    if space > reserved {
        memory::unmap((target + reserved) as *mut u8, space - reserved);
    }
    (0, 0)
}
