//! A heap's share of heap profiling (`track::sampling`, `profile=` in
//! `CMA_OPTIONS`): the byte countdown to its next sample, advanced as
//! refills load caches and as large blocks are made, never on a fast path
//! (`count_toward_profile`, `count_large`); the sampled small block, served
//! from whole pages (`take_profiled`); and the hooks the entry points call
//! to record a block, and to take it out of the registry as it is freed or
//! resized (`record`, `recorded_alloc`, `freeing`, `free_failed`,
//! `resized`).

use super::alloc::lowest_bits;
use super::guard::{begin_capture, end_capture, thread_id};
use super::Heap;
use crate::check::level;
use crate::check::lookup::{self, Found};
use crate::check::trailer;
use crate::os::backtrace;
use crate::slab::size_class::SizeClass;
use crate::track::registry::{self, FRAMES};
use crate::track::sampling::{self, starting_up, ProfileMode, NEVER};

/// Return addresses kept of a free's stack at the `strict` level: half an
/// allocation stack's `FRAMES`. The innermost frames (cma's own, then the
/// caller of `free` and about ten of its callers) name the free; deeper
/// ones seldom add to it, and each frame costs a step of the walk at every
/// free.
pub(crate) const FREE_FRAMES: usize = 16;

/// Takes the calling thread's stack into `frames`, leaving out `skip`
/// frames above the caller; none when the thread is taking one already
/// (the unwinder allocating: see `guard::begin_capture`).
#[inline(never)]
fn capture(frames: &mut [usize], skip: usize) -> usize {
    if !begin_capture() {
        return 0;
    }
    let len = backtrace::capture(frames, skip + 1);
    end_capture();
    len
}

/// Records a block of `size` bytes at `p` with its caller's stack, weighed
/// `weight` (the caller holds a guard).
#[cold]
#[inline(never)]
pub(crate) fn record(p: *mut u8, size: usize, weight: f64) {
    registry::prefetch(p as usize);
    let mut frames = [0usize; FRAMES];
    let len = capture(&mut frames, 1);
    registry::record(
        p as usize,
        size,
        weight,
        &frames[..len],
        starting_up(),
        thread_id(),
    );
}

/// At `profile=all`: records a block just allocated (the caller holds a
/// guard).
#[inline]
pub(crate) fn recorded_alloc(p: *mut u8, size: usize) {
    if sampling::mode() == ProfileMode::All && !p.is_null() {
        record(p, size, 1.0);
    }
}

/// A block is about to be freed: takes it out of the registry, when it is
/// there (`large`: a large, huge or sampled block, which `profile=sample`
/// may have recorded; every block may be at `profile=all`); at the
/// `strict` level, with the stack of this free, remembered for later
/// diagnostics. Give the result to `free_failed` if the free fails.
#[inline]
pub(crate) fn freeing(addr: usize, large: bool) -> Option<registry::Live> {
    match sampling::mode() {
        ProfileMode::Off => None,
        ProfileMode::Sample if !large => None,
        _ if level::strict() => freeing_remembered(addr),
        _ => registry::take(addr),
    }
}

/// `freeing` at the `strict` level: the stack is taken before the block
/// is looked up (the shard's lock is held for the table update alone),
/// while the block's table entry is fetched (`registry::prefetch`).
/// A free of a block not recorded (a double free) changes nothing, so the
/// first free stays remembered.
#[cold]
#[inline(never)]
fn freeing_remembered(addr: usize) -> Option<registry::Live> {
    registry::prefetch(addr);
    let mut frames = [0usize; FREE_FRAMES];
    let len = capture(&mut frames, 1);
    registry::take_remembering(addr, &frames[..len], thread_id())
}

/// The free that `freeing` prepared failed: the block is still live.
#[cold]
pub(crate) fn free_failed(addr: usize, taken: Option<registry::Live>) {
    if let Some(live) = taken {
        registry::put_back(addr, live);
    }
}

