//! An address-keyed hash table in memory of its own (anonymous mappings,
//! never the engine's heap), for what is known about single blocks: the
//! set of blocks left out of leak reports (`track::ignored`) and the
//! live-allocation registry (`track::registry`).
//!
//! Open addressing with linear probing and backward-shift deletion (no
//! tombstones, so a table that sees many inserts and removes keeps short
//! probes); it doubles when three quarters full (a fuller table costs a
//! few more probes, a doubling at half full twice the memory of the
//! registry's largest table). Key 0 marks an empty entry (no
//! block lives at address 0). Not synchronised: its owner keeps it under a
//! lock.
//!
//! libcma keeps its backends' live blocks in one too (through
//! `cma::faces`): blocks of its own would show up as the program's.

use core::ptr::null_mut;

use crate::os::memory::{self, Charge};
use crate::os::PAGE_SIZE;

/// One entry: a block's address and what is kept for it.
#[derive(Clone, Copy)]
#[repr(C)]
struct Entry<V: Copy> {
    key: usize,
    value: V,
}

/// Entries of a new table.
const FIRST_CAPACITY: usize = 1024;
/// A table this big asks for transparent huge pages (it is then at least
/// three eighths full; the registry's tables are split in shards, each
/// of a few MiB when there are many live blocks).
const HUGE_TABLE_BYTES: usize = 4 << 20;

/// `AddrTable::home` in a table of `capacity` entries.
#[inline]
fn home_in(key: usize, capacity: usize) -> usize {
    let page = (key >> 12).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
    (page << 8 | (key >> 4 & 0xFF)) & capacity.wrapping_sub(1)
}

/// See the module docs.
pub struct AddrTable<V: Copy> {
    entries: *mut Entry<V>,
    /// A power of two, or 0 before the first insert.
    capacity: usize,
    len: usize,
}

