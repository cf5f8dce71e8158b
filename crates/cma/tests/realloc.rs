//! realloc semantics: in place when the block allows it (a small change inside
//! a slot, a large block shrunk or grown into free pages after it, a huge
//! block inside its mapping or into the address space reserved after it), a
//! move otherwise with `min(old usable, new)` bytes preserved (a huge block's
//! pages move without a copy: `huge_growth.rs`), and a failed
//! realloc returns null and leaves the old block intact and usable.
//! Counters: in place changes no counts; a move is one allocation and one
//! free.
//!
//! The tests of this binary run one at a time (page placement and counters
//! are process-wide); the binary does not use cma as its global allocator.

use std::sync::{Mutex, MutexGuard};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    let g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    cma::set_alloc_limits(cma::AllocLimits::default());
    g
}

const PAGE: usize = 4096;
const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

fn fill(p: *mut u8, len: usize, seed: u8) {
    // SAFETY: callers pass a live block of at least `len` bytes.
    let s = unsafe { std::slice::from_raw_parts_mut(p, len) };
    for (i, b) in s.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8;
    }
}

#[track_caller]
fn assert_filled(p: *const u8, len: usize, seed: u8) {
    // SAFETY: callers pass a live block of at least `len` bytes.
    let s = unsafe { std::slice::from_raw_parts(p, len) };
    if let Some(i) =
        (0..len).find(|&i| s[i] != (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
    {
        panic!("block {p:p}: byte {i} of {len} lost");
    }
}

/// `block_size` of a page block of `size` bytes: whole pages at the `fast`
/// level, the size asked for at `default` (the level when nothing is set).
fn usable(size: usize) -> usize {
    if cma::check_level() == cma::CheckLevel::Fast {
        size.div_ceil(PAGE) * PAGE
    } else {
        size
    }
}

/// The bytes a page block of `size` bytes takes: whole pages, holding the
/// 8-byte trailer after the request at `default`.
fn pages(size: usize) -> usize {
    let trailer = if cma::check_level() == cma::CheckLevel::Fast {
        0
    } else {
        8
    };
    (size + trailer).div_ceil(PAGE) * PAGE
}

fn counts() -> (u64, u64) {
    let s = cma::stats();
    (s.allocations, s.frees)
}

/// Reallocs `p` to `size`, checks that `keep` bytes of pattern `seed`
/// survived and the counters moved as an in-place resize or a move should,
/// refills the block and returns it.
#[track_caller]
fn resize(p: *mut u8, keep: usize, seed: u8, size: usize) -> *mut u8 {
    let (a0, f0) = counts();
    // SAFETY: `p` is a live block of ours.
    let q = unsafe { cma::realloc(p, size) };
    assert!(!q.is_null(), "realloc({p:p}, {size}) returned null");
    assert!(cma::block_size(q) >= size);
    assert_filled(q, keep.min(size), seed);
    let (a1, f1) = counts();
    if q == p {
        assert_eq!(
            (a1, f1),
            (a0, f0),
            "an in-place realloc counted an allocation or a free"
        );
    } else {
        assert_eq!(
            (a1, f1),
            (a0 + 1, f0 + 1),
            "a moving realloc is one allocation and one free"
        );
        assert!(
            cma::checked_block_size(p).is_err(),
            "the old block {p:p} is still live after a move"
        );
    }
    fill(q, size, seed.wrapping_add(1));
    q
}

#[test]
fn small_blocks_stay_in_their_slot_for_small_changes_and_move_otherwise() {
    let _s = serial();
    let p = cma::malloc(100);
    let usable = cma::block_size(p);
    fill(p, usable, 1);
    // Within the slot: same pointer, growing or shrinking a little.
    let q = resize(p, usable, 1, 104);
    assert_eq!(q, p, "realloc(100 -> 104) left its slot");
    let q = resize(q, 104, 2, 60);
    assert_eq!(q, p, "realloc(104 -> 60) left its slot");
    // Far smaller: moves to a smaller class, keeping what fits.
    let r = resize(q, 60, 3, 10);
    assert_ne!(r, p, "realloc(60 -> 10) should move to a smaller class");
    // Far larger: moves, keeping all of the old block.
    let usable = cma::block_size(r);
    fill(r, usable, 4);
    let s = resize(r, usable, 4, 3000);
    assert_ne!(s, r);
    // Into a large block and back.
    let t = resize(s, 3000, 5, 200 * KIB);
    let u = resize(t, 200 * KIB, 6, 1000);
    assert!(
        cma::block_size(u) < cma::MAX_SMALL,
        "shrunk back into a size class"
    );
    // SAFETY: live.
    unsafe { cma::free(u) };
}

#[test]
fn a_block_grown_a_little_at_a_time_gets_headroom_and_moves_rarely() {
    let _s = serial();
    // 16 B to 64 KiB, 48 bytes at a time: without headroom the block would
    // move at nearly every one of the ~100 size classes on the way; with a
    // quarter more room at each move it moves about three times per doubling.
    let mut size = 16;
    let mut p = cma::malloc(size);
    fill(p, size, 7);
    let mut moves = 0;
    while size < 64 * KIB {
        let new_size = size + 48;
        let old_room = cma::block_size(p);
        // SAFETY: p is live with `size` bytes.
        let q = unsafe { cma::realloc(p, new_size) };
        assert!(!q.is_null());
        assert_filled(q, size, 7);
        if q != p {
            moves += 1;
            // At a checked level a block's size is the size asked for (its
            // trailer records it); the headroom shows in the moves alone.
            if cma::check_level() == cma::CheckLevel::Fast {
                let room = cma::block_size(q);
                assert!(
                    room >= old_room + old_room / 4,
                    "a block of {old_room} bytes grew into {room} bytes: no headroom"
                );
            }
        }
        fill(q, new_size, 7);
        (p, size) = (q, new_size);
    }
    assert!(
        (20..=40).contains(&moves),
        "{moves} moves growing 16 B to 64 KiB (expected about 3 per doubling)"
    );
    // A shrink gets the size asked for, not headroom.
    // SAFETY: p is live.
    let q = unsafe { cma::realloc(p, 100) };
    assert!(cma::block_size(q) < 128);
    assert_filled(q, 100, 7);
    // SAFETY: live.
    unsafe { cma::free(q) };
}

#[test]
fn realloc_preserves_the_whole_usable_size_of_the_old_block() {
    let _s = serial();
    for size in [1usize, 13, 100, 1000, 5000, 100 * KIB, 200 * KIB] {
        let p = cma::malloc(size);
        let usable = cma::block_size(p);
        assert!(usable >= size);
        fill(p, usable, 9);
        // SAFETY: live.
        let q = unsafe { cma::realloc(p, usable * 2 + 1) };
        assert!(!q.is_null());
        assert_filled(q, usable, 9);
        // SAFETY: live.
        unsafe { cma::free(q) };
    }
}

#[test]
fn large_blocks_shrink_in_place_and_grow_into_free_pages_after_them() {
    let _s = serial();
    let before = cma::stats().bytes_in_use;
    let p = cma::malloc(400 * KIB);
    assert_eq!(cma::block_size(p), 400 * KIB);
    assert_eq!(cma::stats().bytes_in_use - before, pages(400 * KIB) as u64);
    fill(p, 400 * KIB, 7);
    // Shrinking a large block keeps it in place and gives back its tail.
    let q = resize(p, 400 * KIB, 7, 200 * KIB + 1);
    assert_eq!(q, p, "a large block shrank by moving");
    assert_eq!(cma::block_size(q), usable(200 * KIB + 1));
    assert_eq!(
        cma::stats().bytes_in_use - before,
        pages(200 * KIB + 1) as u64,
        "whole pages"
    );
    // The pages just given back lie right after the block: it grows in place.
    let q2 = resize(q, 200 * KIB + 1, 8, 400 * KIB);
    assert_eq!(
        q2, p,
        "a large block did not grow into the free pages after it"
    );
    assert_eq!(cma::block_size(q2), 400 * KIB);
    assert_eq!(cma::stats().bytes_in_use - before, pages(400 * KIB) as u64);
    // Within the same pages: in place.
    let q3 = resize(q2, 400 * KIB, 9, 400 * KIB - 100);
    assert_eq!(q3, p);
    // Above the largest large block: moves to a huge block, keeping everything.
    let h = resize(q3, 400 * KIB - 100, 10, cma::LARGE_MAX + MIB);
    assert_ne!(h, p);
    // SAFETY: live.
    unsafe { cma::free(h) };
    assert_eq!(cma::stats().bytes_in_use, before);
}

/// Segment spans lie back to back; at a checked level large blocks have
/// mappings of their own (with a guard after each), so this runs in a child
/// at `fast`.
#[test]
fn a_large_block_whose_next_pages_are_taken_moves_and_keeps_its_contents() {
    const CHILD: &str = "CMA_TEST_REALLOC_FAST_CHILD";
    if cma::check_level() != cma::CheckLevel::Fast {
        assert!(std::env::var(CHILD).is_err(), "the child is not at fast");
        let test = "a_large_block_whose_next_pages_are_taken_moves_and_keeps_its_contents";
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env("CMA_OPTIONS", "check=fast")
            .env(CHILD, "1")
            .output()
            .expect("spawn child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let _s = serial();
    // Allocate until two blocks lie back to back, then grow the first one:
    // the pages after it are taken, so it must move.
    let mut held = Vec::new();
    let (a, b) = loop {
        let a = cma::malloc(200 * KIB);
        let b = cma::malloc(200 * KIB);
        held.push(a);
        held.push(b);
        if b as usize == a as usize + pages(200 * KIB) {
            break (a, b);
        }
        assert!(held.len() < 200, "never got two adjacent large blocks");
    };
    fill(a, 200 * KIB, 11);
    fill(b, 200 * KIB, 12);
    let moved = resize(a, 200 * KIB, 11, 300 * KIB);
    assert_ne!(moved, a, "grew over the next block");
    assert_filled(b, 200 * KIB, 12);
    for p in held.iter().copied().filter(|&p| p != a) {
        // SAFETY: live.
        unsafe { cma::free(p) };
    }
    // SAFETY: live.
    unsafe { cma::free(moved) };
}

#[test]
fn huge_blocks_resize_inside_their_mapping() {
    let _s = serial();
    let big = cma::LARGE_MAX + 3 * MIB / 2;
    let smaller = cma::LARGE_MAX + MIB / 2;
    let p = cma::malloc(big);
    fill(p, big, 13);
    // Shrinking a huge block (staying huge) is in place.
    let q = resize(p, big, 13, smaller);
    assert_eq!(q, p, "a huge block shrank by moving");
    assert_eq!(cma::block_size(q), smaller);
    // Growing back within its mapping is in place too.
    let q = resize(q, smaller, 14, big);
    assert_eq!(
        q, p,
        "a huge block did not grow back inside its own mapping"
    );
    // The regrown tail reads as zero or anything, but the kept part is intact
    // (checked by `resize`). Shrinking below the huge threshold moves.
    let r = resize(q, big, 15, 512 * KIB);
    assert_ne!(r, p);
    // Growing far past the mapping moves.
    let s = resize(r, 512 * KIB, 16, 20 * MIB);
    // SAFETY: live.
    unsafe { cma::free(s) };
}

#[test]
fn a_huge_block_grown_by_half_again_each_step_keeps_its_contents_and_its_count() {
    let _s = serial();
    let before = cma::stats();
    let mut size = 3 * MIB;
    let mut p = cma::malloc(size);
    fill(p, size, 21);
    let mut seed = 21;
    while size < 60 * MIB {
        let new_size = size + size / 2;
        // `resize` checks the contents, the counts (a move is one allocation
        // and one free) and that the old address is no live block any more.
        p = resize(p, size, seed, new_size);
        seed = seed.wrapping_add(1);
        size = new_size;
        assert_eq!(cma::block_size(p), usable(size));
        assert_eq!(
            cma::stats().bytes_in_use - before.bytes_in_use,
            pages(size) as u64
        );
    }
    // Shrinking it step by step, back to a large block inside a segment.
    while size > MIB {
        let new_size = size / 3;
        p = resize(p, new_size, seed, new_size);
        seed = seed.wrapping_add(1);
        size = new_size;
        assert_eq!(
            cma::stats().bytes_in_use - before.bytes_in_use,
            pages(size) as u64
        );
    }
    // SAFETY: live.
    unsafe { cma::free(p) };
    let after = cma::stats();
    assert_eq!(after.bytes_in_use, before.bytes_in_use);
    assert_eq!(
        after.allocations - before.allocations,
        after.frees - before.frees
    );
    assert_eq!(
        after.large_allocations - before.large_allocations,
        after.large_frees - before.large_frees
    );
}

#[test]
fn a_huge_block_shrunk_gives_back_its_whole_granules_and_grows_again() {
    let _s = serial();
    let p = cma::malloc(40 * MIB);
    fill(p, 40 * MIB, 51);
    let mapped = cma::stats().mapped_bytes;
    let q = resize(p, 40 * MIB, 51, 6 * MIB);
    assert_eq!(q, p, "a huge block shrank by moving");
    let given_back = mapped.saturating_sub(cma::stats().mapped_bytes);
    assert!(
        given_back >= 32 * MIB,
        "shrinking a huge block from 40 to 6 MiB unmapped {given_back} bytes"
    );
    let r = resize(q, 6 * MIB, 52, 40 * MIB);
    assert_eq!(cma::block_size(r), 40 * MIB);
    // SAFETY: live.
    unsafe { cma::free(r) };
}

#[test]
fn a_huge_block_keeps_its_alignment_when_it_moves_to_grow() {
    use std::alloc::{GlobalAlloc, Layout};
    let _s = serial();
    let align = 16 * MIB;
    let layout = Layout::from_size_align(5 * MIB, align).unwrap();
    // SAFETY: a non-zero layout.
    let p = unsafe { cma::Cma.alloc(layout) };
    assert!(!p.is_null());
    assert_eq!(p as usize % align, 0);
    fill(p, 5 * MIB, 61);
    // SAFETY: live with `layout`.
    let q = unsafe { cma::Cma.realloc(p, layout, 50 * MIB) };
    assert!(!q.is_null());
    assert_eq!(q as usize % align, 0, "moved to {q:p}");
    assert_filled(q, 5 * MIB, 61);
    // SAFETY: live, now 50 MiB at `align`.
    unsafe { cma::Cma.dealloc(q, Layout::from_size_align(50 * MIB, align).unwrap()) };
}

#[test]
fn realloc_of_null_allocates_and_realloc_to_zero_frees() {
    let _s = serial();
    let (a0, f0) = counts();
    // SAFETY: null allocates.
    let p = unsafe { cma::realloc(std::ptr::null_mut(), 50) };
    assert!(!p.is_null());
    assert_eq!(counts(), (a0 + 1, f0));
    fill(p, 50, 17);
    for size in [1000usize, 300 * KIB, 3 * MIB] {
        let q = cma::malloc(size);
        // SAFETY: live; realloc to 0 frees it and returns a minimal block.
        let z = unsafe { cma::realloc(q, 0) };
        assert!(!z.is_null(), "realloc(p, 0) returns a minimal block");
        assert!(
            cma::checked_block_size(q).is_err(),
            "realloc(p, 0) freed the {size}-byte block"
        );
        // SAFETY: live.
        unsafe { cma::free(z) };
    }
    // SAFETY: live.
    unsafe { cma::free(p) };
    let (a1, f1) = counts();
    assert_eq!(a1 - a0, f1 - f0);
}

#[test]
fn a_failed_realloc_returns_null_and_leaves_the_block_intact_and_usable() {
    let _s = serial();
    for size in [100usize, 5000, 300 * KIB, 2 * MIB, 3 * MIB, 24 * MIB] {
        let p = cma::malloc(size);
        fill(p, size, 19);
        // A huge block that moved to grow has room reserved after it: the
        // limit must hold for a growth into it too.
        let p = if size == 24 * MIB {
            resize(p, size, 19, size + 1)
        } else {
            p
        };
        fill(p, size, 19);
        let (a0, f0) = counts();
        let bytes = cma::stats().bytes_in_use;
        cma::set_alloc_limits(cma::AllocLimits {
            max_request: Some(size),
            max_bytes_in_use: Some(bytes as usize + 1),
        });
        for grow in [size * 3 + MIB, 40 * MIB] {
            // SAFETY: live; a failed realloc leaves it so.
            let q = unsafe { cma::realloc(p, grow) };
            assert!(
                q.is_null(),
                "realloc({size} -> {grow}) under a limit returned {q:p}"
            );
            // SAFETY: as above.
            let e = unsafe { cma::try_realloc_checked(p, grow) }.expect_err("over the limit");
            assert!(
                matches!(
                    e,
                    cma::CmaError::TotalLimitExceeded { .. }
                        | cma::CmaError::RequestLimitExceeded { .. }
                ),
                "{e:?}"
            );
        }
        assert_eq!(counts(), (a0, f0), "a failed realloc changed the counters");
        assert_eq!(cma::stats().bytes_in_use, bytes);
        cma::set_alloc_limits(cma::AllocLimits::default());
        assert_filled(p, size, 19);
        assert!(cma::block_size(p) >= size);
        // Still usable: it can be written, resized and freed.
        fill(p, size, 20);
        let q = resize(p, size, 20, size * 2);
        // SAFETY: live.
        unsafe { cma::free(q) };
    }
}

#[test]
fn blocks_realloced_by_another_thread_keep_their_contents() {
    let _s = serial();
    let blocks: Vec<usize> = [10usize, 100, 1000, 10_000, 100_000, 300_000, 3 << 20]
        .iter()
        .map(|&n| {
            let p = cma::malloc(n);
            fill(p, n, n as u8);
            p as usize
        })
        .collect();
    let sizes = [10usize, 100, 1000, 10_000, 100_000, 300_000, 3 << 20];
    let grown: Vec<usize> = std::thread::spawn(move || {
        blocks
            .iter()
            .zip(sizes)
            .map(|(&p, n)| resize(p as *mut u8, n, n as u8, n * 3) as usize)
            .collect()
    })
    .join()
    .unwrap();
    for (p, n) in grown.into_iter().zip(sizes) {
        assert_filled(p as *const u8, n * 3, (n as u8).wrapping_add(1));
        // SAFETY: live.
        unsafe { cma::free(p as *mut u8) };
    }
}
