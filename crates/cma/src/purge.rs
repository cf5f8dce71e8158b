//! The purge thread: gives idle free pages back to the kernel in a program
//! that has gone quiet.
//!
//! The page allocator purges on its own whenever it is entered, but a program
//! that frees a lot and then stops calling the allocator would keep that
//! memory resident forever. So, the first time enough freed memory waits to
//! be purged, cma starts one small detached thread that wakes every half
//! purge delay and purges what has been idle long enough. It never allocates
//! and holds the global lock only while purging. `purge_thread=0` in
//! `CMA_OPTIONS` turns it off. After `fork` the child starts its own when it
//! needs one.
//!
//! Where cma *is* the C allocator (libcma), libc itself calls malloc and free
//! while holding its own locks, some of which `pthread_create` takes too; a
//! lazy start there could deadlock. Such a face calls `start_purge_thread`
//! from its constructor instead, and the thread is then never started from an
//! allocator call (a forked child of such a process purges on allocator
//! calls only).

use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::global::GLOBAL;
use crate::os;

const NOT_STARTED: u8 = 0;
const RUNNING: u8 = 1;
const DISABLED: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(NOT_STARTED);
/// Whether an allocator call may start the thread (see the module docs).
static LAZY: AtomicBool = AtomicBool::new(true);

/// Dirty free bytes that make cma start the purge thread. Small amounts are
/// not worth a thread (and none is needed while the loader starts).
const START_THRESHOLD: usize = 256 * 1024;

pub(crate) fn disable() {
    STATE.store(DISABLED, Ordering::Relaxed);
}

/// In the child after `fork`: the parent's purge thread does not exist here.
pub(crate) fn forget_after_fork() {
    if STATE.load(Ordering::Relaxed) == RUNNING {
        STATE.store(NOT_STARTED, Ordering::Relaxed);
    }
}

/// Called after pages were freed, without the global lock held. The thread
/// is started when the calling thread leaves cma (see `guard`):
/// `pthread_create` allocates through us.
#[inline]
pub(crate) fn note_dirty(dirty_bytes: usize) {
    if dirty_bytes >= START_THRESHOLD
        && STATE.load(Ordering::Relaxed) == NOT_STARTED
        && LAZY.load(Ordering::Relaxed)
    {
        crate::guard::defer_purge_start();
    }
}

/// For a face where cma replaces the C allocator: starts the purge thread now
/// (unless `purge_thread=0`), and never later from inside an allocator call.
/// Call it from a library constructor, where libc holds no lock of its own.
pub fn start_purge_thread() {
    LAZY.store(false, Ordering::Relaxed);
    crate::global::ensure_init();
    start();
}

/// Starts the purge thread unless it runs (or is disabled) already. Called
/// with no guard held.
#[cold]
pub(crate) fn start() {
    if STATE
        .compare_exchange(NOT_STARTED, RUNNING, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    // SAFETY: plain pthread calls on local, initialised values; the thread
    // function has the signature pthread expects and never returns.
    unsafe {
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        libc::pthread_attr_setstacksize(&mut attr, 64 * 1024);
        let mut thread: libc::pthread_t = 0;
        if libc::pthread_create(&mut thread, &attr, purge_loop, core::ptr::null_mut()) != 0 {
            // No thread: purging still happens on allocator calls.
            STATE.store(DISABLED, Ordering::Relaxed);
        }
        libc::pthread_attr_destroy(&mut attr);
    }
}

extern "C" fn purge_loop(_: *mut libc::c_void) -> *mut libc::c_void {
    loop {
        let (delay, dirty) = {
            let mut g = GLOBAL.lock();
            let g = &mut *g;
            let now = os::now_ms();
            g.pages.purge(&mut g.meta, now, false);
            (g.pages.purge_delay_ms, g.pages.dirty_bytes)
        };
        let nap = if dirty > 0 { (delay / 2).max(10) } else { 1000 };
        os::sleep_ms(nap);
    }
}
