//! The original system's C API: `cma_malloc` ... `cma_strerror`. See
//! `include/cma.h` for the C declarations; the types here mirror it.

use core::ffi::{c_char, c_int, c_uint, c_void};
use core::ptr::null_mut;

use engine::CmaError;

use crate::util::set_errno;

/// Error codes (`enum cma_error` in cma.h).
pub const CMA_OK: c_int = 0;
pub const CMA_ERR_DOUBLE_FREE: c_int = 1;
pub const CMA_ERR_DOUBLE_FREE_OTHER_THREAD: c_int = 2;
pub const CMA_ERR_INTERIOR_POINTER: c_int = 3;
pub const CMA_ERR_NOT_OURS: c_int = 4;
pub const CMA_ERR_REQUEST_LIMIT: c_int = 5;
pub const CMA_ERR_TOTAL_LIMIT: c_int = 6;
pub const CMA_ERR_OUT_OF_MEMORY: c_int = 7;
pub const CMA_ERR_INVALID_ALIGNMENT: c_int = 8;
pub const CMA_ERR_SIZE_OVERFLOW: c_int = 9;
pub const CMA_ERR_NULL_ARGUMENT: c_int = 10;
pub const CMA_ERR_BUFFER_OVERFLOW: c_int = 11;
pub const CMA_ERR_OTHER: c_int = 12;

/// `CMA_NUM_CLASSES` in cma.h.
pub const CMA_NUM_CLASSES: usize = 96;
const _: () = assert!(
    CMA_NUM_CLASSES == engine::NUM_CLASSES,
    "update CMA_NUM_CLASSES in cma.h"
);

/// The code of an engine error. Errors that engines newer than this file
/// add are mapped by their stable kind name, or to `CMA_ERR_OTHER`.
#[allow(unreachable_patterns)]
pub fn error_code(e: &CmaError) -> c_int {
    match e {
        CmaError::DoubleFree { .. } => CMA_ERR_DOUBLE_FREE,
        CmaError::DoubleFreeByOtherThread { .. } => CMA_ERR_DOUBLE_FREE_OTHER_THREAD,
        CmaError::InteriorPointer { .. } => CMA_ERR_INTERIOR_POINTER,
        CmaError::NotOurs { .. } => CMA_ERR_NOT_OURS,
        CmaError::RequestLimitExceeded { .. } => CMA_ERR_REQUEST_LIMIT,
        CmaError::TotalLimitExceeded { .. } => CMA_ERR_TOTAL_LIMIT,
        CmaError::OutOfMemory { .. } => CMA_ERR_OUT_OF_MEMORY,
        CmaError::InvalidAlignment { .. } => CMA_ERR_INVALID_ALIGNMENT,
        CmaError::SizeOverflow => CMA_ERR_SIZE_OVERFLOW,
        other if other.kind_name().contains("overflow") => CMA_ERR_BUFFER_OVERFLOW,
        _ => CMA_ERR_OTHER,
    }
}

/// `struct cma_stats`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CmaStats {
    pub allocations: u64,
    pub frees: u64,
    pub bytes_in_use: u64,
    pub peak_bytes_in_use: u64,
}

/// `struct cma_class_stats`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CmaClassStats {
    pub block_size: usize,
    pub allocations: u64,
    pub frees: u64,
    pub blocks_in_use: u64,
    pub bytes_in_use: u64,
    pub peak_blocks_in_use: u64,
    pub peak_bytes_in_use: u64,
}

/// `struct cma_extended_stats`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CmaExtendedStats {
    pub basic: CmaStats,
    pub large_allocations: u64,
    pub large_frees: u64,
    pub heaps: usize,
    pub mapped_bytes: usize,
    pub dirty_free_bytes: usize,
    pub metadata_bytes: usize,
    pub num_classes: usize,
    pub classes: [CmaClassStats; CMA_NUM_CLASSES],
}

fn basic(s: &engine::Stats) -> CmaStats {
    CmaStats {
        allocations: s.allocations,
        frees: s.frees,
        bytes_in_use: s.bytes_in_use,
        peak_bytes_in_use: s.peak_bytes_in_use,
    }
}

