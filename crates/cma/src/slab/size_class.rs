//! Size classes and slab geometry.
//!
//! Classes are multiples of 8 up to 64 bytes, then eight classes per power of
//! two, so above 64 bytes no class is more than 12.5% larger than the request
//! it serves. Requests above `MAX_SMALL` are served by whole pages (spans).
//!
//! Every class also fixes the geometry of its slabs: how many pages a slab
//! spans and how many slots it holds (at most `MAX_SLOTS`, so one slab's
//! bitmaps fit in `MAX_SLOT_WORDS` words).

use crate::os::PAGE_SIZE;

/// The largest request served from a size class.
pub const MAX_SMALL: usize = 128 * 1024;
/// The number of size classes.
pub const NUM_CLASSES: usize = 8 + 8 * 11;
/// The most slots a slab holds.
pub(crate) const MAX_SLOTS: usize = 4096;

/// An index into the size-class table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SizeClass(u8);

impl SizeClass {
    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }

    /// The size of every block of this class.
    pub(crate) fn block_size(self) -> usize {
        CLASSES[self.index()].block_size as usize
    }

    pub(crate) fn geometry(self) -> &'static ClassGeometry {
        &CLASSES[self.index()]
    }

    pub(crate) fn from_index(i: usize) -> SizeClass {
        debug_assert!(i < NUM_CLASSES);
        SizeClass(i as u8)
    }
}

/// What a slab of one class looks like.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClassGeometry {
    pub(crate) block_size: u32,
    /// Pages in one slab of this class.
    pub(crate) slab_pages: u32,
    /// Slots in one slab of this class.
    pub(crate) capacity: u32,
    /// The inverse, modulo 2^64, of the odd part of `block_size`, and the
    /// number of trailing zero bits of `block_size`: with them one
    /// multiplication and one rotation turn a byte offset into a slot index
    /// and say whether the offset starts a slot (`slot_of_offset`).
    pub(crate) inverse: u64,
    pub(crate) shift: u8,
    /// The most slots a thread's cache of this class takes from a slab at once:
    /// a bitmap word's worth (64) for small blocks, fewer for large ones, about
    /// 16 KiB of them and at least one. A cached slot can be handed out at any
    /// moment without a word to anyone, so the purge pass must leave its pages
    /// alone; for a class of 64 KiB blocks a whole word would be the whole slab.
    /// Refilling more often costs little next to writing such blocks.
    pub(crate) cache_slots: u32,
}

const fn block_size_of(index: usize) -> usize {
    if index < 8 {
        (index + 1) * 8
    } else {
        let group = (index - 8) / 8; // power of two 2^(6+group)
        let step_in_group = (index - 8) % 8 + 1;
        let base = 64usize << group;
        base + step_in_group * (base / 8)
    }
}

const fn geometry_of(index: usize) -> ClassGeometry {
    let bs = block_size_of(index);
    let slab_bytes = if bs <= 1024 {
        let by_slots = MAX_SLOTS * bs;
        if by_slots < 64 * 1024 {
            by_slots
        } else {
            64 * 1024
        }
    } else {
        let mut n = 64 * 1024 / bs;
        if n < 8 {
            n = 8;
        }
        (n * bs).div_ceil(PAGE_SIZE) * PAGE_SIZE
    };
    let capacity = slab_bytes / bs;
    ClassGeometry {
        block_size: bs as u32,
        slab_pages: (slab_bytes / PAGE_SIZE) as u32,
        capacity: capacity as u32,
        inverse: odd_inverse((bs >> bs.trailing_zeros()) as u64),
        shift: bs.trailing_zeros() as u8,
        cache_slots: cache_slots_of(bs),
    }
}

const fn cache_slots_of(block_size: usize) -> u32 {
    let n = 16 * 1024 / block_size;
    if n < 1 {
        1
    } else if n > 64 {
        64
    } else {
        n as u32
    }
}

/// The inverse of odd `d` modulo 2^64, by Newton's iteration: `d` is its
/// own inverse modulo 8 (3 bits), and each step doubles the bits that are
/// right (3, 6, 12, 24, 48, 96).
const fn odd_inverse(d: u64) -> u64 {
    let mut x = d;
    let mut i = 0;
    while i < 5 {
        x = x.wrapping_mul(2u64.wrapping_sub(d.wrapping_mul(x)));
        i += 1;
    }
    x
}

const fn build_classes() -> [ClassGeometry; NUM_CLASSES] {
    let mut table = [ClassGeometry {
        block_size: 0,
        slab_pages: 0,
        capacity: 0,
        inverse: 0,
        shift: 0,
        cache_slots: 0,
    }; NUM_CLASSES];
    let mut i = 0;
    while i < NUM_CLASSES {
        table[i] = geometry_of(i);
        i += 1;
    }
    table
}

static CLASSES: [ClassGeometry; NUM_CLASSES] = build_classes();

