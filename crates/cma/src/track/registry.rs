//! The live-allocation registry and its site table (`profile=sample` or
//! `profile=all`, see `track::sampling` for which blocks come here, and
//! `heap::profile` for where they are recorded).
//!
//! - A *site* is an allocation stack (up to `FRAMES` return addresses,
//!   innermost first, cma's own frames included: `cma run` hides them when
//!   it symbolises) and whether the process was still starting up (before
//!   the program's own code ran, see `sampling::starting_up`). Sites are
//!   deduplicated through a hash index and never removed, so a site's
//!   frames (`SiteFrames`) never change once made and may be read without
//!   the lock. Each site has counters (`SiteCounts`): bytes and blocks
//!   allocated in all, live now, at the site's own maximum, at the
//!   process's peak, and the freed blocks with the sum of their lifetimes.
//! - The block tables map each recorded block to its site, its requested
//!   size, its birth time, the thread that allocated it and its weight (1
//!   at `profile=all`; at `profile=sample`, one over the chance that the
//!   sampler picked it, so that every sum over blocks is an unbiased
//!   estimate).
//! - At the `strict` level, a block taken out as it is freed is
//!   remembered, with the stack (a site of its own, with no counts:
//!   profiles skip it), thread and time of its free, in a ring of the
//!   last `FREED_KEPT` frees, so that a double free or a write found in a
//!   freed block later names both stacks (`history`, for `check::report`:
//!   the live record of an address if it has one, else the newest free
//!   remembered there, found by a pass over the ring). A free is
//!   one sequential write; nothing is looked up to forget one, and nothing
//!   grows, whatever the program frees.
//!
//! Peak attribution without a pass over all sites at each new peak: the
//! peak has an epoch that a new peak advances; a site's counters at the
//! peak are its live counters unless it changed since that peak, in which
//! case they were saved at its first change after it (`save_peak`).
//!
//! Memory: the tables are anonymous mappings of their own (`AddrTable`,
//! `os::memory`), never the engine's heap, so recording allocates nothing
//! through cma. Locks, none held while another is taken (the stack is
//! taken before any): the block tables are split by address into `SHARDS`
//! shards, each under its own lock, held for one table update; the
//! counters (every site's and the totals) and the ring of frees are under
//! `COUNTS`, held for a few additions (and a free's one write to the ring) after the shard's lock is let go; sites are looked up
//! without a lock (an index that only grows) and made under `SITE_LOCK`.
//! A block's table update and its counting are therefore two steps: a
//! profile taken between them (`for_each_site`) may count a block that
//! another thread is recording or freeing at that moment one way in the
//! tables and the other in the counters.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::os::memory::{self, Charge};
use crate::os::{clock, PAGE_SIZE};
use crate::util::addr_table::{AddrTable, NoMemory};
use crate::util::spin_lock::SpinLock;

/// Return addresses kept of each allocation stack.
pub(crate) const FRAMES: usize = 32;

/// Sites per chunk of the site table, and chunks at most.
const CHUNK_SITES: usize = 1024;
const MAX_CHUNKS: usize = 1024;
/// The most sites: past it, new stacks are counted in site 0.
pub(crate) const MAX_SITES: usize = CHUNK_SITES * MAX_CHUNKS;

/// What is kept of a site that never changes once it is made.
#[repr(C)]
pub(crate) struct SiteFrames {
    hash: u64,
    len: u32,
    /// Made while the process was starting up (see `sampling::starting_up`).
    startup: bool,
    frames: [usize; FRAMES],
}

impl SiteFrames {
    /// The stack, innermost first.
    pub(crate) fn frames(&self) -> &[usize] {
        &self.frames[..(self.len as usize).min(FRAMES)]
    }

    /// Whether the site's blocks were allocated while the process started.
    pub(crate) fn startup(&self) -> bool {
        self.startup
    }
}

