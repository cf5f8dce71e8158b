//! Sampled guarded blocks under LD_PRELOAD (`CMA_OPTIONS=sample=1`): a C
//! program's overflow, underflow and use after free end in SIGABRT and
//! the exact diagnostic with its stacks, whether the program was built
//! with frame pointers or without (the stacks come from the unwind
//! tables); a fault that is not cma's reaches the program's own handler;
//! a busy program runs unchanged with every small block sampled.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use common::*;

fn value(err: &str, key: &str) -> usize {
    let v = err
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in:\n{err}"));
    usize::from_str_radix(v.trim().trim_start_matches("0x"), 16).unwrap()
}

fn run(exe: &Path, mode: &str) -> (std::process::Output, String) {
    let (o, _, err) = output(
        preloaded(&mut Command::new(exe))
            .arg(mode)
            .env("CMA_OPTIONS", "sample=1"),
    );
    (o, err)
}

/// The program dies of SIGABRT with one diagnostic that starts with
/// `expected` (given the block's address), followed by the stacks.
fn dies_with(exe: &Path, mode: &str, expected: impl Fn(usize) -> String) -> String {
    let (o, err) = run(exe, mode);
    assert_eq!(
        o.status.signal(),
        Some(6),
        "{mode}: status {}, stderr:\n{err}",
        o.status
    );
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("cma: ")).collect();
    assert_eq!(lines.len(), 1, "{mode}: {err}");
    let want = expected(value(&err, "ADDR="));
    assert!(
        lines[0].starts_with(&want),
        "{mode}: diagnostic\n  {}\nshould start with\n  {want}",
        lines[0]
    );
    assert!(err.contains("    allocated by thread "), "{mode}: {err}");
    // A frame of the program itself (make_block's caller or make_block)
    // follows libcma's in the allocation stack.
    let exe_name = exe.file_name().unwrap().to_str().unwrap();
    let allocated: Vec<&str> = err
        .lines()
        .skip_while(|l| !l.starts_with("    allocated by thread "))
        .skip(1)
        .take_while(|l| l.starts_with("      #"))
        .collect();
    assert!(
        allocated
            .iter()
            .any(|l| l.contains(&format!("/{exe_name}+0x"))),
        "{mode}: no frame of the program in the allocation stack:\n{err}"
    );
    err
}

fn misuse_is_caught(extra: &[&str], name: &str) {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch(name);
    let exe = compile("cc", "sampled.c", &dir, false, extra);
    dies_with(&exe, "overflow", |p| {
        format!(
            "cma: heap buffer overflow: write of {:#x}, 0 bytes past the end of the 32-byte sampled block at {p:#x} [in a memory access]",
            p + 32
        )
    });
    let err = dies_with(&exe, "write-after-free", |p| {
        format!(
            "cma: use after free: write of {:#x}, 8 bytes into the freed 32-byte sampled block at {p:#x} [in a memory access]",
            p + 8
        )
    });
    assert!(err.contains("    freed by thread "), "{err}");
    dies_with(&exe, "read-after-free", |p| {
        format!(
            "cma: use after free: read of {:#x}, 8 bytes into the freed 32-byte sampled block at {p:#x} [in a memory access]",
            p + 8
        )
    });
    dies_with(&exe, "underflow", |p| {
        format!(
            "cma: heap buffer underflow: the bytes before the block at {p:#x} were overwritten (sampled block of 32 bytes) [in free]"
        )
    });
}

#[test]
fn misuse_of_sampled_blocks_is_caught_with_frame_pointers() {
    misuse_is_caught(&["-fno-omit-frame-pointer"], "sampled-fp");
}

#[test]
fn misuse_of_sampled_blocks_is_caught_without_frame_pointers() {
    misuse_is_caught(&["-fomit-frame-pointer"], "sampled-nofp");
}

#[test]
fn a_fault_that_is_not_cmas_reaches_the_programs_handler_or_the_default() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("sampled-foreign");
    let exe = compile("cc", "sampled.c", &dir, false, &[]);
    let (o, err) = run(&exe, "own-handler");
    assert_eq!(o.status.code(), Some(42), "{err}");
    let fault = value(&err, "FAULT=");
    assert_eq!(value(&err, "OWN-HANDLER="), fault, "{err}");
    assert!(!err.contains("cma: "), "{err}");
    let (o, err) = run(&exe, "foreign-fault");
    assert_eq!(o.status.signal(), Some(11), "{}: {err}", o.status);
    assert!(!err.contains("cma: "), "{err}");
}

#[test]
fn a_program_runs_unchanged_with_every_block_sampled() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("sampled-ok");
    let exe = compile("cc", "sampled.c", &dir, false, &[]);
    let (o, out, err) = output(
        preloaded(Command::new(&exe).arg("ok")).env("CMA_OPTIONS", "sample=1,report=stderr"),
    );
    assert!(o.status.success(), "{}: {err}", o.status);
    assert_eq!(out.trim(), "sampled: ok");
    // Everything allocated was freed, sampled blocks included.
    let allocations = report_field(&err, "allocations").unwrap_or(0);
    let frees = report_field(&err, "frees").unwrap_or(u64::MAX);
    assert!(allocations >= 20_000, "{err}");
    assert!(allocations - frees < 64, "{err}");
}

#[test]
fn cma_never_allocates_through_itself_while_taking_stacks() {
    if !have("cc", "gcc") {
        return;
    }
    // A shim preloaded before libcma sees every malloc, calloc, realloc and
    // free the process makes, libcma's own included (the unwinder is linked
    // into libcma, and its calls would go through the shim first), and
    // counts those made while libcma is inside a call on that thread.
    let dir = scratch("sampled-reentry");
    let shim = compile("cc", "reentry_shim.c", &dir, true, &["-shared", "-fPIC"]);
    let exe = compile("cc", "sampled.c", &dir, false, &[]);
    let preload = format!("{}:{}", shim.display(), libcma().display());
    let (o, out, err) = output(
        Command::new(&exe)
            .arg("ok")
            .env("LD_PRELOAD", preload)
            .env("CMA_OPTIONS", "sample=1"),
    );
    assert!(o.status.success(), "{}: {err}", o.status);
    assert_eq!(out.trim(), "sampled: ok");
    let counts = err
        .lines()
        .find(|l| l.starts_with("CALLS="))
        .unwrap_or_else(|| panic!("{err}"));
    let calls: u64 = counts["CALLS=".len()..counts.find(' ').unwrap()]
        .parse()
        .unwrap();
    assert!(calls >= 60_000, "{counts}");
    assert!(counts.ends_with(" REENTERED=0"), "{counts}");
}
