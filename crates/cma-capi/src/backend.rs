//! The original system's backend hooks (`cma_set_backend`): while a backend
//! is set, new blocks of the `cma_*` API come from it; a block goes back to
//! whoever handed it out, so backends can be set, replaced and cleared
//! while blocks of every kind are live.
//!
//! # The slot table
//!
//! A backend's hooks are copied into one of `SLOTS` slots; `CURRENT` names
//! the slot new blocks come from (0: none). A slot stays in the table, and
//! is asked `owns_allocation` when a block comes back, for as long as it
//! holds live blocks, current or not: that is what lets a program clear a
//! backend and still free its blocks. A slot is rewritten only when it is
//! not current and holds nothing; setting hooks equal to a slot's (the same
//! functions and `user_data`) makes that slot current again.
//!
//! `Slot::holds` counts the slot's live blocks plus the calls reading its
//! hooks right now ("pins"); the `WRITING` bit is set while a setter
//! rewrites the hooks. A reader pins before it reads (and backs off when it
//! finds `WRITING`); a setter claims a slot only from `holds == 0`. So a
//! slot's hooks never change under a call that uses them, and no call waits
//! on another: readers only add and subtract. Setters are serialised by
//! `SETTER` (a plain mutex: `cma_set_backend` is rare and may block).
//!
//! # What is counted
//!
//! Backend blocks are counted here (allocations, frees, bytes by the
//! backend's `get_allocation_size`, peak bytes) and their bytes are
//! reported to the engine, whose total allocation limit counts them
//! (`engine::faces::add_external_bytes`). The C API's statistics add these
//! counters to the engine's.
//!
//! # Live blocks
//!
//! Each live backend block is also kept in `LIVE` (its address, size and
//! whether it is left out of leak reports), so that the leak API
//! (`crate::leaks`) can list and untrack backend blocks as it does cma's.

use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use engine::faces::AddrTable;
use std::sync::Mutex;

/// `cma_backend_hooks` in cma.h.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CmaBackendHooks {
    /// `void *(*allocate)(size_t size, void *user_data)`: required.
    pub allocate: Option<unsafe extern "C" fn(usize, *mut c_void) -> *mut c_void>,
    /// `void *(*reallocate)(void *ptr, size_t size, void *user_data)`:
    /// optional (without it: allocate, copy, deallocate).
    pub reallocate: Option<unsafe extern "C" fn(*mut c_void, usize, *mut c_void) -> *mut c_void>,
    /// `void (*deallocate)(void *ptr, void *user_data)`: required.
    pub deallocate: Option<unsafe extern "C" fn(*mut c_void, *mut c_void)>,
    /// `void *(*aligned_allocate)(size_t alignment, size_t size, void
    /// *user_data)`: optional (without it: `allocate`, when its block
    /// happens to be aligned).
    pub aligned_allocate: Option<unsafe extern "C" fn(usize, usize, *mut c_void) -> *mut c_void>,
    /// `size_t (*get_allocation_size)(const void *ptr, void *user_data)`:
    /// required.
    pub get_allocation_size: Option<unsafe extern "C" fn(*const c_void, *mut c_void) -> usize>,
    /// `bool (*owns_allocation)(const void *ptr, void *user_data)`:
    /// required.
    pub owns_allocation: Option<unsafe extern "C" fn(*const c_void, *mut c_void) -> bool>,
    /// Passed to every hook.
    pub user_data: *mut c_void,
}

/// Hooks as plain words, so that a slot is a set of atomics.
type Words = [usize; 7];

impl CmaBackendHooks {
    fn words(&self) -> Words {
        [
            self.allocate.map_or(0, |f| f as usize),
            self.reallocate.map_or(0, |f| f as usize),
            self.deallocate.map_or(0, |f| f as usize),
            self.aligned_allocate.map_or(0, |f| f as usize),
            self.get_allocation_size.map_or(0, |f| f as usize),
            self.owns_allocation.map_or(0, |f| f as usize),
            self.user_data as usize,
        ]
    }

