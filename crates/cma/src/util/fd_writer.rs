//! A `core::fmt` sink that collects text in a fixed buffer and writes it to
//! a file descriptor with write(2) when the buffer is full or flushed:
//! formatting of any length without allocating (the heap report, libcma's
//! diagnostics).

use core::fmt;

use crate::os::process::write_fd;

/// Formats into a 4 KiB buffer and writes it to a file descriptor with
/// write(2) (see the module docs); nothing allocated.
pub struct FdWriter {
    fd: i32,
    buf: [u8; 4096],
    len: usize,
    /// False once a write(2) failed: the output is incomplete.
    ok: bool,
}

impl FdWriter {
    /// A writer to `fd`, with nothing buffered.
    pub fn new(fd: i32) -> FdWriter {
        FdWriter {
            fd,
            buf: [0; 4096],
            len: 0,
            ok: true,
        }
    }

    /// Appends raw bytes (text that may not be UTF-8).
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.len == self.buf.len() {
                self.flush();
            }
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
    }

    /// Writes what is buffered.
    pub fn flush(&mut self) {
        let pending = self.buf.get(..self.len).unwrap_or(&[]);
        if !write_fd(self.fd, pending) {
            self.ok = false;
        }
        self.len = 0;
    }

    /// Whether every write so far reached the descriptor.
    pub fn ok(&self) -> bool {
        self.ok
    }
}

impl fmt::Write for FdWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}
