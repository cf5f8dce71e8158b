//! The glibc malloc family, with glibc's contracts.
//!
//! Conventions shared by every function here:
//!
//! - Failure returns null and sets `errno` to `ENOMEM` (or `EINVAL` for a bad
//!   alignment where POSIX or glibc says so). `posix_memalign` returns the
//!   error code instead and leaves `errno` as it was.
//! - Blocks of 16 bytes or more are 16-byte aligned (8 below), like glibc on
//!   x86_64 for every size a C object of that size can need.
//! - A size of 0 returns a unique, freeable, minimal block.
//! - A pointer that is not a live block from cma (double free, interior
//!   pointer, a foreign pointer) is reported on stderr with one `cma: ...`
//!   line and the process aborts, like glibc's "free(): invalid pointer" but
//!   always, and with the reason.

use core::ffi::{c_int, c_void};
use core::fmt::Write;
use core::ptr::null_mut;

use crate::util::{assert_not_reentered, errno, set_errno, FdWriter};

/// The page size `valloc` and `pvalloc` align to.
const PAGE: usize = 4096;

#[inline]
fn enomem_if_null(p: *mut u8) -> *mut c_void {
    if p.is_null() {
        set_errno(libc::ENOMEM);
    }
    p.cast()
}

/// `void *malloc(size_t size)`: `size` bytes, or null with `errno = ENOMEM`.
#[no_mangle]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    assert_not_reentered("malloc");
    engine::faces::c_malloc(size).cast()
}

/// `void free(void *p)`: null is accepted; anything that is not a live cma
/// block aborts with a diagnostic.
///
/// # Safety
/// `p` is not used after the call.
#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    assert_not_reentered("free");
    // SAFETY: the caller gives up `p`; the engine validates it.
    unsafe { engine::free(p.cast()) }
}

/// `void *calloc(size_t n, size_t size)`: `n * size` zeroed bytes; null with
/// `ENOMEM` when the product overflows or memory runs out. Reused memory is
/// zeroed too.
#[no_mangle]
pub extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    assert_not_reentered("calloc");
    let Some(total) = n.checked_mul(size) else {
        set_errno(libc::ENOMEM);
        return null_mut();
    };
    engine::faces::c_calloc(total).cast()
}

/// `void *realloc(void *p, size_t size)`, glibc's contract: `realloc(NULL, n)`
/// is `malloc(n)`; `realloc(p, 0)` with `p` not null frees `p` and returns
/// null; otherwise the block is resized (contents kept up to the smaller
/// size), and on failure null is returned with `ENOMEM` and `p` is intact.
///
/// # Safety
/// `p` is null or a live block, not used after a successful call.
#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    assert_not_reentered("realloc");
    if p.is_null() {
        return malloc(size);
    }
    if size == 0 {
        // SAFETY: glibc frees the block here; the caller gives it up.
        unsafe { engine::free(p.cast()) };
        return null_mut();
    }
    // SAFETY: the caller's contract is the engine's.
    enomem_if_null(unsafe { engine::realloc(p.cast(), size) })
}

/// `void *reallocarray(void *p, size_t n, size_t size)`: `realloc(p, n *
/// size)`, but null with `ENOMEM` (and `p` intact) when the product overflows.
///
/// # Safety
/// As for `realloc`.
#[no_mangle]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: the caller's contract is realloc's.
        Some(total) => unsafe { realloc(p, total) },
        None => {
            set_errno(libc::ENOMEM);
            null_mut()
        }
    }
}

/// `int posix_memalign(void **out, size_t align, size_t size)`: `align` must
/// be a power of two and a multiple of `sizeof(void *)`, else `EINVAL` is
/// returned; `ENOMEM` when memory runs out. Returns 0 and stores the block in
/// `*out` on success. `errno` is left unchanged either way.
///
/// # Safety
/// `out` points to writable storage for a pointer.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    assert_not_reentered("posix_memalign");
    if !align.is_power_of_two() || align % core::mem::size_of::<*mut c_void>() != 0 {
        return libc::EINVAL;
    }
    let saved = errno();
    let p = engine::aligned_alloc(align, size);
    set_errno(saved);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller guarantees `out` is writable.
    unsafe { *out = p.cast() };
    0
}

