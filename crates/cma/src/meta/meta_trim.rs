//! Giving back the pages of the metadata allocator's small free blocks.
//!
//! Span descriptors are small metadata blocks that share pages and carry a
//! free-list link, so a heap that grew to hundreds of megabytes and then
//! shrank keeps megabytes of freed descriptors resident (a few hundred
//! bytes for every slab it once had). Once the small free lists have stayed
//! unchanged between two looks (`trim_when_quiet`, from the page purge),
//! one pass per chunk adds up the free blocks that lie wholly inside each
//! page; pages covered entirely by them leave the free lists and are
//! decommitted, and a bitmap remembers them. A small bin whose free list is
//! empty takes such a page before it bumps into fresh chunk memory
//! (`carve_trimmed_page`): the kernel hands it back zero-filled.
//!
//! A freed descriptor may still be read by a thread holding a stale
//! pointer (a segment's page table, a free of a foreign pointer); a
//! decommitted page reads as zeros, which no live descriptor looks like
//! (`Span::contains` is false and a slab's capacity is 0), just as a freed
//! one already does not.

use core::ptr::null_mut;

use super::meta_alloc::{FreeMeta, MetaAlloc, CHUNK, FIRST_PAGED_BIN, LINEAR_STEP};
use crate::os::{memory, PAGE_SIZE};

const CHUNK_PAGES: usize = CHUNK / PAGE_SIZE;
const CHUNK_WORDS: usize = CHUNK_PAGES / 64;
/// Chunks whose pages can be given back (256 MiB of metadata, the metadata
/// of a heap of several GiB); pages of later chunks stay resident.
const TRIMMED_CHUNKS: usize = 64;
/// Free small blocks below this many bytes are not worth a pass.
const TRIM_MIN_BYTES: usize = 64 * 1024;

/// The chunks of the metadata allocator and their decommitted free pages.
pub(crate) struct TrimmedPages {
    chunks: [usize; TRIMMED_CHUNKS],
    chunk_count: usize,
    decommitted: [[u64; CHUNK_WORDS]; TRIMMED_CHUNKS],
    pages: usize,
    /// `MetaAlloc::small_free_bytes` after the last pass: a pass runs only
    /// when the free lists changed since.
    free_bytes_after_pass: usize,
}

impl TrimmedPages {
    pub(super) const fn new() -> Self {
        TrimmedPages {
            chunks: [0; TRIMMED_CHUNKS],
            chunk_count: 0,
            decommitted: [[0; CHUNK_WORDS]; TRIMMED_CHUNKS],
            pages: 0,
            free_bytes_after_pass: 0,
        }
    }

    /// A new chunk at `base`.
    pub(super) fn add_chunk(&mut self, base: usize) {
        if self.chunk_count < TRIMMED_CHUNKS {
            self.chunks[self.chunk_count] = base;
            self.chunk_count += 1;
        }
    }

    /// Takes a decommitted page, if there is one.
    fn take_page(&mut self) -> Option<usize> {
        if self.pages == 0 {
            return None;
        }
        for c in 0..self.chunk_count {
            for w in 0..CHUNK_WORDS {
                let bits = self.decommitted[c][w];
                if bits != 0 {
                    self.decommitted[c][w] = bits & (bits - 1);
                    self.pages -= 1;
                    let page = w * 64 + bits.trailing_zeros() as usize;
                    return Some(self.chunks[c] + page * PAGE_SIZE);
                }
            }
        }
        None
    }
}

/// A piece of a free block that stays while the page beside it goes.
#[repr(C)]
struct FreePart {
    next: *mut FreeMeta,
    bytes: usize,
}

/// The pages of the chunk at `base` that the block `[at, at + size)`
/// covers, with the bytes it covers on each, or `None` for a block of
/// another chunk. A small block covers one page or two.
fn pieces_in_chunk(at: usize, size: usize, base: usize) -> Option<[Option<(usize, usize)>; 2]> {
    if at < base || at >= base + CHUNK {
        return None;
    }
    let page = (at - base) / PAGE_SIZE;
    let page_end = base + (page + 1) * PAGE_SIZE;
    Some(if at + size <= page_end {
        [Some((page, size)), None]
    } else {
        [
            Some((page, page_end - at)),
            Some((page + 1, at + size - page_end)),
        ]
    })
}

/// The size of the blocks of small bin `bin`.
fn small_size(bin: usize) -> usize {
    (bin + 1) * LINEAR_STEP
}

