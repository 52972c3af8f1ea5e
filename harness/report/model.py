"""What a report shows, as plain typed data: the adapters (runs.py,
compare.py, soak.py) build it, html.py renders it and knows nothing of
run.json or compare.json."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TimelineEvent:
    """One finding as it showed, placed on the report's time axis."""

    seconds: float  # since the soak's (the comparison's) first run started
    title: str
    run_id: str
    kernel: str
    known_issue: bool = False


@dataclass
class RunSpan:
    """One run (a soak iteration, one side's run of a comparison) on the time axis."""

    run_id: str
    kernel: str
    seed: int
    start: float  # seconds since the first run started
    end: float
    exit_code: int | None


@dataclass
class EvidenceRow:
    """What one workload did in one run: counter totals over ``minutes``; the
    page shows them per minute."""

    workload: str
    run_id: str
    kernel: str
    minutes: float
    counters: dict[str, int] = field(default_factory=dict)  # column name -> total, in column order

    def per_minute(self, name: str) -> float | None:
        if name not in self.counters or self.minutes <= 0:
            return None
        return self.counters[name] / self.minutes


@dataclass
class FindingRow:
    """One finding (title and file), de-duplicated over every run."""

    title: str
    file: str
    count: int  # times it showed, over all runs
    first_seen: float | None  # seconds on the time axis; None where no run.json says
    last_seen: float | None
    run_ids: list[str]
    seeds: list[int]
    excerpt: str
    repro: str  # a shell command that runs its first run again
    kernels: list[str] = field(default_factory=list)
    known_issue: str | None = None  # the known issue's reason: reported, not failed


@dataclass
class VerdictRow:
    name: str
    verdict: str  # regression | fixed | unchanged | inconclusive; stable | unstable | ...; pass | fail | ...
    detail: str = ""


@dataclass
class ReportData:
    title: str
    generated: float  # time.time() when the report was made
    kernels: list[str]  # one line per kernel under test
    timeline: list[TimelineEvent] = field(default_factory=list)
    runs: list[RunSpan] = field(default_factory=list)
    evidence: list[EvidenceRow] = field(default_factory=list)
    findings: list[FindingRow] = field(default_factory=list)
    verdicts: list[VerdictRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the adapter could not read, said plainly
