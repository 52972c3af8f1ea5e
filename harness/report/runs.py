"""Runs as the report sees them: a digest of one run.json (run.schema.json),
and the report's pieces (findings, timeline, run spans, evidence) made from
a list of digests. The compare and soak adapters share these."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.console.lines import printk_time
from harness.errors import UsageError
from harness.report.model import EvidenceRow, FindingRow, RunSpan, TimelineEvent

# The report's evidence columns: what a stress run is for, from /proc/vmstat deltas.
EVIDENCE_COLUMNS = {
    "pages migrated": "pgmigrate_success",
    "THPs migrated": "thp_migration_success",
    "swap-ins": "pswpin",
    "swap-outs": "pswpout",
    "THP splits": "thp_split_page",
}


@dataclass
class Occurrence:
    """One finding in one run."""

    title: str
    file: str
    seconds: float | None  # since the run started; None where nothing places it
    excerpt: str
    testcase: str
    known_issue: str | None = None


@dataclass
class WorkloadResult:
    name: str
    status: str  # the testcase's: passed | failure | error | skipped
    message: str
    minutes: float | None
    counters: dict[str, int] = field(default_factory=dict)  # EVIDENCE_COLUMNS names -> totals


@dataclass
class RunDigest:
    """What a report needs of one run (a soak iteration, one side's run of a comparison)."""

    run_id: str
    kernel: str
    seed: int
    start: float | None  # epoch seconds
    end: float | None
    exit_code: int | None
    repro: str
    build: str = ""  # the kernel as kernel_label() names it, when ``kernel`` is another label (a side)
    workloads: list[WorkloadResult] = field(default_factory=list)
    findings: list[Occurrence] = field(default_factory=list)


def load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"{path}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a JSON object")
    return data


def kernel_label(run: dict[str, Any]) -> str:
    """The kernel as people name it: version, and the patch series when there is one."""
    props = run.get("properties", {})
    label = props.get("kernel_version") or (run.get("kernel") or {}).get("meta", {}).get("kernel_version") or "?"
    name = run.get("config", {}).get("kernel_name")
    if name and name != "default":
        label = f"{name} {label}"
    series = props.get("patch_series")
    return f"{label} + {series}" if series and series != "none" else label


def repro_command(run: dict[str, Any]) -> str:
    """`kstress run` with this run's config, kernel and seed."""
    cfg = run.get("config", {})
    argv = ["kstress", "run", str(cfg.get("path") or "default")]
    for option in ("source", "ref", "patches"):
        if cfg.get(option):
            argv += [f"--{option}", str(cfg[option])]
    if cfg.get("kernel_name") not in (None, "default"):
        argv += ["--variant", str(cfg["kernel_name"])]
    durations = {w.get("duration") for w in run.get("workloads", {}).values()}
    if len(durations) == 1 and None not in durations:  # one --duration gave every workload the same
        argv += ["--duration", str(durations.pop())]
    argv += ["--seed", str(run.get("seed"))]
    return shlex.join(argv)