/// `void *cma_malloc(size_t size)`: `size` bytes, null when memory or an
/// allocation limit runs out.
#[no_mangle]
pub extern "C" fn cma_malloc(size: usize) -> *mut c_void {
    crate::malloc::malloc(size)
}

/// `void *cma_calloc(size_t n, size_t size)`: zeroed; null on overflow.
#[no_mangle]
pub extern "C" fn cma_calloc(n: usize, size: usize) -> *mut c_void {
    crate::malloc::calloc(n, size)
}

/// `void *cma_realloc(void *p, size_t size)`: the engine's realloc: null `p`
/// allocates, `size` 0 returns a minimal block (unlike glibc's `realloc`,
/// which frees), failure returns null and leaves `p` intact.
///
/// # Safety
/// `p` is null or a live block, not used after a successful call.
#[no_mangle]
pub unsafe extern "C" fn cma_realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: the caller's contract is the engine's.
    let q = unsafe { engine::realloc(p.cast(), size) };
    if q.is_null() {
        set_errno(libc::ENOMEM);
    }
    q.cast()
}

/// `void *cma_aligned_alloc(size_t align, size_t size)`: any power-of-two
/// alignment; null with `EINVAL` for another alignment.
#[no_mangle]
pub extern "C" fn cma_aligned_alloc(align: usize, size: usize) -> *mut c_void {
    crate::malloc::aligned_alloc(align, size)
}

/// `void cma_free(void *p)`: as `free`; misuse aborts with a diagnostic.
///
/// # Safety
/// `p` is not used after the call.
#[no_mangle]
pub unsafe extern "C" fn cma_free(p: *mut c_void) {
    // SAFETY: the caller gives up `p`; the engine validates it.
    unsafe { engine::free(p.cast()) }
}

/// `int cma_checked_free(void *p)`: frees `p` and returns `CMA_OK`, or
/// returns why `p` is not a live block (double free, interior pointer, not
/// ours) and changes nothing.
///
/// # Safety
/// `p` is not used after a successful call.
#[no_mangle]
pub unsafe extern "C" fn cma_checked_free(p: *mut c_void) -> c_int {
    // SAFETY: the engine validates `p` and reports misuse as an error.
    match unsafe { engine::checked_free(p.cast()) } {
        Ok(()) => CMA_OK,
        Err(e) => error_code(&e),
    }
}

/// `void cma_bzero_and_free(void *p)`: zeroes the block's whole usable size,
/// then frees it. Null is accepted.
///
/// # Safety
/// As for `cma_free`.
#[no_mangle]
pub unsafe extern "C" fn cma_bzero_and_free(p: *mut c_void) {
    // SAFETY: the engine validates `p` before writing to it.
    unsafe { engine::bzero_and_free(p.cast()) }
}

/// `void cma_free_double(char **array)`: frees every string of a
/// null-terminated array, then the array. Null is accepted.
///
/// # Safety
/// `array` is null or a live cma block holding a null-terminated array of
/// null or live cma blocks.
#[no_mangle]
pub unsafe extern "C" fn cma_free_double(array: *mut *mut c_char) {
    if array.is_null() {
        return;
    }
    let mut i = 0;
    loop {
        // SAFETY: the array is null-terminated, so every index up to the
        // terminator is in bounds.
        let s = unsafe { *array.add(i) };
        if s.is_null() {
            break;
        }
        // SAFETY: each element is a live cma block the caller gives up.
        unsafe { engine::free(s.cast()) };
        i += 1;
    }
    // SAFETY: the array itself is a live cma block the caller gives up.
    unsafe { engine::free(array.cast()) }
}

/// `size_t cma_block_size(const void *p)`: the usable size of a live block;
/// aborts with a diagnostic when `p` is not one. 0 for null.
#[no_mangle]
pub extern "C" fn cma_block_size(p: *const c_void) -> usize {
    if p.is_null() {
        return 0;
    }
    engine::block_size(p.cast())
}

