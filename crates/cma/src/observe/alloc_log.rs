//! The allocation-logging switch (the original system's
//! `cma_set_alloc_logging` / `cma_get_alloc_logging`) and the one line an
//! event becomes.
//!
//! The switch and the descriptor are two atomics that any thread may read
//! or write; nothing here allocates (a line is formatted into an `FdWriter`
//! on the stack and written with one write(2)). Which calls log is the
//! caller's choice: today libcma logs its `cma_*` API (see `cma.h`); the
//! event logging of every malloc, realloc and free belongs to the
//! observability work and will read the same switch.
//!
//! Options: `alloc_log=1` turns logging on at start-up, `alloc_log_fd=N`
//! chooses the descriptor (default 2, stderr).

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use crate::os::thread;
use crate::util::fd_writer::FdWriter;

static ENABLED: AtomicBool = AtomicBool::new(false);
static FD: AtomicI32 = AtomicI32::new(2);

/// Turns allocation logging on or off.
pub fn set_alloc_logging(enable: bool) {
    ENABLED.store(enable, Ordering::Relaxed);
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

/// One allocator call to log.
#[derive(Clone, Copy, Debug)]
pub struct AllocEvent<'a> {
    /// The call, as its caller names it (`cma_malloc`, `cma_free`...).
    pub operation: &'a str,
    /// The block the call returned or was given (0 for null).
    pub pointer: usize,
    /// Bytes: the request for an allocation, the block's size for a free.
    pub size: usize,
    /// The block a `realloc` was given, when it differs from `pointer`.
    pub old_pointer: Option<usize>,
}

/// Writes `event` as one line to the log's descriptor, when logging is on:
/// `cma-log: cma_realloc ptr=0x7f0c2a001040 size=200 old=0x7f0c2a001000 tid=4711`.
pub fn log_event(event: &AllocEvent<'_>) {
    if !alloc_logging() {
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
    let _ = writeln!(w, " tid={}", thread::current_id());
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
