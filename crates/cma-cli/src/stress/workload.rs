//! The workers of `cma stress`: the original system's six-thread
//! malloc/realloc/free test (the engine's own `crates/cma/tests/stress.rs`
//! made a command), calling the C allocator through `malloc`, `realloc` and
//! `free`, so that whatever library is preloaded serves them.
//!
//! Each worker cycles over its own slot array and chooses, at every
//! iteration, to allocate, reallocate, free, hand a block to another worker
//! or take one from another worker (so frees and reallocs cross threads).
//! Every block carries a content pattern derived from (worker, slot,
//! generation, size), checked in full before every realloc and free and
//! after every hand-over; the preserved prefix is checked after every
//! realloc.
//!
//! Nothing here allocates from the Rust side once the run has started
//! (slot arrays and the exchange are sized before it): the allocator's own
//! counters then see the workers' calls and nothing else.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

/// Blocks a worker holds at most.
pub const SLOTS: usize = 256;
/// Blocks waiting in the exchange at most; a worker frees a block it cannot
/// hand over.
pub const EXCHANGE_CAPACITY: usize = 4096;

/// A small, fast RNG (xorshift64 seeded through splitmix64).
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
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
        // SAFETY: inside the block; unaligned for blocks aligned to 8 only.
        unsafe { (p.add(k * 8) as *mut u64).write_unaligned(pattern_word(seed, k)) };
    }
    let tail = pattern_word(seed, words).to_le_bytes();
    for (i, b) in tail.iter().enumerate().take(len - words * 8) {
        // SAFETY: inside the block.
        unsafe { p.add(words * 8 + i).write(*b) };
    }
}

/// The first byte offset in `[0, len)` where the pattern of `seed` is
/// wrong: (offset, expected, found).
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
            let i = (0..8).find(|&i| g[i] != w[i]).unwrap_or(0);
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

/// A live block: address, requested size, pattern seed, and who filled it.
#[derive(Clone, Copy, Debug)]
pub struct Block {
    addr: usize,
    size: usize,
    seed: u64,
    filled_by: usize,
}

/// Panics (failing the worker) when `len` bytes of `block` lost their
/// pattern.
pub fn check(block: &Block, len: usize, worker: usize, iteration: u64, what: &str) {
    // SAFETY: the block is live and held by the caller for `block.size >= len` bytes.
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

/// The operations a worker reports to the watchdog.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
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

pub fn op_name(op: u8) -> &'static str {
    OP_NAMES.get(op as usize).copied().unwrap_or("unknown")
}

/// What the watchdog sees of a worker.
#[derive(Default)]
pub struct Progress {
    pub iteration: AtomicU64,
    pub last_op: AtomicU8,
    pub finished: AtomicBool,
}

impl Progress {
    fn step(&self, iteration: u64, op: Op) {
        self.iteration.store(iteration, Ordering::Relaxed);
        self.last_op.store(op as u8, Ordering::Relaxed);
    }
}

/// What the workers share.
pub struct Shared {
    pub progress: Vec<Progress>,
    /// Blocks handed from one worker to another (capacity fixed).
    pub exchange: Mutex<Vec<Block>>,
    /// Set when the run's time is up, or a worker failed.
    pub stop: AtomicBool,
    /// A worker to stall on purpose at an iteration (the test of the
    /// watchdog; `CMA_STRESS_STALL=WORKER:ITERATION`).
    pub stall: Option<(usize, u64)>,
}

/// What one worker did.
#[derive(Clone, Copy, Default, Debug)]
pub struct Tally {
    pub iterations: u64,
    pub mallocs: u64,
    pub frees: u64,
    pub reallocs: u64,
    pub moves: u64,
    pub handed_over: u64,
    pub bytes_checked: u64,
}

impl Tally {
    pub fn add(&mut self, t: &Tally) {
        self.iterations += t.iterations;
        self.mallocs += t.mallocs;
        self.frees += t.frees;
        self.reallocs += t.reallocs;
        self.moves += t.moves;
        self.handed_over += t.handed_over;
        self.bytes_checked += t.bytes_checked;
    }
}

