"""One adapter per workload kind: how a manifest becomes the files the guest
runs, and how its run is judged. Each maps a workload to {name: host file},
every file going to /usr/bin/<name> in the guest image; registered in
BUILDERS under the manifest's ``kind`` (manifest.KINDS holds the kind's rules
as data, its ``verdict`` names its entry in JUDGES)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.errors import UsageError
from harness.kernel import BuildRequest, KernelBuild
from harness.stress.adapters import c, python, selftest, stress_ng
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


def judge_kselftest(w: Workload, exit_status: int, output: str) -> Outcome:
    verdict = selftest.judge(w, exit_status, output)
    tap = verdict.summary
    if not tap.results and tap.planned is None:  # no TAP (khugepaged): no subtests to count
        return Outcome(verdict.failure, verdict.skipped)
    return Outcome(verdict.failure, verdict.skipped, tap.as_dict(), tap.counts())


BUILDERS: dict[str, Callable[[Workload, BuildContext], dict[str, Path]]] = {
    "c": lambda w, ctx: c.guest_files(w, ctx.cache_dir),
    "python": lambda w, ctx: python.guest_files(w, ctx.cache_dir),
    "stress-ng": lambda w, ctx: stress_ng.guest_files(w, ctx.cache_dir),
    "selftest": lambda w, ctx: selftest.guest_files(w, ctx.kernel, ctx.kernel_request, ctx.cache_dir),
}
# By a kind's verdict (manifest.Kind.verdict).
JUDGES: dict[str, Callable[[Workload, int, str], Outcome]] = {
    "exit-status": judge_exit_status,
    "kselftest": judge_kselftest,
}


def build(w: Workload, ctx: BuildContext | None = None) -> dict[str, Path]:
    """The files to put in the guest's /usr/bin for ``w``, by name."""
    return BUILDERS[w.kind](w, ctx or BuildContext())


def build_all(workloads: list[Workload], ctx: BuildContext | None = None) -> dict[str, Path]:
    """The guest files of every workload; one name must always mean one content."""
    out: dict[str, Path] = {}
    owner: dict[str, str] = {}
    for w in workloads:
        for name, path in build(w, ctx).items():
            if name in out and Path(out[name]).read_bytes() != Path(path).read_bytes():
                raise UsageError(f"workloads {owner[name]} and {w.name} both put a different /usr/bin/{name} "
                                 f"in the guest ({out[name]}, {path})")
            out.setdefault(name, path)
            owner.setdefault(name, w.name)
    return out


def judge(w: Workload, exit_status: int, output: str) -> Outcome:
    """The verdict on a run of ``w`` that finished in time, by its kind's rules."""
    return JUDGES[w.rules.verdict](w, exit_status, output)
