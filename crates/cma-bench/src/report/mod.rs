//! The report's data: per workload and allocator, the medians over the
//! child runs and their ratios to the baseline (`Report::build`), which
//! `table`, `json` and `svg` render.

mod json;
mod svg;
mod table;

use crate::alloc::{self, Spec, BASELINE};
use crate::suite::Outcome;
use crate::util::{geomean, median};
use crate::workloads::{is_timed, Workload};

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
    /// The memory workload's phases: name, then the medians over the
    /// children of the live bytes and of the resident KiB.
    pub phases: Vec<(String, f64, f64)>,
}

pub struct Report {
    setup: Setup,
    workloads: Vec<(u32, &'static str, &'static str)>,
    /// Per workload: whether its time counts in the time geomean.
    timed: Vec<bool>,
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
                        let mut phase_runs: Vec<Vec<(String, u64, u64)>> = Vec::new();
                        for o in outcomes {
                            match o {
                                Outcome::Ok {
                                    median_ns,
                                    median_cpu_ns,
                                    peak_rss_kib,
                                    start_rss_kib,
                                    phases,
                                    ..
                                } => {
                                    phase_runs.push(phases);
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
                            phases: phase_medians(&phase_runs),
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
            timed: wls.iter().map(|w| is_timed(w.name)).collect(),
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

    /// The geomean over the workloads of a ratio of one allocator.
    fn geomean_of(&self, ai: usize, f: impl Fn(&Cell) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self.cells.iter().filter_map(|r| f(&r[ai])).collect();
        if v.is_empty() {
            None
        } else {
            Some(geomean(&v))
        }
    }

    /// The geomean of a time ratio: over the timed workloads only.
    fn time_geomean_of(&self, ai: usize, f: impl Fn(&Cell) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self
            .cells
            .iter()
            .zip(&self.timed)
            .filter(|(_, &timed)| timed)
            .filter_map(|(r, _)| f(&r[ai]))
            .collect();
        if v.is_empty() {
            None
        } else {
            Some(geomean(&v))
        }
    }
}

/// Per phase (in the order of the first run), the medians of live bytes and
/// resident KiB over the runs that reported it.
fn phase_medians(runs: &[Vec<(String, u64, u64)>]) -> Vec<(String, f64, f64)> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    first
        .iter()
        .map(|(name, _, _)| {
            let (mut live, mut rss) = (Vec::new(), Vec::new());
            for run in runs {
                if let Some((_, l, r)) = run.iter().find(|(n, _, _)| n == name) {
                    live.push(*l as f64);
                    rss.push(*r as f64);
                }
            }
            (name.clone(), median(&live), median(&rss))
        })
        .collect()
}
