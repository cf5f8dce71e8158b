//! Memory mappings: map, release, move, decommit, and transparent huge-page
//! hints.

use core::ptr::null_mut;

use super::PAGE_SIZE;

/// How a mapping is charged against the kernel's commit limit.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Charge {
    /// Memory that is handed out (blocks, metadata): the kernel's overcommit
    /// policy applies, so a request it would refuse (`malloc` of 16 TiB
    /// under the default `vm.overcommit_memory=0`, anything past the limit
    /// under `2`) fails here, at the call, as it does on glibc, instead of
    /// succeeding and meeting the OOM killer later.
    Accounted,
    /// A sparse index that is never touched in full (the segment map): no
    /// swap reserved (`MAP_NORESERVE`), pages cost nothing until touched.
    Sparse,
}

/// Maps `bytes` of fresh, zeroed, read-write anonymous memory whose start is a
/// multiple of `align` (a power of two, at least a page), charged as
/// `Charge::Accounted`. Returns null when the kernel refuses.
pub(crate) fn map_aligned(bytes: usize, align: usize) -> *mut u8 {
    debug_assert!(align.is_power_of_two() && align >= PAGE_SIZE);
    debug_assert!(bytes % PAGE_SIZE == 0);
    let Some(over) = bytes.checked_add(align - PAGE_SIZE) else {
        return null_mut();
    };
    let raw = map(over, Charge::Accounted);
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

/// Maps `bytes` of zeroed read-write memory, charged as `charge` says.
/// Returns null when the kernel refuses.
pub(crate) fn map(bytes: usize, charge: Charge) -> *mut u8 {
    let flags = match charge {
        Charge::Accounted => libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        Charge::Sparse => libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
    };
    // SAFETY: an anonymous private mapping at a kernel-chosen address touches
    // no existing memory; failure is reported as MAP_FAILED and checked.
    let p = unsafe {
        libc::mmap(
            null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
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

/// Asks the kernel never to back `[p, p+bytes)` with transparent huge pages:
/// under THP `always`, khugepaged would otherwise refill pages cma
/// decommitted inside a huge-page-sized region (it collapses a region with
/// up to 511 of its 512 pages missing, by default) and resident memory would
/// stop following use. A refusal is harmless.
pub(crate) fn forbid_huge_pages(p: *mut u8, bytes: usize) {
    // SAFETY: the range is whole pages of our own mapping; the advice changes
    // no contents.
    unsafe {
        libc::madvise(p.cast(), bytes, libc::MADV_NOHUGEPAGE);
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
