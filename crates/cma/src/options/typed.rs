//! `Options`: the options of `CMA_OPTIONS` as a typed builder, for Rust
//! programs that configure cma in code. It checks every value against the
//! allocator's state before it applies any, and returns what it cannot
//! honour instead of warning on stderr.

use core::fmt;

use super::apply::{check_level_allowed, report_allowed, switch_allowed, Batch};
use super::parse::{parse, OptionError, Setting};
use crate::check::level::CheckLevel;
use crate::check::switches::CheckSwitch;
use crate::heap::pool;
use crate::track::sampling::{self, ProfileMode};

/// Options for cma, typed: the same settings as `CMA_OPTIONS` (see the
/// [module docs](crate::options) for the table), built in code and applied
/// all at once.
///
/// ```
/// use cma::{CheckLevel, Options};
///
/// // Before the first allocation of a program that uses `cma::Cma`:
/// Options::new()
///     .check(CheckLevel::Fast)
///     .limit_total(64 << 20)
///     .purge_delay_ms(100)
///     .apply()
///     .expect("cma options");
/// # cma::set_alloc_limits(cma::AllocLimits::default());
/// ```
///
/// Nothing is applied when `apply` returns an error. A value left unset
/// keeps what is in force (from `CMA_OPTIONS`, or an earlier `apply`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use = "options do nothing until `apply` is called"]
pub struct Options<'a> {
    check: Option<CheckLevel>,
    purge_delay_ms: Option<u64>,
    huge_pages: Option<bool>,
    disable_purge_thread: bool,
    limit_request: Option<usize>,
    limit_total: Option<usize>,
    report: Option<&'a [u8]>,
    quarantine: Option<usize>,
    quarantine_slots: Option<usize>,
    exit_check: Option<bool>,
    /// Per switch (in `CheckSwitch::ALL`'s order): the value named.
    switches: [Option<bool>; CheckSwitch::ALL.len()],
    profile: Option<ProfileMode>,
    profile_rate: Option<u64>,
}

/// The most blocks `quarantine_slots` can hold back (as in `CMA_OPTIONS`).
const MAX_QUARANTINE_SLOTS: usize = 4096;

