//! The one parser of `CMA_OPTIONS`: the engine, libcma and the `cma`
//! command all read options through it.

use core::fmt;

use crate::check::level::CheckLevel;
use crate::check::switches::CheckSwitch;
use crate::track::sampling::ProfileMode;

/// One option that `parse` understood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting<'a> {
    /// `check=fast|default|strict`: the check level.
    Check(CheckLevel),
    /// `huge_pages=0|1`: whether segments ask for transparent huge pages.
    HugePages(bool),
    /// `purge_thread=0|1`: whether a thread purges a quiet program's pages.
    PurgeThread(bool),
    /// `purge_delay_ms=N`: how long free pages stay committed.
    PurgeDelayMs(u64),
    /// `limit_request=SIZE`: the largest single request.
    LimitRequest(usize),
    /// `limit_total=SIZE`: the largest total of bytes in use.
    LimitTotal(usize),
    /// `report=FILE`: where the engine writes its heap report at exit
    /// (`%p` becomes the pid; `stderr` for stderr).
    Report(&'a [u8]),
    /// `json=FILE`: where `cma run` writes its JSON report.
    Json(&'a [u8]),
    /// `loaded=FILE`: a file libcma creates when it loads (`%p` becomes the
    /// pid); `cma run` tells from it whether the program ran on cma at all.
    Loaded(&'a [u8]),
    /// `stats=...`: accepted for the front ends.
    Stats(&'a [u8]),
    /// `sample=N`: about one small allocation in N is a sampled block on a
    /// guarded page (0: none).
    Sample(u64),
    /// `sample_slots=K`: the pool of sampled blocks has K slots (1 to
    /// 4096), each a page between guard pages.
    SampleSlots(u32),
    /// `sample_seed=S`: the random gaps between sampled blocks repeat from
    /// run to run.
    SampleSeed(u64),
    /// `alloc_log=0|1`: whether allocation logging starts on (every
    /// allocation, reallocation and free; see `observe::alloc_log`).
    AllocLog(bool),
    /// `alloc_log_fd=N`: the file descriptor logged events go to (default
    /// 2, stderr).
    AllocLogFd(i32),
    /// `alloc_log_sample=N`: log about one event in N (default 1: all).
    AllocLogSample(u64),
    /// `quarantine=SIZE`: bytes of freed blocks each thread holds back from
    /// reuse at a checked level (0: none).
    Quarantine(usize),
    /// `quarantine_slots=N`: how many freed blocks each thread holds back at
    /// most (0: none; at most 4096).
    QuarantineSlots(usize),
    /// `exit_check=0|1`: whether the heap is checked at exit at a checked
    /// level (`cma::check_heap`; default 1).
    ExitCheck(bool),
    /// `canary=0|1`, `wipe=0|1`, `kind_check=0|1`, `large_guard=0|1`,
    /// `stacks=0|1`: one check switched on or off, whatever the level's
    /// preset (see [`CheckSwitch`]).
    Switch(CheckSwitch, bool),
    /// `profile=off|sample|all`: which blocks the live-allocation registry
    /// records (none, about one per `profile_rate` bytes, every one).
    Profile(ProfileMode),
    /// `profile_rate=SIZE`: the mean bytes allocated between two samples at
    /// `profile=sample` (default 512K).
    ProfileRate(u64),
    /// `profile_file=FILE`: where the engine writes its heap profile at
    /// exit, for `cma run` (`%p` becomes the pid).
    ProfileFile(&'a [u8]),
}

/// An option that `parse` could not honour as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionError<'a> {
    /// A key cma does not know; ignored.
    UnknownKey {
        /// The key as written.
        key: &'a [u8],
    },
    /// A known key with a value it cannot take; ignored.
    BadValue {
        /// The key as written.
        key: &'a [u8],
        /// The value as written.
        value: &'a [u8],
        /// What the key takes.
        expected: &'static str,
    },
}

impl fmt::Display for OptionError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            OptionError::UnknownKey { key } => {
                write!(f, "unknown option '{}' in CMA_OPTIONS ignored", Lossy(key))
            }
            OptionError::BadValue {
                key,
                value,
                expected,
            } => write!(
                f,
                "option '{}={}' in CMA_OPTIONS: expected {expected}; ignored",
                Lossy(key),
                Lossy(value)
            ),
        }
    }
}

/// Reads a comma- (or space-) separated `key=value` list, calling `each`
/// with every setting it understood and every error, in order. Allocates
/// nothing.
///
/// ```
/// let mut settings = Vec::new();
/// cma::options::parse(b"check=default,limit_total=64M,colour=red", |item| settings.push(item));
/// assert_eq!(settings[0], Ok(cma::options::Setting::Check(cma::CheckLevel::Default)));
/// assert_eq!(settings[1], Ok(cma::options::Setting::LimitTotal(64 << 20)));
/// assert!(settings[2].is_err());
/// ```
pub fn parse<'a>(options: &'a [u8], mut each: impl FnMut(Result<Setting<'a>, OptionError<'a>>)) {
    for item in items(options) {
        parse_item(item, &mut each);
    }
}

