//! The small-block paths of the checked (`default`) level:
//!
//! - allocation hands out a slot that must still read as zero (it was wiped
//!   when freed: anything else is a write after free, reported naming the
//!   slot; the first `VERIFIED_BYTES` of a large slot are checked), then
//!   arms its trailer (`check::trailer`);
//! - free checks the trailer (a heap buffer overflow is reported), wipes the
//!   whole slot to zero (no data leaks from a freed block, and `calloc` of a
//!   reused slot needs no clearing), and quarantines it (`quarantine`) when
//!   this heap owns the slab, or records a remote free (the owner
//!   quarantines the slot when it collects it).
//!
//! Each check asks its switch (`check::switches`): `wipe` for the wipe and
//! the verification, `kind_check` for the kinds, `canary` in
//! `check::trailer`.
//!
//! Slabs of a checked level carry a tagged owner token (`Heap::owner_token`),
//! so the `fast` level's free fast path never takes them.

use core::sync::atomic::Ordering;

use core::ptr::NonNull;

use super::counters::Counter;
use super::guard::{fast_heap, fast_token};
use super::quarantine::write_after_free;
use super::{ClassState, Heap, CHECKED_OWNER};
use crate::check::error::CmaError;
use crate::check::kind::{self as kinds, AllocKind};
use crate::check::lookup::{class_block, slot_error};
use crate::check::report;
use crate::check::switches::{self, CheckSwitch};
use crate::check::trailer;
use crate::meta::span::Span;
use crate::slab::size_class::SizeClass;
use crate::slab::slot::{slot_state, SlotState};
use crate::util::zero::{is_zero, wipe};

/// How much of a slot handed out again is checked to be still zero: all of
/// it up to this, its start beyond (where a stale pointer's writes land:
/// links, counts, a vtable pointer), so that large blocks do not pay for a
/// second pass over all their bytes.
const VERIFIED_BYTES: usize = 1024;

impl ClassState {
    /// The checked level's allocation fast path: a cached slot, verified
    /// still zero, armed for `size` bytes. `None` when the cache is empty.
    /// Calls nothing (a dirty slot goes to the report path, which ends the
    /// process).
    #[inline(always)]
    pub(crate) fn pop_checked(&self, size: usize) -> Option<NonNull<u8>> {
        let p = self.pop()?;
        let bs = self.block_size.get();
        // SAFETY: a fresh slot of `bs` bytes, 8-byte aligned.
        if switches::on(CheckSwitch::Wipe)
            && !unsafe { is_zero(p.as_ptr(), bs.min(VERIFIED_BYTES)) }
        {
            report_dirty_slot(p.as_ptr());
        }
        // SAFETY: a fresh slot of `bs` bytes; the class was chosen for
        // size + TRAILER.
        unsafe { trailer::arm(p.as_ptr(), bs, size) };
        Some(p)
    }
}

/// The checked level's free fast path: the calling thread frees an
/// allocated slot of its own slab with an intact trailer; the slot is wiped,
/// and quarantined. Returns false, having changed nothing, for anything else
/// (the full path decides and reports).
#[inline]
pub(crate) fn free_checked_local_fast(span: &Span, addr: usize, kind: AllocKind) -> bool {
    if span.owner.load(Ordering::Relaxed) != fast_token() | CHECKED_OWNER {
        return false;
    }
    // SAFETY: the owner word holds this thread's token: the slab is ours.
    let Some(index) = (unsafe { span.owned_slot_of(addr) }) else {
        return false;
    };
    let word = span.allocated_word(index / 64);
    let bits = word.load(Ordering::Relaxed);
    let cleared = bits & !(1u64 << (index % 64));
    let bs = span.slot_size();
    // SAFETY: an allocated slot (its bit is set), armed when handed out.
    if cleared == bits
        || unsafe { trailer::verify(addr as *const u8, bs) }.is_none()
        || (switches::on(CheckSwitch::KindCheck) && !kinds::slot_kind_is(span, index, kind))
    {
        return false;
    }
    if switches::on(CheckSwitch::KindCheck) {
        kinds::clear_slot_kind(span, index, kind);
    }
    if switches::on(CheckSwitch::Wipe) {
        // SAFETY: the caller gives the block up; `bs` bytes.
        unsafe { wipe(addr as *mut u8, bs) };
    }
    word.store(cleared, Ordering::Relaxed);
    // SAFETY: a slab's `owner_frees` is its owner's counter for its class.
    unsafe { &*(span.owner_frees.load(Ordering::Relaxed) as *const Counter) }.add(1);
    fast_heap().quarantine_slot(span, index, bs);
    true
}

