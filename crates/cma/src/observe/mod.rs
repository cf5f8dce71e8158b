//! Observability and controls: statistics merged from the per-heap counters
//! (`stats`), allocation limits for failure injection (`limits`), the heap
//! report file written at exit (`report_file`), and the allocation-logging
//! switch (`alloc_log`).

pub(crate) mod alloc_log;
pub(crate) mod limits;
pub(crate) mod report_file;
pub(crate) mod stats;
