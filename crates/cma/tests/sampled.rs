//! Sampled guarded blocks (`sample=N`): with `sample=1` every small block
//! is sampled, so each misuse that sampling promises to catch is caught:
//! an overflow past the end (at once, by the guard page) or into the slack
//! (at free), an underflow (within the block's page at free, past it at
//! once), a read or write after free, a double free; each death test runs
//! the misuse in a child process and asserts SIGABRT and the exact
//! diagnostic (kind, address, requested size) with its stacks. A fault
//! that is not cma's still reaches the handler the program installed, or
//! the default action. With the default rate, a program that overflows
//! again and again is caught within a bounded number of tries (a fixed
//! seed makes the run repeat). Sampled blocks count, free, resize and
//! measure like any block, and the pool's mappings stay within budget.
//!
//! The death tests run at the level in force by default (`default`, the
//! checked one) and, for the main classes, at `fast` too.
//!
//! This binary does not use cma as its global allocator: only the calls
//! the tests make reach cma. The in-process tests share one process-wide
//! setting (`sample=1`, applied before cma's first allocation) and are
//! serialised, because the counters are process-wide.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, Once};

use cma::{BlockKind, CmaError};

const CASE_VAR: &str = "CMA_SAMPLED_CASE";
const PAGE: usize = 4096;

// ----- the child side -----

fn announce(label: &str, value: usize) {
    eprintln!("SAMPLED-{label}={value:#x}");
}

/// Allocates through a frame of its own, whose address the parent looks
/// for in the recorded allocation stack.
#[inline(never)]
fn allocate_here(size: usize) -> *mut u8 {
    let p = cma::malloc(size);
    assert!(!p.is_null());
    std::hint::black_box(p)
}

fn write(p: *mut u8, value: u8) {
    // SAFETY: deliberate misuse in the death cases (cma must stop it).
    unsafe { std::ptr::write_volatile(p, value) }
}

fn read(p: *const u8) -> u8 {
    // SAFETY: as for `write`.
    unsafe { std::ptr::read_volatile(p) }
}

fn free(p: *mut u8) {
    // SAFETY: a block from cma (or deliberate misuse).
    unsafe { cma::free(p) }
}

/// A fault the program's own handler must see: installs a SIGSEGV handler
/// that reports the address and exits 42.
extern "C" fn own_handler(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo; write and _exit are
    // async-signal-safe.
    unsafe {
        let addr = (*info).si_addr() as usize;
        let mut line = *b"OWN-HANDLER=0x0000000000000000\n";
        for i in 0..16 {
            let digit = (addr >> (60 - 4 * i)) & 0xf;
            line[14 + i] = b"0123456789abcdef"[digit];
        }
        libc::write(2, line.as_ptr().cast(), line.len());
        libc::_exit(42);
    }
}

fn install_own_handler() {
    // SAFETY: plain sigaction on a zeroed, initialised value.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = own_handler as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGSEGV, &action, std::ptr::null_mut()),
            0
        );
    }
}

fn current_segv_handler() -> usize {
    // SAFETY: queries the action into a zeroed value.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGSEGV, std::ptr::null(), &mut action);
        action.sa_sigaction
    }
}

/// A page of no access that is nobody's block.
fn unrelated_no_access_page() -> *mut u8 {
    // SAFETY: a fresh anonymous mapping.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    p.cast()
}

/// Lines of /proc/self/maps: the process's mappings.
fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

