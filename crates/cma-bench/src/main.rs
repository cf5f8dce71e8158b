//! cma-bench: cma against mimalloc, jemalloc, glibc, rusty_alloc and
//! snmalloc on fourteen workloads.
//!
//! The parent process runs every (repetition, workload, allocator) in a fresh
//! child process, `cma-bench --child WORKLOAD ALLOCATOR`, interleaved (in a
//! fresh shuffled order each time, so no allocator always runs first or after
//! the same other allocator) so that noise spreads evenly, and collects from
//! each child its median time and the peak resident set of the child
//! (VmHWM). See README.md.
//!
//! This file is the entry point only: `cli` parses the options, `suite` is
//! the parent, `child` the `--child` side, `workloads` what a child runs and
//! `report` what the parent writes.

mod alloc;
mod child;
mod cli;
mod report;
mod suite;
mod util;
mod workloads;

use std::process::ExitCode;

use cli::USAGE;

#[global_allocator]
static GLOBAL: alloc::Dispatch = alloc::Dispatch;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match cli::parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("cma-bench: {e}");
            }
            eprint!("{USAGE}");
            return ExitCode::from(if e.is_empty() { 0 } else { 2 });
        }
    };
    if let Some((w, a)) = &opts.child {
        return child::run(w, a, &opts);
    }
    if opts.list {
        cli::print_list();
        return ExitCode::SUCCESS;
    }
    match suite::run(&opts) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cma-bench: {e}");
            ExitCode::from(2)
        }
    }
}
