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
//! - `sample`: the countdown to the heap's next sampled block, and serving
//!   it from the guarded pool (`guarded`);
//! - `profile`: the byte countdown to the heap's next profile sample
//!   (`track::sampling`), and recording blocks in the registry;
//! - `counters`: per-heap counters and the process-wide peaks;
//! - `pool`: giving each thread a heap, and taking it back at thread exit;
//! - `guard`: the allocator guard and the thread's state;
//! - `arena`: arenas, heaps that belong to no thread (`cma::Arena`).
//!
//! A slab belongs to exactly one heap for its whole life. Field ownership:
//! everything in `ClassState` and the slabs' owner fields is touched only by
//! the thread that holds the heap; the counters are written only by that
//! thread (plain load + store) and read by anyone; `delayed` is the
//! lock-free list remote threads push slabs onto.

use core::cell::Cell;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use crate::check::level::{self, MODE_CHECKED, MODE_EVENTS, MODE_PROFILE};
use crate::guarded::sampling::{self, NEVER};
use crate::meta::span::Span;
use crate::slab::remote_free::OWNER_PENDING;
use crate::slab::size_class::{
    class_block_sizes, small_table, SizeClass, NUM_CLASSES, SMALL_TABLE_MAX, SMALL_TABLE_SLOTS,
};

mod alloc;
pub(crate) mod arena;
mod checked;
pub(crate) mod counters;
mod free;

pub(crate) use checked::free_checked_local_fast;
pub(crate) use free::free_local_fast;
pub(crate) use remote::free_remote_fast;
pub(crate) mod guard;
mod large;
pub(crate) mod pool;
pub(crate) mod profile;
pub(crate) mod quarantine;
mod remote;
mod sample;
mod slabs;

use counters::Counter;
use quarantine::Quarantine;

/// The owner-token tag of slabs whose frees must take the checked path.
pub(crate) const CHECKED_OWNER: u64 = 1;

/// Per size class state of one heap: what the allocation fast path reads,
/// in one cache line. Owner thread only (`allocs` and `cache` are read by
/// anyone, for the statistics).
#[repr(C, align(64))]
pub(crate) struct ClassState {
    /// Free slots of bitmap word `word` of `slab`, ready to hand out. The
    /// bitmap shows them free until they are handed out. Written by the
    /// owner only, with plain loads and stores; atomic because the
    /// statistics read it (see `allocs`).
    cache: AtomicU64,
    /// Address of slot `word * 64` of `slab`.
    cache_base: Cell<usize>,
    /// The allocated-bitmap word the cache came from: handing a slot out
    /// sets its bit there.
    cache_word: Cell<*const AtomicU64>,
    block_size: Cell<usize>,
    /// Slots taken into `cache` (counted by the refill, so that handing one
    /// out counts nothing), plus sampled blocks, minus slots given back
    /// from the cache unserved: the allocations are this minus the slots
    /// still in the cache (`allocations`).
    allocs: Counter,
    slab: Cell<*mut Span>,
    word: Cell<u32>,
    /// Blocks of this class live at the last refill, as counted into
    /// `Heap::live_bytes` (see `counters::sample_class`).
    accounted_live: Cell<i64>,
}

impl ClassState {
    /// Blocks of this class allocated through this state: what the refills
    /// took into the cache, less what is still in it. Exact on the owner's
    /// thread and in a quiet program; a read from another thread during a
    /// refill may be off by the slots that refill loads.
    #[inline]
    pub(crate) fn allocations(&self) -> u64 {
        let cached = self.cache.load(Ordering::Relaxed).count_ones() as u64;
        self.allocs.get().wrapping_sub(cached)
    }

    /// Whether the cache holds no slot.
    #[inline(always)]
    pub(crate) fn cache_is_empty(&self) -> bool {
        self.cache.load(Ordering::Relaxed) == 0
    }

    /// Empties the cache, its slots unserved (they go back to the slab's
    /// bitmap, where they are still free); returns them.
    pub(crate) fn drop_cache(&self) -> u64 {
        let cached = self.cache.load(Ordering::Relaxed);
        self.allocs.add((cached.count_ones() as u64).wrapping_neg());
        self.cache.store(0, Ordering::Relaxed);
        cached
    }

