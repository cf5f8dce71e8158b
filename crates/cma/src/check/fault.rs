//! The fault handler's judgement: a fault in the pool of sampled blocks
//! (`guarded`) is an overflow past a block's end or before its start (a
//! guard page), a use after free (a freed block's page), or a wild access
//! (where no block ever was); it is reported like every misuse, with the
//! access's stack and the block's allocation and free stacks, and the
//! process aborts. Any other fault goes on to whatever handled it before
//! (`os::signal`).
//!
//! The handler is installed once: by libcma's constructor when sampling is
//! on, and for the Rust crate when its first sampled block is made, as that
//! thread leaves cma (`heap::guard`).

use super::error::{Access, AccessProblem, CmaError};
use super::report;
use crate::guarded::{self, sampling, zero, FRAMES};
use crate::meta::segment_map::{self, SAMPLED_POOL, TAG_HUGE, ZERO_POOL};
use crate::meta::span::{Span, SpanKind};
use crate::os::backtrace;
use crate::os::signal::{self, Fault};

/// Installs the fault handler (once; later calls do nothing).
pub(crate) fn install() {
    signal::install_fault_handler(on_fault);
}

/// Installs the fault handler when sampling is on or the level is a
/// checked one (zero-byte blocks fault when touched): for a face that
/// replaces the C allocator, from its constructor.
pub(crate) fn install_if_sampling() {
    if sampling::rate() != 0 || crate::check::level::checked() {
        install();
    }
}

/// Stack the unwinder needs to walk from the handler: below this much room
/// on an alternate signal stack, the access's stack is only the faulting
/// instruction.
const UNWIND_ROOM: usize = 16 * 1024;

fn on_fault(fault: &Fault) {
    let access = match fault.write {
        Some(true) => Access::Write,
        Some(false) => Access::Read,
        None => Access::Unknown,
    };
    if let Some((start, live)) = zero::block_at(fault.addr) {
        let problem = if live {
            AccessProblem::ZeroByte
        } else {
            AccessProblem::FreedZeroByte
        };
        report_access(
            fault,
            CmaError::BadAccess {
                problem,
                access,
                addr: fault.addr,
                block_start: start,
                size: 0,
            },
        );
    }
    if let Some((problem, start, bytes)) = page_block_fault(fault.addr) {
        report_access(
            fault,
            CmaError::BadAccess {
                problem,
                access,
                addr: fault.addr,
                block_start: start,
                size: bytes,
            },
        );
    }
    let Some(near) = guarded::block_near(fault.addr) else {
        return;
    };
    let error = match near {
        None => CmaError::BadAccess {
            problem: AccessProblem::Wild,
            access,
            addr: fault.addr,
            block_start: 0,
            size: 0,
        },
        Some(slot) => {
            let (start, size) = (slot.start(), slot.size());
            let problem = if slot.is_freed() {
                AccessProblem::UseAfterFree
            } else if fault.addr < start {
                AccessProblem::Underflow
            } else {
                AccessProblem::Overflow
            };
            CmaError::BadAccess {
                problem,
                access,
                addr: fault.addr,
                block_start: start,
                size,
            }
        }
    };
    report_access(fault, error)
}

/// The block of a mapping of its own that a fault at `addr` touched, with
/// what the access did: a freed huge or guarded large block whose sealed
/// mapping holds `addr`, or a live guarded large block whose guard does;
/// its start and size. Reads the segment map and the descriptor it names,
/// as the free path does, without a lock (a mapping reused meanwhile is no
/// longer sealed, and the access that faulted is then not cma's business).
fn page_block_fault(addr: usize) -> Option<(AccessProblem, usize, usize)> {
    let entry = segment_map::lookup(addr);
    if entry & TAG_HUGE == 0 || entry == SAMPLED_POOL || entry == ZERO_POOL {
        return None;
    }
    // SAFETY: tagged entries point at huge-block descriptors in the
    // metadata region, which stays mapped.
    let span = unsafe { &*((entry & !TAG_HUGE) as *const Span) };
    let (start, reserved, bytes) = (span.start(), span.reserved.get(), span.bytes());
    let offset = addr.wrapping_sub(start);
    if offset >= reserved {
        return None;
    }
    let guarded = span.guarded.get();
    match span.kind() {
        SpanKind::HugeFree if span.sealed.get() && guarded => {
            Some((AccessProblem::FreedLarge, start, bytes))
        }
        SpanKind::HugeFree if span.sealed.get() => Some((AccessProblem::FreedHuge, start, bytes)),
        SpanKind::Huge if guarded && offset >= bytes => {
            Some((AccessProblem::LargeOverflow, start, bytes))
        }
        _ => None,
    }
}

/// Reports a fault that was cma's, with the stack of the access, and
/// aborts.
fn report_access(fault: &Fault, error: CmaError) -> ! {
    let mut frames = [0usize; FRAMES + 4];
    let mut len = 0;
    if signal::alternate_stack_room().is_none_or(|room| room >= UNWIND_ROOM) {
        len = backtrace::capture(&mut frames, 0);
    }
    // From the faulting instruction on: the handler's own frames and the
    // signal trampoline go.
    let here = match frames[..len].iter().position(|&f| f == fault.pc) {
        Some(i) => &frames[i..len],
        None => {
            frames[0] = fault.pc;
            &frames[..usize::from(fault.pc != 0)]
        }
    };
    let here = &here[..here.len().min(FRAMES)];
    let mut report = FaultReport { error, here };
    if signal::alternate_stack_room().is_some_and(|room| room < REPORT_ROOM) {
        signal::run_on_report_stack(report_fault, (&mut report as *mut FaultReport).cast());
    }
    report::fatal_at("a memory access", error, here);
}

/// Stack the report itself needs (formatting, reading the process's
/// maps): below this much room on an alternate signal stack it is written
/// from a stack of its own (`signal::run_on_report_stack`).
const REPORT_ROOM: usize = 64 * 1024;

struct FaultReport<'a> {
    error: CmaError,
    here: &'a [usize],
}

extern "C" fn report_fault(report: *mut core::ffi::c_void) -> ! {
    // SAFETY: `on_fault`'s `FaultReport`, alive on the stack it left (it
    // never returns to it).
    let report = unsafe { &*report.cast::<FaultReport>() };
    report::fatal_at("a memory access", report.error, report.here)
}