impl Heap {
    /// Allocates `size` bytes at `align` (at most 16) from `class` (whose
    /// blocks hold `size + TRAILER`), checked: the slot must read as zero,
    /// and gets its trailer; or, at a refill, when this heap's sample is
    /// due, a sampled block (`sample`: it reads as zero and needs no
    /// trailer). Null when memory runs out. The caller holds a guard.
    pub(crate) fn alloc_checked(&self, class: SizeClass, size: usize, align: usize) -> *mut u8 {
        if let Some(p) = self.class_state(class.index()).pop_checked(size) {
            return p.as_ptr();
        }
        if self.sample_due(class) {
            if let Some(p) = self.take_sample(class, size, align) {
                return p;
            }
        }
        if self.profile_due(class) {
            if let Some(p) = self.take_profiled(class, size, align) {
                return p;
            }
        }
        let p = self.alloc_small_refill(class);
        if p.is_null() {
            return p;
        }
        let bs = class.block_size();
        // SAFETY: a fresh slot of `bs` bytes, 8-byte aligned.
        if switches::on(CheckSwitch::Wipe) && !unsafe { is_zero(p, bs.min(VERIFIED_BYTES)) } {
            report_dirty_slot(p);
        }
        // SAFETY: a fresh slot of `bs` bytes; size + TRAILER <= bs.
        unsafe { trailer::arm(p, bs, size) };
        p
    }

    /// Frees slot `index` of `slab` at a checked level, whoever owns it:
    /// checks its state and trailer, wipes it, and quarantines it (or records
    /// the remote free). Nothing changes when it returns an error.
    pub(crate) fn free_checked(
        &self,
        slab: &Span,
        index: usize,
        kind: AllocKind,
    ) -> Result<(), CmaError> {
        let word = match slot_state(slab, index) {
            SlotState::Allocated { word } => word,
            state => return Err(slot_error(slab, index, state)),
        };
        let bs = slab.slot_size();
        let addr = slab.start() + index * bs;
        // SAFETY: an allocated slot, armed when it was handed out.
        if unsafe { trailer::verify(addr as *const u8, bs) }.is_none() {
            return Err(CmaError::BufferOverflow {
                addr,
                block: class_block(slab, addr),
            });
        }
        let allocated = kinds::slot_kind(slab, index);
        if allocated != kind {
            return Err(CmaError::KindMismatch {
                addr,
                allocated,
                released: kind,
                block: class_block(slab, addr),
            });
        }
        if !self.owns(slab) {
            // The kind stays marked: the owner clears it when it collects.
            // The wipe first: once recorded, the owner may reuse the slot.
            if switches::on(CheckSwitch::Wipe) {
                // SAFETY: the caller gives the block up; `bs` bytes.
                unsafe { wipe(addr as *mut u8, bs) };
            }
            if self.free_slot_remote(slab, index) {
                return Ok(());
            }
            return Err(slot_error(slab, index, SlotState::FreedByOtherThread));
        }
        if switches::on(CheckSwitch::Wipe) {
            // SAFETY: as above.
            unsafe { wipe(addr as *mut u8, bs) };
        }
        kinds::clear_slot_kind(slab, index, kind);
        let (w, bit) = (index / 64, 1u64 << (index % 64));
        slab.allocated_word(w).store(word & !bit, Ordering::Relaxed);
        self.frees[slab.class.load(Ordering::Relaxed) as usize].add(1);
        self.quarantine_slot(slab, index, bs);
        Ok(())
    }
}

/// A slot about to be handed out does not read as zero: written after it
/// was freed.
#[cold]
#[inline(never)]
fn report_dirty_slot(p: *mut u8) -> ! {
    match crate::check::lookup::find_block(p as usize) {
        Ok(crate::check::lookup::Found::Slot { span, .. }) => {
            report::fatal("malloc", write_after_free(span, p as usize))
        }
        _ => report::fatal(
            "malloc",
            CmaError::WriteAfterFree {
                addr: p as usize,
                block: crate::check::error::BlockKind::FreedPages,
            },
        ),
    }
}
