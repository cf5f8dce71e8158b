//! The quarantine of a checked level: a freed slot is held back from reuse
//! for a while, so that a use after free touches a block nobody owns (and
//! still zero: the write is found when the slot is handed out again,
//! `heap::checked`) instead of the next owner's data.
//!
//! A quarantined slot is free in its slab's allocated bitmap (a second free
//! of it is a double free) and set in its quarantine bitmap (the cache never
//! loads it), and still counts in the slab's `used` until it leaves, so the
//! slab stays alive.
//!
//! The quarantine holds slots by generations, so that a free costs a bit, a
//! count and a sum, and slots leave a whole slab at a time: each heap has a
//! current generation and an older one, each a list of the slabs that hold
//! its slots. Frees join the current generation; when it holds half the
//! bounds (`quarantine` bytes, `quarantine_slots` slots in `CMA_OPTIONS`,
//! the levels set them), within a random quarter either way, the older
//! generation leaves and the current one becomes the older. A slab holds
//! slots of one generation only: a free into a slab that holds slots of the
//! older one lets those leave first. So a slot waits between one and two
//! generations, about the bounds' worth of frees, in the order it came
//! (FIFO by generation), and when exactly it leaves is not predictable.
//!
//! Owner thread only.

use core::cell::Cell;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::guard::AllocatorGuard;
use super::Heap;
use crate::check::error::{BlockKind, CmaError, Requested};
use crate::check::level::CheckLevel;
use crate::meta::span::Span;

/// Slots and bytes a heap's quarantine holds at most.
static MAX_SLOTS: AtomicUsize = AtomicUsize::new(DEFAULT_SLOTS);
static MAX_BYTES: AtomicUsize = AtomicUsize::new(DEFAULT_BYTES);

/// The `default` level's bounds.
pub(crate) const DEFAULT_SLOTS: usize = 1024;
pub(crate) const DEFAULT_BYTES: usize = 256 * 1024;

/// The `strict` level's bounds: four times the slots (the most a
/// quarantine holds) and sixteen times the bytes, so that a freed block
/// stays unreused, and its free remembered, for longer.
pub(crate) const STRICT_SLOTS: usize = 4096;
pub(crate) const STRICT_BYTES: usize = 4 << 20;

/// Whether an option named each bound: a level's defaults then leave it
/// alone, whichever of `check=` and `quarantine=` came first.
static SLOTS_CHOSEN: AtomicBool = AtomicBool::new(false);
static BYTES_CHOSEN: AtomicBool = AtomicBool::new(false);

/// Sets the slot bound, as chosen by an option (`options::apply`); 0
/// turns the quarantine off.
pub(crate) fn set_slot_bound(slots: usize) {
    SLOTS_CHOSEN.store(true, Ordering::Relaxed);
    MAX_SLOTS.store(slots, Ordering::Relaxed);
}

/// Sets the byte bound, as chosen by an option; 0 turns the quarantine
/// off.
pub(crate) fn set_byte_bound(bytes: usize) {
    BYTES_CHOSEN.store(true, Ordering::Relaxed);
    MAX_BYTES.store(bytes, Ordering::Relaxed);
}

/// The check level became `level`: the bounds no option chose take its
/// defaults.
pub(crate) fn apply_level_defaults(level: CheckLevel) {
    let (slots, bytes) = match level {
        CheckLevel::Strict => (STRICT_SLOTS, STRICT_BYTES),
        CheckLevel::Default => (DEFAULT_SLOTS, DEFAULT_BYTES),
        // Blocks of the `fast` level take the checked paths only when a
        // check is switched on (`check::switches`): no quarantine unless
        // asked for.
        CheckLevel::Fast => (0, 0),
    };
    if !SLOTS_CHOSEN.load(Ordering::Relaxed) {
        MAX_SLOTS.store(slots, Ordering::Relaxed);
    }
    if !BYTES_CHOSEN.load(Ordering::Relaxed) {
        MAX_BYTES.store(bytes, Ordering::Relaxed);
    }
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
    /// Per generation: the slabs holding its slots, and their slots and
    /// bytes.
    slabs: [Cell<*mut Span>; 2],
    slots: [Cell<usize>; 2],
    bytes: [Cell<usize>; 2],
    /// The current generation (0 or 1).
    current: Cell<u8>,
    /// The current generation's bounds (half the quarantine's, give or take
    /// a random quarter), 0 before the first quarantined free.
    slot_limit: Cell<usize>,
    byte_limit: Cell<usize>,
    rng: Cell<u64>,
}

impl Quarantine {
    pub(crate) const fn new() -> Quarantine {
        Quarantine {
            slabs: [const { Cell::new(core::ptr::null_mut()) }; 2],
            slots: [const { Cell::new(0) }; 2],
            bytes: [const { Cell::new(0) }; 2],
            current: Cell::new(0),
            slot_limit: Cell::new(0),
            byte_limit: Cell::new(0),
            rng: Cell::new(0x9E37_79B9_7F4A_7C15),
        }
    }
}

