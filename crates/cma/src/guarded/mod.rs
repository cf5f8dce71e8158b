//! Sampled guarded blocks (the technique GWP-ASan made standard): about one
//! small allocation in `sample=N` is served from a page of its own, in a
//! pool reserved once, right-aligned against a guard page, with the stack
//! that allocated it; when freed, the page becomes inaccessible and keeps
//! the stack that freed it until the slot is reused, first in, first out,
//! after every other free slot. An overflow past a sampled block, or a read
//! or write of it after its free, faults at once, and the fault handler
//! (`check::fault`) reports it with both stacks.
//!
//! - `sampling`: the rate, and the random countdown each heap keeps;
//! - this module: the pool, its slots and their stacks.
//!
//! Pool layout, `K = sample_slots` slots of one page each, every slot
//! between two guard pages (`P` is a page):
//!
//! ```text
//! base: [guard 0][slot 0][guard 1][slot 1] ... [slot K-1][guard K]
//!                 ^ head pattern | block | slack pattern ^ page end
//! ```
//!
//! A block of `size` bytes at `align` starts `size` rounded up to
//! `max(align, 8)` bytes before its page's end (a zero-byte block starts at
//! the page's end: any access through it faults). The bytes before it in
//! its page (the head) and the few after it (the slack, when the size is
//! not a multiple of the alignment) hold a pattern, verified when the block
//! is freed, resized or measured: a write before the block within its page,
//! or into its slack, is reported then; anything beyond faults at once.
//!
//! Memory and mappings: the pool is one reservation (no access, no commit
//! charge) whose whole granules of the segment map carry `SAMPLED_POOL`;
//! a slot's page is made accessible (and charged) when a block takes it
//! and inaccessible when the block is freed, so the pool never holds more
//! than `2K + 1` mappings, whatever the program does (`sample_slots` bounds
//! it; the default 256 slots make at most 513 of the kernel's 65,530). The
//! slots' descriptors live in a mapping of their own, out of line.
//!
//! Concurrency: the free-slot queue is under its own lock (`QUEUE`), taken
//! only to take or give back a slot, never around a system call or a stack
//! walk; a slot's descriptor is written by the thread that holds the slot
//! (taking it, or freeing its block) and read by anyone (lookups, the fault
//! handler, which takes no lock: a report may read a slot that changes
//! under it, never memory that goes away).

pub(crate) mod sampling;
pub(crate) mod zero;

use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use crate::meta::segment_map::{self, SAMPLED_POOL, SEGMENT_SIZE};
use crate::os::memory::{self, Charge};
use crate::os::{backtrace, PAGE_SIZE};
use crate::pages::PAGES;
use crate::util::spin_lock::SpinLock;

/// The largest block sampling serves: one page.
pub(crate) const MAX_SAMPLED: usize = PAGE_SIZE;
/// Frames kept of each stack.
pub(crate) const FRAMES: usize = 16;
/// Slots when `sample_slots` does not say.
pub(crate) const DEFAULT_SLOTS: u32 = 256;
/// The most slots `sample_slots` may ask for: 8,193 mappings at most.
pub(crate) const MAX_SLOTS: u32 = 4096;

/// What the bytes around a sampled block hold (see the module docs).
const PATTERN: u8 = 0xCB;

/// A slot's states.
const NEVER_USED: u8 = 0;
const LIVE: u8 = 1;
const FREED: u8 = 2;

/// A stack, as return addresses, and the thread it was taken on.
#[repr(C)]
pub(crate) struct Stack {
    thread: AtomicU32,
    len: AtomicU32,
    frames: [AtomicUsize; FRAMES],
}

impl Stack {
    /// Records `frames` taken on thread `thread`.
    fn record(&self, thread: u32, frames: &[usize]) {
        self.thread.store(thread, Ordering::Relaxed);
        for (slot, &f) in self.frames.iter().zip(frames) {
            slot.store(f, Ordering::Relaxed);
        }
        self.len
            .store(frames.len().min(FRAMES) as u32, Ordering::Release);
    }

    /// The thread it was taken on (0: none recorded).
    pub(crate) fn thread(&self) -> u32 {
        self.thread.load(Ordering::Relaxed)
    }