/// The class serving a request of `size` bytes with no alignment beyond 8.
/// `size` must be at most `MAX_SMALL`.
#[inline(always)]
pub(crate) fn class_of(size: usize) -> SizeClass {
    debug_assert!(size <= MAX_SMALL);
    if size <= SMALL_TABLE_MAX {
        return class_of_small(size);
    }
    class_of_computed(size)
}

/// `class_of` for a size of at most `SMALL_TABLE_MAX`: one table load.
#[inline(always)]
pub(crate) fn class_of_small(size: usize) -> SizeClass {
    debug_assert!(size <= SMALL_TABLE_MAX);
    // SAFETY: (size + 7) >> 3 <= SMALL_TABLE_MAX / 8, the table's last index.
    SizeClass(unsafe { *SMALL_TABLE.get_unchecked((size + 7) >> 3) })
}

/// Sizes up to this are classified by table lookup.
pub(crate) const SMALL_TABLE_MAX: usize = 1024;
/// Class of every multiple of 8 up to `SMALL_TABLE_MAX` (class boundaries
/// are multiples of 8, so rounding a size up to 8 never changes its class).
static SMALL_TABLE: [u8; SMALL_TABLE_SLOTS] = small_table(false);

/// Entries of a small-size table: one per multiple of 8 up to
/// `SMALL_TABLE_MAX`, indexed by `(size + 7) >> 3`.
pub(crate) const SMALL_TABLE_SLOTS: usize = SMALL_TABLE_MAX / 8 + 1;

/// The class index of every multiple of 8 up to `SMALL_TABLE_MAX`, for
/// alignment 8 (`class_of_small`) or for C's: `malloc` blocks of 16 bytes or
/// more are 16-byte aligned (8 below), as glibc's are, so with
/// `c_alignment` a size from 16 up is served as if rounded up to 16. For
/// tables of the layers above, built at compile time.
pub(crate) const fn small_table(c_alignment: bool) -> [u8; SMALL_TABLE_SLOTS] {
    let mut table = [0u8; SMALL_TABLE_MAX / 8 + 1];
    let mut i = 0;
    while i < table.len() {
        let mut size = i * 8;
        if c_alignment && size >= 16 {
            size = (size + 15) & !15;
        }
        table[i] = class_of_computed(size).0;
        i += 1;
    }
    table
}

#[inline(always)]
const fn class_of_computed(size: usize) -> SizeClass {
    if size <= 64 {
        return SizeClass((size.saturating_sub(1) >> 3) as u8);
    }
    // size in (2^k, 2^(k+1)], k >= 6
    let k = (usize::BITS - 1 - (size - 1).leading_zeros()) as usize;
    let step_shift = k - 3;
    let j = (size - (1 << k) + (1 << step_shift) - 1) >> step_shift; // 1..=8
    SizeClass((8 + (k - 6) * 8 + j - 1) as u8)
}

/// The class serving `size` bytes at `align` (a power of two), or `None` when
/// the request must be served by whole pages instead.
#[inline]
pub(crate) fn class_for(size: usize, align: usize) -> Option<SizeClass> {
    if size > MAX_SMALL {
        return None;
    }
    let mut class = class_of(size);
    if align <= 8 {
        return Some(class);
    }
    if align > PAGE_SIZE {
        return None;
    }
    let unaligned = class.block_size();
    // Slabs start on a page, so a slot is aligned to every power of two that
    // divides the block size.
    loop {
        let bs = class.block_size();
        if bs % align == 0 {
            return if bs - unaligned <= align {
                Some(class)
            } else {
                None
            };
        }
        if class.index() + 1 == NUM_CLASSES {
            return None;
        }
        class = SizeClass(class.0 + 1);
    }
}

/// Block sizes of all classes, smallest first.
pub fn class_block_sizes() -> [usize; NUM_CLASSES] {
    let mut out = [0; NUM_CLASSES];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = CLASSES[i].block_size as usize;
    }
    out
}

