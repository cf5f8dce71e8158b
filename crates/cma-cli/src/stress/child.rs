//! The stress run itself, in the process the allocator under test is
//! preloaded into: the workers, the watchdog (this process's main thread),
//! the progress line, the counter balance and, on a stall, the diagnostic
//! and a stack of every thread.
//!
//! Between the start of the run and the counters read after it, the Rust
//! side allocates nothing (output goes through `FdWriter`, which formats on
//! the stack): the counters of the allocator see the workers' calls only,
//! and a hung allocator cannot hang the watchdog too.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use engine::faces::FdWriter;

use super::stacks;
use super::workload::{
    drain_exchange, op_name, worker, Block, Progress, Shared, Tally, EXCHANGE_CAPACITY, SLOTS,
};
use super::{Plan, EXIT_CHECK_FAILED, EXIT_STALLED};

/// How long a finished worker waits for the counters to be read before it
/// ends anyway.
const RELEASE_WAIT: Duration = Duration::from_secs(60);

/// `struct cma_stats` of cma.h.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
struct CmaStats {
    allocations: u64,
    frees: u64,
    bytes_in_use: u64,
    peak_bytes_in_use: u64,
}

type StatsFn = unsafe extern "C" fn(*mut CmaStats) -> i32;

/// libcma's `cma_stats_get`, when the preloaded allocator is cma.
fn cma_stats_function() -> Option<StatsFn> {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name; a non-null
    // result is libcma's `int32_t cma_stats_get(struct cma_stats *)`.
    unsafe {
        let f = libc::dlsym(libc::RTLD_DEFAULT, c"cma_stats_get".as_ptr());
        (!f.is_null()).then(|| core::mem::transmute::<*mut libc::c_void, StatsFn>(f))
    }
}

fn read_stats(f: StatsFn) -> CmaStats {
    let mut s = CmaStats::default();
    // SAFETY: `s` is a writable `struct cma_stats`.
    unsafe { f(&mut s) };
    s
}

/// Runs the plan; returns the process's exit status.
pub fn run(plan: &Plan) -> u8 {
    stacks::prepare();
    let stats_fn = cma_stats_function();
    let shared = Arc::new(Shared {
        progress: (0..plan.threads).map(|_| Progress::default()).collect(),
        exchange: Mutex::new(Vec::with_capacity(EXCHANGE_CAPACITY)),
        stop: AtomicBool::new(false),
        stall: plan.stall,
    });
    // Workers and this thread meet at the start line once every worker is
    // set up (its thread started, its slots allocated): the counters are
    // read then. At the end each worker waits, holding its slots, until the
    // counters are read again: a thread's exit frees memory too.
    let start_line = Arc::new(Barrier::new(plan.threads + 1));
    let go = Arc::new(Barrier::new(plan.threads + 1));
    let counted = Arc::new(AtomicBool::new(false));
    let iterations = plan.iterations.unwrap_or(u64::MAX);
    let handles: Vec<_> = (0..plan.threads)
        .map(|id| {
            let shared = Arc::clone(&shared);
            let (start_line, go, counted) = (
                Arc::clone(&start_line),
                Arc::clone(&go),
                Arc::clone(&counted),
            );
            let seed = plan.seed;
            thread::Builder::new()
                .name(format!("stress-{id}"))
                .spawn(move || {
                    // Marks the worker finished however it ends (a failed
                    // check panics), and stops the others when it failed.
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
                    let mut slots: Vec<Option<Block>> = vec![None; SLOTS];
                    start_line.wait();
                    go.wait();
                    let finish = Finish(&shared, id);
                    let tally = worker(id, seed, iterations, &shared, &mut slots);
                    drop(finish);
                    let waiting = Instant::now();
                    while !counted.load(Ordering::Acquire) && waiting.elapsed() < RELEASE_WAIT {
                        thread::sleep(Duration::from_millis(1));
                    }
                    (tally, slots)
                })
                .expect("start a stress worker")
        })
        .collect();
    let mut snapshot = vec![0u64; plan.threads];
    let mut out = FdWriter::new(2);

    start_line.wait();
    let before = stats_fn.map(read_stats);
    let started = Instant::now();
    go.wait();
    let outcome = watch(plan, &shared, started, &mut snapshot, &mut out);
    if let Err(stalled_for) = outcome {
        report_stall(&shared, stalled_for, &mut out);
        stacks::write_all();
        // No join, no destructors: the stuck worker never returns, and the
        // allocator may be wedged.
        // SAFETY: _exit ends the process at once.
        unsafe { libc::_exit(i32::from(EXIT_STALLED)) };
    }
    let elapsed = started.elapsed();
    let mut total = Tally::default();
    total.frees += drain_exchange(&shared, iterations);
    let after = stats_fn.map(read_stats);
    counted.store(true, Ordering::Release);

    // From here on the Rust side may allocate again.
    let mut failures = Vec::new();
    for (id, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok((t, _slots)) => total.add(&t),
            Err(e) => failures.push(format!(
                "worker {id}: {}",
                e.downcast_ref::<String>()
                    .map(String::as_str)
                    .or(e.downcast_ref::<&str>().copied())
                    .unwrap_or("panic")
            )),
        }
    }
    if !failures.is_empty() {
        eprintln!("cma stress: FAILED: a worker's check failed:");
        for f in &failures {
            eprintln!("  {f}");
        }
        return EXIT_CHECK_FAILED;
    }
    summary(plan, &total, elapsed, before.zip(after))
}

