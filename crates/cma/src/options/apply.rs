//! Applying options: each setting goes to the module it configures; each
//! error becomes one warning on stderr.

use super::parse::{parse, Lossy, Setting};
use crate::check::level;
use crate::check::report;
use crate::guarded::{self, sampling};
use crate::heap::pool;
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
        Ok(Setting::Check(_)) => {}
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
        Ok(Setting::Json(_) | Setting::Loaded(_) | Setting::Stats(_)) => {}
        // Each heap draws its countdowns when it is made: like the check
        // level, the rate and the seed are chosen before the first
        // allocation.
        Ok(Setting::Sample(n)) if n != sampling::rate() => {
            if pool::heaps_exist() {
                report::warn(format_args!(
                    "option 'sample={n}': sampling is chosen before the first allocation (set it in CMA_OPTIONS); ignored"
                ));
            } else {
                sampling::set_rate(n);
            }
        }
        Ok(Setting::Sample(_)) => {}
        Ok(Setting::SampleSeed(seed)) => {
            if pool::heaps_exist() {
                report::warn(format_args!(
                    "option 'sample_seed={seed}': sampling is chosen before the first allocation (set it in CMA_OPTIONS); ignored"
                ));
            } else {
                sampling::set_seed(seed);
            }
        }
        Ok(Setting::SampleSlots(k)) => {
            if !guarded::set_slot_count(k) {
                report::warn(format_args!(
                    "option 'sample_slots={k}': the pool of sampled blocks exists already; ignored"
                ));
            }
        }
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
