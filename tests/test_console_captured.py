"""Real consoles captured from 6.12 guests with planted bugs (see
tests/data/console-captured/README.md): the mission's two classes are found,
first and once per boot, with the panic as aftermath."""

from pathlib import Path

import pytest

from harness.console import analyze_file, analyze_text

CAPTURED = Path(__file__).parent / "data" / "console-captured"
BUG = "kernel BUG in "
# Clean runs, and hangs whose SysRq dumps kstress asked for (tests/test_hang.py
# reads those): the analyzer must find no report in them.
NO_FINDING = ("clean-", "hang-")
EXPECTED = {  # file-name prefix -> (class, file, title prefix, callers the trace allows)
    "swapops-6.12-fault": ("swapops_bug", "include/linux/swapops.h", BUG, {"migration_entry_wait_on_locked"}),
    "swapops-6.12-fork-1": ("swapops_bug", "include/linux/swapops.h", BUG, {"copy_page_range"}),
    "swapops-6.12-exit-zap": ("swapops_bug", "include/linux/swapops.h", BUG, {"unmap_page_range"}),
    "swapops-6.12-fork-and-exit": ("swapops_bug", "include/linux/swapops.h", BUG, None),
    "swapops-6.12-nodelay": ("swapops_bug", "include/linux/swapops.h", BUG, None),
    "split-6.12": ("split_huge_page_bug", "mm/huge_memory.c", BUG, None),
    # A real DEBUG_VM warning of unpatched 6.12.117 under migrate_fork (five
    # times in one boot: one finding, the repeats its aftermath).
    "warning-6.12-deferred-split-folio": ("warning", "mm/huge_memory.c", "WARNING in deferred_split_folio", None),
}
LOGS = sorted(CAPTURED.glob("*.log"))


def test_every_capture_has_an_expectation():
    assert LOGS
    for log in LOGS:
        assert log.name.startswith(NO_FINDING) or any(log.name.startswith(p) for p in EXPECTED), log.name


@pytest.mark.parametrize("log", LOGS, ids=[p.name for p in LOGS])
def test_captured_console(log):
    findings = [f for f in analyze_file(log) if not f.informational]
    if log.name.startswith(NO_FINDING):
        assert findings == []
        return
    cls, file, title, callers = next(v for p, v in EXPECTED.items() if log.name.startswith(p))
    assert len(findings) == 1, [f.title for f in findings]
    f = findings[0]
    assert (f.cls, f.file) == (cls, file)
    assert f.title.startswith(title)
    assert f.line and f.line > 0
    assert f.aftermath, "the panic (or a second oops cut off by it, or the repeats) follows"
    raw = log.read_bytes()[f.start:f.end].decode("utf-8", "replace")
    assert raw == f.excerpt and ("kernel BUG at" in raw or "WARNING:" in raw)
    if callers:
        assert f.caller in callers


def test_a_report_cut_by_another_cpus_oops_yields_to_that_oops():
    # Two CPUs hit the swapops BUG at once; the first printed only its first
    # line before the other's oops and panic. The finding is the whole report
    # (titled by its stack, not "corrupted"); the cut one is its aftermath.
    (f,) = [f for f in analyze_file(CAPTURED / "swapops-6.12-fault-cut-by-other-cpu-1.log") if not f.informational]
    assert (f.title, f.corrupted, f.pid) == ("kernel BUG in migration_entry_wait_on_locked", False, 178)
    assert f.aftermath == ["kernel BUG in corrupted", "kernel panic: Fatal exception"]


def test_a_cut_report_keeps_the_title_when_what_follows_is_another_bug():
    # The same console with the second report's BUG moved to another file (so
    # another class): it is not the cut report's whole, so the cut one stays
    # the finding, "corrupted", and the other is its aftermath.
    text = (CAPTURED / "swapops-6.12-fault-cut-by-other-cpu-1.log").read_bytes().decode("utf-8", "replace")
    second = "[   43.850404][  T178] kernel BUG at include/linux/swapops.h:505!"
    assert text.count(second) == 1
    text = text.replace(second, "[   43.850404][  T178] kernel BUG at mm/huge_memory.c:3471!")
    (f,) = [f for f in analyze_text(text) if not f.informational]
    assert (f.title, f.corrupted, f.cls) == ("kernel BUG in corrupted", True, "swapops_bug")
    assert f.aftermath[0].startswith("kernel BUG in ")
