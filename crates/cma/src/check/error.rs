//! The errors cma reports: misuse of a pointer, and allocation failures.
//! Every misuse found by `free` and friends ends in `report::fatal` with the
//! one-line text of a `CmaError`; the checked API returns the same value.

use core::fmt;

/// What kind of block an address was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// A slot of a size class; the value is the class's block size.
    Class { class: usize, block_size: usize },
    /// A large block made of whole pages.
    Large { bytes: usize },
    /// A huge block with a mapping of its own.
    Huge { bytes: usize },
    /// Pages that cma holds but that belong to no live block.
    FreedPages,
}

/// An error from cma.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmaError {
    /// The block at `addr` is not allocated: it was freed already.
    DoubleFree { addr: usize, block: BlockKind },
    /// The block at `addr` was already freed by another thread (the owner has
    /// not collected that free yet).
    DoubleFreeByOtherThread { addr: usize, block: BlockKind },
    /// `addr` points inside a block, not at its start.
    InteriorPointer {
        addr: usize,
        block_start: usize,
        block: BlockKind,
    },
    /// The bytes after the caller's part of the block at `addr` were
    /// overwritten (found at the `default` check level).
    BufferOverflow { addr: usize, block: BlockKind },
    /// The freed block at `addr` was written after it was freed: it no longer
    /// reads as the zeros it was wiped to (found at the `default` check level
    /// when the slot leaves the quarantine or is handed out again).
    WriteAfterFree { addr: usize, block: BlockKind },
    /// `addr` is not in memory that cma manages: another allocator's block,
    /// the stack, static data, or unmapped memory.
    NotOurs { addr: usize },
    /// The allocation limit on a single request was exceeded.
    RequestLimitExceeded { size: usize, limit: usize },
    /// The allocation limit on total bytes in use was exceeded.
    TotalLimitExceeded {
        size: usize,
        in_use: usize,
        limit: usize,
    },
    /// The kernel refused memory.
    OutOfMemory { size: usize },
    /// The alignment is not a power of two, or is too large.
    InvalidAlignment { align: usize },
    /// `count * size` overflows.
    SizeOverflow,
}

impl CmaError {
    /// A short, stable name for the class of error (death tests match it).
    pub fn kind_name(&self) -> &'static str {
        match self {
            CmaError::DoubleFree { .. } => "double free",
            CmaError::DoubleFreeByOtherThread { .. } => {
                "double free (already freed by another thread)"
            }
            CmaError::InteriorPointer { .. } => "invalid free: interior pointer",
            CmaError::NotOurs { .. } => "invalid free: not a cma block",
            CmaError::BufferOverflow { .. } => "heap buffer overflow",
            CmaError::WriteAfterFree { .. } => "write after free",
            CmaError::RequestLimitExceeded { .. } => "request over the allocation limit",
            CmaError::TotalLimitExceeded { .. } => "total over the allocation limit",
            CmaError::OutOfMemory { .. } => "out of memory",
            CmaError::InvalidAlignment { .. } => "invalid alignment",
            CmaError::SizeOverflow => "size overflow",
        }
    }

    /// Whether this error is a misuse of a pointer (as opposed to an
    /// allocation that could not be served).
    pub fn is_misuse(&self) -> bool {
        matches!(
            self,
            CmaError::DoubleFree { .. }
                | CmaError::DoubleFreeByOtherThread { .. }
                | CmaError::InteriorPointer { .. }
                | CmaError::NotOurs { .. }
                | CmaError::BufferOverflow { .. }
                | CmaError::WriteAfterFree { .. }
        )
    }
}

impl fmt::Display for BlockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BlockKind::Class { class, block_size } => {
                write!(f, "size class {class}, {block_size}-byte blocks")
            }
            BlockKind::Large { bytes } => write!(f, "large block of {bytes} bytes"),
            BlockKind::Huge { bytes } => write!(f, "huge block of {bytes} bytes"),
            BlockKind::FreedPages => write!(f, "in freed pages"),
        }
    }
}

impl fmt::Display for CmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind_name();
        match *self {
            CmaError::DoubleFree { addr, block }
            | CmaError::DoubleFreeByOtherThread { addr, block } => {
                write!(f, "{kind} of {addr:#x} ({block})")
            }
            CmaError::InteriorPointer {
                addr,
                block_start,
                block,
            } => write!(
                f,
                "{kind} {addr:#x} is {} bytes into the block at {block_start:#x} ({block})",
                addr - block_start
            ),
            CmaError::BufferOverflow { addr, block } => {
                write!(
                    f,
                    "{kind}: the bytes after the block at {addr:#x} were overwritten ({block})"
                )
            }
            CmaError::WriteAfterFree { addr, block } => {
                write!(
                    f,
                    "{kind}: the freed block at {addr:#x} was written after it was freed ({block})"
                )
            }
            CmaError::NotOurs { addr } => {
                write!(
                    f,
                    "{kind}: {addr:#x} (another allocator's block, the stack, or unmapped memory)"
                )
            }
            CmaError::RequestLimitExceeded { size, limit } => {
                write!(f, "{kind}: {size} bytes > limit {limit}")
            }
            CmaError::TotalLimitExceeded {
                size,
                in_use,
                limit,
            } => {
                write!(f, "{kind}: {size} bytes + {in_use} in use > limit {limit}")
            }
            CmaError::OutOfMemory { size } => write!(f, "{kind}: {size} bytes"),
            CmaError::InvalidAlignment { align } => write!(f, "{kind}: {align}"),
            CmaError::SizeOverflow => write!(f, "{kind}"),
        }
    }
}

impl core::error::Error for CmaError {}
