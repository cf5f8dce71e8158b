//! Thread heaps. One heap per thread; for each size class it keeps a current
//! slab and a one-word cache of that slab's free slots, so the fast paths
//! take no lock and make no atomic read-modify-write.
//!
//! - `alloc`: the allocation fast path (pop the lowest bit of the cached
//!   word) and its refill;
//! - `free`: the free path: the owner's free (`free_slot_local`), the
//!   checked free with its errors, the `default` level's trailer check;
//! - `remote`: frees of this heap's slots by other threads
//!   (`free_slot_remote`) and their collection by the owner;
//! - `slabs`: taking, listing and giving back slabs;
//! - `large`: blocks of whole pages;
//! - `counters`: per-heap counters and the process-wide peaks;
//! - `pool`: giving each thread a heap, and taking it back at thread exit;
//! - `guard`: the allocator guard and the thread's state.
//!
//! A slab belongs to exactly one heap for its whole life. Field ownership:
//! everything in `ClassState` and the slabs' owner fields is touched only by
//! the thread that holds the heap; the counters are written only by that
//! thread (plain load + store) and read by anyone; `delayed` is the
//! lock-free list remote threads push slabs onto.

use core::cell::Cell;
use core::sync::atomic::{AtomicPtr, Ordering};

use crate::meta::span::Span;
use crate::slab::size_class::{class_block_sizes, NUM_CLASSES};

mod alloc;
pub(crate) mod counters;
mod free;
pub(crate) mod guard;
mod large;
pub(crate) mod pool;
mod remote;
mod slabs;

pub(crate) use free::FastFree;

use counters::Counter;

/// Per size class state of one heap (one cache line).
#[repr(C, align(64))]
pub(crate) struct ClassState {
    /// Free slots of word `word` of `slab`, ready to hand out.
    cache: Cell<u64>,
    /// Address of slot `word * 64` of `slab`.
    cache_base: Cell<usize>,
    slab: Cell<*mut Span>,
    word: Cell<u32>,
    block_size: Cell<u32>,
    /// Slots of the cached word freed since the cache was loaded. Frees go
    /// here rather than into `cache`, so the next allocation does not wait
    /// on the free before it (the free's whole validation chain would
    /// otherwise sit between the two); allocation takes them when the cache
    /// runs dry. Like the cache, they count as used.
    freed: Cell<u64>,
    pub(crate) allocs: Counter,
    pub(crate) frees: Counter,
    /// Most blocks of this class this heap has had live at once.
    pub(crate) peak_live: Counter,
}

pub(crate) struct Heap {
    classes: [ClassState; NUM_CLASSES],
    /// Per class: slabs with free slots, other than the current one.
    partial: [Cell<*mut Span>; NUM_CLASSES],
    /// Slabs with remote frees to collect (Treiber stack, see `remote`).
    delayed: AtomicPtr<Span>,
    pub(crate) large_allocs: Counter,
    pub(crate) large_frees: Counter,
    /// Bytes allocated minus bytes freed through this heap (may wrap below
    /// zero when other threads free this heap's blocks).
    pub(crate) live_bytes: Counter,
    pub(crate) peak_live_bytes: Counter,
    /// Next heap ever created (append-only list for statistics).
    next_all: AtomicPtr<Heap>,
    /// Next abandoned heap in the pool (pool lock).
    next_free: Cell<*mut Heap>,
}

impl Heap {
    /// Initialises a zeroed heap in place.
    fn init(&self) {
        let sizes = class_block_sizes();
        for (st, bs) in self.classes.iter().zip(sizes) {
            st.block_size.set(bs as u32);
        }
    }

    pub(crate) fn class(&self, class: usize) -> &ClassState {
        &self.classes[class]
    }

    /// The class state on the fast paths, without a bounds check.
    #[inline(always)]
    fn class_state(&self, class: usize) -> &ClassState {
        debug_assert!(class < NUM_CLASSES);
        // SAFETY: class indices come from `SizeClass` values or from slab
        // descriptors written by cma itself, all below NUM_CLASSES.
        unsafe { self.classes.get_unchecked(class) }
    }

    /// The token that marks this heap's slabs (`Span::owner`).
    #[inline(always)]
    fn owner_token(&self) -> usize {
        self as *const Heap as usize
    }

    /// Whether this heap owns `slab`.
    #[inline(always)]
    fn owns(&self, slab: &Span) -> bool {
        slab.owner.load(Ordering::Relaxed) == self.owner_token()
    }

    /// The class state of `slab`'s class.
    #[inline(always)]
    fn state_of(&self, slab: &Span) -> &ClassState {
        self.class_state(slab.class.load(Ordering::Relaxed) as usize)
    }
}
