//! Applying options: each setting goes to the module it configures; each
//! error becomes one warning on stderr.

use super::parse::{parse, Lossy, Setting};
use crate::check::level;
use crate::check::report;
use crate::heap::{pool, quarantine};
use crate::observe::limits;
use crate::observe::report_file::{self, DestinationRefused};
use crate::os::process;
use crate::pages::{purge_thread, PAGES};

/// Reads `CMA_OPTIONS` once, at initialisation.
pub(crate) fn load_from_env() {
    if let Some(value) = process::getenv(c"CMA_OPTIONS") {
        apply(value);
    }
}

/// Applies a comma-separated `key=value` list.
pub(crate) fn apply(options: &[u8]) {
    let mut alloc_limits = limits::alloc_limits();
    let mut limits_changed = false;
    let mut report_path = None;
    parse(options, |item| match item {
        Ok(Setting::Check(l)) if l != level::level() => {
            if pool::heaps_exist() {
                // Blocks handed out at the old level were not armed for the
                // new one (or were armed for checks it drops): switching now
                // would report valid blocks as damaged.
                report::warn(format_args!(
                    "option 'check={}': the check level is chosen before the first allocation (set it in CMA_OPTIONS); ignored",
                    l.name()
                ));
            } else {
                level::set_level(l);
            }
        }
        // The level in force, named: it is chosen now (a `GlobalAlloc`
        // type's preference no longer applies).
        Ok(Setting::Check(l)) => level::set_level(l),
        Ok(Setting::HugePages(on)) => PAGES.lock().huge_pages = on,
        Ok(Setting::PurgeThread(on)) => {
            if !on {
                purge_thread::disable();
            }
        }
        Ok(Setting::PurgeDelayMs(ms)) => PAGES.lock().purge_delay_ms = ms,
        Ok(Setting::LimitRequest(n)) => {
            alloc_limits.max_request = Some(n);
            limits_changed = true;
        }
        Ok(Setting::LimitTotal(n)) => {
            alloc_limits.max_bytes_in_use = Some(n);
            limits_changed = true;
        }
        // As for every key, the last in the list counts (`cma run` adds
        // its own after the user's).
        Ok(Setting::Report(path)) => report_path = Some(path),
        Ok(Setting::Quarantine(bytes)) => {
            let (slots, _) = quarantine::bounds();
            quarantine::set_bounds(slots, bytes);
        }
        Ok(Setting::QuarantineSlots(slots)) => {
            let (_, bytes) = quarantine::bounds();
            quarantine::set_bounds(slots, bytes);
        }
        Ok(Setting::Json(_) | Setting::Loaded(_) | Setting::Stats(_)) => {}
        Err(e) => report::warn(format_args!("{e}")),
    });
    if limits_changed {
        limits::set_alloc_limits(alloc_limits);
    }
    if let Some(path) = report_path {
        if let Err(why) = report_file::set_destination(path) {
            let why = match why {
                DestinationRefused::AlreadyChosen => {
                    "the report's destination is chosen once, by the first list of options that names one"
                }
                DestinationRefused::TooLong => "the path is too long",
            };
            report::warn(format_args!(
                "option 'report={}': {why}; ignored",
                Lossy(path)
            ));
        }
    }
}