/// A block was resized in place (`from == to`) or moved without a copy
/// by realloc (a huge block's pages, `from` to `to`), and now holds `size`
/// bytes. In place it stays one block (as the statistics count it); moved,
/// it is freed and allocated again (as they count that too), from the
/// realloc's stack at `profile=all`, with the site and the weight it had at
/// `profile=sample`.
#[cold]
#[inline(never)]
pub(crate) fn resized(from: usize, to: usize, size: usize) {
    if !sampling::on() {
        return;
    }
    if from == to {
        if !registry::resize(from, size) && sampling::mode() == ProfileMode::All {
            record(to as *mut u8, size, 1.0);
        }
        return;
    }
    let Some(old) = registry::take(from) else {
        if sampling::mode() == ProfileMode::All {
            record(to as *mut u8, size, 1.0);
        }
        return;
    };
    if sampling::mode() == ProfileMode::All {
        record(to as *mut u8, size, 1.0);
        return;
    }
    let f = registry::site_frames(old.site);
    registry::record(
        to,
        size,
        old.weight as f64,
        f.frames(),
        f.startup(),
        old.thread,
    );
}

impl Heap {
    /// Draws the bytes until this heap's next sample (`NEVER` unless
    /// `profile=sample`).
    pub(super) fn draw_profile_countdown(&self) {
        self.profile_left
            .set(sampling::next_countdown(&self.profile_state));
    }

    /// The slots of a cache load of `class` (`free`, a bitmap word's slots)
    /// count toward the next sample, by their block size. When the sample
    /// falls among them, only the slots before it are loaded (at least the
    /// one the refill hands out) and the class is marked due: its next
    /// refill, the allocation the countdown reached, is sampled.
    #[inline]
    pub(super) fn count_toward_profile(
        &self,
        class: SizeClass,
        free: u64,
        count: u32,
    ) -> (u64, u32) {
        let left = self.profile_left.get();
        if left == NEVER {
            return (free, count);
        }
        let bs = class.block_size() as u64;
        let loaded = count as u64 * bs;
        if left > loaded {
            self.profile_left.set(left - loaded);
            return (free, count);
        }
        self.profile_due
            .set(self.profile_due.get() | 1u128 << class.index());
        self.draw_profile_countdown();
        // The slot the sample point fell in is the k-th of the load.
        let k = left.div_ceil(bs.max(1));
        let kept = lowest_bits(free, k.saturating_sub(1).max(1) as u32);
        (kept, kept.count_ones())
    }

    /// Whether this heap's next allocation of `class` is to be sampled for
    /// the profile: asked when the class's cache is dry.
    #[inline(always)]
    pub(crate) fn profile_due(&self, class: SizeClass) -> bool {
        self.profile_due.get() >> class.index() & 1 != 0
    }

    /// Serves the sampled allocation of `class` that is due
    /// (`profile_due`), `size` bytes at `align` (at most 16), from whole
    /// pages, zeroed at a checked level (as its slots read, and its
    /// `calloc` relies on) and armed, and records it. `None` when memory
    /// runs out (the caller serves a slot instead). The caller holds a
    /// guard.
    #[cold]
    #[inline(never)]
    pub(crate) fn take_profiled(
        &self,
        class: SizeClass,
        size: usize,
        align: usize,
    ) -> Option<*mut u8> {
        self.profile_due
            .set(self.profile_due.get() & !(1u128 << class.index()));
        let trailer = level::trailer_bytes();
        let p = self.alloc_large(size + trailer, align, false);
        if p.is_null() {
            return None;
        }
        if let Ok(Found::Large(span)) = lookup::find_block(p as usize) {
            if level::checked() && !span.zeroed.get() {
                // A checked level's slots read as zero (and its `calloc`
                // relies on it): so does this block, as far as a slot of
                // the class would reach. At `fast` nothing reads it first
                // (`calloc` clears what it asked for).
                let n = class.block_size().max(size + trailer).min(span.bytes());
                // SAFETY: a live block of `span.bytes()` bytes of this
                // thread's making.
                unsafe { core::ptr::write_bytes(p, 0, n) };
            }
            if trailer != 0 {
                // SAFETY: as above; size + TRAILER <= its bytes.
                unsafe { trailer::arm(p, span.bytes(), size) };
            }
        }
        record(p, size, sampling::weight(class.block_size()));
        Some(p)
    }

    /// A large or huge block of `size` bytes at `p` was just made: its
    /// bytes count toward this heap's next sample, and it is recorded when
    /// the sample falls among them.
    #[inline]
    pub(crate) fn count_large(&self, p: *mut u8, size: usize) {
        let left = self.profile_left.get();
        if left == NEVER || p.is_null() {
            return;
        }
        if left > size as u64 {
            self.profile_left.set(left - size as u64);
            return;
        }
        self.draw_profile_countdown();
        record(p, size, sampling::weight(size));
    }
}
