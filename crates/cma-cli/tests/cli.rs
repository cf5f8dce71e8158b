//! `cma run` end to end: the report, misuse, exit statuses, JSON, options.

#[path = "../../cma-capi/tests/common/mod.rs"]
mod common;

use std::process::Command;

use common::{compile, have, output, scratch};

fn cma() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cma"));
    c.env_remove("CMA_OPTIONS").env_remove("CMA_LIB");
    c
}

/// The number after `"key":` in a JSON text.
fn json_number(json: &str, key: &str) -> Option<u64> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = json[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

#[test]
fn help_lists_the_run_command() {
    let (o, out, _) = output(cma().arg("--help"));
    assert!(o.status.success());
    assert!(
        out.contains("run") && out.contains("stress") && out.contains("bench"),
        "{out}"
    );
    let (o, out, _) = output(cma().args(["run", "--help"]));
    assert!(o.status.success());
    assert!(
        out.contains("--json") && out.contains("CMA_OPTIONS"),
        "{out}"
    );
}

#[test]
fn exit_status_passes_through_with_a_report() {
    let (o, _, err) = output(cma().args(["run", "--", "sh", "-c", "echo to-stderr >&2; exit 7"]));
    assert_eq!(o.status.code(), Some(7), "{err}");
    assert!(
        err.contains("to-stderr"),
        "the program's stderr passes through: {err}"
    );
    assert!(err.contains("cma: heap report for `sh -c"), "{err}");
    // (dash leaves with _exit, so there is no report to show, only the status.)
    assert!(err.contains("misuse detected    none"), "{err}");
    let (o, _, _) = output(cma().args(["run", "-q", "--", "true"]));
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn missing_program_exits_127() {
    let (o, _, err) = output(cma().args(["run", "--", "/nonexistent/program"]));
    assert_eq!(o.status.code(), Some(127));
    assert!(err.contains("cannot run /nonexistent/program"), "{err}");
}

#[test]
fn misuse_is_shown_and_the_signal_becomes_the_status() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("cli-misuse");
    let exe = compile("cc", "misuse.c", &dir, false, &[]);
    let json = dir.join("report.json");
    let (o, _, err) = output(
        cma()
            .arg("run")
            .arg("--json")
            .arg(&json)
            .arg("--")
            .arg(&exe)
            .arg("double-free"),
    );
    assert_eq!(o.status.code(), Some(128 + 6), "{err}");
    assert!(
        err.contains("misuse detected:\n    cma: double free of 0x"),
        "{err}"
    );
    assert!(
        err.contains("killed by") && err.contains("SIGABRT"),
        "{err}"
    );
    assert!(err.contains("no heap report"), "{err}");
    let j = std::fs::read_to_string(&json).unwrap();
    assert!(
        j.contains("\"signal\":6") && j.contains("\"status\":134"),
        "{j}"
    );
    assert!(j.contains("\"misuse\":[\"cma: double free of 0x"), "{j}");
}

#[test]
fn json_report_counts_a_leak() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("cli-json");
    let exe = compile("cc", "misuse.c", &dir, false, &[]);
    let json = dir.join("leak.json");
    // json=FILE from CMA_OPTIONS works like --json.
    let (o, _, err) = output(cma().args(["run", "-q", "--"]).arg(&exe).arg("leak").env(
        "CMA_OPTIONS",
        format!("purge_delay_ms=100,json={}", json.display()),
    ));
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("heap report"), "-q prints no report: {err}");
    let j = std::fs::read_to_string(&json).unwrap();
    assert!(json_number(&j, "allocations").unwrap() >= 100, "{j}");
    assert!(
        json_number(&j, "bytes_in_use_at_exit").unwrap() >= 100 * 100,
        "{j}"
    );
    assert!(
        json_number(&j, "blocks_in_use_at_exit").unwrap() >= 100,
        "{j}"
    );
    assert!(j.contains("\"busiest_size_classes\":[{\"class\":"), "{j}");
    assert!(j.contains("\"exit_code\":0"), "{j}");

    let (o, _, err) = output(
        cma()
            .args(["run", "--options", "limit_request=1M", "--"])
            .arg(&exe)
            .arg("exit-code"),
    );
    assert_eq!(o.status.code(), Some(42), "{err}");
}

