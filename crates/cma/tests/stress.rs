//! The original system's six-thread stress test, rebuilt for cma.
//!
//! Six workers each cycle over their own slot array and choose, at every
//! iteration, to allocate, reallocate, free, hand a block to another thread
//! or take one from another thread (so frees and reallocs cross threads).
//! Every block carries a content pattern derived from (worker, slot,
//! generation, size) that is checked before every realloc and free, and the
//! preserved prefix is checked after every realloc. At the join the
//! allocation and free counters of `cma::stats()` balance exactly.
//!
//! The original hung at its join after its lock was removed; here a watchdog
//! turns a hang into a failure that names every worker, its iteration and its
//! last operation. The test binary does not use cma as its global allocator,
//! so cma's counters see only the explicit calls made here.
//!
//! Knobs: `CMA_STRESS_SEED` (base seed, default fixed), `CMA_STRESS_ITERS`
//! (iterations per worker).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const WORKERS: usize = 6;
const SLOTS: usize = 256;
/// A hang is declared when no unfinished worker advanced for this long.
const STALL_LIMIT: Duration = Duration::from_secs(30);

// ----- a tiny RNG -----

struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(splitmix(seed) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

// ----- content patterns -----

fn pattern_seed(worker: usize, slot: usize, generation: u64, size: usize) -> u64 {
    splitmix(
        splitmix(splitmix(worker as u64) ^ slot as u64)
            ^ generation.rotate_left(20)
            ^ (size as u64).rotate_left(40),
    )
}

/// The pattern's 8-byte word number `k`.
#[inline]
fn pattern_word(seed: u64, k: usize) -> u64 {
    seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Fills `len` bytes at `p` with the pattern of `seed`.
///
/// # Safety
/// `p` is valid for `len` bytes of writes.
unsafe fn fill(p: *mut u8, len: usize, seed: u64) {
    let words = len / 8;
    for k in 0..words {
        // SAFETY: inside the block; unaligned write for blocks aligned to 8 only.
        unsafe { (p.add(k * 8) as *mut u64).write_unaligned(pattern_word(seed, k)) };
    }
    let tail = pattern_word(seed, words).to_le_bytes();
    for (i, b) in tail.iter().enumerate().take(len - words * 8) {
        // SAFETY: inside the block.
        unsafe { p.add(words * 8 + i).write(*b) };
    }
}

/// The first byte offset in `[0, len)` where the pattern of `seed` is wrong.
///
/// # Safety
/// `p` is valid for `len` bytes of reads.
unsafe fn first_mismatch(p: *const u8, len: usize, seed: u64) -> Option<(usize, u8, u8)> {
    let words = len / 8;
    for k in 0..words {
        // SAFETY: inside the block.
        let got = unsafe { (p.add(k * 8) as *const u64).read_unaligned() };
        let want = pattern_word(seed, k);
        if got != want {
            let (g, w) = (got.to_le_bytes(), want.to_le_bytes());
            let i = (0..8).find(|&i| g[i] != w[i]).unwrap();
            return Some((k * 8 + i, w[i], g[i]));
        }
    }
    let tail = pattern_word(seed, words).to_le_bytes();
    for (i, &want) in tail.iter().enumerate().take(len - words * 8) {
        // SAFETY: inside the block.
        let got = unsafe { p.add(words * 8 + i).read() };
        if got != want {
            return Some((words * 8 + i, want, got));
        }
    }
    None
}

// ----- blocks and workers -----

/// A live block: address, requested size, pattern seed, and who filled it.
#[derive(Clone, Copy, Debug)]
struct Block {
    addr: usize,
    size: usize,
    seed: u64,
    filled_by: usize,
}

fn check(block: &Block, len: usize, worker: usize, iteration: u64, what: &str) {
    // SAFETY: the block is live and owned by the caller for `block.size >= len` bytes.
    if let Some((offset, want, got)) =
        unsafe { first_mismatch(block.addr as *const u8, len, block.seed) }
    {
        panic!(
            "worker {worker} iteration {iteration}: {what}: block {:#x} of {} bytes (filled by worker {}) \
             has byte {got:#04x} at offset {offset}, expected {want:#04x}",
            block.addr, block.size, block.filled_by
        );
    }
}

#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    // 0 is "start": a worker that has not done anything yet.
    Malloc = 1,
    Realloc,
    Free,
    Give,
    Take,
    Check,
    Cleanup,
    Done,
}

const OP_NAMES: [&str; 9] = [
    "start", "malloc", "realloc", "free", "give", "take", "check", "cleanup", "done",
];

fn op_name(op: u8) -> &'static str {
    OP_NAMES.get(op as usize).copied().unwrap_or("unknown")
}

