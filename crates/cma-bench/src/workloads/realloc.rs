//! The realloc workloads: `realloc`, byte vectors grown in place by
//! `realloc`, checked after every step, and restarted from a fresh block
//! once past their capacity; `realloc-large`, one block grown by half again
//! at each step to hundreds of MiB (`c/realloc_growth.c` in Rust).

use core::alloc::GlobalAlloc;

use super::block::{get, layout, oom, Block};
use super::Params;
use crate::util::{check, verify, Rng};

/// 6: realloc growth of many vectors.
pub fn realloc_growth<A: GlobalAlloc + ?Sized>(a: &A, p: &Params) -> u64 {
    const START: usize = 16;
    let nvec = p.n(1_000, 2_000);
    let steps = p.n(300_000, 1_200_000);
    let mut rng = Rng::new(6);
    let tag = 0xa5u8;
    let fresh = |rng: &mut Rng| {
        let b = get(a, START);
        // SAFETY: a fresh block of START bytes.
        unsafe { core::ptr::write_bytes(b, tag, START) };
        (
            Block {
                addr: b as usize,
                size: START,
            },
            rng.range(1024, 32 * 1024),
        )
    };
    // Not `Block::put`: a vector's bytes all hold `tag`, not its size's tag.
    let discard = |b: Block| {
        // SAFETY: live block of b.size bytes.
        unsafe {
            verify(check(b.ptr(), b.size, tag), "vector content before free");
            a.dealloc(b.ptr(), layout(b.size));
        }
    };
    let mut vecs: Vec<(Block, usize)> = (0..nvec).map(|_| fresh(&mut rng)).collect();
    let mut n = 0;
    for _ in 0..steps {
        let i = rng.below(nvec);
        let (b, cap) = vecs[i];
        let new_size = b.size + rng.range(16, 128);
        if new_size > cap {
            discard(b);
            vecs[i] = fresh(&mut rng);
            continue;
        }
        // SAFETY: `b` is live with layout(b.size); the new tail is written before it is read.
        unsafe {
            let q = a.realloc(b.ptr(), layout(b.size), new_size);
            if q.is_null() {
                oom(layout(new_size));
            }
            verify(check(q, b.size, tag), "vector content after realloc");
            core::ptr::write_bytes(q.add(b.size), tag, new_size - b.size);
            vecs[i].0 = Block {
                addr: q as usize,
                size: new_size,
            };
        }
        n += 1;
    }
    for (b, _) in vecs {
        discard(b);
        n += 1;
    }
    n
}

/// The byte `realloc_large`'s step `step` writes into page `page` of the
/// block: differs from page to page and from step to step, so a page lost
/// or misplaced by a move reads wrong.
#[inline]
fn page_tag(step: usize, page: usize) -> u8 {
    (step * 29 + page * 7 + 1) as u8
}

/// 14: one block grown by `realloc` from 256 KiB by half again each step
/// (to 554 MiB; 21 MiB with `--quick`), written in full after every step.
/// Before writing, it checks that the old contents survived: one byte per
/// 4 KiB page and the last byte.
pub fn realloc_large<A: GlobalAlloc + ?Sized>(a: &A, p: &Params) -> u64 {
    const START: usize = 256 * 1024;
    const PAGE: usize = 4096;
    let limit = p.n(30_000_000, 600_000_000);
    let fill = |q: *mut u8, size: usize, step: usize| {
        for page in (0..size).step_by(PAGE) {
            // SAFETY: inside the live block of `size` bytes.
            unsafe {
                core::ptr::write_bytes(
                    q.add(page),
                    page_tag(step, page / PAGE),
                    PAGE.min(size - page),
                )
            };
        }
    };
    let intact = |q: *const u8, size: usize, step: usize| {
        // SAFETY: reads inside the live block of `size` bytes.
        (0..size)
            .step_by(PAGE)
            .chain([size - 1])
            .all(|i| unsafe { *q.add(i) } == page_tag(step, i / PAGE))
    };
    let mut size = START;
    let mut q = get(a, size);
    let mut step = 0;
    fill(q, size, step);
    let mut n = 1;
    while size + size / 2 <= limit {
        let new_size = size + size / 2;
        // SAFETY: `q` is live with layout(size).
        q = unsafe { a.realloc(q, layout(size), new_size) };
        if q.is_null() {
            oom(layout(new_size));
        }
        verify(intact(q, size, step), "block content after realloc");
        size = new_size;
        step += 1;
        fill(q, size, step);
        n += 1;
    }
    verify(intact(q, size, step), "block content before free");
    // SAFETY: live with layout(size).
    unsafe { a.dealloc(q, layout(size)) };
    n
}
