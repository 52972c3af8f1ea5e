"""`kstress compare`: does this patch series fix or break anything?

Two kernels (base and patched: source, ref and patches each) run the same
config N times each, with the same seed for both sides in each round. Per
finding (matched by title and file; known issues count like any finding,
they are often what a comparison is about) the verdict is:
  regression    the patched side hits it significantly more often,
  fixed         the base side hits it significantly more often, and the
                patched side still migrates as much (a patch that silently
                stops migration would otherwise "fix" every migration race),
  unchanged     both sides hit it, without a significant difference,
  inconclusive  one side only, too rarely to tell: with the N per side that
                90% power would need at the observed rate.
Significance: one-sided Fisher exact test at alpha 0.05 (modes/stats.py).
Each run is an ordinary Runner run with its own results directory; the
comparison's own files (compare.json, junit.xml, summary.txt, report.html) are rewritten
after every run, so an interrupted comparison keeps what it has.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness import log
from harness.cache import atomic_write_json
from harness.config import RunConfig, apply_overrides
from harness.errors import EXIT_CLEAN, EXIT_COULD_NOT_TEST, EXIT_FINDINGS, CouldNotTest, UsageError
from harness.modes.stats import ALPHA, fisher_greater, runs_for_power
from harness.report import REPORT_HTML, compare_report, write_report
from harness.run.junit import junit_xml
from harness.run.record import CaseResult, RunRecord, atomic_write_text
from harness.run.results import new_run_dir
from harness.run.runner import Runner

SIDES = ("base", "patched")
MIGRATION_EVIDENCE = ("pgmigrate_success", "thp_migration_success")
TESTED = (EXIT_CLEAN, EXIT_FINDINGS)  # runs that tested the kernel; 125 and 130 do not count


@dataclass
class Side:
    name: str  # base | patched
    source: str | None = None  # None: the config's
    ref: str | None = None
    patches: str | None = None

    def config(self, cfg: RunConfig, seed: int, results: Path) -> RunConfig:
        return apply_overrides(cfg, source=self.source, ref=self.ref, patches=self.patches,
                               seed=seed, results=results)

    def describe(self, cfg: RunConfig) -> str:
        parts = [f"source {self.source or cfg.source or 'default'}"]
        if self.ref or cfg.ref:
            parts.append(f"ref {self.ref or cfg.ref}")
        parts.append(f"patches {self.patches or cfg.patches or 'none'}")
        return ", ".join(parts)


@dataclass
class SideRun:
    """One run of one side: what the verdicts need from it."""

    side: str
    round: int
    seed: int
    run_id: str
    exit_code: int | None
    hits: list[tuple[str, str]]  # (title, file) of every finding, known issues included
    migrations: dict[str, int]  # MIGRATION_EVIDENCE summed over the run's workloads

    @classmethod
    def of(cls, side: str, rnd: int, record: RunRecord) -> SideRun:
        hits = sorted({(f.finding.title, f.finding.file or "") for f in record.findings})
        moved = {c: sum(w.vmstat_delta.get(c, 0) for w in record.workloads.values()) for c in MIGRATION_EVIDENCE}
        return cls(side, rnd, record.seed, record.run_id, record.exit_code, hits, moved)

    @property
    def tested(self) -> bool:
        return self.exit_code in TESTED


@dataclass
class Verdict:
    title: str
    file: str
    hits: dict[str, int]  # side -> runs that hit it
    runs: dict[str, int]  # side -> runs that tested
    verdict: str  # regression | fixed | unchanged | inconclusive
    p_value: float
    runs_for_90_power: int | None = None  # per side, at the observed rates
    note: str = ""

    def line(self) -> str:
        b, p = (f"{self.hits[s]}/{self.runs[s]}" for s in SIDES)
        need = f", {self.runs_for_90_power} runs per side for 90% power" if self.runs_for_90_power else ""
        note = f" ({self.note})" if self.note else ""
        where = f" [{self.file}]" if self.file else ""
        return f"  {self.verdict.upper():<13} base {b:>6}  patched {p:>6}  p={self.p_value:.3g}{need}  " \
               f"{self.title}{where}{note}"


def migration_shortfall(runs: list[SideRun]) -> str:
    """Why the patched side's migrations fall below the base side's range ("" if they do not):
    its median per run below the base side's smallest."""
    short = []
    for counter in MIGRATION_EVIDENCE:
        base = [r.migrations[counter] for r in runs if r.side == "base" and r.tested]
        patched = [r.migrations[counter] for r in runs if r.side == "patched" and r.tested]
        if base and patched and max(base) > 0 and statistics.median(patched) < min(base):
            short.append(f"{counter} median {statistics.median(patched):.0f} on patched < base's least {min(base)}")
    return "; ".join(short)


def verdicts(runs: list[SideRun], alpha: float = ALPHA) -> list[Verdict]:
    tested = {s: [r for r in runs if r.side == s and r.tested] for s in SIDES}
    n = {s: len(tested[s]) for s in SIDES}
    keys = sorted({h for r in runs if r.tested for h in r.hits})
    shortfall = migration_shortfall(runs)
    out = []
    for title, file in keys:
        k = {s: sum((title, file) in r.hits for r in tested[s]) for s in SIDES}
        p_regression = fisher_greater(k["patched"], n["patched"], k["base"], n["base"])
        p_fixed = fisher_greater(k["base"], n["base"], k["patched"], n["patched"])
        v = Verdict(title, file, k, n, "inconclusive", min(p_regression, p_fixed))
        if p_regression <= alpha:
            v.verdict, v.p_value = "regression", p_regression
        elif p_fixed <= alpha:
            v.verdict, v.p_value = ("inconclusive", p_fixed) if shortfall else ("fixed", p_fixed)
            v.note = f"less migration on the patched side: {shortfall}" if shortfall else ""
        elif k["base"] and k["patched"]:
            v.verdict = "unchanged"
        rates = sorted((k[s] / n[s] if n[s] else 0.0 for s in SIDES), reverse=True)
        if v.verdict != "fixed" and v.verdict != "regression":
            v.runs_for_90_power = runs_for_power(rates[0], rates[1], alpha=alpha)
        out.append(v)
    return out


