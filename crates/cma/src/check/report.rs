//! The one reporting path for misuse: a line on stderr, formatted without
//! allocating and written with write(2) (no locks), then abort. The
//! allocator guard needs no unwinding here: the process ends.
//!
//! A misuse of a sampled block (`guarded`) also shows the stacks recorded
//! for it, each frame as a raw address with the module that holds it and
//! the offset from the module's load address (`cma run` turns those into
//! functions and lines after the program stopped), on indented lines after
//! the diagnostic:
//!
//! ```text
//! cma: use after free: write of 0x7f..., 8 bytes into the freed 48-byte sampled block at 0x7f... [in a memory access] [pid 42: ./prog] [thread 42 'prog']
//!     access by thread 42 (prog):
//!       #0 0x000055d0c0001234 /home/me/prog+0x1234
//!     allocated by thread 42 (prog):
//!       ...
//!     freed by thread 43 (worker):
//!       ...
//! ```
//!
//! At the `strict` level every misuse of a block is followed by such
//! lines too, from what the live-allocation registry recorded
//! (`track::registry::history`): a line with the size requested and the
//! threads and times of the allocation and free, then the stack of the
//! misuse, of the allocation and, for a freed block still remembered, of
//! its (first) free:
//!
//! ```text
//! cma: double free of 0x7f... (size class 5, 48-byte blocks) [in free] [pid 42: ./prog] [thread 42 'prog']
//!     block of 40 bytes requested, allocated by thread 42 at 1.204 ms, freed by thread 42 at 1.310 ms (since cma started)
//!     free by thread 42 (prog):
//!       ...
//!     allocated by thread 42 (prog):
//!       ...
//!     freed by thread 42 (prog):
//!       ...
//! ```
//!
//! The whole report goes out in one write(2) (so that reports of processes
//! sharing a stderr do not interleave), from a static buffer: a fault
//! handler may run on a small alternate signal stack. Only one thread
//! formats a report with stacks at a time; another reporting meanwhile
//! writes its line alone (the process is ending anyway).

use core::cell::UnsafeCell;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use super::error::CmaError;
use super::level;
use crate::guarded::{self, Stack, FRAMES};
use crate::os::maps::{self, MapsScratch};
use crate::os::{backtrace, process, thread};
use crate::track::registry::{self, History};
use crate::util::stack_buf::StackBuf;

/// Reports misuse found in `operation` and aborts. The line names the
/// process (pid and command line), so that in a tree of processes sharing a
/// stderr each report says whose it is, and the thread (its id and name).
#[cold]
#[inline(never)]
pub(crate) fn fatal(operation: &str, error: CmaError) -> ! {
    let mut here = [0usize; FRAMES];
    let len = if error.sampled_block().is_some() || strict_block(&error).is_some() {
        backtrace::capture(&mut here, 0)
    } else {
        0
    };
    fatal_at(operation, error, &here[..len])
}

/// `fatal`, with the stack of the misuse given (`here`, innermost first:
/// the fault handler's, from the faulting instruction).
#[cold]
#[inline(never)]
pub(crate) fn fatal_at(operation: &str, error: CmaError, here: &[usize]) -> ! {
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
    match error.sampled_block() {
        Some(start) if !REPORTING.swap(true, Ordering::AcqRel) => {
            // SAFETY: REPORTING was false: this thread alone uses SCRATCH,
            // until the process ends.
            let scratch = unsafe { &mut *SCRATCH.0.get() };
            scratch.text.truncate(0);
            let _ = scratch.text.write_str(utf8_prefix(line.as_bytes()));
            let label = if matches!(error, CmaError::BadAccess { .. }) {
                "access"
            } else {
                operation
            };
            write_stack(scratch, label, thread::current_id() as u32, here);
            if let Some(slot) = guarded::slot_of_block(start) {
                write_recorded(scratch, "allocated", &slot.allocated);
                write_recorded(scratch, "freed", &slot.freed);
            }
            process::write_stderr(scratch.text.as_bytes());
        }
        None => match strict_block(&error) {
            Some(start) if !REPORTING.swap(true, Ordering::AcqRel) => {
                // SAFETY: as above.
                let scratch = unsafe { &mut *SCRATCH.0.get() };
                scratch.text.truncate(0);
                let _ = scratch.text.write_str(utf8_prefix(line.as_bytes()));
                write_history(scratch, operation, start, here);
                process::write_stderr(scratch.text.as_bytes());
            }
            _ => process::write_stderr(line.as_bytes()),
        },
        _ => process::write_stderr(line.as_bytes()),
    }
    process::abort()
}