/// What the watchdog sees of a worker.
#[derive(Default)]
pub struct Progress {
    iteration: AtomicU64,
    last_op: AtomicU8,
    finished: AtomicBool,
}

impl Progress {
    fn step(&self, iteration: u64, op: Op) {
        self.iteration.store(iteration, Ordering::Relaxed);
        self.last_op.store(op as u8, Ordering::Relaxed);
    }
}

/// Watches `workers` until all have finished. Returns the diagnostic when no
/// unfinished worker advanced for `stall_limit`.
fn watchdog(workers: &[Progress], stall_limit: Duration, poll: Duration) -> Result<(), String> {
    let snapshot = |w: &[Progress]| -> Vec<u64> {
        w.iter()
            .map(|p| p.iteration.load(Ordering::Relaxed))
            .collect()
    };
    let mut last = snapshot(workers);
    let mut last_change = Instant::now();
    loop {
        if workers.iter().all(|p| p.finished.load(Ordering::Acquire)) {
            return Ok(());
        }
        thread::sleep(poll);
        let now = snapshot(workers);
        if now != last {
            last = now;
            last_change = Instant::now();
        } else if last_change.elapsed() >= stall_limit {
            return Err(diagnostic(workers, last_change.elapsed()));
        }
    }
}

fn diagnostic(workers: &[Progress], stalled: Duration) -> String {
    let mut msg = format!(
        "stress watchdog: no worker made progress for {} s;",
        stalled.as_secs()
    );
    for (i, p) in workers.iter().enumerate() {
        msg.push_str(&format!(
            " worker {i}: iteration {}, last op {}{};",
            p.iteration.load(Ordering::Relaxed),
            op_name(p.last_op.load(Ordering::Relaxed)),
            if p.finished.load(Ordering::Acquire) {
                " (finished)"
            } else {
                ""
            }
        ));
    }
    msg
}

struct Shared {
    progress: Vec<Progress>,
    exchange: Mutex<Vec<Block>>,
    stop: AtomicBool,
}

/// What one worker did, for the counter balance.
#[derive(Default, Debug)]
struct Tally {
    mallocs: u64,
    frees: u64,
    reallocs: u64,
    moves: u64,
    bytes_checked: u64,
}

fn pick_size(rng: &mut XorShift) -> usize {
    match rng.below(1000) {
        0..=599 => rng.below(257) as usize, // tiny to 256 B, zero included
        600..=899 => 257 + rng.below(4 * 1024) as usize, // up to 4 KiB
        900..=979 => rng.below(cma::MAX_SMALL as u64 + 1) as usize, // any size class
        980..=997 => cma::MAX_SMALL + 1 + rng.below(400 * 1024) as usize, // large
        _ => (1 << 20) + rng.below(1 << 20) as usize, // huge
    }
}

