//! `cma::Backend` through the Rust API: bump backends set, replaced and
//! cleared while blocks of cma and of several backends are live, through
//! `cma::backend::{malloc, realloc, free, ...}` and through
//! `cma::CmaWithBackends`, this binary's global allocator.
//!
//! Every scenario runs in a child process of its own (this binary run
//! again with the scenario's name), so that the process-wide backend table
//! and counters start empty and the standard library's lazy allocations
//! are made before a backend is set. The parent checks each child's
//! verdict (`SCENARIO: ok`) at the `fast` and `default` levels, and that
//! the death scenarios die of SIGABRT with cma's one-line diagnostic.
//!
//! Plain `main` (no libtest): libtest's own threads would allocate through
//! the global allocator while a backend is set.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cma::{Backend, BackendError, CmaError};

#[global_allocator]
static ALLOC: cma::CmaWithBackends = cma::CmaWithBackends;

// ----- a bump backend: blocks from a static arena, each behind a header -----

/// Bytes before each block, holding its `Header`.
const HEADER: usize = 64;
const LIVE: usize = 0xB10C_B10C;

#[repr(C, align(4096))]
struct Memory<const N: usize>(UnsafeCell<[u8; N]>);

/// A block's header, `HEADER` bytes before it.
struct Header {
    size: AtomicUsize,
    /// `LIVE` while the block is live, 0 once given back.
    magic: AtomicUsize,
    /// The address of the `Bump` that handed it out.
    owner: AtomicUsize,
}

/// Hands out blocks from its arena, never reusing memory; counts what it
/// does, and what it was asked to do wrong (`wrong`: a block that is not
/// its live block, or a size that is not the block's).
struct Bump<const N: usize> {
    memory: Memory<N>,
    used: AtomicUsize,
    /// Shrinks in place (`reallocate`) instead of always moving.
    in_place: bool,
    /// Writes a line to stderr whenever it is asked `owns` (death tests).
    say_when_asked: AtomicBool,
    live: AtomicIsize,
    live_bytes: AtomicIsize,
    allocations: AtomicUsize,
    deallocations: AtomicUsize,
    reallocations: AtomicUsize,
    wrong: AtomicUsize,
    last_freed_was_zero: AtomicBool,
}

// SAFETY: the arena's bytes are handed out once each (`used` is claimed
// atomically) and only read through the blocks' owners; headers are atomics.
unsafe impl<const N: usize> Sync for Bump<N> {}

impl<const N: usize> Bump<N> {
    const fn new(in_place: bool) -> Self {
        Bump {
            memory: Memory(UnsafeCell::new([0; N])),
            used: AtomicUsize::new(0),
            in_place,
            say_when_asked: AtomicBool::new(false),
            live: AtomicIsize::new(0),
            live_bytes: AtomicIsize::new(0),
            allocations: AtomicUsize::new(0),
            deallocations: AtomicUsize::new(0),
            reallocations: AtomicUsize::new(0),
            wrong: AtomicUsize::new(0),
            last_freed_was_zero: AtomicBool::new(false),
        }
    }

    fn base(&self) -> usize {
        self.memory.0.get() as usize
    }

    /// Whether `p` could be a block of this arena (without reading it).
    fn contains(&self, p: *const u8) -> bool {
        let p = p as usize;
        p >= self.base() + HEADER && p < self.base() + N && p % HEADER == 0
    }

    fn header(&self, p: *const u8) -> &Header {
        debug_assert!(self.contains(p));
        // SAFETY: `p` lies in the arena, 64-aligned, past its first 64
        // bytes: a header's place, zeroed or written by `allocate`.
        unsafe { &*((p as usize - HEADER) as *const Header) }
    }

    fn is_live_block(&self, p: *const u8) -> bool {
        self.contains(p)
            && self.header(p).magic.load(Ordering::Acquire) == LIVE
            && self.header(p).owner.load(Ordering::Relaxed) == self as *const Self as usize
    }

    fn live(&self) -> isize {
        self.live.load(Ordering::SeqCst)
    }

