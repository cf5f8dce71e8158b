//! Counters: each heap counts its own allocations and frees with plain
//! stores (one writer), and anyone sums them on read. The fast paths count
//! one block each and nothing else; bytes and peaks are brought up to date
//! when a heap refills a class's cache (at most 64 blocks apart) or takes a
//! large block, and when the statistics are read. A global atomic per
//! allocation would not scale, and a per-heap byte total with a peak check
//! on every allocation cost the fast path a fifth of its instructions.

use core::sync::atomic::{AtomicU64, Ordering};

use super::pool::for_each_heap;
use super::{ClassState, Heap};
use crate::slab::size_class::{class_block_sizes, SizeClass, NUM_CLASSES};

/// A counter written by one thread and read by any.
#[derive(Default)]
#[repr(transparent)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }
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
    /// Blocks of `class` live through this heap now: its allocations minus
    /// the frees its thread made (negative when other threads free more of
    /// its blocks than it frees of theirs).
    #[inline(always)]
    fn class_live(&self, class: usize) -> i64 {
        let st = self.class_state(class);
        st.allocations().wrapping_sub(self.frees[class].get()) as i64
    }

    /// Brings the class's share of the live bytes and its peak up to date:
    /// at a refill, where the fast path's plain counts are turned into
    /// bytes.
    pub(super) fn sample_class(&self, st: &ClassState, class: SizeClass) {
        // The cache is dry at a refill: the count needs no population count
        // of it (`ClassState::allocations`).
        debug_assert!(st.cache_is_empty());
        let live = st
            .allocs
            .get()
            .wrapping_sub(self.frees[class.index()].get()) as i64;
        let peak = &self.peak_live[class.index()];
        if live > peak.get() as i64 {
            peak.set(live as u64);
        }
        let delta = live.wrapping_sub(st.accounted_live.get());
        st.accounted_live.set(live);
        self.add_live_bytes(delta.wrapping_mul(st.block_size.get() as i64) as u64);
    }

    /// Adds `bytes` (two's complement for a decrease) to the live bytes and
    /// raises this heap's peak.
    #[inline]
    pub(super) fn add_live_bytes(&self, bytes: u64) {
        let live_bytes = self.live_bytes.get().wrapping_add(bytes);
        self.live_bytes.set(live_bytes);
        if live_bytes as i64 > self.peak_live_bytes.get() as i64 {
            self.peak_live_bytes.set(live_bytes);
        }
    }
}

/// Usable bytes in use now, exactly (in a quiet program): every heap's
/// blocks per class times the class's size, plus its large blocks. Sums
/// `NUM_CLASSES` counters per heap: for reads of the statistics and for
/// the total limit, not for a fast path.
pub(crate) fn bytes_in_use() -> u64 {
    let sizes = class_block_sizes();
    let mut bytes = 0u64;
    for_each_heap(|h| {
        bytes = bytes
            .wrapping_add(h.large_live_bytes.get())
            .wrapping_add(h.sampled_bytes_delta.get());
        for (class, &bs) in sizes.iter().enumerate() {
            bytes = bytes.wrapping_add((h.class_live(class) as u64).wrapping_mul(bs as u64));
        }
    });
    (bytes as i64).max(0) as u64
}

/// Samples the process-wide peaks: total live bytes, and live blocks of
/// `class`. Runs when a heap takes a new slab or a large block.
pub(super) fn sample_peaks(class: SizeClass) {
    let mut bytes = 0u64;
    let mut live = 0u64;
    for_each_heap(|h| {
        bytes = bytes.wrapping_add(h.live_bytes.get());
        live = live.wrapping_add(h.class_live(class.index()) as u64);
    });
    raise_peak(&PEAK_BYTES, bytes);
    raise_peak(&PEAK_LIVE[class.index()], live);
}

/// Raises `peak` to `sample` when the sample is positive (as a signed sum of
/// per-heap counters) and higher. A read first: most samples set no new
/// peak, and `fetch_max` would take the line exclusive (a locked
/// compare-and-swap) every time, on every core that takes a slab.
pub(crate) fn raise_peak(peak: &AtomicU64, sample: u64) {
    if (sample as i64) > 0 && sample > peak.load(Ordering::Relaxed) {
        peak.fetch_max(sample, Ordering::Relaxed);
    }
}
