//! `Profile`: the live-allocation registry's sites and counters, taken by
//! the program itself (a Rust service dumping its heap on a signal or a
//! request), written as DHAT's JSON (the file `cma run --profile` writes)
//! or in the engine's raw format (what the exit destructor writes for `cma
//! run`).
//!
//! This is the program's code, not the allocator's: it allocates freely
//! (through whatever the program's allocator is), but only after the
//! registry's lock is let go; under the lock it copies into memory
//! reserved before.

use std::fmt::Write as _;
use std::io::{self, Write};

use crate::observe::report_file::engine;
use crate::os::process;
use crate::track::registry::{self, FRAMES};
use crate::track::sampling;

/// One allocation site's figures, as DHAT names them. At `profile=sample`
/// they are estimates (rounded); at `profile=all`, exact. Bytes are sizes
/// asked for; times are microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProfileSite {
    /// Bytes and blocks allocated at the site in all (`tb`, `tbk`).
    pub total_bytes: u64,
    /// See `total_bytes`.
    pub total_blocks: u64,
    /// The lifetimes of its blocks, the live ones up to now (`tl`).
    pub total_lifetime_us: u64,
    /// The most bytes and blocks of the site live at once (`mb`, `mbk`).
    pub max_bytes: u64,
    /// See `max_bytes`.
    pub max_blocks: u64,
    /// Bytes and blocks live when the whole heap peaked (`gb`, `gbk`).
    pub peak_bytes: u64,
    /// See `peak_bytes`.
    pub peak_blocks: u64,
    /// Bytes and blocks live now (`eb`, `ebk`).
    pub live_bytes: u64,
    /// See `live_bytes`.
    pub live_blocks: u64,
    /// Blocks freed so far.
    pub freed_blocks: u64,
    /// Allocated while the process started up.
    pub startup: bool,
    frames: [usize; FRAMES],
    len: u8,
}

impl ProfileSite {
    /// The allocation stack, as return addresses, innermost first (cma's
    /// own frames included).
    pub fn frames(&self) -> &[usize] {
        &self.frames[..self.len as usize]
    }
}

/// A snapshot of the live-allocation registry (`profile=sample` or
/// `profile=all` in `CMA_OPTIONS`, or [`Options::profile`](crate::Options::profile)).
///
/// ```
/// # #[global_allocator] static A: cma::Cma = cma::Cma;
/// let profile = cma::Profile::take();
/// let mut json = Vec::new();
/// profile.write_dhat(&mut json).unwrap();
/// assert!(json.starts_with(b"{\"dhatFileVersion\":2"));
/// ```
#[derive(Clone, Debug)]
pub struct Profile {
    /// The mode it was taken in.
    pub mode: sampling::ProfileMode,
    /// Microseconds since the registry started, and when the heap peaked.
    pub time_us: u64,
    /// See `time_us`.
    pub peak_at_us: u64,
    sites: Vec<ProfileSite>,
    /// `/proc/self/maps` when it was taken (for the frames' modules).
    maps: String,
}

impl Profile {
    /// Takes the registry's sites and counters now. Empty when profiling is
    /// off. Threads that allocate meanwhile wait for the copy (the lock is
    /// held for one pass over the sites).
    pub fn take() -> Profile {
        let mut sites: Vec<ProfileSite> = Vec::new();
        let (mut time, mut peak_at) = (0u64, 0u64);
        let mut us_per_tick = 0.0;
        if sampling::on() {
            loop {
                // Room first: nothing may allocate under the lock.
                sites.clear();
                sites.reserve(registry::site_count() as usize + 64);
                let room = sites.capacity();
                let mut overflow = false;
                let round = |v: f64| if v > 0.0 { (v + 0.5) as u64 } else { 0 };
                us_per_tick = registry::ns_per_tick() / 1000.0;
                let (totals, end) = registry::for_each_site(|_, f, r| {
                    if sites.len() == room {
                        overflow = true;
                        return;
                    }
                    let c = &r.counts;
                    let mut frames = [0usize; FRAMES];
                    frames[..f.frames().len()].copy_from_slice(f.frames());
                    sites.push(ProfileSite {
                        total_bytes: round(c.total_bytes),
                        total_blocks: round(c.total_blocks),
                        total_lifetime_us: round(r.total_lifetime * us_per_tick),
                        max_bytes: round(c.max_bytes),
                        max_blocks: round(c.max_blocks),
                        peak_bytes: round(r.peak_bytes),
                        peak_blocks: round(r.peak_blocks),
                        live_bytes: round(c.live_bytes),
                        live_blocks: round(c.live_blocks),
                        freed_blocks: round(c.freed_blocks),
                        startup: f.startup(),
                        frames,
                        len: f.frames().len() as u8,
                    });
                });
                (time, peak_at) = (end, totals.peak_at);
                if !overflow {
                    break;
                }
            }
        }
        sites.retain(|s| s.total_blocks > 0);
        Profile {
            mode: sampling::mode(),
            time_us: (time as f64 * us_per_tick) as u64,
            peak_at_us: (peak_at as f64 * us_per_tick) as u64,
            sites,
            maps: std::fs::read_to_string("/proc/self/maps").unwrap_or_default(),
        }
    }

