"""`kstress soak`, `--shard`, `kstress merge` with a stand-in for the Runner
(tests/soak_standin.py; the real one boots in tests/test_e2e_soak.py): the
matrix (kernel and workload rotation, seeds), shards that cover it exactly
once, findings de-duplicated, evidence floors, the journal and --resume
(also after a SIGKILL of a real soak process), merge, the host's room for
--jobs, bad input, and soak.json / junit.xml against their schemas."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import soak_standin
from junit_schema import validate
from run_schema import validate_soak_json
from soak_standin import FakeClock

from harness import log
from harness.config import load_config
from harness.errors import UsageError
from harness.modes import soak as mode
from harness.modes.progress import ProgressLine
from harness.modes.resumable import JOURNAL, Journal
from harness.modes.soak_plan import SoakPlan, parse_duration, parse_shard
from harness.modes.soak_report import Shard, summary

REPO = Path(__file__).resolve().parents[1]
TWO_KERNELS = """\
kernel:
  fragments: [base-x86, mm-stress, debug]
  variants:
    - {name: kasan, fragments: [base-x86, mm-stress, debug, kasan]}
workloads:
  - {name: migrate_fork, duration: 30}
  - {name: thp_split, duration: 20}
  - vma_churn
"""
ONE_KERNEL = """\
workloads:
  - {name: migrate_fork, duration: 30}
  - {name: thp_split, duration: 20}
