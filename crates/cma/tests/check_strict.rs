//! The `strict` check level (`CMA_OPTIONS=check=strict`): `default`'s checks,
//! every block's allocation recorded and each free's stack remembered, and
//! every diagnostic about a block followed by the size requested and the
//! stacks (raw return addresses; `cma run` names them, see cma-cli's
//! tests). The level is chosen when cma starts, so each scenario runs in a
//! child process started with it (sampling off: no block is a sampled one,
//! whose own stacks would be printed instead).

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

const SCENARIO: &str = "CMA_TEST_STRICT_SCENARIO";

/// Runs `test` (a test of this file) in a child at the strict level, with
/// `more` options after it.
fn run_child(test: &str, scenario: &str, more: &str) -> (std::process::Output, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("CMA_OPTIONS", format!("check=strict,sample=0{more}"))
        .env(SCENARIO, scenario)
        .output()
        .expect("spawn child");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

fn scenario() -> Option<String> {
    std::env::var(SCENARIO).ok()
}

/// The allocating function the reports must name.
#[inline(never)]
fn make_block(size: usize) -> *mut u8 {
    let p = cma::malloc(size);
    assert!(!p.is_null());
    std::hint::black_box(p)
}

/// The freeing function the reports must name as the first free.
#[inline(never)]
fn release_block(p: *mut u8) {
    // SAFETY: the callers pass a live block of cma's.
    unsafe { cma::free(std::hint::black_box(p)) };
    // Something after the call, so that it is not a tail call (the stack
    // must show this function).
    std::hint::black_box(p);
}

/// The return addresses listed under the indented label that starts with
/// `label` (`allocated by thread`, `freed by thread`...).
fn frames_under(stderr: &str, label: &str) -> Vec<usize> {
    stderr
        .lines()
        .skip_while(|l| !l.trim_start().starts_with(label))
        .skip(1)
        .take_while(|l| l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let address = l.split_whitespace().nth(1)?;
            usize::from_str_radix(address.strip_prefix("0x")?, 16).ok()
        })
        .collect()
}

/// Whether one of `frames` returns into `function` (a return address
/// lies after the call, within the first bytes of these small functions).
fn returns_into(frames: &[usize], function: usize) -> bool {
    frames.iter().any(|&f| f > function && f < function + 256)
}

/// The child's address of a function it printed as `NAME=0x...` (the
/// parent's differs: the executable loads elsewhere in each process).
fn child_address(stderr: &str, name: &str) -> usize {
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=0x")))
        .unwrap_or_else(|| panic!("no {name}= line: {stderr}"));
    usize::from_str_radix(line.trim(), 16).unwrap()
}

/// Prints the addresses of `make_block` and `release_block` for the
/// parent's `child_address`.
fn print_function_addresses() {
    eprintln!(
        "MAKE_BLOCK={:#x}\nRELEASE_BLOCK={:#x}",
        make_block as *const () as usize, release_block as *const () as usize
    );
}

/// The checks every strict report about a 40-byte block from `make_block`
/// passes: the size requested, the threads and the allocation stack.
fn assert_block_history(stderr: &str, misuse: &str) {
    assert!(stderr.contains(misuse), "{stderr}");
    assert!(
        stderr.contains("    block of 40 bytes requested, allocated by thread "),
        "{stderr}"
    );
    let allocated = frames_under(stderr, "allocated by thread ");
    assert!(
        returns_into(&allocated, child_address(stderr, "MAKE_BLOCK")),
        "the allocation stack names make_block: {stderr}"
    );
}

