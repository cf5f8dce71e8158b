//! `cma run`: runs a program with libcma preloaded and reports its heap.
//!
//! How it works: the program gets `LD_PRELOAD=<libcma.so>` and
//! `CMA_OPTIONS=<yours>,report=<tmp>/report.%p,loaded=<tmp>/loaded.%p`;
//! libcma creates the `loaded` file when it loads and writes its heap report
//! to the `report` file when the process exits (`%p` is the pid, so
//! processes the program forks write their own). No `loaded` file means the
//! program never ran on cma, and the report says so. The program's stderr passes through
//! `cma` line by line, and lines where libcma reported misuse (`cma: ...`)
//! are kept for the report. The program's exit status is `cma`'s; death by a
//! signal becomes 128 + the signal number, as in a shell.

use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;

use crate::json::Json;
use crate::report::{format_text, grouped, HeapReport, ProcessReport};

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  cma run -- python3 -c 'print(sum(range(10**6)))'
  cma run --json heap.json -- sqlite3 test.db 'select count(*) from t'
  CMA_OPTIONS=limit_total=64M cma run -- ./my-program
  CMA_OPTIONS=check=strict cma run -- ./my-test   # misuse reports name where each block was allocated and first freed
  cma run --leaks --fail-on-leak -- ./my-test
  cma run --profile dhat.json -- ./my-program   # open in dh_view.html or profiler.firefox.com
  CMA_OPTIONS=profile=sample cma run --leaks -- ./my-service

libcma.so is found via --lib, then $CMA_LIB, then next to the cma binary
(also in its deps/ and ../lib/ directories). CMA_OPTIONS is passed on to the
program; json=FILE in it is the same as --json FILE.")]
pub struct RunArgs {
    /// Also write the report (and the exit status, and any misuse) as JSON to FILE
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// How many of the busiest size classes to show
    #[arg(long, value_name = "N", default_value_t = 8)]
    top: usize,

    /// More cma options for the program, added to CMA_OPTIONS (e.g. limit_total=64M)
    #[arg(long, value_name = "OPTIONS")]
    options: Option<String>,

    /// The libcma.so to preload
    #[arg(long, value_name = "PATH")]
    lib: Option<PathBuf>,

    /// Print no report on stderr (the JSON file, if asked for, is still written)
    #[arg(long, short)]
    quiet: bool,

    /// Exit with 134 when cma stopped any process of the tree for misuse,
    /// even if the program itself exited 0 (for CI jobs)
    #[arg(long)]
    fail_on_misuse: bool,

    /// Report the blocks still live when the program exits, grouped by
    /// allocation site (function, file:line), largest first; blocks the
    /// program's start-up, the C library, the loader or the Rust runtime
    /// allocated for themselves are counted apart. Records every block
    /// (profile=all) unless CMA_OPTIONS says profile=sample
    #[arg(long)]
    leaks: bool,

    /// Exit with 23 (LeakSanitizer's status) when the program exited 0
    /// but leaked (implies --leaks)
    #[arg(long)]
    fail_on_leak: bool,

    /// Write the heap profile as DHAT's JSON (dhatFileVersion 2: valgrind's
    /// dh_view.html and the Firefox Profiler open it) to FILE, and show the
    /// top sites by peak and total bytes. Records every block (profile=all)
    /// unless CMA_OPTIONS says profile=sample
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,

    /// The program to run, and its arguments (after `--`)
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PROGRAM"
    )]
    command: Vec<OsString>,
}

