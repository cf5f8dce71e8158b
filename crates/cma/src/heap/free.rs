//! The free path of a small block, from the hottest case down:
//!
//! - `free_local_fast`: the owner frees an allocated slot of its own slab
//!   at the `fast` level; anything else is left untouched for the rest (it
//!   needs no heap: the owner word and the slab name everything it writes);
//! - `free_allocated_slot`: any allocated slot, local or remote;
//! - `free_slot_local`: the owner's free, once the slot is known allocated
//!   (`free_slot_remote`, in `remote`, is another thread's);
//! - `free_slot_checked`: the full path, which turns a slot that is not
//!   allocated into its error (`check::lookup::slot_error`).
//!
//! Every path asks whether the slot is allocated, and changes nothing when
//! it is not.

use core::sync::atomic::Ordering;

use super::counters::Counter;
use super::guard::{fast_heap, fast_token, AllocatorGuard};
use super::Heap;
use crate::check::error::{BlockKind, CmaError};
use crate::check::kind::AllocKind;
use crate::check::level;
use crate::check::lookup::{slot_error, Found};
use crate::meta::span::Span;
use crate::slab::slot::{slot_at, slot_state, SlotState};

/// The hottest free: the calling thread frees an allocated slot of one of
/// its own heap's slabs, at the `fast` level, with no remote free pending on
/// the slab. Returns false, having changed nothing, for anything else:
/// another heap's slab or no slab (`span` may be stale or `NO_SPAN`), a
/// pointer that is not an allocated slot, a slab whose owner word is tagged
/// for the checked path or flagged by a remote free (`Heap::owner_token`),
/// or a thread without a heap (its token, 0, is only ever found with
/// capacity 0).
#[inline(always)]
pub(crate) fn free_local_fast(span: &Span, addr: usize) -> bool {
    if span.owner.load(Ordering::Relaxed) != fast_token() {
        return false;
    }
    // SAFETY: the owner word holds this thread's token: the slab is ours.
    let Some(index) = (unsafe { span.owned_slot_of(addr) }) else {
        return false;
    };
    let word = span.allocated_word(index / 64);
    let bits = word.load(Ordering::Relaxed);
    // Clear first, compare after: one bit-reset instruction both tests that
    // the slot is allocated and frees it.
    let cleared = bits & !(1u64 << (index % 64));
    if cleared == bits {
        return false;
    }
    word.store(cleared, Ordering::Relaxed);
    count_local_free(span);
    true
}

/// Counts a slot the owner just cleared from `slab`'s bitmap, and moves the
/// slab between lists when this free made it empty or it was full (both
/// show as `used` at or below zero, see `USED_FULL_BIT`).
#[inline(always)]
fn count_local_free(slab: &Span) {
    // SAFETY: a slab's `owner_frees` is its owner's counter for its class
    // (`Heap::new_slab`); heaps are never freed.
    unsafe { &*(slab.owner_frees.load(Ordering::Relaxed) as *const Counter) }.add(1);
    // The decrement last, so that its flags decide the branch.
    if slab.used.release_one() {
        slab_gained_space_guarded(slab);
    }
}

// `extern "C"`: cannot unwind, so a caller that is itself `extern "C"`
// (libcma's `free`) needs no landing pad and tail-calls it.
#[cold]
#[inline(never)]
extern "C" fn slab_gained_space_guarded(slab: &Span) {
    // Giving an empty slab back takes the page lock and may defer work.
    let _guard = AllocatorGuard::enter();
    // The owner's thread: the slab is its heap's.
    fast_heap().slab_gained_space(slab as *const Span as *mut Span);
}

impl Heap {
    /// The allocated slot of `slab` that starts at `addr`, with the value of
    /// its bitmap word; `None` for anything else (an interior pointer, a
    /// free slot, one freed by another thread already).
    #[inline(always)]
    fn allocated_slot(slab: &Span, addr: usize) -> Option<(usize, u64)> {
        let index = slot_at(slab, addr)?;
        match slot_state(slab, index) {
            SlotState::Allocated { word } => Some((index, word)),
            _ => None,
        }
    }

