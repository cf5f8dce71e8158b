//! The one reporting path for misuse: a single line on stderr, formatted in a
//! stack buffer and written with write(2) (no allocation, no locks), then
//! abort. The allocator guard needs no unwinding here: the process ends.

use core::fmt::{self, Write};

use crate::error::CmaError;
use crate::os;

/// A fixed buffer that `core::fmt` can write into; output past its end is
/// cut, never allocated.
pub(crate) struct StackBuf<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> StackBuf<N> {
    pub(crate) const fn new() -> Self {
        StackBuf {
            bytes: [0; N],
            len: 0,
        }
    }
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl<const N: usize> Write for StackBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = N - self.len;
        let n = s.len().min(room);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Reports misuse found in `operation` and aborts.
#[cold]
#[inline(never)]
pub(crate) fn fatal(operation: &str, error: CmaError) -> ! {
    let mut line = StackBuf::<320>::new();
    let _ = write!(line, "cma: {error} [in {operation}]");
    line.len = line.len.min(319);
    let _ = line.write_str("\n");
    os::write_stderr(line.as_bytes());
    os::abort()
}

/// Reports an internal failure with a fixed message and aborts.
#[cold]
#[inline(never)]
pub(crate) fn fatal_message(message: &[u8]) -> ! {
    os::write_stderr(message);
    os::write_stderr(b"\n");
    os::abort()
}

/// Prints a one-line warning (options, for example) and goes on.
#[cold]
pub(crate) fn warn(args: fmt::Arguments<'_>) {
    let mut line = StackBuf::<256>::new();
    let _ = line.write_str("cma: warning: ");
    let _ = line.write_fmt(args);
    let _ = line.write_str("\n");
    os::write_stderr(line.as_bytes());
}