/// `void *aligned_alloc(size_t align, size_t size)`: `align` must be a power
/// of two (glibc 2.38 and C17), else null with `EINVAL`; any `size` is
/// accepted (C17 DR 460). Null with `ENOMEM` when memory runs out.
#[no_mangle]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    assert_not_reentered("aligned_alloc");
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return null_mut();
    }
    enomem_if_null(engine::aligned_alloc(align, size))
}

/// `void *memalign(size_t align, size_t size)`, glibc's contract: an
/// alignment that is not a power of two is rounded up to the next one; one
/// above `SIZE_MAX / 2 + 1` fails with `EINVAL`. Null with `ENOMEM` when
/// memory runs out.
#[no_mangle]
pub extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    assert_not_reentered("memalign");
    let Some(align) = align.max(1).checked_next_power_of_two() else {
        set_errno(libc::EINVAL);
        return null_mut();
    };
    enomem_if_null(engine::aligned_alloc(align, size))
}

/// `void *valloc(size_t size)`: `size` bytes aligned to the page size.
#[no_mangle]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    assert_not_reentered("valloc");
    enomem_if_null(engine::aligned_alloc(PAGE, size))
}

/// `void *pvalloc(size_t size)`: `size` rounded up to whole pages (one page
/// for 0), page aligned; null with `ENOMEM` when the rounding overflows.
#[no_mangle]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    assert_not_reentered("pvalloc");
    let Some(rounded) = size.max(1).checked_add(PAGE - 1) else {
        set_errno(libc::ENOMEM);
        return null_mut();
    };
    enomem_if_null(engine::aligned_alloc(PAGE, rounded & !(PAGE - 1)))
}

/// `size_t malloc_usable_size(void *p)`: the usable size of a live block (at
/// least what was asked), 0 for null. A pointer that is not a live cma block
/// aborts with a diagnostic.
#[no_mangle]
pub extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    assert_not_reentered("malloc_usable_size");
    if p.is_null() {
        return 0;
    }
    engine::usable_size(p.cast())
}

/// `void free_sized(void *p, size_t size)` (C23): frees `p`, which must
/// have been allocated with `size` bytes (checked at the `default` level; a
/// hint at `fast`); the block is validated as in `free`.
///
/// # Safety
/// As for `free`.
#[no_mangle]
pub unsafe extern "C" fn free_sized(p: *mut c_void, size: usize) {
    // SAFETY: as for `free`.
    unsafe {
        engine::faces::free_sized(
            p.cast(),
            Some(size),
            1,
            "free_sized",
            engine::AllocKind::Malloc,
        )
    }
}

/// `void free_aligned_sized(void *p, size_t align, size_t size)` (C23):
/// frees a block from `aligned_alloc(align, size)` (both checked at the
/// `default` level; hints at `fast`).
///
/// # Safety
/// As for `free`.
#[no_mangle]
pub unsafe extern "C" fn free_aligned_sized(p: *mut c_void, align: usize, size: usize) {
    // SAFETY: as for `free`.
    unsafe {
        engine::faces::free_sized(
            p.cast(),
            Some(size),
            align.max(1),
            "free_aligned_sized",
            engine::AllocKind::Malloc,
        )
    }
}

/// `int malloc_trim(size_t pad)`: gives idle free pages back to the kernel
/// now. Returns 1 (memory may have been released), as glibc does when it
/// released some.
#[no_mangle]
pub extern "C" fn malloc_trim(_pad: usize) -> c_int {
    engine::trim();
    1
}

