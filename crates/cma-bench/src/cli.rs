//! The command line: the options, their parsing, the help text and `--list`.

use std::path::PathBuf;

use crate::{alloc, workloads};

pub const USAGE: &str = "\
usage: cma-bench [--quick] [--json FILE] [--svg FILE] [--only W1,W2..] [--allocators A1,A2..]
                 [--reps N] [--iters N] [--threads N] [--timeout S] [--cpu-time] [--list]
       cma-bench --child WORKLOAD ALLOCATOR [--quick] [--iters N] [--threads N]

  --quick        small sizes, 2 repetitions of 1 run each (a smoke test: under a minute)
  --json FILE    where to write the results (default target/cma-bench/results.json)
  --svg FILE     where to write the chart (default target/cma-bench/chart.svg)
  --only LIST    workloads by name or number (default: all)
  --allocators LIST  allocators (default: all; `cma` means every check level, `cma-LEVEL` one)
  --reps N       child processes per workload and allocator (default 5, quick 2)
  --iters N      timed runs inside each child, the child reports their median (default 1)
  --threads N    threads of the multi-threaded workloads (default: cores, 2 to 8)
  --timeout S    seconds before a child is killed and counted as hung (default 300, quick 60)
  --cpu-time     rank by the child's CPU time (all threads) instead of wall-clock time:
                 steadier on a loaded machine; both are always in the JSON
  --list         list workloads and allocators
  --child W A    run workload W on allocator A once per --iters and print one result line
";

/// The options. An `Option` left `None` takes the default of the mode
/// (`--quick` or the full suite) where it is used.
#[derive(Clone, Debug)]
pub struct Opts {
    pub quick: bool,
    pub json: PathBuf,
    pub svg: PathBuf,
    pub only: Option<Vec<String>>,
    pub allocators: Option<Vec<String>>,
    pub reps: Option<usize>,
    pub iters: Option<usize>,
    pub threads: usize,
    pub timeout: Option<u64>,
    pub cpu_time: bool,
    pub list: bool,
    pub child: Option<(String, String)>,
}

fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8)
}

/// `Err` with an empty message is `--help`: the usage, and success.
pub fn parse_args(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        quick: false,
        json: PathBuf::from("target/cma-bench/results.json"),
        svg: PathBuf::from("target/cma-bench/chart.svg"),
        only: None,
        allocators: None,
        reps: None,
        iters: None,
        threads: default_threads(),
        timeout: None,
        cpu_time: false,
        list: false,
        child: None,
    };
    let mut it = args.iter();
    let list = |s: &str| {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let num = |v: Option<&String>, what: &str| -> Result<usize, String> {
        v.ok_or(format!("{what} needs a value"))?
            .parse::<usize>()
            .map_err(|_| format!("{what} needs a number"))
            .and_then(|n| {
                if n == 0 {
                    Err(format!("{what} must be at least 1"))
                } else {
                    Ok(n)
                }
            })
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--json" => o.json = PathBuf::from(it.next().ok_or("--json needs a file")?),
            "--svg" => o.svg = PathBuf::from(it.next().ok_or("--svg needs a file")?),
            "--only" => o.only = Some(list(it.next().ok_or("--only needs a list")?)),
            "--allocators" => {
                o.allocators = Some(list(it.next().ok_or("--allocators needs a list")?))
            }
            "--reps" => o.reps = Some(num(it.next(), "--reps")?),
            "--iters" => o.iters = Some(num(it.next(), "--iters")?),
            "--threads" => o.threads = num(it.next(), "--threads")?,
            "--timeout" => o.timeout = Some(num(it.next(), "--timeout")? as u64),
            "--cpu-time" => o.cpu_time = true,
            "--list" => o.list = true,
            "--child" => {
                let w = it.next().ok_or("--child needs WORKLOAD ALLOCATOR")?;
                let al = it.next().ok_or("--child needs WORKLOAD ALLOCATOR")?;
                o.child = Some((w.clone(), al.clone()));
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(o)
}

/// `--list`: the workloads and the allocators this build has.
pub fn print_list() {
    println!("workloads:");
    for w in workloads::WORKLOADS {
        println!("  {:>2} {:<17} {}", w.number, w.name, w.about);
    }
    println!("allocators:");
    for s in alloc::all_specs() {
        println!("  {:<12} {}", s.name, alloc::describe(s.which));
    }
    for (n, why) in alloc::skipped() {
        println!("  {n:<12} skipped: {why}");
    }
}
