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
use crate::slab::size_class::{class_of, SizeClass};
use crate::track::ignored;

/// Classes whose blocks sampling serves (up to a page): `0..=LAST`.
fn last_sampled_class() -> usize {
    class_of(MAX_SAMPLED).index()
}

impl Heap {
    /// This heap takes no samples (an arena's).
    pub(crate) fn never_sample(&self) {
        self.sample_countdown.set(sampling::NEVER);
        self.sample_due.set(0);
    }

    /// Draws the allocations until the next sample; a draw of 1 (the very
    /// next allocation, whatever its class: every one at `sample=1`) makes
    /// the next allocation of every class due.
    pub(super) fn draw_sample_countdown(&self) {
        let countdown = sampling::next_countdown(&self.sample_state);
        self.sample_countdown.set(countdown);
        if countdown == 1 {
            let all = u64::MAX >> (63 - last_sampled_class());
            self.sample_due.set(all);
        }
    }

    /// The slots of a cache load of `class` (`free`, a bitmap word's
    /// slots) count toward the next sample. When the sample falls among
    /// them, only the slots before it are loaded (at least the one the
    /// refill hands out) and the class is marked due: its next refill, the
    /// allocation that the countdown reached, serves a sampled block.
    #[inline]
    pub(super) fn count_toward_sample(
        &self,
        class: SizeClass,
        free: u64,
        loaded: u32,
    ) -> (u64, u32) {
        if class.block_size() > MAX_SAMPLED {
            return (free, loaded);
        }
        let left = self.sample_countdown.get();
        if left > loaded as u64 {
            self.sample_countdown.set(left - loaded as u64);
            return (free, loaded);
        }
        self.sample_due
            .set(self.sample_due.get() | 1 << class.index());
        // The next sample counts from here.
        self.sample_countdown
            .set(sampling::next_countdown(&self.sample_state));
        let kept = lowest_bits(free, left.saturating_sub(1).max(1) as u32);
        (kept, kept.count_ones())
    }

    /// Whether this heap's next allocation of `class` is to be sampled:
    /// asked when the class's cache is dry, before the refill.
    #[inline(always)]
    pub(crate) fn sample_due(&self, class: SizeClass) -> bool {
        let i = class.index();
        i < 64 && self.sample_due.get() >> i & 1 != 0
    }

    /// Serves the allocation of `class` that is due (`sample_due`), of
    /// `size` bytes at `align`, from the guarded pool. `None` when the pool
    /// cannot serve it (the sample is skipped) or when this thread is
    /// already taking a stack (the unwinder itself allocating; the sample
    /// waits for the next refill). The caller holds a guard.
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
        if sampling::rate() != 1 {
            // At `sample=1` the class stays due.
            self.sample_due
                .set(self.sample_due.get() & !(1 << class.index()));
        }
        let p = guarded::alloc(size, align, class.index(), guard::thread_id(), true, 0);
        end_capture();
        if p.is_null() {
            return None;
        }
        if ignored::ignoring() {
            ignored::handing_out(p as usize);
        }
        self.class_state(class.index()).allocs.add(1);
        let delta = (size as u64).wrapping_sub(class.block_size() as u64);
        self.sampled_bytes_delta.add(delta);
        self.add_live_bytes(delta);
        if !signal::fault_handler_installed() {
            guard::defer_fault_handler();
        }
        Some(p)
    }

    /// Frees a live sampled block (validated by the caller), counting it as
    /// freed by this heap in its class. False, nothing changed, when
    /// another thread freed it meanwhile.
    pub(crate) fn free_sampled(&self, slot: &'static Slot) -> bool {
        // Read first: once freed, the slot may serve another thread's block.
        let (class, size) = (slot.class(), slot.size());
        let stack = begin_capture();
        let freed = guarded::free(slot, guard::thread_id(), stack, 0);
        if stack {
            end_capture();
        }
        if freed {
            self.frees[class].add(1);
            let block_size = SizeClass::from_index(class).block_size() as u64;
            let delta = block_size.wrapping_sub(size as u64);
            self.sampled_bytes_delta.add(delta);
            self.live_bytes.add(delta);
        }
        freed
    }
}
