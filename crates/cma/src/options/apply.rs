//! Applying options: each setting goes to the module it configures. The
//! list form (`CMA_OPTIONS`, `apply_options`) turns each refusal into one
//! warning on stderr; the typed form (`Options::apply`) returns it.

use core::fmt::Write;

use super::parse::{parse, Lossy, Setting};
use super::typed::OptionsError;
use crate::check::report;
use crate::check::switches::{self, CheckSwitch};
use crate::check::{heap_check, level};
use crate::guarded::{self, sampling};
use crate::heap::{pool, quarantine};
use crate::observe::alloc_log;
use crate::observe::limits::{self, AllocLimits};
use crate::observe::profile_file;
use crate::observe::report_file::{self, DestinationRefused};
use crate::os::process;
use crate::pages::{purge_thread, PAGES};
use crate::track::sampling as profiling;
use crate::util::stack_buf::StackBuf;

/// Reads `CMA_OPTIONS` once, at initialisation.
pub(crate) fn load_from_env() {
    if let Some(value) = process::getenv(c"CMA_OPTIONS") {
        apply(value);
    }
}

/// Applies a comma-separated `key=value` list; what cannot be honoured is
/// reported on stderr and ignored.
pub(crate) fn apply(options: &[u8]) {
    let mut batch = Batch::new();
    parse(options, |item| match item {
        Ok(setting) => {
            if let Err(e) = batch.take(setting) {
                let mut digits = StackBuf::<24>::new();
                let (key, value) = match setting {
                    Setting::Check(requested) => ("check", requested.name().as_bytes()),
                    Setting::Switch(switch, on) => {
                        (switch.name(), if on { &b"1"[..] } else { &b"0"[..] })
                    }
                    Setting::Sample(n) => ("sample", number(&mut digits, n)),
                    Setting::SampleSeed(n) => ("sample_seed", number(&mut digits, n)),
                    Setting::SampleSlots(n) => ("sample_slots", number(&mut digits, n as u64)),
                    Setting::Profile(mode) => ("profile", mode.name().as_bytes()),
                    Setting::ProfileRate(n) => ("profile_rate", number(&mut digits, n)),
                    _ => return,
                };
                warn_refused(key, value, e);
            }
        }
        Err(e) => report::warn(format_args!("{e}")),
    });
    let report_path = batch.report_path;
    if let Err(e) = batch.finish() {
        warn_refused("report", report_path.unwrap_or_default(), e);
    }
}

/// `n` in decimal, in `buf`.
fn number(buf: &mut StackBuf<24>, n: u64) -> &[u8] {
    let _ = write!(buf, "{n}");
    buf.as_bytes()
}

/// One warning for an option the list named that cannot be honoured.
fn warn_refused(key: &str, value: &[u8], e: OptionsError) {
    report::warn(format_args!(
        "option '{key}={}': {e}; ignored",
        Lossy(value)
    ));
}

/// Settings on their way to the modules they configure. Most apply at
/// once; the limits are set together at the end (a list may name both),
/// and of several `report=` only the last counts (`cma run` adds its own
/// after the user's).
pub(super) struct Batch<'a> {
    alloc_limits: AllocLimits,
    limits_changed: bool,
    report_path: Option<&'a [u8]>,
    profile_path: Option<&'a [u8]>,
}

