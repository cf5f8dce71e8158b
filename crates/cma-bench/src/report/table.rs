//! The terminal table: the setup, then time and memory per workload and
//! allocator with the ratios to the baseline, then the failures.

use std::fmt::Write as _;

use super::{Cell, Report};
use crate::alloc::BASELINE;

/// The width of the workload column.
const W0: usize = 20;
/// The width of an allocator's column.
const CW: usize = 16;

impl Report {
    /// The terminal table: time, then memory.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let base = if self.baseline.is_some() {
            BASELINE
        } else {
            "(no baseline run)"
        };
        let _ = writeln!(
            s,
            "\ncma-bench{}: {} repetitions x {} timed runs per child, {} threads, {:.0} s",
            if self.setup.quick { " --quick" } else { "" },
            self.setup.reps,
            self.setup.iters,
            self.setup.threads,
            self.setup.wall_s
        );
        for (n, d) in &self.allocators {
            let _ = writeln!(s, "  {n:<12} {d}");
        }
        for (n, why) in &self.skipped {
            let _ = writeln!(s, "  {n:<12} skipped: {why}");
        }
        let cpu_time = self.setup.cpu_time;
        let what = if cpu_time {
            "CPU time of the child (all threads)"
        } else {
            "wall-clock time"
        };
        let _ = writeln!(
            s,
            "\ntime: {what}, median ms per run (ratio to {base}; below 1 is faster)"
        );
        self.section(
            &mut s,
            true,
            |c| {
                let t = if cpu_time {
                    c.median_cpu_ns
                } else {
                    c.median_ns
                };
                t.map(|x| x / 1e6)
            },
            |c| c.ranked_ratio,
        );
        let _ = writeln!(s, "\nmemory: peak RSS of the child process (VmHWM), MiB (ratio to {base}; below 1 is smaller)");
        self.section(
            &mut s,
            false,
            |c| c.peak_rss_kib.map(|x| x / 1024.0),
            |c| c.rss_ratio,
        );
        self.phases_section(&mut s);
        let mut failed = false;
        for (wi, (_, name, _)) in self.workloads.iter().enumerate() {
            for (ai, c) in self.cells[wi].iter().enumerate() {
                for f in &c.failures {
                    if !failed {
                        let _ = writeln!(
                            s,
                            "\nfailures (reproduce with `cma-bench --child WORKLOAD ALLOCATOR`):"
                        );
                        failed = true;
                    }
                    let _ = writeln!(s, "  {name} on {}: {f}", self.allocators[ai].0);
                }
            }
        }
        s
    }

    /// One part of the table: the header, a row per workload of `value` with
    /// its `ratio`, and the geomean of the ratios.
    fn section(
        &self,
        s: &mut String,
        time: bool,
        value: impl Fn(&Cell) -> Option<f64>,
        ratio: impl Fn(&Cell) -> Option<f64>,
    ) {
        let _ = write!(s, "{:<W0$}", "workload");
        for (n, _) in &self.allocators {
            let _ = write!(s, "{n:>CW$}");
        }
        s.push('\n');
        for (wi, (num, name, _)) in self.workloads.iter().enumerate() {
            let untimed = time && !self.timed[wi];
            let label = if untimed {
                format!("{num:>2} {name}*")
            } else {
                format!("{num:>2} {name}")
            };
            let _ = write!(s, "{label:<W0$}");
            for c in &self.cells[wi] {
                let _ = write!(
                    s,
                    "{:>CW$}",
                    cell(value(c), ratio(c), !c.failures.is_empty())
                );
            }
            s.push('\n');
        }
        let _ = write!(s, "{:<W0$}", "   geomean ratio");
        for ai in 0..self.allocators.len() {
            let g = if time {
                self.time_geomean_of(ai, &ratio)
            } else {
                self.geomean_of(ai, &ratio)
            };
            let _ = write!(
                s,
                "{:>CW$}",
                g.map(|g| format!("{g:.2}")).unwrap_or("-".into())
            );
        }
        s.push('\n');
        if time && self.timed.iter().any(|&t| !t) {
            let _ = writeln!(s, "   (* not timed: left out of the geomean)");
        }
    }

    /// The memory workload's phases: resident MiB per allocator after each
    /// phase, with the live MiB.
    fn phases_section(&self, s: &mut String) {
        for (wi, (_, name, _)) in self.workloads.iter().enumerate() {
            let row = &self.cells[wi];
            let Some(first) = row.iter().find(|c| !c.phases.is_empty()) else {
                continue;
            };
            let _ = writeln!(
                s,
                "\n{name}: resident MiB after each phase and a pause with no allocator call (live MiB)"
            );
            let _ = write!(s, "{:<W0$}", "phase");
            for (n, _) in &self.allocators {
                let _ = write!(s, "{n:>CW$}");
            }
            s.push('\n');
            for (pi, (phase, _, _)) in first.phases.iter().enumerate() {
                let _ = write!(s, "{:<W0$}", phase.chars().take(W0 - 1).collect::<String>());
                for c in row {
                    let text = match c.phases.get(pi) {
                        Some((_, live, rss)) => format!(
                            "{} ({})",
                            fmt_num(rss / 1024.0),
                            fmt_num(live / (1024.0 * 1024.0))
                        ),
                        None => "-".to_string(),
                    };
                    let _ = write!(s, "{text:>CW$}");
                }
                s.push('\n');
            }
        }
    }
}

/// A value with its ratio, the value alone without a baseline, or why there
/// is none.
fn cell(v: Option<f64>, r: Option<f64>, fail: bool) -> String {
    match (v, r) {
        (Some(v), Some(r)) => format!("{} ({r:.2})", fmt_num(v)),
        (Some(v), None) => fmt_num(v),
        _ if fail => "FAILED".to_string(),
        _ => "-".to_string(),
    }
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
