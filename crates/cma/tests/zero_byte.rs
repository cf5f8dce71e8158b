//! Zero-byte blocks at the `default` level: `malloc(0)` (and `calloc` of
//! nothing, `new[0]`) returns a unique address in memory nobody may touch;
//! any access through it is reported by the fault handler, while free,
//! realloc and size queries work. Each scenario runs in a child process.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

const SCENARIO: &str = "CMA_TEST_ZERO_BYTE_SCENARIO";

fn run_child(test: &str, scenario: &str, options: &str) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("CMA_OPTIONS", options)
        .env(SCENARIO, scenario)
        .output()
        .expect("spawn child")
}

fn scenario() -> Option<String> {
    std::env::var(SCENARIO).ok()
}

/// Unique, 16-byte aligned addresses of size 0 that free and realloc
/// accept, counted like any block; an ordinary block after a realloc.
#[test]
fn zero_byte_blocks_are_unique_sized_zero_and_freed_normally() {
    if scenario().is_some() {
        let before = cma::stats();
        let blocks: Vec<*mut u8> = (0..1000).map(|_| cma::malloc(0)).collect();
        let mut sorted: Vec<usize> = blocks.iter().map(|&p| p as usize).collect();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 1000, "zero-byte blocks share addresses");
        for &p in &blocks {
            assert!(!p.is_null() && p as usize % 16 == 0);
            assert_eq!(cma::block_size(p), 0);
        }
        let c = cma::calloc(0, 8);
        assert_eq!(cma::block_size(c), 0);
        let after = cma::stats();
        assert_eq!(after.allocations - before.allocations, 1001);
        for p in blocks {
            // SAFETY: live blocks from cma::malloc.
            unsafe { cma::free(p) };
        }
        // SAFETY: live; grows into an ordinary block, nothing to keep.
        let grown = unsafe { cma::realloc(c, 100) };
        assert_ne!(grown, c);
        assert_eq!(cma::block_size(grown), 100);
        // SAFETY: live.
        unsafe { core::ptr::write_bytes(grown, 1, 100) };
        // SAFETY: live.
        unsafe { cma::free(grown) };
        let end = cma::stats();
        assert_eq!(end.frees - before.frees, 1002);
        println!("zero-ok");
        return;
    }
    let out = run_child(
        "zero_byte_blocks_are_unique_sized_zero_and_freed_normally",
        "run",
        "check=default",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("zero-ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A read or write through a zero-byte block, live or freed, is stopped at
/// the access with a diagnostic naming the block; a second free is a double
/// free; `free` of a `new[0]` block is a mismatch.
#[test]
fn any_use_of_a_zero_byte_block_is_reported() {
    if let Some(s) = scenario() {
        let p = cma::malloc(0);
        eprintln!("ZERO-ADDR={:#x}", p as usize);
        match s.as_str() {
            // SAFETY (all): deliberate misuse of a zero-byte block; the
            // pool's memory cannot be touched, so nothing else is damaged.
            "read" => {
                let v = unsafe { p.read_volatile() };
                eprintln!("read {v}");
            }
            "write" => unsafe { p.add(3).write_volatile(7) },
            "read_after_free" => {
                unsafe { cma::free(p) };
                let v = unsafe { p.read_volatile() };
                eprintln!("read {v}");
            }
            "double_free" => unsafe {
                cma::free(p);
                cma::free(p);
            },
            "mismatch" => {
                let q = cma::faces::alloc_of_kind(0, 16, cma::AllocKind::NewArray);
                eprintln!("ZERO-ADDR={:#x}", q as usize);
                unsafe { cma::free(q) };
            }
            _ => unreachable!(),
        }
        eprintln!("ZERO-SURVIVED");
        return;
    }
    let test = "any_use_of_a_zero_byte_block_is_reported";
    let cases = [
        ("read", "cma: access through a zero-byte block: read of {a}, 0 bytes into the zero-byte block at {a}"),
        ("write", "cma: access through a zero-byte block: write of {a+3}, 3 bytes into the zero-byte block at {a}"),
        ("read_after_free", "cma: use after free of a zero-byte block: read of {a}, 0 bytes into the freed zero-byte block at {a}"),
        ("double_free", "cma: double free of {a} (zero-byte block) [in free]"),
        ("mismatch", "cma: alloc-dealloc mismatch: {a} was allocated by operator new[] and released by free (zero-byte block) [in free]"),
    ];
    for (case, expected) in cases {
        let out = run_child(test, case, "check=default");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{case}: {stderr}");
        assert!(!stderr.contains("ZERO-SURVIVED"), "{case}: {stderr}");
        let addr = stderr
            .lines()
            .filter_map(|l| l.strip_prefix("ZERO-ADDR="))
            .next_back()
            .and_then(|a| usize::from_str_radix(a.trim_start_matches("0x"), 16).ok())
            .expect("the child's address");
        let expected = expected
            .replace("{a+3}", &format!("{:#x}", addr + 3))
            .replace("{a}", &format!("{addr:#x}"));
        assert!(
            stderr.contains(&expected),
            "{case}: expected {expected:?} in\n{stderr}"
        );
    }
}

/// At the `fast` level a zero-byte request gets an ordinary smallest
/// block, as before: nothing faults.
#[test]
fn the_fast_level_serves_zero_bytes_from_a_slot() {
    if scenario().is_some() {
        let p = cma::malloc(0);
        // SAFETY: an ordinary slot of at least 8 bytes at the fast level.
        unsafe { p.write_volatile(1) };
        assert!(cma::block_size(p) >= 8);
        // SAFETY: live.
        unsafe { cma::free(p) };
        println!("fast-ok");
        return;
    }
    let out = run_child(
        "the_fast_level_serves_zero_bytes_from_a_slot",
        "run",
        "check=fast",
    );
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("fast-ok"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
