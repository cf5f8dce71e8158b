//! Slots: the size classes and their slab geometry (`size_class`), what
//! state a slot of a slab is in (`slot`, the one answer the free path, the
//! checks and the statistics share), the lock-free protocol by which other
//! threads free a slab's slots (`remote_free`), and who may touch a slab's
//! free pages, its owner or the purge pass (`page_purge`).

pub(crate) mod page_purge;
pub(crate) mod remote_free;
pub(crate) mod size_class;
pub(crate) mod slot;
