//! `cma bench`: the benchmark suite (`cma-bench`), started from the command.
//!
//! The suite is its own binary because it links every allocator it compares
//! (mimalloc, jemalloc, snmalloc...), which the `cma` command should not
//! carry. `cma bench ARGS` runs the `cma-bench` found next to `cma` (or at
//! `$CMA_BENCH`) with the same arguments, and passes its exit status on.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use clap::Args;

#[derive(Args, Debug)]
#[command(
    disable_help_flag = true,
    after_help = "\
Everything after `bench` goes to the suite; `cma bench --help` shows its options.
Examples:
  cma bench --quick
  cma bench --only churn,larson --allocators cma-fast,mimalloc --reps 7

The suite binary is found at $CMA_BENCH, else next to the cma binary; build it
with `cargo build --release -p cma-bench`."
)]
pub struct BenchArgs {
    /// Arguments for the suite (see `cma bench --help`)
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    args: Vec<OsString>,
}

fn suite_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CMA_BENCH") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.join("cma-bench");
    candidate.is_file().then_some(candidate)
}

pub fn main(args: BenchArgs) -> ExitCode {
    let Some(bin) = suite_binary() else {
        eprintln!(
            "cma bench: the suite binary cma-bench is not next to cma; build it with \
             `cargo build --release -p cma-bench` (or point CMA_BENCH at it)"
        );
        return ExitCode::from(127);
    };
    // exec: the suite takes over this process (its output, its signals, its
    // exit status); it returns only when the exec failed.
    let err = Command::new(&bin).args(&args.args).exec();
    eprintln!("cma bench: cannot run {}: {err}", bin.display());
    ExitCode::from(127)
}
