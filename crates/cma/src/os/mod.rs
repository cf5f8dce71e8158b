//! The only layer that talks to the kernel or libc: memory mappings
//! (`memory`), the clock (`clock`), threads (`thread`), files by path
//! (`file`), the process itself (`process`: stderr, errno, abort, the
//! environment, entropy, the process image's identity), the fault handler
//! (`signal`), stacks (`backtrace`) and the modules code lies in (`maps`).
//!
//! Nothing here allocates, and nothing here knows about heaps or spans.

pub(crate) mod backtrace;
pub(crate) mod clock;
pub(crate) mod fast_unwind;
pub(crate) mod file;
pub(crate) mod maps;
pub(crate) mod memory;
pub(crate) mod process;
pub(crate) mod signal;
pub(crate) mod thread;
pub(crate) mod tls;

/// The OS page size cma assumes (x86_64 and aarch64 Linux with 4 KiB pages).
pub(crate) const PAGE_SIZE: usize = 4096;
pub(crate) const PAGE_SHIFT: u32 = 12;
