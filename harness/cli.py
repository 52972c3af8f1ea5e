"""The `kstress` command: run, build, scan, doctor, cache, compare, bisect, check, zoo, soak, merge, report.

Exit codes (git bisect run friendly): 0 clean, 1 kernel findings,
2 usage or config error, 125 could not test, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import traceback
from pathlib import Path

from harness import __version__, cache_entries, log
from harness.config import apply_overrides, load_config, resolve_fragment
from harness.console import scan_command
from harness.doctor import doctor
from harness.errors import (
    EXIT_CLEAN,
    EXIT_COULD_NOT_TEST,
    EXIT_FINDINGS,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    KstressError,
    UsageError,
)
from harness.kernel import BuildRequest, build_kernel
from harness.modes.bisect import Bisection, Checker, CommitCandidates, SeriesCandidates, Step, Target, bisect_clone_dir
from harness.modes.compare import SIDES, Comparison, Side
from harness.modes.soak import JOBS_RULE, make_soak, merge_soaks
from harness.modes.soak_plan import ROTATION, parse_duration, parse_shard
from harness.modes.soak_report import summary as soak_summary
from harness.modes.variants import VariantRuns
from harness.modes.zoo import run_zoo
from harness.paths import shipped_configs
from harness.report import write_report_for
from harness.run.repro import REPRO_PROPERTY, Repro, load_repro
from harness.run.runner import Runner

DEFAULT_CONFIG_NAME = "default"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own exit code is already 2
        self.print_usage(sys.stderr)
        print(f"kstress: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _add_kernel_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", help="kernel source: directory, tarball or git repository")
    p.add_argument("--ref", help="git ref, with a git repository as --source")
    p.add_argument("--patches", help="patch series: a directory of *.patch or one mbox file")


def _add_step_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", type=int, default=5, help="clean runs that make a step good (default 5)")
    p.add_argument("--title", help="the target finding's title (default: the first finding seen)")
    p.add_argument("--title-regex", action="store_true", help="--title is a regular expression")
    p.add_argument("--file", help="the target finding's source file, e.g. include/linux/swapops.h")
    p.add_argument("--site", help="the target's own site, FILE:LINE of its 'kernel BUG at' or 'WARNING: ... at' "
                                  "line: any report from there matches, whatever its title")
    p.add_argument("--match", default="site,title,file", choices=("site,title,file", "title,file", "title"),
                   help="what identifies the target (default: its site, or its title and file)")
    p.add_argument("--target-run", help="a failing run's results directory: its first finding is the target")
    p.add_argument("--results", help="directory for results/<bisect-id>/")
    p.add_argument("--duration", type=int, help="seconds for every workload")
    p.add_argument("--seed", type=int, help="seed of each step's first run (run j: seed + j)")


def _target(args) -> Target | None:
    match = tuple(args.match.split(","))
    if args.target_run:
        t = Target.from_run(Path(args.target_run))
        t.match = match
        return t
    if (args.file or args.site) and not args.title:
        raise UsageError(f"{'--file' if args.file else '--site'} needs --title")
    if args.site and not re.fullmatch(r"[^:\s]+:\d+", args.site):
        raise UsageError(f"--site {args.site}: expected FILE:LINE, e.g. include/linux/swapops.h:505")
    return Target(args.title, args.file, match, args.title_regex, args.site) if args.title else None


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="kstress", description=__doc__.splitlines()[0],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"kstress {__version__}")
    p.add_argument("--cache", type=Path, help="cache directory (default: $KSTRESS_CACHE or ~/.cache/kstress)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    shipped = ", ".join(shipped_configs())
    run = sub.add_parser("run", help="build, boot, stress and report")
    run.add_argument("config", nargs="?",
                     help=f"run config: a YAML file, or a shipped config's name ({shipped}; default: "
                          f"{DEFAULT_CONFIG_NAME})")
    _add_kernel_options(run)
    run.add_argument("--results", help="directory for results/<run-id>/")
    run.add_argument("--duration", type=int, help="seconds for every workload")
    run.add_argument("--seed", type=int, help="workload seed (default: random, recorded)")
    run.add_argument("--accel", choices=("auto", "kvm", "tcg"), help="override guest.accel")
    run.add_argument("--variant", action="append", metavar="NAME",
                     help="run only this kernel of the config's kernel.variants (repeatable; 'default' is the "
                          "config's own kernel; default: all of them)")
    run.add_argument("--repro", metavar="RUN_DIR",
                     help="run again exactly what the run in RUN_DIR did, from its run.json: its config as it ran, "
                          "kernel (the cache's build of its key), workloads, durations, seed and accelerator "
                          "(only --results and --accel may be given besides)")

    build = sub.add_parser("build", help="build a kernel and print its artifact directory")
    build.add_argument("config", nargs="?", default=DEFAULT_CONFIG_NAME,
                       help="run config whose kernel section to use (a file or a shipped config's name)")
    _add_kernel_options(build)
    build.add_argument("--base-config", help="make target or .config path (default: tinyconfig)")
    build.add_argument("--fragment", action="append", help="Kconfig fragment (repeatable; replaces the config's)")
    build.add_argument("--variant", action="append", metavar="NAME",
                       help="build this kernel of the config's kernel.variants (repeatable; 'default' is the "
                            "config's own kernel)")

    scan = sub.add_parser("scan", help="print the kernel findings in console logs")
    scan.add_argument("logs", nargs="+", help="console or dmesg files")
    scan.add_argument("--json", action="store_true", help="JSON output")
    scan.add_argument("--vmlinux", help="vmlinux with debug info, to symbolize frames")

    sub.add_parser("doctor", help="check this host for what kstress needs")

    cmp_ = sub.add_parser("compare", help="base versus patched kernel: N runs each, same seeds, a verdict per finding")
    cmp_.add_argument("config", nargs="?", default=DEFAULT_CONFIG_NAME,
                      help="run config for both sides (a file or a shipped config's name)")
    cmp_.add_argument("--runs", type=int, default=10, help="runs per side (default 10)")
    for side in SIDES:
        cmp_.add_argument(f"--{side}-source", help=f"{side} kernel source (default: the config's)")
        cmp_.add_argument(f"--{side}-ref", help=f"{side} git ref")
        cmp_.add_argument(f"--{side}-patches", help=f"{side} patch series")
    cmp_.add_argument("--results", help="directory for results/<compare-id>/")
    cmp_.add_argument("--duration", type=int, help="seconds for every workload")
    cmp_.add_argument("--seed", type=int, help="seed of the first round (round i: seed + i)")

    bis = sub.add_parser("bisect", help="the first patch of a series, or the first commit, that brings a finding in")
    bis.add_argument("config", nargs="?", default=DEFAULT_CONFIG_NAME, help="run config for every step")
    bis.add_argument("--series", help="patch series to bisect (on the config's source): patches 1..k per step")
    bis.add_argument("--source", help="git repository whose commits to bisect, with --good and --bad")
    bis.add_argument("--good", help="a commit without the finding")
    bis.add_argument("--bad", help="a commit with it (a descendant of --good)")
    _add_step_options(bis)

    chk = sub.add_parser("check", help="one bisection step for `git bisect run`: 1 if the finding shows in "
                                       "--runs runs, 0 if they stay clean of it, 125 if the kernel cannot be tested")
    chk.add_argument("config", nargs="?", default=DEFAULT_CONFIG_NAME, help="run config")
    _add_kernel_options(chk)
    _add_step_options(chk)

    cache = sub.add_parser("cache", help="list the kstress cache, or prune it to a size (least recently used first)")
    cache_sub = cache.add_subparsers(dest="cache_command", required=True, parser_class=_Parser)
    cache_sub.add_parser("list", help="every entry: kind, size, last use, path")
    prune = cache_sub.add_parser("prune", help="evict least recently used entries that no run or build holds")
    prune.add_argument("--max-size", required=True, help="size to prune down to, e.g. 40G")
    prune.add_argument("--dry-run", action="store_true", help="only print what would be evicted")
    zoo = sub.add_parser("zoo", help="run the planted-bug mutants of zoo/ and a clean kernel N times each, "
                                     "and print how often and how fast each was caught")
    zoo.add_argument("--config", help=f"run config (a file or a shipped config's name; default: {DEFAULT_CONFIG_NAME})")
    zoo.add_argument("--mutants", help="comma-separated mutant names (zoo/<name>.patch), 'clean' for the "
                                       "unpatched kernel (default: every mutant, then clean)")
    zoo.add_argument("--runs", type=int, help="runs per kernel (default: 10)")
    zoo.add_argument("--seed", type=int, help="seed of each kernel's first run; run i uses seed + i (default: 1)")
    zoo.add_argument("--duration", type=int, help="seconds for every workload (default: the config's)")
    zoo.add_argument("--results", help="directory under which zoo-<id>/ is made (default: the config's results)")
    zoo.add_argument("--clean-patches", metavar="PATCHES",
                     help="patch or series for the clean kernel's row, 'none' for the config's source as it is "
                          "(default: examples/fix-deferred-split-6.12, the fix for 6.12's known warning)")
    zoo.add_argument("--resume", metavar="ZOO_DIR",
                     help="continue the zoo in ZOO_DIR (its plan, its journal; --runs adds runs)")

    soak = sub.add_parser("soak", help="run a config's kernels and workloads again and again for a given time; "
                                       "findings de-duplicated, evidence floors checked",
                          description=f"Iterations until the time is up ({ROTATION}), each a fresh boot. No "
                                      f"iteration starts that the time left would not hold (the median iteration "
                                      f"so far). Exit codes as kstress run: the worst of the iterations'; a soak "
                                      f"below its evidence floors is 'unstable' in summary.txt and junit.xml.")
    soak.add_argument("config", nargs="?", help="run config (a file or a shipped config's name)")
    soak.add_argument("--duration",
                      help="how long: 8h, 90m, 1800s, 1h30m (required; with --resume a new, longer total)")
    soak.add_argument("--jobs", type=int, default=1,
                      help=f"guests at once, each in its own thread (default 1); refused above what this host "
                           f"holds: {JOBS_RULE}")
    soak.add_argument("--shard", metavar="I/N",
                      help="run shard I of N: the iterations whose index mod N is I-1 (needs --seed; "
                           "`kstress merge` joins the shards)")
    soak.add_argument("--seed", type=int, help="seed of iteration 0; iteration i uses seed + i (default: random, "
                                               "recorded in plan.json)")
    soak.add_argument("--workload-duration", type=int, metavar="SECONDS",
                      help="seconds for every workload (default: the config's)")
    _add_kernel_options(soak)
    soak.add_argument("--results", help="directory under which soak-<id>/ is made (default: the config's results)")
    soak.add_argument("--resume", metavar="SOAK_DIR",
                      help="continue the soak in SOAK_DIR for the rest of its time (its plan, its journal)")

    merge = sub.add_parser("merge", help="join the shards' soak directories into one soak.json, summary.txt and "
                                         "junit.xml (findings de-duplicated across shards)")
    merge.add_argument("dirs", nargs="+", metavar="SOAK_DIR", help="soak directories of shards of one soak")
    merge.add_argument("--output", "-o", help="directory for the merged files (default: a new soak-merged-<id>/ "
                                              "beside the first)")

    rep = sub.add_parser("report", help="(re)write report.html, the HTML report for people, of a comparison's "
                                        "directory or of a directory of runs")
    rep.add_argument("directory", type=Path, help="a compare directory (compare.json) or one holding run.json files")
    return p


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _repro_runner(args) -> tuple[Runner, Repro]:
    given = [name for name in ("config", "source", "ref", "patches", "duration", "seed", "variant")
             if getattr(args, name) is not None]
    if given:
        raise UsageError(f"--repro takes everything from the run's run.json: give no {', '.join(given)} "
                         f"(only --results and --accel)")
    repro = load_repro(args.repro, results=args.results, accel=args.accel)
    repro.announce()
    runner = Runner(repro.cfg, args.cache, kernel_key=repro.kernel_key)
    runner.record.set_property(REPRO_PROPERTY, str(repro.run_dir))
    return runner, repro


def cmd_run(args) -> int:
    repro = None
    if args.repro:
        runner, repro = _repro_runner(args)
        cfg = runner.cfg
    else:
        cfg = apply_overrides(load_config(args.config or DEFAULT_CONFIG_NAME), source=args.source, ref=args.ref,
                              patches=args.patches, results=args.results,
                              duration=args.duration, seed=args.seed, accel=args.accel)
        kernels = list(dict.fromkeys(args.variant or cfg.kernel_names()))
        # One kernel is an ordinary run; several are the variants mode (a parent
        # results directory, a combined summary, junit.xml and exit code).
        runner = Runner(cfg.for_kernel(kernels[0]), args.cache) if len(kernels) == 1 else \
            VariantRuns(cfg, kernels, cfg.results, args.cache)
    try:
        code = runner.run()
    finally:
        sys.stdout.write(runner.summary())
        if repro is not None and runner.record.guest is not None:
            differs = repro.compare_qemu(runner.record.guest.qemu_argv)
            if differs:
                log.warn(differs)
    if cfg.cache_max_size is not None:
        res = cache_entries.prune(cfg.cache_max_size)
        if res.evicted:
            log.info(f"cache pruned to {cache_entries.human(res.size_after)} (run.cache_max_size): "
                     f"{len(res.evicted)} entries evicted")
    return code


def cmd_build(args) -> int:
    cfg = apply_overrides(load_config(args.config), source=args.source, ref=args.ref,
                          patches=args.patches)
    if args.fragment and args.variant:
        raise UsageError("build: give --fragment or --variant, not both")
    if args.fragment:
        cfg.fragments = [resolve_fragment(f, Path.cwd()) for f in args.fragment]
    for one in [cfg.for_kernel(name) for name in dict.fromkeys(args.variant or [cfg.kernel_name])]:
        req = BuildRequest(source=one.source, ref=one.ref, patches=one.patches,
                           base_config=args.base_config or one.base_config,
                           fragments=[str(f) for f in one.fragments])
        kernel = build_kernel(req, args.cache)
        log.info(f"kernel {one.kernel_name} {kernel.key}: {'cache hit' if kernel.cache_hit else 'built'}")
        print(kernel.artifact_dir, flush=True)
    return 0


def cmd_scan(args) -> int:
    return scan_command(args.logs, as_json=args.json, vmlinux=args.vmlinux)


def cmd_doctor(args) -> int:
    return doctor(args.cache)


def cmd_compare(args) -> int:
    cfg = apply_overrides(load_config(args.config), duration=args.duration)
    sides = tuple(Side(s, source=getattr(args, f"{s}_source"), ref=getattr(args, f"{s}_ref"),
                       patches=getattr(args, f"{s}_patches")) for s in SIDES)
    if (sides[0].source, sides[0].ref, sides[0].patches) == (sides[1].source, sides[1].ref, sides[1].patches):
        raise UsageError("compare: the two sides are the same kernel; give --patched-patches (or "
                         "--patched-source/--patched-ref, or --base-...)")
    comparison = Comparison(cfg, sides, args.runs, Path(args.results or cfg.results), args.cache, args.seed)
    try:
        return comparison.run()
    finally:
        sys.stdout.write(comparison.summary())


def cmd_bisect(args) -> int:
    cfg = apply_overrides(load_config(args.config), duration=args.duration)
    results = Path(args.results or cfg.results)
    if bool(args.series) == bool(args.source):
        raise UsageError("bisect: give either --series DIR or --source REPO --good A --bad B")
    if args.series:
        candidates = SeriesCandidates(Path(args.series))
    else:
        if not (args.good and args.bad):
            raise UsageError("bisect --source needs --good and --bad")
        candidates = CommitCandidates(Path(args.source), args.good, args.bad, bisect_clone_dir(Path(args.source)))
    bisection = Bisection(cfg, candidates, _target(args), args.runs, results, args.cache, args.seed)
    try:
        return bisection.run()
    finally:
        sys.stdout.write(bisection.summary())


def cmd_check(args) -> int:
    cfg = apply_overrides(load_config(args.config), source=args.source, ref=args.ref, patches=args.patches,
                          duration=args.duration)
    results = Path(args.results or cfg.results)
    checker = Checker(args.runs, results, args.cache, args.seed if args.seed is not None else 1)
    step = Step(0, "check")
    target = checker.check(step, cfg, _target(args))
    print(f"kstress check: {step.verdict.upper()}: target {target.describe() if target else 'any finding'} "
          f"hit in {step.hits} of {len(step.runs)} runs{'; ' + step.reason if step.reason else ''}")
    return {"bad": EXIT_FINDINGS, "good": EXIT_CLEAN}.get(step.verdict, EXIT_COULD_NOT_TEST)


def cmd_cache(args) -> int:
    if args.cache_command == "list":
        return cache_entries.list_command()
    return cache_entries.prune_command(args.max_size, dry_run=args.dry_run)


def cmd_zoo(args) -> int:
    return run_zoo(args.config, args.mutants, args.runs, args.results, args.seed, args.duration, args.resume,
                   args.cache, clean_patches=args.clean_patches)


def _kernel_overrides(args) -> dict[str, str]:
    """--source/--ref/--patches as given; paths made absolute, so that a plan
    that keeps them means the same from any directory."""
    out = {}
    for name in ("source", "ref", "patches"):
        value = getattr(args, name)
        if value:
            out[name] = str(Path(value).expanduser().resolve()) if name != "ref" and Path(value).exists() else value
    return out


def cmd_soak(args) -> int:
    duration = parse_duration(args.duration) if args.duration is not None else None
    shard = parse_shard(args.shard) if args.shard is not None else None
    soak = make_soak(args.config, duration, args.jobs, shard, args.results, args.resume, args.seed,
                     args.workload_duration, args.cache, kernel=_kernel_overrides(args))
    try:
        return soak.run()
    finally:
        if soak.report is not None:
            sys.stdout.write(soak_summary(soak.report))


def cmd_merge(args) -> int:
    report = merge_soaks(args.dirs, args.output)
    sys.stdout.write(soak_summary(report))
    return report.exit_code()


def cmd_report(args) -> int:
    print(write_report_for(args.directory))
    return EXIT_CLEAN


COMMANDS = {"run": cmd_run, "build": cmd_build, "scan": cmd_scan, "doctor": cmd_doctor, "cache": cmd_cache,
            "compare": cmd_compare, "bisect": cmd_bisect, "check": cmd_check, "zoo": cmd_zoo, "soak": cmd_soak,
            "merge": cmd_merge, "report": cmd_report}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cache is not None:
        os.environ["KSTRESS_CACHE"] = str(args.cache.resolve())
    # SIGTERM (a Jenkins abort) takes the same path as Ctrl-C: the guest is
    # killed and the results are written before we exit.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return COMMANDS[args.command](args)
    except KstressError as exc:
        print(f"kstress: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        print(f"kstress: interrupted ({str(exc) or 'SIGINT'}); results kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception:
        traceback.print_exc()
        print("kstress: internal error (a bug in kstress; the traceback is above)", file=sys.stderr)
        return EXIT_COULD_NOT_TEST


if __name__ == "__main__":
    sys.exit(main())
