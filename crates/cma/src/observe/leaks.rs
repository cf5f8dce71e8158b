//! The original system's leak API, in every build: a summary of the blocks
//! still live (`leak_summary`), the blocks themselves (`leak_entries`,
//! `leaks`), a report on stderr (`report_leaks`), and blocks left out of
//! all three on purpose (`untrack_leak`, `track_leak`).
//!
//! None of it needs the live-allocation registry: the summary comes from
//! the counters, and the blocks from a walk over the page allocator's spans
//! (`pages::walk`) that reads each slab's bitmaps, out of line as all
//! metadata is: a slot is live while its allocated bit is set and no other
//! thread's free of it is pending (a quarantined slot's allocated bit is
//! clear already; a slot in a thread's allocation cache shows free until
//! it is handed out). Large and huge blocks and sampled blocks are live
//! while their spans and slots are. The walk holds the page lock while it
//! reads a chunk of blocks and never while it calls back into a caller, so
//! a caller may allocate in between.
//!
//! Untracked ("ignored") blocks are kept in a set of addresses of their
//! own (`track::ignored`), which the free fast paths never look at and the
//! paths that hand an address out again keep up to date. An ignored block
//! that was freed and not handed out again is dropped when the set is read
//! here (it is not live). Lock order: the page lock, then `IGNORED`.
//!
//! Sizes: a block's size is what `block_size` answers (the size asked for
//! at the checked level, the usable size at `fast`); the summary's bytes
//! are the statistics' (usable sizes: a slot's class size, whole pages for
//! a large block), so that live and ignored bytes add up to
//! `bytes_in_use`.

use core::fmt::Write;
use core::ops::ControlFlow;
use core::sync::atomic::Ordering;

use super::stats::stats;
use crate::check::error::CmaError;
use crate::check::level;
use crate::check::lookup::{self, slot_error, Found};
use crate::check::trailer::{self, TRAILER};
use crate::guarded::{self, zero};
use crate::heap::guard::AllocatorGuard;
use crate::meta::span::{Span, SpanKind};
use crate::os::process;
use crate::pages::PAGES;
use crate::slab::size_class::class_block_sizes;
use crate::slab::slot::{slot_state, SlotState};
use crate::track::ignored::{self, IGNORED};
use crate::track::{registry, sampling};
use crate::util::addr_table::AddrTable;
use crate::util::fd_writer::FdWriter;

/// Live blocks and bytes, apart from the ignored ones, and the ignored
/// ones (the original's `cma_leak_summary`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeakSummary {
    /// Blocks allocated, not freed and not ignored.
    pub live_blocks: u64,
    /// Their bytes, as the statistics count them (usable sizes).
    pub live_bytes: u64,
    /// Live blocks left out of leak reports (`untrack_leak`).
    pub ignored_blocks: u64,
    /// Their bytes, counted the same way.
    pub ignored_bytes: u64,
}

/// One live block (the original's `cma_leak_entry`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeakEntry {
    /// The block's address.
    pub address: usize,
    /// Its size, as [`block_size`](crate::block_size) answers.
    pub size: usize,
    /// Where it was allocated, when the live-allocation registry recorded
    /// it (`profile=all`: every block; `profile=sample`: the sampled ones).
    /// Only [`leaks`] looks it up.
    pub site: Option<Site>,
}

/// An allocation site the registry recorded: a stack of return addresses
/// (innermost first, cma's own frames included; `cma run` and
/// [`Profile`](crate::Profile) symbolise them). Sites are never forgotten,
/// so the stack can be borrowed for the rest of the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Site(pub(crate) u32);

impl Site {
    /// The stack, as return addresses, innermost first.
    pub fn frames(&self) -> &'static [usize] {
        registry::site_frames(self.0).frames()
    }

    /// Whether its blocks were allocated while the process started up
    /// (before the engine's constructor ran).
    pub fn startup(&self) -> bool {
        registry::site_frames(self.0).startup()
    }
}

