//! The blocks the workloads allocate: their layout and tag, `get` (allocate
//! and write) and `Block::put` (check and free), and `Block`, a block held as
//! plain numbers so that it can cross threads.

use core::alloc::{GlobalAlloc, Layout};

use crate::util::{check, touch, verify};

#[inline]
pub fn layout(size: usize) -> Layout {
    // SAFETY: 8 is a power of two and sizes here are far below isize::MAX.
    unsafe { Layout::from_size_align_unchecked(size, 8) }
}

#[inline]
pub fn tag_of(size: usize) -> u8 {
    (size as u8) ^ 0x5a
}

#[cold]
pub fn oom(l: Layout) -> ! {
    eprintln!(
        "cma-bench: allocation of {} bytes (align {}) returned null",
        l.size(),
        l.align()
    );
    std::process::exit(4);
}

/// Allocates and writes the block.
#[inline]
pub fn get<A: GlobalAlloc + ?Sized>(a: &A, size: usize) -> *mut u8 {
    let l = layout(size);
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { a.alloc(l) };
    if p.is_null() {
        oom(l);
    }
    // SAFETY: a fresh block of `size` bytes.
    unsafe { touch(p, size, tag_of(size)) };
    p
}

#[derive(Clone, Copy)]
pub struct Block {
    pub addr: usize,
    pub size: usize,
}

pub const EMPTY: Block = Block { addr: 0, size: 0 };

impl Block {
    pub fn ptr(self) -> *mut u8 {
        self.addr as *mut u8
    }

    /// A block made by `get`.
    #[inline]
    pub fn get<A: GlobalAlloc + ?Sized>(a: &A, size: usize) -> Block {
        Block {
            addr: get(a, size) as usize,
            size,
        }
    }

    /// Checks and frees a block made by `get`.
    #[inline]
    pub fn put<A: GlobalAlloc + ?Sized>(self, a: &A) {
        // SAFETY: `self` is a live block of `self.size` bytes made by `get` on `a`.
        unsafe {
            verify(
                check(self.ptr(), self.size, tag_of(self.size)),
                "block content before free",
            );
            a.dealloc(self.ptr(), layout(self.size));
        }
    }

    /// `put` on a slot's block, if the slot holds one; whether it did.
    /// Callers count with `if ... { n += 1 }`: adding the answer as a number
    /// made the compiler drop the branch and cost two instructions more per
    /// slot (churn, measured with callgrind).
    #[inline]
    pub fn put_if_live<A: GlobalAlloc + ?Sized>(self, a: &A) -> bool {
        if self.addr == 0 {
            return false;
        }
        self.put(a);
        true
    }
}

/// `put` on every block, in order; returns how many, for the checksum.
#[inline]
pub fn put_all<A: GlobalAlloc + ?Sized>(a: &A, blocks: impl IntoIterator<Item = Block>) -> u64 {
    let mut n = 0;
    for b in blocks {
        b.put(a);
        n += 1;
    }
    n
}

/// The blocks of a ring or slot array that hold one (`addr != 0`).
pub fn live(blocks: impl IntoIterator<Item = Block>) -> impl Iterator<Item = Block> {
    blocks.into_iter().filter(|b| b.addr != 0)
}
