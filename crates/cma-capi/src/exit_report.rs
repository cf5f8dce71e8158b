//! The heap report written at process exit, when `CMA_OPTIONS` holds
//! `report=FILE` (`report=stderr` writes it on stderr). In `FILE`, `%p` is
//! replaced by the process id, so that forked children (which inherit the
//! option) write their own files instead of overwriting their parent's; `cma
//! run` relies on that.
//!
//! The option is read by the library's constructor (`.init_array`, which
//! also installs libcma's panic hook), when the environment is complete; the report is written by a destructor (`.fini_array`), which
//! runs after `main` returns or `exit` is called, and after the `atexit`
//! handlers and the destructors of the libraries loaded after libcma. Nothing
//! is written when the process dies by a signal or calls `_exit`.
//!
//! The report is formatted with `core::fmt` into a stack buffer and written
//! with `open`/`write`/`close`: no allocation, no `stdio`.
//!
//! The format is line based, one `key value` pair a line, then one line per
//! size class that was used. Version 2 added the `command` line (the
//! process's command line, arguments separated by spaces, at most 512
//! bytes):
//!
//! ```text
//! cma-report 2
//! pid 4242
//! command ./prog --flag
//! allocations 1234
//! frees 1200
//! bytes_in_use 5678
//! peak_bytes_in_use 91011
//! large_allocations 3
//! large_frees 2
//! heaps 1
//! mapped_bytes 4194304
//! metadata_bytes 65536
//! class <index> <block size> <allocations> <frees> <blocks in use> <peak blocks in use>
//! end
//! ```

use core::cell::UnsafeCell;
use core::ffi::c_char;
use core::fmt::Write;

use crate::util::FdWriter;

const PATH_MAX: usize = 4096;

/// The report destination read at start-up: NUL-terminated, empty for none.
struct ReportPath(UnsafeCell<[u8; PATH_MAX]>);

// SAFETY: written once by the constructor, before any thread of the program
// exists, and only read afterwards.
unsafe impl Sync for ReportPath {}

static REPORT_PATH: ReportPath = ReportPath(UnsafeCell::new([0; PATH_MAX]));

/// The last `report=` and `loaded=` values in a `CMA_OPTIONS` list, read
/// with the engine's parser (which warns about nothing here: the engine
/// itself reports bad options once, when it initialises).
fn front_end_options(options: &[u8]) -> (Option<&[u8]>, Option<&[u8]>) {
    let (mut report, mut loaded) = (None, None);
    engine::options::parse(options, |item| match item {
        Ok(engine::options::Setting::Report(p)) => report = Some(p),
        Ok(engine::options::Setting::Loaded(p)) => loaded = Some(p),
        _ => {}
    });
    (report, loaded)
}

/// Creates the (empty) file `loaded=` names, with `%p` expanded: the sign
/// for `cma run` that this process ran on cma.
fn mark_loaded(template: &[u8]) {
    let mut path = [0u8; PATH_MAX];
    if template.is_empty() {
        return;
    }
    let fd = create_for_pid(template, &mut path);
    if fd >= 0 {
        // SAFETY: `fd` is ours and open.
        unsafe { libc::close(fd) };
    }
}

