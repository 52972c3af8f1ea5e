"""A comparison's report, from its directory: compare.json (written by
harness/modes/compare.py: sides, runs, verdicts) for the verdicts, and each
run's run.json (<side>/<run-id>/run.json) for excerpts, times and evidence.
A run whose run.json is gone still counts with what compare.json says of it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.report import runs as R
from harness.report.model import ReportData, VerdictRow

COMPARE_JSON = "compare.json"
OUTCOME = {0: "no regression", 1: "regression", 125: "could not test"}


def _side_runs(directory: Path, data: dict[str, Any], notes: list[str]) -> list[R.RunDigest]:
    out = []
    for r in data["runs"]:
        path = directory / r["side"] / r["run_id"] / "run.json"
        if path.is_file():
            out.append(R.load_digest(path, kernel=r["side"]))
            continue
        notes.append(f"{path.relative_to(directory)} is missing: its findings are listed without excerpt or time")
        out.append(R.RunDigest(r["run_id"], r["side"], r["seed"], None, None, r["exit_code"], repro="",
                               findings=[R.Occurrence(title, file, None, "", "") for title, file in r["hits"]]))
    return sorted(out, key=lambda d: (d.start is None, d.start or 0.0))


def _kernels(data: dict[str, Any], runs: list[R.RunDigest]) -> list[str]:
    out = []
    for side in data["sides"]:
        builds = ", ".join(dict.fromkeys(r.build for r in runs if r.kernel == side["name"] and r.build))
        parts = [f"source {side.get('source') or 'the config’s'}"]
        if side.get("ref"):
            parts.append(f"ref {side['ref']}")
        parts.append(f"patches {side.get('patches') or 'none'}")
        out.append(f"{side['name']}: " + ", ".join(parts) + (f" (built: {builds})" if builds else ""))
    return out


def _verdict_rows(data: dict[str, Any]) -> list[VerdictRow]:
    tested = {}
    for r in data["runs"]:
        tested.setdefault(r["side"], 0)
        tested[r["side"]] += r["exit_code"] in (0, 1)
    seed, rounds = data.get("seed"), data.get("rounds")
    rows = [VerdictRow("comparison", OUTCOME.get(data.get("exit_code"), "incomplete"),
                       f"{rounds} round(s), seeds {seed}..{seed + rounds - 1}; runs that tested: "
                       + ", ".join(f"{side} {n}" for side, n in tested.items()))]
    for v in data["verdicts"]:
        counts = ", ".join(f"{side} {v['hits'][side]}/{v['runs'][side]}" for side in v["hits"])
        need = f"; {v['runs_for_90_power']} runs per side for 90% power" if v.get("runs_for_90_power") else ""
        note = f"; {v['note']}" if v.get("note") else ""
        name = f"{v['title']} [{v['file']}]" if v.get("file") else v["title"]
        rows.append(VerdictRow(name, v["verdict"], f"{counts}, p={v['p_value']:.3g}{need}{note}"))
    return rows


def compare_report(directory: Path) -> ReportData:
    data = R.load_json(directory / COMPARE_JSON)
    for key in ("compare_id", "sides", "runs", "verdicts"):
        if key not in data:
            raise UsageError(f"{directory / COMPARE_JSON}: not a kstress compare.json (no {key!r})")
    notes: list[str] = []
    runs = _side_runs(directory, data, notes)
    zero = R.origin(runs)
    return ReportData(title=f"kstress compare {data['compare_id']}", generated=time.time(),
                      kernels=_kernels(data, runs), timeline=R.timeline(runs, zero),
                      runs=R.run_spans(runs, zero), evidence=R.evidence(runs), findings=R.findings(runs, zero),
                      verdicts=_verdict_rows(data), notes=notes)
