//! The remote-free protocol: how a thread frees a slot of a slab that another
//! thread's heap owns, without locks and without touching the owner's
//! thread-local state.
//!
//! A slab has a remote bitmap (one bit per slot) and a summary word (one bit
//! per bitmap word). A remote free sets the slot's bit with `fetch_or`; the
//! bit already being set means the slot was freed twice. The free that makes
//! a bitmap word non-zero also sets the word's summary bit, and the free that
//! makes the summary non-zero tells the owner: it sets `OWNER_PENDING` in
//! the slab's owner word (`flag_owner`), then pushes the slab onto the owner
//! heap's delayed list (see `heap::remote`). The owner takes the pending
//! frees by clearing that flag, then swapping the summary and each flagged
//! word with zero.
//!
//! The flag is what keeps the owner's free fast path honest: it compares the
//! whole owner word with its own token, so a slab with remote frees pending
//! leaves the fast path for the one that checks the remote bitmap, and a
//! slot freed remotely cannot be freed again by the owner unnoticed.
//!
//! Invariants (checked by the loom model in `tests/loom_remote_free.rs`): a
//! slot freed remotely is taken by the owner exactly once; whenever some
//! bit is pending, a notification was sent after the owner's last take; and
//! once a remote free has completed, the owner word is flagged until the
//! owner takes that free.
//!
//! The functions are generic over the atomic word so that loom can model
//! them; the loom test compiles this file into itself, so it depends on
//! nothing but `core`.

use core::sync::atomic::Ordering;

/// The owner word's flag: remote frees may be pending (see the module docs).
/// Owner tokens leave this bit clear.
pub(crate) const OWNER_PENDING: u64 = 2;

/// The atomic word operations the protocol needs.
pub(crate) trait AtomicWord {
    fn load(&self, order: Ordering) -> u64;
    fn fetch_or(&self, bits: u64, order: Ordering) -> u64;
    fn fetch_and(&self, bits: u64, order: Ordering) -> u64;
    fn swap(&self, value: u64, order: Ordering) -> u64;
}

impl AtomicWord for core::sync::atomic::AtomicU64 {
    #[inline(always)]
    fn load(&self, order: Ordering) -> u64 {
        core::sync::atomic::AtomicU64::load(self, order)
    }
    #[inline(always)]
    fn fetch_or(&self, bits: u64, order: Ordering) -> u64 {
        core::sync::atomic::AtomicU64::fetch_or(self, bits, order)
    }
    #[inline(always)]
    fn fetch_and(&self, bits: u64, order: Ordering) -> u64 {
        core::sync::atomic::AtomicU64::fetch_and(self, bits, order)
    }
    #[inline(always)]
    fn swap(&self, value: u64, order: Ordering) -> u64 {
        core::sync::atomic::AtomicU64::swap(self, value, order)
    }
}

/// What a remote free must do next.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(crate) enum RemoteFree {
    /// Recorded; the owner has already been told about this slab.
    Recorded,
    /// Recorded, and this free made the slab's summary non-zero: the caller
    /// must tell the owner (`flag_owner`, then the delayed list).
    NotifyOwner,
    /// The slot was already freed by another thread and not yet taken.
    AlreadyFreed,
}

/// Records a remote free of slot `bit` of word `word_index`.
#[inline]
pub(crate) fn mark_freed<W: AtomicWord>(
    word: &W,
    summary: &W,
    word_index: usize,
    bit: u64,
) -> RemoteFree {
    let before = word.fetch_or(bit, Ordering::AcqRel);
    if before & bit != 0 {
        return RemoteFree::AlreadyFreed;
    }
    if before != 0 {
        return RemoteFree::Recorded;
    }
    let summary_before = summary.fetch_or(1 << word_index, Ordering::AcqRel);
    if summary_before == 0 {
        RemoteFree::NotifyOwner
    } else {
        RemoteFree::Recorded
    }
}

/// After `mark_freed` returned `NotifyOwner`: flags the owner word, before
/// the slab goes onto the owner's delayed list (so that the owner, which
/// clears the flag when it takes the slab's frees, never finds the slab
/// before the flag and leaves the flag set with nothing pending).
#[inline]
pub(crate) fn flag_owner<W: AtomicWord>(owner: &W) {
    owner.fetch_or(OWNER_PENDING, Ordering::AcqRel);
}

/// Owner only: whether slot `bit` of `word` was freed remotely and not yet
/// taken. A free that happened before this call is always seen: its word bit
/// is set, and the summary is non-zero until the owner takes it.
#[inline]
pub(crate) fn is_pending<W: AtomicWord>(word: &W, summary: &W, bit: u64) -> bool {
    summary.load(Ordering::Acquire) != 0 && word.load(Ordering::Acquire) & bit != 0
}

/// Owner only: takes every pending remote free, calling `taken(word_index,
/// bits)` for each non-empty word. The owner flag goes first: a free that
/// lands after this swap of the summary notifies (and flags) again.
pub(crate) fn take_pending<'a, W: AtomicWord + 'a>(
    owner: &W,
    summary: &W,
    word: impl Fn(usize) -> &'a W,
    mut taken: impl FnMut(usize, u64),
) {
    owner.fetch_and(!OWNER_PENDING, Ordering::AcqRel);
    let mut flagged = summary.swap(0, Ordering::AcqRel);
    while flagged != 0 {
        let w = flagged.trailing_zeros() as usize;
        flagged &= flagged - 1;
        let bits = word(w).swap(0, Ordering::AcqRel);
        if bits != 0 {
            taken(w, bits);
        }
    }
}
