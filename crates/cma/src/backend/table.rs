//! The backend table: which backends may hold blocks, which one is
//! current, and how a block finds its way back to its owner. One
//! implementation for both faces: the Rust API's table holds
//! `&'static dyn Backend`s (`backend::routed`), libcma's holds the C
//! hooks of `cma_set_backend`.
//!
//! # Slots
//!
//! A backend is copied into one of `SLOTS` slots; `current` names the slot
//! new blocks come from (0: none). A slot stays in the table, and is asked
//! `owns` when a block comes back, for as long as it holds live blocks,
//! current or not: that is what lets a program clear a backend and still
//! free its blocks. A slot is rewritten only when it is not current and
//! holds nothing; setting a backend equal to a slot's (`PartialEq`) makes
//! that slot current again.
//!
//! `Slot::holds` counts the slot's live blocks plus the calls using its
//! backend right now ("pins"); the `WRITING` bit is set while a setter
//! rewrites the slot. A reader pins before it reads the slot's backend
//! (and backs off when it finds `WRITING`, or, looking for an owner, an
//! empty slot); a setter claims a slot only from `holds == 0`. So a slot's
//! backend never changes under a call that uses it, and no call waits on
//! another: readers only add and subtract. Setters are serialised by
//! `setter`, the engine's spin lock (setting is rare; its wait is bounded).
//!
//! Two slots may hold the same backend (a `PartialEq` that misses an
//! equality only costs a slot): a block is then given back through either,
//! and the holds of the two together still count its blocks.
//!
//! # What is counted
//!
//! Each table counts its backends' blocks (allocations, frees, bytes by
//! `usable_size`, peak bytes) and reports their bytes to the total
//! allocation limit (`observe::limits`'s external bytes), which both
//! limits check before a request reaches a backend.
//!
//! # Live blocks
//!
//! Each table also lists its backends' live blocks (address, size, and
//! whether the leak API is to leave it out), so that leak summaries,
//! entries and reports cover backend blocks as they cover cma's. An entry
//! goes before its block goes back to the backend, which may hand the
//! address out again at once, to another thread. The list's memory is its
//! own mappings (`util::addr_table`), never a backend's or cma's heap.

use core::alloc::Layout;
use core::cell::UnsafeCell;
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::{Backend, BackendError, BackendStats};
use crate::heap::guard::AllocatorGuard;
use crate::observe::leaks::LeakSummary;
use crate::observe::limits;
use crate::util::addr_table::AddrTable;
use crate::util::spin_lock::SpinLock;

/// How many backends can hold live blocks at once.
const SLOTS: usize = 16;
/// Set in `Slot::holds` while a setter writes the slot's backend.
const WRITING: usize = 1 << (usize::BITS - 1);
/// How often a reader retries a current slot that a setter is writing (it
/// was cleared and is being reused) before it serves the call from cma.
const WRITING_RETRIES: u32 = 1 << 16;

struct Slot<B> {
    /// Live blocks + pins, and `WRITING`; see the module docs.
    holds: AtomicUsize,
    /// Written by a setter under `WRITING` (and the setter lock); read by
    /// a reader that pinned the slot, or by a setter under the lock.
    backend: UnsafeCell<Option<B>>,
}

impl<B> Slot<B> {
    const fn new() -> Self {
        Slot {
            holds: AtomicUsize::new(0),
            backend: UnsafeCell::new(None),
        }
    }
}

/// What a routed call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routed<T> {
    /// No backend is involved: cma serves the call.
    Cma,
    /// A backend served it, with this result.
    Backend(T),
}

/// A live backend block, as the leak API sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveBackendBlock {
    /// Its size by its backend's `usable_size`.
    pub size: usize,
    /// Left out of leak entries and reports, counted as ignored
    /// (`untrack_leak`).
    pub ignored: bool,
}

