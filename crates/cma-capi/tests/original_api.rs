//! The original system's `cma_*` API, with its exact prototypes, from C and
//! from C++: limits, statistics, block sizes, checked frees, the switches,
//! allocation logging, and backend hooks (routing with blocks of cma and of
//! several backends live, set and cleared, bzero through a backend, a
//! pointer that no one owns).

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use common::*;

#[test]
fn c_program_of_the_original_runs_function_by_function() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("original_api_c");
    let exe = compile("cc", "original_api.c", &dir, true, &["-std=c11", "-Wextra"]);
    for check in ["check=fast", "check=default"] {
        let (o, out, err) = output(
            preloaded(&mut Command::new(&exe))
                .env("CMA_OPTIONS", format!("{check},alloc_log_fd=9")),
        );
        assert!(
            o.status.success(),
            "original_api ({check}) failed ({}):\n{out}\n{err}",
            o.status
        );
        assert!(out.contains("original_api: ok"), "{out}\n{err}");
    }
}

#[test]
fn a_pointer_no_backend_and_not_cma_owns_is_an_invalid_free() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("original_api_neither");
    let exe = compile("cc", "original_api.c", &dir, true, &["-std=c11"]);
    let (o, out, err) = output(preloaded(Command::new(&exe).arg("neither-owns")));
    assert_eq!(o.status.signal(), Some(6), "{}\n{out}\n{err}", o.status);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("cma: ")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("cma: invalid free: not a cma block") && lines[0].contains("[in free]"),
        "{err}"
    );
}

#[test]
fn cxx_program_of_the_original_compiles_and_runs() {
    if !have("g++", "g++") {
        return;
    }
    for std in ["-std=c++98", "-std=c++17"] {
        let dir = scratch(&format!("original_api_cxx{}", &std[7..]));
        let exe = compile(
            "g++",
            "original_api.cpp",
            &dir,
            true,
            &[std, "-Wextra", "-pedantic", "-Werror"],
        );
        let (o, out, err) = output(preloaded(&mut Command::new(&exe)));
        assert!(
            o.status.success(),
            "original_api.cpp ({std}) failed ({}):\n{out}\n{err}",
            o.status
        );
        assert!(out.contains("original_api_cxx: ok"), "{out}\n{err}");
    }
}

#[test]
fn backends_set_and_cleared_under_threads_get_their_own_blocks_back() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("backend_threads");
    let exe = compile("cc", "backend_threads.c", &dir, true, &["-std=c11"]);
    let (o, out, err) = output(preloaded(&mut Command::new(&exe)));
    assert!(
        o.status.success(),
        "backend_threads failed ({}):\n{out}\n{err}",
        o.status
    );
    assert!(out.contains("backend_threads: ok"), "{out}\n{err}");
}