impl MetaAlloc {
    /// Whether the small free lists changed since the last look and hold
    /// enough for a pass: the purge thread should look again soon.
    pub(crate) fn trim_pending(&self) -> bool {
        self.small_free_bytes >= TRIM_MIN_BYTES
            && self.small_free_bytes != self.trim.free_bytes_after_pass
    }

    /// Gives back the pages that only free small blocks cover, when the
    /// free lists are unchanged since the last look (at once when `force`)
    /// and changed since the last pass. Returns the bytes decommitted.
    pub(crate) fn trim_when_quiet(&mut self, force: bool) -> usize {
        let quiet = self.small_free_bytes == self.small_free_seen;
        self.small_free_seen = self.small_free_bytes;
        if !(quiet || force) || !self.trim_pending() {
            return 0;
        }
        let mut bytes = 0;
        for c in 0..self.trim.chunk_count {
            bytes += self.trim_chunk(c);
        }
        self.trim.free_bytes_after_pass = self.small_free_bytes;
        self.small_free_seen = self.small_free_bytes;
        bytes
    }

    /// One chunk's pass (module docs); returns the bytes decommitted.
    fn trim_chunk(&mut self, chunk: usize) -> usize {
        let base = self.trim.chunks[chunk];
        let mut free_bytes = [0u32; CHUNK_PAGES];
        for bin in 0..FIRST_PAGED_BIN {
            let size = small_size(bin);
            let mut node = self.free[bin];
            while !node.is_null() {
                if let Some(pieces) = pieces_in_chunk(node as usize, size, base) {
                    for (page, bytes) in pieces.into_iter().flatten() {
                        free_bytes[page] += bytes as u32;
                    }
                }
                // SAFETY: free-list nodes are unused blocks of ours with a link.
                node = unsafe { (*node).next };
            }
        }
        let mut trimmed = [0u64; CHUNK_WORDS];
        let mut count = 0;
        for (page, &free) in free_bytes.iter().enumerate() {
            if free as usize == PAGE_SIZE {
                trimmed[page / 64] |= 1 << (page % 64);
                count += 1;
            }
        }
        if count == 0 {
            return 0;
        }
        let is_trimmed = |page: usize| trimmed[page / 64] & (1 << (page % 64)) != 0;
        // Blocks on a trimmed page leave the lists; the part of a block that
        // lies on the next or previous page, when that page stays, becomes a
        // smaller free block (every part is a multiple of `LINEAR_STEP`:
        // blocks start on one, pages too). Parts wait on a chain of their
        // own until every list has been walked.
        let mut parts: *mut FreeMeta = null_mut();
        for bin in 0..FIRST_PAGED_BIN {
            let size = small_size(bin);
            let mut link: *mut *mut FreeMeta = &mut self.free[bin];
            // SAFETY: `link` points at a list head or at the link of a node
            // still on the list; nodes are unused blocks of ours, at least
            // `LINEAR_STEP` bytes long, as are the parts kept.
            unsafe {
                while !(*link).is_null() {
                    let node = *link;
                    let Some(pieces) = pieces_in_chunk(node as usize, size, base) else {
                        link = &mut (*node).next;
                        continue;
                    };
                    if !pieces
                        .into_iter()
                        .flatten()
                        .any(|(page, _)| is_trimmed(page))
                    {
                        link = &mut (*node).next;
                        continue;
                    }
                    *link = (*node).next;
                    self.small_free_bytes -= size;
                    let mut at = node as usize;
                    for (page, bytes) in pieces.into_iter().flatten() {
                        if !is_trimmed(page) {
                            let part = at as *mut FreePart;
                            (*part).next = parts;
                            (*part).bytes = bytes;
                            parts = part.cast();
                        }
                        at += bytes;
                    }
                }
            }
        }
        while !parts.is_null() {
            let part = parts.cast::<FreePart>();
            // SAFETY: parts are unused pieces of ours (above), on pages that
            // stay committed.
            unsafe {
                parts = (*part).next;
                self.push_free(part.cast(), (*part).bytes / LINEAR_STEP - 1);
            }
        }
        let mut run: Option<usize> = None;
        for page in 0..=CHUNK_PAGES {
            let set = page < CHUNK_PAGES && is_trimmed(page);
            match (set, run) {
                (true, None) => run = Some(page),
                (false, Some(from)) => {
                    // Whole pages of our chunk that only free blocks, now
                    // off the lists, covered.
                    memory::decommit(
                        (base + from * PAGE_SIZE) as *mut u8,
                        (page - from) * PAGE_SIZE,
                    );
                    run = None;
                }
                _ => {}
            }
        }
        for (w, bits) in trimmed.iter().enumerate() {
            self.trim.decommitted[chunk][w] |= bits;
        }
        self.trim.pages += count;
        count * PAGE_SIZE
    }

