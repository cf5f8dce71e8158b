//! libcma under LD_PRELOAD: the exported functions' contracts, misuse
//! reports, and the hard parts of being a preloaded malloc (before main,
//! fork from a threaded parent, thread exit, no malloc from inside).

mod common;

use std::process::Command;

use common::*;

#[test]
fn exports_the_malloc_family_and_calls_no_allocator_itself() {
    if !have("nm", "binutils") {
        return;
    }
    let lib = libcma();
    let defined = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&lib)
        .output()
        .expect("nm");
    let defined = String::from_utf8_lossy(&defined.stdout);
    let names: Vec<&str> = defined
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    for f in [
        "malloc",
        "free",
        "calloc",
        "realloc",
        "reallocarray",
        "posix_memalign",
        "aligned_alloc",
        "memalign",
        "valloc",
        "pvalloc",
        "malloc_usable_size",
        "free_sized",
        "free_aligned_sized",
        "malloc_trim",
        "mallinfo2",
        "mallinfo",
        "mallopt",
        "malloc_stats",
        "_Znwm",
        "_Znam",
        "_ZdlPv",
        "_ZdaPv",
        "_ZdlPvm",
        "_ZdaPvm",
        "_ZnwmRKSt9nothrow_t",
        "_ZnamRKSt9nothrow_t",
        "_ZnwmSt11align_val_t",
        "_ZnamSt11align_val_t",
        "_ZdlPvSt11align_val_t",
        "_ZdaPvSt11align_val_t",
        "_ZdlPvmSt11align_val_t",
        "_ZdaPvmSt11align_val_t",
        "_ZnwmSt11align_val_tRKSt9nothrow_t",
        "_ZnamSt11align_val_tRKSt9nothrow_t",
        "cma_malloc",
        "cma_calloc",
        "cma_realloc",
        "cma_aligned_alloc",
        "cma_free",
        "cma_checked_free",
        "cma_bzero_and_free",
        "cma_free_double",
        "cma_block_size",
        "cma_checked_block_size",
        "cma_guard_depth",
        "cma_alloc_size",
        "cma_set_alloc_limit",
        "cma_get_stats",
        "cma_get_extended_stats",
        "cma_set_alloc_logging",
        "cma_get_alloc_logging",
        "cma_set_thread_safety",
        "cma_enable_thread_safety",
        "cma_disable_thread_safety",
        "cma_is_thread_safe_enabled",
        "cma_set_backend",
        "cma_clear_backend",
        "cma_backend_is_enabled",
        "cma_stats_get",
        "cma_stats_get_extended",
        "cma_bytes_in_use",
        "cma_limits_set",
        "cma_strdup",
        "cma_strndup",
        "cma_memdup",
        "cma_strerror",
    ] {
        assert!(names.contains(&f), "libcma.so does not export {f}");
    }
    // Nothing but the malloc family and the cma API leaks out of the library.
    for n in &names {
        assert!(
            !n.starts_with("_ZN") && !n.starts_with("rust_"),
            "libcma.so exports an internal symbol: {n}"
        );
    }
    // The library must not depend on an allocator, nor on dlsym.
    let undefined = Command::new("nm")
        .args(["-D", "--undefined-only"])
        .arg(&lib)
        .output()
        .expect("nm");
    let undefined = String::from_utf8_lossy(&undefined.stdout);
    for l in undefined.lines() {
        let sym = l
            .split_whitespace()
            .last()
            .unwrap_or("")
            .split('@')
            .next()
            .unwrap_or("");
        assert!(
            ![
                "malloc",
                "calloc",
                "memalign",
                "posix_memalign",
                "aligned_alloc",
                "dlsym",
                "dlvsym"
            ]
            .contains(&sym),
            "libcma.so imports {sym}"
        );
        // The unwinder is linked in statically (see build.rs): no
        // libgcc_s.so.1 to load, nor its constructor to run, per process.
        assert!(
            !sym.starts_with("_Unwind_"),
            "libcma.so imports {sym} (from libgcc_s)"
        );
    }
    let dynamic = Command::new("readelf")
        .arg("-d")
        .arg(&lib)
        .output()
        .expect("readelf");
    let dynamic = String::from_utf8_lossy(&dynamic.stdout);
    assert!(
        !dynamic.contains("libgcc_s"),
        "libcma.so needs libgcc_s:\n{dynamic}"
    );
}

#[test]
fn c_contracts_hold_under_preload() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("contracts");
    let exe = compile("cc", "contracts.c", &dir, true, &[]);
    let (o, out, err) = output(preloaded(&mut Command::new(&exe)));
    assert!(
        o.status.success(),
        "contracts failed ({}):\n{out}\n{err}",
        o.status
    );
    assert!(out.contains("contracts: ok"), "{out}\n{err}");
}

