"""Reports for people: one self-contained HTML file per comparison or soak
(report.html beside its JSON), from plain typed data (model.py) that the
adapters build from compare.json, soak.json or the runs' run.json files."""

from __future__ import annotations

from pathlib import Path

from harness.errors import UsageError
from harness.report.compare import COMPARE_JSON, compare_report
from harness.report.html import REPORT_HTML, render, write_report
from harness.report.model import EvidenceRow, FindingRow, ReportData, RunSpan, TimelineEvent, VerdictRow
from harness.report.soak import SOAK_JSON, runs_in, soak_report, soak_report_from_json, soak_report_from_runs

__all__ = ["EvidenceRow", "FindingRow", "ReportData", "RunSpan", "TimelineEvent", "VerdictRow", "REPORT_HTML",
           "compare_report", "render", "report_data_for", "runs_in", "soak_report", "soak_report_from_json",
           "soak_report_from_runs",
           "write_report", "write_report_for"]


def report_data_for(directory: Path) -> ReportData:
    """A comparison's directory (compare.json), a soak's (soak.json: a shard's or the merge's), or one holding
    runs (run.json files, at any depth)."""
    if not directory.is_dir():
        raise UsageError(f"{directory}: not a directory")
    if (directory / COMPARE_JSON).is_file():
        return compare_report(directory)
    if (directory / SOAK_JSON).is_file():
        return soak_report_from_json(directory)
    return soak_report_from_runs(runs_in(directory), f"kstress runs in {directory.resolve().name}")


def write_report_for(directory: Path) -> Path:
    """(Re)write ``directory``/report.html."""
    return write_report(report_data_for(directory), directory / REPORT_HTML)
