//! The `default` check level (`CMA_OPTIONS=check=default`): buffer overflows
//! past the requested size are caught when the block is freed or resized.
//! The level is chosen when cma starts, so each scenario runs in a child
//! process started with that option.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

const SCENARIO: &str = "CMA_TEST_DEFAULT_SCENARIO";

/// Runs `test` (a test of this file) in a child with the default level.
fn run_child(test: &str, scenario: &str) -> std::process::Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("CMA_OPTIONS", "check=default")
        .env(SCENARIO, scenario)
        .output()
        .expect("spawn child")
}

fn scenario() -> Option<String> {
    std::env::var(SCENARIO).ok()
}

#[test]
fn overflow_by_one_byte_aborts_at_free() {
    if let Some(s) = scenario() {
        assert_eq!(cma::check_level(), cma::CheckLevel::Default);
        let p = cma::malloc(100);
        // SAFETY: deliberately writes one byte past the 100 requested (still
        // inside cma's slot, so the test process itself stays sound).
        unsafe { *p.add(if s == "one" { 100 } else { 103 }) = 0x41 };
        // SAFETY: p is live.
        unsafe { cma::free(p) };
        unreachable!("free of an overflowed block returned");
    }
    for which in ["one", "four"] {
        let out = run_child("overflow_by_one_byte_aborts_at_free", which);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "stderr: {stderr}");
        assert!(
            stderr.contains("cma: heap buffer overflow"),
            "stderr: {stderr}"
        );
        assert!(stderr.contains("[in free]"), "stderr: {stderr}");
    }
}

#[test]
fn realloc_of_an_overflowed_block_aborts_whether_it_would_stay_or_move() {
    if let Some(s) = scenario() {
        let p = cma::malloc(100);
        // SAFETY: one byte past the request, inside the slot.
        unsafe { *p.add(100) = 0x41 };
        // 104 fits the same slot; 1000 moves.
        let new_size = if s == "stay" { 104 } else { 1000 };
        // SAFETY: p is live.
        unsafe { cma::realloc(p, new_size) };
        unreachable!("realloc of an overflowed block returned");
    }
    for which in ["stay", "move"] {
        let out = run_child(
            "realloc_of_an_overflowed_block_aborts_whether_it_would_stay_or_move",
            which,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "{which}: {stderr}"
        );
        assert!(
            stderr.contains("cma: heap buffer overflow"),
            "{which}: {stderr}"
        );
        assert!(stderr.contains("[in realloc]"), "{which}: {stderr}");
    }
}

#[test]
fn an_overflow_past_the_new_size_is_caught_after_a_growing_realloc() {
    if scenario().is_some() {
        let mut p = cma::malloc(200);
        // Grow until the block moves (and so gets headroom beyond the size
        // asked for), then write one byte past that size.
        let mut size = 200;
        loop {
            // SAFETY: p is live.
            let q = unsafe { cma::realloc(p, size + 40) };
            size += 40;
            let moved = q != p;
            p = q;
            if moved {
                break;
            }
        }
        // The move took a slot a quarter larger than asked for; the trailer
        // must still guard the size asked for.
        // SAFETY: one byte past the request, inside the slot.
        unsafe { *p.add(size) = 0x41 };
        // SAFETY: p is live.
        unsafe { cma::free(p) };
        unreachable!("free of an overflowed block returned");
    }
    let out = run_child(
        "an_overflow_past_the_new_size_is_caught_after_a_growing_realloc",
        "grow",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "stderr: {stderr}");
    assert!(
        stderr.contains("cma: heap buffer overflow"),
        "stderr: {stderr}"
    );
}

