//! The purge thread: gives idle free pages back to the kernel in a program
//! that has gone quiet.
//!
//! The page allocator purges on its own whenever it is entered, but a program
//! that frees a lot and then stops calling the allocator would keep that
//! memory resident forever. So, the first time enough freed memory waits to
//! be purged, cma starts one small detached thread that wakes every half
//! purge delay (every second when nothing changes) and purges what has been
//! idle long enough: free spans, the free pages inside slabs nobody
//! allocates from (`purge_slabs`), and the pages of freed descriptors
//! (`meta::meta_trim`). It never allocates and holds the page
//! allocator's lock only while purging spans and finding slabs. `purge_thread=0`
//! in `CMA_OPTIONS` turns it off. After `fork` the child starts its own when
//! it needs one. The thread is named `cma-purge` and blocks every signal
//! (`os::thread::spawn_service_thread`): it must not receive a signal the
//! program meant for its own threads.
//!
//! The thread is started outside any allocator call: `pthread_create`
//! allocates through us, so a heap that frees pages (or whose full slabs
//! become partly used, `slab_went_partial`) only asks for the start
//! (`wants_start`), and the allocator guard runs `start` when the thread
//! leaves cma. Where cma *is* the C allocator (libcma), libc itself calls
//! malloc and free while holding its own locks, some of which
//! `pthread_create` takes too; a lazy start there could deadlock. Such a face
//! starts the thread from its constructor instead (`start_eagerly`), and the
//! thread is then never started from an allocator call (a forked child of
//! such a process purges on allocator calls only).

use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

use super::purge_slabs::purge_slab_pages;
use super::PAGES;
use crate::os::{clock, thread};

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

/// Whether pages were freed with `dirty_bytes` now waiting to be purged
/// should start the thread (when the calling thread leaves cma).
#[inline]
pub(crate) fn wants_start(dirty_bytes: usize) -> bool {
    dirty_bytes >= START_THRESHOLD
        && STATE.load(Ordering::Relaxed) == NOT_STARTED
        && LAZY.load(Ordering::Relaxed)
}

/// Bytes of slabs that went from full to partly used: memory the slab pass
/// may give back (`purge_slabs`), counted only until the thread starts.
static PARTLY_USED_BYTES: AtomicUsize = AtomicUsize::new(0);

/// A slab of `bytes` went from full to partly used: perhaps time for the
/// thread, which must be started outside cma.
#[inline]
pub(crate) fn slab_went_partial(bytes: usize) -> bool {
    if STATE.load(Ordering::Relaxed) != NOT_STARTED {
        return false;
    }
    wants_start(PARTLY_USED_BYTES.fetch_add(bytes, Ordering::Relaxed) + bytes)
}

/// Starts the thread now, and never later from inside an allocator call;
/// see the module docs.
pub(crate) fn start_eagerly() {
    LAZY.store(false, Ordering::Relaxed);
    start();
}

/// Starts the purge thread unless it runs (or is disabled) already. Called
/// with no allocator guard held.
#[cold]
pub(crate) fn start() {
    if STATE
        .compare_exchange(NOT_STARTED, RUNNING, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    if !thread::spawn_service_thread(purge_loop) {
        // No thread: purging still happens on allocator calls.
        STATE.store(DISABLED, Ordering::Relaxed);
    }
}

/// The name the purge thread carries (`/proc/PID/task/TID/comm`).
const THREAD_NAME: &core::ffi::CStr = c"cma-purge";

extern "C" fn purge_loop(_: *mut libc::c_void) -> *mut libc::c_void {
    thread::set_current_name(THREAD_NAME);
    loop {
        let (delay, dirty, meta_changing) = {
            let mut pages = PAGES.lock();
            pages.purge(clock::now_ms(), false);
            (
                pages.purge_delay_ms,
                pages.dirty_bytes,
                pages.meta.trim_pending(),
            )
        };
        let slabs = purge_slab_pages();
        let busy = dirty > 0 || slabs.purged > 0 || slabs.changing || meta_changing;
        let nap = if busy { (delay / 2).max(10) } else { 1000 };
        clock::sleep_ms(nap);
    }
}
