//! The heap pool: every thread that allocates gets a heap, either one whose
//! thread ended or a new one; at thread exit (a pthread key destructor, not
//! a `thread_local!` destructor, which glibc registers with a `calloc`) the
//! heap gives back its empty slabs and waits in the pool for the next
//! thread. Heaps are never freed: a slab's owner pointer stays valid.

use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, Ordering};

use super::guard::{self, AllocatorGuard};
use super::Heap;
use crate::meta::segment_map;
use crate::os::thread::ThreadKey;
use crate::pages::PAGES;
use crate::slab::page_purge;
use crate::util::spin_lock::SpinLock;

struct Pool {
    /// Heaps whose threads ended, linked through `Heap::next_free`.
    free_heaps: *mut Heap,
    heaps_created: usize,
}

// SAFETY: the heaps in the pool are only followed under its lock.
unsafe impl Send for Pool {}

static POOL: SpinLock<Pool> = SpinLock::new(Pool {
    free_heaps: null_mut(),
    heaps_created: 0,
});

/// Every heap ever created, newest first; heaps are never freed.
static ALL_HEAPS: AtomicPtr<Heap> = AtomicPtr::new(null_mut());

/// Tells cma that a thread with a heap ends.
static THREAD_KEY: ThreadKey = ThreadKey::new();

/// Creates the thread-exit key. Called once, while cma initialises, before
/// any thread has a heap.
pub(crate) fn init_thread_exit() {
    // SAFETY: called once, before any heap (and so any `set`) exists.
    unsafe { THREAD_KEY.create(thread_exit) };
}

/// Gives the calling thread a heap: one from the pool of heaps whose threads
/// ended, or a new one. Returns null when no memory is left. cma must be
/// initialised (`api::init`).
pub(crate) fn acquire_heap() -> *mut Heap {
    let heap = take_pooled_heap().unwrap_or_else(new_heap);
    if heap.is_null() {
        return heap;
    }
    // Set the thread's heap before telling pthread: if pthread_setspecific
    // ever allocates, that allocation finds the heap and does not recurse.
    guard::set_thread_heap(heap);
    THREAD_KEY.set(heap.cast());
    heap
}

fn take_pooled_heap() -> Option<*mut Heap> {
    let mut pool = POOL.lock();
    let heap = pool.free_heaps;
    if heap.is_null() {
        return None;
    }
    // SAFETY: pooled heaps are live and unused.
    pool.free_heaps = unsafe { (*heap).next_free.get() };
    Some(heap)
}

fn new_heap() -> *mut Heap {
    let heap = {
        let mut pages = PAGES.lock();
        // The fast paths of a thread with a heap read the segment map without
        // a null check: it must exist before the first heap does.
        if !segment_map::init() {
            return null_mut();
        }
        pages
            .meta
            .alloc(core::mem::size_of::<Heap>())
            .cast::<Heap>()
    };
    if heap.is_null() {
        return heap;
    }
    // SAFETY: fresh memory for a heap, ours until it is published; an
    // empty heap (its size-class tables filled in) once `init` ran.
    unsafe {
        heap.write(Heap::empty());
        (*heap).init();
    }
    POOL.lock().heaps_created += 1;
    publish_heap(heap);
    heap
}

/// Adds a new heap to the list of every heap, which the statistics and
/// the total limit sum (an arena's heap too, see `arena`).
pub(super) fn publish_heap(heap: *mut Heap) {
    let mut head = ALL_HEAPS.load(Ordering::Relaxed);
    loop {
        // SAFETY: the heap is ours until it is published.
        unsafe { (*heap).next_all.store(head, Ordering::Relaxed) };
        match ALL_HEAPS.compare_exchange_weak(head, heap, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => return,
            Err(now) => head = now,
        }
    }
}

/// The pthread key destructor: the thread is ending; its heap goes back to
/// the pool for the next thread.
extern "C" fn thread_exit(arg: *mut libc::c_void) {
    let heap = arg.cast::<Heap>();
    if heap.is_null() {
        return;
    }
    let _guard = AllocatorGuard::enter();
    // SAFETY: the key holds this thread's live heap.
    unsafe { (*heap).abandon() };
    guard::set_thread_heap(null_mut());
    let mut pool = POOL.lock();
    // SAFETY: the heap is no longer used by this thread.
    unsafe { (*heap).next_free.set(pool.free_heaps) };
    pool.free_heaps = heap;
}

impl Heap {
    /// The thread is ending: collect what others freed and give back empty
    /// slabs, so the heap waits in the pool holding only live blocks.
    fn abandon(&self) {
        self.collect_delayed();
        self.flush_quarantine();
        for (class, st) in self.classes.iter().enumerate() {
            let slab = st.slab.get();
            if slab.is_null() {
                continue;
            }
            // SAFETY: the current slab is ours.
            let s = unsafe { &*slab };
            let unserved = st.drop_cache();
            s.used.set(s.used.get() - unserved.count_ones());
            st.slab.set(null_mut());
            if s.used_count() == 0 {
                self.retire_slab(slab);
            } else {
                page_purge::leave_current(s);
                self.push_partial(class, slab);
            }
        }
    }
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

/// Whether any thread has had a heap (and so may hold blocks).
pub(crate) fn heaps_exist() -> bool {
    !ALL_HEAPS.load(Ordering::Acquire).is_null()
}

/// Heaps created so far.
pub(crate) fn heaps_created() -> usize {
    POOL.lock().heaps_created
}

/// Takes the pool's lock before `fork` (see `api::init`).
pub(crate) fn lock_for_fork() {
    POOL.lock_for_fork();
}

/// Releases the lock `lock_for_fork` took, in the parent or the child.
///
/// # Safety
/// Only after `lock_for_fork`, on the thread that forked.
pub(crate) unsafe fn unlock_after_fork() {
    // SAFETY: guaranteed by the caller.
    unsafe { POOL.force_unlock() };
}
