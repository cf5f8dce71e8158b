//! A stack of every thread of this process, written to stderr when the
//! stress run stalls, without a debugger and without allocating (the
//! allocator under test may be the thing that hangs, holding its lock).
//!
//! How: the watchdog thread lists the process's threads from
//! `/proc/self/task` (raw `getdents64` into a stack buffer: `opendir`
//! would call malloc) and sends each a signal (`tgkill`); the handler, on
//! the signalled thread, captures its own return addresses with glibc's
//! `backtrace` (primed once at start, when it may still load the unwinder)
//! and writes them with `backtrace_symbols_fd`, which writes without
//! allocating: `module(symbol+offset)[address]`, with the symbol when the
//! module exports one. The threads answer one at a time (each within two
//! seconds, or it is named as not answering), so their lines do not mix.
//! `cma stress` (the parent process, not preloaded) then names the frames
//! without a symbol with `addr2line` when it is installed.

use core::ffi::{c_int, c_void};
use core::fmt::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use engine::faces::FdWriter;

/// The signal that asks a thread for its stack.
const STACK_SIGNAL: c_int = libc::SIGUSR2;
/// Frames per stack at most.
const MAX_FRAMES: usize = 64;
/// How long a thread may take to write its stack.
const ANSWER_TIME: Duration = Duration::from_secs(2);

/// Handlers that finished writing a stack.
static ANSWERED: AtomicU32 = AtomicU32::new(0);

/// The first line of the section of stacks, and its last: `cma stress`
/// symbolizes what lies between.
pub const BEGIN: &str = "cma stress: stacks of every thread:";
pub const END: &str = "cma stress: end of stacks";
/// Starts each thread's stack: `cma stress: thread TID (NAME):`.
pub const THREAD_PREFIX: &str = "cma stress: thread ";

/// Installs the handler and loads the unwinder (the first `backtrace` may
/// call malloc: it must not happen for the first time in a handler).
pub fn prepare() {
    let mut frames = [core::ptr::null_mut::<c_void>(); 4];
    // SAFETY: `frames` has room for 4 entries.
    unsafe { libc::backtrace(frames.as_mut_ptr(), frames.len() as c_int) };
    // SAFETY: a zeroed sigaction with a plain handler and an empty mask is
    // valid; SA_RESTART resumes the system call the thread was in.
    unsafe {
        let mut action: libc::sigaction = core::mem::zeroed();
        action.sa_sigaction = write_own_stack as extern "C" fn(c_int) as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(STACK_SIGNAL, &action, core::ptr::null_mut());
    }
}

/// The signal handler: writes the calling thread's stack on stderr. Only
/// async-signal-safe calls (prctl, write, and backtrace once primed).
extern "C" fn write_own_stack(_signal: c_int) {
    // SAFETY: errno is the calling thread's; the handler restores it.
    let saved_errno = unsafe { *libc::__errno_location() };
    let mut name = [0u8; 17];
    // SAFETY: PR_GET_NAME writes at most 16 bytes and a NUL.
    unsafe {
        libc::prctl(
            libc::PR_GET_NAME,
            name.as_mut_ptr() as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    let name_len = name.iter().position(|&b| b == 0).unwrap_or(16);
    let mut frames = [core::ptr::null_mut::<c_void>(); MAX_FRAMES];
    // SAFETY: `frames` has room for MAX_FRAMES entries.
    let n = unsafe { libc::backtrace(frames.as_mut_ptr(), MAX_FRAMES as c_int) };
    let mut w = FdWriter::new(2);
    // SAFETY: gettid cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    let _ = write!(w, "{THREAD_PREFIX}{tid} (");
    w.write_bytes(&name[..name_len]);
    let _ = writeln!(w, "):");
    w.flush();
    // The first two frames are this handler and the kernel's signal
    // trampoline: the thread's own stack starts after them.
    let skip = if n > 2 { 2 } else { 0 };
    // SAFETY: the first `n` entries were filled by backtrace.
    unsafe { libc::backtrace_symbols_fd(frames.as_ptr().add(skip as usize), n - skip, 2) };
    ANSWERED.fetch_add(1, Ordering::Release);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved_errno };
}

/// The ids of the process's threads, read from `/proc/self/task` without
/// allocating; returns how many were stored in `out`.
fn thread_ids(out: &mut [i32]) -> usize {
    // SAFETY: a NUL-terminated path; the descriptor is closed below.
    let fd = unsafe {
        libc::open(
            c"/proc/self/task".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return 0;
    }
    let mut count = 0;
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: getdents64 writes at most `buf.len()` bytes into `buf`.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
        if n <= 0 {
            break;
        }
        let mut at = 0usize;
        while at + 19 < n as usize {
            // struct linux_dirent64: d_ino (8), d_off (8), d_reclen (2),
            // d_type (1), then the NUL-terminated name.
            let reclen = u16::from_ne_bytes([buf[at + 16], buf[at + 17]]) as usize;
            if reclen == 0 {
                break;
            }
            let name = &buf[at + 19..(at + reclen).min(n as usize)];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            let mut tid: i32 = 0;
            let numeric = !name.is_empty() && name.iter().all(u8::is_ascii_digit);
            for &d in name.iter().filter(|_| numeric) {
                tid = tid.saturating_mul(10).saturating_add((d - b'0') as i32);
            }
            if numeric && count < out.len() {
                out[count] = tid;
                count += 1;
            }
            at += reclen;
        }
    }
    // SAFETY: `fd` is ours.
    unsafe { libc::close(fd) };
    count
}

/// Reads `/proc/self/task/TID/FILE` into `buf` without allocating; returns
/// what was read.
fn read_task_file<'a>(tid: i32, file: &core::ffi::CStr, buf: &'a mut [u8]) -> &'a [u8] {
    let mut path = [0u8; 64];
    let mut w = SliceWriter {
        buf: &mut path,
        len: 0,
    };
    let _ = write!(w, "/proc/self/task/{tid}/");
    w.push(file.to_bytes());
    w.push(b"\0");
    if w.len >= 64 {
        return &[];
    }
    // SAFETY: `path` is NUL-terminated; the descriptor is closed below.
    let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return &[];
    }
    // SAFETY: read writes at most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: `fd` is ours.
    unsafe { libc::close(fd) };
    &buf[..n.max(0) as usize]
}

