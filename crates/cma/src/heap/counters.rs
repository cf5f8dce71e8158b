//! Counters: each heap counts its own allocations and frees with plain
//! stores (one writer), and anyone sums them on read. Peaks across heaps are
//! sampled when a heap takes a new slab or a large block: a global atomic
//! per allocation would not scale.

use core::sync::atomic::{AtomicU64, Ordering};

use super::pool::for_each_heap;
use super::{ClassState, Heap};
use crate::slab::size_class::{SizeClass, NUM_CLASSES};

/// A counter written by one thread and read by any.
#[derive(Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    #[inline(always)]
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    #[inline(always)]
    pub(crate) fn add(&self, n: u64) {
        self.0.store(self.get().wrapping_add(n), Ordering::Relaxed);
    }
    #[inline(always)]
    pub(crate) fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
}

/// Peaks sampled across all heaps (see `observe::stats`).
pub(crate) static PEAK_BYTES: AtomicU64 = AtomicU64::new(0);
pub(crate) static PEAK_LIVE: [AtomicU64; NUM_CLASSES] = [const { AtomicU64::new(0) }; NUM_CLASSES];

impl Heap {
    #[inline(always)]
    pub(super) fn count_alloc(&self, st: &ClassState, bytes: usize) {
        let allocs = st.allocs.get() + 1;
        st.allocs.set(allocs);
        // Signed comparisons: a heap whose blocks other threads free can see
        // more frees than allocations; its own peaks then stay put.
        let live = allocs.wrapping_sub(st.frees.get());
        if live as i64 > st.peak_live.get() as i64 {
            st.peak_live.set(live);
        }
        self.add_live_bytes(bytes as u64);
    }

    #[inline(always)]
    pub(super) fn count_free(&self, st: &ClassState, bytes: usize) {
        st.frees.add(1);
        self.live_bytes.add((bytes as u64).wrapping_neg());
    }

    /// Adds `bytes` (two's complement for a decrease) to the live bytes and
    /// raises this heap's peak.
    #[inline(always)]
    pub(super) fn add_live_bytes(&self, bytes: u64) {
        let live_bytes = self.live_bytes.get().wrapping_add(bytes);
        self.live_bytes.set(live_bytes);
        if live_bytes as i64 > self.peak_live_bytes.get() as i64 {
            self.peak_live_bytes.set(live_bytes);
        }
    }
}

/// Samples the process-wide peaks: total live bytes, and live blocks of
/// `class`. Runs when a heap takes a new slab or a large block.
pub(super) fn sample_peaks(class: SizeClass) {
    let mut bytes = 0u64;
    let mut live = 0u64;
    for_each_heap(|h| {
        bytes = bytes.wrapping_add(h.live_bytes.get());
        let st = h.class(class.index());
        live = live.wrapping_add(st.allocs.get().wrapping_sub(st.frees.get()));
    });
    raise_peak(&PEAK_BYTES, bytes);
    raise_peak(&PEAK_LIVE[class.index()], live);
}

/// Raises `peak` to `sample` when the sample is positive (as a signed sum of
/// per-heap counters) and higher. A read first: most samples set no new
/// peak, and `fetch_max` would take the line exclusive (a locked
/// compare-and-swap) every time, on every core that takes a slab.
fn raise_peak(peak: &AtomicU64, sample: u64) {
    if (sample as i64) > 0 && sample > peak.load(Ordering::Relaxed) {
        peak.fetch_max(sample, Ordering::Relaxed);
    }
}
