//! Death tests: every kind of invalid free aborts with its one-line
//! diagnostic, and the checked API returns the same misuse as a `CmaError`
//! without aborting and without changing anything.
//!
//! Each misuse runs in a child process: the test binary re-executes itself
//! with `--exact death_child` and `CMA_DEATH_CASE` naming the misuse. The
//! child prints the address it is about to misuse (`DEATH-ADDR=0x...`), then
//! does it; the parent asserts that the child died of SIGABRT and that cma's
//! diagnostic names the kind of misuse and the address.
//!
//! The binary does not use cma as its global allocator, so the in-process
//! tests see cma's counters move only through the calls they make; they are
//! serialised with a lock because the counters are process-wide.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::{mpsc, Mutex};
use std::thread;

use cma::{BlockKind, CmaError, Requested};

const CASE_VAR: &str = "CMA_DEATH_CASE";

const LARGE: usize = 300 * 1024;
const HUGE: usize = 8 << 20;

// ----- the child side -----

fn announce(label: &str, addr: usize) {
    eprintln!("DEATH-{label}={addr:#x}");
}

/// Allocates a block in a thread that stays alive, blocked, until the
/// returned sender is dropped or sent to.
fn block_owned_by_parked_thread(size: usize) -> (usize, mpsc::Sender<()>, thread::JoinHandle<()>) {
    let (ptr_tx, ptr_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let owner = thread::spawn(move || {
        let p = cma::malloc(size);
        assert!(!p.is_null());
        ptr_tx.send(p as usize).unwrap();
        // Blocked in the channel: this thread makes no cma call, so it does
        // not collect the remote free until it is released.
        let _ = go_rx.recv();
        // A normal allocation after release collects the pending frees.
        let q = cma::malloc(size);
        // SAFETY: fresh block.
        unsafe { cma::free(q) };
    });
    (ptr_rx.recv().unwrap(), go_tx, owner)
}

/// Runs the misuse named by `CMA_DEATH_CASE`. Returns only if cma did not abort.
fn run_case(case: &str) {
    match case {
        "double_free_small" => {
            let p = cma::malloc(24);
            announce("ADDR", p as usize);
            // SAFETY: deliberate misuse: the second free must abort.
            unsafe {
                cma::free(p);
                cma::free(p);
            }
        }
        "double_free_in_named_thread" => {
            thread::Builder::new()
                .name("cma-victim".into())
                .spawn(|| {
                    let p = cma::malloc(24);
                    announce("ADDR", p as usize);
                    // SAFETY: deliberate misuse.
                    unsafe {
                        cma::free(p);
                        cma::free(p);
                    }
                })
                .unwrap()
                .join()
                .unwrap();
        }
        "double_free_large" => {
            let p = cma::malloc(LARGE);
            announce("ADDR", p as usize);
            // SAFETY: deliberate misuse.
            unsafe {
                cma::free(p);
                cma::free(p);
            }
        }
        "double_free_huge" => {
            let p = cma::malloc(HUGE);
            announce("ADDR", p as usize);
            // SAFETY: deliberate misuse.
            unsafe {
                cma::free(p);
                cma::free(p);
            }
        }
        "interior_small" => {
            let p = cma::malloc(64);
            announce("BLOCK", p as usize);
            announce("ADDR", p as usize + 16);
            // SAFETY: deliberate misuse.
            unsafe { cma::free(p.add(16)) };
        }
        "interior_large" => {
            let p = cma::malloc(LARGE);
            announce("BLOCK", p as usize);
            announce("ADDR", p as usize + 8192 + 40);
            // SAFETY: deliberate misuse.
            unsafe { cma::free(p.add(8192 + 40)) };
        }
        "interior_huge" => {
            let p = cma::malloc(HUGE);
            announce("BLOCK", p as usize);
            announce("ADDR", p as usize + 4096);
            // SAFETY: deliberate misuse.
            unsafe { cma::free(p.add(4096)) };
        }
        "foreign_libc" => {
            // SAFETY: plain libc allocation.
            let p = unsafe { libc::malloc(64) } as *mut u8;
            assert!(!p.is_null());
            announce("ADDR", p as usize);
            // SAFETY: deliberate misuse.
            unsafe { cma::free(p) };
        }
        "stack" => {
            let mut local = [0u8; 64];
            let p = local.as_mut_ptr();
            announce("ADDR", p as usize);
            // SAFETY: deliberate misuse.
            unsafe { cma::free(p) };
            std::hint::black_box(&mut local);
        }
        "nowhere_low" => {
            announce("ADDR", 0x10);
            // SAFETY: deliberate misuse.
            unsafe { cma::free(0x10 as *mut u8) };
        }
        "nowhere_high" => {
            let a = 0x7ead_beef_0000usize;
            announce("ADDR", a);
            // SAFETY: deliberate misuse.
            unsafe { cma::free(a as *mut u8) };
        }
        "nowhere_noncanonical" => {
            let a = 0xdead_0000_0000_1000usize;
            announce("ADDR", a);
            // SAFETY: deliberate misuse.
            unsafe { cma::free(a as *mut u8) };
        }
        "freed_by_other_thread" => {
            let (p, _release, _owner) = block_owned_by_parked_thread(48);
            announce("ADDR", p);
            // Thread A frees the block that the parked thread B owns...
            thread::spawn(move || {
                // SAFETY: a live block, freed once here.
                unsafe { cma::free(p as *mut u8) }
            })
            .join()
            .unwrap();
            // ...and main frees it again before B collected that free.
            // SAFETY: deliberate misuse.
            unsafe { cma::free(p as *mut u8) };
        }
        "realloc_freed" => {
            let p = cma::malloc(100);
            announce("ADDR", p as usize);
            // SAFETY: deliberate misuse.
            unsafe {
                cma::free(p);
                cma::realloc(p, 200);
            }
        }
        "realloc_freed_large" => {
            let p = cma::malloc(LARGE);
            announce("ADDR", p as usize);
            // SAFETY: deliberate misuse.
            unsafe {
                cma::free(p);
                cma::realloc(p, LARGE * 2);
            }
        }
        "block_size_freed" => {
            let p = cma::malloc(100);
            announce("ADDR", p as usize);
            // SAFETY: a live block.
            unsafe { cma::free(p) };
            std::hint::black_box(cma::block_size(p));
        }
        "block_size_interior" => {
            let p = cma::malloc(1000);
            announce("BLOCK", p as usize);
            announce("ADDR", p as usize + 8);
            std::hint::black_box(cma::block_size(p.wrapping_add(8)));
        }
        other => panic!("unknown death case {other}"),
    }
    eprintln!("DEATH-SURVIVED");
}

/// The child's entry point; does nothing when run as an ordinary test.
#[test]
fn death_child() {
    if let Ok(case) = std::env::var(CASE_VAR) {
        run_case(&case);
        // cma did not abort: say so in a way the parent cannot mistake.
        std::process::exit(3);
    }
}

// ----- the parent side -----

struct Death {
    pid: u32,
    stderr: String,
}

impl Death {
    fn value(&self, label: &str) -> usize {
        let key = format!("DEATH-{label}=0x");
        let line = self
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .unwrap_or_else(|| panic!("child printed no {key}: {}", self.stderr));
        usize::from_str_radix(line.trim(), 16).unwrap()
    }

    /// cma's diagnostic line.
    fn diagnostic(&self) -> &str {
        self.stderr
            .lines()
            .find(|l| l.starts_with("cma: "))
            .unwrap_or_else(|| panic!("no cma diagnostic on stderr: {}", self.stderr))
    }
}

fn die(case: &str) -> Death {
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args(["--exact", "death_child", "--nocapture", "--test-threads=1"])
        .env(CASE_VAR, case)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("DEATH-SURVIVED"),
        "{case}: cma did not abort; stderr:\n{stderr}"
    );
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "{case}: the child must die of SIGABRT; status {:?}, stderr:\n{stderr}",
        out.status
    );
    let diagnostics = stderr.lines().filter(|l| l.starts_with("cma: ")).count();
    assert_eq!(
        diagnostics, 1,
        "{case}: exactly one diagnostic line; stderr:\n{stderr}"
    );
    Death { pid, stderr }
}