/// The block a diagnostic at the `strict` level prints the history of (a
/// sampled block's own stacks are printed instead, at every level).
fn strict_block(error: &CmaError) -> Option<usize> {
    if !level::strict() || error.sampled_block().is_some() {
        return None;
    }
    error.block_start()
}

/// The `strict` level's lines about the block at `start`: what was
/// recorded of it (see the module docs), and the stack of the misuse.
fn write_history(scratch: &mut Scratch, operation: &str, start: usize, here: &[usize]) {
    let history = registry::history(start);
    let ns_per_tick = registry::ns_per_tick();
    let ms = |ticks: u64| Millis((ticks as f64 * ns_per_tick) as u64);
    match history {
        Some(History::Live(live)) => {
            let _ = writeln!(
                scratch.text,
                "    block of {} bytes requested, allocated by thread {} at {} (since cma started)",
                live.size,
                live.thread,
                ms(live.born)
            );
        }
        Some(History::Freed(freed)) => {
            let _ = writeln!(
                scratch.text,
                "    block of {} bytes requested, allocated by thread {} at {}, freed by thread {} at {} (since cma started)",
                freed.live.size,
                freed.live.thread,
                ms(freed.live.born),
                freed.free_thread,
                ms(freed.freed_at)
            );
        }
        None => {
            let _ = scratch.text.write_str(
                "    no record of this block (not allocated through cma's registry, or freed more than 65,536 frees ago)\n",
            );
        }
    }
    write_stack(scratch, operation, thread::current_id() as u32, here);
    match history {
        Some(History::Live(live)) => {
            write_site(scratch, "allocated", live.thread, live.site);
        }
        Some(History::Freed(freed)) => {
            write_site(scratch, "allocated", freed.live.thread, freed.live.site);
            write_site(scratch, "freed", freed.free_thread, freed.free_site);
        }
        None => {}
    }
}

/// A stack of the registry's site table, as `write_stack` writes it.
fn write_site(scratch: &mut Scratch, label: &str, thread: u32, site: u32) {
    let frames = registry::site_frames(site).frames();
    write_stack(scratch, label, thread, frames);
}

/// Nanoseconds, shown as milliseconds with three decimals.
struct Millis(u64);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.0 / 1000;
        write!(f, "{}.{:03} ms", us / 1000, us % 1000)
    }
}

static REPORTING: AtomicBool = AtomicBool::new(false);

struct Scratch {
    text: StackBuf<16384>,
    maps: MapsScratch,
}

struct StaticScratch(UnsafeCell<Scratch>);

// SAFETY: only the thread that set REPORTING touches it (see `fatal_at`).
unsafe impl Sync for StaticScratch {}

static SCRATCH: StaticScratch = StaticScratch(UnsafeCell::new(Scratch {
    text: StackBuf::new(),
    maps: MapsScratch::new(),
}));

fn write_recorded(scratch: &mut Scratch, label: &str, stack: &Stack) {
    let thread = stack.thread();
    if thread == 0 {
        return;
    }
    let mut frames = [0usize; FRAMES];
    let len = stack.frames(&mut frames);
    write_stack(scratch, label, thread, &frames[..len]);
}

/// `    LABEL by thread TID (NAME):` and a line per frame.
fn write_stack(scratch: &mut Scratch, label: &str, thread: u32, frames: &[usize]) {
    let mut name = [0u8; 16];
    let name = process::thread_name(thread, &mut name);
    let _ = write!(scratch.text, "    {label} by thread {thread}");
    if !name.is_empty() {
        let _ = write!(scratch.text, " ({})", utf8_prefix(name));
    }
    let _ = scratch.text.write_str(":\n");
    if frames.is_empty() {
        let _ = scratch.text.write_str("      (no stack recorded)\n");
    }
    for (i, &addr) in frames.iter().enumerate() {
        let _ = write!(scratch.text, "      #{i} {addr:#018x}");
        if let Some(m) = maps::module_of(addr, &mut scratch.maps) {
            let _ = write!(
                scratch.text,
                " {}+{:#x}",
                utf8_prefix(m.path),
                addr - m.base
            );
        }
        let _ = scratch.text.write_str("\n");
    }
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
