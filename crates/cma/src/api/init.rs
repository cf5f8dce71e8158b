//! Process-wide start-up and fork.
//!
//! Initialisation happens on the first call from any thread that needs a
//! heap, even before `main` or while the dynamic loader runs: it reads
//! `CMA_OPTIONS`, creates the thread-exit key (keys below 32 need no
//! allocation in glibc) and registers fork handlers, and calls nothing that
//! could allocate through us before it is done.
//!
//! fork: every lock of the engine is taken in the prepare handler and
//! released on both sides, so a child never inherits one held.

use core::sync::atomic::{AtomicU8, Ordering};

use crate::check::{level, trailer};
use crate::guarded;
use crate::heap::guard::{self, AllocatorGuard};
use crate::heap::{arena, pool, Heap};
use crate::options;
use crate::os::{process, thread};
use crate::pages::{purge_thread, PAGES};
use crate::track::{ignored, registry};

const UNINIT: u8 = 0;
const RUNNING: u8 = 1;
const READY: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(UNINIT);

/// The level a `GlobalAlloc` type asks for (`CmaFast`), applied when cma
/// initialises unless `CMA_OPTIONS` names one: 0 none, 1 fast.
static PREFERRED: AtomicU8 = AtomicU8::new(0);

/// Asks for the `fast` level at initialisation, unless `CMA_OPTIONS` names
/// a level. No effect once cma has initialised.
pub(crate) fn prefer_fast_level() {
    PREFERRED.store(1, Ordering::Relaxed);
}

fn preferred_level() -> Option<level::CheckLevel> {
    (PREFERRED.load(Ordering::Relaxed) == 1).then_some(level::CheckLevel::Fast)
}

/// The calling thread's heap, acquiring one (and initialising cma first) on
/// the thread's first call. Null only when no memory is left for a heap.
#[inline(always)]
pub(crate) fn thread_heap(guard: &mut AllocatorGuard) -> *mut Heap {
    let heap = guard.current_heap();
    if !heap.is_null() {
        return heap;
    }
    first_heap(guard)
}

#[cold]
#[inline(never)]
fn first_heap(guard: &mut AllocatorGuard) -> *mut Heap {
    ensure_init();
    let heap = pool::acquire_heap();
    guard.adopt_heap(heap);
    heap
}

/// Whether cma has initialised.
#[inline(always)]
pub(crate) fn initialised() -> bool {
    STATE.load(Ordering::Acquire) == READY
}

/// Makes sure the process-wide state is set up. Cheap after the first call.
#[inline]
pub(crate) fn ensure_init() {
    if STATE.load(Ordering::Acquire) != READY {
        init_slow();
    }
}

#[cold]
fn init_slow() {
    if STATE
        .compare_exchange(UNINIT, RUNNING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        // Another thread is initialising: wait for it, with a bound.
        let mut spins = 0u64;
        while STATE.load(Ordering::Acquire) != READY {
            thread::yield_now();
            spins += 1;
            if spins > 50_000_000 {
                process::die(b"cma: initialisation did not finish; aborting instead of hanging");
            }
        }
        return;
    }
    options::load_from_env();
    if !level::chosen() {
        if let Some(preferred) = preferred_level() {
            level::set_level(preferred);
        }
    }
    // The canaries' secret, whatever the level (the default level has them).
    trailer::ensure_secret();
    pool::init_thread_exit();
    STATE.store(READY, Ordering::Release);
    // Registered after READY: glibc may allocate while registering, and that
    // allocation must find cma ready.
    thread::at_fork(fork_prepare, fork_parent, fork_child);
}

/// For a face where cma replaces the C allocator: starts the purge thread now
/// (unless `purge_thread=0`), and never later from inside an allocator call.
/// Call it from a library constructor, where libc holds no lock of its own.
pub(crate) fn start_purge_thread() {
    ensure_init();
    purge_thread::start_eagerly();
}

extern "C" fn fork_prepare() {
    pool::lock_for_fork();
    guarded::lock_for_fork();
    arena::lock_for_fork();
    PAGES.lock_for_fork();
    // Taken under the page lock by the leak walk: after it.
    ignored::lock_for_fork();
    registry::lock_for_fork();
}

extern "C" fn fork_parent() {
    // SAFETY: `fork_prepare` took the locks on this thread.
    unsafe {
        registry::unlock_after_fork();
        ignored::unlock_after_fork();
        PAGES.force_unlock();
        arena::unlock_after_fork();
        guarded::unlock_after_fork();
        pool::unlock_after_fork();
    }
}

extern "C" fn fork_child() {
    // SAFETY: the child runs one thread; the locks were taken by
    // `fork_prepare` in the thread that forked, which is this one.
    unsafe {
        registry::unlock_after_fork();
        ignored::unlock_after_fork();
        PAGES.force_unlock();
        arena::unlock_after_fork();
        guarded::unlock_after_fork();
        pool::unlock_after_fork();
    }
    purge_thread::forget_after_fork();
    guard::forget_thread_id();
    // The heaps of the parent's other threads stay assigned: one of those
    // threads may have been in the middle of a heap operation at the fork, so
    // reusing its heap here could inherit half-updated lists. Their blocks
    // can still be freed in the child; their memory is simply not reused.
}
