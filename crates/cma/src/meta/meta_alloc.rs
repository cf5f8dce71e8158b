//! The metadata allocator: span descriptors, slab bitmaps, segment tables and
//! heaps live here, in mappings of their own, never beside user data, so a
//! heap overflow or a use-after-free write cannot reach them.
//!
//! Blocks are multiples of 64 bytes up to 4 KiB, then powers of two up to
//! 64 KiB, carved from 4 MiB chunks; freed blocks go onto per-size free
//! lists. Only used under the page allocator's lock.
//!
//! Blocks of two pages or more (a segment's page table is 16 KiB) start on
//! a page and are decommitted when freed, so that a heap that shrank does
//! not keep the metadata of the segments it gave back resident: they are
//! remembered in a table of their own (no link is written into them), up
//! to `PARKED` per size, and come back zero-filled by the kernel.
//!
//! Smaller blocks (span descriptors) share pages and carry a free-list
//! link, so they cannot be decommitted one by one; once the program has
//! stopped freeing them, `meta_trim` takes the pages that only free blocks
//! cover off the free lists and gives them back.

use core::ptr::null_mut;

use super::meta_trim::TrimmedPages;
use crate::os::{memory, PAGE_SIZE};

pub(super) const LINEAR_STEP: usize = 64;
const LINEAR_MAX: usize = 4096;
const MAX_BLOCK: usize = 64 * 1024;
const BINS: usize = LINEAR_MAX / LINEAR_STEP + 4;
pub(super) const CHUNK: usize = 4 << 20;
/// The smallest block decommitted when freed.
const PAGED_MIN: usize = 2 * PAGE_SIZE;
/// Its bin: the power-of-two bins from `PAGED_MIN` to `MAX_BLOCK`; the bins
/// below it are the small ones, `(bin + 1) * LINEAR_STEP` bytes each.
pub(super) const FIRST_PAGED_BIN: usize =
    LINEAR_MAX / LINEAR_STEP + (PAGED_MIN.trailing_zeros() - 13) as usize;
const PAGED_BINS: usize = BINS - FIRST_PAGED_BIN;
/// Decommitted blocks remembered per size; more go onto the free list,
/// resident (a link is written into them).
const PARKED: usize = 256;

pub(crate) struct MetaAlloc {
    pub(super) free: [*mut FreeMeta; BINS],
    /// Freed blocks of the paged bins, decommitted (module docs).
    parked: [[*mut u8; PARKED]; PAGED_BINS],
    parked_len: [usize; PAGED_BINS],
    bump: usize,
    bump_end: usize,
    /// Bytes of metadata mapped so far (for the statistics).
    pub(crate) mapped: usize,
    /// Bytes of the small blocks on the free lists, and what the trim pass
    /// saw last (`meta_trim`).
    pub(super) small_free_bytes: usize,
    pub(super) small_free_seen: usize,
    /// The chunks the trim pass may give pages of back, and those pages.
    pub(super) trim: TrimmedPages,
}

pub(super) struct FreeMeta {
    pub(super) next: *mut FreeMeta,
}

/// The free-list bin and the real size of a block of `bytes`.
fn bin_of(bytes: usize) -> (usize, usize) {
    assert!(bytes <= MAX_BLOCK, "metadata block too large");
    if bytes <= LINEAR_MAX {
        let size = bytes.max(1).div_ceil(LINEAR_STEP) * LINEAR_STEP;
        (size / LINEAR_STEP - 1, size)
    } else {
        let size = bytes.next_power_of_two();
        let bin = LINEAR_MAX / LINEAR_STEP + (size.trailing_zeros() - 13) as usize;
        (bin, size)
    }
}

impl MetaAlloc {
    pub(crate) const fn new() -> Self {
        MetaAlloc {
            free: [null_mut(); BINS],
            parked: [[null_mut(); PARKED]; PAGED_BINS],
            parked_len: [0; PAGED_BINS],
            bump: 0,
            bump_end: 0,
            mapped: 0,
            small_free_bytes: 0,
            small_free_seen: 0,
            trim: TrimmedPages::new(),
        }
    }

