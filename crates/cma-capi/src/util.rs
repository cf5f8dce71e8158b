//! Small helpers: the re-entry check and the panic hook. errno, write(2)
//! and the writer that formats onto a file descriptor come from the engine,
//! the one place that calls libc.

use core::fmt;

pub(crate) use engine::faces::{errno, set_errno, FdWriter};

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
