//! Transparent huge pages. By default (`huge_pages=0`) every segment refuses
//! them (`MADV_NOHUGEPAGE`, the `nh` flag in `/proc/self/smaps`), so that
//! pages cma decommits are not refilled by khugepaged. With `huge_pages=1`,
//! the process's first segment does not ask for them (a small process would
//! pay for zeroing 2 MiB at its first allocation); once a second segment is
//! mapped, both ask (`MADV_HUGEPAGE`, the `hg` flag). Huge blocks (a
//! mapping of their own, above `LARGE_MAX`) always ask: their memory is
//! given back whole.
//!
//! Each case runs in a child process of its own (the options must be in
//! place before the first segment); the test harness allocates through the
//! system allocator, not cma.

use std::process::Command;

const CHILD: &str = "CMA_TEST_HUGE_PAGES_CHILD";

/// Runs test `name` of this binary in a child with `CMA_OPTIONS=options`.
fn in_child(name: &str, options: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("CMA_OPTIONS", options)
        .output()
        .expect("spawn child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child {name} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn thp_kernel() -> bool {
    let yes = std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists();
    if !yes {
        eprintln!("skipped: this kernel has no transparent huge pages");
    }
    yes
}

/// Whether the mapping that holds `addr` carries `MADV_HUGEPAGE` (`hg`).
fn advised_huge(addr: usize) -> bool {
    has_flag(addr, "hg")
}

/// Whether the mapping that holds `addr` has VmFlag `flag` in
/// `/proc/self/smaps`.
fn has_flag(addr: usize, flag: &str) -> bool {
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
                return flags.split_whitespace().any(|f| f == flag);
            }
        }
    }
    panic!("no mapping holds {addr:#x}");
}

#[test]
fn by_default_segments_refuse_huge_pages() {
    if thp_kernel() {
        in_child("segments_refuse_huge_pages_child", "");
    }
}

#[test]
fn segments_refuse_huge_pages_child() {
    if std::env::var(CHILD).is_err() {
        return;
    }
    let small = cma::malloc(64);
    let large = cma::malloc(cma::LARGE_MAX / 2);
    assert!(!small.is_null() && !large.is_null());
    for p in [small, large] {
        assert!(
            has_flag(p as usize, "nh"),
            "a segment without MADV_NOHUGEPAGE"
        );
        assert!(!has_flag(p as usize, "hg"));
        // SAFETY: live blocks from cma::malloc, freed once.
        unsafe { cma::free(p) };
    }
}

#[test]
fn with_huge_pages_the_first_segment_asks_only_once_a_second_is_mapped() {
    if thp_kernel() {
        in_child("first_segment_asks_later_child", "huge_pages=1");
    }
}

#[test]
fn first_segment_asks_later_child() {
    if std::env::var(CHILD).is_err() {
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

#[test]
fn huge_blocks_ask_for_huge_pages_whatever_segments_do() {
    if thp_kernel() {
        in_child("huge_block_asks_child", "");
    }
}

#[test]
fn huge_block_asks_child() {
    if std::env::var(CHILD).is_err() {
        return;
    }
    let small = cma::malloc(64);
    let huge = cma::malloc(8 << 20);
    assert!(!small.is_null() && !huge.is_null());
    assert!(
        advised_huge(huge as usize),
        "a huge block without MADV_HUGEPAGE"
    );
    assert!(has_flag(small as usize, "nh"), "segments ask by default");
    // SAFETY: live blocks from cma::malloc, freed once.
    unsafe {
        cma::free(huge);
        cma::free(small);
    }
}
