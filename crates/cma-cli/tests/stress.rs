//! `cma stress`: a run that passes with the counters balanced, a run on
//! another allocator, and a worker stalled on purpose
//! (`CMA_STRESS_STALL=WORKER:ITERATION`), which must end with a non-zero
//! status, every worker's iteration and last operation, and a stack of
//! every thread.

#[path = "../../cma-capi/tests/common/mod.rs"]
mod common;

use std::process::Command;

use common::output;

fn cma() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cma"));
    c.env_remove("CMA_OPTIONS")
        .env_remove("CMA_LIB")
        .env_remove("CMA_STRESS_STALL");
    c
}

#[test]
fn stress_help_names_every_option() {
    let (o, out, _) = output(cma().args(["stress", "--help"]));
    assert!(o.status.success());
    for option in [
        "--threads",
        "--seconds",
        "--iterations",
        "--watchdog",
        "--seed",
        "--lib",
    ] {
        assert!(out.contains(option), "{option} missing:\n{out}");
    }
    assert!(!out.contains("--child-process"), "{out}");
    let (o, _, err) = output(cma().args(["stress", "--seconds", "1", "--iterations", "5"]));
    assert_eq!(o.status.code(), Some(2), "{err}");
}

#[test]
fn stress_on_cma_passes_with_the_counters_balanced() {
    let (o, _, err) = output(cma().args(["stress", "--threads", "6", "--seconds", "1.5"]));
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("cma stress: 1 s, "),
        "no progress line:\n{err}"
    );
    assert!(
        err.contains("cma stress: 6 workers, ") && err.contains("ops/s on cma (libcma.so)"),
        "{err}"
    );
    assert!(
        err.contains("  counters balanced: cma counted "),
        "the counters were not read from cma:\n{err}"
    );
    assert!(err.contains("cma stress: passed"), "{err}");
    // --iterations: a fixed amount of work.
    let (o, _, err) = output(cma().args(["stress", "--threads", "2", "--iterations", "4000"]));
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains(" 8,000 operations"), "{err}");
}

#[test]
fn stress_at_the_strict_level_passes_with_the_counters_balanced() {
    // Six workers handing blocks to each other at check=strict: every
    // allocation and free through the registry's lock, remote frees
    // remembered with their stacks, no report and no stall.
    let (o, _, err) = output(
        cma()
            .args(["stress", "--threads", "6", "--seconds", "2"])
            .env("CMA_OPTIONS", "check=strict"),
    );
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(!err.contains("cma: "), "{err}");
    assert!(
        err.contains("  counters balanced: cma counted "),
        "the counters were not read from cma:\n{err}"
    );
    assert!(err.contains("cma stress: passed"), "{err}");
}

/// The C library's own path, from this process's mappings.
fn glibc_path() -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libc.so.6"))
        .map(str::to_string)
}

#[test]
fn stress_runs_on_another_allocator_with_lib() {
    let Some(libc) = glibc_path() else {
        eprintln!("note: skipping: no libc.so.6 in this process's mappings");
        return;
    };
    let (o, _, err) = output(cma().args([
        "stress",
        "--threads",
        "3",
        "--iterations",
        "3000",
        "--lib",
        &libc,
    ]));
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("ops/s on libc.so.6"), "{err}");
    assert!(
        err.contains("(the workers' books: this allocator has no cma_stats_get)"),
        "{err}"
    );
    let (o, _, err) = output(cma().args(["stress", "--lib", "/nonexistent/liballoc.so"]));
    assert_eq!(o.status.code(), Some(125), "{err}");
}

#[test]
fn a_stalled_worker_ends_the_run_with_every_threads_stack() {
    let (o, _, err) = output(cma().env("CMA_STRESS_STALL", "2:50").args([
        "stress",
        "--threads",
        "3",
        "--seconds",
        "0.5",
        "--watchdog",
        "1",
    ]));
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("cma stress: STALLED: no worker made progress for "),
        "{err}"
    );
    assert!(
        err.contains("  worker 2: iteration 50, last operation malloc (stuck)"),
        "{err}"
    );
    for finished in ["  worker 0: iteration ", "  worker 1: iteration "] {
        let line = err.lines().find(|l| l.starts_with(finished)).unwrap_or("");
        assert!(line.ends_with("last operation done (finished)"), "{err}");
    }
    let stacks = err
        .split_once("cma stress: stacks of every thread:")
        .and_then(|(_, rest)| rest.split_once("cma stress: end of stacks"))
        .map(|(s, _)| s)
        .unwrap_or_else(|| panic!("no stacks:\n{err}"));
    // One stack per thread: the watchdog (the process's main thread) and
    // each worker, each with frames.
    for thread in ["(cma):", "(stress-0):", "(stress-1):", "(stress-2):"] {
        let at = stacks
            .find(thread)
            .unwrap_or_else(|| panic!("no stack for {thread}:\n{err}"));
        let next = stacks[at..].lines().nth(1).unwrap_or("");
        assert!(
            next.starts_with("    #0 "),
            "{thread} has no frames:\n{err}"
        );
    }
    if common::have("addr2line", "binutils") {
        let worker2 = stacks.split_once("(stress-2):").map_or("", |(_, s)| s);
        let worker2 = worker2.split("cma stress: thread").next().unwrap_or("");
        assert!(
            worker2.contains("stall_on_purpose"),
            "the stuck worker's stack does not show where it is stuck:\n{err}"
        );
    }
}
