//! The check level cannot change under live blocks: once any block may have
//! been handed out, `apply_options("check=...")` with another level is
//! refused with one warning, and blocks allocated before it stay valid.
//! (Before, switching from `fast` to `default` made the next free of an
//! older block report a false heap buffer overflow and abort.)
//!
//! The scenario runs in a child process (the test binary re-executes itself),
//! so that its stderr can be checked and an abort would show as a signal.

use std::process::Command;

const CHILD_VAR: &str = "CMA_LEVEL_CHANGE_CHILD";

#[test]
fn level_change_child() {
    if std::env::var_os(CHILD_VAR).is_none() {
        return;
    }
    let p = cma::malloc(40);
    assert!(!p.is_null());
    // SAFETY: a fresh block of 40 bytes.
    unsafe { std::ptr::write_bytes(p, 7, 40) };
    cma::apply_options(b"check=fast");
    assert_eq!(cma::check_level(), cma::CheckLevel::Default);
    // SAFETY: still live.
    let block = unsafe { std::slice::from_raw_parts(p, 40) };
    assert!(block.iter().all(|&b| b == 7));
    // SAFETY: allocated above, freed once.
    unsafe { cma::free(p) };
    // Asking for the level in force is no change, and says nothing.
    cma::apply_options(b"check=default");
    println!("level change: survived");
}

#[test]
fn a_level_change_after_the_first_allocation_is_refused_and_old_blocks_stay_valid() {
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "level_change_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_VAR, "1")
        .env_remove("CMA_OPTIONS")
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}\n{stdout}\n{stderr}", out.status);
    assert!(
        stdout.contains("level change: survived"),
        "{stdout}\n{stderr}"
    );
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.starts_with("cma: ")).collect();
    assert_eq!(
        warnings,
        ["cma: warning: option 'check=fast': the check level is chosen before the first allocation (set it in CMA_OPTIONS); ignored"],
        "{stderr}"
    );
}
