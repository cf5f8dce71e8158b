//! `libcma.so` and `libcma.a`: the cma allocator for C and C++ programs.
//!
//! Three groups of exported symbols, all `extern "C"` and all documented in
//! `include/cma.h`:
//!
//! - [`malloc`] and the rest of the glibc malloc family, with glibc's
//!   contracts (errno, alignment, overflow, `realloc(p, 0)`), so that any
//!   program can run on cma through `LD_PRELOAD` or by linking `libcma.a`;
//! - [`cxx`]: the C++ `operator new` / `operator delete` family (mangled
//!   names);
//! - [`capi`]: the `cma_*` C API: the original system's functions with its
//!   signatures, and cma's own richer ones; [`backend`] routes its blocks
//!   to and from the original's backend hooks; [`arena`] is the
//!   `cma_arena_*` functions.
//!
//! [`startup`] is the library's constructor. The heap report that `cma run`
//! reads (`report=FILE` in `CMA_OPTIONS`) is written at exit by the engine
//! itself, which names itself `libcma` in it.
//!
//! # Rules this crate keeps
//!
//! - Rust code in this library allocates through the engine directly (the
//!   `#[global_allocator]` below): Rust's `System` allocator would call
//!   `malloc`, which is us.
//! - No exported function unwinds: they do nothing that can panic (no
//!   indexing without a bound check, no `unwrap`), and since Rust 1.81 a
//!   panic that reaches an `extern "C"` boundary aborts the process instead of
//!   unwinding into C. The workspace's release profile keeps `panic =
//!   "unwind"` for the other crates, so that is the guarantee relied on; and
//!   libcma's panic hook (installed by its constructor) prints one
//!   `cma: internal error: ...` line and aborts at once, without allocating
//!   (an engine assertion may fire while the allocator holds its lock).
//! - Nothing here calls `malloc`, `std::io` or `dlsym`: output goes through
//!   `write(2)` from stack buffers.

#![deny(unsafe_op_in_unsafe_fn)]
#![allow(clippy::missing_safety_doc)] // each function's contract is in its doc comment and in cma.h

pub mod arena;
pub mod backend;
pub mod capi;
pub mod cxx;
pub mod leaks;
pub mod malloc;
pub mod startup;
mod util;

pub use malloc::*;

/// Rust code inside libcma allocates from the engine itself, never through
/// `malloc` (which would be this library again, through the PLT).
#[global_allocator]
static ALLOC: engine::Cma = engine::Cma;