/// Creates (or truncates) the file `template` names with `%p` expanded to
/// this process's id, for writing; the expanded path is left in `path`.
/// Returns the descriptor, or -1 (errno set) when the file cannot be made.
fn create_for_pid(template: &[u8], path: &mut [u8; PATH_MAX]) -> i32 {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    if !expand_path(template, pid, path) {
        crate::util::set_errno(libc::ENAMETOOLONG);
        return -1;
    }
    // SAFETY: `path` is NUL-terminated; the flags and mode are valid.
    unsafe {
        libc::open(
            path.as_ptr().cast::<c_char>(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o644 as libc::c_uint,
        )
    }
}

/// The library's constructor: installs the panic hook, then reads the
/// report option.
extern "C" fn init() {
    crate::util::install_panic_hook();
    read_options();
    // Here, not lazily from inside malloc or free: libc calls those while
    // holding locks that pthread_create takes too.
    engine::faces::start_purge_thread();
}

fn read_options() {
    // SAFETY: getenv returns null or a NUL-terminated string of the
    // environment, which no other thread changes during start-up.
    let options = unsafe {
        let p = libc::getenv(c"CMA_OPTIONS".as_ptr());
        if p.is_null() {
            return;
        }
        core::ffi::CStr::from_ptr(p).to_bytes()
    };
    let (report, loaded) = front_end_options(options);
    if let Some(loaded) = loaded {
        mark_loaded(loaded);
    }
    let Some(path) = report else {
        return;
    };
    if path.is_empty() || path.len() >= PATH_MAX {
        return;
    }
    // SAFETY: constructors run before the program's threads exist; nothing
    // else reads or writes REPORT_PATH now.
    let buf = unsafe { &mut *REPORT_PATH.0.get() };
    if let Some(dst) = buf.get_mut(..path.len()) {
        dst.copy_from_slice(path);
    }
}

/// Expands `%p` to the process id into `out` (NUL-terminated). False when
/// the result does not fit.
fn expand_path(template: &[u8], pid: i32, out: &mut [u8; PATH_MAX]) -> bool {
    let mut digits = [0u8; 16];
    let mut n = 0;
    let mut v = pid.unsigned_abs();
    loop {
        if let Some(d) = digits.get_mut(n) {
            *d = b'0' + (v % 10) as u8;
        }
        n += 1;
        v /= 10;
        if v == 0 || n == digits.len() {
            break;
        }
    }
    let mut len = 0;
    let mut push = |b: u8| -> bool {
        match out.get_mut(len) {
            Some(slot) if len + 1 < PATH_MAX => {
                *slot = b;
                len += 1;
                true
            }
            _ => false,
        }
    };
    let mut i = 0;
    while let Some(&b) = template.get(i) {
        if b == b'%' && template.get(i + 1) == Some(&b'p') {
            for k in (0..n).rev() {
                if !push(digits.get(k).copied().unwrap_or(b'0')) {
                    return false;
                }
            }
            i += 2;
            continue;
        }
        if !push(b) {
            return false;
        }
        i += 1;
    }
    push(0)
}

/// Writes the report of the current statistics to `fd`.
pub fn write_report(fd: i32) -> bool {
    let s = engine::stats();
    let mut w = FdWriter::new(fd);
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let _ = write!(w, "cma-report 2\npid {pid}\ncommand ");
    let mut command = [0u8; 512];
    for &b in engine::faces::command_line(&mut command) {
        // One line: a newline inside an argument becomes a space.
        w.write_byte(if b == b'\n' { b' ' } else { b });
    }
    let _ = write!(
        w,
        "\nallocations {}\nfrees {}\nbytes_in_use {}\npeak_bytes_in_use {}\n\
         large_allocations {}\nlarge_frees {}\nheaps {}\nmapped_bytes {}\nmetadata_bytes {}\n",
        s.allocations,
        s.frees,
        s.bytes_in_use,
        s.peak_bytes_in_use,
        s.large_allocations,
        s.large_frees,
        s.heaps,
        s.mapped_bytes,
        s.metadata_bytes,
    );
    for (i, c) in s.classes.iter().enumerate() {
        if c.allocations == 0 {
            continue;
        }
        let _ = writeln!(
            w,
            "class {i} {} {} {} {} {}",
            c.block_size, c.allocations, c.frees, c.blocks_in_use, c.peak_blocks_in_use
        );
    }
    let _ = w.write_str("end\n");
    w.flush();
    w.ok
}

extern "C" fn write_report_at_exit() {
    // SAFETY: only read after the constructor wrote it.
    let template = unsafe { &*REPORT_PATH.0.get() };
    let len = template.iter().position(|&b| b == 0).unwrap_or(0);
    let Some(template) = template.get(..len) else {
        return;
    };
    if template.is_empty() {
        return;
    }
    if template == b"stderr" {
        write_report(2);
        return;
    }
    let mut path = [0u8; PATH_MAX];
    let fd = create_for_pid(template, &mut path);
    if fd < 0 {
        // Said, not swallowed: a report the user asked for is missing.
        let errno = crate::util::errno();
        let mut w = FdWriter::new(2);
        let len = path.iter().position(|&b| b == 0).unwrap_or(0);
        let shown = core::str::from_utf8(path.get(..len).unwrap_or(&[])).unwrap_or("?");
        let _ = writeln!(
            w,
            "cma: warning: cannot write the heap report to {shown} (errno {errno})"
        );
        w.flush();
        return;
    }
    write_report(fd);
    // SAFETY: `fd` is ours and open.
    unsafe { libc::close(fd) };
}

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;

#[used]
#[link_section = ".fini_array"]
static WRITE_REPORT: extern "C" fn() = write_report_at_exit;
