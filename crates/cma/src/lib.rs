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
//! ...).
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
//! | `check` | check levels, trailers, pointer lookup, errors, the one report path |
//! | `heap` | thread heaps: allocation and free fast paths, slabs, the heap pool, the guard |
//! | `observe` | statistics, allocation limits, the heap report written at exit |
//! | `options` | `CMA_OPTIONS`: the one parser, and applying it |
//! | `api` | the entry points, the explicit API, `Cma`, start-up and fork |

#![deny(unsafe_op_in_unsafe_fn)]

mod api;
mod check;
mod guarded;
mod heap;
mod meta;
mod observe;
mod os;
mod pages;
mod slab;
mod util;

pub mod options;

pub use api::global_alloc::Cma;
pub use api::public::{
    aligned_alloc, apply_options, block_size, bzero_and_free, calloc, check_level,
    checked_block_size, checked_free, free, malloc, realloc, trim, try_alloc, try_alloc_zeroed,
    try_realloc_checked, usable_size,
};
pub use check::error::{Access, AccessProblem, BlockKind, CmaError};
pub use check::level::CheckLevel;
pub use guarded::sampling::DEFAULT_RATE as DEFAULT_SAMPLE_RATE;
pub use heap::guard::guard_depth;
pub use observe::limits::{alloc_limits, set_alloc_limits, AllocLimits};
pub use observe::stats::{stats, ClassStats, Stats};
pub use pages::LARGE_MAX;
pub use slab::size_class::{class_block_sizes, MAX_SMALL, NUM_CLASSES};

/// Support for cma's own front ends (libcma and the `cma` command), which
/// live in other crates of this workspace. Not part of the API: it may
/// change in any release.
#[doc(hidden)]
pub mod faces {
    pub use crate::observe::report_file::{open_for_pid, set_engine, Engine, PATH_MAX};
    pub use crate::os::file::File;
    pub use crate::os::process::{command_line, errno, set_errno, write_fd};
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

    /// C's `calloc` of `size` bytes (the product of its arguments, already
    /// checked for overflow): null with `errno` set to `ENOMEM` on failure.
    #[inline(always)]
    pub fn c_calloc(size: usize) -> *mut u8 {
        crate::api::alloc::c_calloc(size)
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
