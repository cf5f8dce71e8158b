//! A Rust program on `cma::Cma` writes the heap report `report=` asks for,
//! from the engine's `.fini_array` destructor, in the format libcma writes
//! (`engine rust-crate`); without `report=` it writes nothing. A file left
//! by an earlier process of the same name is replaced, not appended to.
//!
//! Each scenario runs in a child process (this test binary, run again with
//! only `report_child` selected), since the report is written at exit.

use std::path::Path;
use std::process::{Command, Output};

#[global_allocator]
static ALLOC: cma::Cma = cma::Cma;

const CHILD_VAR: &str = "CMA_REPORT_FILE_CHILD";
const BOXES: u64 = 20_000;

#[test]
fn report_child() {
    let Some(what) = std::env::var_os(CHILD_VAR) else {
        return;
    };
    let boxes: Vec<Box<u64>> = (0..BOXES)
        .map(|i| Box::new(std::hint::black_box(i)))
        .collect();
    assert_eq!(boxes.len() as u64, BOXES);
    if what == "second-destination" {
        // The first destination holds; another is refused with a warning,
        // the same one again is no change.
        cma::apply_options(b"report=/nonexistent/elsewhere");
        let first = std::env::var("CMA_OPTIONS").unwrap();
        cma::apply_options(first.as_bytes());
    }
}

fn run_child(what: &str, options: Option<&str>) -> Output {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args(["--exact", "report_child", "--test-threads=1"])
        .env(CHILD_VAR, what)
        .env_remove("CMA_OPTIONS")
        .env_remove("LD_PRELOAD");
    if let Some(options) = options {
        cmd.env("CMA_OPTIONS", options);
    }
    let out = cmd.output().expect("run the child");
    assert!(out.status.success(), "{out:?}");
    out
}

fn field(report: &str, key: &str) -> Option<u64> {
    report.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_rust_program_writes_its_report_where_report_says() {
    let dir = scratch("report-file-per-pid");
    run_child("plain", Some(&format!("report={}/heap.%p", dir.display())));
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert_eq!(files.len(), 1, "one report, named by the pid");
    let text = std::fs::read_to_string(files[0].path()).unwrap();
    let pid = field(&text, "pid").expect("a pid line");
    assert_eq!(
        files[0].file_name().to_string_lossy(),
        format!("heap.{pid}")
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "cma-report 3", "{text}");
    assert!(
        lines[2].starts_with("image ") && lines[2].len() == 6 + 32,
        "{text}"
    );
    assert_eq!(lines[3], "engine rust-crate", "{text}");
    assert!(
        lines[4].starts_with("command ") && lines[4].contains("report_child"),
        "{text}"
    );
    assert!(field(&text, "allocations").unwrap() >= BOXES, "{text}");
    assert_eq!(text.matches("cma-report").count(), 1, "{text}");
    assert!(text.ends_with("\nend\n"), "{text}");
}

#[test]
fn report_stderr_prints_it_and_no_report_option_prints_nothing() {
    let out = run_child("stderr", Some("report=stderr"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cma-report 3\n") && err.contains("\nengine rust-crate\n"),
        "{err}"
    );

    let out = run_child("none", None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("cma-report"),
        "no report= and yet a report: {err}"
    );
    let out = run_child("other", Some("purge_delay_ms=100"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("cma-report"),
        "no report= and yet a report: {err}"
    );
}

#[test]
fn an_earlier_process_report_of_the_same_name_is_replaced() {
    let dir = scratch("report-file-fixed");
    let path = dir.join("heap");
    std::fs::write(
        &path,
        "cma-report 3\npid 1\nimage 00000000000000000000000000000000\nengine libcma\nallocations 5\nend\n",
    )
    .unwrap();
    let options = format!("report={}", path.display());
    for round in 0..2 {
        run_child("fixed", Some(&options));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.matches("cma-report").count(),
            1,
            "round {round}: {text}"
        );
        assert_ne!(field(&text, "pid"), Some(1), "{text}");
        assert!(field(&text, "allocations").unwrap() >= BOXES, "{text}");
    }
}

#[test]
fn the_last_report_of_a_list_counts_and_the_first_list_holds() {
    let dir = scratch("report-file-second");
    // In one list the last report= counts, as for every key (`cma run`
    // adds its own after the user's); a later list cannot move it.
    let out = run_child(
        "second-destination",
        Some(&format!(
            "report=/nonexistent/first,report={}/heap.%p",
            dir.display()
        )),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("cma: ")).collect();
    assert_eq!(
        warnings,
        ["cma: warning: option 'report=/nonexistent/elsewhere': the report's destination is chosen once, by the first list of options that names one; ignored"],
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
}