    const fn empty() -> ClassState {
        ClassState {
            cache: AtomicU64::new(0),
            cache_base: Cell::new(0),
            cache_word: Cell::new(core::ptr::null()),
            block_size: Cell::new(0),
            allocs: Counter::new(),
            slab: Cell::new(core::ptr::null_mut()),
            word: Cell::new(0),
            accounted_live: Cell::new(0),
        }
    }
}

#[repr(C)]
pub(crate) struct Heap {
    classes: [ClassState; NUM_CLASSES],
    /// Byte offset of the `ClassState` serving each small size (see
    /// `slab::size_class::small_table`): for C's alignment, indexed by the
    /// size itself (2 KiB: `malloc` finds its state with no rounding of the
    /// size), then for alignment 8, indexed by `(size + 7) >> 3`. Kept in
    /// the heap, beside the states, so the fast path reaches its state with
    /// one indexed load from the heap pointer it already has (a global
    /// table costs an address computation in a shared library, and a class
    /// index a multiply).
    c_state_offsets: [u16; SMALL_TABLE_MAX + 1],
    state_offsets: [u16; SMALL_TABLE_SLOTS],
    /// Per class: blocks freed through this heap (by its thread, of any
    /// heap's slabs). Apart from `classes` so that the free path finds its
    /// counter with one indexed add.
    pub(crate) frees: [Counter; NUM_CLASSES],
    /// Per class: slabs with free slots, other than the current one.
    partial: [Cell<*mut Span>; NUM_CLASSES],
    /// Per class: most blocks this heap has had live at once, sampled at
    /// each refill.
    pub(crate) peak_live: [Counter; NUM_CLASSES],
    /// Slabs with remote frees to collect (Treiber stack, see `remote`).
    delayed: AtomicPtr<Span>,
    /// Freed slots held back from reuse at a checked level.
    quarantine: Quarantine,
    pub(crate) large_allocs: Counter,
    pub(crate) large_frees: Counter,
    /// Bytes of large and huge blocks allocated minus freed through this
    /// heap (exact).
    pub(crate) large_live_bytes: Counter,
    /// For the sampled blocks allocated minus freed through this heap: their
    /// usable sizes (the sizes requested) minus their classes' block sizes,
    /// which their classes' counts stand for (two's complement: usually
    /// below zero). Added to the class bytes, it makes bytes in use the sum
    /// of usable sizes, sampled blocks included.
    pub(crate) sampled_bytes_delta: Counter,
    /// Bytes live through this heap as of the last refill of each class,
    /// plus large blocks (may wrap below zero when other threads free this
    /// heap's blocks); see `counters`.
    pub(crate) live_bytes: Counter,
    pub(crate) peak_live_bytes: Counter,
    /// Small allocations left until this heap's next sampled block, counted
    /// as refills load caches (see `sample`); `sampling::NEVER` when
    /// sampling is off. Owner thread only.
    sample_countdown: Cell<u64>,
    /// The generator of the countdowns (`guarded::sampling`).
    sample_state: Cell<u64>,
    /// Bit `c`: the next allocation of size class `c` is to be sampled
    /// (classes of blocks up to a page, all below 64). Owner thread only.
    sample_due: Cell<u64>,
    /// Bytes allocated until this heap's next profile sample, counted as
    /// refills load caches and as large blocks are made (see `profile`);
    /// `track::sampling::NEVER` unless `profile=sample`. Owner thread only.
    profile_left: Cell<u64>,
    /// The generator of the profile countdowns.
    profile_state: Cell<u64>,
    /// Bit `c`: the next allocation of size class `c` is a profile sample.
    /// Owner thread only.
    profile_due: Cell<u128>,
    /// Blocks of this heap's slabs that other threads freed, and their
    /// bytes, counted as the owner collects them (an arena's statistics
    /// learn of such frees here).
    pub(crate) remote_frees_collected: Counter,
    pub(crate) remote_bytes_collected: Counter,
    /// Whether this heap is an arena's (`arena`): it keeps a list of all its
    /// slabs, and no thread's word names it.
    is_arena: Cell<bool>,
    /// Next heap ever created (append-only list for statistics).
    next_all: AtomicPtr<Heap>,
    /// Next abandoned heap in the pool (pool lock).
    next_free: Cell<*mut Heap>,
}

