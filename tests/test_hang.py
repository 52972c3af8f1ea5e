"""Hang diagnosis reads where the workload's task is stuck from the kernel's
SysRq dumps, on consoles recorded from real planted-hang kernels."""

from pathlib import Path

import pytest

from harness.console import analyze_file
from harness.run.hang import stuck_function

CAPTURED = Path(__file__).parent / "data" / "console-captured"
SLEEPS = CAPTURED / "hang-6.12-move-pages-sleeps-forever-sysrq-1.log"
SPINS = CAPTURED / "hang-6.12-move-pages-spins-forever-sysrq-1.log"


@pytest.mark.parametrize("log,function,blocked", [
    (SLEEPS, "migrate_pages", True),   # task:migrate_fork state:D ... schedule_timeout <- migrate_pages
    (SPINS, "migrate_pages", False),   # NMI backtrace: Comm: migrate_fork, RIP: migrate_pages
])
def test_stuck_function_of_the_workloads_task(log, function, blocked):
    text = log.read_text(errors="replace")
    assert stuck_function(text, "migrate_fork") == (function, blocked)


def test_other_tasks_are_not_blamed():
    text = SLEEPS.read_text(errors="replace")
    assert stuck_function(text, "no_such_task") == (None, False)
    # The shell that wrote to /proc/sysrq-trigger is on a CPU, but it is not stuck.
    assert stuck_function(text, "sh")[0] != "migrate_pages"


def test_sysrq_dumps_are_not_crash_reports():
    # The analyzer must not turn a diagnosis kstress asked for into findings.
    for log in (SLEEPS, SPINS):
        assert [f.title for f in analyze_file(log) if not f.informational] == []


def test_long_command_names_are_cut_as_the_kernel_cuts_them():
    text = SLEEPS.read_text(errors="replace").replace("task:migrate_fork ", "task:swapcache_migra ")
    assert stuck_function(text, "swapcache_migrate_x") == ("migrate_pages", True)
