//! The allocation fast path and its refill.
//!
//! Allocating pops the lowest bit of the class's cached word (free slots of
//! one bitmap word of the current slab), sets that slot's bit in the slab's
//! allocated bitmap and counts one allocation. When the cache is dry the
//! refill collects remote frees, reloads the cache from the slab's bitmap,
//! or takes a partial or a new slab; it also brings the class's bytes and
//! peaks up to date (`counters`).

use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicU64, Ordering};

use super::counters::sample_peaks;
use super::{ClassState, Heap};
use crate::meta::span::{SlabList, Span};
use crate::slab::page_purge;
use crate::slab::size_class::SizeClass;
use crate::track::ignored;
use crate::util::bits::count_ones;

impl Heap {
    /// Allocates a block of `class`, or null when memory runs out. The
    /// caller holds a guard and a real heap (not the empty one).
    #[inline(always)]
    pub(crate) fn alloc_small(&self, class: SizeClass) -> *mut u8 {
        match self.class_state(class.index()).pop() {
            Some(p) => p.as_ptr(),
            None => self.alloc_small_refill(class),
        }
    }
}

impl ClassState {
    /// The allocation fast path: pops a slot from the class's cache, or
    /// `None` when the cache is empty (always, on the empty heap). Owner
    /// thread only.
    #[inline(always)]
    pub(crate) fn pop(&self) -> Option<NonNull<u8>> {
        let st = self;
        let cache = st.cache.load(Ordering::Relaxed);
        if cache == 0 {
            return None;
        }
        let rest = cache & (cache - 1);
        let lowest = cache ^ rest;
        st.cache.store(rest, Ordering::Relaxed);
        // SAFETY: a non-empty cache came from a word of the current slab,
        // which this heap owns; only the owner writes the allocated bitmap.
        let word = unsafe { &*st.cache_word.get() };
        // No count here: the refill counted the cached slots
        // (`ClassState::allocations`).
        word.store(word.load(Ordering::Relaxed) | lowest, Ordering::Relaxed);
        let bit = cache.trailing_zeros() as usize;
        // SAFETY: slot addresses lie inside a mapped segment, never at 0.
        Some(unsafe {
            NonNull::new_unchecked((st.cache_base.get() + bit * st.block_size.get()) as *mut u8)
        })
    }
}

impl Heap {
    /// The cache of `class` is dry: refill it and allocate. The caller holds
    /// a guard and a real heap.
    #[cold]
    #[inline(never)]
    pub(crate) fn alloc_small_refill(&self, class: SizeClass) -> *mut u8 {
        self.alloc_small_refill_inline(class)
    }

    /// `alloc_small_refill`, inline: for the allocation fast path's own
    /// refill (`api::alloc::refill`), which then makes no further call to
    /// load a cache.
    #[inline(always)]
    pub(crate) fn alloc_small_refill_inline(&self, class: SizeClass) -> *mut u8 {
        debug_assert!(!self.is_empty_heap());
        if !self.delayed.load(Ordering::Relaxed).is_null() {
            self.collect_delayed();
        }
        let st = &self.classes[class.index()];
        self.sample_class(st, class);
        // One loading site, inlined: most refills load the current slab's
        // next word, and pay for no call of their own.
        let mut slab = st.slab.get();
        let mut fresh = false;
        loop {
            if !slab.is_null() {
                if self.load_cache(st, slab) {
                    return self.alloc_small(class);
                }
                if fresh {
                    return null_mut();
                }
                // SAFETY: the current slab is ours.
                let s = unsafe { &*slab };
                s.set_list(SlabList::Full);
                page_purge::leave_current(s);
                st.slab.set(null_mut());
            }
            (slab, fresh) = self.next_current_slab(st, class);
            if slab.is_null() {
                return null_mut();
            }
        }
    }

    /// The current slab of `class` is full or there is none: makes a
    /// partial slab current, or else a new one (`true`: fresh), or returns
    /// null when memory runs out.
    #[inline(never)]
    fn next_current_slab(&self, st: &ClassState, class: SizeClass) -> (*mut Span, bool) {
        if let Some(partial) = self.take_partial(class.index()) {
            // SAFETY: slabs on our partial list are ours.
            let s = unsafe { &*partial };
            page_purge::make_current(s);
            s.set_list(SlabList::Current);
            st.slab.set(partial);
            st.word.set(0);
            return (partial, false);
        }
        let slab = self.new_slab(class);
        if slab.is_null() {
            return (slab, true);
        }
        st.slab.set(slab);
        st.word.set(0);
        sample_peaks(class);
        (slab, true)
    }

