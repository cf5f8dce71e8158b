//! The engine's spin lock (it guards the page allocator and the heap pool).
//! Its holders do bounded work and never wait
//! on anything else while they hold it, so a waiter makes progress unless the
//! holder died; waiting is bounded anyway: past `WAIT_LIMIT_MS` the waiter
//! reports a stuck allocator lock and aborts instead of hanging.
//!
//! Every lock is taken before `fork` and released after it on both sides
//! (see `api::init`), so a child never inherits one held.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::os::{clock, process, thread};

/// How long a thread may wait for a lock before cma declares it stuck.
const WAIT_LIMIT_MS: u64 = 60_000;

pub(crate) struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reached through a `SpinGuard`, which exists for
// at most one thread at a time.
unsafe impl<T: Send> Sync for SpinLock<T> {}

pub(crate) struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> SpinLock<T> {
    pub(crate) const fn new(value: T) -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        if self
            .locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
        SpinGuard { lock: self }
    }

    #[cold]
    fn lock_contended(&self) {
        let mut spins = 0u32;
        let mut started = 0u64;
        loop {
            if !self.locked.load(Ordering::Relaxed)
                && self
                    .locked
                    .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
            spins += 1;
            if spins < 64 {
                core::hint::spin_loop();
                continue;
            }
            thread::yield_now();
            if spins % 256 == 0 {
                let now = clock::now_ms();
                if started == 0 {
                    started = now;
                } else if now - started > WAIT_LIMIT_MS {
                    process::die(
                        b"cma: allocator lock held for over 60 s (a thread died holding it?); aborting instead of hanging",
                    );
                }
            }
        }
    }

    /// Takes the lock if it comes free within about `ms` milliseconds;
    /// `None` otherwise. For the misuse report, which must not hang on a
    /// lock its own thread may hold (a fault handler that interrupted the
    /// holder): it then reports with less.
    pub(crate) fn try_lock_for_ms(&self, ms: u64) -> Option<SpinGuard<'_, T>> {
        let mut started = 0u64;
        let mut spins = 0u32;
        loop {
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Some(SpinGuard { lock: self });
            }
            spins += 1;
            if spins < 64 {
                core::hint::spin_loop();
                continue;
            }
            thread::yield_now();
            let now = clock::now_ms();
            if started == 0 {
                started = now;
            } else if now.saturating_sub(started) > ms {
                return None;
            }
        }
    }

    /// Forces the lock open in a freshly forked child, where the thread that
    /// held it no longer exists.
    ///
    /// # Safety
    /// Only in the child after `fork`, which runs a single thread.
    pub(crate) unsafe fn force_unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    /// Takes the lock and keeps it until `force_unlock` (around `fork`).
    pub(crate) fn lock_for_fork(&self) {
        core::mem::forget(self.lock());
    }
}

impl<T> core::ops::Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: holding the guard means holding the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> core::ops::DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: holding the guard means holding the lock exclusively.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}
