//! The workloads. Each is generic over `GlobalAlloc` and calls `alloc`,
//! `alloc_zeroed`, `realloc` and `dealloc` with explicit `Layout`s, except
//! `rust-collections`, which builds std collections and so allocates through
//! the process's global allocator (`Dispatch`, routed to the same allocator).
//! Every workload writes into its blocks and checks them before freeing, and
//! frees everything it allocated. Each returns a checksum (blocks verified)
//! so that nothing can be optimised away.

use core::alloc::{GlobalAlloc, Layout};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Barrier, Mutex};

use crate::util::{check, touch, verify, Rng};

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
];

/// Finds a workload by name or number.
pub fn find(name: &str) -> Option<&'static Workload> {
    WORKLOADS
        .iter()
        .find(|w| w.name == name || w.number.to_string() == name)
}

/// Runs the named workload once on allocator `a`.
pub fn run<A: GlobalAlloc + Sync>(a: &A, name: &str, p: &Params) -> u64 {
    match name {
        "churn" => churn(a, p),
        "mixed" => mixed(a, p),
        "larson" => larson(a, p),
        "prodcons" => prodcons(a, p),
        "false-sharing" => false_sharing(a, p),
        "realloc" => realloc_growth(a, p),
        "large" => large(a, p),
        "calloc" => calloc(a, p),
        "aligned" => aligned(a, p),
        "stress6" => stress6(a, p),
        "rust-collections" => rust_collections(a, p),
        "threads" => threads(a, p),
        _ => panic!("unknown workload {name}"),
    }
}

#[inline]
fn layout(size: usize) -> Layout {
    // SAFETY: 8 is a power of two and sizes here are far below isize::MAX.
    unsafe { Layout::from_size_align_unchecked(size, 8) }
}

#[inline]
fn tag_of(size: usize) -> u8 {
    (size as u8) ^ 0x5a
}

#[cold]
fn oom(l: Layout) -> ! {
    eprintln!(
        "cma-bench: allocation of {} bytes (align {}) returned null",
        l.size(),
        l.align()
    );
    std::process::exit(4);
}

/// Allocates and writes the block.
#[inline]
fn get<A: GlobalAlloc + ?Sized>(a: &A, size: usize) -> *mut u8 {
    let l = layout(size);
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { a.alloc(l) };
    if p.is_null() {
        oom(l);
    }
    // SAFETY: a fresh block of `size` bytes.
    unsafe { touch(p, size, tag_of(size)) };
    p
}

/// Checks and frees a block made by `get`.
#[inline]
fn put<A: GlobalAlloc + ?Sized>(a: &A, p: *mut u8, size: usize) {
    // SAFETY: `p` is a live block of `size` bytes made by `get` on `a`.
    unsafe {
        verify(check(p, size, tag_of(size)), "block content before free");
        a.dealloc(p, layout(size));
    }
}

/// A block held as plain numbers so that it can cross threads.
#[derive(Clone, Copy)]
struct Block {
    addr: usize,
    size: usize,
}

const EMPTY: Block = Block { addr: 0, size: 0 };

impl Block {
    fn ptr(self) -> *mut u8 {
        self.addr as *mut u8
    }
}

fn small_size(rng: &mut Rng) -> usize {
    rng.range(8, 128)
}

/// 1: single-thread churn of small blocks.
pub fn churn<A: GlobalAlloc + ?Sized>(a: &A, p: &Params) -> u64 {
    const RING: usize = 256;
    let ops = p.n(1_500_000, 6_000_000);
    let mut rng = Rng::new(1);
    let mut ring = vec![EMPTY; RING];
    let mut n = 0;
    for _ in 0..ops {
        let s = rng.below(RING);
        let b = ring[s];
        if b.addr != 0 {
            put(a, b.ptr(), b.size);
            n += 1;
        }
        let size = small_size(&mut rng);
        ring[s] = Block {
            addr: get(a, size) as usize,
            size,
        };
    }
    for b in ring.into_iter().filter(|b| b.addr != 0) {
        put(a, b.ptr(), b.size);
        n += 1;
    }
    n
}

fn mixed_size(rng: &mut Rng) -> usize {
    match rng.below(1000) {
        0..=699 => rng.range(8, 128),
        700..=899 => rng.range(129, 2048),
        900..=989 => rng.range(2049, 32 * 1024),
        _ => rng.range(32 * 1024 + 1, 128 * 1024),
    }
}