    fn wrong(&self) -> usize {
        self.wrong.load(Ordering::SeqCst)
    }

    fn allocations(&self) -> usize {
        self.allocations.load(Ordering::SeqCst)
    }

    fn deallocations(&self) -> usize {
        self.deallocations.load(Ordering::SeqCst)
    }
}

// SAFETY: blocks are disjoint pieces of the arena, aligned as asked, never
// reused; `owns` reads only headers inside the arena; nothing here unwinds
// or allocates.
unsafe impl<const N: usize> Backend for Bump<N> {
    fn allocate(&self, layout: Layout) -> *mut u8 {
        let align = layout.align().max(HEADER);
        let size = layout.size().next_multiple_of(HEADER);
        let base = self.base();
        let mut start = 0;
        let claimed = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                start = (base + used + HEADER).next_multiple_of(align) - base;
                Some(start + size).filter(|&end| end <= N)
            });
        if claimed.is_err() {
            return std::ptr::null_mut();
        }
        let p = (base + start) as *mut u8;
        let h = self.header(p);
        h.size.store(layout.size(), Ordering::Relaxed);
        h.owner
            .store(self as *const Self as usize, Ordering::Relaxed);
        h.magic.store(LIVE, Ordering::Release);
        self.live.fetch_add(1, Ordering::SeqCst);
        self.live_bytes
            .fetch_add(layout.size() as isize, Ordering::SeqCst);
        self.allocations.fetch_add(1, Ordering::SeqCst);
        p
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, size: usize) {
        let p = ptr.as_ptr();
        if !self.is_live_block(p) || self.header(p).size.load(Ordering::Relaxed) != size {
            self.wrong.fetch_add(1, Ordering::SeqCst);
            return;
        }
        // SAFETY: our live block of `size` bytes.
        let bytes = unsafe { std::slice::from_raw_parts(p, size) };
        self.last_freed_was_zero
            .store(bytes.iter().all(|&b| b == 0), Ordering::SeqCst);
        self.header(p).magic.store(0, Ordering::Release);
        self.live.fetch_sub(1, Ordering::SeqCst);
        self.live_bytes.fetch_sub(size as isize, Ordering::SeqCst);
        self.deallocations.fetch_add(1, Ordering::SeqCst);
    }

    unsafe fn reallocate(&self, ptr: NonNull<u8>, old_size: usize, new_layout: Layout) -> *mut u8 {
        self.reallocations.fetch_add(1, Ordering::SeqCst);
        let p = ptr.as_ptr();
        if self.in_place
            && new_layout.size() <= old_size
            && p as usize % new_layout.align() == 0
            && self.is_live_block(p)
        {
            self.header(p)
                .size
                .store(new_layout.size(), Ordering::Relaxed);
            self.live_bytes
                .fetch_sub((old_size - new_layout.size()) as isize, Ordering::SeqCst);
            return p;
        }
        // SAFETY: the caller's contract.
        unsafe { cma::backend::reallocate_by_moving(self, ptr, old_size, new_layout) }
    }

    fn owns(&self, ptr: *const u8) -> bool {
        if self.say_when_asked.load(Ordering::Relaxed) {
            let line = b"bump backend: asked whether it owns a block\n";
            // SAFETY: a plain write of a static buffer.
            unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
        }
        self.is_live_block(ptr)
    }

    unsafe fn usable_size(&self, ptr: NonNull<u8>) -> usize {
        if !self.is_live_block(ptr.as_ptr()) {
            self.wrong.fetch_add(1, Ordering::SeqCst);
            return 0;
        }
        self.header(ptr.as_ptr()).size.load(Ordering::Relaxed)
    }
}

const BIG: usize = 64 << 20;
const SMALL: usize = 64 << 10;

static A: Bump<BIG> = Bump::new(false);
static B: Bump<BIG> = Bump::new(true);
static MANY: [Bump<SMALL>; 17] = [const { Bump::new(false) }; 17];

// ----- checks -----

