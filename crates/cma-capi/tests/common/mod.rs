//! Helpers for the tests that run programs on libcma: finding the library,
//! compiling C and C++ test programs, and tools that may be missing.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The directory of this crate's `include/cma.h`.
pub fn include_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../cma-capi/include")
}

/// The built `libcma.<ext>`: `$CMA_TEST_LIB` (for the `.so`), or a fresh
/// debug build of `cma-capi` made once per test binary with its own target
/// directory under `CARGO_TARGET_TMPDIR`. (Cargo does not build a
/// cdylib-only package's library for its own integration tests, so the tests
/// build it; the separate target directory keeps clear of the outer cargo's
/// lock, whatever `CARGO_TARGET_DIR` is.)
pub fn built_lib(ext: &str) -> PathBuf {
    if ext == "so" {
        if let Some(p) = std::env::var_os("CMA_TEST_LIB") {
            return PathBuf::from(p);
        }
    }
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("libcma-build");
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cma-capi/Cargo.toml");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let o = Command::new(cargo)
            .args(["build", "--quiet", "-p", "cma-capi", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target)
            .env_remove("CARGO_TARGET_DIR")
            .output()
            .expect("run cargo to build libcma");
        assert!(
            o.status.success(),
            "building libcma failed:\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        target.join("debug")
    });
    let lib = dir.join(format!("libcma.{ext}"));
    assert!(lib.is_file(), "{} was not built", lib.display());
    lib
}

pub fn libcma() -> PathBuf {
    built_lib("so")
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("cma-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// Whether `tool` is on PATH. When it is missing: in CI (`CI` set) the test
/// fails, naming the package to install; elsewhere it prints a note and the
/// caller skips.
pub fn have(tool: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("`{tool}` is missing: CI must install the `{package}` package (see crates/cma-cli/README.md)");
        }
        eprintln!(
            "note: skipping: `{tool}` is not installed (apt package `{package}`); CI installs it"
        );
    }
    found
}

/// Compiles `src` (a file under `tests/c`) with `compiler` into `dir`,
/// against cma.h, linked with libcma.so when `link_cma`.
pub fn compile(compiler: &str, src: &str, dir: &Path, link_cma: bool, extra: &[&str]) -> PathBuf {
    let src_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../cma-capi/tests/c")
        .join(src);
    let out = dir.join(src.split('.').next().unwrap_or(src));
    let mut cmd = Command::new(compiler);
    cmd.args(["-O1", "-g", "-Wall", "-pthread", "-o"])
        .arg(&out)
        .arg(&src_path)
        .arg("-I")
        .arg(include_dir())
        .args(extra);
    if link_cma {
        let lib = libcma();
        let lib_dir = lib.parent().expect("lib dir");
        cmd.arg(&lib)
            .arg(format!("-Wl,-rpath,{}", lib_dir.display()));
    }
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {compiler}: {e}"));
    assert!(
        o.status.success(),
        "{compiler} {src} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// `cmd` with libcma preloaded.
pub fn preloaded(cmd: &mut Command) -> &mut Command {
    cmd.env("LD_PRELOAD", libcma())
}

/// Runs `cmd` and returns its output, stdout and stderr as text.
pub fn output(cmd: &mut Command) -> (Output, String, String) {
    let o = cmd.output().expect("run the program");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    (o, out, err)
}

/// Parses a `key value` field out of a libcma exit report.
pub fn report_field(report: &str, key: &str) -> Option<u64> {
    report.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Whether the kernel refuses a request far beyond memory and swap: true
/// under `vm.overcommit_memory` 0 (the default heuristic) and 2 (strict),
/// false under 1 (always overcommit), where no allocator can fail it.
pub fn overcommit_refuses_impossible_requests() -> bool {
    let mode = std::fs::read_to_string("/proc/sys/vm/overcommit_memory").unwrap_or_default();
    if mode.trim() == "1" {
        eprintln!("note: vm.overcommit_memory=1: the kernel grants any request; skipping");
        return false;
    }
    true
}
