//! The kernel side of cma's fault handler: installs one `SIGSEGV` handler,
//! once, that hands each fault the kernel raised to a callback of the layers
//! above (which reports it and aborts when the address is cma's, see
//! `check::fault`) and otherwise passes the signal on to the handler it
//! replaced, as if cma's had never been there.
//!
//! Passing on: a handler the program installed before cma's is called with
//! the signal's arguments (`SA_SIGINFO` or not, as it was installed); with
//! no handler (`SIG_DFL`, or `SIG_IGN`, which the kernel does not honour for
//! a fault), the default action is restored and the faulting instruction
//! runs again, so the process ends by `SIGSEGV` exactly as it would have
//! without cma (a `SIGSEGV` sent with `kill` is raised again instead). A
//! handler the program installs after cma's replaces it: cma's faults then go
//! to the program's handler, which is what the program asked for.
//!
//! The handler runs on the thread's alternate signal stack when it has one
//! (`SA_ONSTACK`), so that a stack overflow still reaches the handler it
//! chains to; it allocates nothing, takes no lock and keeps `errno`.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use super::process::{errno, set_errno};

/// A fault, as the kernel described it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fault {
    /// The address whose access faulted.
    pub(crate) addr: usize,
    /// Whether the access read or wrote, where the processor says.
    pub(crate) write: Option<bool>,
    /// The faulting instruction.
    pub(crate) pc: usize,
}

/// Called for every fault the kernel raises; returns when the fault is not
/// the callee's business (it reports and aborts otherwise).
pub(crate) type FaultCallback = fn(&Fault);

const NOT_INSTALLED: u8 = 0;
const INSTALLING: u8 = 1;
const INSTALLED: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(NOT_INSTALLED);
static CALLBACK: AtomicUsize = AtomicUsize::new(0);

/// The action cma's handler replaced; written once, before cma's handler is
/// installed, and only read after.
struct Previous(UnsafeCell<libc::sigaction>);

// SAFETY: written by the one thread that wins `STATE`'s NOT_INSTALLED ->
// INSTALLING transition, before `sigaction` publishes the handler that
// reads it; never written again.
unsafe impl Sync for Previous {}

// SAFETY: an all-zero `sigaction` is a valid value (`SIG_DFL`, no flags).
static PREVIOUS: Previous = Previous(UnsafeCell::new(unsafe { core::mem::zeroed() }));

/// Installs the handler (once per process; later calls return at once),
/// calling `callback` for every fault the kernel raises. Returns whether
/// cma's handler is installed.
pub(crate) fn install_fault_handler(callback: FaultCallback) -> bool {
    match STATE.compare_exchange(
        NOT_INSTALLED,
        INSTALLING,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => {}
        Err(state) => return state == INSTALLED,
    }
    CALLBACK.store(callback as *const () as usize, Ordering::Release);
    // SAFETY: plain sigaction calls on local, initialised values; PREVIOUS
    // is written only here (see `Previous`), before the new handler exists.
    let installed = unsafe {
        let mut action: libc::sigaction = core::mem::zeroed();
        action.sa_sigaction = handle_fault as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGSEGV, &action, PREVIOUS.0.get()) == 0
    };
    STATE.store(
        if installed { INSTALLED } else { NOT_INSTALLED },
        Ordering::Release,
    );
    installed
}

/// Whether cma's handler was installed (the program may have replaced it
/// since).
pub(crate) fn fault_handler_installed() -> bool {
    STATE.load(Ordering::Acquire) == INSTALLED
}

extern "C" fn handle_fault(
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    let saved = errno();
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    let callback = CALLBACK.load(Ordering::Acquire);
    // A positive code: the kernel raised it for a fault (a signal sent with
    // kill or sigqueue has a code of 0 or below, and an address that means
    // nothing).
    if code > 0 && callback != 0 {
        let fault = Fault {
            addr,
            write: access_was_write(context),
            pc: faulting_pc(context),
        };
        // SAFETY: CALLBACK holds a `FaultCallback`, stored before the
        // handler was installed.
        let callback: FaultCallback = unsafe { core::mem::transmute(callback) };
        callback(&fault);
    }
    pass_on(sig, info, context, code);
    set_errno(saved);
}

