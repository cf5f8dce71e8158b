//! The `cma_*` C API. See `include/cma.h` for the C declarations; the types
//! here mirror it.
//!
//! Two groups: the original system's functions, with its names, signatures
//! and meaning (`cma_malloc` ... `cma_backend_is_enabled`), and cma's own,
//! richer ones under names of their own (`cma_stats_get`, `cma_limits_set`,
//! `cma_bytes_in_use`, `cma_strdup` & co., `cma_strerror`,
//! `cma_guard_depth`).
//!
//! Every allocating and freeing function here goes through the backend
//! router (`backend`): while a backend is set new blocks come from it, and a
//! block goes back to whoever handed it out. Each call is logged when
//! allocation logging is on (`log`).

use core::ffi::{c_char, c_uint, c_void};
use core::ptr::null_mut;

use engine::CmaError;

use crate::backend::{self, CmaBackendHooks, Routed, SetRefused};
use crate::util::set_errno;

/// Error codes (`enum cma_error` in cma.h). Status returns are `int32_t`.
pub const CMA_OK: i32 = 0;
pub const CMA_ERR_DOUBLE_FREE: i32 = 1;
pub const CMA_ERR_DOUBLE_FREE_OTHER_THREAD: i32 = 2;
pub const CMA_ERR_INTERIOR_POINTER: i32 = 3;
pub const CMA_ERR_NOT_OURS: i32 = 4;
pub const CMA_ERR_REQUEST_LIMIT: i32 = 5;
pub const CMA_ERR_TOTAL_LIMIT: i32 = 6;
pub const CMA_ERR_OUT_OF_MEMORY: i32 = 7;
pub const CMA_ERR_INVALID_ALIGNMENT: i32 = 8;
pub const CMA_ERR_SIZE_OVERFLOW: i32 = 9;
pub const CMA_ERR_NULL_ARGUMENT: i32 = 10;
pub const CMA_ERR_BUFFER_OVERFLOW: i32 = 11;
pub const CMA_ERR_OTHER: i32 = 12;
pub const CMA_ERR_INVALID_ARGUMENT: i32 = 13;
pub const CMA_ERR_TOO_MANY_BACKENDS: i32 = 14;
pub const CMA_ERR_TOO_MANY_ARENAS: i32 = 15;

/// `CMA_NUM_CLASSES` in cma.h.
pub const CMA_NUM_CLASSES: usize = 96;
const _: () = assert!(
    CMA_NUM_CLASSES == engine::NUM_CLASSES,
    "update CMA_NUM_CLASSES in cma.h"
);

/// The code of an engine error. Errors that engines newer than this file
/// add are mapped by their stable kind name, or to `CMA_ERR_OTHER`.
#[allow(unreachable_patterns)]
pub fn error_code(e: &CmaError) -> i32 {
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

// ----- logging -----

/// Logs one call when allocation logging is on (`cma_set_alloc_logging`).
#[inline]
pub(crate) fn log(
    operation: &str,
    pointer: *const c_void,
    size: usize,
    old: Option<*const c_void>,
) {
    if engine::faces::alloc_logging() {
        engine::faces::log_event(&engine::faces::AllocEvent {
            operation,
            pointer: pointer as usize,
            size,
            old_pointer: old.map(|p| p as usize),
            thread: engine::faces::thread_id(),
        });
    }
}

/// The size of a block about to be freed, for the log (0 when logging is
/// off or `p` is not a live cma block: the free itself reports that).
fn size_for_log(p: *const c_void) -> usize {
    if engine::faces::alloc_logging() && !p.is_null() {
        engine::checked_block_size(p.cast()).unwrap_or(0)
    } else {
        0
    }
}

fn enomem_if_null(p: *mut c_void) -> *mut c_void {
    if p.is_null() {
        set_errno(libc::ENOMEM);
    }
    p
}

// ----- the original system's API -----

/// `void *cma_malloc(size_t size)`: `size` bytes, from the backend when one
/// is set; null (`ENOMEM`) when memory or an allocation limit runs out.
#[no_mangle]
pub extern "C" fn cma_malloc(size: usize) -> *mut c_void {
    let _logs = engine::faces::FaceLogs::begin();
    let p = match backend::allocate(size, None) {
        Routed::Cma => crate::malloc::malloc(size),
        Routed::Backend(p) => enomem_if_null(p),
    };
    log("cma_malloc", p, size, None);
    p
}

/// `void *cma_realloc(void *ptr, size_t size)`: null `ptr` allocates (from
/// the backend when one is set); a backend's block is resized by its
/// backend, a cma block by cma. `size` 0 returns a minimal block (unlike
/// glibc's `realloc`, which frees). Failure returns null (`ENOMEM`) and
/// leaves `ptr` intact.
///
/// # Safety
/// `ptr` is null or a live block, not used after a successful call.
#[no_mangle]
pub unsafe extern "C" fn cma_realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    let _logs = engine::faces::FaceLogs::begin();
    if ptr.is_null() {
        return cma_malloc(size);
    }
    let q = match backend::reallocate(ptr, size) {
        // SAFETY: the caller's contract is the engine's.
        Routed::Cma => unsafe { engine::realloc(ptr.cast(), size) }.cast(),
        Routed::Backend(q) => q,
    };
    log("cma_realloc", q, size, Some(ptr));
    enomem_if_null(q)
}

