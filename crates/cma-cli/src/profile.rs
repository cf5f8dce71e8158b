//! Heap profiles: the files cma's engines write at exit with the
//! live-allocation registry on (`profile_file=`, see
//! `crates/cma/src/observe/profile_file.rs` for the format), parsed,
//! symbolised once the program has stopped, and shown three ways: the
//! blocks still live at exit grouped by allocation site (`cma run
//! --leaks`), the top sites by peak and total bytes in the text report,
//! and DHAT's JSON (`cma run --profile FILE`, `dhatFileVersion` 2) for
//! valgrind's `dh_view.html` and the Firefox Profiler.
//!
//! Blocks that the program's own code did not ask for are put apart from
//! its leaks (`Site::runtime`): blocks allocated while the process started
//! (before the engine's constructor ran: the loader's and the C library's
//! start-up), blocks the C library or the loader allocate for themselves
//! (stdio buffers, locale data, thread-local storage: the innermost frame
//! outside cma lies in libc or ld.so, in a function that does not hand
//! its block to its caller, as `strdup` does), and the Rust runtime's own
//! (allocated from `std::rt` outside the program's `main`, or for the
//! standard streams).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::json::Json;
use crate::report::{grouped, human_bytes};
use crate::symbolize::{cma_frame, in_cma, in_libcma, Symbolizer};

/// One site of a raw profile: its counters (DHAT's names) and raw stack.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawSite {
    pub tb: u64,
    pub tbk: u64,
    pub tl: u64,
    pub mb: u64,
    pub mbk: u64,
    pub gb: u64,
    pub gbk: u64,
    pub eb: u64,
    pub ebk: u64,
    pub freed: u64,
    pub startup: bool,
    pub frames: Vec<u64>,
}

/// A file mapping of the process, from its `/proc/self/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Mapping {
    start: u64,
    end: u64,
    offset: u64,
    path: String,
}

/// One engine's profile of one process.
#[derive(Clone, Debug, Default)]
pub struct RawProfile {
    pub pid: u64,
    pub engine: String,
    pub command: String,
    pub mode: String,
    pub rate: u64,
    pub time_end_us: u64,
    pub peak_at_us: u64,
    /// Bytes and blocks allocated, live at the end, at the peak; blocks
    /// the registry could not record.
    pub totals: [u64; 7],
    pub sites: Vec<RawSite>,
    maps: Vec<Mapping>,
}

impl RawProfile {
    /// Parses a profile file; `None` unless it is whole (ends with `end`).
    pub fn parse(text: &str) -> Option<RawProfile> {
        let mut lines = text.lines();
        if lines.next()? != "cma-profile 1" {
            return None;
        }
        let mut p = RawProfile::default();
        for line in lines {
            if line == "end" {
                return Some(p);
            }
            let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
            let num = |s: &str| s.trim().parse::<u64>().ok();
            match key {
                "pid" => p.pid = num(rest)?,
                "engine" => p.engine = rest.to_string(),
                "command" => p.command = rest.to_string(),
                "mode" => p.mode = rest.to_string(),
                "rate" => p.rate = num(rest)?,
                "time_end_us" => p.time_end_us = num(rest)?,
                "peak_at_us" => p.peak_at_us = num(rest)?,
                "totals" => {
                    for (slot, w) in p.totals.iter_mut().zip(rest.split(' ')) {
                        *slot = num(w)?;
                    }
                }
                "site" => {
                    let mut w = rest.split(' ');
                    let mut n = || w.next().and_then(num);
                    let mut s = RawSite {
                        tb: n()?,
                        tbk: n()?,
                        tl: n()?,
                        mb: n()?,
                        mbk: n()?,
                        gb: n()?,
                        gbk: n()?,
                        eb: n()?,
                        ebk: n()?,
                        freed: n()?,
                        startup: n()? == 1,
                        frames: Vec::new(),
                    };
                    for f in w {
                        s.frames.push(u64::from_str_radix(f, 16).ok()?);
                    }
                    p.sites.push(s);
                }
                "map" => {
                    // start-end perms offset dev inode path
                    let f: Vec<&str> = rest.splitn(6, ' ').collect();
                    let (range, offset, path) = (f.first()?, f.get(2)?, f.get(5)?.trim_start());
                    let (a, b) = range.split_once('-')?;
                    p.maps.push(Mapping {
                        start: u64::from_str_radix(a, 16).ok()?,
                        end: u64::from_str_radix(b, 16).ok()?,
                        offset: u64::from_str_radix(offset, 16).ok()?,
                        path: path.to_string(),
                    });
                }
                _ => {}
            }
        }
        None
    }

