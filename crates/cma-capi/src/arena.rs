//! The `cma_arena_*` C API: `cma::Arena` behind opaque handles.
//!
//! A `cma_arena *` is not an address: it is the index of an entry in a
//! table of arenas and the generation of that entry. Every call checks the
//! handle against the table (one load) before it touches an arena, so a
//! handle of a destroyed arena, or a value that never was a handle, gives
//! `CMA_ERR_INVALID_ARGUMENT` (or NULL with `EINVAL`) instead of being
//! followed into memory that is gone. Destroying an arena moves its entry
//! to the next generation, so a stale handle never names the arena that
//! later takes the same entry.
//!
//! Thread rules (cma.h): one thread at a time calls the `cma_arena_*`
//! functions of one arena; any thread may free the arena's blocks with
//! `cma_free` or `free`. The table itself is lock-free (an entry is taken
//! with a compare-and-swap), so creating and destroying arenas from several
//! threads at once is fine, and a `fork` cannot leave it locked.

use core::ffi::c_void;
use core::mem::ManuallyDrop;
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use engine::Arena;

use crate::capi::{
    log, CMA_ERR_INVALID_ARGUMENT, CMA_ERR_NULL_ARGUMENT, CMA_ERR_OUT_OF_MEMORY,
    CMA_ERR_TOO_MANY_ARENAS, CMA_OK,
};
use crate::util::set_errno;

/// `cma_arena` in cma.h: opaque; a handle is never dereferenced.
#[repr(C)]
pub struct CmaArena {
    _opaque: [u8; 0],
}

/// `struct cma_arena_stats`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CmaArenaStats {
    pub allocations: u64,
    pub frees: u64,
    pub blocks_in_use: u64,
    pub bytes_in_use: u64,
    pub peak_bytes_in_use: u64,
    /// `CMA_NO_LIMIT` for none.
    pub byte_limit: usize,
}

/// Arenas live at once, at most.
const CAPACITY: usize = 1 << 14;
/// Bits of a handle that hold the entry's index; the generation is above.
const INDEX_BITS: u32 = 16;
const _: () = assert!(CAPACITY <= 1 << INDEX_BITS);

/// An entry's state word: the generation, shifted, and `LIVE` while an
/// arena of that generation holds it (being created or destroyed, `LIVE`
/// is set and the arena pointer may still be null: no call uses it then).
const LIVE: u64 = 1;
const GENERATION_SHIFT: u32 = 1;

struct Entry {
    state: AtomicU64,
    arena: AtomicPtr<c_void>,
}

static TABLE: [Entry; CAPACITY] = [const {
    Entry {
        state: AtomicU64::new(0),
        arena: AtomicPtr::new(null_mut()),
    }
}; CAPACITY];

/// Where the next search for a free entry starts.
static NEXT_ENTRY: AtomicUsize = AtomicUsize::new(0);

/// Takes a free entry for `arena`: its handle, or `None` when all are live.
fn register(arena: NonNull<c_void>) -> Option<*mut CmaArena> {
    let start = NEXT_ENTRY.load(Ordering::Relaxed);
    for i in 0..CAPACITY {
        let index = (start + i) % CAPACITY;
        let entry = &TABLE[index];
        let state = entry.state.load(Ordering::Relaxed);
        if state & LIVE != 0 {
            continue;
        }
        let generation = (state >> GENERATION_SHIFT) + 1;
        let live = generation << GENERATION_SHIFT | LIVE;
        if entry
            .state
            .compare_exchange(state, live, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            entry.arena.store(arena.as_ptr(), Ordering::Release);
            NEXT_ENTRY.store(index + 1, Ordering::Relaxed);
            return Some((generation << INDEX_BITS | index as u64) as usize as *mut CmaArena);
        }
    }
    None
}

/// The entry a handle names, when it names a live arena.
fn entry_of(handle: *mut CmaArena) -> Option<(&'static Entry, u64)> {
    let h = handle as usize as u64;
    let index = (h & ((1 << INDEX_BITS) - 1)) as usize;
    let generation = h >> INDEX_BITS;
    if generation == 0 || index >= CAPACITY {
        return None;
    }
    let entry = &TABLE[index];
    let live = generation << GENERATION_SHIFT | LIVE;
    (entry.state.load(Ordering::Acquire) == live).then_some((entry, live))
}

