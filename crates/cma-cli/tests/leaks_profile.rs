//! `cma run --leaks`, `--fail-on-leak` and `--profile`: leaks reported at
//! their lines (C and Rust), a clean program reported clean, the DHAT file
//! read as the viewers read it and checked against the report's counters,
//! and a 64 MiB leak found by sampling in every run.
//!
//! The Rust program is this test binary, on the cma crate
//! (`leaks_a_vector_when_asked`, run again under `cma run`).

#[path = "../../cma-capi/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;

use common::{compile, have, output, scratch};
use serde_json::Value;

#[global_allocator]
static ALLOC: engine::Cma = engine::Cma;

fn cma() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cma"));
    c.env_remove("CMA_OPTIONS").env_remove("CMA_LIB");
    c
}

/// The line of `leaky.c` that holds `marker`.
fn line_of(marker: &str) -> usize {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cma-capi/tests/c/leaky.c");
    let text = std::fs::read_to_string(src).expect("leaky.c");
    1 + text
        .lines()
        .position(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no {marker} in leaky.c"))
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

/// The leak sites of a `--json` report whose stack mentions `needle`.
fn leak_sites<'a>(report: &'a Value, needle: &str) -> Vec<&'a Value> {
    report["leaks"]["sites"]
        .as_array()
        .expect("leaks.sites")
        .iter()
        .filter(|s| {
            s["stack"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f.as_str().unwrap().contains(needle))
        })
        .collect()
}

#[test]
fn c_leaks_are_reported_at_their_lines_and_fail_the_run() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("leaks-c");
    let exe = compile("cc", "leaky.c", &dir, false, &["-O1"]);
    for level in ["check=fast", "check=default"] {
        let json = dir.join("run.json");
        let (o, out, err) = output(
            cma()
                .env("CMA_OPTIONS", level)
                .args(["run", "--leaks", "--fail-on-leak", "--json"])
                .arg(&json)
                .arg("--")
                .arg(&exe),
        );
        assert_eq!(o.status.code(), Some(23), "{level}: {out}\n{err}");
        assert!(err.contains("--fail-on-leak: the program leaked"), "{err}");
        let report = read_json(&json);
        let node = leak_sites(&report, &format!("leaky.c:{}", line_of("LEAK-NODE")));
        assert_eq!(node.len(), 1, "{level}: {err}");
        assert_eq!(
            (node[0]["bytes"].as_u64(), node[0]["blocks"].as_u64()),
            (Some(240), Some(5))
        );
        assert!(
            node[0]["stack"][0]
                .as_str()
                .unwrap()
                .starts_with("make_node at "),
            "{level}: {}",
            node[0]
        );
        let dup = leak_sites(&report, &format!("leaky.c:{}", line_of("LEAK-DUP")));
        assert_eq!(
            dup.len(),
            1,
            "{level}: the strdup leak is the program's: {err}"
        );
        assert_eq!(dup[0]["bytes"].as_u64(), Some(12));
        // Nothing else leaked: the calloc/realloc churn was freed.
        assert_eq!(
            report["leaks"]["sites"].as_array().unwrap().len(),
            2,
            "{err}"
        );
        assert_eq!(report["leaks"]["estimated"], Value::Bool(false));
        // The text report shows the same.
        assert!(err.contains("240 bytes in 5 blocks allocated at:"), "{err}");
    }
}

#[test]
fn a_clean_program_reports_no_leak() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("leaks-clean");
    let exe = compile("cc", "leaky.c", &dir, false, &[]);
    let json = dir.join("run.json");
    let (o, out, err) = output(
        cma()
            .args(["run", "--fail-on-leak", "--json"])
            .arg(&json)
            .arg("--")
            .arg(&exe)
            .arg("clean"),
    );
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(out.contains("clean"));
    assert!(err.contains("leaks                          none"), "{err}");
    let report = read_json(&json);
    assert_eq!(report["leaks"]["sites"].as_array().map(Vec::len), Some(0));
    // stdio's buffer (and the start-up's blocks) are there, apart.
    assert!(
        report["leaks"]["runtime_blocks"].as_u64().unwrap() >= 1,
        "{report}"
    );
}

/// The Rust program: leaks a vector at a known line when run as the child.
#[test]
fn leaks_a_vector_when_asked() {
    if std::env::var_os("CMA_LEAKS_CHILD").is_none() {
        return;
    }
    let kept: Vec<u64> = (0..100).collect();
    let leaked = Box::leak(vec![7u32; 3000].into_boxed_slice()); // RUST-LEAK
    println!("leaked {} at line {}", leaked.len(), line!() - 1);
    drop(kept);
}