/// Fails the child with a message (no unwinding through the allocator).
macro_rules! check {
    ($cond:expr) => {
        if !$cond {
            eprintln!("check failed at line {}: {}", line!(), stringify!($cond));
            std::process::exit(1);
        }
    };
}

fn in_a(p: *const u8) -> bool {
    A.contains(p)
}

fn in_b(p: *const u8) -> bool {
    B.contains(p)
}

fn fill(p: *mut u8, byte: u8, n: usize) {
    // SAFETY: callers pass live blocks of at least `n` bytes.
    unsafe { std::ptr::write_bytes(p, byte, n) };
}

fn holds(p: *const u8, byte: u8, n: usize) -> bool {
    // SAFETY: callers pass live blocks of at least `n` bytes.
    unsafe { std::slice::from_raw_parts(p, n) }
        .iter()
        .all(|&b| b == byte)
}

fn backend_stats_balance(before: cma::BackendStats) -> bool {
    let now = cma::backend::stats();
    now.allocations - before.allocations == now.frees - before.frees
        && now.bytes_in_use == before.bytes_in_use
}

// ----- scenarios (each in a child) -----

/// Blocks of cma, A and B live at once; backends set, replaced, cleared
/// and set again; every block back to its owner; counters balance.
fn routing() {
    let stats0 = cma::backend::stats();
    check!(!cma::backend_is_enabled());
    let c1 = cma::backend::malloc(100); // cma's, before any backend
    check!(!c1.is_null() && !in_a(c1) && !in_b(c1));
    fill(c1, b'c', 100);

    check!(cma::set_backend(&A) == Ok(()));
    check!(cma::backend_is_enabled());
    let a1 = cma::backend::malloc(200);
    check!(in_a(a1) && A.allocations() == 1);
    fill(a1, b'a', 200);
    let z = cma::backend::calloc(10, 8).cast::<u64>();
    // SAFETY: 10 zeroed u64s.
    check!(in_a(z.cast()) && unsafe { *z == 0 && *z.add(9) == 0 });
    let al = cma::backend::aligned_alloc(4096, 10);
    check!(in_a(al) && al as usize % 4096 == 0);
    // The global allocator routes too.
    let v = vec![7u8; 1000];
    check!(in_a(v.as_ptr()));
    let boxed = Box::new([9u64; 40]);
    check!(in_a(boxed.as_ptr().cast()));
    check!(cma::backend::block_size(a1) == 200);
    check!(cma::backend::block_size(c1) >= 100); // cma still answers for its block

    // Counted by the sizes the backend reports.
    let s = cma::backend::stats();
    check!(s.allocations - stats0.allocations == A.allocations() as u64);
    check!(s.bytes_in_use == A.live_bytes.load(Ordering::SeqCst) as u64);
    check!(s.bytes_in_use == 200 + 80 + 10 + 1000 + 320);

    // realloc: a cma block stays with cma, a backend block with its backend.
    // SAFETY: live blocks, replaced by the results.
    let c1 = unsafe { cma::backend::realloc(c1, 5000) };
    check!(!c1.is_null() && !in_a(c1) && holds(c1, b'c', 100));
    check!(A.reallocations.load(Ordering::SeqCst) == 0);
    // SAFETY: as above.
    let a1 = unsafe { cma::backend::realloc(a1, 300) };
    check!(in_a(a1) && holds(a1, b'a', 200) && A.reallocations.load(Ordering::SeqCst) == 1);
    check!(cma::backend::block_size(a1) == 300);
    let mut v = v;
    v.resize(3000, 7); // a backend block grown by the global allocator
    check!(in_a(v.as_ptr()) && v.iter().all(|&b| b == 7));

    // Replaced while A holds blocks.
    check!(cma::set_backend(&B) == Ok(()));
    let b1 = cma::backend::malloc(77);
    check!(in_b(b1) && B.allocations() == 1);
    fill(b1, 0xAB, 77);
    // SAFETY: live blocks, given up.
    unsafe {
        let before = A.deallocations();
        cma::backend::free(a1);
        check!(A.deallocations() == before + 1 && B.deallocations() == 0);
        cma::backend::bzero_and_free(b1); // wiped whole, then handed back
        check!(B.deallocations() == 1 && B.last_freed_was_zero.load(Ordering::SeqCst));
    }
    // B shrinks in place: the same block, fewer bytes.
    let b2 = cma::backend::malloc(500);
    // SAFETY: a live block, replaced by the result.
    let b2s = unsafe { cma::backend::realloc(b2, 100) };
    check!(b2s == b2 && cma::backend::block_size(b2s) == 100);

    // Cleared: new blocks are cma's; the backends' still go back to them.
    cma::clear_backend();
    check!(!cma::backend_is_enabled());
    let c2 = cma::backend::malloc(50);
    check!(!c2.is_null() && !in_a(c2) && !in_b(c2));
    let cbox = Box::new(5u32);
    check!(!in_a(&*cbox as *const u32 as *const u8));
    drop(boxed); // A's, through the global allocator
    drop(v);
    check!(A.live() == 2); // z and al
                           // SAFETY: live blocks, given up.
    unsafe {
        check!(cma::backend::checked_free(z.cast()) == Ok(()));
        check!(A.live() == 1);
        // No one owns it any more: cma says so, nothing changed.
        check!(matches!(
            cma::backend::checked_free(z.cast()),
            Err(CmaError::NotOurs { .. })
        ));
        let mut local = 0u64;
        check!(matches!(
            cma::backend::checked_free((&mut local as *mut u64).cast()),
            Err(CmaError::NotOurs { .. })
        ));
        cma::backend::free(al);
        cma::backend::free(b2s);
        cma::backend::free(c1);
        cma::backend::free(c2);
    }
    drop(cbox);

    // Setting a backend again makes its slot current again.
    check!(cma::set_backend(&A) == Ok(()));
    let again = cma::backend::malloc(8);
    check!(in_a(again));
    // SAFETY: a live block, given up.
    unsafe { cma::backend::free(again) };
    cma::clear_backend();

    check!(A.live() == 0 && B.live() == 0 && A.wrong() == 0 && B.wrong() == 0);
    check!(A.live_bytes.load(Ordering::SeqCst) == 0 && B.live_bytes.load(Ordering::SeqCst) == 0);
    check!(backend_stats_balance(stats0));
}

