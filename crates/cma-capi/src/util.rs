//! Small helpers: formatting into a fixed buffer that flushes to a file
//! descriptor, the re-entry check and the panic hook. errno and write(2)
//! come from the engine's `os` layer, the one place that calls libc.

use core::fmt;

use engine::faces::write_fd;
pub(crate) use engine::faces::{errno, set_errno};

/// A `fmt::Write` sink that collects text in a fixed buffer and flushes it to
/// a file descriptor when full: formatting without allocating.
pub(crate) struct FdWriter {
    fd: i32,
    buf: [u8; 4096],
    len: usize,
    pub(crate) ok: bool,
}

impl FdWriter {
    pub(crate) fn new(fd: i32) -> FdWriter {
        FdWriter {
            fd,
            buf: [0; 4096],
            len: 0,
            ok: true,
        }
    }

    /// Appends one raw byte (text that may not be UTF-8).
    pub(crate) fn write_byte(&mut self, b: u8) {
        if self.len == self.buf.len() {
            self.flush();
        }
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    pub(crate) fn flush(&mut self) {
        let pending = self.buf.get(..self.len).unwrap_or(&[]);
        if !write_fd(self.fd, pending) {
            self.ok = false;
        }
        self.len = 0;
    }
}

impl fmt::Write for FdWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                self.flush();
            }
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
        Ok(())
    }
}

/// In debug builds (the ones `cargo test` uses), checks that an exported
/// allocation function was not entered from inside the engine: cma must
/// never call malloc (or anything that does) while it holds its guard. A
/// release build skips the check (it costs a TLS read per call).
#[inline(always)]
pub(crate) fn assert_not_reentered(function: &str) {
    if cfg!(debug_assertions) && engine::guard_depth() != 0 {
        reentered(function)
    }
}

#[cold]
#[inline(never)]
fn reentered(function: &str) -> ! {
    let mut w = FdWriter::new(2);
    let _ = fmt::Write::write_fmt(
        &mut w,
        format_args!("cma: internal error: {function} called from inside cma (recursion into the allocator)\n"),
    );
    w.flush();
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

/// Makes a panic inside libcma (a failed assertion of the engine: a bug) end
/// the process at once with one `cma: internal error: ...` line, written
/// without allocating. The default hook would allocate, and the allocator may
/// be the thing that is stuck (it may hold its lock): that turned a failed
/// assertion into a 60-second wait. Only libcma's own copy of std is
/// affected: a Rust program that preloads libcma keeps its own hook.
pub(crate) fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let mut w = FdWriter::new(2);
        let _ = fmt::Write::write_fmt(&mut w, format_args!("cma: internal error: {info}\n"));
        w.flush();
        // SAFETY: abort has no preconditions.
        unsafe { libc::abort() }
    }));
}
