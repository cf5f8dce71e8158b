//! Blocks the heap profile samples (`profile=sample`: a small block served
//! from whole pages and recorded) behave as any other block: zeroed
//! allocations read as zero even where the pages were used before, at the
//! `fast` level (which does not wipe freed memory) and at `default`.
//! Each scenario runs in a child process with the options set before its
//! first allocation.

use std::alloc::{GlobalAlloc, Layout};
use std::process::Command;

#[global_allocator]
static A: cma::Cma = cma::Cma;

const SCENARIO: &str = "CMA_TEST_PROFILE_SAMPLE_SCENARIO";

fn in_child() -> bool {
    std::env::var_os(SCENARIO).is_some()
}

fn each_level(test: &str) {
    // A tiny rate: nearly every refill's block is a profile sample.
    for level in ["fast", "default"] {
        let options = format!("check={level},profile=sample,profile_rate=64,sample=0");
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env("CMA_OPTIONS", &options)
            .env(SCENARIO, "1")
            .output()
            .expect("spawn child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("scenario done"),
            "{options}: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn zeroed_allocations_of_profile_samples_read_as_zero() {
    if !in_child() {
        return each_level("zeroed_allocations_of_profile_samples_read_as_zero");
    }
    let sizes = [24usize, 200, 1000, 3000, 9000, 30_000];
    // Every size is a small class's: a large block made meanwhile is a
    // profile sample served from whole pages.
    let large_before = cma::stats().large_allocations;
    for round in 0..20 {
        // Dirty pages first, then give them back to the heap.
        let mut dirty = Vec::new();
        for &size in &sizes {
            let layout = Layout::from_size_align(size, 8).unwrap();
            for _ in 0..20 {
                // SAFETY: a non-zero layout.
                let p = unsafe { A.alloc(layout) };
                assert!(!p.is_null());
                // SAFETY: `size` writable bytes.
                unsafe { p.write_bytes(0xA5, size) };
                dirty.push((p, layout));
            }
        }
        for (p, layout) in dirty.drain(..) {
            // SAFETY: allocated above with `layout`.
            unsafe { A.dealloc(p, layout) };
        }
        for &size in &sizes {
            let layout = Layout::from_size_align(size, 8).unwrap();
            for _ in 0..20 {
                // SAFETY: a non-zero layout.
                let p = unsafe { A.alloc_zeroed(layout) };
                assert!(!p.is_null());
                // SAFETY: `size` readable bytes.
                let bytes = unsafe { std::slice::from_raw_parts(p, size) };
                assert!(
                    bytes.iter().all(|&b| b == 0),
                    "round {round}: a zeroed block of {size} bytes is not zero"
                );
                let c = cma::calloc(1, size);
                assert!(!c.is_null());
                // SAFETY: `size` readable bytes.
                let bytes = unsafe { std::slice::from_raw_parts(c, size) };
                assert!(
                    bytes.iter().all(|&b| b == 0),
                    "round {round}: calloc of {size} bytes is not zero"
                );
                // SAFETY: live blocks, not used again.
                unsafe {
                    cma::free(c);
                    A.dealloc(p, layout);
                }
            }
        }
    }
    let samples = cma::stats().large_allocations - large_before;
    assert!(samples >= 100, "only {samples} profile samples were served");
    assert!(!cma::Profile::take().sites().is_empty());
    println!("{samples} profile samples; scenario done");
}