fn worker(id: usize, seed: u64, iterations: u64, shared: &Shared) -> Tally {
    let progress = &shared.progress[id];
    let mut rng = XorShift::new(seed ^ (id as u64).wrapping_mul(0xA24B_AED4_963E_E407));
    let mut slots: Vec<Option<Block>> = vec![None; SLOTS];
    let mut generation = 0u64;
    let mut t = Tally::default();
    for it in 0..iterations {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let s = it as usize % SLOTS;
        generation += 1;
        match slots[s] {
            None => {
                if rng.below(2) == 0 {
                    progress.step(it, Op::Take);
                    let taken = shared.exchange.lock().unwrap().pop();
                    if let Some(b) = taken {
                        check(&b, b.size, id, it, "taken block");
                        t.bytes_checked += b.size as u64;
                        slots[s] = Some(b);
                        continue;
                    }
                }
                progress.step(it, Op::Malloc);
                let size = pick_size(&mut rng);
                let p = cma::malloc(size);
                assert!(
                    !p.is_null(),
                    "worker {id} iteration {it}: malloc({size}) returned null"
                );
                assert_eq!(
                    p as usize % if size >= 16 { 16 } else { 8 },
                    0,
                    "malloc({size}) misaligned: {p:p}"
                );
                t.mallocs += 1;
                let seed = pattern_seed(id, s, generation, size);
                // SAFETY: a fresh block of `size` bytes.
                unsafe { fill(p, size, seed) };
                slots[s] = Some(Block {
                    addr: p as usize,
                    size,
                    seed,
                    filled_by: id,
                });
            }
            Some(b) => match rng.below(10) {
                0..=3 => {
                    progress.step(it, Op::Realloc);
                    check(&b, b.size, id, it, "before realloc");
                    t.bytes_checked += b.size as u64;
                    let new_size = if rng.below(2) == 0 {
                        pick_size(&mut rng)
                    } else {
                        b.size / 2 + rng.below(b.size as u64 + 2) as usize
                    };
                    // SAFETY: `b` is a live block this worker owns.
                    let q = unsafe { cma::realloc(b.addr as *mut u8, new_size) };
                    assert!(
                        !q.is_null(),
                        "worker {id} iteration {it}: realloc({:#x}, {new_size}) returned null",
                        b.addr
                    );
                    t.reallocs += 1;
                    if q as usize != b.addr {
                        t.moves += 1;
                    }
                    let kept = Block {
                        addr: q as usize,
                        ..b
                    };
                    check(&kept, b.size.min(new_size), id, it, "prefix after realloc");
                    let seed = pattern_seed(id, s, generation, new_size);
                    // SAFETY: `q` is a live block of `new_size` bytes.
                    unsafe { fill(q, new_size, seed) };
                    slots[s] = Some(Block {
                        addr: q as usize,
                        size: new_size,
                        seed,
                        filled_by: id,
                    });
                }
                4..=7 => {
                    progress.step(it, Op::Free);
                    check(&b, b.size, id, it, "before free");
                    t.bytes_checked += b.size as u64;
                    // SAFETY: `b` is live and nobody else holds it.
                    unsafe { cma::free(b.addr as *mut u8) };
                    t.frees += 1;
                    slots[s] = None;
                }
                _ => {
                    progress.step(it, Op::Give);
                    shared.exchange.lock().unwrap().push(b);
                    slots[s] = None;
                }
            },
        }
        if it % 4096 == 4095 {
            // Check every block still held: nothing else may have written into them.
            progress.step(it, Op::Check);
            for b in slots.iter().flatten() {
                check(b, b.size, id, it, "periodic check");
            }
        }
    }
    progress.step(iterations, Op::Cleanup);
    for b in slots.iter_mut().filter_map(Option::take) {
        check(&b, b.size, id, iterations, "before final free");
        // SAFETY: live and ours.
        unsafe { cma::free(b.addr as *mut u8) };
        t.frees += 1;
    }
    progress.step(iterations, Op::Done);
    t
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn six_threads_malloc_realloc_free_with_cross_thread_frees() {
    let seed = env_u64("CMA_STRESS_SEED").unwrap_or(0x5EED_C0DE);
    let default_iters = if cfg!(debug_assertions) {
        30_000
    } else {
        200_000
    };
    let iterations = env_u64("CMA_STRESS_ITERS").unwrap_or(default_iters);
    eprintln!("stress: seed {seed:#x}, {iterations} iterations per worker (CMA_STRESS_SEED / CMA_STRESS_ITERS)");

    let before = cma::stats();
    let shared = Arc::new(Shared {
        progress: (0..WORKERS).map(|_| Progress::default()).collect(),
        exchange: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
    });
    let handles: Vec<_> = (0..WORKERS)
        .map(|id| {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("stress-{id}"))
                .spawn(move || {
                    // Mark the worker finished however it ends, so a failing
                    // worker does not look like a hang.
                    struct Finish<'a>(&'a Shared, usize);
                    impl Drop for Finish<'_> {
                        fn drop(&mut self) {
                            if thread::panicking() {
                                self.0.stop.store(true, Ordering::Relaxed);
                            }
                            self.0.progress[self.1]
                                .finished
                                .store(true, Ordering::Release);
                        }
                    }
                    let _finish = Finish(&shared, id);
                    worker(id, seed, iterations, &shared)
                })
                .unwrap()
        })
        .collect();

    if let Err(msg) = watchdog(&shared.progress, STALL_LIMIT, Duration::from_millis(100)) {
        eprintln!("{msg}");
        panic!("{msg}");
    }
    let mut total = Tally::default();
    let mut failures = Vec::new();
    for (id, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(t) => {
                total.mallocs += t.mallocs;
                total.frees += t.frees;
                total.reallocs += t.reallocs;
                total.moves += t.moves;
                total.bytes_checked += t.bytes_checked;
            }
            Err(e) => failures.push(format!(
                "worker {id}: {}",
                e.downcast_ref::<String>()
                    .map(String::as_str)
                    .or(e.downcast_ref::<&str>().copied())
                    .unwrap_or("panic")
            )),
        }
    }
    assert!(failures.is_empty(), "workers failed: {failures:#?}");

    // Blocks still in the exchange queue: check and free them from this thread.
    let left: Vec<Block> = std::mem::take(&mut *shared.exchange.lock().unwrap());
    for b in &left {
        check(
            b,
            b.size,
            usize::MAX,
            iterations,
            "left in the exchange queue",
        );
        // SAFETY: live, and every worker is gone.
        unsafe { cma::free(b.addr as *mut u8) };
        total.frees += 1;
    }
    eprintln!(
        "stress: {total:?}, {} blocks freed from the exchange queue",
        left.len()
    );

    let after = cma::stats();
    let allocations = after.allocations - before.allocations;
    let frees = after.frees - before.frees;
    assert_eq!(
        total.mallocs, total.frees,
        "the test's own books: every block allocated was freed"
    );
    assert_eq!(
        allocations, frees,
        "cma counted {allocations} allocations but {frees} frees"
    );
    assert_eq!(
        allocations,
        total.mallocs + total.moves,
        "allocations: cma vs. the calls made"
    );
    assert_eq!(
        frees,
        total.frees + total.moves,
        "frees: cma vs. the calls made"
    );
    assert_eq!(
        after.bytes_in_use, before.bytes_in_use,
        "bytes in use after everything was freed"
    );
    let live_blocks: u64 = after.classes.iter().map(|c| c.blocks_in_use).sum::<u64>()
        + (after.large_allocations - after.large_frees);
    let live_before: u64 = before.classes.iter().map(|c| c.blocks_in_use).sum::<u64>()
        + (before.large_allocations - before.large_frees);
    assert_eq!(
        live_blocks, live_before,
        "blocks in use after everything was freed"
    );
    assert!(
        total.moves > 0 && total.moves < total.reallocs,
        "the workload exercised reallocs that move and reallocs in place: {total:?}"
    );
}

