//! The leak API from Rust, with the registry off: `leak_summary` (from the
//! counters) and `leak_entries` / `leaks()` (a walk of the slab bitmaps
//! and page blocks) agree with each other and with the blocks a program
//! holds; untracked blocks are ignored; the iterator's body may allocate;
//! the report; `Stats`'s text. Each scenario runs in a child process with
//! one test thread, so that nothing else allocates meanwhile.

use std::process::{Command, Output};

#[global_allocator]
static A: cma::Cma = cma::Cma;

const SCENARIO: &str = "CMA_TEST_LEAKS_SCENARIO";

fn run_child(test: &str, options: &str) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("CMA_OPTIONS", options)
        .env(SCENARIO, "1")
        .output()
        .expect("spawn child")
}

fn in_child() -> bool {
    std::env::var_os(SCENARIO).is_some()
}

fn each_level(test: &str) {
    for options in ["check=fast", "check=default", "check=default,sample=1"] {
        let out = run_child(test, options);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("scenario done"),
            "{options}: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn entries() -> Vec<cma::LeakEntry> {
    let n = cma::leak_entries(&mut []);
    let mut v = vec![cma::LeakEntry::default(); n + 64];
    let n = cma::leak_entries(&mut v);
    v.truncate(n);
    v
}

/// `f()`, read while no allocation or free happened (see `quiet_summary`).
fn quiet<T>(f: impl Fn() -> T) -> T {
    for _ in 0..1000 {
        let before = cma::stats();
        let value = f();
        let after = cma::stats();
        if (before.allocations, before.frees) == (after.allocations, after.frees) {
            return value;
        }
        std::thread::yield_now();
    }
    panic!("the heap never kept still");
}

/// The summary, once the walk and the counters agree on the number of
/// live blocks: the test harness's own threads may allocate now and then,
/// so the two are compared between two reads of the counters that show no
/// allocation and no free in between.
fn quiet_summary() -> cma::LeakSummary {
    let mut last = None;
    for _ in 0..1000 {
        let before = cma::stats();
        let s = cma::leak_summary();
        let walked = cma::leak_entries(&mut []) as u64;
        let after = cma::stats();
        if (before.allocations, before.frees) == (after.allocations, after.frees) {
            assert_eq!(walked, s.live_blocks, "{s:?}");
            return s;
        }
        last = Some((walked, s));
        std::thread::yield_now();
    }
    panic!("the heap never kept still: {last:?}");
}

#[test]
fn summary_and_entries_agree_with_the_blocks_held() {
    if !in_child() {
        return each_level("summary_and_entries_agree_with_the_blocks_held");
    }
    let blocks: Vec<*mut u8> = (0..500).map(|i| cma::malloc(1 + i * 7)).collect();
    let large = cma::malloc(200_000);
    let huge = cma::malloc(3 << 20);
    let s = quiet_summary();
    let e = entries();
    assert_eq!(s.ignored_blocks, 0);
    let mut addresses: Vec<usize> = e.iter().map(|l| l.address).collect();
    addresses.sort_unstable();
    addresses.dedup();
    assert_eq!(addresses.len(), e.len(), "each block once");
    for &p in blocks.iter().chain([&large, &huge]) {
        let hit: Vec<_> = e.iter().filter(|l| l.address == p as usize).collect();
        assert_eq!(hit.len(), 1, "{p:?}");
        assert_eq!(hit[0].size, cma::block_size(p));
    }
    drop(e);
    // Untracked: ignored, and out of the entries and the iterator.
    for &p in &blocks[..10] {
        cma::untrack_leak(p).unwrap();
    }
    cma::untrack_leak(large).unwrap();
    let (u, now) = quiet(|| (cma::leak_summary(), cma::stats()));
    assert_eq!(u.ignored_blocks, 11);
    assert_eq!(u.live_blocks + 11, now.allocations - now.frees);
    assert_eq!(u.live_bytes + u.ignored_bytes, now.bytes_in_use);
    assert!(u.ignored_bytes >= 10 + 200_000, "{u:?}");
    let listed: Vec<usize> = cma::leaks().map(|l| l.address).collect();
    assert!(!listed.contains(&(large as usize)) && !listed.contains(&(blocks[3] as usize)));
    assert!(listed.contains(&(blocks[10] as usize)) && listed.contains(&(huge as usize)));
    cma::track_leak(blocks[3]).unwrap();
    assert_eq!(cma::leak_summary().ignored_blocks, 10);
    // Errors name why a pointer is not a live block.
    let x = 5u64;
    assert!(matches!(
        cma::untrack_leak(&x as *const u64 as *const u8),
        Err(cma::CmaError::NotOurs { .. })
    ));
    // SAFETY: 2 bytes into a live block of at least 8.
    let inside = unsafe { blocks[100].add(2) };
    assert!(matches!(
        cma::untrack_leak(inside),
        Err(cma::CmaError::InteriorPointer { .. })
    ));
    // A freed ignored block is not counted any more.
    for &p in &blocks {
        // SAFETY: live blocks of cma::malloc, freed once.
        unsafe { cma::free(p) };
    }
    assert!(matches!(
        cma::untrack_leak(blocks[0]),
        Err(cma::CmaError::DoubleFree { .. })
    ));
    assert_eq!(cma::leak_summary().ignored_blocks, 1);
    // SAFETY: as above.
    unsafe {
        cma::free(large);
        cma::free(huge);
    }
    assert_eq!(cma::leak_summary().ignored_blocks, 0);
    println!("scenario done");
}

/// The iterator reads the blocks a chunk at a time and holds no lock while
/// the loop's body runs: the body allocates from cma (this program's global
/// allocator) and frees, and every block held throughout is seen once.
#[test]
fn the_iterator_sees_every_block_and_its_body_may_allocate() {
    if !in_child() {
        return each_level("the_iterator_sees_every_block_and_its_body_may_allocate");
    }
    let held: Vec<Box<[u8; 48]>> = (0..3000).map(|_| Box::new([1u8; 48])).collect();
    let mut seen = std::collections::HashMap::new();
    let mut made = Vec::new();
    for leak in cma::leaks() {
        *seen.entry(leak.address).or_insert(0) += 1;
        made.push(vec![0u8; 100]);
        if made.len() > 50 {
            made.clear();
        }
    }
    for b in &held {
        let p = &**b as *const [u8; 48] as usize;
        assert_eq!(seen.get(&p), Some(&1), "{p:#x}");
    }
    println!("scenario done");
}

/// The report: a `cma: leak report:` line with the summary, then the first
/// blocks; untracked ones left out.
#[test]
fn the_report_lists_tracked_blocks() {
    if in_child() {
        let a = cma::malloc(1111);
        let b = cma::malloc(2222);
        cma::untrack_leak(b).unwrap();
        println!("blocks {:#x} {:#x}", a as usize, b as usize);
        cma::report_leaks();
        println!("scenario done");
        return;
    }
    let out = run_child("the_report_lists_tracked_blocks", "check=default");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("scenario done"),
        "{stdout}\n{stderr}"
    );
    let blocks: Vec<u64> = stdout
        .lines()
        .find_map(|l| {
            l.rsplit("blocks ")
                .next()
                .filter(|_| l.contains("blocks 0x"))
        })
        .unwrap()
        .split_whitespace()
        .take(2)
        .map(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).unwrap())
        .collect();
    let head = stderr
        .lines()
        .find(|l| l.starts_with("cma: leak report: "))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(head.contains(", 1 ignored ("), "{head}");
    let line_of = |a: u64| {
        stderr
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(&format!("{a:#018x} ")))
    };
    assert_eq!(
        line_of(blocks[0]),
        Some(&*format!("{:#018x} 1,111 bytes", blocks[0])),
        "{stderr}"
    );
    assert_eq!(line_of(blocks[1]), None, "{stderr}");
}

/// `Stats`'s text: the counters as `cma run` prints them.
#[test]
fn stats_display_shows_the_counters() {
    let p = cma::malloc(100);
    let text = cma::stats().to_string();
    // SAFETY: a live block, freed once.
    unsafe { cma::free(p) };
    for key in [
        "allocations",
        "frees",
        "peak bytes in use",
        "bytes in use",
        "busiest size classes:",
    ] {
        assert!(text.lines().any(|l| l.starts_with(key)), "{key}:\n{text}");
    }
}