def exit_code(found: list[Verdict], runs: list[SideRun]) -> int:
    """1 on any regression; 125 when a side has no run that tested; else 0."""
    if any(v.verdict == "regression" for v in found):
        return EXIT_FINDINGS
    if any(not any(r.tested for r in runs if r.side == s) for s in SIDES):
        return EXIT_COULD_NOT_TEST
    return EXIT_CLEAN


@dataclass
class Comparison:
    cfg: RunConfig
    sides: tuple[Side, Side]
    rounds: int
    results: Path
    cache_dir: Path | None = None
    seed: int | None = None  # of the first round; round i uses seed + i
    runs: list[SideRun] = field(default_factory=list)

    def __post_init__(self):
        if self.rounds < 1:
            raise UsageError(f"--runs {self.rounds}: expected at least 1")
        for side in self.sides:  # a bad path fails now, not after the other side's first run
            side.config(self.cfg, 0, Path(self.results))
        self.compare_id, self.dir = new_run_dir(Path(self.results))
        if self.seed is None:
            self.seed = random.SystemRandom().randrange(1, 2**31 - self.rounds)
        self.started = time.time()

    def run(self) -> int:
        log.info(f"compare {self.compare_id}: {self.rounds} runs per side, seeds {self.seed}.."
                 f"{self.seed + self.rounds - 1}; results in {self.dir}")
        try:
            for rnd in range(self.rounds):
                for side in self.sides:
                    self._one(side, rnd)
        finally:
            self._write()
        return exit_code(verdicts(self.runs), self.runs)

    def _one(self, side: Side, rnd: int) -> None:
        seed = self.seed + rnd
        log.info(f"compare round {rnd + 1}/{self.rounds}: {side.name}, seed {seed}")
        runner = Runner(side.config(self.cfg, seed, self.dir / side.name), self.cache_dir)
        try:
            runner.run()
        except CouldNotTest as exc:  # a side that cannot build or boot cannot be compared
            raise CouldNotTest(f"{side.name} side: {exc}") from None
        finally:
            if runner.record.exit_code is not None:
                self.runs.append(SideRun.of(side.name, rnd, runner.record))
            self._write()

    def summary(self) -> str:
        found = verdicts(self.runs)
        n = {s: sum(r.tested for r in self.runs if r.side == s) for s in SIDES}
        lines = [f"kstress compare {self.compare_id}  seeds from {self.seed}  "
                 f"runs that tested: base {n['base']}, patched {n['patched']}"]
        lines += [f"  {s.name}: {s.describe(self.cfg)}" for s in self.sides]
        for counter in MIGRATION_EVIDENCE:
            per = {s: [r.migrations[counter] for r in self.runs if r.side == s and r.tested] for s in SIDES}
            lines.append(f"  {counter} per run: " + ", ".join(
                f"{s} median {statistics.median(v):.0f} (min {min(v)}, max {max(v)})" if v else f"{s} -"
                for s, v in per.items()))
        lines += [v.line() for v in found] or ["  no findings on either side"]
        lines.append(f"exit {exit_code(found, self.runs)}; results: {self.dir}")
        return "\n".join(lines) + "\n"

    def record(self) -> RunRecord:
        """The comparison as a RunRecord of testcases, for junit.xml: one per run (classname
        kstress.compare.<side>) and one per finding's verdict (a regression fails)."""
        rec = RunRecord(run_id=self.compare_id, seed=self.seed or 0, config=self.cfg.as_dict(), started=self.started)
        for r in self.runs:
            case = CaseResult(f"round {r.round + 1:03d} seed {r.seed}", classname=f"kstress.compare.{r.side}")
            if r.exit_code == EXIT_FINDINGS:
                case.fail(f"{len(r.hits)} finding(s)", "\n".join(f"{t} [{f}]" for t, f in r.hits), "kernel")
            elif not r.tested:
                case.error(f"run {r.run_id} could not test (exit {r.exit_code})")
            case.stdout = f"run {r.run_id}"
            rec.testcases.append(case)
        for v in verdicts(self.runs):
            case = CaseResult(f"{v.title} [{v.file}]" if v.file else v.title, classname="kstress.compare.verdict")
            case.stdout = v.line().strip()
            if v.verdict == "regression":
                case.fail(f"regression: {v.title}", v.line().strip(), "regression")
            rec.testcases.append(case)
        return rec

    def _write(self) -> None:
        found = verdicts(self.runs)
        atomic_write_json(self.dir / "compare.json", {
            "compare_id": self.compare_id, "rounds": self.rounds, "seed": self.seed,
            "sides": [asdict(s) for s in self.sides], "runs": [asdict(r) for r in self.runs],
            "verdicts": [asdict(v) for v in found], "exit_code": exit_code(found, self.runs)})
        atomic_write_text(self.dir / "junit.xml", junit_xml(self.record(), suite_name="kstress-compare"))
        atomic_write_text(self.dir / "summary.txt", self.summary())
        write_report(compare_report(self.dir), self.dir / REPORT_HTML)