    /// The sites, in the order they were first seen.
    pub fn sites(&self) -> &[ProfileSite] {
        &self.sites
    }

    /// Writes the profile in the engine's raw format (the file the exit
    /// destructor writes with `profile_file=`, which `cma run` reads).
    pub fn write_raw(&self, mut w: impl Write) -> io::Result<()> {
        let mut out = String::new();
        let _ = write!(
            out,
            "cma-profile 1\npid {}\nengine {}\ncommand {}\nmode {}\nrate {}\n",
            process::pid(),
            engine().name(),
            command(),
            self.mode.name(),
            sampling::rate()
        );
        for s in &self.sites {
            let _ = write!(
                out,
                "site {} {} {} {} {} {} {} {} {} {} {}",
                s.total_bytes,
                s.total_blocks,
                s.total_lifetime_us,
                s.max_bytes,
                s.max_blocks,
                s.peak_bytes,
                s.peak_blocks,
                s.live_bytes,
                s.live_blocks,
                s.freed_blocks,
                s.startup as u8
            );
            for f in s.frames() {
                let _ = write!(out, " {f:x}");
            }
            out.push('\n');
        }
        let (bytes, blocks) = self
            .sites
            .iter()
            .fold((0, 0), |a, s| (a.0 + s.live_bytes, a.1 + s.live_blocks));
        let _ = write!(
            out,
            "time_end_us {}\npeak_at_us {}\ntotals {} {} {bytes} {blocks} {} {} 0\n",
            self.time_us,
            self.peak_at_us,
            self.sites.iter().map(|s| s.total_bytes).sum::<u64>(),
            self.sites.iter().map(|s| s.total_blocks).sum::<u64>(),
            self.sites.iter().map(|s| s.peak_bytes).sum::<u64>(),
            self.sites.iter().map(|s| s.peak_blocks).sum::<u64>(),
        );
        for line in self.maps.lines().filter(|l| l.contains(" /")) {
            let _ = writeln!(out, "map {line}");
        }
        out.push_str("end\n");
        w.write_all(out.as_bytes())
    }

    /// Writes the profile as DHAT's JSON (`dhatFileVersion` 2), which
    /// valgrind's `dh_view.html` and the Firefox Profiler open: one program
    /// point per site, cma's own frames left out. With the crate's
    /// `symbolize` feature each frame names its function and `file:line`
    /// (from the modules' debug information, read now); without it, its
    /// module and offset (`0x...: prog+0x1234 (in /path/prog)`).
    pub fn write_dhat(&self, mut w: impl Write) -> io::Result<()> {
        let maps = Maps::parse(&self.maps);
        let mut symbols = symbols::Symbols::default();
        let mut ftbl: Vec<String> = vec!["[root]".to_string()];
        let mut index = std::collections::HashMap::<String, usize>::new();
        let mut out = String::new();
        let _ = write!(
            out,
            "{{\"dhatFileVersion\":2,\"mode\":\"heap\",\"verb\":\"Allocated\",\"bklt\":true,\
             \"bkacc\":false,\"tu\":\"µs\",\"Mtu\":\"s\",\"tuth\":10,\"cmd\":\"{}\",\"pid\":{},\
             \"te\":{},\"tg\":{},\"pps\":[",
            escape(&command()),
            process::pid(),
            self.time_us,
            self.peak_at_us.min(self.time_us)
        );
        for (n, s) in self.sites.iter().enumerate() {
            let mut fs = Vec::new();
            let mut leading = true;
            for &addr in s.frames() {
                let module = maps.module_of(addr);
                let entries = symbols.entries(addr, module);
                let own = if leading {
                    entries.iter().take_while(|e| e.cma).count()
                } else {
                    0
                };
                if own == entries.len() && own > 0 {
                    continue;
                }
                leading = false;
                for e in &entries[own..] {
                    let i = *index.entry(e.text.clone()).or_insert_with(|| {
                        ftbl.push(e.text.clone());
                        ftbl.len() - 1
                    });
                    fs.push(i);
                }
            }
            let _ = write!(
                out,
                "{}{{\"tb\":{},\"tbk\":{},\"tl\":{},\"mb\":{},\"mbk\":{},\"gb\":{},\"gbk\":{},\
                 \"eb\":{},\"ebk\":{},\"fs\":[",
                if n == 0 { "" } else { "," },
                s.total_bytes,
                s.total_blocks,
                s.total_lifetime_us,
                s.max_bytes,
                s.max_blocks,
                s.peak_bytes,
                s.peak_blocks,
                s.live_bytes,
                s.live_blocks
            );
            for (k, i) in fs.iter().enumerate() {
                let _ = write!(out, "{}{i}", if k == 0 { "" } else { "," });
            }
            out.push_str("]}");
        }
        out.push_str("],\"ftbl\":[");
        for (k, f) in ftbl.iter().enumerate() {
            let _ = write!(out, "{}\"{}\"", if k == 0 { "" } else { "," }, escape(f));
        }
        out.push_str("]}\n");
        w.write_all(out.as_bytes())
    }
}

