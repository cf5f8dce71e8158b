//! `cma::Arena`: collections of `hashbrown` and `allocator_api2` in an
//! arena, its statistics and limit, `reset` and drop releasing everything
//! (in the arena's figures and in the process-wide ones), blocks freed one
//! by one, through the arena or through `cma::free` on any thread, and a
//! free after the arena is gone reported as a double free.
//!
//! The binary does not use cma as its global allocator, so cma's
//! process-wide counters move only through the calls these tests make;
//! tests that read them hold `SERIAL`.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::Mutex;

use allocator_api2::vec::Vec as AVec;
use cma::{Arena, CmaError};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Blocks and bytes in use process-wide.
fn in_use() -> (i64, u64) {
    let s = cma::stats();
    (s.allocations as i64 - s.frees as i64, s.bytes_in_use)
}

fn fill(p: *mut u8, n: usize, tag: u8) {
    // SAFETY: `p` is a live block of at least `n` bytes.
    unsafe { core::ptr::write_bytes(p, tag, n) };
}

fn holds(p: *const u8, n: usize, tag: u8) -> bool {
    // SAFETY: `p` is a live block of at least `n` bytes.
    unsafe { core::slice::from_raw_parts(p, n) }
        .iter()
        .all(|&b| b == tag)
}

#[test]
fn a_hashbrown_map_of_vectors_lives_in_the_arena() {
    let _s = serial();
    let arena = Arena::new();
    let before = in_use();
    {
        let mut map = hashbrown::HashMap::new_in(&arena);
        for i in 0..20_000u64 {
            let mut v = AVec::new_in(&arena);
            v.extend((0..(i % 7)).map(|j| i * 10 + j));
            map.insert(i, v);
        }
        for i in (0..20_000u64).step_by(3) {
            map.remove(&i);
        }
        for i in 0..20_000u64 {
            match map.get(&i) {
                Some(v) => {
                    assert!(i % 3 != 0);
                    assert_eq!(v.len() as u64, i % 7);
                    assert!(v.iter().enumerate().all(|(j, &x)| x == i * 10 + j as u64));
                }
                None => assert_eq!(i % 3, 0),
            }
        }
        let s = arena.stats();
        assert!(s.blocks_in_use > 10_000, "{s:?}");
        assert_eq!(in_use().0 - before.0, s.blocks_in_use as i64);
        assert_eq!(in_use().1 - before.1, s.bytes_in_use);
    }
    // Dropped one by one through the allocator.
    let s = arena.stats();
    assert_eq!((s.blocks_in_use, s.bytes_in_use), (0, 0), "{s:?}");
    assert_eq!(s.allocations, s.frees);
    assert_eq!(in_use(), before);
}

#[test]
fn an_allocator_api2_vec_grows_small_to_large_and_shrinks() {
    let _s = serial();
    let arena = Arena::new();
    let mut v: AVec<u64, &Arena> = AVec::new_in(&arena);
    for i in 0..300_000u64 {
        v.push(i ^ 0x5a5a);
    }
    // 2.4 MB: past the small classes and past a segment's large blocks.
    assert!(v.capacity() * 8 > 2 << 20);
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64 ^ 0x5a5a));
    assert_eq!(arena.stats().blocks_in_use, 1);
    v.truncate(10);
    v.shrink_to_fit();
    assert_eq!(
        &v[..],
        &(0..10u64).map(|i| i ^ 0x5a5a).collect::<Vec<_>>()[..]
    );
    let s = arena.stats();
    assert_eq!(s.blocks_in_use, 1);
    assert!(s.bytes_in_use <= 128, "{s:?}");
    assert!(s.peak_bytes_in_use >= 300_000 * 8, "{s:?}");
    let mut zeroed: AVec<u8, &Arena> = AVec::new_in(&arena);
    zeroed.resize(100_000, 0);
    assert!(zeroed.iter().all(|&b| b == 0));
}

