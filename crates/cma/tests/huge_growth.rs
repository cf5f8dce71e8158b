//! A huge block that grows past its mapping moves its pages (`mremap`)
//! instead of copying them: its old and new pages are never resident at
//! once, the address space it keeps reserved after its new place lets the
//! next growth happen in place, and the one after that moves it again.
//!
//! A process of its own: the first test reads the process's resident set,
//! and what the page allocator has cached from earlier frees would change
//! what a growth does. Its tests run one at a time.

use std::sync::{Mutex, MutexGuard};

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn fill(p: *mut u8, len: usize, seed: u8) {
    // SAFETY: callers pass a live block of at least `len` bytes.
    let s = unsafe { std::slice::from_raw_parts_mut(p, len) };
    for (i, b) in s.iter_mut().enumerate() {
        *b = (i >> 12) as u8 ^ seed;
    }
}

#[track_caller]
fn assert_filled(p: *const u8, len: usize, seed: u8) {
    // SAFETY: callers pass a live block of at least `len` bytes.
    let s = unsafe { std::slice::from_raw_parts(p, len) };
    if let Some(i) = (0..len).find(|&i| s[i] != (i >> 12) as u8 ^ seed) {
        panic!("block {p:p}: byte {i} of {len} lost");
    }
}

/// The process's resident set and its peak since the last reset, in bytes.
fn rss_and_peak() -> (usize, usize) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> usize {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        let kib: usize = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap();
        kib * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets the peak resident set to the current one (Linux 4.0 and later).
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[test]
fn a_huge_block_grown_past_its_mapping_moves_its_pages_grows_in_place_and_moves_again() {
    let _s = serial();
    if !reset_peak() {
        eprintln!("note: cannot reset the peak resident set here; skipping");
        return;
    }
    let (old, new, next, last) = (32 * MIB, 80 * MIB, 120 * MIB, 200 * MIB);
    let p = cma::malloc(old);
    assert!(!p.is_null());
    fill(p, old, 1);
    reset_peak();
    let (rss0, _) = rss_and_peak();

    // SAFETY: live, `old` bytes.
    let q = unsafe { cma::realloc(p, new) };
    assert!(!q.is_null());
    let (rss1, _) = rss_and_peak();
    // A copy would have faulted in `old` bytes of the new block while the
    // old one stays resident (until it is purged); moved pages add none.
    assert!(
        rss1 < rss0 + old / 2,
        "realloc from {} to {} MiB added {} MiB to the resident set before the block was written",
        old / MIB,
        new / MIB,
        (rss1.saturating_sub(rss0)) / MIB
    );
    assert_filled(q, old, 1);
    fill(q, new, 2);
    let (_, peak) = rss_and_peak();
    assert!(
        peak < rss0 + (new - old) + old / 2,
        "the peak resident set grew by {} MiB growing a block from {} to {} MiB",
        peak.saturating_sub(rss0) / MIB,
        old / MIB,
        new / MIB
    );
    assert_eq!(cma::block_size(q), new);
    if q != p {
        assert!(
            cma::checked_block_size(p).is_err(),
            "the old address {p:p} still reads as a live block"
        );
    }

    // It moved (or stayed) with room reserved after it: growing by half
    // again is in place.
    // SAFETY: live, `new` bytes.
    let r = unsafe { cma::realloc(q, next) };
    assert_eq!(r, q, "a huge block that just moved to grow moved again");
    assert_filled(r, new, 2);
    fill(r, next, 3);
    assert_eq!(cma::block_size(r), next);

    // Past that room, its pages move again, as one piece: still no copy.
    let (rss2, _) = rss_and_peak();
    // SAFETY: live, `next` bytes.
    let t = unsafe { cma::realloc(r, last) };
    assert!(!t.is_null());
    let (rss3, _) = rss_and_peak();
    assert!(
        rss3 < rss2 + next / 4,
        "realloc from {} to {} MiB, after a growth in place, added {} MiB to the resident set",
        next / MIB,
        last / MIB,
        (rss3.saturating_sub(rss2)) / MIB
    );
    assert_filled(t, next, 3);
    fill(t, last, 4);
    let before = cma::stats().bytes_in_use;
    // SAFETY: live.
    unsafe { cma::free(t) };
    // The block's pages: at the default level they also hold its 8-byte
    // trailer after the `last` bytes asked for.
    let pages = if cma::check_level() == cma::CheckLevel::Fast {
        last
    } else {
        (last + 8).next_multiple_of(PAGE)
    };
    assert_eq!(before - cma::stats().bytes_in_use, pages as u64);
}

/// Writes one tag byte per page of `[p, p+len)`, from `tag`.
fn tag_pages(p: *mut u8, len: usize, tag: u8) {
    for page in (0..len).step_by(PAGE) {
        // SAFETY: inside the caller's live block of `len` bytes.
        unsafe { *p.add(page) = tag ^ (page / PAGE) as u8 };
    }
}

#[track_caller]
fn assert_tagged(p: *const u8, len: usize, tag: u8) {
    for page in (0..len).step_by(PAGE) {
        // SAFETY: inside the caller's live block of `len` bytes.
        let got = unsafe { *p.add(page) };
        assert_eq!(
            got,
            tag ^ (page / PAGE) as u8,
            "{p:p}: page {} of {len} bytes lost",
            page / PAGE
        );
    }
}

#[test]
fn huge_blocks_resized_on_several_threads_while_another_maps_and_unmaps_keep_their_pages() {
    let _s = serial();
    let before = cma::stats();
    // Two threads grow and shrink huge blocks (their pages move, their
    // granules go back to the kernel), while a third allocates and frees
    // large and huge blocks, so that the address ranges given back are
    // mapped again at once, for segments among others: each block keeps its
    // pages, and the map finds each at its new address.
    let resizers: Vec<_> = (0..2u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut rng = t * 7919 + 1;
                let mut next = move |n: usize| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    (rng % n as u64) as usize
                };
                let mut size = 3 * MIB;
                let mut p = cma::malloc(size);
                let mut tag = t as u8;
                tag_pages(p, size, tag);
                for _ in 0..150 {
                    let new_size = 2 * MIB + PAGE + next(24 * MIB);
                    // SAFETY: live, `size` bytes.
                    let q = unsafe { cma::realloc(p, new_size) };
                    assert!(!q.is_null());
                    assert_tagged(q, size.min(new_size), tag);
                    assert!(cma::block_size(q) >= new_size);
                    tag = tag.wrapping_add(2);
                    (p, size) = (q, new_size);
                    tag_pages(p, size, tag);
                }
                // SAFETY: live.
                unsafe { cma::free(p) };
            })
        })
        .collect();
    let churn = std::thread::spawn(|| {
        let mut held = Vec::new();
        for i in 0..600usize {
            let size = match i % 3 {
                0 => 200 * 1024 + i * PAGE,
                1 => MIB + i * 512,
                _ => 2 * MIB + PAGE + (i % 7) * MIB,
            };
            let p = cma::malloc(size);
            assert!(!p.is_null());
            tag_pages(p, size, i as u8);
            held.push((p, size, i as u8));
            if held.len() > 4 {
                let (p, size, tag) = held.remove(i % held.len());
                assert_tagged(p, size, tag);
                // SAFETY: live.
                unsafe { cma::free(p) };
            }
        }
        for (p, size, tag) in held {
            assert_tagged(p, size, tag);
            // SAFETY: live.
            unsafe { cma::free(p) };
        }
    });
    for t in resizers {
        t.join().unwrap();
    }
    churn.join().unwrap();
    let after = cma::stats();
    assert_eq!(after.bytes_in_use, before.bytes_in_use);
    assert_eq!(
        after.allocations - before.allocations,
        after.frees - before.frees
    );
}