#[test]
fn strict_is_a_level_of_its_own_and_records_every_block_whatever_profile_says() {
    if scenario().is_some() {
        assert_eq!(cma::check_level(), cma::CheckLevel::Strict);
        let p = make_block(40);
        // Recorded with its site although the list said profile=off.
        let leak = cma::leaks()
            .find(|l| l.address == p as usize)
            .expect("the block is live");
        let site = leak.site.expect("strict records every block's site");
        assert!(returns_into(
            site.frames(),
            make_block as *const () as usize
        ));
        // The checked level's trailer is there: the size asked for.
        assert_eq!(cma::block_size(p), 40);
        release_block(p);
        println!("child-ok");
        return;
    }
    for more in [",profile=off", ",profile=sample", ""] {
        let (out, stderr) = run_child(
            "strict_is_a_level_of_its_own_and_records_every_block_whatever_profile_says",
            "level",
            more,
        );
        assert!(out.status.success(), "{more}: {stderr}");
        assert!(!stderr.contains("warning"), "{more}: {stderr}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("child-ok"));
    }
}

#[test]
fn a_double_free_prints_the_size_and_the_allocation_and_first_free_stacks() {
    if scenario().is_some() {
        print_function_addresses();
        let p = make_block(40);
        release_block(p);
        // SAFETY: deliberately freed twice; cma reports and aborts.
        unsafe { cma::free(p) };
        unreachable!("a double free returned");
    }
    let (out, stderr) = run_child(
        "a_double_free_prints_the_size_and_the_allocation_and_first_free_stacks",
        "double-free",
        "",
    );
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{stderr}");
    assert_block_history(&stderr, "cma: double free of 0x");
    assert!(stderr.contains(", freed by thread "), "{stderr}");
    let freed = frames_under(&stderr, "freed by thread ");
    assert!(
        returns_into(&freed, child_address(&stderr, "RELEASE_BLOCK")),
        "the first free's stack names release_block: {stderr}"
    );
    // And the stack of the second free, where it was found.
    assert!(
        !frames_under(&stderr, "free by thread ").is_empty(),
        "{stderr}"
    );
}

#[test]
fn an_overflow_found_at_free_prints_the_size_and_the_allocation_stack() {
    if scenario().is_some() {
        print_function_addresses();
        let p = make_block(40);
        // SAFETY: deliberately one byte past the 40 requested, inside
        // cma's slot.
        unsafe { *p.add(40) = 0x41 };
        // SAFETY: p is live.
        unsafe { cma::free(p) };
        unreachable!("free of an overflowed block returned");
    }
    let (out, stderr) = run_child(
        "an_overflow_found_at_free_prints_the_size_and_the_allocation_stack",
        "overflow",
        "",
    );
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{stderr}");
    assert_block_history(&stderr, "cma: heap buffer overflow");
    assert!(stderr.contains("[in free]"), "{stderr}");
    // Live when found: no free to name.
    assert!(!stderr.contains("freed by thread"), "{stderr}");
}

#[test]
fn a_write_after_free_prints_the_stacks_in_quarantine_and_at_reuse() {
    if let Some(s) = scenario() {
        print_function_addresses();
        let p = make_block(40);
        release_block(p);
        // SAFETY: deliberately writes the freed block (still cma's slot).
        unsafe { *p.add(8) = 1 };
        if s == "exit" {
            // Still in the quarantine: the heap check finds it (on demand,
            // as an error; at exit, reported).
            assert!(matches!(
                cma::check_heap(),
                Err(cma::CmaError::WriteAfterFree { .. })
            ));
            std::process::exit(0);
        } else {
            // No quarantine: the slot comes back at a refill of its
            // class's cache; blocks are kept until it does.
            for _ in 0..100_000 {
                std::hint::black_box(make_block(40));
            }
        }
        unreachable!("the write after free was not reported");
    }
    for (which, more, found_in) in [
        ("exit", "", "[in the exit heap check]"),
        ("reuse", ",quarantine=0", "[in malloc]"),
    ] {
        let (out, stderr) = run_child(
            "a_write_after_free_prints_the_stacks_in_quarantine_and_at_reuse",
            which,
            more,
        );
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "{which}: {stderr}"
        );
        assert_block_history(&stderr, "cma: write after free");
        assert!(stderr.contains(found_in), "{which}: {stderr}");
        let freed = frames_under(&stderr, "freed by thread ");
        assert!(
            returns_into(&freed, child_address(&stderr, "RELEASE_BLOCK")),
            "{which}: {stderr}"
        );
    }
}

#[test]
fn other_threads_are_named_in_the_history() {
    if scenario().is_some() {
        print_function_addresses();
        let p = std::thread::Builder::new()
            .name("maker".into())
            .spawn(|| make_block(40) as usize)
            .unwrap()
            .join()
            .unwrap() as *mut u8;
        release_block(p);
        // SAFETY: deliberately freed twice.
        unsafe { cma::free(p) };
        unreachable!("a double free returned");
    }
    let (out, stderr) = run_child("other_threads_are_named_in_the_history", "threads", "");
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{stderr}");
    assert_block_history(&stderr, "cma: double free of 0x");
    // The allocating thread has ended: its id, without a name.
    let allocated_by = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("allocated by thread "))
        .unwrap();
    let freed_by = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("freed by thread "))
        .unwrap();
    let tid = |l: &str| {
        l.split_whitespace()
            .nth(3)
            .map(|t| t.trim_end_matches(':').to_string())
    };
    assert_ne!(tid(allocated_by), tid(freed_by), "{stderr}");
}
