//! The page allocator: segments carved into page-granular spans, huge
//! blocks with mappings of their own, and the policy that gives idle pages
//! back to the kernel.
//!
//! - `spans`: first fit by page count, split on allocation, merge with free
//!   neighbours on free (the original system's split and merge, at page
//!   granularity);
//! - `segments`: mapping and unmapping 4 MiB segments, huge-page hints;
//! - `huge`: huge blocks, and the cache of freed huge mappings;
//! - `huge_resize`: growing and shrinking a huge block without copying it
//!   (in place, into address space reserved after it, or by moving its pages
//!   with `mremap`);
//! - `large_resize`: growing and shrinking a large block in place;
//! - `purge`: decommitting what has been idle for `purge_delay_ms`;
//! - `purge_slabs`: decommitting the free pages inside slabs nobody
//!   allocates from;
//! - `purge_thread`: the thread that purges a program gone quiet;
//! - `walk`: every live block span, for the heap check.
//!
//! Everything in `Pages` runs under its one lock, `PAGES`, which also
//! guards the metadata allocator: every descriptor is made and freed here.
//! (`huge_resize` takes the lock itself, to move pages outside it.)

use crate::meta::meta_alloc::MetaAlloc;
use crate::meta::span::{Segment, Span, PAGES_PER_SEGMENT};
use crate::os::PAGE_SIZE;
use crate::util::spin_lock::SpinLock;

mod huge;
mod huge_resize;
mod large_resize;
pub(crate) mod purge;
mod purge_slabs;
pub(crate) mod purge_thread;
mod segments;
mod spans;
mod walk;

pub(crate) use huge::GUARDED_LARGE_MAX;
pub(crate) use huge_resize::resize_huge;

/// Blocks above this size get a mapping of their own; below, they are spans
/// of a segment, which reuse freed pages without a system call. At a checked
/// level the size counts the block's 8-byte trailer.
pub const LARGE_MAX: usize = 2 << 20;

/// The most pages one span of a segment can have.
pub(crate) const MAX_SPAN_PAGES: usize = PAGES_PER_SEGMENT;

/// floor(log2(pages)) for 1..=1024 pages.
const BINS: usize = 11;

/// The page allocator's state. All of it is guarded by `PAGES`.
pub(crate) struct Pages {
    /// Free spans, binned by floor(log2(pages)).
    pub(super) bins: [*mut Span; BINS],
    /// Every segment, newest first (for the slab purge pass).
    pub(super) segments: *mut Segment,
    /// Live huge blocks, linked through their `prev` and `next` (for the
    /// heap check).
    pub(super) huge_live: *mut Span,
    /// Freed huge mappings, newest first (see `huge`).
    pub(super) huge_cache: *mut Span,
    pub(super) huge_cached: usize,
    pub(super) huge_cached_bytes: usize,
    /// Live guarded large blocks (see `huge`).
    pub(crate) guarded_live: usize,
    pub(super) last_purge_ms: u64,
    /// The first segment, while it has not asked for huge pages yet (0
    /// otherwise); see `hint_segment`.
    pub(super) unhinted_segment: usize,
    /// How long free pages stay committed before they are decommitted.
    pub(crate) purge_delay_ms: u64,
    /// Whether segments ask for transparent huge pages (`huge_pages=1`); by
    /// default they refuse them, so that purged pages stay purged (see
    /// `os::memory::forbid_huge_pages`).
    pub(crate) huge_pages: bool,
    /// Bytes mapped for segments and huge blocks (for the statistics).
    pub(crate) mapped: usize,
    /// Bytes in free spans that are still committed (dirty).
    pub(crate) dirty_bytes: usize,
    /// Descriptors, segment tables and heaps.
    pub(crate) meta: MetaAlloc,
}

// SAFETY: the raw pointers in `Pages` point into the metadata region and are
// only followed under `PAGES`.
unsafe impl Send for Pages {}

/// The page allocator's lock; see the module docs.
pub(crate) static PAGES: SpinLock<Pages> = SpinLock::new(Pages::new());

impl Pages {
    const fn new() -> Self {
        Pages {
            bins: [core::ptr::null_mut(); BINS],
            segments: core::ptr::null_mut(),
            huge_live: core::ptr::null_mut(),
            huge_cache: core::ptr::null_mut(),
            huge_cached: 0,
            huge_cached_bytes: 0,
            guarded_live: 0,
            last_purge_ms: 0,
            unhinted_segment: 0,
            purge_delay_ms: 250,
            huge_pages: false,
            mapped: 0,
            dirty_bytes: 0,
            meta: MetaAlloc::new(),
        }
    }
}

/// Pages needed for `bytes`.
pub(crate) fn pages_for(bytes: usize) -> usize {
    bytes.div_ceil(PAGE_SIZE)
}
