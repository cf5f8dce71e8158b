//! `cma stress`: the original system's six-worker malloc/realloc/free
//! stress test, as a command, on cma or on any allocator.
//!
//! `cma stress` runs the workers in a child process (this same binary,
//! `--child-process`) with the allocator preloaded: libcma, or `--lib
//! PATH`. The child checks every block's contents before each realloc and
//! free, prints a progress line every second, checks that the allocator's
//! counters balance at the end (on cma, through `cma_stats_get`), and
//! watches its workers: when none of the unfinished ones advances for
//! `--watchdog` seconds, it prints each worker's iteration and last
//! operation and a stack of every thread (see `stacks`), and exits 3. This
//! process passes the child's output on, names the stack frames with
//! `addr2line` when it is installed, and kills the child should it stop
//! answering altogether.

mod child;
mod stacks;
mod workload;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use clap::Args;

/// Exit status: a block's contents or the counters were wrong.
const EXIT_CHECK_FAILED: u8 = 1;
/// Exit status: the watchdog found the workers stalled.
const EXIT_STALLED: u8 = 3;
/// How long the child may stay silent beyond the watchdog's time (it prints
/// a line every second) before it is taken for wedged and killed.
const SILENCE_GRACE: Duration = Duration::from_secs(60);

#[derive(Args, Debug)]
#[command(after_help = "\
Each worker allocates, reallocates, frees, hands blocks to other workers and
takes theirs, with sizes from 1 byte to 2 MiB; every block's contents are
checked before each realloc and free. At the end the counters must balance
(on cma: its own allocation and free counters; on another allocator: the
workers' books).

When no worker makes progress for the watchdog's time, cma stress prints each
worker's iteration and last operation and the stack of every thread (named
with addr2line when binutils is installed), and exits with 3.

Exit status: 0 passed, 1 a content or counter check failed, 2 usage, 3 stalled,
125 libcma.so not found, 128+N the run died of signal N.

Examples:
  cma stress                                  # 6 workers, 10 seconds, on cma
  cma stress --threads 16 --seconds 60 --watchdog 10
  cma stress --iterations 200000 --seed 42
  cma stress --lib /usr/lib/x86_64-linux-gnu/libmimalloc.so.2   # the same on mimalloc

libcma.so is found as for `cma run` (--lib, $CMA_LIB, next to cma).")]
pub struct StressArgs {
    /// Worker threads
    #[arg(long, value_name = "N", default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=256))]
    threads: u32,

    /// Run for S seconds [default: 10]
    #[arg(long, value_name = "S", conflicts_with = "iterations")]
    seconds: Option<f64>,

    /// Run N iterations per worker instead of a time
    #[arg(long, value_name = "N")]
    iterations: Option<u64>,

    /// Declare a stall when no worker advanced for S seconds
    #[arg(long, value_name = "S", default_value_t = 30.0)]
    watchdog: f64,

    /// Seed of the workers' random choices
    #[arg(long, value_name = "N", default_value_t = 0x5EED_C0DE)]
    seed: u64,

    /// The allocator to preload (a shared library with malloc, realloc and
    /// free) [default: libcma.so]
    #[arg(long, value_name = "PATH")]
    lib: Option<PathBuf>,

    /// Internal: run the workers in this process (set by `cma stress` for
    /// its child)
    #[arg(long, hide = true)]
    child_process: bool,

    /// Internal: the allocator's name for the summary
    #[arg(long, hide = true, value_name = "NAME")]
    allocator_name: Option<String>,
}

/// What the child runs.
struct Plan {
    threads: usize,
    seconds: Option<Duration>,
    iterations: Option<u64>,
    watchdog: Duration,
    seed: u64,
    /// `CMA_STRESS_STALL=WORKER:ITERATION`: stall that worker there (the
    /// watchdog's own test).
    stall: Option<(usize, u64)>,
    allocator: String,
}

fn duration(seconds: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("cma stress: {what} must be a positive number of seconds"))
}

fn stall_from_env() -> Option<(usize, u64)> {
    let v = std::env::var("CMA_STRESS_STALL").ok()?;
    let (w, i) = v.split_once(':')?;
    Some((w.parse().ok()?, i.parse().ok()?))
}