impl<'a> Options<'a> {
    /// No option set: `apply` changes nothing.
    pub fn new() -> Options<'a> {
        Options::default()
    }

    /// Reads a `CMA_OPTIONS`-style list (`check=default,limit_total=64M`)
    /// into typed options, or returns the first item it cannot read. Keys
    /// that only `cma run` or libcma use (`json`, `loaded`, `stats`,
    /// `alloc_log`, `alloc_log_fd`) are accepted and have no effect here.
    ///
    /// ```
    /// let options = cma::Options::parse(b"check=default,limit_request=1M").unwrap();
    /// assert_eq!(options, cma::Options::new().check(cma::CheckLevel::Default).limit_request(1 << 20));
    /// assert!(cma::Options::parse(b"colour=red").is_err());
    /// ```
    pub fn parse(list: &'a [u8]) -> Result<Options<'a>, OptionError<'a>> {
        let mut options = Options::new();
        let mut first_error = None;
        parse(list, |item| match item {
            Ok(setting) => options = options.with(setting),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        });
        match first_error {
            Some(e) => Err(e),
            None => Ok(options),
        }
    }

    fn with(self, setting: Setting<'a>) -> Options<'a> {
        match setting {
            Setting::Check(level) => self.check(level),
            Setting::HugePages(on) => self.huge_pages(on),
            Setting::PurgeThread(false) => self.disable_purge_thread(),
            Setting::PurgeThread(true) => self,
            Setting::PurgeDelayMs(ms) => self.purge_delay_ms(ms),
            Setting::LimitRequest(n) => self.limit_request(n),
            Setting::LimitTotal(n) => self.limit_total(n),
            Setting::Report(path) => Options {
                report: Some(path),
                ..self
            },
            Setting::Quarantine(bytes) => self.quarantine(bytes),
            Setting::QuarantineSlots(n) => self.quarantine_slots(n),
            Setting::ExitCheck(on) => self.exit_check(on),
            Setting::Switch(switch, on) => self.check_switch(switch, on),
            Setting::Profile(mode) => self.profile(mode),
            Setting::ProfileRate(bytes) => self.profile_rate(bytes),
            // Sampling is set through `CMA_OPTIONS` and `apply_options` (not
            // in the typed API yet).
            Setting::Json(_)
            | Setting::Loaded(_)
            | Setting::Stats(_)
            | Setting::AllocLog(_)
            | Setting::AllocLogFd(_)
            | Setting::AllocLogSample(_)
            | Setting::Sample(_)
            | Setting::SampleSlots(_)
            | Setting::SampleSeed(_)
            | Setting::ProfileFile(_) => self,
        }
    }

    /// `check=`: the check level (see README's table). It can be chosen
    /// only while no thread has allocated from cma; after that, `apply`
    /// returns [`OptionsError::CheckLevelFixed`] unless it is the level in
    /// force. Default: `Default`.
    pub fn check(self, level: CheckLevel) -> Options<'a> {
        Options {
            check: Some(level),
            ..self
        }
    }

    /// `purge_delay_ms=`: how long free pages stay committed before they go
    /// back to the kernel. Default: 250.
    pub fn purge_delay_ms(self, ms: u64) -> Options<'a> {
        Options {
            purge_delay_ms: Some(ms),
            ..self
        }
    }

    /// `huge_pages=`: whether segments ask for transparent huge pages
    /// (`true`) or refuse them so that purged pages stay purged (`false`,
    /// the default). Applies to segments mapped from then on.
    pub fn huge_pages(self, on: bool) -> Options<'a> {
        Options {
            huge_pages: Some(on),
            ..self
        }
    }

    /// `purge_thread=0`: no thread purges the idle pages of a program that
    /// went quiet (they are purged by later allocator calls only). The
    /// thread is on by default and cannot be turned back on once off.
    pub fn disable_purge_thread(self) -> Options<'a> {
        Options {
            disable_purge_thread: true,
            ..self
        }
    }

    /// `limit_request=`: the largest single request, in bytes; larger ones
    /// fail (null, or `CmaError::RequestLimitExceeded`) before anything
    /// changes. Lift it with `set_alloc_limits`.
    pub fn limit_request(self, bytes: usize) -> Options<'a> {
        Options {
            limit_request: Some(bytes),
            ..self
        }
    }

    /// `limit_total=`: the largest total of bytes in use (usable sizes,
    /// blocks of backends included); an allocation that would pass it
    /// fails before anything changes.
    /// Lift it with `set_alloc_limits`.
    pub fn limit_total(self, bytes: usize) -> Options<'a> {
        Options {
            limit_total: Some(bytes),
            ..self
        }
    }

    /// `report=`: where the heap report goes at exit: a path (`%p` becomes
    /// the pid) or `stderr`. The destination is chosen once per process;
    /// a different one later gives [`OptionsError::ReportAlreadyChosen`].
    pub fn report(self, path: &'a str) -> Options<'a> {
        Options {
            report: Some(path.as_bytes()),
            ..self
        }
    }

    /// `quarantine=`: at the `default` level, the bytes of freed blocks
    /// each thread holds back from reuse, so that a write after free lands
    /// in a block nobody has yet (0: no quarantine). Default: 256 KiB.
    pub fn quarantine(self, bytes: usize) -> Options<'a> {
        Options {
            quarantine: Some(bytes),
            ..self
        }
    }

    /// `quarantine_slots=`: at the `default` level, how many freed blocks
    /// each thread holds back at most, up to 4096 (more gives
    /// [`OptionsError::QuarantineSlotsTooMany`]; 0: no quarantine).
    /// Default: 1024.
    pub fn quarantine_slots(self, blocks: usize) -> Options<'a> {
        Options {
            quarantine_slots: Some(blocks),
            ..self
        }
    }

    /// `exit_check=`: whether the whole heap is checked at exit at the
    /// `default` level, as by [`check_heap`](crate::check_heap), so that an
    /// overflow of a block that was never freed is still reported. Default:
    /// on.
    pub fn exit_check(self, on: bool) -> Options<'a> {
        Options {
            exit_check: Some(on),
            ..self
        }
    }

    /// `canary=`, `wipe=`, `kind_check=`, `large_guard=`, `stacks=`: one
    /// check on or off, whatever the level's preset (README's table says
    /// what each costs). Chosen before the first allocation, like the
    /// level ([`OptionsError::ChecksFixed`] after it).
    ///
    /// ```
    /// use cma::{CheckLevel, CheckSwitch, Options};
    ///
    /// // The default level without wiping freed blocks:
    /// let options = Options::new()
    ///     .check(CheckLevel::Default)
    ///     .check_switch(CheckSwitch::Wipe, false);
    /// assert_eq!(options, Options::parse(b"check=default,wipe=0").unwrap());
    /// ```
    pub fn check_switch(self, switch: CheckSwitch, on: bool) -> Options<'a> {
        let mut switches = self.switches;
        if let Some(i) = CheckSwitch::ALL.iter().position(|&s| s == switch) {
            switches[i] = Some(on);
        }
        Options { switches, ..self }
    }

    /// `profile=`: which blocks the live-allocation registry records, with
    /// their allocation stacks: none (`Off`, the default), about one per
    /// `profile_rate` bytes allocated (`Sample`, with weights that make the
    /// totals per site unbiased), or every one (`All`). Chosen before the
    /// first allocation ([`OptionsError::ProfileFixed`] after it), like the
    /// check level. See [`leaks`](crate::leaks) and
    /// [`Profile`](crate::Profile) for what it gives.
    pub fn profile(self, mode: ProfileMode) -> Options<'a> {
        Options {
            profile: Some(mode),
            ..self
        }
    }

    /// `profile_rate=`: the mean bytes allocated between two samples at
    /// `profile=sample` (default 512 KiB). Chosen before the first
    /// allocation.
    pub fn profile_rate(self, bytes: u64) -> Options<'a> {
        Options {
            profile_rate: Some(bytes.max(1)),
            ..self
        }
    }

    /// Applies every option set, or none: each value is first checked
    /// against the allocator's state, and the first that cannot be honoured
    /// is returned.
    pub fn apply(self) -> Result<(), OptionsError> {
        if let Some(level) = self.check {
            check_level_allowed(level)?;
        }
        if let Some(path) = self.report {
            report_allowed(path)?;
        }
        if (self
            .profile
            .is_some_and(|m| m != sampling::requested_mode())
            || self.profile_rate.is_some_and(|r| r != sampling::rate()))
            && pool::heaps_exist()
        {
            return Err(OptionsError::ProfileFixed);
        }
        for (switch, on) in self.named_switches() {
            switch_allowed(switch, on)?;
        }
        if let Some(requested) = self.quarantine_slots.filter(|&n| n > MAX_QUARANTINE_SLOTS) {
            return Err(OptionsError::QuarantineSlotsTooMany {
                requested,
                max: MAX_QUARANTINE_SLOTS,
            });
        }
        let mut batch = Batch::new();
        let settings = [
            self.check.map(Setting::Check),
            self.huge_pages.map(Setting::HugePages),
            self.disable_purge_thread
                .then_some(Setting::PurgeThread(false)),
            self.purge_delay_ms.map(Setting::PurgeDelayMs),
            self.limit_request.map(Setting::LimitRequest),
            self.limit_total.map(Setting::LimitTotal),
            self.report.map(Setting::Report),
            self.quarantine.map(Setting::Quarantine),
            self.quarantine_slots.map(Setting::QuarantineSlots),
            self.exit_check.map(Setting::ExitCheck),
            self.profile_rate.map(Setting::ProfileRate),
            self.profile.map(Setting::Profile),
        ];
        let switches = self
            .named_switches()
            .map(|(switch, on)| Setting::Switch(switch, on));
        for setting in settings.into_iter().flatten().chain(switches) {
            batch.take(setting)?;
        }
        batch.finish()
    }

    /// The switches named, with their values.
    fn named_switches(&self) -> impl Iterator<Item = (CheckSwitch, bool)> + '_ {
        CheckSwitch::ALL
            .into_iter()
            .zip(self.switches)
            .filter_map(|(switch, on)| Some((switch, on?)))
    }
}