/// A table of backends of type `B` and the counters of their blocks; see
/// the module docs. A `static`, one per face.
pub struct Table<B> {
    slots: [Slot<B>; SLOTS],
    /// The slot new blocks come from, plus one; 0 when no backend is set.
    current: AtomicUsize,
    /// Whether a backend was ever set: until then, no call looks further.
    ever_set: AtomicBool,
    setter: SpinLock<()>,
    allocations: AtomicU64,
    frees: AtomicU64,
    bytes_in_use: AtomicU64,
    peak_bytes: AtomicU64,
    /// Every live backend block by address (module docs).
    live: SpinLock<AddrTable<LiveBackendBlock>>,
}

// SAFETY: the only non-`Sync` part is each slot's `UnsafeCell`, which the
// `holds` protocol (module docs) keeps from being written while anyone
// reads it: a setter writes only after claiming `holds` from 0 to
// `WRITING` (Acquire: every reader's earlier unpin, a Release, happened
// before), and a reader reads only after a pin that found no `WRITING`
// (Acquire, against the setter's Release clearing it). `B: Send + Sync`:
// the backend is copied out to, and called from, any thread.
unsafe impl<B: Send + Sync> Sync for Table<B> {}

/// A pinned slot: its backend can be called until it is dropped (which
/// unpins), or until `keep_as_block` turns the pin into a live block's
/// hold.
struct Pinned<'a, B> {
    slot: &'a Slot<B>,
    backend: B,
}

impl<'a, B: Copy> Pinned<'a, B> {
    /// Pins `slot` unless a setter is writing it or, with `needs_blocks`,
    /// it holds no live block (so cannot own a pointer).
    fn try_pin(slot: &'a Slot<B>, needs_blocks: bool) -> Option<Self> {
        let before = slot.holds.fetch_add(1, Ordering::Acquire);
        if before & WRITING == 0 && !(needs_blocks && before == 0) {
            // SAFETY: pinned without WRITING: no setter writes the slot
            // until the pin goes, and the Acquire above ordered the last
            // write before this read (module docs).
            if let Some(backend) = unsafe { *slot.backend.get() } {
                return Some(Pinned { slot, backend });
            }
        }
        slot.holds.fetch_sub(1, Ordering::Release);
        None
    }

    /// The pin becomes the hold of a block the backend handed out.
    fn keep_as_block(self) {
        core::mem::forget(self);
    }

    /// The backend took back one of its blocks: its hold goes (the pin
    /// stays until drop).
    fn block_gone(&self) {
        self.slot.holds.fetch_sub(1, Ordering::Release);
    }
}

impl<B> Drop for Pinned<'_, B> {
    fn drop(&mut self) {
        self.slot.holds.fetch_sub(1, Ordering::Release);
    }
}

/// Whether a request of `size` bytes is within the allocation limits.
fn within_limits(size: usize) -> bool {
    if !limits::active() {
        return true;
    }
    let _guard = AllocatorGuard::enter();
    limits::check(size, size).is_ok()
}

/// The layout a backend is asked for: at least one byte (a backend need
/// not handle empty blocks), `None` when no layout has that size and
/// alignment.
fn backend_layout(size: usize, align: usize) -> Option<Layout> {
    Layout::from_size_align(size.max(1), align).ok()
}

impl<B> Table<B> {
    /// An empty table: no backend set, nothing counted.
    #[allow(clippy::new_without_default)] // a `static`'s initialiser
    pub const fn new() -> Self {
        Table {
            slots: [const { Slot::new() }; SLOTS],
            current: AtomicUsize::new(0),
            ever_set: AtomicBool::new(false),
            setter: SpinLock::new(()),
            allocations: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            bytes_in_use: AtomicU64::new(0),
            peak_bytes: AtomicU64::new(0),
            live: SpinLock::new(AddrTable::new()),
        }
    }

    /// Whether a backend is set.
    pub fn is_enabled(&self) -> bool {
        self.current.load(Ordering::Acquire) != 0
    }

    /// No backend: new blocks come from cma again. Blocks the backends
    /// still hold go back to them.
    pub fn clear(&self) {
        let _setter = self.setter.lock();
        self.current.store(0, Ordering::Release);
    }