/// A site's counters: estimates at `profile=sample` (sums of weights), exact
/// counts at `profile=all`. Bytes are requested sizes; times nanoseconds.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SiteCounts {
    pub(crate) total_bytes: f64,
    pub(crate) total_blocks: f64,
    pub(crate) live_bytes: f64,
    pub(crate) live_blocks: f64,
    pub(crate) max_bytes: f64,
    pub(crate) max_blocks: f64,
    /// At the process's peak, when `peak_epoch` is the registry's (else
    /// `live_*` are).
    peak_bytes: f64,
    peak_blocks: f64,
    peak_epoch: u64,
    pub(crate) freed_blocks: f64,
    pub(crate) freed_lifetime: f64,
}

/// One site's chunk entries: the frames and the counters, apart (see the
/// module docs).
#[repr(C)]
struct SiteSlot {
    frames: SiteFrames,
    counts: UnsafeCell<SiteCounts>,
}

/// A recorded live block.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Live {
    pub(crate) site: u32,
    /// The thread that allocated it (`gettid`; 0 when unknown).
    pub(crate) thread: u32,
    pub(crate) size: usize,
    pub(crate) born: u64,
    /// `f32`: exact for `profile=all`'s 1.0, and plenty for an estimate's
    /// weight; it keeps an entry of the live table at 32 bytes.
    pub(crate) weight: f32,
}

/// A freed block the `strict` level remembers (see the module docs).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Freed {
    /// Its record while it was live.
    pub(crate) live: Live,
    /// Where it was freed: a site of the site table (no counts).
    pub(crate) free_site: u32,
    pub(crate) free_thread: u32,
    /// When it was freed (ticks since the registry started).
    pub(crate) freed_at: u64,
}

/// A remembered free in its ring: the block's address and what is
/// kept of it. 64 bytes: one cache line.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct FreedEntry {
    addr: usize,
    freed: Freed,
}

/// Freed blocks the `strict` level remembers at most (the ring's length): well above the `strict` quarantine of a
/// few busy threads (4,096 slots each), so that a block still in quarantine
/// is remembered. The rings take 4 MiB (64 bytes a free).
pub(crate) const FREED_KEPT: usize = 1 << 16;

/// The registry's tables are split by address into this many shards, each
/// under a lock of its own, so that threads recording different blocks
/// seldom wait for each other.
const SHARDS: usize = 32;

/// Frees the ring remembers.
const RING_KEPT: usize = FREED_KEPT;

/// The last `RING_KEPT` frees, in a ring (the mapping `RINGS`, under
/// `COUNTS`'s lock: a free takes it anyway, and the write is one
/// sequential store): the oldest is overwritten when a new one comes.
/// Written in order, read only for a diagnostic (`history`, newest
/// first).
struct FreedRing {
    entries: *mut FreedEntry,
    /// Frees taken so far (the next one's sequence number).
    next: u64,
}

/// The ring's mapping (`FREED_KEPT` entries), made at the
/// first free remembered.
static RINGS: AtomicPtr<FreedEntry> = AtomicPtr::new(core::ptr::null_mut());

/// The process-wide figures (same units as `SiteCounts`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Totals {
    pub(crate) total_bytes: f64,
    pub(crate) total_blocks: f64,
    pub(crate) live_bytes: f64,
    pub(crate) live_blocks: f64,
    pub(crate) peak_bytes: f64,
    pub(crate) peak_blocks: f64,
    /// When the peak was reached (ticks since the registry started).
    pub(crate) peak_at: u64,
    /// Blocks that could not be recorded (the kernel refused memory for
    /// the tables).
    pub(crate) dropped: u64,
}

/// One shard of the block tables.
struct Shard {
    /// The live blocks.
    table: AddrTable<Live>,
}

// SAFETY: the ring's mapping is reached only under `COUNTS`'s lock.
unsafe impl Send for FreedRing {}

/// A shard's lock on a cache line of its own, with where its table lies
/// (its mapping's address and its capacity, `AddrTable::layout`), written
/// under the lock (`note_table`) for `prefetch`, which reads them without.
#[repr(align(64))]
struct ShardLock(SpinLock<Shard>, AtomicUsize, AtomicUsize);

static SHARD_LOCKS: [ShardLock; SHARDS] = [const {
    ShardLock(
        SpinLock::new(Shard {
            table: AddrTable::new(),
        }),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    )
}; SHARDS];

