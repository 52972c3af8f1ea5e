"""kstress bisect and check: the search, skips, the target, the confidence, the
commit range in kstress's own clone; with a stand-in Runner (the e2e tests
in test_e2e_run.py run real kernels)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from junit_schema import validate

from harness.cli import main
from harness.config import load_config
from harness.console import analyze_file
from harness.console.model import Finding
from harness.errors import CouldNotTest, UsageError
from harness.modes import bisect as bis
from harness.modes.bisect import Bisection, CommitCandidates, SeriesCandidates, Target
from harness.run.record import FindingRecord, GuestEvent, KernelRecord, RunRecord

SERIES = Path(__file__).resolve().parent / "data" / "bisect-series"
CAPTURED = Path(__file__).resolve().parent / "data" / "console-captured"
SWAPOPS = Finding(cls="bug", type="BUG", title="kernel BUG at include/linux/swapops.h:LINE!",
                  file="include/linux/swapops.h")
OTHER = Finding(cls="warning", type="WARNING", title="WARNING in deferred_split_folio", file="mm/huge_memory.c")


class FakeRunner:
    """Hits SWAPOPS when patch 3 of the series is applied (on every run, or on
    seeds in ``hit_seeds``); a series of a length in ``broken`` does not build;
    the deferred-split warning shows on odd seeds and must decide nothing.
    On seeds in ``crash_seeds`` another crash kills the guest first, before
    any target; on seeds in ``other_path_seeds`` the target's BUG_ON is reached
    through another function (``other_path``), as a real kernel does."""

    calls: list = []
    broken: set = set()
    hit_seeds: set | None = None
    crash_seeds: set = set()
    other_path_seeds: set = set()
    other_path: Finding | None = None

    def __init__(self, cfg, cache_dir=None):
        self.cfg = cfg
        self.record = RunRecord(run_id=f"r{len(FakeRunner.calls)}", seed=cfg.seed, config={})
        FakeRunner.calls.append(cfg)

    def applied(self) -> list[str]:
        d = Path(self.cfg.patches) if self.cfg.patches else None
        return (d / "series").read_text().split() if d else []

    def run(self):
        applied = self.applied()
        if len(applied) in FakeRunner.broken:
            self.record.exit_code = 125
            raise CouldNotTest(f"patch {applied[-1]} does not apply: mm/x.c")
        self.record.kernel = KernelRecord("k", "/k", True, "c", {})
        bad = any(p.startswith("0003") for p in applied)
        if self.cfg.seed in FakeRunner.crash_seeds:
            crash = Finding(cls="gpf", type="GPF", title="general protection fault in mix_pool_bytes")
            self.record.findings.append(FindingRecord("migrate_fork", None, crash))
            self.record.guest_events.append(GuestEvent("migrate_fork", "GuestDied", "Kernel panic"))
        elif bad and self.cfg.seed in FakeRunner.other_path_seeds:
            self.record.findings.append(FindingRecord("migrate_fork", None, FakeRunner.other_path))
        elif bad and (FakeRunner.hit_seeds is None or self.cfg.seed in FakeRunner.hit_seeds):
            self.record.findings.append(FindingRecord("migrate_fork", None, SWAPOPS))
        if self.cfg.seed % 2:
            self.record.findings.append(FindingRecord("migrate_fork", "known", OTHER))
        self.record.exit_code = 1 if self.record.findings else 0
        return self.record.exit_code


@pytest.fixture
def fake(monkeypatch):
    FakeRunner.calls, FakeRunner.broken, FakeRunner.hit_seeds = [], set(), None
    FakeRunner.crash_seeds, FakeRunner.other_path_seeds, FakeRunner.other_path = set(), set(), None
    monkeypatch.setattr(bis, "Runner", FakeRunner)
    return FakeRunner


def bisect_series(tmp_path, runs=3, target=None):
    return Bisection(load_config("quick"), SeriesCandidates(SERIES), target, runs,
                     tmp_path / "res", seed=2)


def test_series_bisection_names_the_planted_patch(tmp_path, fake):
    b = bisect_series(tmp_path, target=Target(SWAPOPS.title, SWAPOPS.file))
    assert b.run() == 1
    assert b.labels[b.first_bad] == "03 0003-mm-migrate-unlock-before-remove-migration-ptes.patch"
    verdicts = [(s.index, s.verdict) for s in b.steps]
    assert verdicts == [(4, "bad"), (-1, "good"), (1, "good"), (2, "bad")]
    assert b.bad_rate == 1.0 and b.miss_chance() == 0.0
    data = json.loads((b.dir / "bisect.json").read_text())
    assert data["first_bad"].startswith("03 ") and len(data["steps"]) == 4
    doc = validate(b.dir / "junit.xml")
    assert doc.find(".//testcase[@name='first bad']/failure").get("message").startswith("first bad: 03 ")
    assert "first bad: 03 0003-mm-migrate" in (b.dir / "summary.txt").read_text()


def test_the_first_finding_of_the_bad_end_is_the_target_when_none_is_given(tmp_path, fake):
    b = bisect_series(tmp_path)
    assert b.run() == 1 and b.target.title == SWAPOPS.title and b.labels[b.first_bad].startswith("03")


def test_other_findings_decide_nothing(tmp_path, fake):
    b = bisect_series(tmp_path, target=Target(SWAPOPS.title, SWAPOPS.file))
    b.run()
    good_end = b.steps[1]
    assert good_end.verdict == "good" and "WARNING in deferred_split_folio" in {t for r in good_end.runs
                                                                               for t in r.others}


def test_a_rare_race_gives_a_confidence_below_one(tmp_path, fake):
    fake.hit_seeds = {2, 4}  # two of the bad end's four runs (seeds 2..5) hit
    b = bisect_series(tmp_path, runs=4, target=Target(SWAPOPS.title, SWAPOPS.file))
    assert b.run() == 1 and b.bad_rate == 0.5
    goods = [s for s in b.steps if s.verdict == "good"]
    assert b.miss_chance() == pytest.approx(1 - (1 - 0.5**4) ** len(goods))
    assert "chance a good verdict was a miss" in b.summary()


def test_a_step_that_does_not_build_is_skipped_and_the_search_goes_round_it(tmp_path, fake):
    # Patch 2 breaks the build and patch 3 fixes it (as well as planting the bug):
    # only the step "patches 1..2" cannot be tested.
    fake.broken = {2}
    b = bisect_series(tmp_path, target=Target(SWAPOPS.title, SWAPOPS.file))
    assert b.run() == 1 and b.labels[b.first_bad].startswith("03")
    (skipped,) = [s for s in b.steps if s.verdict == "skip"]
    assert skipped.index == 1 and "does not apply" in skipped.reason
    assert "(patch 0002-mm-mremap-comment.patch does not apply" in b.summary()


def test_when_the_steps_before_the_bad_one_are_skipped_the_answer_says_so(tmp_path, fake):
    fake.broken = {1, 2}
    b = bisect_series(tmp_path, target=Target(SWAPOPS.title, SWAPOPS.file))
    assert b.run() == 1 and b.labels[b.first_bad].startswith("03")
    assert [b.labels[i][:2] for i in b.unresolved] == ["01", "02"]
    assert "or one of the skipped before it: 01 " in b.summary()


def test_a_bad_end_that_does_not_reproduce_could_not_test(tmp_path, fake):
    fake.hit_seeds = set()
    b = bisect_series(tmp_path, target=Target(SWAPOPS.title, SWAPOPS.file))
    with pytest.raises(CouldNotTest, match="did not reproduce kernel BUG at include/linux/swapops.h"):
        b.run()
    assert json.loads((b.dir / "bisect.json").read_text())["steps"][0]["verdict"] == "good"


def test_a_good_end_that_reproduces_is_refused(tmp_path, fake):
    b = bisect_series(tmp_path, target=Target(OTHER.title, OTHER.file))  # shows on odd seeds anywhere
    b.checker.seed = 1
    with pytest.raises(UsageError, match="the good end reproduces WARNING in deferred_split_folio"):
        b.run()


def test_target_matching_by_title_and_file_or_title_only():
    t = Target(SWAPOPS.title, "include/linux/swapops.h")
    assert t.matches(SWAPOPS) and not t.matches(OTHER)
    moved = Finding(cls="bug", type="BUG", title=SWAPOPS.title, file="include/linux/other.h")
    assert not t.matches(moved)
    assert Target(SWAPOPS.title, "include/linux/swapops.h", match=("title",)).matches(moved)
    assert Target(r"^kernel BUG at include/linux/swapops\.h", regex=True).matches(SWAPOPS)


def captured_swapops(name: str) -> Finding:
    (f,) = [f for f in analyze_file(CAPTURED / name) if not f.informational]
    return f


def test_one_bug_on_reached_through_a_fault_or_a_fork_is_one_target_by_its_site():
    # Two real consoles of the planted swapops bug: the BUG_ON at swapops.h:505
    # met in a fault and in a fork. Their titles differ; their site does not.
    fault, fork = captured_swapops("swapops-6.12-fault-1.log"), captured_swapops("swapops-6.12-fork-1.log")
    assert fault.title != fork.title and fault.file == fork.file == "include/linux/swapops.h"
    target = Target.of(fault)
    assert target.site == f"include/linux/swapops.h:{fault.line}" and target.matches(fork)
    assert "or any report at include/linux/swapops.h:" in target.describe()
    assert not Target(fault.title, fault.file, match=("title", "file"), site=target.site).matches(fork)
    elsewhere = Finding(cls=fork.cls, type=fork.type, title=fork.title, file=fork.file, line=fork.line + 1)
    assert not target.matches(elsewhere)  # another BUG_ON of the same header


def test_the_target_reached_through_another_function_is_still_bad(tmp_path, fake):
    # CI saw it: step "patches 1..3" hit the swapops BUG_ON under another title
    # and was judged good, so the bisection named patch 4.
    site = Finding(cls="bug", type="BUG", title="kernel BUG in swap_entry_migration_sync",
                   file="include/linux/swapops.h", line=505)
    fake.hit_seeds = {2}
    fake.other_path_seeds = {3, 4, 5, 6, 7, 8}
    fake.other_path = Finding(cls="bug", type="BUG", title="kernel BUG in migration_entry_wait_on_locked",
                              file="include/linux/swapops.h", line=505)
    b = Bisection(load_config("quick"), SeriesCandidates(SERIES), Target.of(site), 1, tmp_path / "res", seed=3)
    assert b.run() == 1 and b.labels[b.first_bad].startswith("03"), b.summary()
    assert [(s.index, s.verdict) for s in b.steps] == [(4, "bad"), (-1, "good"), (1, "good"), (2, "bad")]


def test_a_run_another_crash_cut_short_is_inconclusive_and_replaced(tmp_path, fake):
    fake.crash_seeds = {2}  # each step's first run: the guest dies of another bug
    b = bisect_series(tmp_path, runs=2, target=Target(SWAPOPS.title, SWAPOPS.file))
    assert b.run() == 1 and b.labels[b.first_bad].startswith("03"), b.summary()
    good_end = b.steps[1]
    assert good_end.verdict == "good" and [r.seed for r in good_end.runs] == [2, 3, 4]
    assert good_end.runs[0].cut_short == "GuestDied during migrate_fork" and good_end.tested == 2
    assert json.loads((b.dir / "bisect.json").read_text())["steps"][1]["runs"][0]["cut_short"]


def test_a_step_every_run_of_which_another_crash_cut_short_is_skipped(tmp_path, fake):
    fake.crash_seeds = {2, 3}
    b = bisect_series(tmp_path, runs=1, target=Target(SWAPOPS.title, SWAPOPS.file))
    with pytest.raises(CouldNotTest, match="did not reproduce"):
        b.run()
    (bad_end,) = b.steps
    assert bad_end.verdict == "skip" and [r.seed for r in bad_end.runs] == [2, 3]
    assert bad_end.reason == "another crash cut every run short (GuestDied during migrate_fork)"


def test_target_from_a_reference_run(tmp_path):
    rec = RunRecord(run_id="x", seed=1, config={})
    rec.findings = [FindingRecord("boot", None, Finding(cls="info", type="OOM", title="oom", informational=True)),
                    FindingRecord("migrate_fork", None, SWAPOPS)]
    (tmp_path / "run.json").write_text(json.dumps(rec.to_dict()))
    assert Target.from_run(tmp_path) == Target(SWAPOPS.title, SWAPOPS.file)
    with pytest.raises(UsageError, match="cannot read its run.json"):
        Target.from_run(tmp_path / "nope")


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    r = tmp_path / "linux"
    r.mkdir()
    git(r, "init", "-q", "-b", "master")
    git(r, "config", "user.email", "t@example.org")
    git(r, "config", "user.name", "t")
    for i in range(4):
        (r / "f.c").write_text(f"int v = {i};\n")
        git(r, "add", "f.c")
        git(r, "commit", "-q", "-m", f"commit {i}")
    git(r, "branch", "side", "HEAD~2")
    return r


def test_commit_range_is_checked_out_in_our_own_clone(repo, tmp_path):
    head = git(repo, "rev-parse", "HEAD")
    c = CommitCandidates(repo, "HEAD~3", "HEAD", tmp_path / "clone")
    assert [label.split(" ", 1)[1] for label in c.labels] == ["commit 1", "commit 2", "commit 3"]
    cfg = c.config(load_config("quick"), 0)
    assert cfg.source == str(tmp_path / "clone") and cfg.ref is None
    assert (tmp_path / "clone" / "f.c").read_text() == "int v = 1;\n"
    c.config(load_config("quick"), -1)
    assert (tmp_path / "clone" / "f.c").read_text() == "int v = 0;\n"
    # The user's checkout is untouched.
    assert git(repo, "rev-parse", "HEAD") == head and (repo / "f.c").read_text() == "int v = 3;\n"
    assert git(repo, "status", "--porcelain") == ""


def test_a_bad_range_is_refused(repo, tmp_path):
    git(repo, "checkout", "-q", "side")
    (repo / "g.c").write_text("x\n")
    git(repo, "add", "g.c")
    git(repo, "commit", "-q", "-m", "side")
    with pytest.raises(UsageError, match="bad range: --good side is not an ancestor of --bad master"):
        CommitCandidates(repo, "side", "master", tmp_path / "clone")
    with pytest.raises(UsageError, match="--good nope: no such commit"):
        CommitCandidates(repo, "nope", "master", tmp_path / "clone")
    with pytest.raises(UsageError, match="not a git repository"):
        CommitCandidates(tmp_path, "a", "b", tmp_path / "clone")


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, fake):
    assert main(["bisect", "quick"]) == 2
    assert "give either --series DIR or --source REPO" in capsys.readouterr().err
    assert main(["bisect", "quick", "--series", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["bisect", "quick", "--series", str(SERIES), "--runs", "0", "--results", str(tmp_path)]) == 2
    assert "--runs 0: expected at least 1" in capsys.readouterr().err
    assert main(["check", "quick", "--file", "mm/x.c"]) == 2
    assert main(["check", "quick", "--title", "t", "--site", "include/linux/swapops.h"]) == 2
    assert "--site include/linux/swapops.h: expected FILE:LINE" in capsys.readouterr().err


def test_check_is_one_step_with_bisect_run_exit_codes(tmp_path, fake, capsys):
    series3 = SeriesCandidates(SERIES).config(load_config("quick"), 2, tmp_path / "s").patches
    assert main(["check", "quick", "--patches", series3, "--runs", "2", "--results", str(tmp_path),
                 "--title", SWAPOPS.title, "--file", SWAPOPS.file]) == 1
    assert "BAD" in capsys.readouterr().out
    series2 = SeriesCandidates(SERIES).config(load_config("quick"), 1, tmp_path / "s").patches
    assert main(["check", "quick", "--patches", series2, "--runs", "2", "--results", str(tmp_path),
                 "--title", SWAPOPS.title, "--file", SWAPOPS.file]) == 0
    fake.broken = {2}
    assert main(["check", "quick", "--patches", series2, "--runs", "2", "--results", str(tmp_path)]) == 125