    /// The counters of the table's backend blocks.
    pub fn stats(&self) -> BackendStats {
        BackendStats {
            allocations: self.allocations.load(Ordering::Relaxed),
            frees: self.frees.load(Ordering::Relaxed),
            bytes_in_use: self.bytes_in_use.load(Ordering::Relaxed),
            peak_bytes_in_use: self.peak_bytes.load(Ordering::Relaxed),
        }
    }

    fn counted_allocation(&self, bytes: usize) {
        self.allocations.fetch_add(1, Ordering::Relaxed);
        self.add_bytes(bytes);
    }

    /// Lists `p`, a backend block just handed out. Without memory for the
    /// entry the block is not listed (it is still counted).
    fn keep_live(&self, p: NonNull<u8>, block: LiveBackendBlock) {
        let _ = self.live.lock().insert(p.as_ptr() as usize, block);
    }

    /// Takes `p` off the list, before it goes back to its backend.
    fn forget_live(&self, p: NonNull<u8>) -> Option<LiveBackendBlock> {
        self.live.lock().remove(p.as_ptr() as usize)
    }

    /// Calls `each` with every live backend block (address and entry), in
    /// no particular order, under the list's lock: `each` must not call
    /// into the table or allocate through it.
    pub fn for_each_live(&self, mut each: impl FnMut(usize, LiveBackendBlock)) {
        if !self.ever_set.load(Ordering::Relaxed) {
            return;
        }
        self.live.lock().for_each(|p, &b| each(p, b));
    }

    /// Leaves the live backend block at `p` out of leak entries and
    /// reports (`ignored`), or counts it again; false when no backend of
    /// this table holds a live block at `p`.
    pub fn set_ignored(&self, p: *const u8, ignored: bool) -> bool {
        if !self.ever_set.load(Ordering::Relaxed) {
            return false;
        }
        let mut live = self.live.lock();
        match live.get(p as usize) {
            Some(b) => {
                let _ = live.insert(p as usize, LiveBackendBlock { ignored, ..b });
                true
            }
            None => false,
        }
    }

    /// The live and ignored backend blocks and their bytes.
    pub fn leak_summary(&self) -> LeakSummary {
        let mut s = LeakSummary::default();
        self.for_each_live(|_, b| {
            if b.ignored {
                s.ignored_blocks += 1;
                s.ignored_bytes += b.size as u64;
            } else {
                s.live_blocks += 1;
                s.live_bytes += b.size as u64;
            }
        });
        s
    }

    fn counted_free(&self, bytes: usize) {
        self.frees.fetch_add(1, Ordering::Relaxed);
        self.sub_bytes(bytes);
    }

    fn add_bytes(&self, bytes: usize) {
        let now = self.bytes_in_use.fetch_add(bytes as u64, Ordering::Relaxed) + bytes as u64;
        self.peak_bytes.fetch_max(now, Ordering::Relaxed);
        limits::add_external_bytes(bytes);
    }

    fn sub_bytes(&self, bytes: usize) {
        let _ = self
            .bytes_in_use
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(bytes as u64))
            });
        limits::sub_external_bytes(bytes);
    }
}

impl<B: Backend + Copy + PartialEq + Send> Table<B> {
    /// Copies `backend` into the table and makes it current.
    pub fn set(&self, backend: B) -> Result<(), BackendError> {
        let _setter = self.setter.lock();
        let current = self.current.load(Ordering::Relaxed);
        // SAFETY: under the setter lock no slot is being written, and the
        // lock ordered every earlier write before these reads.
        let same = self
            .slots
            .iter()
            .position(|s| unsafe { *s.backend.get() } == Some(backend));
        let index = match same {
            Some(i) => i,
            None => {
                let free = self.slots.iter().enumerate().position(|(i, s)| {
                    i + 1 != current
                        && s.holds
                            .compare_exchange(0, WRITING, Ordering::Acquire, Ordering::Relaxed)
                            .is_ok()
                });
                let Some(i) = free else {
                    return Err(BackendError::TooManyBackends);
                };
                let slot = &self.slots[i];
                // SAFETY: WRITING claimed from 0: no reader holds a pin
                // that reads the slot, and none will until it is cleared.
                unsafe { *slot.backend.get() = Some(backend) };
                // Keeps the pins readers added (and will take back)
                // meanwhile.
                slot.holds.fetch_and(!WRITING, Ordering::Release);
                i
            }
        };
        self.ever_set.store(true, Ordering::Relaxed);
        self.current.store(index + 1, Ordering::Release);
        Ok(())
    }