/// Finds libcma.so: `explicit`, `$CMA_LIB`, then next to this executable.
pub fn find_lib(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return check_lib(p);
    }
    if let Some(p) = std::env::var_os("CMA_LIB") {
        return check_lib(Path::new(&p));
    }
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the cma executable: {e}"))?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let candidates = [
        dir.join("libcma.so"),
        dir.join("deps").join("libcma.so"),
        dir.join("../lib/libcma.so"),
        dir.join("../lib/cma/libcma.so"),
    ];
    // Next to the binary, the newest wins: cargo leaves libcma.so both in
    // target/<profile>/ (built on its own) and in deps/ (built with cma).
    let newest = candidates[..2]
        .iter()
        .filter_map(|p| Some((fs::metadata(p).ok()?.modified().ok()?, p)))
        .max_by_key(|(t, _)| *t)
        .map(|(_, p)| p.clone());
    if let Some(p) = newest.or_else(|| candidates[2..].iter().find(|p| p.is_file()).cloned()) {
        return check_lib(&p);
    }
    Err(format!(
        "cannot find libcma.so (looked in {}); build it with `cargo build --release -p cma-capi` or set CMA_LIB",
        candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    ))
}

fn check_lib(p: &Path) -> Result<PathBuf, String> {
    fs::canonicalize(p).map_err(|e| format!("libcma.so at {}: {e}", p.display()))
}

/// The version of `--json`'s layout (README, "The JSON report of cma
/// run"); it changes when a field changes meaning or goes away.
const JSON_SCHEMA: &str = "cma-run/1";

/// `cma`'s status when the program leaked under `--fail-on-leak` (the
/// exit code LeakSanitizer uses).
const LEAK_STATUS: u8 = 23;

/// The last `profile=` value in a `CMA_OPTIONS` list.
fn profile_option(options: &str) -> Option<engine::ProfileMode> {
    let mut mode = None;
    engine::options::parse(options.as_bytes(), |item| {
        if let Ok(engine::options::Setting::Profile(m)) = item {
            mode = Some(m);
        }
    });
    mode
}

/// The last `json=` value in a `CMA_OPTIONS` list, read with the engine's
/// parser.
fn json_option(options: &str) -> Option<String> {
    let mut path = None;
    engine::options::parse(options.as_bytes(), |item| {
        if let Ok(engine::options::Setting::Json(p)) = item {
            path = Some(String::from_utf8_lossy(p).into_owned());
        }
    });
    path
}

