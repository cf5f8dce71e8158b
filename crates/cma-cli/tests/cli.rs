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
    assert!(out.contains("run") && out.contains("bench"), "{out}");
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