    /// Pins the current backend, if one is set.
    fn pin_current(&self) -> Option<Pinned<'_, B>> {
        for _ in 0..WRITING_RETRIES {
            let current = self.current.load(Ordering::Acquire);
            let slot = self.slots.get(current.checked_sub(1)?)?;
            if let Some(pinned) = Pinned::try_pin(slot, false) {
                return Some(pinned);
            }
            core::hint::spin_loop();
        }
        None
    }

    /// Pins the backend that owns `p`, if any does: the current one first,
    /// then every other slot that holds blocks.
    fn pin_owner(&self, p: NonNull<u8>) -> Option<Pinned<'_, B>> {
        let current = self.current.load(Ordering::Acquire);
        let order = core::iter::once(current.wrapping_sub(1))
            .chain((0..SLOTS).filter(|&i| i + 1 != current));
        for i in order {
            let Some(slot) = self.slots.get(i) else {
                continue;
            };
            if slot.holds.load(Ordering::Relaxed) & !WRITING == 0 {
                continue;
            }
            if let Some(pinned) = Pinned::try_pin(slot, true) {
                if pinned.backend.owns(p.as_ptr()) {
                    return Some(pinned);
                }
            }
        }
        None
    }

    /// A new block of `size` bytes at `align` from the current backend:
    /// `Backend(null)` when the backend or an allocation limit refused (or
    /// no layout has that size and alignment), `Cma` when no backend is
    /// set.
    #[inline]
    pub fn allocate(&self, size: usize, align: usize) -> Routed<*mut u8> {
        if !self.ever_set.load(Ordering::Relaxed) {
            return Routed::Cma;
        }
        self.allocate_from_current(size, align)
    }

    #[inline(never)]
    fn allocate_from_current(&self, size: usize, align: usize) -> Routed<*mut u8> {
        let Some(backend) = self.pin_current() else {
            return Routed::Cma;
        };
        let Some(layout) = backend_layout(size, align).filter(|_| within_limits(size)) else {
            return Routed::Backend(null_mut());
        };
        let Some(p) = NonNull::new(backend.backend.allocate(layout)) else {
            return Routed::Backend(null_mut());
        };
        // SAFETY: a live block the backend just handed out.
        let bytes = unsafe { backend.backend.usable_size(p) };
        self.counted_allocation(bytes);
        self.keep_live(
            p,
            LiveBackendBlock {
                size: bytes,
                ignored: false,
            },
        );
        backend.keep_as_block();
        Routed::Backend(p.as_ptr())
    }

    /// Gives `p` back to the backend that owns it (its whole usable size
    /// zeroed first, with `wipe`): `Backend(size)` with the block's size,
    /// or `Cma` when no backend owns `p` (null included).
    ///
    /// # Safety
    /// `p` is not used after the call when a backend took it.
    #[inline]
    pub unsafe fn free(&self, p: *mut u8, wipe: bool) -> Routed<usize> {
        if !self.ever_set.load(Ordering::Relaxed) {
            return Routed::Cma;
        }
        // SAFETY: the caller's contract.
        unsafe { self.free_to_owner(p, wipe) }
    }

    /// `free` once a backend was ever set.
    ///
    /// # Safety
    /// As for `free`.
    #[inline(never)]
    unsafe fn free_to_owner(&self, p: *mut u8, wipe: bool) -> Routed<usize> {
        let Some(p) = NonNull::new(p) else {
            return Routed::Cma;
        };
        let Some(owner) = self.pin_owner(p) else {
            return Routed::Cma;
        };
        // SAFETY: the backend says `p` is its live block.
        let size = unsafe { owner.backend.usable_size(p) };
        if wipe {
            for i in 0..size {
                // SAFETY: the backend's block of `size` writable bytes;
                // volatile, so that the wipe is not dropped as a store to
                // memory about to be freed.
                unsafe { core::ptr::write_volatile(p.as_ptr().add(i), 0) };
            }
        }
        self.forget_live(p);
        // SAFETY: the backend's live block, which the caller gives up.
        unsafe { owner.backend.deallocate(p, size) };
        self.counted_free(size);
        owner.block_gone();
        Routed::Backend(size)
    }

    /// The usable size of `p` by the backend that owns it, or `Cma`.
    #[inline]
    pub fn usable_size(&self, p: *const u8) -> Routed<usize> {
        if !self.ever_set.load(Ordering::Relaxed) {
            return Routed::Cma;
        }
        self.usable_size_by_owner(p)
    }

    /// `usable_size` once a backend was ever set.
    #[inline(never)]
    fn usable_size_by_owner(&self, p: *const u8) -> Routed<usize> {
        let Some(p) = NonNull::new(p.cast_mut()) else {
            return Routed::Cma;
        };
        match self.pin_owner(p) {
            // SAFETY: the backend says `p` is its live block.
            Some(owner) => Routed::Backend(unsafe { owner.backend.usable_size(p) }),
            None => Routed::Cma,
        }
    }

    /// Resizes `p` to `size` bytes at `align` when a backend owns it:
    /// `Backend(q)`, `q` null when that failed (then `p` is intact), or
    /// `Cma` when no backend owns `p`.
    ///
    /// # Safety
    /// `p` is not used after a successful call when a backend owns it.
    #[inline]
    pub unsafe fn reallocate(&self, p: *mut u8, size: usize, align: usize) -> Routed<*mut u8> {
        if !self.ever_set.load(Ordering::Relaxed) {
            return Routed::Cma;
        }
        // SAFETY: the caller's contract.
        unsafe { self.reallocate_by_owner(p, size, align) }
    }

    /// `reallocate` once a backend was ever set.
    ///
    /// # Safety
    /// As for `reallocate`.
    #[inline(never)]
    unsafe fn reallocate_by_owner(&self, p: *mut u8, size: usize, align: usize) -> Routed<*mut u8> {
        let Some(p) = NonNull::new(p) else {
            return Routed::Cma;
        };
        let Some(owner) = self.pin_owner(p) else {
            return Routed::Cma;
        };
        let Some(layout) = backend_layout(size, align).filter(|_| within_limits(size)) else {
            return Routed::Backend(null_mut());
        };
        let kept = self.forget_live(p);
        // SAFETY: the backend says `p` is its live block; the caller gives
        // it up if it moves.
        let (old_size, q) = unsafe {
            let old_size = owner.backend.usable_size(p);
            (old_size, owner.backend.reallocate(p, old_size, layout))
        };
        let Some(q) = NonNull::new(q) else {
            // `p` is as it was, and listed as it was.
            if let Some(block) = kept {
                self.keep_live(p, block);
            }
            return Routed::Backend(null_mut());
        };
        // SAFETY: the backend's live block, just handed out (or kept).
        let new_size = unsafe { owner.backend.usable_size(q) };
        // A block moved is a new block (it is tracked again, as cma's are).
        let ignored = q == p && kept.is_some_and(|b| b.ignored);
        self.keep_live(
            q,
            LiveBackendBlock {
                size: new_size,
                ignored,
            },
        );
        // The block's hold carries over to `q`.
        if q == p {
            self.sub_bytes(old_size);
            self.add_bytes(new_size);
        } else {
            self.counted_free(old_size);
            self.counted_allocation(new_size);
        }
        Routed::Backend(q.as_ptr())
    }
}