/// Both limits refuse a request before it reaches the backend, and the
/// total limit counts the backend's bytes with cma's.
fn limits() {
    check!(cma::set_backend(&A) == Ok(()));
    let held = cma::backend::malloc(10_000);
    check!(in_a(held));
    let calls = A.allocations();

    cma::set_alloc_limits(cma::AllocLimits {
        max_request: Some(1000),
        max_bytes_in_use: None,
    });
    let over_request = cma::backend::malloc(2000);
    cma::set_alloc_limits(cma::AllocLimits::default());
    check!(over_request.is_null() && A.allocations() == calls);

    // Room for 1000 bytes more than cma's and A's together. Nothing else
    // allocates until the limit is lifted.
    let cma_bytes = cma::stats().bytes_in_use as usize;
    let limit = cma_bytes + 10_000 + 1000;
    cma::set_alloc_limits(cma::AllocLimits {
        max_request: None,
        max_bytes_in_use: Some(limit),
    });
    let refused = cma::backend::malloc(2000); // 10,000 of A's + 2000 > room
    let refused_calls = A.allocations();
    let fits = cma::backend::malloc(500);
    cma::clear_backend();
    let cma_refused = cma::malloc(1000); // A's 10,500 still count
                                         // SAFETY: live blocks, given up.
    unsafe {
        cma::backend::free(held);
        cma::backend::free(fits);
    }
    let cma_fits = cma::malloc(5000); // A's bytes are gone
    cma::set_alloc_limits(cma::AllocLimits::default());

    check!(refused.is_null() && refused_calls == calls);
    check!(in_a(fits));
    check!(cma_refused.is_null());
    check!(!cma_fits.is_null());
    // SAFETY: a live block, given up.
    unsafe { cma::free(cma_fits) };
    check!(A.live() == 0 && A.wrong() == 0);
}