impl<V: Copy> Default for AddrTable<V> {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: the table owns its mapping; its owner serialises access (a lock).
unsafe impl<V: Copy + Send> Send for AddrTable<V> {}

/// The table could not grow: the kernel refused memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoMemory;

impl<V: Copy> AddrTable<V> {
    /// An empty table (it maps memory at its first insert).
    pub const fn new() -> AddrTable<V> {
        AddrTable {
            entries: null_mut(),
            capacity: 0,
            len: 0,
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where the table lies: its mapping's address and its capacity in
    /// entries (for `home_offset`; 0 and 0 before the first insert).
    pub fn layout(&self) -> (usize, usize) {
        (self.entries as usize, self.capacity)
    }

    /// The byte offset of `key`'s home entry in a table of `capacity`
    /// entries (a power of two, from `layout`): where a lookup of `key`
    /// starts, for a prefetch by a thread that does not hold the table.
    pub fn home_offset(key: usize, capacity: usize) -> usize {
        home_in(key, capacity) * core::mem::size_of::<Entry<V>>()
    }

    fn bytes_for(capacity: usize) -> usize {
        (capacity * core::mem::size_of::<Entry<V>>()).next_multiple_of(PAGE_SIZE)
    }

    /// Where `key`'s probe starts: the keys of one 4 KiB page (blocks of
    /// 16 bytes and up) have homes in one run of 256 entries, in address
    /// order, and pages are spread by a Fibonacci hash of their number. A
    /// program that allocates or frees neighbouring blocks, as a slab hands
    /// them out, touches neighbouring entries (cache and TLB hits) instead
    /// of a random one each time.
    #[inline]
    fn home(&self, key: usize) -> usize {
        home_in(key, self.capacity)
    }

    #[inline]
    fn entry(&self, i: usize) -> &Entry<V> {
        debug_assert!(i < self.capacity);
        // SAFETY: `i` is below the capacity of the live mapping, which
        // holds `capacity` entries.
        unsafe { &*self.entries.add(i) }
    }

    #[inline]
    fn entry_mut(&mut self, i: usize) -> &mut Entry<V> {
        debug_assert!(i < self.capacity);
        // SAFETY: as in `entry`; `&mut self` makes the access exclusive.
        unsafe { &mut *self.entries.add(i) }
    }

    /// The index of `key`'s entry, if it is held.
    fn find(&self, key: usize) -> Option<usize> {
        if self.capacity == 0 || key == 0 {
            return None;
        }
        let mut i = self.home(key);
        loop {
            let k = self.entry(i).key;
            if k == key {
                return Some(i);
            }
            if k == 0 {
                return None;
            }
            i = (i + 1) & (self.capacity - 1);
        }
    }

    /// The value kept for `key`.
    pub fn get(&self, key: usize) -> Option<V> {
        self.find(key).map(|i| self.entry(i).value)
    }

    /// The value kept for `key`, to change in place.
    pub fn get_mut(&mut self, key: usize) -> Option<&mut V> {
        let i = self.find(key)?;
        Some(&mut self.entry_mut(i).value)
    }

    /// Whether `key` is held.
    pub fn contains(&self, key: usize) -> bool {
        self.find(key).is_some()
    }

    /// Keeps `value` for `key` (not 0); returns the value it replaces.
    pub fn insert(&mut self, key: usize, value: V) -> Result<Option<V>, NoMemory> {
        debug_assert!(key != 0);
        if let Some(i) = self.find(key) {
            let e = self.entry_mut(i);
            let old = e.value;
            e.value = value;
            return Ok(Some(old));
        }
        if (self.len + 1) * 4 > self.capacity * 3 {
            self.grow()?;
        }
        let mut i = self.home(key);
        while self.entry(i).key != 0 {
            i = (i + 1) & (self.capacity - 1);
        }
        *self.entry_mut(i) = Entry { key, value };
        self.len += 1;
        Ok(None)
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: usize) -> Option<V> {
        let mut hole = self.find(key)?;
        let value = self.entry(hole).value;
        let mask = self.capacity - 1;
        // Backward shift: move up every entry of the run after the hole
        // whose home does not lie between the hole and itself.
        let mut i = (hole + 1) & mask;
        loop {
            let k = self.entry(i).key;
            if k == 0 {
                break;
            }
            let home = self.home(k);
            if (i.wrapping_sub(home) & mask) >= (i.wrapping_sub(hole) & mask) {
                *self.entry_mut(hole) = *self.entry(i);
                hole = i;
            }
            i = (i + 1) & mask;
        }
        self.entry_mut(hole).key = 0;
        self.len -= 1;
        Some(value)
    }

    /// Calls `each` with every key and value, in no particular order; it
    /// must not change the table.
    pub fn for_each(&self, mut each: impl FnMut(usize, &V)) {
        for i in 0..self.capacity {
            let e = self.entry(i);
            if e.key != 0 {
                each(e.key, &e.value);
            }
        }
    }

    /// Removes every entry for which `keep` says false (`keep` may be asked
    /// twice about an entry that a removal moved).
    pub fn retain(&mut self, mut keep: impl FnMut(usize, &V) -> bool) {
        let mut i = 0;
        while i < self.capacity {
            let e = *self.entry(i);
            // A removal shifts a later entry into `i`: look at it again.
            if e.key != 0 && !keep(e.key, &e.value) {
                self.remove(e.key);
                continue;
            }
            i += 1;
        }
    }

    fn grow(&mut self) -> Result<(), NoMemory> {
        let capacity = (self.capacity * 2).max(FIRST_CAPACITY);
        let bytes = Self::bytes_for(capacity);
        let fresh = memory::map(bytes, Charge::Accounted).cast::<Entry<V>>();
        if fresh.is_null() {
            return Err(NoMemory);
        }
        if bytes >= HUGE_TABLE_BYTES {
            // Keys land anywhere in the table: with 4 KiB pages nearly every
            // lookup of a big one is a TLB miss as well as a cache miss.
            memory::hint_huge_pages(fresh.cast(), bytes);
        }
        let old = core::mem::replace(
            self,
            AddrTable {
                entries: fresh,
                capacity,
                len: 0,
            },
        );
        // Fresh memory reads as zero: every key empty.
        for i in 0..old.capacity {
            let e = *old.entry(i);
            if e.key != 0 {
                let mut j = self.home(e.key);
                while self.entry(j).key != 0 {
                    j = (j + 1) & (capacity - 1);
                }
                *self.entry_mut(j) = e;
                self.len += 1;
            }
        }
        if !old.entries.is_null() {
            memory::unmap(old.entries.cast(), Self::bytes_for(old.capacity));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn it_agrees_with_a_hash_map_through_inserts_and_removes() {
        let mut t = AddrTable::<u64>::new();
        let mut model = HashMap::new();
        let mut x = 0x1234_5678u64;
        for step in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Keys like block addresses: 16-byte steps in a few regions.
            let key = (0x7f00_0000_0000 + (x % 4) * (1 << 32) + (x >> 40) % 50_000 * 16) as usize;
            if x % 3 == 0 {
                assert_eq!(t.remove(key), model.remove(&key), "step {step}");
            } else {
                assert_eq!(t.insert(key, step).unwrap(), model.insert(key, step));
            }
            assert_eq!(t.len(), model.len());
        }
        for (&k, &v) in &model {
            assert_eq!(t.get(k), Some(v));
        }
        let mut seen = 0;
        t.for_each(|k, v| {
            assert_eq!(model.get(&k), Some(v));
            seen += 1;
        });
        assert_eq!(seen, model.len());
        t.retain(|k, _| k % 32 == 0);
        model.retain(|k, _| k % 32 == 0);
        assert_eq!(t.len(), model.len());
        for (&k, &v) in &model {
            assert_eq!(t.get(k), Some(v));
        }
        let some = *model.keys().next().unwrap();
        t.retain(|_, _| false);
        assert_eq!(t.len(), 0);
        assert!(!t.contains(some));
    }
}