    /// Fills the empty cache from the first bitmap word of `slab` with free
    /// slots, starting at the current word. Returns false when the slab is
    /// full.
    #[inline(always)]
    fn load_cache(&self, st: &ClassState, slab: *mut Span) -> bool {
        // SAFETY: `slab` is owned by this heap, and current.
        let s = unsafe { &*slab };
        debug_assert!(st.cache.load(Ordering::Relaxed) == 0);
        let class = SizeClass::from_index(s.class.load(Ordering::Relaxed) as usize);
        let g = class.geometry();
        // The purge pass leaves the cache's word alone: the new one is
        // published with the pass kept out.
        page_purge::begin_load(s);
        if s.used_count() >= g.capacity {
            page_purge::end_load(s, page_purge::NO_CACHE_WORD, 0);
            return false;
        }
        let words = s.words.get() as usize;
        // From the current word on, wrapping round once.
        let mut w = (st.word.get() as usize).min(words - 1);
        for _ in 0..words {
            let word: &AtomicU64 = s.allocated_word(w);
            let held = s.quarantine_word(w).load(Ordering::Relaxed);
            let free = !word.load(Ordering::Relaxed) & !held & valid_mask(g.capacity, w);
            if free != 0 {
                // One population count for the whole load (see
                // `util::bits`): trimming the load recounts, rarely.
                let (free, count) = {
                    let limit = g.cache_slots;
                    let count = count_ones(free);
                    if count > limit {
                        (lowest_bits(free, limit), limit)
                    } else {
                        (free, count)
                    }
                };
                let (free, count) = self.count_toward_sample(class, free, count);
                let (free, count) = self.count_toward_profile(class, free, count);
                if ignored::ignoring() {
                    let first = s.start() + w * 64 * g.block_size as usize;
                    ignored::handing_out_slots(s.start(), first, g.block_size as usize, free);
                }
                // The cached slots count as used until they come back.
                s.used.set(s.used.get() + count);
                st.cache.store(free, Ordering::Relaxed);
                st.allocs.add(count as u64);
                st.cache_word.set(word);
                st.word.set(w as u32);
                st.cache_base
                    .set(s.start() + w * 64 * g.block_size as usize);
                page_purge::end_load(s, w as u32, free);
                return true;
            }
            w += 1;
            if w == words {
                w = 0;
            }
        }
        page_purge::end_load(s, page_purge::NO_CACHE_WORD, 0);
        false
    }
}

/// The lowest `n` set bits of `bits`. A binary search for the `n`-th set
/// bit, seven population counts (a loop over the bits took five
/// instructions a bit: 160 for the 32 slots a 512-byte class caches); with
/// the POPCNT instruction where the CPU has it (asked once for the whole
/// search, see `util::bits`).
pub(super) fn lowest_bits(bits: u64, n: u32) -> u64 {
    #[cfg(all(target_arch = "x86_64", not(target_feature = "popcnt")))]
    {
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU has POPCNT, which is all the function needs.
            return unsafe { lowest_bits_popcnt(bits, n) };
        }
    }
    lowest_bits_search(bits, n)
}

#[cfg(all(target_arch = "x86_64", not(target_feature = "popcnt")))]
#[target_feature(enable = "popcnt")]
unsafe fn lowest_bits_popcnt(bits: u64, n: u32) -> u64 {
    lowest_bits_search(bits, n)
}

#[inline(always)]
fn lowest_bits_search(bits: u64, n: u32) -> u64 {
    if n == 0 {
        return 0;
    }
    if bits.count_ones() <= n {
        return bits;
    }
    // The `n`-th set bit lies at `pos` or above, with `left` set bits still
    // to pass; each step halves the window it may lie in.
    let (mut pos, mut left) = (0u32, n);
    for step in [32u32, 16, 8, 4, 2, 1] {
        let below = ((bits >> pos) & ((1u64 << step) - 1)).count_ones();
        if below < left {
            left -= below;
            pos += step;
        }
    }
    // `pos` is that bit's index, at most 63 (`bits` has more than `n`).
    bits & (u64::MAX >> (63 - pos))
}

/// Bits of bitmap word `w` that name real slots of a slab with `capacity`.
#[inline(always)]
fn valid_mask(capacity: u32, w: usize) -> u64 {
    let remaining = capacity as usize - w * 64;
    if remaining >= 64 {
        u64::MAX
    } else {
        (1u64 << remaining) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::lowest_bits;

    /// Against the obvious loop, for words of every density and every `n`.
    #[test]
    fn lowest_bits_keeps_exactly_the_n_lowest() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for round in 0..4000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let bits = match round % 4 {
                0 => x,
                1 => x & (x >> 1),
                2 => x | (x << 3),
                _ => !0u64 << (x % 64),
            };
            for n in 0..=65 {
                let (mut rest, mut want) = (bits, 0u64);
                for _ in 0..n {
                    if rest == 0 {
                        break;
                    }
                    let low = rest & rest.wrapping_neg();
                    want |= low;
                    rest ^= low;
                }
                assert_eq!(lowest_bits(bits, n), want, "{bits:#x} n {n}");
            }
        }
    }
}