/// A live block: its address and its size as `block_size` answers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LiveBlock {
    pub(crate) address: usize,
    pub(crate) size: usize,
}

/// The live block that starts at `addr` (the slab it lies in, for a slot),
/// or why there is none. Reads no block memory.
fn live_block(addr: usize) -> Result<(usize, Option<usize>), CmaError> {
    match lookup::find_block(addr)? {
        Found::Slot { span, index } => match slot_state(span, index) {
            SlotState::Allocated { .. } => Ok((span.slot_size(), Some(span.start()))),
            state => Err(slot_error(span, index, state)),
        },
        Found::Large(span) => Ok((span.bytes(), None)),
        Found::Sampled(slot) => Ok((slot.size(), None)),
        // Counted in the smallest class (`observe::stats`).
        Found::Zero(_) => Ok((class_block_sizes()[0], None)),
    }
}

/// Leaves the live block at `p` out of leak summaries' live counts (it is
/// counted as ignored), leak entries and reports, until `track_leak(p)` or
/// until it is freed. The error says why `p` is not a live block.
pub fn untrack_leak(p: *const u8) -> Result<(), CmaError> {
    let _guard = AllocatorGuard::enter();
    let (_, slab) = live_block(p as usize)?;
    let mut set = IGNORED.lock();
    set.insert(p as usize, ())
        .map_err(|_| CmaError::OutOfMemory { size: 0 })?;
    match slab {
        Some(start) => ignored::mark_slab(start),
        None => ignored::mark_not_empty(),
    }
    Ok(())
}

/// Counts the block at `p` in leak summaries, entries and reports again
/// (after `untrack_leak`). `Ok` for a live block that was not ignored; the
/// error says why `p` is not a live block.
pub fn track_leak(p: *const u8) -> Result<(), CmaError> {
    let _guard = AllocatorGuard::enter();
    if ignored::ignoring() {
        let mut set = IGNORED.lock();
        if set.remove(p as usize).is_some() {
            ignored::forget_filter_if_empty(&set);
            return Ok(());
        }
    }
    live_block(p as usize).map(|_| ())
}

/// Drops the ignored addresses that hold no live block any more, and
/// returns the ignored blocks and their bytes (as the statistics count
/// them).
fn ignored_totals() -> (u64, u64) {
    if !ignored::ignoring() {
        return (0, 0);
    }
    let mut set = IGNORED.lock();
    set.retain(|addr, _| live_block(addr).is_ok());
    let (mut blocks, mut bytes) = (0u64, 0u64);
    set.for_each(|addr, _| {
        if let Ok((counted, _)) = live_block(addr) {
            blocks += 1;
            bytes += counted as u64;
        }
    });
    ignored::forget_filter_if_empty(&set);
    (blocks, bytes)
}

/// The leak summary: live blocks and bytes from the counters (no walk),
/// less the ignored ones.
pub fn leak_summary() -> LeakSummary {
    let s = stats();
    let _guard = AllocatorGuard::enter();
    let (ignored_blocks, ignored_bytes) = ignored_totals();
    let live = s.allocations.saturating_sub(s.frees);
    LeakSummary {
        live_blocks: live.saturating_sub(ignored_blocks),
        live_bytes: s.bytes_in_use.saturating_sub(ignored_bytes),
        ignored_blocks,
        ignored_bytes,
    }
}

/// Where a walk over the live blocks stands: it goes on with the blocks at
/// `from` and above, of the page allocator first, then of the sampled
/// pool, then of the zero-byte pool.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cursor {
    phase: Phase,
    from: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Pages,
    Sampled,
    ZeroByte,
    Done,
}

impl Cursor {
    pub(crate) const fn start() -> Cursor {
        Cursor {
            phase: Phase::Pages,
            from: 0,
        }
    }

