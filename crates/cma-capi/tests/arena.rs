//! The `cma_arena_*` C API (`tests/c/arena.c`): every function, arena
//! blocks freed with `cma_free` and `free` (also from another thread),
//! statistics, the limit, reset and destroy, bad handles; and the misuse of
//! a block after its arena was destroyed or reset, which dies with a
//! diagnostic.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use common::*;

#[test]
fn c_program_uses_every_arena_function() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("arena_c");
    let exe = compile("cc", "arena.c", &dir, true, &["-std=c11", "-Wextra"]);
    for check in ["check=fast", "check=default"] {
        let (o, out, err) = output(preloaded(&mut Command::new(&exe)).env("CMA_OPTIONS", check));
        assert!(
            o.status.success(),
            "arena.c ({check}) failed ({}):\n{out}\n{err}",
            o.status
        );
        assert!(out.contains("arena: ok"), "{out}\n{err}");
    }
}

#[test]
fn a_block_used_after_its_arena_is_gone_dies_with_a_diagnostic() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("arena_misuse");
    let exe = compile("cc", "arena.c", &dir, true, &["-std=c11"]);
    // A destroyed arena's pages are free; a reset arena keeps the slab its
    // size class was using, where the block is a free slot.
    for (case, operation, block) in [
        ("free-after-destroy", "[in free]", "(in freed pages)"),
        ("free-after-reset", "[in free]", "(size class "),
        ("realloc-after-destroy", "[in realloc]", "(in freed pages)"),
    ] {
        for check in ["check=fast", "check=default"] {
            let (o, _, err) =
                output(preloaded(Command::new(&exe).arg(case)).env("CMA_OPTIONS", check));
            assert_eq!(
                o.status.signal(),
                Some(6),
                "{case} ({check}): {}\n{err}",
                o.status
            );
            assert!(!err.contains("MISUSE-SURVIVED"), "{err}");
            let addr = err
                .lines()
                .find_map(|l| l.strip_prefix("MISUSE-ADDR="))
                .expect("address line");
            let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("cma: ")).collect();
            assert_eq!(lines.len(), 1, "{case} ({check}): {err}");
            assert!(
                lines[0].starts_with(&format!("cma: double free of {addr} {block}"))
                    && lines[0].contains(operation),
                "{case} ({check}): {}",
                lines[0]
            );
        }
    }
}