/// Starts loading the cache line where the table entry of the block at
/// `addr` is likely to be, so that the miss overlaps the stack walk that
/// comes before the table is looked up. Takes no lock and reads no entry
/// (a prefetch of memory unmapped since is harmless).
#[inline]
pub(crate) fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let l = &SHARD_LOCKS[shard_index(addr)];
        let (base, capacity) = (l.1.load(Ordering::Relaxed), l.2.load(Ordering::Relaxed));
        if base == 0 || capacity == 0 {
            return;
        }
        let p = (base + AddrTable::<Live>::home_offset(addr, capacity)) as *const i8;
        // SAFETY: a prefetch is a hint: it never faults and changes nothing
        // a program can see, whatever the address.
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// The shard of the block at `addr`: the top bits of a Fibonacci hash of
/// its 4 KiB page's number, so that a page's blocks share a shard
/// (`AddrTable` places them side by side, and spreads pages by lower bits
/// of the same product).
fn shard_index(addr: usize) -> usize {
    let h = (addr as u64 >> 12).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 59) as usize % SHARDS
}

fn shard(addr: usize) -> &'static SpinLock<Shard> {
    &SHARD_LOCKS[shard_index(addr)].0
}

/// Inserts `live` for `addr` into its shard's table (the record it
/// replaces, or the table's refusal), then keeps where that table lies for
/// `prefetch`: an insert may have grown it.
fn shard_insert(addr: usize, live: Live) -> Result<Option<Live>, NoMemory> {
    let l = &SHARD_LOCKS[shard_index(addr)];
    let mut s = l.0.lock();
    let result = s.table.insert(addr, live);
    let (base, capacity) = s.table.layout();
    if l.2.load(Ordering::Relaxed) != capacity {
        l.1.store(base, Ordering::Relaxed);
        l.2.store(capacity, Ordering::Relaxed);
    }
    result
}

/// The counters: every site's (`SiteCounts`, in the site table) and the
/// totals, under one lock of their own, `COUNTS`, held for a few additions.
struct Counts {
    totals: Totals,
    peak_epoch: u64,
    ring: FreedRing,
}

static COUNTS: SpinLock<Counts> = SpinLock::new(Counts {
    totals: Totals {
        total_bytes: 0.0,
        total_blocks: 0.0,
        live_bytes: 0.0,
        live_blocks: 0.0,
        peak_bytes: 0.0,
        peak_blocks: 0.0,
        peak_at: 0,
        dropped: 0,
    },
    peak_epoch: 0,
    ring: FreedRing {
        entries: core::ptr::null_mut(),
        next: 0,
    },
});

/// Makes sites (taken only to add one: lookups take no lock).
static SITE_LOCK: SpinLock<()> = SpinLock::new(());

/// The site index: `INDEX_LEN` words, each 0 (empty) or a site's hash's
/// high half and its index plus one; open addressing, linear probes, never
/// removed from, at most half full. Readers look sites up without a lock
/// (a word, once set, never changes, and is set after its site's frames);
/// writers hold `SITE_LOCK`. A sparse mapping (pages cost nothing until
/// touched), made with site 0.
static INDEX: AtomicPtr<AtomicU64> = AtomicPtr::new(core::ptr::null_mut());
const INDEX_LEN: usize = 2 * MAX_SITES;

/// The site table's chunks (written under `SITE_LOCK`, read by anyone once
/// published by `SITES`).
static CHUNKS: [AtomicPtr<SiteSlot>; MAX_CHUNKS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CHUNKS];
/// Sites made so far (release: their frames are written).
static SITES: AtomicU32 = AtomicU32::new(0);
/// When the registry started (the first record), in ticks and in
/// nanoseconds: times count from it.
static START_TICKS: AtomicU64 = AtomicU64::new(0);
static START_NS: AtomicU64 = AtomicU64::new(0);

fn chunk_bytes() -> usize {
    (CHUNK_SITES * core::mem::size_of::<SiteSlot>()).next_multiple_of(PAGE_SIZE)
}

