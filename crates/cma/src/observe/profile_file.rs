//! The heap profile written at exit when `CMA_OPTIONS` holds
//! `profile_file=FILE` (`cma run` sets it for `--leaks` and `--profile`):
//! the registry's sites with their counters and raw stacks, and the
//! process's file mappings, from which `cma run` finds each frame's module
//! and offset and symbolises it once the program has stopped.
//!
//! In `FILE`, `%p` becomes the pid; the engine's name is appended
//! (`.libcma`, `.rust-crate`), so that two engines of one process write
//! files of their own. Written by the exit destructor, after the heap
//! report; nothing when the registry is off. Formatted into a fixed buffer
//! and written with write(2): no allocation.
//!
//! The format is line based, numbers in decimal (estimates rounded at
//! `profile=sample`), addresses in hex, times in microseconds since the
//! registry started:
//!
//! ```text
//! cma-profile 1
//! pid 4242
//! engine libcma
//! command ./prog --flag
//! mode all
//! rate 524288
//! time_end_us 81234
//! peak_at_us 80000
//! totals <bytes> <blocks> <live bytes> <live blocks> <peak bytes> <peak blocks> <dropped>
//! site <tb> <tbk> <tl_us> <mb> <mbk> <gb> <gbk> <eb> <ebk> <freed blocks> <startup 0|1> <frame> <frame> ...
//! map 55d0c0000000-55d0c0001000 r--p 00000000 08:01 1234 /usr/bin/prog
//! end
//! ```
//!
//! `tb`/`tbk`: bytes and blocks allocated at the site in all; `tl`: their
//! lifetimes (the live ones up to the end); `mb`/`mbk`: the most live at
//! once; `gb`/`gbk`: live at the process's peak; `eb`/`ebk`: live at the
//! end (the names of DHAT's fields, which `cma run` writes from these).

use core::fmt::Write;

use super::destination::{Destination, DestinationRefused, PATH_MAX};
use super::report_file::{engine, expand_pid};
use crate::check::report;
use crate::os::file::File;
use crate::os::process;
use crate::track::registry;
use crate::track::sampling;
use crate::util::fd_writer::FdWriter;

/// Where the profile goes; its writer appends `.rust-crate` and the NUL.
static DESTINATION: Destination = Destination::new(16 + 1);

/// Chooses where the profile goes (a path template with `%p`). The first
/// choice holds; the same path again is accepted.
pub(crate) fn set_destination(template: &[u8]) -> Result<(), DestinationRefused> {
    DESTINATION.set(template)
}

/// Writes the profile to `fd` (see the module docs for the format).
pub(crate) fn write_profile(fd: i32) -> bool {
    let mut w = FdWriter::new(fd);
    let _ = write!(
        w,
        "cma-profile 1\npid {}\nengine {}\ncommand ",
        process::pid(),
        engine().name()
    );
    let mut command = [0u8; 512];
    for &b in process::command_line(&mut command) {
        w.write_bytes(&[if b == b'\n' { b' ' } else { b }]);
    }
    let _ = write!(
        w,
        "\nmode {}\nrate {}\n",
        sampling::mode().name(),
        sampling::rate()
    );
    let round = |v: f64| if v > 0.0 { (v + 0.5) as u64 } else { 0 };
    let us_per_tick = registry::ns_per_tick() / 1000.0;
    let (totals, end) = registry::for_each_site(|_, frames, r| {
        let c = &r.counts;
        if c.total_blocks <= 0.0 {
            return;
        }
        let _ = write!(
            w,
            "site {} {} {} {} {} {} {} {} {} {} {}",
            round(c.total_bytes),
            round(c.total_blocks),
            round(r.total_lifetime * us_per_tick),
            round(c.max_bytes),
            round(c.max_blocks),
            round(r.peak_bytes),
            round(r.peak_blocks),
            round(c.live_bytes),
            round(c.live_blocks),
            round(c.freed_blocks),
            frames.startup() as u8,
        );
        for f in frames.frames() {
            let _ = write!(w, " {f:x}");
        }
        let _ = w.write_str("\n");
    });
    let _ = writeln!(
        w,
        "time_end_us {}\npeak_at_us {}\ntotals {} {} {} {} {} {} {}",
        round(end as f64 * us_per_tick),
        round(totals.peak_at as f64 * us_per_tick),
        round(totals.total_bytes),
        round(totals.total_blocks),
        round(totals.live_bytes),
        round(totals.live_blocks),
        round(totals.peak_bytes),
        round(totals.peak_blocks),
        totals.dropped
    );
    write_maps(&mut w);
    let _ = w.write_str("end\n");
    w.flush();
    w.ok()
}

/// Copies the file-backed lines of `/proc/self/maps` as `map` lines.
fn write_maps(w: &mut FdWriter) {
    let Ok(maps) = File::open_read(c"/proc/self/maps") else {
        return;
    };
    let mut chunk = [0u8; 1024];
    let mut line = [0u8; 600];
    let mut len = 0;
    loop {
        let n = maps.read_into(&mut chunk);
        if n == 0 {
            break;
        }
        for &b in &chunk[..n] {
            if b != b'\n' {
                if len < line.len() {
                    line[len] = b;
                    len += 1;
                }
                continue;
            }
            let l = &line[..len];
            // A path: the line's sixth field, which begins with '/'.
            if l.windows(2).any(|p| p == b" /") {
                w.write_bytes(b"map ");
                w.write_bytes(l);
                w.write_bytes(b"\n");
            }
            len = 0;
        }
    }
}

/// Writes the profile where `profile_file=` said, if it said anywhere and
/// the registry recorded anything.
pub(crate) fn write_profile_at_exit() {
    if !sampling::on() {
        return;
    }
    let Some(template) = DESTINATION.get() else {
        return;
    };
    let mut with_engine = [0u8; PATH_MAX];
    let name = engine().name().as_bytes();
    with_engine[..template.len()].copy_from_slice(template);
    with_engine[template.len()] = b'.';
    with_engine[template.len() + 1..template.len() + 1 + name.len()].copy_from_slice(name);
    let full = &with_engine[..template.len() + 1 + name.len()];
    let mut path = [0u8; PATH_MAX];
    if !expand_pid(full, process::pid(), &mut path) {
        return;
    }
    let len = path.iter().position(|&b| b == 0).unwrap_or(0);
    let written = match File::open_or_create(&path[..=len]) {
        Ok(file) => file.truncate() && write_profile(file.fd()),
        Err(_) => false,
    };
    if !written {
        report::warn(format_args!(
            "cannot write the heap profile to {} (errno {})",
            core::str::from_utf8(&path[..len]).unwrap_or("?"),
            process::errno()
        ));
    }
}
