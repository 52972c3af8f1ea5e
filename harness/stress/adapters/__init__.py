"""One adapter per workload kind: how a manifest becomes what the guest runs,
and how its run is judged.

c.py (static binaries, judged by their exit status) and selftest.py (the
kernel's own mm selftests, judged by their TAP output); Python and
stress-ng kinds go beside them, each registered in BUILDERS (and JUDGES if
an exit status is not the whole story) under the manifest's ``kind``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.kernel import BuildRequest, KernelBuild
from harness.stress.adapters import c, selftest
from harness.stress.manifest import Workload


@dataclass(frozen=True)
class BuildContext:
    """What an adapter may need besides the manifest."""

    cache_dir: Path | None = None
    kernel: KernelBuild | None = None  # the kernel under test
    kernel_request: BuildRequest | None = None  # how it was built: its source tree, for kind selftest


@dataclass
class Outcome:
    """The verdict on one finished run of a workload (before its evidence is checked)."""

    failure: tuple[str, str, str] | None = None  # (message, text, failure type)
    skipped: str | None = None  # it ran but could test nothing here, and says why
    subtests: dict[str, Any] | None = None  # kind selftest: passed, failed, skipped subtests
    counts: dict[str, int] = field(default_factory=dict)  # for the run's properties


def judge_exit_status(w: Workload, exit_status: int, output: str) -> Outcome:
    if exit_status == 0:
        return Outcome()
    return Outcome(failure=(f"{w.name} exited with status {exit_status}", output[-4000:], "workload"))


def _selftest_judge(w: Workload, exit_status: int, output: str) -> Outcome:
    verdict = selftest.judge(w, exit_status, output)
    return Outcome(verdict.failure, verdict.skipped, verdict.summary.as_dict(), verdict.summary.counts())


BUILDERS: dict[str, Callable[[Workload, BuildContext], Path]] = {
    "c": lambda w, ctx: c.build(w, ctx.cache_dir),
    "selftest": lambda w, ctx: selftest.build(w, ctx.kernel, ctx.kernel_request, ctx.cache_dir),
}
JUDGES: dict[str, Callable[[Workload, int, str], Outcome]] = {"selftest": _selftest_judge}
# Kinds whose program is not started as itself: (the wrapped command, the task's name).
WRAPPERS: dict[str, tuple[Callable[[Workload, list[str]], list[str]], Callable[[Workload], str]]] = {
    "selftest": (selftest.guest_argv, selftest.comm),
}


def build(w: Workload, ctx: BuildContext) -> Path:
    """The file to put in the guest at w.guest_path."""
    return BUILDERS[w.kind](w, ctx)


def argv(w: Workload, duration: int, seed: int) -> list[str]:
    """The command line the guest runs."""
    plain = w.argv(duration, seed)
    return WRAPPERS[w.kind][0](w, plain) if w.kind in WRAPPERS else plain


def comm(w: Workload) -> str:
    """The name of the workload's task in the guest (what a hang diagnosis looks for)."""
    return WRAPPERS[w.kind][1](w) if w.kind in WRAPPERS else Path(w.guest_path).name


def judge(w: Workload, exit_status: int, output: str) -> Outcome:
    return JUDGES.get(w.kind, judge_exit_status)(w, exit_status, output)
