//! The allocator guard and the thread's allocator state.
//!
//! Every entry point of cma that can leave cma's own code (take a lock, map
//! memory, call libc, report) creates an `AllocatorGuard` before it touches
//! metadata and holds it until it is done (the original system's guard, as a
//! Rust RAII value). Its depth counter is per thread; `Drop` brings it back
//! on every path out, early returns and error values included, so the depth
//! is zero whenever no cma call is running on the thread. Misuse reports
//! abort the process while a guard is alive, which leaves nothing to
//! rebalance.
//!
//! The fast paths (a cached slot handed out, an allocated slot of the
//! thread's own slab freed) take no guard: they call nothing, so nothing can
//! re-enter cma or observe a half-done call, and they write only the
//! thread's own slab bitmap and counters, which are writable at every level
//! that has fast paths (the levels that protect metadata send every call
//! through a guard). Anything rarer they meet (a refill, a slab that becomes
//! empty, any error) goes to a path that takes the guard.
//!
//! The thread's state is four words of static TLS (`os::tls`): its heap,
//! as an offset from the empty heap (so that a thread without a heap reads
//! the empty heap, and the allocation fast path needs no null check); the
//! token its heap's slabs carry at the `fast` level (`Span::owner`; 0
//! without a heap, which only descriptors of capacity 0 carry), which the
//! free fast path compares without computing the heap's address; the
//! guard's depth; and the thread's kernel id, cached for the stacks of
//! sampled blocks, with a flag set while one is being taken.

use core::ptr::null_mut;

use super::{empty_heap, Heap};
use crate::check::fault;
use crate::os::thread;
use crate::os::tls::{self, ThreadWords};
use crate::pages::purge_thread;

/// The thread's words (`os::tls`).
const HEAP_OFFSET: usize = 0;
const FAST_TOKEN: usize = 1;
const DEPTH: usize = 2;
const THREAD: usize = 3;

/// Depth steps of the depth word; its low bits flag work that must run
/// outside cma, done when the outermost guard is dropped: starting the
/// purge thread (`pthread_create` may call malloc) and installing the fault
/// handler (for the Rust crate, at its first sampled block). One word, so
/// leaving cma costs one decrement and one compare.
const DEPTH_STEP: usize = 4;
const DEFER_PURGE_START: usize = 1;
const DEFER_FAULT_HANDLER: usize = 2;

/// The flag in the thread word set while the thread takes a stack.
const CAPTURING: usize = 1 << 63;
/// The flag in the thread word set while a face logs the thread's call
/// itself (`observe::alloc_log::FaceLogs`).
const FACE_LOGS: usize = 1 << 62;
/// The thread word's flags, above its thread id.
const FLAGS: usize = CAPTURING | FACE_LOGS;

/// The calling thread's heap for the fast paths: the empty heap when the
/// thread has none yet (see `heap::empty_heap`).
#[inline(always)]
pub(crate) fn fast_heap() -> &'static Heap {
    let base = empty_heap() as *const Heap as usize;
    // SAFETY: the first word is 0 or the offset of a live heap from the
    // empty heap (`set_thread_heap`); heaps are never freed.
    unsafe { &*(tls::add_word::<HEAP_OFFSET>(base) as *const Heap) }
}

/// The owner token of the calling thread's slabs at the `fast` level (its
/// heap's address), 0 when it has no heap; see the module docs.
#[inline(always)]
pub(crate) fn fast_token() -> u64 {
    tls::word::<FAST_TOKEN>() as u64
}

/// Held by every cma entry point that can leave cma's code; see the module
/// docs.
pub(crate) struct AllocatorGuard {
    heap: *mut Heap,
    /// This thread's words, found once per call.
    thread: &'static ThreadWords,
}

