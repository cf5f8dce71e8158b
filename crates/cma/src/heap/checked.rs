//! The small-block paths of the checked (`default`) level:
//!
//! - allocation hands out a slot that must still read as zero (it was wiped
//!   when freed: anything else is a write after free, reported naming the
//!   slot), then arms its trailer (`check::trailer`);
//! - free checks the trailer (a heap buffer overflow is reported), wipes the
//!   whole slot to zero (no data leaks from a freed block, and `calloc` of a
//!   reused slot needs no clearing), and quarantines it (`quarantine`) when
//!   this heap owns the slab, or records a remote free (the owner
//!   quarantines the slot when it collects it).
//!
//! Slabs of a checked level carry a tagged owner token (`Heap::owner_token`),
//! so the `fast` level's free fast path never takes them.

use core::sync::atomic::Ordering;

use super::quarantine::{is_zero, write_after_free};
use super::Heap;
use crate::check::error::CmaError;
use crate::check::lookup::slot_error;
use crate::check::report;
use crate::check::trailer;
use crate::meta::span::Span;
use crate::slab::size_class::SizeClass;
use crate::slab::slot::{slot_state, SlotState};

impl Heap {
    /// Allocates `size` bytes from `class` (whose blocks hold `size +
    /// TRAILER`), checked: the slot must read as zero, and gets its trailer.
    /// Null when memory runs out. The caller holds a guard.
    pub(crate) fn alloc_checked(&self, class: SizeClass, size: usize) -> *mut u8 {
        let p = self.alloc_small(class);
        if p.is_null() {
            return p;
        }
        let bs = class.block_size();
        // SAFETY: a fresh slot of `bs` bytes, 8-byte aligned.
        if !unsafe { is_zero(p, bs) } {
            self.report_dirty_slot(p);
        }
        // SAFETY: a fresh slot of `bs` bytes; size + TRAILER <= bs.
        unsafe { trailer::arm(p, bs, size) };
        p
    }

    #[cold]
    #[inline(never)]
    fn report_dirty_slot(&self, p: *mut u8) -> ! {
        let found = crate::check::lookup::find_block(p as usize);
        match found {
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

    /// Frees slot `index` of `slab` at a checked level, whoever owns it:
    /// checks its state and trailer, wipes it, and quarantines it (or records
    /// the remote free). Nothing changes when it returns an error.
    pub(crate) fn free_checked(&self, slab: &Span, index: usize) -> Result<(), CmaError> {
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
                block: crate::check::error::BlockKind::Class {
                    class: slab.class.load(Ordering::Relaxed) as usize,
                    block_size: bs,
                },
            });
        }
        if !self.owns(slab) {
            // The wipe first: once recorded, the owner may reuse the slot.
            // SAFETY: the caller gives the block up; `bs` bytes.
            unsafe { core::ptr::write_bytes(addr as *mut u8, 0, bs) };
            if self.free_slot_remote(slab, index) {
                return Ok(());
            }
            return Err(slot_error(slab, index, SlotState::FreedByOtherThread));
        }
        // SAFETY: as above.
        unsafe { core::ptr::write_bytes(addr as *mut u8, 0, bs) };
        let (w, bit) = (index / 64, 1u64 << (index % 64));
        slab.allocated_word(w).store(word & !bit, Ordering::Relaxed);
        self.frees[slab.class.load(Ordering::Relaxed) as usize].add(1);
        self.quarantine_slot(slab, index, bs);
        Ok(())
    }
}
