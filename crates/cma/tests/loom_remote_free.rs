//! loom models of the remote-free protocol (`slab/remote_free.rs`).
//!
//! The protocol is generic over `AtomicWord`; here it runs on loom's
//! `AtomicU64`, so loom explores every interleaving (and the weak-memory
//! outcomes it models) of remote frees racing with the owner's take.
//!
//! The owner's side is modelled as in the heap: a remote free that returns
//! `NotifyOwner` flags the slab's owner word, then pushes the slab onto the
//! owner's delayed list (here: bumps a `notified` counter); the owner pops
//! the list (swaps the counter) and, if it found the slab, takes its pending
//! frees (which clears the flag first). The owner's free fast path is
//! modelled by its one test: the owner word, unflagged.

use std::sync::atomic::Ordering;

// The protocol depends on nothing but `core`, so the test compiles its file
// into itself instead of the engine exporting it.
#[path = "../src/slab/remote_free.rs"]
#[allow(dead_code)]
mod remote_free;

use loom::sync::atomic::{AtomicU64, AtomicUsize};
use loom::sync::Arc;
use loom::thread;
use remote_free::{flag_owner, mark_freed, take_pending, AtomicWord, RemoteFree, OWNER_PENDING};

struct Word(AtomicU64);

impl Word {
    fn new() -> Self {
        Word(AtomicU64::new(0))
    }
}

impl AtomicWord for Word {
    fn load(&self, order: Ordering) -> u64 {
        self.0.load(order)
    }
    fn fetch_or(&self, bits: u64, order: Ordering) -> u64 {
        self.0.fetch_or(bits, order)
    }
    fn fetch_and(&self, bits: u64, order: Ordering) -> u64 {
        self.0.fetch_and(bits, order)
    }
    fn swap(&self, value: u64, order: Ordering) -> u64 {
        self.0.swap(value, order)
    }
}

/// The owner's token in the model (any value with the flag bit clear).
const TOKEN: u64 = 0x1000;

/// A slab's remote-free state: two bitmap words, the summary and the owner
/// word, plus the owner's delayed list reduced to a counter of
/// notifications.
struct Slab {
    words: [Word; 2],
    summary: Word,
    owner: Word,
    notified: AtomicUsize,
}

impl Slab {
    fn new() -> Self {
        Slab {
            words: [Word::new(), Word::new()],
            summary: Word::new(),
            owner: Word(AtomicU64::new(TOKEN)),
            notified: AtomicUsize::new(0),
        }
    }

    /// The owner's free fast path takes the slab only when this holds.
    fn owner_fast_path_open(&self) -> bool {
        self.owner.load(Ordering::Relaxed) == TOKEN
    }

    /// A remote thread frees slot `bit` of word `w`.
    fn remote_free(&self, w: usize, bit: u64) -> RemoteFree {
        let r = mark_freed(&self.words[w], &self.summary, w, bit);
        if r == RemoteFree::NotifyOwner {
            flag_owner(&self.owner);
            // Stands for pushing the slab onto the owner's delayed list
            // (a release CAS in the heap).
            self.notified.fetch_add(1, Ordering::Release);
        }
        r
    }

    /// The owner pops its delayed list; if the slab was on it, it takes the
    /// pending frees. Returns what it took, as (word, bits).
    fn owner_collect(&self) -> Vec<(usize, u64)> {
        let mut taken = Vec::new();
        if self.notified.swap(0, Ordering::Acquire) > 0 {
            take_pending(
                &self.owner,
                &self.summary,
                |w| &self.words[w],
                |w, bits| taken.push((w, bits)),
            );
        }
        taken
    }

    fn nothing_pending(&self) -> bool {
        self.summary.load(Ordering::Relaxed) == 0
            && self.words.iter().all(|w| w.load(Ordering::Relaxed) == 0)
    }
}

