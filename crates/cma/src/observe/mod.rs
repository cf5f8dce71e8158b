//! Observability and controls: statistics merged from the per-heap counters
//! (`stats`), allocation limits for failure injection (`limits`), the heap
//! report file written at exit (`report_file`; `destination`: where such a
//! file goes; `at_exit`: the exit hook), the allocation-logging switch
//! (`alloc_log`), and the original system's leak API (`leaks`).

pub(crate) mod alloc_log;
mod at_exit;
pub(crate) mod destination;
pub(crate) mod leaks;
pub(crate) mod limits;
pub(crate) mod profile_api;
pub(crate) mod profile_file;
pub(crate) mod report_file;
pub(crate) mod stats;
mod stats_text;
