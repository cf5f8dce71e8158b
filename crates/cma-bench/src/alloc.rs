//! The allocators under test, and the process-wide `Dispatch` global
//! allocator that routes every Rust allocation of a child process to the
//! allocator that child measures.
//!
//! `#[global_allocator]` is fixed at compile time, so the binary installs
//! `Dispatch`, whose target is chosen once, from `argv`, by a constructor in
//! `.init_array` that runs before `main` and before any Rust allocation. The
//! parent process (and any run that is not `--child`) uses the system
//! allocator. Every allocator pays the same dispatch: one load and one
//! predictable branch.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicU8, Ordering};
use std::alloc::System;

/// The check levels of cma that the suite runs. Each becomes an allocator
/// named `cma-LEVEL`, run with `CMA_OPTIONS=check=LEVEL`. `strict` is left
/// out: it is a debugging level (a stack and the registry's one lock at
/// every allocation and free), not a contender, and would make every suite
/// run far longer; `cma-strict` still runs when named.
pub const CMA_LEVELS: &[&str] = &["fast", "default"];

/// The allocator every ratio is taken against.
pub const BASELINE: &str = "mimalloc";

/// Which allocator a process (or a workload run) uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Which {
    System = 0,
    Cma = 1,
    Mimalloc = 2,
    #[cfg(feature = "jemalloc")]
    Jemalloc = 3,
    #[cfg(feature = "rusty_alloc")]
    RustyAlloc = 4,
    #[cfg(feature = "snmalloc")]
    Snmalloc = 5,
}

/// One allocator as the suite names it: `cma-fast`, `system`, `mimalloc`...
#[derive(Clone, Debug)]
pub struct Spec {
    pub name: String,
    pub which: Which,
    /// For cma: the check level, passed as `CMA_OPTIONS=check=LEVEL`.
    pub cma_level: Option<String>,
}

/// Allocators that the suite would run but this build does not have, with why.
pub fn skipped() -> Vec<(&'static str, &'static str)> {
    #[allow(unused_mut)]
    let mut v = Vec::new();
    #[cfg(not(feature = "jemalloc"))]
    v.push(("jemalloc", "built without the `jemalloc` feature"));
    #[cfg(not(feature = "rusty_alloc"))]
    v.push(("rusty_alloc", "built without the `rusty_alloc` feature"));
    #[cfg(not(feature = "snmalloc"))]
    v.push(("snmalloc", "built without the `snmalloc` feature"));
    v
}

/// Every allocator this build can run, in table order.
pub fn all_specs() -> Vec<Spec> {
    let mut v: Vec<Spec> = CMA_LEVELS
        .iter()
        .map(|l| Spec {
            name: format!("cma-{l}"),
            which: Which::Cma,
            cma_level: Some((*l).to_string()),
        })
        .collect();
    v.push(spec("mimalloc", Which::Mimalloc));
    v.push(spec("system", Which::System));
    #[cfg(feature = "jemalloc")]
    v.push(spec("jemalloc", Which::Jemalloc));
    #[cfg(feature = "rusty_alloc")]
    v.push(spec("rusty_alloc", Which::RustyAlloc));
    #[cfg(feature = "snmalloc")]
    v.push(spec("snmalloc", Which::Snmalloc));
    v
}

fn spec(name: &str, which: Which) -> Spec {
    Spec {
        name: name.to_string(),
        which,
        cma_level: None,
    }
}

/// Parses an allocator name. `cma` alone means every level in `CMA_LEVELS`;
/// `cma-LEVEL` accepts any level, so a level the engine gains can be run
/// before it is added to the list.
pub fn parse_specs(name: &str) -> Result<Vec<Spec>, String> {
    if name == "cma" {
        return Ok(all_specs()
            .into_iter()
            .filter(|s| s.which == Which::Cma)
            .collect());
    }
    if let Some(level) = name.strip_prefix("cma-") {
        if level.is_empty()
            || !level
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(format!("bad cma level in '{name}'"));
        }
        return Ok(vec![Spec {
            name: name.to_string(),
            which: Which::Cma,
            cma_level: Some(level.to_string()),
        }]);
    }
    if let Some(s) = all_specs().into_iter().find(|s| s.name == name) {
        return Ok(vec![s]);
    }
    if let Some((_, why)) = skipped().into_iter().find(|(n, _)| *n == name) {
        return Err(format!("allocator '{name}' is not available: {why}"));
    }
    Err(format!("unknown allocator '{name}'"))
}

