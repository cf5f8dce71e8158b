//! The faces of the engine: the allocation, free and realloc entry points
//! (`alloc`, `free`, `realloc`), the explicit API built on them (`public`),
//! `Cma` the global allocator (`global_alloc`), and process-wide start-up
//! and fork handling (`init`).
//!
//! Every entry point enters through an `AllocatorGuard`.

pub(crate) mod alloc;
pub(crate) mod free;
pub(crate) mod global_alloc;
pub(crate) mod init;
pub(crate) mod public;
pub(crate) mod realloc;

/// The alignment C's malloc promises for a block of `size` bytes.
#[inline(always)]
pub(crate) fn c_align(size: usize) -> usize {
    if size >= 16 {
        16
    } else {
        8
    }
}

/// The slot size that serves `size` bytes at `align` (at most 16).
#[inline(always)]
fn small_slot(size: usize, align: usize) -> usize {
    if align > 8 {
        // A zero-byte request too: class 0 holds 8-byte slots, 8 apart.
        ((size + 15) & !15).max(16)
    } else {
        size
    }
}
