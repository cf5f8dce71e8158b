//! Allocation limits, for failure injection: a largest single request and a
//! largest total of bytes in use. A call over a limit fails (null, or an
//! error from the checked API) before anything changes.
//!
//! While no limit is set, the fast path pays one relaxed load of `ACTIVE`.
//! With a limit set, every allocation takes the slow path, which sums the
//! counters of all heaps (`heap::counters::bytes_in_use`): exact when one
//! thread allocates, approximate while several threads race on it.
//!
//! The backend tables (`backend::table`: the Rust API's backends, libcma's
//! backend hooks) report the bytes of the blocks they hand out from
//! elsewhere here (`add_external_bytes`), so that the total limit covers
//! them too: `max_bytes_in_use` bounds the engine's bytes plus those.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::check::error::CmaError;
use crate::check::level::{set_mode_bit, MODE_LIMITS};
use crate::heap::counters::bytes_in_use;

static ACTIVE: AtomicBool = AtomicBool::new(false);
static MAX_REQUEST: AtomicUsize = AtomicUsize::new(usize::MAX);
static MAX_TOTAL: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Bytes of blocks a face holds outside the engine (see the module docs).
static EXTERNAL_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Limits on allocation, for failure injection. `None` means no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocLimits {
    /// The largest single request, in bytes.
    pub max_request: Option<usize>,
    /// The largest total of bytes in use (usable sizes) after an allocation,
    /// blocks of backends (`cma::Backend`) included.
    pub max_bytes_in_use: Option<usize>,
}

/// Sets (or, with `AllocLimits::default()`, clears) the allocation limits.
pub fn set_alloc_limits(limits: AllocLimits) {
    MAX_REQUEST.store(limits.max_request.unwrap_or(usize::MAX), Ordering::Relaxed);
    MAX_TOTAL.store(
        limits.max_bytes_in_use.unwrap_or(usize::MAX),
        Ordering::Relaxed,
    );
    let active = limits.max_request.is_some() || limits.max_bytes_in_use.is_some();
    ACTIVE.store(active, Ordering::Release);
    set_mode_bit(MODE_LIMITS, active);
}

/// The allocation limits in force.
pub fn alloc_limits() -> AllocLimits {
    let get = |a: &AtomicUsize| Some(a.load(Ordering::Relaxed)).filter(|&v| v != usize::MAX);
    AllocLimits {
        max_request: get(&MAX_REQUEST),
        max_bytes_in_use: get(&MAX_TOTAL),
    }
}

#[inline(always)]
pub(crate) fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// Checks a request of `size` bytes that would add `added` usable bytes to
/// the bytes in use against the limits.
pub(crate) fn check(size: usize, added: usize) -> Result<(), CmaError> {
    let max_request = MAX_REQUEST.load(Ordering::Relaxed);
    if size > max_request {
        return Err(CmaError::RequestLimitExceeded {
            size,
            limit: max_request,
        });
    }
    let max_total = MAX_TOTAL.load(Ordering::Relaxed);
    if max_total != usize::MAX {
        let in_use = (bytes_in_use() as usize).saturating_add(external_bytes());
        if in_use.saturating_add(added) > max_total {
            return Err(CmaError::TotalLimitExceeded {
                size,
                in_use,
                limit: max_total,
            });
        }
    }
    Ok(())
}

/// Counts `bytes` of blocks that a backend handed out against the total
/// limit.
pub(crate) fn add_external_bytes(bytes: usize) {
    EXTERNAL_BYTES.fetch_add(bytes, Ordering::Relaxed);
}

/// Stops counting `bytes` of blocks from elsewhere (they were freed).
pub(crate) fn sub_external_bytes(bytes: usize) {
    // Saturating: a face that gives back more than it added must not make
    // the limit refuse everything.
    let _ = EXTERNAL_BYTES.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
        Some(b.saturating_sub(bytes))
    });
}

/// Bytes of blocks from elsewhere, now.
pub(crate) fn external_bytes() -> usize {
    EXTERNAL_BYTES.load(Ordering::Relaxed)
}
