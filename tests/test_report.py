"""junit.xml validates against the JUnit schema Jenkins' xunit plugin uses,
carries findings as failures and our own trouble as errors."""

import json
from pathlib import Path

from harness.report import RunReport
from junit_schema import validate


def test_report_validates_with_failure_error_and_nasty_text(tmp_path):
    r = RunReport(tmp_path, "run-1")
    r.set_property("kernel_version", "6.12.57")
    r.set_property("vmstat.migrate_fork.pgmigrate_success", 123)
    r.case("boot").elapsed = 2.5
    wl = r.case("migrate_fork")
    wl.fail("kernel BUG in pfn_swap_entry_folio",
            "kernel BUG at include/linux/swapops.h:486!\n\x00\x1b[31mCall Trace:\x07 <TASK>", "kernel")
    wl.stdout = "migrations 10\x00\n"
    r.case("build").error("QEMU died: exit 1", "console tail:\n\x01")
    r.write()
    doc = validate(tmp_path / "junit.xml")
    failures = doc.findall(".//failure")
    assert [f.get("message") for f in failures] == ["kernel BUG in pfn_swap_entry_folio"]
    assert "swapops.h:486" in failures[0].text
    assert doc.find(".//error").get("message") == "QEMU died: exit 1"
    props = {p.get("name"): p.get("value") for p in doc.findall(".//property")}
    assert props["vmstat.migrate_fork.pgmigrate_success"] == "123"
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["testcases"][1]["status"] == "failure"


def test_kernel_finding_outranks_other_failures(tmp_path):
    r = RunReport(tmp_path, "run-2")
    c = r.case("migrate_fork")
    c.fail("migrate_fork exited with status 1", "out", "workload")
    c.fail("kernel BUG in foo", "report", "kernel")
    assert (c.failure_type, c.message) == ("kernel", "kernel BUG in foo")
    assert "out" in c.text and "report" in c.text


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    r = RunReport(tmp_path, "run-3")
    r.case("boot")
    for _ in range(3):
        r.write()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junit.xml", "run.json"]
