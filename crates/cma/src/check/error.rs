//! The errors cma reports: misuse of a pointer, and allocation failures.
//! Every misuse found by `free` and friends ends in `report::fatal` with the
//! one-line text of a `CmaError`; the checked API returns the same value.

use core::fmt;

use super::kind::AllocKind;

/// What a report knows of the size a block was requested with: the
/// trailer of a checked level records it (`check::trailer`); where it is
/// not known, why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requested {
    /// The size the block was asked for.
    Bytes(usize),
    /// At `check=fast` blocks carry no trailer: the size is not recorded.
    NotRecorded,
    /// The block is freed: its trailer was wiped with it. (At `strict`,
    /// the freed block's record still gives it, after the line.)
    NotKept,
    /// The trailer that records it was itself overwritten.
    Overwritten,
}

impl fmt::Display for Requested {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Requested::Bytes(n) => write!(f, "{n} bytes requested"),
            Requested::NotRecorded => f.write_str("requested size not recorded at check=fast"),
            Requested::NotKept => f.write_str("requested size not kept once freed"),
            Requested::Overwritten => {
                f.write_str("requested size lost: its trailer was overwritten")
            }
        }
    }
}

/// What kind of block an address was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// A slot of a size class.
    Class {
        /// The class's number (see [`class_block_sizes`](crate::class_block_sizes)).
        class: usize,
        /// The class's block size in bytes.
        block_size: usize,
        /// The size the block was requested with, as far as it is known.
        requested: Requested,
    },
    /// A large block made of whole pages.
    Large {
        /// The pages' bytes.
        bytes: usize,
        /// The size the block was requested with, as far as it is known.
        requested: Requested,
    },
    /// A huge block with a mapping of its own.
    Huge {
        /// The block's bytes (whole pages).
        bytes: usize,
        /// The size the block was requested with, as far as it is known.
        requested: Requested,
    },
    /// Pages that cma holds but that belong to no live block.
    FreedPages,
    /// A sampled block, on a page of its own before a guard page (see
    /// `sample` in README).
    Sampled {
        /// The size requested.
        size: usize,
    },
    /// A zero-byte block, at an address nobody may touch (see
    /// `guarded::zero`).
    ZeroByte,
}

/// What a faulting access of a sampled block's pages did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessProblem {
    /// It reached past the end of a live block (into the guard page).
    Overflow,
    /// It reached before the start of a live block (into the guard page
    /// before its page).
    Underflow,
    /// It touched a block after it was freed.
    UseAfterFree,
    /// It touched the pool where no block ever was.
    Wild,
    /// It went through a live zero-byte block (`malloc(0)`), which has no
    /// byte to touch.
    ZeroByte,
    /// It went through a zero-byte block after it was freed.
    FreedZeroByte,
    /// It touched a huge block (a mapping of its own) after it was freed.
    FreedHuge,
    /// It reached past the page-rounded end of a live large block into the
    /// guard page after it (a checked level's large block).
    LargeOverflow,
    /// It touched a large block, guarded at a checked level, after it was
    /// freed.
    FreedLarge,
}

/// Whether a faulting access read or wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A load.
    Read,
    /// A store.
    Write,
    /// The processor does not say (on targets other than x86_64).
    Unknown,
}

