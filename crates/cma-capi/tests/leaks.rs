//! The leak API from C (`tests/c/leaks.c`): summary, entries, untrack and
//! track, backend blocks, errors, at both check levels; and the report
//! `cma_report_leaks` writes.

mod common;

use std::process::Command;

use common::*;

#[test]
fn the_leak_api_agrees_with_the_blocks_a_program_holds() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("leaks_c");
    let exe = compile("cc", "leaks.c", &dir, true, &["-std=c11", "-Wextra"]);
    for options in ["check=fast", "check=default", "check=default,sample=1"] {
        let (o, out, err) = output(preloaded(&mut Command::new(&exe)).env("CMA_OPTIONS", options));
        assert!(
            o.status.success() && out.contains("leaks: ok"),
            "leaks ({options}) failed ({}):\n{out}\n{err}",
            o.status
        );
    }
}

#[test]
fn the_leak_report_lists_the_tracked_blocks() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("leaks_report");
    let exe = compile("cc", "leaks.c", &dir, true, &["-std=c11"]);
    for options in ["check=fast", "check=default"] {
        let (o, out, err) =
            output(preloaded(Command::new(&exe).arg("report")).env("CMA_OPTIONS", options));
        assert!(o.status.success(), "{options}: {}\n{out}\n{err}", o.status);
        let blocks: Vec<&str> = out
            .lines()
            .find_map(|l| l.strip_prefix("blocks "))
            .expect("the block addresses")
            .split(' ')
            .collect();
        let addr = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
        let head = err
            .lines()
            .find(|l| l.starts_with("cma: leak report: "))
            .unwrap_or_else(|| panic!("{options}: no report line:\n{err}"));
        assert!(
            head.contains(" ignored (") && head.contains("[pid "),
            "{head}"
        );
        assert!(head.contains(", 1 ignored ("), "{head}");
        let listed: Vec<(u64, u64)> = err
            .lines()
            .filter_map(|l| {
                let (a, size) = l.trim().split_once(' ')?;
                let size = size.strip_suffix(" bytes")?.replace(',', "");
                Some((addr(a), size.parse().ok()?))
            })
            .collect();
        assert!(listed.contains(&(addr(blocks[0]), 1000)) || options == "check=fast");
        assert!(
            listed
                .iter()
                .any(|&(a, s)| a == addr(blocks[0]) && s >= 1000),
            "{err}"
        );
        assert!(
            listed
                .iter()
                .any(|&(a, s)| a == addr(blocks[1]) && s >= 2000),
            "{err}"
        );
        assert!(
            !listed.iter().any(|&(a, _)| a == addr(blocks[2])),
            "an untracked block is not listed:\n{err}"
        );
        // The report is not taken for misuse.
        assert!(
            !err.lines()
                .any(|l| l.starts_with("cma: ") && !l.starts_with("cma: leak report")),
            "{err}"
        );
    }
}