    /// The module (path) holding `addr` and the offset from its load
    /// address (its first mapping at file offset 0).
    fn module_of(&self, addr: u64) -> Option<(&str, u64)> {
        let m = self
            .maps
            .iter()
            .find(|m| (m.start..m.end).contains(&addr))?;
        let base = self
            .maps
            .iter()
            .filter(|b| b.path == m.path && b.offset == 0)
            .map(|b| b.start)
            .min()
            .unwrap_or(m.start.wrapping_sub(m.offset));
        Some((&m.path, addr - base))
    }
}

/// Reads every profile file in `dir` (the engines of every process).
pub fn read_profiles(dir: &Path) -> Vec<RawProfile> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().starts_with("profile.") {
                continue;
            }
            if let Some(p) = std::fs::read_to_string(entry.path())
                .ok()
                .and_then(|t| RawProfile::parse(&t))
            {
                out.push(p);
            }
        }
    }
    out
}

/// One frame of a site, symbolised: the code address, its module's file
/// name and offset, and the function(s) there, innermost inlined first.
#[derive(Clone, Debug)]
pub struct Frame {
    pub address: u64,
    pub module: String,
    pub offset: u64,
    pub functions: Vec<(String, Option<String>)>,
}

impl Frame {
    /// The frame as the text report shows it:
    /// `function at file:line (module+0xoffset)`, and a line for each
    /// function inlined there (`inlined in caller at file:line`).
    pub fn describe(&self) -> Vec<String> {
        let Some(((f, loc), inlined)) = self.functions.split_first() else {
            return vec![if self.module.is_empty() {
                format!("{:#x}", self.address)
            } else {
                format!("{}+{:#x}", self.module, self.offset)
            }];
        };
        let at =
            |loc: &Option<String>| loc.as_deref().map_or(String::new(), |l| format!(" at {l}"));
        let mut out = vec![format!(
            "{f}{} ({}+{:#x})",
            at(loc),
            self.module,
            self.offset
        )];
        for (f, loc) in inlined {
            out.push(format!("  inlined in {f}{}", at(loc)));
        }
        out
    }

    /// DHAT's frame-table entries for the frame, innermost inlined first:
    /// `0xADDR: function (file:line)`, or `(in module)` without a line.
    fn dhat_entries(&self) -> Vec<String> {
        if self.functions.is_empty() {
            return vec![format!("{:#x}: ??? (in {})", self.address, self.module)];
        }
        self.functions
            .iter()
            .map(|(f, loc)| (without_offset(f), loc))
            .map(|(f, loc)| match loc {
                Some(loc) => format!("{:#x}: {f} ({loc})", self.address),
                None => format!("{:#x}: {f} (in {})", self.address, self.module),
            })
            .collect()
    }

    /// The innermost function's name, without a symbol table's `+0x...`.
    fn function(&self) -> &str {
        without_offset(self.functions.first().map_or("", |(f, _)| f.as_str()))
    }
}

/// A site of a process, symbolised, cma's own frames dropped.
#[derive(Clone, Debug)]
pub struct Site {
    pub counts: RawSite,
    pub frames: Vec<Frame>,
    /// Not the program's own: start-up, the C library's or the loader's,
    /// the Rust runtime's (see the module docs).
    pub runtime: bool,
}

/// Every engine's profile of one process, symbolised.
pub struct Profile {
    pub pid: u64,
    pub command: String,
    /// `all` (exact) or `sample` (estimates), per engine, joined.
    pub mode: String,
    pub time_end_us: u64,
    pub peak_at_us: u64,
    pub sites: Vec<Site>,
    /// Blocks and bytes the engines' counters and registries agree on.
    pub totals: [u64; 7],
}

