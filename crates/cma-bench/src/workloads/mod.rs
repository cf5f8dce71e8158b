//! The workload registry: the list of workloads, their sizes (`Params`) and
//! `run`, which dispatches a name to its workload. Each is generic over
//! `GlobalAlloc` and calls `alloc`, `alloc_zeroed`, `realloc` and `dealloc`
//! with explicit `Layout`s, except `rust-collections`, which builds std
//! collections and so allocates through the process's global allocator
//! (`Dispatch`, routed to the same allocator). Every workload writes into its
//! blocks and checks them before freeing, and frees everything it allocated.
//! Each returns a checksum (blocks verified) so that nothing can be optimised
//! away.

mod block;
mod collections;
mod large;
pub mod memory;
mod realloc;
mod requests;
mod small;
mod threads;

use core::alloc::GlobalAlloc;

/// Sizes of a run.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    pub quick: bool,
    /// Worker threads of the multi-threaded workloads (except `stress6`,
    /// which always has six).
    pub threads: usize,
}

impl Params {
    /// `quick` in quick mode, else `full`.
    pub fn n(&self, quick: usize, full: usize) -> usize {
        if self.quick {
            quick
        } else {
            full
        }
    }
}

/// A workload of the suite.
pub struct Workload {
    pub number: u32,
    pub name: &'static str,
    pub about: &'static str,
}

pub const WORKLOADS: &[Workload] = &[
    Workload { number: 1, name: "churn", about: "single thread: small blocks (8-128 B) allocated and freed at random over a ring of 256" },
    Workload { number: 2, name: "mixed", about: "mixed sizes (8 B-128 KiB) replaced at random in a long-lived working set" },
    Workload { number: 3, name: "larson", about: "larson-style server: random sizes 16-1024 B; slot arrays move between threads, so blocks are freed by other threads" },
    Workload { number: 4, name: "prodcons", about: "producer/consumer: one thread allocates and fills, another checks and frees (batches over a channel)" },
    Workload { number: 5, name: "false-sharing", about: "cache-thrash then cache-scratch: tiny objects written hard by each thread; scratch starts by freeing a block of the main thread" },
    Workload { number: 6, name: "realloc", about: "realloc growth of many byte vectors, 16 to 128 B at a time up to 1-32 KiB, then freed and restarted" },
    Workload { number: 7, name: "large", about: "large blocks, log-uniform 64 KiB-32 MiB, every page written, four live at a time" },
    Workload { number: 8, name: "calloc", about: "alloc_zeroed: 90% 16 B-4 KiB, 10% 4 KiB-1 MiB; zero checked, then written" },
    Workload { number: 9, name: "aligned", about: "aligned allocations: alignment 16 B-4 KiB (2% up to 64 KiB), sizes 8 B-8 KiB" },
    Workload { number: 10, name: "stress6", about: "the original stress test's mix: six workers malloc/realloc/free, passing blocks between them" },
    Workload { number: 11, name: "rust-collections", about: "Rust-heavy: BTreeMap, HashMap, String and Vec built and dropped (global allocator)" },
    Workload { number: 12, name: "threads", about: "many short threads: each allocates 200 blocks, frees half, hands the rest to the main thread" },
    Workload { number: 13, name: "rss-phases", about: "memory: 560 MB of 16 B-64 KiB blocks, then a contiguous tenth kept, then one block in 64 of it, then none; resident set after a pause with no allocator call (not timed)" },
    Workload { number: 14, name: "realloc-large", about: "one block grown by realloc from 256 KiB by half again each step to 554 MiB, written in full each time" },
    Workload { number: 15, name: "requests", about: "request-scoped build-and-drop: per request a hashbrown map of ~250 string keys to vectors of ~1500 strings (6-60 B), checked, dropped; on the allocator under test" },
    Workload { number: 16, name: "requests-arena", about: "the requests of 15 in one cma::Arena: strings written into it and never freed one by one, the map dropped through it, reset after each request (cma only)" },
    Workload { number: 17, name: "requests-bump", about: "the requests of 15 in one bumpalo::Bump (chunks from the allocator under test), reset after each request" },
];

/// Whether a workload runs on an allocator: `requests-arena` measures
/// cma's arenas, which run on the cma engine whatever the process's
/// allocator, so it runs on the cma levels only.
pub fn runs_on(name: &str, allocator: &str) -> bool {
    name != "requests-arena" || allocator.starts_with("cma")
}

/// Whether a workload's time means anything: `rss-phases` mostly sleeps, so
/// its time stays out of the time geomean.
pub fn is_timed(name: &str) -> bool {
    name != "rss-phases"
}

/// Finds a workload by name or number.
pub fn find(name: &str) -> Option<&'static Workload> {
    WORKLOADS
        .iter()
        .find(|w| w.name == name || w.number.to_string() == name)
}

/// Runs the named workload once on allocator `a`.
pub fn run<A: GlobalAlloc + Sync>(a: &A, name: &str, p: &Params) -> u64 {
    match name {
        "churn" => small::churn(a, p),
        "mixed" => small::mixed(a, p),
        "larson" => threads::larson(a, p),
        "prodcons" => threads::prodcons(a, p),
        "false-sharing" => threads::false_sharing(a, p),
        "realloc" => realloc::realloc_growth(a, p),
        "large" => large::large(a, p),
        "calloc" => large::calloc(a, p),
        "aligned" => large::aligned(a, p),
        "stress6" => threads::stress6(a, p),
        "rust-collections" => collections::rust_collections(a, p),
        "threads" => threads::threads(a, p),
        "rss-phases" => memory::rss_phases(a, p),
        "realloc-large" => realloc::realloc_large(a, p),
        "requests" => requests::requests_heap(a, p),
        "requests-arena" => requests::requests_arena(a, p),
        "requests-bump" => requests::requests_bump(a, p),
        _ => panic!("unknown workload {name}"),
    }
}
