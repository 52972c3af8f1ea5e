"""Triage: which findings are new, which testcase each belongs to, and which
are known issues.

The console is analysed again after every testcase, and a report can grow
between two analyses (a repeated WARNING or a panic joins its aftermath).
So a finding's identity is where its report starts in console.log and its
signature, never the whole record: the later analysis updates the finding
it already has instead of adding it twice.
"""

from __future__ import annotations

import re

from harness import log
from harness.config import KnownIssue
from harness.console import Finding
from harness.console.signature import signature_of
from harness.run.record import CaseResult, FindingRecord

FindingKey = tuple[int, str]
HANG_CLASS = "hang"  # a hang kstress diagnosed itself (run/hang.py), not the kernel's detectors


def finding_key(f: Finding) -> FindingKey:
    return f.start, f.signature


def known_issue_for(issues: list[KnownIssue], finding: Finding, kernel_version: str | None) -> KnownIssue | None:
    """The first known issue that ``finding`` matches: title regex, exact
    file, and kernel-version regex (the report's own version first)."""
    version = finding.kernel_version or kernel_version or ""
    for k in issues:
        if not re.search(k.title, finding.title or ""):
            continue
        if k.file is not None and finding.file != k.file:
            continue
        if k.kernel is None or re.search(k.kernel, version):
            return k
    return None


def failure_text(f: Finding) -> str:
    """The text of a <failure>: a summary, then the raw console excerpt."""
    lines = [f"{f.title}", f"class: {f.cls}"]
    if f.file:
        lines.append(f"at: {f.file}:{f.line}" if f.line else f"at: {f.file}")
    if f.guilty_function:
        lines.append(f"guilty function: {f.guilty_function}")
    if f.caller:
        lines.append(f"caller: {f.caller}")
    if f.aftermath:
        lines.append("followed by: " + "; ".join(f.aftermath))
    lines.append(f"signature: {f.signature}")
    if f.call_trace:
        lines.append("call trace:")
        lines.extend(f"  {frame}" for frame in f.call_trace)
    lines.append("")
    lines.append(f.excerpt)
    return "\n".join(lines)


class Triage:
    """Findings of one run, each attributed once to the testcase during
    which its report started."""

    def __init__(self, known_issues: list[KnownIssue]):
        self.known_issues = known_issues
        self.kernel_version: str | None = None
        self._records: dict[FindingKey, FindingRecord] = {}

    @property
    def records(self) -> list[FindingRecord]:
        return list(self._records.values())

    def add_hang(self, case: CaseResult, title: str, function: str | None, start: int, text: str) -> None:
        """A hang kstress diagnosed itself (the kernel's own detectors said
        nothing yet): recorded beside the console's findings."""
        f = Finding(cls=HANG_CLASS, type="HANG", title=title, excerpt=text, start=start, end=start,
                    guilty_function=function)
        f.signature = signature_of(f)
        self._records[finding_key(f)] = FindingRecord(case.name, None, f)

    def attribute(self, findings: list[Finding], case: CaseResult, start: int, end: int) -> None:
        """Findings whose report starts in [start, end) of console.log belong
        to ``case``. Informational ones (OOM) are recorded, not failed; known
        issues are reported in full, but the testcase keeps its verdict."""
        for f in findings:
            key = finding_key(f)
            if key in self._records:
                self._records[key].finding = f  # the same report, seen with more of its aftermath
                continue
            if not start <= f.start < end:
                continue
            known = None if f.informational else known_issue_for(self.known_issues, f, self.kernel_version)
            self._records[key] = FindingRecord(case.name, known.reason if known else None, f)
            if f.informational:
                case.informational.append(f.title)
            elif known is not None:
                case.known_issues.append(f"{f.title} ({known.reason})")
                case.append_stdout(f"known issue, not failed: {known.reason}\n{failure_text(f)}")
                log.warn(f"known issue: {f.title} ({known.reason})")
            else:
                case.fail(f.title, failure_text(f), "kernel")
