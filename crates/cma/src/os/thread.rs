//! Threads: yielding, the pthread key whose destructor tells cma that a
//! thread ends, fork handlers, and the detached service threads cma starts.
//! Every thread cma starts goes through `spawn_service_thread`, so that it
//! blocks every signal, and names itself with `set_current_name` (`cma-...`):
//! the program must never receive its signals on a thread it did not make.

/// Yields the CPU to another runnable thread.
pub(crate) fn yield_now() {
    // SAFETY: sched_yield has no preconditions.
    unsafe {
        libc::sched_yield();
    }
}

/// A pthread key with a destructor, created once. Keys below 32 need no
/// allocation in glibc, so one can be made while cma initialises.
pub(crate) struct ThreadKey(core::cell::UnsafeCell<libc::pthread_key_t>);

// SAFETY: the key is written once, by `create`, before any thread reads it
// (the caller publishes it with a release store of its own).
unsafe impl Sync for ThreadKey {}

impl ThreadKey {
    pub(crate) const fn new() -> ThreadKey {
        ThreadKey(core::cell::UnsafeCell::new(0))
    }

    /// Creates the key with `destructor`, which pthread calls at thread exit
    /// with the thread's non-null value.
    ///
    /// # Safety
    /// Called once, before any other method, with no other thread using
    /// the key.
    pub(crate) unsafe fn create(&self, destructor: extern "C" fn(*mut libc::c_void)) {
        // SAFETY: the caller guarantees exclusive access.
        unsafe {
            libc::pthread_key_create(self.0.get(), Some(destructor));
        }
    }

    /// Sets the calling thread's value.
    pub(crate) fn set(&self, value: *mut libc::c_void) {
        // SAFETY: the key was created before any thread could get here.
        unsafe {
            libc::pthread_setspecific(*self.0.get(), value);
        }
    }
}

/// Registers fork handlers (see `pthread_atfork`).
pub(crate) fn at_fork(prepare: extern "C" fn(), parent: extern "C" fn(), child: extern "C" fn()) {
    // SAFETY: the handlers are plain functions with the expected signature.
    unsafe {
        libc::pthread_atfork(Some(prepare), Some(parent), Some(child));
    }
}

/// Starts a detached thread running `body` on a small stack, with every
/// signal blocked for its whole life: the mask is set on the creating thread
/// around `pthread_create`, so the new thread inherits it and there is no
/// window in which a process-directed signal (one the program blocks in its
/// own threads to `sigwait` for it) could be delivered to it. Returns false
/// when the thread could not be created.
pub(crate) fn spawn_service_thread(
    body: extern "C" fn(*mut libc::c_void) -> *mut libc::c_void,
) -> bool {
    // SAFETY: plain pthread and signal-mask calls on local, initialised
    // values; the thread function has the signature pthread expects. The
    // caller's own mask is restored before returning.
    unsafe {
        let mut all: libc::sigset_t = core::mem::zeroed();
        let mut caller: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut caller);
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        libc::pthread_attr_setstacksize(&mut attr, 64 * 1024);
        let mut thread: libc::pthread_t = 0;
        let created = libc::pthread_create(&mut thread, &attr, body, core::ptr::null_mut()) == 0;
        libc::pthread_attr_destroy(&mut attr);
        libc::pthread_sigmask(libc::SIG_SETMASK, &caller, core::ptr::null_mut());
        created
    }
}

/// Names the calling thread (at most 15 bytes show), as `top`, `gdb` and
/// `/proc/PID/task/TID/comm` see it. `prctl` is one system call: nothing
/// allocated, no file opened.
pub(crate) fn set_current_name(name: &core::ffi::CStr) {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of which the kernel
    // keeps at most 16 bytes.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0);
    }
}

/// The calling thread's id (the kernel's, as `ps -L` and `gettid` show it).
pub(crate) fn current_id() -> u64 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as u64 }
}

/// The calling thread's name (at most 15 bytes, as the kernel keeps it),
/// written into `buf`; empty when it cannot be read. No allocation.
pub(crate) fn current_name(buf: &mut [u8; 16]) -> &[u8] {
    // SAFETY: PR_GET_NAME writes at most 16 bytes, NUL-terminated, into a
    // 16-byte buffer.
    let ok = unsafe {
        libc::prctl(
            libc::PR_GET_NAME,
            buf.as_mut_ptr() as libc::c_ulong,
            0,
            0,
            0,
        )
    } == 0;
    if !ok {
        return &[];
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    &buf[..len]
}