impl<'a> Batch<'a> {
    pub(super) fn new() -> Batch<'a> {
        Batch {
            alloc_limits: limits::alloc_limits(),
            limits_changed: false,
            report_path: None,
            profile_path: None,
        }
    }

    /// Applies one setting (or keeps it for `finish`).
    pub(super) fn take(&mut self, setting: Setting<'a>) -> Result<(), OptionsError> {
        match setting {
            Setting::Check(requested) => {
                check_level_allowed(requested)?;
                // Even the level in force, named, is chosen now (a
                // `GlobalAlloc` type's preference no longer applies).
                level::set_level(requested);
            }
            Setting::HugePages(on) => PAGES.lock().huge_pages = on,
            Setting::PurgeThread(on) => {
                if !on {
                    purge_thread::disable();
                }
            }
            Setting::PurgeDelayMs(ms) => PAGES.lock().purge_delay_ms = ms,
            Setting::LimitRequest(n) => {
                self.alloc_limits.max_request = Some(n);
                self.limits_changed = true;
            }
            Setting::LimitTotal(n) => {
                self.alloc_limits.max_bytes_in_use = Some(n);
                self.limits_changed = true;
            }
            Setting::Report(path) => self.report_path = Some(path),
            Setting::Quarantine(bytes) => quarantine::set_byte_bound(bytes),
            Setting::QuarantineSlots(slots) => quarantine::set_slot_bound(slots),
            Setting::ExitCheck(on) => heap_check::set_exit_check(on),
            Setting::Switch(switch, on) => {
                switch_allowed(switch, on)?;
                level::set_switch(switch, on);
            }
            // Each heap draws its countdowns when it is made: like the check
            // level, the rate and the seed are chosen before the first
            // allocation.
            Setting::Sample(n) => {
                if n != sampling::rate() {
                    sampling_allowed()?;
                    sampling::set_rate(n);
                }
            }
            Setting::SampleSeed(seed) => {
                sampling_allowed()?;
                sampling::set_seed(seed);
            }
            Setting::SampleSlots(slots) => {
                if !guarded::set_slot_count(slots) {
                    return Err(OptionsError::SamplePoolReserved);
                }
            }
            Setting::Profile(mode) => {
                if mode != profiling::requested_mode() {
                    if pool::heaps_exist() {
                        return Err(OptionsError::ProfileFixed);
                    }
                    profiling::set_mode(mode);
                }
            }
            Setting::ProfileRate(bytes) => {
                if bytes != profiling::rate() {
                    if pool::heaps_exist() {
                        return Err(OptionsError::ProfileFixed);
                    }
                    profiling::set_rate(bytes);
                }
            }
            Setting::ProfileFile(path) => self.profile_path = Some(path),
            Setting::AllocLog(on) => alloc_log::set_alloc_logging(on),
            Setting::AllocLogFd(fd) => alloc_log::set_log_fd(fd),
            Setting::AllocLogSample(n) => alloc_log::set_alloc_log_sample(n),
            Setting::Json(_) | Setting::Loaded(_) | Setting::Stats(_) => {}
        }
        Ok(())
    }

    /// Applies what `take` kept.
    pub(super) fn finish(self) -> Result<(), OptionsError> {
        if self.limits_changed {
            limits::set_alloc_limits(self.alloc_limits);
        }
        if let Some(path) = self.profile_path {
            profile_file::set_destination(path).map_err(report_refusal)?;
        }
        match self.report_path {
            Some(path) => report_file::set_destination(path).map_err(report_refusal),
            None => Ok(()),
        }
    }
}

/// Whether the check level may become `requested` now: it may while no
/// thread has allocated. Blocks handed out at the old level were not armed
/// for the new one (or were armed for checks it drops): switching then
/// would report valid blocks as damaged.
pub(super) fn check_level_allowed(requested: level::CheckLevel) -> Result<(), OptionsError> {
    let current = level::level();
    if requested != current && pool::heaps_exist() {
        return Err(OptionsError::CheckLevelFixed { requested, current });
    }
    Ok(())
}

/// Whether a check may be switched now: while no thread has allocated,
/// as the level (blocks are armed for the checks in force when handed
/// out). Naming the value in force is always allowed.
pub(super) fn switch_allowed(switch: CheckSwitch, on: bool) -> Result<(), OptionsError> {
    if switches::on(switch) != on && pool::heaps_exist() {
        return Err(OptionsError::ChecksFixed { switch });
    }
    Ok(())
}

/// Whether the sampling rate and seed may change now: while no thread has
/// allocated (each heap draws its countdowns when it is made).
fn sampling_allowed() -> Result<(), OptionsError> {
    if pool::heaps_exist() {
        return Err(OptionsError::SamplingFixed);
    }
    Ok(())
}

/// Whether the report may go to `path` (see `report_file::set_destination`).
pub(super) fn report_allowed(path: &[u8]) -> Result<(), OptionsError> {
    report_file::destination_allowed(path).map_err(report_refusal)
}

fn report_refusal(why: DestinationRefused) -> OptionsError {
    match why {
        DestinationRefused::AlreadyChosen => OptionsError::ReportAlreadyChosen,
        DestinationRefused::TooLong => OptionsError::ReportPathTooLong,
    }
}