fn run_case(case: &str) {
    announce("FN", allocate_here as *const () as usize);
    match case {
        "overflow" => {
            let p = allocate_here(32);
            announce("ADDR", p as usize);
            write(p.wrapping_add(32), 1);
        }
        "overflow_into_slack" => {
            let p = allocate_here(13);
            announce("ADDR", p as usize);
            write(p.wrapping_add(13), 1);
            free(p);
        }
        "underflow_in_page" => {
            let p = allocate_here(32);
            announce("ADDR", p as usize);
            write(p.wrapping_sub(1), 1);
            free(p);
        }
        "underflow_past_page" => {
            let p = allocate_here(32);
            announce("ADDR", p as usize);
            let before_page = (p as usize & !(PAGE - 1)) - 8;
            announce("FAULT", before_page);
            write(before_page as *mut u8, 1);
        }
        "write_after_free" => {
            let p = allocate_here(48);
            announce("ADDR", p as usize);
            free(p);
            write(p.wrapping_add(8), 1);
        }
        "read_after_free" => {
            let p = allocate_here(48);
            announce("ADDR", p as usize);
            free(p);
            std::hint::black_box(read(p.wrapping_add(8)));
        }
        "double_free" => {
            let p = allocate_here(48);
            announce("ADDR", p as usize);
            free(p);
            free(p);
        }
        "zero_size" => {
            let p = allocate_here(0);
            announce("ADDR", p as usize);
            std::hint::black_box(read(p));
        }
        "own_handler_gets_foreign_faults" => {
            install_own_handler();
            let own = current_segv_handler();
            // A sampled block: cma installs its handler (chained to the
            // program's) as this thread leaves cma.
            let p = allocate_here(32);
            free(p);
            assert_ne!(current_segv_handler(), own, "cma installed no handler");
            let q = unrelated_no_access_page();
            announce("FAULT", q as usize);
            write(q, 1);
        }
        "foreign_fault_without_handler" => {
            let p = allocate_here(32);
            free(p);
            write(unrelated_no_access_page(), 1);
        }
        "overflows_until_caught" => {
            // The default rate, a fixed seed (CMA_OPTIONS): one overflow
            // by a byte past a 64-byte block per try, between blocks of
            // other sizes that come and go.
            let mut ring = [std::ptr::null_mut::<u8>(); 64];
            let mut seed = 0x2545_f491_4f6c_dd1du64;
            let tries = 10 * cma::DEFAULT_SAMPLE_RATE as usize;
            for i in 0..tries {
                for _ in 0..3 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let slot = (seed >> 32) as usize % ring.len();
                    free(ring[slot]);
                    ring[slot] = cma::malloc(1 + (seed % 2048) as usize);
                }
                if i % 256 == 0 {
                    eprintln!("SAMPLED-TRIES={i}");
                }
                let p = cma::malloc(64);
                write(p.wrapping_add(64), 0);
                free(p);
            }
        }
        "mappings_stay_within_budget" => {
            let before = mappings();
            let mut live = Vec::new();
            let mut seed = 7u64;
            for _ in 0..20_000 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if live.len() < 64 && seed >> 63 == 0 || live.is_empty() {
                    live.push(cma::malloc(1 + (seed >> 40) as usize % 4000));
                } else {
                    let i = (seed >> 33) as usize % live.len();
                    free(live.swap_remove(i));
                }
            }
            let peak = mappings();
            for p in live {
                free(p);
            }
            eprintln!(
                "SAMPLED-MAPS before={before} peak={peak} after={} sampled={}",
                mappings(),
                cma::stats().sampled_allocations
            );
            std::process::exit(0);
        }
        other => panic!("unknown case {other}"),
    }
    eprintln!("SAMPLED-SURVIVED");
}

/// The child's entry point; does nothing when run as an ordinary test.
#[test]
fn sampled_child() {
    if let Ok(case) = std::env::var(CASE_VAR) {
        run_case(&case);
        std::process::exit(3);
    }
}

// ----- the parent side -----

struct Child {
    pid: u32,
    status: std::process::ExitStatus,
    stderr: String,
}

impl Child {
    fn value(&self, label: &str) -> usize {
        let key = format!("SAMPLED-{label}=0x");
        let v = self
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .unwrap_or_else(|| panic!("child printed no {key}: {}", self.stderr));
        usize::from_str_radix(v.trim(), 16).unwrap()
    }

    fn diagnostic(&self) -> &str {
        self.stderr
            .lines()
            .find(|l| l.starts_with("cma: "))
            .unwrap_or_else(|| panic!("no cma diagnostic on stderr: {}", self.stderr))
    }

