//! The C++ `operator new` / `operator delete` family, under their Itanium
//! ABI (GCC, Clang) mangled names, so that C++ programs allocate from cma
//! through `LD_PRELOAD` too.
//!
//! Out of memory: the throwing forms cannot throw `std::bad_alloc` from Rust,
//! so they print `cma: operator new: out of memory (N bytes)` on stderr and
//! abort. (libstdc++'s own operator new would throw; a program that catches
//! `bad_alloc` to recover will abort on cma instead.) The `nothrow` forms
//! return null, as the standard says. An alignment that is not a power of two
//! (undefined behaviour in C++) is treated the same way.
//!
//! Deletes accept null. At the `default` check level every block records
//! which family allocated it (`new`, `new[]`, the `malloc` family), and a
//! release by another family (`delete` of a `malloc` block, `free` of a
//! `new[]` block, `delete` of a `new[]` block) is reported; the sizes and
//! alignments passed to the sized and aligned deletes are checked against
//! the block. At `fast` they are hints (the block is validated as in
//! `free`).

use core::ffi::c_void;

use engine::AllocKind;

#[cold]
#[inline(never)]
fn out_of_memory(size: usize) -> ! {
    let mut w = crate::util::FdWriter::new(2);
    let _ = core::fmt::Write::write_fmt(
        &mut w,
        format_args!("cma: operator new: out of memory ({size} bytes)\n"),
    );
    w.flush();
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

#[inline]
fn new_or_abort(size: usize, kind: AllocKind) -> *mut c_void {
    let p = engine::faces::alloc_of_kind(size, 16, kind);
    if p.is_null() {
        out_of_memory(size);
    }
    p.cast()
}

#[inline]
fn new_aligned(size: usize, align: usize, kind: AllocKind) -> *mut c_void {
    if !align.is_power_of_two() {
        return core::ptr::null_mut();
    }
    engine::faces::alloc_of_kind(size, align.max(16), kind).cast()
}

#[inline]
fn new_aligned_or_abort(size: usize, align: usize, kind: AllocKind) -> *mut c_void {
    let p = new_aligned(size, align, kind);
    if p.is_null() {
        out_of_memory(size);
    }
    p
}

/// A delete of `kind`'s family; `size` and `align` (1 for none) are checked
/// against the block at the `default` level.
#[inline]
unsafe fn delete(
    p: *mut c_void,
    size: Option<usize>,
    align: usize,
    operation: &'static str,
    kind: AllocKind,
) {
    // SAFETY: the caller (compiled C++) gives up `p`; the engine validates it.
    unsafe {
        if size.is_none() && align == 1 {
            engine::faces::free_of_kind(p.cast(), operation, kind)
        } else {
            engine::faces::free_sized(p.cast(), size, align, operation, kind)
        }
    }
}

const NEW: AllocKind = AllocKind::New;
const NEW_ARRAY: AllocKind = AllocKind::NewArray;
const DELETE: &str = "operator delete";
const DELETE_ARRAY: &str = "operator delete[]";

/// `operator new(size_t)`: aborts when memory runs out.
#[no_mangle]
pub extern "C" fn _Znwm(size: usize) -> *mut c_void {
    new_or_abort(size, NEW)
}

/// `operator new[](size_t)`: aborts when memory runs out.
#[no_mangle]
pub extern "C" fn _Znam(size: usize) -> *mut c_void {
    new_or_abort(size, NEW_ARRAY)
}

/// `operator new(size_t, const std::nothrow_t&)`: null when memory runs out.
#[no_mangle]
pub extern "C" fn _ZnwmRKSt9nothrow_t(size: usize, _nt: *const c_void) -> *mut c_void {
    engine::faces::alloc_of_kind(size, 16, NEW).cast()
}

/// `operator new[](size_t, const std::nothrow_t&)`: null when memory runs out.
#[no_mangle]
pub extern "C" fn _ZnamRKSt9nothrow_t(size: usize, _nt: *const c_void) -> *mut c_void {
    engine::faces::alloc_of_kind(size, 16, NEW_ARRAY).cast()
}

/// `operator new(size_t, std::align_val_t)`: aborts when memory runs out.
#[no_mangle]
pub extern "C" fn _ZnwmSt11align_val_t(size: usize, align: usize) -> *mut c_void {
    new_aligned_or_abort(size, align, NEW)
}

/// `operator new[](size_t, std::align_val_t)`: aborts when memory runs out.
#[no_mangle]
pub extern "C" fn _ZnamSt11align_val_t(size: usize, align: usize) -> *mut c_void {
    new_aligned_or_abort(size, align, NEW_ARRAY)
}

/// `operator new(size_t, std::align_val_t, const std::nothrow_t&)`.
#[no_mangle]
pub extern "C" fn _ZnwmSt11align_val_tRKSt9nothrow_t(
    size: usize,
    align: usize,
    _nt: *const c_void,
) -> *mut c_void {
    new_aligned(size, align, NEW)
}

/// `operator new[](size_t, std::align_val_t, const std::nothrow_t&)`.
#[no_mangle]
pub extern "C" fn _ZnamSt11align_val_tRKSt9nothrow_t(
    size: usize,
    align: usize,
    _nt: *const c_void,
) -> *mut c_void {
    new_aligned(size, align, NEW_ARRAY)
}

/// `operator delete(void*)`.
///
/// # Safety
/// As for `free`.
#[no_mangle]
pub unsafe extern "C" fn _ZdlPv(p: *mut c_void) {
    // SAFETY: as for `free`.
    unsafe { delete(p, None, 1, DELETE, NEW) }
}

/// `operator delete[](void*)`.
///
/// # Safety
/// As for `free`.
#[no_mangle]
pub unsafe extern "C" fn _ZdaPv(p: *mut c_void) {
    // SAFETY: as for `free`.
    unsafe { delete(p, None, 1, DELETE_ARRAY, NEW_ARRAY) }
}

/// `operator delete(void*, size_t)`.
///
/// # Safety
/// As for `free`.
#[no_mangle]
pub unsafe extern "C" fn _ZdlPvm(p: *mut c_void, size: usize) {
    // SAFETY: as for `free`.
    unsafe { delete(p, Some(size), 1, DELETE, NEW) }
}

/// `operator delete[](void*, size_t)`.
///
/// # Safety
/// As for `free`.
#[no_mangle]
pub unsafe extern "C" fn _ZdaPvm(p: *mut c_void, size: usize) {
    // SAFETY: as for `free`.
    unsafe { delete(p, Some(size), 1, DELETE_ARRAY, NEW_ARRAY) }
}

/// `operator delete(void*, const std::nothrow_t&)`.
///
/// # Safety
/// As for `free`.
#[no_mangle]
pub unsafe extern "C" fn _ZdlPvRKSt9nothrow_t(p: *mut c_void, _nt: *const c_void) {
    // SAFETY: as for `free`.
    unsafe { delete(p, None, 1, DELETE, NEW) }
}

/// `operator delete[](void*, const std::nothrow_t&)`.
///
/// # Safety
/// As for `free`.
#[no_mangle]
pub unsafe extern "C" fn _ZdaPvRKSt9nothrow_t(p: *mut c_void, _nt: *const c_void) {
    // SAFETY: as for `free`.
    unsafe { delete(p, None, 1, DELETE_ARRAY, NEW_ARRAY) }
}

/// `operator delete(void*, std::align_val_t)`.
///
/// # Safety
/// As for `free`.
#[no_mangle]
pub unsafe extern "C" fn _ZdlPvSt11align_val_t(p: *mut c_void, align: usize) {
    // SAFETY: as for `free`.
    unsafe { delete(p, None, align, DELETE, NEW) }
}

/// `operator delete[](void*, std::align_val_t)`.
///
/// # Safety
/// As for `free`.
#[no_mangle]
pub unsafe extern "C" fn _ZdaPvSt11align_val_t(p: *mut c_void, align: usize) {
    // SAFETY: as for `free`.
    unsafe { delete(p, None, align, DELETE_ARRAY, NEW_ARRAY) }
}

/// `operator delete(void*, size_t, std::align_val_t)`.
///
/// # Safety
/// As for `free`.
#[no_mangle]
pub unsafe extern "C" fn _ZdlPvmSt11align_val_t(p: *mut c_void, size: usize, align: usize) {
    // SAFETY: as for `free`.
    unsafe { delete(p, Some(size), align, DELETE, NEW) }
}

/// `operator delete[](void*, size_t, std::align_val_t)`.
///
/// # Safety
/// As for `free`.
#[no_mangle]
pub unsafe extern "C" fn _ZdaPvmSt11align_val_t(p: *mut c_void, size: usize, align: usize) {
    // SAFETY: as for `free`.
    unsafe { delete(p, Some(size), align, DELETE_ARRAY, NEW_ARRAY) }
}

/// `operator delete(void*, std::align_val_t, const std::nothrow_t&)`.
///
/// # Safety
/// As for `free`.
#[no_mangle]
pub unsafe extern "C" fn _ZdlPvSt11align_val_tRKSt9nothrow_t(
    p: *mut c_void,
    align: usize,
    _nt: *const c_void,
) {
    // SAFETY: as for `free`.
    unsafe { delete(p, None, align, DELETE, NEW) }
}

/// `operator delete[](void*, std::align_val_t, const std::nothrow_t&)`.
///
/// # Safety
/// As for `free`.
#[no_mangle]
pub unsafe extern "C" fn _ZdaPvSt11align_val_tRKSt9nothrow_t(
    p: *mut c_void,
    align: usize,
    _nt: *const c_void,
) {
    // SAFETY: as for `free`.
    unsafe { delete(p, None, align, DELETE_ARRAY, NEW_ARRAY) }
}
