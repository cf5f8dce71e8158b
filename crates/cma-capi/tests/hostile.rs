//! Bad input through the C API never damages state: `tests/c/hostile.c`
//! drives `cma_checked_free`, `cma_checked_block_size`, `cma_malloc` & co.
//! with a seeded stream of hostile calls (frees and block sizes of stack,
//! static, read-only, code, unmapped, interior and freed addresses and of
//! other allocators' blocks, sizes near `SIZE_MAX`, alignments that are not
//! powers of two, limits of 0, NULL arguments) and checks after every call
//! the error code, exact counters, every live block's bytes and size, the
//! foreign memory and the guard depth (see the program's header). The
//! Rust API's twin is `crates/cma/tests/hostile.rs`.
//!
//! It runs three times: at the `fast` level, at `default`, and under a
//! `CMA_OPTIONS` of random bytes (the C API takes options only from there).
//! CI runs 40 cases of up to 200 calls each per run (under 2 s for the
//! three on the test's debug build of libcma); `CMA_HOSTILE_CASES=N` runs
//! more, `CMA_HOSTILE_SEED=S` repeats a run (a failure names its seed and
//! the command that repeats it; by default each run draws a new seed).

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::Command;

use common::*;

/// A small deterministic generator for the option bytes.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Option bytes: fragments of real keys and values, separators and random
/// bytes, never NUL (an environment variable cannot hold one) and never a
/// setting that would change what the stream expects (a limit) or write
/// files (`report=`, `loaded=`).
fn random_options(rng: &mut XorShift) -> Vec<u8> {
    const PIECES: [&[u8]; 16] = [
        b"check=",
        b"fast",
        b"default",
        b"strict",
        b"purge_delay_ms=",
        b"huge_pages=",
        b"purge_thread=",
        b"0",
        b"1",
        b"64K",
        b"=",
        b",",
        b" ",
        b"limit_",
        b"colour",
        b"\xff\xfe",
    ];
    loop {
        let mut bytes = Vec::new();
        for _ in 0..rng.below(12) {
            if rng.below(3) == 0 {
                bytes.push(1 + rng.below(255) as u8);
            } else {
                bytes.extend_from_slice(PIECES[rng.below(PIECES.len() as u64) as usize]);
            }
        }
        let mut harmless = true;
        engine::options::parse(&bytes, |item| {
            use engine::options::Setting::*;
            if matches!(
                item,
                Ok(LimitRequest(_) | LimitTotal(_) | Report(_) | Loaded(_) | Json(_))
            ) {
                harmless = false;
            }
        });
        if harmless {
            return bytes;
        }
    }
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value} is not a number")),
    )
}

#[test]
fn hostile_calls_through_the_c_api_change_nothing() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("hostile");
    let exe = compile("cc", "hostile.c", &dir, true, &[]);
    let cases = env_number("CMA_HOSTILE_CASES").unwrap_or(40);
    let seed = env_number("CMA_HOSTILE_SEED").unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.map_or(1, |d| d.as_nanos() as u64 % 1_000_000_007)
    });
    let mut rng = XorShift(seed | 1);
    let runs: [(&str, Vec<u8>); 3] = [
        ("fast", b"check=fast".to_vec()),
        ("default", b"check=default".to_vec()),
        ("random options", random_options(&mut rng)),
    ];
    for (i, (name, options)) in runs.iter().enumerate() {
        let run_seed = seed + i as u64;
        let mut cmd = Command::new(&exe);
        cmd.arg(run_seed.to_string()).arg(cases.to_string());
        cmd.env("CMA_OPTIONS", OsStr::from_bytes(options));
        let (o, out, err) = output(preloaded(&mut cmd));
        let again = format!(
            "CMA_HOSTILE_SEED={seed} CMA_HOSTILE_CASES={cases}; this run: CMA_OPTIONS={:?} {} {run_seed} {cases}",
            String::from_utf8_lossy(options),
            exe.display()
        );
        assert!(
            o.status.success(),
            "{name}: {}\n{out}{err}\nto run it again: {again}",
            o.status
        );
        assert!(
            out.contains(&format!("hostile: ok ({cases} cases,")),
            "{name}: {out}{err}\nto run it again: {again}"
        );
        // Whatever the option bytes, cma only warns about them.
        for line in err.lines() {
            assert!(
                line.starts_with("cma: warning: "),
                "{name}: unexpected stderr line {line:?}\nto run it again: {again}"
            );
        }
        eprintln!("{name}: {}", out.trim());
    }
}
