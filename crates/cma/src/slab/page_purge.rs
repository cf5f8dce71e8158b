//! Who may touch a slab's free pages: its owner, which hands out slots of
//! its current slab from one cached bitmap word, or the purge pass, which
//! gives the whole pages of free slots back to the kernel.
//!
//! Slot metadata lives out of line, so a free slot holds nothing cma needs
//! and the pages under free slots can be decommitted while the slab's other
//! slots are live: that is how resident memory follows what a program uses
//! when its frees are scattered over partly used slabs. The danger is a page
//! decommitted under a slot that was just handed out and written. The owner
//! hands slots out only from the slots its cache was loaded with
//! (`Span::cache_word` and `cache_mask`, published while the slab is
//! `LOADING`; the cache only shrinks until the next load), so the pass
//! leaves their pages alone and holds the slab while it works. A cache of a
//! large size class takes only a few slots (`slab::size_class::cache_slots`),
//! so that little of a current slab stays out of the pass's reach:
//!
//! - `CURRENT`: the owner's current slab; `cache_word` is the word its
//!   cache came from;
//! - `LOADING`: the owner is loading its cache from another word;
//! - `IDLE`: a live slab that is not current (only frees reach it, and frees
//!   only add free pages);
//! - `PURGING_IDLE`, `PURGING_CURRENT`: the purge pass holds it;
//! - `NONE`: not a live slab (a zeroed descriptor, a retired one).
//!
//! The owner's moves (`make_current`, `leave_current`, `begin_load`,
//! `retire`) wait while the pass holds the slab (one slab's scan and a few
//! `madvise` calls); the pass takes a slab with a compare-and-swap and never
//! waits. A descriptor the pass found under the page lock and holds cannot
//! be retired, so its pages stay its own until the pass lets go.

use core::sync::atomic::Ordering;

use crate::meta::span::Span;
use crate::os::{process, thread};

pub(crate) const NONE: u8 = 0;
pub(crate) const IDLE: u8 = 1;
pub(crate) const CURRENT: u8 = 2;
pub(crate) const LOADING: u8 = 3;
pub(crate) const PURGING_IDLE: u8 = 4;
pub(crate) const PURGING_CURRENT: u8 = 5;

/// `Span::cache_word` when the slab has no cache.
pub(crate) const NO_CACHE_WORD: u32 = u32::MAX;

/// How many times the owner looks again while the pass holds a slab before
/// it gives up as if the pass had hung (one slab's scan takes microseconds).
const WAIT_BOUND: u32 = 10_000_000;

/// Owner: a new slab, current from the start, with no cache yet.
pub(crate) fn start_current(slab: &Span) {
    slab.cache_word.store(NO_CACHE_WORD, Ordering::Relaxed);
    slab.used_at_purge.store(u32::MAX, Ordering::Relaxed);
    slab.purge_state.store(CURRENT, Ordering::Release);
}

/// Owner: `slab` (idle) becomes its class's current slab.
pub(crate) fn make_current(slab: &Span) {
    slab.cache_word.store(NO_CACHE_WORD, Ordering::Relaxed);
    move_state(slab, IDLE, CURRENT);
}

/// Owner: `slab` (current, its cache given back) stops being current: the
/// pass may purge it again, all of it.
pub(crate) fn leave_current(slab: &Span) {
    move_state(slab, CURRENT, IDLE);
    slab.used_at_purge.store(u32::MAX, Ordering::Relaxed);
}

/// Owner: about to load the cache of its current slab from another word.
pub(crate) fn begin_load(slab: &Span) {
    move_state(slab, CURRENT, LOADING);
}

/// Owner: the cache now holds slots `mask` of bitmap word `word` (or
/// nothing: `NO_CACHE_WORD`).
pub(crate) fn end_load(slab: &Span, word: u32, mask: u64) {
    slab.cache_word.store(word, Ordering::Relaxed);
    slab.cache_mask.store(mask, Ordering::Relaxed);
    slab.purge_state.store(CURRENT, Ordering::Release);
}

/// Owner: `slab` (current or idle) is about to go back to the page
/// allocator.
pub(crate) fn retire(slab: &Span) {
    let from = slab.purge_state.load(Ordering::Relaxed);
    let from = match from {
        PURGING_CURRENT => CURRENT,
        PURGING_IDLE => IDLE,
        other => other,
    };
    move_state(slab, from, NONE);
}

/// Moves `slab` from `from` (an owner state) to `to`, waiting while the
/// purge pass holds it.
fn move_state(slab: &Span, from: u8, to: u8) {
    let held = if from == CURRENT {
        PURGING_CURRENT
    } else {
        PURGING_IDLE
    };
    let mut waits = 0u32;
    loop {
        match slab
            .purge_state
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return,
            Err(now) if now == held => {
                waits += 1;
                if waits > WAIT_BOUND {
                    process::die(b"cma: the purge pass held a slab for too long; aborting instead of hanging");
                }
                thread::yield_now();
            }
            // Only the owner moves a slab between its own states.
            Err(_) => {
                debug_assert!(false, "slab in an unexpected purge state");
                slab.purge_state.store(to, Ordering::Release);
                return;
            }
        }
    }
}

/// Purge pass: takes an idle or current slab. Returns the slots the owner
/// may be handing out, as (bitmap word, slots of that word) with
/// `NO_CACHE_WORD` for none, or `None` when the slab could not be taken.
pub(crate) fn try_hold(slab: &Span) -> Option<(u32, u64)> {
    let state = slab.purge_state.load(Ordering::Acquire);
    let held = match state {
        IDLE => PURGING_IDLE,
        CURRENT => PURGING_CURRENT,
        _ => return None,
    };
    slab.purge_state
        .compare_exchange(state, held, Ordering::AcqRel, Ordering::Relaxed)
        .ok()?;
    Some(if held == PURGING_CURRENT {
        (
            slab.cache_word.load(Ordering::Relaxed),
            slab.cache_mask.load(Ordering::Relaxed),
        )
    } else {
        (NO_CACHE_WORD, 0)
    })
}

/// Purge pass: lets go of a slab it holds.
pub(crate) fn release(slab: &Span) {
    let back = match slab.purge_state.load(Ordering::Relaxed) {
        PURGING_CURRENT => CURRENT,
        _ => IDLE,
    };
    slab.purge_state.store(back, Ordering::Release);
}
