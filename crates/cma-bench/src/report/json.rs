//! The JSON report: every cell, the geomeans and the setup, with what each
//! metric measures.

use serde_json::{json, Value};

use super::Report;
use crate::alloc::BASELINE;

pub const MEMORY_METRIC: &str = "peak resident set of the child process (VmHWM from /proc/self/status, KiB), measured in a fresh subprocess per workload, allocator and repetition; it includes the binary's and the allocator's start-up pages: start_rss_kib is the resident set before the first timed run, rss_growth_kib the median of peak minus start";

impl Report {
    pub fn json(&self) -> String {
        let opt = |v: Option<f64>| v.map(Value::from).unwrap_or(Value::Null);
        let mut results = Vec::new();
        for (wi, (_, wname, _)) in self.workloads.iter().enumerate() {
            for (ai, c) in self.cells[wi].iter().enumerate() {
                results.push(json!({
                    "workload": wname,
                    "allocator": self.allocators[ai].0,
                    "status": if c.median_ns.is_some() { "ok" } else if c.failures.is_empty() { "not run" } else { "failed" },
                    "median_ns": opt(c.median_ns),
                    "time_ratio": opt(c.time_ratio),
                    "median_cpu_ns": opt(c.median_cpu_ns),
                    "cpu_ratio": opt(c.cpu_ratio),
                    "peak_rss_kib": opt(c.peak_rss_kib),
                    "rss_ratio": opt(c.rss_ratio),
                    "start_rss_kib": opt(c.start_rss_kib),
                    "rss_growth_kib": opt(c.rss_growth_kib),
                    "child_medians_ns": c.child_medians_ns,
                    "failures": c.failures,
                    "phases": c.phases.iter().map(|(name, live, rss)| json!({"phase": name, "live_bytes": live, "rss_kib": rss})).collect::<Vec<_>>(),
                }));
            }
        }
        let geo: serde_json::Map<String, Value> = self
            .allocators
            .iter()
            .enumerate()
            .map(|(ai, (n, _))| {
                let t = self.time_geomean_of(ai, |c| c.time_ratio);
                let cpu = self.time_geomean_of(ai, |c| c.cpu_ratio);
                let m = self.geomean_of(ai, |c| c.rss_ratio);
                (
                    n.clone(),
                    json!({"time_ratio": opt(t), "cpu_ratio": opt(cpu), "rss_ratio": opt(m)}),
                )
            })
            .collect();
        let doc = json!({
            "schema": 1,
            "tool": "cma-bench",
            "command": self.setup.command,
            "quick": self.setup.quick,
            "repetitions": self.setup.reps,
            "timed_runs_per_child": self.setup.iters,
            "threads": self.setup.threads,
            "wall_s": self.setup.wall_s,
            "baseline": if self.baseline.is_some() { Value::from(BASELINE) } else { Value::Null },
            "time_metric": "median_ns/time_ratio: wall-clock time of one run of the workload, the median over the child processes of each child's median; median_cpu_ns/cpu_ratio: the same for the child's CPU time (all threads)",
            "ranked_by": if self.setup.cpu_time { "cpu" } else { "wall" },
            "memory_metric": MEMORY_METRIC,
            "phases_metric": "rss-phases only: after each phase and a pause with no allocator call, the bytes still allocated (live_bytes, sizes asked for plus the list holding them) and the process's resident set (rss_kib, /proc/self/statm), medians over the child processes",
            "untimed_workloads": self.workloads.iter().zip(&self.timed).filter(|(_, &t)| !t).map(|((_, n, _), _)| *n).collect::<Vec<_>>(),
            "workloads": self.workloads.iter().map(|(n, name, about)| json!({"number": n, "name": name, "about": about})).collect::<Vec<_>>(),
            "allocators": self.allocators.iter().map(|(n, d)| json!({"name": n, "description": d})).collect::<Vec<_>>(),
            "skipped": self.skipped.iter().map(|(n, w)| json!({"name": n, "reason": w})).collect::<Vec<_>>(),
            "results": results,
            "geomean": geo,
        });
        let mut s = serde_json::to_string_pretty(&doc).expect("json");
        s.push('\n');
        s
    }
}
