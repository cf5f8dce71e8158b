//! Small helpers shared by the workloads: a fast deterministic random
//! generator, writing into blocks and checking them, memory readings.

/// wyrand: fast, good enough for picking sizes and slots, and deterministic.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x2545_f491_4f6c_dd1d)
    }

    #[inline]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// Uniform in `0..n` (n > 0).
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }

    /// Uniform in `lo..=hi`.
    #[inline]
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// Log-uniform in `lo..=hi` (both > 0): as many blocks near 64 KiB as near 32 MiB,
    /// per power of two.
    pub fn log_range(&mut self, lo: usize, hi: usize) -> usize {
        let a = (lo as f64).ln();
        let b = (hi as f64).ln();
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((a + (b - a) * u).exp() as usize).clamp(lo, hi)
    }
}

/// Writes `tag` where a program would: the first 64 bytes (or the whole block
/// when smaller), one byte in every 4 KiB page, and the last byte. Every page
/// of the block becomes resident, as it would in real use.
///
/// # Safety
/// `p` is valid for writes of `size` bytes, `size > 0`.
#[inline]
pub unsafe fn touch(p: *mut u8, size: usize, tag: u8) {
    // SAFETY: all offsets are below `size`.
    unsafe {
        core::ptr::write_bytes(p, tag, size.min(64));
        let mut off = 4096;
        while off < size {
            *p.add(off) = tag;
            off += 4096;
        }
        *p.add(size - 1) = tag;
    }
}

/// Checks the first and last byte written by `touch`.
///
/// # Safety
/// `p` is valid for reads of `size` bytes, `size > 0`.
#[inline]
pub unsafe fn check(p: *const u8, size: usize, tag: u8) -> bool {
    // SAFETY: both offsets are below `size`.
    unsafe { core::ptr::read_volatile(p) == tag && *p.add(size - 1) == tag }
}

/// Aborts the workload with a message when a check fails: the parent records
/// the run as failed.
#[track_caller]
pub fn verify(ok: bool, what: &str) {
    if !ok {
        eprintln!("cma-bench: verification failed: {what}");
        std::process::exit(3);
    }
}

/// A field of /proc/self/status in KiB (`VmHWM` is the peak resident set of
/// this process image, `VmRSS` the current one).
pub fn proc_status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The process's resident set now, in KiB, read from `/proc/self/statm`
/// without allocating (a read that called the allocator could make it
/// purge, and the reading is what measures that it did not need to). 0 when
/// it cannot be read.
pub fn resident_kib() -> u64 {
    let mut buf = [0u8; 128];
    // SAFETY: a NUL-terminated path; `buf` is writable for its length; the
    // descriptor is closed before return.
    let n = unsafe {
        let fd = libc::open(c"/proc/self/statm".as_ptr(), libc::O_RDONLY);
        if fd < 0 {
            return 0;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    let text = &buf[..n.max(0) as usize];
    // "size resident shared ...", in pages.
    let pages = text
        .split(|&b| b == b' ')
        .nth(1)
        .and_then(|f| std::str::from_utf8(f).ok())
        .and_then(|f| f.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    pages * page / 1024
}

/// CPU time of the whole process (all its threads, exited ones included), in ns.
pub fn process_cpu_ns() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
}

/// The median of a list (mean of the middle two for an even count).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// The geometric mean of positive values (NaN when empty).
pub fn geomean(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp()
}
