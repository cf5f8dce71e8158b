//! `CmaFast`: a program whose global allocator is `cma::CmaFast` runs at the
//! `fast` level, chosen before the standard library's first allocation
//! (which comes before `main`, so a level set from `main` would be too
//! late), unless `CMA_OPTIONS` names a level.

use std::process::Command;

#[global_allocator]
static ALLOC: cma::CmaFast = cma::CmaFast;

const CHILD: &str = "CMA_TEST_CMA_FAST_CHILD";

#[test]
fn cma_fast_runs_at_the_fast_level() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    if std::env::var("CMA_OPTIONS").is_ok_and(|o| o.contains("check=")) {
        eprintln!("skipped: CMA_OPTIONS names a level");
        return;
    }
    assert_eq!(cma::check_level(), cma::CheckLevel::Fast);
    // Everything this test binary allocated went through cma.
    assert!(cma::stats().allocations > 0);
    let v: Vec<u64> = (0..10_000).collect();
    assert_eq!(v.iter().sum::<u64>(), 49_995_000);
}

#[test]
fn a_level_in_cma_options_wins_over_cma_fast() {
    if std::env::var_os(CHILD).is_some() {
        println!("level {:?}", cma::check_level());
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_level_in_cma_options_wins_over_cma_fast",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("CMA_OPTIONS", "check=default")
        .output()
        .expect("spawn child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("level Default"), "{stdout}");
}