/// The value of `KEY:` in a `/proc` status file, trimmed.
fn field<'a>(status: &'a [u8], key: &[u8]) -> &'a [u8] {
    for line in status.split(|&b| b == b'\n') {
        if let Some(value) = line.strip_prefix(key) {
            let start = value
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(value.len());
            return &value[start..];
        }
    }
    b"?"
}

/// Whether `SigBlk:` in a status file has the stack signal's bit.
fn blocks_stack_signal(status: &[u8]) -> bool {
    let mask = field(status, b"SigBlk:");
    let mut bits: u64 = 0;
    for &d in mask {
        let Some(v) = (d as char).to_digit(16) else {
            return false;
        };
        bits = (bits << 4) | u64::from(v);
    }
    bits & (1 << (STACK_SIGNAL - 1)) != 0
}

/// A `fmt::Write` into a byte slice (what does not fit is dropped).
struct SliceWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl SliceWriter<'_> {
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
            }
            self.len += 1;
        }
    }
}

impl Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

/// Writes the stack of every thread of the process (this one included),
/// one thread after the other, between `BEGIN` and `END`.
pub fn write_all() {
    let mut w = FdWriter::new(2);
    let _ = writeln!(w, "{BEGIN}");
    w.flush();
    let mut tids = [0i32; 256];
    let n = thread_ids(&mut tids);
    // SAFETY: getpid cannot fail.
    let pid = unsafe { libc::getpid() };
    for &tid in &tids[..n] {
        let mut status = [0u8; 2048];
        let status = read_task_file(tid, c"status", &mut status);
        if blocks_stack_signal(status) {
            // It would never answer (cma's own purge thread blocks every
            // signal): say what the kernel knows instead.
            let _ = write!(w, "{THREAD_PREFIX}{tid} (");
            w.write_bytes(field(status, b"Name:"));
            let _ = write!(w, "): blocks signals, no stack; state ");
            w.write_bytes(field(status, b"State:"));
            let _ = writeln!(w);
            w.flush();
            continue;
        }
        let before = ANSWERED.load(Ordering::Acquire);
        // SAFETY: tgkill sends a signal whose handler is installed.
        if unsafe { libc::tgkill(pid, tid, STACK_SIGNAL) } != 0 {
            continue; // the thread ended meanwhile
        }
        let asked = Instant::now();
        while ANSWERED.load(Ordering::Acquire) == before {
            if asked.elapsed() > ANSWER_TIME {
                let _ = writeln!(
                    w,
                    "{THREAD_PREFIX}{tid}: did not answer within {} s (signals blocked, or stuck in the loader)",
                    ANSWER_TIME.as_secs()
                );
                w.flush();
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let _ = writeln!(w, "{END}");
    w.flush();
}
