"""End to end: `kstress zoo` on two fast mutants, one run each, on the quick
config (initramfs): each is built (an incremental rebuild of the session's
kernel), smoke-booted, run until its expected report, journaled; a resume
then has nothing left to do. One ends in an oops that panics the guest; the
other's report is a WARNING, which the runner's console watch must see and
stop the guest on, long before the workload's end (the workloads get 120 s:
the race usually shows within seconds, but a late one must still leave the
watch its time to look, wait for the report to end and stop the guest)."""

from __future__ import annotations

import json

import pytest
from run_schema import validate_run_json
from test_e2e_run import kstress, qemu_processes_mentioning

from harness.kernel.build import DEFAULT_SOURCE

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not DEFAULT_SOURCE.exists(),
                       reason=f"needs the kernel source {DEFAULT_SOURCE} (Debian package linux-source-6.12)"),
]

MUTANTS = ("swapops-unlock-before-remove-ptes", "fork-keeps-parent-migration-entry-writable")
DURATION = 120


def test_zoo_catches_two_mutants_journals_and_resumes(kernel_cache, tmp_path):
    res = kstress(["zoo", "--config", "quick", "--mutants", ",".join(MUTANTS), "--runs", "1",
                   "--duration", str(DURATION), "--seed", "2", "--results", str(tmp_path)], kernel_cache)
    assert res.returncode == 0, res.stdout + res.stderr[-5000:]
    (zoo_dir,) = tmp_path.iterdir()
    entries = [json.loads(x) for x in (zoo_dir / "journal.jsonl").read_text().splitlines()]
    assert [(e["kind"], e["mutant"]) for e in entries] == [(k, m) for m in MUTANTS for k in ("smoke", "run")]
    for e in entries:
        if e["kind"] == "smoke":
            assert e["ok"] and e["exit_code"] == 0, e
            continue
        assert e["detected"] and e["testcase"] == "migrate_fork", e
        assert 0 <= e["seconds"] < DURATION - 30 and e["stopped"].startswith("expected report: "), e
        record = validate_run_json(f"{e['run_dir']}/run.json")
        assert record["properties"]["stopped"] == e["stopped"]
        assert record["workloads"]["migrate_fork"]["guest_uptime"] > 0
        assert not qemu_processes_mentioning(e["run_dir"])
    rows = {ln.split()[0]: ln for ln in res.stdout.splitlines() if ln.startswith(MUTANTS)}
    assert "swapops_bug" not in rows[MUTANTS[0]]  # the table names titles, the header the class
    assert " 1/1 " in rows[MUTANTS[0]] and "kernel BUG in " in rows[MUTANTS[0]]
    assert " 1/1 " in rows[MUTANTS[1]] and "WARNING in " in rows[MUTANTS[1]]
    # The WARNING does not stop the guest: the watch does, and the workload's record says so.
    warned = validate_run_json(f"{entries[3]['run_dir']}/run.json")
    workload = warned["workloads"]["migrate_fork"]
    why = f"{entries[3]}\n{workload}\n{res.stderr[-5000:]}"
    assert "console watch:" not in res.stderr, why  # no look at the console failed
    if workload["exit_status"] is None:  # the watch stopped the guest, the workload with it
        assert workload["seconds"] < DURATION - 10, why
    else:
        # The bug may kill the workload itself first (SIGSEGV, 139, was seen
        # 0.4 s in): then it ended while the watch waited for the report to
        # end, long before its 120 s.
        assert workload["seconds"] <= entries[3]["seconds"] + 20, why
    # The guest lives on after the WARNING, unless the mutant's next report is a
    # fatal one (CI saw "kernel BUG in try_to_migrate_one" and "Kernel panic -
    # not syncing: Fatal exception" 1 s later): then the run names that report too.
    for event in warned["guest_events"]:
        assert event["event"] == "GuestDied" and "Kernel panic" in event["detail"], why
        assert any(t.startswith("kernel BUG in ") for t in entries[3]["others"]), why

    again = kstress(["zoo", "--resume", str(zoo_dir)], kernel_cache)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len((zoo_dir / "journal.jsonl").read_text().splitlines()) == len(entries)
    assert again.stdout == res.stdout == (zoo_dir / "summary.txt").read_text()