/// Watches the workers until all finished, printing the progress line
/// every second and stopping them when the time is up. `Err(how long)`
/// when no unfinished worker advanced for the watchdog's time.
fn watch(
    plan: &Plan,
    shared: &Shared,
    started: Instant,
    snapshot: &mut [u64],
    out: &mut FdWriter,
) -> Result<(), Duration> {
    let poll = Duration::from_millis(20);
    let mut last_change = Instant::now();
    let mut next_line = Duration::from_secs(1);
    loop {
        if shared
            .progress
            .iter()
            .all(|p| p.finished.load(Ordering::Acquire))
        {
            return Ok(());
        }
        thread::sleep(poll);
        let elapsed = started.elapsed();
        if let Some(seconds) = plan.seconds {
            if elapsed >= seconds {
                shared.stop.store(true, Ordering::Relaxed);
            }
        }
        let mut changed = false;
        let mut done = 0u64;
        for (seen, p) in snapshot.iter_mut().zip(&shared.progress) {
            let now = p.iteration.load(Ordering::Relaxed);
            changed |= now != *seen;
            *seen = now;
            done += now;
        }
        if changed {
            last_change = Instant::now();
        } else if last_change.elapsed() >= plan.watchdog {
            return Err(last_change.elapsed());
        }
        if elapsed >= next_line {
            next_line += Duration::from_secs(1);
            let secs = elapsed.as_secs_f64();
            let _ = writeln!(
                out,
                "cma stress: {secs:.0} s, {} operations, {} ops/s, {} workers",
                Grouped(done),
                Grouped((done as f64 / secs) as u64),
                plan.threads
            );
            out.flush();
        }
    }
}

/// The watchdog's diagnostic: every worker's iteration and last operation.
fn report_stall(shared: &Shared, stalled_for: Duration, out: &mut FdWriter) {
    let _ = writeln!(
        out,
        "cma stress: STALLED: no worker made progress for {:.1} s (--watchdog); the workers:",
        stalled_for.as_secs_f64()
    );
    for (i, p) in shared.progress.iter().enumerate() {
        let finished = p.finished.load(Ordering::Acquire);
        let _ = writeln!(
            out,
            "  worker {i}: iteration {}, last operation {}{}",
            p.iteration.load(Ordering::Relaxed),
            op_name(p.last_op.load(Ordering::Relaxed)),
            if finished { " (finished)" } else { " (stuck)" }
        );
    }
    out.flush();
}

/// The closing lines, and the counter balance; returns the exit status.
fn summary(
    plan: &Plan,
    t: &Tally,
    elapsed: Duration,
    counters: Option<(CmaStats, CmaStats)>,
) -> u8 {
    let secs = elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "cma stress: {} workers, {:.2} s, {} operations, {} ops/s on {} (seed {:#x})",
        plan.threads,
        secs,
        Grouped(t.iterations),
        Grouped((t.iterations as f64 / secs) as u64),
        plan.allocator,
        plan.seed
    );
    eprintln!(
        "  mallocs {}, reallocs {} ({} moved), frees {}, handed to another worker {}, {} MiB checked",
        Grouped(t.mallocs),
        Grouped(t.reallocs),
        Grouped(t.moves),
        Grouped(t.frees),
        Grouped(t.handed_over),
        Grouped(t.bytes_checked >> 20)
    );
    let mut failed = Vec::new();
    if t.mallocs != t.frees {
        failed.push(format!(
            "the workers' own books: {} blocks allocated, {} freed",
            t.mallocs, t.frees
        ));
    }
    match counters {
        Some((before, after)) => {
            let allocations = after.allocations - before.allocations;
            let frees = after.frees - before.frees;
            if allocations != frees {
                failed.push(format!(
                    "cma counted {allocations} allocations but {frees} frees"
                ));
            }
            if allocations != t.mallocs + t.moves || frees != t.frees + t.moves {
                failed.push(format!(
                    "cma counted {allocations} allocations and {frees} frees; the workers made {} mallocs, {} frees and {} moving reallocs",
                    t.mallocs, t.frees, t.moves
                ));
            }
            if after.bytes_in_use != before.bytes_in_use {
                failed.push(format!(
                    "bytes in use: {} before the run, {} after",
                    before.bytes_in_use, after.bytes_in_use
                ));
            }
            if failed.is_empty() {
                eprintln!(
                    "  counters balanced: cma counted {} allocations and {} frees (a moving realloc counts one of each), bytes in use back to {}",
                    Grouped(allocations),
                    Grouped(frees),
                    Grouped(after.bytes_in_use)
                );
            }
        }
        None if failed.is_empty() => eprintln!(
            "  counters balanced: {} blocks allocated and freed (the workers' books: this allocator has no cma_stats_get)",
            Grouped(t.mallocs)
        ),
        None => {}
    }
    if failed.is_empty() {
        eprintln!("cma stress: passed");
        0
    } else {
        eprintln!("cma stress: FAILED: the counters do not balance:");
        for f in &failed {
            eprintln!("  {f}");
        }
        EXIT_CHECK_FAILED
    }
}

/// A number with thousands separators, formatted without allocating.
struct Grouped(u64);

impl std::fmt::Display for Grouped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut digits = [0u8; 20];
        let mut n = self.0;
        let mut len = 0;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for i in (0..len).rev() {
            f.write_char(digits[i] as char)?;
            if i > 0 && i % 3 == 0 {
                f.write_char(',')?;
            }
        }
        Ok(())
    }
}