fn expect(case: &str, prefix: &str, operation: &str) -> Death {
    let d = die(case);
    let addr = d.value("ADDR");
    let line = d.diagnostic();
    let want = format!("cma: {prefix} {addr:#x}");
    assert!(
        line.starts_with(&want),
        "{case}: diagnostic {line:?} should start with {want:?}"
    );
    // The operation, then the process: its pid and command line.
    let process = format!("[in {operation}] [pid {}: ", d.pid);
    assert!(
        line.contains(&process) && line.ends_with(']') && line.contains("death_child"),
        "{case}: diagnostic {line:?} should name {operation} and the process ({process}...)"
    );
    d
}

fn expect_double_free(case: &str, operation: &str) {
    let d = expect(case, "double free of", operation);
    assert!(
        !d.diagnostic().contains("another thread"),
        "{}",
        d.diagnostic()
    );
}

fn expect_interior(case: &str) {
    let d = expect(case, "invalid free: interior pointer", "free");
    let (addr, block) = (d.value("ADDR"), d.value("BLOCK"));
    let tail = format!("is {} bytes into the block at {block:#x}", addr - block);
    assert!(
        d.diagnostic().contains(&tail),
        "{:?} should contain {tail:?}",
        d.diagnostic()
    );
}

#[test]
fn double_free_of_a_small_slot_aborts() {
    let d = expect("double_free_small", "double free of", "free");
    assert!(d.diagnostic().contains("size class"), "{}", d.diagnostic());
}