#[test]
fn a_rust_leak_is_reported_at_its_line() {
    let dir = scratch("leaks-rust");
    let json = dir.join("run.json");
    let me = std::env::current_exe().expect("this test's executable");
    let (o, out, err) = output(
        cma()
            .env("CMA_LEAKS_CHILD", "1")
            .args(["run", "--leaks", "--json"])
            .arg(&json)
            .arg("--")
            .arg(&me)
            .args([
                "--exact",
                "leaks_a_vector_when_asked",
                "--test-threads=1",
                "--nocapture",
            ]),
    );
    assert!(o.status.success(), "{out}\n{err}");
    let line: usize = out
        .split("at line ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    let report = read_json(&json);
    let sites = leak_sites(&report, &format!("leaks_profile.rs:{line}"));
    assert_eq!(sites.len(), 1, "{err}");
    assert_eq!(sites[0]["bytes"].as_u64(), Some(12_000), "{}", sites[0]);
}

#[test]
fn the_profile_is_dhat_json_that_matches_the_counters() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("profile-dhat");
    let exe = compile("cc", "leaky.c", &dir, false, &["-O1"]);
    let (json, dhat) = (dir.join("run.json"), dir.join("dhat.json"));
    let (o, out, err) = output(
        cma()
            .args(["run", "--profile"])
            .arg(&dhat)
            .arg("--json")
            .arg(&json)
            .arg("--")
            .arg(&exe),
    );
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        err.contains("top sites by bytes live at the peak:"),
        "{err}"
    );
    assert!(
        err.contains("top sites by bytes allocated in all:"),
        "{err}"
    );
    let d = read_json(&dhat);
    // The fields dh_view.html and the Firefox Profiler's importer require.
    assert_eq!(d["dhatFileVersion"], 2);
    assert_eq!(d["mode"], "heap");
    assert_eq!(d["bklt"], true);
    assert_eq!(d["bkacc"], false);
    for key in ["verb", "tu", "Mtu", "cmd"] {
        assert!(d[key].is_string(), "{key}");
    }
    for key in ["tuth", "pid", "te", "tg"] {
        assert!(d[key].is_u64(), "{key}");
    }
    assert!(d["tg"].as_u64() <= d["te"].as_u64());
    let ftbl: Vec<&str> = d["ftbl"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(ftbl[0], "[root]");
    for f in &ftbl[1..] {
        // `0xADDR: function (file:line)` or `0xADDR: function (in module)`.
        let (addr, rest) = f.split_once(": ").unwrap_or_else(|| panic!("{f}"));
        assert!(
            addr.starts_with("0x") && u64::from_str_radix(&addr[2..], 16).is_ok(),
            "{f}"
        );
        assert!(rest.ends_with(')') && rest.contains(" ("), "{f}");
        assert!(!rest.contains("+0x"), "{f}");
    }
    let pps = d["pps"].as_array().unwrap();
    let field = |pp: &Value, k: &str| pp[k].as_u64().unwrap_or_else(|| panic!("{k}: {pp}"));
    let (mut tbk, mut ebk) = (0, 0);
    for pp in pps {
        for k in ["tb", "tbk", "tl", "mb", "mbk", "gb", "gbk", "eb", "ebk"] {
            field(pp, k);
        }
        assert!(
            field(pp, "mb") <= field(pp, "tb") && field(pp, "gb") <= field(pp, "mb"),
            "{pp}"
        );
        assert!(
            field(pp, "eb") <= field(pp, "mb") && field(pp, "mbk") <= field(pp, "tbk"),
            "{pp}"
        );
        for i in pp["fs"].as_array().unwrap() {
            assert!(
                (1..ftbl.len() as u64).contains(&i.as_u64().unwrap()),
                "{pp}"
            );
        }
        tbk += field(pp, "tbk");
        ebk += field(pp, "ebk");
    }
    // Every block the counters saw, and every one live at the end.
    let r = read_json(&json);
    assert_eq!(Some(tbk), r["report"]["allocations"].as_u64(), "{err}");
    assert_eq!(
        Some(ebk),
        r["report"]["blocks_in_use_at_exit"].as_u64(),
        "{err}"
    );
    // The known site, exactly.
    let node_line = format!("leaky.c:{})", line_of("LEAK-NODE"));
    let node: Vec<&Value> = pps
        .iter()
        .filter(|pp| {
            pp["fs"]
                .as_array()
                .unwrap()
                .first()
                .is_some_and(|i| ftbl[i.as_u64().unwrap() as usize].contains(&node_line))
        })
        .collect();
    assert_eq!(node.len(), 1, "{ftbl:?}");
    assert_eq!(
        [
            field(node[0], "tb"),
            field(node[0], "tbk"),
            field(node[0], "eb"),
            field(node[0], "ebk")
        ],
        [480, 10, 240, 5]
    );
    assert!(field(node[0], "mbk") >= 5 && field(node[0], "mbk") <= 10);
}

