"""A real 6.12 console from a kernel without printk timestamps and with the
"guess" unwinder (every frame printed as "? "), where the swapops.h BUG does
not panic: the oopsing task was already exiting ("Fixing recursive fault"),
and the threads left spinning on its page table lock give RCU stalls and
soft lockups.  One finding, titled after the BUG, with all that as aftermath.
"""

import json

import pytest
from test_console_data import DATA_DIR, read_console_case

from harness.console import analyze_file, analyze_text, scan_command

CASE = read_console_case(DATA_DIR / "swapops_bug_6.12_no_time_guess_unwinder_stall.log")


@pytest.fixture(scope="module")
def findings():
    return analyze_text(CASE.raw_log.decode("utf-8", "replace"))


def test_one_swapops_finding_titled_after_the_bug(findings):
    failing = [f for f in findings if not f.informational]
    assert len(failing) == 1, [f.title for f in failing]
    f = failing[0]
    assert f.cls == "swapops_bug"
    assert f.title.startswith("kernel BUG in ")
    assert f.title == "kernel BUG in pfn_swap_entry_folio"
    assert (f.file, f.line) == ("include/linux/swapops.h", 505)
    assert (f.comm, f.pid, f.cpu) == ("migrate_fork", 82, 0)
    assert not f.corrupted


def test_question_mark_frames_are_never_guilty(findings):
    f = findings[0]
    assert f.call_trace[0].func == "pfn_swap_entry_folio" and not f.call_trace[0].unreliable
    assert all(frame.unreliable for frame in f.call_trace[1:])    # the guess unwinder's trace
    unreliable = {frame.func for frame in f.call_trace if frame.unreliable}
    assert f.guilty_function == "pfn_swap_entry_folio"
    assert f.guilty_function not in unreliable
    assert f.guilty_file is None or f.guilty_file == "include/linux/swapops.h"
    # With no reliable frame at all, the nearest "? " frame may name the caller.
    assert f.caller == "unmap_page_range"


def test_recursive_fault_and_stall_are_aftermath(findings):
    after = findings[0].aftermath
    assert after[0] == "Fixing recursive fault but reboot is needed"
    assert after[1].startswith("INFO: rcu detected stall in ")
    assert any(t.startswith("BUG: soft lockup in ") for t in after)
    # Stall titles name where the CPU spun, not "corrupted", even with "? " frames only.
    assert all("corrupted" not in t for t in after), after
    assert "INFO: rcu detected stall in page_vma_mapped_walk" in after


def test_file_and_scan_command_agree(tmp_path, capsys):
    log = tmp_path / "console.log"
    log.write_bytes(CASE.raw_log)
    from_file = [f for f in analyze_file(log) if not f.informational]
    assert [(f.title, f.cls, f.aftermath) for f in from_file] == \
        [(f.title, f.cls, f.aftermath) for f in analyze_text(CASE.raw_log.decode("utf-8", "replace"))]
    assert scan_command([str(log)], as_json=True, vmlinux=None) == 1
    out = json.loads(capsys.readouterr().out)
    assert [(f["cls"], f["title"]) for f in out] == [("swapops_bug", "kernel BUG in pfn_swap_entry_folio")]
    assert any("rcu detected stall" in t for t in out[0]["aftermath"])


def test_recursive_fault_line_alone_is_a_finding():
    """Without the oops before it (cut off), the line still says the kernel oopsed."""
    found = analyze_text("Linux version 6.12.117 (x)\nFixing recursive fault but reboot is needed!\n")
    assert [(f.cls, f.title) for f in found] == [("oops", "Fixing recursive fault but reboot is needed")]


def test_stall_with_reliable_frames_is_unchanged():
    """The "? " fallback applies only when no frame at all is reliable."""
    log = ("rcu: INFO: rcu_sched self-detected stall on CPU\n"
           "CPU: 1 UID: 0 PID: 76 Comm: t Not tainted 6.12.117 #1\n"
           "RIP: 0010:queued_spin_lock_slowpath+0x1e/0x19a\n"
           "Call Trace:\n <TASK>\n ? page_vma_mapped_walk+0x360/0x4db\n"
           " remove_migration_pte+0x71/0x3aa\n rmap_walk_anon+0x118/0x182\n </TASK>\n")
    assert analyze_text(log)[0].title == "INFO: rcu detected stall in remove_migration_pte"
