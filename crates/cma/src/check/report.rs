//! The one reporting path for misuse: a single line on stderr, formatted in a
//! stack buffer and written with write(2) (no allocation, no locks), then
//! abort. The allocator guard needs no unwinding here: the process ends.

use core::fmt::{self, Write};

use super::error::CmaError;
use crate::os::{process, thread};
use crate::util::stack_buf::StackBuf;

/// Reports misuse found in `operation` and aborts. The line names the
/// process (pid and command line), so that in a tree of processes sharing a
/// stderr each report says whose it is, and the thread (its id and name).
#[cold]
#[inline(never)]
pub(crate) fn fatal(operation: &str, error: CmaError) -> ! {
    let mut line = StackBuf::<640>::new();
    let mut command = [0u8; 160];
    let command = process::command_line(&mut command);
    let mut name = [0u8; 16];
    let name = thread::current_name(&mut name);
    let _ = write!(
        line,
        "cma: {error} [in {operation}] [pid {}: {}] [thread {} '{}']",
        process::pid(),
        utf8_prefix(command),
        thread::current_id(),
        utf8_prefix(name)
    );
    line.truncate(639);
    let _ = line.write_str("\n");
    process::write_stderr(line.as_bytes());
    process::abort()
}

/// The longest valid UTF-8 start of `bytes` (a command line cut in the
/// middle of a character, or not UTF-8 at all, still shows what it can).
fn utf8_prefix(bytes: &[u8]) -> &str {
    match core::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""),
    }
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
