//! `rust-collections`: std collections built and dropped, so the allocations
//! are those Rust code makes through the global allocator.

use core::alloc::GlobalAlloc;
use std::collections::{BTreeMap, HashMap};

use super::Params;
use crate::util::{verify, Rng};

/// 11: Rust-heavy work on std collections. The collections allocate through
/// the global allocator, which in a child process is `Dispatch` routed to the
/// allocator under test; `_a` is that same allocator.
pub fn rust_collections<A: GlobalAlloc + Sync + ?Sized>(_a: &A, p: &Params) -> u64 {
    let t = p.threads.max(1);
    let rounds = p.n(4, 16);
    let keys = 20_000u64;
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..t)
            .map(|id| {
                sc.spawn(move || {
                    let mut rng = Rng::new(11 + id as u64);
                    let mut n = 0u64;
                    for _ in 0..rounds {
                        // A BTreeMap of strings, half of it removed again.
                        let mut tree: BTreeMap<u64, String> = BTreeMap::new();
                        for _ in 0..keys {
                            let k = rng.next() % (keys * 4);
                            tree.insert(k, format!("value-{k}-{}", k % 97));
                        }
                        let all: Vec<u64> = tree.keys().copied().collect();
                        for k in all.iter().step_by(2) {
                            tree.remove(k);
                        }
                        n += tree.values().map(|v| v.len() as u64).sum::<u64>() / 8;
                        // A HashMap from words to vectors of positions.
                        let mut index: HashMap<String, Vec<u32>> = HashMap::new();
                        for i in 0..keys as u32 {
                            let w = format!("w{}", rng.below(3000));
                            index.entry(w).or_default().push(i);
                        }
                        let count: usize = index.values().map(Vec::len).sum();
                        verify(count == keys as usize, "hash map positions");
                        n += index.len() as u64;
                        // Strings built piece by piece, and vectors of them.
                        let mut lines: Vec<String> = Vec::new();
                        for i in 0..keys / 4 {
                            let mut s = String::new();
                            for j in 0..(i % 16) {
                                s.push_str(if j % 2 == 0 { "ab" } else { "cde" });
                            }
                            s.push('\n');
                            lines.push(s);
                        }
                        let joined = lines.concat();
                        verify(
                            joined.len() == lines.iter().map(String::len).sum::<usize>(),
                            "joined string length",
                        );
                        n += joined.len() as u64 / 64;
                        let mut sorted: Vec<Vec<u8>> =
                            lines.into_iter().map(String::into_bytes).collect();
                        sorted.sort();
                        sorted.dedup();
                        n += sorted.len() as u64;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    })
}