#[test]
fn each_arena_counts_its_own_blocks_exactly() {
    let _s = serial();
    let a = Arena::new();
    let b = Arena::new();
    let p = a.alloc(100, 8).unwrap();
    let q = a.alloc(5000, 64).unwrap();
    let r = a.alloc(300 << 10, 8).unwrap(); // large: whole pages
    assert_eq!(q.as_ptr() as usize % 64, 0);
    let s = a.stats();
    assert_eq!((s.allocations, s.frees, s.blocks_in_use), (3, 0, 3));
    assert_eq!(s.bytes_in_use, s.peak_bytes_in_use);
    assert!(s.bytes_in_use >= 100 + 5000 + (300 << 10), "{s:?}");
    assert_eq!(b.stats(), cma::ArenaStats::default());
    let peak = s.peak_bytes_in_use;
    // SAFETY: live blocks of `a`.
    unsafe {
        a.free(r.as_ptr());
        a.free(p.as_ptr());
    }
    let s = a.stats();
    assert_eq!((s.allocations, s.frees, s.blocks_in_use), (3, 2, 1));
    assert_eq!(s.peak_bytes_in_use, peak);
    assert!(s.bytes_in_use >= 5000 && s.bytes_in_use < 6000, "{s:?}");
    // SAFETY: as above.
    unsafe { a.free(q.as_ptr()) };
    assert_eq!(a.stats().bytes_in_use, 0);
}

#[test]
fn a_request_past_the_limit_fails_and_changes_nothing() {
    let _s = serial();
    let arena = Arena::with_limit(64 << 10);
    assert_eq!(arena.limit(), Some(64 << 10));
    let mut blocks = Vec::new();
    let err = loop {
        match arena.alloc(1000, 8) {
            Ok(p) => {
                fill(p.as_ptr(), 1000, blocks.len() as u8);
                blocks.push(p);
            }
            Err(e) => break e,
        }
        assert!(blocks.len() < 1000, "the limit never bit");
    };
    assert!(matches!(err, CmaError::TotalLimitExceeded { .. }), "{err}");
    let s = arena.stats();
    assert!(
        s.bytes_in_use <= 64 << 10 && s.bytes_in_use + 1024 > 64 << 10,
        "{s:?}"
    );
    // Through the trait: AllocError, and a collection's try_reserve fails.
    let mut v: AVec<u8, &Arena> = AVec::new_in(&arena);
    assert!(v.try_reserve(100 << 10).is_err());
    assert!(arena.alloc(1 << 20, 8).is_err());
    assert_eq!(arena.stats(), s, "a refused request changed the figures");
    for (i, p) in blocks.iter().enumerate() {
        assert!(holds(p.as_ptr(), 1000, i as u8), "block {i} damaged");
    }
    // A free makes room again; lifting the limit lets anything through.
    // SAFETY: a live block of the arena.
    unsafe { arena.free(blocks.pop().unwrap().as_ptr()) };
    let p = arena.alloc(1000, 8).unwrap();
    arena.set_limit(None);
    let big = arena.alloc(1 << 20, 8).unwrap();
    // SAFETY: live blocks of the arena.
    unsafe {
        arena.free(big.as_ptr());
        arena.free(p.as_ptr());
    }
}

/// Fills an arena with small, large and huge blocks; returns how many.
fn populate(arena: &Arena) -> usize {
    let mut n = 0;
    for i in 0..5000usize {
        let size = 8 + (i * 37) % 2000;
        let p = arena.alloc(size, 8).unwrap();
        fill(p.as_ptr(), size, 1);
        n += 1;
    }
    for size in [200 << 10, 1 << 20, 5 << 20] {
        let p = arena.alloc(size, 4096).unwrap();
        fill(p.as_ptr(), size, 2);
        n += 1;
    }
    n
}

#[test]
fn reset_releases_everything_at_once_and_the_arena_is_reusable() {
    let _s = serial();
    let mut arena = Arena::new();
    let before = in_use();
    let n = populate(&arena);
    let s = arena.stats();
    assert_eq!(s.blocks_in_use, n as u64);
    assert!(s.bytes_in_use > 6 << 20, "{s:?}");
    assert_eq!(in_use().0 - before.0, n as i64);
    assert_eq!(in_use().1 - before.1, s.bytes_in_use);
    let dirty_before = cma::stats().dirty_free_bytes;
    arena.reset();
    let s = arena.stats();
    assert_eq!((s.allocations, s.frees), (n as u64, n as u64));
    assert_eq!((s.blocks_in_use, s.bytes_in_use), (0, 0));
    assert!(s.peak_bytes_in_use > 6 << 20);
    assert_eq!(in_use(), before, "reset left blocks counted in cma::stats");
    // The slabs and large spans went back to the page allocator (the huge
    // block's mapping is kept aside or unmapped, not counted here).
    assert!(
        cma::stats().dirty_free_bytes >= dirty_before + (1 << 20),
        "no pages came back"
    );
    // Used again, and reset again.
    populate(&arena);
    arena.reset();
    assert_eq!(in_use(), before);
}

