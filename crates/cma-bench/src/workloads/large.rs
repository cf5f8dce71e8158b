//! The workloads that stress a size or layout path rather than churn:
//! `large` (64 KiB-32 MiB blocks), `calloc` (`alloc_zeroed`) and `aligned`
//! (alignments 16 B-64 KiB).

use core::alloc::{GlobalAlloc, Layout};

use super::block::{layout, live, oom, put_all, tag_of, Block, EMPTY};
use super::Params;
use crate::util::{check, touch, verify, Rng};

/// 7: large blocks, 64 KiB to 32 MiB.
pub fn large<A: GlobalAlloc + ?Sized>(a: &A, p: &Params) -> u64 {
    const LIVE: usize = 4;
    let ops = p.n(60, 240);
    let mut rng = Rng::new(7);
    let mut ring = [EMPTY; LIVE];
    let mut n = 0;
    for i in 0..ops {
        if ring[i % LIVE].put_if_live(a) {
            n += 1;
        }
        let size = rng.log_range(64 * 1024, 32 * 1024 * 1024);
        ring[i % LIVE] = Block::get(a, size);
    }
    n + put_all(a, live(ring))
}

/// 8: calloc at various sizes.
pub fn calloc<A: GlobalAlloc + ?Sized>(a: &A, p: &Params) -> u64 {
    const RING: usize = 64;
    let ops = p.n(60_000, 240_000);
    let mut rng = Rng::new(8);
    let mut ring = [EMPTY; RING];
    let mut n = 0;
    for _ in 0..ops {
        let s = rng.below(RING);
        if ring[s].put_if_live(a) {
            n += 1;
        }
        let size = if rng.below(10) < 9 {
            rng.range(16, 4096)
        } else {
            rng.log_range(4096, 1 << 20)
        };
        let l = layout(size);
        // SAFETY: non-zero layout; the reads are within the block.
        unsafe {
            let q = a.alloc_zeroed(l);
            if q.is_null() {
                oom(l);
            }
            let zero = *q == 0
                && *q.add(size / 2) == 0
                && *q.add(size - 1) == 0
                && *(q.add(size & !7).sub(8) as *const u64) == 0;
            verify(zero, "calloc block not zeroed");
            touch(q, size, tag_of(size));
            ring[s] = Block {
                addr: q as usize,
                size,
            };
        }
    }
    n + put_all(a, live(ring))
}

/// 9: aligned allocations.
pub fn aligned<A: GlobalAlloc + ?Sized>(a: &A, p: &Params) -> u64 {
    const RING: usize = 256;
    let ops = p.n(300_000, 1_200_000);
    let mut rng = Rng::new(9);
    let mut ring = [(EMPTY, 0usize); RING];
    let mut n = 0;
    let free = |b: Block, align: usize| {
        // SAFETY: live block made below with this size and alignment.
        unsafe {
            verify(
                check(b.ptr(), b.size, tag_of(b.size)),
                "aligned block content",
            );
            a.dealloc(b.ptr(), Layout::from_size_align_unchecked(b.size, align));
        }
    };
    for _ in 0..ops {
        let s = rng.below(RING);
        let (b, align) = ring[s];
        if b.addr != 0 {
            free(b, align);
            n += 1;
        }
        let align = if rng.below(50) == 0 {
            1 << rng.range(13, 16)
        } else {
            1 << rng.range(4, 12)
        };
        let size = if rng.below(2) == 0 {
            rng.range(8, 256)
        } else {
            rng.range(257, 8192)
        };
        let l = Layout::from_size_align(size, align).unwrap();
        // SAFETY: non-zero layout.
        let q = unsafe { a.alloc(l) };
        if q.is_null() {
            oom(l);
        }
        verify(q as usize % align == 0, "misaligned block");
        // SAFETY: fresh block of `size` bytes.
        unsafe { touch(q, size, tag_of(size)) };
        ring[s] = (
            Block {
                addr: q as usize,
                size,
            },
            align,
        );
    }
    for (b, align) in ring.into_iter().filter(|(b, _)| b.addr != 0) {
        free(b, align);
        n += 1;
    }
    n
}
