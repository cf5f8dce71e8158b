//! cma-bench: cma against mimalloc, jemalloc, glibc, rusty_alloc and
//! snmalloc on twelve workloads.
//!
//! The parent process runs every (repetition, workload, allocator) in a fresh
//! child process, `cma-bench --child WORKLOAD ALLOCATOR`, interleaved (in a
//! fresh shuffled order each time, so no allocator always runs first or after
//! the same other allocator) so that noise
//! spreads evenly, and collects from each child its median time and the
//! peak resident set of the child (VmHWM). See README.md.

mod alloc;
mod report;
mod util;
mod workloads;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use alloc::{Spec, Which};
use workloads::Params;

#[global_allocator]
static GLOBAL: alloc::Dispatch = alloc::Dispatch;

/// The prefix of the one line a child prints for its parent.
const RESULT_PREFIX: &str = "CMA_BENCH_RESULT ";

const USAGE: &str = "\
usage: cma-bench [--quick] [--json FILE] [--svg FILE] [--only W1,W2..] [--allocators A1,A2..]
                 [--reps N] [--iters N] [--threads N] [--timeout S] [--cpu-time] [--list]
       cma-bench --child WORKLOAD ALLOCATOR [--quick] [--iters N] [--threads N]

  --quick        small sizes, 2 repetitions of 1 run each (a smoke test: under a minute)
  --json FILE    where to write the results (default target/cma-bench/results.json)
  --svg FILE     where to write the chart (default target/cma-bench/chart.svg)
  --only LIST    workloads by name or number (default: all)
  --allocators LIST  allocators (default: all; `cma` means every check level, `cma-LEVEL` one)
  --reps N       child processes per workload and allocator (default 5, quick 2)
  --iters N      timed runs inside each child, the child reports their median (default 1)
  --threads N    threads of the multi-threaded workloads (default: cores, 2 to 8)
  --timeout S    seconds before a child is killed and counted as hung (default 300, quick 60)
  --cpu-time     rank by the child's CPU time (all threads) instead of wall-clock time:
                 steadier on a loaded machine; both are always in the JSON
  --list         list workloads and allocators
  --child W A    run workload W on allocator A once per --iters and print one result line
";

#[derive(Clone, Debug)]
struct Opts {
    quick: bool,
    json: PathBuf,
    svg: PathBuf,
    only: Option<Vec<String>>,
    allocators: Option<Vec<String>>,
    reps: Option<usize>,
    iters: Option<usize>,
    threads: usize,
    timeout: Option<u64>,
    cpu_time: bool,
    list: bool,
    child: Option<(String, String)>,
}

fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8)
}

fn parse_args(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        quick: false,
        json: PathBuf::from("target/cma-bench/results.json"),
        svg: PathBuf::from("target/cma-bench/chart.svg"),
        only: None,
        allocators: None,
        reps: None,
        iters: None,
        threads: default_threads(),
        timeout: None,
        cpu_time: false,
        list: false,
        child: None,
    };
    let mut it = args.iter();
    let list = |s: &str| {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let num = |v: Option<&String>, what: &str| -> Result<usize, String> {
        v.ok_or(format!("{what} needs a value"))?
            .parse::<usize>()
            .map_err(|_| format!("{what} needs a number"))
            .and_then(|n| {
                if n == 0 {
                    Err(format!("{what} must be at least 1"))
                } else {
                    Ok(n)
                }
            })
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--json" => o.json = PathBuf::from(it.next().ok_or("--json needs a file")?),
            "--svg" => o.svg = PathBuf::from(it.next().ok_or("--svg needs a file")?),
            "--only" => o.only = Some(list(it.next().ok_or("--only needs a list")?)),
            "--allocators" => {
                o.allocators = Some(list(it.next().ok_or("--allocators needs a list")?))
            }
            "--reps" => o.reps = Some(num(it.next(), "--reps")?),
            "--iters" => o.iters = Some(num(it.next(), "--iters")?),
            "--threads" => o.threads = num(it.next(), "--threads")?,
            "--timeout" => o.timeout = Some(num(it.next(), "--timeout")? as u64),
            "--cpu-time" => o.cpu_time = true,
            "--list" => o.list = true,
            "--child" => {
                let w = it.next().ok_or("--child needs WORKLOAD ALLOCATOR")?;
                let al = it.next().ok_or("--child needs WORKLOAD ALLOCATOR")?;
                o.child = Some((w.clone(), al.clone()));
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("cma-bench: {e}");
            }
            eprint!("{USAGE}");
            return ExitCode::from(if e.is_empty() { 0 } else { 2 });
        }
    };
    if let Some((w, a)) = &opts.child {
        return child(w, a, &opts);
    }
    if opts.list {
        println!("workloads:");
        for w in workloads::WORKLOADS {
            println!("  {:>2} {:<17} {}", w.number, w.name, w.about);
        }
        println!("allocators:");
        for s in alloc::all_specs() {
            println!("  {:<12} {}", s.name, alloc::describe(s.which));
        }
        for (n, why) in alloc::skipped() {
            println!("  {n:<12} skipped: {why}");
        }
        return ExitCode::SUCCESS;
    }
    match parent(&opts) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cma-bench: {e}");
            ExitCode::from(2)
        }
    }
}

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
fn cma_options_for(level: &str) -> String {
    match std::env::var("CMA_OPTIONS") {
        Ok(v) if !v.trim().is_empty() => format!("{v},check={level}"),
        _ => format!("check={level}"),
    }
}

