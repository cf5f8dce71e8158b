//! Options, from `CMA_OPTIONS` (for example
//! `CMA_OPTIONS=check=default,limit_total=64M`), from `apply_options`, or
//! typed, from [`Options`]. `parse` reads a list into typed
//! `Setting`s without allocating; `apply` hands each to the module it
//! configures. In a list, an unknown key or a malformed value is reported
//! once on stderr and ignored, and everything else keeps working; the typed
//! `Options::apply` returns what it cannot honour instead.
//!
//! | key | value | effect |
//! | --- | --- | --- |
//! | `check` | `fast` or `default` (the default) | the check level, see README |
//! | `purge_delay_ms` | integer | how long free pages stay committed (default 250) |
//! | `huge_pages` | `0` or `1` | whether segments ask for transparent huge pages (default 0: they refuse them, so decommitted pages stay decommitted; with 1, the first segment asks only once a second is mapped; huge blocks always ask) |
//! | `purge_thread` | `0` or `1` | whether a quiet program's idle pages are purged by a thread (default 1) |
//! | `limit_request` | size (`K`, `M`, `G` suffixes) | largest single request |
//! | `limit_total` | size | largest total of bytes in use |
//! | `report` | a path (`%p`: the pid) or `stderr` | where the heap report goes at exit (`observe::report_file`) |
//! | `quarantine` | size (default `256K`) | `default` level: bytes of freed blocks each thread holds back from reuse (0: none) |
//! | `quarantine_slots` | count up to 4096 (default 1024) | `default` level: freed blocks each thread holds back at most (0: none) |
//! | `exit_check` | `0` or `1` | `default` level: check every live block's trailer and every quarantined block at exit (default 1; `check_heap`) |
//! | `alloc_log` | `0` or `1` | log every allocation, reallocation and free from the start (`cma_set_alloc_logging`, `cma::set_alloc_logging`; `observe::alloc_log`) |
//! | `alloc_log_fd` | integer | the file descriptor logged events go to (default 2) |
//! | `alloc_log_sample` | integer | log about one event in N (default 1: every one) |
//! | `profile` | `off` (the default), `sample` or `all` | the live-allocation registry: none, about one block per `profile_rate` bytes (weighted), every block (`track::sampling`) |
//! | `profile_rate` | size (default `512K`) | `profile=sample`: mean bytes allocated between two samples |
//! | `profile_file` | a path (`%p`: the pid) | where the engine writes its profile at exit (`cma run` sets it; `observe::profile_file`) |
//!
//! The front ends' keys (`json`, `loaded`, `stats`) parse as settings too;
//! the engine leaves them to libcma and the `cma` command.

mod apply;
mod parse;
mod typed;

pub(crate) use apply::{apply, load_from_env};
pub use parse::{parse, sort_items, OptionError, Setting};
pub use typed::{Options, OptionsError};
