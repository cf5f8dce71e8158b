//! The quarantine of a checked level: a freed slot is held back from reuse
//! for a while, so that a use after free touches a block nobody owns (and
//! still zero: the write is found when the slot leaves the quarantine or is
//! handed out again) instead of the next owner's data.
//!
//! Each heap keeps a ring of the slots it freed (and collected from other
//! threads), bounded by a count and by bytes (`quarantine` and
//! `quarantine_bytes` in `CMA_OPTIONS`; the levels set them). When either
//! bound is reached, one of the four oldest leaves, chosen at random so
//! that the reuse order cannot be relied on. A quarantined slot is free in
//! the slab's allocated bitmap (a second free of it is a double free) and set
//! in its quarantine bitmap (the cache never loads it), and still counts in
//! the slab's `used` until it leaves, so its slab stays alive.
//!
//! Owner thread only. The ring comes from the metadata allocator at the
//! first quarantined free.

use core::cell::Cell;
use core::sync::atomic::{AtomicUsize, Ordering};

use super::Heap;
use crate::check::error::{BlockKind, CmaError};
use crate::check::report;
use crate::meta::span::Span;
use crate::pages::PAGES;

/// One quarantined slot.
#[derive(Clone, Copy)]
struct Entry {
    slab: *mut Span,
    index: u32,
}

/// Slots a heap's quarantine holds at most, and the bytes.
static MAX_SLOTS: AtomicUsize = AtomicUsize::new(DEFAULT_SLOTS);
static MAX_BYTES: AtomicUsize = AtomicUsize::new(DEFAULT_BYTES);

/// The `default` level's bounds.
pub(crate) const DEFAULT_SLOTS: usize = 256;
pub(crate) const DEFAULT_BYTES: usize = 256 * 1024;
/// The largest ring (the metadata allocator's largest block).
pub(crate) const SLOTS_LIMIT: usize = 4096;

/// Sets the bounds (before the first allocation; `options::apply`). A count
/// of 0 turns the quarantine off.
pub(crate) fn set_bounds(slots: usize, bytes: usize) {
    MAX_SLOTS.store(slots.min(SLOTS_LIMIT), Ordering::Relaxed);
    MAX_BYTES.store(bytes, Ordering::Relaxed);
}

/// The bounds in force: (slots, bytes).
pub(crate) fn bounds() -> (usize, usize) {
    (
        MAX_SLOTS.load(Ordering::Relaxed),
        MAX_BYTES.load(Ordering::Relaxed),
    )
}

/// A heap's quarantine (owner thread only).
pub(crate) struct Quarantine {
    ring: Cell<*mut Entry>,
    capacity: Cell<u32>,
    /// Index of the oldest entry.
    head: Cell<u32>,
    len: Cell<u32>,
    bytes: Cell<usize>,
    rng: Cell<u64>,
}

impl Quarantine {
    pub(crate) const fn new() -> Quarantine {
        Quarantine {
            ring: Cell::new(core::ptr::null_mut()),
            capacity: Cell::new(0),
            head: Cell::new(0),
            len: Cell::new(0),
            bytes: Cell::new(0),
            rng: Cell::new(0x9E37_79B9_7F4A_7C15),
        }
    }
}

impl Heap {
    /// Holds slot `index` of `slab` (of `bs` bytes, wiped, free in the
    /// allocated bitmap) back from reuse: sets its quarantine bit, makes
    /// room if the quarantine is full, and queues it. Without a quarantine
    /// (bounds of 0, or no memory for the ring) the slot leaves at once.
    pub(crate) fn quarantine_slot(&self, slab: &Span, index: usize, bs: usize) {
        let (w, bit) = (index / 64, 1u64 << (index % 64));
        let word = slab.quarantine_word(w);
        word.store(word.load(Ordering::Relaxed) | bit, Ordering::Relaxed);
        let q = &self.quarantine;
        let (max_slots, max_bytes) = bounds();
        if q.ring.get().is_null() && !self.make_ring(max_slots) {
            self.leave_quarantine(slab, index);
            return;
        }
        while q.len.get() > 0
            && (q.len.get() as usize >= (q.capacity.get() as usize).min(max_slots)
                || q.bytes.get() + bs > max_bytes)
        {
            self.release_one();
        }
        if max_slots == 0 || bs > max_bytes {
            self.leave_quarantine(slab, index);
            return;
        }
        let tail = (q.head.get() + q.len.get()) % q.capacity.get();
        // SAFETY: `tail` is below the ring's capacity.
        unsafe {
            *q.ring.get().add(tail as usize) = Entry {
                slab: slab as *const Span as *mut Span,
                index: index as u32,
            }
        };
        q.len.set(q.len.get() + 1);
        q.bytes.set(q.bytes.get() + bs);
    }