#[test]
fn malloc_stats_prints_in_glibc_layout() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("malloc_stats");
    std::fs::write(
        dir.join("s.c"),
        "#include <malloc.h>\nint main(void){malloc_stats();return 0;}\n",
    )
    .unwrap();
    let exe = dir.join("s");
    let st = Command::new("cc")
        .arg("-o")
        .arg(&exe)
        .arg(dir.join("s.c"))
        .status()
        .expect("cc");
    assert!(st.success());
    let (o, _, err) = output(preloaded(&mut Command::new(&exe)));
    assert!(o.status.success());
    assert!(
        err.contains("in use bytes") && err.contains("cma: "),
        "{err}"
    );
}

#[test]
fn cxx_operators_go_through_cma() {
    if !have("g++", "g++") {
        return;
    }
    let dir = scratch("cxx_ops");
    let exe = compile(
        "g++",
        "cxx_ops.cpp",
        &dir,
        true,
        &["-std=c++17", "-fsized-deallocation"],
    );
    let (o, out, err) = output(preloaded(&mut Command::new(&exe)));
    assert!(
        o.status.success(),
        "cxx_ops failed ({}):\n{out}\n{err}",
        o.status
    );
    assert!(out.contains("cxx_ops: ok"));

    // operator new cannot throw from libcma: it aborts with a clear message.
    let (o, _, err) = output(preloaded(Command::new(&exe).arg("oom")));
    assert!(!o.status.success());
    assert!(err.contains("cma: operator new: out of memory"), "{err}");

    // A size that passes every size check but that the kernel refuses: the
    // mapping is charged against the commit limit, so operator new fails at
    // the call instead of succeeding and meeting the OOM killer later.
    if overcommit_refuses_impossible_requests() {
        let (o, out, err) = output(preloaded(Command::new(&exe).arg("oom-kernel")));
        assert!(!o.status.success(), "64 TiB were allocated: {out}");
        assert!(
            err.contains("cma: operator new: out of memory (70368744177664 bytes)"),
            "{err}"
        );
    }
}

#[test]
fn misuse_aborts_with_one_diagnostic_line() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("misuse");
    let exe = compile("cc", "misuse.c", &dir, false, &[]);
    for (what, expected) in [
        ("double-free", "cma: double free of 0x"),
        ("interior", "cma: invalid free: interior pointer"),
        ("foreign", "cma: invalid free: not a cma block"),
        ("realloc-freed", "cma: double free"),
    ] {
        let (o, out, err) = output(preloaded(Command::new(&exe).arg(what)));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            o.status.signal(),
            Some(libc_sigabrt()),
            "{what}: {}\n{out}\n{err}",
            o.status
        );
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("cma: ")).collect();
        assert_eq!(lines.len(), 1, "{what}: {err}");
        assert!(lines[0].contains(expected), "{what}: {err}");
    }
}

fn libc_sigabrt() -> i32 {
    6
}

