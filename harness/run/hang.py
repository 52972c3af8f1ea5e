"""Hang diagnosis: before giving up on a guest whose workload overran or that
stopped answering, ask the kernel what its tasks and CPUs are doing.

SysRq w (blocked tasks) and l (every CPU's backtrace) go in through the first
way that still works: a channel (SSH, the serial login, the serial shell),
else a serial BREAK on the console, which the kernel takes as SysRq while
any CPU still handles interrupts. The backtraces land on the console; the
stuck function is read from the workload's own task: the first frame of its
blocked stack that is not scheduler or locking machinery, or, for a task
spinning on a CPU, where that CPU was interrupted.

The finding's title follows syzkaller's: "INFO: task hung in <function>" for
a blocked task, "BUG: task stuck running in <function>" for a spinning one.
Under TCG the kernel's own detectors are relaxed to minutes; this names a
hang at the workload's planned end plus its grace.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import log
from harness.console.frames import base_name, first_culprit, interrupted_part, parse_frame, parse_rip
from harness.console.lines import clean
from harness.console.model import Frame
from harness.errors import KstressError
from harness.guest.channels import Channel
from harness.guest.machine import Machine
from harness.run.results import file_size

SYSRQ_KEYS = ("w", "l")  # blocked tasks, then every CPU's backtrace
SETTLE = 8.0  # seconds for the kernel to print the dumps (TCG, a busy host)
_TASK = re.compile(r"^task:(?P<comm>.+?)\s+state:(?P<state>\w)\b")
_NMI = re.compile(r"^NMI backtrace for cpu (?P<cpu>\d+)")
_CPU_COMM = re.compile(r"^CPU: \d+ (?:UID: \d+ )?PID: \d+ Comm: (?P<comm>.+?) (?:Not tainted|Tainted)")


@dataclass
class _Stack:
    comm: str
    blocked: bool  # a task in state D, from SysRq w; else a CPU's backtrace
    rip: Frame | None = None
    frames: list[Frame] = field(default_factory=list)


@dataclass
class HangReport:
    title: str
    function: str | None
    how: str  # which way the SysRq went in
    text: str  # the dumps, as the console printed them
    start: int  # where they begin in console.log


def _stacks(text: str) -> list[_Stack]:
    stacks: list[_Stack] = []
    for raw in text.splitlines():
        line, _ctx = clean(raw)
        line = line.strip()
        m = _TASK.match(line)
        if m:
            stacks.append(_Stack(m.group("comm").strip(), blocked=m.group("state") == "D"))
            continue
        if _NMI.match(line):
            stacks.append(_Stack("", blocked=False))
            continue
        if not stacks:
            continue
        current = stacks[-1]
        m = _CPU_COMM.match(line)
        if m and not current.blocked:
            current.comm = m.group("comm").strip()
            continue
        if current.rip is None and not current.blocked and line.startswith("RIP:"):
            current.rip = parse_rip(line)
            continue
        frame = parse_frame(line)
        if frame:
            current.frames.append(frame)
    return stacks


def stuck_function(text: str, comm: str) -> tuple[str | None, bool]:
    """(the function ``comm``'s task is stuck in, whether it is blocked)."""
    comm = comm[:15]  # the kernel keeps TASK_COMM_LEN - 1 characters
    mine = [s for s in _stacks(text) if s.comm == comm]
    for stack in sorted(mine, key=lambda s: not s.blocked):
        if stack.blocked:
            culprit = first_culprit(stack.frames)
        else:
            culprit = stack.rip if stack.rip and first_culprit([stack.rip]) else \
                first_culprit(interrupted_part(stack.frames) or stack.frames)
        if culprit:
            return base_name(culprit.func), stack.blocked
    return None, False


def _sysrq(machine: Machine, channels: list[Channel]) -> str:
    command = "; ".join(f"echo {k} > /proc/sysrq-trigger" for k in SYSRQ_KEYS)
    for channel in channels:
        try:
            r = channel.run(command, 20)
        except KstressError as exc:
            log.warn(f"hang diagnosis: {type(channel).__name__} failed: {exc}")
            continue
        if r.exit_status == 0:
            return type(channel).__name__
    for key in SYSRQ_KEYS:
        machine.sysrq_by_break(key)
        time.sleep(1)
    return "serial BREAK"


def diagnose(machine: Machine, channels: list[Channel], console_log: Path, comm: str,
             workload: str) -> HangReport:
    """Dump what the kernel knows about the hang and name where ``comm`` is stuck."""
    start = file_size(console_log)
    log.warn(f"{workload}: hang; asking the kernel for blocked tasks and CPU backtraces (SysRq w, l)")
    how = "none: QEMU is gone"
    if machine.running:
        how = _sysrq(machine, channels)
        time.sleep(SETTLE)
    with open(console_log, "rb") as f:
        f.seek(start)
        text = f.read().decode("utf-8", "replace")
    func, blocked = stuck_function(text, comm)
    if func is None:
        title = f"hang: {workload} did not finish (no kernel backtrace of {comm[:15]})"
    elif blocked:
        title = f"INFO: task hung in {func}"
    else:
        title = f"BUG: task stuck running in {func}"
    log.warn(f"{workload}: {title} (SysRq by {how})")
    return HangReport(title, func, how, text, start)