    /// Returns a zeroed block of at least `bytes`, aligned to 64 bytes, or
    /// null when the kernel refuses memory.
    pub(crate) fn alloc(&mut self, bytes: usize) -> *mut u8 {
        let (bin, size) = bin_of(bytes);
        if let Some(paged) = bin.checked_sub(FIRST_PAGED_BIN) {
            if self.parked_len[paged] > 0 {
                self.parked_len[paged] -= 1;
                // Decommitted when parked: the kernel fills it with zeros
                // as it is touched.
                return self.parked[paged][self.parked_len[paged]];
            }
        }
        let head = self.free[bin];
        if !head.is_null() {
            // SAFETY: blocks on a free list are ours, unused and `size` long.
            unsafe {
                self.free[bin] = (*head).next;
                core::ptr::write_bytes(head.cast::<u8>(), 0, size);
            }
            if bin < FIRST_PAGED_BIN {
                self.small_free_bytes -= size;
            }
            return head.cast();
        }
        if bin < FIRST_PAGED_BIN {
            let p = self.carve_trimmed_page(bin);
            if !p.is_null() {
                return p;
            }
        }
        let align = if size >= PAGED_MIN {
            PAGE_SIZE
        } else {
            LINEAR_STEP
        };
        let start = (self.bump + align - 1) & !(align - 1);
        if start == 0 || start + size > self.bump_end {
            let chunk = memory::map_aligned(CHUNK, PAGE_SIZE);
            if chunk.is_null() {
                return null_mut();
            }
            // Decommitted blocks must stay out until touched again (see
            // `os::memory::forbid_huge_pages`).
            memory::forbid_huge_pages(chunk, CHUNK);
            self.mapped += CHUNK;
            self.trim.add_chunk(chunk as usize);
            self.bump = chunk as usize;
            self.bump_end = chunk as usize + CHUNK;
            return self.alloc(bytes);
        }
        if start > self.bump {
            // The bytes skipped to reach a page, a multiple of
            // `LINEAR_STEP` below a page: a small free block, so that the
            // trim pass can see that page covered.
            // SAFETY: unused chunk memory of ours.
            unsafe { self.push_free(self.bump as *mut u8, (start - self.bump) / LINEAR_STEP - 1) };
        }
        self.bump = start + size;
        // Fresh chunk memory is zero already.
        start as *mut u8
    }

    /// Returns a block from `alloc(bytes)`.
    ///
    /// # Safety
    /// `p` came from `alloc` with the same `bytes` and is no longer used.
    pub(crate) unsafe fn free(&mut self, p: *mut u8, bytes: usize) {
        let (bin, size) = bin_of(bytes);
        if let Some(paged) = bin.checked_sub(FIRST_PAGED_BIN) {
            let n = self.parked_len[paged];
            if n < PARKED {
                debug_assert!(p as usize % PAGE_SIZE == 0);
                // Whole pages of a block of ours (paged blocks start on a
                // page), which the caller gave up.
                memory::decommit(p, size);
                self.parked[paged][n] = p;
                self.parked_len[paged] = n + 1;
                return;
            }
        }
        // SAFETY: the caller gives the block up.
        unsafe { self.push_free(p, bin) };
    }

    /// Puts block `p` of `bin` onto its free list.
    ///
    /// # Safety
    /// `p` is an unused block of ours of `bin`'s size.
    pub(super) unsafe fn push_free(&mut self, p: *mut u8, bin: usize) {
        let node = p.cast::<FreeMeta>();
        // SAFETY: an unused block of ours, large enough for a link.
        unsafe { (*node).next = self.free[bin] };
        self.free[bin] = node;
        if bin < FIRST_PAGED_BIN {
            self.small_free_bytes += (bin + 1) * LINEAR_STEP;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages of `[p, p+bytes)` resident now.
    fn resident_pages(p: *mut u8, bytes: usize) -> usize {
        let mut vec = [0u8; 64];
        let pages = bytes / PAGE_SIZE;
        assert!(pages <= vec.len());
        // SAFETY: a page-aligned range of our own mapping; `vec` has a byte
        // per page.
        let r = unsafe { libc::mincore(p.cast(), bytes, vec.as_mut_ptr()) };
        assert_eq!(r, 0);
        vec[..pages].iter().filter(|&&b| b & 1 != 0).count()
    }

    #[test]
    fn freed_paged_blocks_leave_memory_and_come_back_zeroed() {
        let mut meta = MetaAlloc::new();
        let bytes = 16 << 10;
        let p = meta.alloc(bytes);
        assert!(!p.is_null());
        assert_eq!(p as usize % PAGE_SIZE, 0);
        // SAFETY: a block of `bytes` bytes of ours.
        unsafe { p.write_bytes(0xA5, bytes) };
        assert_eq!(resident_pages(p, bytes), bytes / PAGE_SIZE);
        // SAFETY: allocated above with the same size, not used again.
        unsafe { meta.free(p, bytes) };
        assert_eq!(resident_pages(p, bytes), 0);
        let q = meta.alloc(bytes);
        assert_eq!(q, p, "the parked block is reused");
        // SAFETY: a block of `bytes` bytes of ours.
        let back = unsafe { core::slice::from_raw_parts(q, bytes) };
        assert!(back.iter().all(|&b| b == 0));
        // A small block is on the resident free list, zeroed on reuse.
        let s = meta.alloc(256);
        // SAFETY: 256 bytes of ours.
        unsafe { s.write_bytes(0x5A, 256) };
        // SAFETY: allocated above, not used again.
        unsafe { meta.free(s, 256) };
        let t = meta.alloc(256);
        assert_eq!(t, s);
        // SAFETY: 256 bytes of ours.
        assert!(unsafe { core::slice::from_raw_parts(t, 256) }
            .iter()
            .all(|&b| b == 0));
    }
}
