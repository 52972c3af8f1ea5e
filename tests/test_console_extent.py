"""Report extents end on the report's last line, marked by hand in real consoles:
no excerpt carries lines from after its report's end, and none is cut short."""

from pathlib import Path

import pytest
from test_console_corpus import read_case

from harness.console import analyze_file, analyze_text

DATA = Path(__file__).parent / "data"
CAPTURED = DATA / "console-captured"
MARKED = sorted((p for p in (DATA / "console-corpus-ends").iterdir() if p.name.isdigit()), key=lambda p: int(p.name))

# The last line of the first report of each captured 6.12 crash console (the
# kernel's end marker of the task that crashed first; in the interleaved
# captures, not the other task's).
CAPTURED_ENDS = {
    "split-6.12-vm-bug-on-folio-1.log": "[    2.092684][   T55] ---[ end trace 0000000000000000 ]---",
    "swapops-6.12-exit-zap-1.log": "[    3.512548][   T57] ---[ end trace 0000000000000000 ]---",
    "swapops-6.12-exit-zap-2-interleaved.log": "[    1.927290][   T80] ---[ end trace 0000000000000000 ]---",
    "swapops-6.12-exit-zap-no-time-guess-stall-1.log": "---[ end trace 0000000000000000 ]---",
    "swapops-6.12-fault-cut-by-other-cpu-1.log": "[   43.861633][  T178] ---[ end trace 0000000000000000 ]---",
    "swapops-6.12-fault-1.log": "[    2.337749][   T54] ---[ end trace 0000000000000000 ]---",
    "swapops-6.12-fault-pmd-1.log": "[    3.624896][   T53] ---[ end trace 0000000000000000 ]---",
    "swapops-6.12-fork-1.log": "[    2.136379][   T51] ---[ end trace 0000000000000000 ]---",
    "swapops-6.12-fork-and-exit-interleaved-1.log": "[    4.087251][   T52] ---[ end trace 0000000000000000 ]---",
    "swapops-6.12-nodelay-two-cpus-interleaved-1.log": "[    1.556433][   T53] ---[ end trace 0000000000000000 ]---",
    "warning-6.12-deferred-split-folio-unpatched-1.log": "[   47.598252][   T76] ---[ end trace 0000000000000000 ]---",
}


def test_every_captured_crash_console_has_its_end_marked():
    crashes = {p.name for p in CAPTURED.glob("*.log") if not p.name.startswith(("clean-", "hang-"))}
    assert crashes == set(CAPTURED_ENDS)


@pytest.mark.parametrize("name", sorted(CAPTURED_ENDS))
def test_captured_excerpt_ends_on_the_marked_line(name):
    path = CAPTURED / name
    data = path.read_bytes()
    finding = next(f for f in analyze_file(path) if not f.informational)
    assert data[finding.start:finding.end].decode("utf-8", "replace") == finding.excerpt
    assert finding.excerpt.splitlines()[-1].rstrip("\r") == CAPTURED_ENDS[name]


def test_enough_marked_corpus_logs_of_many_kinds():
    cases = [read_case(p) for p in MARKED]
    assert len(cases) >= 30
    assert len({c.headers.get("TYPE") for c in cases}) >= 8
    assert all(c.headers.get("END") for c in cases)


@pytest.mark.parametrize("path", MARKED, ids=[p.name for p in MARKED])
def test_corpus_excerpt_ends_on_the_marked_line(path):
    case = read_case(path)
    findings = [f for f in analyze_text(case.log) if not f.informational]
    assert findings and findings[0].title in [case.title] + case.alts
    finding = findings[0]
    assert case.log[finding.start:finding.end] == finding.excerpt
    assert finding.excerpt.splitlines()[-1].rstrip() == case.headers["END"]


def test_chatter_after_a_report_without_end_marker_stays_out_of_its_excerpt():
    """The soak shape: a WARNING (no panic) whose end marker is lost, then the boot's ordinary lines."""
    capture = (CAPTURED / "warning-6.12-deferred-split-folio-unpatched-1.log").read_text(errors="replace")
    clean = (CAPTURED / "clean-6.12-migrate_fork-1.log").read_text(errors="replace")
    marker = capture.index(CAPTURED_ENDS["warning-6.12-deferred-split-folio-unpatched-1.log"])
    chatter = [line for line in clean.splitlines(keepends=True)[150:450] if "Linux version" not in line]
    text = capture[:marker] + "".join(chatter)
    finding = next(f for f in analyze_text(text) if not f.informational)
    assert finding.excerpt.splitlines()[-1].rstrip("\r") == "[   47.598252][   T76]  </TASK>"
