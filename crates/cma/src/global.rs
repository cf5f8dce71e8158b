//! Process-wide state: the global lock over the page allocator, the metadata
//! allocator and the heap pool; lazy initialisation; thread exit; fork.
//!
//! Initialisation happens on the first call from any thread, even before
//! `main` or while the dynamic loader runs: it only maps memory and creates
//! one pthread key (keys below 32 need no allocation in glibc), and calls
//! nothing that could allocate through us.

use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicU8, Ordering};

use crate::guard;
use crate::heap::Heap;
use crate::meta_alloc::MetaAlloc;
use crate::page_alloc::PageAlloc;
use crate::size_class::{SizeClass, NUM_CLASSES};
use crate::sync::SpinLock;

pub(crate) struct Global {
    pub pages: PageAlloc,
    pub meta: MetaAlloc,
    free_heaps: *mut Heap,
    pub heaps_created: usize,
}

// SAFETY: the raw pointers in `Global` are only followed under its lock.
unsafe impl Send for Global {}

pub(crate) static GLOBAL: SpinLock<Global> = SpinLock::new(Global {
    pages: PageAlloc::new(),
    meta: MetaAlloc::new(),
    free_heaps: null_mut(),
    heaps_created: 0,
});

/// Every heap ever created, newest first; heaps are never freed.
pub(crate) static ALL_HEAPS: AtomicPtr<Heap> = AtomicPtr::new(null_mut());

/// Peaks sampled across all heaps (see `stats`).
pub(crate) static PEAK_BYTES: AtomicU64 = AtomicU64::new(0);
pub(crate) static PEAK_LIVE: [AtomicU64; NUM_CLASSES] = [const { AtomicU64::new(0) }; NUM_CLASSES];

const UNINIT: u8 = 0;
const RUNNING: u8 = 1;
const READY: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(UNINIT);
static mut THREAD_KEY: libc::pthread_key_t = 0;

/// What the allocation and free fast paths must do besides their core work,
/// in one byte so that each call reads one flag: `MODE_FAST` (nothing),
/// `MODE_CANARY` bit (trailers, the `default` level) and `MODE_LIMITS` bit
/// (an allocation limit is set: allocations leave the fast path).
static MODE: AtomicU8 = AtomicU8::new(MODE_FAST);
pub(crate) const MODE_FAST: u8 = 0;
pub(crate) const MODE_CANARY: u8 = 1;
pub(crate) const MODE_LIMITS: u8 = 2;

#[inline(always)]
pub(crate) fn mode() -> u8 {
    MODE.load(Ordering::Relaxed)
}

/// Recomputes `mode()` after the check level or the limits changed.
pub(crate) fn update_mode() {
    let mut mode = MODE_FAST;
    if crate::canary::enabled() {
        mode |= MODE_CANARY;
    }
    if crate::limits::active() {
        mode |= MODE_LIMITS;
    }
    MODE.store(mode, Ordering::Release);
}

/// Makes sure the process-wide state is set up. Cheap after the first call.
#[inline]
pub(crate) fn ensure_init() {
    if STATE.load(Ordering::Acquire) != READY {
        init_slow();
    }
}

#[cold]
fn init_slow() {
    if STATE
        .compare_exchange(UNINIT, RUNNING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        // Another thread is initialising: wait for it, with a bound.
        let mut spins = 0u64;
        while STATE.load(Ordering::Acquire) != READY {
            crate::os::yield_now();
            spins += 1;
            if spins > 50_000_000 {
                crate::report::fatal_message(
                    b"cma: initialisation did not finish; aborting instead of hanging",
                );
            }
        }
        return;
    }
    crate::options::load_from_env();
    {
        let mut g = GLOBAL.lock();
        g.pages.purge_delay_ms = crate::options::purge_delay_ms();
        g.pages.huge_pages = crate::options::huge_pages();
    }
    // SAFETY: THREAD_KEY is written once, here, before READY is published.
    unsafe {
        let key = &raw mut THREAD_KEY;
        libc::pthread_key_create(key, Some(thread_exit));
    }
    STATE.store(READY, Ordering::Release);
    // Registered after READY: glibc may allocate while registering, and that
    // allocation must find cma ready.
    // SAFETY: the handlers are plain functions that only lock and unlock.
    unsafe {
        libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child));
    }
}

extern "C" fn fork_prepare() {
    GLOBAL.lock_for_fork();
}

extern "C" fn fork_parent() {
    // SAFETY: `fork_prepare` took the lock on this thread.
    unsafe { GLOBAL.force_unlock() };
}