/// Sorts a `CMA_OPTIONS` list into what cma honours and what it does not,
/// item by item and without allocating: `keep` gets every item to pass on
/// as it is written, `reject` every error, in order. `cma run` and libcma use
/// it to warn once and hand the processes they start a list that warns no
/// more.
///
/// ```
/// let (mut kept, mut errors) = (Vec::new(), 0);
/// cma::options::sort_items(b"check=strict,colour=red,limit_total=1M", |i| kept.push(i), |_| errors += 1);
/// assert_eq!(kept, [&b"check=strict"[..], &b"limit_total=1M"[..]]);
/// assert_eq!(errors, 1);
/// ```
pub fn sort_items<'a>(
    options: &'a [u8],
    mut keep: impl FnMut(&'a [u8]),
    mut reject: impl FnMut(OptionError<'a>),
) {
    for item in items(options) {
        let mut kept = Some(item);
        parse_item(item, &mut |parsed| {
            if let Err(e) = parsed {
                kept = None;
                reject(e);
            }
        });
        if let Some(item) = kept {
            keep(item);
        }
    }
}

/// The items of a comma- (or space-) separated list, empty ones skipped.
fn items(options: &[u8]) -> impl Iterator<Item = &[u8]> {
    options
        .split(|&b| b == b',' || b == b' ')
        .filter(|item| !item.is_empty())
}

/// Parses one `key=value` item (see `parse`).
fn parse_item<'a>(item: &'a [u8], each: &mut impl FnMut(Result<Setting<'a>, OptionError<'a>>)) {
    let (key, value) = match item.iter().position(|&b| b == b'=') {
        Some(i) => (&item[..i], &item[i + 1..]),
        None => (item, &b""[..]),
    };
    const SIZE: &str = "a size like 4096, 64K or 1M";
    // Err(Some(what the key takes)) for a bad value, Err(None) for an
    // unknown key.
    let parsed = match key {
        b"check" => match value {
            b"fast" => Ok(Setting::Check(CheckLevel::Fast)),
            b"default" => Ok(Setting::Check(CheckLevel::Default)),
            b"strict" => Ok(Setting::Check(CheckLevel::Strict)),
            _ => Err(Some("fast, default or strict")),
        },
        b"huge_pages" => parse_bool(value)
            .map(Setting::HugePages)
            .ok_or(Some("0 or 1")),
        b"purge_thread" => parse_bool(value)
            .map(Setting::PurgeThread)
            .ok_or(Some("0 or 1")),
        b"purge_delay_ms" => parse_size(value)
            .map(|ms| Setting::PurgeDelayMs(ms as u64))
            .ok_or(Some("milliseconds")),
        b"limit_request" => parse_size(value)
            .map(Setting::LimitRequest)
            .ok_or(Some(SIZE)),
        b"limit_total" => parse_size(value).map(Setting::LimitTotal).ok_or(Some(SIZE)),
        b"report" => Ok(Setting::Report(value)),
        b"json" => Ok(Setting::Json(value)),
        b"loaded" => Ok(Setting::Loaded(value)),
        b"stats" => Ok(Setting::Stats(value)),
        b"sample" => parse_size(value)
            .map(|n| Setting::Sample(n as u64))
            .ok_or(Some("a number of allocations (0: off)")),
        b"sample_slots" => parse_size(value)
            .filter(|&n| (1..=4096).contains(&n))
            .map(|n| Setting::SampleSlots(n as u32))
            .ok_or(Some("a number of slots from 1 to 4096")),
        b"sample_seed" => parse_size(value)
            .map(|n| Setting::SampleSeed(n as u64))
            .ok_or(Some("a number")),
        b"alloc_log" => parse_bool(value)
            .map(Setting::AllocLog)
            .ok_or(Some("0 or 1")),
        b"alloc_log_fd" => parse_size(value)
            .filter(|_| value.iter().all(u8::is_ascii_digit))
            .and_then(|fd| i32::try_from(fd).ok())
            .map(Setting::AllocLogFd)
            .ok_or(Some("a file descriptor number")),
        b"alloc_log_sample" => parse_size(value)
            .map(|n| Setting::AllocLogSample(n.max(1) as u64))
            .ok_or(Some("a number of events (1: every one)")),
        b"quarantine" => parse_size(value).map(Setting::Quarantine).ok_or(Some(SIZE)),
        b"quarantine_slots" => parse_size(value)
            .filter(|&n| n <= 4096)
            .map(Setting::QuarantineSlots)
            .ok_or(Some("a count up to 4096")),
        b"exit_check" => parse_bool(value)
            .map(Setting::ExitCheck)
            .ok_or(Some("0 or 1")),
        _ if CheckSwitch::from_name(key).is_some() => CheckSwitch::from_name(key)
            .zip(parse_bool(value))
            .map(|(switch, on)| Setting::Switch(switch, on))
            .ok_or(Some("0 or 1")),
        b"profile" => match value {
            b"off" | b"0" => Ok(Setting::Profile(ProfileMode::Off)),
            b"sample" => Ok(Setting::Profile(ProfileMode::Sample)),
            b"all" => Ok(Setting::Profile(ProfileMode::All)),
            _ => Err(Some("off, sample or all")),
        },
        b"profile_rate" => parse_size(value)
            .filter(|&n| n > 0)
            .map(|n| Setting::ProfileRate(n as u64))
            .ok_or(Some("a size like 512K (the mean bytes between samples)")),
        b"profile_file" => Ok(Setting::ProfileFile(value)),
        _ => Err(None),
    };
    each(parsed.map_err(|expected| match expected {
        Some(expected) => OptionError::BadValue {
            key,
            value,
            expected,
        },
        None => OptionError::UnknownKey { key },
    }));
}

