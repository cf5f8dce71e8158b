//! Walking every live block span: the slabs and large blocks of every
//! segment and the live huge blocks, under the page lock (so that no
//! descriptor it names is retired meanwhile). The heap check uses it; the
//! leak walk (`observe::leaks`) uses the resumable form, in address order,
//! so that it can drop the lock between chunks and go on where it stopped.

use core::ops::ControlFlow;

use super::Pages;
use crate::meta::segment_map::SEGMENT_SIZE;
use crate::meta::span::{Segment, Span, SpanKind, PAGES_PER_SEGMENT};
use crate::os::PAGE_SIZE;

impl Pages {
    /// Calls `visit` with every slab, large block and huge block, until it
    /// breaks; returns its break value.
    pub(crate) fn for_each_block_span<B>(
        &self,
        mut visit: impl FnMut(&Span) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        let mut seg = self.segments;
        while !seg.is_null() {
            // SAFETY: listed segment tables are live under the lock.
            let table = unsafe { &*seg };
            let mut page = 0;
            while page < PAGES_PER_SEGMENT {
                let span = table.span_at(page);
                if span.is_null() {
                    page += 1;
                    continue;
                }
                // SAFETY: page entries point at descriptors in the metadata
                // region; a stale one is caught by `contains`.
                let s = unsafe { &*span };
                if !s.contains(table.base + page * PAGE_SIZE) {
                    page += 1;
                    continue;
                }
                if matches!(s.kind(), SpanKind::Slab | SpanKind::Large) {
                    visit(s)?;
                }
                page = s.first_page() + s.pages().max(1);
            }
            seg = table.next.get();
        }
        let mut huge = self.live_huge();
        while !huge.is_null() {
            // SAFETY: the live list holds live huge descriptors.
            let s = unsafe { &*huge };
            visit(s)?;
            huge = s.next.get();
        }
        ControlFlow::Continue(())
    }
}

/// A region of the address space a resumable walk visits whole: a segment
/// (its slabs and large blocks) or one huge block.
enum Region<'a> {
    Segment(&'a Segment),
    Huge(&'a Span),
}

impl Pages {
    /// Calls `visit` with every slab, large block and huge block that ends
    /// above `from`, in address order, until it breaks; returns its break
    /// value. A walk that broke off can go on later, under another hold of
    /// the lock, from the address where it stopped (spans made or freed
    /// meanwhile are seen as they are then). Finding each next segment
    /// costs a pass over the segment list.
    pub(crate) fn for_each_block_span_from<B>(
        &self,
        mut from: usize,
        mut visit: impl FnMut(&Span) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        while let Some(region) = self.next_region(from) {
            match region {
                Region::Huge(s) => {
                    visit(s)?;
                    from = s.end();
                }
                Region::Segment(table) => {
                    let mut page = from.saturating_sub(table.base) / crate::os::PAGE_SIZE;
                    while page < PAGES_PER_SEGMENT {
                        let span = table.span_at(page);
                        if span.is_null() {
                            page += 1;
                            continue;
                        }
                        // SAFETY: page entries point at descriptors in the
                        // metadata region; a stale one is caught by
                        // `contains`.
                        let s = unsafe { &*span };
                        if !s.contains(table.base + page * crate::os::PAGE_SIZE) {
                            page += 1;
                            continue;
                        }
                        if matches!(s.kind(), SpanKind::Slab | SpanKind::Large) {
                            visit(s)?;
                        }
                        page = s.first_page() + s.pages().max(1);
                    }
                    from = table.base + SEGMENT_SIZE;
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// The segment or huge block with the lowest address among those that
    /// end above `from`.
    fn next_region(&self, from: usize) -> Option<Region<'_>> {
        let mut best: Option<(usize, Region)> = None;
        let mut seg = self.segments;
        while !seg.is_null() {
            // SAFETY: listed segment tables are live under the lock.
            let table = unsafe { &*seg };
            if table.base + SEGMENT_SIZE > from && best.as_ref().is_none_or(|b| table.base < b.0) {
                best = Some((table.base, Region::Segment(table)));
            }
            seg = table.next.get();
        }
        let mut huge = self.live_huge();
        while !huge.is_null() {
            // SAFETY: the live list holds live huge descriptors.
            let s = unsafe { &*huge };
            if s.end() > from && best.as_ref().is_none_or(|b| s.start() < b.0) {
                best = Some((s.start(), Region::Huge(s)));
            }
            huge = s.next.get();
        }
        best.map(|(_, r)| r)
    }
}
