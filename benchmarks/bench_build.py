#!/usr/bin/env python3
"""Cold kernel builds, side by side in one run: the default kernel with the
Kconfig fragments of commit e3aba0c (the baseline: before ZRAM, MEMCG, memory
hotplug and the Debian guest's options), with today's fragments, and the
kernel variants (KASAN, lockdep) on top of today's.

    nice -n 10 .venv/bin/python benchmarks/bench_build.py --variants kasan lockdep

Every build compiles from scratch: the compiler cache is off (CCACHE_DISABLE=1)
and all builds go into one fresh kstress cache, where the source is unpacked
once and each resulting .config gets its own empty build directory. Printed
per kernel: objects compiled, make's wall seconds and the CPU seconds of make
and the compilers (user + system time of the children, steadier than wall
time on a host shared with other work), each also as a ratio to the baseline.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.config import resolve_fragment  # noqa: E402
from harness.kernel import BuildRequest, build_kernel, source  # noqa: E402
from harness.kernel.build import kernel_root  # noqa: E402

BASELINE_COMMIT = "e3aba0c"
TODAY = ("base-x86", "mm-stress", "debug")


@dataclass
class Figures:
    name: str
    objects: int
    wall_s: float
    cpu_s: float
    vmlinux_mb: float
    bzimage_mb: float


def baseline_fragments(commit: str, into: Path) -> list[Path]:
    """The default fragments as they were at ``commit`` (git show, no checkout)."""
    out = []
    for name in TODAY:
        text = subprocess.run(["git", "-C", str(REPO), "show", f"{commit}:kernel-configs/{name}.config"],
                              check=True, capture_output=True, text=True).stdout
        path = into / f"{name}.config"
        path.write_text(text)
        out.append(path)
    return out


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def cold_build(name: str, fragments: list[Path], cache: Path, jobs: int | None) -> Figures:
    print(f"building {name}: {', '.join(f.name for f in fragments)}", flush=True)
    cpu0, t0 = children_cpu(), time.monotonic()
    kernel = build_kernel(BuildRequest(fragments=[str(f) for f in fragments], jobs=jobs), cache)
    wall, cpu = time.monotonic() - t0, children_cpu() - cpu0
    assert not kernel.cache_hit, f"{name}: a cache hit in a fresh cache"
    meta = kernel.meta
    print(f"  {name}: {meta['objects_compiled']} objects, make {meta['timings']['build_s']:.0f} s, "
          f"whole build {wall:.0f} s wall, {cpu:.0f} s CPU", flush=True)
    return Figures(name, meta["objects_compiled"], meta["timings"]["build_s"], cpu,
                   kernel.vmlinux.stat().st_size / 2**20, kernel.bzimage.stat().st_size / 2**20)


def table(rows: list[Figures]) -> str:
    base = rows[0]
    lines = ["| kernel | objects | make wall s | vs baseline | CPU s | vs baseline | vmlinux MB | bzImage MB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r.name} | {r.objects} | {r.wall_s:.0f} | {r.wall_s / base.wall_s:.2f}x | "
                     f"{r.cpu_s:.0f} | {r.cpu_s / base.cpu_s:.2f}x | {r.vmlinux_mb:.0f} | {r.bzimage_mb:.1f} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="*", default=[], metavar="FRAGMENT",
                    help="variant fragments added on top of today's, one cold build each (e.g. kasan lockdep)")
    ap.add_argument("--baseline", default=BASELINE_COMMIT, help=f"commit of the baseline fragments "
                                                                 f"(default {BASELINE_COMMIT})")
    ap.add_argument("--jobs", type=int, help="make -j (default: the CPU count)")
    ap.add_argument("--work", type=Path, help="the fresh cache (default: a temporary directory, removed after)")
    args = ap.parse_args()
    os.environ["CCACHE_DISABLE"] = "1"
    work = args.work or Path(tempfile.mkdtemp(prefix="kstress-bench-build-"))
    if args.work and args.work.exists() and any(args.work.iterdir()):
        ap.error(f"--work {args.work}: not empty (the builds must be cold)")
    try:
        (work / "baseline").mkdir(parents=True)
        today = [resolve_fragment(n, REPO) for n in TODAY]
        kernels = [(f"baseline ({args.baseline})", baseline_fragments(args.baseline, work / "baseline")),
                   ("today", today)]
        kernels += [(v, today + [resolve_fragment(v, REPO)]) for v in args.variants]
        root = kernel_root(work / "cache")
        # Unpacked before the clock starts: the first build would pay for it alone.
        source.ensure_pristine(source.resolve(None, memo_file=root / "sha256-memo.json"), root / "src")
        print(f"cold builds (CCACHE_DISABLE=1) into {work / 'cache'}, "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
        rows = [cold_build(name, frags, work / "cache", args.jobs) for name, frags in kernels]
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
        print(table(rows))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