def _case_starts(run: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Each testcase's (start, elapsed) in seconds since the run started: they run in order."""
    out, t = {}, 0.0
    for case in run.get("testcases", []):
        elapsed = float(case.get("elapsed") or 0.0)
        out.setdefault(case["name"], (t, elapsed))
        t += elapsed
    return out


def finding_seconds(run: dict[str, Any], finding: dict[str, Any]) -> float | None:
    """When a finding showed, in seconds since the run started: its printk time placed in the
    workload it hit (the guest's uptime as the workload started), else the end of its testcase."""
    case = _case_starts(run).get(finding.get("testcase", ""))
    if case is None:
        return None
    start, elapsed = case
    stamp = printk_time(finding.get("excerpt", ""))
    uptime = (run.get("workloads", {}).get(finding["testcase"]) or {}).get("guest_uptime")
    if stamp is not None and uptime is not None and stamp >= uptime:
        return round(start + min(stamp - uptime, elapsed), 1)
    if stamp is not None and finding["testcase"] == "boot":  # uptime 0 is about when QEMU started
        return round(start + min(stamp, elapsed), 1)
    return round(start + elapsed, 1)


def _counters(delta: dict[str, int]) -> dict[str, int]:
    return {name: int(delta[counter]) for name, counter in EVIDENCE_COLUMNS.items() if counter in delta}


def digest(run: dict[str, Any], kernel: str | None = None) -> RunDigest:
    """A run.json's content as the report needs it (``kernel``: a label of the caller's, e.g. a side)."""
    cases = {c["name"]: c for c in run.get("testcases", [])}
    workloads = []
    for name, w in run.get("workloads", {}).items():
        case = cases.get(name, {})
        status = "skipped" if w.get("skipped") else case.get("status", "passed")
        minutes = w["seconds"] / 60 if w.get("seconds") else None
        workloads.append(WorkloadResult(name, status, w.get("skipped") or case.get("message", ""), minutes,
                                        _counters(w.get("vmstat_delta", {}))))
    findings = [Occurrence(f["title"], f.get("file") or "", finding_seconds(run, f), f.get("excerpt", ""),
                           f.get("testcase", ""), f.get("known_issue"))
                for f in run.get("findings", []) if not f.get("informational")]  # OOM kills are not reports
    return RunDigest(run_id=str(run.get("run_id")), kernel=kernel or kernel_label(run), seed=int(run.get("seed", 0)),
                     start=run.get("started"), end=run.get("finished") or run.get("updated"),
                     exit_code=run.get("exit_code"), repro=repro_command(run), build=kernel_label(run),
                     workloads=workloads, findings=findings)


def load_digest(path: Path, kernel: str | None = None) -> RunDigest:
    run = load_json(path)
    for key in ("run_id", "testcases", "workloads", "findings"):
        if key not in run:
            raise UsageError(f"{path}: not a kstress run.json (no {key!r})")
    return digest(run, kernel)


def origin(runs: list[RunDigest]) -> float:
    """The time axis' zero: when the first run started."""
    starts = [r.start for r in runs if r.start is not None]
    return min(starts) if starts else 0.0


def run_spans(runs: list[RunDigest], zero: float) -> list[RunSpan]:
    return [RunSpan(r.run_id, r.kernel, r.seed, r.start - zero, (r.end or r.start) - zero, r.exit_code)
            for r in runs if r.start is not None]


def timeline(runs: list[RunDigest], zero: float) -> list[TimelineEvent]:
    return [TimelineEvent(r.start - zero + f.seconds, f.title, r.run_id, r.kernel, f.known_issue is not None)
            for r in runs if r.start is not None for f in r.findings if f.seconds is not None]


def evidence(runs: list[RunDigest]) -> list[EvidenceRow]:
    return [EvidenceRow(w.name, r.run_id, r.kernel, round(w.minutes, 2), w.counters)
            for r in runs for w in r.workloads if w.minutes]


def findings(runs: list[RunDigest], zero: float) -> list[FindingRow]:
    """Every finding once (by title and file): how often, when first and last, in which runs."""
    rows: dict[tuple[str, str], FindingRow] = {}
    for r in runs:
        for f in r.findings:
            at = r.start - zero + f.seconds if r.start is not None and f.seconds is not None else None
            row = rows.get((f.title, f.file))
            if row is None:
                row = rows[(f.title, f.file)] = FindingRow(f.title, f.file, 0, at, at, [], [], f.excerpt, r.repro,
                                                           known_issue=f.known_issue)
            row.count += 1
            if at is not None:
                row.first_seen = at if row.first_seen is None else min(row.first_seen, at)
                row.last_seen = at if row.last_seen is None else max(row.last_seen, at)
            for seq, value in ((row.run_ids, r.run_id), (row.seeds, r.seed), (row.kernels, r.kernel)):
                if value not in seq:
                    seq.append(value)
    return sorted(rows.values(), key=lambda row: (row.known_issue is not None, -row.count, row.title))