/// Sixteen backends can hold live blocks at once; a seventeenth waits
/// until one of them is empty.
fn table_full() {
    let mut blocks = [std::ptr::null_mut::<u8>(); 17];
    for (i, backend) in MANY.iter().enumerate().take(16) {
        check!(cma::set_backend(backend) == Ok(()));
        blocks[i] = cma::backend::malloc(16);
        check!(backend.contains(blocks[i]));
    }
    check!(cma::set_backend(&MANY[16]) == Err(BackendError::TooManyBackends));
    // SAFETY: a live block, given up.
    unsafe { cma::backend::free(blocks[3]) };
    check!(MANY[3].deallocations() == 1);
    check!(cma::set_backend(&MANY[16]) == Ok(()));
    blocks[16] = cma::backend::malloc(16);
    check!(MANY[16].contains(blocks[16]));
    cma::clear_backend();
    for (i, &p) in blocks.iter().enumerate() {
        if i != 3 {
            // SAFETY: a live block, given up.
            unsafe { cma::backend::free(p) };
            check!(MANY[i].deallocations() == 1);
        }
    }
    check!(MANY.iter().all(|b| b.live() == 0 && b.wrong() == 0));
}

const WORKERS: usize = 4;
const ITERATIONS: usize = 20_000;
/// The first `3 * STEP` iterations of every worker run in lockstep with
/// the switcher: STEP under A, STEP under B, STEP under cma.
const STEP: usize = 500;
const DEADLINE: Duration = Duration::from_secs(120);

static PROGRESS: [AtomicUsize; WORKERS] = [const { AtomicUsize::new(0) }; WORKERS];
static PHASE: AtomicUsize = AtomicUsize::new(0);
static CMA_BLOCKS: AtomicUsize = AtomicUsize::new(0);

/// Waits until `ready()`, at most `DEADLINE`; fails the child otherwise.
fn wait_until(what: &str, ready: impl Fn() -> bool) {
    let start = Instant::now();
    while !ready() {
        if start.elapsed() > DEADLINE {
            let progress: Vec<usize> = PROGRESS.iter().map(|p| p.load(Ordering::SeqCst)).collect();
            eprintln!("stuck waiting for {what}: worker progress {progress:?}");
            std::process::exit(1);
        }
        std::thread::yield_now();
    }
}

enum Held {
    None,
    /// A block of `cma::backend::malloc`, its size and fill byte.
    Raw(*mut u8, usize),
    /// A vector of the global allocator.
    Vec(Vec<u8>),
}

