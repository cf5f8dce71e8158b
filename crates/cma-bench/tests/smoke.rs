//! Runs the suite the way CI does, on one workload and a few allocators,
//! and checks the JSON report's shape (no timing assertion).

use std::process::Command;

fn tmp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("cma-bench-test-{}-{name}", std::process::id()))
}

/// The cma check levels the suite runs (`cma-bench --list`).
fn cma_bench_levels() -> usize {
    let out = Command::new(env!("CARGO_BIN_EXE_cma-bench"))
        .arg("--list")
        .output()
        .expect("run cma-bench --list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with("cma-"))
        .count()
}

#[test]
fn quick_run_writes_json_and_svg() {
    let json = tmp("results.json");
    let svg = tmp("chart.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_cma-bench"))
        .args([
            "--quick",
            "--reps",
            "1",
            "--only",
            "churn,calloc",
            "--allocators",
            "cma,mimalloc,system",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .output()
        .expect("run cma-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cma-bench failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("geomean ratio"), "no table: {stdout}");

    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(doc["baseline"], "mimalloc");
    assert!(doc["memory_metric"].as_str().unwrap().contains("VmHWM"));
    let results = doc["results"].as_array().unwrap();
    // `cma` stands for every check level the suite runs.
    let allocators = cma_bench_levels() + 2;
    assert_eq!(
        results.len(),
        2 * allocators,
        "2 workloads x {allocators} allocators"
    );
    for level in ["cma-fast", "cma-default"] {
        assert!(
            results.iter().any(|r| r["allocator"] == level),
            "no {level} rows"
        );
    }
    for r in results {
        assert_eq!(r["status"], "ok", "{r}");
        for key in ["median_ns", "time_ratio", "peak_rss_kib", "rss_ratio"] {
            assert!(r[key].as_f64().unwrap() > 0.0, "{key} in {r}");
        }
        assert!(["churn", "calloc"].contains(&r["workload"].as_str().unwrap()));
    }
    let cma = results
        .iter()
        .find(|r| r["allocator"] == "cma-fast" && r["workload"] == "churn")
        .expect("cma-fast row");
    assert!(cma["child_medians_ns"].as_array().unwrap().len() == 1);
    let mi = results
        .iter()
        .find(|r| r["allocator"] == "mimalloc")
        .unwrap();
    assert_eq!(mi["time_ratio"].as_f64().unwrap(), 1.0);
    for a in ["cma-fast", "mimalloc", "system"] {
        assert!(
            doc["geomean"][a]["time_ratio"].as_f64().unwrap() > 0.0,
            "geomean for {a}"
        );
    }

    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg") && chart.trim_end().ends_with("</svg>"));
    assert!(chart.contains("cma-fast") && chart.contains("geomean"));
    let _ = std::fs::remove_file(json);
    let _ = std::fs::remove_file(svg);
}

#[test]
fn child_reports_one_result_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_cma-bench"))
        .args(["--child", "threads", "cma-fast", "--quick"])
        .output()
        .expect("run child");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("CMA_BENCH_RESULT "))
        .expect("result line");
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["allocator"], "cma-fast");
    assert!(v["peak_rss_kib"].as_u64().unwrap() > 0);
    assert!(v["checksum"].as_u64().unwrap() > 0);
    // cma's own counters: the workload freed every block it allocated.
    assert_eq!(v["cma_stats"]["blocks_in_use_change"], 0);
    assert!(v["cma_stats"]["allocations"].as_u64().unwrap() > 1000);
}

#[test]
fn list_and_unknown_allocator() {
    let out = Command::new(env!("CARGO_BIN_EXE_cma-bench"))
        .args(["--list"])
        .output()
        .expect("run --list");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    for w in ["churn", "larson", "rust-collections", "threads"] {
        assert!(stdout.contains(w), "{w} missing from --list");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_cma-bench"))
        .args(["--child", "churn", "no-such-alloc"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown allocator"));
}

#[test]
fn the_memory_workload_reports_its_three_phases() {
    let out = Command::new(env!("CARGO_BIN_EXE_cma-bench"))
        .args(["--child", "rss-phases", "cma-fast", "--quick"])
        .output()
        .expect("run child");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("CMA_BENCH_RESULT "))
        .expect("result line");
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let phases = v["phases"].as_array().expect("phases");
    let names: Vec<&str> = phases
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["contiguous tenth", "one in 64 of those", "everything freed"]
    );
    let live: Vec<u64> = phases
        .iter()
        .map(|p| p["live_bytes"].as_u64().unwrap())
        .collect();
    // A tenth of the 56 MB the quick run builds, then about 1/64 of that,
    // then nothing.
    assert!((5 << 20..7 << 20).contains(&live[0]), "{live:?}");
    assert!(
        live[1] < live[0] / 32 && live[1] > live[0] / 128,
        "{live:?}"
    );
    assert_eq!(live[2], 0);
    for p in phases {
        assert!(p["rss_kib"].as_u64().unwrap() > 0, "{p}");
    }
    assert_eq!(v["cma_stats"]["blocks_in_use_change"], 0);
}
