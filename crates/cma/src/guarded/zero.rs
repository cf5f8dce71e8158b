//! Zero-byte blocks (`malloc(0)`, `new char[0]`, `calloc(0, n)`) at a
//! checked level: each is a unique address in memory nobody may read or
//! write, so any access through one faults at once (the fault handler names
//! the block), while `free`, `realloc` and size queries of it work as for
//! any block (its size is 0).
//!
//! One segment-map granule (4 MiB of address space, no access, no commit
//! charge) holds 2^18 such addresses, 16 bytes apart; a bitmap says which
//! are live and two more planes record their family (`check::kind`), all
//! static, so a block costs one bit and no memory of its own. Addresses are
//! handed out in turn from a rotating cursor, so a freed one comes back only
//! after the whole pool has gone round: a late double free or use is still
//! told apart until then. Were every address live, `malloc(0)` would get an
//! ordinary smallest block instead.

use core::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

use crate::check::kind::AllocKind;
use crate::meta::segment_map::{self, SEGMENT_SIZE, ZERO_POOL};
use crate::os::memory;
use crate::pages::PAGES;

/// Bytes between two zero-byte blocks (an access at up to 15 bytes past
/// one is still known as its).
pub(crate) const GRANULE: usize = 16;
const ADDRESSES: usize = SEGMENT_SIZE / GRANULE;
const WORDS: usize = ADDRESSES / 64;
/// Addresses tried before falling back to an ordinary block.
const TRIES: usize = 256;

const NOT_RESERVED: u8 = 0;
const RESERVING: u8 = 1;
const RESERVED: u8 = 2;
const REFUSED: u8 = 3;
static RESERVE: AtomicU8 = AtomicU8::new(NOT_RESERVED);
static BASE: AtomicUsize = AtomicUsize::new(0);
static CURSOR: AtomicUsize = AtomicUsize::new(0);

static LIVE: [AtomicU64; WORDS] = [const { AtomicU64::new(0) }; WORDS];
static KINDS: [[AtomicU64; WORDS]; 2] = [const { [const { AtomicU64::new(0) }; WORDS] }; 2];

static ALLOCATED: AtomicU64 = AtomicU64::new(0);
static FREED: AtomicU64 = AtomicU64::new(0);

/// What the pool holds at an address in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ZeroLookup {
    /// The live block `index`.
    Live(usize),
    /// Block `index` is not live (freed, or never handed out).
    Free(usize),
    /// An address between two blocks.
    Between,
}

/// A zero-byte block of `kind`'s family, or `None` when the pool cannot
/// serve one (the caller then serves an ordinary block).
pub(crate) fn alloc(kind: AllocKind) -> Option<*mut u8> {
    if !ensure_reserved() {
        return None;
    }
    let base = BASE.load(Ordering::Acquire);
    for _ in 0..TRIES {
        let index = CURSOR.fetch_add(1, Ordering::Relaxed) % ADDRESSES;
        let (w, bit) = (index / 64, 1u64 << (index % 64));
        if LIVE[w].fetch_or(bit, Ordering::AcqRel) & bit == 0 {
            set_kind(index, kind);
            ALLOCATED.fetch_add(1, Ordering::Relaxed);
            return Some((base + index * GRANULE) as *mut u8);
        }
    }
    None
}

/// Frees live block `index` (found by `lookup`); false when another thread
/// freed it first (a double free).
pub(crate) fn free(index: usize) -> bool {
    let (w, bit) = (index / 64, 1u64 << (index % 64));
    for plane in &KINDS {
        plane[w].fetch_and(!bit, Ordering::Relaxed);
    }
    if LIVE[w].fetch_and(!bit, Ordering::AcqRel) & bit == 0 {
        return false;
    }
    FREED.fetch_add(1, Ordering::Relaxed);
    true
}

/// What the pool holds at `addr`, an address the segment map names as the
/// pool's.
pub(crate) fn lookup(addr: usize) -> ZeroLookup {
    let offset = addr.wrapping_sub(BASE.load(Ordering::Acquire));
    if offset >= SEGMENT_SIZE || offset % GRANULE != 0 {
        return ZeroLookup::Between;
    }
    let index = offset / GRANULE;
    if LIVE[index / 64].load(Ordering::Acquire) & (1 << (index % 64)) != 0 {
        ZeroLookup::Live(index)
    } else {
        ZeroLookup::Free(index)
    }
}