pub fn main(args: StressArgs) -> ExitCode {
    let seconds = match args.iterations {
        Some(_) => None,
        None => match duration(args.seconds.unwrap_or(10.0), "--seconds") {
            Ok(d) => Some(d),
            Err(e) => return usage(&e),
        },
    };
    let watchdog = match duration(args.watchdog, "--watchdog") {
        Ok(d) => d,
        Err(e) => return usage(&e),
    };
    if args.child_process {
        let plan = Plan {
            threads: args.threads as usize,
            seconds,
            iterations: args.iterations,
            watchdog,
            seed: args.seed,
            stall: stall_from_env(),
            allocator: args
                .allocator_name
                .unwrap_or_else(|| "an unnamed allocator".into()),
        };
        return ExitCode::from(child::run(&plan));
    }
    let (lib, name) = match &args.lib {
        Some(p) => match std::fs::canonicalize(p) {
            Ok(lib) => {
                let name = lib.file_name().map_or_else(
                    || lib.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                );
                (lib, name)
            }
            Err(e) => {
                eprintln!("cma stress: --lib {}: {e}", p.display());
                return ExitCode::from(125);
            }
        },
        None => match crate::run::find_lib(None) {
            Ok(lib) => (lib, "cma (libcma.so)".to_string()),
            Err(e) => {
                eprintln!("cma stress: {e}");
                return ExitCode::from(125);
            }
        },
    };
    parent(&args, seconds, watchdog, &lib, &name)
}

fn usage(message: &str) -> ExitCode {
    eprintln!("{message}");
    ExitCode::from(2)
}

/// Starts the child, passes its output on (stacks symbolized), and turns
/// its end into the exit status.
fn parent(
    args: &StressArgs,
    seconds: Option<Duration>,
    watchdog: Duration,
    lib: &Path,
    name: &str,
) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("cma stress: cannot find the cma executable: {e}");
            return ExitCode::from(127);
        }
    };
    let mut cmd = Command::new(exe);
    cmd.args(["stress", "--child-process", "--allocator-name", name])
        .arg(format!("--threads={}", args.threads))
        .arg(format!("--watchdog={}", watchdog.as_secs_f64()))
        .arg(format!("--seed={}", args.seed));
    match (args.iterations, seconds) {
        (Some(n), _) => cmd.arg(format!("--iterations={n}")),
        (None, Some(s)) => cmd.arg(format!("--seconds={}", s.as_secs_f64())),
        (None, None) => &mut cmd,
    };
    cmd.env("LD_PRELOAD", lib)
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cma stress: cannot start the stress process: {e}");
            return ExitCode::from(126);
        }
    };
    let (lines_tx, lines) = mpsc::channel::<String>();
    if let Some(stderr) = child.stderr.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).split(b'\n').map_while(Result::ok) {
                if lines_tx
                    .send(String::from_utf8_lossy(&line).into_owned())
                    .is_err()
                {
                    break;
                }
            }
        });
    }
    let silence_limit = watchdog + SILENCE_GRACE;
    let mut section: Option<Vec<String>> = None;
    loop {
        match lines.recv_timeout(silence_limit) {
            Ok(line) => match &mut section {
                None if line == stacks::BEGIN => section = Some(vec![line]),
                None => eprintln!("{line}"),
                Some(s) if line == stacks::END => {
                    s.push(line);
                    for l in symbolize(s) {
                        eprintln!("{l}");
                    }
                    section = None;
                }
                Some(s) => s.push(line),
            },
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                eprintln!(
                    "cma stress: STALLED: the stress process wrote nothing for {} s, its watchdog included; killed it (no stacks: its watchdog thread is stuck too)",
                    silence_limit.as_secs()
                );
                let _ = child.kill();
                let _ = child.wait();
                return ExitCode::from(EXIT_STALLED);
            }
        }
    }
    if let Some(s) = section {
        // The child ended in the middle of its stacks: show what came.
        for l in symbolize(&s) {
            eprintln!("{l}");
        }
    }
    match child.wait() {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => ExitCode::from(code.clamp(0, 255) as u8),
            (None, Some(signal)) => {
                eprintln!("cma stress: the stress process died of signal {signal}");
                ExitCode::from((128 + signal).clamp(0, 255) as u8)
            }
            (None, None) => ExitCode::from(1),
        },
        Err(e) => {
            eprintln!("cma stress: cannot wait for the stress process: {e}");
            ExitCode::from(1)
        }
    }
}

