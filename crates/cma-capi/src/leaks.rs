//! The original system's leak API (`cma_get_leak_summary`,
//! `cma_get_leak_entries`, `cma_report_leaks`, `cma_untrack_leak`,
//! `cma_track_leak`), over the engine's (`engine::leak_summary` and
//! friends, which need no registry) and the backends' live blocks
//! (`backend::for_each_live`): a backend's blocks are live blocks of the
//! program too, so they are counted, listed and ignored like cma's.
//! cma's blocks come first in the entries (see `engine::leak_entries`), the
//! backends' after them.

use core::ffi::c_void;

use crate::backend;
use crate::capi::{error_code, CMA_ERR_NULL_ARGUMENT, CMA_OK};

/// `cma_leak_entry` in cma.h (the original's struct).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CmaLeakEntry {
    pub memory_pointer: *mut c_void,
    pub size: usize,
}

/// `cma_leak_summary` in cma.h (the original's struct).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CmaLeakSummary {
    pub live_block_count: usize,
    pub live_bytes: usize,
    pub ignored_block_count: usize,
    pub ignored_bytes: usize,
}

/// `int32_t cma_get_leak_summary(cma_leak_summary *summary)`: the live
/// blocks not ignored, and the ignored ones, with their bytes (cma's as
/// its statistics count them, a backend's by its `get_allocation_size`).
/// `CMA_ERR_NULL_ARGUMENT` for null.
///
/// # Safety
/// `summary` is null or writable.
#[no_mangle]
pub unsafe extern "C" fn cma_get_leak_summary(summary: *mut CmaLeakSummary) -> i32 {
    if summary.is_null() {
        return CMA_ERR_NULL_ARGUMENT;
    }
    let (e, b) = (engine::leak_summary(), backend::leak_summary());
    let out = CmaLeakSummary {
        live_block_count: (e.live_blocks + b.live_blocks) as usize,
        live_bytes: (e.live_bytes + b.live_bytes) as usize,
        ignored_block_count: (e.ignored_blocks + b.ignored_blocks) as usize,
        ignored_bytes: (e.ignored_bytes + b.ignored_bytes) as usize,
    };
    // SAFETY: checked non-null; the caller guarantees it is writable.
    unsafe { summary.write(out) };
    CMA_OK
}

/// `int32_t cma_get_leak_entries(cma_leak_entry *entries, size_t capacity,
/// size_t *count)`: copies the first `capacity` live blocks that are not
/// ignored into `entries` and sets `*count` to how many there are in all
/// (so `entries` may be NULL with `capacity` 0, to size a buffer).
/// `CMA_ERR_NULL_ARGUMENT` for a null `count`, or null `entries` with a
/// non-zero `capacity`.
///
/// # Safety
/// `entries` is null or writable for `capacity` entries; `count` is null
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn cma_get_leak_entries(
    entries: *mut CmaLeakEntry,
    capacity: usize,
    count: *mut usize,
) -> i32 {
    if count.is_null() || (entries.is_null() && capacity != 0) {
        return CMA_ERR_NULL_ARGUMENT;
    }
    let mut n = 0usize;
    let mut put = |p: usize, size: usize| {
        if n < capacity {
            // SAFETY: `n < capacity`, and the caller made `entries` writable
            // for `capacity` entries.
            unsafe {
                entries.add(n).write(CmaLeakEntry {
                    memory_pointer: p as *mut c_void,
                    size,
                })
            };
        }
        n += 1;
    };
    for leak in engine::leaks() {
        put(leak.address, leak.size);
    }
    backend::for_each_live(|p, b| {
        if !b.ignored {
            put(p, b.size);
        }
    });
    // SAFETY: checked non-null; the caller guarantees it is writable.
    unsafe { count.write(n) };
    CMA_OK
}

/// `int32_t cma_report_leaks(void)`: writes the leak report to stderr (a
/// `cma: leak report: ...` line with the summary, then the first blocks,
/// one a line). `CMA_OK`.
#[no_mangle]
pub extern "C" fn cma_report_leaks() -> i32 {
    engine::faces::report_leaks_with(backend::leak_summary());
    CMA_OK
}

/// `int32_t cma_untrack_leak(void *ptr)`: leaves the live block `ptr` (cma's
/// or a backend's) out of leak reports: it counts as ignored in the
/// summary and is left out of the entries, until `cma_track_leak(ptr)` or
/// its free. `CMA_ERR_NULL_ARGUMENT` for NULL; the code of why `ptr` is not
/// a live block otherwise (`CMA_ERR_NOT_OURS`, `CMA_ERR_DOUBLE_FREE`...).
#[no_mangle]
pub extern "C" fn cma_untrack_leak(ptr: *mut c_void) -> i32 {
    set_tracked(ptr, false)
}

/// `int32_t cma_track_leak(void *ptr)`: counts an untracked block in leak
/// reports again; `CMA_OK` for a live block that was not untracked too.
/// Errors as `cma_untrack_leak`'s.
#[no_mangle]
pub extern "C" fn cma_track_leak(ptr: *mut c_void) -> i32 {
    set_tracked(ptr, true)
}

fn set_tracked(ptr: *mut c_void, tracked: bool) -> i32 {
    if ptr.is_null() {
        return CMA_ERR_NULL_ARGUMENT;
    }
    if backend::set_ignored(ptr, !tracked) {
        return CMA_OK;
    }
    let result = if tracked {
        engine::track_leak(ptr.cast())
    } else {
        engine::untrack_leak(ptr.cast())
    };
    match result {
        Ok(()) => CMA_OK,
        Err(e) => error_code(&e),
    }
}
