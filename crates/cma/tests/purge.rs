//! Idle memory goes back to the kernel, even when the program goes quiet
//! right after freeing (the purge thread), and live memory is never touched.

use std::time::{Duration, Instant};

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn freed_memory_is_decommitted_while_the_program_is_quiet_and_live_blocks_survive() {
    const BLOCKS: usize = 16 * 1024;
    const SIZE: usize = 4000;
    let mut blocks = Vec::with_capacity(BLOCKS);
    for i in 0..BLOCKS {
        let p = cma::malloc(SIZE);
        assert!(!p.is_null());
        // SAFETY: fresh block of SIZE bytes.
        unsafe { std::ptr::write_bytes(p, (i % 251) as u8, SIZE) };
        blocks.push(p);
    }
    let keep: Vec<*mut u8> = blocks.iter().step_by(1024).copied().collect();
    let rss_full = rss_bytes();
    for (i, &p) in blocks.iter().enumerate() {
        if i % 1024 != 0 {
            // SAFETY: allocated above, freed once.
            unsafe { cma::free(p) };
        }
    }
    // Quiet now: no allocator call until the memory is back or 20 s passed.
    let start = Instant::now();
    let freed = (BLOCKS - keep.len()) * SIZE;
    let mut rss_now = rss_bytes();
    while rss_full.saturating_sub(rss_now) < freed / 2 && start.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(50));
        rss_now = rss_bytes();
    }
    assert!(
        rss_full.saturating_sub(rss_now) >= freed / 2,
        "RSS went from {rss_full} to {rss_now} bytes after freeing {freed} bytes"
    );
    for (k, &p) in keep.iter().enumerate() {
        let expect = ((k * 1024) % 251) as u8;
        // SAFETY: still live, SIZE bytes.
        let block = unsafe { std::slice::from_raw_parts(p, SIZE) };
        assert!(block.iter().all(|&b| b == expect), "live block {k} changed");
        // SAFETY: allocated above, freed once.
        unsafe { cma::free(p) };
    }
}
