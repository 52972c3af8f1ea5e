#!/usr/bin/env python3
"""Incremental rebuilds of the default kernel, side by side in one run:

- kstress build with a one-line change to one mm file (a patch adding a
  comment to mm/migrate.c): the patch applied to the cache's working copy,
  the build beside the cached default build, the artifacts published;
- the baseline, make's own rebuild in the same tree: the file touched, then
  `make -jN bzImage` in that build directory;
- kstress build of an already-built request (a cache hit).

    KSTRESS_CACHE=/root/kst-cache nice -n 10 .venv/bin/python benchmarks/bench_rebuild.py [-n 3]
    KSTRESS_CACHE=/root/kst-cache nice -n 19 .venv/bin/python benchmarks/bench_rebuild.py --quick

The kernel is the default config's (built first, untimed, if the cache lacks
it). Each patched build carries a fresh comment, so it is never a cache hit
(each leaves one kernel entry in the cache, for `kstress cache prune`); a
first patched build, untimed, brings the working copy to "pristine but for
that file", so the timed ones change one file only. The compiler cache is off
(CCACHE_DISABLE=1) for all of them. Printed: wall seconds (median) and CPU
seconds (user + system of make and the compilers), objects compiled, and the
ratio to make's own rebuild.
"""

from __future__ import annotations

import argparse
import difflib
import os
import platform
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness import cache  # noqa: E402
from harness.cache import cache_root  # noqa: E402
from harness.config import load_config  # noqa: E402
from harness.kernel import BuildRequest, build_kernel, source  # noqa: E402
from harness.kernel.build import kernel_root  # noqa: E402

CHANGED = "mm/migrate.c"
AFTER_LINE = 1       # the comment goes after the file's first line (its SPDX line)


@dataclass
class Timing:
    wall_s: float
    cpu_s: float
    objects: int | None = None


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def all_cpu() -> float:
    """CPU seconds of this process (kstress's own work) and its children (make, the compilers)."""
    return time.process_time() + children_cpu()


def comment_patch(pristine: Path, into: Path) -> tuple[Path, str]:
    """A patch adding one comment line (with a fresh nonce) to CHANGED; (its path, the nonce)."""
    nonce = secrets.token_hex(6)
    old = (pristine / CHANGED).read_text().splitlines(keepends=True)
    new = old[:AFTER_LINE] + [f"/* kstress bench_rebuild {nonce} */\n"] + old[AFTER_LINE:]
    diff = "".join(difflib.unified_diff(old, new, f"a/{CHANGED}", f"b/{CHANGED}"))
    path = into / f"bench-rebuild-{nonce}.patch"
    path.write_text(f"bench_rebuild: a comment in {CHANGED}\n\n{diff}")
    return path, nonce


def kstress_build(req: BuildRequest, root: Path) -> tuple[Timing, dict]:
    cpu0, t0 = all_cpu(), time.monotonic()
    kernel = build_kernel(req, root)
    timing = Timing(time.monotonic() - t0, all_cpu() - cpu0)
    if req.patches:
        assert not kernel.cache_hit, "a patched build with a fresh nonce was a cache hit"
        timing.objects = kernel.meta["objects_compiled"]
    else:
        assert kernel.cache_hit, "the default build was rebuilt"
    return timing, kernel.meta


def make_rebuild(meta: dict, nonce: str, jobs: int) -> Timing:
    """Touch CHANGED in the working copy and let make rebuild bzImage, holding the working copy's lock."""
    work, bdir = Path(meta["work_dir"]), Path(meta["build_dir"])
    with cache.locked(work) as lock_fd:
        if nonce not in (work / CHANGED).read_text():
            raise SystemExit(f"{work / CHANGED} changed under us (another kstress build): run again")
        os.utime(work / CHANGED)
        # The CC kstress builds with (harness/kernel/build.py): another CC would rebuild everything.
        cc = ["CC=ccache gcc"] if shutil.which("ccache") else []
        argv = ["make", "-C", str(work), f"O={bdir}", *cc, f"-j{jobs}", "bzImage"]
        cpu0, t0 = children_cpu(), time.monotonic()
        out = subprocess.run(argv, capture_output=True, pass_fds=(lock_fd,), stdin=subprocess.DEVNULL,
                             env=dict(os.environ, LC_ALL="C"))
        timing = Timing(time.monotonic() - t0, children_cpu() - cpu0)
    if out.returncode:
        raise SystemExit(f"{' '.join(argv)} failed:\n{out.stdout.decode(errors='replace')[-2000:]}")
    timing.objects = sum(1 for line in out.stdout.decode(errors="replace").splitlines()
                         if line.strip().startswith("CC ") and line.strip().endswith(".o"))
    return timing