#[test]
fn dropping_the_arena_releases_everything() {
    let _s = serial();
    let before = in_use();
    {
        let arena = Arena::new();
        let n = populate(&arena);
        assert_eq!(in_use().0 - before.0, n as i64);
    }
    assert_eq!(in_use(), before, "drop left blocks counted in cma::stats");
    // Arenas come and go without growing the metadata: their heaps are
    // reused.
    let meta = cma::stats().metadata_bytes;
    for _ in 0..200 {
        let arena = Arena::new();
        arena.alloc(64, 8).unwrap();
    }
    assert_eq!(cma::stats().metadata_bytes, meta);
}

#[test]
fn blocks_are_freed_one_by_one_and_a_double_free_is_caught() {
    let _s = serial();
    let arena = Arena::new();
    let blocks: Vec<_> = (0..1000)
        .map(|i| arena.alloc(16 + i % 300, 16).unwrap())
        .collect();
    for (i, p) in blocks.iter().enumerate() {
        assert_eq!(p.as_ptr() as usize % 16, 0, "block {i}");
    }
    for p in &blocks {
        // SAFETY: live blocks of the arena.
        unsafe { arena.checked_free(p.as_ptr()) }.unwrap();
    }
    assert_eq!(arena.stats().blocks_in_use, 0);
    // SAFETY: deliberate misuse; the checked free reports it.
    let err = unsafe { arena.checked_free(blocks[7].as_ptr()) }.unwrap_err();
    assert!(matches!(err, CmaError::DoubleFree { .. }), "{err}");
    assert_eq!(arena.stats().frees, 1000);
}

#[test]
fn cma_free_of_an_arena_block_works_from_any_thread() {
    let _s = serial();
    let arena = Arena::new();
    let before = in_use();
    let small: Vec<usize> = (0..2000)
        .map(|i| arena.alloc(24 + i % 100, 8).unwrap().as_ptr() as usize)
        .collect();
    let large = arena.alloc(400 << 10, 8).unwrap().as_ptr() as usize;
    let huge = arena.alloc(3 << 20, 8).unwrap().as_ptr() as usize;
    assert!(cma::block_size(small[0] as *const u8) >= 24);
    // Half on this thread, half and the big ones on another.
    for &p in &small[..1000] {
        // SAFETY: live blocks, given up.
        unsafe { cma::free(p as *mut u8) };
    }
    let rest: Vec<usize> = small[1000..].to_vec();
    std::thread::spawn(move || {
        for p in rest.into_iter().chain([large, huge]) {
            // SAFETY: as above.
            unsafe { cma::free(p as *mut u8) };
        }
    })
    .join()
    .unwrap();
    assert_eq!(in_use(), before, "cma::stats after the frees");
    let s = arena.stats();
    assert_eq!(
        (s.allocations, s.frees, s.bytes_in_use),
        (2002, 2002, 0),
        "{s:?}"
    );
    // The arena collected those frees and reuses the slots.
    let p = arena.alloc(24, 8).unwrap();
    // SAFETY: a live block.
    unsafe { arena.free(p.as_ptr()) };
    // A second free of a freed arena block is still a double free.
    let err = unsafe { cma::checked_free(large as *mut u8) }.unwrap_err();
    assert!(matches!(err, CmaError::DoubleFree { .. }), "{err}");
}