extern "C" fn fork_child() {
    // SAFETY: the child runs one thread; the lock was taken by `fork_prepare`
    // in the thread that forked, which is this one.
    unsafe { GLOBAL.force_unlock() };
    crate::purge::forget_after_fork();
    // The heaps of the parent's other threads stay assigned: one of those
    // threads may have been in the middle of a heap operation at the fork, so
    // reusing its heap here could inherit half-updated lists. Their blocks
    // can still be freed in the child; their memory is simply not reused.
}

/// Gives the calling thread a heap: one from the pool of heaps whose threads
/// ended, or a new one. Returns null when no memory is left.
#[cold]
#[inline(never)]
pub(crate) fn acquire_heap() -> *mut Heap {
    ensure_init();
    let heap = {
        let mut g = GLOBAL.lock();
        let g = &mut *g;
        // The fast paths of a thread with a heap read the segment map without
        // a null check: it must exist before the first heap does.
        if !crate::segment_map::init() {
            return null_mut();
        }
        if !g.free_heaps.is_null() {
            let heap = g.free_heaps;
            // SAFETY: pooled heaps are live and unused.
            unsafe { g.free_heaps = (*heap).next_free.get() };
            heap
        } else {
            let heap = g.meta.alloc(core::mem::size_of::<Heap>()).cast::<Heap>();
            if heap.is_null() {
                return null_mut();
            }
            // SAFETY: fresh zeroed memory is a valid empty heap once `init` ran.
            unsafe {
                (*heap).init();
                (*heap)
                    .next_all
                    .store(ALL_HEAPS.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            ALL_HEAPS.store(heap, Ordering::Release);
            g.heaps_created += 1;
            heap
        }
    };
    // SAFETY: `heap` is live and now ours.
    unsafe { (*heap).in_use.store(true, Ordering::Relaxed) };
    // Set the thread's heap before telling pthread: if pthread_setspecific
    // ever allocates, that allocation finds the heap and does not recurse.
    guard::set_thread_heap(heap);
    // SAFETY: the key was created by `ensure_init`.
    unsafe {
        libc::pthread_setspecific(THREAD_KEY, heap.cast());
    }
    heap
}

/// The pthread key destructor: the thread is ending; its heap goes back to
/// the pool for the next thread.
extern "C" fn thread_exit(arg: *mut libc::c_void) {
    let heap = arg.cast::<Heap>();
    if heap.is_null() {
        return;
    }
    let _guard = guard::AllocatorGuard::enter();
    // SAFETY: the key holds this thread's live heap.
    unsafe {
        (*heap).abandon();
        (*heap).in_use.store(false, Ordering::Relaxed);
    }
    guard::set_thread_heap(null_mut());
    let mut g = GLOBAL.lock();
    // SAFETY: the heap is no longer used by this thread.
    unsafe { (*heap).next_free.set(g.free_heaps) };
    g.free_heaps = heap;
}

/// Calls `f` on every heap ever created.
pub(crate) fn for_each_heap(mut f: impl FnMut(&Heap)) {
    let mut cur = ALL_HEAPS.load(Ordering::Acquire);
    while !cur.is_null() {
        // SAFETY: heaps are never freed.
        let h = unsafe { &*cur };
        f(h);
        cur = h.next_all.load(Ordering::Acquire);
    }
}

/// Samples the process-wide peaks: total live bytes, and live blocks of
/// `class`. Runs when a heap takes a new slab or a large block.
pub(crate) fn sample_peaks(class: SizeClass) {
    let mut bytes = 0u64;
    let mut live = 0u64;
    for_each_heap(|h| {
        bytes = bytes.wrapping_add(h.live_bytes.get());
        let st = h.class(class.index());
        live = live.wrapping_add(st.allocs.get().wrapping_sub(st.frees.get()));
    });
    raise_peak(&PEAK_BYTES, bytes);
    raise_peak(&PEAK_LIVE[class.index()], live);
}

/// Raises `peak` to `sample` when the sample is positive (as a signed sum of
/// per-heap counters) and higher. A read first: most samples set no new
/// peak, and `fetch_max` would take the line exclusive (a locked
/// compare-and-swap) every time, on every core that takes a slab.
fn raise_peak(peak: &AtomicU64, sample: u64) {
    if (sample as i64) > 0 && sample > peak.load(Ordering::Relaxed) {
        peak.fetch_max(sample, Ordering::Relaxed);
    }
}

/// Decommits every idle free span now, whatever its age.
pub(crate) fn purge_now() {
    let mut g = GLOBAL.lock();
    let g = &mut *g;
    g.pages.purge(&mut g.meta, crate::os::now_ms(), true);
}
