#!/usr/bin/env python3
"""What a set of CMA_OPTIONS costs, in instructions (callgrind), per workload.

    crates/cma-bench/scripts/option_cost.py --options profile=sample
        [--level fast] [--only churn,mixed] [--quick]

Runs `cma-bench --child WORKLOAD cma-LEVEL` under callgrind twice per
workload, with `CMA_OPTIONS=check=LEVEL` and with `check=LEVEL,OPTIONS`,
and prints each total instruction count, the ratio with/without, and the
geometric mean of the ratios. Instruction counts do not move with the
machine's load, unlike times; multi-threaded workloads still vary from run
to run (their interleaving does), so the default list is the
single-threaded ones. Builds cma-bench (--release); needs valgrind.
"""
import argparse
import math
import os
import re
import subprocess
import sys

SINGLE_THREADED = ["churn", "mixed", "larson", "realloc", "large", "calloc", "aligned",
                   "rust-collections", "realloc-large"]


def instructions(binary, workload, level, options, quick):
    env = dict(os.environ, CMA_OPTIONS=",".join(filter(None, [f"check={level}", options])))
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
           binary, "--child", workload, f"cma-{level}"] + (["--quick"] if quick else [])
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    m = re.search(r"Collected : (\d+)", out.stderr)
    if out.returncode != 0 or not m:
        sys.exit(f"{' '.join(cmd)} failed (status {out.returncode}):\n{out.stderr[-2000:]}")
    return int(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--options", required=True, help="CMA_OPTIONS to price, e.g. profile=sample")
    ap.add_argument("--level", default="fast")
    ap.add_argument("--only", default=",".join(SINGLE_THREADED))
    ap.add_argument("--quick", action="store_true", help="the workloads' small sizes")
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "cma-bench"], cwd=root, check=True)
    binary = os.path.join(root, "target", "release", "cma-bench")
    print(f"{'workload':18} {'without':>15} {'with':>15} {'ratio':>7}   (check={a.level}, +{a.options})")
    logs = []
    for w in a.only.split(","):
        base = instructions(binary, w, a.level, "", a.quick)
        priced = instructions(binary, w, a.level, a.options, a.quick)
        logs.append(math.log(priced / base))
        print(f"{w:18} {base:15,} {priced:15,} {priced / base:7.3f}", flush=True)
    print(f"geomean ratio {math.exp(sum(logs) / len(logs)):.3f}")


if __name__ == "__main__":
    main()