/// `void *cma_aligned_alloc(size_t alignment, size_t size)`: any power-of-two
/// alignment; null with `EINVAL` for another alignment, null with `ENOMEM`
/// when memory runs out.
#[no_mangle]
pub extern "C" fn cma_aligned_alloc(alignment: usize, size: usize) -> *mut c_void {
    let _logs = engine::faces::FaceLogs::begin();
    if !alignment.is_power_of_two() {
        set_errno(libc::EINVAL);
        return null_mut();
    }
    let p = match backend::allocate(size, Some(alignment)) {
        Routed::Cma => crate::malloc::aligned_alloc(alignment, size),
        Routed::Backend(p) => enomem_if_null(p),
    };
    log("cma_aligned_alloc", p, size, None);
    p
}

/// `void cma_free(void *ptr)`: gives `ptr` back to whoever handed it out (a
/// backend, or cma); null is accepted. A pointer that neither owns aborts
/// with a `cma: invalid free` diagnostic, as every misuse does.
///
/// # Safety
/// `ptr` is not used after the call.
#[no_mangle]
pub unsafe extern "C" fn cma_free(ptr: *mut c_void) {
    // SAFETY: the caller gives up `ptr`.
    unsafe { free_routed(ptr, false, "cma_free") }
}

/// Frees `ptr` through its owner, zeroing its whole size first with `wipe`.
///
/// # Safety
/// As for `cma_free`.
unsafe fn free_routed(ptr: *mut c_void, wipe: bool, operation: &str) {
    let _logs = engine::faces::FaceLogs::begin();
    let size = match backend::free(ptr, wipe) {
        Routed::Backend(size) => size,
        Routed::Cma => {
            let size = size_for_log(ptr);
            // SAFETY: the caller gives up `ptr`; the engine validates it
            // before writing to it.
            unsafe {
                if wipe {
                    engine::bzero_and_free(ptr.cast())
                } else {
                    engine::free(ptr.cast())
                }
            }
            size
        }
    };
    if !ptr.is_null() {
        log(operation, ptr, size, None);
    }
}

/// `void cma_bzero_and_free(void *ptr)`: zeroes the block's whole size (a
/// backend's block: the size its `get_allocation_size` reports), then frees
/// it. Null is accepted.
///
/// # Safety
/// As for `cma_free`.
#[no_mangle]
pub unsafe extern "C" fn cma_bzero_and_free(ptr: *mut c_void) {
    // SAFETY: the caller gives up `ptr`.
    unsafe { free_routed(ptr, true, "cma_bzero_and_free") }
}

/// `int32_t cma_checked_free(void *ptr)`: frees `ptr` and returns `CMA_OK`,
/// or returns why `ptr` is not a live block (double free, interior pointer,
/// not ours) and changes nothing. Null returns `CMA_OK`.
///
/// # Safety
/// `ptr` is not used after a successful call.
#[no_mangle]
pub unsafe extern "C" fn cma_checked_free(ptr: *mut c_void) -> i32 {
    let _logs = engine::faces::FaceLogs::begin();
    if let Routed::Backend(size) = backend::free(ptr, false) {
        log("cma_checked_free", ptr, size, None);
        return CMA_OK;
    }
    let size = size_for_log(ptr);
    // SAFETY: the engine validates `ptr` and reports misuse as an error.
    match unsafe { engine::checked_free(ptr.cast()) } {
        Ok(()) => {
            if !ptr.is_null() {
                log("cma_checked_free", ptr, size, None);
            }
            CMA_OK
        }
        Err(e) => error_code(&e),
    }
}

