//! Transparent huge pages: the process's first segment does not ask for them
//! (a small process would pay for zeroing 2 MiB at its first allocation);
//! once a second segment is mapped, both ask (`MADV_HUGEPAGE`, shown as the
//! `hg` flag in `/proc/self/smaps`).
//!
//! One test in this binary, so no other test maps segments meanwhile; the
//! test harness allocates through the system allocator, not cma.

/// Whether the mapping that holds `addr` carries `MADV_HUGEPAGE`, from
/// `/proc/self/smaps`.
fn advised_huge(addr: usize) -> bool {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("read /proc/self/smaps");
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((lo, hi)) = first.split_once('-') {
            if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = (lo..hi).contains(&addr);
                continue;
            }
        }
        if inside {
            if let Some(flags) = line.strip_prefix("VmFlags:") {
                return flags.split_whitespace().any(|f| f == "hg");
            }
        }
    }
    panic!("no mapping holds {addr:#x}");
}

#[test]
fn first_segment_asks_for_huge_pages_only_once_a_second_is_mapped() {
    if std::env::var("CMA_OPTIONS").is_ok_and(|o| o.contains("huge_pages=0")) {
        eprintln!("skipped: huge_pages=0 in CMA_OPTIONS");
        return;
    }
    if !std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists() {
        eprintln!("skipped: this kernel has no transparent huge pages");
        return;
    }
    let small = cma::malloc(64);
    assert!(!small.is_null());
    assert!(
        !advised_huge(small as usize),
        "the first segment asked for huge pages at once"
    );

    // Large blocks up to LARGE_MAX come from segment spans: three of them
    // do not fit in one 4 MiB segment.
    let large: Vec<*mut u8> = (0..3).map(|_| cma::malloc(cma::LARGE_MAX)).collect();
    assert!(large.iter().all(|p| !p.is_null()));
    let segment_of = |p: *mut u8| p as usize >> 22;
    assert!(
        large.iter().any(|&p| segment_of(p) != segment_of(small)),
        "expected a second segment"
    );
    assert!(
        advised_huge(small as usize),
        "the first segment still has no huge-page advice after a second was mapped"
    );
    for &p in &large {
        assert!(advised_huge(p as usize));
    }

    for p in large {
        // SAFETY: live blocks from cma::malloc, freed once.
        unsafe { cma::free(p) };
    }
    // SAFETY: as above.
    unsafe { cma::free(small) };
}
