//! The heap report: parsed from the file libcma writes at exit (see
//! `crates/cma-capi/src/exit_report.rs` for the format), shown as text, and
//! written as JSON.

use std::fmt::Write as _;

use crate::json::Json;

/// One size class's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClassLine {
    pub index: usize,
    pub block_size: u64,
    pub allocations: u64,
    pub frees: u64,
    pub blocks_in_use: u64,
    pub peak_blocks_in_use: u64,
}

/// What one process's heap did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeapReport {
    pub pid: u64,
    /// The process's command line (format 2 on; `None` from format 1).
    pub command: Option<String>,
    pub allocations: u64,
    pub frees: u64,
    pub bytes_in_use: u64,
    pub peak_bytes_in_use: u64,
    pub large_allocations: u64,
    pub large_frees: u64,
    pub heaps: u64,
    pub mapped_bytes: u64,
    pub metadata_bytes: u64,
    pub classes: Vec<ClassLine>,
}

impl HeapReport {
    /// Parses a report file; `None` when it is not one (or was cut short).
    pub fn parse(text: &str) -> Option<HeapReport> {
        let mut lines = text.lines();
        if !matches!(lines.next()?, "cma-report 1" | "cma-report 2") {
            return None;
        }
        let mut r = HeapReport::default();
        let mut ended = false;
        for line in lines {
            if let Some(command) = line.strip_prefix("command ") {
                r.command = Some(command.to_string());
                continue;
            }
            let mut words = line.split_ascii_whitespace();
            let key = words.next().unwrap_or("");
            let mut num = || words.next().and_then(|w| w.parse::<u64>().ok());
            match key {
                "end" => {
                    ended = true;
                    break;
                }
                "class" => {
                    let c = ClassLine {
                        index: num()? as usize,
                        block_size: num()?,
                        allocations: num()?,
                        frees: num()?,
                        blocks_in_use: num()?,
                        peak_blocks_in_use: num()?,
                    };
                    r.classes.push(c);
                }
                _ => {
                    let v = num()?;
                    match key {
                        "pid" => r.pid = v,
                        "allocations" => r.allocations = v,
                        "frees" => r.frees = v,
                        "bytes_in_use" => r.bytes_in_use = v,
                        "peak_bytes_in_use" => r.peak_bytes_in_use = v,
                        "large_allocations" => r.large_allocations = v,
                        "large_frees" => r.large_frees = v,
                        "heaps" => r.heaps = v,
                        "mapped_bytes" => r.mapped_bytes = v,
                        "metadata_bytes" => r.metadata_bytes = v,
                        _ => {} // newer fields: ignored
                    }
                }
            }
        }
        ended.then_some(r)
    }

    /// Blocks allocated and not freed.
    pub fn blocks_in_use(&self) -> u64 {
        self.allocations.saturating_sub(self.frees)
    }

    /// The size classes with the most allocations, busiest first.
    pub fn busiest(&self, n: usize) -> Vec<&ClassLine> {
        let mut v: Vec<&ClassLine> = self.classes.iter().collect();
        v.sort_by(|a, b| {
            b.allocations
                .cmp(&a.allocations)
                .then(a.index.cmp(&b.index))
        });
        v.truncate(n);
        v
    }

    pub fn to_json(&self, top: usize) -> Json {
        let class = |c: &ClassLine| {
            Json::object(vec![
                ("class", Json::from(c.index as u64)),
                ("block_size", c.block_size.into()),
                ("allocations", c.allocations.into()),
                ("frees", c.frees.into()),
                ("blocks_in_use", c.blocks_in_use.into()),
                ("peak_blocks_in_use", c.peak_blocks_in_use.into()),
                ("bytes_allocated", (c.allocations * c.block_size).into()),
                ("bytes_in_use", (c.blocks_in_use * c.block_size).into()),
                (
                    "peak_bytes_in_use",
                    (c.peak_blocks_in_use * c.block_size).into(),
                ),
            ])
        };
        Json::object(vec![
            ("pid", self.pid.into()),
            (
                "command",
                self.command.as_deref().map_or(Json::Null, Json::from),
            ),
            ("allocations", self.allocations.into()),
            ("frees", self.frees.into()),
            ("blocks_in_use_at_exit", self.blocks_in_use().into()),
            ("bytes_in_use_at_exit", self.bytes_in_use.into()),
            ("peak_bytes_in_use", self.peak_bytes_in_use.into()),
            ("large_allocations", self.large_allocations.into()),
            ("large_frees", self.large_frees.into()),
            ("heaps", self.heaps.into()),
            ("mapped_bytes", self.mapped_bytes.into()),
            ("metadata_bytes", self.metadata_bytes.into()),
            (
                "busiest_size_classes",
                Json::Array(self.busiest(top).into_iter().map(class).collect()),
            ),
            (
                "size_classes",
                Json::Array(self.classes.iter().map(class).collect()),
            ),
        ])
    }
}