fn parse_bool(value: &[u8]) -> Option<bool> {
    match value {
        b"0" => Some(false),
        b"1" => Some(true),
        _ => None,
    }
}

/// Parses `123`, `64K`, `1M`, `2G` (powers of 1024).
fn parse_size(value: &[u8]) -> Option<usize> {
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
pub(super) struct Lossy<'a>(pub(super) &'a [u8]);

impl fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.0 {
            let c = if b.is_ascii_graphic() { b as char } else { '?' };
            fmt::Write::write_char(f, c)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn all(options: &[u8]) -> Vec<Result<Setting<'_>, OptionError<'_>>> {
        let mut out = Vec::new();
        parse(options, |item| out.push(item));
        out
    }

    #[test]
    fn every_key_parses_and_errors_keep_their_words() {
        assert_eq!(
            all(b"check=fast huge_pages=0,purge_thread=1,purge_delay_ms=100,limit_request=1K,limit_total=2M,report=/r.%p,json=a.json,stats=1,sample=5000,sample_slots=64,sample_seed=7,alloc_log=1,alloc_log_fd=7,profile=sample,profile_rate=64K,profile_file=/p.%p,,"),
            vec![
                Ok(Setting::Check(CheckLevel::Fast)),
                Ok(Setting::HugePages(false)),
                Ok(Setting::PurgeThread(true)),
                Ok(Setting::PurgeDelayMs(100)),
                Ok(Setting::LimitRequest(1024)),
                Ok(Setting::LimitTotal(2 << 20)),
                Ok(Setting::Report(b"/r.%p")),
                Ok(Setting::Json(b"a.json")),
                Ok(Setting::Stats(b"1")),
                Ok(Setting::Sample(5000)),
                Ok(Setting::SampleSlots(64)),
                Ok(Setting::SampleSeed(7)),
                Ok(Setting::AllocLog(true)),
                Ok(Setting::AllocLogFd(7)),
                Ok(Setting::Profile(ProfileMode::Sample)),
                Ok(Setting::ProfileRate(64 << 10)),
                Ok(Setting::ProfileFile(b"/p.%p")),
            ]
        );
        assert_eq!(
            all(b"profile=some")[0].unwrap_err().to_string(),
            "option 'profile=some' in CMA_OPTIONS: expected off, sample or all; ignored"
        );
        assert!(all(b"profile_rate=0")[0].is_err());
        assert_eq!(
            all(b"sample_slots=0")[0].unwrap_err().to_string(),
            "option 'sample_slots=0' in CMA_OPTIONS: expected a number of slots from 1 to 4096; ignored"
        );
        assert!(all(b"alloc_log_fd=2K")[0].is_err());
        assert!(all(b"alloc_log_fd=99999999999")[0].is_err());
        let errors = all(b"x,huge_pages=2,check=strict,check=paranoid");
        assert_eq!(errors.len(), 4);
        assert_eq!(
            errors[0].unwrap_err().to_string(),
            "unknown option 'x' in CMA_OPTIONS ignored"
        );
        assert_eq!(
            errors[1].unwrap_err().to_string(),
            "option 'huge_pages=2' in CMA_OPTIONS: expected 0 or 1; ignored"
        );
        assert_eq!(errors[2], Ok(Setting::Check(CheckLevel::Strict)));
        assert_eq!(
            errors[3].unwrap_err().to_string(),
            "option 'check=paranoid' in CMA_OPTIONS: expected fast, default or strict; ignored"
        );
        assert_eq!(
            all(b"limit_total=\xff")[0].unwrap_err().to_string(),
            "option 'limit_total=?' in CMA_OPTIONS: expected a size like 4096, 64K or 1M; ignored"
        );
    }
}
