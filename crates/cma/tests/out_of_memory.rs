//! Requests the kernel refuses fail at the call: every mapping cma hands out
//! is charged against the commit limit (no `MAP_NORESERVE`), so under
//! `vm.overcommit_memory` 0 (the default) or 2 a request far beyond memory
//! and swap returns null / `OutOfMemory`, as on glibc, and changes nothing.

use std::sync::Mutex;

/// The tests compare process-wide counters: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn kernel_refuses_impossible_requests() -> bool {
    let mode = std::fs::read_to_string("/proc/sys/vm/overcommit_memory").unwrap_or_default();
    if mode.trim() == "1" {
        eprintln!("note: vm.overcommit_memory=1: the kernel grants any request; skipping");
        return false;
    }
    true
}

#[test]
fn a_request_beyond_memory_and_swap_fails_cleanly_and_changes_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !kernel_refuses_impossible_requests() {
        return;
    }
    let keep = cma::malloc(100);
    assert!(!keep.is_null());
    // SAFETY: a fresh block of 100 bytes.
    unsafe { std::ptr::write_bytes(keep, 0x5a, 100) };
    let before = cma::stats();
    for size in [1usize << 44, 1 << 46] {
        assert!(cma::malloc(size).is_null(), "malloc({size}) succeeded");
        assert_eq!(
            cma::try_alloc(size, 64),
            Err(cma::CmaError::OutOfMemory { size })
        );
        assert!(cma::calloc(size >> 20, 1 << 20).is_null());
    }
    // SAFETY: a live block of 100 bytes; growing it fails and keeps it.
    let grown = unsafe { cma::realloc(keep, 1 << 44) };
    assert!(grown.is_null());
    let after = cma::stats();
    assert_eq!(after.allocations, before.allocations);
    assert_eq!(after.bytes_in_use, before.bytes_in_use);
    assert_eq!(after.mapped_bytes, before.mapped_bytes);
    assert!(cma::block_size(keep) >= 100);
    // SAFETY: still live, 100 bytes written above.
    let kept = unsafe { std::slice::from_raw_parts(keep, 100) };
    assert!(
        kept.iter().all(|&b| b == 0x5a),
        "the failed realloc changed the block"
    );
    // SAFETY: still live.
    unsafe { cma::free(keep) };
}

#[test]
fn growing_a_huge_block_beyond_memory_and_swap_fails_and_leaves_it_intact() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !kernel_refuses_impossible_requests() {
        return;
    }
    const MIB: usize = 1 << 20;
    // A huge block, and one that moved to grow (with address space reserved
    // after it): both must survive a refused growth where they are.
    let plain = cma::malloc(3 * MIB);
    let p = cma::malloc(8 * MIB);
    // SAFETY: a live block of 8 MiB.
    let grown = unsafe { cma::realloc(p, 40 * MIB) };
    assert!(!plain.is_null() && !grown.is_null());
    for (block, size) in [(plain, 3 * MIB), (grown, 40 * MIB)] {
        // SAFETY: a live block of `size` bytes.
        unsafe { std::ptr::write_bytes(block, 0x6b, size) };
        let before = cma::stats();
        for huge in [1usize << 44, 1 << 46] {
            // SAFETY: live; a failed realloc leaves it so.
            let q = unsafe { cma::realloc(block, huge) };
            assert!(q.is_null(), "realloc({size} -> {huge}) succeeded");
            // SAFETY: as above.
            let e = unsafe { cma::try_realloc_checked(block, huge) };
            assert_eq!(e, Err(cma::CmaError::OutOfMemory { size: huge }));
        }
        let after = cma::stats();
        assert_eq!(after.allocations, before.allocations);
        assert_eq!(after.frees, before.frees);
        assert_eq!(after.bytes_in_use, before.bytes_in_use);
        assert_eq!(after.mapped_bytes, before.mapped_bytes);
        assert_eq!(cma::block_size(block), size);
        // SAFETY: still live, written above.
        let kept = unsafe { std::slice::from_raw_parts(block, size) };
        assert!(
            kept.iter().all(|&b| b == 0x6b),
            "a refused realloc changed the block"
        );
        // Still usable: it grows as far as memory allows.
        // SAFETY: live.
        let bigger = unsafe { cma::realloc(block, size * 2) };
        assert!(!bigger.is_null());
        // SAFETY: live.
        unsafe { cma::free(bigger) };
    }
}
