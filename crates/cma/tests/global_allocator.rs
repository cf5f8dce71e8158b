//! cma as the Rust global allocator: collections, boxes, strings, threads
//! that come and go, big vector growth (realloc), over-aligned types, and
//! statistics that show it all.
//!
//! Everything in this binary, the test harness included, allocates through
//! cma, so counter checks here are lower bounds, not exact counts.

use std::alloc::{GlobalAlloc, Layout};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

#[global_allocator]
static A: cma::Cma = cma::Cma;

/// Owns a live block: cma knows it (and it is not a stray pointer).
#[track_caller]
fn assert_ours<T: ?Sized>(p: *const T) {
    let p = p as *const u8;
    assert!(
        cma::checked_block_size(p).is_ok(),
        "{p:p} is not a live cma block: {:?}",
        cma::checked_block_size(p)
    );
}

#[test]
fn collections_strings_and_boxes_live_in_cma() {
    let before = cma::stats();
    let mut map: HashMap<String, Vec<u64>> = HashMap::new();
    let mut tree: BTreeMap<u64, String> = BTreeMap::new();
    let mut set = HashSet::new();
    let mut queue = VecDeque::new();
    for i in 0..20_000u64 {
        let key = format!("key-{}", i % 3000);
        map.entry(key.clone()).or_default().push(i);
        tree.insert(i.wrapping_mul(0x9E37_79B9_7F4A_7C15), key);
        set.insert(i % 777);
        queue.push_back(Box::new(i));
        if queue.len() > 100 {
            let b = queue.pop_front().unwrap();
            assert_ours(&*b as *const u64);
        }
    }
    assert_eq!(map.len(), 3000);
    assert_eq!(tree.len(), 20_000);
    assert_eq!(set.len(), 777);
    for (k, v) in &map {
        assert_ours(k.as_ptr());
        assert_ours(v.as_ptr());
        let n: u64 = k[4..].parse().unwrap();
        assert!(v.iter().all(|&i| i % 3000 == n));
    }
    let boxed: Box<[u8]> = vec![7u8; 1000].into_boxed_slice();
    assert_ours(boxed.as_ptr());
    let s: String = tree
        .values()
        .take(100)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(",");
    assert_ours(s.as_ptr());
    let mid = cma::stats();
    assert!(
        mid.allocations >= before.allocations + 20_000 + 3000,
        "cma saw the allocations"
    );
    assert!(mid.bytes_in_use > 0);
    drop((map, tree, set, queue, boxed, s));
    let after = cma::stats();
    assert!(
        after.frees >= before.frees + 20_000 + 3000,
        "cma saw the frees"
    );
    assert_eq!(cma::guard_depth(), 0);
}

#[test]
fn threads_that_come_and_go_share_blocks_and_leave_heaps_for_reuse() {
    let shared = Arc::new(Mutex::new(Vec::<Box<[u64]>>::new()));
    for round in 0..8 {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..2000usize {
                        let v: Box<[u64]> =
                            vec![(round * 4 + t) as u64; 1 + i % 200].into_boxed_slice();
                        if i % 3 == 0 {
                            shared.lock().unwrap().push(v);
                        } else {
                            mine.push(v);
                        }
                        if i % 5 == 0 {
                            // Free a block another thread allocated.
                            let other = shared.lock().unwrap().pop();
                            if let Some(b) = other {
                                let tag = b[0];
                                assert!(b.iter().all(|&x| x == tag), "a shared block was damaged");
                            }
                        }
                    }
                    for v in &mine {
                        assert!(v.iter().all(|&x| x == (round * 4 + t) as u64));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }
    let left = std::mem::take(&mut *shared.lock().unwrap());
    for b in &left {
        let tag = b[0];
        assert!(b.iter().all(|&x| x == tag));
    }
    drop(left);
    let s = cma::stats();
    // 32 threads ran, at most a few at a time: their heaps were reused.
    assert!(s.heaps >= 2, "{} heaps", s.heaps);
    assert!(
        s.heaps < 32,
        "thread heaps are reused after their threads end: {} heaps",
        s.heaps
    );
}

#[test]
fn a_big_vec_grows_by_realloc_and_keeps_its_contents() {
    let before = cma::stats();
    let mut v: Vec<u32> = Vec::new();
    let mut moves = 0;
    let mut last = v.as_ptr();
    for i in 0..(8u32 << 20) {
        v.push(i);
        if v.as_ptr() != last {
            moves += 1;
            last = v.as_ptr();
            assert_ours(last);
        }
    }
    assert!(cma::block_size(v.as_ptr() as *const u8) >= v.len() * 4);
    assert!(
        v.iter().enumerate().all(|(i, &x)| x == i as u32),
        "realloc lost contents"
    );
    // Huge blocks grow in place inside their mappings some of the time;
    // doubling from 4 bytes to 32 MiB takes at most ~24 moves.
    assert!(moves <= 26, "{moves} moves");
    let s = cma::stats();
    assert!(
        s.large_allocations > before.large_allocations,
        "the vector went through large blocks"
    );
    assert!(
        s.bytes_in_use >= 32 << 20,
        "bytes in use count the 32 MiB vector"
    );
    assert!(s.peak_bytes_in_use >= s.bytes_in_use);
    v.truncate(1000);
    v.shrink_to_fit();
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u32));
    assert!(
        cma::stats().peak_bytes_in_use >= 32 << 20,
        "the peak remembers the 32 MiB vector"
    );
}