impl Profile {
    /// Symbolises the profiles of one process (one per engine).
    pub fn build(raw: &[RawProfile], symbolizer: &mut Symbolizer) -> Option<Profile> {
        let first = raw.first()?;
        let mut sites = Vec::new();
        let mut totals = [0u64; 7];
        for p in raw {
            for (t, v) in totals.iter_mut().zip(p.totals) {
                *t += v;
            }
            for s in &p.sites {
                let mut frames = Vec::new();
                let mut leading = true;
                for &addr in &s.frames {
                    let (path, offset, mut functions) = match p.module_of(addr) {
                        Some((path, offset)) => {
                            let f = symbolizer.return_address(path, offset);
                            (path.to_string(), offset, f)
                        }
                        None => (String::new(), addr, Vec::new()),
                    };
                    if leading && cma_frame(&path, &functions) {
                        // Everything in libcma is cma's (its C entry points
                        // too). In a Rust program cma's code may be inlined
                        // into the program's: keep what follows it.
                        let own = functions.iter().take_while(|(f, _)| in_cma(f)).count();
                        if in_libcma(&path) || own == 0 || own == functions.len() {
                            continue;
                        }
                        functions.drain(..own);
                    }
                    leading = false;
                    frames.push(Frame {
                        address: addr,
                        module: path.rsplit('/').next().unwrap_or(&path).to_string(),
                        offset,
                        functions,
                    });
                }
                let runtime = s.startup || not_the_programs(&frames);
                sites.push(Site {
                    counts: s.clone(),
                    frames,
                    runtime,
                });
            }
        }
        let mut modes: Vec<&str> = raw.iter().map(|p| p.mode.as_str()).collect();
        modes.dedup();
        Some(Profile {
            pid: first.pid,
            command: first.command.clone(),
            mode: modes.join("+"),
            time_end_us: raw.iter().map(|p| p.time_end_us).max().unwrap_or(0),
            peak_at_us: first.peak_at_us,
            sites,
            totals,
        })
    }

    /// Whether the figures are estimates (`profile=sample`).
    pub fn sampled(&self) -> bool {
        self.mode.contains("sample")
    }