/// An option that [`Options::apply`] cannot honour; nothing was applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OptionsError {
    /// The check level is chosen before the first allocation; `current`
    /// stays in force.
    CheckLevelFixed {
        /// The level asked for.
        requested: CheckLevel,
        /// The level in force, which stays.
        current: CheckLevel,
    },
    /// The heap report's destination was already chosen (by `CMA_OPTIONS`
    /// or an earlier call), and it was another.
    ReportAlreadyChosen,
    /// The report path does not fit cma's fixed buffer (`PATH_MAX`).
    ReportPathTooLong,
    /// The sampling rate and seed are chosen before the first allocation.
    SamplingFixed,
    /// The pool of sampled blocks was reserved already (with the number of
    /// slots it has).
    SamplePoolReserved,
    /// The profile mode and rate are chosen before the first allocation.
    ProfileFixed,
    /// The checks are chosen before the first allocation, like the level:
    /// `switch` cannot change now.
    ChecksFixed {
        /// The switch named.
        switch: CheckSwitch,
    },
    /// More quarantine slots than a heap's quarantine can hold.
    QuarantineSlotsTooMany {
        /// The count asked for.
        requested: usize,
        /// The most there can be.
        max: usize,
    },
}

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let OptionsError::QuarantineSlotsTooMany { requested, max } = self {
            return write!(f, "{requested} quarantine slots asked for; at most {max}");
        }
        f.write_str(match self {
            OptionsError::CheckLevelFixed { .. } => {
                "the check level is chosen before the first allocation (set it in CMA_OPTIONS)"
            }
            OptionsError::ReportAlreadyChosen => {
                "the report's destination is chosen once, by the first list of options that names one"
            }
            OptionsError::ReportPathTooLong => "the path is too long",
            OptionsError::SamplingFixed => {
                "sampling is chosen before the first allocation (set it in CMA_OPTIONS)"
            }
            OptionsError::SamplePoolReserved => "the pool of sampled blocks exists already",
            OptionsError::ProfileFixed => {
                "profiling is chosen before the first allocation (set it in CMA_OPTIONS)"
            }
            OptionsError::QuarantineSlotsTooMany { .. } => "too many quarantine slots",
            OptionsError::ChecksFixed { .. } => {
                "the checks are chosen before the first allocation (set them in CMA_OPTIONS)"
            }
        })
    }
}

impl core::error::Error for OptionsError {}