fn slot(index: u32) -> &'static SiteSlot {
    let (c, i) = (index as usize / CHUNK_SITES, index as usize % CHUNK_SITES);
    let chunk = CHUNKS[c].load(Ordering::Acquire);
    debug_assert!(!chunk.is_null());
    // SAFETY: sites below `SITES` lie in published chunks, which are never
    // unmapped.
    unsafe { &*chunk.add(i) }
}

/// The frames of site `index` (below `site_count()`).
pub(crate) fn site_frames(index: u32) -> &'static SiteFrames {
    &slot(index).frames
}

/// Sites made so far.
pub(crate) fn site_count() -> u32 {
    SITES.load(Ordering::Acquire)
}

/// Word `i` (below `INDEX_LEN`) of the site index at `index`.
fn index_word(index: *mut AtomicU64, i: usize) -> &'static AtomicU64 {
    debug_assert!(i < INDEX_LEN);
    // SAFETY: `index` is the published mapping of `INDEX_LEN` words, never
    // unmapped; zeroed memory reads as empty words.
    unsafe { &*index.add(i) }
}

/// The site of `frames` in the index, if it is there.
fn find_site(index: *mut AtomicU64, hash: u64, frames: &[usize], startup: bool) -> Option<u32> {
    let tag = hash >> 32;
    let mut i = hash as usize & (INDEX_LEN - 1);
    loop {
        let w = index_word(index, i).load(Ordering::Acquire);
        if w == 0 {
            return None;
        }
        if w >> 32 == tag {
            let site = (w as u32).wrapping_sub(1);
            let f = &slot(site).frames;
            if f.frames() == frames && f.startup == startup {
                return Some(site);
            }
        }
        i = (i + 1) & (INDEX_LEN - 1);
    }
}

/// The site of `frames` (made while starting up or not), made if new;
/// site 0 (no stack) when the table is full or memory runs out. A site
/// seen before is found without a lock.
fn site_for(frames: &[usize], startup: bool) -> u32 {
    let hash = hash_frames(frames, startup);
    let index = INDEX.load(Ordering::Acquire);
    if !index.is_null() {
        if let Some(site) = find_site(index, hash, frames, startup) {
            return site;
        }
    }
    make_site_for(frames, startup, hash)
}

#[cold]
#[inline(never)]
fn make_site_for(frames: &[usize], startup: bool, hash: u64) -> u32 {
    let _held = SITE_LOCK.lock();
    let mut index = INDEX.load(Ordering::Acquire);
    if index.is_null() {
        index = memory::map(INDEX_LEN * 8, Charge::Sparse).cast::<AtomicU64>();
        if index.is_null() {
            return 0;
        }
        INDEX.store(index, Ordering::Release);
    }
    if SITES.load(Ordering::Relaxed) == 0 && make_site(&[], false, 0).is_none() {
        return 0;
    }
    // Made by another thread since the look without the lock?
    if let Some(site) = find_site(index, hash, frames, startup) {
        return site;
    }
    let Some(site) = make_site(frames, startup, hash) else {
        return 0;
    };
    // The index is at most half full (`MAX_SITES` sites): an empty word
    // comes.
    let mut i = hash as usize & (INDEX_LEN - 1);
    while index_word(index, i).load(Ordering::Relaxed) != 0 {
        i = (i + 1) & (INDEX_LEN - 1);
    }
    index_word(index, i).store((hash >> 32) << 32 | (site as u64 + 1), Ordering::Release);
    site
}

/// Makes a site (the caller holds `SITE_LOCK`).
fn make_site(frames: &[usize], startup: bool, hash: u64) -> Option<u32> {
    let index = SITES.load(Ordering::Relaxed);
    if index as usize >= MAX_SITES {
        return None;
    }
    let c = index as usize / CHUNK_SITES;
    if CHUNKS[c].load(Ordering::Relaxed).is_null() {
        let chunk = memory::map(chunk_bytes(), Charge::Accounted);
        if chunk.is_null() {
            return None;
        }
        CHUNKS[c].store(chunk.cast(), Ordering::Release);
    }
    let base = CHUNKS[c].load(Ordering::Relaxed);
    // SAFETY: a slot of a chunk of ours, past every published site:
    // nobody reads it before `SITES` (or the index) covers it, and only
    // `SITE_LOCK`'s holder writes it.
    let s = unsafe { &mut *base.add(index as usize % CHUNK_SITES) };
    s.frames.hash = hash;
    s.frames.len = frames.len().min(FRAMES) as u32;
    s.frames.startup = startup;
    s.frames.frames[..frames.len().min(FRAMES)]
        .copy_from_slice(&frames[..frames.len().min(FRAMES)]);
    SITES.store(index + 1, Ordering::Release);
    Some(index)
}

