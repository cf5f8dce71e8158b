//! The heap check: every live block's trailer and every quarantined slot's
//! wipe, verified in one pass (`cma::check_heap`, and at exit at a checked
//! level). The free path finds an overflow when a block is freed and a write
//! after free when a slot is handed out again; this finds the ones a program
//! never gets to: an overflowed block that is never freed, a freed block
//! written and never reused.
//!
//! It walks the page allocator's spans under its lock (no descriptor is
//! retired and no page unmapped meanwhile) while the owners go on
//! allocating and freeing. A block caught between two states (a trailer
//! being armed, a slot being wiped for a free, a block being resized) can
//! read as damaged for a moment. A slot whose trailer reads as zero is one
//! (wiped for a free, or handed out and not armed yet: a zero trailer is
//! practically never a valid one, and skipping a valid one loses nothing)
//! and is passed over. Any other damaged-looking block is
//! a suspect: after the walk it is looked up again from scratch, a few
//! times over about a quarter of a second (the lock taken for each look
//! only, so that a thread in the middle of changing it can finish, even on
//! a loaded machine), and reported only if it is still in the same state
//! and still damaged every time. A huge block whose pages are moving (the
//! segment map no longer names it) is left out.
//!
//! So the check misses an overflow that wrote zeros over a whole trailer
//! (the free path still reports it when the block is freed).

use core::ops::ControlFlow;
use core::sync::atomic::{AtomicBool, Ordering};

use super::error::CmaError;
use super::level;
use super::lookup::{self, Found};
use super::switches::{self, CheckSwitch};
use super::trailer;
use crate::meta::segment_map::{self, TAG_HUGE};
use crate::meta::span::{Span, SpanKind};
use crate::os::clock;
use crate::pages::PAGES;
use crate::slab::slot::{slot_state, SlotState};
use crate::util::zero::is_zero;

/// What a heap check looked at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapCheck {
    /// Live blocks whose trailer was verified.
    pub live_blocks: u64,
    /// Quarantined (freed, held back) slots verified still zero.
    pub quarantined_slots: u64,
}

/// Whether the heap is checked at exit (`exit_check=`).
static EXIT_CHECK: AtomicBool = AtomicBool::new(true);

/// Sets `exit_check=` (`options::apply`).
pub(crate) fn set_exit_check(on: bool) {
    EXIT_CHECK.store(on, Ordering::Relaxed);
}

/// The exit check: at a checked level (unless `exit_check=0`), the whole
/// heap is checked once the program is done with it; damage is reported as
/// misuse is, and aborts. Called by the engine's destructor, before the
/// heap report is written.
pub(crate) fn check_heap_at_exit() {
    if !EXIT_CHECK.load(Ordering::Relaxed) || !level::checked() {
        return;
    }
    if let Err(error) = check_heap() {
        super::report::fatal("the exit heap check", error);
    }
}

/// How many times a suspect is looked at again: after 1, 2, 4, ... 128 ms.
const SECOND_LOOKS: u32 = 8;
/// Suspects one walk keeps; past that, the walk is done again once they
/// are cleared.
const MAX_SUSPECTS: usize = 64;
/// Walks at most (each after a full set of suspects that all cleared).
const MAX_WALKS: usize = 4;

/// A block that read as damaged during the walk.
#[derive(Clone, Copy)]
enum Suspect {
    /// A live block (slot, large or huge) whose trailer did not verify.
    Live(usize),
    /// A quarantined slot that did not read as zero.
    Quarantined(usize),
}

/// Verifies every live block's trailer and every quarantined slot; the
/// first damage found is the error. At the `fast` level there is nothing to
/// verify (no trailers, no quarantine).
pub(crate) fn check_heap() -> Result<HeapCheck, CmaError> {
    let mut seen = HeapCheck::default();
    if !level::checked() {
        return Ok(seen);
    }
    for _ in 0..MAX_WALKS {
        let mut suspects = [Suspect::Live(0); MAX_SUSPECTS];
        let (mut found, mut more) = (0, false);
        seen = HeapCheck::default();
        let _ = PAGES.lock().for_each_block_span(|span| {
            let mut suspect = |s| {
                if found < MAX_SUSPECTS {
                    suspects[found] = s;
                    found += 1;
                } else {
                    more = true;
                }
            };
            match span.kind() {
                SpanKind::Slab => walk_slab(span, &mut seen, &mut suspect),
                _ => {
                    seen.live_blocks += 1;
                    if page_block_damaged(span) {
                        suspect(Suspect::Live(span.start()));
                    }
                }
            }
            ControlFlow::<()>::Continue(())
        });
        for &suspect in &suspects[..found] {
            if let Some(error) = still_damaged(suspect) {
                return Err(error);
            }
        }
        if !more {
            return Ok(seen);
        }
    }
    Ok(seen)
}

