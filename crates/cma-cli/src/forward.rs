//! Signals for the program: `cma run` passes SIGTERM, SIGHUP, SIGINT,
//! SIGQUIT, SIGUSR1 and SIGUSR2 sent to it on to the program, then waits
//! for the program as usual, so that `kill <pid of cma>` (a CI job's
//! timeout, a service manager) stops the program instead of orphaning it,
//! and the report and the exit status still come out.
//!
//! The signals are blocked in `cma` before any thread starts, unblocked
//! again in the program's process between fork and exec (`unblock_in_child`:
//! a blocked mask survives exec, and the program would never see them), and
//! one thread of `cma` takes them with `sigwaitinfo`. A signal the terminal sent (^C, ^\, a
//! hangup) went to the program's process group as well, so it is not sent
//! twice.

use std::sync::atomic::{AtomicI32, Ordering};

const FORWARDED: [i32; 6] = [
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// The program's pid once it runs (0 before).
static PROGRAM: AtomicI32 = AtomicI32::new(0);

fn forwarded_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in FORWARDED {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// Blocks the forwarded signals in the calling thread (and every thread it
/// starts later). Call before the program is spawned and before any other
/// thread exists.
pub fn block() {
    let set = forwarded_set();
    // SAFETY: a valid, initialised set; the old mask is not needed.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// Unblocks the forwarded signals again: for the program's process, between
/// fork and exec (`CommandExt::pre_exec`). Only async-signal-safe calls.
pub fn unblock_in_child() -> std::io::Result<()> {
    let set = forwarded_set();
    // SAFETY: a valid, initialised set; sigprocmask is async-signal-safe.
    if unsafe { libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Starts passing the blocked signals on to `pid`.
pub fn start(pid: u32) {
    PROGRAM.store(pid as i32, Ordering::Release);
    std::thread::spawn(|| {
        let set = forwarded_set();
        loop {
            // SAFETY: a valid set, and a zeroed siginfo for the kernel to fill.
            let (sig, info) = unsafe {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                (libc::sigwaitinfo(&set, &mut info), info)
            };
            if sig < 0 {
                continue;
            }
            // si_code > 0 means the kernel made the signal (a terminal's ^C
            // or hangup), and it reached the program's process group too.
            if info.si_code > 0 {
                continue;
            }
            let pid = PROGRAM.load(Ordering::Acquire);
            if pid > 0 {
                // SAFETY: kill has no memory preconditions; `pid` is the
                // program's (never 0, which would mean our process group).
                unsafe { libc::kill(pid, sig) };
            }
        }
    });
}