/// One frame as `backtrace_symbols_fd` wrote it:
/// `MODULE(SYMBOL+0xOFFSET)[0xADDRESS]` or `MODULE(+0xOFFSET)[0xADDRESS]`.
struct Frame {
    module: String,
    symbol: Option<String>,
    offset: u64,
    address: u64,
}

fn parse_frame(line: &str) -> Option<Frame> {
    let open = line.rfind('(')?;
    let close = open + line[open..].find(')')?;
    let address = line[close..]
        .strip_prefix(")[0x")?
        .strip_suffix(']')
        .and_then(|a| u64::from_str_radix(a, 16).ok())?;
    let inner = &line[open + 1..close];
    let (symbol, offset) = inner.rsplit_once("+0x")?;
    Some(Frame {
        module: line[..open].to_string(),
        symbol: (!symbol.is_empty()).then(|| symbol.to_string()),
        offset: u64::from_str_radix(offset, 16).ok()?,
        address,
    })
}

/// The section of stacks with each frame named: function and file:line
/// from `addr2line` when it is installed and the module has line tables,
/// else the exported symbol, else the module and offset.
fn symbolize(section: &[String]) -> Vec<String> {
    let frames: Vec<Option<Frame>> = section.iter().map(|l| parse_frame(l)).collect();
    // A module's load bias, from any frame without a symbol (whose offset
    // is from the module's start): then every frame of it can be looked up.
    let mut bias: BTreeMap<&str, u64> = BTreeMap::new();
    for f in frames.iter().flatten().filter(|f| f.symbol.is_none()) {
        bias.entry(&f.module).or_insert(f.address - f.offset);
    }
    let mut wanted: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for f in frames.iter().flatten() {
        if let Some(b) = bias.get(f.module.as_str()) {
            // A return address: the call is the instruction before it.
            wanted
                .entry(&f.module)
                .or_default()
                .push((f.address - b).saturating_sub(1));
        }
    }
    let mut names: BTreeMap<(&str, u64), String> = BTreeMap::new();
    for (module, offsets) in &wanted {
        for (offset, name) in offsets.iter().zip(addr2line(module, offsets)) {
            if let Some(name) = name {
                names.insert((module, *offset), name);
            }
        }
    }
    let mut out = Vec::with_capacity(section.len());
    let mut number = 0;
    for (line, frame) in section.iter().zip(&frames) {
        let Some(f) = frame else {
            if line.starts_with(stacks::THREAD_PREFIX) {
                number = 0;
            }
            out.push(line.clone());
            continue;
        };
        let module_name = Path::new(&f.module)
            .file_name()
            .map_or(f.module.clone(), |n| n.to_string_lossy().into_owned());
        let looked_up = bias
            .get(f.module.as_str())
            .and_then(|b| names.get(&(f.module.as_str(), (f.address - b).saturating_sub(1))));
        let text = match (looked_up, &f.symbol) {
            (Some(name), _) => format!("{name}  [{module_name}]"),
            (None, Some(symbol)) => format!("{symbol}+{:#x}  [{module_name}]", f.offset),
            (None, None) => format!("{module_name}+{:#x}", f.offset),
        };
        out.push(format!("    #{number:<2} {text}"));
        number += 1;
    }
    out
}

/// `function at file:line` for each offset of `module`, by `addr2line`;
/// `None` for each when it is missing or knows nothing.
fn addr2line(module: &str, offsets: &[u64]) -> Vec<Option<String>> {
    let none = || vec![None; offsets.len()];
    let Ok(out) = Command::new("addr2line")
        .args(["-f", "-C", "-e", module])
        .args(offsets.iter().map(|o| format!("{o:#x}")))
        .stderr(Stdio::null())
        .output()
    else {
        return none();
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    if !out.status.success() || lines.len() != 2 * offsets.len() {
        return none();
    }
    lines
        .chunks(2)
        .map(|pair| {
            let (function, place) = (pair[0], pair[1]);
            if function == "??" {
                return None;
            }
            let place = place.split(" (discriminator").next().unwrap_or(place);
            Some(if place.starts_with("??") {
                function.to_string()
            } else {
                format!("{function} at {place}")
            })
        })
        .collect()
}
