//! The allocator guard is balanced on every path: after normal calls and after
//! every kind of rejected call, `cma::guard_depth()` is 0 (the original
//! system's error paths could leave it unbalanced). And allocation limits:
//! a request over a limit fails (null or an error) before anything changes.
//!
//! Limits and counters are process-wide, so the tests of this binary run one
//! at a time (a lock), and each clears the limits when it ends, even when it
//! fails. The binary does not use cma as its global allocator.

use std::sync::{Mutex, MutexGuard};

use cma::{AllocLimits, CmaError};

static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the lock and clears the limits on drop.
struct Serial(#[allow(dead_code)] MutexGuard<'static, ()>);

impl Drop for Serial {
    fn drop(&mut self) {
        cma::set_alloc_limits(AllocLimits::default());
    }
}

fn serial() -> Serial {
    let g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    cma::set_alloc_limits(AllocLimits::default());
    Serial(g)
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Counts {
    allocations: u64,
    frees: u64,
    bytes_in_use: u64,
    large_allocations: u64,
}

fn counts() -> Counts {
    let s = cma::stats();
    Counts {
        allocations: s.allocations,
        frees: s.frees,
        bytes_in_use: s.bytes_in_use,
        large_allocations: s.large_allocations,
    }
}

#[track_caller]
fn depth0(what: &str) {
    assert_eq!(cma::guard_depth(), 0, "guard depth after {what}");
}

#[test]
fn guard_depth_is_zero_after_normal_calls() {
    let _s = serial();
    depth0("nothing");
    for size in [
        0usize,
        1,
        24,
        1000,
        70_000,
        cma::MAX_SMALL,
        300 << 10,
        3 << 20,
    ] {
        let p = cma::malloc(size);
        depth0("malloc");
        assert!(cma::block_size(p) >= size);
        depth0("block_size");
        assert!(cma::usable_size(p) >= size);
        depth0("usable_size");
        // SAFETY: a live block.
        let p = unsafe { cma::realloc(p, size * 2 + 1) };
        depth0("realloc");
        // SAFETY: a live block.
        unsafe { cma::free(p) };
        depth0("free");
        let z = cma::calloc(3, size);
        depth0("calloc");
        // SAFETY: a live block.
        unsafe { cma::bzero_and_free(z) };
        depth0("bzero_and_free");
        let a = cma::aligned_alloc(1 << 16, size);
        depth0("aligned_alloc");
        // SAFETY: a live block.
        unsafe { cma::checked_free(a) }.unwrap();
        depth0("checked_free");
        let t = cma::try_alloc_zeroed(size, 64).unwrap();
        depth0("try_alloc_zeroed");
        // SAFETY: a live block.
        let t = unsafe { cma::try_realloc_checked(t.as_ptr(), size / 2) }.unwrap();
        depth0("try_realloc_checked");
        // SAFETY: a live block.
        unsafe { cma::checked_free(t.as_ptr()) }.unwrap();
    }
    // SAFETY: null is accepted.
    unsafe { cma::free(std::ptr::null_mut()) };
    depth0("free(null)");
    // SAFETY: realloc(null) allocates.
    let p = unsafe { cma::realloc(std::ptr::null_mut(), 10) };
    depth0("realloc(null)");
    // SAFETY: realloc(p, 0) frees p and returns a minimal block.
    let p = unsafe { cma::realloc(p, 0) };
    depth0("realloc(p, 0)");
    // SAFETY: a live block.
    unsafe { cma::free(p) };
    cma::trim();
    depth0("trim");
    let _ = cma::stats();
    depth0("stats");
    let _ = cma::alloc_limits();
    depth0("alloc_limits");
    std::thread::spawn(|| {
        depth0("a new thread");
        let p = cma::malloc(100);
        depth0("malloc in a new thread");
        // SAFETY: a live block.
        unsafe { cma::free(p) };
        depth0("free in a new thread");
    })
    .join()
    .unwrap();
}

#[test]
fn guard_depth_is_zero_after_every_rejected_call() {
    let _s = serial();
    let p = cma::malloc(100);
    let big = cma::malloc(300 << 10);
    let freed = cma::malloc(48);
    // SAFETY: a live block.
    unsafe { cma::free(freed) };
    let mut local = 0u64;
    let stack = &mut local as *mut u64 as *mut u8;
    let before = counts();

    // checked_free: every kind of misuse.
    // SAFETY (all of the below): deliberate misuse through the checked API.
    let bad: [(*mut u8, &str); 6] = [
        (freed, "double free"),
        (p.wrapping_add(8), "interior pointer"),
        (
            big.wrapping_add(4096),
            "interior pointer into a large block",
        ),
        (stack, "stack pointer"),
        (0x10 as *mut u8, "pointer to nowhere"),
        (usize::MAX as *mut u8, "pointer past the address space"),
    ];
    for (q, what) in bad {
        let e = unsafe { cma::checked_free(q) }.expect_err(what);
        assert!(e.is_misuse(), "{what}: {e:?}");
        depth0(&format!("checked_free of a {what}"));
        let e2 = cma::checked_block_size(q).expect_err(what);
        assert_eq!(e, e2);
        depth0(&format!("checked_block_size of a {what}"));
        // SAFETY: as above.
        let e3 = unsafe { cma::try_realloc_checked(q, 200) }.expect_err(what);
        assert_eq!(e, e3);
        depth0(&format!("try_realloc_checked of a {what}"));
    }

    // try_alloc: bad alignment, impossible sizes.
    for align in [3usize, 24, 1 << 63] {
        assert!(matches!(
            cma::try_alloc(64, align),
            Err(CmaError::InvalidAlignment { .. })
        ));
        depth0("try_alloc with a bad alignment");
        assert!(matches!(
            cma::try_alloc_zeroed(64, align),
            Err(CmaError::InvalidAlignment { .. })
        ));
        depth0("try_alloc_zeroed with a bad alignment");
    }
    for size in [usize::MAX, isize::MAX as usize, 1 << 50] {
        let e = cma::try_alloc(size, 8).expect_err("an impossible size");
        assert!(matches!(e, CmaError::OutOfMemory { .. }), "{size}: {e:?}");
        depth0("try_alloc of an impossible size");
        assert!(cma::malloc(size).is_null());
        depth0("malloc of an impossible size");
        assert!(cma::calloc(1, size).is_null());
        depth0("calloc of an impossible size");
        // SAFETY: `p` is live; the failed realloc leaves it so.
        assert!(unsafe { cma::realloc(p, size) }.is_null());
        depth0("realloc to an impossible size");
        // SAFETY: as above.
        let e = unsafe { cma::try_realloc_checked(p, size) }.expect_err("an impossible size");
        assert!(!e.is_misuse(), "{e:?}");
        depth0("try_realloc_checked to an impossible size");
    }
    assert!(cma::calloc(usize::MAX / 2, 3).is_null());
    depth0("calloc overflowing count * size");
    assert!(cma::aligned_alloc(3, 64).is_null());
    depth0("aligned_alloc with a bad alignment");

    // try_alloc over limits.
    cma::set_alloc_limits(AllocLimits {
        max_request: Some(4096),
        max_bytes_in_use: None,
    });
    assert!(matches!(
        cma::try_alloc(5000, 8),
        Err(CmaError::RequestLimitExceeded {
            size: 5000,
            limit: 4096
        })
    ));
    depth0("try_alloc over the request limit");
    // SAFETY: `p` is live; the failed realloc leaves it so.
    let e = unsafe { cma::try_realloc_checked(p, 100_000) }
        .expect_err("realloc over the request limit");
    assert!(matches!(e, CmaError::RequestLimitExceeded { .. }), "{e:?}");
    depth0("try_realloc_checked over the request limit");
    let in_use = cma::stats().bytes_in_use as usize;
    cma::set_alloc_limits(AllocLimits {
        max_request: None,
        max_bytes_in_use: Some(in_use + 1000),
    });
    assert!(matches!(
        cma::try_alloc(5000, 8),
        Err(CmaError::TotalLimitExceeded { size: 5000, .. })
    ));
    depth0("try_alloc over the total limit");
    cma::set_alloc_limits(AllocLimits::default());

    assert_eq!(counts(), before, "rejected calls changed the counters");
    // Everything still works, and the blocks the rejected calls named are intact.
    assert!(cma::block_size(p) >= 100);
    // SAFETY: live blocks.
    unsafe {
        cma::free(p);
        cma::free(big);
    }
    depth0("the final frees");
    std::hint::black_box(&mut local);
}

#[test]
fn a_request_over_max_request_fails_and_changes_nothing() {
    let _s = serial();
    let limit = 64 * 1024;
    cma::set_alloc_limits(AllocLimits {
        max_request: Some(limit),
        max_bytes_in_use: None,
    });
    assert_eq!(cma::alloc_limits().max_request, Some(limit));
    let before = counts();
    for size in [limit + 1, cma::MAX_SMALL, 1 << 20, 8 << 20] {
        assert!(cma::malloc(size).is_null(), "malloc({size}) over the limit");
        assert!(
            cma::calloc(1, size).is_null(),
            "calloc(1, {size}) over the limit"
        );
        assert!(
            cma::aligned_alloc(4096, size).is_null(),
            "aligned_alloc(4096, {size}) over the limit"
        );
        assert_eq!(
            cma::try_alloc(size, 8),
            Err(CmaError::RequestLimitExceeded { size, limit }),
            "try_alloc({size}) over the limit"
        );
        assert_eq!(
            cma::try_alloc_zeroed(size, 8),
            Err(CmaError::RequestLimitExceeded { size, limit })
        );
        depth0("a refused request");
        assert_eq!(
            counts(),
            before,
            "a refused request of {size} bytes changed the counters"
        );
    }
    // At the limit, allocation works.
    let p = cma::malloc(limit);
    assert!(!p.is_null());
    let q = cma::malloc(100);
    assert!(!q.is_null());
    // A realloc over the limit returns null and leaves the block intact and usable.
    // SAFETY: `q` is a live block of 100 bytes.
    unsafe { std::ptr::write_bytes(q, 0x3C, 100) };
    let mid = counts();
    // SAFETY: `q` is live.
    let r = unsafe { cma::realloc(q, limit + 200) };
    assert!(r.is_null(), "realloc over the request limit");
    assert_eq!(counts(), mid, "a refused realloc changed the counters");
    // SAFETY: `q` is still a live block of 100 bytes.
    assert!(unsafe { std::slice::from_raw_parts(q, 100) }
        .iter()
        .all(|&b| b == 0x3C));
    assert!(cma::block_size(q) >= 100);
    // SAFETY: `q` is live; a small growth is allowed.
    let q = unsafe { cma::realloc(q, 1000) };
    assert!(!q.is_null());
    // SAFETY: the prefix was kept.
    assert!(unsafe { std::slice::from_raw_parts(q, 100) }
        .iter()
        .all(|&b| b == 0x3C));
    cma::set_alloc_limits(AllocLimits::default());
    assert_eq!(cma::alloc_limits(), AllocLimits::default());
    let big = cma::malloc(limit * 4);
    assert!(!big.is_null(), "limits cleared");
    // SAFETY: live blocks.
    unsafe {
        cma::free(p);
        cma::free(q);
        cma::free(big);
    }
    let after = counts();
    assert_eq!(after.bytes_in_use, before.bytes_in_use);
    depth0("the end");
}

#[test]
fn a_total_over_max_bytes_in_use_fails_and_changes_nothing() {
    let _s = serial();
    let base = cma::stats().bytes_in_use as usize;
    let room = 1 << 20;
    cma::set_alloc_limits(AllocLimits {
        max_request: None,
        max_bytes_in_use: Some(base + room),
    });
    // Fill up to the limit with 64 KiB blocks. The limit is checked against
    // the request; what a block adds to bytes_in_use is its usable size.
    const BLOCK: usize = 64 * 1024;
    let probe = cma::malloc(BLOCK);
    let unit = cma::stats().bytes_in_use as usize - base;
    // SAFETY: live.
    unsafe { cma::free(probe) };
    let expected = (room - BLOCK) / unit + 1;
    let mut blocks = Vec::new();
    loop {
        let p = cma::malloc(64 * 1024);
        if p.is_null() {
            break;
        }
        // SAFETY: a fresh block.
        unsafe { std::ptr::write_bytes(p, blocks.len() as u8, 64 * 1024) };
        blocks.push(p);
        assert!(blocks.len() <= expected, "allocated past the total limit");
    }
    assert_eq!(blocks.len(), expected, "the limit stopped allocation early");
    let before = counts();
    assert!(before.bytes_in_use as usize <= base + room);
    // What is left under the limit (zero at the `fast` level, where the
    // usable size of a 64 KiB block is 64 KiB).
    let left = base + room - before.bytes_in_use as usize;
    for size in [left + 1, left + 64, left + 5000, 300 << 10, 2 << 20] {
        assert!(cma::malloc(size).is_null(), "malloc({size}) over the total");
        let e = cma::try_alloc(size, 8).expect_err("over the total");
        assert!(
            matches!(e, CmaError::TotalLimitExceeded { size: s, limit, .. } if s == size && limit == base + room),
            "{e:?}"
        );
        depth0("a refused request");
        // SAFETY: `blocks[0]` is live.
        assert!(
            unsafe { cma::realloc(blocks[0], 128 * 1024) }.is_null(),
            "realloc growing past the total"
        );
        assert_eq!(
            counts(),
            before,
            "a refused request of {size} bytes changed the counters"
        );
    }
    // Shrinking is allowed; freeing makes room again.
    // SAFETY: `blocks[1]` is live.
    let shrunk = unsafe { cma::realloc(blocks[1], 40_000) };
    assert!(
        !shrunk.is_null(),
        "a shrinking realloc under the total limit"
    );
    blocks[1] = shrunk;
    // SAFETY: live.
    unsafe { cma::free(blocks.pop().unwrap()) };
    let p = cma::malloc(64 * 1024 - 100);
    assert!(!p.is_null(), "a free made room under the total limit");
    blocks.push(p);
    for (i, &b) in blocks.iter().enumerate().take(blocks.len() - 1) {
        let len = if i == 1 { 40_000 } else { 64 * 1024 };
        // SAFETY: live blocks, filled above.
        assert!(
            unsafe { std::slice::from_raw_parts(b, len) }
                .iter()
                .all(|&x| x == i as u8),
            "block {i} damaged"
        );
    }
    cma::set_alloc_limits(AllocLimits::default());
    for b in blocks {
        // SAFETY: live.
        unsafe { cma::free(b) };
    }
    assert_eq!(cma::stats().bytes_in_use as usize, base);
    depth0("the end");
}

// ----- limits against the new size of a realloc and the usable size -----

/// `AllocLimits::max_request` is "the largest single request": a realloc is
/// checked with its new size, even when the block could grow in place.
#[test]
fn realloc_in_place_respects_max_request() {
    let _s = serial();
    let p = cma::malloc(2 << 20);
    cma::set_alloc_limits(AllocLimits {
        max_request: Some(3 << 20),
        max_bytes_in_use: None,
    });
    // SAFETY: `p` is live; a failed realloc leaves it so.
    let q = unsafe { cma::realloc(p, 7 << 19) };
    cma::set_alloc_limits(AllocLimits::default());
    let live = if q.is_null() { p } else { q };
    // SAFETY: live.
    unsafe { cma::free(live) };
    assert!(
        q.is_null(),
        "realloc to 3.5 MiB succeeded under max_request = 3 MiB"
    );
}

/// `AllocLimits::max_bytes_in_use` is "the largest total of bytes in use
/// (usable sizes) after an allocation": the check adds the usable size the
/// block will count for, not the requested size.
#[test]
fn max_bytes_in_use_bounds_the_usable_total() {
    let _s = serial();
    let base = cma::stats().bytes_in_use as usize;
    let limit = base + 70_000;
    cma::set_alloc_limits(AllocLimits {
        max_request: None,
        max_bytes_in_use: Some(limit),
    });
    // 65537 bytes are served by a 73728-byte class.
    let p = cma::malloc(65_537);
    let in_use = cma::stats().bytes_in_use as usize;
    cma::set_alloc_limits(AllocLimits::default());
    if !p.is_null() {
        // SAFETY: live.
        unsafe { cma::free(p) };
    }
    assert!(
        in_use <= limit,
        "bytes in use {in_use} > limit {limit} after an allocation the limit allowed"
    );
}