/// The live arena a handle names (borrowed: dropping it does nothing).
fn arena_of(handle: *mut CmaArena) -> Option<ManuallyDrop<Arena>> {
    let (entry, _) = entry_of(handle)?;
    let raw = NonNull::new(entry.arena.load(Ordering::Acquire))?;
    // SAFETY: the table holds what `Arena::into_raw` gave while the entry
    // is live; the `ManuallyDrop` never destroys it.
    Some(ManuallyDrop::new(unsafe { Arena::from_raw(raw) }))
}

/// C's alignment for a block of `size` bytes (as `malloc`'s).
fn c_align(size: usize) -> usize {
    if size >= 16 {
        16
    } else {
        8
    }
}

/// NULL with `EINVAL`: the handle names no live arena.
fn invalid_handle() -> *mut c_void {
    set_errno(libc::EINVAL);
    null_mut()
}

fn block_or_enomem(p: Result<NonNull<u8>, engine::CmaError>) -> *mut c_void {
    match p {
        Ok(p) => p.as_ptr().cast(),
        Err(_) => {
            set_errno(libc::ENOMEM);
            null_mut()
        }
    }
}

/// `int32_t cma_arena_create(cma_arena **arena, size_t byte_limit)`: a new
/// arena in `*arena`, whose blocks may take at most `byte_limit` usable
/// bytes together (`CMA_NO_LIMIT`: no limit). `CMA_ERR_NULL_ARGUMENT` for a
/// null `arena`, `CMA_ERR_OUT_OF_MEMORY`, `CMA_ERR_TOO_MANY_ARENAS` (16384
/// live at once); `*arena` is NULL after a failure.
///
/// # Safety
/// `arena` is null or writable.
#[no_mangle]
pub unsafe extern "C" fn cma_arena_create(arena: *mut *mut CmaArena, byte_limit: usize) -> i32 {
    if arena.is_null() {
        return CMA_ERR_NULL_ARGUMENT;
    }
    // SAFETY: checked non-null; the caller guarantees it is writable.
    unsafe { arena.write(null_mut()) };
    let a = match Arena::try_new() {
        Ok(a) => a,
        Err(_) => return CMA_ERR_OUT_OF_MEMORY,
    };
    a.set_limit((byte_limit != usize::MAX).then_some(byte_limit));
    let raw = a.into_raw();
    match register(raw) {
        Some(handle) => {
            // SAFETY: as above.
            unsafe { arena.write(handle) };
            CMA_OK
        }
        None => {
            // SAFETY: `raw` came from `into_raw` just above; this is its
            // one owner.
            drop(unsafe { Arena::from_raw(raw) });
            CMA_ERR_TOO_MANY_ARENAS
        }
    }
}

/// `void *cma_arena_malloc(cma_arena *arena, size_t size)`: `size` bytes in
/// the arena (aligned as `malloc`'s); NULL with `ENOMEM` when memory or a
/// limit runs out, NULL with `EINVAL` when `arena` is not a live arena.
#[no_mangle]
pub extern "C" fn cma_arena_malloc(arena: *mut CmaArena, size: usize) -> *mut c_void {
    let Some(a) = arena_of(arena) else {
        return invalid_handle();
    };
    let p = block_or_enomem(a.alloc(size, c_align(size)));
    log("cma_arena_malloc", p, size, None);
    p
}

/// `void *cma_arena_calloc(cma_arena *arena, size_t n, size_t size)`:
/// `n * size` zeroed bytes in the arena; NULL with `ENOMEM` on overflow or
/// when memory or a limit runs out, NULL with `EINVAL` for a bad `arena`.
#[no_mangle]
pub extern "C" fn cma_arena_calloc(arena: *mut CmaArena, n: usize, size: usize) -> *mut c_void {
    let Some(a) = arena_of(arena) else {
        return invalid_handle();
    };
    let Some(total) = n.checked_mul(size) else {
        set_errno(libc::ENOMEM);
        return null_mut();
    };
    let p = block_or_enomem(a.alloc_zeroed(total, c_align(total)));
    log("cma_arena_calloc", p, total, None);
    p
}

/// `void *cma_arena_realloc(cma_arena *arena, void *ptr, size_t size)`:
/// resizes `ptr`, keeping its contents up to the smaller size, as
/// `cma_realloc` (NULL `ptr` allocates; size 0 gives a minimal block). A
/// block of this arena stays in it; a live block from elsewhere moves into
/// it (and is freed where it was). NULL with `ENOMEM` on failure (`ptr`
/// intact), NULL with `EINVAL` for a bad `arena`. A `ptr` that is not a live
/// block aborts with a "cma: " diagnostic.
///
/// # Safety
/// `ptr` is null or a live block, not used after a successful call.
#[no_mangle]
pub unsafe extern "C" fn cma_arena_realloc(
    arena: *mut CmaArena,
    ptr: *mut c_void,
    size: usize,
) -> *mut c_void {
    let Some(a) = arena_of(arena) else {
        return invalid_handle();
    };
    // SAFETY: the caller's contract is the engine's.
    let q = block_or_enomem(unsafe {
        engine::faces::arena_realloc(&a, ptr.cast(), size, c_align(size), "cma_arena_realloc")
    });
    log("cma_arena_realloc", q, size, Some(ptr));
    q
}