fn command() -> String {
    let mut buf = [0u8; 512];
    String::from_utf8_lossy(process::command_line(&mut buf)).replace('\n', " ")
}

/// A JSON string's inside.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// The file mappings of `/proc/self/maps`: which module holds an address,
/// and its offset from the module's load address.
struct Maps {
    maps: Vec<(u64, u64, u64, String)>,
}

/// A module and an offset in it.
pub(crate) struct Module<'a> {
    pub(crate) path: &'a str,
    pub(crate) offset: u64,
}

impl Maps {
    fn parse(text: &str) -> Maps {
        let mut maps = Vec::new();
        for line in text.lines() {
            let f: Vec<&str> = line.splitn(6, ' ').collect();
            let (Some(range), Some(offset), Some(path)) = (f.first(), f.get(2), f.get(5)) else {
                continue;
            };
            let path = path.trim_start();
            let Some((a, b)) = range.split_once('-') else {
                continue;
            };
            if let (Ok(a), Ok(b), Ok(o)) = (
                u64::from_str_radix(a, 16),
                u64::from_str_radix(b, 16),
                u64::from_str_radix(offset, 16),
            ) {
                if path.starts_with('/') {
                    maps.push((a, b, o, path.to_string()));
                }
            }
        }
        Maps { maps }
    }

    fn module_of(&self, addr: usize) -> Option<Module<'_>> {
        let addr = addr as u64;
        let m = self.maps.iter().find(|m| (m.0..m.1).contains(&addr))?;
        let base = self
            .maps
            .iter()
            .filter(|b| b.3 == m.3 && b.2 == 0)
            .map(|b| b.0)
            .min()
            .unwrap_or(m.0.wrapping_sub(m.2));
        Some(Module {
            path: &m.3,
            offset: addr - base,
        })
    }
}

/// One frame-table entry: its text, and whether it is cma's own code.
pub(crate) struct Entry {
    pub(crate) text: String,
    pub(crate) cma: bool,
}

/// The module's own name (`libc.so.6`) of a path.
fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Whether a function is the cma crate's own (its engine's modules, its
/// global allocator, the allocation shims Rust calls through).
#[cfg(feature = "symbolize")]
pub(crate) fn in_cma(function: &str) -> bool {
    const MODULES: [&str; 12] = [
        "api", "check", "guarded", "heap", "meta", "observe", "options", "os", "pages", "slab",
        "track", "util",
    ];
    let path = function.trim_start_matches('<');
    path.strip_prefix("cma::").is_some_and(|rest| {
        MODULES
            .iter()
            .any(|m| rest.starts_with(m) && rest[m.len()..].starts_with("::"))
            || rest.starts_with("Cma")
    }) || function.contains("__rust_alloc")
        || function.contains("__rust_dealloc")
        || function.contains("__rust_realloc")
}

#[cfg(feature = "symbolize")]
mod symbols {
    //! Frames named from the modules' debug information (DWARF, else the
    //! symbol table), with the `addr2line` crate.

    use std::collections::HashMap;

