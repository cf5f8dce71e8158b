//! cma's own thread is invisible to the program's signal handling, through
//! the Rust crate (the C library's side is in cma-capi's `preload` tests).
//!
//! The test re-executes itself as a child that frees enough memory through
//! `cma::free` for the purge thread to start, lists its threads from /proc,
//! then blocks SIGUSR1 and SIGALRM in its only thread and waits for them with
//! `sigtimedwait`, raising each at the whole process 200 times. A signal
//! delivered to cma's thread instead would kill the child (the default
//! action) or time out. The parent checks the child's verdict and that the
//! thread is named `cma-purge` and blocks every signal.

use std::process::Command;
use std::time::Duration;

const CHILD_VAR: &str = "CMA_OWN_THREAD_CHILD";
const ROUNDS: usize = 200;

/// Each thread of this process: its name and its blocked-signal mask.
fn threads() -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let dir = task.expect("task").path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let mask = status
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .unwrap_or(0);
        out.push((name.trim().to_string(), mask));
    }
    out
}

fn child() {
    for i in 0..64 {
        let p = cma::malloc(1 << 20);
        assert!(!p.is_null());
        // SAFETY: a fresh block of 1 MiB, freed once.
        unsafe {
            std::ptr::write_bytes(p, i as u8, 1 << 20);
            cma::free(p);
        }
    }
    // The thread names itself as it starts: wait (5 s at most, on a loaded
    // machine) until it has, so the listing shows its name, not the one it
    // inherited.
    let mut listed = threads();
    for _ in 0..500 {
        if listed.iter().any(|(name, _)| name == "cma-purge") {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        listed = threads();
    }
    for (name, mask) in &listed {
        println!("thread {name} {mask:x}");
    }
    // SAFETY: plain signal calls on local, initialised values.
    unsafe {
        let mut waited: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut waited);
        libc::sigaddset(&mut waited, libc::SIGUSR1);
        libc::sigaddset(&mut waited, libc::SIGALRM);
        assert_eq!(
            libc::sigprocmask(libc::SIG_BLOCK, &waited, std::ptr::null_mut()),
            0
        );
        let mut received = 0;
        for i in 0..ROUNDS {
            let sig = if i % 2 == 1 {
                libc::SIGUSR1
            } else {
                libc::SIGALRM
            };
            assert_eq!(libc::kill(libc::getpid(), sig), 0);
            let wait = libc::timespec {
                tv_sec: 5,
                tv_nsec: 0,
            };
            let got = libc::sigtimedwait(&waited, std::ptr::null_mut(), &wait);
            if got != sig {
                eprintln!("round {i}: raised {sig}, sigtimedwait gave {got}");
                break;
            }
            received += 1;
        }
        println!("received {received} of {ROUNDS}");
    }
}

/// Whether a mask blocks every signal a program can block.
fn blocks_every_signal(mask: u64) -> bool {
    // Bit n-1 is signal n: the kernel never blocks SIGKILL (9) and SIGSTOP
    // (19); glibc keeps 32 and 33 (cancellation, setxid) for itself.
    let wanted = !((1u64 << 8) | (1u64 << 18) | (1u64 << 31) | (1u64 << 32));
    mask & wanted == wanted
}

fn main() {
    if std::env::var_os(CHILD_VAR).is_some() {
        child();
        return;
    }
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .env(CHILD_VAR, "1")
        .env_remove("CMA_OPTIONS")
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut failed = Vec::new();
    if !out.status.success() || !stdout.contains(&format!("received {ROUNDS} of {ROUNDS}")) {
        failed.push(format!(
            "signals_reach_the_thread_that_waits_for_them: the child lost signals to another thread ({:?})",
            out.status
        ));
    }
    let purge: Vec<u64> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("thread cma-purge "))
        .filter_map(|m| u64::from_str_radix(m.trim(), 16).ok())
        .collect();
    if purge.len() != 1 || !blocks_every_signal(purge[0]) {
        failed.push(format!(
            "cmas_thread_is_named_and_blocks_every_signal: expected one cma-purge thread blocking every signal, found masks {purge:x?}"
        ));
    }
    for f in &failed {
        eprintln!("FAILED {f}");
    }
    if !failed.is_empty() {
        eprintln!("child's output:\n{stdout}{stderr}");
    }
    println!(
        "own_thread: {} passed, {} failed",
        2 - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        std::process::exit(1);
    }
}