    /// A block of small bin `bin` from a decommitted page, the rest of the
    /// page onto the free lists; null when there is no such page.
    pub(super) fn carve_trimmed_page(&mut self, bin: usize) -> *mut u8 {
        let Some(page) = self.trim.take_page() else {
            return null_mut();
        };
        let size = small_size(bin);
        let blocks = PAGE_SIZE / size;
        for i in 1..blocks {
            // SAFETY: a page of ours that nothing uses, cut into blocks.
            unsafe { self.push_free((page + i * size) as *mut u8, bin) };
        }
        let rest = PAGE_SIZE - blocks * size;
        if rest > 0 {
            // SAFETY: the page's tail, a multiple of `LINEAR_STEP` smaller
            // than `size`: a block of a smaller bin.
            unsafe { self.push_free((page + blocks * size) as *mut u8, rest / LINEAR_STEP - 1) };
        }
        // Decommitted: the kernel fills it with zeros as it is touched.
        page as *mut u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the page at `p` is resident now.
    fn resident(p: usize) -> bool {
        let mut v = [0u8; 1];
        // SAFETY: one page of our own mapping; `v` has a byte for it.
        let r = unsafe { libc::mincore(p as *mut libc::c_void, PAGE_SIZE, v.as_mut_ptr()) };
        assert_eq!(r, 0);
        v[0] & 1 != 0
    }

    #[test]
    fn pages_of_freed_small_blocks_go_back_and_are_reused_zeroed() {
        let mut meta = MetaAlloc::new();
        // Blocks of 320 bytes straddle page boundaries (320 does not divide
        // 4096), so whole pages are covered only with the straddlers' parts.
        let size = 320;
        // Enough for a pass (`TRIM_MIN_BYTES`).
        let n = 250;
        let mut blocks = [core::ptr::null_mut::<u8>(); 250];
        for b in blocks.iter_mut() {
            *b = meta.alloc(size);
            assert!(!b.is_null());
            // SAFETY: a block of `size` bytes of ours.
            unsafe { b.write_bytes(0xA5, size) };
        }
        let mapped = meta.mapped;
        // Keep the first and the last block: the pages under them stay.
        for &b in &blocks[1..n - 1] {
            // SAFETY: allocated above with the same size, not used again.
            unsafe { meta.free(b, size) };
        }
        let freed = meta.small_free_bytes;
        assert_eq!(freed, (n - 2) * size);
        // The first look only notes the free lists; the second, with
        // nothing changed, trims.
        assert_eq!(meta.trim_when_quiet(false), 0);
        let trimmed = meta.trim_when_quiet(false);
        let whole_pages = (n - 2) * size / PAGE_SIZE;
        assert!(
            trimmed >= (whole_pages - 2) * PAGE_SIZE && trimmed <= whole_pages * PAGE_SIZE,
            "{trimmed} bytes trimmed of {whole_pages} pages freed"
        );
        assert_eq!(
            meta.small_free_bytes,
            freed - trimmed,
            "the parts kept stay on the lists"
        );
        let first = blocks[0] as usize;
        let last = blocks[n - 1] as usize;
        assert!(resident(first & !(PAGE_SIZE - 1)));
        assert!(resident(last & !(PAGE_SIZE - 1)));
        let gone = (first / PAGE_SIZE + 1..last / PAGE_SIZE)
            .filter(|&p| !resident(p * PAGE_SIZE))
            .count();
        assert_eq!(gone * PAGE_SIZE, trimmed);
        // Nothing changed since: no second pass.
        assert_eq!(meta.trim_when_quiet(true), 0);
        // Every block comes back zeroed; the trimmed pages are taken before
        // fresh chunk memory, cut into blocks (their tails onto smaller
        // bins' lists).
        let mut inside = 0;
        for _ in 1..n - 1 {
            let p = meta.alloc(size);
            // SAFETY: a block of `size` bytes of ours.
            let bytes = unsafe { core::slice::from_raw_parts(p, size) };
            assert!(bytes.iter().all(|&b| b == 0));
            // SAFETY: as above.
            unsafe { p.write_bytes(0x5A, size) };
            inside += usize::from(p as usize > first && (p as usize) < last);
        }
        assert_eq!(meta.trim.pages, 0, "every trimmed page reused");
        assert!(inside >= trimmed / PAGE_SIZE * (PAGE_SIZE / size));
        assert_eq!(meta.mapped, mapped);
    }
}