#[test]
fn a_release_by_another_family_is_reported_at_the_default_level() {
    if !have("c++", "g++") {
        return;
    }
    let dir = scratch("mismatch");
    let exe = compile("c++", "mismatch.cpp", &dir, false, &[]);
    for (what, operation, expected) in [
        (
            "free-of-new-array",
            "free",
            "was allocated by operator new[] and released by free",
        ),
        (
            "delete-of-malloc",
            "operator delete",
            "was allocated by malloc and released by operator delete (",
        ),
        (
            "delete-of-new-array",
            "operator delete",
            "was allocated by operator new[] and released by operator delete (",
        ),
        (
            "delete-array-of-new",
            "operator delete[]",
            "was allocated by operator new and released by operator delete[]",
        ),
        (
            "delete-of-large-malloc",
            "operator delete",
            "was allocated by malloc and released by operator delete (large block",
        ),
        (
            "realloc-of-new",
            "realloc",
            "was allocated by operator new and released by free",
        ),
    ] {
        let (o, out, err) =
            output(preloaded(Command::new(&exe).arg(what)).env("CMA_OPTIONS", "check=default"));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            o.status.signal(),
            Some(libc_sigabrt()),
            "{what}: {}\n{out}\n{err}",
            o.status
        );
        let addr = err
            .lines()
            .find_map(|l| l.strip_prefix("ADDR="))
            .unwrap_or_else(|| panic!("{what}: no address: {err}"))
            .trim()
            .to_string();
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("cma: ")).collect();
        assert_eq!(lines.len(), 1, "{what}: {err}");
        let want = format!("cma: alloc-dealloc mismatch: {addr} {expected}");
        assert!(
            lines[0].starts_with(&want),
            "{what}: {:?} should start with {want:?}",
            lines[0]
        );
        assert!(
            lines[0].contains(&format!("[in {operation}]")),
            "{what}: {}",
            lines[0]
        );
    }
    for (what, expected) in [
        (
            "sized-delete-wrong-size",
            "cma: sized free with the wrong size: {addr} released as 48 bytes, allocated as 40",
        ),
        (
            "free-sized-wrong-size",
            "cma: sized free with the wrong size: {addr} released as 41 bytes, allocated as 40",
        ),
        (
            "free-aligned-sized-wrong-alignment",
            "cma: aligned free with the wrong alignment: {addr} released with alignment 4096",
        ),
    ] {
        let (o, out, err) =
            output(preloaded(Command::new(&exe).arg(what)).env("CMA_OPTIONS", "check=default"));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            o.status.signal(),
            Some(libc_sigabrt()),
            "{what}: {}\n{out}\n{err}",
            o.status
        );
        let addr = err
            .lines()
            .find_map(|l| l.strip_prefix("ADDR="))
            .unwrap()
            .trim()
            .to_string();
        let want = expected.replace("{addr}", &addr);
        assert!(
            err.lines().any(|l| l.starts_with(&want)),
            "{what}: {err}\nwant {want}"
        );
    }
    // Every family released by its own passes, at both levels; at `fast`
    // a mismatch is not looked for.
    for level in ["check=default", "check=fast"] {
        let (o, out, err) =
            output(preloaded(Command::new(&exe).arg("matched")).env("CMA_OPTIONS", level));
        assert!(o.status.success(), "{level}: {}\n{out}\n{err}", o.status);
        assert!(out.contains("matched: ok"), "{level}: {out}");
    }
    let (o, _, err) = output(
        preloaded(Command::new(&exe).arg("delete-of-malloc")).env("CMA_OPTIONS", "check=fast"),
    );
    assert!(o.status.success(), "fast: {err}");
    // The check is the `kind_check` switch: off at `default`, mismatched
    // and mis-sized releases pass; on at `fast`, they are reported.
    for what in [
        "delete-of-malloc",
        "free-sized-wrong-size",
        "delete-of-new-array",
    ] {
        let options = "check=default,kind_check=0";
        let (o, out, err) =
            output(preloaded(Command::new(&exe).arg(what)).env("CMA_OPTIONS", options));
        assert!(
            o.status.success(),
            "{what} {options}: {}\n{out}\n{err}",
            o.status
        );
    }
    let options = "check=fast,kind_check=1";
    let (o, _, err) =
        output(preloaded(Command::new(&exe).arg("delete-of-malloc")).env("CMA_OPTIONS", options));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(o.status.signal(), Some(libc_sigabrt()), "{options}: {err}");
    assert!(
        err.contains("cma: alloc-dealloc mismatch: "),
        "{options}: {err}"
    );
}

#[test]
fn allocations_before_main_are_served() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("before_main");
    let exe = compile("cc", "before_main.c", &dir, true, &[]);
    let (o, out, err) = output(preloaded(&mut Command::new(&exe)));
    assert!(o.status.success(), "{out}\n{err}");
    assert_eq!(out.trim(), "allocated before main");
    // Every program starts on cma, even trivial ones from the system.
    for prog in [
        &["true"][..],
        &["ls", "/"],
        &["sh", "-c", "echo a | sort | uniq -c > /dev/null"],
    ] {
        let (o, _, err) = output(preloaded(Command::new(prog[0]).args(&prog[1..])));
        assert!(o.status.success(), "{prog:?}: {err}");
    }
}

#[test]
fn fork_from_a_multithreaded_parent() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("fork_threads");
    let exe = compile("cc", "fork_threads.c", &dir, false, &[]);
    let (o, out, err) = output(preloaded(&mut Command::new(&exe)));
    assert!(o.status.success(), "{}\n{out}\n{err}", o.status);
    assert!(out.contains("fork_threads: ok"));
}

#[test]
fn heaps_of_exited_threads_are_reused() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("thread_churn");
    let exe = compile("cc", "thread_churn.c", &dir, true, &[]);
    let (o, out, err) = output(preloaded(&mut Command::new(&exe)));
    assert!(o.status.success(), "{}\n{out}\n{err}", o.status);
    assert!(out.contains("thread_churn: ok"), "{out}");
}

