"""Zoo mutants: planted-bug patches that say what they break and what must
catch them, and the reports of a run they are matched against.

A mutant is ``zoo/<name>.patch``, a patch against Debian's Linux 6.12 whose
message (before the diff) carries, besides its prose, one header line per key:

    Zoo-Class: migration-lock           the bug's class: a slug, for the table
    Zoo-Workload: migrate_fork          the workload that should catch it (workloads/<name>/)
    Zoo-Expect-Class: swapops_bug       the report's class
    Zoo-Expect-Title: ^kernel BUG in    a regular expression searched in the report's title
    Zoo-Expect-File: include/linux/swapops\\.h   a regular expression the report's file matches whole

Zoo-Class and Zoo-Workload are required, and at least one Zoo-Expect-* key;
a run detects the mutant only with a report that matches every one given.
A report is a console finding (the classes of ``kstress scan``, and ``hang``
for a hang kstress diagnosed), or ``data-corruption``: a workload that
exited 1 (EXIT_KERNEL, the kernel's fault) printing "data mismatch", titled
with that line up to those words ("swapcache_migrate: cycler (chunk 4 ...):
data mismatch"; the whole line is its detail) and with no file. Errors name
the patch and the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness.console.lines import printk_time
from harness.console.reports import SPLIT_HUGE_PAGE_BUG, SWAPOPS_BUG
from harness.console.rules import RULES
from harness.errors import UsageError
from harness.run.record import RunRecord
from harness.run.triage import HANG_CLASS

DATA_CORRUPTION = "data-corruption"
DATA_MISMATCH = "data mismatch"  # what every workload prints when data came back wrong
EXIT_KERNEL = 1  # workloads/lib/kstress.h: the kernel's fault
REQUIRED = ("Zoo-Class", "Zoo-Workload")
EXPECT = ("Zoo-Expect-Class", "Zoo-Expect-Title", "Zoo-Expect-File")
_HEADER = re.compile(r"^(Zoo-[A-Za-z-]*)\s*:(.*)$")
_DIFF_START = re.compile(r"^(?:--- |\+\+\+ |@@ |diff |Index: )")
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]*\Z")


def report_classes() -> list[str]:
    """Every class a report can have."""
    console = {r.cls for r in RULES} | {t.cls for r in RULES for t in r.file_titles if t.cls}
    return sorted(console | {SWAPOPS_BUG, SPLIT_HUGE_PAGE_BUG, HANG_CLASS, DATA_CORRUPTION})


@dataclass(frozen=True)
class Report:
    """One thing a run reported: a console finding or a workload's wrong data."""

    cls: str
    title: str
    file: str | None
    testcase: str
    seconds: float | None  # of stress, from the first workload's start to the report
    known_issue: str | None = None
    detail: str = ""  # a workload's whole report line


@dataclass(frozen=True)
class Expectation:
    cls: str | None
    title: re.Pattern | None
    file: re.Pattern | None

    def matches(self, r: Report) -> bool:
        return ((self.cls is None or r.cls == self.cls)
                and (self.title is None or bool(self.title.search(r.title)))
                and (self.file is None or (r.file is not None and bool(self.file.fullmatch(r.file)))))

    def describe(self) -> str:
        parts = [self.cls or "", f"/{self.title.pattern}/" if self.title else "",
                 f"at {self.file.pattern}" if self.file else ""]
        return " ".join(p for p in parts if p)


@dataclass(frozen=True)
class Mutant:
    name: str  # the patch's file name without .patch
    path: Path
    bug_class: str
    workload: str
    expect: Expectation
    subject: str