#[test]
fn python_script_on_cma() {
    if !have("python3", "python3") {
        return;
    }
    let code = "import json; d = {str(i): list(range(i % 50)) for i in range(20000)}; print(len(json.dumps(d)))";
    let (plain, want, _) = output(Command::new("python3").args(["-c", code]));
    assert!(plain.status.success());
    let (o, out, err) = output(cma().args(["run", "--", "python3", "-c", code]));
    assert!(o.status.success(), "{err}");
    assert_eq!(out, want, "the program's stdout is untouched");
    assert!(err.contains("busiest size classes"), "{err}");
    assert!(
        err.contains("peak bytes in use") && err.contains("in use at exit"),
        "{err}"
    );
    assert!(err.contains("exit status                       0"), "{err}");
    assert!(
        err.contains("allocations") && err.contains("peak bytes in use"),
        "{err}"
    );
    assert!(
        err.contains("in use at exit") && err.contains("exit status                       0"),
        "{err}"
    );
}

#[test]
fn bench_runs_the_suite_binary_with_its_arguments_and_status() {
    // The suite is its own binary; CMA_BENCH stands in for it here.
    let (o, out, _) = output(
        cma()
            .env("CMA_BENCH", "/bin/echo")
            .args(["bench", "--quick", "--only", "churn"]),
    );
    assert!(o.status.success());
    assert_eq!(out.trim(), "--quick --only churn");
    let (o, _, _) = output(cma().env("CMA_BENCH", "/bin/false").arg("bench"));
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn bench_without_the_suite_binary_says_how_to_build_it() {
    let (o, _, err) = output(
        cma()
            .env("CMA_BENCH", "/nonexistent/cma-bench")
            .args(["bench", "--quick"]),
    );
    assert_eq!(o.status.code(), Some(127));
    assert!(
        err.contains("cma bench: cannot run /nonexistent/cma-bench"),
        "{err}"
    );
}

/// Waits up to 20 s for `path` to exist.
fn wait_for_file(path: &std::path::Path) -> bool {
    let start = std::time::Instant::now();
    while !path.exists() {
        if start.elapsed() > std::time::Duration::from_secs(20) {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    true
}

/// `cma run -- sh -c SCRIPT`, started with its output captured, and with
/// the signals the tests send at their default disposition: a test run
/// under `nohup` (or as a background job) inherits SIGHUP (or SIGINT and
/// SIGQUIT) ignored, a shell cannot trap a signal ignored at its start, and
/// cma rightly passes the ignoring on to the program.
fn spawn_run_sh(script: &str) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let mut command = cma();
    command
        .args(["run", "--", "sh", "-c", script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // SAFETY: between fork and exec the hook only calls signal(2), which is
    // async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            for sig in [
                libc::SIGHUP,
                libc::SIGINT,
                libc::SIGQUIT,
                libc::SIGTERM,
                libc::SIGUSR1,
                libc::SIGUSR2,
            ] {
                libc::signal(sig, libc::SIG_DFL);
            }
            Ok(())
        })
    };
    command.spawn().expect("spawn cma")
}

