"""The bug zoo: every mutant's header parses and names a workload, every
mutant applies to the installed Debian linux-source (when Debian moves the
version, the test names the patch that no longer applies), header errors
name file:line, and `kstress zoo` journals, resumes and tabulates (with a
stand-in for the runner: the real one boots in tests/test_e2e_zoo.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from linux_source import apply_failure, extract, files_of

from harness.console import Finding
from harness.errors import UsageError
from harness.kernel.build import DEFAULT_SOURCE
from harness.kernel.patches import load_series
from harness.modes import zoo
from harness.modes.mutant import DATA_CORRUPTION, load_zoo, parse_mutant, report_classes, reports_of
from harness.paths import CLEAN_FIX_SERIES, ZOO_DIR
from harness.run.record import FindingRecord, RunRecord, WorkloadRecord
from harness.stress.manifest import load_workloads

MUTANTS = sorted(ZOO_DIR.glob("*.patch"))
WORKLOADS = set(load_workloads())

DIFF = "--- a/mm/x.c\n+++ b/mm/x.c\n@@ -1 +1 @@\n-a\n+b\n"
HEADER = "Zoo-Class: demo\nZoo-Workload: migrate_fork\nZoo-Expect-Class: swapops_bug\n"


def test_the_zoo_has_every_class_the_issue_asks_for():
    classes = {parse_mutant(p).bug_class for p in MUTANTS}
    assert {"migration-lock", "split-lock", "anon-vma-order", "swapcache-refcount", "swapcache-flag"} <= classes
    assert len(classes) >= 8, classes  # and at least three more


@pytest.mark.parametrize("path", MUTANTS, ids=[p.stem for p in MUTANTS])
def test_every_mutant_header_parses_and_names_a_workload(path):
    m = parse_mutant(path)
    assert m.workload in WORKLOADS, f"{path.name}: no workload {m.workload}"
    assert m.expect.cls or m.expect.title or m.expect.file
    assert m.subject and "Against Linux 6.12" in path.read_text()


def test_load_zoo_names_them_all():
    assert sorted(load_zoo(ZOO_DIR, WORKLOADS)) == sorted(p.stem for p in MUTANTS)


@pytest.fixture(scope="module")
def linux_tree(tmp_path_factory) -> Path:
    if not DEFAULT_SOURCE.exists():
        pytest.skip(f"needs the kernel source {DEFAULT_SOURCE} (Debian package linux-source-6.12)")
    tree = tmp_path_factory.mktemp("linux")
    extract(files_of([p for path in MUTANTS for p in load_series(path)]), tree)
    return tree


@pytest.mark.parametrize("path", MUTANTS, ids=[p.stem for p in MUTANTS])
def test_every_mutant_applies_to_the_installed_source(path, linux_tree):
    (patch,) = load_series(path)
    failure = apply_failure(patch, linux_tree, dry_run=True)
    assert failure is None, f"{path.name} no longer applies to {DEFAULT_SOURCE}:\n{failure}"


# -- header errors: file:line and what was expected --------------------------------

def header_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.patch"
    path.write_text(text)
    with pytest.raises(UsageError) as exc:
        parse_mutant(path)
    return str(exc.value)


@pytest.mark.parametrize("text, expected", [
    ("Subject: x\n\n" + HEADER + "Zoo-Workload: vma_churn\n" + DIFF,
     "bad.patch:6: Zoo-Workload given twice (first on line 4)"),
    ("Subject: x\n\n" + HEADER + "Zoo-Expect-Titel: x\n" + DIFF, "bad.patch:6: unknown key Zoo-Expect-Titel"),
    ("Subject: x\n\nZoo-Workload migrate_fork\n" + DIFF, "bad.patch:3: expected 'Zoo-<Key>: <value>'"),
    ("Subject: x\n\nZoo-Class:\n" + DIFF, "bad.patch:3: Zoo-Class has no value"),
    ("Subject: x\n\nZoo-Class: demo\nZoo-Expect-Class: bug\n" + DIFF, "bad.patch:5: missing Zoo-Workload"),
    ("Subject: x\n\nZoo-Class: demo\nZoo-Workload: migrate_fork\n" + DIFF, "bad.patch:5: missing the finding"),
    ("Subject: x\n\nZoo-Class: Demo Bug\nZoo-Workload: w\nZoo-Expect-Class: bug\n" + DIFF,
     "bad.patch:3: Zoo-Class: expected a slug"),
    ("Subject: x\n\n" + HEADER.replace("swapops_bug", "swapops") + DIFF,
     "bad.patch:5: Zoo-Expect-Class: unknown class 'swapops' (expected one of: "),
    ("Subject: x\n\n" + HEADER + "Zoo-Expect-Title: kernel BUG (in\n" + DIFF,
     "bad.patch:6: Zoo-Expect-Title: not a regular expression"),
    ("Subject: x\n\n" + HEADER, "bad.patch: holds no diff"),
])
def test_header_errors_name_the_line(tmp_path, text, expected):
    assert expected in header_error(tmp_path, text)


def test_a_header_after_the_diff_does_not_count(tmp_path):
    assert "missing Zoo-Class" in header_error(tmp_path, "Subject: x\n\n" + DIFF + HEADER)


def test_a_mutant_naming_no_workload_is_refused_with_its_line(tmp_path):
    (tmp_path / "m.patch").write_text("Subject: x\n\n" + HEADER.replace("migrate_fork", "no_such_workload") + DIFF)
    with pytest.raises(UsageError, match=r"m.patch:4: Zoo-Workload: no workload 'no_such_workload' \(available: "):
        load_zoo(tmp_path, WORKLOADS)


def test_classes_include_the_mission_classes_and_data_corruption():
    assert {"swapops_bug", "split_huge_page_bug", "warning", "bug", "bad_page", "hang",
            DATA_CORRUPTION} <= set(report_classes())


# -- reports of a run, and what matches ----------------------------------------------

def record_with(findings=(), workloads=None, stdout="") -> RunRecord:
    r = RunRecord(run_id="r", seed=1, config={})
    for name, w in (workloads or {}).items():
        r.workloads[name] = w
        r.case(name).stdout = stdout
    r.findings = list(findings)
    return r


def finding(cls, title, file=None, stamp="[  130.500000]", informational=False) -> Finding:
    return Finding(cls=cls, type="BUG", title=title, file=file, informational=informational,
                   excerpt=f"{stamp}[  T90] ------------[ cut here ]------------\n")


def wl(seconds, uptime=None, status=0) -> WorkloadRecord:
    return WorkloadRecord(kind="c", argv=["/usr/bin/x"], duration=120, stresses=[], evidence=[],
                          exit_status=status, seconds=seconds, guest_uptime=uptime)


def test_a_report_is_timed_from_the_first_workload_by_its_printk_timestamp():
    rec = record_with([FindingRecord("swapcache_migrate", None, finding("swapops_bug", "kernel BUG in x",
                                                                         "include/linux/swapops.h"))],
                      {"migrate_fork": wl(120.0, 10.0), "swapcache_migrate": wl(3.0, 128.0)})
    (r,) = reports_of(rec)
    assert (r.cls, r.file, r.testcase, r.seconds) == ("swapops_bug", "include/linux/swapops.h",
                                                      "swapcache_migrate", 122.5)
    m = parse_mutant(ZOO_DIR / "swapops-unlock-before-remove-ptes.patch")
    assert m.expect.matches(r)
    assert not parse_mutant(ZOO_DIR / "split-unlocked-in-try-split-folio.patch").expect.matches(r)


def test_without_a_timestamp_the_report_is_timed_at_its_workload_end():
    rec = record_with([FindingRecord("migrate_fork", None, finding("bug", "kernel BUG in y", stamp=""))],
                      {"migrate_fork": wl(7.25, 10.0)})
    assert reports_of(rec)[0].seconds == 7.2


def test_oom_is_no_report_and_known_issues_say_so():
    rec = record_with([FindingRecord("migrate_fork", None, finding("oom", "out of memory", informational=True)),
                       FindingRecord("migrate_fork", "Debian 6.12.117", finding("warning", "WARNING in z"))],
                      {"migrate_fork": wl(30.0, 5.0)})
    (r,) = reports_of(rec)
    assert r.title == "WARNING in z" and r.known_issue == "Debian 6.12.117"


def test_wrong_data_is_a_data_corruption_report():
    line = "swapcache_migrate: faulter 1: data mismatch at offset 0x1234 (page 1): expected byte 0x01, found 0x00"
    rec = record_with([], {"swapcache_migrate": wl(41.0, 9.0, status=1)}, stdout=f"progress\n{line}\n")
    (r,) = reports_of(rec)
    assert (r.cls, r.title, r.file, r.seconds) == (DATA_CORRUPTION, "swapcache_migrate: faulter 1: data mismatch",
                                                   None, 41.0)
    assert r.detail == line
    assert parse_mutant(ZOO_DIR / "swapcache-migrate-drops-dirty.patch").expect.matches(r)
    # Exit 1 without a mismatch (a syscall failure in migrate_fork) is not wrong data; exit 125 never.
    assert reports_of(record_with([], {"x": wl(1.0, status=1)}, stdout="x: mmap failed\n")) == []
    assert reports_of(record_with([], {"x": wl(1.0, status=125)}, stdout=line)) == []


def test_the_mutants_workload_runs_first_and_is_added_when_missing():
    from harness.config import WorkloadChoice as W

    mutants = load_zoo(ZOO_DIR, WORKLOADS)
    default = [W("migrate_fork", 120), W("swapcache_migrate", 90)]
    sc = mutants["swapcache-migrate-drops-dirty"]
    assert zoo.workload_order(default, sc, [sc], None) == [W("swapcache_migrate", 90), W("migrate_fork", 120)]
    assert zoo.workload_order([W("swapcache_migrate", 90)], mutants["swapops-unlock-before-remove-ptes"], [], 20) \
        == [W("migrate_fork", 20), W("swapcache_migrate", 90)]
    # The clean kernel runs the config's workloads and any a chosen mutant adds.
    assert zoo.workload_order([W("swapcache_migrate", 90)], None, list(mutants.values()), None) == \
        [W("swapcache_migrate", 90), W("migrate_fork", None), W("thp_split", None), W("vma_churn", None)]


# -- the mode, with a stand-in for the runner ------------------------------------------

class FakeRunner:
    """Plays a run: its record gets the findings the script gives for its seed."""

    script: dict = {}
    calls: list = []

    def __init__(self, cfg, cache_dir=None, stop_when=None):
        self.cfg, self.stop_when = cfg, stop_when
        self.record = RunRecord(run_id="fake", seed=cfg.seed or 0, config={})
        self.run_dir = cfg.results / "fake"
        self.stopped = None

    def run(self) -> int:
        kind = "smoke" if not self.cfg.workloads else "run"
        patches = self.cfg.patches
        label = Path(patches).stem if patches and Path(patches).suffix == ".patch" else "clean"
        FakeRunner.calls.append((kind, label, self.cfg.seed, [w.name for w in self.cfg.workloads], patches))
        action = self.script.get((kind, label, self.cfg.seed))
        if action == "interrupt":
            raise KeyboardInterrupt("SIGINT")
        if action:
            name = self.cfg.workloads[0].name if self.cfg.workloads else "boot"
            self.record.workloads[name] = wl(50.0, 100.0)
            cls, title, file, known = action
            self.record.findings.append(FindingRecord(name, known, finding(cls, title, file, "[  112.000000]")))
            self.stopped = self.stop_when(self.record) if self.stop_when else None
            return 1
        return 0


@pytest.fixture
def fake_runner(monkeypatch):
    monkeypatch.setattr(zoo, "Runner", FakeRunner)
    FakeRunner.calls = []
    FakeRunner.script = {}
    return FakeRunner


SWAPOPS = ("swapops_bug", "kernel BUG in migration_entry_wait_on_locked", "include/linux/swapops.h", None)


def test_zoo_runs_smoke_then_runs_journals_and_tabulates(fake_runner, tmp_path, capsys):
    fake_runner.script = {("run", "swapops-unlock-before-remove-ptes", 5): SWAPOPS,
                          ("run", "swapops-unlock-before-remove-ptes", 6): SWAPOPS,
                          ("run", "clean", 6): ("warning", "WARNING in deferred_split_folio", "mm/huge_memory.c",
                                                "Debian 6.12.117")}
    code = zoo.run_zoo(None, "swapops-unlock-before-remove-ptes,clean", 2, str(tmp_path), 5, None, None, None)
    assert code == 0
    (zoo_dir,) = tmp_path.iterdir()
    assert [c[:3] for c in fake_runner.calls] == [("smoke", "swapops-unlock-before-remove-ptes", 5),
                                                  ("run", "swapops-unlock-before-remove-ptes", 5),
                                                  ("run", "swapops-unlock-before-remove-ptes", 6),
                                                  ("run", "clean", 5), ("run", "clean", 6)]
    entries = [json.loads(x) for x in (zoo_dir / "journal.jsonl").read_text().splitlines()]
    runs = [e for e in entries if e["kind"] == "run" and e["mutant"] != "clean"]
    assert [(e["detected"], e["seconds"], e["match"]) for e in runs] == [(True, 12.0, SWAPOPS[1])] * 2
    assert all(e["stopped"].startswith("expected report: kernel BUG") for e in runs)
    out = capsys.readouterr().out
    assert out == (zoo_dir / "summary.txt").read_text()
    row = next(ln for ln in out.splitlines() if ln.startswith("swapops-unlock-before-remove-ptes "))
    assert "migration-lock" in row and "2/2" in row and "12.0" in row and SWAPOPS[1] in row
    assert "alarms 0/2" in out and "known 1/2  WARNING in deferred_split_folio (counted apart)" in out
    # The clean kernel is 6.12 with the shipped fix for its known warning, and the table says so.
    assert all(Path(c[4]) == CLEAN_FIX_SERIES for c in fake_runner.calls if c[1] == "clean")
    assert "clean (+fix-deferred-split-6.12)" in out


def test_the_clean_kernels_series_can_be_chosen_or_left_out(fake_runner, tmp_path, capsys):
    zoo.run_zoo(None, "clean", 1, str(tmp_path / "a"), None, None, None, None, clean_patches="none")
    assert fake_runner.calls[-1][4] is None and "clean (unpatched)" in capsys.readouterr().out
    series = MUTANTS[0]
    zoo.run_zoo(None, "clean", 1, str(tmp_path / "b"), None, None, None, None, clean_patches=str(series))
    assert fake_runner.calls[-1][4] == str(series)
    with pytest.raises(UsageError, match="--clean-patches /nonexistent: no such patch or series"):
        zoo.run_zoo(None, "clean", 1, str(tmp_path / "c"), None, None, None, None, clean_patches="/nonexistent")


def test_an_interrupted_zoo_resumes_where_it_stopped(fake_runner, tmp_path, capsys):
    name = "split-unlocked-in-try-split-folio"
    fake_runner.script = {("run", name, 1): ("split_huge_page_bug", "kernel BUG in split_huge_page_to_list_to_order",
                                             "mm/huge_memory.c", None),
                          ("run", name, 2): "interrupt"}
    with pytest.raises(KeyboardInterrupt):
        zoo.run_zoo(None, name, 3, str(tmp_path), None, 30, None, None)
    (zoo_dir,) = tmp_path.iterdir()
    assert f"incomplete: resume with kstress zoo --resume {zoo_dir}" in capsys.readouterr().out
    fake_runner.script = {}
    fake_runner.calls = []
    assert zoo.run_zoo(None, None, None, None, None, None, str(zoo_dir), None) == 1  # runs 2, 3 missed it
    assert [c[:3] for c in fake_runner.calls] == [("run", name, 2), ("run", name, 3)]
    assert fake_runner.calls[0][3][0] == "migrate_fork"
    assert f"{name} " in capsys.readouterr().out.split("\n")[2] and "1/3" in (zoo_dir / "summary.txt").read_text()
    with pytest.raises(UsageError, match="--resume takes its plan"):
        zoo.run_zoo(None, "clean", None, None, None, None, str(zoo_dir), None)
    with pytest.raises(UsageError, match="--runs 2: this zoo has 3 runs per kernel already"):
        zoo.run_zoo(None, None, 2, None, None, None, str(zoo_dir), None)
    fake_runner.calls = []
    assert zoo.run_zoo(None, None, 4, None, None, None, str(zoo_dir), None) == 1  # a fourth run
    assert [c[:3] for c in fake_runner.calls] == [("run", name, 4)]
    assert json.loads((zoo_dir / "plan.json").read_text())["runs"] == 4


def test_a_mutant_that_fails_its_smoke_run_is_not_measured(fake_runner, tmp_path, capsys):
    name = "fork-links-anon-vma-after-copy"
    fake_runner.script = {("smoke", name, 1): ("bug", "kernel BUG in dup_mmap", "kernel/fork.c", None)}
    assert zoo.run_zoo(None, name, 4, str(tmp_path), None, None, None, None) == 125
    assert [c[0] for c in fake_runner.calls] == ["smoke"]
    assert "smoke run failed (exit 1): kernel BUG in dup_mmap" in capsys.readouterr().out


def test_unknown_mutants_and_bad_counts_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="--mutants: no mutant nope in .*available: "):
        zoo.run_zoo(None, "nope", 1, str(tmp_path), None, None, None, None)
    with pytest.raises(UsageError, match="--runs 0"):
        zoo.run_zoo(None, "clean", 0, str(tmp_path), None, None, None, None)
    with pytest.raises(UsageError, match="not a zoo directory"):
        zoo.run_zoo(None, None, None, None, None, None, str(tmp_path), None)


def test_a_torn_journal_line_is_redone(tmp_path):
    j = zoo.Journal(tmp_path / "journal.jsonl")
    j.append({"kind": "run", "mutant": "clean", "run": 0})
    with open(j.path, "a") as f:
        f.write('{"kind": "run", "mut')
    assert j.entries() == [{"kind": "run", "mutant": "clean", "run": 0}]


def test_every_mutant_is_in_the_zoo_readme():
    readme = (ZOO_DIR / "README.md").read_text()
    rows = {line.split("|")[1].strip(" `"): line for line in readme.splitlines() if line.startswith("| `")}
    for path in MUTANTS:
        m = parse_mutant(path)
        assert m.name in rows, f"{m.name} is not in {ZOO_DIR / 'README.md'}"
        assert f"| {m.bug_class} | {m.workload} |" in rows[m.name], rows[m.name]
