"""`kstress run` of a config with kernel variants: the config's own kernel,
then each variant (a KASAN kernel, a lockdep kernel), each through the same
guest and workloads with the same seed, so a use-after-free or a lock-order
inversion that the default kernel runs past silently is reported too.

Each kernel is one ordinary Runner run in <results>/<id>/<kernel>/<run-id>/.
The parent <results>/<id>/ holds variants.json, summary.txt and one merged
junit.xml (a <testsuite> per kernel, classnames kstress.<kernel>.*), all
rewritten after every kernel, so an interrupted run keeps what it has.
A kernel that cannot be built or tested is recorded and the next one runs.

The exit code is the worst of the kernels' (errors.worst_exit), ranked
    130 interrupted > 1 kernel findings > 2 usage > 125 could not test > 0 clean:
findings come first because they are what a nightly run is for, and one
variant that cannot be tested must not hide another's crash; a usage error
(say, a variant fragment's symbol that olddefconfig dropped) outranks 125
because it needs a fix in the config, not a retry.
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness import log
from harness.cache import atomic_write_json
from harness.config import RunConfig, apply_overrides
from harness.errors import EXIT_COULD_NOT_TEST, EXIT_INTERRUPTED, KstressError, UsageError, worst_exit
from harness.run import verdict
from harness.run.junit import junit_suites
from harness.run.record import RunRecord, atomic_write_text
from harness.run.results import new_run_dir
from harness.run.runner import Runner

MIGRATED = "pgmigrate_success"


@dataclass
class KernelRun:
    """One kernel's run, as the combined files need it."""

    name: str
    fragments: list[str]
    exit_code: int | None = None
    error: str = ""  # a KstressError that stopped the run (build failure, bad fragment)
    run_dir: str = ""
    record: RunRecord | None = field(default=None, repr=False)

    def as_dict(self) -> dict:
        rec = self.record
        return {"name": self.name, "fragments": self.fragments, "exit_code": self.exit_code,
                "error": self.error, "run_dir": self.run_dir, "run_id": rec.run_id if rec else None,
                "kernel_key": rec.kernel.key if rec and rec.kernel else None,
                "seconds_to_ready": self.seconds_to_ready(), MIGRATED: self.migrated()}

    def seconds_to_ready(self) -> float | None:
        guest = self.record.guest if self.record else None
        return guest.seconds_to_ready if guest else None

    def migrated(self) -> int | None:
        if not self.record or not self.record.workloads:
            return None
        return sum(w.vmstat_delta.get(MIGRATED, 0) for w in self.record.workloads.values())

    def line(self) -> str:
        rec = self.record
        findings = [f for f in rec.findings if not f.known_issue] if rec else []
        if self.error:
            what = self.error.splitlines()[0]
        elif findings:
            what = f"{len(findings)} finding(s): " + "; ".join(dict.fromkeys(f.finding.title for f in findings))
        else:
            failed = [c for c in rec.testcases if c.status in ("failure", "error")] if rec else []
            what = f"{failed[0].name}: {failed[0].message}" if failed else "clean"
        ready, moved = self.seconds_to_ready(), self.migrated()
        figures = f"ready {ready:5.1f}s" if ready is not None else "ready     -"
        figures += f"  {MIGRATED} {moved if moved is not None else '-':>9}"
        code = "-" if self.exit_code is None else self.exit_code
        return f"  {self.name:<12} exit {code!s:<4} {figures}  {what}"


