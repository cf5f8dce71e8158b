//! Huge blocks resized without copying a byte:
//!
//! - inside the readable part of its mapping (`reserved`), a resize changes
//!   the usable size only;
//! - a growth past it takes the address space reserved right after it
//!   (`headroom`) when there is enough: the mapping grows over it in place,
//!   charged then;
//! - otherwise the block's pages move to a new, larger mapping with
//!   `mremap` (page tables move, pages stay where they are in memory: a
//!   block grown from A to B never has A's and B's pages resident at once),
//!   and the new mapping comes with headroom as large again, so that a block
//!   that keeps growing moves about once per doubling and grows in place in
//!   between (a mapping the kernel holds in several pieces is not moved:
//!   see `move_to_new_space`);
//! - a shrink gives the whole granules past the new size back to the kernel,
//!   with the headroom, and decommits the pages past it in the last one.
//!
//! A huge block's mapping (readable part and headroom) starts on a
//! segment-map granule and covers whole granules, all of them naming its
//! descriptor. Descriptor fields change under the page allocator's lock;
//! the system calls that move or unmap many pages run outside it. Before
//! the pages move, the map forgets the old range, so that a mapping the
//! kernel places there once it is free (a segment, say) is never taken for
//! this block; until the map names the new range, only the realloc in
//! progress knows it. (A `fork` from another thread in that window leaves
//! the child without the block: its pointer there reads as not ours.)
//!
//! What the kernel refuses (a growth past the commit limit, no address
//! space) leaves the block as it was, at its address, and the caller copies
//! instead, or fails.

use core::sync::atomic::Ordering;

use super::huge::move_to_new_space;
use super::{Pages, LARGE_MAX, PAGES};
use crate::meta::segment_map::{self, SEGMENT_SIZE, TAG_HUGE};
use crate::meta::span::{Span, SpanKind};
use crate::os::memory;

/// `bytes` rounded up to whole segment-map granules, or `None` on overflow.
fn granules(bytes: usize) -> Option<usize> {
    bytes
        .checked_add(SEGMENT_SIZE - 1)
        .map(|b| b & !(SEGMENT_SIZE - 1))
}

/// Resizes the huge block `span` to `bytes` (whole pages, above
/// `LARGE_MAX`) without copying it, at alignment `align` if it moves.
/// Returns its start, a new one when its pages moved, or `None` when the
/// kernel refused (the block is then unchanged).
///
/// # Safety
/// `span` is a live huge block of ours, and the caller's thread owns it
/// (no other call resizes or frees it meanwhile).
pub(crate) unsafe fn resize_huge(span: *mut Span, bytes: usize, align: usize) -> Option<usize> {
    debug_assert!(bytes > LARGE_MAX && bytes % crate::os::PAGE_SIZE == 0);
    // SAFETY: guaranteed by the caller.
    let s = unsafe { &*span };
    debug_assert!(s.kind() == SpanKind::Huge);
    let new_reserved = granules(bytes)?;
    let old_bytes = s.bytes();
    if bytes < old_bytes {
        // SAFETY: guaranteed by the caller.
        unsafe { shrink_huge(span, bytes, new_reserved) };
        return Some(s.start());
    }
    let mut pages = PAGES.lock();
    let (start, reserved) = (s.start(), s.reserved.get());
    if bytes <= reserved {
        s.bytes.store(bytes, Ordering::Relaxed);
        return Some(start);
    }
    // When the headroom is too small, or the growth into it fails (which
    // gives it up, see `grow_into_headroom`), the block moves, or stays as
    // it is if the kernel refuses that too.
    if new_reserved <= reserved + s.headroom.get()
        && grow_into_headroom(&mut pages, span, new_reserved)
    {
        s.bytes.store(bytes, Ordering::Relaxed);
        return Some(start);
    }
    let headroom = s.headroom.get();
    // The pages move. The old range stops naming the block before they
    // leave it (see the module docs).
    segment_map::set_range(start, reserved + headroom, 0);
    drop(pages);

    // Headroom as large again as the block, address space only.
    let space = new_reserved.checked_mul(2).unwrap_or(new_reserved);
    let align = align.max(SEGMENT_SIZE);
    let (target, space) = move_to_new_space(start, reserved, new_reserved, space, align);
    if target == 0 {
        let _pages = PAGES.lock();
        segment_map::set_range(start, reserved + headroom, span as usize | TAG_HUGE);
        return None;
    }
    if headroom > 0 {
        // The old headroom is ours still: no map entry names it any more.
        // Should the kernel refuse, it stays reserved, costing address space
        // only (no access, no charge).
        memory::unmap((start + reserved) as *mut u8, headroom);
    }
    let mut pages = PAGES.lock();
    s.start.store(target, Ordering::Relaxed);
    s.bytes.store(bytes, Ordering::Relaxed);
    s.reserved.set(new_reserved);
    s.headroom.set(space - new_reserved);
    pages.mapped += new_reserved - reserved;
    segment_map::set_range(target, space, span as usize | TAG_HUGE);
    Some(target)
}

