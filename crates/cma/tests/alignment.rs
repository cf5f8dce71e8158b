//! Aligned allocations at every power-of-two alignment from 8 bytes to
//! 16 MiB, for sizes at the edges (zero included): aligned, usable, freeable.
//!
//! Regression: `aligned_alloc(8192, 0)` used to return null (a zero-page span
//! request), and `aligned_alloc(8 MiB, 0)` a pointer into an empty,
//! unregistered mapping that `free` rejected as "not a cma block"; and
//! `try_alloc(64, 3)` succeeded (an alignment below 8 was raised to 8 before
//! it was checked for being a power of two).

use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());

fn exercise(align: usize, size: usize) {
    let before = cma::stats();
    let p = cma::aligned_alloc(align, size);
    assert!(!p.is_null(), "aligned_alloc({align}, {size}) returned null");
    assert_eq!(
        p as usize % align,
        0,
        "aligned_alloc({align}, {size}) = {p:p}"
    );
    let usable = cma::checked_block_size(p)
        .unwrap_or_else(|e| panic!("aligned_alloc({align}, {size}) = {p:p}: {e}"));
    assert!(usable >= size);
    // SAFETY: the block holds `usable` bytes.
    unsafe { std::ptr::write_bytes(p, 0x77, usable) };
    let mid = cma::stats();
    assert_eq!(
        mid.allocations,
        before.allocations + 1,
        "aligned_alloc({align}, {size}) not counted"
    );
    // SAFETY: a live block.
    unsafe { cma::checked_free(p) }
        .unwrap_or_else(|e| panic!("free of aligned_alloc({align}, {size}) = {p:p}: {e}"));
    let after = cma::stats();
    assert_eq!(after.frees, before.frees + 1);
    assert_eq!(after.bytes_in_use, before.bytes_in_use);

    let r =
        cma::try_alloc(size, align).unwrap_or_else(|e| panic!("try_alloc({size}, {align}): {e}"));
    assert_eq!(r.as_ptr() as usize % align, 0);
    // SAFETY: a live block.
    unsafe { cma::checked_free(r.as_ptr()) }.unwrap();
    let z = cma::try_alloc_zeroed(size, align)
        .unwrap_or_else(|e| panic!("try_alloc_zeroed({size}, {align}): {e}"));
    assert_eq!(z.as_ptr() as usize % align, 0);
    // SAFETY: a live block of at least `size` bytes.
    assert!(unsafe { std::slice::from_raw_parts(z.as_ptr(), size) }
        .iter()
        .all(|&b| b == 0));
    // SAFETY: a live block.
    unsafe { cma::checked_free(z.as_ptr()) }.unwrap();
}

#[test]
fn zero_byte_requests_at_every_alignment() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for shift in 3..=24 {
        exercise(1 << shift, 0);
    }
}

#[test]
fn edge_sizes_at_every_alignment() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let sizes = [
        1,
        7,
        8,
        9,
        4095,
        4096,
        4097,
        cma::MAX_SMALL - 1,
        cma::MAX_SMALL,
        cma::MAX_SMALL + 1,
        (1 << 20) - 1,
        1 << 20,
        (1 << 20) + 1,
        5 << 20,
    ];
    for shift in 3..=24 {
        for size in sizes {
            exercise(1 << shift, size);
        }
    }
}

#[test]
fn bad_alignments_are_refused() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = cma::stats();
    for align in [0usize, 3, 24, 4097, usize::MAX] {
        assert!(
            cma::aligned_alloc(align, 64).is_null(),
            "aligned_alloc({align}, 64)"
        );
        assert_eq!(
            cma::try_alloc(64, align),
            Err(cma::CmaError::InvalidAlignment { align }),
            "try_alloc(64, {align})"
        );
        assert_eq!(
            cma::try_alloc_zeroed(64, align),
            Err(cma::CmaError::InvalidAlignment { align }),
            "try_alloc_zeroed(64, {align})"
        );
        assert_eq!(cma::guard_depth(), 0);
    }
    let after = cma::stats();
    assert_eq!(
        (after.allocations, after.frees, after.bytes_in_use),
        (before.allocations, before.frees, before.bytes_in_use)
    );
}
