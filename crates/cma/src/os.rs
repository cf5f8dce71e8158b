//! The only module that talks to the kernel: reserve, decommit, release,
//! protect, the clock, and raw writes to stderr.
//!
//! Nothing here allocates, and nothing here knows about heaps or spans.

use core::ptr::null_mut;

/// The OS page size cma assumes (x86_64 and aarch64 Linux with 4 KiB pages).
pub(crate) const PAGE_SIZE: usize = 4096;
pub(crate) const PAGE_SHIFT: u32 = 12;

/// Maps `bytes` of fresh, zeroed, read-write anonymous memory whose start is a
/// multiple of `align` (a power of two, at least a page). Returns null when
/// the kernel refuses.
pub(crate) fn map_aligned(bytes: usize, align: usize) -> *mut u8 {
    debug_assert!(align.is_power_of_two() && align >= PAGE_SIZE);
    debug_assert!(bytes % PAGE_SIZE == 0);
    let Some(over) = bytes.checked_add(align - PAGE_SIZE) else {
        return null_mut();
    };
    let raw = map(over);
    if raw.is_null() {
        return raw;
    }
    let start = raw as usize;
    let aligned = (start + align - 1) & !(align - 1);
    let head = aligned - start;
    let tail = over - head - bytes;
    if head > 0 {
        unmap(raw, head);
    }
    if tail > 0 {
        unmap((aligned + bytes) as *mut u8, tail);
    }
    aligned as *mut u8
}

/// Maps `bytes` of zeroed read-write memory without reserving swap for it:
/// pages cost nothing until they are touched.
pub(crate) fn map(bytes: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping at a kernel-chosen address touches
    // no existing memory; failure is reported as MAP_FAILED and checked.
    let p = unsafe {
        libc::mmap(
            null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        null_mut()
    } else {
        p.cast()
    }
}

/// Returns a mapping (or a page-aligned part of one) to the kernel.
pub(crate) fn unmap(p: *mut u8, bytes: usize) {
    // SAFETY: callers pass whole pages of a mapping made by `map`, which no
    // live block uses any more.
    unsafe {
        libc::munmap(p.cast(), bytes);
    }
}

/// Moves the pages of the mapping `[from, from+bytes)` to `to`, replacing what
/// was mapped there; `from` is unmapped. Committed pages move as they are (no
/// fault, no zeroing). Returns false when the kernel refuses.
pub(crate) fn move_pages(from: usize, bytes: usize, to: usize) -> bool {
    // SAFETY: both ranges are whole pages of our own mappings; the caller
    // gives up `from` and owns `[to, to+bytes)`, which holds no live block.
    let p = unsafe {
        libc::mremap(
            from as *mut libc::c_void,
            bytes,
            bytes,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            to as *mut libc::c_void,
        )
    };
    p as usize == to
}

/// Gives the physical pages behind `[p, p+bytes)` back to the kernel; the
/// range stays mapped and reads as zero when touched again.
pub(crate) fn decommit(p: *mut u8, bytes: usize) {
    if bytes == 0 {
        return;
    }
    // SAFETY: the range is whole pages of our own mapping holding no live
    // block; MADV_DONTNEED only drops their contents.
    unsafe {
        libc::madvise(p.cast(), bytes, libc::MADV_DONTNEED);
    }
}

/// The size of a transparent huge page on x86_64 and aarch64 (4 KiB pages).
pub(crate) const HUGE_PAGE_SIZE: usize = 2 << 20;

/// Decommits the tail `[from, end)` of a mapping backed by huge pages,
/// starting at the next huge-page boundary: a cut inside a huge page would
/// split it, and every later fault in that 2 MiB would take 4 KiB at a time.
pub(crate) fn decommit_tail(from: usize, end: usize) {
    let start = (from + HUGE_PAGE_SIZE - 1) & !(HUGE_PAGE_SIZE - 1);
    if start < end {
        decommit(start as *mut u8, end - start);
    }
}

/// Asks the kernel to back `[p, p+bytes)` with transparent huge pages where
/// it can (fewer page faults and TLB misses; memory is then committed 2 MiB at
/// a time). A refusal is harmless.
pub(crate) fn hint_huge_pages(p: *mut u8, bytes: usize) {
    // SAFETY: the range is whole pages of our own mapping; the advice changes
    // no contents.
    unsafe {
        libc::madvise(p.cast(), bytes, libc::MADV_HUGEPAGE);
    }
}

/// Monotonic milliseconds, from the vDSO (no system call, no allocation).
pub(crate) fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts);
    }
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Writes all of `bytes` to stderr with write(2): no locks, no allocation.
pub(crate) fn write_stderr(bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        // SAFETY: `rest` is a valid readable buffer of the given length.
        let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            return;
        }
        rest = &rest[n as usize..];
    }
}

fn errno() -> i32 {
    // SAFETY: __errno_location always returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Ends the process with SIGABRT, without running destructors or allocating.
pub(crate) fn abort() -> ! {
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

/// Sleeps for `ms` milliseconds.
pub(crate) fn sleep_ms(ms: u64) {
    let ts = libc::timespec {
        tv_sec: (ms / 1000) as libc::time_t,
        tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
    };
    // SAFETY: `ts` is a valid timespec; the remainder pointer may be null.
    unsafe {
        libc::nanosleep(&ts, core::ptr::null_mut());
    }
}

/// Yields the CPU to another runnable thread.
pub(crate) fn yield_now() {
    // SAFETY: sched_yield has no preconditions.
    unsafe {
        libc::sched_yield();
    }
}

/// Reads an environment variable without allocating. Returns the bytes of its
/// value, which live as long as the environment is not changed.
pub(crate) fn getenv(name: &core::ffi::CStr) -> Option<&'static [u8]> {
    // SAFETY: getenv reads the process environment and returns either null or
    // a NUL-terminated string owned by the environment.
    unsafe {
        let p = libc::getenv(name.as_ptr());
        if p.is_null() {
            None
        } else {
            Some(core::ffi::CStr::from_ptr(p).to_bytes())
        }
    }
}
