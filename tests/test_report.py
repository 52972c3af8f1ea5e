"""junit.xml validates against the JUnit schema Jenkins' xunit plugin uses,
carries findings as failures and our own trouble as errors; run.json is
written from typed records and validates against run.schema.json."""

import json
import time
from types import SimpleNamespace

from junit_schema import validate
from run_schema import validate_run_json

from harness.run import verdict
from harness.run.record import FORMAT_VERSION, GuestRecord, HotplugRecord, RunRecord, SwapRecord, WorkloadRecord
from harness.run.results import write_results
from harness.run.runner import Runner


def record(run_id="run-1") -> RunRecord:
    return RunRecord(run_id=run_id, seed=7, config={"workloads": []})


def test_report_validates_with_failure_error_and_nasty_text(tmp_path):
    r = record()
    r.set_property("kernel_version", "6.12.57")
    r.set_property("vmstat.migrate_fork.pgmigrate_success", 123)
    r.case("boot").elapsed = 2.5
    wl = r.case("migrate_fork")
    wl.fail("kernel BUG in pfn_swap_entry_folio",
            "kernel BUG at include/linux/swapops.h:486!\n\x00\x1b[31mCall Trace:\x07 <TASK>", "kernel")
    wl.stdout = "migrations 10\x00\n"
    r.case("build").error("QEMU died: exit 1", "console tail:\n\x01")
    r.guest = GuestRecord(accel="tcg", cmdline="console=ttyS0", tcg_relaxations="", image="debian",
                          swap=SwapRecord("disk", "/dev/vdb", 1024, "/dev/vdb partition"),
                          hotplug=HotplugRecord(1, 256, ["memory32", "memory33"], 2, 1, ["memory33: busy"], 2, 3.5),
                          restarts=["migrate_fork hung"])
    r.workloads["migrate_fork"] = WorkloadRecord(kind="c", argv=["/usr/bin/migrate_fork"], duration=5,
                                                 stresses=["migration"], evidence=["pgmigrate_success"])
    write_results(tmp_path, r)
    doc = validate(tmp_path / "junit.xml")
    failures = doc.findall(".//failure")
    assert [f.get("message") for f in failures] == ["kernel BUG in pfn_swap_entry_folio"]
    assert "swapops.h:486" in failures[0].text
    assert doc.find(".//error").get("message") == "QEMU died: exit 1"
    props = {p.get("name"): p.get("value") for p in doc.findall(".//property")}
    assert props["vmstat.migrate_fork.pgmigrate_success"] == "123"
    data = validate_run_json(tmp_path / "run.json")
    assert data["testcases"][1]["status"] == "failure"
    assert data["format_version"] == FORMAT_VERSION


def test_kernel_finding_outranks_other_failures():
    c = record().case("migrate_fork")
    c.fail("migrate_fork exited with status 1", "out", "workload")
    c.fail("kernel BUG in foo", "report", "kernel")
    assert (c.failure_type, c.message) == ("kernel", "kernel BUG in foo")
    assert "out" in c.text and "report" in c.text


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    r = record("run-3")
    r.case("boot")
    for _ in range(3):
        write_results(tmp_path, r)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junit.xml", "run.json"]


def test_schema_rejects_what_it_should(tmp_path):
    """The schema is a real check: a wrong type or a missing field fails it."""
    import pytest
    from jsonschema import ValidationError

    r = record()
    write_results(tmp_path, r)
    data = json.loads((tmp_path / "run.json").read_text())
    for broken in ({**data, "seed": "seven"}, {k: v for k, v in data.items() if k != "format_version"},
                   {**data, "testcases": [{"name": "x", "status": "exploded"}]}):
        (tmp_path / "bad.json").write_text(json.dumps(broken))
        with pytest.raises(ValidationError):
            validate_run_json(tmp_path / "bad.json")


def test_exit_code_policy():
    from harness.run.verdict import exit_code

    r = record()
    r.case("build")
    assert exit_code(r) == 0
    r.workloads["w"] = WorkloadRecord(kind="c", argv=["w"], duration=1, stresses=[], evidence=[],
                                      skipped="the kernel lacks CONFIG_KSM")
    assert exit_code(r) == 125  # nothing was stressed
    r.case("w").fail("no evidence of stress: x did not move", "", "no-evidence")
    assert exit_code(r) == 125
    r.case("boot").fail("kernel BUG in foo", "", "kernel")
    assert exit_code(r) == 1
    r.interrupted = "SIGINT"
    assert exit_code(r) == 130  # as the process exits


def test_interrupted_testcase_keeps_its_real_time_and_the_summary_says_130():
    """Ctrl-C two minutes into a workload: the testcase shows those two minutes
    (not 0.0 s) and summary.txt the code the process exits with."""
    r = record()
    case = r.case("migrate_fork")
    runner = SimpleNamespace(current=case, current_t0=time.monotonic() - 120.0, stop_reason="")
    r.interrupted = "SIGINT"
    Runner._end_current(runner, "interrupted by SIGINT")
    assert case.status == "error" and case.elapsed >= 120.0
    r.exit_code = verdict.exit_code(r)
    first = verdict.summary(r, "/tmp/x").splitlines()
    assert "exit 130" in first[0]
    assert any("migrate_fork" in line and " 120." in line for line in first[1:])
