//! The free pages inside partly used slabs go back to the kernel while the
//! program is quiet (`pages::purge_slabs`), and nothing live is touched,
//! even while threads allocate and free as fast as they can with the purge
//! pass running every few milliseconds.
//!
//! Each case runs in a child process of its own: resident memory is
//! process-wide, and the purge delay must be set before cma starts.

use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CHILD: &str = "CMA_TEST_SLAB_PURGE_CHILD";

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

fn child() -> bool {
    std::env::var(CHILD).is_ok()
}

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn free_pages_of_partly_used_slabs_go_back_to_the_kernel() {
    in_child("partly_used_slabs_child", "purge_delay_ms=50");
}

#[test]
fn partly_used_slabs_child() {
    if !child() {
        return;
    }
    // 16 KiB blocks come eight to a slab; keeping one in eight leaves every
    // slab partly used, so none of them is given back whole.
    const BLOCKS: usize = 1024;
    const SIZE: usize = 16 * 1024;
    let blocks: Vec<*mut u8> = (0..BLOCKS)
        .map(|i| {
            let p = cma::malloc(SIZE);
            assert!(!p.is_null());
            // SAFETY: a fresh block of SIZE bytes.
            unsafe { std::ptr::write_bytes(p, (i % 251) as u8, SIZE) };
            p
        })
        .collect();
    let rss_full = rss_bytes();
    let mut keep = Vec::new();
    for (i, &p) in blocks.iter().enumerate() {
        if i % 8 == 0 {
            keep.push((i, p));
        } else {
            // SAFETY: allocated above, freed once.
            unsafe { cma::free(p) };
        }
    }
    let freed = (BLOCKS - keep.len()) * SIZE;
    // Quiet now: no allocator call until the pages are back or 20 s passed.
    let start = Instant::now();
    let mut rss_now = rss_bytes();
    while rss_full.saturating_sub(rss_now) < freed * 3 / 4
        && start.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(20));
        rss_now = rss_bytes();
    }
    assert!(
        rss_full.saturating_sub(rss_now) >= freed * 3 / 4,
        "RSS went from {rss_full} to {rss_now} bytes after freeing {freed} bytes in partly used slabs"
    );
    for (i, p) in keep {
        // SAFETY: still live, SIZE bytes.
        let block = unsafe { std::slice::from_raw_parts(p, SIZE) };
        assert!(
            block.iter().all(|&b| b == (i % 251) as u8),
            "live block {i} changed"
        );
        // SAFETY: allocated above, freed once.
        unsafe { cma::free(p) };
    }
}

#[test]
fn blocks_survive_the_purge_pass_running_beside_busy_threads() {
    in_child("busy_threads_child", "purge_delay_ms=1");
}

/// A block of `size` bytes filled with `tag`, checked before it is freed.
struct Tagged {
    p: usize,
    size: usize,
    tag: u8,
}

impl Tagged {
    fn new(size: usize, tag: u8) -> Tagged {
        let p = cma::malloc(size);
        assert!(!p.is_null());
        // SAFETY: a fresh block of `size` bytes.
        unsafe { std::ptr::write_bytes(p, tag, size) };
        Tagged {
            p: p as usize,
            size,
            tag,
        }
    }

    fn check_and_free(self) {
        // SAFETY: live, `size` bytes, owned by the caller.
        let block = unsafe { std::slice::from_raw_parts(self.p as *const u8, self.size) };
        if let Some(at) = block.iter().position(|&b| b != self.tag) {
            panic!(
                "block {:#x} of {} bytes lost its contents at byte {at} (a page decommitted under it?)",
                self.p, self.size
            );
        }
        // SAFETY: as above, freed once.
        unsafe { cma::free(self.p as *mut u8) };
    }
}

#[test]
fn busy_threads_child() {
    if !child() {
        return;
    }
    let deadline = Instant::now() + Duration::from_millis(1500);
    let (to_other, from_first) = mpsc::channel::<Tagged>();
    let worker = move |seed: u64,
                       give: Option<mpsc::Sender<Tagged>>,
                       take: Option<mpsc::Receiver<Tagged>>| {
        let mut x = seed;
        let mut live: Vec<Tagged> = Vec::new();
        let mut n = 0u64;
        while Instant::now() < deadline {
            for _ in 0..2000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Sizes that fill many slots and slabs of many classes,
                // large ones too, so slabs often turn partly used.
                let size = match x % 10 {
                    0..=5 => 16 + (x >> 8) as usize % 240,
                    6..=8 => 256 + (x >> 8) as usize % 4000,
                    _ => 4096 + (x >> 8) as usize % 60_000,
                };
                if live.len() < 3000 && x % 3 != 0 {
                    live.push(Tagged::new(size, (x >> 20) as u8));
                } else if !live.is_empty() {
                    let b = live.swap_remove((x >> 24) as usize % live.len());
                    match &give {
                        Some(tx) if x % 5 == 0 => tx.send(b).unwrap(),
                        _ => b.check_and_free(),
                    }
                }
                n += 1;
            }
            if let Some(rx) = &take {
                while let Ok(b) = rx.try_recv() {
                    b.check_and_free();
                }
            }
            // A pause now and then, so that slabs stay quiet long enough for
            // the pass to take them.
            if n % 20_000 == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        for b in live {
            b.check_and_free();
        }
        if let Some(rx) = take {
            for b in rx.try_iter() {
                b.check_and_free();
            }
        }
        n
    };
    let first = std::thread::spawn(move || worker(1, Some(to_other), None));
    let second = std::thread::spawn(move || worker(2, None, Some(from_first)));
    let ops = first.join().unwrap() + second.join().unwrap();
    assert!(ops > 10_000, "{ops} operations");
}
