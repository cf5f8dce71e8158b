//! Pointer validation: is this the start of one of our live blocks? Answers
//! for any address in O(1) from the segment map and the out-of-line span
//! tables, without reading the memory the pointer points to, and before any
//! metadata changes. Whether a slot is allocated is `slab::slot`'s answer;
//! turning a slot that is not into an error happens once, in `slot_error`.

use core::sync::atomic::Ordering;

use super::error::{BlockKind, CmaError, Requested};
use super::kind::AllocKind;
use super::level;
use super::trailer;
use crate::guarded::zero::{self, ZeroLookup};
use crate::guarded::{self, Damage, Lookup, Slot};
use crate::meta::segment_map::{self, SAMPLED_POOL, TAG_HUGE, ZERO_POOL};
use crate::meta::span::{Segment, Span, SpanKind};
use crate::slab::slot::{slot_at, slot_state, SlotState};

/// A block start found by `find_block`.
pub(crate) enum Found<'a> {
    /// Slot `index` of a slab (allocated or not: the bitmap decides).
    Slot { span: &'a Span, index: usize },
    /// A live large or huge block.
    Large(&'a Span),
    /// A live sampled block (see `guarded`).
    Sampled(&'static Slot),
    /// Live zero-byte block `index` (see `guarded::zero`).
    Zero(usize),
}

/// The descriptor that the page table names for `addr`, on the fast path:
/// never null, but it may be stale (the page's slab was retired) or
/// `NO_SPAN`, so the caller validates the address against it. `None` when
/// the segment map names no segment (not ours, or a huge block), for
/// `find_block` to answer.
#[inline(always)]
pub(crate) fn span_fast(addr: usize) -> Option<&'static Span> {
    let seg = segment_map::segment_fast(addr)?;
    // SAFETY: positive map entries point at live segment tables.
    let seg = unsafe { &*(seg as *const Segment) };
    let span = seg.span_at_fast(seg.page_index(addr));
    // SAFETY: page-table entries point at descriptors in the metadata
    // region, which stays mapped, or at `NO_SPAN`: never null.
    unsafe {
        core::hint::assert_unchecked(!span.is_null());
        Some(&*span)
    }
}

/// The slab that the page table names for `addr`: like `span_fast`, but
/// only a slab (which the caller still validates the address against).
#[inline(always)]
pub(crate) fn slab_of(addr: usize) -> Option<&'static Span> {
    span_fast(addr).filter(|s| s.kind() == SpanKind::Slab)
}

/// Slot `index` of `slab`: its address, its size, and its kind for a report.
#[cold]
fn slot_block(slab: &Span, index: usize) -> (usize, usize, BlockKind) {
    let block_size = slab.block_size.load(Ordering::Relaxed) as usize;
    let addr = slab.start() + index * block_size;
    (addr, block_size, class_block(slab, addr))
}

/// The kind, for a report, of the slot at `addr` of `slab`, with what is
/// known of its requested size (allocated at a checked level: what its
/// trailer says).
#[cold]
pub(crate) fn class_block(slab: &Span, addr: usize) -> BlockKind {
    let block_size = slab.block_size.load(Ordering::Relaxed) as usize;
    let index = (addr - slab.start()) / block_size;
    let requested = if !matches!(slot_state(slab, index), SlotState::Allocated { .. }) {
        Requested::NotKept
    } else if level::checked() {
        // SAFETY: an allocated slot of a checked level, armed when it was
        // handed out.
        unsafe { trailer::recorded_size(addr as *const u8, block_size) }
    } else {
        Requested::NotRecorded
    };
    BlockKind::Class {
        class: slab.class.load(Ordering::Relaxed) as usize,
        block_size,
        requested,
    }
}

/// The error for freeing (or using) slot `index` of `slab` in `state`, which
/// is not `Allocated`: the one place the slot states become errors.
#[cold]
pub(crate) fn slot_error(slab: &Span, index: usize, state: SlotState) -> CmaError {
    let (addr, _, block) = slot_block(slab, index);
    match state {
        SlotState::FreedByOtherThread => CmaError::DoubleFreeByOtherThread { addr, block },
        SlotState::Free | SlotState::Allocated { .. } => CmaError::DoubleFree { addr, block },
    }
}

#[cold]
fn interior(slab: &Span, addr: usize) -> CmaError {
    let offset = addr - slab.start();
    // A descriptor that is no slab (block size 0) holds no slot either.
    let index = offset.checked_div(slab.slot_size()).unwrap_or(usize::MAX);
    if index >= slab.capacity.load(Ordering::Relaxed) as usize {
        return CmaError::NotOurs { addr };
    }
    let (block_start, _, block) = slot_block(slab, index);
    CmaError::InteriorPointer {
        addr,
        block_start,
        block,
    }
}

