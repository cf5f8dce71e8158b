//! Stacks as raw return addresses, for the sampled blocks' allocation and
//! free sites and the fault handler's access site. Symbolising them is for
//! `cma run`, after the program stopped: the program pays only for the
//! addresses.
//!
//! The walk is the unwinder's (`_Unwind_Backtrace`, from libgcc: linked
//! into Rust programs by std, and statically into libcma, see cma-capi's
//! build.rs), driven by the unwind tables every x86_64 and aarch64 Linux
//! object carries, so it needs no frame pointers. It allocates nothing and
//! takes no lock of its own: it finds each frame's table with glibc's
//! `_dl_find_object` (glibc 2.35 and later: lock-free and
//! async-signal-safe, so the fault handler may walk too) or, with an older
//! libc, `dl_iterate_phdr` (the loader's recursive lock, held only while
//! the loader changes its list of objects, never while it allocates) and
//! a static cache. (Objects registered with `__register_frame_info`, which
//! only fully static executables do, are sorted in memory the unwinder
//! mallocs the first time; a nested call then finds `capturing` set and
//! cma skips the stack instead of recursing: see `heap::guard`.) It costs
//! about 100 ns per frame, which sampling pays once at allocation and once
//! at free; `cma-capi`'s tests check, with a shim preloaded before libcma,
//! that no malloc call reaches libcma while it is inside a call.

/// `_Unwind_Reason_Code` values.
const URC_NO_REASON: i32 = 0;
const URC_NORMAL_STOP: i32 = 4;

extern "C" {
    fn _Unwind_Backtrace(
        trace: extern "C" fn(context: *mut libc::c_void, arg: *mut libc::c_void) -> i32,
        arg: *mut libc::c_void,
    ) -> i32;
    fn _Unwind_GetIP(context: *mut libc::c_void) -> usize;
}

struct Walk<'a> {
    frames: &'a mut [usize],
    len: usize,
    skip: usize,
}

extern "C" fn each_frame(context: *mut libc::c_void, arg: *mut libc::c_void) -> i32 {
    // SAFETY: `arg` is the `Walk` that `capture` passed, alive for the call.
    let walk = unsafe { &mut *(arg as *mut Walk) };
    if walk.skip > 0 {
        walk.skip -= 1;
        return URC_NO_REASON;
    }
    if walk.len >= walk.frames.len() {
        return URC_NORMAL_STOP;
    }
    // SAFETY: the unwinder passes a valid context for the frame.
    let ip = unsafe { _Unwind_GetIP(context) };
    if ip == 0 {
        return URC_NORMAL_STOP;
    }
    walk.frames[walk.len] = ip;
    walk.len += 1;
    URC_NO_REASON
}

/// Writes the return addresses of the calling thread's stack into `frames`,
/// innermost first, leaving out `capture` itself and `skip` more frames
/// (its callers'); returns how many it wrote. On x86_64 the cached walk of
/// `fast_unwind` takes it when every frame has a plain rule, and the
/// unwinder otherwise: the frames are the same.
#[inline(never)]
pub(crate) fn capture(frames: &mut [usize], skip: usize) -> usize {
    if let Some(len) = super::fast_unwind::capture(frames, skip) {
        return len;
    }
    capture_with_unwinder(frames, skip + 1)
}

/// `capture`, by the unwinder alone (leaving out this function itself and
/// `skip` more frames).
#[inline(never)]
pub(crate) fn capture_with_unwinder(frames: &mut [usize], skip: usize) -> usize {
    let mut walk = Walk {
        frames,
        len: 0,
        skip: skip + 1,
    };
    // SAFETY: the callback matches the unwinder's signature and only
    // touches `walk`, which outlives the call.
    unsafe { _Unwind_Backtrace(each_frame, (&mut walk as *mut Walk).cast()) };
    walk.len
}
