//! Out-of-line metadata: everything cma knows about a block lives here, in
//! mappings of its own, never beside user data, so an overflow or a
//! use-after-free write cannot reach it.
//!
//! - `meta_alloc`: the allocator of metadata blocks;
//! - `meta_trim`: giving back the pages of its small free blocks;
//! - `span`: the descriptor of one run of pages (a slab, a large or huge
//!   block, or free pages), with a slab's slot bitmaps, and a segment's
//!   page table, page to span;
//! - `segment_map`: address to segment, for any address.

pub(crate) mod meta_alloc;
mod meta_trim;
pub(crate) mod segment_map;
pub(crate) mod span;