/// Finds the block that starts at `addr`, or says why there is none.
pub(crate) fn find_block(addr: usize) -> Result<Found<'static>, CmaError> {
    let entry = segment_map::lookup(addr);
    if entry == 0 {
        return Err(CmaError::NotOurs { addr });
    }
    if entry == SAMPLED_POOL {
        return find_sampled(addr);
    }
    if entry == ZERO_POOL {
        return match zero::lookup(addr) {
            ZeroLookup::Live(index) => Ok(Found::Zero(index)),
            ZeroLookup::Free(_) => Err(CmaError::DoubleFree {
                addr,
                block: BlockKind::ZeroByte,
            }),
            ZeroLookup::Between => Err(CmaError::NotOurs { addr }),
        };
    }
    if entry & TAG_HUGE != 0 {
        // SAFETY: tagged entries point at huge-block descriptors, which stay
        // live while the map points at them.
        let s = unsafe { &*((entry & !TAG_HUGE) as *const Span) };
        let block = large_block(s);
        return match s.kind() {
            SpanKind::Huge if addr == s.start() => Ok(Found::Large(s)),
            SpanKind::Huge => Err(CmaError::InteriorPointer {
                addr,
                block_start: s.start(),
                block,
            }),
            _ if addr == s.start() => Err(CmaError::DoubleFree { addr, block }),
            _ => Err(CmaError::DoubleFree {
                addr,
                block: BlockKind::FreedPages,
            }),
        };
    }
    // SAFETY: untagged map entries point at live segment tables.
    let seg = unsafe { &*(entry as *const Segment) };
    let span = seg.span_at(seg.page_index(addr));
    if span.is_null() {
        return Err(CmaError::NotOurs { addr });
    }
    // SAFETY: as in `slab_of`.
    let s = unsafe { &*span };
    let freed = CmaError::DoubleFree {
        addr,
        block: BlockKind::FreedPages,
    };
    if !s.contains(addr) {
        return Err(freed);
    }
    match s.kind() {
        SpanKind::Slab => match slot_at(s, addr) {
            Some(index) => Ok(Found::Slot { span: s, index }),
            None => Err(interior(s, addr)),
        },
        SpanKind::Large if addr == s.start() => Ok(Found::Large(s)),
        SpanKind::Large => Err(CmaError::InteriorPointer {
            addr,
            block_start: s.start(),
            block: large_block(s),
        }),
        _ => Err(freed),
    }
}

/// The sampled block that starts at `addr`, or why there is none.
#[cold]
fn find_sampled(addr: usize) -> Result<Found<'static>, CmaError> {
    let sampled = |s: &Slot| BlockKind::Sampled { size: s.size() };
    match guarded::lookup(addr) {
        Lookup::Live(s) => Ok(Found::Sampled(s)),
        Lookup::Freed(s) => Err(CmaError::DoubleFree {
            addr,
            block: sampled(s),
        }),
        Lookup::Inside(s) => Err(CmaError::InteriorPointer {
            addr,
            block_start: s.start(),
            block: sampled(s),
        }),
        Lookup::Nothing => Err(CmaError::NotOurs { addr }),
    }
}

/// Usable size of a found block, or the error if it is not allocated (or,
/// at the `default` level, its trailer was overwritten; or the patterns
/// around a sampled block were). A sampled block's usable size is the size
/// requested: its slack is checked.
pub(crate) fn live_size(found: &Found) -> Result<usize, CmaError> {
    match *found {
        Found::Slot { span, index } => {
            let state = slot_state(span, index);
            if !matches!(state, SlotState::Allocated { .. }) {
                return Err(slot_error(span, index, state));
            }
            let block_size = span.slot_size();
            let addr = span.start() + index * block_size;
            if level::checked() {
                // SAFETY: the slot is allocated, so it was armed when handed out.
                return unsafe { trailer::verify(addr as *const u8, block_size) }.ok_or_else(
                    || CmaError::BufferOverflow {
                        addr,
                        block: class_block(span, addr),
                    },
                );
            }
            Ok(block_size)
        }
        Found::Large(span) => {
            if level::checked() {
                // SAFETY: a live large or huge block, armed when it was
                // handed out (the level has not changed since).
                return unsafe { trailer::verify(span.start() as *const u8, span.bytes()) }
                    .ok_or_else(|| CmaError::BufferOverflow {
                        addr: span.start(),
                        block: large_block(span),
                    });
            }
            Ok(span.bytes())
        }
        Found::Sampled(s) => {
            let (addr, block) = (s.start(), BlockKind::Sampled { size: s.size() });
            match s.damage() {
                None => Ok(s.size()),
                Some(Damage::After) => Err(CmaError::BufferOverflow { addr, block }),
                Some(Damage::Before) => Err(CmaError::BufferUnderflow { addr, block }),
            }
        }
        Found::Zero(_) => Ok(0),
    }
}

/// A large or huge block's kind for a report, with what is known of its
/// requested size (live at a checked level: what its trailer says).
#[cold]
pub(crate) fn large_block(span: &Span) -> BlockKind {
    let bytes = span.bytes();
    let requested = if !matches!(span.kind(), SpanKind::Large | SpanKind::Huge) {
        Requested::NotKept
    } else if level::checked() {
        // SAFETY: a live large or huge block of a checked level, armed when
        // it was handed out; its pages are accessible while it lives.
        unsafe { trailer::recorded_size(span.start() as *const u8, bytes) }
    } else {
        Requested::NotRecorded
    };
    // A guarded large block has a mapping of its own, as a huge one, and
    // is a large block to the program.
    if matches!(span.kind(), SpanKind::Huge | SpanKind::HugeFree) && !span.guarded.get() {
        BlockKind::Huge { bytes, requested }
    } else {
        BlockKind::Large { bytes, requested }
    }
}

/// Whether a found block belongs to `kind`'s family (`check::kind`); the
/// mismatch otherwise.
pub(crate) fn check_kind(found: &Found, kind: AllocKind) -> Result<(), CmaError> {
    let (allocated, addr, block) = match *found {
        Found::Slot { span, index } => {
            let (addr, _, block) = slot_block(span, index);
            (super::kind::slot_kind(span, index), addr, block)
        }
        Found::Large(span) => (
            AllocKind::from_bits(span.alloc_kind.get()),
            span.start(),
            large_block(span),
        ),
        Found::Sampled(s) => (
            AllocKind::from_bits(s.kind()),
            s.start(),
            BlockKind::Sampled { size: s.size() },
        ),
        Found::Zero(index) => (zero::kind(index), zero::address(index), BlockKind::ZeroByte),
    };
    if allocated == kind {
        Ok(())
    } else {
        Err(CmaError::KindMismatch {
            addr,
            allocated,
            released: kind,
            block,
        })
    }
}
