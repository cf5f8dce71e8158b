//! Runs a small workload with cma as the global allocator and prints its
//! counters: `cargo run --release -p cma --example counters`.

use std::collections::{BTreeMap, HashMap};

#[global_allocator]
static ALLOC: cma::Cma = cma::Cma;

fn main() {
    let mut words: HashMap<String, usize> = HashMap::new();
    let mut index: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for i in 0..200_000u64 {
        let w = format!("word{}", i.wrapping_mul(2654435761) % 5000);
        *words.entry(w).or_default() += 1;
    }
    for (w, n) in &words {
        index.entry(*n).or_default().push(w.clone());
    }
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut v: Vec<Box<[u8]>> = Vec::new();
                for i in 0..50_000usize {
                    v.push(vec![t as u8; (i * 7) % 3000 + 1].into_boxed_slice());
                    if v.len() > 1000 {
                        v.swap_remove(i % 1000);
                    }
                }
                v.len()
            })
        })
        .collect();
    let kept: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    println!(
        "distinct words: {}, count buckets: {}, blocks kept by threads: {kept}",
        words.len(),
        index.len()
    );
    drop(words);
    drop(index);

    let s = cma::stats();
    println!("allocations      {}", s.allocations);
    println!("frees            {}", s.frees);
    println!("bytes in use     {}", s.bytes_in_use);
    println!("peak bytes       {}", s.peak_bytes_in_use);
    println!("heaps            {}", s.heaps);
    println!("mapped bytes     {}", s.mapped_bytes);
    let mut busiest: Vec<_> = s.classes.iter().filter(|c| c.allocations > 0).collect();
    busiest.sort_by_key(|c| std::cmp::Reverse(c.allocations));
    println!("busiest size classes:");
    for c in busiest.iter().take(5) {
        println!(
            "  {:>7} B: {:>8} allocations, {:>6} in use, peak {}",
            c.block_size, c.allocations, c.blocks_in_use, c.peak_blocks_in_use
        );
    }
}