#[test]
fn overflow_is_reported_by_checked_free_and_realloc_without_aborting() {
    if scenario().is_some() {
        let p = cma::malloc(40);
        // SAFETY: one byte past the request, inside the slot (see above).
        let was = unsafe { p.add(40).replace(1) };
        // SAFETY: p is live.
        let err = unsafe { cma::checked_free(p) }.unwrap_err();
        assert!(
            matches!(err, cma::CmaError::BufferOverflow { .. }),
            "{err:?}"
        );
        assert!(matches!(
            cma::checked_block_size(p),
            Err(cma::CmaError::BufferOverflow { .. })
        ));
        // SAFETY: p is live (the failed free changed nothing).
        let err = unsafe { cma::try_realloc_checked(p, 400) }.unwrap_err();
        assert!(
            matches!(err, cma::CmaError::BufferOverflow { .. }),
            "{err:?}"
        );
        // Everything else keeps working.
        let q = cma::malloc(40);
        assert!(!q.is_null());
        // SAFETY: q is live.
        unsafe { cma::free(q) };
        // Repaired, the block frees cleanly (the exit heap check would
        // report it otherwise).
        // SAFETY: the byte written above; p is still live.
        unsafe {
            *p.add(40) = was;
            cma::free(p);
        }
        println!("child-ok");
        return;
    }
    let out = run_child(
        "overflow_is_reported_by_checked_free_and_realloc_without_aborting",
        "checked",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("child-ok"));
}

#[test]
fn correct_programs_run_unchanged_at_the_default_level() {
    if scenario().is_some() {
        let mut blocks: Vec<(*mut u8, usize)> = Vec::new();
        for i in 0..20_000usize {
            let size = (i * 37) % 3000;
            let p = cma::malloc(size);
            assert!(!p.is_null());
            assert_eq!(
                cma::block_size(p),
                size,
                "usable size is the requested size"
            );
            // SAFETY: p has `size` bytes.
            unsafe { std::ptr::write_bytes(p, (i % 256) as u8, size) };
            blocks.push((p, size));
            if i % 3 == 0 {
                let (p, size) = blocks.swap_remove(i % blocks.len());
                let grown = size + 50;
                // SAFETY: p is live.
                let q = unsafe { cma::realloc(p, grown) };
                assert!(!q.is_null());
                // SAFETY: q has `grown` bytes, the first `size` preserved.
                unsafe {
                    let fill = std::slice::from_raw_parts(q, size);
                    assert!(fill.windows(2).all(|w| w[0] == w[1]));
                    std::ptr::write_bytes(q, 7, grown);
                }
                blocks.push((q, grown));
            }
        }
        let c = cma::calloc(10, 10);
        // SAFETY: c has 100 zeroed bytes.
        assert!(unsafe { std::slice::from_raw_parts(c, 100) }
            .iter()
            .all(|&b| b == 0));
        blocks.push((c, 100));
        for (p, _) in blocks {
            // SAFETY: each block is live and freed once.
            unsafe { cma::free(p) };
        }
        println!("child-ok");
        return;
    }
    let out = run_child("correct_programs_run_unchanged_at_the_default_level", "run");
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("child-ok"));
}

#[test]
fn unknown_check_level_is_a_warning_not_a_failure() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "unknown_check_level_child", "--nocapture"])
        .env("CMA_OPTIONS", "check=paranoid,bogus=1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr: {stderr}");
    assert!(
        stderr.contains("cma: warning: option 'check=paranoid'"),
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains("cma: warning: unknown option 'bogus'"),
        "stderr: {stderr}"
    );
}

#[test]
fn unknown_check_level_child() {
    let p = cma::malloc(10);
    assert!(!p.is_null());
    // SAFETY: p is live.
    unsafe { cma::free(p) };
    if std::env::var("CMA_OPTIONS").is_ok_and(|o| o.contains("paranoid")) {
        assert_eq!(cma::check_level(), cma::CheckLevel::Default);
    }
}

#[test]
fn freed_blocks_are_wiped_and_held_back_from_reuse() {
    if scenario().is_some() {
        let p = cma::malloc(48);
        // SAFETY: a fresh block of 48 bytes.
        unsafe { std::ptr::write_bytes(p, 0x5a, 48) };
        // SAFETY: p is live; freed once.
        unsafe { cma::free(p) };
        // SAFETY: deliberately reads the freed block (still mapped: cma's
        // slot, held in quarantine) to see what a use after free would see.
        let after = unsafe { std::slice::from_raw_parts(p, 48) }.to_vec();
        assert!(
            after.iter().all(|&b| b == 0),
            "freed block not wiped: {after:?}"
        );
        // The slot is not handed out again while it is quarantined (the
        // quarantine holds 256 blocks by default).
        let mut again = Vec::new();
        for _ in 0..200 {
            let q = cma::malloc(48);
            assert_ne!(q, p, "a freed slot was handed out again at once");
            again.push(q);
        }
        for q in again {
            // SAFETY: live, freed once.
            unsafe { cma::free(q) };
        }
        // calloc of reused (wiped) slots reads as zero.
        for _ in 0..600 {
            let c = cma::calloc(6, 8);
            // SAFETY: 48 bytes.
            assert!(unsafe { std::slice::from_raw_parts(c, 48) }
                .iter()
                .all(|&b| b == 0));
            // SAFETY: dirty it before it is freed (and wiped again).
            unsafe { std::ptr::write_bytes(c, 0x77, 48) };
            // SAFETY: live, freed once.
            unsafe { cma::free(c) };
        }
        println!("child-ok");
        return;
    }
    let out = run_child("freed_blocks_are_wiped_and_held_back_from_reuse", "wipe");
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("child-ok"));
}