    pub(crate) fn done(&self) -> bool {
        self.phase == Phase::Done
    }
}

/// Calls `visit` with every live block that is not ignored, from `cursor`
/// on, in address order (the page allocator's blocks, then the sampled
/// pool's), until it breaks; `cursor` then names the block after the last
/// one visited. `visit` runs under the page lock: it must not allocate or
/// call into cma (it may write into memory that is not cma's to give).
pub(crate) fn walk_live(cursor: &mut Cursor, mut visit: impl FnMut(LiveBlock) -> ControlFlow<()>) {
    let _guard = AllocatorGuard::enter();
    let checked = level::checked();
    if cursor.phase == Phase::Pages {
        let pages = PAGES.lock();
        let ignored = IGNORED.lock();
        let mut from = cursor.from;
        let flow = pages.for_each_block_span_from(cursor.from, |span| match span.kind() {
            SpanKind::Slab => walk_slab(span, &mut from, checked, &ignored, &mut visit),
            _ => {
                let start = span.start();
                if start < from {
                    return ControlFlow::Continue(());
                }
                from = start + 1;
                if ignored.contains(start) {
                    return ControlFlow::Continue(());
                }
                let bytes = span.bytes();
                let size = if checked {
                    // SAFETY: a live large or huge block (the page lock
                    // keeps it so), armed when it was handed out.
                    unsafe { trailer::verify(start as *const u8, bytes) }.unwrap_or(bytes)
                } else {
                    bytes
                };
                visit(LiveBlock {
                    address: start,
                    size,
                })
            }
        });
        cursor.from = from;
        if flow.is_break() {
            return;
        }
        *cursor = Cursor {
            phase: Phase::Sampled,
            from: 0,
        };
    }
    if cursor.phase == Phase::Sampled {
        let ignored = IGNORED.lock();
        let mut from = cursor.from;
        let flow = guarded::for_each_live_block(cursor.from, |start, size| {
            from = start + 1;
            if ignored.contains(start) {
                return ControlFlow::Continue(());
            }
            visit(LiveBlock {
                address: start,
                size,
            })
        });
        cursor.from = from;
        if flow.is_break() {
            return;
        }
        *cursor = Cursor {
            phase: Phase::ZeroByte,
            from: 0,
        };
    }
    if cursor.phase == Phase::ZeroByte {
        let ignored = IGNORED.lock();
        let mut from = cursor.from;
        let flow = zero::for_each_live_block(cursor.from, |addr| {
            from = addr + 1;
            if ignored.contains(addr) {
                return ControlFlow::Continue(());
            }
            visit(LiveBlock {
                address: addr,
                size: 0,
            })
        });
        cursor.from = from;
        if flow.is_break() {
            return;
        }
        cursor.phase = Phase::Done;
    }
}

/// The live slots of `slab` from `*from` on (see `walk_live`).
fn walk_slab(
    slab: &Span,
    from: &mut usize,
    checked: bool,
    ignored: &AddrTable<()>,
    visit: &mut impl FnMut(LiveBlock) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let bs = slab.slot_size();
    let capacity = slab.capacity.load(Ordering::Relaxed) as usize;
    let start = slab.start();
    if bs == 0 || capacity == 0 {
        return ControlFlow::Continue(());
    }
    let first = from.saturating_sub(start).div_ceil(bs);
    let pending = slab.remote_summary.load(Ordering::Acquire) != 0;
    for w in first / 64..slab.words.get() as usize {
        let mut bits = slab.allocated_word(w).load(Ordering::Acquire);
        if pending {
            bits &= !slab.remote_word(w).load(Ordering::Acquire);
        }
        if w == first / 64 {
            bits &= u64::MAX << (first % 64);
        }
        while bits != 0 {
            let index = w * 64 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if index >= capacity {
                break;
            }
            let addr = start + index * bs;
            *from = addr + 1;
            if ignored.contains(addr) {
                continue;
            }
            let size = if checked && bs > TRAILER {
                // SAFETY: a slot of a live slab (the page lock keeps it
                // one): `bs` readable bytes. One changing state meanwhile
                // reads as some bytes, and `verify` says whether they make
                // a trailer.
                unsafe { trailer::verify(addr as *const u8, bs) }.unwrap_or(bs)
            } else {
                bs
            };
            visit(LiveBlock {
                address: addr,
                size,
            })?;
        }
    }
    ControlFlow::Continue(())
}

