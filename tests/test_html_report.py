"""report.html: the adapters (a comparison's directory, a directory of runs)
on recorded results of real runs (tests/data/report/), the page's escaping
and self-containment, `kstress report`, and the page in a real headless
Chromium: the plot drawn, every finding's row there, no console error, no
request leaving file://."""

import json
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from browser import CHROMIUM, open_page
from run_schema import validate_run_json

from harness.errors import UsageError
from harness.report import (
    REPORT_HTML,
    FindingRow,
    ReportData,
    TimelineEvent,
    VerdictRow,
    compare_report,
    render,
    report_data_for,
    write_report,
)
from harness.report import runs as R
from harness.report.html import escaped
from harness.report.runs import EVIDENCE_COLUMNS, finding_seconds, load_json
from harness.report.soak import soak_verdicts

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "report"
COMPARE = DATA / "compare"
RUNS = DATA / "runs"
SOAK = DATA / "soak"  # a merged soak.json of two shards: 18 iterations of quick, one known issue
NASTY = "</script><script>alert(1)</script> <img src=x onerror=alert(2)> & \x00\x1b[31m"
PLOT_DRAWN = "document.querySelectorAll('#timeline .main-svg .scatterlayer .trace').length > 0"
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (Debian package chromium) to render "
                                                             "report.html headless")


def copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


class Loads(HTMLParser):
    """The URLs a page's elements would load or link (script and style text is not markup)."""

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        self.urls += [v for k, v in attrs if k in ("src", "href", "srcset", "data", "action") and v]


def external(page: str) -> list[str]:
    parser = Loads()
    parser.feed(page)
    return [u for u in parser.urls if u.lower().startswith(("http://", "https://", "//"))]


def test_the_recorded_runs_are_valid_run_json():
    paths = sorted(COMPARE.rglob("run.json")) + sorted(RUNS.rglob("run.json"))  # the soak's are in its soak.json
    assert len(paths) >= 6
    for path in paths:
        validate_run_json(path)


def test_compare_report_carries_compare_json_verdicts_and_run_json_excerpts():
    data = load_json(COMPARE / "compare.json")
    report = compare_report(COMPARE)
    names = [v.name for v in report.verdicts]
    assert names[0] == "comparison" and len(names) == 1 + len(data["verdicts"])
    for v, row in zip(data["verdicts"], report.verdicts[1:]):
        assert row.verdict == v["verdict"] and v["title"] in row.name
    hits = {(t, f) for r in data["runs"] for t, f in r["hits"]}
    assert {(f.title, f.file) for f in report.findings} == hits
    for f in report.findings:
        assert f.excerpt and f.repro.startswith("kstress run ") and f.first_seen is not None
        assert set(f.kernels) <= {"base", "patched"}
    assert len(report.runs) == len(data["runs"]) and not report.notes
    assert {e.workload for e in report.evidence} and all(e.minutes > 0 for e in report.evidence)


def test_compare_report_without_a_run_json_still_lists_its_findings(tmp_path):
    directory = copy(COMPARE, tmp_path)
    run = next(r for r in load_json(directory / "compare.json")["runs"] if r["hits"])
    shutil.rmtree(directory / run["side"] / run["run_id"])
    report = compare_report(directory)
    assert any(run["run_id"] in n and "missing" in n for n in report.notes)
    assert {(f.title, f.file) for f in report.findings} >= {tuple(h) for h in run["hits"]}


def test_runs_report_deduplicates_findings_and_judges_each_workload():
    report = report_data_for(RUNS)
    by_title = {f.title: f for f in report.findings}
    bug = by_title["kernel BUG in page_ref_unfreeze"]
    assert bug.count == 2 and len(bug.run_ids) == 2 and bug.file == "include/linux/page_ref.h"
    assert bug.first_seen < bug.last_seen and "kernel BUG at include/linux/page_ref.h:289!" in bug.excerpt
    assert "--patches" in bug.repro and "--seed 1" in bug.repro
    known = by_title["WARNING in deferred_split_folio"]
    assert known.known_issue and known.count == 1
    assert report.findings[-1] is known  # known issues after what failed
    verdicts = {v.name: v.verdict for v in report.verdicts}
    assert verdicts == {"soak": "unstable", "workload migrate_fork": "pass", "workload swapcache_migrate": "fail",
                        "workload vma_churn": "pass"}
    assert len(report.timeline) == 3 and len(report.runs) == 3
    rates = {(e.workload, e.run_id): e for e in report.evidence}
    swap = rates[("swapcache_migrate", "20261128-052148-197d9c")]
    assert set(swap.counters) == set(EVIDENCE_COLUMNS) and swap.per_minute("swap-outs") > 1000


