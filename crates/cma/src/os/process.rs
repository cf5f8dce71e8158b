//! The process: raw writes to a file descriptor, errno, abort, the
//! environment and entropy. No locks, no allocation, no `stdio`.

/// Writes all of `bytes` to `fd` with write(2), retrying on EINTR and short
/// writes. Returns false when the descriptor refuses.
pub fn write_fd(fd: i32, bytes: &[u8]) -> bool {
    let mut rest = bytes;
    while !rest.is_empty() {
        // SAFETY: `rest` is a valid readable buffer of `rest.len()` bytes.
        let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            return false;
        }
        rest = rest.get(n as usize..).unwrap_or(&[]);
    }
    true
}

/// Writes all of `bytes` to stderr (see `write_fd`).
pub(crate) fn write_stderr(bytes: &[u8]) {
    write_fd(2, bytes);
}

/// Reads the calling thread's `errno`.
pub fn errno() -> i32 {
    // SAFETY: __errno_location always returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Sets the calling thread's `errno`.
#[inline]
pub fn set_errno(code: i32) {
    // SAFETY: as for `errno`; the slot is always valid to write.
    unsafe { *libc::__errno_location() = code };
}

/// Ends the process with SIGABRT, without running destructors or allocating.
pub(crate) fn abort() -> ! {
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

/// Writes `message` and a newline to stderr, then aborts: for internal
/// failures (a stuck lock), not misuse, which `check::report` words.
#[cold]
#[inline(never)]
pub(crate) fn die(message: &[u8]) -> ! {
    write_stderr(message);
    write_stderr(b"\n");
    abort()
}

/// Reads an environment variable without allocating. Returns the bytes of its
/// value, which live as long as the environment is not changed.
pub(crate) fn getenv(name: &core::ffi::CStr) -> Option<&'static [u8]> {
    // SAFETY: getenv reads the process environment and returns either null or
    // a NUL-terminated string owned by the environment.
    unsafe {
        let p = libc::getenv(name.as_ptr());
        if p.is_null() {
            None
        } else {
            Some(core::ffi::CStr::from_ptr(p).to_bytes())
        }
    }
}

/// Eight bytes from the kernel's entropy pool, or `None` when it has none
/// to give yet (very early boot) or refuses.
pub(crate) fn random_u64() -> Option<u64> {
    let mut value = 0u64;
    // SAFETY: getrandom writes at most 8 bytes into `value`.
    let n = unsafe { libc::getrandom((&mut value as *mut u64).cast(), 8, libc::GRND_NONBLOCK) };
    (n == 8).then_some(value)
}

/// The calling process's id.
pub(crate) fn pid() -> i32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() }
}

/// The name of thread `tid` of this process (`/proc/self/task/TID/comm`)
/// in `buf`, without its newline; empty when the thread has ended.
pub(crate) fn thread_name(tid: u32, buf: &mut [u8; 16]) -> &[u8] {
    let mut path = [0u8; 40];
    let mut len = 0;
    for &b in b"/proc/self/task/" {
        path[len] = b;
        len += 1;
    }
    let mut digits = [0u8; 10];
    let (mut n, mut d) = (tid, 0);
    loop {
        digits[d] = b'0' + (n % 10) as u8;
        d += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    while d > 0 {
        d -= 1;
        path[len] = digits[d];
        len += 1;
    }
    for &b in b"/comm" {
        path[len] = b;
        len += 1;
    }
    // SAFETY: `path` is NUL-terminated (zeroed, at most 31 bytes written);
    // the flags are valid.
    let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return &[];
    }
    // SAFETY: `buf` is valid for writes of its length; `fd` is ours.
    let n = unsafe {
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    let mut n = n.max(0) as usize;
    while n > 0 && buf[n - 1] == b'\n' {
        n -= 1;
    }
    &buf[..n]
}

/// The process's command line (from `/proc/self/cmdline`, the arguments
/// separated by spaces) in `buf`, cut to its length; empty when /proc cannot
/// be read. Plain open/read/close: usable while cma reports misuse.
pub fn command_line(buf: &mut [u8]) -> &[u8] {
    // SAFETY: a NUL-terminated path and valid flags.
    let fd = unsafe {
        libc::open(
            c"/proc/self/cmdline".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return &[];
    }
    let mut len = 0;
    while len < buf.len() {
        // SAFETY: the rest of `buf` is valid for writes of its length.
        let n = unsafe { libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len) };
        if n <= 0 {
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            break;
        }
        len += n as usize;
    }
    // SAFETY: `fd` is ours and open.
    unsafe { libc::close(fd) };
    let mut end = len;
    while end > 0 && buf[end - 1] == 0 {
        end -= 1;
    }
    for b in &mut buf[..end] {
        if *b == 0 {
            *b = b' ';
        }
    }
    &buf[..end]
}

/// The 16 random bytes the kernel gave this process image at `execve`
/// (`AT_RANDOM`): the same for every copy of cma loaded in the process, new
/// for each program image, so that two reports of one pid can tell whether
/// they come from the same run. Zero when the kernel did not provide them.
pub(crate) fn image_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    // SAFETY: getauxval has no preconditions.
    let at = unsafe { libc::getauxval(libc::AT_RANDOM) } as *const u8;
    if !at.is_null() {
        // SAFETY: AT_RANDOM points to 16 readable bytes for the life of the
        // process (on the initial stack, above `main`'s frame).
        unsafe { core::ptr::copy_nonoverlapping(at, id.as_mut_ptr(), 16) };
    }
    id
}
