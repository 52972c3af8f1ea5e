"""A soak's report: its iterations' findings over time, evidence, stable or
unstable, and each workload's pass or fail.

The adapter takes one RunDigest per iteration (harness/report/runs.py).
Today they come from the iterations' run.json files (``runs_in``). The
soak.json of `kstress soak` (branch w-soak, modes/soak_record.py Iteration,
as of this writing) maps onto them field by field; its reader builds the
same digests and passes the evidence shortfalls, and nothing else changes:

    soak.json                                  RunDigest / WorkloadResult / Occurrence
    {"soak_id": ...,                           the report's title
     "iterations": [{
        "run_id": "20261128-...",              run_id
        "kernel": "default",                   kernel (with "kernel_version": "6.12.117" appended)
        "seed": 7,                             seed
        "start": 1795862941.6,                 start (epoch seconds)
        "end": 1795863301.2,                   end
        "exit": 0 | 1 | 2 | 125 | 130,         exit_code
        "repro": "kstress run ...",            repro
        "workloads": {"migrate_fork": {        one WorkloadResult each, named by the key
            "status": "passed" | ...,          status (its testcase's)
            "message": "...",                  message
            "seconds": 61.4,                   minutes = seconds / 60
            "vmstat_delta": {"pswpin": 8488},  counters: EVIDENCE_COLUMNS from it (a counter absent is 0:
                                               only counters that moved are kept)
            "below_floor": [{"counter": "pswpout", "per_minute": 10.5, "floor": 100.0}]
                                               -> shortfalls: "<run_id> <workload>: pswpout 10.5/min
                                                  below its floor 100/min"
        }},
        "findings": [{"title": ..., "file": ... | null, "testcase": ..., "known_issue": ... | null,
                      "seen": 1795862955.4,    Occurrence.seconds = seen - start
                      "excerpt": "..."}]       excerpt
     }]}

Verdicts: the soak is unstable when an iteration exited 1 (kernel findings;
known issues do not count) or when a workload's evidence fell below its floor
(the soak's "stable": false), stable when every iteration exited 0 and none
fell short; otherwise the worst exit says (could not test, interrupted). A
workload fails when its testcase failed in any iteration.
"""

from __future__ import annotations

import time
from pathlib import Path

from harness.errors import EXIT_CLEAN, EXIT_FINDINGS, EXIT_INTERRUPTED, EXIT_USAGE, UsageError, worst_exit
from harness.report import runs as R
from harness.report.model import ReportData, VerdictRow

SOAK_VERDICT = {EXIT_CLEAN: "stable", EXIT_FINDINGS: "unstable", EXIT_INTERRUPTED: "interrupted",
                EXIT_USAGE: "could not test"}  # anything else (125): could not test
WORKLOAD_VERDICT = {"failure": "fail", "error": "error", "skipped": "skipped", "passed": "pass"}


def runs_in(directory: Path) -> list[Path]:
    """Every run.json under ``directory`` (itself a run's directory, or one holding many)."""
    paths = sorted(directory.rglob("run.json"))
    if not paths:
        raise UsageError(f"{directory}: no compare.json and no run.json under it")
    return paths


def soak_verdicts(runs: list[R.RunDigest], shortfalls: list[str] | None = None) -> list[VerdictRow]:
    """``shortfalls``: evidence below its floor, one line each (soak.json's below_floor)."""
    codes = [r.exit_code for r in runs if r.exit_code is not None]
    tally = ", ".join(f"{codes.count(c)} exit {c}" for c in sorted(set(codes)))
    unfinished = len(runs) - len(codes)
    detail = f"{len(runs)} iteration(s): {tally or 'none finished'}" + (f", {unfinished} unfinished" if unfinished
                                                                        else "")
    verdict = SOAK_VERDICT.get(worst_exit(codes), "could not test") if codes else "running"
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


def soak_report(title: str, runs: list[R.RunDigest], shortfalls: list[str] | None = None) -> ReportData:
    runs = sorted(runs, key=lambda r: (r.start is None, r.start or 0.0))
    zero = R.origin(runs)
    return ReportData(title=title, generated=time.time(), kernels=list(dict.fromkeys(r.kernel for r in runs)),
                      timeline=R.timeline(runs, zero), runs=R.run_spans(runs, zero), evidence=R.evidence(runs),
                      findings=R.findings(runs, zero), verdicts=soak_verdicts(runs, shortfalls))


def soak_report_from_runs(paths: list[Path], title: str) -> ReportData:
    """One iteration per run.json, each once: a run copied elsewhere (a merge's copy) keeps its run id."""
    digests = {}
    for path in paths:
        run = R.load_digest(path)
        digests.setdefault(run.run_id, run)
    return soak_report(title, list(digests.values()))
