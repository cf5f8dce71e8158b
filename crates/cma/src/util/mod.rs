//! Building blocks with no allocator knowledge: the spin lock with a bounded
//! wait, and formatting into a fixed buffer or onto a file descriptor.

pub(crate) mod fd_writer;
pub(crate) mod spin_lock;
pub(crate) mod stack_buf;