impl Counts {
    /// The counters of site `index`. The caller holds `COUNTS` (`&mut
    /// self`).
    #[allow(clippy::mut_from_ref)]
    fn counts(&mut self, index: u32) -> &mut SiteCounts {
        // SAFETY: counters are only touched under `COUNTS`, which `&mut
        // self` proves held.
        unsafe { &mut *slot(index).counts.get() }
    }

    /// Keeps a site's counters at the current peak before they change
    /// (see the module docs).
    fn save_peak(&mut self, site: u32) {
        let epoch = self.peak_epoch;
        let c = self.counts(site);
        if c.peak_epoch != epoch {
            c.peak_bytes = c.live_bytes;
            c.peak_blocks = c.live_blocks;
            c.peak_epoch = epoch;
        }
    }

    fn account_alloc(&mut self, live: &Live, now: u64) {
        let w = live.weight as f64;
        let bytes = w * live.size as f64;
        self.save_peak(live.site);
        let c = self.counts(live.site);
        c.total_bytes += bytes;
        c.total_blocks += w;
        c.live_bytes += bytes;
        c.live_blocks += w;
        if c.live_bytes > c.max_bytes {
            c.max_bytes = c.live_bytes;
            c.max_blocks = c.live_blocks;
        }
        let t = &mut self.totals;
        t.total_bytes += bytes;
        t.total_blocks += w;
        t.live_bytes += bytes;
        t.live_blocks += w;
        if t.live_bytes >= t.peak_bytes {
            t.peak_bytes = t.live_bytes;
            t.peak_blocks = t.live_blocks;
            t.peak_at = now;
            // Every site's counters are at the peak now.
            self.peak_epoch += 1;
        }
    }

    fn account_free(&mut self, live: &Live, now: u64) {
        let w = live.weight as f64;
        let bytes = w * live.size as f64;
        self.save_peak(live.site);
        let c = self.counts(live.site);
        c.live_bytes -= bytes;
        c.live_blocks -= w;
        c.freed_blocks += w;
        c.freed_lifetime += w * now.saturating_sub(live.born) as f64;
        self.totals.live_bytes -= bytes;
        self.totals.live_blocks -= w;
    }

    /// Undoes `account_free` (a free that failed after its block was taken
    /// out); the peak it may have passed is kept.
    fn unaccount_free(&mut self, live: &Live, now: u64) {
        let w = live.weight as f64;
        let bytes = w * live.size as f64;
        let c = self.counts(live.site);
        c.live_bytes += bytes;
        c.live_blocks += w;
        c.freed_blocks -= w;
        c.freed_lifetime -= w * now.saturating_sub(live.born) as f64;
        self.totals.live_bytes += bytes;
        self.totals.live_blocks += w;
    }
}

impl FreedRing {
    /// Remembers the block at `addr`, just taken out as it was freed:
    /// the newest entry of the ring, over the oldest. Nothing is
    /// remembered when memory runs out.
    fn remember(&mut self, addr: usize, freed: Freed) {
        if self.entries.is_null() {
            let Some(rings) = rings() else {
                return;
            };
            self.entries = rings;
        }
        let place = (self.next % RING_KEPT as u64) as usize;
        self.next += 1;
        // SAFETY: `place` is below RING_KEPT, the ring's length.
        unsafe { self.entries.add(place).write(FreedEntry { addr, freed }) };
    }