    fn has_required_hooks(&self) -> bool {
        self.allocate.is_some()
            && self.deallocate.is_some()
            && self.get_allocation_size.is_some()
            && self.owns_allocation.is_some()
    }
}

/// Why `set` refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SetRefused {
    /// A required hook is null.
    MissingHook,
    /// Every slot is current or still holds live blocks.
    TableFull,
}

/// How many backends can hold live blocks at once.
const SLOTS: usize = 16;
/// Set in `Slot::holds` while a setter writes the slot's hooks.
const WRITING: usize = 1 << (usize::BITS - 1);
/// How often a reader retries a slot that a setter is writing before it
/// serves the call from cma instead (a setter writes seven words).
const WRITING_RETRIES: u32 = 1 << 16;

struct Slot {
    /// Live blocks + pins, and `WRITING`; see the module docs.
    holds: AtomicUsize,
    /// The hooks' words (`CmaBackendHooks::words`), written only under
    /// `WRITING`, read only while pinned.
    words: [AtomicUsize; 7],
}

#[allow(clippy::declare_interior_mutable_const)] // a template for the array below
const EMPTY_SLOT: Slot = Slot {
    holds: AtomicUsize::new(0),
    words: [const { AtomicUsize::new(0) }; 7],
};

static TABLE: [Slot; SLOTS] = [EMPTY_SLOT; SLOTS];
/// The slot new blocks come from, plus one; 0 when no backend is set.
static CURRENT: AtomicUsize = AtomicUsize::new(0);
/// Whether a backend was ever set: until then, no call looks at the table.
static EVER_SET: AtomicBool = AtomicBool::new(false);
static SETTER: Mutex<()> = Mutex::new(());

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static FREES: AtomicU64 = AtomicU64::new(0);
static BYTES_IN_USE: AtomicU64 = AtomicU64::new(0);
static PEAK_BYTES: AtomicU64 = AtomicU64::new(0);

/// A pinned slot: its hooks can be called until it is dropped (which
/// unpins), or until `keep_as_block` turns the pin into a live block's hold.
struct Pinned {
    slot: &'static Slot,
    hooks: CmaBackendHooks,
}

impl Pinned {
    /// Pins slot `index` unless a setter is writing it or, with
    /// `needs_blocks`, it holds no live block (so cannot own a pointer).
    fn try_pin(index: usize, needs_blocks: bool) -> Result<Pinned, ()> {
        let slot = TABLE.get(index).ok_or(())?;
        let before = slot.holds.fetch_add(1, Ordering::Acquire);
        if before & WRITING != 0 || (needs_blocks && before == 0) {
            slot.holds.fetch_sub(1, Ordering::Release);
            return Err(());
        }
        let w: Words = core::array::from_fn(|i| slot.words[i].load(Ordering::Relaxed));
        // SAFETY: the words were written from a validated `CmaBackendHooks`
        // (function pointers of the right types, or 0 for None) under
        // WRITING, which the Acquire above ordered before these loads; the
        // pin keeps them from changing until it is dropped.
        let hooks = unsafe {
            CmaBackendHooks {
                allocate: core::mem::transmute::<usize, Option<_>>(w[0]),
                reallocate: core::mem::transmute::<usize, Option<_>>(w[1]),
                deallocate: core::mem::transmute::<usize, Option<_>>(w[2]),
                aligned_allocate: core::mem::transmute::<usize, Option<_>>(w[3]),
                get_allocation_size: core::mem::transmute::<usize, Option<_>>(w[4]),
                owns_allocation: core::mem::transmute::<usize, Option<_>>(w[5]),
                user_data: w[6] as *mut c_void,
            }
        };
        Ok(Pinned { slot, hooks })
    }

    /// The pin becomes the hold of a block the backend handed out.
    fn keep_as_block(self) {
        core::mem::forget(self);
    }

