//! Observability and controls: statistics merged from the per-heap counters
//! (`stats`) and allocation limits for failure injection (`limits`).

pub(crate) mod limits;
pub(crate) mod stats;
