//! Regression: at the `default` check level (slots carry an 8-byte trailer),
//! `realloc(p, usize::MAX)` of a small block computed `new_size + 8` with
//! wrap-around, decided the block "fits in place", returned `p` and wrote the
//! trailer pattern before the slot (into the neighbouring block).
//!
//! The check level is chosen when cma starts, so this binary's single test
//! sets `CMA_OPTIONS` before its first cma call (the test harness itself does
//! not use cma).

#[test]
fn realloc_to_an_impossible_size_fails_and_corrupts_nothing_at_the_default_level() {
    std::env::set_var("CMA_OPTIONS", "check=default");
    assert_eq!(cma::check_level(), cma::CheckLevel::Default);
    for size in [1usize, 24, 100, 1000, 5000] {
        // Neighbouring slots of one class: fill them all, then try to grow
        // each one to an impossible size.
        let blocks: Vec<*mut u8> = (0..16).map(|_| cma::malloc(size)).collect();
        for (i, &p) in blocks.iter().enumerate() {
            assert!(!p.is_null());
            // SAFETY: a live block of `size` bytes.
            unsafe { std::ptr::write_bytes(p, i as u8, size) };
        }
        for &p in &blocks {
            for huge in [usize::MAX, usize::MAX - 7, isize::MAX as usize, 1 << 50] {
                // SAFETY: `p` is live; a failed realloc leaves it so.
                let q = unsafe { cma::realloc(p, huge) };
                assert!(
                    q.is_null(),
                    "realloc({p:p} of {size} bytes, {huge:#x}) returned {q:p}"
                );
                // SAFETY: as above.
                let e = unsafe { cma::try_realloc_checked(p, huge) }.expect_err("impossible size");
                assert!(!e.is_misuse(), "realloc({p:p}, {huge:#x}): {e:?}");
                assert_eq!(cma::guard_depth(), 0);
            }
        }
        for (i, &p) in blocks.iter().enumerate() {
            // SAFETY: live blocks of `size` bytes.
            let bytes = unsafe { std::slice::from_raw_parts(p, size) };
            assert!(
                bytes.iter().all(|&b| b == i as u8),
                "block {i} of {size} bytes damaged"
            );
            assert_eq!(
                cma::checked_block_size(p),
                Ok(size),
                "the trailer of block {i} of {size} bytes"
            );
            // SAFETY: live; a damaged trailer is reported here, not aborted.
            unsafe { cma::checked_free(p) }.unwrap();
        }
    }
}