    /// The backend took back one of its blocks: its hold goes.
    fn block_gone(&self) {
        self.slot.holds.fetch_sub(1, Ordering::Release);
    }

    fn owns(&self, p: *const c_void) -> bool {
        match self.hooks.owns_allocation {
            // SAFETY: the backend's contract: owns_allocation accepts any
            // pointer and answers whether it is one of its live blocks.
            Some(owns) => unsafe { owns(p, self.hooks.user_data) },
            None => false,
        }
    }

    fn size_of(&self, p: *const c_void) -> usize {
        match self.hooks.get_allocation_size {
            // SAFETY: `p` is one of the backend's live blocks (it said so).
            Some(size) => unsafe { size(p, self.hooks.user_data) },
            None => 0,
        }
    }

    fn allocate(&self, size: usize) -> *mut c_void {
        match self.hooks.allocate {
            // SAFETY: the backend's contract.
            Some(allocate) => unsafe { allocate(size, self.hooks.user_data) },
            None => core::ptr::null_mut(),
        }
    }

    fn deallocate(&self, p: *mut c_void) {
        if let Some(deallocate) = self.hooks.deallocate {
            // SAFETY: `p` is one of the backend's live blocks, given up by
            // the caller.
            unsafe { deallocate(p, self.hooks.user_data) }
        }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        self.slot.holds.fetch_sub(1, Ordering::Release);
    }
}

/// Copies `hooks` into the table and makes them current.
pub(crate) fn set(hooks: &CmaBackendHooks) -> Result<(), SetRefused> {
    if !hooks.has_required_hooks() {
        return Err(SetRefused::MissingHook);
    }
    let words = hooks.words();
    let _setter = SETTER.lock().unwrap_or_else(|e| e.into_inner());
    let current = CURRENT.load(Ordering::Relaxed);
    let same = TABLE.iter().position(|s| {
        s.holds.load(Ordering::Acquire) & WRITING == 0
            && s.words
                .iter()
                .zip(words)
                .all(|(a, w)| a.load(Ordering::Relaxed) == w)
    });
    let index = match same {
        Some(i) => i,
        None => {
            let free = TABLE.iter().enumerate().position(|(i, s)| {
                i + 1 != current
                    && s.holds
                        .compare_exchange(0, WRITING, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
            });
            let Some(i) = free else {
                return Err(SetRefused::TableFull);
            };
            let slot = &TABLE[i];
            for (a, w) in slot.words.iter().zip(words) {
                a.store(w, Ordering::Relaxed);
            }
            // Keeps the pins readers added (and will take back) meanwhile.
            slot.holds.fetch_and(!WRITING, Ordering::Release);
            i
        }
    };
    EVER_SET.store(true, Ordering::Relaxed);
    CURRENT.store(index + 1, Ordering::Release);
    Ok(())
}

/// No backend: new blocks come from cma again. The old backend's live
/// blocks still go back to it.
pub(crate) fn clear() {
    let _setter = SETTER.lock().unwrap_or_else(|e| e.into_inner());
    CURRENT.store(0, Ordering::Release);
}

/// Whether a backend is set.
pub(crate) fn is_enabled() -> bool {
    CURRENT.load(Ordering::Acquire) != 0
}

/// Pins the current backend, if one is set.
fn pin_current() -> Option<Pinned> {
    for _ in 0..WRITING_RETRIES {
        let current = CURRENT.load(Ordering::Acquire);
        if current == 0 {
            return None;
        }
        if let Ok(pinned) = Pinned::try_pin(current - 1, false) {
            return Some(pinned);
        }
        core::hint::spin_loop();
    }
    None
}

/// Pins the backend that owns `p`, if any does.
fn pin_owner(p: *const c_void) -> Option<Pinned> {
    if p.is_null() || !EVER_SET.load(Ordering::Relaxed) {
        return None;
    }
    let current = CURRENT.load(Ordering::Acquire);
    let order =
        core::iter::once(current.wrapping_sub(1)).chain((0..SLOTS).filter(|&i| i + 1 != current));
    for i in order {
        let Some(slot) = TABLE.get(i) else { continue };
        if slot.holds.load(Ordering::Relaxed) & !WRITING == 0 {
            continue;
        }
        if let Ok(pinned) = Pinned::try_pin(i, true) {
            if pinned.owns(p) {
                return Some(pinned);
            }
        }
    }
    None
}

fn counted_allocation(p: *mut c_void, bytes: usize) {
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    add_bytes(bytes);
    // Without memory for the entry the block is not listed (it is still
    // counted).
    let _ = live().insert(
        p as usize,
        LiveBlock {
            size: bytes,
            ignored: false,
        },
    );
}

/// Counts a block's free; its `LIVE` entry went before the backend got it
/// back (`forget_live`: once back, the backend may hand its address out
/// again, to another thread).
fn counted_free(bytes: usize) {
    FREES.fetch_add(1, Ordering::Relaxed);
    sub_bytes(bytes);
}

/// Takes `p` out of `LIVE`, before it goes back to its backend.
fn forget_live(p: *mut c_void) -> Option<LiveBlock> {
    live().remove(p as usize)
}

/// A live backend block, for the leak API.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LiveBlock {
    pub size: usize,
    /// Left out of leak reports (`cma_untrack_leak`).
    pub ignored: bool,
}

