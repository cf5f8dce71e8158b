//! A Rust program whose `#[global_allocator]` is `cma::Cma`, run under `cma
//! run`: the preloaded libcma is a second engine in the process, which sees
//! only libc's own calls. The report must count the program's allocations
//! (its own engine's) and say that the process ran two engines.
//!
//! This test binary is that program: it runs on the cma crate, and the test
//! runs it again, under `cma run`, with only `allocates_boxes_when_asked`
//! selected.

#[path = "../../cma-capi/tests/common/mod.rs"]
mod common;

use std::process::Command;

use common::{output, scratch};

#[global_allocator]
static ALLOC: engine::Cma = engine::Cma;

/// How many blocks the child allocates through the Rust crate's engine.
const BOXES: u64 = 100_000;

/// Set in the child's environment: only then does it allocate.
const CHILD: &str = "CMA_TWO_ENGINES_CHILD";

#[test]
fn allocates_boxes_when_asked() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let boxes: Vec<Box<u64>> = (0..BOXES)
        .map(|i| Box::new(std::hint::black_box(i)))
        .collect();
    let sum: u64 = boxes.iter().map(|b| **b).sum();
    assert_eq!(sum, BOXES * (BOXES - 1) / 2);
    // One block left on purpose, so the report shows it in use at exit.
    std::mem::forget(std::hint::black_box(Box::new([7u8; 4000])));
}

/// The number after `"key":` in a JSON text, from `from` on.
fn json_number(json: &str, key: &str) -> Option<u64> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = json[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// A number in the text report's line that starts with `label`, the first
/// one after it.
fn text_number(report: &str, label: &str) -> Option<u64> {
    let line = report.lines().find(|l| l.trim_start().starts_with(label))?;
    let rest = &line.trim_start()[label.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(|c| *c != ',')
        .collect();
    digits.parse().ok()
}

#[test]
fn a_rust_program_on_the_cma_crate_is_reported_with_both_engines() {
    let dir = scratch("two-engines");
    let json = dir.join("run.json");
    let me = std::env::current_exe().expect("this test's executable");
    let (o, _, err) = output(
        Command::new(env!("CARGO_BIN_EXE_cma"))
            // A report= of the user's own: `cma run`'s, added after it,
            // must still be the one that counts.
            .env("CMA_OPTIONS", format!("report={}/user.%p", dir.display()))
            .env_remove("CMA_LIB")
            .env(CHILD, "1")
            .arg("run")
            .arg("--json")
            .arg(&json)
            .arg("--")
            .arg(&me)
            .args(["--exact", "allocates_boxes_when_asked", "--test-threads=1"]),
    );
    assert!(o.status.success(), "{}\n{err}", o.status);
    let report = err
        .split("cma: heap report for")
        .nth(1)
        .unwrap_or_else(|| panic!("no report:\n{err}"));
    let allocations = text_number(report, "allocations").expect("an allocations line");
    assert!(
        allocations >= BOXES,
        "the report counts {allocations} allocations, the program made over {BOXES}:\n{report}"
    );
    assert!(
        report.contains("two cma engines"),
        "the report must say that the process ran two engines:\n{report}"
    );
    assert!(
        report.contains("rust-crate") && report.contains("libcma"),
        "the report must name both engines:\n{report}"
    );

    let j = std::fs::read_to_string(&json).expect("the JSON report");
    assert!(json_number(&j, "allocations").unwrap_or(0) >= BOXES, "{j}");
    assert!(
        j.contains("\"engine\":\"rust-crate\"") && j.contains("\"engine\":\"libcma\""),
        "{j}"
    );
}
