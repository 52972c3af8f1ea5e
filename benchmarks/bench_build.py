#!/usr/bin/env python3
"""Cold kernel builds, side by side in one run: today's default kernel
(tinyconfig + kernel-configs/ base-x86, mm-stress, debug, what `kstress build`
compiles) against two baselines, and optionally older fragments and variants:

- defconfig: what a user would build otherwise, `make x86_64_defconfig
  kvm_guest.config` plus the mm options (kernel-configs/mm-stress.config);
- floor: tinyconfig plus only the mm options and what they depend on (64BIT,
  SMP, ACPI, PCI, BLOCK, SYSFS, CGROUPS, DEBUG_FS): no debug info, no
  networking, no console;
- e3aba0c: the default fragments as they were at commit e3aba0c (before ZRAM,
  MEMCG, memory hotplug and the Debian guest's options);
- kasan, lockdep (--variants): today's fragments plus a variant's.

    nice -n 10 .venv/bin/python benchmarks/bench_build.py [--only floor defconfig today] [--variants kasan lockdep]
    nice -n 19 .venv/bin/python benchmarks/bench_build.py --quick     # smoke test: configs + mm/migrate.o

Every build compiles from scratch with make directly (CCACHE_DISABLE=1, plain
gcc, its own empty O= directory, from one pristine tree unpacked before the
clock starts), as kstress does: the base target(s), merge_config.sh -m with
the fragments, olddefconfig, every fragment symbol checked, then
`make -jN bzImage vmlinux`. Printed per kernel: objects compiled, make's wall
seconds and CPU seconds (user + system of make and the compilers, steadier
than wall time on a shared host), each as a ratio to every baseline built in
the same run, and the sizes of vmlinux and bzImage.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.config import resolve_fragment  # noqa: E402
from harness.kernel import source  # noqa: E402
from harness.kernel.build import kernel_root  # noqa: E402
from harness.kernel.kconfig import mismatches, parse_fragment, requested  # noqa: E402

OLD_COMMIT = "e3aba0c"
TODAY = ("base-x86", "mm-stress", "debug")
# What the mm options need on top of tinyconfig to hold (found by merging them
# into tinyconfig: each of these, or a symbol that needs it, was dropped otherwise).
FLOOR_DEPS = "".join(f"CONFIG_{s}=y\n" for s in ("64BIT", "SMP", "ACPI", "PCI", "BLOCK", "SYSFS", "CGROUPS",
                                                   "DEBUG_FS"))
BASELINES = ("defconfig", "floor", "e3aba0c")
DEFAULT_ONLY = ("floor", "defconfig", "today", "e3aba0c")
TARGETS = ["bzImage", "vmlinux"]
QUICK_TARGETS = ["mm/migrate.o"]
_CC_LINE = re.compile(rb"^\s+CC\s+(\[M\]\s+)?\S+\.o\s*$", re.M)


@dataclass
class Recipe:
    """How a kernel's .config is made: make targets, then fragments merged and verified."""
    name: str
    base_targets: list[str]
    fragments: list[Path]
    verified: list[Path] = field(default_factory=list)    # default: all the fragments


@dataclass
class Figures:
    name: str
    objects: int
    wall_s: float
    cpu_s: float
    vmlinux_mb: float | None
    bzimage_mb: float | None


def old_fragments(commit: str, into: Path) -> list[Path]:
    """The default fragments as they were at ``commit`` (git show, no checkout)."""
    into.mkdir(parents=True, exist_ok=True)
    out = []
    for name in TODAY:
        text = subprocess.run(["git", "-C", str(REPO), "show", f"{commit}:kernel-configs/{name}.config"],
                              check=True, capture_output=True, text=True).stdout
        path = into / f"{name}.config"
        path.write_text(text)
        out.append(path)
    return out


def recipes(names: list[str], variants: list[str], old_commit: str, work: Path) -> list[Recipe]:
    today = [resolve_fragment(n, REPO) for n in TODAY]
    mm = resolve_fragment("mm-stress", REPO)
    floor_deps = work / "floor-deps.config"
    floor_deps.write_text(FLOOR_DEPS)
    made = {
        "floor": lambda: Recipe("floor", ["tinyconfig"], [floor_deps, mm]),
        # kvm_guest.config is a make target (the kernel's own merge): it also asks
        # for other architectures' symbols (S390_GUEST), so only the mm options are verified.
        "defconfig": lambda: Recipe("defconfig", ["x86_64_defconfig", "kvm_guest.config"], [mm], [mm]),
        "today": lambda: Recipe("today", ["tinyconfig"], today),
        "e3aba0c": lambda: Recipe(old_commit, ["tinyconfig"], old_fragments(old_commit, work / "old")),
    }
    out = [made[n]() for n in names]
    out += [Recipe(v, ["tinyconfig"], today + [resolve_fragment(v, REPO)]) for v in variants]
    return out


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _make(tree: Path, out: Path, args: list[str], log) -> None:
    argv = ["make", "-C", str(tree), f"O={out}", "CC=gcc", *args]
    log.write(f"$ {' '.join(argv)}\n".encode())
    log.flush()
    subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=True,
                   env=dict(os.environ, LC_ALL="C", CCACHE_DISABLE="1"))