#[test]
fn a_write_after_free_is_reported_when_the_slot_is_reused_after_the_quarantine() {
    if scenario().is_some() {
        let p = cma::malloc(48);
        eprintln!("UAF-ADDR={:#x}", p as usize);
        // SAFETY: p is live; freed once.
        unsafe { cma::free(p) };
        // SAFETY: deliberate misuse: a write into the freed block (still
        // cma's memory, so the test process itself stays sound).
        unsafe { p.add(8).write(0x41) };
        // Frees of other blocks of the class push it out of the quarantine,
        // where it must still read as zero.
        for _ in 0..2000 {
            let q = cma::malloc(48);
            // SAFETY: live, freed once.
            unsafe { cma::free(q) };
        }
        unreachable!("the write after free went unnoticed");
    }
    let out = run_child(
        "a_write_after_free_is_reported_when_the_slot_is_reused_after_the_quarantine",
        "uaf",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "stderr: {stderr}");
    let addr = stderr
        .lines()
        .find_map(|l| l.strip_prefix("UAF-ADDR="))
        .expect("address line")
        .trim()
        .to_string();
    assert!(
        stderr.contains(&format!(
            "cma: write after free: the freed block at {addr} was written after it was freed (size class"
        )),
        "stderr: {stderr}"
    );
}

#[test]
fn a_write_after_free_is_reported_when_the_slot_is_handed_out_again() {
    if scenario().is_some() {
        // No quarantine: the slot comes back at the next allocation of the
        // class, which finds it dirty.
        let p = cma::malloc(48);
        eprintln!("UAF-ADDR={:#x}", p as usize);
        // SAFETY: p is live; freed once.
        unsafe { cma::free(p) };
        // SAFETY: deliberate misuse, as above.
        unsafe { p.add(40).write(1) };
        for _ in 0..200 {
            std::hint::black_box(cma::malloc(48));
        }
        unreachable!("the write after free went unnoticed");
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_write_after_free_is_reported_when_the_slot_is_handed_out_again",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CMA_OPTIONS", "check=default,quarantine_slots=0")
        .env(SCENARIO, "reuse")
        .output()
        .expect("spawn child");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "stderr: {stderr}");
    let addr = stderr
        .lines()
        .find_map(|l| l.strip_prefix("UAF-ADDR="))
        .expect("address line")
        .trim()
        .to_string();
    assert!(
        stderr.contains(&format!("cma: write after free: the freed block at {addr}")),
        "stderr: {stderr}"
    );
    assert!(stderr.contains("[in malloc]"), "stderr: {stderr}");
}

/// Blocks above the small classes carry the same trailer: an overflow of a
/// large block (in a segment) or a huge one (a mapping of its own) by one
/// byte is reported when it is freed, and `block_size` is the size asked for.
#[test]
fn an_overflow_of_a_large_or_huge_block_aborts_at_free() {
    if let Some(s) = scenario() {
        let size = if s == "large" { 200_000 } else { 3 << 20 };
        let p = cma::malloc(size);
        assert_eq!(cma::block_size(p), size);
        // SAFETY: one byte past the request, inside cma's pages.
        unsafe { *p.add(size) = 0x41 };
        // SAFETY: p is live.
        unsafe { cma::free(p) };
        unreachable!("free of an overflowed block returned");
    }
    for (which, block) in [("large", "large block of"), ("huge", "huge block of")] {
        let out = run_child("an_overflow_of_a_large_or_huge_block_aborts_at_free", which);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "{which}: {stderr}"
        );
        assert!(
            stderr.contains("cma: heap buffer overflow") && stderr.contains(block),
            "{which}: {stderr}"
        );
        assert!(stderr.contains("[in free]"), "{which}: {stderr}");
    }
}