/// Every live backend block by address (see the module docs). Its memory
/// comes from the engine (this crate's global allocator), never from a
/// backend.
static LIVE: Mutex<AddrTable<LiveBlock>> = Mutex::new(AddrTable::new());

fn live() -> std::sync::MutexGuard<'static, AddrTable<LiveBlock>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Calls `each` with every live backend block, in no particular order
/// (under the table's lock: `each` must not call into the backends).
pub(crate) fn for_each_live(mut each: impl FnMut(usize, LiveBlock)) {
    live().for_each(|p, &b| each(p, b));
}

/// Marks the live backend block `p` as left out of leak reports (or
/// counted again); false when no backend holds a live block at `p`.
pub(crate) fn set_ignored(p: *const c_void, ignored: bool) -> bool {
    let mut live = live();
    match live.get(p as usize) {
        Some(b) => {
            let _ = live.insert(p as usize, LiveBlock { ignored, ..b });
            true
        }
        None => false,
    }
}

fn add_bytes(bytes: usize) {
    let now = BYTES_IN_USE.fetch_add(bytes as u64, Ordering::Relaxed) + bytes as u64;
    PEAK_BYTES.fetch_max(now, Ordering::Relaxed);
    engine::faces::add_external_bytes(bytes);
}

fn sub_bytes(bytes: usize) {
    let _ = BYTES_IN_USE.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
        Some(b.saturating_sub(bytes as u64))
    });
    engine::faces::sub_external_bytes(bytes);
}

/// What a routed call did.
pub(crate) enum Routed<T> {
    /// No backend is involved: cma serves the call.
    Cma,
    /// The backend served it, with this result.
    Backend(T),
}

/// A new block of `size` bytes (at `align`, when given) from the current
/// backend. `Backend(null)` when the backend or an allocation limit
/// refused.
pub(crate) fn allocate(size: usize, align: Option<usize>) -> Routed<*mut c_void> {
    if !EVER_SET.load(Ordering::Relaxed) {
        return Routed::Cma;
    }
    let Some(backend) = pin_current() else {
        return Routed::Cma;
    };
    if engine::faces::check_alloc_limits(size).is_err() {
        return Routed::Backend(core::ptr::null_mut());
    }
    // The original passes 1 for 0: a backend need not handle empty blocks.
    let size = size.max(1);
    let p = match (align, backend.hooks.aligned_allocate) {
        (None, _) => backend.allocate(size),
        // SAFETY: the backend's contract.
        (Some(align), Some(aligned)) => unsafe { aligned(align, size, backend.hooks.user_data) },
        (Some(align), None) => {
            let p = backend.allocate(size);
            if !p.is_null() && p as usize % align != 0 {
                backend.deallocate(p);
                core::ptr::null_mut()
            } else {
                p
            }
        }
    };
    if p.is_null() {
        return Routed::Backend(p);
    }
    counted_allocation(p, backend.size_of(p));
    backend.keep_as_block();
    Routed::Backend(p)
}

