//! The free path of a small block, from the hottest case down:
//!
//! - `free_fast`: the owner frees an allocated slot at the `fast` level;
//! - `free_allocated_slot`: any allocated slot, the trailer checked at the
//!   `default` level, then a local or a remote free;
//! - `free_slot_local`: the owner's free, once the slot is known allocated
//!   (`free_slot_remote`, in `remote`, is another thread's);
//! - `free_slot_checked`: the full path, which turns a slot that is not
//!   allocated into its error (`check::lookup::slot_error`).
//!
//! Every path asks `slab::slot` whether the slot is allocated, and changes
//! nothing when it is not.

use core::sync::atomic::Ordering;

use super::Heap;
use crate::check::error::CmaError;
use crate::check::level::{self, MODE_TRAILERS};
use crate::check::lookup::{slot_error, Found};
use crate::check::trailer;
use crate::meta::span::{SlabList, Span};
use crate::slab::slot::{slot_at, slot_state, Slot, SlotState};

/// What `Heap::free_fast` did.
pub(crate) enum FastFree {
    /// The slot is free.
    Done,
    /// A valid slot (its index) that needs the rest of the free path;
    /// nothing changed.
    Other(usize),
    /// Not an allocated slot of this slab; nothing changed.
    Invalid,
}

impl Heap {
    /// The allocated slot of `slab` that starts at `addr`, with the value of
    /// its bitmap word; `None` for anything else (an interior pointer, a
    /// free slot, one freed by another thread already).
    #[inline(always)]
    fn allocated_slot(slab: &Span, addr: usize) -> Option<(Slot, u64)> {
        let slot = slot_at(slab, addr)?;
        match slot_state(slab, slot.index) {
            SlotState::Allocated { word } => Some((slot, word)),
            _ => None,
        }
    }

    /// The hottest free: the owner frees an allocated slot at the `fast`
    /// level. It makes no call that needs anything afterwards, so the caller
    /// stays free of register saves. `Other(index)` (nothing changed) sends a
    /// valid slot that needs more (a trailer check, a remote free) to
    /// `free_allocated_slot`; `Invalid` (nothing changed) sends the pointer
    /// to the full path to be reported.
    #[inline(always)]
    pub(crate) fn free_fast(&self, slab: &Span, addr: usize) -> FastFree {
        let Some((slot, word)) = Self::allocated_slot(slab, addr) else {
            return FastFree::Invalid;
        };
        if level::mode() & MODE_TRAILERS != 0 || !self.owns(slab) {
            return FastFree::Other(slot.index);
        }
        self.free_slot_local(slab, slot.index, slot.block_size, word);
        FastFree::Done
    }

    /// Frees `addr` when it is an allocated slot of `slab` (see
    /// `free_allocated_slot`). Returns false, having changed nothing, for
    /// anything else, which the caller then takes to the full path to be
    /// reported.
    #[inline]
    pub(crate) fn try_free_fast(&self, slab: &Span, addr: usize) -> bool {
        match Self::allocated_slot(slab, addr) {
            Some((slot, _)) => self.free_allocated_slot(slab, addr, slot.index),
            None => false,
        }
    }

    /// Frees slot `index` (at `addr`), found allocated: the trailer check at
    /// the `default` level, then a local or remote free. False, nothing
    /// changed, when the trailer is damaged or another thread freed the slot
    /// meanwhile.
    #[inline(always)]
    pub(crate) fn free_allocated_slot(&self, slab: &Span, addr: usize, index: usize) -> bool {
        let bs = slab.block_size.load(Ordering::Relaxed) as usize;
        if level::mode() & MODE_TRAILERS != 0 && !verify_and_junk(addr, bs) {
            return false;
        }
        if !self.owns(slab) {
            return self.free_slot_remote(slab, index, bs);
        }
        let word = slab.allocated_word(index / 64).load(Ordering::Relaxed);
        self.free_slot_local(slab, index, bs, word);
        true
    }

    /// The owner frees allocated slot `index` of its own slab (`word` is the
    /// value of its bitmap word): into `freed` when it is in the cached word,
    /// else the slab's count goes down and the slab may move lists.
    #[inline(always)]
    fn free_slot_local(&self, slab: &Span, index: usize, bs: usize, word: u64) {
        let (w, bit) = (index / 64, 1u64 << (index % 64));
        slab.allocated_word(w).store(word & !bit, Ordering::Relaxed);
        let st = self.state_of(slab);
        self.count_free(st, bs);
        let is_current = core::ptr::eq(st.slab.get(), slab);
        // Whether the slot goes back into the cache decides nothing else, and
        // with random frees it is a coin toss: arithmetic, not a branch.
        let cached = is_current & (st.word.get() as usize == w);
        st.freed
            .set(st.freed.get() | (bit & (cached as u64).wrapping_neg()));
        // Cached slots count as used; only a slot that leaves for the bitmap
        // lowers the count.
        let used = slab.used.get() - u32::from(!cached);
        slab.used.set(used);
        if !is_current && (used == 0 || slab.list.get() == SlabList::Full) {
            self.slab_gained_space(slab as *const Span as *mut Span);
        }
    }

    /// The block size of `addr` when it is an allocated slot of `slab` (and
    /// not freed by another thread); `None` otherwise. Changes nothing.
    #[inline(always)]
    pub(crate) fn live_slot_size(&self, slab: &Span, addr: usize) -> Option<usize> {
        Self::allocated_slot(slab, addr).map(|(slot, _)| slot.block_size)
    }

    /// Frees slot `index` of `slab`, whoever owns it, or returns why it is
    /// not allocated (nothing changed then).
    pub(crate) fn free_slot_checked(&self, slab: &Span, index: usize) -> Result<(), CmaError> {
        let word = match slot_state(slab, index) {
            SlotState::Allocated { word } => word,
            state => return Err(slot_error(slab, index, state)),
        };
        let bs = slab.block_size.load(Ordering::Relaxed) as usize;
        if self.owns(slab) {
            self.free_slot_local(slab, index, bs, word);
        } else if !self.free_slot_remote(slab, index, bs) {
            return Err(slot_error(slab, index, SlotState::FreedByOtherThread));
        }
        Ok(())
    }

    /// Frees a block that `check::lookup::find_block` found, whatever its
    /// kind, or returns why it is not allocated.
    pub(crate) fn free_block(&self, found: Found) -> Result<(), CmaError> {
        match found {
            Found::Slot { span, index } => self.free_slot_checked(span, index),
            Found::Large(span) => {
                self.free_large(span as *const Span as *mut Span);
                Ok(())
            }
        }
    }
}

/// The `default` level's part of the free fast path, out of line: checks
/// the trailer of an allocated slot and junks the slot. False (the slot
/// untouched) when the trailer was overwritten, for the full path to report.
#[inline(never)]
fn verify_and_junk(addr: usize, bs: usize) -> bool {
    // SAFETY: the caller found the slot allocated, so it was armed when
    // handed out.
    if unsafe { trailer::verify(addr as *const u8, bs) }.is_none() {
        return false;
    }
    // SAFETY: the slot is being freed; nobody may use it any more.
    unsafe { trailer::junk(addr as *mut u8, bs) };
    true
}
