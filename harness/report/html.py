"""The report as one self-contained HTML file: verdicts, the timeline plot,
the findings with their console excerpts and reproducers, and the evidence
per minute. Everything that comes from a console or a config is escaped;
the page loads nothing from anywhere (plotly.js is inline, styles too)."""

from __future__ import annotations

import time
from html import escape
from pathlib import Path

from harness.report.model import EvidenceRow, FindingRow, ReportData, VerdictRow
from harness.report.timeline import timeline_html
from harness.run.junit import xml_safe
from harness.run.record import atomic_write_text

REPORT_HTML = "report.html"
GOOD = {"pass", "stable", "fixed", "no regression", "unchanged"}
BAD = {"fail", "error", "unstable", "regression"}
LISTED = 6  # runs (seeds, kernels) shown before the rest is folded

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; width: 100%; } th, td { border-bottom: 1px solid #ddd; padding: 4px 8px;
  text-align: left; vertical-align: top; } th { background: #f3f3f3; } td.num { text-align: right; }
.verdict { font-weight: 600; padding: 1px 6px; border-radius: 3px; background: #eee; white-space: nowrap; }
.verdict.good { background: #dcedc8; color: #1b5e20; } .verdict.bad { background: #ffcdd2; color: #b71c1c; }
pre { background: #fafafa; border: 1px solid #e0e0e0; padding: 6px; overflow-x: auto; font-size: 12px;
  max-height: 32em; } code { font-size: 12px; word-break: break-all; } .muted { color: #777; }
tr.known td:first-child::after { content: " (known issue)"; color: #777; font-weight: normal; }
"""


def escaped(text: object) -> str:
    """Element text (never an attribute's), escaped, with what a console leaves behind (NULs, escape
    sequences) shown as U+FFFD."""
    return escape(xml_safe(str(text)).replace("\r\n", "\n").replace("\r", "\n"), quote=False)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = int(round(seconds))
    return f"{s // 3600}h {s % 3600 // 60:02d}m {s % 60:02d}s" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


def _verdict_class(verdict: str) -> str:
    return "good" if verdict in GOOD else "bad" if verdict in BAD else ""


def _verdicts(rows: list[VerdictRow]) -> str:
    body = "".join(f'<tr class="verdict-row"><td>{escaped(v.name)}</td>'
                   f'<td><span class="verdict {_verdict_class(v.verdict)}">{escaped(v.verdict)}</span></td>'
                   f"<td>{escaped(v.detail)}</td></tr>\n" for v in rows)
    return f"<table><tr><th>what</th><th>verdict</th><th>detail</th></tr>\n{body}</table>" if rows else \
        '<p class="muted">No verdicts.</p>'


def _listing(items: list) -> str:
    """A list that stays readable after a night of iterations: the first few, the rest folded."""
    text = [escaped(x) for x in items]
    if len(text) <= LISTED:
        return ", ".join(text)
    return (", ".join(text[:LISTED]) + f"<details><summary>and {len(text) - LISTED} more</summary>"
            + ", ".join(text[LISTED:]) + "</details>")


def _finding(i: int, f: FindingRow) -> str:
    known = f'<div class="muted">known issue: {escaped(f.known_issue)}</div>' if f.known_issue else ""
    repro = f"<div>reproduce: <code>{escaped(f.repro)}</code></div>" if f.repro else ""
    excerpt = f"<details><summary>console excerpt</summary><pre>{escaped(f.excerpt)}</pre></details>" \
        if f.excerpt else ""
    return (f'<tr class="finding{" known" if f.known_issue else ""}" id="finding-{i}">'
            f"<td>{escaped(f.title)}</td><td>{escaped(f.file or '–')}</td><td class=num>{f.count}</td>"
            f"<td>{duration(f.first_seen)}</td><td>{duration(f.last_seen)}</td>"
            f"<td>{_listing(f.kernels)}</td><td>{_listing(f.run_ids)}</td>"
            f"<td>{_listing(f.seeds)}</td><td>{known}{repro}{excerpt}</td></tr>\n")


def _findings(rows: list[FindingRow]) -> str:
    if not rows:
        return '<p class="muted">No findings.</p>'
    head = ("<tr><th>finding</th><th>file</th><th>times</th><th>first seen</th><th>last seen</th><th>kernel</th>"
            "<th>runs</th><th>seeds</th><th>details</th></tr>\n")
    return "<table>" + head + "".join(_finding(i, f) for i, f in enumerate(rows)) + "</table>"


def _rate(row: EvidenceRow, name: str) -> str:
    rate = row.per_minute(name)
    return "–" if rate is None else f"{rate:,.0f}"


def _overall(rows: list[EvidenceRow], name: str) -> str:
    """One counter per minute over the runs that read it, and the lowest run's rate: did every run stress?"""
    read = [r for r in rows if r.per_minute(name) is not None]
    if not read:
        return "–"
    rate = sum(r.counters[name] for r in read) / sum(r.minutes for r in read)
    return f"{rate:,.0f} <span class=muted>(lowest {min(r.per_minute(name) for r in read):,.0f})</span>"


def _evidence(rows: list[EvidenceRow]) -> str:
    if not rows:
        return '<p class="muted">No workload ran to the end of a minute with its counters read.</p>'
    columns = list(dict.fromkeys(name for r in rows for name in r.counters))
    head = "".join(f"<th>{escaped(c)} /min</th>" for c in columns)
    groups: dict[tuple[str, str], list[EvidenceRow]] = {}
    for r in rows:
        groups.setdefault((r.workload, r.kernel), []).append(r)
    summary = "".join(f"<tr><td>{escaped(workload)}</td><td>{escaped(kernel)}</td><td class=num>{len(group)}</td>"
                      f"<td class=num>{sum(r.minutes for r in group):.2f}</td>"
                      + "".join(f"<td class=num>{_overall(group, c)}</td>" for c in columns) + "</tr>\n"
                      for (workload, kernel), group in groups.items())
    per_run = "".join(f"<tr><td>{escaped(r.workload)}</td><td>{escaped(r.kernel)}</td><td>{escaped(r.run_id)}</td>"
                      f"<td class=num>{r.minutes:.2f}</td>"
                      + "".join(f"<td class=num>{_rate(r, c)}</td>" for c in columns) + "</tr>\n" for r in rows)
    return (f'<table id="evidence-summary"><tr><th>workload</th><th>kernel</th><th>runs</th><th>minutes</th>{head}'
            f"</tr>\n{summary}</table>\n<details><summary>each run</summary><table><tr><th>workload</th>"
            f"<th>kernel</th><th>run</th><th>minutes</th>{head}</tr>\n{per_run}</table></details>")


def render(data: ReportData) -> str:
    generated = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(data.generated))
    kernels = "".join(f"<li>{escaped(k)}</li>" for k in data.kernels)
    notes = "".join(f'<p class="muted">{escaped(n)}</p>' for n in data.notes)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escaped(data.title)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{escaped(data.title)}</h1>
<p class="muted">generated {generated}; {len(data.runs)} run(s), {len(data.findings)} finding(s)</p>
<section id="kernels"><h2>Kernels</h2><ul>{kernels}</ul></section>
<section id="verdicts"><h2>Verdicts</h2>
{_verdicts(data.verdicts)}
</section>
<section id="timeline-section"><h2>Findings over time</h2>
{timeline_html(data)}
</section>
<section id="findings"><h2>Findings</h2>
{_findings(data.findings)}
</section>
<section id="evidence"><h2>Evidence per minute (/proc/vmstat)</h2>
{_evidence(data.evidence)}
</section>
{notes}
</body>
</html>
"""


def write_report(data: ReportData, path: Path) -> Path:
    atomic_write_text(path, render(data))
    return path