/// Passes the signal to the action cma's handler replaced (see the module
/// docs).
fn pass_on(sig: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void, code: i32) {
    // SAFETY: PREVIOUS is never written after the handler was installed.
    let previous = unsafe { &*PREVIOUS.0.get() };
    let handler = previous.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // SAFETY: restores the default action with a zeroed (valid)
        // sigaction; raise has no preconditions.
        unsafe {
            let mut default: libc::sigaction = core::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &default, core::ptr::null_mut());
            if code <= 0 {
                libc::raise(sig);
            }
        }
        // Returning runs the faulting instruction again: it faults under
        // the default action, which ends the process with SIGSEGV.
        return;
    }
    if previous.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: installed with SA_SIGINFO, so it is a three-argument
        // handler; it receives the arguments the kernel gave cma's.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { core::mem::transmute(handler) };
        f(sig, info, context);
    } else {
        // SAFETY: installed without SA_SIGINFO: a one-argument handler.
        let f: extern "C" fn(libc::c_int) = unsafe { core::mem::transmute(handler) };
        f(sig);
    }
}

/// Whether the faulting access was a write: on x86_64 the page-fault error
/// code's bit 1; unknown elsewhere.
fn access_was_write(context: *mut libc::c_void) -> Option<bool> {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        // SAFETY: the kernel passes a valid ucontext to an SA_SIGINFO
        // handler.
        let err = unsafe {
            (*(context as *const libc::ucontext_t)).uc_mcontext.gregs[libc::REG_ERR as usize]
        };
        Some(err & 2 != 0)
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        let _ = context;
        None
    }
}

/// The address of the faulting instruction (0 where unknown).
fn faulting_pc(context: *mut libc::c_void) -> usize {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        // SAFETY: as in `access_was_write`.
        unsafe {
            (*(context as *const libc::ucontext_t)).uc_mcontext.gregs[libc::REG_RIP as usize]
                as usize
        }
    }
    #[cfg(all(target_arch = "aarch64", target_os = "linux"))]
    {
        // SAFETY: as in `access_was_write`.
        unsafe { (*(context as *const libc::ucontext_t)).uc_mcontext.pc as usize }
    }
    #[cfg(not(any(
        all(target_arch = "x86_64", target_os = "linux"),
        all(target_arch = "aarch64", target_os = "linux")
    )))]
    {
        let _ = context;
        0
    }
}

/// Bytes left on the signal stack the handler runs on, when it runs on the
/// thread's alternate stack; `None` on the thread's own stack (room enough).
pub(crate) fn alternate_stack_room() -> Option<usize> {
    // SAFETY: queries the calling thread's alternate stack into a local.
    let stack = unsafe {
        let mut stack: libc::stack_t = core::mem::zeroed();
        if libc::sigaltstack(core::ptr::null(), &mut stack) != 0 {
            return None;
        }
        stack
    };
    if stack.ss_flags & libc::SS_ONSTACK == 0 {
        return None;
    }
    let here = &stack as *const libc::stack_t as usize;
    Some(here.saturating_sub(stack.ss_sp as usize))
}

/// Bytes of the stack `run_on_report_stack` switches to.
const REPORT_STACK_BYTES: usize = 128 * 1024;

#[repr(C, align(16))]
struct ReportStack(UnsafeCell<[u8; REPORT_STACK_BYTES]>);

// SAFETY: only the one thread that wins `REPORT_STACK_TAKEN` uses it.
unsafe impl Sync for ReportStack {}

static REPORT_STACK: ReportStack = ReportStack(UnsafeCell::new([0; REPORT_STACK_BYTES]));
static REPORT_STACK_TAKEN: AtomicU8 = AtomicU8::new(0);

/// Runs `report(arg)`, which never returns (it reports and aborts), on a
/// stack of its own when the handler runs on a small alternate signal stack
/// (a Rust thread's is about 8 KiB: formatting a report there overflows it
/// in a debug build). The first thread to ask gets the stack; another one
/// (two faults at once, the process is ending anyway) runs where it is.
pub(crate) fn run_on_report_stack(
    report: extern "C" fn(*mut core::ffi::c_void) -> !,
    arg: *mut core::ffi::c_void,
) -> ! {
    #[cfg(target_arch = "x86_64")]
    if REPORT_STACK_TAKEN.swap(1, Ordering::AcqRel) == 0 {
        let top = REPORT_STACK.0.get() as usize + REPORT_STACK_BYTES;
        // SAFETY: `top` is the 16-byte-aligned end of a static stack that
        // only this thread uses from now on; `report` never returns, so
        // nothing needs the old stack pointer back. The call pushes the
        // return address, leaving the callee the alignment the ABI expects.
        unsafe {
            core::arch::asm!(
                "mov rsp, {top}",
                "call {report}",
                "ud2",
                top = in(reg) top,
                report = in(reg) report,
                in("rdi") arg,
                options(noreturn)
            );
        }
    }
    report(arg)
}