fn walk_slab(slab: &Span, seen: &mut HeapCheck, suspect: &mut impl FnMut(Suspect)) {
    let bs = slab.slot_size();
    let capacity = slab.capacity.load(Ordering::Relaxed) as usize;
    for w in 0..slab.words.get() as usize {
        let allocated = slab.allocated_word(w).load(Ordering::Acquire);
        let quarantined = slab.quarantine_word(w).load(Ordering::Acquire) & !allocated;
        for (mut bits, live) in [(allocated, true), (quarantined, false)] {
            while bits != 0 {
                let index = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if index >= capacity {
                    break;
                }
                let addr = slab.start() + index * bs;
                if live {
                    seen.live_blocks += 1;
                    // SAFETY: a slot of a live slab (the page lock keeps it
                    // one): `bs` readable bytes. An allocated slot was armed
                    // when handed out; one changing state meanwhile reads as
                    // some bytes, which only the second looks judge.
                    if unsafe { slot_damaged(addr, bs) } {
                        suspect(Suspect::Live(addr));
                    }
                } else {
                    seen.quarantined_slots += 1;
                    // SAFETY: as above; `bs` is a multiple of 8, aligned.
                    // (With `wipe=0` a freed slot keeps its bytes.)
                    if switches::on(CheckSwitch::Wipe) && !unsafe { is_zero(addr as *const u8, bs) }
                    {
                        suspect(Suspect::Quarantined(addr));
                    }
                }
            }
        }
    }
}

/// Whether the slot of `bs` bytes at `addr` has a trailer that is neither
/// valid nor zero (see the module docs).
///
/// # Safety
/// `addr` is a slot of a live slab: `bs` readable bytes.
unsafe fn slot_damaged(addr: usize, bs: usize) -> bool {
    // SAFETY: the caller's contract; the trailer is the slot's last 8 bytes.
    unsafe {
        (addr as *const u8)
            .add(bs - 8)
            .cast::<u64>()
            .read_unaligned()
            != 0
            && trailer::verify(addr as *const u8, bs).is_none()
    }
}

/// Whether a large or huge block's trailer reads as damaged. The caller
/// holds the page lock.
fn page_block_damaged(span: &Span) -> bool {
    if span.kind() == SpanKind::Huge
        && segment_map::lookup(span.start()) != span as *const Span as usize | TAG_HUGE
    {
        // Its pages are moving (`pages::resize_huge`): left out.
        return false;
    }
    // SAFETY: a live large or huge block at its mapped address (the page
    // lock keeps it there), armed when handed out.
    unsafe { trailer::verify(span.start() as *const u8, span.bytes()) }.is_none()
}

/// Looks at a suspect again, from scratch, a few times: the error if it is
/// still the same block in the same state and still damaged every time.
fn still_damaged(suspect: Suspect) -> Option<CmaError> {
    let mut error = None;
    for look in 0..SECOND_LOOKS {
        clock::sleep_ms(1 << look);
        let _pages = PAGES.lock();
        // Cleared at any look: not damaged.
        error = Some(look_again(suspect)?);
    }
    error
}

/// One second look, under the page lock.
fn look_again(suspect: Suspect) -> Option<CmaError> {
    match suspect {
        Suspect::Live(addr) => match lookup::find_block(addr).ok()? {
            Found::Slot { span, index } => {
                let bs = span.slot_size();
                // SAFETY: a slot of a live slab (the page lock keeps it one).
                if !matches!(slot_state(span, index), SlotState::Allocated { .. })
                    || !unsafe { slot_damaged(addr, bs) }
                {
                    return None;
                }
                // `live_size` verifies the trailer and builds the report.
                lookup::live_size(&Found::Slot { span, index }).err()
            }
            // No longer the block the walk saw.
            Found::Sampled(_) | Found::Zero(_) => None,
            Found::Large(span) => {
                if !page_block_damaged(span) {
                    return None;
                }
                Some(CmaError::BufferOverflow {
                    addr,
                    block: lookup::large_block(span),
                })
            }
        },
        Suspect::Quarantined(addr) => {
            let Found::Slot { span, index } = lookup::find_block(addr).ok()? else {
                return None;
            };
            let (w, bit) = (index / 64, 1u64 << (index % 64));
            let held = span.quarantine_word(w).load(Ordering::Acquire) & bit != 0
                && span.allocated_word(w).load(Ordering::Acquire) & bit == 0;
            // SAFETY: a slot of a live slab (the page lock keeps it one).
            if !held || unsafe { is_zero(addr as *const u8, span.slot_size()) } {
                return None;
            }
            Some(crate::heap::quarantine::write_after_free(span, addr))
        }
    }
}
