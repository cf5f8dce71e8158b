//! Allocation-event logging: the original system's switch
//! (`cma_set_alloc_logging` / `cma_get_alloc_logging`), now for every
//! allocation, reallocation and free that goes through the engine (the
//! malloc family, C++'s `new` and `delete`, the Rust API and `cma::Cma`),
//! not only the `cma_*` calls. Each event (operation, pointer, size, the
//! block it replaced, thread) goes to a file descriptor as one line, or to
//! a callback the program sets; an optional rate logs about one event in
//! N.
//!
//! Costs: off, nothing on the fast paths: the switch is a bit of the mode
//! byte (`MODE_EVENTS`), which sends every allocation past the fast paths
//! while it is on (as an allocation limit does), and every free past them
//! at the checked levels; at the `fast` level the slabs taken while it is
//! on carry a tagged owner word (`Heap::owner_token`) that does the same
//! for their frees. So at the `fast` level, logging turned on while the
//! program runs misses the local frees of blocks from slabs taken before
//! (`alloc_log=1` from the start logs every one). A line is formatted into
//! an `FdWriter` on the stack and written with one write(2); nothing is
//! allocated.
//!
//! The faces: libcma logs its `cma_*` calls itself, under their own names
//! (`cma_malloc`, ...; a backend's blocks never reach the engine), and
//! marks the call (`FaceLogs`) so that the engine does not log it twice.
//! An event raised inside another cma call (the callback allocating, the
//! unwinder) is not logged: the engine logs only at guard depth 1.
//!
//! Options: `alloc_log=1` turns logging on at start-up, `alloc_log_fd=N`
//! chooses the descriptor (default 2, stderr), `alloc_log_sample=N` logs
//! about one event in N.

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};

use crate::check::level::{self, MODE_EVENTS};
use crate::heap::guard::{self, guard_depth};
use crate::util::fd_writer::FdWriter;

static ENABLED: AtomicBool = AtomicBool::new(false);
static FD: AtomicI32 = AtomicI32::new(2);
/// About one event in this many is logged (1: every one).
static SAMPLE: AtomicU64 = AtomicU64::new(1);
/// Events seen while sampling (their count picks the logged ones).
static SEEN: AtomicU64 = AtomicU64::new(0);
/// The callback (`fn(&AllocEvent)` as a word; 0: none, the descriptor).
static CALLBACK: AtomicUsize = AtomicUsize::new(0);

/// Turns allocation logging on or off.
pub fn set_alloc_logging(enable: bool) {
    ENABLED.store(enable, Ordering::Relaxed);
    level::set_mode_bit(MODE_EVENTS, enable);
}

/// Whether allocation logging is on.
#[inline]
pub fn alloc_logging() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Chooses the file descriptor logged events go to.
pub(crate) fn set_log_fd(fd: i32) {
    FD.store(fd, Ordering::Relaxed);
}

/// Logs about one event in `n` (0 and 1: every one), chosen by a hash of
/// their count, so that no allocation pattern lines up with it.
pub fn set_alloc_log_sample(n: u64) {
    SAMPLE.store(n.max(1), Ordering::Relaxed);
}

/// Sends the logged events to `callback` instead of the descriptor (`None`:
/// back to the descriptor). The callback runs inside the allocator, on the
/// thread of the event: it may allocate and free (those calls are not
/// logged), but must not panic or unwind, and should be quick.
pub fn set_alloc_log_callback(callback: Option<fn(&AllocEvent<'_>)>) {
    CALLBACK.store(callback.map_or(0, |f| f as usize), Ordering::Release);
}

/// One allocator call to log.
#[derive(Clone, Copy, Debug)]
pub struct AllocEvent<'a> {
    /// The call: `alloc`, `alloc_zeroed`, `realloc`, `free` for the
    /// engine's events; the `cma_*` function's name for libcma's own.
    pub operation: &'a str,
    /// The block the call returned or was given (0 for null).
    pub pointer: usize,
    /// Bytes: the request for an allocation, the block's size for a free.
    pub size: usize,
    /// The block a `realloc` was given, when it differs from `pointer`.
    pub old_pointer: Option<usize>,
    /// The calling thread's kernel id.
    pub thread: u64,
}

/// Marks the calling thread as inside a call its face logs itself, until
/// dropped (see the module docs): a flag in the thread's words.
pub struct FaceLogs {
    was: bool,
}

impl FaceLogs {
    /// The engine logs nothing of this thread's calls until the value is
    /// dropped.
    pub fn begin() -> FaceLogs {
        FaceLogs {
            was: guard::begin_face_logs(),
        }
    }
}

impl Drop for FaceLogs {
    fn drop(&mut self) {
        guard::end_face_logs(self.was);
    }
}

/// Whether the engine's allocation paths raise events: the mode byte's bit,
/// which those paths read anyway.
#[inline(always)]
pub(crate) fn events_on() -> bool {
    level::mode() & MODE_EVENTS != 0
}

/// An engine event (the caller holds its guard): logged unless a face logs
/// the call itself, it is nested in another cma call, or sampling passes
/// it over.
#[cold]
#[inline(never)]
pub(crate) fn engine_event(operation: &str, pointer: usize, size: usize, old: Option<usize>) {
    if !alloc_logging() || guard_depth() > 1 || guard::face_logs() {
        return;
    }
    log_event(&AllocEvent {
        operation,
        pointer,
        size,
        old_pointer: old.filter(|&o| o != pointer),
        thread: guard::thread_id() as u64,
    });
}

/// Logs `event` (sampled: see `set_alloc_log_sample`) to the callback, or
/// as one line to the log's descriptor, when logging is on:
/// `cma-log: cma_realloc ptr=0x7f0c2a001040 size=200 old=0x7f0c2a001000 tid=4711`.
pub fn log_event(event: &AllocEvent<'_>) {
    if !alloc_logging() {
        return;
    }
    let n = SAMPLE.load(Ordering::Relaxed);
    if n > 1 {
        let seen = SEEN.fetch_add(1, Ordering::Relaxed);
        let h = seen.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        if h % n != 0 {
            return;
        }
    }
    let callback = CALLBACK.load(Ordering::Acquire);
    if callback != 0 {
        // SAFETY: only `set_alloc_log_callback` stores a non-zero word, and
        // it stores a `fn(&AllocEvent)`.
        let f: fn(&AllocEvent<'_>) = unsafe { core::mem::transmute(callback) };
        f(event);
        return;
    }
    let mut w = FdWriter::new(FD.load(Ordering::Relaxed));
    let _ = write!(
        w,
        "cma-log: {} ptr={:#x} size={}",
        event.operation, event.pointer, event.size
    );
    if let Some(old) = event.old_pointer {
        let _ = write!(w, " old={old:#x}");
    }
    let _ = writeln!(w, " tid={}", event.thread);
    w.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switch_reads_back_what_was_set() {
        set_alloc_logging(true);
        assert!(alloc_logging());
        set_alloc_logging(false);
        assert!(!alloc_logging());
    }
}