    /// Copies the frames into `out`; returns how many.
    pub(crate) fn frames(&self, out: &mut [usize; FRAMES]) -> usize {
        let len = (self.len.load(Ordering::Acquire) as usize).min(FRAMES);
        for (o, f) in out.iter_mut().zip(&self.frames[..len]) {
            *o = f.load(Ordering::Relaxed);
        }
        len
    }
}

/// One slot's descriptor, out of line. `state`, `class`, `start` and `size`
/// and the stacks are written by the thread that holds the slot (see the
/// module docs); `next` is the queue's, under `QUEUE`.
#[repr(C)]
pub(crate) struct Slot {
    state: AtomicU8,
    /// The size class the block is counted in (statistics).
    class: AtomicU8,
    /// The family that allocated the block (`check::kind::AllocKind`).
    kind: AtomicU8,
    /// The block's address and requested size.
    start: AtomicUsize,
    size: AtomicUsize,
    /// The next slot in the free queue.
    next: AtomicU32,
    pub(crate) allocated: Stack,
    pub(crate) freed: Stack,
}

impl Slot {
    /// The block's address.
    pub(crate) fn start(&self) -> usize {
        self.start.load(Ordering::Relaxed)
    }

    /// The block's requested size.
    pub(crate) fn size(&self) -> usize {
        self.size.load(Ordering::Relaxed)
    }

    /// The size class the block is counted in.
    pub(crate) fn class(&self) -> usize {
        self.class.load(Ordering::Relaxed) as usize
    }

    /// The family that allocated the block, as `check::kind::AllocKind`'s
    /// bits (0, the malloc family, unless recorded).
    pub(crate) fn kind(&self) -> u8 {
        self.kind.load(Ordering::Relaxed)
    }

    /// Records the family that allocated the block (its allocating thread).
    pub(crate) fn set_kind(&self, kind: u8) {
        self.kind.store(kind, Ordering::Relaxed);
    }

    /// Whether the slot's block has been freed (it is in quarantine).
    pub(crate) fn is_freed(&self) -> bool {
        self.state.load(Ordering::Acquire) == FREED
    }

    /// The first byte of the slot's page.
    fn page(&self) -> usize {
        let first = SLOTS.load(Ordering::Acquire) as usize;
        let index = (self as *const Slot as usize - first) / core::mem::size_of::<Slot>();
        slot_page(BASE.load(Ordering::Relaxed), index as u32)
    }

    /// Which side of the live block was written: `Some(Damage)` when the
    /// head or slack pattern changed (see the module docs).
    pub(crate) fn damage(&self) -> Option<Damage> {
        let (start, size) = (self.start(), self.size());
        let page = self.page();
        let end = page + PAGE_SIZE;
        // SAFETY: the block is live, so its page is accessible; the slack
        // and the head lie in it.
        unsafe {
            if !all_pattern(start + size, end) {
                return Some(Damage::After);
            }
            if !all_pattern(page, start) {
                return Some(Damage::Before);
            }
        }
        None
    }
}

/// Which pattern around a sampled block was overwritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Damage {
    /// Its slack: the bytes after the block.
    After,
    /// Its head: the bytes before the block.
    Before,
}

/// Whether `[from, to)` holds nothing but `PATTERN`.
///
/// # Safety
/// The range is readable.
unsafe fn all_pattern(from: usize, to: usize) -> bool {
    // SAFETY: the caller guarantees the range is readable.
    let bytes = unsafe { core::slice::from_raw_parts(from as *const u8, to - from) };
    // No early exit: the compiler turns the fold into vector code (a page
    // is read in a few hundred instructions).
    bytes.iter().fold(0u8, |diff, &b| diff | (b ^ PATTERN)) == 0
}

/// The queue of free slots: those never used first, then freed ones, first
/// in, first out (so a freed block stays inaccessible as long as the pool
/// allows).
struct Queue {
    /// Slots `fresh..` have never been used.
    fresh: u32,
    head: u32,
    tail: u32,
}

const NO_SLOT: u32 = u32::MAX;

static QUEUE: SpinLock<Queue> = SpinLock::new(Queue {
    fresh: 0,
    head: NO_SLOT,
    tail: NO_SLOT,
});