/// Slot index of byte `offset` inside a slab of `capacity` blocks (of the
/// size whose `ClassGeometry::inverse` and `shift` are given), or `None` when
/// the offset is not the start of a slot.
///
/// One multiplication, one rotation and one comparison answer both
/// questions, for every 64-bit offset (Granlund and Montgomery, "Division
/// by invariant integers using multiplication", 1994, section 9; Hacker's
/// Delight 10-17). With the block size d = d0 * 2^k (d0 odd) and inv the
/// inverse of d0 modulo 2^64: when d divides the offset n, n * inv modulo
/// 2^64 is (n / d) * 2^k exactly, whose rotation right by k is n / d; when d
/// does not divide n, the rotation is above (2^64 - 1) / d (its low k bits,
/// not all zero, rotate to the top, or n * inv is not a multiple of 2^k
/// below that bound), so above any capacity. An offset that wrapped below
/// zero, or one far past the slab, gives an index of at least `capacity`
/// either way and is rejected.
#[inline(always)]
pub(crate) fn slot_of_offset(
    offset: usize,
    inverse: u64,
    shift: u32,
    capacity: usize,
) -> Option<usize> {
    let index = (offset as u64).wrapping_mul(inverse).rotate_right(shift) as usize;
    if index < capacity {
        Some(index)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_grow_and_waste_at_most_an_eighth_above_64_bytes() {
        let sizes = class_block_sizes();
        assert_eq!(sizes[0], 8);
        assert_eq!(sizes[NUM_CLASSES - 1], MAX_SMALL);
        for pair in sizes.windows(2) {
            assert!(pair[0] < pair[1]);
        }
        for size in 1..=MAX_SMALL {
            let class = class_of(size);
            let bs = class.block_size();
            assert!(bs >= size, "size {size} got class {bs}");
            if class.index() > 0 {
                assert!(
                    sizes[class.index() - 1] < size,
                    "size {size} not in the smallest class"
                );
            }
            if size > 64 {
                assert!(
                    (bs - size) * 8 <= size,
                    "size {size} wastes too much in {bs}"
                );
            }
        }
    }

    #[test]
    fn slot_division_is_exact_for_every_offset_of_every_class() {
        for i in 0..NUM_CLASSES {
            let g = SizeClass::from_index(i).geometry();
            assert!(g.capacity as usize <= MAX_SLOTS);
            assert!(g.capacity >= 8);
            let slab_bytes = g.slab_pages as usize * PAGE_SIZE;
            assert!(g.capacity as usize * g.block_size as usize <= slab_bytes);
            let mut off = 0;
            while off < slab_bytes {
                let expect = off / g.block_size as usize;
                let exact = off % g.block_size as usize == 0 && expect < g.capacity as usize;
                let found = slot_of_offset(off, g.inverse, g.shift as u32, g.capacity as usize);
                assert_eq!(found.is_some(), exact, "class {i} offset {off}");
                if let Some(index) = found {
                    assert_eq!(index, expect);
                }
                off += 1;
            }
        }
    }

    #[test]
    fn the_rotated_product_is_the_quotient_exactly_for_multiples() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for i in 0..NUM_CLASSES {
            let g = SizeClass::from_index(i).geometry();
            let d = g.block_size as u64;
            assert_eq!((d >> g.shift).wrapping_mul(g.inverse), 1, "class {i}");
            assert_eq!(d >> g.shift & 1, 1, "class {i}");
            // The bound of the method: every offset, divisible or not, with
            // the largest capacity it allows.
            let bound = (u64::MAX / d) as usize;
            for k in 0..20_000u64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let n = match k % 3 {
                    0 => x,
                    1 => x - x % d,
                    _ => (x % (1 << 20)) * d + k % 2,
                };
                let found = slot_of_offset(n as usize, g.inverse, g.shift as u32, bound);
                let expect = (n % d == 0).then_some((n / d) as usize);
                assert_eq!(found, expect, "class {i} offset {n:#x}");
            }
        }
    }

    #[test]
    fn offsets_outside_a_slab_are_never_slots() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for i in 0..NUM_CLASSES {
            let g = SizeClass::from_index(i).geometry();
            let slab_bytes = g.slab_pages as usize * PAGE_SIZE;
            let cap = g.capacity as usize;
            for k in 0..20_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Past the slab, far past it (2^32 and up), and below its
                // start (wrapped), in block-size steps too.
                let off = match k % 4 {
                    0 => slab_bytes + (x as usize % (1 << 32)),
                    1 => (x as usize) | (1 << 32),
                    2 => (x as usize).wrapping_neg() | (1 << 63),
                    _ => cap * g.block_size as usize + (x as usize % 64) * g.block_size as usize,
                };
                assert!(
                    slot_of_offset(off, g.inverse, g.shift as u32, cap).is_none(),
                    "class {i} offset {off:#x}"
                );
            }
        }
    }

    #[test]
    fn c_classes_are_16_byte_aligned_from_16_bytes_up() {
        let c_table = small_table(true);
        for size in 0..=SMALL_TABLE_MAX {
            let c = SizeClass(c_table[(size + 7) >> 3]);
            let bs = c.block_size();
            assert!(bs >= size.max(1));
            if size >= 16 {
                assert_eq!(bs % 16, 0, "size {size} got {bs}");
                assert_eq!(c, class_of((size + 15) & !15));
            } else {
                assert_eq!(c, class_of(size));
            }
            assert_eq!(class_of_small(size), class_of(size));
        }
    }

    #[test]
    fn aligned_classes_are_aligned_and_waste_at_most_the_alignment() {
        let mut align = 16;
        while align <= PAGE_SIZE {
            for size in (1..=MAX_SMALL).step_by(7) {
                if let Some(c) = class_for(size, align) {
                    assert_eq!(c.block_size() % align, 0);
                    assert!(c.block_size() >= size);
                    assert!(c.block_size() - class_of(size).block_size() <= align);
                }
            }
            align *= 2;
        }
        assert!(class_for(100, 8192).is_none());
        assert!(class_for(MAX_SMALL + 1, 8).is_none());
    }
}
