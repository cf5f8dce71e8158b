//! `realloc`: byte vectors grown in place by `realloc`, checked after every
//! step, and restarted from a fresh block once past their capacity.

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