/// The pool's first guard page; 0 until it is reserved.
static BASE: AtomicUsize = AtomicUsize::new(0);
/// Slots in the pool (`sample_slots`), fixed when it is reserved.
static SLOT_COUNT: AtomicU32 = AtomicU32::new(DEFAULT_SLOTS);
static SLOTS: AtomicPtr<Slot> = AtomicPtr::new(null_mut());

const NOT_RESERVED: u8 = 0;
const RESERVING: u8 = 1;
const RESERVED: u8 = 2;
const REFUSED: u8 = 3;
static RESERVE: AtomicU8 = AtomicU8::new(NOT_RESERVED);

/// Sampled blocks handed out so far.
static SAMPLED: AtomicU64 = AtomicU64::new(0);

/// Sets the number of slots; false once the pool is reserved (then it
/// keeps the number it has).
pub(crate) fn set_slot_count(slots: u32) -> bool {
    if RESERVE.load(Ordering::Acquire) != NOT_RESERVED {
        return false;
    }
    SLOT_COUNT.store(slots.clamp(1, MAX_SLOTS), Ordering::Relaxed);
    true
}

/// Sampled blocks handed out so far.
pub(crate) fn sampled_count() -> u64 {
    SAMPLED.load(Ordering::Relaxed)
}

/// Bytes of the pool's address range: its slots and guard pages.
fn span(slots: u32) -> usize {
    (2 * slots as usize + 1) * PAGE_SIZE
}

/// Reserves the pool, once; false when it could not be (sampling then
/// serves nothing, and a later call does not try again).
fn ensure_reserved() -> bool {
    match RESERVE.compare_exchange(NOT_RESERVED, RESERVING, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {}
        Err(state) => return state == RESERVED,
    }
    let slots = SLOT_COUNT.load(Ordering::Relaxed);
    let bytes = span(slots).next_multiple_of(SEGMENT_SIZE);
    let meta_bytes = (slots as usize * core::mem::size_of::<Slot>()).next_multiple_of(PAGE_SIZE);
    let base = memory::reserve_aligned(bytes, SEGMENT_SIZE);
    if base.is_null() || !segment_map::in_range(base as usize, bytes) {
        if !base.is_null() {
            memory::unmap(base, bytes);
        }
        RESERVE.store(REFUSED, Ordering::Release);
        return false;
    }
    let meta = memory::map(meta_bytes, Charge::Accounted);
    let registered = !meta.is_null() && {
        let _pages = PAGES.lock();
        let ok = segment_map::init();
        if ok {
            segment_map::set_range(base as usize, bytes, SAMPLED_POOL);
        }
        ok
    };
    if !registered {
        memory::unmap(base, bytes);
        if !meta.is_null() {
            memory::unmap(meta, meta_bytes);
        }
        RESERVE.store(REFUSED, Ordering::Release);
        return false;
    }
    SLOTS.store(meta.cast(), Ordering::Release);
    BASE.store(base as usize, Ordering::Release);
    RESERVE.store(RESERVED, Ordering::Release);
    true
}

/// Slot `index` (below the pool's slot count).
fn slot(index: u32) -> &'static Slot {
    let slots = SLOTS.load(Ordering::Acquire);
    debug_assert!(!slots.is_null() && index < SLOT_COUNT.load(Ordering::Relaxed));
    // SAFETY: the descriptors are mapped once, zeroed (every slot never
    // used), for the pool's slot count, and never unmapped.
    unsafe { &*slots.add(index as usize) }
}

/// The first byte of slot `index`'s page.
fn slot_page(base: usize, index: u32) -> usize {
    base + (2 * index as usize + 1) * PAGE_SIZE
}

fn take_slot() -> Option<u32> {
    let mut q = QUEUE.lock();
    if q.fresh < SLOT_COUNT.load(Ordering::Relaxed) {
        q.fresh += 1;
        return Some(q.fresh - 1);
    }
    let index = q.head;
    if index == NO_SLOT {
        return None;
    }
    q.head = slot(index).next.load(Ordering::Relaxed);
    if q.head == NO_SLOT {
        q.tail = NO_SLOT;
    }
    Some(index)
}

