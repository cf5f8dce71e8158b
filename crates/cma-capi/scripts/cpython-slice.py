#!/usr/bin/env python3
"""A slice of CPython's own regression tests, on cma at each check level,
judged against the same run on glibc's malloc.

    crates/cma-capi/scripts/cpython-slice.py --lib target/release/libcma.so
        [--levels fast,default] [--modules test_signal,test_os] [-j 2]

Each module runs in a process of its own (`python3 -m test MODULE`), with
every Python object on malloc (PYTHONMALLOC=malloc): first without cma, then
with libcma preloaded at each level. Test cases that fail without cma (this
machine's environment: no network, a sandboxed /proc...) are named and left
out of every run with regrtest's `-i`, and the module runs again without
them; a module that still fails without cma is left out whole, with the
reason printed (and is not run on cma: a module that hangs here would only
spend the time budget again). Every module that passes without cma must pass
on cma too. Each
cma run writes heap reports (CMA_OPTIONS report=...), which proves it ran on
cma. The exit status is 1 when a module passed on glibc and failed on cma.
"""
import argparse
import re
import concurrent.futures
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

MODULES = ["test_signal", "test_subprocess", "test_threading", "test_os", "test_mmap", "test_gc",
           "test_weakref", "test_re", "test_pickle", "test_sqlite3", "test_ctypes", "test_socket",
           "test_select", "test_io", "test_tempfile", "test_queue"]


def real_python():
    """The interpreter itself, not a pyenv shim (which would run bash first)."""
    out = subprocess.run(["python3", "-c", "import sys; print(sys.executable)"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def failed_cases(output):
    """The names of the test cases unittest reports as failed or in error."""
    return sorted(set(re.findall(r"^(?:FAIL|ERROR): (\w+) \(", output, re.M)))


def reason(output):
    """What to show of a failed run: where it hung, or how it ended."""
    hung = output.find("Timeout (")
    if hung >= 0:
        return output[hung:hung + 900]
    return output[-900:]


def run_module(python, module, lib, level, reports, timeout, ignored=()):
    env = dict(os.environ, PYTHONMALLOC="malloc")
    env.pop("CMA_OPTIONS", None)
    env.pop("LD_PRELOAD", None)
    if lib:
        env["LD_PRELOAD"] = lib
        env["CMA_OPTIONS"] = f"check={level},report={reports}/{module}.%p"
    started = time.monotonic()
    try:
        ignore = [arg for case in ignored for arg in ("-i", case)]
        out = subprocess.run([python, "-m", "test", "-v", "--timeout", str(timeout), *ignore, module],
                             env=env,
                             capture_output=True, text=True, timeout=timeout + 60)
        status, tail = out.returncode, out.stdout + out.stderr
    except subprocess.TimeoutExpired:
        status, tail = "timeout", f"no verdict after {timeout + 60} s"
    return status, tail, time.monotonic() - started


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", required=True, help="libcma.so to preload")
    ap.add_argument("--levels", default="fast,default")
    ap.add_argument("--modules", default=",".join(MODULES))
    ap.add_argument("-j", type=int, default=2, help="modules run at once")
    ap.add_argument("--timeout", type=int, default=180, help="seconds one module may take")
    a = ap.parse_args()
    lib = str(pathlib.Path(a.lib).resolve())
    if not os.path.isfile(lib):
        sys.exit(f"cpython-slice: no library at {lib}")
    python = real_python()
    modules = a.modules.split(",")
    levels = a.levels.split(",")
    reports = tempfile.mkdtemp(prefix="cma-cpython-")
    runs = [("glibc", None)] + [(level, lib) for level in levels]
    verdicts = {}

    ignored = {}

    def run_all(jobs):
        with concurrent.futures.ThreadPoolExecutor(a.j) as pool:
            futures = {pool.submit(run_module, python, m, l, level, reports, a.timeout,
                                   ignored.get(m, ())): (m, level)
                       for m, level, l in jobs}
            for job in concurrent.futures.as_completed(futures):
                m, level = futures[job]
                verdicts[(m, level)] = job.result()
                status, _, secs = verdicts[(m, level)]
                print(f"  {m} on {level}: {'passed' if status == 0 else 'FAILED'} ({secs:.0f} s)",
                      flush=True)

    run_all([(m, "glibc", None) for m in modules])
    for m in modules:
        status, output, _ = verdicts[(m, "glibc")]
        cases = failed_cases(output) if status != 0 else []
        if cases:
            ignored[m] = cases
    run_all([(m, "glibc", None) for m in ignored])
    baseline = [m for m in modules if verdicts[(m, "glibc")][0] == 0]
    run_all([(m, level, l) for level, l in runs[1:] for m in baseline])
    def verdict(m, name):
        if (m, name) not in verdicts:
            return "-"
        return "passed" if verdicts[(m, name)][0] == 0 else "FAILED"

    report_count = sum(1 for _ in pathlib.Path(reports).iterdir())
    shutil.rmtree(reports, ignore_errors=True)

    print(f"\n{'module':18} " + " ".join(f"{name:>8}" for name, _ in runs))
    passed = failed = 0
    excluded = []
    for m in modules:
        row = [verdict(m, name) for name, _ in runs]
        print(f"{m:18} " + " ".join(f"{v:>8}" for v in row))
        if row[0] != "passed":
            excluded.append(m)
            continue
        for (name, _), v in zip(runs[1:], row[1:]):
            if v == "passed":
                passed += 1
            else:
                failed += 1
                print(f"\n{m} passed on glibc and failed on cma at check={name}:\n"
                      f"{verdicts[(m, name)][1][-4000:]}\n")
    for m, cases in ignored.items():
        print(f"left out of {m}: {' '.join(cases)} (they fail without cma too)")
    for m in excluded:
        print(f"excluded: {m} fails without cma too (status {verdicts[(m, 'glibc')][0]}):\n"
              f"{reason(verdicts[(m, 'glibc')][1])}\n")
    if report_count == 0:
        print("cpython-slice: no heap report was written: the runs did not run on cma")
        failed += 1
    print(f"cpython-slice: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