/// 2: mixed sizes over a long-lived working set.
pub fn mixed<A: GlobalAlloc + ?Sized>(a: &A, p: &Params) -> u64 {
    let slots = p.n(8_000, 20_000);
    let ops = p.n(300_000, 1_200_000);
    let mut rng = Rng::new(2);
    let mut set: Vec<Block> = (0..slots)
        .map(|_| {
            let size = mixed_size(&mut rng);
            Block {
                addr: get(a, size) as usize,
                size,
            }
        })
        .collect();
    let mut n = 0;
    for _ in 0..ops {
        let s = rng.below(slots);
        let b = set[s];
        put(a, b.ptr(), b.size);
        n += 1;
        let size = mixed_size(&mut rng);
        set[s] = Block {
            addr: get(a, size) as usize,
            size,
        };
    }
    for b in set {
        put(a, b.ptr(), b.size);
        n += 1;
    }
    n
}

/// 3: larson-style server. Each round every thread works on one slot array
/// (free a random slot's block, allocate a new one), then the arrays rotate
/// to the next thread, which frees blocks that another thread allocated.
pub fn larson<A: GlobalAlloc + Sync + ?Sized>(a: &A, p: &Params) -> u64 {
    const SLOTS: usize = 1000;
    // Work per thread is fixed (weak scaling); one thread is allowed, for
    // scalability runs, and then frees only its own blocks.
    let t = p.threads.max(1);
    let rounds = p.n(20, 80);
    let per_round = 8_000;
    let arrays: Vec<Mutex<Vec<Block>>> = (0..t).map(|_| Mutex::new(vec![EMPTY; SLOTS])).collect();
    let barrier = Barrier::new(t);
    let total: u64 = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..t)
            .map(|id| {
                let arrays = &arrays;
                let barrier = &barrier;
                sc.spawn(move || {
                    let mut rng = Rng::new(3 + id as u64);
                    let mut n = 0u64;
                    for r in 0..rounds {
                        {
                            let mut arr = arrays[(id + r) % t].lock().unwrap();
                            for _ in 0..per_round {
                                let s = rng.below(SLOTS);
                                let b = arr[s];
                                if b.addr != 0 {
                                    put(a, b.ptr(), b.size);
                                    n += 1;
                                }
                                let size = rng.range(16, 1024);
                                arr[s] = Block {
                                    addr: get(a, size) as usize,
                                    size,
                                };
                            }
                        }
                        barrier.wait();
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let mut n = total;
    for arr in arrays {
        for b in arr
            .into_inner()
            .unwrap()
            .into_iter()
            .filter(|b| b.addr != 0)
        {
            put(a, b.ptr(), b.size);
            n += 1;
        }
    }
    n
}

/// 4: producer/consumer pairs: the producer allocates and fills, the
/// consumer checks and frees.
pub fn prodcons<A: GlobalAlloc + Sync + ?Sized>(a: &A, p: &Params) -> u64 {
    const BATCH: usize = 256;
    let pairs = (p.threads / 2).max(1);
    let per_pair = p.n(600_000, 2_400_000) / pairs;
    // Every thread is joined explicitly: `scope` alone returns once the
    // closures are done, possibly before the threads' exit handlers (an
    // allocator's heap hand-back) have run.
    std::thread::scope(|sc| {
        let pairs: Vec<_> = (0..pairs)
            .map(|id| {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Block>>(16);
                let producer = sc.spawn(move || {
                    let mut rng = Rng::new(4 + id as u64);
                    let mut left = per_pair;
                    while left > 0 {
                        let k = left.min(BATCH);
                        let batch: Vec<Block> = (0..k)
                            .map(|_| {
                                let size = rng.range(16, 512);
                                Block {
                                    addr: get(a, size) as usize,
                                    size,
                                }
                            })
                            .collect();
                        tx.send(batch).unwrap();
                        left -= k;
                    }
                });
                let consumer = sc.spawn(move || {
                    let mut n = 0u64;
                    for batch in rx {
                        for b in batch {
                            put(a, b.ptr(), b.size);
                            n += 1;
                        }
                    }
                    n
                });
                (producer, consumer)
            })
            .collect();
        pairs
            .into_iter()
            .map(|(p, c)| {
                p.join().unwrap();
                c.join().unwrap()
            })
            .sum()
    })
}

/// One thread's loop of the cache patterns: allocate a tiny object, write it
/// hard, free it.
fn hammer<A: GlobalAlloc + ?Sized>(a: &A, iterations: usize, writes: usize) -> u64 {
    let l = layout(8);
    let mut n = 0;
    for _ in 0..iterations {
        // SAFETY: non-zero layout; the object is written and read within its 8 bytes.
        unsafe {
            let o = a.alloc(l);
            if o.is_null() {
                oom(l);
            }
            let o = o as *mut u64;
            o.write(0);
            for _ in 0..writes {
                core::ptr::write_volatile(o, core::ptr::read_volatile(o) + 1);
            }
            verify(o.read() == writes as u64, "cache object count");
            a.dealloc(o as *mut u8, l);
        }
        n += 1;
    }
    n
}

/// 5: false sharing, cache-thrash then cache-scratch (after Hoard's tests).
pub fn false_sharing<A: GlobalAlloc + Sync + ?Sized>(a: &A, p: &Params) -> u64 {
    let t = p.threads.max(1);
    let iterations = p.n(20_000, 80_000);
    let writes = 100;
    // cache-thrash: each thread on its own.
    let mut n: u64 = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..t)
            .map(|_| sc.spawn(|| hammer(a, iterations, writes)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    // cache-scratch: the main thread allocates one object per thread, likely
    // on shared cache lines; each thread frees its object first.
    let seeds: Vec<Block> = (0..t)
        .map(|_| Block {
            addr: get(a, 8) as usize,
            size: 8,
        })
        .collect();
    n += std::thread::scope(|sc| {
        let hs: Vec<_> = seeds
            .iter()
            .map(|&b| {
                sc.spawn(move || {
                    put(a, b.ptr(), b.size);
                    hammer(a, iterations, writes) + 1
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    n
}

/// 6: realloc growth of many vectors.
pub fn realloc_growth<A: GlobalAlloc + ?Sized>(a: &A, p: &Params) -> u64 {
    const START: usize = 16;
    let nvec = p.n(1_000, 2_000);
    let steps = p.n(300_000, 1_200_000);
    let mut rng = Rng::new(6);
    let tag = 0xa5u8;
    let fresh = |rng: &mut Rng| {
        let b = get(a, START);
        // SAFETY: a fresh block of START bytes.
        unsafe { core::ptr::write_bytes(b, tag, START) };
        (
            Block {
                addr: b as usize,
                size: START,
            },
            rng.range(1024, 32 * 1024),
        )
    };
    let mut vecs: Vec<(Block, usize)> = (0..nvec).map(|_| fresh(&mut rng)).collect();
    let mut n = 0;
    for _ in 0..steps {
        let i = rng.below(nvec);
        let (b, cap) = vecs[i];
        let new_size = b.size + rng.range(16, 128);
        if new_size > cap {
            // SAFETY: live block of b.size bytes.
            unsafe {
                verify(check(b.ptr(), b.size, tag), "vector content before free");
                a.dealloc(b.ptr(), layout(b.size));
            }
            vecs[i] = fresh(&mut rng);
            continue;
        }
        // SAFETY: `b` is live with layout(b.size); the new tail is written before it is read.
        unsafe {
            let q = a.realloc(b.ptr(), layout(b.size), new_size);
            if q.is_null() {
                oom(layout(new_size));
            }
            verify(check(q, b.size, tag), "vector content after realloc");
            core::ptr::write_bytes(q.add(b.size), tag, new_size - b.size);
            vecs[i].0 = Block {
                addr: q as usize,
                size: new_size,
            };
        }
        n += 1;
    }
    for (b, _) in vecs {
        // SAFETY: live block of b.size bytes.
        unsafe {
            verify(check(b.ptr(), b.size, tag), "vector content before free");
            a.dealloc(b.ptr(), layout(b.size));
        }
        n += 1;
    }
    n
}

/// 7: large blocks, 64 KiB to 32 MiB.
pub fn large<A: GlobalAlloc + ?Sized>(a: &A, p: &Params) -> u64 {
    const LIVE: usize = 4;
    let ops = p.n(60, 240);
    let mut rng = Rng::new(7);
    let mut ring = [EMPTY; LIVE];
    let mut n = 0;
    for i in 0..ops {
        let b = ring[i % LIVE];
        if b.addr != 0 {
            put(a, b.ptr(), b.size);
            n += 1;
        }
        let size = rng.log_range(64 * 1024, 32 * 1024 * 1024);
        ring[i % LIVE] = Block {
            addr: get(a, size) as usize,
            size,
        };
    }
    for b in ring.into_iter().filter(|b| b.addr != 0) {
        put(a, b.ptr(), b.size);
        n += 1;
    }
    n
}

/// 8: calloc at various sizes.
pub fn calloc<A: GlobalAlloc + ?Sized>(a: &A, p: &Params) -> u64 {
    const RING: usize = 64;
    let ops = p.n(60_000, 240_000);
    let mut rng = Rng::new(8);
    let mut ring = [EMPTY; RING];
    let mut n = 0;
    for _ in 0..ops {
        let s = rng.below(RING);
        let b = ring[s];
        if b.addr != 0 {
            put(a, b.ptr(), b.size);
            n += 1;
        }
        let size = if rng.below(10) < 9 {
            rng.range(16, 4096)
        } else {
            rng.log_range(4096, 1 << 20)
        };
        let l = layout(size);
        // SAFETY: non-zero layout; the reads are within the block.
        unsafe {
            let q = a.alloc_zeroed(l);
            if q.is_null() {
                oom(l);
            }
            let zero = *q == 0
                && *q.add(size / 2) == 0
                && *q.add(size - 1) == 0
                && *(q.add(size & !7).sub(8) as *const u64) == 0;
            verify(zero, "calloc block not zeroed");
            touch(q, size, tag_of(size));
            ring[s] = Block {
                addr: q as usize,
                size,
            };
        }
    }
    for b in ring.into_iter().filter(|b| b.addr != 0) {
        put(a, b.ptr(), b.size);
        n += 1;
    }
    n
}

/// 9: aligned allocations.
pub fn aligned<A: GlobalAlloc + ?Sized>(a: &A, p: &Params) -> u64 {
    const RING: usize = 256;
    let ops = p.n(300_000, 1_200_000);
    let mut rng = Rng::new(9);
    let mut ring = [(EMPTY, 0usize); RING];
    let mut n = 0;
    let free = |b: Block, align: usize| {
        // SAFETY: live block made below with this size and alignment.
        unsafe {
            verify(
                check(b.ptr(), b.size, tag_of(b.size)),
                "aligned block content",
            );
            a.dealloc(b.ptr(), Layout::from_size_align_unchecked(b.size, align));
        }
    };
    for _ in 0..ops {
        let s = rng.below(RING);
        let (b, align) = ring[s];
        if b.addr != 0 {
            free(b, align);
            n += 1;
        }
        let align = if rng.below(50) == 0 {
            1 << rng.range(13, 16)
        } else {
            1 << rng.range(4, 12)
        };
        let size = if rng.below(2) == 0 {
            rng.range(8, 256)
        } else {
            rng.range(257, 8192)
        };
        let l = Layout::from_size_align(size, align).unwrap();
        // SAFETY: non-zero layout.
        let q = unsafe { a.alloc(l) };
        if q.is_null() {
            oom(l);
        }
        verify(q as usize % align == 0, "misaligned block");
        // SAFETY: fresh block of `size` bytes.
        unsafe { touch(q, size, tag_of(size)) };
        ring[s] = (
            Block {
                addr: q as usize,
                size,
            },
            align,
        );
    }
    for (b, align) in ring.into_iter().filter(|(b, _)| b.addr != 0) {
        free(b, align);
        n += 1;
    }
    n
}

fn stress_size(rng: &mut Rng) -> usize {
    match rng.below(1000) {
        0..=599 => rng.range(1, 256),
        600..=899 => rng.range(257, 4096 + 256),
        900..=979 => rng.range(1, 128 * 1024),
        980..=997 => rng.range(128 * 1024 + 1, 528 * 1024),
        _ => rng.range(1 << 20, 2 << 20),
    }
}

/// 10: the six-worker malloc/realloc/free mix of the original stress test
/// (crates/cma/tests/stress.rs), with blocks passed between workers.
pub fn stress6<A: GlobalAlloc + Sync + ?Sized>(a: &A, p: &Params) -> u64 {
    const WORKERS: usize = 6;
    const SLOTS: usize = 256;
    let iterations = p.n(20_000, 80_000);
    let exchange: Mutex<Vec<Block>> = Mutex::new(Vec::new());
    let mut n: u64 = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..WORKERS)
            .map(|id| {
                let exchange = &exchange;
                sc.spawn(move || {
                    let mut rng = Rng::new(10 + id as u64);
                    let mut slots = [EMPTY; SLOTS];
                    let mut n = 0u64;
                    for it in 0..iterations {
                        let s = it % SLOTS;
                        let b = slots[s];
                        if b.addr == 0 {
                            if rng.below(2) == 0 {
                                if let Some(t) = exchange.lock().unwrap().pop() {
                                    slots[s] = t;
                                    continue;
                                }
                            }
                            let size = stress_size(&mut rng);
                            slots[s] = Block {
                                addr: get(a, size) as usize,
                                size,
                            };
                            continue;
                        }
                        match rng.below(10) {
                            0..=3 => {
                                let new_size = if rng.below(2) == 0 {
                                    stress_size(&mut rng)
                                } else {
                                    b.size / 2 + rng.below(b.size + 2)
                                }
                                .max(1);
                                // SAFETY: `b` is live with layout(b.size) and owned by this worker.
                                unsafe {
                                    verify(
                                        check(b.ptr(), b.size, tag_of(b.size)),
                                        "block before realloc",
                                    );
                                    let first = *b.ptr();
                                    let q = a.realloc(b.ptr(), layout(b.size), new_size);
                                    if q.is_null() {
                                        oom(layout(new_size));
                                    }
                                    verify(*q == first, "block prefix after realloc");
                                    touch(q, new_size, tag_of(new_size));
                                    slots[s] = Block {
                                        addr: q as usize,
                                        size: new_size,
                                    };
                                }
                                n += 1;
                            }
                            4..=7 => {
                                put(a, b.ptr(), b.size);
                                slots[s] = EMPTY;
                                n += 1;
                            }
                            _ => {
                                exchange.lock().unwrap().push(b);
                                slots[s] = EMPTY;
                            }
                        }
                    }
                    for b in slots.into_iter().filter(|b| b.addr != 0) {
                        put(a, b.ptr(), b.size);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    for b in exchange.into_inner().unwrap() {
        put(a, b.ptr(), b.size);
        n += 1;
    }
    n
}

/// 11: Rust-heavy work on std collections. The collections allocate through
/// the global allocator, which in a child process is `Dispatch` routed to the
/// allocator under test; `_a` is that same allocator.
pub fn rust_collections<A: GlobalAlloc + Sync + ?Sized>(_a: &A, p: &Params) -> u64 {
    let t = p.threads.max(1);
    let rounds = p.n(4, 16);
    let keys = 20_000u64;
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..t)
            .map(|id| {
                sc.spawn(move || {
                    let mut rng = Rng::new(11 + id as u64);
                    let mut n = 0u64;
                    for _ in 0..rounds {
                        // A BTreeMap of strings, half of it removed again.
                        let mut tree: BTreeMap<u64, String> = BTreeMap::new();
                        for _ in 0..keys {
                            let k = rng.next() % (keys * 4);
                            tree.insert(k, format!("value-{k}-{}", k % 97));
                        }
                        let all: Vec<u64> = tree.keys().copied().collect();
                        for k in all.iter().step_by(2) {
                            tree.remove(k);
                        }
                        n += tree.values().map(|v| v.len() as u64).sum::<u64>() / 8;
                        // A HashMap from words to vectors of positions.
                        let mut index: HashMap<String, Vec<u32>> = HashMap::new();
                        for i in 0..keys as u32 {
                            let w = format!("w{}", rng.below(3000));
                            index.entry(w).or_default().push(i);
                        }
                        let count: usize = index.values().map(Vec::len).sum();
                        verify(count == keys as usize, "hash map positions");
                        n += index.len() as u64;
                        // Strings built piece by piece, and vectors of them.
                        let mut lines: Vec<String> = Vec::new();
                        for i in 0..keys / 4 {
                            let mut s = String::new();
                            for j in 0..(i % 16) {
                                s.push_str(if j % 2 == 0 { "ab" } else { "cde" });
                            }
                            s.push('\n');
                            lines.push(s);
                        }
                        let joined = lines.concat();
                        verify(
                            joined.len() == lines.iter().map(String::len).sum::<usize>(),
                            "joined string length",
                        );
                        n += joined.len() as u64 / 64;
                        let mut sorted: Vec<Vec<u8>> =
                            lines.into_iter().map(String::into_bytes).collect();
                        sorted.sort();
                        sorted.dedup();
                        n += sorted.len() as u64;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

/// 12: many threads created and exited. Each allocates 200 blocks, frees
/// half and hands the other half back, freed by the main thread after the
/// thread has gone.
pub fn threads<A: GlobalAlloc + Sync + ?Sized>(a: &A, p: &Params) -> u64 {
    let total = p.n(300, 1_200);
    let batch = p.threads.max(1) * 2;
    let mut n = 0u64;
    let mut started = 0;
    while started < total {
        let k = batch.min(total - started);
        let handed: Vec<Vec<Block>> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..k)
                .map(|i| {
                    let seed = (started + i) as u64;
                    sc.spawn(move || {
                        let mut rng = Rng::new(12 + seed);
                        let mut blocks: Vec<Block> = (0..200)
                            .map(|_| {
                                let size = rng.range(16, 2048);
                                Block {
                                    addr: get(a, size) as usize,
                                    size,
                                }
                            })
                            .collect();
                        let keep = blocks.split_off(100);
                        for b in blocks {
                            put(a, b.ptr(), b.size);
                        }
                        keep
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for b in handed.into_iter().flatten() {
            put(a, b.ptr(), b.size);
            n += 1;
        }
        started += k;
    }
    n
}
