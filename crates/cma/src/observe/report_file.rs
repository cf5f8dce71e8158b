//! The heap report written at process exit when `CMA_OPTIONS` holds
//! `report=FILE` (`report=stderr` writes it on stderr): one format, written
//! by every face of the engine, libcma and the cma crate as a Rust
//! program's global allocator. `cma run` reads these files.
//!
//! In `FILE`, `%p` becomes the process id, so that the processes of a tree
//! (which inherit the option) write files of their own. A Rust program on
//! `cma::Cma` run with libcma preloaded holds two engines, each with its own
//! heap and counters; both write their report to the same file, one after
//! the other. The first to write in a process empties the file (what is
//! there comes from an earlier process that had the same pid), the second
//! appends: a report begins with the process's pid and image id (the
//! kernel's `AT_RANDOM` bytes, the same for every engine of one run), and a
//! writer that finds its own at the head of the file knows another engine
//! of this run wrote there first.
//!
//! The destination is read once, with the other options, when the engine
//! initialises (or by the first `apply_options` that names one). The report
//! is written by the exit destructor (`at_exit`, `.fini_array`), after `main`
//! returns or `exit` is called; nothing is written when the process dies
//! by a signal or calls `_exit`, or when this engine never initialised. It
//! is formatted with `core::fmt` into a fixed buffer and written with
//! write(2): no allocation, no `stdio`.
//!
//! The format is line based, one `key value` pair a line, then one line per
//! size class that was used. Version 2 added `command` (the process's
//! command line, arguments separated by spaces, at most 512 bytes); version
//! 3 added `image` and `engine` (`libcma` or `rust-crate`), and a file may
//! hold one report per engine:
//!
//! ```text
//! cma-report 3
//! pid 4242
//! image 5f0c6e0f9d3b4a1e8c2d7b6a5f4e3d2c
//! engine libcma
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

use core::fmt::Write;
use core::sync::atomic::{AtomicU8, Ordering};

use super::stats::stats;
use crate::check::report;
use crate::os::file::{self, File};
use crate::os::process;
use crate::util::fd_writer::FdWriter;
use crate::util::stack_buf::StackBuf;

use super::destination::Destination;
pub(crate) use super::destination::DestinationRefused;
pub use super::destination::PATH_MAX;

/// Which face of cma this copy of the engine serves; named in its report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// The cma crate, linked into a Rust program (`cma::Cma`, the explicit
    /// API): the default.
    RustCrate,
    /// libcma, the C library (`LD_PRELOAD` or linked).
    Libcma,
}

impl Engine {
    /// The name reports use (`engine NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Engine::RustCrate => "rust-crate",
            Engine::Libcma => "libcma",
        }
    }
}

static ENGINE: AtomicU8 = AtomicU8::new(Engine::RustCrate as u8);

/// Names the face this copy of the engine serves (libcma's constructor
/// calls it; a Rust program never needs to).
pub fn set_engine(engine: Engine) {
    ENGINE.store(engine as u8, Ordering::Relaxed);
}

pub(crate) fn engine() -> Engine {
    if ENGINE.load(Ordering::Relaxed) == Engine::Libcma as u8 {
        Engine::Libcma
    } else {
        Engine::RustCrate
    }
}

/// Where the report goes (`stderr`, or a path template with `%p`).
static DESTINATION: Destination = Destination::new(1);

/// Chooses where the report goes (`stderr`, or a path template with `%p`).
/// The first choice holds; the same path again is accepted. An empty path
/// chooses nothing.
pub(crate) fn set_destination(template: &[u8]) -> Result<(), DestinationRefused> {
    DESTINATION.set(template)
}

/// Whether `set_destination(template)` would be accepted now (a typed
/// `Options` checks every value before it applies any).
pub(crate) fn destination_allowed(template: &[u8]) -> Result<(), DestinationRefused> {
    DESTINATION.allowed(template)
}

/// The chosen destination, if one was.
fn destination() -> Option<&'static [u8]> {
    DESTINATION.get()
}

/// Expands `%p` in `template` to `pid` into `out`, NUL-terminated. False
/// when the result does not fit.
pub fn expand_pid(template: &[u8], pid: i32, out: &mut [u8; PATH_MAX]) -> bool {
    let mut digits = StackBuf::<16>::new();
    let _ = write!(digits, "{pid}");
    let mut len = 0;
    let mut push = |bytes: &[u8]| -> bool {
        // One byte stays free for the NUL.
        match out.get_mut(len..len + bytes.len()) {
            Some(dst) if len + bytes.len() < PATH_MAX => {
                dst.copy_from_slice(bytes);
                len += bytes.len();
                true
            }
            _ => false,
        }
    };
    let mut rest = template;
    while let Some(&b) = rest.first() {
        let fits = if rest.starts_with(b"%p") {
            rest = &rest[2..];
            push(digits.as_bytes())
        } else {
            rest = &rest[1..];
            push(&[b])
        };
        if !fits {
            return false;
        }
    }
    if let Some(nul) = out.get_mut(len) {
        *nul = 0;
    }
    true
}