/// An error from cma.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmaError {
    /// The block at `addr` is not allocated: it was freed already.
    DoubleFree {
        /// The address passed in.
        addr: usize,
        /// What the address was found in.
        block: BlockKind,
    },
    /// The block at `addr` was already freed by another thread (the owner has
    /// not collected that free yet).
    DoubleFreeByOtherThread {
        /// The address passed in.
        addr: usize,
        /// What the address was found in.
        block: BlockKind,
    },
    /// `addr` points inside a block, not at its start.
    InteriorPointer {
        /// The address passed in.
        addr: usize,
        /// Where the block that holds it starts.
        block_start: usize,
        /// What the address was found in.
        block: BlockKind,
    },
    /// The bytes after the caller's part of the block at `addr` were
    /// overwritten (found at the `default` check level, or around a
    /// sampled block).
    BufferOverflow {
        /// The block's address.
        addr: usize,
        /// What the address was found in.
        block: BlockKind,
    },
    /// The bytes before the sampled block at `addr`, in its page, were
    /// overwritten.
    BufferUnderflow {
        /// The block's address.
        addr: usize,
        /// What the address was found in.
        block: BlockKind,
    },
    /// An access of memory nobody may touch faulted: a sampled block's
    /// guard page or freed page, a zero-byte block, a freed huge block
    /// (reported by the fault handler).
    BadAccess {
        /// What the access did wrong.
        problem: AccessProblem,
        /// Whether it read or wrote.
        access: Access,
        /// The address that faulted.
        addr: usize,
        /// The block nearest it (0 for `Wild`).
        block_start: usize,
        /// The block's requested size.
        size: usize,
    },
    /// The freed block at `addr` was written after it was freed: it no longer
    /// reads as the zeros it was wiped to (found at the `default` check level
    /// when the slot leaves the quarantine or is handed out again).
    WriteAfterFree {
        /// The freed block's address.
        addr: usize,
        /// What the address was found in.
        block: BlockKind,
    },
    /// The block at `addr` was allocated by one family of functions and
    /// released (or resized) by another: `free` of a `new[]` block, `delete`
    /// of a `malloc` block (found at the `default` check level).
    KindMismatch {
        /// The address passed in.
        addr: usize,
        /// The family that allocated it.
        allocated: AllocKind,
        /// The family that released it.
        released: AllocKind,
        /// What the address was found in.
        block: BlockKind,
    },
    /// A sized release (`free_sized`, sized `operator delete`) named a size
    /// the block at `addr` was not allocated with (found at the `default`
    /// check level).
    SizeMismatch {
        /// The address passed in.
        addr: usize,
        /// The size the release named.
        size: usize,
        /// The size the block was allocated with.
        actual: usize,
        /// What the address was found in.
        block: BlockKind,
    },
    /// An aligned release (`free_aligned_sized`, aligned `operator
    /// delete`) named an alignment the block at `addr` does not have (found
    /// at the `default` check level).
    AlignMismatch {
        /// The address passed in.
        addr: usize,
        /// The alignment the release named.
        align: usize,
        /// What the address was found in.
        block: BlockKind,
    },
    /// `addr` is not in memory that cma manages: another allocator's block,
    /// the stack, static data, or unmapped memory.
    NotOurs {
        /// The address passed in.
        addr: usize,
    },
    /// The allocation limit on a single request was exceeded.
    RequestLimitExceeded {
        /// The size requested.
        size: usize,
        /// The limit (`limit_request`).
        limit: usize,
    },
    /// The allocation limit on total bytes in use was exceeded.
    TotalLimitExceeded {
        /// The size requested.
        size: usize,
        /// The bytes in use before the request.
        in_use: usize,
        /// The limit (`limit_total`).
        limit: usize,
    },
    /// The kernel refused memory.
    OutOfMemory {
        /// The size requested.
        size: usize,
    },
    /// The alignment is not a power of two, or is too large.
    InvalidAlignment {
        /// The alignment requested.
        align: usize,
    },
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
            CmaError::BufferUnderflow { .. } => "heap buffer underflow",
            CmaError::BadAccess { problem, .. } => match problem {
                AccessProblem::Overflow => "heap buffer overflow",
                AccessProblem::Underflow => "heap buffer underflow",
                AccessProblem::UseAfterFree => "use after free",
                AccessProblem::Wild => "wild access",
                AccessProblem::ZeroByte => "access through a zero-byte block",
                AccessProblem::FreedZeroByte => "use after free of a zero-byte block",
                AccessProblem::FreedHuge => "use after free",
                AccessProblem::LargeOverflow => "heap buffer overflow",
                AccessProblem::FreedLarge => "use after free",
            },
            CmaError::WriteAfterFree { .. } => "write after free",
            CmaError::KindMismatch { .. } => "alloc-dealloc mismatch",
            CmaError::SizeMismatch { .. } => "sized free with the wrong size",
            CmaError::AlignMismatch { .. } => "aligned free with the wrong alignment",
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
                | CmaError::BufferUnderflow { .. }
                | CmaError::BadAccess { .. }
                | CmaError::WriteAfterFree { .. }
                | CmaError::KindMismatch { .. }
                | CmaError::SizeMismatch { .. }
                | CmaError::AlignMismatch { .. }
        )
    }

    /// The block the error is about, if it is about one: its start (the
    /// `strict` level prints what it recorded of it).
    pub(crate) fn block_start(&self) -> Option<usize> {
        match *self {
            CmaError::DoubleFree { addr, .. }
            | CmaError::DoubleFreeByOtherThread { addr, .. }
            | CmaError::BufferOverflow { addr, .. }
            | CmaError::BufferUnderflow { addr, .. }
            | CmaError::WriteAfterFree { addr, .. }
            | CmaError::KindMismatch { addr, .. }
            | CmaError::SizeMismatch { addr, .. }
            | CmaError::AlignMismatch { addr, .. } => Some(addr),
            CmaError::InteriorPointer { block_start, .. } => Some(block_start),
            CmaError::BadAccess {
                problem,
                block_start,
                ..
            } if problem != AccessProblem::Wild => Some(block_start),
            _ => None,
        }
    }

    /// The sampled block the error is about, if any: its start.
    pub(crate) fn sampled_block(&self) -> Option<usize> {
        match *self {
            CmaError::DoubleFree {
                addr,
                block: BlockKind::Sampled { .. },
            }
            | CmaError::BufferOverflow {
                addr,
                block: BlockKind::Sampled { .. },
            }
            | CmaError::BufferUnderflow { addr, .. } => Some(addr),
            CmaError::InteriorPointer {
                block_start,
                block: BlockKind::Sampled { .. },
                ..
            } => Some(block_start),
            CmaError::BadAccess {
                problem,
                block_start,
                ..
            } if problem != AccessProblem::Wild => Some(block_start),
            _ => None,
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Unknown => "access",
        })
    }
}

