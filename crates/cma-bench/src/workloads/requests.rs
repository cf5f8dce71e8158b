//! `requests`, `requests-arena`, `requests-bump`: request-scoped
//! build-and-drop, where arenas pay off. Each "request" builds an index of
//! its words, a `hashbrown` map from a key string to a vector of value
//! strings (about 250 keys, 1,500 strings of 6 to 60 bytes), checks it, and
//! drops it all. The same requests run three ways:
//!
//! - `requests`: on the allocator under test, as ordinary Rust code would
//!   (`String`s and the map in the global heap, each block freed by its
//!   drop);
//! - `requests-arena`: in one `cma::Arena` (cma only): the strings are
//!   written into the arena and never freed one by one, the map and the
//!   vectors are dropped through it, and `reset` releases the request;
//! - `requests-bump`: the same in one `bumpalo::Bump`, whose chunks come
//!   from the allocator under test, reset after each request.

use core::alloc::GlobalAlloc;

use allocator_api2::vec::Vec as AVec;
use hashbrown::DefaultHashBuilder;

use super::Params;
use crate::util::{verify, Rng};

/// Requests per run.
fn requests(p: &Params) -> usize {
    p.n(300, 3000)
}

/// Random lowercase letters that words are cut from, made at compile time.
static TEXT: [u8; 8192] = {
    let mut text = [0u8; 8192];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut i = 0;
    while i < text.len() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        text[i] = b'a' + (x % 26) as u8;
        i += 1;
    }
    text
};

/// What one request is made of: (key, values) pairs, generated the same way
/// for every variant (the generation is not allocation).
struct Request {
    rng: Rng,
    keys: u64,
}

impl Request {
    fn new(number: usize) -> Request {
        Request {
            rng: Rng::new(0x5eed ^ number as u64),
            keys: 200 + (number as u64 % 100),
        }
    }

    /// The next word: 6 to 60 letters of `TEXT`, from a random place (two
    /// random numbers a word, so that the requests' own work stays small
    /// next to their allocations).
    fn word<'b>(&mut self, buf: &'b mut [u8; 64]) -> &'b str {
        let len = 6 + self.rng.below(55);
        let start = self.rng.below(TEXT.len() - len);
        buf[..len].copy_from_slice(&TEXT[start..start + len]);
        // SAFETY: `TEXT` is ASCII letters.
        unsafe { core::str::from_utf8_unchecked(&buf[..len]) }
    }

    /// Values per key: 1 to 11.
    fn values(&mut self) -> usize {
        1 + self.rng.below(11)
    }
}

/// Checks a built request and folds it into a checksum: every key's values
/// add up to what was inserted.
fn check<'a>(
    entries: impl Iterator<Item = (&'a str, usize, usize)>,
    expect_keys: usize,
    expect_values: usize,
) -> u64 {
    let (mut keys, mut values, mut bytes) = (0, 0, 0u64);
    for (key, n, len) in entries {
        keys += 1;
        values += n;
        bytes += key.len() as u64 + len as u64;
    }
    verify(keys == expect_keys, "request keys");
    verify(values == expect_values, "request values");
    bytes
}

/// 15: the requests on the allocator under test (the global heap).
pub fn requests_heap<A: GlobalAlloc + Sync + ?Sized>(_a: &A, p: &Params) -> u64 {
    let mut sum = 0;
    for number in 0..requests(p) {
        let mut req = Request::new(number);
        let mut buf = [0u8; 64];
        let mut map: hashbrown::HashMap<String, Vec<String>> = hashbrown::HashMap::new();
        let mut inserted = 0;
        for _ in 0..req.keys {
            let key = req.word(&mut buf).to_string();
            let n = req.values();
            let mut values = Vec::new();
            for _ in 0..n {
                values.push(req.word(&mut buf).to_string());
            }
            inserted += n;
            if let Some(old) = map.insert(key, values) {
                inserted -= old.len();
            }
        }
        let keys = map.len();
        sum += check(
            map.iter()
                .map(|(k, v)| (k.as_str(), v.len(), v.iter().map(String::len).sum())),
            keys,
            inserted,
        );
    }
    sum
}

/// 16: the requests in one `cma::Arena`, reset after each.
pub fn requests_arena<A: GlobalAlloc + Sync + ?Sized>(_a: &A, p: &Params) -> u64 {
    let mut arena = cma::Arena::new();
    let mut sum = 0;
    for number in 0..requests(p) {
        {
            let arena = &arena;
            let copy = |s: &str| -> &str {
                let p = arena.alloc(s.len(), 1).expect("arena block");
                // SAFETY: a fresh block of `s.len()` bytes, alive until the
                // reset below, which needs the map gone first.
                unsafe {
                    core::ptr::copy_nonoverlapping(s.as_ptr(), p.as_ptr(), s.len());
                    core::str::from_utf8_unchecked(core::slice::from_raw_parts(p.as_ptr(), s.len()))
                }
            };
            sum += build_in(arena, number, copy);
        }
        arena.reset();
    }
    sum
}

/// 17: the requests in one `bumpalo::Bump`, reset after each.
pub fn requests_bump<A: GlobalAlloc + Sync + ?Sized>(_a: &A, p: &Params) -> u64 {
    let mut bump = bumpalo::Bump::new();
    let mut sum = 0;
    for number in 0..requests(p) {
        {
            let bump = &bump;
            sum += build_in(bump, number, |s| &*bump.alloc_str(s));
        }
        bump.reset();
    }
    sum
}

/// Builds and checks request `number` in allocator `alloc`, its strings
/// copied in by `copy` (never freed one by one); drops the map and vectors
/// through the allocator.
fn build_in<'a, Al>(alloc: &'a Al, number: usize, copy: impl Fn(&str) -> &'a str) -> u64
where
    &'a Al: allocator_api2::alloc::Allocator,
{
    let mut req = Request::new(number);
    let mut buf = [0u8; 64];
    let mut map: hashbrown::HashMap<&str, AVec<&str, &Al>, DefaultHashBuilder, &Al> =
        hashbrown::HashMap::with_hasher_in(DefaultHashBuilder::default(), alloc);
    let mut inserted = 0;
    for _ in 0..req.keys {
        let key = copy(req.word(&mut buf));
        let n = req.values();
        let mut values = AVec::new_in(alloc);
        for _ in 0..n {
            values.push(copy(req.word(&mut buf)));
        }
        inserted += n;
        if let Some(old) = map.insert(key, values) {
            inserted -= old.len();
        }
    }
    let keys = map.len();
    check(
        map.iter()
            .map(|(k, v)| (*k, v.len(), v.iter().map(|s| s.len()).sum())),
        keys,
        inserted,
    )
}
