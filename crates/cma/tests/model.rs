//! Model test: random sequences of malloc, calloc, realloc, aligned_alloc and
//! free, checked after every step against a shadow model of every live block
//! (its requested size, alignment and content pattern) and of cma's counters.
//!
//! Sizes cluster around the boundaries that change how a block is served:
//! size-class edges, `MAX_SMALL` (largest class), 1 MiB (largest span-served
//! block) and above (huge blocks with their own mapping). Alignments go up to
//! 1 MiB.
//!
//! This binary holds a single model test (run again at the `fast` level in a
//! child) and does not use cma as its global allocator: every cma call in
//! the process is one the model made, so the counter deltas are exact.

use proptest::prelude::*;

/// Blocks above this get a mapping of their own (the engine's threshold).
const LARGE_MAX: usize = cma::LARGE_MAX;

#[derive(Clone, Debug)]
enum Op {
    Malloc(usize),
    Calloc(usize, usize),
    /// Realloc the live block chosen by the index (modulo the live count), or
    /// null when none is live.
    Realloc(usize, usize),
    /// aligned_alloc(1 << shift, size).
    Aligned(u32, usize),
    Free(usize),
    /// Write into the chosen block's slack between requested and usable size
    /// (allowed: usable size is the block's size) and refresh its pattern.
    Rewrite(usize),
}

fn size() -> impl Strategy<Value = usize> {
    let small = cma::MAX_SMALL;
    prop_oneof![
        30 => 0usize..=256,
        15 => 257usize..=16 * 1024,
        5 => 16 * 1024usize..=small,
        10 => (small - 64)..=(small + 64),
        8 => small + 1..=LARGE_MAX,
        5 => (LARGE_MAX - 4096)..=(LARGE_MAX + 4096),
        2 => LARGE_MAX..=3 * LARGE_MAX,
        // Exactly on a size-class edge, or one byte past it.
        10 => (0usize..cma::NUM_CLASSES, 0usize..=1).prop_map(|(i, d)| cma::class_block_sizes()[i] + d),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => size().prop_map(Op::Malloc),
        2 => (0usize..=64, size()).prop_map(|(n, s)| Op::Calloc(n.max(1), s / n.max(1))),
        1 => (0usize..=4, 0usize..=4).prop_map(|(n, s)| Op::Calloc(n, s)),
        5 => (any::<usize>(), size()).prop_map(|(i, s)| Op::Realloc(i, s)),
        // Small shrinks and grows: the in-place paths.
        3 => (any::<usize>(), 0usize..=64).prop_map(|(i, d)| Op::Realloc(i, usize::MAX - d)),
        3 => (3u32..=20, size()).prop_map(|(a, s)| Op::Aligned(a, s)),
        6 => any::<usize>().prop_map(Op::Free),
        1 => any::<usize>().prop_map(Op::Rewrite),
    ]
}

#[derive(Debug)]
struct Live {
    p: *mut u8,
    /// Bytes that hold the pattern.
    len: usize,
    align: usize,
    seed: u64,
    /// Served by whole pages (counted in `large_allocations`).
    large: bool,
}

fn byte(seed: u64, i: usize) -> u8 {
    let x = seed ^ (i as u64 >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> ((i & 7) * 8)) as u8
}