    /// The program's leaks: its sites with blocks live at exit, grouped by
    /// their stacks, most bytes first; and what the runtime left (blocks,
    /// bytes, sites).
    pub fn leaks(&self) -> (Vec<Leak>, (u64, u64, usize)) {
        let mut groups: HashMap<Vec<String>, Leak> = HashMap::new();
        let mut apart = (0, 0, 0);
        for s in self.sites.iter().filter(|s| s.counts.ebk > 0) {
            if s.runtime {
                apart.0 += s.counts.ebk;
                apart.1 += s.counts.eb;
                apart.2 += 1;
                continue;
            }
            let key = display_lines(&s.frames);
            let g = groups.entry(key.clone()).or_insert_with(|| Leak {
                bytes: 0,
                blocks: 0,
                frames: key,
            });
            g.bytes += s.counts.eb;
            g.blocks += s.counts.ebk;
        }
        let mut leaks: Vec<Leak> = groups.into_values().collect();
        leaks.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.frames.cmp(&b.frames)));
        (leaks, apart)
    }

    /// DHAT's JSON (`dhatFileVersion` 2) of this profile.
    pub fn to_dhat(&self) -> Json {
        let mut ftbl: Vec<String> = vec!["[root]".to_string()];
        let mut index: HashMap<String, u64> = HashMap::new();
        let mut pps = Vec::new();
        for s in &self.sites {
            let c = &s.counts;
            let mut fs = Vec::new();
            for f in &s.frames {
                for entry in f.dhat_entries() {
                    let i = *index.entry(entry.clone()).or_insert_with(|| {
                        ftbl.push(entry);
                        ftbl.len() as u64 - 1
                    });
                    fs.push(Json::UInt(i));
                }
            }
            pps.push(Json::object(vec![
                ("tb", c.tb.into()),
                ("tbk", c.tbk.into()),
                ("tl", c.tl.into()),
                ("mb", c.mb.into()),
                ("mbk", c.mbk.into()),
                ("gb", c.gb.into()),
                ("gbk", c.gbk.into()),
                ("eb", c.eb.into()),
                ("ebk", c.ebk.into()),
                ("fs", Json::Array(fs)),
            ]));
        }
        Json::object(vec![
            ("dhatFileVersion", Json::UInt(2)),
            ("mode", Json::from("heap")),
            ("verb", Json::from("Allocated")),
            ("bklt", Json::Bool(true)),
            ("bkacc", Json::Bool(false)),
            ("tu", Json::from("µs")),
            ("Mtu", Json::from("s")),
            ("tuth", Json::UInt(10)),
            ("cmd", Json::from(self.command.as_str())),
            ("pid", self.pid.into()),
            ("te", self.time_end_us.into()),
            ("tg", self.peak_at_us.into()),
            ("pps", Json::Array(pps)),
            (
                "ftbl",
                Json::Array(ftbl.into_iter().map(Json::Str).collect()),
            ),
        ])
    }

    /// The text report's lines: the top `n` sites by bytes live at the
    /// peak and by bytes allocated in all.
    pub fn top_sites_text(&self, n: usize) -> String {
        let mut out = String::new();
        let about = if self.sampled() { "about " } else { "" };
        let mut by = |title: &str, key: &dyn Fn(&RawSite) -> (u64, u64)| {
            let mut v: Vec<&Site> = self.sites.iter().filter(|s| key(&s.counts).0 > 0).collect();
            v.sort_by_key(|s| std::cmp::Reverse(key(&s.counts).0));
            if v.is_empty() {
                return;
            }
            let _ = writeln!(out, "  top sites by {title}:");
            for s in v.into_iter().take(n) {
                let (bytes, blocks) = key(&s.counts);
                let _ = writeln!(
                    out,
                    "    {about}{} ({}) in {} blocks{}",
                    grouped(bytes),
                    human_bytes(bytes),
                    grouped(blocks),
                    if s.runtime {
                        "  [start-up or runtime]"
                    } else {
                        ""
                    }
                );
                for line in display_lines(&s.frames).iter().take(4) {
                    let _ = writeln!(out, "      {line}");
                }
            }
        };
        by("bytes live at the peak", &|c| (c.gb, c.gbk));
        by("bytes allocated in all", &|c| (c.tb, c.tbk));
        out
    }
}

/// A function's name without the `+0x...` of a symbol-table lookup.
fn without_offset(f: &str) -> &str {
    match f.rfind("+0x") {
        Some(i) if f[i + 3..].bytes().all(|b| b.is_ascii_hexdigit()) => &f[..i],
        _ => f,
    }
}

/// Whether a function is the Rust allocator's machinery between the
/// program and cma (`alloc::`, `core::`).
fn machinery(function: &str) -> bool {
    let name = function.trim_start_matches('<');
    name.starts_with("alloc::")
        || name.starts_with("core::")
        || (function.starts_with('<') && function.contains(" as alloc::"))
}

/// A site's stack as the text report shows it, one line per function
/// (inlined ones included), from the first that is not the Rust
/// allocator's machinery.
fn display_lines(frames: &[Frame]) -> Vec<String> {
    let skip_all = frames
        .iter()
        .all(|f| f.functions.iter().all(|(n, _)| machinery(n)));
    let mut out = Vec::new();
    let mut skipping = !skip_all;
    for f in frames {
        let mut functions = f.functions.as_slice();
        if skipping {
            let n = functions.iter().take_while(|(n, _)| machinery(n)).count();
            if n == functions.len() && n > 0 {
                continue;
            }
            functions = &functions[n..];
            skipping = false;
        }
        let frame = Frame {
            functions: functions.to_vec(),
            ..f.clone()
        };
        out.extend(frame.describe());
    }
    out
}

/// Blocks live at exit from one stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leak {
    pub bytes: u64,
    pub blocks: u64,
    /// The stack, as the text report shows each frame, innermost first.
    pub frames: Vec<String>,
}

