#!/usr/bin/env python3
"""Large realloc growth (issue 14), side by side: `c/realloc_growth.c` (one
block grown by realloc from 256 KiB by half again each step to 554 MiB,
written in full after every step) under glibc, cma and mimalloc 3, run by
run in alternation.

    crates/cma-bench/scripts/realloc_growth.py [--runs N] [--limit BYTES]
        [--alloc NAME=LIB]... [--options NAME=CMA_OPTIONS]... [--no-mimalloc]
        [--json FILE]

Allocators: `glibc` (no preload), `cma` (target/release/libcma.so, built
here with `cargo build --release -p cma-capi` unless --no-build), `mimalloc`
(mimalloc 3, built as a preloadable library from the vendored sources of
the `libmimalloc-sys` crate, as scripts/instructions.py does), and any
`--alloc NAME=LIB` (another libcma.so, say the build before a change).
`--options NAME=OPTS` runs allocator NAME with CMA_OPTIONS=OPTS; an
`--options` for a name that no `--alloc` names runs libcma under that name
(`--options cma-nopurge=purge_thread=0`).

Every round runs each allocator once, in an order shuffled afresh (seeded,
so a run can be repeated): the kernel's cleanup of a process that mapped
half a GiB falls on whichever runs next, and load from the rest of the
machine spreads over all of them. For each run: wall time (spawn to exit)
and peak RSS (the child's ru_maxrss from wait4). Prints the medians, their
ratios to glibc's and every run's figures.
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BENCH = os.path.join(ROOT, "crates", "cma-bench")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from instructions import build_mimalloc3  # noqa: E402


def run_once(exe, limit, lib, options):
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "CMA_OPTIONS")}
    if lib:
        env["LD_PRELOAD"] = lib
    if options:
        env["CMA_OPTIONS"] = options
    start = time.perf_counter()
    proc = subprocess.Popen([exe, str(limit)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, err = proc.stdout.read().decode(), proc.stderr.read().decode()
    if proc.returncode != 0 or "final_size" not in out:
        sys.exit(f"realloc_growth.py: run failed (status {proc.returncode}, "
                 f"LD_PRELOAD={lib or ''} CMA_OPTIONS={options or ''}):\n{out}{err}")
    return {"wall_s": wall, "peak_rss_kib": usage.ru_maxrss,
            "user_s": usage.ru_utime, "sys_s": usage.ru_stime, "output": out.strip()}


def pair(text, what):
    name, sep, value = text.partition("=")
    if not sep or not name:
        sys.exit(f"realloc_growth.py: {what} wants NAME=VALUE, got {text!r}")
    return name, value


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="runs of each allocator (default 5)")
    ap.add_argument("--limit", type=int, default=600_000_000,
                    help="largest size the block may reach (default 600000000)")
    ap.add_argument("--alloc", action="append", default=[], metavar="NAME=LIB")
    ap.add_argument("--options", action="append", default=[], metavar="NAME=CMA_OPTIONS")
    ap.add_argument("--no-mimalloc", action="store_true")
    ap.add_argument("--no-build", action="store_true",
                    help="use target/release/libcma.so as it is")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--json", help="write every run's figures there")
    args = ap.parse_args()

    libcma = os.path.join(ROOT, "target", "release", "libcma.so")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "cma-capi"], cwd=ROOT,
                       check=True)
    with tempfile.TemporaryDirectory() as work:
        exe = os.path.join(work, "realloc_growth")
        subprocess.run(["gcc", "-O2", "-o", exe, os.path.join(BENCH, "c", "realloc_growth.c")],
                       check=True)
        allocators = {"glibc": (None, None), "cma": (libcma, None)}
        if not args.no_mimalloc:
            mi = os.path.join(work, "libmimalloc3.so")
            version = build_mimalloc3(mi)
            allocators["mimalloc"] = (mi, None)
            print(f"mimalloc 3 from libmimalloc-sys {version}")
        for text in args.alloc:
            name, lib = pair(text, "--alloc")
            allocators[name] = (os.path.abspath(lib), None)
        for text in args.options:
            name, opts = pair(text, "--options")
            lib = allocators.get(name, (libcma, None))[0]
            allocators[name] = (lib, opts)

        rng = random.Random(args.seed)
        runs = {name: [] for name in allocators}
        for r in range(args.runs):
            order = list(allocators)
            rng.shuffle(order)
            for name in order:
                lib, opts = allocators[name]
                runs[name].append(run_once(exe, args.limit, lib, opts))
            print(f"round {r + 1}/{args.runs}: " + ", ".join(
                f"{n} {runs[n][-1]['wall_s']:.3f} s {runs[n][-1]['peak_rss_kib'] / 1024:.0f} MiB"
                for n in order), flush=True)
        print(runs["glibc"][0]["output"])

    med = {n: (statistics.median(x["wall_s"] for x in rs),
               statistics.median(x["peak_rss_kib"] for x in rs)) for n, rs in runs.items()}
    base_t, base_m = med["glibc"]
    print(f"\nmedians of {args.runs} alternating runs, limit {args.limit} bytes")
    print(f"  {'allocator':<16}{'time':>9}{'vs glibc':>10}{'peak RSS':>12}{'vs glibc':>10}")
    for name, (t, m) in med.items():
        print(f"  {name:<16}{t:8.3f}s{t / base_t:9.2f}x{m / 1024:9.0f} MiB{m / base_m:9.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"limit": args.limit, "runs": runs,
                       "allocators": {n: {"lib": l, "cma_options": o}
                                      for n, (l, o) in allocators.items()},
                       "medians": {n: {"wall_s": t, "peak_rss_kib": m, "time_vs_glibc": t / base_t,
                                       "rss_vs_glibc": m / base_m}
                                   for n, (t, m) in med.items()}}, f, indent=1)


if __name__ == "__main__":
    main()
