//! The purge policy: free spans and freed huge mappings stay committed for
//! `purge_delay_ms` (a program that frees and allocates again reuses them
//! without page faults) and are then decommitted, so that resident memory
//! follows what the program really uses; empty segments beyond a small
//! reserve go back to the kernel, and so do the pages of freed descriptors
//! (`meta::meta_trim`).

use super::{Pages, BINS};
use crate::meta::span::PAGES_PER_SEGMENT;
use crate::os::memory;

/// Empty segments kept (decommitted after the purge delay, so they cost
/// address space, not memory) for reuse instead of unmapped.
const EMPTY_SEGMENTS_KEPT: usize = 8;

impl Pages {
    /// Decommits free spans idle for longer than the purge delay (all of them
    /// when `force`), unmaps empty segments beyond a small reserve, and gives
    /// back the pages of freed descriptors once they stopped changing.
    pub(crate) fn purge(&mut self, now: u64, force: bool) {
        self.last_purge_ms = now;
        let mut empty_seen = 0;
        for bin in 0..BINS {
            let mut cur = self.bins[bin];
            while !cur.is_null() {
                // SAFETY: spans in the bins are live free-span descriptors.
                let s = unsafe { &*cur };
                let next = s.free_next.get();
                if s.pages() == PAGES_PER_SEGMENT {
                    empty_seen += 1;
                    if empty_seen > EMPTY_SEGMENTS_KEPT {
                        self.release_segment(cur);
                        cur = next;
                        continue;
                    }
                }
                if s.dirty.get()
                    && (force || now.saturating_sub(s.freed_at_ms.get()) >= self.purge_delay_ms)
                {
                    memory::decommit(s.start() as *mut u8, s.bytes());
                    s.dirty.set(false);
                    s.zeroed.set(true);
                    self.dirty_bytes -= s.bytes();
                }
                cur = next;
            }
        }
        let mut cur = self.huge_cache;
        while !cur.is_null() {
            // SAFETY: cached huge descriptors are live.
            let s = unsafe { &*cur };
            if s.dirty.get()
                && (force || now.saturating_sub(s.freed_at_ms.get()) >= self.purge_delay_ms)
            {
                memory::decommit(s.start() as *mut u8, s.committable());
                s.dirty.set(false);
                self.dirty_bytes -= s.committable();
                s.committed.set(0);
            }
            cur = s.free_next.get();
        }
        self.meta.trim_when_quiet(force);
    }

    pub(super) fn maybe_purge(&mut self, now: u64) {
        if self.dirty_bytes > 0 && now.saturating_sub(self.last_purge_ms) >= self.purge_delay_ms / 2
        {
            self.purge(now, false);
        }
    }
}
