#!/usr/bin/env python3
"""Time to detect each planted bug: `kstress zoo` over the mutants of zoo/,
with its baseline in the same run, the clean kernel (6.12 plus our fix for
its known warning) run the same way, whose row counts false alarms.

    KSTRESS_CACHE=... nice -n 5 .venv/bin/python benchmarks/bench_zoo.py --runs 10
    KSTRESS_CACHE=... .venv/bin/python benchmarks/bench_zoo.py --runs 1 --mutants swapops-unlock-before-remove-ptes

The zoo itself (kstress zoo) does the work and prints the table: per mutant
k/N detected and the median seconds of stress to the first matching report.
This script adds what a benchmark row needs: the host, its load and the
date, and the wall time of the whole campaign. A campaign of --runs 10 takes
about 105 minutes under TCG on 2 cores; an interrupted one goes on with
`kstress zoo --resume <zoo dir>`.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10, help="runs per kernel (default 10)")
    ap.add_argument("--mutants", help="comma-separated mutant names (default: all of zoo/); the clean "
                    "kernel, the baseline, runs with them")
    ap.add_argument("--config", default="default", help="run config (default: default)")
    ap.add_argument("--duration", type=int, help="seconds for every workload (default: the config's)")
    ap.add_argument("--results", help="directory for the zoo's results (default: the config's)")
    args = ap.parse_args()
    argv = [sys.executable, "-m", "harness", "zoo", "--config", args.config, "--runs", str(args.runs), "--seed", "1"]
    mutants = args.mutants and ",".join(dict.fromkeys([*args.mutants.split(","), "clean"]))
    for option, value in (("--mutants", mutants), ("--duration", args.duration), ("--results", args.results)):
        if value is not None:
            argv += [option, str(value)]
    print(f"{platform.node()}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"load average {os.getloadavg()[0]:.1f}, cache {os.environ.get('KSTRESS_CACHE', '~/.cache/kstress')}",
          flush=True)
    t0 = time.monotonic()
    code = subprocess.run(argv, cwd=REPO).returncode  # the zoo prints its table; its progress goes to stderr
    print(f"campaign wall time {(time.monotonic() - t0) / 60:.1f} min, load average at the end "
          f"{os.getloadavg()[0]:.1f}, kstress zoo exit {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