/// Grows the readable part of the huge block `span` to `new_reserved` over
/// the headroom right after it, in place, under the page allocator's lock
/// (`pages`). The mapping grows in place (`mremap` without a move),
/// which keeps it one piece, as a later move needs (making the room
/// accessible instead would leave the kernel two pieces it cannot join); so
/// the granules it grows over are given back to the kernel first, and taken
/// at once. Returns false when it could not: the block is as it was, and
/// when the granules were given back but the kernel refused the growth
/// (past the commit limit) or another thread's mapping took them in
/// between, its headroom is given up whole (the rest of it, cut off from
/// the block, goes back too).
fn grow_into_headroom(pages: &mut Pages, span: *mut Span, new_reserved: usize) -> bool {
    // SAFETY: the caller's live huge block.
    let s = unsafe { &*span };
    let (start, reserved, headroom) = (s.start(), s.reserved.get(), s.headroom.get());
    let (room, extra) = (start + reserved, new_reserved - reserved);
    segment_map::set_range(room, extra, 0);
    if !memory::unmap(room as *mut u8, extra) {
        // Nothing changed: the room is still reserved.
        segment_map::set_range(room, extra, span as usize | TAG_HUGE);
        return false;
    }
    if memory::grow_in_place(start, reserved, new_reserved) {
        s.reserved.set(new_reserved);
        s.headroom.set(headroom - extra);
        pages.mapped += extra;
        segment_map::set_range(room, extra, span as usize | TAG_HUGE);
        return true;
    }
    let rest = headroom - extra;
    if rest > 0 {
        segment_map::set_range(room + extra, rest, 0);
        // Should the kernel refuse, it stays reserved, costing address space
        // only (no access, no charge).
        memory::unmap((room + extra) as *mut u8, rest);
    }
    s.headroom.set(0);
    false
}

/// Shrinks the huge block `span` to `bytes`: the granules past
/// `new_reserved` (its readable part's new size) go back to the kernel with
/// the headroom, and the pages past `bytes` in what is left are decommitted.
///
/// # Safety
/// As for `resize_huge`, and `bytes` is below the block's size.
unsafe fn shrink_huge(span: *mut Span, bytes: usize, new_reserved: usize) {
    // SAFETY: guaranteed by the caller.
    let s = unsafe { &*span };
    let (start, old_bytes) = (s.start(), s.bytes());
    let (reserved, headroom) = {
        let mut pages = PAGES.lock();
        let (reserved, headroom) = (s.reserved.get(), s.headroom.get());
        s.bytes.store(bytes, Ordering::Relaxed);
        if new_reserved < reserved {
            segment_map::set_range(start + new_reserved, reserved + headroom - new_reserved, 0);
            s.reserved.set(new_reserved);
            s.headroom.set(0);
            pages.mapped -= reserved - new_reserved;
        }
        (reserved, headroom)
    };
    let mut readable = reserved;
    if new_reserved < reserved {
        let tail = reserved + headroom - new_reserved;
        if memory::unmap((start + new_reserved) as *mut u8, tail) {
            readable = new_reserved;
        } else {
            // The kernel kept the mapping whole (it would have had to cut it
            // past the limit on mappings): so does the block.
            let mut pages = PAGES.lock();
            s.reserved.set(reserved);
            s.headroom.set(headroom);
            pages.mapped += reserved - new_reserved;
            segment_map::set_range(start + new_reserved, tail, span as usize | TAG_HUGE);
        }
    }
    memory::decommit_tail(start + bytes, start + old_bytes.min(readable));
}
