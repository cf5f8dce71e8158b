//! Allocation-event logging for the malloc family (`tests/c/events.c`): a
//! callback sees every event with its pointer and size, at both check
//! levels, a call inside the callback is not logged, sampling; and the log
//! lines on a descriptor, on from the start (`alloc_log=1`).

mod common;

use std::os::unix::process::CommandExt;
use std::process::Command;

use common::*;

#[test]
fn a_callback_sees_every_malloc_realloc_and_free() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("events_c");
    let exe = compile("cc", "events.c", &dir, true, &["-std=c11", "-Wextra"]);
    for options in ["check=fast", "check=default"] {
        let (o, out, err) = output(preloaded(&mut Command::new(&exe)).env("CMA_OPTIONS", options));
        assert!(
            o.status.success() && out.contains("events: ok"),
            "events ({options}) failed ({}):\n{out}\n{err}",
            o.status
        );
    }
}

#[test]
fn events_are_logged_on_a_descriptor_from_the_start() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("events_fd");
    let exe = compile("cc", "events.c", &dir, true, &["-std=c11"]);
    for level in ["fast", "default"] {
        let log = dir.join(format!("log-{level}"));
        let file = std::fs::File::create(&log).unwrap();
        let fd = std::os::unix::io::AsRawFd::as_raw_fd(&file);
        let mut cmd = Command::new(&exe);
        cmd.arg("fd").env(
            "CMA_OPTIONS",
            format!("check={level},alloc_log=1,alloc_log_fd=9"),
        );
        // SAFETY: dup2 in the child before exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(fd, 9) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let (o, out, err) = output(preloaded(&mut cmd));
        assert!(o.status.success(), "{out}\n{err}");
        let line = out
            .lines()
            .find(|l| l.starts_with("p="))
            .expect("the addresses");
        let (p, q) = line.split_once(' ').unwrap();
        let (p, q) = (&p[2..], &q[2..]);
        let log = std::fs::read_to_string(&log).unwrap();
        for want in [
            format!("cma-log: alloc ptr={p} size=1234 tid="),
            format!("cma-log: realloc ptr={q} size=99999 old={p} tid="),
            format!("cma-log: free ptr={q} size="),
        ] {
            assert!(log.contains(&want), "{level}: {want} not in:\n{log}");
        }
    }
}