/// Gives `p` back to the backend that owns it (its whole size zeroed
/// first, with `wipe`); `Backend(size)` with the block's size, or `Cma`
/// when no backend owns it.
pub(crate) fn free(p: *mut c_void, wipe: bool) -> Routed<usize> {
    let Some(owner) = pin_owner(p) else {
        return Routed::Cma;
    };
    let size = owner.size_of(p);
    if wipe {
        for i in 0..size {
            // SAFETY: the backend says `p` is its live block of `size`
            // bytes; volatile so the wipe is not optimised away before the
            // block is handed back.
            unsafe { core::ptr::write_volatile(p.cast::<u8>().add(i), 0) };
        }
    }
    forget_live(p);
    owner.deallocate(p);
    counted_free(size);
    owner.block_gone();
    Routed::Backend(size)
}

/// The size of `p` by the backend that owns it.
pub(crate) fn size_of(p: *const c_void) -> Routed<usize> {
    match pin_owner(p) {
        Some(owner) => Routed::Backend(owner.size_of(p)),
        None => Routed::Cma,
    }
}

/// Resizes `p` when a backend owns it: with its `reallocate` hook, or by
/// allocating from the same backend, copying and giving `p` back.
/// `Backend(null)` when that failed (then `p` is intact).
pub(crate) fn reallocate(p: *mut c_void, size: usize) -> Routed<*mut c_void> {
    let Some(owner) = pin_owner(p) else {
        return Routed::Cma;
    };
    if engine::faces::check_alloc_limits(size).is_err() {
        return Routed::Backend(core::ptr::null_mut());
    }
    let size = size.max(1);
    let old_size = owner.size_of(p);
    if let Some(reallocate) = owner.hooks.reallocate {
        let kept = forget_live(p);
        // SAFETY: `p` is the backend's live block; the backend's contract.
        let q = unsafe { reallocate(p, size, owner.hooks.user_data) };
        if q.is_null() {
            if let Some(b) = kept {
                let _ = live().insert(p as usize, b);
            }
        } else {
            let new_size = owner.size_of(q);
            sub_bytes(old_size);
            add_bytes(new_size);
            let _ = live().insert(
                q as usize,
                LiveBlock {
                    size: new_size,
                    ignored: false,
                },
            );
        }
        return Routed::Backend(q);
    }
    let q = owner.allocate(size);
    if q.is_null() {
        return Routed::Backend(q);
    }
    let new_size = owner.size_of(q);
    // SAFETY: both are live blocks of the backend, of at least the sizes it
    // reports, and distinct.
    unsafe {
        core::ptr::copy_nonoverlapping(p.cast::<u8>(), q.cast::<u8>(), old_size.min(new_size))
    };
    forget_live(p);
    owner.deallocate(p);
    counted_allocation(q, new_size);
    counted_free(old_size);
    Routed::Backend(q)
}

/// The backend's counters: blocks allocated and freed, bytes in use and
/// the peak of bytes in use, by the backends' `get_allocation_size`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct BackendCounts {
    pub allocations: u64,
    pub frees: u64,
    pub bytes_in_use: u64,
    pub peak_bytes_in_use: u64,
}

pub(crate) fn counts() -> BackendCounts {
    BackendCounts {
        allocations: ALLOCATIONS.load(Ordering::Relaxed),
        frees: FREES.load(Ordering::Relaxed),
        bytes_in_use: BYTES_IN_USE.load(Ordering::Relaxed),
        peak_bytes_in_use: PEAK_BYTES.load(Ordering::Relaxed),
    }
}
