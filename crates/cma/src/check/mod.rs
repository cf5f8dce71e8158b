//! Checks: what cma verifies about every pointer and block, and the one
//! path that reports misuse.
//!
//! - `level`: the check levels, and the one mode byte the fast paths read;
//! - `switches`: the checks each level presets, one switch each;
//! - `trailer`: the `default` level's canary trailer;
//! - `kind`: which family allocated a block and which releases it;
//! - `lookup`: is this address the start of one of our blocks, in which
//!   state, and if not, which error;
//! - `heap_check`: every live block and quarantined slot verified at once
//!   (`check_heap`, and at exit);
//! - `error`: the errors, with their one-line texts;
//! - `report`: the one reporting path (a line on stderr, then abort);
//! - `fault`: the fault handler's judgement of a fault in the pool of
//!   sampled blocks.

pub(crate) mod error;
pub(crate) mod fault;
pub(crate) mod heap_check;
pub(crate) mod kind;
pub(crate) mod level;
pub(crate) mod lookup;
pub(crate) mod report;
pub(crate) mod switches;
pub(crate) mod trailer;