/// C library and loader functions that hand the block they allocate to
/// their caller: a block they leave is the caller's leak.
const HANDS_TO_CALLER: [&str; 22] = [
    "strdup",
    "__strdup",
    "strndup",
    "__strndup",
    "wcsdup",
    "asprintf",
    "__asprintf",
    "vasprintf",
    "__vasprintf",
    "__vasprintf_internal",
    "getline",
    "getdelim",
    "__getdelim",
    "realpath",
    "__realpath",
    "get_current_dir_name",
    "getcwd",
    "__getcwd",
    "open_memstream",
    "scandir",
    "tempnam",
    "backtrace_symbols",
];

/// Whether a site's blocks are the C library's, the loader's or the Rust
/// runtime's own, not the program's (see the module docs).
fn not_the_programs(frames: &[Frame]) -> bool {
    let Some(first) = frames.first() else {
        // No stack (the unwinder itself allocating): not the program's
        // code.
        return true;
    };
    let libc_like =
        |m: &str| m.starts_with("libc.so") || m.starts_with("ld-linux") || m.starts_with("libc-");
    if libc_like(&first.module) {
        let f = first.function();
        let f = f.split('@').next().unwrap_or(f);
        if !HANDS_TO_CALLER.contains(&f) {
            return true;
        }
    }
    // The Rust runtime: `std::rt` start-up outside the program's `main`,
    // the standard streams' buffers, the current thread's handle.
    let names: Vec<&str> = frames
        .iter()
        .flat_map(|f| f.functions.iter().map(|(n, _)| n.trim_start_matches('<')))
        .collect();
    let in_main = names
        .iter()
        .any(|n| n.contains("__rust_begin_short_backtrace"));
    let rt = names.iter().any(|n| n.starts_with("std::rt::"));
    if rt && !in_main {
        return true;
    }
    // The first function (inlined ones included) past the allocator's own
    // machinery.
    let first = names
        .iter()
        .find(|n| !(n.starts_with("alloc::") || n.starts_with("core::")));
    first.is_some_and(|n| {
        n.starts_with("std::io::stdio::")
            || n.starts_with("std::thread::current")
            || n.starts_with("std::rt::")
            || n.starts_with("std::sys::")
    })
}

/// The `--leaks` section of the text report.
pub fn leaks_text(profile: &Profile, top: usize) -> String {
    let (leaks, apart) = profile.leaks();
    let about = if profile.sampled() { "about " } else { "" };
    let mut out = String::new();
    if leaks.is_empty() {
        let _ = writeln!(out, "  leaks              {:>16}", "none");
    } else {
        let (bytes, blocks): (u64, u64) = leaks
            .iter()
            .fold((0, 0), |a, l| (a.0 + l.bytes, a.1 + l.blocks));
        let _ = writeln!(
            out,
            "  leaks: {about}{} ({}) in {} blocks still live at exit, from {} allocation sites, largest first:",
            grouped(bytes),
            human_bytes(bytes),
            grouped(blocks),
            leaks.len()
        );
        for l in leaks.iter().take(top.max(1)) {
            let _ = writeln!(
                out,
                "    {about}{} bytes in {} blocks allocated at:",
                grouped(l.bytes),
                grouped(l.blocks)
            );
            for f in l.frames.iter().take(12) {
                let _ = writeln!(out, "      {f}");
            }
            if l.frames.is_empty() {
                let _ = writeln!(out, "      (no stack recorded)");
            }
        }
        if leaks.len() > top.max(1) {
            let _ = writeln!(
                out,
                "    ... {} more sites (--top N shows more)",
                leaks.len() - top.max(1)
            );
        }
    }
    if apart.0 > 0 {
        let _ = writeln!(
            out,
            "  not counted as leaks: {about}{} blocks ({} bytes) at {} sites, allocated while the process started or by the C library, the loader or the Rust runtime for themselves",
            grouped(apart.0),
            grouped(apart.1),
            apart.2
        );
    }
    if profile.totals[6] > 0 {
        let _ = writeln!(
            out,
            "  ({} blocks could not be recorded: the kernel refused memory for the registry)",
            grouped(profile.totals[6])
        );
    }
    if profile.sampled() {
        let _ = writeln!(
            out,
            "  (profile=sample: figures are estimates from about one block per {} allocated)",
            human_bytes(crate::profile::DEFAULT_RATE)
        );
    }
    out
}