    /// The newest free remembered of the block at `addr`.
    fn remembered(&self, addr: usize) -> Option<Freed> {
        if self.entries.is_null() {
            return None;
        }
        let held = self.next.min(RING_KEPT as u64);
        (1..=held).find_map(|back| {
            let place = ((self.next - back) % RING_KEPT as u64) as usize;
            // SAFETY: below RING_KEPT, and written (one of the last
            // `held` frees).
            let e = unsafe { &*self.entries.add(place) };
            (e.addr == addr).then_some(e.freed)
        })
    }
}

/// The rings' mapping (made by the first caller; `None` when memory runs
/// out).
fn rings() -> Option<*mut FreedEntry> {
    let p = RINGS.load(Ordering::Acquire);
    if !p.is_null() {
        return Some(p);
    }
    let bytes = (FREED_KEPT * core::mem::size_of::<FreedEntry>()).next_multiple_of(PAGE_SIZE);
    let fresh = memory::map(bytes, Charge::Accounted).cast::<FreedEntry>();
    if fresh.is_null() {
        return None;
    }
    match RINGS.compare_exchange(
        core::ptr::null_mut(),
        fresh,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => Some(fresh),
        Err(theirs) => {
            memory::unmap(fresh.cast(), bytes);
            Some(theirs)
        }
    }
}

/// A multiplier per frame of a stack (odd, from splitmix64).
const FRAME_KEYS: [u64; FRAMES] = {
    let mut keys = [0u64; FRAMES];
    let mut i = 0;
    while i < FRAMES {
        let mut z = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        keys[i] = (z ^ (z >> 31)) | 1;
        i += 1;
    }
    keys
};

