//! The set of blocks left out of leak reports (`cma_untrack_leak`, see
//! `observe::leaks`): their addresses, in a table of its own that the free
//! fast paths never look at. So that a freed untracked block does not make
//! the next block at its address untracked too, every path that hands an
//! address out again drops it from the set first: a slab's cache refill
//! (`handing_out_slots`, behind one flag read while the set is empty, and
//! a per-slab filter while it is not), and large, huge and sampled blocks
//! (`handing_out`). Lock order: the page lock, then `IGNORED`.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::util::addr_table::AddrTable;
use crate::util::spin_lock::SpinLock;

/// The ignored blocks' addresses (see the module docs).
pub(crate) static IGNORED: SpinLock<AddrTable<()>> = SpinLock::new(AddrTable::new());
/// Whether `IGNORED` may hold anything: the refill's one flag read.
static IGNORING: AtomicBool = AtomicBool::new(false);
/// Bits set by the slabs of ignored slots (`filter_bit`), cleared when the
/// set empties: a refill of any other slab looks no further.
static FILTER: [AtomicU64; FILTER_WORDS] = [const { AtomicU64::new(0) }; FILTER_WORDS];
const FILTER_WORDS: usize = 16;

fn filter_bit(slab_start: usize) -> (usize, u64) {
    let h = (slab_start >> 16).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54;
    ((h / 64) % FILTER_WORDS, 1 << (h % 64))
}

pub(crate) fn forget_filter_if_empty(set: &AddrTable<()>) {
    if set.is_empty() {
        IGNORING.store(false, Ordering::Release);
        for w in &FILTER {
            w.store(0, Ordering::Relaxed);
        }
    }
}

/// Whether any block is ignored: a refill asks before it calls
/// `handing_out_slots`.
#[inline(always)]
pub(crate) fn ignoring() -> bool {
    IGNORING.load(Ordering::Acquire)
}

/// A refill is about to hand out the slots `bits` of the bitmap word whose
/// first slot is at `first` (slots of `block_size` bytes, in the slab at
/// `slab_start`): none of them may stay ignored.
#[cold]
#[inline(never)]
pub(crate) fn handing_out_slots(slab_start: usize, first: usize, block_size: usize, bits: u64) {
    let (w, bit) = filter_bit(slab_start);
    if FILTER[w].load(Ordering::Acquire) & bit == 0 {
        return;
    }
    let mut set = IGNORED.lock();
    let mut rest = bits;
    while rest != 0 {
        let i = rest.trailing_zeros() as usize;
        rest &= rest - 1;
        set.remove(first + i * block_size);
    }
    forget_filter_if_empty(&set);
}

/// A large, huge or sampled block at `addr` is about to be handed out: it
/// may not stay ignored.
#[cold]
#[inline(never)]
pub(crate) fn handing_out(addr: usize) {
    let mut set = IGNORED.lock();
    if set.remove(addr).is_some() {
        forget_filter_if_empty(&set);
    }
}

/// Marks the slab at `slab_start` as holding an ignored slot (the caller
/// holds `IGNORED` and has just inserted it).
pub(crate) fn mark_slab(slab_start: usize) {
    let (w, bit) = filter_bit(slab_start);
    FILTER[w].fetch_or(bit, Ordering::Release);
    IGNORING.store(true, Ordering::Release);
}

/// Marks the set as not empty (the caller holds `IGNORED` and has just
/// inserted into it).
pub(crate) fn mark_not_empty() {
    IGNORING.store(true, Ordering::Release);
}

/// Takes the lock before `fork` (see `api::init`).
pub(crate) fn lock_for_fork() {
    IGNORED.lock_for_fork();
}

/// Releases what `lock_for_fork` took.
///
/// # Safety
/// Only after `lock_for_fork`, on the thread that forked.
pub(crate) unsafe fn unlock_after_fork() {
    // SAFETY: the caller's contract.
    unsafe { IGNORED.force_unlock() };
}
