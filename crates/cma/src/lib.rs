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
//! ...). Layers, bottom up: `os` (system calls), `segment_map` and
//! `page_alloc` (segments and spans), `meta_alloc` and `span` (out-of-line
//! metadata), `heap` (thread heaps, fast paths), `remote_free` (cross-thread
//! frees), `checks` and `report` (misuse), `stats`, `limits`, `options`,
//! then the faces `api` and `global_alloc`.

#![deny(unsafe_op_in_unsafe_fn)]

mod api;
mod canary;
mod checks;
mod error;
mod global;
mod global_alloc;
mod guard;
mod heap;
mod limits;
mod meta_alloc;
mod options;
mod os;
mod page_alloc;
mod purge;
pub mod remote_free;
mod report;
mod segment_map;
mod size_class;
mod span;
mod stats;
mod sync;

pub use api::{
    aligned_alloc, block_size, bzero_and_free, calloc, checked_block_size, checked_free, free,
    malloc, realloc, trim, try_alloc, try_alloc_zeroed, try_realloc_checked, usable_size,
};
pub use canary::{check_level, CheckLevel};
pub use error::{BlockKind, CmaError};
pub use global_alloc::Cma;
pub use guard::guard_depth;
pub use heap::LARGE_MAX;
pub use limits::{alloc_limits, set_alloc_limits, AllocLimits};
pub use options::{apply as apply_options, parse_size};
pub use purge::start_purge_thread;
pub use size_class::{class_block_sizes, SizeClass, MAX_SMALL, NUM_CLASSES};
pub use stats::{stats, ClassStats, Stats};
