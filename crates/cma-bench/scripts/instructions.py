#!/usr/bin/env python3
"""Instructions per malloc and per free, counted with callgrind: cma against
mimalloc 3 (built from the `libmimalloc-sys` crate's vendored sources),
glibc and, where installed, jemalloc. Repeatable whatever the machine's load.

    crates/cma-bench/scripts/instructions.py [--pairs N] [--levels fast,default]

Two paths:
- C: `c/churn_pairs.c` (256 blocks of 8-512 B churned one free and one malloc
  at a time, 64-block bursts) run with each allocator through LD_PRELOAD
  (glibc: none). The figure is what callgrind collects inside `malloc`, then
  inside `free` (--toggle-collect, callees included) divided by the calls:
  the program's own loop is not in it.
- Rust: `src/bin/churn_pairs.rs`, the same churn through each allocator's
  `GlobalAlloc`, read from the never-inlined `alloc_one` and `free_one`;
  `cma-LEVEL+backends` is `cma::CmaWithBackends` with no backend set.

Prints a table per path with the ratio of each pair to mimalloc's. Builds
what it needs (cargo --release, gcc); needs valgrind.
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BENCH = os.path.join(ROOT, "crates", "cma-bench")


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def mimalloc3_sources():
    meta = json.loads(run(["cargo", "metadata", "--format-version", "1"],
                          cwd=ROOT, capture_output=True, text=True).stdout)
    for pkg in meta["packages"]:
        if pkg["name"] == "libmimalloc-sys":
            base = os.path.join(os.path.dirname(pkg["manifest_path"]), "c_src", "mimalloc", "v3")
            if os.path.isdir(base):
                return base, pkg["version"]
    sys.exit("instructions.py: no libmimalloc-sys with vendored v3 sources in cargo metadata")


def build(work):
    # Two builds: a `--bin` filter would leave libcma (a library) unbuilt.
    run(["cargo", "build", "--release", "-q", "-p", "cma-capi"], cwd=ROOT)
    run(["cargo", "build", "--release", "-q", "-p", "cma-bench", "--bin", "churn_pairs"], cwd=ROOT)
    exe = os.path.join(work, "churn_pairs_c")
    run(["gcc", "-O2", "-o", exe, os.path.join(BENCH, "c", "churn_pairs.c")])
    mi = os.path.join(work, "libmimalloc3.so")
    version = build_mimalloc3(mi)
    return exe, mi, version


def build_mimalloc3(out):
    """Builds mimalloc 3 as a preloadable shared library at `out` from the
    vendored sources of the `libmimalloc-sys` crate; returns its version."""
    src, version = mimalloc3_sources()
    # The crate's own flags for the static library (cc's -O3 release build),
    # plus what a preloadable shared library needs.
    run(["gcc", "-O3", "-DNDEBUG", "-DMI_MALLOC_OVERRIDE", "-fno-builtin-malloc",
         "-ftls-model=initial-exec", "-fPIC", "-shared", "-I", os.path.join(src, "include"),
         "-I", os.path.join(src, "src"), os.path.join(src, "src", "static.c"), "-o", out,
         "-lpthread"])
    return version


def collected(cmd, env, work, functions):
    """Instructions executed inside `functions` (callgrind's --toggle-collect:
    from entry to return, callees included), and the program's stdout."""
    out = os.path.join(work, "callgrind.out")
    toggles = ["--toggle-collect=" + f for f in functions]
    proc = run(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out] + toggles + cmd,
               env=env, capture_output=True, text=True)
    m = re.search(r"Collected : (\d+)", proc.stderr)
    if not m:
        sys.exit(f"instructions.py: no count from callgrind for {cmd}: {proc.stderr[-500:]!r}")
    return int(m.group(1)), proc.stdout


def callgrind(cmd, env, work, functions):
    """Instructions per allocation and per free: `functions` maps "alloc" and
    "free" to the symbol names (wildcards allowed) of the two entry points.
    Function-level, not file-level: code inlined from other files counts."""
    counts = {}
    for key in ("alloc", "free"):
        counts[key], stdout = collected(cmd, env, work, functions[key])
    m = re.search(r"mallocs (\d+) frees (\d+)", stdout)
    if not m:
        sys.exit(f"instructions.py: unexpected output from {cmd}: {stdout!r}")
    return counts["alloc"] / int(m.group(1)), counts["free"] / int(m.group(2))


