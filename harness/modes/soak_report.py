"""A soak's results from its journal (or several shards' journals, for
`kstress merge`): soak.json (soak.schema.json, format_version), summary.txt,
junit.xml and report.html (harness/report/, made from soak.json).

Findings are de-duplicated across iterations (and shards) by title and
file, as `kstress compare` matches them: each with its first and last
sighting, how many iterations hit it, every run and seed that did, and the
command that repeats the first (`kstress run --repro <run-dir>`).

JUnit names stay the same from night to night: per kernel and per testcase
of a run (build, boot, each workload) one testcase "iterations" of class
kstress.soak.<kernel>.<testcase> that fails when it failed in any
iteration; per workload one "evidence floor" that fails when an iteration
moved an evidence counter slower than its manifest's floor (the soak is
then "unstable"); one testcase per finding, class kstress.soak.findings.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.errors import EXIT_COULD_NOT_TEST, EXIT_INTERRUPTED, worst_exit
from harness.modes.soak_plan import ROTATION, SoakPlan
from harness.modes.soak_record import Iteration, Occurrence
from harness.report import REPORT_HTML, soak_report_from_json, write_report
from harness.run.junit import junit_xml
from harness.run.record import CaseResult, RunRecord, atomic_write_text
from harness.run.verdict import KERNEL_FAILURES

FORMAT_VERSION = 1
STAGES = ("build", "boot")  # a run's testcases before its workloads


@dataclass
class Shard:
    """One shard's journal, read: its iterations and how long it has run."""

    plan: SoakPlan
    dir: str
    iterations: list[Iteration] = field(default_factory=list)
    elapsed: float = 0.0  # seconds of soak over its sessions
    sessions: int = 0
    status: str = "running"  # running (or killed) | finished | interrupted
    unfinished: list[int] = field(default_factory=list)  # started, never finished: a resume runs them again
    started: float | None = None

    @classmethod
    def of(cls, plan: SoakPlan, directory: Path, entries: list[dict], now: float | None = None) -> Shard:
        shard = cls(plan, str(directory))
        done: dict[int, Iteration] = {}
        started: set[int] = set()
        session_start = last = None
        for e in entries:
            event, t = e.get("event"), e.get("time", 0.0)
            if event == "session":
                if session_start is not None:
                    shard.elapsed += last - session_start
                shard.sessions += 1
                shard.started = shard.started or t
                session_start, shard.status = t, "running"
            elif event == "start":
                started.add(e["index"])
            elif event == "end":
                it = Iteration.from_dict(e["iteration"])
                done.setdefault(it.index, it)
            elif event == "stop":
                shard.status = e["status"]
            last = t
        if session_start is not None:
            end = now if now is not None and shard.status == "running" else last
            shard.elapsed += end - session_start
        shard.iterations = sorted(done.values(), key=lambda it: it.index)
        shard.unfinished = sorted(started - set(done))
        return shard


@dataclass
class Hit:
    index: int
    run_id: str
    run_dir: str
    seed: int
    kernel: str
    testcase: str
    seen: float


@dataclass
class FindingGroup:
    title: str
    file: str | None
    cls: str
    known_issue: str | None
    first_seen: float
    last_seen: float
    excerpt: str  # of the first sighting
    repro: str  # repeats the first sighting's run
    hits: list[Hit] = field(default_factory=list)

    @property
    def iterations(self) -> int:
        return len({h.index for h in self.hits})

    @property
    def name(self) -> str:
        return f"{self.title} [{self.file}]" if self.file else self.title

    def as_dict(self) -> dict:
        return dict(asdict(self), iterations=self.iterations, count=len(self.hits),
                    first_run_id=self.hits[0].run_id)