impl Heap {
    /// A heap with every field zero (every cache empty).
    pub(crate) const fn empty() -> Heap {
        Heap {
            classes: [const { ClassState::empty() }; NUM_CLASSES],
            c_state_offsets: c_state_offsets(),
            state_offsets: state_offsets(false),
            frees: [const { Counter::new() }; NUM_CLASSES],
            partial: [const { Cell::new(core::ptr::null_mut()) }; NUM_CLASSES],
            peak_live: [const { Counter::new() }; NUM_CLASSES],
            delayed: AtomicPtr::new(core::ptr::null_mut()),
            quarantine: Quarantine::new(),
            large_allocs: Counter::new(),
            large_frees: Counter::new(),
            large_live_bytes: Counter::new(),
            sampled_bytes_delta: Counter::new(),
            live_bytes: Counter::new(),
            peak_live_bytes: Counter::new(),
            sample_countdown: Cell::new(NEVER),
            sample_state: Cell::new(0),
            sample_due: Cell::new(0),
            profile_left: Cell::new(crate::track::sampling::NEVER),
            profile_state: Cell::new(0),
            profile_due: Cell::new(0),
            remote_frees_collected: Counter::new(),
            remote_bytes_collected: Counter::new(),
            is_arena: Cell::new(false),
            next_all: AtomicPtr::new(core::ptr::null_mut()),
            next_free: Cell::new(core::ptr::null_mut()),
        }
    }

    /// Makes an empty heap ready for a thread: block sizes in the class
    /// states.
    fn init(&self) {
        let sizes = class_block_sizes();
        for (st, bs) in self.classes.iter().zip(sizes) {
            st.block_size.set(bs);
        }
        self.sample_state.set(sampling::heap_seed());
        self.draw_sample_countdown();
        // A stream of its own, apart from the guarded sampler's seeds (which
        // `sample_seed` makes repeat).
        self.profile_state
            .set(self.sample_state.get().rotate_left(23) ^ 0xD6E8_FEB8_6659_FD93 | 1);
        self.draw_profile_countdown();
    }

    pub(crate) fn class(&self, class: usize) -> &ClassState {
        &self.classes[class]
    }

    /// The class state serving C's `malloc(size)` for a size of at most
    /// `SMALL_TABLE_MAX` (see `c_state_offsets`).
    #[inline(always)]
    pub(crate) fn c_state_for(&self, size: usize) -> &ClassState {
        debug_assert!(size <= SMALL_TABLE_MAX);
        // SAFETY: size <= SMALL_TABLE_MAX for the sizes the callers pass,
        // the table's last index; its entries are offsets of class states
        // as in `state_at`.
        unsafe { self.state_at_offset(*self.c_state_offsets.as_ptr().add(size)) }
    }

    /// The class state serving `size` bytes at alignment 8, for a size of
    /// at most `SMALL_TABLE_MAX`.
    #[inline(always)]
    pub(crate) fn state_for(&self, size: usize) -> &ClassState {
        self.state_at(self.state_offsets.as_ptr(), size)
    }

    #[inline(always)]
    fn state_at(&self, table: *const u16, size: usize) -> &ClassState {
        debug_assert!(size <= SMALL_TABLE_MAX);
        // SAFETY: (size + 7) >> 3 < SMALL_TABLE_SLOTS for the sizes the
        // callers pass; each entry is the offset of a `ClassState` in
        // `classes`, which starts the heap (`repr(C)`).
        unsafe { self.state_at_offset(*table.add((size + 7) >> 3)) }
    }

    /// The class state `offset` bytes into the heap.
    ///
    /// # Safety
    /// `offset` is the offset of a `ClassState` in `classes`, which starts
    /// the heap (`repr(C)`): an entry of `c_state_offsets` or
    /// `state_offsets`.
    #[inline(always)]
    unsafe fn state_at_offset(&self, offset: u16) -> &ClassState {
        // SAFETY: the caller's contract.
        unsafe {
            &*(self as *const Heap)
                .cast::<u8>()
                .add(offset as usize)
                .cast::<ClassState>()
        }
    }