/// A stack's hash: each frame times a multiplier of its own, summed (the
/// products are independent, so the processor works them out side by
/// side: a chained hash waits for each step), then mixed (murmur3's
/// finaliser). Equal hashes are checked frame by frame.
fn hash_frames(frames: &[usize], startup: bool) -> u64 {
    let mut h = 0xCBF2_9CE4_8422_2325u64 ^ startup as u64 ^ (frames.len() as u64) << 8;
    for (&f, k) in frames.iter().zip(FRAME_KEYS) {
        h = h.wrapping_add((f as u64).wrapping_mul(k));
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^= h >> 33;
    h | 1
}

/// Ticks (`os::clock::ticks`) since the registry started; `ns_per_tick` turns
/// them into nanoseconds.
pub(crate) fn now() -> u64 {
    let now = clock::ticks();
    if START_TICKS.load(Ordering::Relaxed) == 0 {
        start_clock();
    }
    now.saturating_sub(START_TICKS.load(Ordering::Relaxed))
}

/// Marks the registry's time 0 (at start-up, before any record).
pub(crate) fn start_clock() {
    if START_TICKS.load(Ordering::Relaxed) != 0 {
        return;
    }
    let (ticks, ns) = (clock::ticks(), clock::now_ns());
    if START_TICKS
        .compare_exchange(0, ticks.max(1), Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
    {
        START_NS.store(ns, Ordering::Relaxed);
    }
}

/// Nanoseconds per tick, measured over the registry's life so far (1 when
/// ticks are nanoseconds already, or too little time has passed).
pub(crate) fn ns_per_tick() -> f64 {
    let (t0, n0) = (
        START_TICKS.load(Ordering::Relaxed),
        START_NS.load(Ordering::Relaxed),
    );
    let (t1, n1) = (clock::ticks(), clock::now_ns());
    if t0 == 0 || t1 <= t0 || n1 <= n0 + 1_000_000 {
        return if cfg!(target_arch = "x86_64") {
            // Too short to measure: about a tick per 0.4 ns on today's
            // x86_64 (2.5 GHz), close enough for a profile of a few ms.
            0.4
        } else {
            1.0
        };
    }
    (n1 - n0) as f64 / (t1 - t0) as f64
}

/// Records the live block at `addr` of `size` bytes requested, allocated
/// from `frames` (while starting up or not) on `thread`, standing for
/// `weight` blocks. A block already recorded at `addr` (freed where the
/// registry did not see it) is retired first, and a freed block remembered
/// there is forgotten (the address is a new block's now).
pub(crate) fn record(
    addr: usize,
    size: usize,
    weight: f64,
    frames: &[usize],
    startup: bool,
    thread: u32,
) {
    let now = now();
    let site = site_for(frames, startup);
    let live = Live {
        site,
        thread,
        size,
        born: now,
        weight: weight as f32,
    };
    let old = shard_insert(addr, live);
    let mut c = COUNTS.lock();
    match old {
        Err(_) => c.totals.dropped += 1,
        Ok(old) => {
            if let Some(old) = old {
                c.account_free(&old, now);
            }
            c.account_alloc(&live, now);
        }
    }
}

/// Takes the block at `addr` out of the registry as it is freed (before
/// the free: once freed, its address may be handed out again at once), and
/// counts it freed. `None` when it was not recorded.
pub(crate) fn take(addr: usize) -> Option<Live> {
    let now = now();
    let live = shard(addr).lock().table.remove(addr)?;
    COUNTS.lock().account_free(&live, now);
    Some(live)
}

/// `take`, at the `strict` level: the block is remembered as freed, from
/// `frames` on `thread` (see `Freed`).
pub(crate) fn take_remembering(addr: usize, frames: &[usize], thread: u32) -> Option<Live> {
    let now = now();
    let free_site = site_for(frames, false);
    let live = shard(addr).lock().table.remove(addr)?;
    let freed = Freed {
        live,
        free_site,
        free_thread: thread,
        freed_at: now,
    };
    let mut c = COUNTS.lock();
    c.account_free(&live, now);
    c.ring.remember(addr, freed);
    Some(live)
}

/// Puts back a block that `take` took out and that turned out not to be
/// freed (the free failed); a free remembered for it is forgotten.
pub(crate) fn put_back(addr: usize, live: Live) {
    let now = now();
    let inserted = shard_insert(addr, live);
    let mut c = COUNTS.lock();
    c.unaccount_free(&live, now);
    if inserted.is_err() {
        c.totals.dropped += 1;
    }
}

/// The recorded block at `addr` now holds `size` bytes (realloc kept it in
/// place): its site's live bytes follow, its total bytes grow by what it
/// grew; it stays one block. False when it is not recorded.
pub(crate) fn resize(addr: usize, size: usize) -> bool {
    let now = now();
    let live = {
        let mut s = shard(addr).lock();
        let Some(r) = s.table.get_mut(addr) else {
            return false;
        };
        let live = *r;
        r.size = size;
        live
    };
    let delta = live.weight as f64 * (size as f64 - live.size as f64);
    let mut r = COUNTS.lock();
    r.save_peak(live.site);
    let c = r.counts(live.site);
    c.live_bytes += delta;
    if delta > 0.0 {
        c.total_bytes += delta;
    }
    if c.live_bytes > c.max_bytes {
        c.max_bytes = c.live_bytes;
        c.max_blocks = c.live_blocks;
    }
    let t = &mut r.totals;
    t.live_bytes += delta;
    if delta > 0.0 {
        t.total_bytes += delta;
    }
    if t.live_bytes >= t.peak_bytes {
        t.peak_bytes = t.live_bytes;
        t.peak_blocks = t.live_blocks;
        t.peak_at = now;
        r.peak_epoch += 1;
    }
    true
}

/// The sites of the recorded blocks at `addresses` (`None` for a block
/// not recorded).
pub(crate) fn sites_of(addresses: &[usize], out: &mut [Option<u32>]) {
    for (a, o) in addresses.iter().zip(out) {
        *o = shard(*a).lock().table.get(*a).map(|l| l.site);
    }
}

/// What the registry knows of the block at `addr`, for a diagnostic: its
/// record if it is live, else what is remembered of its free (`strict`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum History {
    Live(Live),
    Freed(Freed),
}

/// The block at `addr`'s `History`, if the registry has one. Waits for the
/// lock a bounded time only (a diagnostic may come from a fault handler
/// that interrupted its holder): `None` then.
pub(crate) fn history(addr: usize) -> Option<History> {
    if let Some(live) = shard(addr).try_lock_for_ms(100)?.table.get(addr) {
        return Some(History::Live(live));
    }
    COUNTS
        .try_lock_for_ms(100)?
        .ring
        .remembered(addr)
        .map(History::Freed)
}

/// A site's figures as a profile reports them: everything in
/// `SiteCounts`, the counters at the peak resolved, and the lifetimes of
/// the blocks still live (up to the end) added to the total lifetime.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SiteReport {
    pub(crate) counts: SiteCounts,
    pub(crate) peak_bytes: f64,
    pub(crate) peak_blocks: f64,
    /// Freed blocks' lifetimes plus the live blocks' so far.
    pub(crate) total_lifetime: f64,
}

