//! The typed options API, `cma::Options`: it applies what it can honour,
//! all or nothing, and returns what it cannot. One test function: the
//! check level can only be chosen before the process's first allocation,
//! so the steps must run in order in a process of their own.

use cma::{AllocLimits, CheckLevel, Options, OptionsError};

#[test]
fn typed_options_apply_all_or_nothing_and_say_what_they_cannot_honour() {
    // Before any allocation from cma: the level may still change.
    Options::new()
        .check(CheckLevel::Default)
        .limit_total(1 << 20)
        .purge_delay_ms(50)
        .apply()
        .expect("every value can be honoured before the first allocation");
    assert_eq!(cma::check_level(), CheckLevel::Default);
    assert_eq!(
        cma::alloc_limits(),
        AllocLimits {
            max_request: None,
            max_bytes_in_use: Some(1 << 20)
        }
    );
    // The limit is in force.
    assert!(cma::malloc(2 << 20).is_null());
    let p = cma::malloc(100);
    assert!(!p.is_null());

    // Now a change of level is refused, and nothing else of the same
    // `Options` is applied.
    let refused = Options::new()
        .limit_request(10)
        .check(CheckLevel::Fast)
        .apply();
    assert_eq!(
        refused,
        Err(OptionsError::CheckLevelFixed {
            requested: CheckLevel::Fast,
            current: CheckLevel::Default
        })
    );
    assert_eq!(
        refused.unwrap_err().to_string(),
        "the check level is chosen before the first allocation (set it in CMA_OPTIONS)"
    );
    assert_eq!(cma::check_level(), CheckLevel::Default);
    assert_eq!(cma::alloc_limits().max_request, None);
    // Asking for the level in force is no change.
    Options::new()
        .check(CheckLevel::Default)
        .limit_request(4096)
        .apply()
        .expect("the level in force");
    assert_eq!(cma::alloc_limits().max_request, Some(4096));
    assert!(cma::malloc(5000).is_null());
    cma::set_alloc_limits(AllocLimits::default());

    // The report's destination is chosen once.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("typed-options");
    std::fs::create_dir_all(&dir).unwrap();
    let first = dir.join("report.%p").to_string_lossy().into_owned();
    let second = dir.join("elsewhere.%p").to_string_lossy().into_owned();
    Options::new()
        .report(&first)
        .apply()
        .expect("first report path");
    Options::new()
        .report(&first)
        .apply()
        .expect("the same path again");
    assert_eq!(
        Options::new().limit_total(1).report(&second).apply(),
        Err(OptionsError::ReportAlreadyChosen)
    );
    assert_eq!(
        cma::alloc_limits(),
        AllocLimits::default(),
        "nothing applied"
    );
    let long = "x".repeat(5000);
    assert_eq!(
        Options::new().report(&long).apply(),
        Err(OptionsError::ReportPathTooLong)
    );

    // The list form reads into the same type.
    assert_eq!(
        Options::parse(b"check=default,limit_total=64M,purge_thread=0"),
        Ok(Options::new()
            .check(CheckLevel::Default)
            .limit_total(64 << 20)
            .disable_purge_thread())
    );
    assert!(Options::parse(b"limit_total=lots").is_err());
    assert_eq!(
        Options::parse(b"quarantine=64K,quarantine_slots=8"),
        Ok(Options::new().quarantine(64 << 10).quarantine_slots(8))
    );
    assert_eq!(
        Options::new().quarantine_slots(5000).limit_total(1).apply(),
        Err(OptionsError::QuarantineSlotsTooMany {
            requested: 5000,
            max: 4096
        })
    );
    assert_eq!(
        cma::alloc_limits(),
        AllocLimits::default(),
        "nothing applied"
    );
    Options::new()
        .quarantine(64 << 10)
        .quarantine_slots(64)
        .apply()
        .expect("quarantine bounds");
    // SAFETY: `p` is a live block from cma.
    unsafe { cma::free(p) };
}
