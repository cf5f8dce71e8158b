//! Options from `CMA_OPTIONS` (for example
//! `CMA_OPTIONS=purge_delay_ms=100,limit_request=1M`), parsed without
//! allocating. An unknown key or a malformed value is reported once on stderr
//! and ignored; everything else keeps working.
//!
//! | key | value | effect |
//! | --- | --- | --- |
//! | `check` | `fast` (the default) or `default` | the check level, see `canary` |
//! | `purge_delay_ms` | integer | how long free pages stay committed (default 250) |
//! | `huge_pages` | `0` or `1` | whether segments ask for transparent huge pages (default 1; the first segment only once a second is mapped) |
//! | `purge_thread` | `0` or `1` | whether a quiet program's idle pages are purged by a thread (default 1) |
//! | `limit_request` | size (`K`, `M`, `G` suffixes) | largest single request |
//! | `limit_total` | size | largest total of bytes in use |
//!
//! Other keys are accepted silently when they belong to the front ends
//! (`report`, `json`): those read `CMA_OPTIONS` themselves.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::canary::{self, CheckLevel};
use crate::limits;
use crate::os;
use crate::report;

static PURGE_DELAY_MS: AtomicU64 = AtomicU64::new(250);

static HUGE_PAGES: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(true);

pub(crate) fn huge_pages() -> bool {
    HUGE_PAGES.load(Ordering::Relaxed)
}

pub(crate) fn purge_delay_ms() -> u64 {
    PURGE_DELAY_MS.load(Ordering::Relaxed)
}

/// Reads `CMA_OPTIONS` once, at initialisation.
pub(crate) fn load_from_env() {
    if let Some(value) = os::getenv(c"CMA_OPTIONS") {
        apply(value);
    }
}

/// Keys the engine leaves to the front ends.
const FRONT_END_KEYS: &[&[u8]] = &[b"report", b"json", b"stats"];

/// Applies a comma-separated `key=value` list.
pub fn apply(options: &[u8]) {
    let mut limits = limits::alloc_limits();
    let mut limits_changed = false;
    for item in options.split(|&b| b == b',' || b == b' ') {
        if item.is_empty() {
            continue;
        }
        let (key, value) = match item.iter().position(|&b| b == b'=') {
            Some(i) => (&item[..i], &item[i + 1..]),
            None => (item, &b""[..]),
        };
        match key {
            b"check" => match value {
                b"fast" => canary::set_level(CheckLevel::Fast),
                b"default" => canary::set_level(CheckLevel::Default),
                b"strict" => {
                    warn_value(key, value, "'strict' is not built yet; using 'default'");
                    canary::set_level(CheckLevel::Default);
                }
                _ => warn_value(key, value, "expected fast or default; ignored"),
            },
            b"huge_pages" => match value {
                b"0" => HUGE_PAGES.store(false, Ordering::Relaxed),
                b"1" => HUGE_PAGES.store(true, Ordering::Relaxed),
                _ => warn_value(key, value, "expected 0 or 1; ignored"),
            },
            b"purge_thread" => match value {
                b"0" => crate::purge::disable(),
                b"1" => {}
                _ => warn_value(key, value, "expected 0 or 1; ignored"),
            },
            b"purge_delay_ms" => match parse_size(value) {
                Some(ms) => PURGE_DELAY_MS.store(ms as u64, Ordering::Relaxed),
                None => warn_value(key, value, "expected milliseconds; ignored"),
            },
            b"limit_request" => match parse_size(value) {
                Some(n) => {
                    limits.max_request = Some(n);
                    limits_changed = true;
                }
                None => warn_value(key, value, "expected a size like 4096, 64K or 1M; ignored"),
            },
            b"limit_total" => match parse_size(value) {
                Some(n) => {
                    limits.max_bytes_in_use = Some(n);
                    limits_changed = true;
                }
                None => warn_value(key, value, "expected a size like 4096, 64K or 1M; ignored"),
            },
            k if FRONT_END_KEYS.contains(&k) => {}
            _ => report::warn(format_args!(
                "unknown option '{}' in CMA_OPTIONS ignored",
                Lossy(key)
            )),
        }
    }
    if limits_changed {
        limits::set_alloc_limits(limits);
    }
}

fn warn_value(key: &[u8], value: &[u8], why: &str) {
    report::warn(format_args!(
        "option '{}={}' in CMA_OPTIONS: {why}",
        Lossy(key),
        Lossy(value)
    ));
}

/// Parses `123`, `64K`, `1M`, `2G` (powers of 1024).
pub fn parse_size(value: &[u8]) -> Option<usize> {
    let (digits, shift) = match value.last()? {
        b'k' | b'K' => (&value[..value.len() - 1], 10),
        b'm' | b'M' => (&value[..value.len() - 1], 20),
        b'g' | b'G' => (&value[..value.len() - 1], 30),
        _ => (value, 0),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut n: usize = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add((d - b'0') as usize)?;
    }
    n.checked_mul(1 << shift)
}

/// Shows bytes as text without allocating (invalid UTF-8 as '?').
struct Lossy<'a>(&'a [u8]);

impl core::fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for &b in self.0 {
            let c = if b.is_ascii_graphic() { b as char } else { '?' };
            core::fmt::Write::write_char(f, c)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_suffixes_and_reject_garbage() {
        assert_eq!(parse_size(b"4096"), Some(4096));
        assert_eq!(parse_size(b"64K"), Some(64 << 10));
        assert_eq!(parse_size(b"3m"), Some(3 << 20));
        assert_eq!(parse_size(b"1G"), Some(1 << 30));
        assert_eq!(parse_size(b""), None);
        assert_eq!(parse_size(b"K"), None);
        assert_eq!(parse_size(b"12x"), None);
        assert_eq!(parse_size(b"-1"), None);
        assert_eq!(parse_size(b"99999999999999999999"), None);
        assert_eq!(parse_size(b"99999999999999G"), None);
    }
}