/// Waits up to 30 s for `child` to end; kills it (and fails) past that.
fn wait_bounded(mut child: std::process::Child) -> std::process::Output {
    let start = std::time::Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            panic!("cma run did not end within 30 s of the signal");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn signals_sent_to_cma_reach_the_program_and_its_status_passes_through() {
    use std::os::unix::process::ExitStatusExt;
    let dir = scratch("forward-signals");
    for (sig, name) in [
        (libc::SIGTERM, "TERM"),
        (libc::SIGHUP, "HUP"),
        (libc::SIGUSR1, "USR1"),
    ] {
        // The program traps the signal, says so and exits 7.
        let ready = dir.join(format!("ready-{name}"));
        let script = format!(
            "trap 'echo got-{name}; exit 7' {name}; touch {}; while :; do sleep 0.05; done",
            ready.display()
        );
        let child = spawn_run_sh(&script);
        assert!(wait_for_file(&ready), "the program did not start");
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(child.id() as i32, sig) };
        let o = wait_bounded(child);
        let out = String::from_utf8_lossy(&o.stdout);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            o.status.code(),
            Some(7),
            "SIG{name}: {:?}\n{out}\n{err}",
            o.status
        );
        assert!(out.contains(&format!("got-{name}")), "SIG{name}: {out}");
        assert!(err.contains("cma: heap report for"), "SIG{name}: {err}");
    }
    // A program that does not trap SIGTERM dies of it: cma reports that,
    // exits 128 + 15, and leaves no orphan behind.
    let pidfile = dir.join("pid");
    let script = format!("echo $$ > {}; exec sleep 30", pidfile.display());
    let child = spawn_run_sh(&script);
    assert!(wait_for_file(&pidfile), "the program did not start");
    std::thread::sleep(std::time::Duration::from_millis(100));
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let o = wait_bounded(child);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(143), "{:?}\n{err}", o.status.signal());
    assert!(err.contains("killed by SIGTERM"), "{err}");
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "the program (pid {}) outlived cma",
        pid.trim()
    );
}

/// A program that leaves a background process holding its stderr (a job,
/// a daemon) still gets its report and status when it exits, not when the
/// last holder of its stderr does.
#[test]
fn a_background_process_holding_stderr_does_not_hold_up_the_report() {
    let dir = scratch("background-stderr");
    let pidfile = dir.join("pid");
    let script = format!(
        "sleep 60 >/dev/null </dev/null & echo $! > {}; exit 3",
        pidfile.display()
    );
    let start = std::time::Instant::now();
    let child = spawn_run_sh(&script);
    let o = wait_bounded(child);
    let elapsed = start.elapsed();
    let background = std::fs::read_to_string(&pidfile).ok();
    if let Some(pid) = background.and_then(|p| p.trim().parse::<i32>().ok()) {
        if pid > 0 {
            // SAFETY: kill has no memory preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("cma: heap report for"), "{err}");
    assert!(
        elapsed < std::time::Duration::from_secs(25),
        "cma run took {elapsed:?}: it waited for the background process"
    );
}

#[test]
fn misuse_in_a_child_process_fails_the_run_with_fail_on_misuse() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("cli-misuse-child");
    let exe = compile("cc", "misuse.c", &dir, false, &[]);
    // The shell goes on after its child's abort and exits 0.
    let script = format!("{} double-free; echo after", exe.display());
    let (o, out, err) = output(cma().args(["run", "--", "sh", "-c", &script]));
    assert_eq!(o.status.code(), Some(0), "without the flag: {err}");
    assert!(out.contains("after"), "{out}");
    // Every misuse line names the process that was stopped.
    let misuse = err
        .lines()
        .find(|l| l.trim_start().starts_with("cma: double free of 0x"))
        .unwrap_or_else(|| panic!("no misuse line: {err}"));
    assert!(
        misuse.contains("[in free] [pid ") && misuse.contains("misuse double-free]"),
        "{misuse}"
    );
    let (o, _, err) = output(cma().args(["run", "--fail-on-misuse", "--", "sh", "-c", &script]));
    assert_eq!(o.status.code(), Some(134), "{err}");
    assert!(err.contains("--fail-on-misuse"), "{err}");
    // A clean run still exits 0 with the flag.
    let (o, _, err) = output(cma().args(["run", "--fail-on-misuse", "--"]).arg(&exe));
    assert_eq!(o.status.code(), Some(0), "{err}");
}

#[test]
fn a_program_that_did_not_load_libcma_is_reported_as_not_on_cma() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("cli-not-on-cma");
    // A library the dynamic loader refuses: it runs the program without it.
    let not_a_library = dir.join("libcma.so");
    std::fs::write(&not_a_library, "not an ELF file\n").unwrap();
    let exe = compile("cc", "misuse.c", &dir, false, &[]);
    let (o, out, err) = output(
        cma()
            .arg("run")
            .arg("--lib")
            .arg(&not_a_library)
            .arg("--")
            .arg(&exe),
    );
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(out.contains("no misuse"), "{out}");
    assert!(
        err.contains("not run on cma: the program did not load"),
        "{err}"
    );
    assert!(
        err.contains("misuse detected    n/a (not run on cma)"),
        "{err}"
    );
    assert!(!err.contains("misuse detected    none"), "{err}");
    assert!(!err.contains("_exit"), "{err}");
    // A program that ran on cma and left with _exit is told apart.
    let (_, _, err) = output(cma().args(["run", "--", "sh", "-c", "exit 3"]));
    assert!(err.contains("misuse detected    none"), "{err}");
    assert!(!err.contains("not run on cma"), "{err}");
}

