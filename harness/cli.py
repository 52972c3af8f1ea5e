"""The `kstress` command: run, build, scan, doctor, zoo.

Exit codes (git bisect run friendly): 0 clean, 1 kernel findings,
2 usage or config error, 125 could not test, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from pathlib import Path

from harness import __version__, log
from harness.config import apply_overrides, load_config, resolve_fragment
from harness.console import scan_command
from harness.doctor import doctor
from harness.errors import EXIT_COULD_NOT_TEST, EXIT_INTERRUPTED, EXIT_USAGE, KstressError
from harness.kernel import BuildRequest, build_kernel
from harness.modes.zoo import run_zoo
from harness.paths import shipped_configs
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


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="kstress", description=__doc__.splitlines()[0],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"kstress {__version__}")
    p.add_argument("--cache", type=Path, help="cache directory (default: $KSTRESS_CACHE or ~/.cache/kstress)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    shipped = ", ".join(shipped_configs())
    run = sub.add_parser("run", help="build, boot, stress and report")
    run.add_argument("config", nargs="?", default=DEFAULT_CONFIG_NAME,
                     help=f"run config: a YAML file, or a shipped config's name ({shipped}; default: "
                          f"{DEFAULT_CONFIG_NAME})")
    _add_kernel_options(run)
    run.add_argument("--results", help="directory for results/<run-id>/")
    run.add_argument("--duration", type=int, help="seconds for every workload")
    run.add_argument("--seed", type=int, help="workload seed (default: random, recorded)")
    run.add_argument("--accel", choices=("auto", "kvm", "tcg"), help="override guest.accel")

    build = sub.add_parser("build", help="build a kernel and print its artifact directory")
    build.add_argument("config", nargs="?", default=DEFAULT_CONFIG_NAME,
                       help="run config whose kernel section to use (a file or a shipped config's name)")
    _add_kernel_options(build)
    build.add_argument("--base-config", help="make target or .config path (default: tinyconfig)")
    build.add_argument("--fragment", action="append", help="Kconfig fragment (repeatable; replaces the config's)")

    scan = sub.add_parser("scan", help="print the kernel findings in console logs")
    scan.add_argument("logs", nargs="+", help="console or dmesg files")
    scan.add_argument("--json", action="store_true", help="JSON output")
    scan.add_argument("--vmlinux", help="vmlinux with debug info, to symbolize frames")

    sub.add_parser("doctor", help="check this host for what kstress needs")

    zoo = sub.add_parser("zoo", help="run the planted-bug mutants of zoo/ and a clean kernel N times each, "
                                     "and print how often and how fast each was caught")
    zoo.add_argument("--config", help=f"run config (a file or a shipped config's name; default: {DEFAULT_CONFIG_NAME})")
    zoo.add_argument("--mutants", help="comma-separated mutant names (zoo/<name>.patch), 'clean' for the "
                                       "unpatched kernel (default: every mutant, then clean)")
    zoo.add_argument("--runs", type=int, help="runs per kernel (default: 10)")
    zoo.add_argument("--seed", type=int, help="seed of each kernel's first run; run i uses seed + i (default: 1)")
    zoo.add_argument("--duration", type=int, help="seconds for every workload (default: the config's)")
    zoo.add_argument("--results", help="directory under which zoo-<id>/ is made (default: the config's results)")
    zoo.add_argument("--resume", metavar="ZOO_DIR",
                     help="continue the zoo in ZOO_DIR (its plan, its journal; --runs adds runs)")
    return p


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def cmd_run(args) -> int:
    cfg = apply_overrides(load_config(args.config), source=args.source, ref=args.ref,
                          patches=args.patches, results=args.results,
                          duration=args.duration, seed=args.seed, accel=args.accel)
    runner = Runner(cfg, args.cache)
    try:
        code = runner.run()
    finally:
        sys.stdout.write(runner.summary())
    return code


def cmd_build(args) -> int:
    cfg = apply_overrides(load_config(args.config), source=args.source, ref=args.ref,
                          patches=args.patches)
    fragments = cfg.fragments
    if args.fragment:
        fragments = [resolve_fragment(f, Path.cwd()) for f in args.fragment]
    req = BuildRequest(source=cfg.source, ref=cfg.ref, patches=cfg.patches,
                       base_config=args.base_config or cfg.base_config,
                       fragments=[str(f) for f in fragments])
    kernel = build_kernel(req, args.cache)
    log.info(f"kernel {kernel.key}: {'cache hit' if kernel.cache_hit else 'built'}")
    print(kernel.artifact_dir)
    return 0


def cmd_scan(args) -> int:
    return scan_command(args.logs, as_json=args.json, vmlinux=args.vmlinux)


def cmd_doctor(args) -> int:
    return doctor(args.cache)


def cmd_zoo(args) -> int:
    return run_zoo(args.config, args.mutants, args.runs, args.results, args.seed, args.duration, args.resume,
                   args.cache)


COMMANDS = {"run": cmd_run, "build": cmd_build, "scan": cmd_scan, "doctor": cmd_doctor, "zoo": cmd_zoo}


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
        print(f"kstress: interrupted ({exc or 'SIGINT'}); results kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception:
        traceback.print_exc()
        print("kstress: internal error (a bug in kstress; the traceback is above)", file=sys.stderr)
        return EXIT_COULD_NOT_TEST


if __name__ == "__main__":
    sys.exit(main())
