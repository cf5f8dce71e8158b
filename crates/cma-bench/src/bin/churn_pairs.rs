//! The instruction-count workload through Rust's `GlobalAlloc`: the same
//! churn as `c/churn_pairs.c` (a working set of 256 blocks of 8-512 bytes,
//! one free and one allocation at a time, a burst of 64 allocations then 64
//! frees every 256 pairs), calling each allocator's `alloc` and `dealloc`
//! from the never-inlined `alloc_one` and `free_one`, so that callgrind's
//! inclusive cost of those two functions is the allocator's path and nothing
//! of the loop (`scripts/instructions.py` reads it).
//!
//!     churn_pairs ALLOCATOR [PAIRS]    ALLOCATOR: cma, cma-backends, mimalloc,
//!                                      system, jemalloc, snmalloc, rusty_alloc
//!
//! cma runs at the check level `CMA_OPTIONS` gives (`fast` when unset);
//! `cma-backends` is `cma::CmaWithBackends` with no backend set (what
//! routing costs a program that may set one).

use std::alloc::{GlobalAlloc, Layout, System};

const WORKING_SET: usize = 256;
const BURST: usize = 64;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn size(&mut self) -> usize {
        8 + (self.next() % 505) as usize
    }
}

#[inline(never)]
fn alloc_one<A: GlobalAlloc>(a: &A, size: usize) -> *mut u8 {
    // SAFETY: a non-zero size and a valid alignment.
    unsafe { a.alloc(Layout::from_size_align_unchecked(size, 8)) }
}

#[inline(never)]
fn free_one<A: GlobalAlloc>(a: &A, p: *mut u8, size: usize) {
    // SAFETY: `p` came from `alloc_one(a, size)`.
    unsafe { a.dealloc(p, Layout::from_size_align_unchecked(size, 8)) }
}

fn churn<A: GlobalAlloc>(a: &A, pairs: usize) -> (u64, u64, u64) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut mallocs, mut frees, mut check) = (0u64, 0u64, 0u64);
    let get = |rng: &mut Rng, mallocs: &mut u64| {
        let size = rng.size();
        let p = alloc_one(a, size);
        assert!(!p.is_null(), "allocation failed");
        *mallocs += 1;
        (p, size)
    };
    let mut set: Vec<(*mut u8, usize)> = Vec::with_capacity(WORKING_SET);
    for i in 0..WORKING_SET {
        let (p, size) = get(&mut rng, &mut mallocs);
        // SAFETY: a fresh block of at least 8 bytes.
        unsafe { *p = i as u8 };
        set.push((p, size));
    }
    let mut burst = [(std::ptr::null_mut::<u8>(), 0usize); BURST];
    for n in 0..pairs {
        let i = (rng.next() % WORKING_SET as u64) as usize;
        let (p, size) = set[i];
        // SAFETY: a live block.
        check += u64::from(unsafe { *p });
        free_one(a, p, size);
        frees += 1;
        let (q, size) = get(&mut rng, &mut mallocs);
        // SAFETY: a fresh block.
        unsafe { *q = n as u8 };
        set[i] = (q, size);
        if n % WORKING_SET == WORKING_SET - 1 {
            for (b, slot) in burst.iter_mut().enumerate() {
                let (q, size) = get(&mut rng, &mut mallocs);
                // SAFETY: a fresh block.
                unsafe { *q = b as u8 };
                *slot = (q, size);
            }
            for &(q, size) in &burst {
                // SAFETY: live.
                check += u64::from(unsafe { *q });
                free_one(a, q, size);
                frees += 1;
            }
        }
    }
    for (p, size) in set {
        free_one(a, p, size);
        frees += 1;
    }
    (mallocs, frees, check)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(which) = args.get(1) else {
        eprintln!("usage: churn_pairs ALLOCATOR [PAIRS]");
        std::process::exit(2);
    };
    let pairs = args.get(2).map_or(1_000_000, |s| s.parse().expect("PAIRS"));
    let (mallocs, frees, check) = match which.as_str() {
        "cma" => churn(&cma::Cma, pairs),
        "cma-backends" => churn(&cma::CmaWithBackends, pairs),
        "mimalloc" => churn(&mimalloc::MiMalloc, pairs),
        "system" => churn(&System, pairs),
        #[cfg(feature = "jemalloc")]
        "jemalloc" => churn(&tikv_jemallocator::Jemalloc, pairs),
        #[cfg(feature = "snmalloc")]
        "snmalloc" => churn(&snmalloc_rs::SnMalloc, pairs),
        #[cfg(feature = "rusty_alloc")]
        "rusty_alloc" => churn(&rusty_alloc_api::RustyAlloc, pairs),
        other => {
            eprintln!("churn_pairs: unknown or unavailable allocator '{other}'");
            std::process::exit(2);
        }
    };
    println!("mallocs {mallocs} frees {frees} check {check}");
}
