#!/usr/bin/env python3
"""Detection rate: run the planted swapops bug and the clean kernel N times
each (different seeds) and print k/N detections and false alarms.

    .venv/bin/python benchmarks/bench_detection.py -n 10 --duration 60

Both kernels come from the kstress cache (the planted one is an incremental
rebuild of the clean one); each run is a real TCG or KVM boot.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLANTED = REPO / "zoo" / "swapops-unlock-before-remove-ptes.patch"


def one_run(patches: Path | None, seed: int, duration: int, results: Path) -> dict:
    args = [sys.executable, "-m", "harness", "run", str(REPO / "configs" / "quick.yaml"),
            "--seed", str(seed), "--duration", str(duration), "--results", str(results)]
    if patches:
        args += ["--patches", str(patches)]
    t0 = time.monotonic()
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    wall = time.monotonic() - t0
    runs = sorted(d for d in results.iterdir() if d.is_dir())
    record = json.loads((runs[-1] / "run.json").read_text()) if runs else {}
    wl = next((c for c in record.get("testcases", []) if c["name"] == "migrate_fork"), {})
    return {"exit": proc.returncode, "wall": wall, "findings": record.get("findings", []),
            "workload_seconds": wl.get("elapsed"), "stderr": proc.stderr[-2000:],
            "delta": record.get("workloads", {}).get("migrate_fork", {}).get("vmstat_delta", {})}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10, help="runs per kernel")
    ap.add_argument("--duration", type=int, default=60, help="workload seconds per run")
    ap.add_argument("--patch", type=Path, default=PLANTED, help="planted-bug patch")
    ap.add_argument("--results", type=Path, help="keep results here (default: a temp dir)")
    args = ap.parse_args()
    results = args.results or Path(tempfile.mkdtemp(prefix="kstress-bench-"))
    print(f"{platform.node()}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"load average {os.getloadavg()[0]:.1f}, cache {os.environ.get('KSTRESS_CACHE', '~/.cache/kstress')}, "
          f"results {results}", flush=True)

    detected, times, planted_other = 0, [], []
    for i in range(args.n):
        r = one_run(args.patch, 1000 + i, args.duration, results / "planted")
        swapops = [f for f in r["findings"] if f["cls"] == "swapops_bug"]
        if swapops and r["exit"] == 1:
            detected += 1
            times.append(r["workload_seconds"] or 0)
        else:
            planted_other.append((i, r["exit"], [f["title"] for f in r["findings"]], r["stderr"][-300:]))
        print(f"planted run {i + 1}/{args.n}: exit {r['exit']}, "
              f"{[f['title'] for f in r['findings']] or 'no finding'}, {r['wall']:.0f}s", flush=True)

    alarms, known, migrated = 0, 0, []
    for i in range(args.n):
        r = one_run(None, 2000 + i, args.duration, results / "clean")
        # A triaged finding (the config's known_issues) is reported, not an alarm.
        if r["exit"] != 0 or any(not f.get("known_issue") for f in r["findings"]):
            alarms += 1
        if any(f.get("known_issue") for f in r["findings"]):
            known += 1
        migrated.append(r["delta"].get("pgmigrate_success", 0))
        print(f"clean run {i + 1}/{args.n}: exit {r['exit']}, "
              f"{[f['title'] for f in r['findings']] or 'no finding'}, "
              f"pgmigrate_success {r['delta'].get('pgmigrate_success')}, {r['wall']:.0f}s", flush=True)

    print()
    print(f"planted swapops bug detected: {detected}/{args.n}"
          + (f" (time in workload to the BUG: median {statistics.median(times):.1f}s, max {max(times):.1f}s)"
             if times else ""))
    print(f"clean kernel false alarms:     {alarms}/{args.n}"
          + (f" (pgmigrate_success per run: min {min(migrated)}, median {statistics.median(migrated)})"
             if migrated else ""))
    print(f"clean runs with a known issue:  {known}/{args.n} (reported, not failed)")
    for item in planted_other:
        print(f"  missed planted run {item}")
    return 0 if detected == args.n and alarms == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
