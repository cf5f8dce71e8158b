//! The heap report: parsed from the files cma's engines write at exit (see
//! `crates/cma/src/observe/report_file.rs` for the format), shown as text,
//! and written as JSON.
//!
//! A process may have run two engines: a Rust program whose global
//! allocator is the cma crate, run with libcma preloaded, has the crate's
//! heap (its Rust allocations) and libcma's (libc's own `malloc` calls),
//! each with its own counters, and each writes its report. A
//! `ProcessReport` holds every engine's report of one process; what is
//! shown are their totals, and, when there are several, each engine's
//! figures beside them, so that no number passes for what it is not.

use std::collections::BTreeMap;
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

/// The engine that wrote reports of formats 1 and 2 (only libcma wrote
/// them).
pub const LIBCMA: &str = "libcma";

/// What one engine's heap did in one process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeapReport {
    pub pid: u64,
    /// Which engine wrote it: `libcma` or `rust-crate` (format 3 on;
    /// `libcma` before).
    pub engine: String,
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
    /// Parses the first report in `text`; `None` when there is none that
    /// is whole.
    #[cfg(test)]
    pub fn parse(text: &str) -> Option<HeapReport> {
        HeapReport::parse_all(text).into_iter().next()
    }

    /// Parses every whole report in a file's text: one per engine that ran
    /// in the process (format 3 appends them). A report cut short, or of a
    /// format this command does not know, is left out.
    pub fn parse_all(text: &str) -> Vec<HeapReport> {
        let mut reports = Vec::new();
        let mut current: Option<HeapReport> = None;
        for line in text.lines() {
            if let Some(version) = line.strip_prefix("cma-report ") {
                // A new report begins; one not ended before it was cut.
                current = matches!(version, "1" | "2" | "3").then(|| HeapReport {
                    engine: LIBCMA.to_string(),
                    ..HeapReport::default()
                });
                continue;
            }
            let Some(r) = current.as_mut() else {
                continue;
            };
            if let Some(command) = line.strip_prefix("command ") {
                r.command = Some(command.to_string());
                continue;
            }
            if let Some(engine) = line.strip_prefix("engine ") {
                r.engine = engine.trim().to_string();
                continue;
            }
            if line == "end" {
                reports.extend(current.take());
                continue;
            }
            if !r.take_line(line) {
                current = None;
            }
        }
        reports
    }

    /// Reads one `key value...` line into the report; false when the line
    /// is malformed (the report is then not trusted).
    fn take_line(&mut self, line: &str) -> bool {
        let mut words = line.split_ascii_whitespace();
        let key = words.next().unwrap_or("");
        let mut num = || words.next().and_then(|w| w.parse::<u64>().ok());
        if key == "class" {
            let mut class = || {
                Some(ClassLine {
                    index: num()? as usize,
                    block_size: num()?,
                    allocations: num()?,
                    frees: num()?,
                    blocks_in_use: num()?,
                    peak_blocks_in_use: num()?,
                })
            };
            return match class() {
                Some(c) => {
                    self.classes.push(c);
                    true
                }
                None => false,
            };
        }
        if key == "image" {
            return true; // which run of the pid: the writers' business
        }
        let Some(v) = num() else {
            return false;
        };
        match key {
            "pid" => self.pid = v,
            "allocations" => self.allocations = v,
            "frees" => self.frees = v,
            "bytes_in_use" => self.bytes_in_use = v,
            "peak_bytes_in_use" => self.peak_bytes_in_use = v,
            "large_allocations" => self.large_allocations = v,
            "large_frees" => self.large_frees = v,
            "heaps" => self.heaps = v,
            "mapped_bytes" => self.mapped_bytes = v,
            "metadata_bytes" => self.metadata_bytes = v,
            _ => {} // newer fields: ignored
        }
        true
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
            ("engine", Json::from(self.engine.as_str())),
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

/// Every engine's report of one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessReport {
    /// One report per engine, never empty; the program's own engine first
    /// and libcma last.
    pub engines: Vec<HeapReport>,
}

impl ProcessReport {
    /// Groups reports by process, in pid order.
    pub fn group(reports: Vec<HeapReport>) -> Vec<ProcessReport> {
        let mut by_pid: BTreeMap<u64, Vec<HeapReport>> = BTreeMap::new();
        for r in reports {
            by_pid.entry(r.pid).or_default().push(r);
        }
        by_pid
            .into_values()
            .map(|mut engines| {
                engines.sort_by_key(|r| r.engine == LIBCMA);
                ProcessReport { engines }
            })
            .collect()
    }

    pub fn pid(&self) -> u64 {
        self.engines.first().map_or(0, |r| r.pid)
    }

    /// Whether more than one engine reported for the process.
    pub fn several_engines(&self) -> bool {
        self.engines.len() > 1
    }

    /// The engines' names, in order.
    pub fn engine_names(&self) -> Vec<&str> {
        self.engines.iter().map(|r| r.engine.as_str()).collect()
    }