#[test]
fn exit_report_is_written_per_process() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("exit_report");
    let exe = compile("cc", "misuse.c", &dir, false, &[]);
    let template = dir.join("report.%p");
    let (o, _, err) = output(
        preloaded(Command::new(&exe).arg("leak"))
            .env("CMA_OPTIONS", format!("report={}", template.display())),
    );
    assert!(o.status.success(), "{err}");
    let reports: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("report."))
        .collect();
    assert_eq!(reports.len(), 1, "one report per process");
    let text = std::fs::read_to_string(reports[0].path()).unwrap();
    assert!(
        text.starts_with("cma-report 3\npid ") && text.ends_with("end\n"),
        "{text}"
    );
    assert!(text.contains("\nengine libcma\n"), "{text}");
    assert_eq!(text.matches("cma-report").count(), 1, "one engine: {text}");
    assert_eq!(
        reports[0].file_name().to_string_lossy(),
        format!("report.{}", report_field(&text, "pid").unwrap())
    );
    assert!(report_field(&text, "allocations").unwrap() >= 101, "{text}");
    assert!(
        report_field(&text, "bytes_in_use").unwrap() >= 100 * 100,
        "{text}"
    );
    assert!(
        report_field(&text, "peak_bytes_in_use").unwrap() >= 100 * 100,
        "{text}"
    );
    assert!(text.lines().any(|l| l.starts_with("class ")), "{text}");

    // report=stderr
    let (o, _, err) =
        output(preloaded(Command::new(&exe).arg("leak")).env("CMA_OPTIONS", "report=stderr"));
    assert!(o.status.success());
    assert!(err.contains("cma-report 3"), "{err}");
}

#[test]
fn static_library_links_and_replaces_malloc() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("static");
    let lib = built_lib("a");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/before_main.c");
    let exe = dir.join("before_main_static");
    let o = Command::new("cc")
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .arg("-I")
        .arg(include_dir())
        .arg(&lib)
        .args(["-lpthread", "-ldl", "-lm", "-lgcc_s", "-lc"])
        .output()
        .expect("cc");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (o, out, err) = output(&mut Command::new(&exe));
    assert!(o.status.success(), "{out}\n{err}");
    assert_eq!(out.trim(), "allocated before main");
}

#[test]
fn thread_local_state_survives_many_dlopened_tls_modules() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("tls_dlopen");
    let module = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/tls_module.c");
    for i in 1..=40 {
        let st = Command::new("cc")
            .args(["-shared", "-fPIC", "-O1", "-o"])
            .arg(dir.join(format!("libtls{i}.so")))
            .arg(&module)
            .status()
            .expect("cc");
        assert!(st.success());
    }
    let exe = compile("cc", "tls_dlopen.c", &dir, false, &["-ldl"]);
    let (o, out, err) = output(preloaded(Command::new(&exe).arg(&dir)));
    assert!(o.status.success(), "{}\n{out}\n{err}", o.status);
    assert!(out.contains("tls_dlopen: ok (40 modules)"), "{out}");
}

/// Whether the mask `/proc` shows for a thread blocks every signal a program
/// can block.
fn blocks_every_signal(sigblk_hex: &str) -> bool {
    let mask = u64::from_str_radix(sigblk_hex.trim(), 16).unwrap_or(0);
    // Bit n-1 is signal n: the kernel never blocks SIGKILL (9) and SIGSTOP
    // (19); glibc keeps 32 and 33 (cancellation, setxid) for itself.
    let wanted = !((1u64 << 8) | (1u64 << 18) | (1u64 << 31) | (1u64 << 32));
    mask & wanted == wanted
}

#[test]
fn signals_the_program_waits_for_never_reach_cmas_thread() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("own_thread_signals");
    let prog = compile("cc", "own_thread_signals.c", &dir, false, &[]);
    let (o, out, err) = output(preloaded(&mut Command::new(&prog)));
    assert!(
        o.status.success(),
        "the program lost signals to another thread: {:?}\n{out}{err}",
        o.status
    );
    assert!(out.contains("received 200 of 200"), "{out}{err}");
    let threads: Vec<(&str, &str)> = out
        .lines()
        .filter_map(|l| l.strip_prefix("thread "))
        .filter_map(|l| l.rsplit_once(' '))
        .collect();
    let purge: Vec<_> = threads
        .iter()
        .filter(|(name, _)| *name == "cma-purge")
        .collect();
    assert_eq!(purge.len(), 1, "expected one cma-purge thread: {out}");
    assert!(
        blocks_every_signal(purge[0].1),
        "cma-purge blocks only {}",
        purge[0].1
    );
    // Every other thread is the program's own: here, only its main thread.
    assert_eq!(threads.len(), 2, "{out}");
}

