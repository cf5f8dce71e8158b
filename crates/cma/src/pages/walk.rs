//! Walking every live block span: the slabs and large blocks of every
//! segment and the live huge blocks, under the page lock (so that no
//! descriptor it names is retired meanwhile). The heap check uses it.

use core::ops::ControlFlow;

use super::Pages;
use crate::meta::span::{Span, SpanKind, PAGES_PER_SEGMENT};
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
