//! `CmaWithBackends`, the `GlobalAlloc` face that routes through the
//! backend table: `#[global_allocator] static A: cma::CmaWithBackends =
//! cma::CmaWithBackends;`

use core::alloc::{GlobalAlloc, Layout};

use super::routed::BACKENDS;
use super::table::Routed;
use crate::api::alloc::{alloc, alloc_zeroed};
use crate::api::free::free_with;
use crate::api::realloc::realloc_aligned;
use crate::check::kind::AllocKind;

/// cma as a Rust global allocator that serves new blocks from the current
/// [backend](crate::Backend) while one is set ([`set_backend`](crate::set_backend))
/// and gives every block back to whoever handed it out.
///
/// ```
/// #[global_allocator]
/// static ALLOC: cma::CmaWithBackends = cma::CmaWithBackends;
/// ```
///
/// Until a backend is set it is `cma::Cma` plus one load and branch per
/// call; afterwards each free asks the backends that hold blocks whether
/// the block is theirs (the current one first). A backend must not
/// allocate through this allocator (it would be asked again): see
/// [`Backend`](crate::Backend)'s contract.
pub struct CmaWithBackends;

// SAFETY: blocks come from the engine, as `Cma`'s, or from a backend,
// whose `unsafe impl` promises the same (size, alignment, no overlap); a
// block goes back to whoever handed it out.
unsafe impl GlobalAlloc for CmaWithBackends {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match BACKENDS.allocate(layout.size(), layout.align()) {
            Routed::Cma => alloc(layout.size(), layout.align()),
            Routed::Backend(p) => p,
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match BACKENDS.allocate(layout.size(), layout.align()) {
            Routed::Cma => alloc_zeroed(layout.size(), layout.align()),
            Routed::Backend(p) => {
                if !p.is_null() {
                    // SAFETY: a fresh backend block of at least
                    // `layout.size()` bytes.
                    unsafe { core::ptr::write_bytes(p, 0, layout.size()) };
                }
                p
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: the caller gives up `ptr`.
        if let Routed::Cma = unsafe { BACKENDS.free(ptr, false) } {
            free_with(ptr, "dealloc", AllocKind::Malloc)
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract: `ptr` is a live block it gives up
        // on success.
        match unsafe { BACKENDS.reallocate(ptr, new_size, layout.align()) } {
            Routed::Cma => realloc_aligned(ptr, new_size, layout.align(), "realloc"),
            Routed::Backend(q) => q,
        }
    }
}