#[test]
fn a_64_mib_leak_is_found_by_sampling_in_every_run() {
    if !have("cc", "gcc") {
        return;
    }
    let dir = scratch("leaks-sampled");
    let exe = compile("cc", "leaky.c", &dir, false, &["-O1"]);
    let line = format!("leaky.c:{}", line_of("LEAK-BIG"));
    for run in 0..5 {
        let json = dir.join(format!("run{run}.json"));
        let (o, out, err) = output(
            cma()
                .env("CMA_OPTIONS", "profile=sample")
                .args(["run", "--leaks", "--json"])
                .arg(&json)
                .arg("--")
                .arg(&exe)
                .arg("big"),
        );
        assert!(o.status.success(), "{out}\n{err}");
        let report = read_json(&json);
        assert_eq!(report["leaks"]["estimated"], Value::Bool(true));
        let sites = leak_sites(&report, &line);
        assert!(
            !sites.is_empty(),
            "run {run}: the 64 MiB leak was not found:\n{err}"
        );
        let bytes: u64 = sites.iter().map(|s| s["bytes"].as_u64().unwrap()).sum();
        // An estimate from about 128 samples: well within a factor of two.
        assert!(
            (32 << 20..128 << 20).contains(&bytes),
            "run {run}: estimated {bytes} bytes for 64 MiB"
        );
    }
}

#[test]
fn run_help_documents_leaks_and_profiles() {
    let (o, out, _) = output(cma().args(["run", "--help"]));
    assert!(o.status.success());
    for flag in ["--leaks", "--fail-on-leak", "--profile"] {
        assert!(out.contains(flag), "{flag}: {out}");
    }
}

/// The Rust program that writes its own profile: leaks a vector at a known
/// line, finds it with `cma::leaks()` (with its site), and writes the DHAT
/// file with `cma::Profile` to the path in `CMA_PROFILE_OUT`.
#[test]
fn writes_its_own_profile_when_asked() {
    let Some(out) = std::env::var_os("CMA_PROFILE_OUT") else {
        return;
    };
    let leaked = Box::leak(vec![9u16; 5000].into_boxed_slice()); // RUST-PROFILE
    let line = line!() - 1;
    let addr = leaked.as_ptr() as usize;
    let found = engine::leaks()
        .find(|l| l.address == addr)
        .expect("the leaked block is live");
    assert_eq!(found.size, 10_000);
    let site = found.site.expect("profile=all records every block");
    assert!(!site.frames().is_empty() && !site.startup());
    let profile = engine::Profile::take();
    assert!(profile.sites().iter().any(|s| s.live_bytes >= 10_000));
    let file = std::fs::File::create(out).expect("the profile file");
    profile.write_dhat(file).expect("written");
    println!("profile written, leak at line {line}");
}

#[test]
fn a_rust_program_writes_the_same_dhat_file() {
    let dir = scratch("profile-rust");
    let dhat = dir.join("own.json");
    let me = std::env::current_exe().expect("this test's executable");
    let (o, out, err) = output(
        Command::new(&me)
            .env("CMA_OPTIONS", "profile=all")
            .env("CMA_PROFILE_OUT", &dhat)
            .args([
                "--exact",
                "writes_its_own_profile_when_asked",
                "--test-threads=1",
                "--nocapture",
            ]),
    );
    assert!(o.status.success(), "{out}\n{err}");
    let line: usize = out
        .split("leak at line ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    let d = read_json(&dhat);
    assert_eq!(d["dhatFileVersion"], 2);
    let ftbl: Vec<&str> = d["ftbl"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    let needle = format!("leaks_profile.rs:{line})");
    let at = ftbl
        .iter()
        .position(|f| f.contains(&needle))
        .unwrap_or_else(|| panic!("{needle} not in the frame table: {ftbl:?}"));
    let pp = d["pps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|pp| {
            pp["fs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i.as_u64() == Some(at as u64))
        })
        .expect("a program point at the leak's line");
    assert_eq!(pp["eb"].as_u64(), Some(10_000), "{pp}");
    assert!(
        !ftbl
            .iter()
            .any(|f| f.contains("cma::heap::") || f.contains("cma::api::")),
        "cma's own frames are left out: {ftbl:?}"
    );
}
