//! Building blocks with no allocator knowledge: the spin lock with a bounded
//! wait, formatting into a fixed buffer or onto a file descriptor, and
//! wiping and checking zeroed memory.

pub(crate) mod fd_writer;
pub(crate) mod spin_lock;
pub(crate) mod stack_buf;
pub(crate) mod zero;