/// glibc's `struct mallinfo2`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MallInfo2 {
    /// Bytes mapped for blocks and metadata.
    pub arena: usize,
    /// Not tracked (0).
    pub ordblks: usize,
    /// Not tracked (0).
    pub smblks: usize,
    /// Large blocks (whole pages) in use.
    pub hblks: usize,
    /// Bytes of large blocks in use.
    pub hblkhd: usize,
    /// Always 0, as in glibc.
    pub usmblks: usize,
    /// Not tracked (0).
    pub fsmblks: usize,
    /// Bytes in use (usable sizes).
    pub uordblks: usize,
    /// Bytes mapped for blocks and not in use.
    pub fordblks: usize,
    /// Free bytes that `malloc_trim` would give back.
    pub keepcost: usize,
}

/// glibc's `struct mallinfo` (the same fields as `int`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MallInfo {
    pub arena: c_int,
    pub ordblks: c_int,
    pub smblks: c_int,
    pub hblks: c_int,
    pub hblkhd: c_int,
    pub usmblks: c_int,
    pub fsmblks: c_int,
    pub uordblks: c_int,
    pub fordblks: c_int,
    pub keepcost: c_int,
}

/// `struct mallinfo2 mallinfo2(void)`: heap figures from cma's statistics
/// (see `MallInfo2` for what each field holds).
#[no_mangle]
pub extern "C" fn mallinfo2() -> MallInfo2 {
    let s = engine::stats();
    let class_bytes: u64 = s.classes.iter().map(|c| c.bytes_in_use).sum();
    let in_use = s.bytes_in_use as usize;
    MallInfo2 {
        arena: s.mapped_bytes + s.metadata_bytes,
        hblks: s.large_allocations.saturating_sub(s.large_frees) as usize,
        hblkhd: s.bytes_in_use.saturating_sub(class_bytes) as usize,
        uordblks: in_use,
        fordblks: s.mapped_bytes.saturating_sub(in_use),
        keepcost: s.dirty_free_bytes,
        ..MallInfo2::default()
    }
}

/// `struct mallinfo mallinfo(void)`: `mallinfo2` cut to `int` (values wrap
/// past 2 GiB, as in glibc).
#[no_mangle]
pub extern "C" fn mallinfo() -> MallInfo {
    let m = mallinfo2();
    MallInfo {
        arena: m.arena as c_int,
        ordblks: m.ordblks as c_int,
        smblks: m.smblks as c_int,
        hblks: m.hblks as c_int,
        hblkhd: m.hblkhd as c_int,
        usmblks: m.usmblks as c_int,
        fsmblks: m.fsmblks as c_int,
        uordblks: m.uordblks as c_int,
        fordblks: m.fordblks as c_int,
        keepcost: m.keepcost as c_int,
    }
}

/// `int mallopt(int param, int value)`: cma has no glibc tunables; every
/// parameter is accepted and ignored, and 1 (success) is returned, so that
/// programs which tune glibc keep running. cma's options come from
/// `CMA_OPTIONS`.
#[no_mangle]
pub extern "C" fn mallopt(_param: c_int, _value: c_int) -> c_int {
    1
}

/// `void malloc_stats(void)`: prints heap figures on stderr, in glibc's
/// layout plus cma's counters.
#[no_mangle]
pub extern "C" fn malloc_stats() {
    let s = engine::stats();
    let mut w = FdWriter::new(2);
    let system = s.mapped_bytes + s.metadata_bytes;
    let _ = write!(
        w,
        "Arena 0:\nsystem bytes     = {system:>10}\nin use bytes     = {:>10}\n\
         Total (incl. mmap):\nsystem bytes     = {system:>10}\nin use bytes     = {:>10}\n\
         max mmap regions = {:>10}\nmax mmap bytes   = {:>10}\n\
         cma: {} allocations, {} frees, peak {} bytes in use, {} heaps\n",
        s.bytes_in_use, s.bytes_in_use, 0, 0, s.allocations, s.frees, s.peak_bytes_in_use, s.heaps,
    );
    w.flush();
}
