"""A soak's report: its iterations' findings over time, evidence, stable or
unstable, and each workload's pass or fail.

The adapter takes one RunDigest per iteration (harness/report/runs.py):
from a soak's soak.json (modes/soak_report.py; a shard's, or the merge's) or,
for any directory of runs, from the iterations' run.json files
(``runs_in``). soak.json's iterations map onto the digests so:

    soak.json                                  RunDigest / WorkloadResult / Occurrence
    {"soak_id": ...,                           the report's title
     "exit_code": 0 | 1 | 2 | 125 | 130,       the soak's verdict (with the shortfalls below)
     "iterations": [{
        "run_id": "20261128-...",              run_id
        "kernel": "default",                   kernel, with "kernel_version": "6.12.117" appended
        "seed": 7,                             seed
        "start": 1795862941.6, "end": ...,     start, end (epoch seconds)
        "exit": 0 | 1 | 2 | 125 | 130,         exit_code
        "repro": "kstress run --repro ...",    repro
        "workloads": {"migrate_fork": {        one WorkloadResult each, named by the key
            "status": "passed" | ...,          status (its testcase's), "message": message
            "seconds": 61.4,                   minutes = seconds / 60
            "vmstat_delta": {"pswpin": 8488},  counters: EVIDENCE_COLUMNS from it (only counters that
                                               moved are kept: an absent one is 0)
            "below_floor": [{"counter": ..., "per_minute": ..., "floor": ...}]   -> shortfalls
        }},
        "findings": [{"title": ..., "file": ... | null, "testcase": ..., "known_issue": ... | null,
                      "seen": 1795862955.4,    Occurrence.seconds = seen - start
                      "excerpt": "..."}]
     }]}

Verdicts: the soak is unstable when an iteration exited 1 (kernel findings;
known issues do not count) or when a workload's evidence fell below its floor
(soak.json's "stable": false), stable when every iteration exited 0 and none
fell short; otherwise the worst exit says (could not test, interrupted). A
workload fails when its testcase failed in any iteration.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from harness.errors import EXIT_CLEAN, EXIT_FINDINGS, EXIT_INTERRUPTED, EXIT_USAGE, UsageError, worst_exit
from harness.report import runs as R
from harness.report.model import ReportData, VerdictRow

SOAK_JSON = "soak.json"
SOAK_VERDICT = {EXIT_CLEAN: "stable", EXIT_FINDINGS: "unstable", EXIT_INTERRUPTED: "interrupted",
                EXIT_USAGE: "could not test"}  # anything else (125): could not test
WORKLOAD_VERDICT = {"failure": "fail", "error": "error", "skipped": "skipped", "passed": "pass"}


def runs_in(directory: Path) -> list[Path]:
    """Every run.json under ``directory`` (itself a run's directory, or one holding many)."""
    paths = sorted(directory.rglob("run.json"))
    if not paths:
        raise UsageError(f"{directory}: no compare.json, no soak.json and no run.json under it")
    return paths


def soak_verdicts(runs: list[R.RunDigest], shortfalls: list[str] | None = None,
                  exit_code: int | None = None) -> list[VerdictRow]:
    """``shortfalls``: evidence below its floor, one line each (soak.json's below_floor); ``exit_code``:
    the soak's own (soak.json's, which knows an interrupted soak), else the worst iteration's."""
    codes = [r.exit_code for r in runs if r.exit_code is not None]
    tally = ", ".join(f"{codes.count(c)} exit {c}" for c in sorted(set(codes)))
    unfinished = len(runs) - len(codes)
    detail = f"{len(runs)} iteration(s): {tally or 'none finished'}" + (f", {unfinished} unfinished" if unfinished
                                                                        else "")
    if exit_code is None and codes:
        exit_code = worst_exit(codes)
    verdict = SOAK_VERDICT.get(exit_code, "could not test") if exit_code is not None else "running"
    if shortfalls and verdict == "stable":
        verdict = "unstable"
    if shortfalls:
        detail += "; evidence below its floor: " + "; ".join(shortfalls)
    rows = [VerdictRow("soak", verdict, detail)]
    names = list(dict.fromkeys(w.name for r in runs for w in r.workloads))
    for name in names:
        results = [(r, w) for r in runs for w in r.workloads if w.name == name]
        statuses = [w.status for _, w in results]
        worst = next((s for s in ("failure", "error", "passed", "skipped") if s in statuses), "passed")
        bad = [(r, w) for r, w in results if w.status == worst] if worst in ("failure", "error") else []
        detail = f"{len(bad)} of {len(results)} iteration(s): {bad[0][1].message} (first in {bad[0][0].run_id})" \
            if bad else f"{statuses.count('passed')} of {len(results)} iteration(s) passed"
        rows.append(VerdictRow(f"workload {name}", WORKLOAD_VERDICT[worst], detail))
    return rows


def soak_report(title: str, runs: list[R.RunDigest], shortfalls: list[str] | None = None,
                exit_code: int | None = None) -> ReportData:
    runs = sorted(runs, key=lambda r: (r.start is None, r.start or 0.0))
    zero = R.origin(runs)
    return ReportData(title=title, generated=time.time(), kernels=list(dict.fromkeys(r.kernel for r in runs)),
                      timeline=R.timeline(runs, zero), runs=R.run_spans(runs, zero), evidence=R.evidence(runs),
                      findings=R.findings(runs, zero), verdicts=soak_verdicts(runs, shortfalls, exit_code))


def soak_report_from_runs(paths: list[Path], title: str) -> ReportData:
    """One iteration per run.json, each once: a run copied elsewhere (a merge's copy) keeps its run id."""
    digests = {}
    for path in paths:
        run = R.load_digest(path)
        digests.setdefault(run.run_id, run)
    return soak_report(title, list(digests.values()))


def iteration_digest(it: dict[str, Any]) -> R.RunDigest:
    """One iteration of soak.json as the report's digest of a run."""
    kernel = f"{it['kernel']} {it['kernel_version']}" if it.get("kernel_version") else str(it["kernel"])
    workloads = []
    for name, w in it.get("workloads", {}).items():
        delta = w.get("vmstat_delta") or {}
        counters = {col: int(delta.get(counter, 0)) for col, counter in R.EVIDENCE_COLUMNS.items()} if delta else {}
        workloads.append(R.WorkloadResult(name, w.get("status", "passed"), w.get("message", ""),
                                          w["seconds"] / 60 if w.get("seconds") else None, counters))
    findings = [R.Occurrence(f["title"], f.get("file") or "", max(0.0, f["seen"] - it["start"]), f.get("excerpt", ""),
                             f.get("testcase", ""), f.get("known_issue")) for f in it.get("findings", [])]
    return R.RunDigest(it["run_id"], kernel, it["seed"], it["start"], it["end"], it["exit"], it.get("repro", ""),
                       build=kernel, workloads=workloads, findings=findings)


def shortfalls_of(it: dict[str, Any]) -> list[str]:
    return [f"{it['run_id']} {name}: {s['counter']} {s['per_minute']:,.0f}/min below its floor {s['floor']:,.0f}/min"
            for name, w in it.get("workloads", {}).items() for s in w.get("below_floor", [])]


def soak_report_from_json(directory: Path) -> ReportData:
    path = directory / SOAK_JSON
    data = R.load_json(path)
    for key in ("soak_id", "iterations", "exit_code"):
        if key not in data:
            raise UsageError(f"{path}: not a kstress soak.json (no {key!r})")
    try:
        runs = [iteration_digest(it) for it in data["iterations"]]
    except (KeyError, TypeError) as exc:
        raise UsageError(f"{path}: an iteration lacks {exc}") from None
    return soak_report(f"kstress soak {data['soak_id']}", runs,
                       [line for it in data["iterations"] for line in shortfalls_of(it)], data["exit_code"])