/// The watchdog works: against a worker that never advances, it returns a
/// diagnostic naming every worker, its iteration and its last operation.
#[test]
fn watchdog_names_the_stuck_worker_its_iteration_and_last_operation() {
    let workers: Arc<Vec<Progress>> = Arc::new((0..3).map(|_| Progress::default()).collect());
    // Worker 0 finishes, worker 1 is stuck in a free at iteration 4711,
    // worker 2 is stuck in a realloc at iteration 42.
    workers[0].step(1000, Op::Done);
    workers[0].finished.store(true, Ordering::Release);
    workers[1].step(4711, Op::Free);
    workers[2].step(42, Op::Realloc);
    let w = Arc::clone(&workers);
    let watcher =
        thread::spawn(move || watchdog(&w, Duration::from_millis(300), Duration::from_millis(20)));
    let msg = watcher
        .join()
        .unwrap()
        .expect_err("the watchdog must report a stuck worker");
    assert!(msg.contains("no worker made progress"), "{msg}");
    assert!(
        msg.contains("worker 0: iteration 1000, last op done (finished)"),
        "{msg}"
    );
    assert!(
        msg.contains("worker 1: iteration 4711, last op free;"),
        "{msg}"
    );
    assert!(
        msg.contains("worker 2: iteration 42, last op realloc;"),
        "{msg}"
    );
}

/// And it stays quiet while workers advance and returns once all finish.
#[test]
fn watchdog_returns_when_workers_finish() {
    let workers: Arc<Vec<Progress>> = Arc::new((0..2).map(|_| Progress::default()).collect());
    let w = Arc::clone(&workers);
    let fake = thread::spawn(move || {
        for (i, p) in w.iter().enumerate() {
            for it in 0..20 {
                p.step(it, if i == 0 { Op::Malloc } else { Op::Free });
                thread::sleep(Duration::from_millis(5));
            }
            p.finished.store(true, Ordering::Release);
        }
    });
    // A generous limit: this test checks the "all finished" exit, not timing.
    let result = watchdog(&workers, Duration::from_secs(60), Duration::from_millis(10));
    fake.join().unwrap();
    assert_eq!(result, Ok(()));
}