    /// The process's figures: the one engine's, or the sums over its
    /// engines. Counts and bytes add up exactly (the engines' heaps are
    /// separate); a peak is the sum of each engine's peak, an upper bound
    /// of the process's (the engines did not peak at the same moment,
    /// necessarily).
    pub fn total(&self) -> HeapReport {
        let mut t = HeapReport {
            pid: self.pid(),
            engine: self.engine_names().join("+"),
            command: self.engines.iter().find_map(|r| r.command.clone()),
            ..HeapReport::default()
        };
        let mut classes: BTreeMap<usize, ClassLine> = BTreeMap::new();
        for r in &self.engines {
            t.allocations += r.allocations;
            t.frees += r.frees;
            t.bytes_in_use += r.bytes_in_use;
            t.peak_bytes_in_use += r.peak_bytes_in_use;
            t.large_allocations += r.large_allocations;
            t.large_frees += r.large_frees;
            t.heaps += r.heaps;
            t.mapped_bytes += r.mapped_bytes;
            t.metadata_bytes += r.metadata_bytes;
            for c in &r.classes {
                let sum = classes.entry(c.index).or_insert_with(|| ClassLine {
                    index: c.index,
                    block_size: c.block_size,
                    ..ClassLine::default()
                });
                sum.allocations += c.allocations;
                sum.frees += c.frees;
                sum.blocks_in_use += c.blocks_in_use;
                sum.peak_blocks_in_use += c.peak_blocks_in_use;
            }
        }
        t.classes = classes.into_values().collect();
        t
    }

    /// The process's report as JSON: the total's fields, `engines` (the
    /// names) and `by_engine` (each engine's own report, or null when
    /// there is one engine: then the total is its report).
    pub fn to_json(&self, top: usize) -> Json {
        let (mut json, by_engine) = if self.several_engines() {
            let mut total = self.total().to_json(top);
            if let Json::Object(fields) = &mut total {
                if let Some(engine) = fields.iter_mut().find(|(k, _)| k == "engine") {
                    engine.1 = Json::Null;
                }
            }
            let each = self.engines.iter().map(|r| r.to_json(top)).collect();
            (total, Json::Array(each))
        } else {
            (self.total().to_json(top), Json::Null)
        };
        if let Json::Object(fields) = &mut json {
            let names = self.engine_names().into_iter().map(Json::from).collect();
            fields.push(("engines".to_string(), Json::Array(names)));
            fields.push(("by_engine".to_string(), by_engine));
        }
        json
    }
}

/// One figure of a heap report, for the table by engine.
type Figure = fn(&HeapReport) -> u64;

/// What an engine is, for a person.
fn describe_engine(name: &str) -> &'static str {
    match name {
        "rust-crate" => "the cma crate, the program's Rust global allocator",
        LIBCMA => "libcma, the C allocator (malloc)",
        _ => "an engine this cma does not know",
    }
}

/// The process's report as text for a person.
pub fn format_text(p: &ProcessReport, top: usize) -> String {
    let mut s = String::new();
    let n = p.engines.len();
    if p.several_engines() {
        let count = match n {
            2 => "two".to_string(),
            n => n.to_string(),
        };
        let _ = writeln!(
            s,
            "  {count} cma engines ran in this process, each with a heap of its own:"
        );
        for r in &p.engines {
            let _ = writeln!(s, "    {:<12} {}", r.engine, describe_engine(&r.engine));
        }
        let _ = writeln!(
            s,
            "  the figures below are their totals (a peak is the sum of the engines' peaks); by engine after them"
        );
    } else if let Some(only) = p.engines.first().filter(|r| r.engine != LIBCMA) {
        let _ = writeln!(
            s,
            "  engine             {:>16}  ({})",
            only.engine,
            describe_engine(&only.engine)
        );
    }
    s.push_str(&format_counts(&p.total(), top));
    if p.several_engines() {
        let _ = write!(s, "  {:<24}", "by engine:");
        for r in &p.engines {
            let _ = write!(s, "{:>17}", r.engine);
        }
        s.push('\n');
        let rows: [(&str, Figure); 6] = [
            ("allocations", |r| r.allocations),
            ("frees", |r| r.frees),
            ("peak bytes in use", |r| r.peak_bytes_in_use),
            ("bytes in use at exit", |r| r.bytes_in_use),
            ("blocks in use at exit", |r| r.blocks_in_use()),
            ("memory mapped", |r| r.mapped_bytes),
        ];
        for (label, value) in rows {
            let _ = write!(s, "    {label:<22}");
            for r in &p.engines {
                let _ = write!(s, "{:>17}", grouped(value(r)));
            }
            s.push('\n');
        }
    }
    s
}

