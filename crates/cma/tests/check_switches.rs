//! Each check of the checked levels is a switch (`canary`, `wipe`,
//! `kind_check`, `large_guard`, `stacks` in `CMA_OPTIONS`), and each level
//! a preset of them: a switch named turns its check on or off whatever the
//! level. The switches are chosen when cma starts, so each scenario runs in
//! a child process started with its options; each pair of runs shows the
//! check at work with its switch on and gone with it off.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

const SCENARIO: &str = "CMA_TEST_SWITCH_SCENARIO";

/// Runs `test` (a test of this file) in a child with `options`.
fn run_child(test: &str, options: &str) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("CMA_OPTIONS", options)
        .env(SCENARIO, "run")
        .output()
        .expect("spawn child")
}

fn in_child() -> bool {
    std::env::var_os(SCENARIO).is_some()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The child ran to its end and printed `marker`.
fn assert_ran(out: &Output, marker: &str, options: &str) {
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(marker),
        "{options}: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    );
}

/// The child was stopped with a diagnostic containing `diagnostic`.
fn assert_aborted(out: &Output, diagnostic: &str, options: &str) {
    let err = stderr(out);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{options}: {err}");
    assert!(err.contains(diagnostic), "{options}: {err}");
}

#[test]
fn canary_switches_the_overflow_check() {
    const TEST: &str = "canary_switches_the_overflow_check";
    if in_child() {
        let p = cma::malloc(100);
        // SAFETY: p holds 100 bytes.
        unsafe { core::ptr::write_bytes(p, 0x5a, 100) };
        // SAFETY: one byte past the request, inside cma's slot (the test
        // process stays sound).
        unsafe { *p.add(100) = 0x41 };
        // The trailer still records the requested size: a growing realloc
        // keeps the 100 bytes.
        // SAFETY: p is live.
        let q = unsafe { cma::realloc(p, 5000) };
        // SAFETY: q holds at least 100 bytes.
        assert!(unsafe { core::slice::from_raw_parts(q, 100) }
            .iter()
            .all(|&b| b == 0x5a));
        // SAFETY: q is live.
        unsafe { cma::free(q) };
        println!("canary-off-ok");
        return;
    }
    for options in ["check=default", "check=fast,canary=1"] {
        assert_aborted(&run_child(TEST, options), "heap buffer overflow", options);
    }
    for options in ["check=default,canary=0", "canary=0,check=strict"] {
        assert_ran(&run_child(TEST, options), "canary-off-ok", options);
    }
}

#[test]
fn wipe_switches_the_write_after_free_check_and_calloc_still_zeroes() {
    const TEST: &str = "wipe_switches_the_write_after_free_check_and_calloc_still_zeroes";
    if in_child() {
        // With no quarantine the freed slots come back at once.
        let blocks: Vec<*mut u8> = (0..64).map(|_| cma::malloc(48)).collect();
        for &p in &blocks {
            // SAFETY: p holds 48 bytes.
            unsafe { core::ptr::write_bytes(p, 0x77, 48) };
            // SAFETY: p is live.
            unsafe { cma::free(p) };
            // SAFETY: deliberately a write after free, into a slot cma
            // keeps mapped.
            unsafe { *p = 0x13 };
        }
        let again: Vec<*mut u8> = (0..64).map(|_| cma::calloc(1, 48)).collect();
        assert!(
            again.iter().any(|q| blocks.contains(q)),
            "freed slots are handed out again"
        );
        for &q in &again {
            // SAFETY: q holds 48 bytes.
            assert!(unsafe { core::slice::from_raw_parts(q, 48) }
                .iter()
                .all(|&b| b == 0));
            // SAFETY: q is live.
            unsafe { cma::free(q) };
        }
        println!("wipe-off-ok");
        return;
    }
    let on = "check=default,quarantine=0";
    assert_aborted(&run_child(TEST, on), "write after free", on);
    for options in [
        "check=default,quarantine=0,wipe=0",
        "check=fast,canary=1,quarantine=0",
    ] {
        assert_ran(&run_child(TEST, options), "wipe-off-ok", options);
    }
}

#[test]
fn large_guard_switches_the_guarded_mapping_of_large_blocks() {
    const TEST: &str = "large_guard_switches_the_guarded_mapping_of_large_blocks";
    if in_child() {
        let maps = || {
            std::fs::read_to_string("/proc/self/maps")
                .unwrap()
                .lines()
                .count()
        };
        let before = maps();
        let blocks: Vec<*mut u8> = (0..100).map(|_| cma::malloc(256 << 10)).collect();
        let added = maps().saturating_sub(before);
        for &b in &blocks {
            // SAFETY: each block is live and freed once.
            unsafe { cma::free(b) };
        }
        println!("mappings-added={added}");
        return;
    }
    let added = |options: &str| {
        let out = run_child(TEST, options);
        assert!(out.status.success(), "{options}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.split_once("mappings-added=").map(|(_, n)| n))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .unwrap_or_else(|| panic!("{options}: no count"))
    };
    let guarded = added("check=default");
    let unguarded = added("check=default,large_guard=0");
    assert!(guarded >= 100, "{guarded} mappings for 100 guarded blocks");
    assert!(unguarded < 20, "{unguarded} mappings with large_guard=0");
}

#[test]
fn stacks_switch_the_histories_in_diagnostics() {
    const TEST: &str = "stacks_switch_the_histories_in_diagnostics";
    if in_child() {
        let p = cma::malloc(40);
        // SAFETY: p is live.
        unsafe { cma::free(p) };
        // SAFETY: deliberately the second free of p.
        unsafe { cma::free(p) };
        unreachable!("a double free returned");
    }
    for options in ["check=default,stacks=1", "check=strict"] {
        let out = run_child(TEST, options);
        assert_aborted(&out, "double free", options);
        assert!(
            stderr(&out).contains("    block of 40 bytes requested, allocated by thread "),
            "{options}: {}",
            stderr(&out)
        );
    }
    for options in ["check=default", "check=strict,stacks=0"] {
        let out = run_child(TEST, options);
        assert_aborted(&out, "double free", options);
        assert!(
            !stderr(&out).contains("allocated by thread"),
            "{options}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn switches_are_chosen_before_the_first_allocation() {
    const TEST: &str = "switches_are_chosen_before_the_first_allocation";
    if in_child() {
        let p = cma::malloc(10);
        assert_eq!(
            cma::Options::new()
                .check_switch(cma::CheckSwitch::Wipe, false)
                .apply(),
            Err(cma::OptionsError::ChecksFixed {
                switch: cma::CheckSwitch::Wipe
            })
        );
        // Naming the value in force changes nothing and is allowed.
        assert_eq!(
            cma::Options::new()
                .check_switch(cma::CheckSwitch::Canary, true)
                .apply(),
            Ok(())
        );
        // The list form warns once and goes on.
        cma::apply_options(b"kind_check=0");
        // SAFETY: p is live.
        unsafe { cma::free(p) };
        println!("fixed-ok");
        return;
    }
    let options = "check=default";
    let out = run_child(TEST, options);
    assert_ran(&out, "fixed-ok", options);
    let warnings: Vec<String> = stderr(&out)
        .lines()
        .filter(|l| l.contains("kind_check"))
        .map(str::to_owned)
        .collect();
    assert_eq!(warnings.len(), 1, "{}", stderr(&out));
    assert!(
        warnings[0]
            .contains("option 'kind_check=0': the checks are chosen before the first allocation"),
        "{}",
        warnings[0]
    );
}

#[test]
fn a_malformed_switch_is_a_warning_and_the_preset_stays() {
    const TEST: &str = "a_malformed_switch_is_a_warning_and_the_preset_stays";
    if in_child() {
        let p = cma::malloc(100);
        // SAFETY: one byte past the request, inside cma's slot.
        unsafe { *p.add(100) = 0x41 };
        // SAFETY: p is live.
        unsafe { cma::free(p) };
        unreachable!("the canary stayed on: free reports the overflow");
    }
    let options = "check=default,canary=maybe";
    let out = run_child(TEST, options);
    assert_aborted(&out, "heap buffer overflow", options);
    assert!(
        stderr(&out).contains("canary=maybe"),
        "the bad item is named: {}",
        stderr(&out)
    );
}

#[test]
fn typed_options_and_the_list_agree() {
    let typed = cma::Options::new()
        .check(cma::CheckLevel::Fast)
        .check_switch(cma::CheckSwitch::Canary, true)
        .check_switch(cma::CheckSwitch::Stacks, false);
    assert_eq!(
        cma::Options::parse(b"check=fast,canary=1,stacks=0"),
        Ok(typed)
    );
    for switch in cma::CheckSwitch::ALL {
        let list = format!("{}=1", switch.name());
        assert_eq!(
            cma::Options::parse(list.as_bytes()),
            Ok(cma::Options::new().check_switch(switch, true)),
            "{list}"
        );
    }
}