/// Calls `each` with every site's index, frames and report, in index order,
/// then returns the totals and the time now (in ticks). Takes each shard's
/// lock in turn (the live blocks' lifetimes), then holds the counters'
/// lock throughout (recording threads wait): for the reports written at
/// exit and on demand. `each` must not allocate or call into cma.
pub(crate) fn for_each_site(mut each: impl FnMut(u32, &SiteFrames, &SiteReport)) -> (Totals, u64) {
    let end = now();
    let n = SITES.load(Ordering::Acquire);
    // The live blocks' lifetimes, per site, one shard at a time.
    let mut live_lifetimes = LiveLifetimes::new(n);
    for l in &SHARD_LOCKS {
        l.0.lock().table.for_each(|_, l| {
            live_lifetimes.add(l.site, l.weight as f64 * end.saturating_sub(l.born) as f64)
        });
    }
    let mut r = COUNTS.lock();
    let epoch = r.peak_epoch;
    for i in 0..n {
        let c = *r.counts(i);
        let (peak_bytes, peak_blocks) = if c.peak_epoch == epoch {
            (c.peak_bytes, c.peak_blocks)
        } else {
            (c.live_bytes, c.live_blocks)
        };
        let report = SiteReport {
            counts: c,
            peak_bytes,
            peak_blocks,
            total_lifetime: c.freed_lifetime + live_lifetimes.get(i),
        };
        each(i, &slot(i).frames, &report);
    }
    (r.totals, end)
}

/// The live blocks' lifetimes per site, in memory of its own (a mapping
/// freed when done).
struct LiveLifetimes {
    sums: *mut f64,
    len: usize,
}

impl LiveLifetimes {
    fn new(sites: u32) -> LiveLifetimes {
        let len = sites as usize;
        let bytes = (len * 8).next_multiple_of(PAGE_SIZE).max(PAGE_SIZE);
        let sums = memory::map(bytes, Charge::Accounted).cast::<f64>();
        LiveLifetimes {
            sums,
            len: if sums.is_null() { 0 } else { len },
        }
    }

    fn add(&mut self, site: u32, ticks: f64) {
        if (site as usize) < self.len {
            // SAFETY: below `len`, inside the mapping (zeroed: 0.0).
            unsafe { *self.sums.add(site as usize) += ticks };
        }
    }

    fn get(&self, site: u32) -> f64 {
        if (site as usize) < self.len {
            // SAFETY: as in `add`.
            unsafe { *self.sums.add(site as usize) }
        } else {
            0.0
        }
    }
}

impl Drop for LiveLifetimes {
    fn drop(&mut self) {
        if !self.sums.is_null() {
            let bytes = (self.len * 8).next_multiple_of(PAGE_SIZE).max(PAGE_SIZE);
            memory::unmap(self.sums.cast(), bytes);
        }
    }
}

/// Takes the locks before `fork` (see `api::init`).
pub(crate) fn lock_for_fork() {
    SITE_LOCK.lock_for_fork();
    for l in &SHARD_LOCKS {
        l.0.lock_for_fork();
    }
    COUNTS.lock_for_fork();
}

/// Releases what `lock_for_fork` took.
///
/// # Safety
/// Only after `lock_for_fork`, on the thread that forked.
pub(crate) unsafe fn unlock_after_fork() {
    // SAFETY: the caller's contract: this thread took every lock.
    unsafe {
        COUNTS.force_unlock();
        for l in &SHARD_LOCKS {
            l.0.force_unlock();
        }
        SITE_LOCK.force_unlock();
    }
}
