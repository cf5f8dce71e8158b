//! What is known about single blocks beyond the slab bitmaps, kept in
//! memory of its own (never the engine's heap): the live-allocation
//! registry and its site table (`registry`), which blocks it records and
//! with what weight (`sampling`, `profile=` in `CMA_OPTIONS`), and the set
//! of blocks left out of leak reports (`ignored`). The heap records into
//! them (`heap::profile`, `heap::alloc`); `observe` reads them.

pub(crate) mod ignored;
pub(crate) mod registry;
pub(crate) mod sampling;
