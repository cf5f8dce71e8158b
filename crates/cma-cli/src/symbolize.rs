//! The stacks in cma's misuse reports, turned into functions and source
//! lines after the program stopped (the program only wrote raw addresses).
//!
//! libcma writes, after a misuse of a sampled block, indented lines:
//!
//! ```text
//!     allocated by thread 42 (prog):
//!       #0 0x00007f0c2e6a23f2 /usr/lib/libcma.so+0x223f2
//!       #3 0x000055d0c00011a2 /home/me/prog+0x11a2
//! ```
//!
//! where each offset counts from the module's load address (the start of
//! its mapping at file offset 0). Each module is opened once with the
//! `addr2line` crate (DWARF where the file has it, else its symbol table);
//! frames inside cma itself (libcma.so, or the `cma` crate's functions in a
//! Rust program) that lead the stack are counted, not shown.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

/// One frame line: `#N 0xADDR[ MODULE+0xOFFSET]`.
#[derive(Debug, PartialEq)]
struct RawFrame<'a> {
    address: u64,
    module: Option<(&'a str, u64)>,
}

fn parse_frame(line: &str) -> Option<RawFrame<'_>> {
    let rest = line.trim_start().strip_prefix('#')?;
    let (_, rest) = rest.split_once(' ')?;
    let (address, module) = match rest.split_once(' ') {
        Some((a, m)) => (a, Some(m)),
        None => (rest, None),
    };
    let address = u64::from_str_radix(address.strip_prefix("0x")?, 16).ok()?;
    let module = module.and_then(|m| {
        let (path, offset) = m.rsplit_once("+0x")?;
        Some((path, u64::from_str_radix(offset, 16).ok()?))
    });
    Some(RawFrame { address, module })
}

/// What a module's frames resolve with.
struct Module {
    loader: addr2line::Loader,
    /// The virtual address its offset 0 is loaded at (0 for a shared
    /// object or a position-independent executable).
    first_vaddr: u64,
}

/// Opens modules as frames need them, once each.
#[derive(Default)]
pub struct Symbolizer {
    modules: HashMap<String, Option<Module>>,
}

impl Symbolizer {
    fn module(&mut self, path: &str) -> Option<&Module> {
        self.modules
            .entry(path.to_string())
            .or_insert_with(|| {
                let loader = addr2line::Loader::new(path).ok()?;
                Some(Module {
                    loader,
                    first_vaddr: first_load_vaddr(path).unwrap_or(0),
                })
            })
            .as_ref()
    }

    /// `(function, location)` pairs for the code at `offset` in `path`,
    /// innermost (inlined) first; empty when nothing is known.
    fn resolve(&mut self, path: &str, offset: u64) -> Vec<(String, Option<String>)> {
        let Some(m) = self.module(path) else {
            return Vec::new();
        };
        let probe = m.first_vaddr + offset;
        let mut out = Vec::new();
        if let Ok(mut frames) = m.loader.find_frames(probe) {
            while let Ok(Some(f)) = frames.next() {
                let Some(function) = f
                    .function
                    .as_ref()
                    .and_then(|n| n.demangle().ok().map(|s| s.into_owned()))
                else {
                    continue;
                };
                let location = f.location.as_ref().and_then(|l| {
                    let file = l.file?;
                    Some(match l.line {
                        Some(line) => format!("{file}:{line}"),
                        None => file.to_string(),
                    })
                });
                out.push((function, location));
            }
        }
        if out.is_empty() {
            if let Some(symbol) = m.loader.find_symbol_info(probe) {
                let name = addr2line::demangle_auto(symbol.name().into(), None).into_owned();
                out.push((format!("{name}+{:#x}", probe - symbol.address()), None));
            }
        }
        out
    }

    /// `(function, location)` pairs for the return address at `offset` in
    /// the module at `path` (the call before it is looked up), innermost
    /// inlined first; empty when nothing is known.
    pub fn return_address(&mut self, path: &str, offset: u64) -> Vec<(String, Option<String>)> {
        self.resolve(path, offset.saturating_sub(1))
    }

    /// The report's lines for the indented lines that followed a misuse
    /// line: labels kept, frames symbolised, cma's own leading frames
    /// counted instead of shown.
    pub fn describe(&mut self, raw: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        let mut leading = true;
        let mut hidden = 0;
        let mut access = false;
        let mut first = true;
        for line in raw {
            let Some(frame) = parse_frame(line) else {
                let label = line.trim();
                access = label.starts_with("access by");
                leading = true;
                hidden = 0;
                first = true;
                out.push(label.to_string());
                continue;
            };
            let Some((path, offset)) = frame.module else {
                out.push(format!("  {:#x}", frame.address));
                leading = false;
                continue;
            };
            // A return address points after its call: look the call up.
            // The access stack's first frame is the faulting instruction.
            let probe = if access && first {
                offset
            } else {
                offset.saturating_sub(1)
            };
            first = false;
            let resolved = self.resolve(path, probe);
            let name = path.rsplit('/').next().unwrap_or(path);
            if leading && cma_frame(path, &resolved) {
                hidden += 1;
                continue;
            }
            if leading && hidden > 0 {
                out.push(format!("  ({hidden} frames inside cma)"));
            }
            leading = false;
            if resolved.is_empty() {
                out.push(format!("  {name}+{offset:#x}"));
                continue;
            }
            for (i, (function, location)) in resolved.iter().enumerate() {
                let at = location
                    .as_deref()
                    .map_or(String::new(), |l| format!(" at {l}"));
                if i == 0 {
                    out.push(format!("  {function}{at} ({name}+{offset:#x})"));
                } else {
                    out.push(format!("    inlined in {function}{at}"));
                }
            }
        }
        out
    }
}