/// `int cma_checked_block_size(const void *p, size_t *size)`: stores the
/// usable size of a live block in `*size` and returns `CMA_OK`, or returns
/// why `p` is not a live block (`CMA_ERR_NULL_ARGUMENT` for a null `size`).
///
/// # Safety
/// `size` is null or writable.
#[no_mangle]
pub unsafe extern "C" fn cma_checked_block_size(p: *const c_void, size: *mut usize) -> c_int {
    if size.is_null() {
        return CMA_ERR_NULL_ARGUMENT;
    }
    match engine::checked_block_size(p.cast()) {
        Ok(n) => {
            // SAFETY: checked non-null; the caller guarantees it is writable.
            unsafe { *size = n };
            CMA_OK
        }
        Err(e) => error_code(&e),
    }
}

/// `unsigned cma_guard_depth(void)`: the allocator guard depth of the
/// calling thread: how many cma calls are under way on it, so 0 whenever it
/// is outside cma. Every path out of cma, error paths included, brings it
/// back; a test can check that after any call.
#[no_mangle]
pub extern "C" fn cma_guard_depth() -> c_uint {
    engine::guard_depth()
}

/// `size_t cma_alloc_size(void)`: bytes in use now, in all threads (usable
/// sizes of live blocks).
#[no_mangle]
pub extern "C" fn cma_alloc_size() -> usize {
    engine::stats().bytes_in_use as usize
}

/// `void cma_set_alloc_limit(size_t max_request, size_t max_total)`: limits
/// for failure injection: the largest single request and the largest total
/// of bytes in use; `CMA_NO_LIMIT` (`SIZE_MAX`) lifts a limit. Allocations
/// over a limit fail with null / `ENOMEM`.
#[no_mangle]
pub extern "C" fn cma_set_alloc_limit(max_request: usize, max_total: usize) {
    let lim = |v: usize| if v == usize::MAX { None } else { Some(v) };
    engine::set_alloc_limits(engine::AllocLimits {
        max_request: lim(max_request),
        max_bytes_in_use: lim(max_total),
    });
}

/// `int cma_get_stats(struct cma_stats *out)`: fills `*out`; returns
/// `CMA_OK`, or `CMA_ERR_NULL_ARGUMENT` for null.
///
/// # Safety
/// `out` is null or writable.
#[no_mangle]
pub unsafe extern "C" fn cma_get_stats(out: *mut CmaStats) -> c_int {
    if out.is_null() {
        return CMA_ERR_NULL_ARGUMENT;
    }
    let s = engine::stats();
    // SAFETY: checked non-null; the caller guarantees it is writable.
    unsafe { out.write(basic(&s)) };
    CMA_OK
}

/// `int cma_get_extended_stats(struct cma_extended_stats *out)`: fills
/// `*out`, size classes included; returns `CMA_OK`, or
/// `CMA_ERR_NULL_ARGUMENT` for null.
///
/// # Safety
/// `out` is null or writable.
#[no_mangle]
pub unsafe extern "C" fn cma_get_extended_stats(out: *mut CmaExtendedStats) -> c_int {
    if out.is_null() {
        return CMA_ERR_NULL_ARGUMENT;
    }
    let s = engine::stats();
    let mut classes = [CmaClassStats::default(); CMA_NUM_CLASSES];
    for (dst, c) in classes.iter_mut().zip(s.classes.iter()) {
        *dst = CmaClassStats {
            block_size: c.block_size,
            allocations: c.allocations,
            frees: c.frees,
            blocks_in_use: c.blocks_in_use,
            bytes_in_use: c.bytes_in_use,
            peak_blocks_in_use: c.peak_blocks_in_use,
            peak_bytes_in_use: c.peak_bytes_in_use,
        };
    }
    let ext = CmaExtendedStats {
        basic: basic(&s),
        large_allocations: s.large_allocations,
        large_frees: s.large_frees,
        heaps: s.heaps,
        mapped_bytes: s.mapped_bytes,
        dirty_free_bytes: s.dirty_free_bytes,
        metadata_bytes: s.metadata_bytes,
        num_classes: CMA_NUM_CLASSES,
        classes,
    };
    // SAFETY: checked non-null; the caller guarantees it is writable.
    unsafe { out.write(ext) };
    CMA_OK
}

