//! Allocation-event logging from Rust (`cma::set_alloc_logging`,
//! `cma::set_alloc_log_callback`): the global allocator's allocations,
//! reallocations and frees reach the callback with their pointers and
//! sizes; the callback may allocate (not logged); off, nothing. In a child
//! process with one test thread, from the start (`alloc_log=1`, so the fast
//! level logs every free too) and switched on later.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

#[global_allocator]
static A: cma::Cma = cma::Cma;

const SCENARIO: &str = "CMA_TEST_ALLOC_LOG";

/// Events seen: (operation's first byte, pointer, size, old pointer).
static EVENTS: [[AtomicUsize; 4]; 256] = [const { [const { AtomicUsize::new(0) }; 4] }; 256];
static COUNT: AtomicUsize = AtomicUsize::new(0);

fn record(e: &cma::AllocEvent<'_>) {
    let i = COUNT.fetch_add(1, Ordering::Relaxed);
    if let Some(slot) = EVENTS.get(i) {
        slot[0].store(
            e.operation.as_bytes()[0] as usize + e.operation.len() * 256,
            Ordering::Relaxed,
        );
        slot[1].store(e.pointer, Ordering::Relaxed);
        slot[2].store(e.size, Ordering::Relaxed);
        slot[3].store(e.old_pointer.unwrap_or(0), Ordering::Relaxed);
    }
    // Allocating here is allowed, and not logged.
    drop(std::hint::black_box(vec![1u8; 10]));
}

fn seen(op: &str, p: usize) -> Option<(usize, usize)> {
    let code = op.as_bytes()[0] as usize + op.len() * 256;
    let n = COUNT.load(Ordering::Relaxed).min(256);
    EVENTS[..n].iter().find_map(|s| {
        (s[0].load(Ordering::Relaxed) == code && s[1].load(Ordering::Relaxed) == p)
            .then(|| (s[2].load(Ordering::Relaxed), s[3].load(Ordering::Relaxed)))
    })
}

#[test]
fn the_global_allocators_events_reach_the_callback() {
    if std::env::var_os(SCENARIO).is_none() {
        for options in [
            "check=fast,alloc_log=1",
            "check=default,alloc_log=1",
            "check=default",
        ] {
            let out = Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "the_global_allocators_events_reach_the_callback"])
                .args(["--nocapture", "--test-threads=1"])
                .env("CMA_OPTIONS", options)
                .env(SCENARIO, "1")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("scenario done"),
                "{options}: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        return;
    }
    cma::set_alloc_log_callback(Some(record));
    cma::set_alloc_logging(true);
    COUNT.store(0, Ordering::Relaxed);
    let b = Box::new([5u8; 300]);
    let bp = &*b as *const [u8; 300] as usize;
    let mut v: Vec<u64> = Vec::with_capacity(10);
    v.extend(0..10);
    let vp = v.as_ptr() as usize;
    v.reserve(1000);
    let moved = v.as_ptr() as usize;
    drop(b);
    drop(v);
    cma::set_alloc_logging(false);
    let n = COUNT.load(Ordering::Relaxed);
    drop(std::hint::black_box(Box::new(1u64)));
    assert_eq!(COUNT.load(Ordering::Relaxed), n, "off: nothing logged");
    assert_eq!(seen("alloc", bp).map(|e| e.0), Some(300));
    assert_eq!(seen("alloc", vp).map(|e| e.0), Some(80));
    assert_eq!(seen("realloc", moved), Some((8 * 1010, vp)));
    assert!(seen("free", bp).is_some_and(|e| e.0 >= 300));
    assert!(seen("free", moved).is_some());
    // The callback's own allocations are not logged: two allocations, one
    // realloc, two frees.
    assert_eq!(n, 5, "{} events", n);
    cma::set_alloc_log_callback(None);
    println!("scenario done");
}
