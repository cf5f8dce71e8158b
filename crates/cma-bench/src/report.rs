//! The report: medians and ratios to the baseline, as a terminal table, a
//! JSON document and a hand-written SVG chart.

use std::fmt::Write as _;

use crate::alloc::{self, Spec, BASELINE};
use crate::util::{geomean, median};
use crate::workloads::Workload;
use crate::Outcome;

pub const MEMORY_METRIC: &str = "peak resident set of the child process (VmHWM from /proc/self/status, KiB), measured in a fresh subprocess per workload, allocator and repetition; it includes the binary's and the allocator's start-up pages: start_rss_kib is the resident set before the first timed run, rss_growth_kib the median of peak minus start";

pub struct Setup {
    pub quick: bool,
    pub reps: usize,
    pub iters: usize,
    pub threads: usize,
    /// Ratios and the table use CPU time rather than wall-clock time.
    pub cpu_time: bool,
    pub wall_s: f64,
    pub command: String,
}

/// One workload on one allocator, over all repetitions.
pub struct Cell {
    /// Wall-clock.
    pub median_ns: Option<f64>,
    /// CPU time of the child, all threads.
    pub median_cpu_ns: Option<f64>,
    /// Ratio of the ranked time (wall, or CPU with --cpu-time).
    pub ranked_ratio: Option<f64>,
    pub cpu_ratio: Option<f64>,
    pub peak_rss_kib: Option<f64>,
    pub start_rss_kib: Option<f64>,
    /// Peak minus start resident set: what the workload itself added.
    pub rss_growth_kib: Option<f64>,
    pub time_ratio: Option<f64>,
    pub rss_ratio: Option<f64>,
    pub child_medians_ns: Vec<f64>,
    pub failures: Vec<String>,
}

pub struct Report {
    setup: Setup,
    workloads: Vec<(u32, &'static str, &'static str)>,
    allocators: Vec<(String, String)>,
    skipped: Vec<(String, String)>,
    /// cells[workload][allocator]
    cells: Vec<Vec<Cell>>,
    baseline: Option<usize>,
}

impl Report {
    pub fn build(
        setup: Setup,
        wls: &[&Workload],
        specs: &[Spec],
        skipped: Vec<(String, String)>,
        runs: Vec<Vec<Vec<Outcome>>>,
    ) -> Report {
        let baseline = specs.iter().position(|s| s.name == BASELINE);
        let mut cells: Vec<Vec<Cell>> = runs
            .into_iter()
            .map(|per_alloc| {
                per_alloc
                    .into_iter()
                    .map(|outcomes| {
                        let mut meds = Vec::new();
                        let mut cpus = Vec::new();
                        let mut peaks = Vec::new();
                        let mut starts = Vec::new();
                        let mut growth = Vec::new();
                        let mut failures = Vec::new();
                        for o in outcomes {
                            match o {
                                Outcome::Ok {
                                    median_ns,
                                    median_cpu_ns,
                                    peak_rss_kib,
                                    start_rss_kib,
                                    ..
                                } => {
                                    meds.push(median_ns);
                                    cpus.push(median_cpu_ns);
                                    peaks.push(peak_rss_kib as f64);
                                    starts.push(start_rss_kib as f64);
                                    growth.push(peak_rss_kib.saturating_sub(start_rss_kib) as f64);
                                }
                                Outcome::Failed(why) => failures.push(why),
                            }
                        }
                        let some = |v: &[f64]| if v.is_empty() { None } else { Some(median(v)) };
                        Cell {
                            median_ns: some(&meds),
                            median_cpu_ns: some(&cpus),
                            ranked_ratio: None,
                            cpu_ratio: None,
                            peak_rss_kib: some(&peaks),
                            start_rss_kib: some(&starts),
                            rss_growth_kib: some(&growth),
                            time_ratio: None,
                            rss_ratio: None,
                            child_medians_ns: meds,
                            failures,
                        }
                    })
                    .collect()
            })
            .collect();
        if let Some(b) = baseline {
            for row in &mut cells {
                let (bt, bc, bm) = (row[b].median_ns, row[b].median_cpu_ns, row[b].peak_rss_kib);
                for c in row.iter_mut() {
                    c.time_ratio = c.median_ns.zip(bt).map(|(x, y)| x / y);
                    c.cpu_ratio = c.median_cpu_ns.zip(bc).map(|(x, y)| x / y);
                    c.ranked_ratio = if setup.cpu_time {
                        c.cpu_ratio
                    } else {
                        c.time_ratio
                    };
                    c.rss_ratio = c.peak_rss_kib.zip(bm).map(|(x, y)| x / y);
                }
            }
        }
        Report {
            setup,
            workloads: wls.iter().map(|w| (w.number, w.name, w.about)).collect(),
            allocators: specs
                .iter()
                .map(|s| (s.name.clone(), alloc::describe(s.which)))
                .collect(),
            skipped,
            cells,
            baseline,
        }
    }