/// Opens (creating it) the file `template` names with `%p` expanded to this
/// process's id; the expanded path is left in `path`. The error is an
/// errno value.
pub fn open_for_pid(template: &[u8], path: &mut [u8; PATH_MAX]) -> Result<File, i32> {
    if !expand_pid(template, process::pid(), path) {
        return Err(file::NAME_TOO_LONG);
    }
    let len = path.iter().position(|&b| b == 0).unwrap_or(0);
    File::open_or_create(&path[..=len])
}

/// The lines every report of this process image begins with: format, pid
/// and image id. Two engines of one run write the same.
fn header() -> StackBuf<96> {
    let mut h = StackBuf::<96>::new();
    let _ = write!(h, "cma-report 3\npid {}\nimage ", process::pid());
    for b in process::image_id() {
        let _ = write!(h, "{b:02x}");
    }
    let _ = h.write_str("\n");
    h
}

/// Writes this engine's report to `fd`, after `header`.
fn write_report(fd: i32, header: &[u8]) -> bool {
    let s = stats();
    let mut w = FdWriter::new(fd);
    w.write_bytes(header);
    let _ = write!(w, "engine {}\ncommand ", engine().name());
    let mut command = [0u8; 512];
    for &b in process::command_line(&mut command) {
        // One line: a newline inside an argument becomes a space.
        w.write_bytes(&[if b == b'\n' { b' ' } else { b }]);
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
    w.ok()
}

/// Writes the report where `report=` said, if it said anywhere.
pub(crate) fn write_report_at_exit() {
    let Some(template) = destination() else {
        return;
    };
    let header = header();
    if template == b"stderr" {
        write_report(2, header.as_bytes());
        return;
    }
    let mut path = [0u8; PATH_MAX];
    let file = match open_for_pid(template, &mut path) {
        Ok(file) => file,
        Err(errno) => {
            // Said, not swallowed: a report the user asked for is missing.
            let len = path.iter().position(|&b| b == 0).unwrap_or(0);
            report::warn(format_args!(
                "cannot write the heap report to {} (errno {errno})",
                Utf8Prefix(&path[..len])
            ));
            return;
        }
    };
    // Another engine of this run wrote first: append. Anything else there
    // is an earlier process's: replace it.
    let mut head = [0u8; 96];
    let n = file.read_into(&mut head);
    let ours = head[..n].starts_with(header.as_bytes());
    let placed = if ours {
        file.seek_to_end()
    } else {
        file.truncate()
    };
    if !placed || !write_report(file.fd(), header.as_bytes()) {
        report::warn(format_args!(
            "the heap report written to {} is incomplete (errno {})",
            Utf8Prefix(&path[..path.iter().position(|&b| b == 0).unwrap_or(0)]),
            process::errno()
        ));
    }
}

/// Shows bytes as text, stopping at the first that is not valid UTF-8.
struct Utf8Prefix<'a>(&'a [u8]);

impl core::fmt::Display for Utf8Prefix<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let text = match core::str::from_utf8(self.0) {
            Ok(t) => t,
            Err(e) => core::str::from_utf8(&self.0[..e.valid_up_to()]).unwrap_or(""),
        };
        f.write_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expanded(template: &[u8], pid: i32) -> Option<Vec<u8>> {
        let mut out = [0u8; PATH_MAX];
        expand_pid(template, pid, &mut out).then(|| {
            let len = out.iter().position(|&b| b == 0).unwrap();
            out[..len].to_vec()
        })
    }

    #[test]
    fn pid_expands_and_long_paths_are_refused() {
        assert_eq!(expanded(b"/tmp/r.%p", 42).unwrap(), b"/tmp/r.42");
        assert_eq!(expanded(b"%p-%p%", 7).unwrap(), b"7-7%");
        assert_eq!(expanded(b"plain", 7).unwrap(), b"plain");
        assert!(expanded(&[b'a'; PATH_MAX - 1], 1).is_some());
        assert!(expanded(&[b'a'; PATH_MAX], 1).is_none());
        let mut long = vec![b'a'; PATH_MAX - 3];
        long.extend_from_slice(b"%p");
        assert!(expanded(&long, 1234).is_none());
    }

    #[test]
    fn the_header_names_the_process_and_its_image() {
        let h = header();
        let text = core::str::from_utf8(h.as_bytes()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "cma-report 3");
        assert_eq!(lines[1], format!("pid {}", std::process::id()));
        let image = lines[2].strip_prefix("image ").unwrap();
        assert_eq!(image.len(), 32);
        assert_ne!(
            image,
            "0".repeat(32),
            "the kernel gives every image AT_RANDOM"
        );
        assert_eq!(
            header().as_bytes(),
            h.as_bytes(),
            "the same for every writer"
        );
    }
}