fn give_back(index: u32) {
    let mut q = QUEUE.lock();
    slot(index).next.store(NO_SLOT, Ordering::Relaxed);
    match q.tail {
        NO_SLOT => q.head = index,
        tail => slot(tail).next.store(index, Ordering::Relaxed),
    }
    q.tail = index;
}

/// Serves a block of `size` bytes at `align` (a power of two) from the
/// pool, counted in size class `class`; records the calling thread's stack
/// (taken on `thread`; none when `stack` is false), leaving out the caller
/// and `skip` more frames. Null when it cannot: the size or alignment is
/// beyond a page, the pool could not be reserved, every slot holds a live
/// block, or the kernel refused to make the page accessible.
#[inline(never)]
pub(crate) fn alloc(
    size: usize,
    align: usize,
    class: usize,
    thread: u32,
    stack: bool,
    skip: usize,
) -> *mut u8 {
    if size > MAX_SAMPLED || align > PAGE_SIZE || !ensure_reserved() {
        return null_mut();
    }
    let rounded = size.next_multiple_of(align.max(8));
    if rounded > PAGE_SIZE {
        return null_mut();
    }
    let Some(index) = take_slot() else {
        return null_mut();
    };
    let s = slot(index);
    let page = slot_page(BASE.load(Ordering::Relaxed), index);
    if !memory::protect(page as *mut u8, PAGE_SIZE, true) {
        give_back(index);
        return null_mut();
    }
    let start = page + PAGE_SIZE - rounded;
    // SAFETY: the page is ours (the slot is held) and now accessible.
    unsafe {
        core::ptr::write_bytes(page as *mut u8, PATTERN, start - page);
        // Zero, as a checked level's blocks are, whatever the page held.
        core::ptr::write_bytes(start as *mut u8, 0, size);
        core::ptr::write_bytes((start + size) as *mut u8, PATTERN, rounded - size);
    }
    let mut frames = [0usize; FRAMES];
    let len = if stack {
        backtrace::capture(&mut frames, skip + 1)
    } else {
        0
    };
    s.allocated.record(thread, &frames[..len]);
    s.freed.record(0, &[]);
    s.start.store(start, Ordering::Relaxed);
    s.size.store(size, Ordering::Relaxed);
    s.class.store(class as u8, Ordering::Relaxed);
    s.kind.store(0, Ordering::Relaxed);
    s.state.store(LIVE, Ordering::Release);
    SAMPLED.fetch_add(1, Ordering::Relaxed);
    start as *mut u8
}