#[test]
fn options_are_checked_once_before_the_program_runs() {
    use std::os::unix::ffi::OsStrExt;
    // A malformed option is reported once, by cma, not by every process of
    // the tree (here the shell and its two children).
    let (o, _, err) = output(
        cma()
            .args(["run", "--", "sh", "-c", "sh -c true; sh -c true"])
            .env("CMA_OPTIONS", "bogus=1,check=fast"),
    );
    assert!(o.status.success(), "{err}");
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("unknown option 'bogus'"))
        .collect();
    assert_eq!(
        warnings,
        ["cma: warning: unknown option 'bogus' in CMA_OPTIONS ignored"],
        "{err}"
    );
    // A CMA_OPTIONS that is not UTF-8 is checked too, not dropped.
    let (o, _, err) = output(cma().args(["run", "-q", "--", "true"]).env(
        "CMA_OPTIONS",
        std::ffi::OsStr::from_bytes(b"limit_total=\xff"),
    ));
    assert!(o.status.success(), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("cma: warning:")).collect::<Vec<_>>(),
        ["cma: warning: option 'limit_total=?' in CMA_OPTIONS: expected a size like 4096, 64K or 1M; ignored"],
        "{err}"
    );
    // An output path that cannot be written is an error before anything runs.
    let dir = scratch("cli-options-checked");
    let marker = dir.join("ran");
    let (o, _, err) = output(
        cma()
            .args([
                "run",
                "--json",
                "/nonexistent-dir/report.json",
                "--",
                "touch",
            ])
            .arg(&marker),
    );
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot write the JSON report to /nonexistent-dir/report.json"),
        "{err}"
    );
    assert!(!marker.exists(), "the program ran");
    let (o, _, err) = output(
        cma()
            .args(["run", "--", "touch"])
            .arg(&marker)
            .env("CMA_OPTIONS", "json=/nonexistent-dir/report.json"),
    );
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(!marker.exists(), "the program ran");
}

#[test]
fn json_has_a_schema_version_commands_and_bytes_per_class() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("cli-json-schema");
    let exe = compile("cc", "misuse.c", &dir, false, &[]);
    let json = dir.join("tree.json");
    // bash, not dash: it runs its exit handlers, so its own report exists too.
    let script = format!("{} leak; {} leak; true", exe.display(), exe.display());
    let (o, _, err) = output(
        cma()
            .args(["run", "-q", "--json"])
            .arg(&json)
            .args(["--", "bash", "-c", &script]),
    );
    assert!(o.status.success(), "{err}");
    let j = std::fs::read_to_string(&json).unwrap();
    assert!(j.starts_with("{\"schema\":\"cma-run/1\""), "{j}");
    assert!(j.contains("\"on_cma\":true"), "{j}");
    // Each child's report carries its command line.
    let leak_command = format!("\"command\":\"{} leak\"", exe.display());
    assert_eq!(j.matches(&leak_command).count(), 2, "{j}");
    // Per-class entries carry bytes as well as blocks: 100 leaked 100-byte
    // requests sit in 112-byte slots.
    assert!(j.contains("\"block_size\":112,"), "{j}");
    assert!(j.contains("\"bytes_in_use\":11200"), "{j}");
    assert!(j.contains("\"bytes_allocated\":"), "{j}");
}