def group_findings(iterations: list[Iteration]) -> list[FindingGroup]:
    """One group per (title, file), first seen first."""
    groups: dict[tuple[str, str], FindingGroup] = {}
    sightings: list[tuple[Iteration, Occurrence]] = [(it, f) for it in iterations for f in it.findings]
    for it, f in sorted(sightings, key=lambda s: (s[1].seen, s[0].index)):
        g = groups.get(f.key)
        if g is None:
            g = groups[f.key] = FindingGroup(f.title, f.file, f.cls, f.known_issue, f.seen, f.seen, f.excerpt,
                                             it.repro)
        g.last_seen = max(g.last_seen, f.seen)
        g.hits.append(Hit(it.index, it.run_id, it.run_dir, it.seed, it.kernel, f.testcase, f.seen))
    return list(groups.values())


@dataclass
class WorkloadRow:
    """A workload on a kernel across the iterations."""

    kernel: str
    workload: str
    iterations: int = 0
    passed: int = 0
    failed: int = 0  # failure or error
    skipped: int = 0
    below_floor: int = 0
    vmstat_per_minute: dict[str, dict[str, float]] = field(default_factory=dict)  # counter -> min, median, max


def workload_rows(plan: SoakPlan, iterations: list[Iteration]) -> list[WorkloadRow]:
    rows = []
    for kernel in plan.kernels:
        for name in plan.workloads:
            row = WorkloadRow(kernel, name)
            rates: dict[str, list[float]] = {}
            for it in iterations:
                w = it.workloads.get(name)
                if it.kernel != kernel or w is None:
                    continue
                row.iterations += 1
                row.passed += w.status == "passed"
                row.failed += w.status in ("failure", "error")
                row.skipped += w.status == "skipped"
                row.below_floor += bool(w.below_floor)
                for counter, rate in w.vmstat_per_minute.items():
                    rates.setdefault(counter, []).append(rate)
            row.vmstat_per_minute = {c: {"min": min(v), "median": statistics.median(v), "max": max(v)}
                                     for c, v in rates.items()}
            rows.append(row)
    return rows


class SoakReport:
    """soak.json, summary.txt and junit.xml of one soak (one shard, or the merge of several)."""

    def __init__(self, soak_id: str, directory: Path, shards: list[Shard], floors: dict[str, dict]):
        self.soak_id, self.dir, self.shards, self.floors = soak_id, Path(directory), shards, floors
        self.plan = shards[0].plan
        self.iterations = sorted((it for s in shards for it in s.iterations), key=lambda it: it.index)
        self.findings = group_findings(self.iterations)
        self.rows = workload_rows(self.plan, self.iterations)

    @property
    def status(self) -> str:
        states = {s.status for s in self.shards}
        return "interrupted" if "interrupted" in states else "running" if "running" in states else "finished"

    def exit_code(self) -> int:
        """The worst of the iterations' (130 > 1 > 2 > 125 > 0); 130 when interrupted, 125 with none."""
        if self.status == "interrupted":
            return EXIT_INTERRUPTED
        return worst_exit([it.exit for it in self.iterations]) if self.iterations else EXIT_COULD_NOT_TEST

    def unstable(self) -> list[Iteration]:
        """The iterations below an evidence floor."""
        return [it for it in self.iterations if it.below_floor]

    def to_dict(self) -> dict:
        p = self.plan
        return {
            "format_version": FORMAT_VERSION, "soak_id": self.soak_id, "dir": str(self.dir), "status": self.status,
            "exit_code": self.exit_code(), "stable": not self.unstable(),
            "config": p.config, "config_sha256": p.config_sha256, "seed": p.seed, "duration": p.duration,
            "workload_duration": p.workload_duration, "kernels": p.kernels, "workloads": p.workloads,
            "rotation": ROTATION, "updated": round(time.time(), 1),
            "shards": [{"shard": s.plan.shard, "of": s.plan.shards, "dir": s.dir, "status": s.status,
                        "sessions": s.sessions, "started": s.started, "elapsed": round(s.elapsed, 1),
                        "iterations": len(s.iterations), "unfinished": s.unfinished} for s in self.shards],
            "evidence_floors": self.floors,
            "iterations": [it.as_dict() for it in self.iterations],
            "findings": [g.as_dict() for g in self.findings],
            "workload_summary": [asdict(r) for r in self.rows],
        }

    def write(self) -> None:
        atomic_write_text(self.dir / "soak.json", json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")
        atomic_write_text(self.dir / "summary.txt", summary(self))
        atomic_write_text(self.dir / "junit.xml", junit_xml(junit_record(self), suite_name="kstress-soak"))
        write_report(soak_report_from_json(self.dir), self.dir / REPORT_HTML)


# ---------------------------------------------------------------- summary.txt

def _span(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch)) + "Z"


