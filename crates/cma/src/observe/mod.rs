//! Observability and controls: statistics merged from the per-heap counters
//! (`stats`), allocation limits for failure injection (`limits`), the heap
//! report file written at exit (`report_file`), the allocation-logging
//! switch (`alloc_log`), and the original system's leak API (`leaks`).

pub(crate) mod alloc_log;
pub(crate) mod leaks;
pub(crate) mod limits;
pub(crate) mod profile_api;
pub(crate) mod profile_file;
pub(crate) mod report_file;
pub(crate) mod stats;
mod stats_text;