def _s(seconds: float) -> str:
    return f"{seconds:.1f}" if seconds >= 1 else f"{seconds:.3f}"


def row(name: str, runs: list[Timing], base: float) -> str:
    wall = statistics.median(t.wall_s for t in runs)
    cpu = statistics.median(t.cpu_s for t in runs)
    objects = runs[0].objects if runs[0].objects is not None else "-"
    return (f"| {name} | {_s(wall)} | {_s(min(t.wall_s for t in runs))}-{_s(max(t.wall_s for t in runs))} | "
            f"{_s(cpu)} | {objects} | {wall / base:.2g}x |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=3, help="timed rebuilds of each kind")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="make -j (default: the CPU count)")
    ap.add_argument("--quick", action="store_true", help="smoke test: one of each, no untimed first patched build")
    args = ap.parse_args()
    if args.quick:
        args.n = 1
    os.environ["CCACHE_DISABLE"] = "1"
    root = cache_root()
    fragments = [str(f) for f in load_config("default").fragments]
    default = BuildRequest(fragments=fragments, jobs=args.jobs)
    first = build_kernel(default, root)          # untimed: the cache's default build, or a cold one
    print(f"{platform.node()}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"cache {root}, default kernel {first.key} ({first.meta.get('kernel_version')}), make -j{args.jobs}, "
          f"CCACHE_DISABLE=1, load average {os.getloadavg()[0]:.1f}", flush=True)
    kroot = kernel_root(root)
    pristine = source.ensure_pristine(source.resolve(None, memo_file=kroot / "sha256-memo.json"), kroot / "src")
    kstress_runs, make_runs, hits = [], [], []
    with tempfile.TemporaryDirectory(prefix="kstress-bench-rebuild-") as tmp:
        rounds = args.n if args.quick else args.n + 1
        for i in range(rounds):
            patch, nonce = comment_patch(pristine, Path(tmp))
            req = BuildRequest(fragments=fragments, jobs=args.jobs, patches=str(patch))
            timing, meta = kstress_build(req, root)
            timed = args.quick or i > 0
            print(f"  kstress build, {patch.name}: {timing.wall_s:.1f} s wall, {timing.cpu_s:.1f} s CPU, "
                  f"{timing.objects} objects, make {meta['timings']['build_s']} s, config "
                  f"{meta['timings']['config_s']} s{'' if timed else ' (untimed: brings the tree to one change)'}",
                  flush=True)
            if not timed:
                continue
            kstress_runs.append(timing)
            make_runs.append(make_rebuild(meta, nonce, args.jobs))
            print(f"  make -j{args.jobs} bzImage after touching {CHANGED}: {make_runs[-1].wall_s:.1f} s wall, "
                  f"{make_runs[-1].cpu_s:.1f} s CPU, {make_runs[-1].objects} objects", flush=True)
            hits.append(kstress_build(default, root)[0])
    base = statistics.median(t.wall_s for t in make_runs)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    print(f"| rebuild of the default kernel ({args.n} each) | median wall s | range | CPU s | objects | "
          f"vs make's own |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(row(f"kstress build, one comment line added to {CHANGED} (a patch)", kstress_runs, base))
    print(row(f"make -j{args.jobs} bzImage after touching {CHANGED}", make_runs, base))
    print(row("kstress build, cache hit", hits, base))
    return 0


if __name__ == "__main__":
    sys.exit(main())
