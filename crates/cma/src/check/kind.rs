//! Allocation kinds: which family of functions allocated a block (C's
//! `malloc` family, C++'s `operator new`, `operator new[]`), so that a
//! release by another family (`free` of a `new[]` block, `delete` of a
//! `malloc` block, `delete` of a `new[]` block) is reported at the checked
//! levels. Kinds are recorded out of line (`heap::kinds`): two bitmaps per
//! slab, a byte per large block. Rust's `GlobalAlloc` and the `cma_*` API
//! are the `malloc` family.

use core::fmt;
use core::sync::atomic::Ordering;

use crate::meta::span::Span;

/// The family that allocated a block, or that releases one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum AllocKind {
    /// `malloc`, `calloc`, `realloc`, the aligned variants, `cma_*`, Rust.
    Malloc = 0,
    /// `operator new` (any form but the array ones).
    New = 1,
    /// `operator new[]`.
    NewArray = 2,
}

impl AllocKind {
    pub(crate) fn from_bits(bits: u8) -> AllocKind {
        match bits {
            1 => AllocKind::New,
            2 => AllocKind::NewArray,
            _ => AllocKind::Malloc,
        }
    }

    /// The functions that allocate this kind (for a diagnostic).
    pub fn allocator(self) -> &'static str {
        match self {
            AllocKind::Malloc => "malloc",
            AllocKind::New => "operator new",
            AllocKind::NewArray => "operator new[]",
        }
    }

    /// The functions that release this kind.
    pub fn releaser(self) -> &'static str {
        match self {
            AllocKind::Malloc => "free",
            AllocKind::New => "operator delete",
            AllocKind::NewArray => "operator delete[]",
        }
    }
}

impl fmt::Display for AllocKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.allocator())
    }
}

/// The kind recorded for slot `index` of `slab`.
#[inline(always)]
pub(crate) fn slot_kind(slab: &Span, index: usize) -> AllocKind {
    let (w, shift) = (index / 64, index % 64);
    let lo = (slab.kind_word(0, w).load(Ordering::Relaxed) >> shift) & 1;
    let hi = (slab.kind_word(1, w).load(Ordering::Relaxed) >> shift) & 1;
    AllocKind::from_bits((lo | hi << 1) as u8)
}

/// Whether slot `index` of `slab` was allocated by `kind`'s family: the
/// free path's test, with no decoding of the two bits.
#[inline(always)]
pub(crate) fn slot_kind_is(slab: &Span, index: usize, kind: AllocKind) -> bool {
    let (w, shift) = (index / 64, index % 64);
    let lo = (slab.kind_word(0, w).load(Ordering::Relaxed) >> shift) & 1;
    let hi = (slab.kind_word(1, w).load(Ordering::Relaxed) >> shift) & 1;
    lo | hi << 1 == kind as u64
}

/// Records `kind` for slot `index` of `slab` (owner only).
pub(crate) fn set_slot_kind(slab: &Span, index: usize, kind: AllocKind) {
    let (w, bit) = (index / 64, 1u64 << (index % 64));
    let bits = kind as u64;
    for plane in 0..2 {
        let word = slab.kind_word(plane, w);
        let v = word.load(Ordering::Relaxed);
        let v = if bits >> plane & 1 != 0 {
            v | bit
        } else {
            v & !bit
        };
        word.store(v, Ordering::Relaxed);
    }
}

/// Forgets slot `index`'s kind as it is freed (owner only), when it had one.
#[inline(always)]
pub(crate) fn clear_slot_kind(slab: &Span, index: usize, kind: AllocKind) {
    if kind != AllocKind::Malloc {
        set_slot_kind(slab, index, AllocKind::Malloc);
    }
}