    /// The recorded stack under `label` (`allocated`, `freed`, `access`,
    /// `free`): its frames' addresses.
    fn stack(&self, label: &str) -> Vec<usize> {
        let head = format!("    {label} by thread ");
        let mut lines = self.stderr.lines().skip_while(|l| !l.starts_with(&head));
        assert!(lines.next().is_some(), "no {label} stack: {}", self.stderr);
        lines
            .take_while(|l| l.starts_with("      #"))
            .map(|l| {
                let addr = l.split_whitespace().nth(1).unwrap();
                usize::from_str_radix(addr.trim_start_matches("0x"), 16).unwrap()
            })
            .collect()
    }
}

fn run_child(case: &str, options: &str) -> Child {
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args([
            "--exact",
            "sampled_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CASE_VAR, case)
        .env("CMA_OPTIONS", options)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    Child {
        pid,
        status: out.status,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `case` with every small block sampled; it must die of SIGABRT with
/// one diagnostic line, `expected` (the operation and process follow it).
fn dies_with(case: &str, expected: impl Fn(&Child) -> String, operation: &str) -> Child {
    dies_with_options(case, "sample=1", expected, operation)
}

/// `dies_with` under `options`.
fn dies_with_options(
    case: &str,
    options: &str,
    expected: impl Fn(&Child) -> String,
    operation: &str,
) -> Child {
    let c = run_child(case, options);
    assert!(
        !c.stderr.contains("SAMPLED-SURVIVED"),
        "{case}: cma did not stop the misuse; stderr:\n{}",
        c.stderr
    );
    assert_eq!(
        c.status.signal(),
        Some(libc::SIGABRT),
        "{case}: must die of SIGABRT; status {:?}, stderr:\n{}",
        c.status,
        c.stderr
    );
    let diagnostics = c.stderr.lines().filter(|l| l.starts_with("cma: ")).count();
    assert_eq!(diagnostics, 1, "{case}: one diagnostic line:\n{}", c.stderr);
    let want = format!("cma: {} [in {operation}] [pid {}: ", expected(&c), c.pid);
    assert!(
        c.diagnostic().starts_with(&want),
        "{case}: diagnostic\n  {}\nshould start with\n  {want}",
        c.diagnostic()
    );
    // The allocating function is in the recorded allocation stack (the
    // unwinder needs no frame pointers).
    let f = c.value("FN");
    assert!(
        c.stack("allocated").iter().any(|&a| a > f && a - f < 512),
        "{case}: allocate_here ({f:#x}) is not in the allocation stack:\n{}",
        c.stderr
    );
    c
}

#[test]
fn overflow_by_one_byte_past_the_end_faults_at_once() {
    let c = dies_with(
        "overflow",
        |c| {
            let p = c.value("ADDR");
            format!(
                "heap buffer overflow: write of {:#x}, 0 bytes past the end of the 32-byte sampled block at {p:#x}",
                p + 32
            )
        },
        "a memory access",
    );
    assert!(!c.stack("access").is_empty(), "{}", c.stderr);
}

#[test]
fn overflow_into_the_slack_is_reported_at_free() {
    dies_with(
        "overflow_into_slack",
        |c| {
            format!(
                "heap buffer overflow: the bytes after the block at {:#x} were overwritten (sampled block of 13 bytes)",
                c.value("ADDR")
            )
        },
        "free",
    );
}

#[test]
fn underflow_within_the_page_is_reported_at_free() {
    dies_with(
        "underflow_in_page",
        |c| {
            format!(
                "heap buffer underflow: the bytes before the block at {:#x} were overwritten (sampled block of 32 bytes)",
                c.value("ADDR")
            )
        },
        "free",
    );
}

#[test]
fn underflow_past_the_page_faults_at_once() {
    dies_with(
        "underflow_past_page",
        |c| {
            let (p, a) = (c.value("ADDR"), c.value("FAULT"));
            format!(
                "heap buffer underflow: write of {a:#x}, {} bytes before the 32-byte sampled block at {p:#x}",
                p - a
            )
        },
        "a memory access",
    );
}

#[test]
fn write_after_free_faults_with_both_stacks() {
    let c = dies_with(
        "write_after_free",
        |c| {
            let p = c.value("ADDR");
            format!(
                "use after free: write of {:#x}, 8 bytes into the freed 48-byte sampled block at {p:#x}",
                p + 8
            )
        },
        "a memory access",
    );
    assert!(!c.stack("freed").is_empty(), "{}", c.stderr);
}

#[test]
fn read_after_free_faults_with_both_stacks() {
    let c = dies_with(
        "read_after_free",
        |c| {
            let p = c.value("ADDR");
            format!(
                "use after free: read of {:#x}, 8 bytes into the freed 48-byte sampled block at {p:#x}",
                p + 8
            )
        },
        "a memory access",
    );
    assert!(!c.stack("freed").is_empty(), "{}", c.stderr);
}

#[test]
fn double_free_of_a_sampled_block_names_it() {
    let c = dies_with(
        "double_free",
        |c| {
            format!(
                "double free of {:#x} (sampled block of 48 bytes)",
                c.value("ADDR")
            )
        },
        "free",
    );
    assert!(!c.stack("freed").is_empty(), "{}", c.stderr);
    assert!(!c.stack("free").is_empty(), "{}", c.stderr);
}

#[test]
fn any_access_through_a_zero_byte_sampled_block_faults() {
    // At the fast level: a checked level serves every zero-byte request
    // from its pool of untouchable addresses instead (tests/zero_byte.rs).
    dies_with_options(
        "zero_size",
        "check=fast,sample=1",
        |c| {
            let p = c.value("ADDR");
            format!(
                "heap buffer overflow: read of {p:#x}, 0 bytes past the end of the 0-byte sampled block at {p:#x}"
            )
        },
        "a memory access",
    );
}

#[test]
fn sampling_catches_the_same_at_the_fast_level() {
    let options = "check=fast,sample=1";
    dies_with_options(
        "overflow",
        options,
        |c| {
            let p = c.value("ADDR");
            format!(
                "heap buffer overflow: write of {:#x}, 0 bytes past the end of the 32-byte sampled block at {p:#x}",
                p + 32
            )
        },
        "a memory access",
    );
    dies_with_options(
        "write_after_free",
        options,
        |c| {
            let p = c.value("ADDR");
            format!(
                "use after free: write of {:#x}, 8 bytes into the freed 48-byte sampled block at {p:#x}",
                p + 8
            )
        },
        "a memory access",
    );
    dies_with_options(
        "underflow_in_page",
        options,
        |c| {
            format!(
                "heap buffer underflow: the bytes before the block at {:#x} were overwritten (sampled block of 32 bytes)",
                c.value("ADDR")
            )
        },
        "free",
    );
}

#[test]
fn a_fault_that_is_not_cmas_reaches_the_programs_own_handler() {
    let c = run_child("own_handler_gets_foreign_faults", "sample=1");
    assert_eq!(c.status.code(), Some(42), "stderr:\n{}", c.stderr);
    let fault = c.value("FAULT");
    assert!(
        c.stderr.contains(&format!("OWN-HANDLER={fault:#018x}")),
        "{}",
        c.stderr
    );
    assert!(!c.stderr.contains("cma: "), "{}", c.stderr);
}

#[test]
fn a_fault_that_is_not_cmas_without_a_handler_is_a_plain_sigsegv() {
    let c = run_child("foreign_fault_without_handler", "sample=1");
    assert_eq!(
        c.status.signal(),
        Some(libc::SIGSEGV),
        "status {:?}, stderr:\n{}",
        c.status,
        c.stderr
    );
    assert!(!c.stderr.contains("cma: "), "{}", c.stderr);
}

#[test]
fn repeated_overflows_are_caught_at_the_default_rate_within_bounded_tries() {
    // At the fast level: at the checked one, the trailer of an unsampled
    // block would report the overflow at its free.
    let c = run_child("overflows_until_caught", "check=fast,sample_seed=20261202");
    assert_eq!(
        c.status.signal(),
        Some(libc::SIGABRT),
        "not caught in {} tries; status {:?}, stderr tail:\n{}",
        10 * cma::DEFAULT_SAMPLE_RATE,
        c.status,
        &c.stderr[c.stderr.len().saturating_sub(2000)..]
    );
    let d = c.diagnostic();
    assert!(
        d.starts_with("cma: heap buffer overflow: write of ")
            && d.contains(", 0 bytes past the end of the 64-byte sampled block at "),
        "{d}"
    );
    let tries = c
        .stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("SAMPLED-TRIES="))
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(0);
    eprintln!(
        "caught after {tries}..{} tries at rate {}",
        tries + 256,
        cma::DEFAULT_SAMPLE_RATE
    );
}

#[test]
fn the_pools_mappings_stay_within_budget() {
    let c = run_child("mappings_stay_within_budget", "sample=1,sample_slots=64");
    assert!(c.status.success(), "{}", c.stderr);
    let line = c
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("SAMPLED-MAPS "))
        .unwrap_or_else(|| panic!("{}", c.stderr));
    let field = |name: &str| -> usize {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .unwrap()
            .parse()
            .unwrap()
    };
    let (before, peak, after, sampled) = (
        field("before"),
        field("peak"),
        field("after"),
        field("sampled"),
    );
    assert!(sampled >= 5_000, "{line}");
    // The pool: 64 slots between 65 guard pages, at most 129 mappings; its
    // descriptors: one; a segment or two for the heap and metadata.
    let budget = 2 * 64 + 1 + 1 + 4;
    assert!(peak <= before + budget, "{line}: budget {budget}");
    assert!(after <= before + budget, "{line}: budget {budget}");
}

// ----- in-process: sampled blocks behave like any block -----

static SERIAL: Mutex<()> = Mutex::new(());

/// Every small block sampled, in a pool of 16 slots (before cma's first
/// allocation in this process); the lock serialises the tests.
fn sampled_process() -> MutexGuard<'static, ()> {
    static SETUP: Once = Once::new();
    SETUP.call_once(|| cma::apply_options(b"sample=1,sample_slots=16"));
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn sampled() -> u64 {
    cma::stats().sampled_allocations
}

#[test]
fn sampled_blocks_count_measure_and_resize_like_any_block() {
    let _serial = sampled_process();
    let before = cma::stats();
    // C's malloc(100): 16-byte aligned, so the 112-byte class.
    let class = cma::class_block_sizes()
        .iter()
        .position(|&bs| bs == 112)
        .unwrap();
    let blocks: Vec<*mut u8> = (0..10).map(|_| cma::malloc(100)).collect();
    let s = cma::stats();
    assert_eq!(s.sampled_allocations - before.sampled_allocations, 10);
    assert_eq!(s.allocations - before.allocations, 10);
    assert_eq!(
        s.classes[class].blocks_in_use - before.classes[class].blocks_in_use,
        10
    );
    // The class counts ten of its blocks; the total, their usable sizes.
    assert_eq!(
        s.classes[class].bytes_in_use - before.classes[class].bytes_in_use,
        10 * 112
    );
    assert_eq!(s.bytes_in_use - before.bytes_in_use, 10 * 100);
    for &p in &blocks {
        assert_eq!(cma::usable_size(p), 100);
        assert_eq!(cma::checked_block_size(p), Ok(100));
        // SAFETY: a live block of 100 bytes.
        unsafe { std::ptr::write_bytes(p, 0x5a, 100) };
    }
    // realloc: the same size stays; another moves with the contents.
    // SAFETY: live blocks from cma.
    let moved: Vec<*mut u8> = blocks
        .iter()
        .map(|&p| unsafe {
            assert_eq!(cma::realloc(p, 100), p);
            let q = cma::realloc(p, 300);
            assert!(!q.is_null() && q != p);
            assert!(std::slice::from_raw_parts(q, 100)
                .iter()
                .all(|&b| b == 0x5a));
            cma::realloc(q, 20)
        })
        .collect();
    for &p in &moved {
        // SAFETY: live blocks of 20 bytes.
        assert!(unsafe { std::slice::from_raw_parts(p, 20) }
            .iter()
            .all(|&b| b == 0x5a));
        // SAFETY: live blocks from cma.
        unsafe { cma::checked_free(p) }.unwrap();
    }
    let after = cma::stats();
    assert_eq!(after.allocations - before.allocations, 30);
    assert_eq!(after.frees - before.frees, 30);
    assert_eq!(after.bytes_in_use, before.bytes_in_use);
    assert_eq!(cma::guard_depth(), 0);
}

#[test]
fn calloc_of_a_reused_slot_is_zero() {
    let _serial = sampled_process();
    // Fill every slot's page with junk, then ask for zeroed blocks.
    for _ in 0..32 {
        let p = cma::malloc(512);
        // SAFETY: a live block of 512 bytes.
        unsafe {
            std::ptr::write_bytes(p, 0xff, 512);
            cma::free(p);
        }
    }
    let before = sampled();
    for _ in 0..32 {
        let p = cma::calloc(1, 512);
        assert!(!p.is_null());
        // SAFETY: a live block of 512 bytes.
        assert!(unsafe { std::slice::from_raw_parts(p, 512) }
            .iter()
            .all(|&b| b == 0));
        free(p);
    }
    assert_eq!(sampled() - before, 32);
}

#[test]
fn misuse_of_sampled_blocks_is_returned_by_the_checked_api() {
    let _serial = sampled_process();
    let p = cma::malloc(48);
    assert_eq!(
        // SAFETY: an interior pointer, rejected without change.
        unsafe { cma::checked_free(p.wrapping_add(8)) },
        Err(CmaError::InteriorPointer {
            addr: p as usize + 8,
            block_start: p as usize,
            block: BlockKind::Sampled { size: 48 }
        })
    );
    // SAFETY: a live block.
    unsafe { cma::checked_free(p) }.unwrap();
    let counts = cma::stats();
    assert_eq!(
        // SAFETY: a freed block, rejected without change.
        unsafe { cma::checked_free(p) },
        Err(CmaError::DoubleFree {
            addr: p as usize,
            block: BlockKind::Sampled { size: 48 }
        })
    );
    assert_eq!(
        cma::checked_block_size(p),
        Err(CmaError::DoubleFree {
            addr: p as usize,
            block: BlockKind::Sampled { size: 48 }
        })
    );
    assert_eq!(cma::stats().frees, counts.frees);
    assert_eq!(cma::guard_depth(), 0);
}

#[test]
fn a_full_pool_serves_from_slabs_and_blocks_of_every_size_still_work() {
    let _serial = sampled_process();
    let before = sampled();
    // More live blocks than slots, and sizes beyond a page.
    let blocks: Vec<(*mut u8, usize)> = (0..64)
        .map(|i| {
            let size = [1, 24, 100, 4096, 5000, 70_000][i % 6];
            let p = cma::malloc(size);
            assert!(!p.is_null());
            // SAFETY: a live block of `size` bytes.
            unsafe { std::ptr::write_bytes(p, i as u8, size) };
            (p, size)
        })
        .collect();
    let taken = sampled() - before;
    assert!(taken <= 16, "{taken} sampled with 16 slots");
    for (i, &(p, size)) in blocks.iter().enumerate() {
        assert!(cma::usable_size(p) >= size);
        // SAFETY: a live block of `size` bytes.
        assert!(unsafe { std::slice::from_raw_parts(p, size) }
            .iter()
            .all(|&b| b == i as u8));
        free(p);
    }
}