/// The command as a shell would take it back: words made only of safe
/// characters as they are, every other word in single quotes (a quote
/// inside as `'\''`), so that the report's header cannot be misread.
fn shell_words(command: &[OsString]) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    command
        .iter()
        .map(|a| {
            let word = a.to_string_lossy();
            if !word.is_empty() && word.chars().all(safe) {
                word.into_owned()
            } else {
                format!("'{}'", word.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The user's options (CMA_OPTIONS, then --options), checked once, here,
/// with the engine's parser: an item it cannot honour is reported once on
/// cma's stderr and left out of what the program's processes get, so none
/// of them warns again (a tree of 35 processes used to print 35 copies).
/// Bytes, not UTF-8: a CMA_OPTIONS that is not UTF-8 is checked like any
/// other instead of dropped.
fn checked_options(parts: &[&[u8]]) -> Vec<u8> {
    let mut kept = Vec::new();
    for part in parts {
        engine::options::sort_items(
            part,
            |item| {
                if !kept.is_empty() {
                    kept.push(b',');
                }
                kept.extend_from_slice(item);
            },
            |e| eprintln!("cma: warning: {e}"),
        );
    }
    kept
}

/// Whether the JSON report can be written at `path`, found out before the
/// program runs (a long run's data would otherwise be lost at its end).
fn check_writable(path: &Path) -> std::io::Result<()> {
    let existed = path.exists();
    fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)?;
    if !existed {
        let _ = fs::remove_file(path);
    }
    Ok(())
}

/// What the child wrote on stderr that came from cma.
#[derive(Default)]
struct CmaLines {
    misuse: Vec<String>,
    /// For each misuse line, the indented lines that followed it: the
    /// stacks of a sampled block, raw (see `symbolize`).
    stacks: Vec<Vec<String>>,
    warnings: Vec<String>,
    /// The misuse whose indented lines come now, if any.
    last: Option<usize>,
}

impl CmaLines {
    fn take(&mut self, line: &[u8]) {
        let Some(rest) = line.strip_prefix(b"cma: ") else {
            if line.starts_with(b"    ") {
                if let Some(stack) = self.last.and_then(|i| self.stacks.get_mut(i)) {
                    if stack.len() < 256 {
                        stack.push(String::from_utf8_lossy(line).trim_end().to_string());
                    }
                    return;
                }
            }
            self.last = None;
            return;
        };
        self.last = None;
        let text = String::from_utf8_lossy(line).trim_end().to_string();
        if rest.starts_with(b"leak report:") {
            // The program asked for it (`cma_report_leaks`): not misuse.
            return;
        }
        if rest.starts_with(b"warning:") {
            if self.warnings.len() < 32 && !self.warnings.contains(&text) {
                self.warnings.push(text);
            }
        } else if self.misuse.len() < 32 && !self.misuse.contains(&text) {
            self.misuse.push(text);
            self.stacks.push(Vec::new());
            self.last = Some(self.misuse.len() - 1);
        }
    }
}

/// Copies the child's stderr to ours as it comes, and collects cma's lines.
/// How long `cma run` waits, once the program has exited, for the rest of
/// its stderr (what processes it left behind still hold open).
const STDERR_GRACE: Duration = Duration::from_secs(5);

fn tee_stderr(mut from: impl Read, lines: Arc<Mutex<CmaLines>>) {
    let mut buf = [0u8; 16 * 1024];
    let mut partial: Vec<u8> = Vec::new();
    let stderr = std::io::stderr();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let chunk = &buf[..n];
        let _ = stderr.lock().write_all(chunk);
        for &b in chunk {
            if b == b'\n' {
                if let Ok(mut l) = lines.lock() {
                    l.take(&partial);
                }
                partial.clear();
            } else if partial.len() < 4096 {
                partial.push(b);
            }
        }
    }
    if !partial.is_empty() {
        if let Ok(mut l) = lines.lock() {
            l.take(&partial);
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGABRT => "SIGABRT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGQUIT => "SIGQUIT",
        _ => "signal",
    }
}

fn scratch_dir() -> std::io::Result<PathBuf> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("cma-run-{}-{nanos}", std::process::id()));
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Reads every report in `dir`, grouped by process: the one of `pid` and
/// the others (processes the program forked). A process that ran two
/// engines (a Rust program on the cma crate, with libcma preloaded) has a
/// report from each.
fn read_reports(dir: &Path, pid: u32) -> (Option<ProcessReport>, Vec<ProcessReport>) {
    let mut reports = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if let Ok(text) = fs::read_to_string(entry.path()) {
                reports.extend(HeapReport::parse_all(&text));
            }
        }
    }
    let mut main = None;
    let mut others = Vec::new();
    for process in ProcessReport::group(reports) {
        if process.pid() == u64::from(pid) {
            main = Some(process);
        } else {
            others.push(process);
        }
    }
    (main, others)
}

pub fn main(args: RunArgs) -> ExitCode {
    match run(args) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("cma: {msg}");
            ExitCode::from(125)
        }
    }
}