/// One heap's figures as text.
fn format_counts(r: &HeapReport, top: usize) -> String {
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
        assert_eq!(r.engine, "libcma", "format 1 came from libcma only");
        assert_eq!(r.allocations, 10);
        assert_eq!(r.blocks_in_use(), 3);
        assert_eq!(r.classes.len(), 2);
        assert_eq!(r.busiest(1)[0].block_size, 32);
        let p = ProcessReport { engines: vec![r] };
        let text = format_text(&p, 5);
        assert!(text.contains("peak bytes in use"), "{text}");
        assert!(
            !text.contains("engine"),
            "one libcma engine, as before: {text}"
        );
        let json = p.to_json(5).to_string();
        assert!(json.contains("\"bytes_in_use_at_exit\":96"), "{json}");
        assert!(json.contains("\"engine\":\"libcma\""), "{json}");
        assert!(
            json.contains("\"engines\":[\"libcma\"],\"by_engine\":null"),
            "{json}"
        );
    }

    /// A file with two engines' reports of one process (format 3), the way
    /// a Rust program on the cma crate under libcma leaves it.
    const TWO_ENGINES: &str = "cma-report 3\npid 7\nimage 00ff\nengine libcma\ncommand ./prog a\n\
        allocations 30\nfrees 20\nbytes_in_use 320\npeak_bytes_in_use 1000\nlarge_allocations 0\n\
        large_frees 0\nheaps 1\nmapped_bytes 4096\nmetadata_bytes 100\nclass 3 32 30 20 10 12\nend\n\
        cma-report 3\npid 7\nimage 00ff\nengine rust-crate\ncommand ./prog a\n\
        allocations 100000\nfrees 99990\nbytes_in_use 80\npeak_bytes_in_use 800000\n\
        large_allocations 1\nlarge_frees 1\nheaps 2\nmapped_bytes 8192\nmetadata_bytes 200\n\
        class 0 8 99000 98990 10 99000\nclass 3 32 999 999 0 5\nend\n";

    #[test]
    fn two_engines_of_one_process_are_shown_with_their_totals() {
        let all = HeapReport::parse_all(TWO_ENGINES);
        assert_eq!(all.len(), 2);
        let grouped = ProcessReport::group(all);
        assert_eq!(grouped.len(), 1, "one process");
        let p = &grouped[0];
        assert_eq!(p.engine_names(), ["rust-crate", "libcma"], "libcma last");
        let t = p.total();
        assert_eq!(t.allocations, 100_030);
        assert_eq!(t.frees, 100_010);
        assert_eq!(t.bytes_in_use, 400);
        assert_eq!(t.peak_bytes_in_use, 801_000);
        assert_eq!(t.heaps, 3);
        assert_eq!(t.command.as_deref(), Some("./prog a"));
        let class3 = t.classes.iter().find(|c| c.index == 3).unwrap();
        assert_eq!(
            (class3.allocations, class3.frees, class3.blocks_in_use),
            (1029, 1019, 10)
        );
        assert_eq!(class3.peak_blocks_in_use, 17);

        let text = format_text(p, 5);
        assert!(
            text.contains("two cma engines ran in this process"),
            "{text}"
        );
        assert!(
            text.contains("rust-crate") && text.contains("libcma"),
            "{text}"
        );
        assert!(
            text.contains("allocations                 100,030"),
            "{text}"
        );
        let by_engine = text.lines().skip_while(|l| !l.contains("by engine:"));
        let allocs = by_engine
            .clone()
            .find(|l| l.trim_start().starts_with("allocations"));
        let words: Vec<_> = allocs.unwrap().split_whitespace().collect();
        assert_eq!(words, ["allocations", "100,000", "30"], "{text}");

        let json = p.to_json(5).to_string();
        assert!(json.starts_with("{\"pid\":7,\"engine\":null,"), "{json}");
        assert!(json.contains("\"allocations\":100030"), "{json}");
        assert!(
            json.contains("\"engines\":[\"rust-crate\",\"libcma\"]"),
            "{json}"
        );
        assert!(
            json.contains("\"by_engine\":[{\"pid\":7,\"engine\":\"rust-crate\""),
            "{json}"
        );
        assert!(json.contains("{\"pid\":7,\"engine\":\"libcma\""), "{json}");
    }

    #[test]
    fn one_rust_crate_engine_is_named() {
        let rust_only = TWO_ENGINES.split_once("end\n").unwrap().1;
        let p = &ProcessReport::group(HeapReport::parse_all(rust_only))[0];
        let text = format_text(p, 5);
        assert!(
            text.starts_with("  engine                   rust-crate  (the cma crate"),
            "{text}"
        );
    }

    #[test]
    fn a_cut_or_unknown_report_is_left_out_and_the_rest_kept() {
        let (first, _) = TWO_ENGINES.split_once("engine rust-crate").unwrap();
        assert_eq!(HeapReport::parse_all(first).len(), 1, "the second was cut");
        let unknown = format!("cma-report 99\npid 1\nsomething new\nend\n{TWO_ENGINES}");
        assert_eq!(HeapReport::parse_all(&unknown).len(), 2);
        let malformed = TWO_ENGINES.replacen("frees 20", "frees twenty", 1);
        let kept = HeapReport::parse_all(&malformed);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].engine, "rust-crate");
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
