//! The memory workload: `rss-phases`, whether resident memory follows what
//! the program uses once it frees, with no allocator call to drive a purge.
//!
//! It builds a heap of small and medium blocks (560 MB, 56 MB with
//! `--quick`), then frees all but a contiguous tenth, then all but one
//! block in 64 of those (a little memory scattered over the whole heap),
//! then everything, and after each of the three phases sleeps (1.5 s, 0.6 s
//! quick) and reads the process's resident set without allocating. The
//! phases' live bytes and resident sets go to the report (`take_phases`);
//! its time is mostly the sleeps, so the suite leaves it out of the time
//! geomean.

use core::alloc::GlobalAlloc;
use std::sync::Mutex;
use std::time::Duration;

use super::block::Block;
use super::Params;
use crate::util::{resident_kib, Rng};

/// One phase's outcome: bytes still allocated (the sizes asked for) and the
/// process's resident set at the end of the pause.
#[derive(Clone, Copy, Debug)]
pub struct Phase {
    pub name: &'static str,
    pub live_bytes: u64,
    pub rss_kib: u64,
}

/// The phases of the last run, for the child's result line. A plain array:
/// nothing of it stays allocated, so the child's check that the workload
/// freed everything it allocated holds.
static PHASES: Mutex<[Option<Phase>; PHASE_COUNT]> = Mutex::new([None; PHASE_COUNT]);
const PHASE_COUNT: usize = 3;

/// The phases of the last `rss_phases` run (none for other workloads).
pub fn take_phases() -> [Option<Phase>; PHASE_COUNT] {
    std::mem::take(&mut *PHASES.lock().unwrap())
}

fn block_size(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0..=69 => rng.range(16, 256),
        70..=94 => rng.range(257, 4096),
        _ => rng.range(4097, 64 * 1024),
    }
}

/// 13: resident memory after frees, in three phases.
pub fn rss_phases<A: GlobalAlloc + ?Sized>(a: &A, p: &Params) -> u64 {
    let total = p.n(56 << 20, 560 << 20) as u64;
    let pause = Duration::from_millis(p.n(600, 1500) as u64);
    let mut rng = Rng::new(13);
    // The list itself comes from the allocator under test too; sized up
    // front so it never grows while the phases are measured.
    let mut blocks: Vec<Block> = Vec::with_capacity((total / 1500) as usize);
    let mut built = 0u64;
    while built < total && blocks.len() < blocks.capacity() {
        let b = Block::get(a, block_size(&mut rng));
        built += b.size as u64;
        blocks.push(b);
    }
    let n = blocks.len();
    let mut phases = [None; PHASE_COUNT];
    let mut next_phase = 0;
    let mut freed = 0u64;
    let mut record = |name, blocks: &[Block]| {
        std::thread::sleep(pause);
        // The blocks, and the list that holds them.
        let list = std::mem::size_of_val(blocks) as u64;
        phases[next_phase] = Some(Phase {
            name,
            live_bytes: blocks.iter().map(|b| b.size as u64).sum::<u64>() + list,
            rss_kib: resident_kib(),
        });
        next_phase += 1;
    };
    // 1: all but a contiguous tenth (allocated one after the other).
    let (keep_from, keep_to) = (n * 45 / 100, n * 55 / 100);
    for (i, b) in blocks.iter().enumerate() {
        if !(keep_from..keep_to).contains(&i) {
            b.put(a);
            freed += 1;
        }
    }
    let mut kept: Vec<Block> = blocks[keep_from..keep_to].to_vec();
    drop(blocks);
    record("contiguous tenth", &kept);
    // 2: of those, one block in 64.
    let mut scattered = Vec::with_capacity(kept.len() / 64 + 1);
    for (i, b) in kept.drain(..).enumerate() {
        if i % 64 == 0 {
            scattered.push(b);
        } else {
            b.put(a);
            freed += 1;
        }
    }
    record("one in 64 of those", &scattered);
    // 3: nothing.
    for b in scattered.drain(..) {
        b.put(a);
        freed += 1;
    }
    record("everything freed", &scattered);
    *PHASES.lock().unwrap() = phases;
    freed
}
