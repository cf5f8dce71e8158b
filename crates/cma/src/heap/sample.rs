//! A heap's share of sampling (`guarded`): the countdown to its next
//! sampled block, kept at refills (`count_toward_sample`, see
//! `guarded::sampling` for why that is an honest sample), and the sampled
//! blocks themselves, served from the guarded pool and counted in their
//! size class like any block (`take_sample`, `free_sampled`).

use super::alloc::lowest_bits;
use super::guard::{self, begin_capture, end_capture};
use super::Heap;
use crate::guarded::{self, sampling, Slot, MAX_SAMPLED};
use crate::os::signal;
use crate::slab::size_class::SizeClass;

impl Heap {
    /// The slots of a cache load of `class` (`free`, a bitmap word's
    /// slots) count toward the next sample; when fewer allocations are left
    /// than they hold, only that many are loaded, so that the allocation
    /// after them is the one due (it refills, and `sample_due` says so).
    #[inline]
    pub(super) fn count_toward_sample(&self, class: SizeClass, free: u64) -> u64 {
        if class.block_size() > MAX_SAMPLED {
            return free;
        }
        let left = self.sample_countdown.get();
        let loaded = free.count_ones() as u64;
        if left > loaded {
            self.sample_countdown.set(left - loaded);
            return free;
        }
        if left <= 1 {
            // Due already (a refill that does not sample, or one whose
            // sample was refused): load as usual; the next refill samples.
            return free;
        }
        // The refill's own allocation and `left - 2` more from the cache;
        // the next one is due.
        self.sample_countdown.set(1);
        lowest_bits(free, left as u32 - 1)
    }

    /// Whether this heap's next small allocation is to be sampled: asked
    /// when a cache is dry, before the refill.
    #[inline(always)]
    pub(crate) fn sample_due(&self) -> bool {
        self.sample_countdown.get() <= 1
    }

    /// Serves the allocation that is due (`sample_due`) of `size` bytes at
    /// `align`, counted in `class`, from the guarded pool, and draws the
    /// next countdown. `None` when the pool cannot serve it (the sample is
    /// then skipped) or when this thread is already taking a stack (the
    /// unwinder itself allocating; the sample waits for the next refill).
    /// The caller holds a guard.
    #[cold]
    #[inline(never)]
    pub(crate) fn take_sample(
        &self,
        class: SizeClass,
        size: usize,
        align: usize,
    ) -> Option<*mut u8> {
        if !begin_capture() {
            return None;
        }
        self.sample_countdown
            .set(sampling::next_countdown(&self.sample_state));
        let p = guarded::alloc(size, align, class.index(), guard::thread_id(), true, 0);
        end_capture();
        if p.is_null() {
            return None;
        }
        self.class_state(class.index()).allocs.add(1);
        if !signal::fault_handler_installed() {
            guard::defer_fault_handler();
        }
        Some(p)
    }

    /// Frees a live sampled block (validated by the caller), counting it as
    /// freed by this heap in its class. False, nothing changed, when
    /// another thread freed it meanwhile.
    pub(crate) fn free_sampled(&self, slot: &'static Slot) -> bool {
        let stack = begin_capture();
        let freed = guarded::free(slot, guard::thread_id(), stack, 0);
        if stack {
            end_capture();
        }
        if freed {
            self.frees[slot.class()].add(1);
        }
        freed
    }
}
