//! cma: a checked memory allocator.
//!
//! Fast thread-local heaps with out-of-line metadata; every pointer that
//! comes back is validated (double free, interior pointer, foreign pointer)
//! before anything changes; heap statistics and allocation limits built in.
//!
//! Use it as the global allocator:
//!
//! ```
//! #[global_allocator]
//! static ALLOC: cma::Cma = cma::Cma;
//! ```
//!
//! or through the explicit API (`malloc`, `free`, `checked_free`, `stats`,
//! ...), and configure it in code with [`Options`]:
//!
//! ```
//! cma::Options::new()
//!     .limit_request(1 << 30)
//!     .apply()
//!     .expect("options cma can honour");
//! # cma::set_alloc_limits(cma::AllocLimits::default());
//! ```
//!
//! The engine's layers, bottom up, one folder each; a layer imports only
//! from the layers below it:
//!
//! | folder | what it owns |
//! | --- | --- |
//! | `os` | the only calls into the kernel and libc |
//! | `util` | the spin lock, formatting into stack buffers |
//! | `meta` | out-of-line metadata: span descriptors, segment tables, the segment map |
//! | `slab` | size classes, slot states, the remote-free protocol |
//! | `pages` | the page allocator: spans, huge blocks, purging |
//! | `guarded` | sampled blocks on guarded pages, their pool and stacks |
//! | `track` | what is known of single blocks: the live-allocation registry and its sites, profile sampling, untracked blocks |
//! | `check` | check levels, trailers, pointer lookup, errors, the one report path |
//! | `heap` | thread heaps: allocation and free fast paths, slabs, the heap pool, the guard |
//! | `observe` | statistics, allocation limits, the heap report written at exit, leaks |
//! | `options` | `CMA_OPTIONS`: the one parser, and applying it |
//! | `api` | the entry points, the explicit API, `Cma`, start-up and fork |
//! | `arena` | `Arena`: a heap of its own, released at once (its engine side is `heap::arena`) |
//! | `backend` | [`Backend`]: blocks from elsewhere, routed by owner ([`CmaWithBackends`], [`backend::malloc`] ...) |

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod api;
mod arena;
pub mod backend;
mod check;
mod guarded;
mod heap;
mod meta;
mod observe;
mod os;
mod pages;
mod slab;
mod track;
mod util;

pub mod options;

pub use api::global_alloc::{Cma, CmaFast};
pub use api::public::{
    aligned_alloc, apply_options, block_size, bzero_and_free, calloc, check_heap, check_level,
    checked_block_size, checked_free, free, malloc, realloc, trim, try_alloc, try_alloc_zeroed,
    try_realloc_checked, usable_size,
};
pub use arena::{Arena, ArenaStats};
pub use backend::{
    backend_is_enabled, clear_backend, set_backend, Backend, BackendError, BackendStats,
    CmaWithBackends,
};
pub use check::error::{Access, AccessProblem, BlockKind, CmaError, Requested};
pub use check::heap_check::HeapCheck;
pub use check::kind::AllocKind;
pub use check::level::CheckLevel;
pub use check::switches::CheckSwitch;
pub use guarded::sampling::DEFAULT_RATE as DEFAULT_SAMPLE_RATE;
pub use heap::guard::guard_depth;
pub use observe::alloc_log::{
    alloc_logging, set_alloc_log_callback, set_alloc_log_sample, set_alloc_logging, AllocEvent,
};
pub use observe::leaks::{
    leak_entries, leak_summary, leaks, report_leaks, track_leak, untrack_leak, LeakEntry,
    LeakSummary, Leaks, Site,
};
pub use observe::limits::{alloc_limits, set_alloc_limits, AllocLimits};
pub use observe::profile_api::{Profile, ProfileSite};
pub use observe::stats::{stats, ClassStats, Stats};
pub use options::{Options, OptionsError};
pub use pages::LARGE_MAX;
pub use slab::size_class::{class_block_sizes, MAX_SMALL, NUM_CLASSES};
pub use track::sampling::{ProfileMode, DEFAULT_PROFILE_RATE};