def configure(recipe: Recipe, tree: Path, out: Path, log) -> None:
    out.mkdir(parents=True)
    _make(tree, out, recipe.base_targets, log)
    copies = []
    for i, frag in enumerate(recipe.fragments):     # plain names: merge_config.sh splits on spaces
        copies.append(out / f"fragment-{i}.config")
        shutil.copyfile(frag, copies[-1])
    subprocess.run(["sh", str(tree / "scripts/kconfig/merge_config.sh"), "-m", "-O", str(out),
                    str(out / ".config"), *map(str, copies)], cwd=out, stdout=log, stderr=subprocess.STDOUT,
                   check=True)
    _make(tree, out, ["olddefconfig"], log)
    want = requested([parse_fragment(f) for f in (recipe.verified or recipe.fragments)])
    bad = mismatches(want, (out / ".config").read_text())
    if bad:
        raise SystemExit(f"{recipe.name}: fragment symbols lost in the .config: {'; '.join(bad)}")


def cold_build(recipe: Recipe, tree: Path, work: Path, jobs: int, targets: list[str]) -> Figures:
    out = work / "obj" / recipe.name
    log_path = work / f"{recipe.name}.log"
    print(f"building {recipe.name}: make {' '.join(recipe.base_targets)} + "
          f"{', '.join(f.name for f in recipe.fragments)}", flush=True)
    with open(log_path, "wb") as log:
        configure(recipe, tree, out, log)
        cpu0, t0 = children_cpu(), time.monotonic()
        try:
            _make(tree, out, [f"-j{jobs}", *targets], log)
        except subprocess.CalledProcessError:
            raise SystemExit(f"{recipe.name}: build failed, see {log_path}") from None
        wall, cpu = time.monotonic() - t0, children_cpu() - cpu0
    objects = len(_CC_LINE.findall(log_path.read_bytes()))
    sizes = [(out / p).stat().st_size / 2**20 if (out / p).is_file() else None
             for p in ("vmlinux", "arch/x86/boot/bzImage")]
    print(f"  {recipe.name}: {objects} objects, {wall:.0f} s wall, {cpu:.0f} s CPU", flush=True)
    return Figures(recipe.name, objects, wall, cpu, *sizes)


def _mb(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "-"


def table(rows: list[Figures], baselines: list[str]) -> str:
    base = [r for r in rows if r.name in baselines]
    head = "| kernel | objects | make wall s | CPU s |" + "".join(f" vs {b.name} (wall, CPU) |" for b in base)
    lines = [head + " vmlinux MB | bzImage MB |", "|" + " --- |" * (6 + len(base))]
    for r in rows:
        ratios = "".join(f" {r.wall_s / b.wall_s:.2f}x, {r.cpu_s / b.cpu_s:.2f}x |" for b in base)
        lines.append(f"| {r.name} | {r.objects} | {r.wall_s:.0f} | {r.cpu_s:.0f} |{ratios} "
                     f"{_mb(r.vmlinux_mb)} | {_mb(r.bzimage_mb)} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=DEFAULT_ONLY, default=list(DEFAULT_ONLY), metavar="KERNEL",
                    help=f"the kernels to build, in this order (default: {' '.join(DEFAULT_ONLY)})")
    ap.add_argument("--variants", nargs="*", default=[], metavar="FRAGMENT",
                    help="variant fragments added on top of today's, one cold build each (e.g. kasan lockdep)")
    ap.add_argument("--old-commit", default=OLD_COMMIT, help=f"commit of the old fragments (default {OLD_COMMIT})")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="make -j (default: the CPU count)")
    ap.add_argument("--source", help="an unpacked, clean kernel tree (default: Debian's 6.12 tarball, "
                                     "unpacked into the work directory before the clock starts)")
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke test: every config made and checked, then only {' '.join(QUICK_TARGETS)} built")
    ap.add_argument("--work", type=Path, help="the work directory (default: a temporary one, removed after)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="kstress-bench-build-"))
    if args.work and args.work.exists() and any(args.work.iterdir()):
        ap.error(f"--work {args.work}: not empty (the builds must be cold)")
    try:
        work.mkdir(parents=True, exist_ok=True)
        kernels = recipes(args.only, args.variants, args.old_commit, work)
        root = kernel_root(work / "cache")
        tree = source.ensure_pristine(source.resolve(args.source, memo_file=root / "sha256-memo.json"),
                                      root / "src")
        targets = QUICK_TARGETS if args.quick else TARGETS
        gcc = subprocess.run(["gcc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
        print(f"{platform.node()}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
              f"{gcc}, make -j{args.jobs} {' '.join(targets)}, Linux {source.kernel_version(tree)} ({tree}), "
              f"CCACHE_DISABLE=1, load average {os.getloadavg()[0]:.1f}", flush=True)
        rows = [cold_build(k, tree, work, args.jobs, targets) for k in kernels]
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
        print(table(rows, [*BASELINES[:2], args.old_commit]))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
