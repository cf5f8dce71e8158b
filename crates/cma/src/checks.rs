//! Pointer validation: is this the start of one of our live blocks? Answers
//! for any address in O(1) from the segment map and the out-of-line span
//! tables, without reading the memory the pointer points to, and before any
//! metadata changes. Whether a slot is allocated is checked by the free path
//! itself (`heap`), against the slab's bitmap.

use core::sync::atomic::Ordering;

use crate::canary;
use crate::error::{BlockKind, CmaError};
use crate::segment_map::{self, TAG_HUGE};
use crate::size_class::{slot_containing, slot_of_offset, SizeClass};
use crate::span::{Segment, Span, SpanKind};

/// A block start found by `find_block`.
pub(crate) enum Found<'a> {
    /// Slot `index` of a slab (allocated or not: the bitmap decides).
    Slot { span: &'a Span, index: u32 },
    /// A live large or huge block.
    Large(&'a Span),
}

/// The slab descriptor that the page table names for `addr`, on the fast
/// path. It may be stale (the page's slab was retired): `Heap::try_free_fast`
/// validates the address against it. `None` sends the caller to `find_block`
/// for the full answer. Only for a thread that holds a heap (see
/// `segment_map::lookup_with_heap`).
#[inline(always)]
pub(crate) fn slab_of(addr: usize) -> Option<&'static Span> {
    let entry = segment_map::lookup_with_heap(addr);
    if entry == 0 || entry & TAG_HUGE != 0 {
        return None;
    }
    // SAFETY: untagged map entries point at live segment tables.
    let seg = unsafe { &*(entry as *const Segment) };
    let span = seg.span_at(seg.page_index(addr));
    if span.is_null() {
        return None;
    }
    // SAFETY: page-table entries point at descriptors in the metadata region,
    // which stays mapped; `contains` rejects a stale one.
    let s = unsafe { &*span };
    if s.kind() == SpanKind::Slab {
        Some(s)
    } else {
        None
    }
}

/// Slot index of `addr` in `slab`, or the interior-pointer error.
#[inline(always)]
pub(crate) fn slot_index(slab: &Span, addr: usize) -> Result<u32, CmaError> {
    let class = SizeClass::from_index(slab.class.load(Ordering::Relaxed) as usize);
    let g = class.geometry();
    let offset = addr.wrapping_sub(slab.start());
    match slot_of_offset(g, offset) {
        Some(index) => Ok(index),
        None => Err(interior(slab, class, addr)),
    }
}

#[cold]
fn interior(slab: &Span, class: SizeClass, addr: usize) -> CmaError {
    let g = class.geometry();
    let index = slot_containing(g, addr - slab.start());
    if index >= g.capacity {
        return CmaError::NotOurs { addr };
    }
    CmaError::InteriorPointer {
        addr,
        block_start: slab.start() + index as usize * g.block_size as usize,
        block: BlockKind::Class {
            class: class.index(),
            block_size: g.block_size as usize,
        },
    }
}

/// Finds the block that starts at `addr`, or says why there is none.
pub(crate) fn find_block(addr: usize) -> Result<Found<'static>, CmaError> {
    let entry = segment_map::lookup(addr);
    if entry == 0 {
        return Err(CmaError::NotOurs { addr });
    }
    if entry & TAG_HUGE != 0 {
        // SAFETY: tagged entries point at huge-block descriptors, which stay
        // live while the map points at them.
        let s = unsafe { &*((entry & !TAG_HUGE) as *const Span) };
        let bytes = s.bytes();
        return match s.kind() {
            SpanKind::Huge if addr == s.start() => Ok(Found::Large(s)),
            SpanKind::Huge => Err(CmaError::InteriorPointer {
                addr,
                block_start: s.start(),
                block: BlockKind::Huge { bytes },
            }),
            _ if addr == s.start() => Err(CmaError::DoubleFree {
                addr,
                block: BlockKind::Huge { bytes },
            }),
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
        SpanKind::Slab => {
            let index = slot_index(s, addr)?;
            Ok(Found::Slot { span: s, index })
        }
        SpanKind::Large if addr == s.start() => Ok(Found::Large(s)),
        SpanKind::Large => Err(CmaError::InteriorPointer {
            addr,
            block_start: s.start(),
            block: BlockKind::Large { bytes: s.bytes() },
        }),
        _ => Err(freed),
    }
}

/// Usable size of a found block, or the error if it is not allocated.
pub(crate) fn live_size(found: &Found) -> Result<usize, CmaError> {
    match *found {
        Found::Slot { span, index } => {
            let class = span.class.load(Ordering::Relaxed) as usize;
            let block_size = SizeClass::from_index(class).block_size();
            let w = (index / 64) as usize;
            let bit = 1u64 << (index % 64);
            let addr = span.start() + index as usize * block_size;
            let block = BlockKind::Class { class, block_size };
            if span.allocated_word(w).load(Ordering::Acquire) & bit == 0 {
                return Err(CmaError::DoubleFree { addr, block });
            }
            if crate::remote_free::is_pending(span.remote_word(w), &span.remote_summary, bit) {
                return Err(CmaError::DoubleFreeByOtherThread { addr, block });
            }
            if canary::enabled() {
                // SAFETY: the slot is allocated, so it was armed when handed out.
                return unsafe { canary::verify(addr as *const u8, block_size) }
                    .ok_or(CmaError::BufferOverflow { addr, block });
            }
            Ok(block_size)
        }
        Found::Large(span) => Ok(span.bytes()),
    }
}
