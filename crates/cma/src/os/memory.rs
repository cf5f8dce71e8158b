//! Memory mappings: map, reserve, release, move, decommit, and transparent
//! huge-page hints.
//!
//! Address space can be reserved without memory (`reserve_aligned`: no
//! access, no commit charge) for a mapping to move into and to grow over
//! later (`remap`, `grow_in_place`, charged then): that is how a huge block
//! keeps room to grow in place.

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

impl Charge {
    fn map_flags(self) -> libc::c_int {
        match self {
            Charge::Accounted => libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            Charge::Sparse => libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
        }
    }
}

/// Maps `bytes` of fresh, zeroed, read-write anonymous memory whose start is a
/// multiple of `align` (a power of two, at least a page), charged as
/// `Charge::Accounted`. Returns null when the kernel refuses.
pub(crate) fn map_aligned(bytes: usize, align: usize) -> *mut u8 {
    map_aligned_with(bytes, align, libc::PROT_READ | libc::PROT_WRITE)
}

/// Reserves `bytes` of address space whose start is a multiple of `align`,
/// with no access and no commit charge (a mapping the process cannot write
/// is not charged): room that `remap` or `grow_in_place` turns into memory
/// later, charged then. Returns null when the kernel refuses.
pub(crate) fn reserve_aligned(bytes: usize, align: usize) -> *mut u8 {
    map_aligned_with(bytes, align, libc::PROT_NONE)
}

fn map_aligned_with(bytes: usize, align: usize, prot: libc::c_int) -> *mut u8 {
    debug_assert!(align.is_power_of_two() && align >= PAGE_SIZE);
    debug_assert!(bytes % PAGE_SIZE == 0);
    let Some(over) = bytes.checked_add(align - PAGE_SIZE) else {
        return null_mut();
    };
    // Never MAP_NORESERVE, not even without access: a mapping that grows
    // over this address space must be charged.
    let raw = map_with(over, prot, Charge::Accounted.map_flags());
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
    map_with(
        bytes,
        libc::PROT_READ | libc::PROT_WRITE,
        charge.map_flags(),
    )
}

fn map_with(bytes: usize, prot: libc::c_int, flags: libc::c_int) -> *mut u8 {
    // SAFETY: an anonymous private mapping at a kernel-chosen address touches
    // no existing memory; failure is reported as MAP_FAILED and checked.
    let p = unsafe { libc::mmap(null_mut(), bytes, prot, flags, -1, 0) };
    if p == libc::MAP_FAILED {
        null_mut()
    } else {
        p.cast()
    }
}

/// Returns a mapping (or a page-aligned part of one) to the kernel. Returns
/// false when the kernel refuses (it can, when cutting a mapping in two
/// would pass the limit on mappings); the range is then still mapped.
pub(crate) fn unmap(p: *mut u8, bytes: usize) -> bool {
    // SAFETY: callers pass whole pages of a mapping of ours, which no live
    // block uses any more.
    unsafe { libc::munmap(p.cast(), bytes) == 0 }
}

/// Moves the pages of the mapping `[from, from+old_bytes)` to `to` with
/// `mremap`, replacing what was mapped at `[to, to+new_bytes)`, and makes the
/// mapping there `new_bytes` long; `from` is unmapped. Committed pages move
/// as they are (the kernel moves page tables: no copy, no fault, no
/// zeroing); what `new_bytes` adds reads as zero, and is charged against the
/// commit limit as the mapping was (a growth the kernel would refuse fails
/// here). With `new_bytes != old_bytes`, `from` must be one mapping, not
/// several. Returns false when the kernel refuses: nothing moved then, and
/// `from` is as it was, but `[to, to+new_bytes)` may have been unmapped
/// already (Linux unmaps the destination before it checks the rest).
pub(crate) fn remap(from: usize, old_bytes: usize, to: usize, new_bytes: usize) -> bool {
    // SAFETY: both ranges are whole pages of our own mappings; the caller
    // gives up `from` and owns `[to, to+new_bytes)`, which holds no live
    // block.
    let p = unsafe {
        libc::mremap(
            from as *mut libc::c_void,
            old_bytes,
            new_bytes,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            to as *mut libc::c_void,
        )
    };
    p as usize == to
}

/// Grows the mapping `[p, p+old_bytes)` in place to `new_bytes` with
/// `mremap` (no move), into address space that must be free right after it;
/// the mapping stays one piece, and what it gains reads as zero and is
/// charged against the commit limit as the mapping was. Returns false when
/// the kernel refuses (the room is taken, the charge is refused, `p` is not
/// one mapping): nothing changed then.
pub(crate) fn grow_in_place(p: usize, old_bytes: usize, new_bytes: usize) -> bool {
    // SAFETY: a mapping of ours grows into free address space; without
    // MREMAP_MAYMOVE nothing moves and nothing else is touched.
    let q = unsafe { libc::mremap(p as *mut libc::c_void, old_bytes, new_bytes, 0) };
    q as usize == p
}

/// Makes whole pages `[p, p+bytes)` of a mapping of ours readable and
/// writable (`accessible`) or inaccessible. Memory made accessible is
/// charged against the commit limit then (reserved address space is not):
/// the kernel may refuse, as it may when the change would split the
/// mapping past the limit on mappings. Returns false when it refuses; the
/// pages are then as they were.
pub(crate) fn protect(p: *mut u8, bytes: usize, accessible: bool) -> bool {
    let prot = if accessible {
        libc::PROT_READ | libc::PROT_WRITE
    } else {
        libc::PROT_NONE
    };
    // SAFETY: the range is whole pages of our own mapping; a change of
    // protection moves no memory.
    unsafe { libc::mprotect(p.cast(), bytes, prot) == 0 }
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