impl Heap {
    /// Holds slot `index` of `slab` (of `bs` bytes, wiped, free in the
    /// allocated bitmap) back from reuse.
    #[inline]
    pub(crate) fn quarantine_slot(&self, slab: &Span, index: usize, bs: usize) {
        let q = &self.quarantine;
        let g = q.current.get() as usize;
        if slab.held.get() == 0 || slab.held_generation.get() as usize != g {
            self.hold_in_current(slab);
        }
        let (w, bit) = (index / 64, 1u64 << (index % 64));
        let word = slab.quarantine_word(w);
        word.store(word.load(Ordering::Relaxed) | bit, Ordering::Relaxed);
        slab.held.set(slab.held.get() + 1);
        let slots = q.slots[g].get() + 1;
        let bytes = q.bytes[g].get() + bs;
        q.slots[g].set(slots);
        q.bytes[g].set(bytes);
        if slots > q.slot_limit.get() || bytes > q.byte_limit.get() {
            self.next_generation();
        }
    }

    /// `slab` joins the current generation's list (after its slots of the
    /// older generation, if any, leave).
    #[cold]
    #[inline(never)]
    fn hold_in_current(&self, slab: &Span) {
        let q = &self.quarantine;
        let g = q.current.get();
        if slab.held.get() != 0 {
            // Its slots belong to the older generation: they go now, a little
            // early, so the slab holds one generation only.
            self.unlink_held(slab.held_generation.get() as usize, slab);
            self.release_slab_slots(slab);
        }
        let head = q.slabs[g as usize].get();
        slab.held_generation.set(g);
        slab.prev_held.set(core::ptr::null_mut());
        slab.next_held.set(head);
        if !head.is_null() {
            // SAFETY: listed slabs are alive.
            unsafe { (*head).prev_held.set(slab as *const Span as *mut Span) };
        }
        q.slabs[g as usize].set(slab as *const Span as *mut Span);
    }

    /// The current generation is full: the older one leaves, the current
    /// becomes the older, and a new one starts with bounds drawn afresh.
    #[cold]
    #[inline(never)]
    fn next_generation(&self) {
        let q = &self.quarantine;
        let (max_slots, max_bytes) = bounds();
        let old = 1 - q.current.get() as usize;
        self.release_generation(old);
        q.current.set(old as u8);
        if max_slots == 0 || max_bytes == 0 {
            // No quarantine: what was just freed leaves too.
            self.release_generation(1 - old);
        }
        let mut x = q.rng.get() ^ (self as *const Heap as u64);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        q.rng.set(x);
        // Half the bounds, between 3/8 and 5/8 of them.
        let jitter = |bound: usize| bound / 2 - bound / 8 + ((x as usize) % (bound / 4 + 1));
        q.slot_limit.set(jitter(max_slots));
        q.byte_limit.set(jitter(max_bytes));
    }

    /// Lets every slot of generation `g` leave.
    fn release_generation(&self, g: usize) {
        let q = &self.quarantine;
        let mut cur = q.slabs[g].get();
        q.slabs[g].set(core::ptr::null_mut());
        q.slots[g].set(0);
        q.bytes[g].set(0);
        while !cur.is_null() {
            // SAFETY: slabs holding quarantined slots are alive (`used`).
            let slab = unsafe { &*cur };
            cur = slab.next_held.get();
            self.release_slab_slots(slab);
        }
    }

    /// Takes `slab` off generation `g`'s list.
    fn unlink_held(&self, g: usize, slab: &Span) {
        let q = &self.quarantine;
        let (prev, next) = (slab.prev_held.get(), slab.next_held.get());
        if prev.is_null() {
            q.slabs[g].set(next);
        } else {
            // SAFETY: listed slabs are alive.
            unsafe { (*prev).next_held.set(next) };
        }
        if !next.is_null() {
            // SAFETY: as above.
            unsafe { (*next).prev_held.set(prev) };
        }
        let held = slab.held.get() as usize;
        q.slots[g].set(q.slots[g].get() - held);
        q.bytes[g].set(q.bytes[g].get() - held * slab.slot_size());
    }

    /// Clears `slab`'s quarantine bitmap: its held slots become reusable
    /// and leave its `used` count (it may become partial or empty).
    fn release_slab_slots(&self, slab: &Span) {
        let held = slab.held.get();
        if held == 0 {
            return;
        }
        for w in 0..slab.words.get() as usize {
            slab.quarantine_word(w).store(0, Ordering::Relaxed);
        }
        slab.held.set(0);
        let used = slab.used.get().wrapping_sub(held);
        slab.used.set(used);
        if used as i32 <= 0 {
            self.slab_gained_space_guarded(slab);
        }
    }

    #[cold]
    #[inline(never)]
    fn slab_gained_space_guarded(&self, slab: &Span) {
        // Giving an empty slab back takes the page lock and may defer work.
        let _guard = AllocatorGuard::enter();
        self.slab_gained_space(slab as *const Span as *mut Span);
    }

    /// Empties the quarantine (the thread is ending).
    pub(crate) fn flush_quarantine(&self) {
        self.release_generation(0);
        self.release_generation(1);
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
            requested: Requested::NotKept,
        },
    }
}