def summary(r: SoakReport) -> str:
    p = r.plan
    shards = ", ".join(f"{s.plan.shard}/{s.plan.shards}" for s in r.shards)
    missing = sorted(set(range(1, p.shards + 1)) - {s.plan.shard for s in r.shards})
    if missing:
        shards += "; without " + ", ".join(f"{i}/{p.shards}" for i in missing)
    lines = [f"kstress soak {r.soak_id}  config {p.config}  seeds from {p.seed}  kernels: {', '.join(p.kernels)}",
             f"  {_span(p.duration)} per shard (shard {shards}); ran "
             + ", ".join(f"{_span(s.elapsed)}" for s in r.shards) + f"; status {r.status}"]
    codes: dict[int, int] = {}
    for it in r.iterations:
        codes[it.exit] = codes.get(it.exit, 0) + 1
    lines.append(f"  iterations: {len(r.iterations)} finished ("
                 + (", ".join(f"exit {c}: {n}" for c, n in sorted(codes.items())) or "none") + ")"
                 + "".join(f"; shard {s.plan.shard}: iteration(s) {s.unfinished} unfinished"
                           for s in r.shards if s.unfinished))
    below = r.unstable()
    lines.append(f"  UNSTABLE: {len(below)} iteration(s) below their evidence floors: "
                 + "; ".join(f"iteration {it.index}: " + ", ".join(
                     f"{n} {s.counter} {s.per_minute:.0f}/min < {s.floor:g}" for n, w in it.workloads.items()
                     for s in w.below_floor) for it in below[:5]) if below else "  stable: no iteration below its "
                 "evidence floors")
    lines.append(f"  {'kernel':<10} {'workload':<20} {'iters':>5} {'passed':>6} {'failed':>6} {'skipped':>7} "
                 f"{'<floor':>6}  evidence per minute (min/median/max)")
    for row in r.rows:
        floored = [c for floors in r.floors.values() for c in floors.get(row.workload, {})]
        shown = [c for c in dict.fromkeys(floored) if c in row.vmstat_per_minute] or \
            list(row.vmstat_per_minute)[:2]  # the counters with floors, else the first two
        rates = "; ".join(f"{c} {v['min']:.0f}/{v['median']:.0f}/{v['max']:.0f}"
                          for c, v in ((c, row.vmstat_per_minute[c]) for c in shown))
        lines.append(f"  {row.kernel:<10} {row.workload:<20} {row.iterations:>5} {row.passed:>6} {row.failed:>6} "
                     f"{row.skipped:>7} {row.below_floor:>6}  {rates or '-'}")
    lines.append(f"findings, de-duplicated by title and file: {len(r.findings)}")
    for g in r.findings:
        verdict = f"known ({g.known_issue})" if g.known_issue else "FAILED"
        lines.append(f"  {g.iterations}x {g.name}: {verdict}")
        lines.append(f"      first {_when(g.first_seen)} (iteration {g.hits[0].index}, seed {g.hits[0].seed}), "
                     f"last {_when(g.last_seen)}")
        lines.append("      runs: " + ", ".join(f"{h.run_id} (seed {h.seed})" for h in g.hits[:10])
                     + (f" and {len(g.hits) - 10} more" if len(g.hits) > 10 else ""))
        lines.append(f"      repro: {g.repro}")
    lines.append(f"exit {r.exit_code()} (the worst of the iterations': 130 > 1 > 2 > 125 > 0); results: {r.dir}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- junit.xml

def junit_record(r: SoakReport) -> RunRecord:
    p = r.plan
    rec = RunRecord(run_id=r.soak_id, seed=p.seed, config={},
                    started=min((s.started for s in r.shards if s.started), default=time.time()))
    for name, value in (("seed", p.seed), ("duration", p.duration), ("iterations", len(r.iterations)),
                        ("stable", not r.unstable()), ("shards", ", ".join(f"{s.plan.shard}/{s.plan.shards}"
                                                                           for s in r.shards))):
        rec.set_property(name, value)
    for kernel in p.kernels:
        mine = [it for it in r.iterations if it.kernel == kernel]
        for name in [*STAGES, *p.workloads]:
            rec.testcases.append(_iterations_case(kernel, name, mine))
        for name in p.workloads:
            rec.testcases.append(_floor_case(kernel, name, mine, r.floors))
    rec.testcases += [_finding_case(g) for g in r.findings]
    return rec


def _iterations_case(kernel: str, name: str, iterations: list[Iteration]) -> CaseResult:
    case = CaseResult("iterations", classname=f"kstress.soak.{kernel}.{name}")
    ran = [(it, it.testcases[name]) for it in iterations
           if name in it.testcases and it.testcases[name].status != "skipped"]
    case.elapsed = sum(d.elapsed for _, d in ran)
    case.stdout = "\n".join(f"iteration {it.index} seed {it.seed} run {it.run_id}: {d.status} {d.elapsed:.1f}s"
                            + (f" {d.message}" if d.message else "") for it, d in ran)
    bad = [(it, d) for it, d in ran if d.status in ("failure", "error")]
    if not ran:
        case.skip(f"not run: no iteration of kernel {kernel} ran it" if iterations else
                  f"not run: no iteration of kernel {kernel} finished")
    elif bad:
        worst = next(((it, d) for it, d in bad if d.failure_type in KERNEL_FAILURES), bad[0])
        message = f"{len(bad)} of {len(ran)} iterations failed; iteration {worst[0].index}: {worst[1].message}"
        text = "\n".join(f"iteration {it.index} seed {it.seed} {d.status}: {d.message}\n  "
                         f"{it.repro}" for it, d in bad)
        if worst[1].status == "failure":
            case.fail(message, text, worst[1].failure_type or "kernel")
        else:
            case.error(message, text)
    return case


def _floor_case(kernel: str, name: str, iterations: list[Iteration], floors: dict[str, dict]) -> CaseResult:
    case = CaseResult("evidence floor", classname=f"kstress.soak.{kernel}.{name}")
    accels = sorted({it.accel for it in iterations if it.accel})
    if not any(name in floors.get(a, {}) for a in accels):
        case.skip(f"no evidence floors for {name} under {', '.join(accels) or 'any accelerator yet'} "
                  f"(workloads/{name}/manifest.yaml evidence_floors)")
        return case
    below = [(it, it.workloads[name]) for it in iterations if name in it.workloads and it.workloads[name].below_floor]
    checked = [it for it in iterations if name in it.workloads and it.workloads[name].vmstat_per_minute]
    mine = {a: floors[a][name] for a in accels if name in floors.get(a, {})}
    case.stdout = f"floors per minute: {mine}; {len(checked)} iteration(s) checked"
    if below:
        text = "\n".join(f"iteration {it.index} seed {it.seed} run {it.run_id}: " + ", ".join(
            f"{s.counter} {s.per_minute:.0f}/min < {s.floor:g}/min" for s in w.below_floor) for it, w in below)
        case.fail(f"unstable: {len(below)} of {len(checked)} iterations below their evidence floors", text,
                  "evidence-floor")
    return case


def _finding_case(g: FindingGroup) -> CaseResult:
    case = CaseResult(g.name, classname="kstress.soak.findings")
    text = (f"{g.iterations} iteration(s), first {_when(g.first_seen)}, last {_when(g.last_seen)}\n"
            + "\n".join(f"iteration {h.index} seed {h.seed} kernel {h.kernel} run {h.run_dir}" for h in g.hits)
            + f"\nrepro: {g.repro}\n\n{g.excerpt}")
    if g.known_issue:
        case.known_issues.append(f"{g.title} ({g.known_issue})")
        case.stdout = f"known issue, not failed: {g.known_issue}\n{text}"
    else:
        case.fail(f"{g.title}: {g.iterations} iteration(s)", text, "kernel")
    return case