/// A one-line description with the version, for the report.
pub fn describe(which: Which) -> String {
    match which {
        Which::System => "glibc malloc (std::alloc::System)".to_string(),
        Which::Cma => "cma (this workspace), check level from CMA_OPTIONS".to_string(),
        Which::Mimalloc => {
            extern "C" {
                fn mi_version() -> core::ffi::c_int;
            }
            // SAFETY: mi_version takes no arguments and only returns a constant.
            let v = unsafe { mi_version() };
            format!(
                "mimalloc {}.{}.{} (crate mimalloc 0.1, default features: the v3 series)",
                v / 10000,
                (v / 100) % 100,
                v % 100
            )
        }
        #[cfg(feature = "jemalloc")]
        Which::Jemalloc => {
            "jemalloc 5.3 (crate tikv-jemallocator 0.7, default features)".to_string()
        }
        #[cfg(feature = "rusty_alloc")]
        Which::RustyAlloc => format!(
            "rusty_alloc {} (crate rusty_alloc-api, pure Rust, modelled on mimalloc)",
            rusty_alloc_api::VERSION
        ),
        #[cfg(feature = "snmalloc")]
        Which::Snmalloc => {
            "snmalloc (crate snmalloc-rs 0.7, built with the cc crate, no cmake)".to_string()
        }
    }
}

const UNSELECTED: u8 = 0xff;
static SELECTED: AtomicU8 = AtomicU8::new(UNSELECTED);

/// The allocator `Dispatch` routes to in this process.
pub fn selected() -> Which {
    decode(SELECTED.load(Ordering::Relaxed))
}

#[inline(always)]
fn decode(v: u8) -> Which {
    match v {
        1 => Which::Cma,
        2 => Which::Mimalloc,
        #[cfg(feature = "jemalloc")]
        3 => Which::Jemalloc,
        #[cfg(feature = "rusty_alloc")]
        4 => Which::RustyAlloc,
        #[cfg(feature = "snmalloc")]
        5 => Which::Snmalloc,
        _ => Which::System,
    }
}

/// The process's global allocator: forwards to the selected allocator.
pub struct Dispatch;

macro_rules! dispatch {
    ($method:ident ( $($arg:expr),* )) => {
        match SELECTED.load(Ordering::Relaxed) {
            1 => cma::Cma.$method($($arg),*),
            2 => mimalloc::MiMalloc.$method($($arg),*),
            #[cfg(feature = "jemalloc")]
            3 => tikv_jemallocator::Jemalloc.$method($($arg),*),
            #[cfg(feature = "rusty_alloc")]
            4 => rusty_alloc_api::RustyAlloc.$method($($arg),*),
            #[cfg(feature = "snmalloc")]
            5 => snmalloc_rs::SnMalloc.$method($($arg),*),
            _ => System.$method($($arg),*),
        }
    };
}

// SAFETY: every call goes to one allocator, fixed before the first allocation
// of the process and never changed, so each block is freed and reallocated by
// the allocator that made it; each target upholds the GlobalAlloc contract.
unsafe impl GlobalAlloc for Dispatch {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { dispatch!(alloc(layout)) }
    }
    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { dispatch!(alloc_zeroed(layout)) }
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { dispatch!(dealloc(ptr, layout)) }
    }
    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { dispatch!(realloc(ptr, layout, new_size)) }
    }
}

/// Maps an allocator name (as given after `--child WORKLOAD`) to its code.
fn code_of(name: &[u8]) -> u8 {
    if name.starts_with(b"cma-") || name == b"cma" {
        return Which::Cma as u8;
    }
    match name {
        b"mimalloc" => Which::Mimalloc as u8,
        #[cfg(feature = "jemalloc")]
        b"jemalloc" => Which::Jemalloc as u8,
        #[cfg(feature = "rusty_alloc")]
        b"rusty_alloc" => Which::RustyAlloc as u8,
        #[cfg(feature = "snmalloc")]
        b"snmalloc" => Which::Snmalloc as u8,
        _ => Which::System as u8,
    }
}

/// Runs from `.init_array`, before `main` and before any Rust allocation:
/// `cma-bench --child WORKLOAD ALLOCATOR ...` selects ALLOCATOR.
extern "C" fn select_from_argv(
    argc: core::ffi::c_int,
    argv: *const *const core::ffi::c_char,
    _env: *const *const core::ffi::c_char,
) {
    let mut code = Which::System as u8;
    if argc >= 4 && !argv.is_null() {
        // SAFETY: glibc passes the process's argc/argv to .init_array
        // functions; argv holds argc valid NUL-terminated strings.
        unsafe {
            let flag = core::ffi::CStr::from_ptr(*argv.add(1)).to_bytes();
            if flag == b"--child" {
                code = code_of(core::ffi::CStr::from_ptr(*argv.add(3)).to_bytes());
            }
        }
    }
    SELECTED.store(code, Ordering::Relaxed);
}

#[used]
#[link_section = ".init_array"]
static SELECT_FROM_ARGV: extern "C" fn(
    core::ffi::c_int,
    *const *const core::ffi::c_char,
    *const *const core::ffi::c_char,
) = select_from_argv;
