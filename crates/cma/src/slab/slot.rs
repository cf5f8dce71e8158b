//! What state a slot of a slab is in: the one answer that the free path, the
//! pointer checks and realloc share.
//!
//! A slot is allocated while its bit in the slab's allocated bitmap is set.
//! Its owner frees it by clearing the bit; another thread frees it by setting
//! its bit in the remote bitmap instead (`remote_free`), and the owner clears
//! both when it collects. So an allocated bit with a pending remote bit is a
//! slot that another thread has freed already.

use core::sync::atomic::Ordering;

use super::remote_free;
use super::size_class::slot_of_offset;
use crate::meta::span::Span;

/// The state of one slot; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotState {
    /// Allocated; `word` is the value of its allocated-bitmap word.
    Allocated { word: u64 },
    /// Not allocated: freed, or never handed out.
    Free,
    /// Freed by another thread; the owner has not collected the free yet.
    FreedByOtherThread,
}

/// The index of the slot of `slab` that starts at `addr`, or `None` when no
/// slot starts there (an interior pointer, or an address outside the slab).
#[inline(always)]
pub(crate) fn slot_at(slab: &Span, addr: usize) -> Option<usize> {
    slot_of_offset(
        addr.wrapping_sub(slab.start()),
        slab.inverse.load(Ordering::Relaxed),
        slab.shift.load(Ordering::Relaxed) as u32,
        slab.capacity.load(Ordering::Relaxed) as usize,
    )
}

/// The state of slot `index` of `slab`. Any thread may ask; only the owner's
/// answer stays true after the call (another thread may free the slot
/// meanwhile, which its `remote_free::mark_freed` then detects).
#[inline(always)]
pub(crate) fn slot_state(slab: &Span, index: usize) -> SlotState {
    let (w, bit) = (index / 64, 1u64 << (index % 64));
    let word = slab.allocated_word(w).load(Ordering::Relaxed);
    if word & bit == 0 {
        return SlotState::Free;
    }
    // The summary first, on its own: the remote word's address (which needs
    // the bitmap length) is worked out only when frees are pending.
    if slab.remote_summary.load(Ordering::Acquire) != 0
        && remote_free::is_pending(slab.remote_word(w), &slab.remote_summary, bit)
    {
        return SlotState::FreedByOtherThread;
    }
    SlotState::Allocated { word }
}
