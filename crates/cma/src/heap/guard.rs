//! The allocator guard and the thread's allocator state.
//!
//! Every entry point of cma creates an `AllocatorGuard` before it touches
//! metadata and holds it until it is done (the original system's guard, as a
//! Rust RAII value). Its depth counter is per thread; `Drop` brings it back on
//! every path out, early returns and error values included, so the depth is
//! zero whenever no cma call is running on the thread. Misuse reports abort
//! the process while a guard is alive, which leaves nothing to rebalance.
//!
//! The thread state is a `thread_local!` with a `const` initialiser and no
//! `Drop`: plain ELF TLS, no lazy registration, no allocation.

use core::cell::Cell;
use core::ptr::null_mut;

use super::Heap;
use crate::pages::purge_thread;

pub(crate) struct ThreadState {
    heap: Cell<*mut Heap>,
    /// Guard depth times two; bit 0 flags work that must run outside cma (it
    /// may call malloc), done when the outermost guard is dropped. One word,
    /// so leaving cma costs one decrement and one compare.
    depth: Cell<u32>,
}

const DEPTH_STEP: u32 = 2;
const DEFERRED: u32 = 1;

thread_local! {
    static THREAD: ThreadState = const {
        ThreadState { heap: Cell::new(null_mut()), depth: Cell::new(0) }
    };
}

/// Held by every cma entry point while it works; see the module docs.
pub(crate) struct AllocatorGuard {
    heap: *mut Heap,
    /// This thread's state, found once per call (in a shared library every
    /// thread-local access is a call to `__tls_get_addr`).
    thread: *const ThreadState,
}

impl AllocatorGuard {
    /// Enters cma on this thread.
    #[inline(always)]
    pub(crate) fn enter() -> AllocatorGuard {
        let (heap, thread) = THREAD.with(|t| {
            t.depth.set(t.depth.get() + DEPTH_STEP);
            (t.heap.get(), t as *const ThreadState)
        });
        AllocatorGuard { heap, thread }
    }

    /// This thread's heap if it has one already (null otherwise).
    #[inline(always)]
    pub(crate) fn current_heap(&self) -> *mut Heap {
        self.heap
    }

    /// Records the heap the thread was just given (see `pool::acquire_heap`),
    /// for the rest of this call.
    #[inline(always)]
    pub(crate) fn adopt_heap(&mut self, heap: *mut Heap) {
        self.heap = heap;
    }
}

impl AllocatorGuard {
    /// Leaves cma for a slower path that enters it again at once: the depth
    /// comes down, and deferred work is left to the next guard's exit, so
    /// the hot path makes no call here and saves no registers.
    #[inline(always)]
    pub(crate) fn hand_over(self) {
        // SAFETY: as in `drop`.
        let t = unsafe { &*self.thread };
        t.depth.set(t.depth.get() - DEPTH_STEP);
        core::mem::forget(self);
    }
}

impl Drop for AllocatorGuard {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: the thread state outlives every guard of its thread, and
        // guards never leave the thread that made them (not Send: raw pointers).
        let t = unsafe { &*self.thread };
        let depth = t.depth.get() - DEPTH_STEP;
        t.depth.set(depth);
        if depth == DEFERRED {
            run_deferred();
        }
    }
}

/// Asks for the deferred work (starting the purge thread, which calls
/// `pthread_create`, which calls `calloc`) to run when this thread leaves
/// cma, so that cma never re-enters itself while a call is half done.
pub(crate) fn defer_purge_start() {
    THREAD.with(|t| t.depth.set(t.depth.get() | DEFERRED));
}

#[cold]
#[inline(never)]
fn run_deferred() {
    THREAD.with(|t| t.depth.set(t.depth.get() & !DEFERRED));
    purge_thread::start();
}

/// The guard depth of the calling thread: zero outside cma calls.
pub fn guard_depth() -> u32 {
    THREAD.with(|t| t.depth.get() / DEPTH_STEP)
}

pub(crate) fn set_thread_heap(heap: *mut Heap) {
    THREAD.with(|t| t.heap.set(heap));
}