/// Two remote frees of distinct slots, racing with one collection by the
/// owner; every freed slot is taken exactly once, and nothing stays pending
/// without a notification that the owner has not consumed.
fn two_remote_frees_and_the_owner(a: (usize, u64), b: (usize, u64)) {
    loom::model(move || {
        let slab = Arc::new(Slab::new());
        let remotes: Vec<_> = [a, b]
            .into_iter()
            .map(|(w, bit)| {
                let slab = Arc::clone(&slab);
                thread::spawn(move || slab.remote_free(w, bit))
            })
            .collect();
        let mut taken = slab.owner_collect();
        for r in remotes {
            let result = r.join().unwrap();
            assert_ne!(
                result,
                RemoteFree::AlreadyFreed,
                "distinct slots are never double frees"
            );
        }
        // Final collection: only if a notification is still unconsumed. If
        // something is pending with no notification left, the owner would
        // never collect it: the protocol's invariant is broken.
        taken.extend(slab.owner_collect());
        assert!(
            slab.nothing_pending(),
            "a remote free is pending but the owner was never told"
        );
        assert_eq!(slab.notified.load(Ordering::Relaxed), 0);
        assert!(
            slab.owner_fast_path_open(),
            "the owner word stays flagged with nothing pending"
        );

        let mut slots: Vec<(usize, u64)> = Vec::new();
        for (w, bits) in taken {
            let mut rest = bits;
            while rest != 0 {
                let bit = rest & rest.wrapping_neg();
                rest &= rest - 1;
                slots.push((w, bit));
            }
        }
        slots.sort();
        let mut want = vec![a, b];
        want.sort();
        assert_eq!(slots, want, "every freed slot is taken exactly once");
    });
}

#[test]
fn remote_frees_of_two_slots_in_the_same_word() {
    two_remote_frees_and_the_owner((0, 1 << 3), (0, 1 << 17));
}

#[test]
fn remote_frees_of_two_slots_in_different_words() {
    two_remote_frees_and_the_owner((0, 1 << 5), (1, 1 << 63));
}

/// Two threads free the same slot: exactly one is told `AlreadyFreed`, and
/// the other recorded the free (and, being the first, notified the owner).
#[test]
fn two_remote_frees_of_the_same_slot() {
    loom::model(|| {
        let slab = Arc::new(Slab::new());
        let frees: Vec<_> = (0..2)
            .map(|_| {
                let slab = Arc::clone(&slab);
                thread::spawn(move || slab.remote_free(1, 1 << 9))
            })
            .collect();
        let results: Vec<RemoteFree> = frees.into_iter().map(|t| t.join().unwrap()).collect();
        let already = results
            .iter()
            .filter(|&&r| r == RemoteFree::AlreadyFreed)
            .count();
        assert_eq!(already, 1, "{results:?}");
        assert!(results.contains(&RemoteFree::NotifyOwner), "{results:?}");
        assert_eq!(slab.notified.load(Ordering::Relaxed), 1);
        let taken = slab.owner_collect();
        assert_eq!(taken, vec![(1, 1 << 9)]);
        assert!(slab.nothing_pending());
    });
}

/// `is_pending` sees a remote free that happened before it (what the owner's
/// own free checks to report "already freed by another thread").
#[test]
fn a_completed_remote_free_is_seen_as_pending_by_the_owner() {
    loom::model(|| {
        let slab = Arc::new(Slab::new());
        let s = Arc::clone(&slab);
        let remote = thread::spawn(move || s.remote_free(0, 1 << 1));
        assert_eq!(remote.join().unwrap(), RemoteFree::NotifyOwner);
        assert!(remote_free::is_pending(
            &slab.words[0],
            &slab.summary,
            1 << 1
        ));
        assert!(!remote_free::is_pending(
            &slab.words[0],
            &slab.summary,
            1 << 2
        ));
        assert_eq!(slab.owner_collect(), vec![(0, 1 << 1)]);
        assert!(!remote_free::is_pending(
            &slab.words[0],
            &slab.summary,
            1 << 1
        ));
    });
}

/// The owner's free fast path checks only the owner word. Once a remote
/// free of a slot has completed (and the owner knows it: here, through a
/// release/acquire flag, as a program's own synchronisation would), the
/// fast path must stay closed until the owner has taken that free, whatever
/// the owner's collections in between: else the owner could free the slot
/// a second time unnoticed.
#[test]
fn a_completed_remote_free_closes_the_owners_fast_path_until_taken() {
    loom::model(|| {
        let slab = Arc::new(Slab::new());
        let done = Arc::new(loom::sync::atomic::AtomicBool::new(false));
        let (s, d) = (Arc::clone(&slab), Arc::clone(&done));
        let remote = thread::spawn(move || {
            s.remote_free(0, 1 << 4);
            d.store(true, Ordering::Release);
        });
        let mut taken = slab.owner_collect();
        if done.load(Ordering::Acquire) && slab.owner_fast_path_open() {
            assert!(
                taken.contains(&(0, 1 << 4)),
                "the fast path is open while a completed remote free is pending"
            );
        }
        remote.join().unwrap();
        taken.extend(slab.owner_collect());
        assert!(slab.owner_fast_path_open());
        assert_eq!(taken, vec![(0, 1 << 4)]);
        assert_eq!(slab.owner.load(Ordering::Relaxed) & OWNER_PENDING, 0);
    });
}
