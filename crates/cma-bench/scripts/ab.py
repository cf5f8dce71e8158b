#!/usr/bin/env python3
"""Before/after: two builds of cma-bench, side by side in one run.

    crates/cma-bench/scripts/ab.py OLD_BINARY NEW_BINARY [--reps N] [--quick]
        [--allocators cma-fast,cma-default] [--only churn,larson]
        [--old-options OPTS] [--new-options OPTS]

Runs `BINARY --child WORKLOAD ALLOCATOR` of both binaries for every
(repetition, workload, allocator), the pair in a fresh random order each
time, so that load from the rest of the machine falls on both evenly. Prints,
per workload and allocator, the median wall-clock and CPU time of each and
the ratio new/old, then the geometric mean of the ratios. A ratio below 1.0
means the new build is faster. Build the old one first, e.g.
`git worktree add /tmp/old HEAD~1 && cargo build --release -p cma-bench
--manifest-path /tmp/old/Cargo.toml`.
"""
import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys

WORKLOADS = ["churn", "mixed", "larson", "prodcons", "false-sharing", "realloc", "large",
             "calloc", "aligned", "stress6", "rust-collections", "threads", "realloc-large"]


def child(binary, workload, allocator, quick, timeout, options=""):
    env = dict(os.environ)
    if allocator.startswith("cma-"):
        level = allocator[len("cma-"):]
        env["CMA_OPTIONS"] = ",".join(filter(None, [env.get("CMA_OPTIONS", ""), options, f"check={level}"]))
    cmd = [binary, "--child", workload, allocator] + (["--quick"] if quick else [])
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    for line in out.stdout.splitlines():
        if line.startswith("CMA_BENCH_RESULT "):
            return json.loads(line[len("CMA_BENCH_RESULT "):])
    sys.exit(f"{' '.join(cmd)} failed (status {out.returncode}):\n{out.stderr[-2000:]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--allocators", default="cma-fast")
    ap.add_argument("--only", default=",".join(WORKLOADS))
    ap.add_argument("--timeout", type=int, default=300)
    ap.add_argument("--old-options", default="", help="CMA_OPTIONS added for the old side's cma")
    ap.add_argument("--new-options", default="", help="CMA_OPTIONS added for the new side's cma")
    ap.add_argument("--stat", choices=["median", "min"], default="median",
                    help="how the children's figures are summarised: min compares the fastest runs "
                         "of each, steadier where a workload is bimodal on a shared machine")
    a = ap.parse_args()
    allocators = a.allocators.split(",")
    workloads = a.only.split(",")
    runs = {}
    for rep in range(a.reps):
        for w in workloads:
            for al in allocators:
                pair = [("old", a.old, a.old_options), ("new", a.new, a.new_options)]
                random.shuffle(pair)
                for name, binary, options in pair:
                    r = child(binary, w, al, a.quick, a.timeout, options)
                    runs.setdefault((w, al, name), []).append(r)
        print(f"repetition {rep + 1}/{a.reps} done", file=sys.stderr)
    print(f"{'workload':18} {'allocator':12} {'old ms':>9} {'new ms':>9} {'time':>7} {'cpu':>7} {'rss':>7}")
    ratios = {"time": [], "cpu": [], "rss": []}
    for w in workloads:
        for al in allocators:
            old, new = runs[(w, al, "old")], runs[(w, al, "new")]
            summary = statistics.median if a.stat == "median" else min
            med = lambda rs, k: summary(r[k] for r in rs)
            rt = med(new, "median_ns") / med(old, "median_ns")
            rc = med(new, "median_cpu_ns") / med(old, "median_cpu_ns")
            rr = med(new, "peak_rss_kib") / med(old, "peak_rss_kib")
            for k, v in (("time", rt), ("cpu", rc), ("rss", rr)):
                ratios[k].append(v)
            print(f"{w:18} {al:12} {med(old, 'median_ns') / 1e6:9.2f} {med(new, 'median_ns') / 1e6:9.2f}"
                  f" {rt:7.3f} {rc:7.3f} {rr:7.3f}")
    geo = {k: math.exp(sum(map(math.log, v)) / len(v)) for k, v in ratios.items()}
    print(f"geomean new/old ({a.reps} repetitions, {a.stat} of each): time {geo['time']:.3f}, cpu {geo['cpu']:.3f}, peak rss {geo['rss']:.3f}")


if __name__ == "__main__":
    main()