    #[cold]
    fn make_ring(&self, slots: usize) -> bool {
        if slots == 0 {
            return false;
        }
        let slots = slots.min(SLOTS_LIMIT);
        let ring = PAGES
            .lock()
            .meta
            .alloc(slots * core::mem::size_of::<Entry>())
            .cast::<Entry>();
        if ring.is_null() {
            return false;
        }
        let q = &self.quarantine;
        q.ring.set(ring);
        q.capacity.set(slots as u32);
        q.head.set(0);
        q.len.set(0);
        q.bytes.set(0);
        q.rng.set(q.rng.get() ^ (self as *const Heap as u64));
        true
    }

    /// Lets one of the four oldest slots leave, at random.
    fn release_one(&self) {
        let q = &self.quarantine;
        let (ring, cap, head) = (q.ring.get(), q.capacity.get(), q.head.get());
        let mut x = q.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        q.rng.set(x);
        let pick = (head + (x % u64::from(q.len.get().min(4))) as u32) % cap;
        // SAFETY: `head` and `pick` are indices of live entries of the ring.
        let entry = unsafe {
            let chosen = *ring.add(pick as usize);
            *ring.add(pick as usize) = *ring.add(head as usize);
            chosen
        };
        q.head.set((head + 1) % cap);
        q.len.set(q.len.get() - 1);
        // SAFETY: quarantined slots keep their slab alive (`used`).
        let slab = unsafe { &*entry.slab };
        q.bytes.set(q.bytes.get() - slab.slot_size());
        self.check_still_wiped(slab, entry.index as usize);
        self.leave_quarantine(slab, entry.index as usize);
    }

    /// A slot leaves the quarantine: reusable, and no longer counted in its
    /// slab's `used` (the slab may become partial or empty).
    fn leave_quarantine(&self, slab: &Span, index: usize) {
        let (w, bit) = (index / 64, 1u64 << (index % 64));
        let word = slab.quarantine_word(w);
        word.store(word.load(Ordering::Relaxed) & !bit, Ordering::Relaxed);
        let used = slab.used.get().wrapping_sub(1);
        slab.used.set(used);
        if used as i32 <= 0 {
            self.slab_gained_space(slab as *const Span as *mut Span);
        }
    }

    /// A quarantined slot must still read as zero: anything else was written
    /// after it was freed.
    fn check_still_wiped(&self, slab: &Span, index: usize) {
        let bs = slab.slot_size();
        let addr = slab.start() + index * bs;
        // SAFETY: a slot of `bs` bytes in a live slab, quarantined: nobody
        // may write it.
        if !unsafe { is_zero(addr as *const u8, bs) } {
            report::fatal("free", write_after_free(slab, addr));
        }
    }

    /// Empties the quarantine (the thread is ending).
    pub(crate) fn flush_quarantine(&self) {
        while self.quarantine.len.get() > 0 {
            self.release_one();
        }
    }
}

/// The error for a slot written after it was freed.
#[cold]
pub(crate) fn write_after_free(slab: &Span, addr: usize) -> CmaError {
    CmaError::WriteAfterFree {
        addr,
        block: BlockKind::Class {
            class: slab.class.load(Ordering::Relaxed) as usize,
            block_size: slab.slot_size(),
        },
    }
}

/// Whether `bytes` bytes at `p` are all zero.
///
/// # Safety
/// `p` points to `bytes` readable bytes, `bytes` a multiple of 8, `p`
/// 8-byte aligned.
#[inline]
pub(crate) unsafe fn is_zero(p: *const u8, bytes: usize) -> bool {
    debug_assert!(bytes % 8 == 0 && p as usize % 8 == 0);
    // SAFETY: the caller's contract; whole aligned words.
    let words = unsafe { core::slice::from_raw_parts(p.cast::<u64>(), bytes / 8) };
    // Or-reduce in chunks: the compiler vectorises it, and a dirty chunk
    // ends the scan early.
    words
        .chunks(32)
        .all(|c| c.iter().fold(0, |acc, &w| acc | w) == 0)
}