impl AllocatorGuard {
    /// Enters cma on this thread.
    #[inline(always)]
    pub(crate) fn enter() -> AllocatorGuard {
        let thread = tls::words();
        thread[DEPTH].set(thread[DEPTH].get() + DEPTH_STEP);
        let heap = if thread[HEAP_OFFSET].get() == 0 {
            null_mut()
        } else {
            fast_heap() as *const Heap as *mut Heap
        };
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

impl Drop for AllocatorGuard {
    #[inline(always)]
    fn drop(&mut self) {
        let depth = self.thread[DEPTH].get() - DEPTH_STEP;
        self.thread[DEPTH].set(depth);
        // Outermost guard (depth below one step) with work flagged.
        if depth.wrapping_sub(1) < DEPTH_STEP - 1 {
            run_deferred();
        }
    }
}

/// Asks for the deferred work (starting the purge thread, which calls
/// `pthread_create`, which calls `calloc`) to run when this thread leaves
/// cma, so that cma never re-enters itself while a call is half done.
pub(crate) fn defer_purge_start() {
    let t = tls::words();
    t[DEPTH].set(t[DEPTH].get() | DEFER_PURGE_START);
}

/// Asks for the fault handler to be installed when this thread leaves cma
/// (see `check::fault`).
pub(crate) fn defer_fault_handler() {
    let t = tls::words();
    t[DEPTH].set(t[DEPTH].get() | DEFER_FAULT_HANDLER);
}

#[cold]
#[inline(never)]
fn run_deferred() {
    let t = tls::words();
    let work = t[DEPTH].get();
    t[DEPTH].set(work & !(DEPTH_STEP - 1));
    if work & DEFER_FAULT_HANDLER != 0 {
        fault::install();
    }
    if work & DEFER_PURGE_START != 0 {
        purge_thread::start();
    }
}

/// The calling thread's kernel id, cached in its words.
pub(crate) fn thread_id() -> u32 {
    let t = tls::words();
    let word = t[THREAD].get();
    if word & !FLAGS != 0 {
        return word as u32;
    }
    let tid = thread::current_id() as u32;
    t[THREAD].set(word | tid as usize);
    tid
}

/// In the child after `fork`: the thread's cached id is its parent's.
pub(crate) fn forget_thread_id() {
    let t = tls::words();
    t[THREAD].set(t[THREAD].get() & FLAGS);
}

/// Marks the calling thread's calls as logged by their face; returns
/// whether they were already (for `end_face_logs`).
pub(crate) fn begin_face_logs() -> bool {
    let t = tls::words();
    let word = t[THREAD].get();
    t[THREAD].set(word | FACE_LOGS);
    word & FACE_LOGS != 0
}

/// Ends what `begin_face_logs` began (`was`: its answer).
pub(crate) fn end_face_logs(was: bool) {
    if !was {
        let t = tls::words();
        t[THREAD].set(t[THREAD].get() & !FACE_LOGS);
    }
}

/// Whether a face logs the calling thread's current call itself.
pub(crate) fn face_logs() -> bool {
    tls::words()[THREAD].get() & FACE_LOGS != 0
}

/// Marks the calling thread as taking a stack; false when it already is (a
/// call into cma from the unwinder itself, see `os::backtrace`): then it
/// must not take another.
pub(crate) fn begin_capture() -> bool {
    let t = tls::words();
    let word = t[THREAD].get();
    t[THREAD].set(word | CAPTURING);
    word & CAPTURING == 0
}

/// Ends what `begin_capture` began (when it returned true).
pub(crate) fn end_capture() {
    let t = tls::words();
    t[THREAD].set(t[THREAD].get() & !CAPTURING);
}

/// The guard depth of the calling thread: zero outside cma calls.
pub fn guard_depth() -> u32 {
    (tls::words()[DEPTH].get() / DEPTH_STEP) as u32
}

/// Makes `heap` the calling thread's heap (null: none).
pub(crate) fn set_thread_heap(heap: *mut Heap) {
    let offset = if heap.is_null() {
        0
    } else {
        (heap as usize).wrapping_sub(empty_heap() as *const Heap as usize)
    };
    let t = tls::words();
    t[HEAP_OFFSET].set(offset);
    t[FAST_TOKEN].set(heap as usize);
}
