//! The parent: runs every (repetition, workload, allocator) in a fresh child
//! process, in a shuffled order, with a timeout, collects each child's result
//! line, and writes the report.

use std::io::Read;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::alloc::{self, Spec};
use crate::child::{cma_options_for, RESULT_PREFIX};
use crate::cli::Opts;
use crate::{report, util, workloads};

/// What one child run gave.
#[derive(Clone, Debug)]
pub enum Outcome {
    Ok {
        /// Wall-clock time, the median of the child's timed runs.
        median_ns: f64,
        /// CPU time of the child (all threads) over the same runs.
        median_cpu_ns: f64,
        peak_rss_kib: u64,
        start_rss_kib: u64,
        /// The memory workload's phases: name, live bytes, resident KiB.
        phases: Vec<(String, u64, u64)>,
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

/// One `--child` run, with the suite's sizes, killed after `timeout`.
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
    Outcome::Ok {
        median_ns: v["median_ns"].as_f64().unwrap_or(f64::NAN),
        median_cpu_ns: v["median_cpu_ns"].as_f64().unwrap_or(f64::NAN),
        peak_rss_kib: v["peak_rss_kib"].as_u64().unwrap_or(0),
        start_rss_kib: v["start_rss_kib"].as_u64().unwrap_or(0),
        phases: v["phases"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|ph| {
                        (
                            ph["phase"].as_str().unwrap_or("?").to_string(),
                            ph["live_bytes"].as_u64().unwrap_or(0),
                            ph["rss_kib"].as_u64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Runs the suite and writes the report. The exit code is 1 when a cma run
/// failed; `Err` is a usage or I/O error.
pub fn run(opts: &Opts) -> Result<ExitCode, String> {
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
                if !workloads::runs_on(w.name, &s.name) {
                    continue;
                }
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