/// Support for cma's own front ends (libcma and the `cma` command), which
/// live in other crates of this workspace. Not part of the API: it may
/// change in any release.
#[doc(hidden)]
pub mod faces {
    /// The backend table and its routing, for libcma's C hooks (the Rust
    /// face's table is `backend::routed`'s).
    pub use crate::backend::table::{LiveBackendBlock, Routed, Table as BackendTable};
    pub use crate::observe::alloc_log::{
        alloc_logging, log_event, set_alloc_logging, AllocEvent, FaceLogs,
    };

    /// The calling thread's kernel id (cached).
    pub fn thread_id() -> u64 {
        crate::heap::guard::thread_id() as u64
    }
    pub use crate::observe::leaks::report_leaks_with;
    pub use crate::observe::report_file::{open_for_pid, set_engine, Engine, PATH_MAX};
    pub use crate::os::file::File;
    pub use crate::os::process::{command_line, errno, set_errno, write_fd};
    pub use crate::util::addr_table::AddrTable;
    pub use crate::util::fd_writer::FdWriter;

    /// Initialises the engine now, if no allocation did yet: it reads
    /// `CMA_OPTIONS` and warns about what it cannot honour.
    pub fn ensure_init() {
        crate::api::init::ensure_init();
    }

    /// C's `malloc`: null with `errno` set to `ENOMEM` on failure.
    #[inline(always)]
    pub fn c_malloc(size: usize) -> *mut u8 {
        crate::api::alloc::c_malloc(size)
    }

    /// C++'s `operator new` family: a block recorded as `kind` (checked at
    /// release at the `default` level). Null when memory runs out.
    #[inline]
    pub fn alloc_of_kind(size: usize, align: usize, kind: crate::AllocKind) -> *mut u8 {
        crate::api::alloc::alloc_of_kind(size, align, kind)
    }

    /// Frees a block of `kind`'s family (`operation` names the function in
    /// a diagnostic).
    ///
    /// # Safety
    /// As for `cma::free`.
    #[inline]
    pub unsafe fn free_of_kind(p: *mut u8, operation: &'static str, kind: crate::AllocKind) {
        crate::api::free::free_with(p, operation, kind)
    }

    /// A sized or aligned release of a block of `kind`'s family: checked
    /// against the block at the `default` level (`size` `None` and `align`
    /// 1 for none).
    ///
    /// # Safety
    /// As for `cma::free`.
    #[inline]
    pub unsafe fn free_sized(
        p: *mut u8,
        size: Option<usize>,
        align: usize,
        operation: &'static str,
        kind: crate::AllocKind,
    ) {
        crate::api::free::free_sized(p, size, align, operation, kind)
    }

    /// C's `calloc` of `size` bytes (the product of its arguments, already
    /// checked for overflow): null with `errno` set to `ENOMEM` on failure.
    #[inline(always)]
    pub fn c_calloc(size: usize) -> *mut u8 {
        crate::api::alloc::c_calloc(size)
    }

    /// [`crate::Arena::realloc`], naming `operation` (a C function) in a
    /// misuse report.
    ///
    /// # Safety
    /// As for `Arena::realloc`.
    pub unsafe fn arena_realloc(
        arena: &crate::Arena,
        p: *mut u8,
        size: usize,
        align: usize,
        operation: &'static str,
    ) -> Result<core::ptr::NonNull<u8>, crate::CmaError> {
        // SAFETY: the caller's contract.
        unsafe { arena.realloc_as(p, size, align, operation) }
    }

    /// Reports a misuse found by a face (one line on stderr) and aborts.
    pub fn report_misuse(operation: &'static str, error: crate::CmaError) -> ! {
        crate::check::report::fatal(operation, error)
    }

    /// Starts the purge thread now, and never later from inside an
    /// allocator call: for a face where cma replaces the C allocator, from
    /// its library constructor (see `pages::purge_thread`).
    pub fn start_purge_thread() {
        crate::api::init::start_purge_thread();
    }

    /// Installs the fault handler that reports misuse of sampled blocks,
    /// when sampling is on: for a face where cma replaces the C allocator,
    /// from its library constructor (see `check::fault`).
    pub fn install_fault_handler() {
        crate::api::init::ensure_init();
        crate::check::fault::install_if_sampling();
    }
}