fn child(workload: &str, allocator: &str, opts: &Opts) -> ExitCode {
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
    let line = serde_json::json!({
        "workload": w.name,
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

/// What one child run gave.
#[derive(Clone, Debug)]
pub enum Outcome {
    Ok {
        /// Wall-clock time, the median of the child's timed runs.
        median_ns: f64,
        /// CPU time of the child (all threads) over the same runs.
        median_cpu_ns: f64,
        times_ns: Vec<f64>,
        peak_rss_kib: u64,
        start_rss_kib: u64,
    },
    Failed(String),
}

/// The allocator order for one repetition of one workload: a shuffle of
/// `0..n`, deterministic in (`rep`, `workload`), so a run can be repeated.
fn run_order(n: usize, rep: usize, workload: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = util::Rng::new(((rep as u64) << 32) ^ workload as u64 ^ 0x006f_7264_6572);
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    order
}

fn run_child(
    exe: &std::path::Path,
    w: &str,
    spec: &Spec,
    opts: &Opts,
    timeout: Duration,
) -> Outcome {
    let mut cmd = Command::new(exe);
    cmd.arg("--child")
        .arg(w)
        .arg(&spec.name)
        .arg("--threads")
        .arg(opts.threads.to_string());
    if opts.quick {
        cmd.arg("--quick");
    }
    if let Some(i) = opts.iters {
        cmd.arg("--iters").arg(i.to_string());
    }
    if let Some(level) = &spec.cma_level {
        cmd.env("CMA_OPTIONS", cma_options_for(level));
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut ch = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("could not start: {e}")),
    };
    let mut out = ch.stdout.take().unwrap();
    let mut err = ch.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        match ch.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if start.elapsed() > timeout => {
                let _ = ch.kill();
                let _ = ch.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => return Outcome::Failed(format!("wait failed: {e}")),
        }
    };
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    let tail: String = {
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(3)..].join(" | ")
    };
    let Some(status) = status else {
        return Outcome::Failed(format!("hung: killed after {} s", timeout.as_secs()));
    };
    if !status.success() {
        use std::os::unix::process::ExitStatusExt;
        let how = match status.signal() {
            Some(sig) => format!("crashed with signal {sig}"),
            None => format!("exit code {}", status.code().unwrap_or(-1)),
        };
        return Outcome::Failed(if tail.is_empty() {
            how
        } else {
            format!("{how}: {tail}")
        });
    }
    let Some(line) = stdout.lines().find_map(|l| l.strip_prefix(RESULT_PREFIX)) else {
        return Outcome::Failed("no result line".into());
    };
    let v: serde_json::Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return Outcome::Failed(format!("bad result line: {e}")),
    };
    let times_ns: Vec<f64> = v["times_ns"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
        .unwrap_or_default();
    Outcome::Ok {
        median_ns: v["median_ns"].as_f64().unwrap_or(f64::NAN),
        median_cpu_ns: v["median_cpu_ns"].as_f64().unwrap_or(f64::NAN),
        times_ns,
        peak_rss_kib: v["peak_rss_kib"].as_u64().unwrap_or(0),
        start_rss_kib: v["start_rss_kib"].as_u64().unwrap_or(0),
    }
}