fn worker(w: usize) {
    let mut x = 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(1 + w as u64);
    let mut held: Vec<Held> = (0..64).map(|_| Held::None).collect();
    for i in 0..ITERATIONS {
        if i < 3 * STEP && i % STEP == 0 {
            wait_until("the switcher", || PHASE.load(Ordering::SeqCst) >= i / STEP);
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let k = (x % 64) as usize;
        let byte = k as u8;
        let size = 1 + (x >> 8) as usize % 600;
        let resize = (x >> 20) % 3 == 0;
        held[k] = match std::mem::replace(&mut held[k], Held::None) {
            Held::None if (x >> 30) % 2 == 0 => {
                let p = cma::backend::malloc(size);
                check!(!p.is_null());
                if !in_a(p) && !in_b(p) {
                    CMA_BLOCKS.fetch_add(1, Ordering::Relaxed);
                }
                fill(p, byte, size);
                Held::Raw(p, size)
            }
            Held::None => Held::Vec(vec![byte; size]),
            Held::Raw(p, n) => {
                check!(holds(p, byte, n));
                if resize {
                    // SAFETY: a live block, replaced by the result.
                    let q = unsafe { cma::backend::realloc(p, size) };
                    check!(!q.is_null() && holds(q, byte, n.min(size)));
                    fill(q, byte, size);
                    Held::Raw(q, size)
                } else {
                    // SAFETY: a live block, given up.
                    check!(unsafe { cma::backend::checked_free(p) } == Ok(()));
                    Held::None
                }
            }
            Held::Vec(mut v) => {
                check!(v.iter().all(|&b| b == byte));
                if resize {
                    v.resize(size, byte);
                    v.shrink_to_fit();
                    Held::Vec(v)
                } else {
                    Held::None
                }
            }
        };
        PROGRESS[w].store(i + 1, Ordering::SeqCst);
    }
    for h in held {
        if let Held::Raw(p, _) = h {
            // SAFETY: a live block, given up.
            unsafe { cma::backend::free(p) };
        }
    }
}

fn apply(round: usize) {
    match round % 3 {
        0 => check!(cma::set_backend(&A) == Ok(())),
        1 => check!(cma::set_backend(&B) == Ok(())),
        _ => cma::clear_backend(),
    }
}

/// Workers allocate, resize and free through both faces while the main
/// thread sets A, B and no backend: first in lockstep (every worker
/// allocates under each), then as fast as it can until they are done.
fn threads() {
    let stats0 = cma::backend::stats();
    apply(0);
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| std::thread::spawn(move || worker(w)))
        .collect();
    for phase in 1..3 {
        wait_until("the workers", || {
            PROGRESS
                .iter()
                .all(|p| p.load(Ordering::SeqCst) >= phase * STEP)
        });
        apply(phase);
        PHASE.store(phase, Ordering::SeqCst);
    }
    let mut rounds = 3;
    while PROGRESS
        .iter()
        .any(|p| p.load(Ordering::SeqCst) < ITERATIONS)
    {
        apply(rounds);
        rounds += 1;
        std::hint::spin_loop();
    }
    cma::clear_backend();
    for w in workers {
        check!(w.join().is_ok());
    }
    let s = cma::backend::stats();
    println!(
        "threads: {} blocks from A, {} from B, {} raw blocks from cma, {rounds} switches",
        A.allocations(),
        B.allocations(),
        CMA_BLOCKS.load(Ordering::SeqCst)
    );
    check!(A.wrong() == 0 && B.wrong() == 0);
    check!(A.live() == 0 && B.live() == 0);
    check!(A.allocations() > 0 && B.allocations() > 0 && CMA_BLOCKS.load(Ordering::SeqCst) > 0);
    check!(s.allocations - stats0.allocations == (A.allocations() + B.allocations()) as u64);
    check!(backend_stats_balance(stats0));
}

/// A pointer that neither cma nor a backend owns: the backends are asked,
/// then cma reports an invalid free and aborts.
fn neither_owns(through_global_allocator: bool) {
    check!(cma::set_backend(&A) == Ok(()));
    let held = cma::backend::malloc(10); // A holds a block: it is asked
    check!(in_a(held));
    static NOT_A_BLOCK: [u64; 8] = [0; 8];
    let p = NOT_A_BLOCK[2..].as_ptr().cast_mut().cast::<u8>();
    A.say_when_asked.store(true, Ordering::SeqCst);
    // SAFETY: deliberate misuse: cma must abort.
    unsafe {
        if through_global_allocator {
            ALLOC.dealloc(p, Layout::new::<u64>());
        } else {
            cma::backend::free(p);
        }
    }
    eprintln!("backend: the invalid free was not reported");
    std::process::exit(1);
}

