//! Heap statistics, merged from the per-thread counters when read.
//!
//! Counts (allocations, frees, blocks and bytes in use) are exact when read
//! from a quiet program. Peaks are sampled: a thread brings its byte total
//! and its per-class peaks up to date each time it refills a size class's
//! cache (at most 64 blocks apart) and at every large block, the
//! process-wide peaks are sampled whenever a heap takes a new slab or a
//! large block, and the value now counts too. So a short spike can be
//! missed by up to one cache refill per thread and class. Bytes are usable
//! sizes (the size class, or whole pages for large blocks, or the size
//! requested for a sampled block), not requested sizes; a class's own
//! bytes are its blocks times its block size.

use core::sync::atomic::Ordering;

use crate::guarded::{self, zero};
use crate::heap::counters::{PEAK_BYTES, PEAK_LIVE};
use crate::heap::guard::AllocatorGuard;
use crate::heap::pool::{for_each_heap, heaps_created};
use crate::pages::PAGES;
use crate::slab::size_class::{class_block_sizes, NUM_CLASSES};

/// Statistics of one size class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// The size of every block of the class.
    pub block_size: usize,
    /// Blocks of the class allocated so far.
    pub allocations: u64,
    /// Blocks of the class freed so far.
    pub frees: u64,
    /// Blocks of the class allocated and not freed.
    pub blocks_in_use: u64,
    /// `blocks_in_use` times `block_size`.
    pub bytes_in_use: u64,
    /// The most blocks of the class in use at once (sampled, see the
    /// module docs).
    pub peak_blocks_in_use: u64,
    /// `peak_blocks_in_use` times `block_size`.
    pub peak_bytes_in_use: u64,
}

/// Statistics of the whole allocator. A plain value: reading it allocates
/// nothing.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    /// Blocks allocated, of all sizes.
    pub allocations: u64,
    /// Blocks freed, of all sizes.
    pub frees: u64,
    /// Usable bytes of the blocks allocated and not freed.
    pub bytes_in_use: u64,
    /// The highest `bytes_in_use` seen (sampled with several threads, see
    /// the module docs).
    pub peak_bytes_in_use: u64,
    /// Blocks served by whole pages (above the largest size class, or with a
    /// large alignment).
    pub large_allocations: u64,
    /// Large blocks freed.
    pub large_frees: u64,
    /// Each size class, smallest first (`class_block_sizes` gives their
    /// block sizes).
    pub classes: [ClassStats; NUM_CLASSES],
    /// Heaps created so far (one per thread that allocated, reused after the
    /// thread ends).
    pub heaps: usize,
    /// Bytes mapped for blocks, readable and writable (the address space a
    /// huge block keeps reserved to grow into is not counted: it holds no
    /// memory and no commit charge).
    pub mapped_bytes: usize,
    /// Bytes in free pages not yet given back to the kernel.
    pub dirty_free_bytes: usize,
    /// Bytes mapped for metadata (descriptors, page tables, heaps).
    pub metadata_bytes: usize,
    /// Blocks served from the guarded pool so far (`sample=N`): counted in
    /// their size classes above too, like any block.
    pub sampled_allocations: u64,
}

/// Reads the statistics.
pub fn stats() -> Stats {
    let _guard = AllocatorGuard::enter();
    let sizes = class_block_sizes();
    let mut s = Stats {
        allocations: 0,
        frees: 0,
        bytes_in_use: 0,
        peak_bytes_in_use: 0,
        large_allocations: 0,
        large_frees: 0,
        classes: [ClassStats::default(); NUM_CLASSES],
        heaps: 0,
        mapped_bytes: 0,
        dirty_free_bytes: 0,
        metadata_bytes: 0,
        sampled_allocations: guarded::sampled_count(),
    };
    let mut large_bytes = 0u64;
    let mut single_peak_bytes = 0u64;
    let mut single_peak_live = [0u64; NUM_CLASSES];
    for_each_heap(|h| {
        for (i, c) in s.classes.iter_mut().enumerate() {
            c.allocations += h.class(i).allocations();
            c.frees += h.frees[i].get();
            single_peak_live[i] = h.peak_live[i].get();
        }
        s.large_allocations += h.large_allocs.get();
        s.large_frees += h.large_frees.get();
        large_bytes = large_bytes
            .wrapping_add(h.large_live_bytes.get())
            .wrapping_add(h.sampled_bytes_delta.get());
        single_peak_bytes = h.peak_live_bytes.get();
    });
    s.heaps = heaps_created();
    {
        let pages = PAGES.lock();
        s.mapped_bytes = pages.mapped;
        s.dirty_free_bytes = pages.dirty_bytes;
        s.metadata_bytes = pages.meta.mapped;
    }
    // Zero-byte blocks (`guarded::zero`) count in the smallest class, as
    // the `fast` level's `malloc(0)` slots do.
    let (zero_allocated, zero_freed) = zero::counts();
    s.classes[0].allocations += zero_allocated;
    s.classes[0].frees += zero_freed;
    let single_heap = s.heaps <= 1;
    let mut live_bytes = large_bytes;
    s.allocations = s.large_allocations;
    s.frees = s.large_frees;
    for (i, c) in s.classes.iter_mut().enumerate() {
        c.block_size = sizes[i];
        c.blocks_in_use = c.allocations.saturating_sub(c.frees);
        c.bytes_in_use = c.blocks_in_use * sizes[i] as u64;
        let mut peak = PEAK_LIVE[i].load(Ordering::Relaxed).max(c.blocks_in_use);
        if single_heap {
            peak = peak.max(single_peak_live[i]);
        }
        c.peak_blocks_in_use = peak;
        c.peak_bytes_in_use = peak * sizes[i] as u64;
        s.allocations += c.allocations;
        s.frees += c.frees;
        live_bytes = live_bytes.wrapping_add(c.bytes_in_use);
    }
    s.bytes_in_use = (live_bytes as i64).max(0) as u64;
    let mut peak = PEAK_BYTES.load(Ordering::Relaxed).max(s.bytes_in_use);
    if single_heap {
        peak = peak.max(single_peak_bytes);
    }
    s.peak_bytes_in_use = peak;
    s
}
