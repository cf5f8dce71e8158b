#!/usr/bin/env python3
"""Small-object throughput (issue 14), side by side: `c/tight_loop.c` (each
thread mallocs and frees 8-128 B blocks in a tight loop for a fixed time)
under cma, mimalloc 3 (built from the `libmimalloc-sys` crate's vendored
sources) and glibc, with 1 and with 2 threads, alternating allocators run by
run in a shuffled order.

    crates/cma-bench/scripts/throughput.py [--rounds N] [--seconds S]
        [--threads 1,2] [--options CMA_OPTIONS]

Prints, per thread count, the median iterations per second of each thread
(the total over the threads, divided by them) and the ratio to mimalloc's.
"""
import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, HERE)
from instructions import build_mimalloc3  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--options", default="", help="CMA_OPTIONS for cma")
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "cma-capi"], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory() as work:
        exe = os.path.join(work, "tight_loop")
        subprocess.run(["gcc", "-O2", "-pthread", "-o", exe,
                        os.path.join(ROOT, "crates", "cma-bench", "c", "tight_loop.c")], check=True)
        mi = os.path.join(work, "libmimalloc3.so")
        build_mimalloc3(mi)
        libs = {"cma": os.path.join(ROOT, "target", "release", "libcma.so"),
                "mimalloc": mi, "glibc": None}
        rng = random.Random(14)
        for threads in [int(t) for t in args.threads.split(",")]:
            rates = {name: [] for name in libs}
            for r in range(args.rounds):
                order = list(libs)
                rng.shuffle(order)
                for name in order:
                    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "CMA_OPTIONS")}
                    if libs[name]:
                        env["LD_PRELOAD"] = libs[name]
                    if name == "cma" and args.options:
                        env["CMA_OPTIONS"] = args.options
                    out = subprocess.run([exe, str(threads), str(args.seconds)], env=env,
                                         capture_output=True, text=True, check=True).stdout
                    total = int(out.split()[1])
                    rates[name].append(total / threads / args.seconds)
            base = statistics.median(rates["mimalloc"])
            print(f"{threads} thread(s), {args.rounds} alternating runs of {args.seconds} s: "
                  "median iterations per second per thread")
            for name, v in rates.items():
                m = statistics.median(v)
                print(f"  {name:<10}{m / 1e6:10.1f} M/s   {m / base:5.2f}x mimalloc")


if __name__ == "__main__":
    main()