fn word(seed: u64, k: usize) -> u64 {
    seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Writes the pattern (byte `i` is `byte(seed, i)`) a word at a time.
fn fill(p: *mut u8, len: usize, seed: u64) {
    // SAFETY: callers pass a live block of at least `len` bytes.
    let s = unsafe { std::slice::from_raw_parts_mut(p, len) };
    let mut chunks = s.chunks_exact_mut(8);
    for (k, c) in (&mut chunks).enumerate() {
        c.copy_from_slice(&word(seed, k).to_le_bytes());
    }
    let done = len / 8 * 8;
    for (j, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b = byte(seed, done + j);
    }
}

fn check_pattern(p: *const u8, len: usize, seed: u64) -> Result<(), TestCaseError> {
    // SAFETY: callers pass a live block of at least `len` bytes.
    let s = unsafe { std::slice::from_raw_parts(p, len) };
    let full = s.chunks_exact(8);
    let tail_start = len / 8 * 8;
    let bad_chunk = full
        .enumerate()
        .position(|(k, c)| u64::from_le_bytes(c.try_into().unwrap()) != word(seed, k))
        .or_else(|| {
            (tail_start..len)
                .any(|i| s[i] != byte(seed, i))
                .then_some(len / 8)
        });
    if let Some(k) = bad_chunk {
        let i = (k * 8..len).find(|&i| s[i] != byte(seed, i)).unwrap();
        return Err(TestCaseError::fail(format!(
            "block {p:p}: byte {i} of {len} is {:#04x}, expected {:#04x}",
            s[i],
            byte(seed, i)
        )));
    }
    Ok(())
}

struct Model {
    live: Vec<Live>,
    next_seed: u64,
    base_allocs: u64,
    base_frees: u64,
    base_bytes: u64,
    allocs: u64,
    frees: u64,
}

fn c_align(size: usize) -> usize {
    if size >= 16 {
        16
    } else {
        8
    }
}

impl Model {
    fn new() -> Model {
        let s = cma::stats();
        Model {
            live: Vec::new(),
            next_seed: 1,
            base_allocs: s.allocations,
            base_frees: s.frees,
            base_bytes: s.bytes_in_use,
            allocs: 0,
            frees: 0,
        }
    }

    fn seed(&mut self) -> u64 {
        self.next_seed += 1;
        self.next_seed.wrapping_mul(0xD6E8_FEB8_6659_FD93)
    }

    /// Checks a fresh block and adds it to the model, filled.
    fn add(
        &mut self,
        what: &str,
        p: *mut u8,
        size: usize,
        align: usize,
        large_before: u64,
    ) -> Result<(), TestCaseError> {
        prop_assert!(!p.is_null(), "{} returned null", what);
        prop_assert_eq!(
            p as usize % align,
            0,
            "{} returned {:p}, not aligned to {}",
            what,
            p,
            align
        );
        let usable = cma::block_size(p);
        prop_assert!(
            usable >= size,
            "{}: block_size {} < requested {}",
            what,
            usable,
            size
        );
        prop_assert!(
            self.live
                .iter()
                .all(|l| l.p as usize + cma::block_size(l.p) <= p as usize
                    || p as usize + usable <= l.p as usize),
            "{} returned {:p} ({} bytes), overlapping a live block",
            what,
            p,
            usable
        );
        let seed = self.seed();
        fill(p, size, seed);
        let large = cma::stats().large_allocations > large_before;
        self.live.push(Live {
            p,
            len: size,
            align,
            seed,
            large,
        });
        self.allocs += 1;
        Ok(())
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Malloc(size) => {
                let large = cma::stats().large_allocations;
                let p = cma::malloc(size);
                self.add(&format!("malloc({size})"), p, size, c_align(size), large)?;
            }
            Op::Calloc(n, size) => {
                let large = cma::stats().large_allocations;
                let p = cma::calloc(n, size);
                let total = n * size;
                prop_assert!(!p.is_null(), "calloc({}, {}) returned null", n, size);
                // SAFETY: a fresh block of `total` bytes.
                let bytes = unsafe { std::slice::from_raw_parts(p, total) };
                if let Some(i) = bytes.iter().position(|&b| b != 0) {
                    return Err(TestCaseError::fail(format!(
                        "calloc({n}, {size}) = {p:p}: byte {i} is {:#04x}, not zero",
                        bytes[i]
                    )));
                }
                self.add(
                    &format!("calloc({n}, {size})"),
                    p,
                    total,
                    c_align(total),
                    large,
                )?;
            }
            Op::Aligned(shift, size) => {
                let align = 1usize << shift;
                let large = cma::stats().large_allocations;
                let p = cma::aligned_alloc(align, size);
                self.add(
                    &format!("aligned_alloc({align}, {size})"),
                    p,
                    size,
                    align.max(8),
                    large,
                )?;
            }
            Op::Realloc(i, size) => {
                if self.live.is_empty() {
                    let size = size.min(4096);
                    let large = cma::stats().large_allocations;
                    // SAFETY: null allocates.
                    let p = unsafe { cma::realloc(std::ptr::null_mut(), size) };
                    return self.add("realloc(null)", p, size, c_align(size), large);
                }
                let i = i % self.live.len();
                let old = self.live.swap_remove(i);
                let old_usable = cma::block_size(old.p);
                // usize::MAX - d means "near the current size".
                let size = if size > usize::MAX - 100 {
                    let d = usize::MAX - size;
                    if d < 32 {
                        old.len.saturating_sub(d * 16)
                    } else {
                        old.len + (d - 32) * 8
                    }
                } else {
                    size
                };
                check_pattern(old.p, old.len, old.seed)?;
                let large_before = cma::stats().large_allocations;
                // SAFETY: a live block of ours.
                let q = unsafe { cma::realloc(old.p, size) };
                prop_assert!(!q.is_null(), "realloc({:p}, {}) returned null", old.p, size);
                let what = format!(
                    "realloc({:p} of {old_usable} usable bytes, {size}) = {q:p}",
                    old.p
                );
                let kept = old.len.min(size);
                check_pattern(q, kept, old.seed)
                    .map_err(|e| TestCaseError::fail(format!("{what} lost the prefix: {e}")))?;
                let usable = cma::block_size(q);
                prop_assert!(usable >= size, "{}: usable {}", what, usable);
                let large = if q != old.p {
                    // Moved: one allocation and one free; the old block is gone.
                    self.allocs += 1;
                    self.frees += 1;
                    prop_assert_eq!(q as usize % c_align(size), 0, "{}", what);
                    prop_assert!(
                        cma::checked_block_size(old.p).is_err(),
                        "{}: the old block is still live",
                        what
                    );
                    cma::stats().large_allocations > large_before
                } else {
                    old.large
                };
                // In place when the block allows it (see `api::try_realloc`;
                // at the `default` check level slots also hold a trailer and
                // block_size is the requested size, so this is for `fast`).
                let fast = cma::check_level() == cma::CheckLevel::Fast;
                let fits_slot = !old.large && size <= old_usable && size >= old_usable / 2;
                let shrinks_large = old.large
                    && old_usable <= LARGE_MAX
                    && size > cma::MAX_SMALL
                    && size <= old_usable;
                let shrinks_huge = old_usable > LARGE_MAX && size > LARGE_MAX && size <= old_usable;
                if fast && (fits_slot || shrinks_large || shrinks_huge) {
                    prop_assert_eq!(
                        q,
                        old.p,
                        "{} moved although the block could stay in place",
                        what
                    );
                }
                if fast && q == old.p && !old.large {
                    prop_assert!(fits_slot, "{}: a slot resized in place", what);
                }
                if q == old.p && old.large {
                    // At a checked level the block also holds its 8-byte
                    // trailer: it stays a page block while size + 8 is
                    // above the largest slot.
                    let trailer = if fast { 0 } else { 8 };
                    prop_assert!(
                        size + trailer > cma::MAX_SMALL,
                        "{}: a page block resized in place into a slot size",
                        what
                    );
                    if fast {
                        prop_assert_eq!(usable % 4096, 0, "{}", what);
                    }
                }
                if !fast {
                    // A checked level's usable size is the size asked for,
                    // for slots and page blocks alike.
                    prop_assert_eq!(usable, size, "{}", what);
                }
                let seed = self.seed();
                fill(q, size, seed);
                let align = if q == old.p { old.align } else { c_align(size) };
                prop_assert_eq!(q as usize % align, 0);
                self.live.push(Live {
                    p: q,
                    len: size,
                    align,
                    seed,
                    large,
                });
            }
            Op::Free(i) => {
                if self.live.is_empty() {
                    // SAFETY: null is accepted.
                    unsafe { cma::free(std::ptr::null_mut()) };
                    return Ok(());
                }
                let l = self.live.swap_remove(i % self.live.len());
                check_pattern(l.p, l.len, l.seed)?;
                // SAFETY: a live block of ours.
                unsafe { cma::free(l.p) };
                self.frees += 1;
                prop_assert!(
                    cma::checked_block_size(l.p).is_err(),
                    "{:p} is still live after free",
                    l.p
                );
            }
            Op::Rewrite(i) => {
                if self.live.is_empty() {
                    return Ok(());
                }
                let i = i % self.live.len();
                let l = &mut self.live[i];
                check_pattern(l.p, l.len, l.seed)?;
                l.len = cma::block_size(l.p);
                self.next_seed += 1;
                l.seed = self.next_seed.wrapping_mul(0xD6E8_FEB8_6659_FD93);
                fill(l.p, l.len, l.seed);
            }
        }
        self.check_all()
    }

    fn check_all(&self) -> Result<(), TestCaseError> {
        let mut bytes = 0u64;
        for l in &self.live {
            check_pattern(l.p, l.len, l.seed)?;
            prop_assert_eq!(l.p as usize % l.align, 0);
            let usable = cma::block_size(l.p);
            prop_assert!(usable >= l.len);
            bytes += usable as u64;
        }
        let s = cma::stats();
        prop_assert_eq!(
            s.allocations - self.base_allocs,
            self.allocs,
            "allocation count"
        );
        prop_assert_eq!(s.frees - self.base_frees, self.frees, "free count");
        if cma::check_level() == cma::CheckLevel::Fast {
            // (At `default`, block_size is the requested size of a slot.)
            prop_assert_eq!(
                s.bytes_in_use - self.base_bytes,
                bytes,
                "bytes in use vs. the live blocks' usable sizes"
            );
        }
        prop_assert_eq!(cma::guard_depth(), 0);
        Ok(())
    }

    fn free_all(&mut self) -> Result<(), TestCaseError> {
        while let Some(l) = self.live.pop() {
            check_pattern(l.p, l.len, l.seed)?;
            // SAFETY: a live block of ours.
            unsafe { cma::free(l.p) };
            self.frees += 1;
        }
        self.check_all()?;
        let s = cma::stats();
        prop_assert_eq!(s.bytes_in_use, self.base_bytes);
        Ok(())
    }
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model = Model::new();
    let result = ops.iter().try_for_each(|op| model.step(op));
    if result.is_err() {
        // Leave the blocks: a failed case may have damaged them.
        std::mem::forget(model);
        return result;
    }
    model.free_all()
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: if cfg!(debug_assertions) { 32 } else { 512 },
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn allocator_matches_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(&ops)?;
    }
}

/// The same model at the `fast` level, in a child process (the level is
/// chosen when cma starts): its in-place rules and usable sizes differ.
#[test]
fn allocator_matches_the_model_at_the_fast_level() {
    if std::env::var_os("CMA_OPTIONS").is_some() {
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "allocator_matches_the_model", "--test-threads=1"])
        .env("CMA_OPTIONS", "check=fast")
        .output()
        .expect("spawn child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