class VariantRuns:
    """The config's kernels (by name: "default" and its variants), one Runner run each."""

    def __init__(self, cfg: RunConfig, kernels: list[str], results: Path, cache_dir: Path | None = None,
                 runner: Callable[[RunConfig, Path | None], Runner] | None = None):
        if not kernels:
            raise UsageError("no kernel to run")
        self.configs = [cfg.for_kernel(name) for name in kernels]  # an unknown name fails before any run
        self.cfg, self.cache_dir, self.make_runner = cfg, cache_dir, runner or Runner
        # One seed for every kernel: the same workload choices on each.
        self.seed = cfg.seed if cfg.seed is not None else random.SystemRandom().randrange(1, 2**31)
        self.run_id, self.dir = new_run_dir(Path(results))
        self.runs: list[KernelRun] = []
        self.interrupted = ""
        self.started = time.time()

    def run(self) -> int:
        log.info(f"run {self.run_id}: kernels {', '.join(c.kernel_name for c in self.configs)}, "
                 f"seed {self.seed}; results in {self.dir}")
        try:
            for cfg in self.configs:
                self._one(cfg)
        finally:
            self._write()
        return self.exit_code()

    def _one(self, cfg: RunConfig) -> None:
        name = cfg.kernel_name
        log.info(f"kernel {name}: {', '.join(p.name for p in cfg.fragments)}")
        kr = KernelRun(name, [str(p) for p in cfg.fragments])
        self.runs.append(kr)
        runner = self.make_runner(apply_overrides(cfg, seed=self.seed, results=self.dir / name), self.cache_dir)
        kr.record, kr.run_dir = runner.record, str(runner.run_dir)
        try:
            kr.exit_code = runner.run()
        except KeyboardInterrupt as exc:
            self.interrupted = kr.error = f"interrupted ({exc or 'SIGINT'})"
            kr.exit_code = EXIT_INTERRUPTED
            raise
        except KstressError as exc:  # this kernel could not be tested; the next one may
            kr.error, kr.exit_code = str(exc), exc.exit_code
            log.warn(f"kernel {name}: {kr.error.splitlines()[0]}")
        finally:
            self._write()

    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return worst_exit([r.exit_code if r.exit_code is not None else EXIT_COULD_NOT_TEST for r in self.runs])

    def summary(self) -> str:
        lines = [f"kstress run {self.run_id}  seed {self.seed}  kernels: "
                 f"{', '.join(c.kernel_name for c in self.configs)}"]
        lines += [r.line() for r in self.runs]
        lines += [f"  {c.kernel_name:<12} not run" for c in self.configs[len(self.runs):]]
        lines.append(f"exit {self.exit_code()} (the worst of the kernels': 130 > 1 > 2 > 125 > 0); "
                     f"results: {self.dir}")
        for r in self.runs:  # each kernel's own summary, as `kstress run` prints it
            if r.record is not None and r.record.exit_code is not None:
                lines += ["", f"[{r.name}]"] + verdict.summary(r.record, r.run_dir).rstrip("\n").splitlines()
        return "\n".join(lines) + "\n"

    def junit(self) -> str:
        """One testsuite per kernel; classnames kstress.<kernel>.<part>, so Jenkins keeps
        each kernel's history apart."""
        suites = []
        for r in self.runs:
            rec = r.record or RunRecord(run_id="-", seed=self.seed, config={})
            cases = [dataclasses.replace(c, classname=_classname(c.classname, r.name)) for c in rec.testcases]
            suites.append((f"kstress.{r.name}", dataclasses.replace(rec, testcases=cases)))
        return junit_suites(suites, "kstress")

    def _write(self) -> None:
        atomic_write_json(self.dir / "variants.json", {
            "run_id": self.run_id, "seed": self.seed, "started": self.started,
            "exit_code": self.exit_code(), "interrupted": self.interrupted,
            "kernels": [r.as_dict() for r in self.runs],
            "not_run": [c.kernel_name for c in self.configs[len(self.runs):]]})
        atomic_write_text(self.dir / "junit.xml", self.junit())
        atomic_write_text(self.dir / "summary.txt", self.summary())


def _classname(classname: str, kernel: str) -> str:
    head, _, rest = classname.partition(".")
    return f"kstress.{kernel}.{rest}" if head == "kstress" and rest else f"kstress.{kernel}"