def table(title, rows):
    base = dict((n, a + f) for n, a, f in rows).get("mimalloc")
    print(title)
    print(f"  {'allocator':<14}{'malloc':>9}{'free':>9}{'pair':>9}{'vs mimalloc':>13}")
    for name, a, f in rows:
        ratio = f"{(a + f) / base:.2f}x" if base else "-"
        print(f"  {name:<14}{a:9.1f}{f:9.1f}{a + f:9.1f}{ratio:>13}")
    print()


def cma_options(level):
    """CMA_OPTIONS for a `--levels` entry: `fast` or `fast:sample=0`."""
    name, _, more = level.partition(":")
    return ",".join(filter(None, [f"check={name}", more.replace(":", ",")]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=200_000)
    ap.add_argument("--levels", default="fast,default",
                    help="cma check levels to count (CMA_OPTIONS=check=LEVEL); a level may "
                         "carry more options after colons, e.g. fast:sample=0 or default:wipe=0:canary=0")
    args = ap.parse_args()
    levels = [l for l in args.levels.split(",") if l]
    with tempfile.TemporaryDirectory() as work:
        exe, mi, mi_version = build(work)
        libcma = os.path.join(ROOT, "target", "release", "libcma.so")
        pairs = str(args.pairs)
        base_env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "CMA_OPTIONS")}

        c_rows = []
        # Every name the entry points go by: callgrind names an address by
        # one of its symbols (libcma's free shares its code with operator
        # delete, malloc with cma_malloc).
        c_fns = {"alloc": ["malloc", "cma_malloc", "__libc_malloc"],
                 "free": ["free", "cfree", "cma_free", "__libc_free", "_ZdlPv", "_ZdaPv"]}
        libc_fns = c_fns
        c_rows.append(("glibc",) + callgrind([exe, pairs], base_env, work, libc_fns))
        mi_fns = c_fns
        c_rows.append(("mimalloc",) + callgrind([exe, pairs], dict(base_env, LD_PRELOAD=mi),
                                                work, mi_fns))
        for je in sorted(glob.glob("/usr/lib/*-linux-gnu/libjemalloc.so.2")):
            je_fns = c_fns
            c_rows.append(("jemalloc",) + callgrind([exe, pairs], dict(base_env, LD_PRELOAD=je),
                                                    work, je_fns))
            break
        cma_fns = c_fns
        for level in levels:
            env = dict(base_env, LD_PRELOAD=libcma, CMA_OPTIONS=cma_options(level))
            c_rows.append((f"cma-{level}",) + callgrind([exe, pairs], env, work, cma_fns))
        table(f"C malloc/free through LD_PRELOAD, instructions per call "
              f"({args.pairs} churn pairs; mimalloc {mi_version} crate sources, v3)", c_rows)

        rust = os.path.join(ROOT, "target", "release", "churn_pairs")
        rust_fns = {"alloc": ["churn_pairs::alloc_one*"], "free": ["churn_pairs::free_one*"]}
        rust_rows = []
        for name in ["mimalloc", "system", "jemalloc", "snmalloc", "rusty_alloc"]:
            try:
                rust_rows.append((name,) + callgrind([rust, name, pairs], base_env, work, rust_fns))
            except subprocess.CalledProcessError:
                print(f"  ({name}: not counted: not in this build, or it failed under valgrind)",
                      file=sys.stderr)
        for level in levels:
            env = dict(base_env, CMA_OPTIONS=cma_options(level))
            rust_rows.append((f"cma-{level}",) + callgrind([rust, "cma", pairs], env, work, rust_fns))
            rust_rows.append((f"cma-{level}+backends",)
                             + callgrind([rust, "cma-backends", pairs], env, work, rust_fns))
        table("Rust GlobalAlloc alloc/dealloc (the mimalloc crate as the baseline), "
              "instructions per call", rust_rows)


if __name__ == "__main__":
    main()
