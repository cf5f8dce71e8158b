#!/usr/bin/env python3
"""Wall time of real programs on glibc malloc, cma and mimalloc, side by side.

    crates/cma-cli/scripts/compare-allocators.py [--runs N] [--cma libcma.so] [--mimalloc libmimalloc.so.2]

Every round runs each workload once per allocator, in a rotating order, so
that load from elsewhere on the machine falls on all three alike; the table
gives the median wall time of each and the ratios of the medians. Needs
python3, sqlite3, git, g++ and Debian's libmimalloc2.0.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.normpath(os.path.join(HERE, "../../cma-capi/tests/c"))
ROOT = os.path.normpath(os.path.join(HERE, "../../.."))

GEN_SQL = """
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, payload BLOB);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
  INSERT INTO t SELECT i, printf('name-%d-%s', i, hex(i * 7919)), i % 97, zeroblob(i % 300) FROM n;
CREATE INDEX t_grp ON t(grp, name);
SELECT grp, count(*), sum(length(name)) FROM t GROUP BY grp ORDER BY grp LIMIT 3;
UPDATE t SET name = upper(name) WHERE id % 3 = 0;
DELETE FROM t WHERE id % 5 = 0;
SELECT count(DISTINCT substr(name, 1, 8)) FROM t;
"""

GIT_SH = """
set -e
rm -rf repo && mkdir repo && cd repo
git init -q -b main .
for i in $(seq 1 40); do mkdir -p d$((i % 7)); seq 1 $((i * 200)) | sed "s/^/line $i /" > d$((i % 7))/f$i.txt; done
git add -A && git commit -q -m first
for i in $(seq 1 15); do seq 1 $((i * 30)) >> d$((i % 7))/f$i.txt; git commit -q -am "c$i"; done
git log --stat > /dev/null; git diff HEAD~10 > /dev/null; git gc -q; git fsck --no-progress
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--cma", default=os.path.join(ROOT, "target/release/libcma.so"))
    ap.add_argument("--mimalloc", default="/usr/lib/x86_64-linux-gnu/libmimalloc.so.2")
    ap.add_argument("--only", help="comma-separated workload names")
    args = ap.parse_args()
    for lib in (args.cma, args.mimalloc):
        if not os.path.isfile(lib):
            sys.exit(f"missing {lib}")
    work = tempfile.mkdtemp(prefix="cma-compare-")
    try:
        py = subprocess.run(["python3", "-c", "import sys; print(sys.executable)"],
                            capture_output=True, text=True, check=True).stdout.strip()
        subprocess.run(["g++", "-std=c++17", "-O2", "-pthread", "-o", f"{work}/mt_map", f"{TESTS}/mt_map.cpp"], check=True)
        with open(f"{work}/gen.sql", "w") as f:
            f.write(GEN_SQL)
        with open(f"{work}/git.sh", "w") as f:
            f.write(GIT_SH)
        workloads = {
            "python-script": ([py, f"{TESTS}/alloc_heavy.py"], {}),
            "python-malloc": ([py, f"{TESTS}/alloc_heavy.py"], {"PYTHONMALLOC": "malloc"}),
            "python-tests": ([py, "-m", "test", "-q", "test_dict", "test_list", "test_set", "test_unicode", "test_json"], {}),
            "sqlite3": (["sh", "-c", f"rm -f {work}/db.sqlite; sqlite3 {work}/db.sqlite < {work}/gen.sql"], {}),
            "git": (["sh", f"{work}/git.sh"], {}),
            "cxx-mt-map": ([f"{work}/mt_map"], {}),
        }
        if args.only:
            workloads = {k: v for k, v in workloads.items() if k in args.only.split(",")}
        allocators = [("glibc", None), ("cma", args.cma), ("mimalloc", args.mimalloc)]
        base_env = dict(os.environ, HOME=work, GIT_CONFIG_NOSYSTEM="1", GIT_AUTHOR_NAME="b",
                        GIT_AUTHOR_EMAIL="b@x", GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@x")
        base_env.pop("LD_PRELOAD", None)
        print(f"{'workload':<15} {'glibc':>9} {'cma':>9} {'mimalloc':>9}   cma/glibc  cma/mimalloc   ({args.runs} rounds, medians)")
        for name, (cmd, extra) in workloads.items():
            times = {a: [] for a, _ in allocators}
            for r in range(args.runs + 1):  # round 0 warms caches and is dropped
                order = allocators[r % 3:] + allocators[:r % 3]
                for alloc, lib in order:
                    env = dict(base_env, **extra)
                    if lib:
                        env["LD_PRELOAD"] = lib
                    t = time.perf_counter()
                    subprocess.run(cmd, env=env, cwd=work, check=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    if r:
                        times[alloc].append(time.perf_counter() - t)
            m = {a: statistics.median(v) for a, v in times.items()}
            print(f"{name:<15} {m['glibc']:8.3f}s {m['cma']:8.3f}s {m['mimalloc']:8.3f}s"
                  f"   {m['cma'] / m['glibc']:9.3f}  {m['cma'] / m['mimalloc']:12.3f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