/// `void *cma_arena_aligned_alloc(cma_arena *arena, size_t alignment, size_t
/// size)`: `size` bytes in the arena aligned to `alignment` (any power of
/// two); NULL with `EINVAL` for another alignment or a bad `arena`, NULL
/// with `ENOMEM` when memory or a limit runs out.
#[no_mangle]
pub extern "C" fn cma_arena_aligned_alloc(
    arena: *mut CmaArena,
    alignment: usize,
    size: usize,
) -> *mut c_void {
    let Some(a) = arena_of(arena) else {
        return invalid_handle();
    };
    if !alignment.is_power_of_two() {
        set_errno(libc::EINVAL);
        return null_mut();
    }
    let p = block_or_enomem(a.alloc(size, alignment.max(8)));
    log("cma_arena_aligned_alloc", p, size, None);
    p
}

/// `int32_t cma_arena_reset(cma_arena *arena)`: releases every block still
/// in the arena at once; the arena stays, empty. `CMA_ERR_NULL_ARGUMENT`,
/// or `CMA_ERR_INVALID_ARGUMENT` when `arena` is not a live arena.
#[no_mangle]
pub extern "C" fn cma_arena_reset(arena: *mut CmaArena) -> i32 {
    if arena.is_null() {
        return CMA_ERR_NULL_ARGUMENT;
    }
    let Some(mut a) = arena_of(arena) else {
        return CMA_ERR_INVALID_ARGUMENT;
    };
    a.reset();
    CMA_OK
}

/// `int32_t cma_arena_destroy(cma_arena *arena)`: releases every block of
/// the arena at once and the arena itself; the handle is invalid from then
/// on. `CMA_ERR_NULL_ARGUMENT`, or `CMA_ERR_INVALID_ARGUMENT` when `arena`
/// is not a live arena (destroyed already, say).
#[no_mangle]
pub extern "C" fn cma_arena_destroy(arena: *mut CmaArena) -> i32 {
    if arena.is_null() {
        return CMA_ERR_NULL_ARGUMENT;
    }
    let Some((entry, live)) = entry_of(arena) else {
        return CMA_ERR_INVALID_ARGUMENT;
    };
    let raw = entry.arena.load(Ordering::Acquire);
    // The entry goes to the next generation first (no call finds the arena
    // any more, and the entry is free), then the arena goes.
    if entry
        .state
        .compare_exchange(live, live & !LIVE, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return CMA_ERR_INVALID_ARGUMENT;
    }
    entry.arena.store(null_mut(), Ordering::Release);
    if let Some(raw) = NonNull::new(raw) {
        // SAFETY: the entry held what `into_raw` gave, and no call finds it
        // now: this is its one owner.
        drop(unsafe { Arena::from_raw(raw) });
    }
    CMA_OK
}

/// `int32_t cma_arena_get_stats(cma_arena *arena, struct cma_arena_stats
/// *out)`: the arena's statistics in `*out`. `CMA_ERR_NULL_ARGUMENT` for a
/// null argument, `CMA_ERR_INVALID_ARGUMENT` for a bad `arena`.
///
/// # Safety
/// `out` is null or writable.
#[no_mangle]
pub unsafe extern "C" fn cma_arena_get_stats(arena: *mut CmaArena, out: *mut CmaArenaStats) -> i32 {
    if arena.is_null() || out.is_null() {
        return CMA_ERR_NULL_ARGUMENT;
    }
    let Some(a) = arena_of(arena) else {
        return CMA_ERR_INVALID_ARGUMENT;
    };
    let s = a.stats();
    let stats = CmaArenaStats {
        allocations: s.allocations,
        frees: s.frees,
        blocks_in_use: s.blocks_in_use,
        bytes_in_use: s.bytes_in_use,
        peak_bytes_in_use: s.peak_bytes_in_use,
        byte_limit: s.limit.unwrap_or(usize::MAX),
    };
    // SAFETY: checked non-null; the caller guarantees it is writable.
    unsafe { out.write(stats) };
    CMA_OK
}
