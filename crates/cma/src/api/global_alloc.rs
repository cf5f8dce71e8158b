//! `Cma` and `CmaFast`, the `GlobalAlloc` faces:
//! `#[global_allocator] static A: cma::Cma = cma::Cma;`

use core::alloc::{GlobalAlloc, Layout};

use crate::check::kind::AllocKind;

use super::alloc::{alloc, alloc_or, alloc_other, alloc_zeroed};
use super::free::free_with;
use super::init::{initialised, prefer_fast_level};
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
        free_with(ptr, "dealloc", AllocKind::Malloc)
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        realloc_aligned(ptr, new_size, layout.align(), "realloc")
    }
}

/// The cma allocator as a Rust global allocator at the `fast` check level,
/// unless `CMA_OPTIONS` names a level (so a service built with it can still
/// be run at `default` to find a bug). For services that want speed first:
/// the standard library allocates before `main`, so a level cannot be set
/// from `main`.
///
/// ```
/// #[global_allocator]
/// static ALLOC: cma::CmaFast = cma::CmaFast;
/// ```
pub struct CmaFast;

/// `CmaFast`'s way past the fast path: the first allocation of the process
/// comes here (before initialisation the fast path serves nothing), and
/// asks for the `fast` level before cma initialises.
extern "C" fn alloc_other_preferring_fast(size: usize, align: usize) -> *mut u8 {
    if !initialised() {
        prefer_fast_level();
    }
    alloc_other(size, align)
}

// SAFETY: the same engine as `Cma`; only the level chosen at initialisation
// may differ.
unsafe impl GlobalAlloc for CmaFast {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        alloc_or(layout.size(), layout.align(), alloc_other_preferring_fast)
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !initialised() {
            prefer_fast_level();
        }
        alloc_zeroed(layout.size(), layout.align())
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        free_with(ptr, "dealloc", AllocKind::Malloc)
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !initialised() {
            prefer_fast_level();
        }
        realloc_aligned(ptr, new_size, layout.align(), "realloc")
    }
}