#[test]
fn stacks_of_sampled_blocks_are_symbolised_after_the_program_stopped() {
    if !have("cc", "gcc") {
        return;
    }
    // With frame pointers and without: the stacks come from unwind tables.
    for (flag, name) in [
        ("-fno-omit-frame-pointer", "cli-sampled-fp"),
        ("-fomit-frame-pointer", "cli-sampled-nofp"),
    ] {
        let dir = scratch(name);
        let exe = compile("cc", "sampled.c", &dir, false, &[flag]);
        let json = dir.join("report.json");
        let (o, _, err) = output(
            cma()
                .args(["run", "--options", "sample=1", "--json"])
                .arg(&json)
                .arg("--")
                .arg(&exe)
                .arg("write-after-free"),
        );
        assert_eq!(o.status.code(), Some(128 + 6), "{err}");
        let report = &err[err.find("misuse detected:").expect("a misuse section")..];
        assert!(
            report.contains("    cma: use after free: write of 0x"),
            "{report}"
        );
        // Each stack, symbolised: the allocating function with its file
        // and line; cma's own frames counted, not shown.
        let section = |label: &str| -> String {
            report
                .lines()
                .skip_while(|l| !l.trim_start().starts_with(label))
                .skip(1)
                .take_while(|l| l.starts_with("        "))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let allocated = section("allocated by thread");
        assert!(
            allocated.contains("frames inside cma")
                && allocated.contains("make_block at ")
                && allocated.contains("sampled.c:"),
            "{flag}: {report}"
        );
        let freed = section("freed by thread");
        assert!(
            freed.contains("main at ") && freed.contains("sampled.c:"),
            "{flag}: {report}"
        );
        let access = section("access by thread");
        assert!(
            access
                .lines()
                .next()
                .is_some_and(|l| l.contains("main at ")),
            "{flag}: the access stack starts at the faulting line: {report}"
        );
        let json = std::fs::read_to_string(&json).unwrap();
        assert!(
            json.contains("\"misuse_stacks\"") && json.contains("make_block at "),
            "{json}"
        );
    }
}

#[test]
fn strict_diagnostics_name_the_allocating_and_first_freeing_functions() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("cli-strict");
    let exe = compile("cc", "strict.c", &dir, false, &[]);
    for (misuse, line, first_free) in [
        ("double-free", "    cma: double free of 0x", true),
        (
            "overflow",
            "    cma: heap buffer overflow: the bytes after the block at 0x",
            false,
        ),
        (
            "write-after-free",
            "    cma: write after free: the freed block at 0x",
            true,
        ),
    ] {
        let (o, _, err) = output(
            cma()
                .args(["run", "--options", "check=strict,sample=0", "--"])
                .arg(&exe)
                .arg(misuse),
        );
        assert_eq!(o.status.code(), Some(128 + 6), "{misuse}: {err}");
        let report = &err[err.find("misuse detected:").expect("a misuse section")..];
        assert!(report.contains(line), "{misuse}: {report}");
        assert!(
            report.contains("block of 40 bytes requested, allocated by thread "),
            "{misuse}: {report}"
        );
        let section = |label: &str| -> String {
            report
                .lines()
                .skip_while(|l| !l.trim_start().starts_with(label))
                .skip(1)
                .take_while(|l| l.starts_with("        "))
                .collect::<Vec<_>>()
                .join("\n")
        };
        // Symbolised: the allocating function with its file and line, cma's
        // own frames counted, not shown.
        let allocated = section("allocated by thread");
        assert!(
            allocated.contains("frames inside cma")
                && allocated.contains("make_block at ")
                && allocated.contains("strict.c:"),
            "{misuse}: {report}"
        );
        let freed = section("freed by thread");
        if first_free {
            assert!(
                freed.contains("release_block at ") && freed.contains("strict.c:"),
                "{misuse}: {report}"
            );
        } else {
            assert!(freed.is_empty(), "{misuse}: a live block: {report}");
        }
    }
    // A clean run at strict: no warning, no misuse.
    let (o, _, err) = output(
        cma()
            .args(["run", "--options", "check=strict", "--"])
            .arg(&exe)
            .arg("ok"),
    );
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("cma: warning"), "{err}");
    assert!(err.contains("misuse detected    none"), "{err}");
}
