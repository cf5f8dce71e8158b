//! Files by path, for the heap report and libcma's `loaded` marker: plain
//! open/read/lseek/ftruncate/close, paths NUL-terminated in the caller's
//! buffer. No `stdio`, no allocation.

use super::process::errno;

/// The errno of a path that does not fit (ENAMETOOLONG).
pub(crate) const NAME_TOO_LONG: i32 = libc::ENAMETOOLONG;

/// An open file; closed when dropped.
pub struct File {
    fd: i32,
}

impl File {
    /// Opens `path` (NUL-terminated) for reading and writing, creating it
    /// (mode 0644) when it does not exist; the contents are kept. The
    /// error is the errno of open(2).
    pub fn open_or_create(path: &[u8]) -> Result<File, i32> {
        if path.last() != Some(&0) {
            return Err(libc::EINVAL);
        }
        // SAFETY: `path` is NUL-terminated (checked); the flags and mode are
        // valid.
        let fd = unsafe {
            libc::open(
                path.as_ptr().cast(),
                libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC,
                0o644 as libc::c_uint,
            )
        };
        if fd < 0 {
            Err(errno())
        } else {
            Ok(File { fd })
        }
    }

    /// Opens `path` for reading (`/proc/self/maps`). The error is the
    /// errno of open(2).
    pub fn open_read(path: &core::ffi::CStr) -> Result<File, i32> {
        // SAFETY: a NUL-terminated path and valid flags.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            Err(errno())
        } else {
            Ok(File { fd })
        }
    }

    /// The file's descriptor, open until the `File` is dropped.
    pub fn fd(&self) -> i32 {
        self.fd
    }

    /// Reads from the current position into `buf` until it is full or the
    /// file ends; returns how many bytes were read.
    pub fn read_into(&self, buf: &mut [u8]) -> usize {
        let mut len = 0;
        while let Some(rest) = buf.get_mut(len..).filter(|r| !r.is_empty()) {
            // SAFETY: `rest` is valid for writes of its length.
            let n = unsafe { libc::read(self.fd, rest.as_mut_ptr().cast(), rest.len()) };
            if n <= 0 {
                if n < 0 && errno() == libc::EINTR {
                    continue;
                }
                break;
            }
            len += n as usize;
        }
        len
    }

    /// Empties the file and goes back to its start.
    pub fn truncate(&self) -> bool {
        // SAFETY: plain system calls on a descriptor we own.
        unsafe { libc::ftruncate(self.fd, 0) == 0 && libc::lseek(self.fd, 0, libc::SEEK_SET) == 0 }
    }

    /// Goes to the end of the file, to append.
    pub fn seek_to_end(&self) -> bool {
        // SAFETY: a plain system call on a descriptor we own.
        unsafe { libc::lseek(self.fd, 0, libc::SEEK_END) >= 0 }
    }
}

impl Drop for File {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours and open.
        unsafe { libc::close(self.fd) };
    }
}