/// The leak API sees backend blocks apart from cma's: listed with their
/// sizes, untracked and tracked again, gone when freed, ignored no more
/// once moved by a realloc.
fn leaks() {
    let listed = |p: *mut u8| {
        let mut found = None;
        cma::backend::for_each_leak(|e| {
            if e.address == p as usize {
                found = Some(e.size);
            }
        });
        found
    };
    let s0 = cma::backend::leak_summary();
    check!(s0 == cma::LeakSummary::default());
    let cma_before = cma::leak_summary();

    check!(cma::set_backend(&A) == Ok(()));
    let a1 = cma::backend::malloc(200);
    let a2 = cma::backend::malloc(300);
    check!(in_a(a1) && in_a(a2));
    let s = cma::backend::leak_summary();
    check!(s.live_blocks == 2 && s.live_bytes == 500 && s.ignored_blocks == 0);
    check!(listed(a1) == Some(200) && listed(a2) == Some(300));
    // cma's own summary does not count them.
    check!(cma::leak_summary().live_blocks == cma_before.live_blocks);

    check!(cma::backend::untrack_leak(a1) == Ok(()));
    let s = cma::backend::leak_summary();
    check!(s.live_blocks == 1 && s.live_bytes == 300);
    check!(s.ignored_blocks == 1 && s.ignored_bytes == 200);
    check!(listed(a1).is_none());
    check!(cma::backend::track_leak(a1) == Ok(()));
    check!(listed(a1) == Some(200));

    // Not a backend block: an error, and nothing changes.
    let on_stack = 7u64;
    let c = &on_stack as *const u64 as *const u8;
    check!(matches!(
        cma::backend::untrack_leak(c),
        Err(CmaError::NotOurs { .. })
    ));
    check!(cma::backend::leak_summary().live_blocks == 2);

    // A block moved by realloc is listed at its new address, tracked.
    check!(cma::backend::untrack_leak(a2) == Ok(()));
    // SAFETY: `a2` is A's live block; it is not used again.
    let a3 = unsafe { cma::backend::realloc(a2, 5000) };
    check!(in_a(a3) && a3 != a2);
    check!(listed(a2).is_none() && listed(a3) == Some(5000));
    let s = cma::backend::leak_summary();
    check!(s.live_blocks == 2 && s.live_bytes == 5200 && s.ignored_blocks == 0);

    // Freed blocks are gone, after the backend was cleared too.
    cma::clear_backend();
    // SAFETY: A's live blocks, not used again.
    unsafe {
        cma::backend::free(a1);
        cma::backend::free(a3);
    }
    check!(cma::backend::leak_summary() == cma::LeakSummary::default());
    check!(listed(a1).is_none() && listed(a3).is_none());
}

// ----- the parent -----

fn child(scenario: &str, options: &str) -> std::process::Output {
    Command::new(std::env::current_exe().expect("test binary"))
        .arg(scenario)
        .env("CMA_OPTIONS", options)
        .output()
        .expect("run the child")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(scenario) = args.get(1) {
        // Lazy allocations of the standard library (stdout's buffer) are
        // made now, before any backend is set.
        println!("{scenario}: start");
        match scenario.as_str() {
            "routing" => routing(),
            "limits" => limits(),
            "table_full" => table_full(),
            "threads" => threads(),
            "leaks" => leaks(),
            "neither_owns_free" => neither_owns(false),
            "neither_owns_dealloc" => neither_owns(true),
            other => panic!("no scenario {other}"),
        }
        println!("{scenario}: ok");
        return;
    }

    let mut failures = 0;
    for options in ["check=fast", "check=default"] {
        for scenario in ["routing", "limits", "table_full", "threads", "leaks"] {
            let out = child(scenario, options);
            let stdout = String::from_utf8_lossy(&out.stdout);
            if out.status.success() && stdout.contains(&format!("{scenario}: ok")) {
                println!("{scenario} ({options}): ok");
            } else {
                failures += 1;
                println!(
                    "{scenario} ({options}) FAILED ({}):\n{stdout}\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        for (scenario, operation) in [
            ("neither_owns_free", "[in free]"),
            ("neither_owns_dealloc", "[in dealloc]"),
        ] {
            let out = child(scenario, options);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let cma_lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("cma: ")).collect();
            let asked = stderr.find("bump backend: asked whether it owns a block");
            let reported = stderr.find("cma: invalid free: not a cma block");
            let ok = out.status.signal() == Some(libc::SIGABRT)
                && cma_lines.len() == 1
                && cma_lines[0].contains(operation)
                && matches!((asked, reported), (Some(a), Some(r)) if a < r);
            if ok {
                println!("{scenario} ({options}): ok");
            } else {
                failures += 1;
                println!("{scenario} ({options}) FAILED ({}):\n{stderr}", out.status);
            }
        }
    }
    if failures > 0 {
        eprintln!("backend: {failures} scenario(s) failed");
        std::process::exit(1);
    }
}
