"""End to end: a kernel whose migration syscall never returns. kstress names
the hang and where the task is stuck (from the kernel's own backtraces, long
before the kernel's relaxed detectors would), then runs the next workload in
a fresh guest, and the console says the restart was kstress's."""

from __future__ import annotations

import pytest
from junit_schema import validate
from run_schema import validate_run_json
from test_e2e_run import REPO, kstress, run_dir_of

from harness.guest.machine import RESTART_MARKER
from harness.kernel import DEFAULT_SOURCE

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not DEFAULT_SOURCE.exists(),
                       reason=f"needs the kernel source {DEFAULT_SOURCE} (Debian package linux-source-6.12)"),
]
PLANTED = REPO / "tests" / "data" / "planted"
CONFIG = REPO / "tests" / "data" / "configs" / "hang-then-next.yaml"
WITHIN = 300  # seconds after the workload's planned end


@pytest.mark.parametrize("patch,title,state", [
    ("hang-move-pages-sleeps-forever.patch", "INFO: task hung in migrate_pages", "state:D"),
    ("hang-move-pages-spins-forever.patch", "BUG: task stuck running in migrate_pages", "Comm: migrate_fork"),
])
def test_planted_hang_is_named_and_the_next_workload_runs_in_a_fresh_guest(kernel_cache, tmp_path, patch,
                                                                          title, state):
    res = kstress(["run", str(CONFIG), "--patches", str(PLANTED / patch), "--seed", "1",
                   "--results", str(tmp_path)], kernel_cache)
    assert res.returncode == 1, res.stdout + res.stderr[-3000:]
    run = run_dir_of(tmp_path)
    record = validate_run_json(run / "run.json")
    doc = validate(run / "junit.xml")
    hung = doc.find(".//testcase[@name='migrate_fork']")
    failure = hung.find("failure")
    assert failure.get("message") == title and failure.get("type") == "hang"
    # The text holds the kernel's backtraces of the stuck task.
    assert state in failure.text and "Call Trace" in failure.text and "migrate_pages+0x" in failure.text
    planned = record["workloads"]["migrate_fork"]["duration"]
    assert float(hung.get("time")) <= planned + WITHIN
    # The next workload ran in a fresh guest, and the restart is no finding.
    assert record["guest"]["restarts"] == ["migrate_fork hung"]
    assert doc.find(".//testcase[@name='vma_churn']/failure") is None
    assert doc.find(".//testcase[@name='vma_churn']/error") is None
    assert record["workloads"]["vma_churn"]["exit_status"] == 0
    assert [f["title"] for f in record["findings"] if f["testcase"] == "migrate_fork"] == [title]
    assert all(f["title"] != "unexpected kernel reboot" for f in record["findings"])
    console = (run / "console.log").read_text(errors="replace")
    assert console.count("Linux version 6.12") == 2 and RESTART_MARKER in console