#[test]
fn a_report_path_that_cannot_be_written_is_said() {
    let (o, _, err) = output(
        preloaded(&mut Command::new("true")).env("CMA_OPTIONS", "report=/nonexistent-dir/heap.%p"),
    );
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("cma: warning: cannot write the heap report to /nonexistent-dir/heap."),
        "{err}"
    );
}

/// The `cma: ` lines of a process tree's stderr.
fn cma_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("cma: ")).collect()
}

#[test]
fn a_bad_option_is_warned_about_once_per_process_tree() {
    // The tree: dash runs `true` itself and the last command of
    // `sh -c` with exec, in its own pid, so the second `sh` is a new image
    // of the first process.
    let (o, _, err) = output(
        preloaded(Command::new("sh").args(["-c", "true; true; sh -c true"]))
            .env("CMA_OPTIONS", "colour=red"),
    );
    assert!(o.status.success(), "{err}");
    assert_eq!(
        cma_lines(&err),
        ["cma: warning: unknown option 'colour' in CMA_OPTIONS ignored"],
        "{err}"
    );

    // A wider tree: forked children, a forked shell, an exec'd shell and
    // its children. The options cma honours still apply in every process:
    // each creates its `loaded` marker.
    let dir = scratch("warn_once");
    let script = "true; /bin/true; sh -c true; /bin/true; sh -c '/bin/true; env'";
    let (o, out, err) = output(preloaded(Command::new("sh").args(["-c", script])).env(
        "CMA_OPTIONS",
        format!(
            "colour=red,huge_pages=2,check=strict,loaded={}/loaded.%p",
            dir.display()
        ),
    ));
    assert!(o.status.success(), "{err}");
    assert_eq!(
        cma_lines(&err),
        [
            "cma: warning: unknown option 'colour' in CMA_OPTIONS ignored",
            "cma: warning: option 'huge_pages=2' in CMA_OPTIONS: expected 0 or 1; ignored",
        ],
        "{err}"
    );
    assert!(
        out.lines().any(|l| l
            == format!(
                "CMA_OPTIONS=check=strict,loaded={}/loaded.%p",
                dir.display()
            )),
        "the processes get the options cma honours: {out}"
    );
    let markers = std::fs::read_dir(&dir).unwrap().count();
    // sh, /bin/true, sh -c true, /bin/true, and the exec'd shell's /bin/true
    // (the exec'd shell and env keep the first pid).
    assert!(
        markers >= 5,
        "{markers} processes applied the loaded= option"
    );
}

#[test]
fn mismatched_releases_at_the_strict_level_print_the_block_and_its_allocation_stack() {
    if !have("c++", "g++") {
        return;
    }
    let dir = scratch("mismatch-strict");
    let exe = compile("c++", "mismatch.cpp", &dir, false, &[]);
    for (what, misuse, size) in [
        ("free-of-new-array", "alloc-dealloc mismatch", 40),
        (
            "delete-of-large-malloc",
            "alloc-dealloc mismatch",
            300 * 1024,
        ),
        ("realloc-of-new", "alloc-dealloc mismatch", 40),
        (
            "sized-delete-wrong-size",
            "sized free with the wrong size",
            40,
        ),
        (
            "free-sized-wrong-size",
            "sized free with the wrong size",
            40,
        ),
        (
            "free-aligned-sized-wrong-alignment",
            "aligned free with the wrong alignment",
            48,
        ),
    ] {
        let (o, out, err) = output(
            preloaded(Command::new(&exe).arg(what)).env("CMA_OPTIONS", "check=strict,sample=0"),
        );
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            o.status.signal(),
            Some(libc_sigabrt()),
            "{what}: {}\n{out}\n{err}",
            o.status
        );
        assert!(err.contains(&format!("cma: {misuse}: ")), "{what}: {err}");
        // The block is live: its size asked for and its allocation, no free.
        assert!(
            err.contains(&format!(
                "    block of {size} bytes requested, allocated by thread "
            )),
            "{what}: {err}"
        );
        assert!(!err.contains("freed by thread"), "{what}: {err}");
        // The allocation stack reaches the program's main (raw: module and
        // offset; `cma run` names it).
        let allocated: Vec<&str> = err
            .lines()
            .skip_while(|l| !l.starts_with("    allocated by thread "))
            .skip(1)
            .take_while(|l| l.starts_with("      #"))
            .collect();
        assert!(
            allocated.iter().any(|l| l.contains("/mismatch+0x")),
            "{what}: {err}"
        );
    }
}