#[test]
fn the_diagnostic_names_the_thread() {
    let d = expect("double_free_in_named_thread", "double free of", "free");
    let line = d.diagnostic();
    let at = line.find("] [thread ").expect("a thread part");
    let rest = &line[at + "] [thread ".len()..];
    let (id, name) = rest.split_once(' ').expect("id and name");
    assert!(id.parse::<u64>().is_ok_and(|id| id > 0), "{line}");
    assert_eq!(name, "'cma-victim']", "{line}");
}

#[test]
fn double_free_of_a_large_block_aborts() {
    expect_double_free("double_free_large", "free");
}

#[test]
fn double_free_of_a_huge_block_aborts() {
    expect_double_free("double_free_huge", "free");
}

#[test]
fn interior_pointer_into_a_small_slot_aborts() {
    expect_interior("interior_small");
}

#[test]
fn interior_pointer_into_a_large_block_aborts() {
    expect_interior("interior_large");
}

#[test]
fn interior_pointer_into_a_huge_block_aborts() {
    expect_interior("interior_huge");
}

#[test]
fn free_of_another_allocators_block_aborts() {
    expect("foreign_libc", "invalid free: not a cma block:", "free");
}

#[test]
fn free_of_a_stack_pointer_aborts() {
    expect("stack", "invalid free: not a cma block:", "free");
}

#[test]
fn free_of_a_pointer_to_nowhere_aborts() {
    expect("nowhere_low", "invalid free: not a cma block:", "free");
    expect("nowhere_high", "invalid free: not a cma block:", "free");
    expect(
        "nowhere_noncanonical",
        "invalid free: not a cma block:",
        "free",
    );
}

#[test]
fn free_of_a_block_already_freed_by_another_thread_aborts() {
    expect(
        "freed_by_other_thread",
        "double free (already freed by another thread) of",
        "free",
    );
}

#[test]
fn realloc_of_a_freed_pointer_aborts() {
    expect_double_free("realloc_freed", "realloc");
    expect_double_free("realloc_freed_large", "realloc");
}

#[test]
fn block_size_of_a_freed_pointer_aborts() {
    expect_double_free("block_size_freed", "block_size");
}

#[test]
fn block_size_of_an_interior_pointer_aborts() {
    let d = expect(
        "block_size_interior",
        "invalid free: interior pointer",
        "block_size",
    );
    assert!(
        d.diagnostic().contains("is 8 bytes into the block at"),
        "{}",
        d.diagnostic()
    );
}

// ----- the checked API: same misuse, returned, nothing changed -----

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug, PartialEq, Eq)]
struct Counts {
    allocations: u64,
    frees: u64,
    bytes_in_use: u64,
}

fn counts() -> Counts {
    let s = cma::stats();
    Counts {
        allocations: s.allocations,
        frees: s.frees,
        bytes_in_use: s.bytes_in_use,
    }
}

