"""Triage: one finding per report however often the console is analysed,
attributed to the testcase during which it started; known issues reported,
not failed."""

from pathlib import Path

from harness.config import KnownIssue
from harness.console import analyze_file
from harness.run.record import RunRecord
from harness.run.triage import Triage, finding_key

CAPTURED = Path(__file__).parent / "data" / "console-captured"
WARNING_LOG = CAPTURED / "warning-6.12-deferred-split-folio-unpatched-1.log"
FORK_BUG_LOG = CAPTURED / "swapops-6.12-fork-1.log"


def test_a_report_whose_aftermath_grows_is_one_finding(tmp_path):
    whole = analyze_file(WARNING_LOG)
    assert len(whole) == 1 and len(whole[0].aftermath) >= 2, "the capture has repeats after its warning"
    # The console as it stood when the workload's testcase ended: the report,
    # none of its repeats yet.
    early_console = tmp_path / "console.log"
    early_console.write_bytes(WARNING_LOG.read_bytes()[:whole[0].end + 1])
    early = analyze_file(early_console)
    assert [finding_key(f) for f in early] == [finding_key(f) for f in whole]
    assert len(early[0].aftermath) < len(whole[0].aftermath)

    record = RunRecord(run_id="r", seed=1, config={})
    workload, last = record.case("migrate_fork"), record.case("shutdown")
    triage = Triage([])
    triage.attribute(early, workload, 0, early_console.stat().st_size)
    triage.attribute(whole, last, 0, 1 << 62)  # the final analysis, as Runner._finish does
    assert len(triage.records) == 1
    assert triage.records[0].finding.aftermath == whole[0].aftermath  # the later view wins
    assert triage.records[0].testcase == "migrate_fork"
    assert workload.status == "failure" and last.status == "passed"


def test_findings_outside_the_window_wait_for_their_testcase():
    findings = analyze_file(FORK_BUG_LOG)
    record = RunRecord(run_id="r", seed=1, config={})
    boot, workload = record.case("boot"), record.case("migrate_fork")
    triage = Triage([])
    triage.attribute(findings, boot, 0, findings[0].start)  # before the report: not boot's
    assert triage.records == [] and boot.status == "passed"
    triage.attribute(findings, workload, findings[0].start, 1 << 62)
    assert [r.testcase for r in triage.records] == ["migrate_fork"]
    assert workload.message == "kernel BUG in pfn_swap_entry_folio"


def test_known_issue_is_reported_not_failed():
    findings = analyze_file(WARNING_LOG)
    known = KnownIssue(title="^WARNING in deferred_split_folio$", reason="upstream 3bac01168982",
                       file="mm/huge_memory.c", kernel=r"^6\.12\.")
    record = RunRecord(run_id="r", seed=1, config={})
    case = record.case("migrate_fork")
    triage = Triage([known])
    triage.kernel_version = "6.12.117"
    triage.attribute(findings, case, 0, 1 << 62)
    assert case.status == "passed"
    assert triage.records[0].known_issue == "upstream 3bac01168982"
    assert "known issue, not failed" in case.stdout and "deferred_split_folio" in case.stdout