def test_evidence_is_summed_per_workload_and_kernel_with_the_lowest_run():
    page = render(compare_report(COMPARE))
    summary = page[page.index('<table id="evidence-summary">'):page.index("<details><summary>each run")]
    rows = summary.count("<tr>") - 1
    report = compare_report(COMPARE)
    assert rows == len({(e.workload, e.kernel) for e in report.evidence})
    base = [e for e in report.evidence if e.workload == "swapcache_migrate" and e.kernel == "base"]
    lowest = min(e.per_minute("swap-outs") for e in base)
    assert f"(lowest {lowest:,.0f})" in summary


def test_soak_report_from_soak_json():
    data = load_json(SOAK / "soak.json")
    report = report_data_for(SOAK)
    assert report.title == f"kstress soak {data['soak_id']}"
    assert len(report.runs) == len(data["iterations"]) and report.kernels == ["default 6.12.117"]
    assert {(f.title, f.file) for f in report.findings} == {(f["title"], f["file"] or "") for f in data["findings"]}
    (known,) = report.findings
    assert known.known_issue and known.count == 1 and known.excerpt and known.repro.startswith("kstress run --repro")
    it = next(i for i in data["iterations"] if i["findings"])
    assert known.first_seen == pytest.approx(it["findings"][0]["seen"] - min(i["start"] for i in data["iterations"]))
    assert {v.name: v.verdict for v in report.verdicts} == {"soak": "stable", "workload migrate_fork": "pass"}
    assert len(report.evidence) == len(data["iterations"])
    assert all(e.counters["pages migrated"] > 0 and e.counters["swap-ins"] == 0 for e in report.evidence)


def test_soak_json_below_a_floor_or_interrupted_says_so(tmp_path):
    data = load_json(SOAK / "soak.json")
    data["iterations"][3]["workloads"]["migrate_fork"]["below_floor"] = [
        {"counter": "pgmigrate_success", "per_minute": 12345.6, "floor": 30000.0}]
    (tmp_path / "soak.json").write_text(json.dumps(data))
    soak = report_data_for(tmp_path).verdicts[0]
    assert soak.verdict == "unstable" and "pgmigrate_success 12,346/min below its floor 30,000/min" in soak.detail
    data["exit_code"] = 130
    (tmp_path / "soak.json").write_text(json.dumps(data))
    assert report_data_for(tmp_path).verdicts[0].verdict == "interrupted"
    del data["iterations"][0]["start"]
    (tmp_path / "soak.json").write_text(json.dumps(data))
    with pytest.raises(UsageError, match="soak.json: an iteration lacks 'start'"):
        report_data_for(tmp_path)


def test_a_clean_soak_below_an_evidence_floor_is_unstable():
    clean = [R.load_digest(RUNS / "20261128-052148-197d9c" / "run.json")]
    assert soak_verdicts(clean)[0].verdict == "stable"  # its one finding is a known issue: exit 0
    short = soak_verdicts(clean, ["20261128-052148-197d9c swapcache_migrate: pswpout 10.5/min below its floor 100/min"])
    assert short[0].verdict == "unstable" and "pswpout 10.5/min" in short[0].detail


def test_a_run_copied_twice_below_the_directory_counts_once(tmp_path):
    directory = copy(RUNS, tmp_path)
    shutil.copytree(directory / "20261128-104901-9b3108", directory / "merged" / "20261128-104901-9b3108")
    report = report_data_for(directory)
    assert len(report.runs) == 3 and report.findings[0].count == 2


