//! `Cma`, the `GlobalAlloc` face: `#[global_allocator] static A: cma::Cma = cma::Cma;`

use core::alloc::{GlobalAlloc, Layout};

use super::alloc::{alloc, alloc_zeroed};
use super::free::free_with;
use super::realloc::realloc_aligned;

/// The cma allocator as a Rust global allocator.
///
/// ```
/// #[global_allocator]
/// static ALLOC: cma::Cma = cma::Cma;
/// ```
pub struct Cma;

// SAFETY: blocks come from the engine, which returns null on failure, honours
// the layout's size and alignment, and never hands out a live block twice.
unsafe impl GlobalAlloc for Cma {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        alloc(layout.size(), layout.align())
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        alloc_zeroed(layout.size(), layout.align())
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        free_with(ptr, "dealloc")
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        realloc_aligned(ptr, new_size, layout.align(), "realloc")
    }
}
