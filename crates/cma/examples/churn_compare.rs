//! A first side-by-side check of the fast path: a single-thread churn of
//! small blocks through cma, the system allocator and mimalloc, interleaved
//! in one run. The full suite is `cma-bench`.
//!
//! `cargo run --release -p cma --example churn_compare`

use std::alloc::{GlobalAlloc, Layout, System};
use std::time::Instant;

fn churn(a: &dyn GlobalAlloc, rounds: usize) -> u64 {
    const SLOTS: usize = 1024;
    let mut slots: [(*mut u8, usize); SLOTS] = [(std::ptr::null_mut(), 0); SLOTS];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut check = 0u64;
    for i in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let slot = &mut slots[i % SLOTS];
        if !slot.0.is_null() {
            // SAFETY: allocated below with this layout.
            unsafe {
                check = check.wrapping_add(*slot.0 as u64);
                a.dealloc(slot.0, Layout::from_size_align_unchecked(slot.1, 8));
            }
        }
        let size = 8 + (x as usize % 504);
        // SAFETY: non-zero size, valid alignment.
        let p = unsafe { a.alloc(Layout::from_size_align_unchecked(size, 8)) };
        assert!(!p.is_null());
        // SAFETY: p is a fresh block of `size` bytes.
        unsafe { *p = i as u8 };
        *slot = (p, size);
    }
    for (p, size) in slots {
        if !p.is_null() {
            // SAFETY: allocated above with this layout.
            unsafe { a.dealloc(p, Layout::from_size_align_unchecked(size, 8)) };
        }
    }
    check
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5_000_000);
    let allocators: [(&str, &dyn GlobalAlloc); 3] = [
        ("cma", &cma::Cma),
        ("system", &System),
        ("mimalloc", &mimalloc::MiMalloc),
    ];
    // An optional second argument runs one allocator only (for profilers).
    let only = std::env::args().nth(2);
    let mut times: [Vec<f64>; 3] = Default::default();
    for _rep in 0..7 {
        for (i, (name, a)) in allocators.iter().enumerate() {
            if only.as_deref().is_some_and(|o| o != *name) {
                continue;
            }
            let t = Instant::now();
            std::hint::black_box(churn(*a, rounds));
            times[i].push(t.elapsed().as_secs_f64());
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let medians: Vec<f64> = times.iter_mut().map(median).collect();
    println!("single-thread churn, {rounds} alloc+free pairs of 8..512 bytes, median of 7 interleaved runs");
    for (i, (name, _)) in allocators.iter().enumerate() {
        println!(
            "{name:>9}: {:7.1} ns/pair  ratio to mimalloc {:.2}",
            medians[i] * 1e9 / rounds as f64,
            medians[i] / medians[2]
        );
    }
}