    /// Runs that failed (crashed, hung, failed a check) on a cma allocator.
    pub fn cma_failures(&self) -> usize {
        self.cells
            .iter()
            .flat_map(|row| row.iter().zip(&self.allocators))
            .filter(|(_, (name, _))| name.starts_with("cma"))
            .map(|(c, _)| c.failures.len())
            .sum()
    }

    /// Geomeans over the workloads of (ranked time, peak RSS) ratios.
    fn geomeans(&self, ai: usize) -> (Option<f64>, Option<f64>) {
        (
            self.geomean_of(ai, |c| c.ranked_ratio),
            self.geomean_of(ai, |c| c.rss_ratio),
        )
    }

    fn geomean_of(&self, ai: usize, f: impl Fn(&Cell) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self.cells.iter().filter_map(|r| f(&r[ai])).collect();
        if v.is_empty() {
            None
        } else {
            Some(geomean(&v))
        }
    }

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
        let w0 = 20;
        let cw = 16;
        let header = |s: &mut String| {
            let _ = write!(s, "{:<w0$}", "workload");
            for (n, _) in &self.allocators {
                let _ = write!(s, "{n:>cw$}");
            }
            s.push('\n');
        };
        let cell = |v: Option<f64>, r: Option<f64>, fail: bool| -> String {
            match (v, r) {
                (Some(v), Some(r)) => format!("{} ({r:.2})", fmt_num(v)),
                (Some(v), None) => fmt_num(v),
                _ if fail => "FAILED".to_string(),
                _ => "-".to_string(),
            }
        };
        let what = if self.setup.cpu_time {
            "CPU time of the child (all threads)"
        } else {
            "wall-clock time"
        };
        let _ = writeln!(
            s,
            "\ntime: {what}, median ms per run (ratio to {base}; below 1 is faster)"
        );
        header(&mut s);
        for (wi, (num, name, _)) in self.workloads.iter().enumerate() {
            let _ = write!(s, "{:<w0$}", format!("{num:>2} {name}"));
            for c in &self.cells[wi] {
                let t = if self.setup.cpu_time {
                    c.median_cpu_ns
                } else {
                    c.median_ns
                };
                let _ = write!(
                    s,
                    "{:>cw$}",
                    cell(t.map(|x| x / 1e6), c.ranked_ratio, !c.failures.is_empty())
                );
            }
            s.push('\n');
        }
        let _ = write!(s, "{:<w0$}", "   geomean ratio");
        for ai in 0..self.allocators.len() {
            let _ = write!(
                s,
                "{:>cw$}",
                self.geomeans(ai)
                    .0
                    .map(|g| format!("{g:.2}"))
                    .unwrap_or("-".into())
            );
        }
        s.push('\n');
        let _ = writeln!(s, "\nmemory: peak RSS of the child process (VmHWM), MiB (ratio to {base}; below 1 is smaller)");
        header(&mut s);
        for (wi, (num, name, _)) in self.workloads.iter().enumerate() {
            let _ = write!(s, "{:<w0$}", format!("{num:>2} {name}"));
            for c in &self.cells[wi] {
                let _ = write!(
                    s,
                    "{:>cw$}",
                    cell(
                        c.peak_rss_kib.map(|x| x / 1024.0),
                        c.rss_ratio,
                        !c.failures.is_empty()
                    )
                );
            }
            s.push('\n');
        }
        let _ = write!(s, "{:<w0$}", "   geomean ratio");
        for ai in 0..self.allocators.len() {
            let _ = write!(
                s,
                "{:>cw$}",
                self.geomeans(ai)
                    .1
                    .map(|g| format!("{g:.2}"))
                    .unwrap_or("-".into())
            );
        }
        s.push('\n');
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