def test_a_finding_is_placed_inside_the_workload_it_hit():
    for path in RUNS.rglob("run.json"):
        run = json.loads(path.read_text())
        starts, t = {}, 0.0
        for case in run["testcases"]:
            starts[case["name"]] = (t, t + case["elapsed"])
            t += case["elapsed"]
        for f in run["findings"]:
            begin, end = starts[f["testcase"]]
            assert begin <= finding_seconds(run, f) <= end


def nasty_report() -> ReportData:
    report = report_data_for(RUNS)
    report.findings.append(FindingRow(NASTY, "mm/<b>.c", 1, 5.0, 5.0, ["r<1>"], [3], f"[    1.0] {NASTY}\r\n",
                                      "kstress run 'a b' --seed 3"))
    report.timeline.append(TimelineEvent(5.0, NASTY, "r<1>", "k&<>"))
    report.verdicts.append(VerdictRow(NASTY, "fail", NASTY))
    return report


def test_escaped_is_escaped_and_the_page_loads_nothing_from_outside():
    page = render(nasty_report())
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "\x00" not in page and "\x1b" not in page
    assert external(page) == []
    assert external('<a href="https://example.invalid/">x</a><img src="//cdn.invalid/a.png">') == \
        ["https://example.invalid/", "//cdn.invalid/a.png"]  # the check itself sees what it must


def test_a_finding_of_many_runs_folds_all_but_the_first_few():
    runs = [f"run-{i}" for i in range(10)]
    report = ReportData("t", 0.0, ["k"], findings=[FindingRow("BUG", "mm/x.c", 10, 1.0, 9.0, runs, list(range(10)), "",
                                                              "")])
    page = render(report)
    assert "and 4 more</summary>" in page and all(f"run-{i}" in page for i in range(10))


def test_kstress_report_writes_report_html_for_a_comparison_and_for_runs(tmp_path):
    for src in (COMPARE, SOAK, RUNS):
        directory = copy(src, tmp_path)
        res = subprocess.run([sys.executable, "-m", "harness", "report", str(directory)], cwd=REPO,
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == str(directory / REPORT_HTML)
        assert "Findings over time" in (directory / REPORT_HTML).read_text()


def test_kstress_report_of_a_directory_without_runs_is_a_usage_error(tmp_path):
    res = subprocess.run([sys.executable, "-m", "harness", "report", str(tmp_path)], cwd=REPO,
                         capture_output=True, text=True)
    assert res.returncode == 2 and "no compare.json, no soak.json and no run.json" in res.stderr
    assert "Traceback" not in res.stderr


@needs_chromium
@pytest.mark.parametrize("source", ["compare", "soak", "runs", "nasty"])
def test_report_renders_in_headless_chromium(tmp_path, source):
    if source in ("compare", "soak"):
        report = report_data_for(COMPARE if source == "compare" else SOAK)
    else:
        report = nasty_report() if source == "nasty" else report_data_for(RUNS)
    page = write_report(report, tmp_path / REPORT_HTML)
    started = time.monotonic()
    result = open_page(page, PLOT_DRAWN)
    assert result.ready, f"the timeline was not drawn within {time.monotonic() - started:.0f} s"
    assert result.errors() == [], result.console
    assert result.requests and all(u.startswith(("file://", "data:", "blob:")) for u in result.requests), \
        result.requests
    rendered = Loads()
    rendered.feed(result.dom)
    assert not [u for u in rendered.urls if u.startswith(("http://", "https://", "//"))]
    rows = result.dom.count('<tr class="finding')
    assert rows == len(report.findings) > 0
    for i, f in enumerate(report.findings):
        assert f'id="finding-{i}"' in result.dom
        assert escaped(f.title) in result.dom
    assert result.dom.count('class="point"') >= len(report.timeline)  # every finding's mark drawn (runs add theirs)
    if source == "nasty":
        assert "<script>alert" not in result.dom and "&lt;/script&gt;&lt;script&gt;alert(1)" in result.dom