fn parent(opts: &Opts) -> Result<ExitCode, String> {
    let wls: Vec<&workloads::Workload> = match &opts.only {
        None => workloads::WORKLOADS.iter().collect(),
        Some(names) => names
            .iter()
            .map(|n| workloads::find(n).ok_or(format!("unknown workload '{n}' (try --list)")))
            .collect::<Result<_, _>>()?,
    };
    let mut specs: Vec<Spec> = Vec::new();
    let mut skipped: Vec<(String, String)> = Vec::new();
    match &opts.allocators {
        None => {
            specs = alloc::all_specs();
            skipped = alloc::skipped()
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
        }
        Some(names) => {
            for n in names {
                match alloc::parse_specs(n) {
                    Ok(v) => specs.extend(
                        v.into_iter()
                            .filter(|s| !specs.iter().any(|t| t.name == s.name))
                            .collect::<Vec<_>>(),
                    ),
                    Err(e) => {
                        eprintln!("cma-bench: note: {e}; skipped");
                        skipped.push((n.clone(), e));
                    }
                }
            }
        }
    }
    if specs.is_empty() || wls.is_empty() {
        return Err("nothing to run".into());
    }
    for (n, why) in &skipped {
        eprintln!("cma-bench: note: {n} skipped: {why}");
    }
    let reps = opts.reps.unwrap_or(if opts.quick { 2 } else { 5 });
    let iters = opts.iters.unwrap_or(1);
    let timeout = Duration::from_secs(opts.timeout.unwrap_or(if opts.quick { 60 } else { 300 }));
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    eprintln!(
        "cma-bench: {} workloads x {} allocators x {} repetitions ({} timed runs per child), {} threads{}",
        wls.len(),
        specs.len(),
        reps,
        iters,
        opts.threads,
        if opts.quick { ", quick" } else { "" }
    );
    let started = Instant::now();
    let mut runs: Vec<Vec<Vec<Outcome>>> = vec![vec![Vec::new(); specs.len()]; wls.len()];
    for rep in 0..reps {
        for (wi, w) in wls.iter().enumerate() {
            // A fresh order for every repetition and workload: a child
            // pays for the kernel's work on the previous child's memory
            // (huge-page zeroing, compaction, pages handed back to a
            // hypervisor), so no allocator may always run first, nor always
            // after the same other one (a rotation keeps every allocator's
            // predecessor: cma-fast ran after snmalloc in all but one
            // repetition, and was up to 4x slower for it).
            for ai in run_order(specs.len(), rep, wi) {
                let s = &specs[ai];
                let o = run_child(&exe, w.name, s, opts, timeout);
                match &o {
                    Outcome::Ok {
                        median_ns,
                        median_cpu_ns,
                        peak_rss_kib,
                        ..
                    } => eprintln!(
                        "  [{}/{}] {:<17} {:<12} {:>9.2} ms {:>9.2} ms cpu {:>8.1} MiB",
                        rep + 1,
                        reps,
                        w.name,
                        s.name,
                        median_ns / 1e6,
                        median_cpu_ns / 1e6,
                        *peak_rss_kib as f64 / 1024.0
                    ),
                    Outcome::Failed(why) => eprintln!(
                        "  [{}/{}] {:<17} {:<12} FAILED: {why}",
                        rep + 1,
                        reps,
                        w.name,
                        s.name
                    ),
                }
                runs[wi][ai].push(o);
            }
        }
    }
    let rep = report::Report::build(
        report::Setup {
            quick: opts.quick,
            reps,
            iters,
            threads: opts.threads,
            cpu_time: opts.cpu_time,
            wall_s: started.elapsed().as_secs_f64(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
        },
        &wls,
        &specs,
        skipped,
        runs,
    );
    print!("{}", rep.table());
    for (path, text) in [(&opts.json, rep.json()), (&opts.svg, rep.svg())] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    println!("wrote {} and {}", opts.json.display(), opts.svg.display());
    // A failed cma run (crash, hang, failed check) fails the suite; a failure
    // of another allocator is reported and does not.
    Ok(if rep.cma_failures() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::run_order;

    #[test]
    fn run_order_is_a_permutation_that_varies_predecessors() {
        let n = 7;
        let mut predecessors = vec![std::collections::BTreeSet::new(); n];
        for rep in 0..5 {
            for workload in 0..12 {
                let order = run_order(n, rep, workload);
                let mut sorted = order.clone();
                sorted.sort_unstable();
                assert_eq!(sorted, (0..n).collect::<Vec<_>>());
                assert_eq!(order, run_order(n, rep, workload), "deterministic");
                for pair in order.windows(2) {
                    predecessors[pair[1]].insert(pair[0]);
                }
            }
        }
        for (a, p) in predecessors.iter().enumerate() {
            assert!(p.len() >= 4, "allocator {a} ran after only {p:?}");
        }
    }
}
