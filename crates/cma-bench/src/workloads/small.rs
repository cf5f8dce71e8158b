//! The single-threaded small-block workloads: `churn` (8-128 B over a ring)
//! and `mixed` (8 B-128 KiB over a long-lived working set).

use core::alloc::GlobalAlloc;

use super::block::{live, put_all, Block, EMPTY};
use super::Params;
use crate::util::Rng;

fn small_size(rng: &mut Rng) -> usize {
    rng.range(8, 128)
}

/// 1: single-thread churn of small blocks.
pub fn churn<A: GlobalAlloc + ?Sized>(a: &A, p: &Params) -> u64 {
    const RING: usize = 256;
    let ops = p.n(1_500_000, 6_000_000);
    let mut rng = Rng::new(1);
    let mut ring = vec![EMPTY; RING];
    let mut n = 0;
    for _ in 0..ops {
        let s = rng.below(RING);
        if ring[s].put_if_live(a) {
            n += 1;
        }
        let size = small_size(&mut rng);
        ring[s] = Block::get(a, size);
    }
    n + put_all(a, live(ring))
}

fn mixed_size(rng: &mut Rng) -> usize {
    match rng.below(1000) {
        0..=699 => rng.range(8, 128),
        700..=899 => rng.range(129, 2048),
        900..=989 => rng.range(2049, 32 * 1024),
        _ => rng.range(32 * 1024 + 1, 128 * 1024),
    }
}

/// 2: mixed sizes over a long-lived working set.
pub fn mixed<A: GlobalAlloc + ?Sized>(a: &A, p: &Params) -> u64 {
    let slots = p.n(8_000, 20_000);
    let ops = p.n(300_000, 1_200_000);
    let mut rng = Rng::new(2);
    let mut set: Vec<Block> = (0..slots)
        .map(|_| Block::get(a, mixed_size(&mut rng)))
        .collect();
    let mut n = 0;
    for _ in 0..ops {
        let s = rng.below(slots);
        set[s].put(a);
        n += 1;
        let size = mixed_size(&mut rng);
        set[s] = Block::get(a, size);
    }
    n + put_all(a, set)
}
