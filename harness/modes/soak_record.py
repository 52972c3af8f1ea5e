"""One soak iteration as the soak keeps it: a digest of its run's record
(testcases, each workload's vmstat evidence per minute against its floors,
what it reported), journaled as one JSON line when the iteration ends, so
soak.json, the summary and junit.xml are made from the journal alone (and
`kstress merge` from several shards' journals)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from harness.modes.mutant import reports_of
from harness.modes.soak_plan import IterationSpec
from harness.run.record import RunRecord
from harness.run.repro import repro_command
from harness.stress.vmstat import below_floors, per_minute

EXCERPT_CHARS = 4000  # of each report's console excerpt


@dataclass
class CaseDigest:
    status: str  # passed | failure | error | skipped
    message: str = ""
    failure_type: str = ""
    elapsed: float = 0.0


@dataclass
class Shortfall:
    counter: str
    per_minute: float
    floor: float


@dataclass
class WorkloadDigest:
    status: str  # its testcase's
    message: str = ""
    seconds: float | None = None  # of stress
    vmstat_delta: dict[str, int] = field(default_factory=dict)  # the counters that moved
    vmstat_per_minute: dict[str, float] = field(default_factory=dict)  # its evidence and floor counters
    below_floor: list[Shortfall] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict) -> WorkloadDigest:
        return cls(**dict(d, below_floor=[Shortfall(**s) for s in d.get("below_floor", [])]))


@dataclass
class Occurrence:
    """One report of one iteration: a console finding or a workload's wrong data."""

    title: str
    file: str | None
    cls: str
    testcase: str
    known_issue: str | None
    seen: float  # epoch seconds: the report's printk time placed in the run, else the iteration's end
    excerpt: str = ""

    @property
    def key(self) -> tuple[str, str]:
        """A finding's identity across iterations, as `kstress compare` has it: title and file."""
        return self.title, self.file or ""


@dataclass
class Iteration:
    index: int
    seed: int
    kernel: str  # the config's name for it: default, or a variant's
    workload_order: list[str]
    shard: int
    run_id: str
    run_dir: str
    start: float
    end: float
    exit: int
    error: str | None = None  # what ended the run early (a build failure, QEMU trouble)
    accel: str | None = None
    kernel_version: str | None = None
    testcases: dict[str, CaseDigest] = field(default_factory=dict)
    workloads: dict[str, WorkloadDigest] = field(default_factory=dict)
    findings: list[Occurrence] = field(default_factory=list)
    repro: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Iteration:
        return cls(**dict({k: v for k, v in d.items() if k in cls.__dataclass_fields__},
                          testcases={k: CaseDigest(**v) for k, v in d["testcases"].items()},
                          workloads={k: WorkloadDigest.from_dict(v) for k, v in d["workloads"].items()},
                          findings=[Occurrence(**f) for f in d["findings"]]))

    @property
    def below_floor(self) -> bool:
        return any(w.below_floor for w in self.workloads.values())

    @property
    def build_failed(self) -> bool:
        case = self.testcases.get("build")
        return case is not None and case.status in ("error", "failure")


def digest(spec: IterationSpec, shard: int, record: RunRecord, run_dir: str, code: int, error: str | None,
           start: float, end: float, floors: dict[str, dict[str, float]]) -> Iteration:
    """``floors``: workload -> counter -> per-minute floor, for the accelerator the run used."""
    it = Iteration(index=spec.index, seed=spec.seed, kernel=spec.kernel, workload_order=list(spec.workloads),
                   shard=shard, run_id=record.run_id, run_dir=run_dir, start=start, end=end, exit=code, error=error,
                   accel=record.guest.accel if record.guest else None,
                   kernel_version=record.properties.get("kernel_version"), repro=repro_command(run_dir))
    for c in record.testcases:
        it.testcases[c.name] = CaseDigest(c.status, c.message, c.failure_type, round(c.elapsed, 2))
    for name, w in record.workloads.items():
        case = it.testcases.get(name, CaseDigest("skipped"))
        mine = floors.get(name, {})
        counters = list(dict.fromkeys([a for e in w.evidence for a in e.split("|")] + list(mine)))
        rates = per_minute(w.vmstat_delta, w.seconds, counters) if w.exit_status == 0 else {}
        it.workloads[name] = WorkloadDigest(
            case.status, case.message, w.seconds, {k: v for k, v in w.vmstat_delta.items() if v},
            rates, [Shortfall(*s) for s in below_floors(rates, mine)])
    it.findings = occurrences(record, start, end)
    return it


def occurrences(record: RunRecord, start: float, end: float) -> list[Occurrence]:
    """The run's reports (not the OOM killer's), each placed in time."""
    excerpts = {(f.finding.title, f.testcase): f.finding.excerpt for f in record.findings}
    stress_start = record.started + sum(c.elapsed for c in record.testcases if c.name in ("build", "boot"))
    out = []
    for r in reports_of(record):
        seen = min(max(stress_start + r.seconds, start), end) if r.seconds is not None else end
        excerpt = excerpts.get((r.title, r.testcase)) or r.detail
        out.append(Occurrence(r.title, r.file, r.cls, r.testcase, r.known_issue, round(seen, 1),
                              excerpt[:EXCERPT_CHARS]))
    return out