def parse_mutant(path: Path) -> Mutant:
    """The mutant in ``path``, its header checked strictly."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it ({exc.strerror})") from None
    values: dict[str, tuple[int, str]] = {}
    subject, diff_line = "", None
    for number, line in enumerate(lines, 1):
        if _DIFF_START.match(line):
            diff_line = number
            break
        if line.startswith("Subject:") and not subject:
            subject = re.sub(r"^\s*(\[[^\]]*\]\s*)+", "", line[len("Subject:"):]).strip()
        if not line.startswith("Zoo-"):
            continue
        m = _HEADER.match(line)
        if not m:
            raise UsageError(f"{path}:{number}: expected 'Zoo-<Key>: <value>', got {line!r}")
        key, value = m.group(1), m.group(2).strip()
        if key not in REQUIRED + EXPECT:
            raise UsageError(f"{path}:{number}: unknown key {key} (expected one of: {', '.join(REQUIRED + EXPECT)})")
        if key in values:
            raise UsageError(f"{path}:{number}: {key} given twice (first on line {values[key][0]})")
        if not value:
            raise UsageError(f"{path}:{number}: {key} has no value")
        values[key] = (number, value)
    if diff_line is None:
        raise UsageError(f"{path}: holds no diff (no '--- a/...' line)")
    for key in REQUIRED:
        if key not in values:
            raise UsageError(f"{path}:{diff_line}: missing {key} before the diff")
    if not any(k in values for k in EXPECT):
        raise UsageError(f"{path}:{diff_line}: missing the finding to expect: one or more of {', '.join(EXPECT)}")
    number, bug_class = values["Zoo-Class"]
    if not _SLUG.match(bug_class):
        raise UsageError(f"{path}:{number}: Zoo-Class: expected a slug such as migration-lock, got {bug_class!r}")
    cls = values.get("Zoo-Expect-Class")
    if cls and cls[1] not in report_classes():
        raise UsageError(f"{path}:{cls[0]}: Zoo-Expect-Class: unknown class {cls[1]!r} "
                         f"(expected one of: {', '.join(report_classes())})")
    return Mutant(name=path.name.removesuffix(".patch"), path=path, bug_class=bug_class,
                  workload=values["Zoo-Workload"][1],
                  expect=Expectation(cls[1] if cls else None, _regex(path, values, "Zoo-Expect-Title"),
                                     _regex(path, values, "Zoo-Expect-File")),
                  subject=subject)


def _regex(path: Path, values: dict[str, tuple[int, str]], key: str) -> re.Pattern | None:
    if key not in values:
        return None
    number, value = values[key]
    try:
        return re.compile(value)
    except re.error as exc:
        raise UsageError(f"{path}:{number}: {key}: not a regular expression: {exc}") from None


def load_zoo(directory: Path, workloads: set[str]) -> dict[str, Mutant]:
    """The mutants of ``directory``/*.patch by name, each naming one of ``workloads``."""
    mutants = {}
    for path in sorted(directory.glob("*.patch")):
        m = parse_mutant(path)
        if m.workload not in workloads:
            number = next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if ln.startswith("Zoo-Workload"))
            raise UsageError(f"{path}:{number}: Zoo-Workload: no workload {m.workload!r} "
                             f"(available: {', '.join(sorted(workloads))})")
        mutants[m.name] = m
    if not mutants:
        raise UsageError(f"{directory} holds no mutants (*.patch)")
    return mutants


# ---------------------------------------------------------------- reports

def reports_of(record: RunRecord) -> list[Report]:
    """What a run reported, console findings first (OOM kills are not reports)."""
    started = _stress_starts(record)
    out = []
    for fr in record.findings:
        f = fr.finding
        if f.informational:
            continue
        seconds = None
        w = record.workloads.get(fr.testcase)
        stamp = printk_time(f.excerpt)
        if w is not None and w.guest_uptime is not None and stamp is not None and stamp >= w.guest_uptime:
            seconds = round(started[fr.testcase] + stamp - w.guest_uptime, 1)
        elif w is not None and w.seconds is not None:
            seconds = round(started[fr.testcase] + w.seconds, 1)  # no timestamps: when the workload ended
        out.append(Report(f.cls, f.title, f.file, fr.testcase, seconds, fr.known_issue))
    cases = {c.name: c for c in record.testcases}
    for name, w in record.workloads.items():
        if w.exit_status != EXIT_KERNEL or name not in cases:
            continue
        line = next((ln.strip() for ln in cases[name].stdout.splitlines() if DATA_MISMATCH in ln), None)
        if line:
            seconds = round(started[name] + w.seconds, 1) if w.seconds is not None else None
            title = line[:line.index(DATA_MISMATCH) + len(DATA_MISMATCH)]
            out.append(Report(DATA_CORRUPTION, title, None, name, seconds, detail=line))
    return out


def _stress_starts(record: RunRecord) -> dict[str, float]:
    """Seconds of stress before each workload began (they run in order)."""
    starts, total = {}, 0.0
    for name, w in record.workloads.items():
        starts[name] = total
        total += w.seconds or 0.0
    return starts