    pub fn json(&self) -> String {
        use serde_json::{json, Value};
        let opt = |v: Option<f64>| v.map(Value::from).unwrap_or(Value::Null);
        let mut results = Vec::new();
        for (wi, (_, wname, _)) in self.workloads.iter().enumerate() {
            for (ai, c) in self.cells[wi].iter().enumerate() {
                results.push(json!({
                    "workload": wname,
                    "allocator": self.allocators[ai].0,
                    "status": if c.median_ns.is_some() { "ok" } else { "failed" },
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
                }));
            }
        }
        let geo: serde_json::Map<String, Value> = self
            .allocators
            .iter()
            .enumerate()
            .map(|(ai, (n, _))| {
                let t = self.geomean_of(ai, |c| c.time_ratio);
                let cpu = self.geomean_of(ai, |c| c.cpu_ratio);
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

    /// Grouped bars: per workload (and the geomean), one bar per allocator,
    /// the time ratio to the baseline, with a line at 1.0.
    pub fn svg(&self) -> String {
        const COLORS: &[&str] = &[
            "#d62728", "#1f77b4", "#7f7f7f", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
            "#17becf",
        ];
        let na = self.allocators.len();
        let mut groups: Vec<(String, Vec<Option<f64>>)> = self
            .workloads
            .iter()
            .enumerate()
            .map(|(wi, (num, name, _))| {
                (
                    format!("{num} {name}"),
                    self.cells[wi].iter().map(|c| c.ranked_ratio).collect(),
                )
            })
            .collect();
        groups.push((
            "geomean".to_string(),
            (0..na).map(|ai| self.geomeans(ai).0).collect(),
        ));
        let bar_w = 11.0;
        let group_w = bar_w * na as f64 + 14.0;
        let (left, top, plot_h) = (60.0, 70.0, 320.0);
        let width = left + group_w * groups.len() as f64 + 20.0;
        let height = top + plot_h + 110.0;
        let max_seen = groups
            .iter()
            .flat_map(|g| g.1.iter().flatten())
            .fold(1.0f64, |m, &x| m.max(x));
        let y_max = (max_seen * 1.1).clamp(1.5, 4.0);
        let y_max = (y_max * 2.0).ceil() / 2.0;
        let y = |v: f64| top + plot_h * (1.0 - v.min(y_max) / y_max);
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let base = if self.baseline.is_some() {
            BASELINE
        } else {
            "baseline (not run)"
        };
        let _ = writeln!(
            s,
            r#"<text x="{left}" y="20" font-size="14" font-weight="bold">cma-bench: median {} relative to {base} (lower is faster){}</text>"#,
            if self.setup.cpu_time {
                "CPU time"
            } else {
                "time"
            },
            if self.setup.quick { ", --quick" } else { "" }
        );
        // legend
        let mut lx = left;
        for (ai, (n, _)) in self.allocators.iter().enumerate() {
            let c = COLORS[ai % COLORS.len()];
            let _ = writeln!(
                s,
                r#"<rect x="{lx:.1}" y="32" width="12" height="12" fill="{c}"/><text x="{:.1}" y="42">{}</text>"#,
                lx + 16.0,
                esc(n)
            );
            lx += 24.0 + 7.0 * n.len() as f64;
        }
        // grid and axis
        let mut v = 0.0;
        while v <= y_max + 1e-9 {
            let yy = y(v);
            let _ = writeln!(
                s,
                r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{v:.1}</text>"##,
                width - 20.0,
                left - 6.0,
                yy + 4.0
            );
            v += 0.5;
        }
        let _ = writeln!(
            s,
            r#"<text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">time / {base}</text>"#,
            top + plot_h / 2.0,
            top + plot_h / 2.0
        );
        for (gi, (label, vals)) in groups.iter().enumerate() {
            let gx = left + 7.0 + group_w * gi as f64;
            if gi + 1 == groups.len() {
                let _ = writeln!(
                    s,
                    r##"<rect x="{:.1}" y="{top}" width="{:.1}" height="{plot_h}" fill="#f4f4f4"/>"##,
                    gx - 7.0,
                    group_w
                );
            }
            for (ai, r) in vals.iter().enumerate() {
                let x = gx + bar_w * ai as f64;
                let c = COLORS[ai % COLORS.len()];
                match r {
                    Some(r) => {
                        let yy = y(*r);
                        let _ = writeln!(
                            s,
                            r#"<rect x="{x:.1}" y="{yy:.1}" width="{:.1}" height="{:.1}" fill="{c}"><title>{} on {}: {r:.3}</title></rect>"#,
                            bar_w - 1.0,
                            top + plot_h - yy,
                            esc(label),
                            esc(&self.allocators[ai].0)
                        );
                        if *r > y_max {
                            let _ = writeln!(
                                s,
                                r#"<text x="{:.1}" y="{:.1}" font-size="9" text-anchor="middle">{r:.1}</text>"#,
                                x + bar_w / 2.0,
                                top - 3.0
                            );
                        }
                    }
                    None => {
                        let _ = writeln!(
                            s,
                            r#"<text x="{:.1}" y="{:.1}" font-size="9" text-anchor="middle" fill="{c}">x</text>"#,
                            x + bar_w / 2.0,
                            top + plot_h - 3.0
                        );
                    }
                }
            }
            let lx = gx + group_w / 2.0 - 7.0;
            let ly = top + plot_h + 12.0;
            let _ = writeln!(
                s,
                r#"<text x="{lx:.1}" y="{ly:.1}" text-anchor="end" transform="rotate(-35 {lx:.1} {ly:.1})">{}</text>"#,
                esc(label)
            );
        }
        let y1 = y(1.0);
        let _ = writeln!(
            s,
            r#"<line x1="{left}" y1="{y1:.1}" x2="{:.1}" y2="{y1:.1}" stroke="black" stroke-width="1.5" stroke-dasharray="6 3"/>"#,
            width - 20.0
        );
        let _ = writeln!(
            s,
            r#"<line x1="{left}" y1="{top}" x2="{left}" y2="{:.1}" stroke="black"/>"#,
            top + plot_h
        );
        let _ = writeln!(
            s,
            r#"<line x1="{left}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black"/>"#,
            top + plot_h,
            width - 20.0,
            top + plot_h
        );
        s.push_str("</svg>\n");
        s
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

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