/// Copies the first `out.len()` live blocks that are not ignored into
/// `out` (in address order, but for sampled blocks, which come last), and
/// returns how many there are in all.
pub fn leak_entries(out: &mut [LeakEntry]) -> usize {
    let mut cursor = Cursor::start();
    let mut count = 0;
    walk_live(&mut cursor, |b| {
        if let Some(slot) = out.get_mut(count) {
            *slot = LeakEntry {
                address: b.address,
                size: b.size,
                site: None,
            };
        }
        count += 1;
        ControlFlow::Continue(())
    });
    count
}

/// Blocks a leak report lists one by one, at most.
const REPORT_BLOCKS: usize = 64;

/// The `N` largest blocks of a walk (ties: the lower address), kept
/// without allocating.
struct Largest<const N: usize> {
    blocks: [LeakEntry; N],
    len: usize,
    /// Every block offered.
    seen: usize,
}

impl<const N: usize> Largest<N> {
    fn new() -> Self {
        Largest {
            blocks: [LeakEntry::default(); N],
            len: 0,
            seen: 0,
        }
    }

    fn offer(&mut self, e: LeakEntry) {
        self.seen += 1;
        if self.len < N {
            self.blocks[self.len] = e;
            self.len += 1;
            return;
        }
        // Replace the smallest kept, if this one is larger (addresses come
        // in increasing order: an equal size keeps the earlier block).
        let (mut min, mut at) = (usize::MAX, 0);
        for (i, b) in self.blocks.iter().enumerate() {
            if b.size < min {
                (min, at) = (b.size, i);
            }
        }
        if e.size > min {
            self.blocks[at] = e;
        }
    }

    /// The kept blocks, largest first.
    fn sorted(&mut self) -> &[LeakEntry] {
        let kept = &mut self.blocks[..self.len];
        kept.sort_unstable_by(|a, b| b.size.cmp(&a.size).then(a.address.cmp(&b.address)));
        kept
    }
}

/// Writes the leak report to stderr: the summary line, then the largest
/// blocks, largest first (`extra`: blocks and bytes from elsewhere, a
/// backend's, counted in the summary line). One write(2) per 4 KiB,
/// nothing allocated.
pub fn report_leaks_with(extra: LeakSummary) {
    let s = leak_summary();
    let mut largest = Largest::<REPORT_BLOCKS>::new();
    let mut cursor = Cursor::start();
    walk_live(&mut cursor, |b| {
        largest.offer(LeakEntry {
            address: b.address,
            size: b.size,
            site: None,
        });
        ControlFlow::Continue(())
    });
    let mut w = FdWriter::new(2);
    let mut command = [0u8; 160];
    let command = process::command_line(&mut command);
    let _ = write!(
        w,
        "cma: leak report: {} live blocks ({} bytes), {} ignored ({} bytes)",
        Grouped(s.live_blocks + extra.live_blocks),
        Grouped(s.live_bytes + extra.live_bytes),
        Grouped(s.ignored_blocks + extra.ignored_blocks),
        Grouped(s.ignored_bytes + extra.ignored_bytes),
    );
    if extra.live_blocks + extra.ignored_blocks != 0 {
        let _ = write!(
            w,
            "; {} live and {} ignored from a backend",
            Grouped(extra.live_blocks),
            Grouped(extra.ignored_blocks)
        );
    }
    let _ = write!(w, " [pid {}: ", process::pid());
    w.write_bytes(command);
    let _ = w.write_str("]\n");
    let seen = largest.seen;
    let shown = largest.sorted();
    if shown.len() < seen {
        let _ = writeln!(
            w,
            "  the {} largest of cma's {}:",
            shown.len(),
            Grouped(seen as u64)
        );
    }
    for e in shown {
        let _ = writeln!(
            w,
            "    {:#018x} {} bytes",
            e.address,
            Grouped(e.size as u64)
        );
    }
    w.flush();
}