    /// Frees `addr` when it is an allocated slot of `slab`, this heap's or
    /// another's. Returns false, having changed nothing, for anything else,
    /// which the caller then takes to the full path to be reported. No
    /// trailer check: for the `fast` level.
    #[inline]
    pub(crate) fn try_free_fast(&self, slab: &Span, addr: usize) -> bool {
        match Self::allocated_slot(slab, addr) {
            Some((index, word)) => self.free_allocated_slot(slab, index, word),
            None => false,
        }
    }

    /// Frees allocated slot `index` of `slab` (`word` is its bitmap word's
    /// value): a local or remote free. False, nothing changed, when another
    /// thread freed the slot meanwhile.
    #[inline]
    fn free_allocated_slot(&self, slab: &Span, index: usize, word: u64) -> bool {
        if !self.owns(slab) {
            return self.free_slot_remote(slab, index);
        }
        self.free_slot_local(slab, index, word);
        true
    }

    /// The owner frees allocated slot `index` of its own slab (`word` is the
    /// value of its bitmap word).
    #[inline(always)]
    fn free_slot_local(&self, slab: &Span, index: usize, word: u64) {
        let (w, bit) = (index / 64, 1u64 << (index % 64));
        slab.allocated_word(w).store(word & !bit, Ordering::Relaxed);
        let used = slab.used.get().wrapping_sub(1);
        slab.used.set(used);
        self.frees[slab.class.load(Ordering::Relaxed) as usize].add(1);
        if used as i32 <= 0 {
            self.slab_gained_space(slab as *const Span as *mut Span);
        }
    }

    /// The block size of `addr` when it is an allocated slot of `slab` (and
    /// not freed by another thread); `None` otherwise. Changes nothing.
    #[inline(always)]
    pub(crate) fn live_slot_size(&self, slab: &Span, addr: usize) -> Option<usize> {
        Self::allocated_slot(slab, addr).map(|_| slab.slot_size())
    }

    /// Frees slot `index` of `slab`, whoever owns it, or returns why it is
    /// not allocated (nothing changed then).
    pub(crate) fn free_slot_checked(&self, slab: &Span, index: usize) -> Result<(), CmaError> {
        let word = match slot_state(slab, index) {
            SlotState::Allocated { word } => word,
            state => return Err(slot_error(slab, index, state)),
        };
        if self.free_allocated_slot(slab, index, word) {
            Ok(())
        } else {
            Err(slot_error(slab, index, SlotState::FreedByOtherThread))
        }
    }

    /// Frees a block that `check::lookup::find_block` found, released by
    /// `kind`'s family (checked at the checked levels), or returns why it
    /// cannot.
    pub(crate) fn free_block(&self, found: Found, kind: AllocKind) -> Result<(), CmaError> {
        match found {
            Found::Slot { span, index } if level::checked() => self.free_checked(span, index, kind),
            Found::Slot { span, index } => self.free_slot_checked(span, index),
            Found::Large(span) => {
                if level::checked() {
                    crate::check::lookup::live_size(&found)?;
                    crate::check::lookup::check_kind(&found, kind)?;
                }
                if span.owner.load(Ordering::Relaxed) != 0 {
                    // An arena's block: it leaves the arena's list first.
                    return self.free_arena_large_elsewhere(span);
                }
                self.free_large(span as *const Span as *mut Span);
                Ok(())
            }
            Found::Sampled(slot) => {
                if level::checked() {
                    crate::check::lookup::check_kind(&found, kind)?;
                }
                if self.free_sampled(slot) {
                    Ok(())
                } else {
                    Err(CmaError::DoubleFree {
                        addr: slot.start(),
                        block: BlockKind::Sampled { size: slot.size() },
                    })
                }
            }
            Found::Zero(index) => {
                if level::checked() {
                    crate::check::lookup::check_kind(&found, kind)?;
                }
                if crate::guarded::zero::free(index) {
                    Ok(())
                } else {
                    Err(CmaError::DoubleFree {
                        addr: crate::guarded::zero::address(index),
                        block: BlockKind::ZeroByte,
                    })
                }
            }
        }
    }
}