/// `int32_t cma_check_heap(void)`: verifies every live block's trailer and
/// every quarantined block at once (`cma::check_heap`) and returns
/// `CMA_OK`, or the code of the first damage found, whose one-line
/// description it writes to stderr (`cma: heap check: ...`). At the `fast`
/// level there is nothing to verify.
#[no_mangle]
pub extern "C" fn cma_check_heap() -> i32 {
    match engine::check_heap() {
        Ok(_) => CMA_OK,
        Err(e) => {
            let mut w = crate::util::FdWriter::new(2);
            let _ = core::fmt::Write::write_fmt(&mut w, format_args!("cma: heap check: {e}\n"));
            w.flush();
            error_code(&e)
        }
    }
}

/// `void cma_free_double(char **content)`: frees every string of a
/// null-terminated array, then the array. Null is accepted.
///
/// # Safety
/// `content` is null or a live block holding a null-terminated array of
/// null or live blocks.
#[no_mangle]
pub unsafe extern "C" fn cma_free_double(content: *mut *mut c_char) {
    let _logs = engine::faces::FaceLogs::begin();
    if content.is_null() {
        return;
    }
    let mut i = 0;
    loop {
        // SAFETY: the array is null-terminated, so every index up to the
        // terminator is in bounds.
        let s = unsafe { *content.add(i) };
        if s.is_null() {
            break;
        }
        // SAFETY: each element is a live block the caller gives up.
        unsafe { free_routed(s.cast(), false, "cma_free_double") };
        i += 1;
    }
    // SAFETY: the array itself is a live block the caller gives up.
    unsafe { free_routed(content.cast(), false, "cma_free_double") }
}

/// The size of a live block by its owner, or why it is not one.
fn block_size_routed(ptr: *const c_void) -> Result<usize, i32> {
    if ptr.is_null() {
        return Err(CMA_ERR_NULL_ARGUMENT);
    }
    match backend::size_of(ptr) {
        Routed::Backend(size) => Ok(size),
        Routed::Cma => engine::checked_block_size(ptr.cast()).map_err(|e| error_code(&e)),
    }
}

/// `size_t cma_block_size(const void *ptr)`: the usable size of a live
/// block (a backend's block: what its `get_allocation_size` says). For null
/// or a pointer that is not a live block: 0, with `errno` = `EINVAL`
/// (`cma_checked_block_size` says why).
#[no_mangle]
pub extern "C" fn cma_block_size(ptr: *const c_void) -> usize {
    block_size_routed(ptr).unwrap_or_else(|_| {
        set_errno(libc::EINVAL);
        0
    })
}

/// `int32_t cma_checked_block_size(const void *ptr, size_t *block_size)`:
/// stores the usable size of a live block in `*block_size` and returns
/// `CMA_OK`, or returns why it cannot (`CMA_ERR_NULL_ARGUMENT` for a null
/// argument, `CMA_ERR_NOT_OURS`, `CMA_ERR_DOUBLE_FREE`...; then
/// `*block_size` is set to 0 when `block_size` is not null).
///
/// # Safety
/// `block_size` is null or writable.
#[no_mangle]
pub unsafe extern "C" fn cma_checked_block_size(ptr: *const c_void, block_size: *mut usize) -> i32 {
    if block_size.is_null() {
        return CMA_ERR_NULL_ARGUMENT;
    }
    let (size, code) = match block_size_routed(ptr) {
        Ok(n) => (n, CMA_OK),
        Err(code) => (0, code),
    };
    // SAFETY: checked non-null; the caller guarantees it is writable.
    unsafe { *block_size = size };
    code
}

/// `size_t cma_alloc_size(const void *ptr)`: the original's other name for
/// the usable size of a live block, which the program may use whole: at
/// the `fast` check level the request rounded up to its size class (or
/// pages); at `default` (the default), where the bytes after the request
/// hold the canary, the request itself. As `cma_block_size`: 0 with
/// `EINVAL` for null or a pointer that is not a live block.
#[no_mangle]
pub extern "C" fn cma_alloc_size(ptr: *const c_void) -> usize {
    cma_block_size(ptr)
}