/// The block an access at `addr` touched, for the fault handler: its
/// address and whether it is live; `None` outside the pool.
pub(crate) fn block_at(addr: usize) -> Option<(usize, bool)> {
    let base = BASE.load(Ordering::Acquire);
    let offset = addr.wrapping_sub(base);
    if base == 0 || offset >= SEGMENT_SIZE {
        return None;
    }
    let index = offset / GRANULE;
    let live = LIVE[index / 64].load(Ordering::Acquire) & (1 << (index % 64)) != 0;
    Some((base + index * GRANULE, live))
}

/// The address of block `index`.
pub(crate) fn address(index: usize) -> usize {
    BASE.load(Ordering::Acquire) + index * GRANULE
}

/// The family that allocated live block `index`.
pub(crate) fn kind(index: usize) -> AllocKind {
    let (w, shift) = (index / 64, index % 64);
    let bit = |plane: usize| ((KINDS[plane][w].load(Ordering::Relaxed) >> shift) & 1) as u8;
    AllocKind::from_bits(bit(0) | bit(1) << 1)
}

/// Records the family of live block `index` (its allocating thread only,
/// before it hands the block out).
pub(crate) fn set_kind(index: usize, kind: AllocKind) {
    let (w, bit) = (index / 64, 1u64 << (index % 64));
    let bits = kind as u8;
    for (plane, words) in KINDS.iter().enumerate() {
        if bits >> plane & 1 != 0 {
            words[w].fetch_or(bit, Ordering::Relaxed);
        } else {
            words[w].fetch_and(!bit, Ordering::Relaxed);
        }
    }
}

/// Calls `visit` with the address of every live zero-byte block at or
/// above `from`, in address order, until it breaks (the leak walk,
/// `observe::leaks`).
pub(crate) fn for_each_live_block<B>(
    from: usize,
    mut visit: impl FnMut(usize) -> core::ops::ControlFlow<B>,
) -> core::ops::ControlFlow<B> {
    let base = BASE.load(Ordering::Acquire);
    if base == 0 {
        return core::ops::ControlFlow::Continue(());
    }
    let first = from.saturating_sub(base).div_ceil(GRANULE);
    for (w, word) in LIVE.iter().enumerate().skip(first / 64) {
        let mut bits = word.load(Ordering::Acquire);
        if w == first / 64 {
            bits &= u64::MAX << (first % 64);
        }
        while bits != 0 {
            let index = w * 64 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            visit(base + index * GRANULE)?;
        }
    }
    core::ops::ControlFlow::Continue(())
}

/// Zero-byte blocks handed out and freed so far.
pub(crate) fn counts() -> (u64, u64) {
    (
        ALLOCATED.load(Ordering::Relaxed),
        FREED.load(Ordering::Relaxed),
    )
}

/// Reserves the pool, once; false when it could not be (zero-byte requests
/// then get ordinary blocks, and a later call does not try again).
fn ensure_reserved() -> bool {
    match RESERVE.compare_exchange(NOT_RESERVED, RESERVING, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {}
        Err(state) => return state == RESERVED,
    }
    let base = memory::reserve_aligned(SEGMENT_SIZE, SEGMENT_SIZE);
    let registered = !base.is_null() && segment_map::in_range(base as usize, SEGMENT_SIZE) && {
        let _pages = PAGES.lock();
        let ok = segment_map::init();
        if ok {
            segment_map::set_range(base as usize, SEGMENT_SIZE, ZERO_POOL);
        }
        ok
    };
    if !registered {
        if !base.is_null() {
            memory::unmap(base, SEGMENT_SIZE);
        }
        RESERVE.store(REFUSED, Ordering::Release);
        return false;
    }
    BASE.store(base as usize, Ordering::Release);
    RESERVE.store(RESERVED, Ordering::Release);
    // An access through a zero-byte block faults: the handler says whose.
    crate::heap::guard::defer_fault_handler();
    true
}