    use super::{file_name, in_cma, Entry, Module};

    #[derive(Default)]
    pub(super) struct Symbols {
        loaders: HashMap<String, Option<(addr2line::Loader, u64)>>,
    }

    impl Symbols {
        /// The frame-table entries for the return address `addr`
        /// (inlined functions first).
        pub(super) fn entries(&mut self, addr: usize, module: Option<Module>) -> Vec<Entry> {
            let Some(m) = module else {
                return vec![Entry {
                    text: format!("{addr:#x}: ???"),
                    cma: false,
                }];
            };
            let name = file_name(m.path).to_string();
            let loader = self.loaders.entry(m.path.to_string()).or_insert_with(|| {
                let l = addr2line::Loader::new(m.path).ok()?;
                Some((l, first_vaddr(m.path).unwrap_or(0)))
            });
            let mut out = Vec::new();
            if let Some((l, vaddr)) = loader {
                let probe = *vaddr + m.offset.saturating_sub(1);
                if let Ok(mut frames) = l.find_frames(probe) {
                    while let Ok(Some(f)) = frames.next() {
                        let Some(function) = f
                            .function
                            .as_ref()
                            .and_then(|n| n.demangle().ok().map(|s| s.into_owned()))
                        else {
                            continue;
                        };
                        let at = f
                            .location
                            .as_ref()
                            .and_then(|l| Some(format!("{}:{}", l.file?, l.line?)));
                        let cma = in_cma(&function) || name.starts_with("libcma.so");
                        out.push(Entry {
                            text: match at {
                                Some(at) => format!("{addr:#x}: {function} ({at})"),
                                None => format!("{addr:#x}: {function} (in {name})"),
                            },
                            cma,
                        });
                    }
                }
                if out.is_empty() {
                    if let Some(s) = l.find_symbol(probe) {
                        let f = addr2line::demangle_auto(s.into(), None).into_owned();
                        out.push(Entry {
                            cma: in_cma(&f) || name.starts_with("libcma.so"),
                            text: format!("{addr:#x}: {f} (in {name})"),
                        });
                    }
                }
            }
            if out.is_empty() {
                out.push(Entry {
                    text: format!("{addr:#x}: {name}+{:#x} (in {})", m.offset, m.path),
                    cma: name.starts_with("libcma.so"),
                });
            }
            out
        }
    }

    /// The virtual address an ELF file's offset 0 is loaded at (0 for
    /// shared objects and position-independent executables).
    fn first_vaddr(path: &str) -> Option<u64> {
        use std::io::{Read, Seek, SeekFrom};
        let mut head = [0u8; 64];
        let mut file = std::fs::File::open(path).ok()?;
        file.read_exact(&mut head).ok()?;
        if head[..4] != *b"\x7fELF" || head[4] != 2 || head[5] != 1 {
            return None;
        }
        let u16_at = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]) as usize;
        let u64_at =
            |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        let (phoff, size, num) = (
            u64_at(&head, 0x20),
            u16_at(&head, 0x36),
            u16_at(&head, 0x38),
        );
        if size < 56 || num > 4096 {
            return None;
        }
        let mut table = vec![0u8; size * num];
        file.seek(SeekFrom::Start(phoff)).ok()?;
        file.read_exact(&mut table).ok()?;
        table.chunks(size).find_map(|ph| {
            let kind = u32::from_le_bytes([ph[0], ph[1], ph[2], ph[3]]);
            (kind == 1 && u64_at(ph, 8) == 0).then(|| u64_at(ph, 16))
        })
    }
}

#[cfg(not(feature = "symbolize"))]
mod symbols {
    //! Without the `symbolize` feature: frames as module and offset.

    use super::{file_name, Entry, Module};

    /// Nothing to keep without the `symbolize` feature (a struct with a
    /// field, so that both builds make it the same way).
    #[derive(Default)]
    pub(super) struct Symbols {
        _none: (),
    }

    impl Symbols {
        pub(super) fn entries(&mut self, addr: usize, module: Option<Module>) -> Vec<Entry> {
            vec![match module {
                Some(m) => {
                    let name = file_name(m.path);
                    Entry {
                        text: format!("{addr:#x}: {name}+{:#x} (in {})", m.offset, m.path),
                        cma: name.starts_with("libcma.so"),
                    }
                }
                None => Entry {
                    text: format!("{addr:#x}: ???"),
                    cma: false,
                },
            }]
        }
    }
}