/// The engine crate's modules: a function under one of them is cma's own
/// (a program's crate may be called `cma` too: this command's is).
const ENGINE_MODULES: [&str; 12] = [
    "api", "check", "guarded", "heap", "meta", "observe", "options", "os", "pages", "slab",
    "track", "util",
];

/// Whether a frame in the module at `path`, naming these functions, is
/// cma's own: in libcma.so, or the cma crate's code in a Rust program.
pub fn cma_frame(path: &str, functions: &[(String, Option<String>)]) -> bool {
    in_libcma(path) || functions.iter().any(|(f, _)| in_cma(f))
}

/// Whether the module at `path` is libcma.
pub fn in_libcma(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .unwrap_or(path)
        .starts_with("libcma.so")
}

/// Whether a function is the cma crate's own (in a Rust program that uses
/// it as its allocator).
pub fn in_cma(function: &str) -> bool {
    let path = function.trim_start_matches('<');
    let in_engine = path.strip_prefix("cma::").is_some_and(|rest| {
        ENGINE_MODULES
            .iter()
            .any(|m| rest.starts_with(m) && rest[m.len()..].starts_with("::"))
            || rest.starts_with("Cma")
            || rest.starts_with("faces::")
    });
    in_engine
        || function.contains("__rust_alloc")
        || function.contains("__rust_dealloc")
        || function.contains("__rust_realloc")
}

/// The virtual address that an ELF file's offset 0 is loaded at: the
/// address of its loadable segment at file offset 0 (0 for shared objects
/// and position-independent executables; 0x400000 or so for others).
fn first_load_vaddr(path: &str) -> Option<u64> {
    let mut head = [0u8; 64];
    let mut file = File::open(path).ok()?;
    file.read_exact(&mut head).ok()?;
    // ELF, 64-bit, little-endian.
    if head[..4] != *b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return None;
    }
    let u16_at = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]) as usize;
    let u64_at = |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
    let (phoff, phentsize, phnum) = (
        u64_at(&head, 0x20),
        u16_at(&head, 0x36),
        u16_at(&head, 0x38),
    );
    if phentsize < 56 || phnum > 4096 {
        return None;
    }
    let mut table = vec![0u8; phentsize * phnum];
    file.seek(SeekFrom::Start(phoff)).ok()?;
    file.read_exact(&mut table).ok()?;
    table.chunks(phentsize).find_map(|ph| {
        let p_type = u32::from_le_bytes([ph[0], ph[1], ph[2], ph[3]]);
        (p_type == 1 && u64_at(ph, 8) == 0).then(|| u64_at(ph, 16))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lines_parse() {
        assert_eq!(
            parse_frame("      #3 0x000055d0c00011a2 /home/me/my prog+0x11a2"),
            Some(RawFrame {
                address: 0x55d0c00011a2,
                module: Some(("/home/me/my prog", 0x11a2)),
            })
        );
        assert_eq!(
            parse_frame("      #0 0x00007f00"),
            Some(RawFrame {
                address: 0x7f00,
                module: None
            })
        );
        assert_eq!(parse_frame("    allocated by thread 1 (x):"), None);
    }

    #[test]
    fn this_test_binary_symbolises_its_own_function() {
        // The test binary's own path and one of its functions: the offset
        // from its first mapping, found in /proc/self/maps.
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let exe = exe.to_str().unwrap().to_string();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let base = maps
            .lines()
            .find(|l| l.ends_with(&exe) && l.split_whitespace().nth(2) == Some("00000000"))
            .and_then(|l| u64::from_str_radix(l.split('-').next()?, 16).ok())
            .expect("the executable's first mapping");
        let here = this_test_binary_symbolises_its_own_function as *const () as usize as u64;
        let raw = vec![
            "    allocated by thread 1 (t):".to_string(),
            format!("      #0 {here:#018x} {exe}+{:#x}", here - base + 1),
        ];
        let lines = Symbolizer::default().describe(&raw);
        assert_eq!(lines[0], "allocated by thread 1 (t):");
        // The function, or code inlined into it.
        assert!(
            lines[1..]
                .iter()
                .any(|l| l.contains("this_test_binary_symbolises_its_own_function at ")),
            "{lines:?}"
        );
    }
}