impl fmt::Display for BlockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BlockKind::Class {
                class,
                block_size,
                requested,
            } => {
                write!(
                    f,
                    "size class {class}, {block_size}-byte blocks, {requested}"
                )
            }
            BlockKind::Large { bytes, requested } => {
                write!(f, "large block of {bytes} bytes, {requested}")
            }
            BlockKind::Huge { bytes, requested } => {
                write!(f, "huge block of {bytes} bytes, {requested}")
            }
            BlockKind::FreedPages => write!(f, "in freed pages"),
            BlockKind::Sampled { size } => write!(f, "sampled block of {size} bytes"),
            BlockKind::ZeroByte => write!(f, "zero-byte block"),
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
            CmaError::BufferUnderflow { addr, block } => {
                write!(
                    f,
                    "{kind}: the bytes before the block at {addr:#x} were overwritten ({block})"
                )
            }
            CmaError::BadAccess {
                problem,
                access,
                addr,
                block_start,
                size,
            } => {
                let end = block_start + size;
                let freed = if matches!(
                    problem,
                    AccessProblem::UseAfterFree | AccessProblem::FreedZeroByte
                ) {
                    "freed "
                } else {
                    ""
                };
                write!(f, "{kind}: {access} of {addr:#x}, ")?;
                if problem == AccessProblem::Wild {
                    return write!(f, "in cma's pool of sampled blocks, where no block is");
                }
                if problem == AccessProblem::FreedHuge {
                    return write!(
                        f,
                        "{} bytes into the freed huge block of {size} bytes at {block_start:#x}",
                        addr - block_start
                    );
                }
                if problem == AccessProblem::FreedLarge {
                    return write!(
                        f,
                        "{} bytes into the freed large block of {size} bytes at {block_start:#x}",
                        addr - block_start
                    );
                }
                if problem == AccessProblem::LargeOverflow {
                    return write!(
                        f,
                        "{} bytes past the end of the large block of {size} bytes at {block_start:#x} (into its guard page)",
                        addr - end
                    );
                }
                if matches!(
                    problem,
                    AccessProblem::ZeroByte | AccessProblem::FreedZeroByte
                ) {
                    return write!(
                        f,
                        "{} bytes into the {freed}zero-byte block at {block_start:#x} (from malloc(0) or new[0]: it has no byte to touch)",
                        addr - block_start
                    );
                }
                if addr < block_start {
                    write!(f, "{} bytes before", block_start - addr)?;
                } else if addr >= end {
                    write!(f, "{} bytes past the end of", addr - end)?;
                } else {
                    write!(f, "{} bytes into", addr - block_start)?;
                }
                write!(
                    f,
                    " the {freed}{size}-byte sampled block at {block_start:#x}"
                )
            }
            CmaError::WriteAfterFree { addr, block } => {
                write!(
                    f,
                    "{kind}: the freed block at {addr:#x} was written after it was freed ({block})"
                )
            }
            CmaError::KindMismatch {
                addr,
                allocated,
                released,
                block,
            } => write!(
                f,
                "{kind}: {addr:#x} was allocated by {allocated} and released by {} ({block})",
                released.releaser()
            ),
            CmaError::SizeMismatch {
                addr,
                size,
                actual,
                block,
            } => write!(
                f,
                "{kind}: {addr:#x} released as {size} bytes, allocated as {actual} ({block})"
            ),
            CmaError::AlignMismatch { addr, align, block } => write!(
                f,
                "{kind}: {addr:#x} released with alignment {align}, which it does not have ({block})"
            ),
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
