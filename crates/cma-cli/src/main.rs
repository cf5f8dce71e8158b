//! `cma`: runs programs on the cma allocator and reports what their heap did.
//!
//! Subcommands live in their own modules: `run`, `stress` and `bench`.

mod bench;
mod forward;
mod json;
mod profile;
mod report;
mod run;
mod stress;
mod symbolize;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "cma",
    version,
    about = "cma, a checked memory allocator: run programs on it and see what their heap did"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run PROGRAM with libcma preloaded; print a heap report when it exits.
    Run(run::RunArgs),
    /// Run the original's six-worker malloc/realloc/free stress test, with a
    /// watchdog that prints every thread's stack on a stall.
    Stress(stress::StressArgs),
    /// Run the benchmark suite: cma against mimalloc, jemalloc, glibc and others.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run::main(args),
        Command::Stress(args) => stress::main(args),
        Command::Bench(args) => bench::main(args),
    }
}