fn run(args: RunArgs) -> Result<ExitCode, String> {
    let lib = find_lib(args.lib.as_deref())?;
    let user_options = std::env::var_os("CMA_OPTIONS").unwrap_or_default();
    let extra = args.options.clone().unwrap_or_default();
    let checked = checked_options(&[user_options.as_bytes(), extra.as_bytes()]);
    let json_path = args
        .json
        .clone()
        .or_else(|| json_option(&String::from_utf8_lossy(&checked)).map(PathBuf::from));
    if let Some(path) = &json_path {
        if let Err(e) = check_writable(path) {
            eprintln!(
                "cma: cannot write the JSON report to {}: {e}; nothing run",
                path.display()
            );
            return Ok(ExitCode::from(2));
        }
    }
    if let Some(path) = &args.profile {
        if let Err(e) = check_writable(path) {
            eprintln!(
                "cma: cannot write the profile to {}: {e}; nothing run",
                path.display()
            );
            return Ok(ExitCode::from(2));
        }
    }
    let want_leaks = args.leaks || args.fail_on_leak;
    let profiling = want_leaks || args.profile.is_some();
    let dir = scratch_dir().map_err(|e| format!("cannot create a scratch directory: {e}"))?;
    let mode = profile_option(&String::from_utf8_lossy(&checked));
    let mut options = checked;
    let mut own = vec![
        format!("report={}", dir.join("report.%p").display()),
        format!("loaded={}", dir.join("loaded.%p").display()),
    ];
    if profiling {
        if mode.is_none() || mode == Some(engine::ProfileMode::Off) {
            own.push("profile=all".to_string());
        }
        own.push(format!("profile_file={}", dir.join("profile.%p").display()));
    }
    for own in own {
        if !options.is_empty() {
            options.push(b',');
        }
        options.extend_from_slice(own.as_bytes());
    }
    let mut preload = lib.clone().into_os_string();
    if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
        preload.push(":");
        preload.push(old);
    }

    let program = &args.command[0];
    // Before the program and any thread start: see `forward`.
    crate::forward::block();
    let started = Instant::now();
    let mut command = Command::new(program);
    command
        .args(&args.command[1..])
        .env("LD_PRELOAD", &preload)
        .env("CMA_OPTIONS", OsString::from_vec(options))
        .stderr(Stdio::piped());
    // SAFETY: the hook only calls sigprocmask, which is async-signal-safe.
    unsafe { command.pre_exec(crate::forward::unblock_in_child) };
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = fs::remove_dir_all(&dir);
            eprintln!("cma: cannot run {}: {e}", program.to_string_lossy());
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            return Ok(ExitCode::from(code));
        }
    };
    // Signals sent to cma are for the program; cma waits and reports.
    crate::forward::start(child.id());
    let lines = Arc::new(Mutex::new(CmaLines::default()));
    let (tee_done, tee_finished) = std::sync::mpsc::channel::<()>();
    let tee = child.stderr.take().map(|err| {
        let lines = Arc::clone(&lines);
        std::thread::spawn(move || {
            tee_stderr(err, lines);
            let _ = tee_done.send(());
        })
    });
    let status = child
        .wait()
        .map_err(|e| format!("waiting for the program: {e}"))?;
    if tee.is_some() {
        // The program's stderr ends when every process holding it has
        // closed it: a background job or a daemon it started may hold it
        // for as long as it lives. Their lines are still passed on, but the
        // report does not wait for them past a grace period.
        let _ = tee_finished.recv_timeout(STDERR_GRACE);
    }
    let elapsed = started.elapsed();
    let pid = child.id();
    let (report, others) = read_reports(&dir, pid);
    let raw_profiles: Vec<crate::profile::RawProfile> = crate::profile::read_profiles(&dir)
        .into_iter()
        .filter(|p| p.pid == u64::from(pid))
        .collect();
    // libcma creates loaded.<pid> from its constructor: without it the
    // program never ran on cma (statically linked, or the loader refused
    // the library), and there is nothing to report, misuse included.
    let on_cma = report.is_some() || dir.join(format!("loaded.{pid}")).exists();
    let _ = fs::remove_dir_all(&dir);
    let lines = std::mem::take(&mut *lines.lock().unwrap_or_else(|e| e.into_inner()));

    let (exit_code, signal) = (status.code(), status.signal());
    let mut code: u8 = match (exit_code, signal) {
        (Some(c), _) => (c & 0xff) as u8,
        (None, Some(s)) => (128 + s).clamp(0, 255) as u8,
        _ => 1,
    };
    // A child's misuse abort may hide behind a parent that exits 0 (a shell
    // that goes on): the status of the process cma stopped, 128 + SIGABRT.
    let failed_for_misuse = args.fail_on_misuse && code == 0 && !lines.misuse.is_empty();
    if failed_for_misuse {
        code = 128 + libc::SIGABRT as u8;
    }
    let shown = shell_words(&args.command);
    // The stacks of sampled blocks, symbolised now that the program stopped.
    let mut symbolizer = crate::symbolize::Symbolizer::default();
    let described: Vec<Vec<String>> = lines
        .stacks
        .iter()
        .map(|raw| symbolizer.describe(raw))
        .collect();
    let profile = if profiling {
        crate::profile::Profile::build(&raw_profiles, &mut symbolizer)
    } else {
        None
    };
    let leaked = want_leaks && profile.as_ref().is_some_and(|p| !p.leaks().0.is_empty());
    let failed_for_leak = args.fail_on_leak && code == 0 && leaked;
    if failed_for_leak {
        code = LEAK_STATUS;
    }
    if let (Some(path), Some(p)) = (&args.profile, &profile) {
        if let Err(e) = fs::write(path, format!("{}\n", p.to_dhat())) {
            eprintln!("cma: cannot write {}: {e}", path.display());
        }
    }

    if !args.quiet {
        let mut out = String::new();
        out.push_str(&format!(
            "\ncma: heap report for `{shown}` (pid {pid}, {:.2} s)\n",
            elapsed.as_secs_f64()
        ));
        match &report {
            Some(r) => out.push_str(&format_text(r, args.top)),
            None if !on_cma => out.push_str(&format!(
                "  not run on cma: the program did not load {} (a statically linked program \
                 ignores LD_PRELOAD; or the dynamic loader refused the library: see its message above)\n",
                lib.display()
            )),
            None => out.push_str(&match signal {
                Some(s) => format!(
                    "  no heap report: the program was killed by {} ({s}) before it could exit\n",
                    signal_name(s)
                ),
                None => "  no heap report: the program did not run its exit handlers \
                         (it left with _exit)\n"
                    .to_string(),
            }),
        }
        if !others.is_empty() {
            let total: u64 = others.iter().map(|p| p.total().allocations).sum();
            let two = others.iter().filter(|p| p.several_engines()).count();
            let engines = match two {
                0 => String::new(),
                n => format!("; {n} of them ran two cma engines, counted together"),
            };
            out.push_str(&format!(
                "  child processes    {:>16}  also ran on cma ({} allocations between them{engines})\n",
                others.len(),
                grouped(total)
            ));
        }
        if lines.misuse.is_empty() && !on_cma && others.is_empty() {
            out.push_str("  misuse detected    n/a (not run on cma)\n");
        } else if lines.misuse.is_empty() {
            out.push_str("  misuse detected    none\n");
        } else {
            out.push_str("  misuse detected:\n");
            for (l, stacks) in lines.misuse.iter().zip(&described) {
                out.push_str(&format!("    {l}\n"));
                for s in stacks {
                    out.push_str(&format!("      {s}\n"));
                }
            }
        }
        out.push_str(&match (exit_code, signal) {
            (Some(c), _) => format!("  exit status        {c:>16}\n"),
            (None, Some(s)) => format!(
                "  killed by          {:>16}  (exit status {code})\n",
                signal_name(s)
            ),
            _ => format!("  exit status        {code:>16}\n"),
        });
        if profiling {
            match &profile {
                Some(p) => {
                    if want_leaks {
                        out.push_str(&crate::profile::leaks_text(p, args.top));
                    }
                    if args.profile.is_some() {
                        out.push_str(&p.top_sites_text(5));
                    }
                }
                None if on_cma => out.push_str(
                    "  leaks and profile  n/a: the program wrote no heap profile (it did not exit normally)\n",
                ),
                None => {}
            }
            if let (Some(path), Some(_)) = (&args.profile, &profile) {
                out.push_str(&format!(
                    "  heap profile       {:>16}  (DHAT JSON: open it in dh_view.html or https://profiler.firefox.com)\n",
                    path.display()
                ));
            }
        }
        if failed_for_misuse {
            out.push_str(&format!(
                "  cma exits with     {code:>16}  (--fail-on-misuse: a process was stopped for misuse)\n"
            ));
        }
        if failed_for_leak {
            out.push_str(&format!(
                "  cma exits with     {code:>16}  (--fail-on-leak: the program leaked)\n"
            ));
        }
        let _ = std::io::stderr().write_all(out.as_bytes());
    }

    if let Some(path) = json_path {
        let j = Json::object(vec![
            ("schema", Json::from(JSON_SCHEMA)),
            (
                "command",
                Json::Array(
                    args.command
                        .iter()
                        .map(|a| Json::from(&*a.to_string_lossy()))
                        .collect(),
                ),
            ),
            ("pid", u64::from(pid).into()),
            ("exit_code", exit_code.map(i64::from).into()),
            ("signal", signal.map(i64::from).into()),
            ("status", u64::from(code).into()),
            ("on_cma", Json::Bool(on_cma)),
            ("wall_seconds", Json::Float(elapsed.as_secs_f64())),
            (
                "report",
                report.as_ref().map_or(Json::Null, |r| r.to_json(args.top)),
            ),
            (
                "misuse",
                Json::Array(
                    lines
                        .misuse
                        .iter()
                        .map(|l| Json::from(l.as_str()))
                        .collect(),
                ),
            ),
            (
                "misuse_stacks",
                Json::Array(
                    described
                        .iter()
                        .map(|s| Json::Array(s.iter().map(|l| Json::from(l.as_str())).collect()))
                        .collect(),
                ),
            ),
            (
                "warnings",
                Json::Array(
                    lines
                        .warnings
                        .iter()
                        .map(|l| Json::from(l.as_str()))
                        .collect(),
                ),
            ),
            (
                "child_processes",
                Json::Array(others.iter().map(|r| r.to_json(args.top)).collect()),
            ),
            (
                "leaks",
                match &profile {
                    Some(p) if want_leaks => crate::profile::leaks_json(p),
                    _ => Json::Null,
                },
            ),
        ]);
        if let Err(e) = fs::write(&path, format!("{j}\n")) {
            eprintln!("cma: cannot write {}: {e}", path.display());
        }
    }
    Ok(ExitCode::from(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_is_quoted_as_a_shell_would() {
        let words = |w: &[&str]| w.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            shell_words(&words(&["sh", "-c", "ls -R /usr/share/doc >/dev/null"])),
            "sh -c 'ls -R /usr/share/doc >/dev/null'"
        );
        assert_eq!(
            shell_words(&words(&["echo", "it's", ""])),
            r"echo 'it'\''s' ''"
        );
        assert_eq!(
            shell_words(&words(&["/bin/true", "a=b,c"])),
            "/bin/true a=b,c"
        );
    }

    #[test]
    fn options_are_found() {
        assert_eq!(json_option("a=1,json=/x.json").as_deref(), Some("/x.json"));
        assert_eq!(json_option("json=a,json=b").as_deref(), Some("b"));
        assert_eq!(json_option(""), None);
    }

    #[test]
    fn cma_lines_are_sorted_out() {
        let mut l = CmaLines::default();
        l.take(b"cma: double free of 0x10 (size class 1, 16-byte blocks) [in free]");
        l.take(b"cma: warning: unknown option 'x' in CMA_OPTIONS ignored");
        l.take(b"cma: warning: unknown option 'x' in CMA_OPTIONS ignored");
        l.take(b"python: cma: not ours");
        l.take(b"cma: leak report: 3 live blocks (96 bytes), 0 ignored (0 bytes) [pid 1: t]");
        l.take(b"    0x0000000000001000 32 bytes");
        assert_eq!(l.misuse.len(), 1);
        assert_eq!(l.warnings.len(), 1);
        assert!(l.stacks[0].is_empty());
        l.take(b"cma: use after free: read of 0x10 [in a memory access]");
        l.take(b"    allocated by thread 1 (t):");
        l.take(b"      #0 0x0000000000401000 /bin/t+0x1000");
        l.take(b"not cma's");
        l.take(b"    indented, but not cma's");
        assert_eq!(l.misuse.len(), 2);
        assert_eq!(l.stacks[1].len(), 2);
    }
}