/// Calls `checked_free(p)`, which must fail with an error satisfying `ok`
/// and change nothing; then the allocator must keep working.
fn rejected(what: &str, p: *mut u8, ok: impl Fn(&CmaError) -> bool) -> CmaError {
    let before = counts();
    // SAFETY: deliberate misuse, through the API that reports instead of aborting.
    let err = unsafe { cma::checked_free(p) }.expect_err(what);
    assert!(ok(&err), "{what}: unexpected error {err:?}");
    assert!(err.is_misuse(), "{what}: {err:?} is a misuse");
    assert_eq!(
        counts(),
        before,
        "{what}: a rejected free changed the counters"
    );
    assert_eq!(
        cma::guard_depth(),
        0,
        "{what}: guard depth after a rejected free"
    );
    // The Display text is the diagnostic's text.
    let text = err.to_string();
    assert!(text.starts_with(err.kind_name()), "{text}");
    assert!(
        text.contains(&format!("{:#x}", p as usize)),
        "{what}: {text}"
    );
    // The block-size query rejects the pointer the same way.
    assert_eq!(
        cma::checked_block_size(p),
        Err(err),
        "{what}: checked_block_size"
    );
    assert_eq!(
        counts(),
        before,
        "{what}: a rejected block-size query changed the counters"
    );
    keeps_working();
    err
}

/// Allocation and free still work, and balance.
fn keeps_working() {
    let before = counts();
    let sizes = [1usize, 24, 100, 4000, LARGE, HUGE];
    let ptrs: Vec<*mut u8> = sizes.iter().map(|&s| cma::malloc(s)).collect();
    for (&p, &s) in ptrs.iter().zip(&sizes) {
        assert!(!p.is_null());
        assert!(cma::block_size(p) >= s);
        // SAFETY: fresh block of `s` bytes.
        unsafe { std::ptr::write_bytes(p, 0xAB, s) };
    }
    for p in ptrs {
        // SAFETY: live blocks.
        unsafe { cma::checked_free(p) }.unwrap();
    }
    let after = counts();
    assert_eq!(after.allocations - before.allocations, sizes.len() as u64);
    assert_eq!(after.frees - before.frees, sizes.len() as u64);
    assert_eq!(after.bytes_in_use, before.bytes_in_use);
}

/// Bytes of trailer each slot holds at the check level in force.
fn trailer() -> usize {
    match cma::check_level() {
        cma::CheckLevel::Fast => 0,
        _ => 8,
    }
}

/// What a report says of a live block's requested size at the check level
/// in force: recorded by the trailer at the checked levels, not at `fast`.
fn live_requested(size: usize) -> Requested {
    match cma::check_level() {
        cma::CheckLevel::Fast => Requested::NotRecorded,
        _ => Requested::Bytes(size),
    }
}

/// Whether a size class of `block_size` bytes is the one that serves a block
/// whose `block_size()` is `usable`: the same at the `fast` check level; at
/// `default`, `block_size()` is the requested size and the slot also holds an
/// 8-byte trailer.
fn class_fits(block_size: usize, usable: usize) -> bool {
    match cma::check_level() {
        cma::CheckLevel::Fast => block_size == usable,
        _ => block_size >= usable + 8 && block_size / 2 <= usable + 8 + 16,
    }
}

#[test]
fn checked_free_returns_double_free_for_every_block_kind() {
    let _s = serial();
    for size in [24usize, 100, 4000, cma::MAX_SMALL, LARGE, HUGE] {
        let p = cma::malloc(size);
        let usable = cma::block_size(p);
        // SAFETY: a live block.
        unsafe { cma::checked_free(p) }.unwrap();
        let err = rejected(
            &format!("double free of {size} bytes"),
            p,
            |e| matches!(*e, CmaError::DoubleFree { addr, .. } if addr == p as usize),
        );
        if size + trailer() <= cma::MAX_SMALL {
            assert!(
                matches!(err, CmaError::DoubleFree { block: BlockKind::Class { block_size, requested: Requested::NotKept, .. }, .. } if class_fits(block_size, usable)),
                "{err:?}"
            );
        }
        assert_eq!(cma::guard_depth(), 0);
    }
}

