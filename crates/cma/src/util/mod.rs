//! Building blocks with no allocator knowledge: bit counting, the spin lock
//! with a bounded wait, formatting into a fixed buffer or onto a file descriptor, wiping
//! and checking zeroed memory, and a hash table keyed by address in memory
//! of its own.

pub(crate) mod addr_table;
pub(crate) mod bits;
pub(crate) mod fd_writer;
pub(crate) mod spin_lock;
pub(crate) mod stack_buf;
pub(crate) mod zero;
