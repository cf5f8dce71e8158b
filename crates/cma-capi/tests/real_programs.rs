//! Real programs run with libcma preloaded, their output compared with a run
//! on glibc's malloc: python3 (a script and a slice of its own regression
//! tests), the sqlite3 shell, git, and a multi-threaded C++ program. Each
//! preloaded run also writes a heap report, which proves it ran on cma.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Runs `cmd` twice, plain and on cma, and returns both outputs (stdout)
/// after checking that both succeeded and that the cma run wrote a report
/// with allocations in it.
fn plain_and_cma(name: &str, mut make: impl FnMut() -> Command) -> (String, String) {
    let dir = scratch(&format!("real-{name}"));
    let (o, plain, err) = output(&mut make());
    assert!(
        o.status.success(),
        "{name} without cma failed ({}):\n{err}",
        o.status
    );
    let template = dir.join("report.%p");
    let (o, on_cma, err) =
        output(preloaded(&mut make()).env("CMA_OPTIONS", format!("report={}", template.display())));
    assert!(
        o.status.success(),
        "{name} on cma failed ({}):\n{err}",
        o.status
    );
    assert!(
        !err.lines().any(|l| l.starts_with("cma: ")),
        "{name} on cma reported:\n{err}"
    );
    let mut allocations = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        allocations += report_field(&text, "allocations").unwrap_or(0);
    }
    assert!(
        allocations > 0,
        "{name}: no heap report from cma; did it run on cma?"
    );
    (plain, on_cma)
}

/// The real python3 binary (not a pyenv shim, which would run bash first).
fn python() -> Option<PathBuf> {
    if !have("python3", "python3") {
        return None;
    }
    let o = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
    p.is_file().then_some(p)
}

#[test]
fn python_allocation_heavy_script() {
    let Some(py) = python() else { return };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/alloc_heavy.py");
    let (plain, on_cma) = plain_and_cma("python-script", || {
        let mut c = Command::new(&py);
        c.arg(&script);
        c
    });
    assert_eq!(plain, on_cma);
    assert_eq!(plain.lines().count(), 3);
    // And again with every Python object on malloc instead of pymalloc.
    let (plain, on_cma) = plain_and_cma("python-script-malloc", || {
        let mut c = Command::new(&py);
        c.arg(&script).env("PYTHONMALLOC", "malloc");
        c
    });
    assert_eq!(plain, on_cma);
}

#[test]
fn python_regression_tests() {
    let Some(py) = python() else { return };
    let has_tests = Command::new(&py)
        .args(["-c", "import test.support, test.libregrtest"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !has_tests {
        if std::env::var_os("CI").is_some() {
            panic!("python3's `test` package is missing: CI must install `libpython3.11-testsuite` (Debian)");
        }
        eprintln!(
            "note: skipping: python3's `test` package is not installed (libpython3.11-testsuite)"
        );
        return;
    }
    let tests = [
        "test_dict",
        "test_list",
        "test_set",
        "test_unicode",
        "test_json",
    ];
    let (o, out, err) = output(
        preloaded(Command::new(&py).args(["-m", "test", "-q"]).args(tests))
            .env("PYTHONMALLOC", "malloc"),
    );
    assert!(
        o.status.success(),
        "python regression tests failed on cma ({}):\n{out}\n{err}",
        o.status
    );
    assert!(out.contains("SUCCESS"), "{out}\n{err}");
}

#[test]
fn sqlite3_shell_on_a_generated_database() {
    if !have("sqlite3", "sqlite3") {
        return;
    }
    let sql = "\
        CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, payload BLOB);\n\
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000)\n\
          INSERT INTO t SELECT i, printf('name-%d-%s', i, hex(i * 7919)), i % 97, zeroblob(i % 300) FROM n;\n\
        CREATE INDEX t_grp ON t(grp, name);\n\
        SELECT grp, count(*), sum(length(name)), max(length(payload)) FROM t GROUP BY grp ORDER BY grp LIMIT 10;\n\
        SELECT name FROM t WHERE grp = 13 ORDER BY name DESC LIMIT 5;\n\
        SELECT count(DISTINCT substr(name, 1, 8)) FROM t;\n\
        UPDATE t SET name = upper(name) WHERE id % 3 = 0;\n\
        DELETE FROM t WHERE id % 5 = 0;\n\
        VACUUM;\n\
        SELECT count(*), sum(length(name)) FROM t;\n\
        PRAGMA integrity_check;\n";
    let dir = scratch("sqlite3");
    std::fs::write(dir.join("gen.sql"), sql).unwrap();
    let mut run = 0;
    let (plain, on_cma) = plain_and_cma("sqlite3", || {
        run += 1;
        let db = dir.join(format!("db{run}.sqlite"));
        let _ = std::fs::remove_file(&db);
        let mut c = Command::new("sqlite3");
        c.arg(&db)
            .stdin(std::fs::File::open(dir.join("gen.sql")).unwrap());
        c
    });
    assert_eq!(plain, on_cma);
    assert!(plain.contains("ok"), "{plain}");
}

#[test]
fn git_on_a_repository_it_creates() {
    if !have("git", "git") {
        return;
    }
    let dir = scratch("git");
    let script = r#"
set -e
rm -rf repo && mkdir repo && cd repo
git init -q -b main .
for i in $(seq 1 40); do
  mkdir -p "dir$((i % 7))"
  seq 1 $((i * 50)) | sed "s/^/line $i /" > "dir$((i % 7))/file$i.txt"
done
git add -A && git commit -q -m "first"
for i in $(seq 1 20); do
  seq 1 $((i * 30)) | sed "s/^/changed $i /" >> "dir$((i % 7))/file$i.txt"
  git commit -q -am "change $i"
done
git checkout -q -b topic HEAD~5
echo topic > topic.txt && git add topic.txt && git commit -q -m topic
git checkout -q main
git merge -q --no-edit topic
git log --oneline --stat | head -200
git diff --stat HEAD~10 HEAD
git gc -q
git fsck --no-progress 2>&1
git count-objects -v | grep -v size
git grep -c "line 7" | head
"#;
    std::fs::write(dir.join("script.sh"), script).unwrap();
    let (plain, on_cma) = plain_and_cma("git", || {
        let mut c = Command::new("sh");
        c.arg(dir.join("script.sh"))
            .current_dir(&dir)
            .env("HOME", &dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "cma")
            .env("GIT_AUTHOR_EMAIL", "cma@example.org")
            .env("GIT_COMMITTER_NAME", "cma")
            .env("GIT_COMMITTER_EMAIL", "cma@example.org")
            .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z");
        c
    });
    assert_eq!(plain, on_cma);
    assert!(plain.contains("topic"), "{plain}");
}

#[test]
fn multithreaded_cxx_program_with_std_map() {
    if !have("g++", "g++") {
        return;
    }
    let dir = scratch("mt_map");
    let exe = compile("g++", "mt_map.cpp", &dir, false, &["-std=c++17", "-O2"]);
    let (plain, on_cma) = plain_and_cma("mt_map", || Command::new(&exe));
    assert_eq!(plain, on_cma);
    assert!(plain.starts_with("threads done: 40"), "{plain}");
}