/// `char *cma_strdup(const char *s)`: a cma copy of `s`; null (`ENOMEM`)
/// when memory runs out, null (`EINVAL`) for a null `s`.
///
/// # Safety
/// `s` is null or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn cma_strdup(s: *const c_char) -> *mut c_char {
    if s.is_null() {
        set_errno(libc::EINVAL);
        return null_mut();
    }
    // SAFETY: `s` is NUL-terminated.
    let len = unsafe { libc::strlen(s) };
    // SAFETY: `s` has `len` readable bytes.
    unsafe { dup_with_nul(s.cast(), len) }
}

/// `char *cma_strndup(const char *s, size_t n)`: a cma copy of at most `n`
/// bytes of `s`, always NUL-terminated.
///
/// # Safety
/// `s` is null, or readable up to its NUL or `n` bytes, whichever is first.
#[no_mangle]
pub unsafe extern "C" fn cma_strndup(s: *const c_char, n: usize) -> *mut c_char {
    if s.is_null() {
        set_errno(libc::EINVAL);
        return null_mut();
    }
    // SAFETY: `s` is readable up to its NUL or `n` bytes.
    let len = unsafe { libc::strnlen(s, n) };
    // SAFETY: `s` has `len` readable bytes.
    unsafe { dup_with_nul(s.cast(), len) }
}

/// Copies `len` bytes and a NUL into a new cma block.
///
/// # Safety
/// `src` has `len` readable bytes.
unsafe fn dup_with_nul(src: *const u8, len: usize) -> *mut c_char {
    let Some(total) = len.checked_add(1) else {
        set_errno(libc::ENOMEM);
        return null_mut();
    };
    let p = engine::malloc(total);
    if p.is_null() {
        set_errno(libc::ENOMEM);
        return null_mut();
    }
    // SAFETY: `p` has `len + 1` bytes, `src` has `len`; they are distinct.
    unsafe {
        core::ptr::copy_nonoverlapping(src, p, len);
        *p.add(len) = 0;
    }
    p.cast()
}

/// `void *cma_memdup(const void *p, size_t n)`: a cma copy of `n` bytes of
/// `p` (a minimal block for 0); null (`ENOMEM`) when memory runs out.
///
/// # Safety
/// `p` has `n` readable bytes (it may be null when `n` is 0).
#[no_mangle]
pub unsafe extern "C" fn cma_memdup(p: *const c_void, n: usize) -> *mut c_void {
    let q = engine::malloc(n);
    if q.is_null() {
        set_errno(libc::ENOMEM);
        return null_mut();
    }
    if n > 0 {
        // SAFETY: `p` has `n` readable bytes; `q` is a fresh block of `n`.
        unsafe { core::ptr::copy_nonoverlapping(p.cast::<u8>(), q, n) };
    }
    q.cast()
}

/// `const char *cma_strerror(int code)`: a static, NUL-terminated message for
/// a `cma_error` code ("unknown cma error code" for others).
#[no_mangle]
pub extern "C" fn cma_strerror(code: c_int) -> *const c_char {
    let msg: &'static core::ffi::CStr = match code {
        CMA_OK => c"success",
        CMA_ERR_DOUBLE_FREE => c"double free",
        CMA_ERR_DOUBLE_FREE_OTHER_THREAD => c"double free (already freed by another thread)",
        CMA_ERR_INTERIOR_POINTER => c"invalid free: interior pointer",
        CMA_ERR_NOT_OURS => c"invalid free: not a cma block",
        CMA_ERR_REQUEST_LIMIT => c"request over the allocation limit",
        CMA_ERR_TOTAL_LIMIT => c"total over the allocation limit",
        CMA_ERR_OUT_OF_MEMORY => c"out of memory",
        CMA_ERR_INVALID_ALIGNMENT => c"invalid alignment",
        CMA_ERR_SIZE_OVERFLOW => c"size overflow",
        CMA_ERR_NULL_ARGUMENT => c"null argument",
        CMA_ERR_BUFFER_OVERFLOW => c"heap buffer overflow",
        CMA_ERR_OTHER => c"other cma error",
        _ => c"unknown cma error code",
    };
    msg.as_ptr()
}