/// The default sampling rate, for the note above.
pub const DEFAULT_RATE: u64 = 512 << 10;

/// The leaks as JSON (for `--json`).
pub fn leaks_json(profile: &Profile) -> Json {
    let (leaks, apart) = profile.leaks();
    Json::object(vec![
        ("estimated", Json::Bool(profile.sampled())),
        (
            "sites",
            Json::Array(
                leaks
                    .iter()
                    .map(|l| {
                        Json::object(vec![
                            ("bytes", l.bytes.into()),
                            ("blocks", l.blocks.into()),
                            (
                                "stack",
                                Json::Array(
                                    l.frames.iter().map(|f| Json::from(f.as_str())).collect(),
                                ),
                            ),
                        ])
                    })
                    .collect(),
            ),
        ),
        ("runtime_blocks", apart.0.into()),
        ("runtime_bytes", apart.1.into()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str =
        "cma-profile 1\npid 42\nengine libcma\ncommand ./p a\nmode all\nrate 524288\n\
site 100 2 30 100 2 50 1 50 1 1 0 7f0000001234 55d000001100\n\
time_end_us 900\npeak_at_us 800\ntotals 100 2 50 1 100 2 0\n\
map 55d000000000-55d000001000 r--p 00000000 08:01 1 /bin/p\n\
map 55d000001000-55d000002000 r-xp 00001000 08:01 1 /bin/p\nend\n";

    #[test]
    fn a_profile_parses_and_finds_modules() {
        let p = RawProfile::parse(SAMPLE).unwrap();
        assert_eq!(
            (p.pid, p.engine.as_str(), p.mode.as_str()),
            (42, "libcma", "all")
        );
        assert_eq!(p.sites.len(), 1);
        assert_eq!(p.sites[0].frames, vec![0x7f0000001234, 0x55d000001100]);
        assert_eq!((p.sites[0].eb, p.sites[0].ebk), (50, 1));
        assert_eq!(p.module_of(0x55d000001100), Some(("/bin/p", 0x1100)));
        assert_eq!(p.module_of(0x7f0000001234), None);
        assert_eq!(p.totals, [100, 2, 50, 1, 100, 2, 0]);
        assert!(
            RawProfile::parse(&SAMPLE[..SAMPLE.len() - 4]).is_none(),
            "cut short"
        );
    }

    #[test]
    fn libc_blocks_for_itself_are_apart_and_strdup_is_not() {
        let frame = |module: &str, f: &str| Frame {
            address: 1,
            module: module.to_string(),
            offset: 1,
            functions: vec![(f.to_string(), None)],
        };
        assert!(!not_the_programs(&[
            frame("libc.so.6", "__strdup+0x1a"),
            frame("p", "main")
        ]));
        assert!(not_the_programs(&[
            frame("libc.so.6", "_IO_file_doallocate"),
            frame("p", "main")
        ]));
        assert!(!not_the_programs(&[
            frame("libc.so.6", "__strdup"),
            frame("p", "main")
        ]));
        assert!(!not_the_programs(&[frame("p", "make"), frame("p", "main")]));
        assert!(not_the_programs(&[
            frame("p", "alloc::alloc::alloc"),
            frame("p", "std::thread::current::init_current"),
            frame("p", "std::rt::lang_start_internal"),
        ]));
        // The program's `main` inlined into the runtime's closure.
        let inlined = Frame {
            functions: vec![
                ("alloc::boxed::Box::new".to_string(), None),
                ("p::main".to_string(), None),
                ("core::ops::function::FnOnce::call_once".to_string(), None),
            ],
            ..frame("p", "")
        };
        assert!(!not_the_programs(&[
            frame("p", "alloc::alloc::alloc"),
            inlined,
            frame("p", "std::rt::lang_start::{{closure}}"),
            frame("p", "std::sys::backtrace::__rust_begin_short_backtrace"),
        ]));
        assert!(!not_the_programs(&[
            frame("p", "alloc::alloc::alloc"),
            frame("p", "p::leak"),
            frame("p", "std::sys::backtrace::__rust_begin_short_backtrace"),
            frame("p", "std::rt::lang_start_internal"),
        ]));
    }
}