/// Large and huge blocks resized in place or moved keep their data and a
/// trailer at the new size: no false report on the way, and an overflow
/// past the new size is caught.
#[test]
fn large_blocks_resized_keep_their_data_and_their_trailer() {
    if let Some(s) = scenario() {
        let mut size = 150_000;
        let mut p = cma::malloc(size);
        // SAFETY: p holds `size` bytes.
        unsafe { core::ptr::write_bytes(p, 0x5a, size) };
        for next in [300_000, 5 << 20, 9 << 20, 400_000, 140_000, 1_000] {
            // SAFETY: p is live.
            let q = unsafe { cma::realloc(p, next) };
            assert!(!q.is_null());
            // SAFETY: q holds `next` bytes, the first min(size, next) kept.
            let kept = unsafe { core::slice::from_raw_parts(q, size.min(next)) };
            assert!(kept.iter().all(|&b| b == 0x5a), "{size} -> {next}");
            // SAFETY: as above.
            unsafe { core::ptr::write_bytes(q, 0x5a, next) };
            assert_eq!(cma::block_size(q), next);
            (p, size) = (q, next);
        }
        // SAFETY: q is live; back to a large block.
        p = unsafe { cma::realloc(p, 600_000) };
        if s == "overflow" {
            // SAFETY: one byte past the new size, inside cma's pages.
            unsafe { *p.add(600_000) = 1 };
        }
        // SAFETY: p is live.
        unsafe { cma::free(p) };
        println!("resized-ok");
        return;
    }
    let out = run_child(
        "large_blocks_resized_keep_their_data_and_their_trailer",
        "clean",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("resized-ok"),
        "{stderr}"
    );
    let out = run_child(
        "large_blocks_resized_keep_their_data_and_their_trailer",
        "overflow",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{stderr}");
    assert!(stderr.contains("cma: heap buffer overflow"), "{stderr}");
}

/// A huge mapping kept for reuse forgets the family of its last block: a
/// `new[]` block freed by `delete[]`, then a `malloc` block of the same size
/// (the same mapping) freed by `free`, is no mismatch.
#[test]
fn a_reused_huge_mapping_takes_the_family_of_its_new_block() {
    if scenario().is_some() {
        let size = 3 << 20;
        let p = cma::faces::alloc_of_kind(size, 16, cma::AllocKind::NewArray);
        // SAFETY: p is a live new[] block.
        unsafe { cma::faces::free_of_kind(p, "operator delete[]", cma::AllocKind::NewArray) };
        let q = cma::malloc(size);
        assert_eq!(p, q, "the cached mapping was not reused");
        // SAFETY: q is live, from malloc.
        unsafe { cma::free(q) };
        println!("reuse-ok");
        return;
    }
    let out = run_child(
        "a_reused_huge_mapping_takes_the_family_of_its_new_block",
        "run",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("reuse-ok"),
        "{stderr}"
    );
}

/// A freed huge block's mapping is made inaccessible until it is reused: a
/// read through a stale pointer faults and is reported with the block;
/// the mapping, reused, is readable and writable again.
#[test]
fn a_use_after_free_of_a_huge_block_faults() {
    if let Some(s) = scenario() {
        let size = 3 << 20;
        let p = cma::malloc(size);
        // SAFETY: p holds `size` bytes.
        unsafe { core::ptr::write_bytes(p, 1, size) };
        // SAFETY: p is live.
        unsafe { cma::free(p) };
        eprintln!("HUGE-ADDR={:#x}", p as usize);
        if s == "reuse" {
            let q = cma::malloc(size);
            assert_eq!(q, p, "the freed mapping was not reused");
            // SAFETY: q holds `size` bytes.
            unsafe { core::ptr::write_bytes(q, 2, size) };
            // SAFETY: q is live.
            unsafe { cma::free(q) };
            println!("reuse-ok");
            return;
        }
        // SAFETY: deliberately reads the freed block (its mapping is still
        // cma's, without access).
        let v = unsafe { p.add(100).read_volatile() };
        eprintln!("read {v}");
        eprintln!("HUGE-SURVIVED");
        return;
    }
    let test = "a_use_after_free_of_a_huge_block_faults";
    let out = run_child(test, "read");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{stderr}");
    let addr = stderr
        .lines()
        .find_map(|l| l.strip_prefix("HUGE-ADDR=0x"))
        .and_then(|a| usize::from_str_radix(a, 16).ok())
        .expect("the child's address");
    let expected = format!(
        "cma: use after free: read of {:#x}, 100 bytes into the freed huge block of",
        addr + 100
    );
    assert!(
        stderr.contains(&expected)
            && stderr.contains(&format!("at {addr:#x} [in a memory access]")),
        "expected {expected:?} in\n{stderr}"
    );
    let out = run_child(test, "reuse");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("reuse-ok"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The address a child printed after `prefix` (hexadecimal, `0x...`).
fn child_addr(stderr: &str, prefix: &str) -> usize {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix(prefix)?.strip_prefix("0x"))
        .and_then(|a| usize::from_str_radix(a, 16).ok())
        .expect("the child's address")
}

/// A large block's page-rounded end is followed by a guard page: a write
/// one byte past it faults at once and is reported as an overflow into the
/// guard of that block (a 256 KiB block whose trailer fills its last page,
/// and one asked for 256 KiB, whose trailer takes a page more).
#[test]
fn a_write_past_the_page_rounded_end_of_a_large_block_faults() {
    const PAGE: usize = 4096;
    if let Some(s) = scenario() {
        let size = if s == "exact" {
            (256 << 10) - 8
        } else {
            256 << 10
        };
        let p = cma::malloc(size);
        assert_eq!(cma::block_size(p), size);
        let end = (size + 8).div_ceil(PAGE) * PAGE;
        // SAFETY: p's pages up to `end` are the block's.
        unsafe { core::ptr::write_bytes(p, 7, end) };
        eprintln!("LARGE-ADDR={:#x}", p as usize);
        // SAFETY: deliberately writes one byte past the block's pages (into
        // cma's guard page, which faults).
        unsafe { p.add(end).write_volatile(1) };
        eprintln!("LARGE-SURVIVED");
        return;
    }
    for (which, bytes) in [("exact", 256 << 10), ("request", 260 << 10)] {
        let out = run_child(
            "a_write_past_the_page_rounded_end_of_a_large_block_faults",
            which,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "{which}: {stderr}"
        );
        let addr = child_addr(&stderr, "LARGE-ADDR=");
        let expected = format!(
            "cma: heap buffer overflow: write of {:#x}, 0 bytes past the end of the large block of {bytes} bytes at {addr:#x} (into its guard page) [in a memory access]",
            addr + bytes
        );
        assert!(
            stderr.contains(&expected),
            "{which}: expected {expected:?} in\n{stderr}"
        );
    }
}

/// A freed large block is sealed like a huge one: a read through a stale
/// pointer faults and is reported as a use after free of that large block.
/// A block freed and allocated again while other freed ones wait gets the
/// oldest mapping, readable and writable, with its guard.
#[test]
fn a_use_after_free_of_a_large_block_faults() {
    if let Some(s) = scenario() {
        let size = 256 << 10;
        let p = cma::malloc(size);
        // SAFETY: p holds `size` bytes.
        unsafe { core::ptr::write_bytes(p, 1, size) };
        // SAFETY: p is live.
        unsafe { cma::free(p) };
        eprintln!("LARGE-ADDR={:#x}", p as usize);
        if s == "reuse" {
            let q = cma::malloc(size);
            assert!(!q.is_null());
            // SAFETY: q holds `size` bytes.
            unsafe { core::ptr::write_bytes(q, 2, size) };
            // SAFETY: q is live.
            let kept = unsafe { core::slice::from_raw_parts(q, size) };
            assert!(kept.iter().all(|&b| b == 2));
            // SAFETY: q is live.
            unsafe { cma::free(q) };
            println!("reuse-ok");
            return;
        }
        // SAFETY: deliberately reads the freed block (its mapping is still
        // cma's, without access).
        let v = unsafe { p.add(100).read_volatile() };
        eprintln!("read {v}");
        eprintln!("LARGE-SURVIVED");
        return;
    }
    let test = "a_use_after_free_of_a_large_block_faults";
    let out = run_child(test, "read");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{stderr}");
    let addr = child_addr(&stderr, "LARGE-ADDR=");
    let expected = format!(
        "cma: use after free: read of {:#x}, 100 bytes into the freed large block of {} bytes at {addr:#x} [in a memory access]",
        addr + 100,
        260 << 10
    );
    assert!(
        stderr.contains(&expected),
        "expected {expected:?} in\n{stderr}"
    );
    let out = run_child(test, "reuse");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("reuse-ok"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Freed large blocks are reused oldest first: with several freed, the
/// newest stays sealed while a new block is made, and a read of it faults.
#[test]
fn a_freed_large_block_stays_sealed_while_older_ones_are_reused() {
    if scenario().is_some() {
        let size = 300 << 10;
        let blocks: Vec<*mut u8> = (0..4).map(|_| cma::malloc(size)).collect();
        for &b in &blocks {
            // SAFETY: each block is live and freed once.
            unsafe { cma::free(b) };
        }
        let last = blocks[3];
        let q = cma::malloc(size);
        assert_ne!(q, last, "the newest freed mapping was reused first");
        eprintln!("LARGE-ADDR={:#x}", last as usize);
        // SAFETY: deliberately reads the freed block.
        let v = unsafe { last.read_volatile() };
        eprintln!("read {v}");
        return;
    }
    let test = "a_freed_large_block_stays_sealed_while_older_ones_are_reused";
    let out = run_child(test, "run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{stderr}");
    let addr = child_addr(&stderr, "LARGE-ADDR=");
    assert!(
        stderr.contains(&format!(
            "cma: use after free: read of {addr:#x}, 0 bytes into the freed large block"
        )),
        "{stderr}"
    );
}

/// Guarded large blocks resized (grown and shrunk in their mapping, into
/// a huge block and back) keep their data, and the guard follows the end:
/// a write just past the new page-rounded end faults.
#[test]
fn a_resized_large_block_keeps_its_data_and_its_guard() {
    const PAGE: usize = 4096;
    if let Some(s) = scenario() {
        let mut size = 200_000;
        let mut p = cma::malloc(size);
        // SAFETY: p holds `size` bytes.
        unsafe { core::ptr::write_bytes(p, 0x3c, size) };
        for next in [900_000, 150_000, 3 << 20, 500_000, 1_500_000, 131_073] {
            // SAFETY: p is live.
            let q = unsafe { cma::realloc(p, next) };
            assert!(!q.is_null());
            // SAFETY: q holds `next` bytes, the first min(size, next) kept.
            let kept = unsafe { core::slice::from_raw_parts(q, size.min(next)) };
            assert!(kept.iter().all(|&b| b == 0x3c), "{size} -> {next}");
            // SAFETY: q holds `next` bytes.
            unsafe { core::ptr::write_bytes(q, 0x3c, next) };
            (p, size) = (q, next);
        }
        if s == "guard" {
            let end = (size + 8).div_ceil(PAGE) * PAGE;
            eprintln!("LARGE-ADDR={:#x}", p as usize);
            // SAFETY: deliberately one byte past the block's pages.
            unsafe { p.add(end).write_volatile(1) };
            eprintln!("LARGE-SURVIVED");
            return;
        }
        // SAFETY: p is live.
        unsafe { cma::free(p) };
        assert!(cma::check_heap().is_ok());
        println!("resized-ok");
        return;
    }
    let test = "a_resized_large_block_keeps_its_data_and_its_guard";
    let out = run_child(test, "clean");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("resized-ok"),
        "{stderr}"
    );
    let out = run_child(test, "guard");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{stderr}");
    assert!(
        stderr.contains("cma: heap buffer overflow: write of")
            && stderr.contains("(into its guard page)"),
        "{stderr}"
    );
}

/// Lines of this process's `/proc/self/maps`: its mappings.
fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

/// Guarded large blocks cost about two mappings each, and only 4096 live
/// at once: past that, large blocks are segment spans (no guard), so a
/// program with many large blocks stays far from the kernel's limit on
/// mappings. Both kinds are seen by the heap check, the leak walk and the
/// statistics, and freed the same way.
#[test]
fn guarded_large_blocks_are_capped_by_the_mapping_budget() {
    if scenario().is_some() {
        let size = 140_000;
        let before = mappings();
        let stats_before = cma::stats();
        let blocks: Vec<usize> = (0..5000).map(|_| cma::malloc(size) as usize).collect();
        assert!(blocks.iter().all(|&b| b != 0));
        let added = mappings() - before;
        // 4096 guarded blocks (block + guard, neighbours may merge) and a
        // few segments for the 904 others.
        assert!(
            (4096..=2 * 4096 + 200).contains(&added),
            "{added} mappings for 5000 large blocks"
        );
        assert!(cma::check_heap().is_ok());
        let listed: std::collections::HashSet<usize> = cma::leaks().map(|l| l.address).collect();
        assert!(blocks.iter().all(|b| listed.contains(b)));
        let stats = cma::stats();
        assert_eq!(
            stats.large_allocations - stats_before.large_allocations,
            5000
        );
        for &b in &blocks {
            // SAFETY: each block is live and freed once.
            unsafe { cma::free(b as *mut u8) };
        }
        let stats = cma::stats();
        assert_eq!(stats.large_frees - stats_before.large_frees, 5000);
        assert!(cma::check_heap().is_ok());
        // What the freed blocks left committed is counted, and all of it
        // goes back.
        assert!(stats.dirty_free_bytes > 0);
        cma::trim();
        assert_eq!(cma::stats().dirty_free_bytes, 0);
        // The freed guarded mappings beyond the huge cache's 16 are gone.
        let left = mappings().saturating_sub(before);
        assert!(left < 200, "{left} mappings left after the frees");
        println!("budget-ok {added}");
        return;
    }
    let out = run_child(
        "guarded_large_blocks_are_capped_by_the_mapping_budget",
        "run",
    );
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("budget-ok"),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `fast` is unchanged: large blocks are segment spans there, with no
/// mapping (and no system call) of their own.
#[test]
fn large_blocks_get_no_guard_at_fast() {
    if scenario().is_some() {
        assert_eq!(cma::check_level(), cma::CheckLevel::Fast);
        let before = mappings();
        let blocks: Vec<*mut u8> = (0..100).map(|_| cma::malloc(256 << 10)).collect();
        let added = mappings().saturating_sub(before);
        assert!(added < 20, "{added} mappings for 100 large blocks at fast");
        for &b in &blocks {
            // SAFETY: each block is live and freed once.
            unsafe { cma::free(b) };
        }
        println!("fast-ok {added}");
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "large_blocks_get_no_guard_at_fast",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CMA_OPTIONS", "check=fast")
        .env(SCENARIO, "run")
        .output()
        .expect("spawn child");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("fast-ok"),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A freed guarded mapping reused for a smaller large block keeps no
/// memory past the new block: once purged and reused for a huge block, a
/// `calloc` of it reads zero throughout (found by the model test).
#[test]
fn a_reused_guarded_mapping_hands_out_zeroed_memory_to_calloc() {
    if scenario().is_some() {
        let p = cma::malloc(1_500_000);
        // SAFETY: p holds 1,500,000 bytes.
        unsafe { core::ptr::write_bytes(p, 0x2b, 1_500_000) };
        // SAFETY: p is live.
        unsafe { cma::free(p) };
        let q = cma::malloc(200_000);
        assert_eq!(q, p, "the freed mapping was not reused");
        // SAFETY: q is live.
        unsafe { cma::free(q) };
        cma::trim();
        let n = 3 << 20;
        let c = cma::calloc(1, n);
        assert_eq!(c, p, "the freed mapping was not reused");
        // SAFETY: c holds n bytes.
        let bytes = unsafe { core::slice::from_raw_parts(c, n) };
        assert_eq!(bytes.iter().position(|&b| b != 0), None);
        // SAFETY: c is live.
        unsafe { cma::free(c) };
        println!("calloc-ok");
        return;
    }
    let out = run_child(
        "a_reused_guarded_mapping_hands_out_zeroed_memory_to_calloc",
        "run",
    );
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("calloc-ok"),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