/// What the pool holds at an address that a pointer names.
pub(crate) enum Lookup {
    /// A live block starts there.
    Live(&'static Slot),
    /// A freed block (still in quarantine) started there.
    Freed(&'static Slot),
    /// The address lies inside a live block, after its start.
    Inside(&'static Slot),
    /// No block starts there.
    Nothing,
}

/// Whether `addr` lies in the pool's address range.
#[inline]
pub(crate) fn contains(addr: usize) -> bool {
    let base = BASE.load(Ordering::Acquire);
    base != 0 && addr.wrapping_sub(base) < span(SLOT_COUNT.load(Ordering::Relaxed))
}

/// The slot whose page holds `addr`, or whose block ends at `addr` (a
/// zero-byte block); `None` outside the pool's slots.
fn slot_at(addr: usize) -> Option<&'static Slot> {
    if !contains(addr) {
        return None;
    }
    let offset = addr - BASE.load(Ordering::Relaxed);
    if offset < PAGE_SIZE {
        return None;
    }
    let index = (offset - PAGE_SIZE) / (2 * PAGE_SIZE);
    (index < SLOT_COUNT.load(Ordering::Relaxed) as usize).then(|| slot(index as u32))
}

/// What the pool holds at `addr`, for a pointer passed to free, realloc or
/// a size query. Reads without the queue's lock: `free` checks again.
pub(crate) fn lookup(addr: usize) -> Lookup {
    let Some(s) = slot_at(addr) else {
        return Lookup::Nothing;
    };
    let state = s.state.load(Ordering::Acquire);
    let (start, size) = (s.start(), s.size());
    match state {
        LIVE if addr == start => Lookup::Live(s),
        FREED if addr == start => Lookup::Freed(s),
        LIVE if addr > start && addr < start + size => Lookup::Inside(s),
        _ => Lookup::Nothing,
    }
}

/// The slot of the block, live or freed, that starts at `start`.
pub(crate) fn slot_of_block(start: usize) -> Option<&'static Slot> {
    match lookup(start) {
        Lookup::Live(s) | Lookup::Freed(s) => Some(s),
        _ => None,
    }
}

/// Frees the live block of `s`: records the freeing stack (see `alloc`),
/// makes the page inaccessible and queues the slot last. False, nothing
/// changed, when the block is not live any more (another thread freed it
/// meanwhile).
#[inline(never)]
pub(crate) fn free(s: &'static Slot, thread: u32, stack: bool, skip: usize) -> bool {
    if s.state
        .compare_exchange(LIVE, FREED, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return false;
    }
    let mut frames = [0usize; FRAMES];
    let len = if stack {
        backtrace::capture(&mut frames, skip + 1)
    } else {
        0
    };
    s.freed.record(thread, &frames[..len]);
    // Should the kernel refuse (the limit on mappings), the page stays
    // accessible: this block's use after free goes unseen, nothing worse.
    let page = s.page();
    memory::protect(page as *mut u8, PAGE_SIZE, false);
    let base = BASE.load(Ordering::Relaxed);
    give_back(((page - base) / PAGE_SIZE / 2) as u32);
    true
}

/// The block nearest a faulting address in the pool, for the fault
/// handler: the slot whose page holds it, or, in a guard page, the block
/// of the two beside it that ends or starts closest to it. `None` outside
/// the pool; `Some(None)` where no block ever was.
pub(crate) fn block_near(addr: usize) -> Option<Option<&'static Slot>> {
    if !contains(addr) {
        return None;
    }
    let base = BASE.load(Ordering::Relaxed);
    let page = (addr - base) / PAGE_SIZE;
    let used = |s: &'static Slot| s.state.load(Ordering::Acquire) != NEVER_USED;
    if page % 2 == 1 {
        return Some(slot_at(addr).filter(|s| used(s)));
    }
    let slots = SLOT_COUNT.load(Ordering::Relaxed) as usize;
    let guard = page / 2;
    let before = (guard > 0)
        .then(|| slot(guard as u32 - 1))
        .filter(|s| used(s));
    let after = (guard < slots)
        .then(|| slot(guard as u32))
        .filter(|s| used(s));
    Some(match (before, after) {
        (Some(b), Some(a)) => {
            let past_end = addr.saturating_sub(b.start() + b.size());
            let before_start = a.start().saturating_sub(addr);
            Some(if past_end <= before_start { b } else { a })
        }
        (b, a) => b.or(a),
    })
}

/// Calls `visit` with the start and size of every live sampled block that
/// starts at or above `from`, in address order, until it breaks (the leak
/// walk, `observe::leaks`). Reads the descriptors without the queue's lock,
/// as lookups do.
pub(crate) fn for_each_live_block<B>(
    from: usize,
    mut visit: impl FnMut(usize, usize) -> core::ops::ControlFlow<B>,
) -> core::ops::ControlFlow<B> {
    if SLOTS.load(Ordering::Acquire).is_null() {
        return core::ops::ControlFlow::Continue(());
    }
    for index in 0..SLOT_COUNT.load(Ordering::Relaxed) {
        let s = slot(index);
        if s.state.load(Ordering::Acquire) == LIVE && s.start() >= from {
            visit(s.start(), s.size())?;
        }
    }
    core::ops::ControlFlow::Continue(())
}

/// Takes the queue's lock before `fork` (see `api::init`).
pub(crate) fn lock_for_fork() {
    QUEUE.lock_for_fork();
}

/// Releases the lock `lock_for_fork` took, in the parent or the child.
///
/// # Safety
/// Only after `lock_for_fork`, on the thread that forked.
pub(crate) unsafe fn unlock_after_fork() {
    // SAFETY: guaranteed by the caller.
    unsafe { QUEUE.force_unlock() };
}