#[repr(C, align(4096))]
struct PageAligned([u8; 4096]);

#[repr(C, align(64))]
struct CacheLine(u64);

#[test]
fn over_aligned_types_and_layouts_are_aligned() {
    let boxes: Vec<Box<PageAligned>> = (0..20)
        .map(|i| Box::new(PageAligned([i as u8; 4096])))
        .collect();
    for (i, b) in boxes.iter().enumerate() {
        let p = &**b as *const PageAligned as usize;
        assert_eq!(p % 4096, 0, "Box<align(4096)> at {p:#x}");
        assert!(b.0.iter().all(|&x| x == i as u8));
        assert_ours(p as *const u8);
    }
    let lines: Vec<CacheLine> = (0..1000).map(CacheLine).collect();
    assert_eq!(lines.as_ptr() as usize % 64, 0);
    let boxed_lines: Vec<Box<CacheLine>> = (0..1000).map(|i| Box::new(CacheLine(i))).collect();
    for b in &boxed_lines {
        assert_eq!(&**b as *const CacheLine as usize % 64, 0);
    }
    for shift in [5u32, 12, 13, 16, 20, 22, 23] {
        let align = 1usize << shift;
        for size in [1usize, 100, 4096, 100_000, 1 << 20, 3 << 20] {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: a non-zero-sized layout.
            let p = unsafe { A.alloc(layout) };
            assert!(!p.is_null(), "{layout:?}");
            assert_eq!(p as usize % align, 0, "{layout:?} at {p:p}");
            // SAFETY: a live block of `size` bytes.
            unsafe { std::ptr::write_bytes(p, 0xA5, size) };
            // SAFETY: grows the block, keeping the layout's alignment.
            let q = unsafe { A.realloc(p, layout, size * 2) };
            assert!(!q.is_null());
            assert_eq!(
                q as usize % align,
                0,
                "realloc of {layout:?} lost its alignment: {q:p}"
            );
            // SAFETY: the first `size` bytes were kept.
            assert!(unsafe { std::slice::from_raw_parts(q, size) }
                .iter()
                .all(|&b| b == 0xA5));
            // SAFETY: allocated above with this alignment and the new size.
            unsafe { A.dealloc(q, Layout::from_size_align(size * 2, align).unwrap()) };
            // SAFETY: a non-zero-sized layout.
            let z = unsafe { A.alloc_zeroed(layout) };
            assert_eq!(z as usize % align, 0);
            // SAFETY: a live block of `size` bytes.
            assert!(unsafe { std::slice::from_raw_parts(z, size) }
                .iter()
                .all(|&b| b == 0));
            // SAFETY: allocated above.
            unsafe { A.dealloc(z, layout) };
        }
    }
    assert_eq!(cma::guard_depth(), 0);
}

#[test]
fn stats_show_per_class_activity() {
    let before = cma::stats();
    let keep: Vec<Box<[u8; 48]>> = (0..5000).map(|_| Box::new([1u8; 48])).collect();
    let s = cma::stats();
    let class = s.classes.iter().position(|c| c.block_size >= 48).unwrap();
    // At the `default` check level a 48-byte block takes the next class up.
    let c48: u64 = s.classes[class..class + 3]
        .iter()
        .map(|c| c.blocks_in_use)
        .sum();
    assert!(c48 >= 5000, "5000 live 48-byte blocks, {c48} counted");
    assert!(s.allocations >= before.allocations + 5000);
    assert!(s.bytes_in_use >= 5000 * 48);
    assert!(s.mapped_bytes as u64 >= s.bytes_in_use);
    assert!(s.metadata_bytes > 0);
    drop(keep);
}