fn pick_size(rng: &mut XorShift) -> usize {
    // Never 0: malloc(0) and realloc(p, 0) differ between allocators.
    1 + match rng.below(1000) {
        0..=599 => rng.below(256) as usize,              // tiny, to 256 B
        600..=899 => 256 + rng.below(4 * 1024) as usize, // to 4 KiB
        900..=979 => rng.below(128 * 1024) as usize,     // any size class
        980..=997 => 128 * 1024 + rng.below(400 * 1024) as usize, // large
        _ => (1 << 20) + rng.below(1 << 20) as usize,    // huge
    }
}

/// Blocks forever, where the watchdog and the stacks can see it: the stall
/// the watchdog's test asks for.
#[inline(never)]
fn stall_on_purpose(progress: &Progress, iteration: u64) -> ! {
    progress.step(iteration, Op::Malloc);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// Runs worker `id` until `iterations` are done or `stop` is set, holding
/// its blocks in `slots` (sized by the caller); frees what it still holds
/// at the end.
pub fn worker(
    id: usize,
    seed: u64,
    iterations: u64,
    shared: &Shared,
    slots: &mut [Option<Block>],
) -> Tally {
    let progress = &shared.progress[id];
    let mut rng = XorShift::new(seed ^ (id as u64).wrapping_mul(0xA24B_AED4_963E_E407));
    let mut generation = 0u64;
    let mut t = Tally::default();
    let mut it = 0u64;
    while it < iterations && !shared.stop.load(Ordering::Relaxed) {
        if shared.stall == Some((id, it)) {
            stall_on_purpose(progress, it);
        }
        let s = it as usize % slots.len();
        generation += 1;
        match slots[s] {
            None => 'alloc: {
                if rng.below(2) == 0 {
                    progress.step(it, Op::Take);
                    let taken = shared
                        .exchange
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .pop();
                    if let Some(b) = taken {
                        check(&b, b.size, id, it, "block taken from another worker");
                        t.bytes_checked += b.size as u64;
                        slots[s] = Some(b);
                        break 'alloc;
                    }
                }
                progress.step(it, Op::Malloc);
                let size = pick_size(&mut rng);
                // SAFETY: malloc has no preconditions.
                let p = unsafe { libc::malloc(size) }.cast::<u8>();
                assert!(
                    !p.is_null(),
                    "worker {id} iteration {it}: malloc({size}) returned null"
                );
                assert_eq!(
                    p as usize % if size >= 16 { 16 } else { 8 },
                    0,
                    "worker {id} iteration {it}: malloc({size}) returned a misaligned {p:p}"
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
                        1 + b.size / 2 + rng.below(b.size as u64 + 2) as usize
                    };
                    // SAFETY: `b` is a live block this worker holds.
                    let q = unsafe { libc::realloc(b.addr as *mut libc::c_void, new_size) }
                        .cast::<u8>();
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
                    unsafe { libc::free(b.addr as *mut libc::c_void) };
                    t.frees += 1;
                    slots[s] = None;
                }
                _ => {
                    progress.step(it, Op::Give);
                    let mut exchange = shared.exchange.lock().unwrap_or_else(|e| e.into_inner());
                    if exchange.len() < EXCHANGE_CAPACITY {
                        exchange.push(b);
                        t.handed_over += 1;
                        slots[s] = None;
                    }
                }
            },
        }
        if it % 4096 == 4095 {
            // Nothing else may have written into the blocks still held.
            progress.step(it, Op::Check);
            for b in slots.iter().flatten() {
                check(b, b.size, id, it, "periodic check");
            }
        }
        it += 1;
    }
    t.iterations = it;
    progress.step(it, Op::Cleanup);
    for b in slots.iter_mut().filter_map(Option::take) {
        check(&b, b.size, id, it, "before the final free");
        // SAFETY: live and held by this worker.
        unsafe { libc::free(b.addr as *mut libc::c_void) };
        t.frees += 1;
    }
    progress.step(it, Op::Done);
    t
}

/// Checks and frees the blocks left in the exchange once every worker is
/// done; returns how many.
pub fn drain_exchange(shared: &Shared, iteration: u64) -> u64 {
    let mut exchange = shared.exchange.lock().unwrap_or_else(|e| e.into_inner());
    let mut n = 0;
    while let Some(b) = exchange.pop() {
        check(&b, b.size, usize::MAX, iteration, "left in the exchange");
        // SAFETY: live, and every worker is done.
        unsafe { libc::free(b.addr as *mut libc::c_void) };
        n += 1;
    }
    n
}