/// Writes the leak report to stderr (see `report_leaks_with`).
pub fn report_leaks() {
    report_leaks_with(LeakSummary::default());
}

/// The blocks still live, not ignored (in address order, but for sampled
/// blocks, which come last), each with its allocation site when the
/// registry recorded it (`profile=`): an iterator that
/// reads them a chunk at a time (under the page lock, never while the
/// caller holds an item), so the loop's body may allocate; blocks allocated
/// or freed during the loop may or may not be seen. Nothing is allocated.
///
/// ```
/// let b = Box::new([7u8; 100]);
/// let mine = &*b as *const [u8; 100] as usize;
/// # #[global_allocator] static A: cma::Cma = cma::Cma;
/// assert!(cma::leaks().any(|leak| leak.address == mine));
/// ```
pub fn leaks() -> Leaks {
    Leaks {
        cursor: Cursor::start(),
        chunk: [LeakEntry::default(); CHUNK],
        len: 0,
        next: 0,
    }
}

const CHUNK: usize = 64;

/// The iterator of [`leaks`].
pub struct Leaks {
    cursor: Cursor,
    chunk: [LeakEntry; CHUNK],
    len: usize,
    next: usize,
}

impl Iterator for Leaks {
    type Item = LeakEntry;

    fn next(&mut self) -> Option<LeakEntry> {
        if self.next == self.len {
            if self.cursor.done() {
                return None;
            }
            self.len = 0;
            self.next = 0;
            let (chunk, len) = (&mut self.chunk, &mut self.len);
            walk_live(&mut self.cursor, |b| {
                chunk[*len] = LeakEntry {
                    address: b.address,
                    size: b.size,
                    site: None,
                };
                *len += 1;
                if *len == CHUNK {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            });
            if self.len == 0 {
                return None;
            }
            if sampling::on() {
                let mut addresses = [0usize; CHUNK];
                for (a, e) in addresses.iter_mut().zip(&self.chunk[..self.len]) {
                    *a = e.address;
                }
                let mut sites = [None; CHUNK];
                registry::sites_of(&addresses[..self.len], &mut sites[..self.len]);
                for (e, s) in self.chunk.iter_mut().zip(sites) {
                    e.site = s.map(Site);
                }
            }
        }
        self.next += 1;
        Some(self.chunk[self.next - 1])
    }
}

/// `1234567` as `1,234,567`, without allocating.
pub(crate) struct Grouped(pub(crate) u64);

impl core::fmt::Display for Grouped {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut digits = [0u8; 20];
        let mut n = self.0;
        let mut len = 0;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let mut out = crate::util::stack_buf::StackBuf::<32>::new();
        for i in (0..len).rev() {
            let _ = out.write_char(digits[i] as char);
            if i > 0 && i % 3 == 0 {
                let _ = out.write_char(',');
            }
        }
        f.pad(core::str::from_utf8(out.as_bytes()).unwrap_or(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(Grouped(0).to_string(), "0");
        assert_eq!(Grouped(999).to_string(), "999");
        assert_eq!(Grouped(1000).to_string(), "1,000");
        assert_eq!(Grouped(1234567).to_string(), "1,234,567");
        assert_eq!(format!("{:>8}", Grouped(12345)), "  12,345");
        assert_eq!(Grouped(u64::MAX).to_string(), "18,446,744,073,709,551,615");
    }
}
