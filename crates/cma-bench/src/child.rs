//! The `--child WORKLOAD ALLOCATOR` side: checks that the process runs on
//! that allocator (with cma's level in `CMA_OPTIONS`), runs the workload
//! `--iters` times, and prints one result line with the times, the memory and
//! cma's counters.

use std::process::{Command, ExitCode};
use std::time::Instant;

use crate::alloc::{self, Spec, Which};
use crate::cli::Opts;
use crate::util;
use crate::workloads::{self, Params};

/// The prefix of the one line a child prints for its parent.
pub const RESULT_PREFIX: &str = "CMA_BENCH_RESULT ";

fn params(opts: &Opts) -> Params {
    Params {
        quick: opts.quick,
        threads: opts.threads,
    }
}

/// Runs one workload on the allocator `which`, monomorphised per allocator,
/// so each is called directly, as it would be as the global allocator.
fn run_on(which: Which, name: &str, p: &Params) -> u64 {
    match which {
        Which::System => workloads::run(&std::alloc::System, name, p),
        Which::Cma => workloads::run(&cma::Cma, name, p),
        Which::Mimalloc => workloads::run(&mimalloc::MiMalloc, name, p),
        #[cfg(feature = "jemalloc")]
        Which::Jemalloc => workloads::run(&tikv_jemallocator::Jemalloc, name, p),
        #[cfg(feature = "rusty_alloc")]
        Which::RustyAlloc => workloads::run(&rusty_alloc_api::RustyAlloc, name, p),
        #[cfg(feature = "snmalloc")]
        Which::Snmalloc => workloads::run(&snmalloc_rs::SnMalloc, name, p),
    }
}

/// `CMA_OPTIONS` for a cma level: the caller's options with `check=LEVEL` added.
pub fn cma_options_for(level: &str) -> String {
    match std::env::var("CMA_OPTIONS") {
        Ok(v) if !v.trim().is_empty() => format!("{v},check={level}"),
        _ => format!("check={level}"),
    }
}

/// `--child WORKLOAD ALLOCATOR`: exit code 2 on a usage error or a process
/// on the wrong allocator; a failed check exits from inside the workload.
pub fn run(workload: &str, allocator: &str, opts: &Opts) -> ExitCode {
    let Some(w) = workloads::find(workload) else {
        eprintln!("cma-bench: unknown workload '{workload}' (try --list)");
        return ExitCode::from(2);
    };
    let spec: Spec = match alloc::parse_specs(allocator) {
        Ok(v) if v.len() == 1 => v.into_iter().next().unwrap(),
        Ok(_) => {
            eprintln!("cma-bench: --child needs one allocator, e.g. cma-fast");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("cma-bench: {e}");
            return ExitCode::from(2);
        }
    };
    if !workloads::runs_on(w.name, &spec.name) {
        eprintln!("cma-bench: {} runs on cma only", w.name);
        return ExitCode::from(2);
    }
    if alloc::selected() != spec.which {
        eprintln!(
            "cma-bench: the global allocator is {:?}, not {:?}: run children as `cma-bench --child WORKLOAD ALLOCATOR ...`",
            alloc::selected(),
            spec.which
        );
        return ExitCode::from(2);
    }
    if let Some(level) = &spec.cma_level {
        // cma reads CMA_OPTIONS once, at its initialisation: when the level is
        // not there yet, run this child again with it.
        let want = format!("check={level}");
        let have = std::env::var("CMA_OPTIONS").unwrap_or_default();
        if !have.split(',').any(|kv| kv.trim() == want) {
            use std::os::unix::process::CommandExt;
            let exe = std::env::current_exe().expect("current_exe");
            let err = Command::new(exe)
                .args(std::env::args_os().skip(1))
                .env("CMA_OPTIONS", cma_options_for(level))
                .exec();
            eprintln!("cma-bench: could not re-run with CMA_OPTIONS: {err}");
            return ExitCode::from(2);
        }
    }
    let p = params(opts);
    let iters = opts.iters.unwrap_or(1);
    let rss_start = util::proc_status_kib("VmRSS").unwrap_or(0);
    let mut times = Vec::with_capacity(iters);
    let mut cpu = Vec::with_capacity(iters);
    let cma_before = (spec.which == Which::Cma).then(cma::stats);
    let mut checksum = 0u64;
    for _ in 0..iters {
        let c0 = util::process_cpu_ns();
        let t0 = Instant::now();
        checksum = std::hint::black_box(run_on(spec.which, w.name, &p));
        times.push(t0.elapsed().as_nanos() as f64);
        cpu.push(util::process_cpu_ns() - c0);
    }
    let peak = util::proc_status_kib("VmHWM").unwrap_or(0);
    // On cma, the engine's own counters: every workload frees what it
    // allocated, so the blocks in use must come back to where they were.
    let cma_counters = cma_before.map(|b| {
        let a = cma::stats();
        let live = |s: &cma::Stats| s.allocations as i64 - s.frees as i64;
        if live(&a) != live(&b) || a.bytes_in_use != b.bytes_in_use {
            eprintln!(
                "cma-bench: cma counts {} blocks and {} bytes in use after {} that were not before (a leak in the workload, or counters out of step)",
                live(&a) - live(&b),
                a.bytes_in_use as i64 - b.bytes_in_use as i64,
                w.name
            );
            std::process::exit(5);
        }
        serde_json::json!({
            "allocations": a.allocations - b.allocations,
            "frees": a.frees - b.frees,
            "blocks_in_use_change": live(&a) - live(&b),
            "bytes_in_use_change": a.bytes_in_use as i64 - b.bytes_in_use as i64,
            "peak_bytes_in_use": a.peak_bytes_in_use,
            "mapped_bytes": a.mapped_bytes,
            "metadata_bytes": a.metadata_bytes,
        })
    });
    let phases: Vec<serde_json::Value> = workloads::memory::take_phases()
        .iter()
        .flatten()
        .map(|ph| serde_json::json!({"phase": ph.name, "live_bytes": ph.live_bytes, "rss_kib": ph.rss_kib}))
        .collect();
    let line = serde_json::json!({
        "workload": w.name,
        "phases": phases,
        "allocator": spec.name,
        "times_ns": times,
        "median_ns": util::median(&times),
        "cpu_times_ns": cpu,
        "median_cpu_ns": util::median(&cpu),
        "peak_rss_kib": peak,
        "start_rss_kib": rss_start,
        "checksum": checksum,
        "cma_stats": cma_counters,
    });
    println!("{RESULT_PREFIX}{line}");
    ExitCode::SUCCESS
}
