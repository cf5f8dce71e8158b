//! The multi-threaded workloads, where blocks are freed by threads other than
//! the one that allocated them or threads come and go: `larson`, `prodcons`,
//! `false-sharing`, `stress6` and `threads`.

use core::alloc::GlobalAlloc;
use std::sync::{Barrier, Mutex};

use super::block::{layout, live, oom, put_all, tag_of, Block, EMPTY};
use super::Params;
use crate::util::{check, touch, verify, Rng};

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
                                if arr[s].put_if_live(a) {
                                    n += 1;
                                }
                                let size = rng.range(16, 1024);
                                arr[s] = Block::get(a, size);
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
        n += put_all(a, live(arr.into_inner().unwrap()));
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
                        let batch: Vec<Block> =
                            (0..k).map(|_| Block::get(a, rng.range(16, 512))).collect();
                        tx.send(batch).unwrap();
                        left -= k;
                    }
                });
                let consumer = sc.spawn(move || {
                    let mut n = 0u64;
                    for batch in rx {
                        n += put_all(a, batch);
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
    let seeds: Vec<Block> = (0..t).map(|_| Block::get(a, 8)).collect();
    n += std::thread::scope(|sc| {
        let hs: Vec<_> = seeds
            .iter()
            .map(|&b| {
                sc.spawn(move || {
                    b.put(a);
                    hammer(a, iterations, writes) + 1
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
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
    let n: u64 = std::thread::scope(|sc| {
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
                            slots[s] = Block::get(a, stress_size(&mut rng));
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
                                b.put(a);
                                slots[s] = EMPTY;
                                n += 1;
                            }
                            _ => {
                                exchange.lock().unwrap().push(b);
                                slots[s] = EMPTY;
                            }
                        }
                    }
                    n + put_all(a, live(slots))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    n + put_all(a, exchange.into_inner().unwrap())
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
                            .map(|_| Block::get(a, rng.range(16, 2048)))
                            .collect();
                        let keep = blocks.split_off(100);
                        put_all(a, blocks);
                        keep
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        n += put_all(a, handed.into_iter().flatten());
        started += k;
    }
    n
}