"""
FLOORS = {"tcg": {"migrate_fork": {"pgmigrate_success": 1000}, "thp_split": {"pgmigrate_success": 1000}}}


def config(tmp_path: Path, text: str = TWO_KERNELS) -> Path:
    path = tmp_path / "soak.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def new_soak(tmp_path: Path, text: str = TWO_KERNELS, duration: int = 1000, seed: int = 7, shard=None,
             jobs: int = 1, clock: FakeClock | None = None, workload_duration=None, results=None) -> mode.Soak:
    soak_dir, plan, cfg = mode.prepare(str(config(tmp_path, text)), duration, 1, shard,
                                       str(results or tmp_path / "results"), None, seed, workload_duration)
    soak = mode.Soak(soak_dir, plan, cfg, None, jobs, runner=soak_standin.StandinRunner, clock=clock or FakeClock())
    soak.floors = FLOORS
    soak.progress.tty = False
    return soak


def resumed(soak_dir: Path, clock: FakeClock, duration=None, jobs: int = 1) -> mode.Soak:
    soak_dir, plan, cfg = mode.prepare(None, duration, jobs, None, None, str(soak_dir), None, None)
    soak = mode.Soak(soak_dir, plan, cfg, None, jobs, runner=soak_standin.StandinRunner, clock=clock)
    soak.floors = FLOORS
    soak.progress.tty = False
    return soak


def ends(soak_dir: Path) -> list[int]:
    return [e["iteration"]["index"] for e in Journal(soak_dir / JOURNAL).entries() if e["event"] == "end"]


# -- durations, shards, the matrix ------------------------------------------------

@pytest.mark.parametrize("text, seconds", [("8h", 28800), ("90m", 5400), ("1800s", 1800), ("1h30m", 5400),
                                           ("45", 45), ("2m5s", 125)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["8x", "", "h", "1.5h", "-3m", "0s", "5m1h"])
def test_bad_durations_are_usage_errors(text):
    with pytest.raises(UsageError, match="expected"):
        parse_duration(text)


def test_shards_parse_and_bad_ones_are_refused():
    assert parse_shard("1/4") == (1, 4) and parse_shard("4/4") == (4, 4)
    for bad in ("3/2", "0/2", "1", "a/b", "1/0"):
        with pytest.raises(UsageError, match=rf"--shard {bad}: expected i/n"):
            parse_shard(bad)


def plan(kernels=("default", "kasan"), workloads=("a", "b", "c"), shard=(1, 1)) -> SoakPlan:
    return SoakPlan("c.yaml", "0" * 64, 100, 3600, list(kernels), list(workloads), *shard)


def test_iterations_rotate_kernels_then_workloads_each_with_its_seed():
    p = plan()
    got = [(s.kernel, "".join(s.workloads), s.seed) for s in map(p.spec, range(7))]
    assert got == [("default", "abc", 100), ("kasan", "abc", 101), ("default", "bca", 102), ("kasan", "bca", 103),
                   ("default", "cab", 104), ("kasan", "cab", 105), ("default", "abc", 106)]
    # K x W consecutive iterations hold every (kernel, rotation) once.
    assert len({(s.kernel, s.workloads) for s in map(p.spec, range(6))}) == 6


@pytest.mark.parametrize("n", [1, 2, 3, 4, 6, 7])
def test_shards_cover_the_matrix_exactly_once(n):
    taken = []
    for i in range(1, n + 1):
        indices = plan(shard=(i, n)).indices()
        taken += [x for x in (next(indices) for _ in range(200)) if x < 120]
    assert sorted(taken) == list(range(120))  # every iteration, none twice
    specs = {plan(shard=(1, n)).spec(i) for i in range(120)}
    assert specs == {plan().spec(i) for i in range(120)}  # shards agree on what each iteration is


# -- the loop ----------------------------------------------------------------------

def test_a_soak_rotates_reboots_and_stops_when_the_time_is_up(tmp_path, capsys):
    runner = soak_standin.reset(clock := FakeClock())
    soak = new_soak(tmp_path, duration=1000, clock=clock, workload_duration=15)
    assert soak.run() == 0
    # 100 s per iteration: ten fit in 1000 s; each is one fresh Runner (one boot).
    assert [c[:2] for c in runner.calls] == [(7 + i, ("default", "kasan")[i % 2]) for i in range(10)]
    assert [c[2] for c in runner.calls[:6]] == [["migrate_fork", "thp_split", "vma_churn"]] * 2 + \
        [["thp_split", "vma_churn", "migrate_fork"]] * 2 + [["vma_churn", "migrate_fork", "thp_split"]] * 2
    assert all(c[3] == [15, 15, 15] for c in runner.calls)  # --workload-duration
    data = validate_soak_json(soak.dir / "soak.json")
    assert [it["index"] for it in data["iterations"]] == list(range(10))
    assert data["status"] == "finished" and data["stable"] and data["exit_code"] == 0
    first = data["iterations"][0]
    assert first["workloads"]["migrate_fork"]["vmstat_per_minute"] == {"pgmigrate_success": 120000.0}
    assert first["end"] - first["start"] == 100 and first["kernel"] == "default" and first["exit"] == 0
    assert first["repro"] == f"kstress run --repro {first['run_dir']}" and Path(first["run_dir"]).parent == \
        soak.dir / "runs"
    summary = (soak.dir / "summary.txt").read_text()
    assert "stable: no iteration below its evidence floors" in summary and "iterations: 10 finished" in summary
    doc = validate(soak.dir / "junit.xml")
    names = [(c.get("classname"), c.get("name")) for c in doc.findall(".//testcase")]
    assert ("kstress.soak.kasan.migrate_fork", "iterations") in names
    assert ("kstress.soak.default.thp_split", "evidence floor") in names
    assert doc.findall(".//failure") == []
    # The progress lines in the log: elapsed, left, iterations, findings.
    assert "soak: 0:16:40 elapsed, 0:00:00 left; 10 iteration(s) done" in capsys.readouterr().err


def test_no_iteration_starts_that_the_time_left_would_not_hold(tmp_path):
    runner = soak_standin.reset(clock := FakeClock())
    new_soak(tmp_path, duration=250, clock=clock).run()
    assert len(runner.calls) == 2  # at 200 s, 50 s are left: less than an iteration's 100 s
    runner = soak_standin.reset(clock := FakeClock())
    new_soak(tmp_path / "short", duration=30, clock=clock).run()
    assert len(runner.calls) == 1  # the first always runs


def test_findings_are_deduplicated_across_iterations(tmp_path):
    warn = ("finding", "thp_split", "WARNING in deferred_split_folio", "mm/huge_memory.c", None)
    known = ("finding", "migrate_fork", "WARNING in known_thing", "mm/migrate.c", "Debian 6.12.117")
    runner = soak_standin.reset(clock := FakeClock(), {8: [warn], 11: [warn, known], 12: [known]})
    soak = new_soak(tmp_path, duration=600, clock=clock)
    assert soak.run() == 1
    data = validate_soak_json(soak.dir / "soak.json")
    assert len(runner.calls) == 6
    groups = {g["title"]: g for g in data["findings"]}
    assert set(groups) == {"WARNING in deferred_split_folio", "WARNING in known_thing"}
    w = groups["WARNING in deferred_split_folio"]
    assert (w["iterations"], w["count"], w["file"], w["known_issue"]) == (2, 2, "mm/huge_memory.c", None)
    assert [(h["index"], h["seed"], h["kernel"], h["testcase"]) for h in w["hits"]] == \
        [(1, 8, "kasan", "thp_split"), (4, 11, "default", "thp_split")]
    by_index = {it["index"]: it for it in data["iterations"]}
    assert w["first_seen"] < w["last_seen"] and by_index[1]["start"] < w["first_seen"] <= by_index[1]["end"]
    assert w["repro"] == f"kstress run --repro {by_index[1]['run_dir']}" and w["first_run_id"] == by_index[1]["run_id"]
    assert "WARNING: CPU: 1 PID: 90 at mm/huge_memory.c" in w["excerpt"]
    assert groups["WARNING in known_thing"]["known_issue"] == "Debian 6.12.117"
    doc = validate(soak.dir / "junit.xml")
    cases = {(c.get("classname"), c.get("name")): c for c in doc.findall(".//testcase")}
    finding = cases[("kstress.soak.findings", "WARNING in deferred_split_folio [mm/huge_memory.c]")]
    assert finding.find("failure").get("message") == "WARNING in deferred_split_folio: 2 iteration(s)"
    assert by_index[1]["run_dir"] in finding.find("failure").text
    assert cases[("kstress.soak.findings", "WARNING in known_thing [mm/migrate.c]")].find("failure") is None
    failed = cases[("kstress.soak.kasan.thp_split", "iterations")].find("failure")
    assert failed.get("message").startswith("1 of 3 iterations failed; iteration 1: WARNING in deferred_split_folio")
    summary = (soak.dir / "summary.txt").read_text()
    assert "2x WARNING in deferred_split_folio [mm/huge_memory.c]: FAILED" in summary
    assert f"repro: kstress run --repro {by_index[1]['run_dir']}" in summary
    assert "known (Debian 6.12.117)" in summary


def test_an_iteration_below_its_evidence_floors_makes_the_soak_unstable(tmp_path):
    soak_standin.reset(clock := FakeClock(), {9: [("slow", "thp_split")]})
    soak = new_soak(tmp_path, text=ONE_KERNEL, duration=400, clock=clock)
    assert soak.run() == 0  # the exit codes stay kstress run's; unstable is said in summary and junit
    data = validate_soak_json(soak.dir / "soak.json")
    assert not data["stable"]
    below = data["iterations"][2]["workloads"]["thp_split"]["below_floor"]
    assert below == [{"counter": "pgmigrate_success", "per_minute": 200.0, "floor": 1000}]
    assert "UNSTABLE: 1 iteration(s) below their evidence floors: iteration 2: thp_split pgmigrate_success " \
           "200/min < 1000" in (soak.dir / "summary.txt").read_text()
    doc = validate(soak.dir / "junit.xml")
    floor = next(c for c in doc.findall(".//testcase")
                 if (c.get("classname"), c.get("name")) == ("kstress.soak.default.thp_split", "evidence floor"))
    assert floor.find("failure").get("message") == "unstable: 1 of 4 iterations below their evidence floors"
    assert floor.find("failure").get("type") == "evidence-floor"


def test_a_workload_without_floors_for_the_accelerator_says_so(tmp_path):
    soak_standin.reset(clock := FakeClock())
    soak = new_soak(tmp_path, text=ONE_KERNEL, duration=100, clock=clock)
    soak.floors = {"kvm": FLOORS["tcg"]}
    soak.run()
    doc = validate(soak.dir / "junit.xml")
    skipped = [c for c in doc.findall(".//testcase") if c.get("name") == "evidence floor"]
    assert [c.find("skipped").get("message") for c in skipped] == [
        f"no evidence floors for {w} under tcg (workloads/{w}/manifest.yaml evidence_floors)"
        for w in ("migrate_fork", "thp_split")]


def test_a_kernel_that_does_not_build_is_left_out_for_the_session(tmp_path):
    runner = soak_standin.reset(clock := FakeClock(), {8: [("build-fails",)]})
    soak = new_soak(tmp_path, duration=500, clock=clock)
    assert soak.run() == 125
    assert [c[1] for c in runner.calls] == ["default", "kasan", "default", "default", "default"]
    data = validate_soak_json(soak.dir / "soak.json")
    assert data["iterations"][1]["error"] == "kernel build failed: mm/x.c:1: error"
    assert [it["index"] for it in data["iterations"]] == [0, 1, 2, 4, 6]


def test_parallel_guests_take_distinct_iterations(tmp_path):
    runner = soak_standin.reset(clock := FakeClock())
    runner.sleep = 0.05
    soak = new_soak(tmp_path, duration=1000, clock=clock, jobs=3)
    assert soak.run() == 0
    seeds = [c[0] for c in runner.calls]
    assert len(seeds) == len(set(seeds)) >= 8
    assert sorted(ends(soak.dir)) == list(range(len(seeds)))  # each journaled once


# -- journal, interrupt, resume --------------------------------------------------------

def test_an_interrupted_soak_resumes_and_redoes_only_what_never_finished(tmp_path):
    runner = soak_standin.reset(clock := FakeClock(), {10: [("interrupt",)]})
    soak = new_soak(tmp_path, duration=800, clock=clock)
    with pytest.raises(KeyboardInterrupt):
        soak.run()
    data = validate_soak_json(soak.dir / "soak.json")
    assert (data["status"], data["exit_code"]) == ("interrupted", 130)
    assert data["shards"][0]["unfinished"] == [3] and ends(soak.dir) == [0, 1, 2]
    runner.script, runner.calls = {}, []
    again = resumed(soak.dir, clock)
    assert again.run() == 0
    # 400 s were spent (the interrupted iteration's too): four more fit in 800 s, iteration 3 first.
    assert [c[0] for c in runner.calls] == [10, 11, 12, 13]
    assert ends(soak.dir) == list(range(7))
    data = validate_soak_json(soak.dir / "soak.json")
    assert data["shards"][0]["sessions"] == 2 and data["shards"][0]["unfinished"] == []
    assert data["status"] == "finished" and data["shards"][0]["elapsed"] == 800.0
    # A finished soak resumed has nothing left to run; --duration lengthens it.
    runner.calls = []
    assert resumed(soak.dir, clock).run() == 0 and runner.calls == []
    assert resumed(soak.dir, clock, duration=1000).run() == 0 and len(runner.calls) == 2
    with pytest.raises(UsageError, match="--duration 10s: this soak has 1000s already"):
        resumed(soak.dir, clock, duration=10)


def test_a_resumed_soaks_progress_counts_the_earlier_findings_from_the_start(tmp_path):
    warn = ("finding", "thp_split", "WARNING in deferred_split_folio", "mm/huge_memory.c", None)
    soak_standin.reset(clock := FakeClock(), {8: [warn]})
    soak = new_soak(tmp_path, duration=300, clock=clock)
    soak.run()
    again = resumed(soak.dir, clock, duration=600)
    assert again.progress_text().endswith("3 iteration(s) done, 0 running; 1 finding(s), 1 not known issues")


def test_resume_refuses_other_options_a_changed_config_and_non_soak_directories(tmp_path):
    soak_standin.reset(clock := FakeClock())
    soak = new_soak(tmp_path, duration=100, clock=clock)
    soak.run()
    with pytest.raises(UsageError, match="--resume takes its plan from the soak directory"):
        mode.prepare(None, None, 1, None, None, str(soak.dir), 5, None)
    with pytest.raises(UsageError, match=r"--resume .*: no plan.json there \(not a soak directory\)"):
        mode.prepare(None, None, 1, None, None, str(tmp_path), None, None)
    (soak.dir / "plan.json").write_text('{"mutants": []}')
    with pytest.raises(UsageError, match=r"plan.json: not a soak plan"):
        mode.prepare(None, None, 1, None, None, str(soak.dir), None, None)
    other = new_soak(tmp_path / "b", duration=100, clock=clock)
    config(tmp_path / "b", ONE_KERNEL)  # the config changed under the soak
    with pytest.raises(UsageError, match="changed since the soak began"):
        mode.prepare(None, None, 1, None, None, str(other.dir), None, None)


CHILD = """\
import sys
sys.path[:0] = [{repo!r}, {tests!r}]
import soak_standin
from harness import cli
from harness.modes import soak
runner = soak_standin.reset()
runner.sleep, runner.calls_file = 0.3, {calls!r}
soak.Runner = runner
soak.load_workloads = lambda: {{}}
soak.check_jobs = lambda *args: None  # a test of threads, not of this host's room
sys.exit(cli.main(sys.argv[1:]))
"""


def soak_process(tmp_path: Path, *args: str) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(repo=str(REPO), tests=str(REPO / "tests"), calls=str(tmp_path / "calls.jsonl")))
    return subprocess.Popen([sys.executable, str(script), *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_a_sigkilled_soak_loses_nothing_finished_and_runs_nothing_twice(tmp_path):
    cfg = config(tmp_path, ONE_KERNEL)
    proc = soak_process(tmp_path, "soak", str(cfg), "--duration", "4s", "--seed", "20",
                        "--results", str(tmp_path / "results"))
    deadline = time.monotonic() + 60
    soak_dir = None
    while time.monotonic() < deadline:
        dirs = list((tmp_path / "results").glob("soak-*"))
        if dirs and len(ends(soak_dir := dirs[0])) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    finished = ends(soak_dir)
    assert len(finished) >= 3
    calls = [json.loads(x) for x in (tmp_path / "calls.jsonl").read_text().splitlines()]
    started = [c["seed"] - 20 for c in calls if c["event"] == "start"]
    # soak.json is rewritten after each iteration's journal line: the kill may fall between the two.
    shown = [it["index"] for it in json.loads((soak_dir / "soak.json").read_text())["iterations"]]
    assert shown in (finished, finished[:-1])
    (tmp_path / "calls.jsonl").unlink()

    res = soak_process(tmp_path, "soak", "--resume", str(soak_dir))
    out, err = res.communicate(timeout=120)
    assert res.returncode == 0, err
    again = [json.loads(x)["seed"] - 20 for x in (tmp_path / "calls.jsonl").read_text().splitlines()
             if json.loads(x)["event"] == "start"]
    assert not set(again) & set(finished)  # nothing finished runs again
    unfinished = sorted(set(started) - set(finished))
    assert again[:len(unfinished)] == unfinished  # what was under way when killed runs first
    all_ends = ends(soak_dir)
    assert sorted(all_ends) == list(range(len(all_ends))) and len(all_ends) == len(set(all_ends))
    data = validate_soak_json(soak_dir / "soak.json")
    assert data["shards"][0]["sessions"] == 2 and data["status"] == "finished"
    assert out == (soak_dir / "summary.txt").read_text()
    assert data["shards"][0]["elapsed"] < 4 + 1  # the killed session's time counts towards the 4 s


def test_ctrl_c_stops_every_guest_thread_and_keeps_what_finished(tmp_path):
    cfg = config(tmp_path, ONE_KERNEL)
    proc = soak_process(tmp_path, "soak", str(cfg), "--duration", "1h", "--jobs", "2", "--seed", "1",
                        "--results", str(tmp_path / "results"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        dirs = list((tmp_path / "results").glob("soak-*"))
        events = [e["event"] for e in Journal(dirs[0] / JOURNAL).entries()] if dirs else []
        if events.count("end") >= 2 and events.count("start") - events.count("end") == 2:
            break  # two finished, two under way
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    calls = [json.loads(x) for x in (tmp_path / "calls.jsonl").read_text().splitlines()]
    interrupted = [c["seed"] for c in calls if c["event"] == "interrupted"]
    finished = {c["seed"] for c in calls if c["event"] == "end"}
    # Each guest's run under way stopped as by Ctrl-C (one may have just finished its own).
    assert interrupted and not set(interrupted) & finished
    assert {c["seed"] for c in calls if c["event"] == "start"} == finished | set(interrupted)
    data = validate_soak_json(dirs[0] / "soak.json")
    assert (data["status"], data["exit_code"]) == ("interrupted", 130)
    assert {it["seed"] for it in data["iterations"]} == finished
    assert sorted(s - 1 for s in interrupted) == data["shards"][0]["unfinished"]
    assert "kstress: interrupted (SIGINT); results kept" in err and out == (dirs[0] / "summary.txt").read_text()


# -- shards and merge -------------------------------------------------------------------

def test_merge_joins_shards_and_deduplicates_across_them(tmp_path, capsys):
    warn = ("finding", "migrate_fork", "WARNING in folio_x", "mm/x.c", None)
    soak_standin.reset(clock := FakeClock(), {5: [warn], 6: [warn], 8: [warn]})
    shards = [new_soak(tmp_path, duration=400, seed=5, shard=(i, 2), clock=clock) for i in (1, 2)]
    codes = [s.run() for s in shards]
    assert codes == [1, 1]
    assert ends(shards[0].dir) == [0, 2, 4, 6] and ends(shards[1].dir) == [1, 3, 5, 7]
    report = mode.merge_soaks([str(s.dir) for s in reversed(shards)], str(tmp_path / "merged"))
    assert report.exit_code() == 1
    data = validate_soak_json(tmp_path / "merged" / "soak.json")
    assert [it["index"] for it in data["iterations"]] == list(range(8))
    assert [it["seed"] for it in data["iterations"]] == list(range(5, 13))
    (group,) = data["findings"]
    assert [(h["index"], h["seed"]) for h in group["hits"]] == [(0, 5), (1, 6), (3, 8)]
    assert [s["shard"] for s in data["shards"]] == [1, 2]
    validate(tmp_path / "merged" / "junit.xml")
    assert "3x WARNING in folio_x [mm/x.c]: FAILED" in (tmp_path / "merged" / "summary.txt").read_text()
    page = (tmp_path / "merged" / "report.html").read_text()  # report.html beside soak.json, from it
    assert page.count('<tr class="finding"') == 1 and ">unstable<" in page
    partial = mode.merge_soaks([str(shards[1].dir)], None)  # one shard alone: said, not hidden
    assert "(shard 2/2; without 1/2)" in summary(partial) and partial.dir.name.startswith("soak-merged-")


def test_merge_refuses_what_is_not_shards_of_one_soak(tmp_path):
    soak_standin.reset(clock := FakeClock())
    a = new_soak(tmp_path, duration=100, seed=5, shard=(1, 2), clock=clock)
    b = new_soak(tmp_path, duration=100, seed=6, shard=(2, 2), clock=clock)
    c = new_soak(tmp_path, duration=100, seed=5, shard=(1, 2), clock=clock)
    with pytest.raises(UsageError, match=r"is not a shard of the soak of .*: seed differs \(5 and 6\)"):
        mode.merge_soaks([str(a.dir), str(b.dir)], None)
    with pytest.raises(UsageError, match=r"is shard 1/2 again"):
        mode.merge_soaks([str(a.dir), str(c.dir)], None)
    with pytest.raises(UsageError, match=r"merge .*: no plan.json there \(not a soak directory\)"):
        mode.merge_soaks([str(tmp_path)], None)


def test_shards_need_a_seed(tmp_path):
    with pytest.raises(UsageError, match="--shard needs --seed"):
        mode.prepare(str(config(tmp_path)), 60, 1, (1, 2), str(tmp_path), None, None, None)


# -- junit names from night to night ------------------------------------------------------

def junit_names(soak: mode.Soak) -> list[tuple[str, str]]:
    doc = validate(soak.dir / "junit.xml")
    return [(c.get("classname"), c.get("name")) for c in doc.findall(".//testcase")
            if c.get("classname") != "kstress.soak.findings"]


def test_junit_names_stay_the_same_from_night_to_night(tmp_path):
    soak_standin.reset(clock := FakeClock(), {3: [("finding", "vma_churn", "BUG: x", "mm/y.c", None)]})
    one = new_soak(tmp_path / "1", duration=300, seed=1, clock=clock)
    one.run()
    soak_standin.reset(clock, {})
    two = new_soak(tmp_path / "2", duration=700, seed=99, clock=clock)
    two.run()
    assert junit_names(one) == junit_names(two)
    assert junit_names(one)[:3] == [("kstress.soak.default.build", "iterations"),
                                    ("kstress.soak.default.boot", "iterations"),
                                    ("kstress.soak.default.migrate_fork", "iterations")]


# -- the host's room, bad input on the command line ------------------------------------------

def test_jobs_are_refused_above_what_the_host_holds(tmp_path):
    cfg = load_config(config(tmp_path))  # 2 vCPUs, 2048 MiB
    assert mode.host_capacity(cfg, cores=8, available_mb=8000) == (
        3, "8 cores / 2 vCPUs per guest = 4; 8000 MiB available / 2304 MiB per guest = 3")
    mode.check_jobs(3, cfg, cores=8, available_mb=8000)
    with pytest.raises(UsageError, match=r"--jobs 2: this host runs at most 1 guest\(s\) of soak.yaml at once "
                                         r"\(2 cores / 2 vCPUs per guest = 1; "):
        mode.check_jobs(2, cfg, cores=2, available_mb=64000)
    mode.check_jobs(1, cfg, cores=1, available_mb=100)  # one guest is what `kstress run` does: never refused
    with pytest.raises(UsageError, match="--jobs 0: expected at least 1"):
        mode.check_jobs(0, cfg)


def kstress(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO, capture_output=True, text=True)


@pytest.mark.parametrize("args, message", [
    (["soak", "{empty}", "--duration", "1m"], "no workloads: a soak runs the config's workloads"),
    (["soak", "{cfg}", "--duration", "1m", "--shard", "3/2", "--seed", "1"], "--shard 3/2: expected i/n"),
    (["soak", "{cfg}", "--duration", "8x"], "--duration 8x: expected a duration such as 8h"),
    (["soak", "--resume", "{tmp}"], "no plan.json there (not a soak directory)"),
    (["soak", "{cfg}"], "--duration is required"),
    (["merge", "{tmp}"], "no plan.json there (not a soak directory)"),
    (["run", "--repro", "{tmp}"], "no run.json there"),
    (["run", "--repro", "{tmp}", "--seed", "3"], "--repro takes everything from the run's run.json: give no seed"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    empty = tmp_path / "empty.yaml"
    empty.write_text("guest: {cpus: 2}\n")
    values = {"empty": str(empty), "cfg": str(config(tmp_path)), "tmp": str(tmp_path)}
    res = kstress(*[a.format(**values) for a in args])
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not list(tmp_path.glob("**/soak-*"))  # no directory made for a refused soak


def test_the_shard_state_of_an_empty_journal():
    shard = Shard.of(plan(), Path("/x"), [])
    assert (shard.iterations, shard.elapsed, shard.sessions, shard.status) == ([], 0.0, 0, "running")
    assert os.fspath(shard.dir) == "/x"


def test_the_progress_line_is_redrawn_on_a_terminal_and_plain_in_a_log(capsys):
    line = ProgressLine(lambda: "soak: 0:00:01 elapsed", tty=True)
    line.show()
    log.info("a message")
    line.stop()
    err = capsys.readouterr().err
    assert err.startswith("\r\033[Ksoak: 0:00:01 elapsed\r\033[K[kstress ")  # drawn, then cleared for a message
    assert "a message\nsoak: 0:00:01 elapsed\r\033[K[kstress " in err  # redrawn below it; the last one a plain line
    assert err.endswith("] soak: 0:00:01 elapsed\n")
    ProgressLine(lambda: "soak: 2 iteration(s) done", tty=False).show()
    err = capsys.readouterr().err
    assert "\r" not in err and err.endswith("] soak: 2 iteration(s) done\n")


def test_a_soak_of_another_kernel_keeps_it_in_its_plan_for_resume_and_shards(tmp_path):
    series = tmp_path / "series"
    series.mkdir()
    kernel = {"patches": str(series)}
    soak_dir, plan, cfg = mode.prepare(str(config(tmp_path)), 60, 1, None, str(tmp_path / "r"), None, 3, None, kernel)
    assert plan.kernel_overrides == kernel and cfg.patches == str(series)
    assert all(cfg.for_kernel(k).patches == str(series) for k in plan.kernels)  # every kernel of the rotation
    _, again, resumed_cfg = mode.prepare(None, None, 1, None, None, str(soak_dir), None, None)
    assert again.kernel_overrides == kernel and resumed_cfg.patches == str(series)
    with pytest.raises(UsageError, match="--resume takes its plan"):
        mode.prepare(None, None, 1, None, None, str(soak_dir), None, None, kernel)
    _, plain, _ = mode.prepare(str(config(tmp_path)), 60, 1, None, str(tmp_path / "r"), None, 3, None)
    assert "kernel_overrides differs" in plan.same_soak(plain)
