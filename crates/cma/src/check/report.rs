//! The one reporting path for misuse: a single line on stderr, formatted in a
//! stack buffer and written with write(2) (no allocation, no locks), then
//! abort. The allocator guard needs no unwinding here: the process ends.

use core::fmt::{self, Write};

use super::error::CmaError;
use crate::os::process;
use crate::util::stack_buf::StackBuf;

/// Reports misuse found in `operation` and aborts.
#[cold]
#[inline(never)]
pub(crate) fn fatal(operation: &str, error: CmaError) -> ! {
    let mut line = StackBuf::<320>::new();
    let _ = write!(line, "cma: {error} [in {operation}]");
    line.truncate(319);
    let _ = line.write_str("\n");
    process::write_stderr(line.as_bytes());
    process::abort()
}

/// Prints a one-line warning (options, for example) and goes on.
#[cold]
pub(crate) fn warn(args: fmt::Arguments<'_>) {
    let mut line = StackBuf::<256>::new();
    let _ = line.write_str("cma: warning: ");
    let _ = line.write_fmt(args);
    let _ = line.write_str("\n");
    process::write_stderr(line.as_bytes());
}