/// `int32_t cma_set_alloc_limit(size_t limit)`: the original's limit: the
/// largest single request, in bytes (0: no limit). Larger requests fail
/// with null / `ENOMEM`, from cma and from a backend alike. The total limit
/// (`cma_limits_set`) is left as it is. Returns `CMA_OK`.
#[no_mangle]
pub extern "C" fn cma_set_alloc_limit(limit: usize) -> i32 {
    let mut limits = engine::alloc_limits();
    limits.max_request = (limit != 0).then_some(limit);
    engine::set_alloc_limits(limits);
    CMA_OK
}

/// `void cma_set_alloc_logging(bool enable)`: logs every `cma_*` allocation
/// and free call from now on (or stops): one line per call, `cma-log:
/// OPERATION ptr=0x... size=N [old=0x...] tid=T`, written with one write(2)
/// and no allocation to the descriptor of `alloc_log_fd=` in `CMA_OPTIONS`
/// (default 2, stderr).
#[no_mangle]
pub extern "C" fn cma_set_alloc_logging(enable: bool) {
    engine::faces::set_alloc_logging(enable);
}

/// `cma_alloc_event` in cma.h: one logged event, for the callback.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CmaAllocEvent {
    pub operation: *const c_char,
    pub pointer: *mut c_void,
    pub size: usize,
    pub old_pointer: *mut c_void,
    pub thread: u64,
}

/// The C callback and its `user_data` (`cma_set_alloc_log_callback`).
static C_CALLBACK: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
static C_USER: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

type CCallback = unsafe extern "C" fn(*const CmaAllocEvent, *mut c_void);

/// The engine's callback while a C one is set: the event as C sees it.
fn call_c_callback(e: &engine::AllocEvent<'_>) {
    use core::sync::atomic::Ordering;
    let f = C_CALLBACK.load(Ordering::Acquire);
    if f == 0 {
        return;
    }
    // The operation as a C string, on the stack.
    let mut name = [0u8; 40];
    let n = e.operation.len().min(name.len() - 1);
    name[..n].copy_from_slice(&e.operation.as_bytes()[..n]);
    let event = CmaAllocEvent {
        operation: name.as_ptr().cast(),
        pointer: e.pointer as *mut c_void,
        size: e.size,
        old_pointer: e.old_pointer.unwrap_or(0) as *mut c_void,
        thread: e.thread,
    };
    // SAFETY: only `cma_set_alloc_log_callback` stores a non-zero word,
    // and it stores a `CCallback`; the caller's contract covers the call.
    let f: CCallback = unsafe { core::mem::transmute(f) };
    // SAFETY: as above; `event` lives for the call.
    unsafe { f(&event, C_USER.load(Ordering::Acquire) as *mut c_void) };
}