/// `1234567` as `1,234,567`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Bytes in a readable unit.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The report as text for a person.
pub fn format_text(r: &HeapReport, top: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "  allocations        {:>16}", grouped(r.allocations));
    let _ = writeln!(s, "  frees              {:>16}", grouped(r.frees));
    let _ = writeln!(
        s,
        "  peak bytes in use  {:>16}  ({})",
        grouped(r.peak_bytes_in_use),
        human_bytes(r.peak_bytes_in_use)
    );
    let _ = writeln!(
        s,
        "  in use at exit     {:>16}  ({}) in {} blocks",
        grouped(r.bytes_in_use),
        human_bytes(r.bytes_in_use),
        grouped(r.blocks_in_use())
    );
    let _ = writeln!(
        s,
        "  large blocks       {:>16}  allocated, {} freed",
        grouped(r.large_allocations),
        grouped(r.large_frees)
    );
    let _ = writeln!(s, "  thread heaps       {:>16}", grouped(r.heaps));
    let _ = writeln!(
        s,
        "  memory mapped      {:>16}  ({}) + {} metadata",
        grouped(r.mapped_bytes),
        human_bytes(r.mapped_bytes),
        human_bytes(r.metadata_bytes)
    );
    let busiest = r.busiest(top);
    if !busiest.is_empty() {
        let _ = writeln!(s, "  busiest size classes:");
        let _ = writeln!(
            s,
            "    {:>5} {:>10} {:>14} {:>14} {:>12} {:>12}",
            "class", "block", "allocations", "frees", "at exit", "peak"
        );
        for c in busiest {
            let _ = writeln!(
                s,
                "    {:>5} {:>10} {:>14} {:>14} {:>12} {:>12}",
                c.index,
                human_bytes(c.block_size),
                grouped(c.allocations),
                grouped(c.frees),
                grouped(c.blocks_in_use),
                grouped(c.peak_blocks_in_use)
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "cma-report 1\npid 42\nallocations 10\nfrees 7\nbytes_in_use 96\n\
        peak_bytes_in_use 4096\nlarge_allocations 1\nlarge_frees 1\nheaps 2\nmapped_bytes 8192\n\
        metadata_bytes 4096\nclass 0 8 3 3 0 2\nclass 3 32 6 3 3 3\nfuture_key 5\nend\n";

    #[test]
    fn parses_a_report_and_ranks_classes() {
        let r = HeapReport::parse(SAMPLE).expect("a report");
        assert_eq!(r.pid, 42);
        assert_eq!(r.allocations, 10);
        assert_eq!(r.blocks_in_use(), 3);
        assert_eq!(r.classes.len(), 2);
        assert_eq!(r.busiest(1)[0].block_size, 32);
        let text = format_text(&r, 5);
        assert!(text.contains("peak bytes in use"), "{text}");
        let json = r.to_json(5).to_string();
        assert!(json.contains("\"bytes_in_use_at_exit\":96"), "{json}");
    }

    #[test]
    fn rejects_cut_reports() {
        assert!(HeapReport::parse("cma-report 1\npid 1\n").is_none());
        assert!(HeapReport::parse("something else\nend\n").is_none());
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(1234567), "1,234,567");
        assert_eq!(grouped(100), "100");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
