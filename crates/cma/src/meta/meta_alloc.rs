//! The metadata allocator: span descriptors, slab bitmaps, segment tables and
//! heaps live here, in mappings of their own, never beside user data, so a
//! heap overflow or a use-after-free write cannot reach them.
//!
//! Blocks are multiples of 64 bytes up to 4 KiB, then powers of two up to
//! 64 KiB, carved from 4 MiB chunks; freed blocks go onto per-size free
//! lists. Only used under the page allocator's lock.

use core::ptr::null_mut;

use crate::os::{memory, PAGE_SIZE};

const LINEAR_STEP: usize = 64;
const LINEAR_MAX: usize = 4096;
const MAX_BLOCK: usize = 64 * 1024;
const BINS: usize = LINEAR_MAX / LINEAR_STEP + 4;
const CHUNK: usize = 4 << 20;

pub(crate) struct MetaAlloc {
    free: [*mut FreeMeta; BINS],
    bump: usize,
    bump_end: usize,
    /// Bytes of metadata mapped so far (for the statistics).
    pub(crate) mapped: usize,
}

struct FreeMeta {
    next: *mut FreeMeta,
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
            bump: 0,
            bump_end: 0,
            mapped: 0,
        }
    }

    /// Returns a zeroed block of at least `bytes`, aligned to 64 bytes, or
    /// null when the kernel refuses memory.
    pub(crate) fn alloc(&mut self, bytes: usize) -> *mut u8 {
        let (bin, size) = bin_of(bytes);
        let head = self.free[bin];
        if !head.is_null() {
            // SAFETY: blocks on a free list are ours, unused and `size` long.
            unsafe {
                self.free[bin] = (*head).next;
                core::ptr::write_bytes(head.cast::<u8>(), 0, size);
            }
            return head.cast();
        }
        let start = (self.bump + LINEAR_STEP - 1) & !(LINEAR_STEP - 1);
        if start == 0 || start + size > self.bump_end {
            let chunk = memory::map_aligned(CHUNK, PAGE_SIZE);
            if chunk.is_null() {
                return null_mut();
            }
            self.mapped += CHUNK;
            self.bump = chunk as usize;
            self.bump_end = chunk as usize + CHUNK;
            return self.alloc(bytes);
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
        let (bin, _) = bin_of(bytes);
        let node = p.cast::<FreeMeta>();
        // SAFETY: the caller gives the block up; it is large enough for a link.
        unsafe { (*node).next = self.free[bin] };
        self.free[bin] = node;
    }
}