/// `int32_t cma_set_alloc_log_callback(void (*callback)(const
/// cma_alloc_event *, void *), void *user_data)`: logged events go to
/// `callback` (with `user_data`) instead of the log's descriptor; NULL goes
/// back to the descriptor. `CMA_OK`.
///
/// # Safety
/// `callback` is null or a function that may be called from any thread,
/// inside the allocator, for as long as it is set (see cma.h).
#[no_mangle]
pub unsafe extern "C" fn cma_set_alloc_log_callback(
    callback: Option<CCallback>,
    user_data: *mut c_void,
) -> i32 {
    use core::sync::atomic::Ordering;
    C_USER.store(user_data as usize, Ordering::Release);
    C_CALLBACK.store(callback.map_or(0, |f| f as usize), Ordering::Release);
    engine::set_alloc_log_callback(
        callback.map(|_| call_c_callback as fn(&engine::AllocEvent<'_>)),
    );
    CMA_OK
}

/// `int32_t cma_set_alloc_log_sample(size_t n)`: logs about one event in
/// `n` (0 and 1: every one). `CMA_OK`.
#[no_mangle]
pub extern "C" fn cma_set_alloc_log_sample(n: usize) -> i32 {
    engine::set_alloc_log_sample(n as u64);
    CMA_OK
}

/// `bool cma_get_alloc_logging(void)`: whether allocation logging is on.
#[no_mangle]
pub extern "C" fn cma_get_alloc_logging() -> bool {
    engine::faces::alloc_logging()
}

/// `int32_t cma_set_thread_safety(bool enable)`: cma is always thread safe,
/// without a global lock on its fast paths, so there is nothing to switch:
/// `CMA_OK` either way, and `cma_is_thread_safe_enabled()` stays true. (A
/// program that turned thread safety off to skip the original's lock
/// already has what it wanted; see README.)
#[no_mangle]
pub extern "C" fn cma_set_thread_safety(_enable: bool) -> i32 {
    CMA_OK
}

/// `int32_t cma_enable_thread_safety(void)`: `CMA_OK`; cma is always thread
/// safe.
#[no_mangle]
pub extern "C" fn cma_enable_thread_safety() -> i32 {
    CMA_OK
}

/// `int32_t cma_disable_thread_safety(void)`: `CMA_OK`, and nothing
/// changes: cma takes no global lock on its fast paths, so there is no
/// lock to turn off (see `cma_set_thread_safety`).
#[no_mangle]
pub extern "C" fn cma_disable_thread_safety() -> i32 {
    CMA_OK
}

/// `bool cma_is_thread_safe_enabled(void)`: always true.
#[no_mangle]
pub extern "C" fn cma_is_thread_safe_enabled() -> bool {
    true
}

/// The engine's statistics with the backend's blocks added.
fn totals() -> (engine::Stats, engine::BackendStats) {
    (engine::stats(), backend::counts())
}

/// `int32_t cma_get_stats(size_t *allocation_count, size_t *free_count)`:
/// the blocks allocated and freed so far (cma's and the backends'). As in
/// the original, a null pointer skips that figure; `CMA_ERR_NULL_ARGUMENT`
/// when both are null.
///
/// # Safety
/// Each pointer is null or writable.
#[no_mangle]
pub unsafe extern "C" fn cma_get_stats(
    allocation_count: *mut usize,
    free_count: *mut usize,
) -> i32 {
    // SAFETY: the caller's contract.
    unsafe { cma_get_extended_stats(allocation_count, free_count, null_mut(), null_mut()) }
}

/// `int32_t cma_get_extended_stats(size_t *allocation_count, size_t
/// *free_count, size_t *current_bytes, size_t *peak_bytes)`: as
/// `cma_get_stats`, plus the bytes in use now and the peak (cma's usable
/// sizes plus the backends' block sizes; the peak is the sum of cma's peak
/// and the backends' peak). Null pointers skip their figure;
/// `CMA_ERR_NULL_ARGUMENT` when all four are null.
///
/// # Safety
/// Each pointer is null or writable.
#[no_mangle]
pub unsafe extern "C" fn cma_get_extended_stats(
    allocation_count: *mut usize,
    free_count: *mut usize,
    current_bytes: *mut usize,
    peak_bytes: *mut usize,
) -> i32 {
    let outputs = [allocation_count, free_count, current_bytes, peak_bytes];
    if outputs.iter().all(|p| p.is_null()) {
        return CMA_ERR_NULL_ARGUMENT;
    }
    let total = basic(totals());
    let values = [
        total.allocations,
        total.frees,
        total.bytes_in_use,
        total.peak_bytes_in_use,
    ];
    for (out, value) in outputs.into_iter().zip(values) {
        if !out.is_null() {
            // SAFETY: checked non-null; the caller guarantees it is writable.
            unsafe { out.write(value as usize) };
        }
    }
    CMA_OK
}

/// `int32_t cma_set_backend(const cma_backend_hooks *hooks)`: from now on
/// the `cma_*` API takes new blocks from these hooks (copied; `hooks` may go
/// away). `CMA_ERR_NULL_ARGUMENT` for null, `CMA_ERR_INVALID_ARGUMENT` when
/// `allocate`, `deallocate`, `get_allocation_size` or `owns_allocation` is
/// null, `CMA_ERR_TOO_MANY_BACKENDS` when 16 other backends still hold live
/// blocks.
///
/// # Safety
/// `hooks` is null or a readable `cma_backend_hooks` whose functions keep
/// the contracts written in cma.h for as long as they hold blocks.
#[no_mangle]
pub unsafe extern "C" fn cma_set_backend(hooks: *const CmaBackendHooks) -> i32 {
    // SAFETY: the caller's contract: null or readable.
    let Some(hooks) = (unsafe { hooks.as_ref() }) else {
        return CMA_ERR_NULL_ARGUMENT;
    };
    match backend::set(hooks) {
        Ok(()) => CMA_OK,
        Err(SetRefused::MissingHook) => CMA_ERR_INVALID_ARGUMENT,
        Err(SetRefused::TableFull) => CMA_ERR_TOO_MANY_BACKENDS,
    }
}

/// `int32_t cma_clear_backend(void)`: new blocks come from cma again;
/// blocks the backend still holds go back to it when freed. `CMA_OK`.
#[no_mangle]
pub extern "C" fn cma_clear_backend() -> i32 {
    backend::clear();
    CMA_OK
}

/// `bool cma_backend_is_enabled(void)`: whether a backend is set.
#[no_mangle]
pub extern "C" fn cma_backend_is_enabled() -> bool {
    backend::is_enabled()
}

// ----- cma's own functions -----

/// `void *cma_calloc(size_t n, size_t size)`: zeroed; null (`ENOMEM`) on
/// overflow or when memory runs out. From the backend when one is set.
#[no_mangle]
pub extern "C" fn cma_calloc(n: usize, size: usize) -> *mut c_void {
    let _logs = engine::faces::FaceLogs::begin();
    let Some(total) = n.checked_mul(size) else {
        set_errno(libc::ENOMEM);
        return null_mut();
    };
    let p = match backend::allocate(total, None) {
        Routed::Cma => crate::malloc::calloc(n, size),
        Routed::Backend(p) => {
            if !p.is_null() {
                // SAFETY: a fresh backend block of at least `total` bytes.
                unsafe { core::ptr::write_bytes(p.cast::<u8>(), 0, total) };
            }
            enomem_if_null(p)
        }
    };
    log("cma_calloc", p, total, None);
    p
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
    pub backend: CmaStats,
    pub large_allocations: u64,
    pub large_frees: u64,
    pub heaps: usize,
    pub mapped_bytes: usize,
    pub dirty_free_bytes: usize,
    pub metadata_bytes: usize,
    pub num_classes: usize,
    pub classes: [CmaClassStats; CMA_NUM_CLASSES],
}

/// cma's counters plus the backends'.
fn basic((s, b): (engine::Stats, engine::BackendStats)) -> CmaStats {
    CmaStats {
        allocations: s.allocations + b.allocations,
        frees: s.frees + b.frees,
        bytes_in_use: s.bytes_in_use + b.bytes_in_use,
        peak_bytes_in_use: s.peak_bytes_in_use + b.peak_bytes_in_use,
    }
}

/// `int32_t cma_stats_get(struct cma_stats *out)`: fills `*out` (cma's
/// blocks and the backends' together); `CMA_ERR_NULL_ARGUMENT` for null.
///
/// # Safety
/// `out` is null or writable.
#[no_mangle]
pub unsafe extern "C" fn cma_stats_get(out: *mut CmaStats) -> i32 {
    if out.is_null() {
        return CMA_ERR_NULL_ARGUMENT;
    }
    // SAFETY: checked non-null; the caller guarantees it is writable.
    unsafe { out.write(basic(totals())) };
    CMA_OK
}

/// `int32_t cma_stats_get_extended(struct cma_extended_stats *out)`: fills
/// `*out`: the totals, the backends' share, cma's size classes and memory;
/// `CMA_ERR_NULL_ARGUMENT` for null.
///
/// # Safety
/// `out` is null or writable.
#[no_mangle]
pub unsafe extern "C" fn cma_stats_get_extended(out: *mut CmaExtendedStats) -> i32 {
    if out.is_null() {
        return CMA_ERR_NULL_ARGUMENT;
    }
    let (s, b) = totals();
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
        basic: basic((s, b)),
        backend: CmaStats {
            allocations: b.allocations,
            frees: b.frees,
            bytes_in_use: b.bytes_in_use,
            peak_bytes_in_use: b.peak_bytes_in_use,
        },
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

/// `size_t cma_bytes_in_use(void)`: bytes in use now, all threads (usable
/// sizes of cma's live blocks plus the backends' live blocks).
#[no_mangle]
pub extern "C" fn cma_bytes_in_use() -> usize {
    basic(totals()).bytes_in_use as usize
}

/// `int32_t cma_limits_set(size_t max_request, size_t max_total)`: limits
/// for failure injection: the largest single request and the largest total
/// of bytes in use (cma's and the backends'); `CMA_NO_LIMIT` (`SIZE_MAX`)
/// lifts a limit. Allocations over a limit fail with null / `ENOMEM`.
/// Returns `CMA_OK`.
#[no_mangle]
pub extern "C" fn cma_limits_set(max_request: usize, max_total: usize) -> i32 {
    let lim = |v: usize| if v == usize::MAX { None } else { Some(v) };
    engine::set_alloc_limits(engine::AllocLimits {
        max_request: lim(max_request),
        max_bytes_in_use: lim(max_total),
    });
    CMA_OK
}

/// `unsigned cma_guard_depth(void)`: the allocator guard depth of the
/// calling thread: how many cma calls are under way on it, so 0 whenever it
/// is outside cma. Every path out of cma, error paths included, brings it
/// back; a test can check that after any call.
#[no_mangle]
pub extern "C" fn cma_guard_depth() -> c_uint {
    engine::guard_depth()
}

/// `char *cma_strdup(const char *s)`: a copy of `s` in a new block (from the
/// backend when one is set); null (`ENOMEM`) when memory runs out, null
/// (`EINVAL`) for a null `s`.
///
/// # Safety
/// `s` is null or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn cma_strdup(s: *const c_char) -> *mut c_char {
    let _logs = engine::faces::FaceLogs::begin();
    if s.is_null() {
        set_errno(libc::EINVAL);
        return null_mut();
    }
    // SAFETY: `s` is NUL-terminated.
    let len = unsafe { libc::strlen(s) };
    // SAFETY: `s` has `len` readable bytes.
    unsafe { dup_with_nul(s.cast(), len) }
}

/// `char *cma_strndup(const char *s, size_t n)`: a copy of at most `n` bytes
/// of `s`, always NUL-terminated.
///
/// # Safety
/// `s` is null, or readable up to its NUL or `n` bytes, whichever is first.
#[no_mangle]
pub unsafe extern "C" fn cma_strndup(s: *const c_char, n: usize) -> *mut c_char {
    let _logs = engine::faces::FaceLogs::begin();
    if s.is_null() {
        set_errno(libc::EINVAL);
        return null_mut();
    }
    // SAFETY: `s` is readable up to its NUL or `n` bytes.
    let len = unsafe { libc::strnlen(s, n) };
    // SAFETY: `s` has `len` readable bytes.
    unsafe { dup_with_nul(s.cast(), len) }
}

/// Copies `len` bytes and a NUL into a new block.
///
/// # Safety
/// `src` has `len` readable bytes.
unsafe fn dup_with_nul(src: *const u8, len: usize) -> *mut c_char {
    let Some(total) = len.checked_add(1) else {
        set_errno(libc::ENOMEM);
        return null_mut();
    };
    let p = cma_malloc(total).cast::<u8>();
    if p.is_null() {
        return null_mut();
    }
    // SAFETY: `p` has `len + 1` bytes, `src` has `len`; they are distinct.
    unsafe {
        core::ptr::copy_nonoverlapping(src, p, len);
        *p.add(len) = 0;
    }
    p.cast()
}

/// `void *cma_memdup(const void *p, size_t n)`: a copy of `n` bytes of `p`
/// in a new block (a minimal block for 0); null (`ENOMEM`) when memory runs
/// out, null (`EINVAL`) for a null `p` with `n` > 0.
///
/// # Safety
/// `p` has `n` readable bytes (it may be null when `n` is 0).
#[no_mangle]
pub unsafe extern "C" fn cma_memdup(p: *const c_void, n: usize) -> *mut c_void {
    let _logs = engine::faces::FaceLogs::begin();
    if p.is_null() && n > 0 {
        set_errno(libc::EINVAL);
        return null_mut();
    }
    let q = cma_malloc(n);
    if q.is_null() {
        return null_mut();
    }
    if n > 0 {
        // SAFETY: `p` has `n` readable bytes; `q` is a fresh block of `n`.
        unsafe { core::ptr::copy_nonoverlapping(p.cast::<u8>(), q.cast::<u8>(), n) };
    }
    q
}

/// `const char *cma_strerror(int32_t code)`: a static, NUL-terminated
/// message for a `cma_error` code ("unknown cma error code" for others).
#[no_mangle]
pub extern "C" fn cma_strerror(code: i32) -> *const c_char {
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
        CMA_ERR_INVALID_ARGUMENT => c"invalid argument",
        CMA_ERR_TOO_MANY_BACKENDS => c"too many backends hold live blocks",
        CMA_ERR_TOO_MANY_ARENAS => c"too many arenas are live at once",
        _ => c"unknown cma error code",
    };
    msg.as_ptr()
}