#[test]
fn checked_free_returns_interior_pointer_with_the_block_start() {
    let _s = serial();
    for (size, offset) in [
        (64usize, 16usize),
        (1000, 8),
        (LARGE, 8192 + 40),
        (HUGE, 4096),
    ] {
        let p = cma::malloc(size);
        // SAFETY: a live block, filled so that we can see it is untouched.
        unsafe { std::ptr::write_bytes(p, 0x5A, size) };
        let q = p.wrapping_add(offset);
        let err = rejected(
            &format!("interior pointer {size}+{offset}"),
            q,
            |e| matches!(*e, CmaError::InteriorPointer { addr, block_start, .. } if addr == q as usize && block_start == p as usize),
        );
        match (size, err) {
            (
                LARGE,
                CmaError::InteriorPointer {
                    block: BlockKind::Large { bytes, requested },
                    ..
                },
            ) => {
                assert!(bytes >= LARGE);
                assert_eq!(requested, live_requested(LARGE));
            }
            (
                HUGE,
                CmaError::InteriorPointer {
                    block: BlockKind::Huge { bytes, requested },
                    ..
                },
            ) => {
                assert!(bytes >= HUGE);
                assert_eq!(requested, live_requested(HUGE));
            }
            (LARGE | HUGE, e) => panic!("wrong block kind: {e:?}"),
            (
                _,
                CmaError::InteriorPointer {
                    block:
                        BlockKind::Class {
                            block_size,
                            requested,
                            ..
                        },
                    ..
                },
            ) => {
                assert!(class_fits(block_size, cma::block_size(p)), "{block_size}");
                assert_eq!(requested, live_requested(size), "interior of {size}");
            }
            (_, e) => panic!("wrong block kind: {e:?}"),
        }
        // The block itself is still live and intact, and frees normally.
        // SAFETY: live block of `size` bytes.
        assert!(unsafe { std::slice::from_raw_parts(p, size) }
            .iter()
            .all(|&b| b == 0x5A));
        assert!(cma::block_size(p) >= size);
        // SAFETY: live block.
        unsafe { cma::checked_free(p) }.unwrap();
    }
}

#[test]
fn checked_free_returns_not_ours_for_foreign_stack_and_wild_pointers() {
    let _s = serial();
    // SAFETY: plain libc allocation.
    let foreign = unsafe { libc::malloc(64) } as *mut u8;
    let mut local = [0u8; 32];
    let wild: [*mut u8; 5] = [
        foreign,
        local.as_mut_ptr(),
        0x10 as *mut u8,
        0x7ead_beef_0000usize as *mut u8,
        0xdead_0000_0000_1000usize as *mut u8,
    ];
    for p in wild {
        rejected(
            &format!("not ours {p:p}"),
            p,
            |e| matches!(*e, CmaError::NotOurs { addr } if addr == p as usize),
        );
    }
    std::hint::black_box(&mut local);
    // SAFETY: libc's own block, returned to libc.
    unsafe { libc::free(foreign.cast()) };
}

#[test]
fn checked_free_returns_already_freed_by_another_thread() {
    let _s = serial();
    let (p, release, owner) = block_owned_by_parked_thread(48);
    let before = counts();
    thread::spawn(move || {
        // SAFETY: a live block, freed once here.
        unsafe { cma::checked_free(p as *mut u8) }.unwrap()
    })
    .join()
    .unwrap();
    let after_remote = counts();
    assert_eq!(after_remote.frees, before.frees + 1);
    rejected(
        "freed by another thread",
        p as *mut u8,
        |e| matches!(*e, CmaError::DoubleFreeByOtherThread { addr, .. } if addr == p),
    );
    // The owner wakes up, allocates (collecting the remote free) and exits.
    release.send(()).unwrap();
    owner.join().unwrap();
    // Once collected, a further free is a plain double free.
    rejected(
        "freed by another thread, then collected",
        p as *mut u8,
        |e| matches!(*e, CmaError::DoubleFree { addr, .. } if addr == p),
    );
}

#[test]
fn checked_realloc_and_block_size_of_freed_pointers() {
    let _s = serial();
    for size in [100usize, LARGE, HUGE] {
        let p = cma::malloc(size);
        // SAFETY: live.
        unsafe { cma::free(p) };
        let before = counts();
        // SAFETY: deliberate misuse through the checked API.
        let err = unsafe { cma::try_realloc_checked(p, size * 2) }
            .expect_err("realloc of a freed pointer");
        assert!(
            matches!(err, CmaError::DoubleFree { addr, .. } if addr == p as usize),
            "{err:?}"
        );
        assert_eq!(cma::checked_block_size(p), Err(err));
        assert_eq!(counts(), before);
        assert_eq!(cma::guard_depth(), 0);
        keeps_working();
    }
}
