//! The heap check (`cma::check_heap`, and at exit): every live block's
//! trailer and every quarantined slot verified at once, so that an overflow
//! of a block that is never freed and a write into a freed block that is
//! never handed out again are still found. Each scenario runs in a child
//! process (the level is chosen when cma starts).

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

const SCENARIO: &str = "CMA_TEST_HEAP_CHECK_SCENARIO";

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

/// An overflow of a live block (small, large or huge) that the program
/// never frees: the heap is clean before it and reports it after, naming
/// the block; nothing is reported for the other live blocks.
#[test]
fn an_overflow_of_a_block_never_freed_is_found() {
    if let Some(s) = scenario() {
        let size = match s.as_str() {
            "small" => 40,
            "large" => 300_000,
            _ => 5 << 20,
        };
        let others: Vec<_> = (0..1000).map(|i| cma::malloc(8 + i % 700)).collect();
        let p = cma::malloc(size);
        let clean = cma::check_heap().expect("a clean heap");
        assert!(clean.live_blocks >= 1001, "{clean:?}");
        // SAFETY: one byte past the request, inside cma's slot or pages.
        let was = unsafe { p.add(size).replace(0x41) };
        match cma::check_heap() {
            Err(cma::CmaError::BufferOverflow { addr, .. }) => assert_eq!(addr, p as usize),
            other => panic!("{s}: {other:?}"),
        }
        // SAFETY: repaired: the check reads the heap as it was.
        unsafe { *p.add(size) = was };
        assert!(cma::check_heap().is_ok(), "{s}: repaired");
        for q in others {
            // SAFETY: live blocks from cma::malloc.
            unsafe { cma::free(q) };
        }
        println!("checked-{s}");
        return;
    }
    for which in ["small", "large", "huge"] {
        let out = run_child(
            "an_overflow_of_a_block_never_freed_is_found",
            which,
            "check=default",
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(&format!("checked-{which}")),
            "{which}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A write into a freed block still in the quarantine is found by the
/// check, before the slot would ever be handed out again.
#[test]
fn a_write_into_a_quarantined_block_is_found() {
    if scenario().is_some() {
        let p = cma::malloc(64);
        let keep = cma::malloc(64);
        // SAFETY: p is live; freed once.
        unsafe { cma::free(p) };
        assert!(cma::check_heap().expect("clean").quarantined_slots >= 1);
        // SAFETY: a write after free, into cma's quarantined slot (mapped).
        unsafe { *p.add(10) = 7 };
        match cma::check_heap() {
            Err(cma::CmaError::WriteAfterFree { addr, .. }) => assert_eq!(addr, p as usize),
            other => panic!("{other:?}"),
        }
        // SAFETY: as above; wiped again.
        unsafe { *p.add(10) = 0 };
        // SAFETY: keep is live.
        unsafe { cma::free(keep) };
        println!("quarantine-checked");
        return;
    }
    let out = run_child(
        "a_write_into_a_quarantined_block_is_found",
        "run",
        "check=default",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("quarantine-checked"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// At exit the check runs by itself: a program that overflows a block and
/// never frees it ends with the diagnostic and SIGABRT instead of a clean
/// exit; `exit_check=0` turns it off, and a clean program exits cleanly.
#[test]
fn the_exit_check_reports_an_overflow_left_behind() {
    if let Some(s) = scenario() {
        let p = cma::malloc(100);
        if s != "clean" {
            // SAFETY: one byte past the request, inside cma's slot.
            unsafe { *p.add(100) = 0x41 };
        }
        // The block is never freed: only the exit check can see it.
        std::process::exit(0);
    }
    let test = "the_exit_check_reports_an_overflow_left_behind";
    let out = run_child(test, "overflow", "check=default");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{stderr}");
    assert!(
        stderr.contains("cma: heap buffer overflow") && stderr.contains("[in the exit heap check]"),
        "{stderr}"
    );
    let out = run_child(test, "overflow", "check=default,exit_check=0");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_child(test, "clean", "check=default");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Threads allocating, writing, resizing and freeing (small, large and
/// huge blocks, some freed by another thread) while the heap is checked
/// over and over: blocks caught between states are never reported.
#[test]
fn a_busy_heap_checks_clean() {
    if scenario().is_some() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::mpsc;
        static STOP: AtomicBool = AtomicBool::new(false);
        let (tx, rx) = mpsc::channel::<usize>();
        let mut workers = Vec::new();
        for t in 0..3usize {
            let tx = tx.clone();
            workers.push(std::thread::spawn(move || {
                let mut held: Vec<(*mut u8, usize)> = Vec::new();
                let mut x = 0x9E37_79B9u64 + t as u64;
                while !STOP.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let size = match x % 100 {
                        0 => 3 << 20,
                        1..=4 => 150_000 + (x as usize >> 8) % 100_000,
                        _ => 1 + (x as usize >> 8) % 2000,
                    };
                    let p = cma::malloc(size);
                    // SAFETY: p holds `size` bytes.
                    unsafe { core::ptr::write_bytes(p, t as u8 + 1, size) };
                    held.push((p, size));
                    if held.len() > 200 {
                        let (q, n) = held.swap_remove((x as usize >> 20) % held.len());
                        match x % 3 {
                            // SAFETY: q is live.
                            0 => unsafe { cma::free(q) },
                            1 => {
                                let grown = n + n / 2 + 1;
                                // SAFETY: q is live.
                                let r = unsafe { cma::realloc(q, grown) };
                                held.push((r, grown));
                            }
                            // Freed by the checking thread: a remote free.
                            _ => tx.send(q as usize).unwrap(),
                        }
                    }
                }
                for (p, _) in held {
                    // SAFETY: live blocks.
                    unsafe { cma::free(p) };
                }
            }));
        }
        drop(tx);
        let mut checks = 0;
        let mut seen = 0u64;
        // Until the workers have been seen busy for a while (they may start
        // after the first checks).
        while checks < 300 || seen < 100_000 {
            assert!(checks < 1_000_000, "the workers' blocks were never seen");
            for p in rx.try_iter() {
                // SAFETY: a live block another thread handed over.
                unsafe { cma::free(p as *mut u8) };
            }
            match cma::check_heap() {
                Ok(c) => seen += c.live_blocks,
                Err(e) => panic!("false report on a busy heap: {e}"),
            }
            checks += 1;
        }
        STOP.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().unwrap();
        }
        for p in rx.try_iter() {
            // SAFETY: as above.
            unsafe { cma::free(p as *mut u8) };
        }
        assert!(seen > 0);
        println!("busy-clean");
        return;
    }
    let out = run_child("a_busy_heap_checks_clean", "run", "check=default");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("busy-clean"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
