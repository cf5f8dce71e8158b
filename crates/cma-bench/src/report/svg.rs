//! The SVG chart: the ranked time ratio to the baseline as grouped bars.

use std::fmt::Write as _;

use super::Report;
use crate::alloc::BASELINE;

impl Report {
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
            (0..na)
                .map(|ai| self.time_geomean_of(ai, |c| c.ranked_ratio))
                .collect(),
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

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
