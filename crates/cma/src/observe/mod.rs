//! Observability and controls: statistics merged from the per-heap counters
//! (`stats`), allocation limits for failure injection (`limits`), the heap
//! report file written at exit (`report_file`), the allocation-logging
//! switch (`alloc_log`), the original system's leak API (`leaks`), and the
//! address-keyed table they keep their sets in (`table`).

pub(crate) mod alloc_log;
pub(crate) mod leaks;
pub(crate) mod limits;
pub(crate) mod report_file;
pub(crate) mod stats;
mod stats_text;
pub(crate) mod table;