    /// The class of one of this heap's class states.
    #[inline]
    pub(crate) fn class_of_state(&self, st: &ClassState) -> SizeClass {
        let offset = st as *const ClassState as usize - self.classes.as_ptr() as usize;
        SizeClass::from_index(offset / core::mem::size_of::<ClassState>())
    }

    /// The class state on the fast paths, without a bounds check.
    #[inline(always)]
    fn class_state(&self, class: usize) -> &ClassState {
        debug_assert!(class < NUM_CLASSES);
        // SAFETY: class indices come from `SizeClass` values or from slab
        // descriptors written by cma itself, all below NUM_CLASSES.
        unsafe { self.classes.get_unchecked(class) }
    }

    /// The token that marks this heap's slabs (`Span::owner`): the heap's
    /// address, tagged with `CHECKED_OWNER` at a level whose frees need the
    /// checked path. The free fast path compares the owner word with the
    /// plain address (`guard::fast_token`), so a tagged slab, or one flagged
    /// `OWNER_PENDING` by a remote free, never takes it.
    #[inline(always)]
    fn owner_token(&self) -> u64 {
        // `profile=all` sends every free to the path that takes the block
        // out of the registry, and allocation logging to the path that logs
        // it, as a checked level sends it to its checks.
        let tag = if level::mode() & (MODE_CHECKED | MODE_PROFILE | MODE_EVENTS) != 0 {
            CHECKED_OWNER
        } else {
            0
        };
        self as *const Heap as u64 | tag
    }

    /// The heap an owner word names.
    #[inline(always)]
    fn from_owner_word(word: u64) -> *const Heap {
        (word & !(CHECKED_OWNER | OWNER_PENDING)) as *const Heap
    }

    /// Whether this heap owns `slab`.
    #[inline(always)]
    fn owns(&self, slab: &Span) -> bool {
        slab.owner.load(Ordering::Relaxed) & !OWNER_PENDING == self.owner_token()
    }

    /// Whether this is the placeholder of a thread without a heap.
    #[inline(always)]
    pub(crate) fn is_empty_heap(&self) -> bool {
        core::ptr::eq(self, empty_heap())
    }
}

/// The offset of the class state for C's `malloc` of each size up to
/// `SMALL_TABLE_MAX`; see `Heap::c_state_offsets`.
const fn c_state_offsets() -> [u16; SMALL_TABLE_MAX + 1] {
    let by_eight = state_offsets(true);
    let mut out = [0u16; SMALL_TABLE_MAX + 1];
    let mut size = 0;
    while size <= SMALL_TABLE_MAX {
        out[size] = by_eight[(size + 7) >> 3];
        size += 1;
    }
    out
}

/// The offset of the class state for each small size; see `Heap::c_state_offsets`.
const fn state_offsets(c_alignment: bool) -> [u16; SMALL_TABLE_SLOTS] {
    let classes = small_table(c_alignment);
    let mut out = [0u16; SMALL_TABLE_SLOTS];
    let mut i = 0;
    while i < SMALL_TABLE_SLOTS {
        out[i] = (classes[i] as usize * core::mem::size_of::<ClassState>()) as u16;
        i += 1;
    }
    out
}

/// The heap of every thread that has none yet: all caches empty, so its
/// allocation fast path always falls through to the refill, which gives
/// the thread a real heap; it owns no slab, so its free fast path always
/// falls through too. Never written.
struct EmptyHeap(Heap);

// SAFETY: nothing writes the empty heap (see `Heap::is_empty_heap` and
// `api::init::thread_heap`): its fast paths stop before any write.
unsafe impl Sync for EmptyHeap {}

static EMPTY_HEAP: EmptyHeap = EmptyHeap(Heap::empty());

#[inline(always)]
pub(crate) fn empty_heap() -> &'static Heap {
    &EMPTY_HEAP.0
}