#[test]
fn realloc_through_cma_moves_a_block_out_of_the_arena() {
    let _s = serial();
    let mut arena = Arena::new();
    let p = arena.alloc(40, 8).unwrap().as_ptr();
    fill(p, 40, 9);
    // SAFETY: a live block.
    let q = unsafe { cma::realloc(p, 5000) };
    assert!(holds(q, 40, 9));
    assert_eq!(arena.stats().blocks_in_use, 0);
    arena.reset();
    // The moved block is the thread heap's: alive after the reset.
    assert!(holds(q, 40, 9));
    // SAFETY: live.
    unsafe { cma::free(q) };
    // Arena::realloc keeps its blocks in the arena, and moves others in.
    let r = arena.alloc(40, 8).unwrap().as_ptr();
    fill(r, 40, 3);
    // SAFETY: a live block of the arena.
    let r = unsafe { arena.realloc(r, 200_000, 8) }.unwrap().as_ptr();
    assert!(holds(r, 40, 3));
    let outside = cma::malloc(30);
    fill(outside, 30, 4);
    // SAFETY: a live block of the thread heap.
    let inside = unsafe { arena.realloc(outside, 60, 8) }.unwrap().as_ptr();
    assert!(holds(inside, 30, 4));
    assert_eq!(arena.stats().blocks_in_use, 2);
    arena.reset();
}

// ----- use after the arena is gone: death tests -----

const CASE_VAR: &str = "CMA_ARENA_DEATH_CASE";

/// The child side of the death tests (a no-op in a normal run).
#[test]
fn death_child() {
    let Ok(case) = std::env::var(CASE_VAR) else {
        return;
    };
    let mut arena = Arena::new();
    if case == "overflow-then-reset" {
        let p = arena.alloc(40, 8).unwrap().as_ptr();
        eprintln!("DEATH-ADDR={:#x}", p as usize);
        // SAFETY: deliberate misuse: one byte past the 40 asked for (still
        // inside the slot, where the checked level's canary lies).
        unsafe { p.add(40).write(0x41) };
        arena.reset();
        eprintln!("DEATH-SURVIVED");
        return;
    }
    let small = arena.alloc(48, 8).unwrap().as_ptr();
    let large = arena.alloc(300 << 10, 8).unwrap().as_ptr();
    let victim = if case.contains("large") { large } else { small };
    if case.starts_with("reset") {
        arena.reset();
    } else {
        drop(arena);
    }
    eprintln!("DEATH-ADDR={:#x}", victim as usize);
    // SAFETY: deliberate misuse: the free must abort.
    unsafe { cma::free(victim) };
    eprintln!("DEATH-SURVIVED");
}

fn run_death(case: &str) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "death_child", "--nocapture", "--test-threads=1"])
        .env(CASE_VAR, case)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.signal(),
        Some(6),
        "{case}: {}\n{err}",
        out.status
    );
    assert!(!err.contains("DEATH-SURVIVED"), "{err}");
    let addr = err
        .lines()
        .find_map(|l| l.strip_prefix("DEATH-ADDR="))
        .expect("address line")
        .to_string();
    let line = err
        .lines()
        .find(|l| l.starts_with("cma: "))
        .unwrap_or_else(|| panic!("{case}: no diagnostic in {err}"));
    assert!(line.contains(&addr), "{case}: {line}");
    line.to_string()
}

#[test]
fn a_free_after_the_arena_is_dropped_or_reset_is_a_double_free() {
    // The arena gives its pages back (a small block of a reset arena is a
    // free slot of the slab its class kept; a large block at the default
    // level has a mapping of its own, kept sealed for a while once freed,
    // and is named).
    for (case, block) in [
        ("drop-small", "(in freed pages)"),
        ("drop-large", "(large block of "),
        ("reset-small", "(size class "),
        ("reset-large", "(large block of "),
    ] {
        let line = run_death(case);
        assert!(
            line.starts_with("cma: double free of ")
                && line.contains(block)
                && line.contains("[in free]"),
            "{case}: {line}"
        );
    }
}

#[test]
fn an_overflow_of_a_block_is_reported_when_its_arena_is_reset() {
    if cma::check_level() != cma::CheckLevel::Default {
        return; // the `fast` level has no canaries
    }
    let line = run_death("overflow-then-reset");
    assert!(
        line.starts_with("cma: heap buffer overflow: the bytes after the block at ")
            && line.contains("[in arena reset]"),
        "{line}"
    );
}
