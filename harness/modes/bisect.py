"""`kstress bisect` and `kstress check`: which patch, or which commit, brought
a finding in.

A step builds one candidate (the first k patches of a series, or one commit)
and runs the config on it until the **target** finding shows (bad) or N runs
stay clean of it (good). The target is matched by title and file, not by the
full stack signature: the same race reached through compaction instead of
move_pages has other frames. A report's own site (the file:line of "kernel
BUG at" or "WARNING: ... at") matches too, whatever function the title names:
one BUG_ON in swapops.h is reached through a fault, a fork or a zap, and each
names another function. Other findings decide nothing, except that a run
another crash cut short (the guest died or hung before the target showed) is
inconclusive: it is not one of the N clean runs. A candidate that does not
build or whose patches do not apply is skipped.

Races make "good" a probability: the bad end is run N times first, its hit
rate r measured, and every good verdict carries a miss chance (1 - r)^runs.
Candidates rebuild incrementally: a series uses the source's one working copy
(patches 1..k applied and reverted as needed); a commit range is checked out
in kstress's own clone of the repository (never the user's checkout), which
the build then syncs into one working copy, so only changed files recompile.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness import log
from harness.cache import atomic_write_json, cache_root
from harness.config import RunConfig, apply_overrides
from harness.console.model import Finding
from harness.errors import EXIT_CLEAN, EXIT_COULD_NOT_TEST, EXIT_FINDINGS, CouldNotTest, UsageError
from harness.kernel.patches import load_series
from harness.run.junit import junit_xml
from harness.run.record import CaseResult, RunRecord, atomic_write_text
from harness.run.results import new_run_dir
from harness.run.runner import Runner

MATCH_FIELDS = ("site", "title", "file")


@dataclass
class Target:
    """The finding a step looks for: its title (a regular expression when
    ``regex``) and, unless ``match`` leaves it out, its source file; or, when
    ``match`` has "site", any report from the same statement (``site``)."""

    title: str
    file: str | None = None
    match: tuple[str, ...] = MATCH_FIELDS
    regex: bool = False
    site: str | None = None  # "include/linux/swapops.h:505": where the report says it fired

    def matches(self, f: Finding) -> bool:
        if "site" in self.match and self.site and site_of(f) == self.site:
            return True
        ok_title = re.search(self.title, f.title) is not None if self.regex else f.title == self.title
        ok_file = "file" not in self.match or not self.file or f.file == self.file
        return ok_title and ok_file

    def describe(self) -> str:
        where = f" [{self.file}]" if self.file and "file" in self.match else ""
        also = f" or any report at {self.site}" if self.site and "site" in self.match else ""
        return f"{'/' + self.title + '/' if self.regex else self.title}{where}{also}"

    @classmethod
    def of(cls, f: Finding) -> Target:
        return cls(f.title, f.file, site=site_of(f))

    @classmethod
    def from_run(cls, run_dir: Path) -> Target:
        """The first kernel finding of a reference failing run (its run.json)."""
        path = Path(run_dir) / "run.json"
        try:
            findings = json.loads(path.read_text())["findings"]
        except (OSError, ValueError, KeyError) as exc:
            raise UsageError(f"--target-run {run_dir}: cannot read its run.json ({exc})") from None
        for f in findings:  # run.json's findings are flat: the Finding's fields plus testcase
            if not f.get("informational"):
                return cls.of(Finding(f.get("cls", ""), f.get("type", ""), f["title"], file=f.get("file"),
                                      line=f.get("line")))
        raise UsageError(f"--target-run {run_dir}: the run has no kernel finding to bisect")


@dataclass
class StepRun:
    run_id: str
    seed: int
    exit_code: int | None
    hit: bool  # the target showed
    others: list[str]  # titles of the findings that are not the target
    cut_short: str = ""  # why the run ended before it could show the target (another crash)

    @property
    def tested(self) -> bool:
        """Ran the kernel long enough to count: hit, or clean for its whole length."""
        return self.exit_code in (EXIT_CLEAN, EXIT_FINDINGS) and (self.hit or not self.cut_short)


@dataclass
class Step:
    index: int  # -1: the good end
    label: str
    verdict: str = ""  # bad | good | skip
    reason: str = ""
    runs: list[StepRun] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def hits(self) -> int:
        return sum(r.hit for r in self.runs)

    @property
    def tested(self) -> int:
        return sum(r.tested for r in self.runs)


def site_of(f: Finding) -> str | None:
    """file:line of the statement a report names itself ("kernel BUG at
    include/linux/swapops.h:505!", "WARNING: ... at mm/migrate.c:300"), if any."""
    return f"{f.file}:{f.line}" if f.file and f.line is not None else None


def first_target(record: RunRecord, target: Target | None) -> tuple[bool, Target | None]:
    """(hit, target): with no target yet, the run's first kernel finding becomes it."""
    kernel = [f.finding for f in record.findings if not f.finding.informational]
    if target is None and kernel:
        target = Target.of(kernel[0])
    return (target is not None and any(target.matches(f) for f in kernel)), target


def cut_short(record: RunRecord) -> str:
    """Why the guest stopped before the workloads' end: it died, hung or went silent."""
    return "; ".join(f"{e.event} during {e.during}" for e in record.guest_events)


class Checker:
    """Runs one candidate's config until the target shows or ``runs`` runs stay
    clean of it. Runs another crash cut short do not count, and are replaced by
    more runs, up to twice ``runs`` in all."""

    def __init__(self, runs: int, results: Path, cache_dir: Path | None, seed: int):
        if runs < 1:
            raise UsageError(f"--runs {runs}: expected at least 1")
        self.runs, self.results, self.cache_dir, self.seed = runs, results, cache_dir, seed

    def check(self, step: Step, cfg: RunConfig, target: Target | None, stop_at_hit: bool = True) -> Target | None:
        t0 = time.monotonic()
        for j in range(2 * self.runs):
            if step.tested >= self.runs:
                break
            seed = self.seed + j  # the same seeds at every step
            runner = Runner(apply_overrides(cfg, seed=seed, results=self.results / f"step{step.index:+03d}"),
                            self.cache_dir)
            try:
                runner.run()
            except CouldNotTest as exc:
                if runner.record.kernel is None:  # no kernel: the candidate does not build or apply
                    step.verdict, step.reason = "skip", str(exc).splitlines()[0]
                    break
            hit, target = first_target(runner.record, target)
            others = [f.finding.title for f in runner.record.findings if not (target and target.matches(f.finding))]
            run = StepRun(runner.record.run_id, seed, runner.record.exit_code, hit, others, cut_short(runner.record))
            step.runs.append(run)
            outcome = ("target hit" if hit else f"inconclusive, cut short by {run.cut_short}" if run.cut_short
                       else "clean of the target")
            log.info(f"step {step.label}: run {j + 1} (of {self.runs} needed) seed {seed}: {outcome} "
                     f"(exit {runner.record.exit_code})")
            if hit and stop_at_hit:
                break
        if not step.verdict:
            if step.hits:
                step.verdict = "bad"
            elif step.tested == 0:
                cut = "; ".join(sorted({r.cut_short for r in step.runs if r.cut_short}))
                step.verdict, step.reason = "skip", (f"another crash cut every run short ({cut})" if cut
                                                     else "no run could test the kernel")
            else:
                step.verdict = "good"
        step.seconds = round(time.monotonic() - t0, 1)
        return target


# -- candidates ---------------------------------------------------------------

class SeriesCandidates:
    """Candidate k (0-based) applies patches 1..k+1 of a series; the good end applies none."""

    def __init__(self, series_dir: Path):
        self.patches = load_series(series_dir)
        self.labels = [f"{i + 1:02d} {p.name}" for i, p in enumerate(self.patches)]

    def config(self, cfg: RunConfig, index: int, scratch: Path) -> RunConfig:
        """The config of candidate ``index``, its series prefix written under ``scratch``."""
        out = apply_overrides(cfg)
        out.patches = None  # the series replaces the config's patches
        if index >= 0:
            d = scratch / f"series-{index + 1:02d}"
            d.mkdir(parents=True, exist_ok=True)
            for p in self.patches[:index + 1]:
                (d / p.name).write_bytes(p.data)
            (d / "series").write_text("".join(p.name + "\n" for p in self.patches[:index + 1]))
            out.patches = str(d)
        return out


def _git(repo: Path, *args: str, check: bool = True) -> str:
    res = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if check and res.returncode != 0:
        raise CouldNotTest(f"git {' '.join(args)} in {repo}: {res.stderr.strip().splitlines()[-1:]}")
    return res.stdout.strip()


class CommitCandidates:
    """Candidate i is the i-th commit after ``good`` on the ancestry path to ``bad``,
    checked out in kstress's own clone (the user's checkout is never touched)."""

    def __init__(self, repo: Path, good: str, bad: str, clone: Path):
        repo = Path(repo).resolve()
        if subprocess.run(["git", "-C", str(repo), "rev-parse", "--git-dir"], capture_output=True).returncode:
            raise UsageError(f"--source {repo}: not a git repository")
        self.good, self.bad = (self._commit(repo, r, name) for r, name in ((good, "--good"), (bad, "--bad")))
        if subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", self.good, self.bad]).returncode:
            raise UsageError(f"bad range: --good {good} is not an ancestor of --bad {bad}")
        commits = _git(repo, "rev-list", "--reverse", "--ancestry-path", f"{self.good}..{self.bad}").split()
        if not commits:
            raise UsageError(f"bad range: no commits between --good {good} and --bad {bad}")
        self.commits = commits
        self.labels = [f"{c[:12]} {_git(repo, 'log', '-1', '--format=%s', c)}" for c in commits]
        self.clone = clone
        if not (clone / ".git").is_dir():
            log.info(f"cloning {repo} into {clone} (bisection's own checkout)")
            clone.parent.mkdir(parents=True, exist_ok=True)
            res = subprocess.run(["git", "clone", "--quiet", "--shared", "--no-checkout", str(repo), str(clone)],
                                 capture_output=True, text=True)
            if res.returncode:
                raise CouldNotTest(f"git clone {repo}: {res.stderr.strip()}")

    @staticmethod
    def _commit(repo: Path, ref: str, option: str) -> str:
        sha = _git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", check=False)
        if not sha:
            raise UsageError(f"{option} {ref}: no such commit in {repo}")
        return sha

    def config(self, cfg: RunConfig, index: int, scratch: Path | None = None) -> RunConfig:
        commit = self.good if index < 0 else self.commits[index]
        # git rewrites only the files that differ, keeping the others' mtimes:
        # the build's working copy sync and make then redo only those.
        _git(self.clone, "checkout", "--quiet", "--force", "--detach", commit)
        out = apply_overrides(cfg, source=str(self.clone))
        out.ref = None
        return out


# -- the bisection ----------------------------------------------------------------

class Bisection:
    def __init__(self, cfg: RunConfig, candidates, target: Target | None, runs: int, results: Path,
                 cache_dir: Path | None = None, seed: int | None = None):
        self.cfg, self.candidates, self.target = cfg, candidates, target
        self.bisect_id, self.dir = new_run_dir(Path(results))
        seed = seed if seed is not None else random.SystemRandom().randrange(1, 2**31 - runs)
        self.checker = Checker(runs, self.dir, cache_dir, seed)
        self.steps: list[Step] = []
        self.bad_rate: float | None = None
        self.first_bad: int | None = None
        self.unresolved: list[int] = []  # skipped candidates the first bad may be among
        self.started = time.time()

    @property
    def labels(self) -> list[str]:
        return self.candidates.labels

    def run(self) -> int:
        n = len(self.labels)
        log.info(f"bisect {self.bisect_id}: {n} candidates, {self.checker.runs} runs per step; results in {self.dir}")
        try:
            bad_end = self._step(n - 1, stop_at_hit=False)  # the whole N: its rate states the confidence
            if bad_end.verdict != "bad":
                raise CouldNotTest(f"the bad end ({self.labels[-1]}) did not reproduce "
                                   f"{self.target.describe() if self.target else 'any finding'} in "
                                   f"{len(bad_end.runs)} runs{': ' + bad_end.reason if bad_end.reason else ''}")
            self.bad_rate = bad_end.hits / max(1, bad_end.tested)
            if self._step(-1).verdict == "bad":
                raise UsageError(f"the good end reproduces {self.target.describe()}: it is not good")
            self._search(n)
        finally:
            self._write()
        return EXIT_FINDINGS if self.first_bad is not None else EXIT_COULD_NOT_TEST

    def _search(self, n: int) -> None:
        good, bad = -1, n - 1
        skipped: set[int] = set()
        while True:
            untested = [i for i in range(good + 1, bad) if i not in skipped]
            if not untested:
                break
            mid = (good + bad) // 2
            pick = min(untested, key=lambda i: (abs(i - mid), i))  # nearest the middle, as git bisect skip
            step = self._step(pick)
            if step.verdict == "bad":
                bad = pick
            elif step.verdict == "good":
                good = pick
            else:
                skipped.add(pick)
        self.unresolved = sorted(i for i in skipped if good < i < bad)
        self.first_bad = bad

    def _step(self, index: int, stop_at_hit: bool = True) -> Step:
        label = "good end (no patches / --good)" if index < 0 else self.labels[index]
        step = Step(index, label)
        self.steps.append(step)
        try:
            cfg = self.candidates.config(self.cfg, index, self.dir / "series")
            self.target = self.checker.check(step, cfg, self.target, stop_at_hit)
        except CouldNotTest as exc:
            step.verdict, step.reason = "skip", str(exc).splitlines()[0]
        log.info(f"step {label}: {step.verdict.upper()} ({step.hits}/{len(step.runs)} runs hit the target"
                 f"{'; ' + step.reason if step.reason else ''})")
        self._write()
        return step

    def miss_chance(self) -> float:
        """The chance that at least one good verdict was a miss, at the bad end's rate."""
        if not self.bad_rate:
            return 1.0
        ok = 1.0
        for s in self.steps:
            if s.verdict == "good":
                ok *= 1 - (1 - self.bad_rate) ** s.tested
        return 1 - ok

    def summary(self) -> str:
        lines = [f"kstress bisect {self.bisect_id}  target: {self.target.describe() if self.target else '?'}"]
        if self.bad_rate is not None:
            lines.append(f"  bad end hit rate {self.bad_rate:.2f}; chance a good verdict was a miss: "
                         f"{self.miss_chance():.1%}")
        lines.append(f"  {'step':<40} {'verdict':<7} hits/runs  seconds  other findings")
        for s in self.steps:
            others = sorted({t for r in s.runs for t in r.others})
            lines.append(f"  {s.label[:40]:<40} {s.verdict:<7} {s.hits:>4}/{len(s.runs):<4} {s.seconds:8.0f}  "
                         f"{'; '.join(others) or '-'}{'  (' + s.reason + ')' if s.reason else ''}")
        if self.first_bad is not None:
            lines.append(f"first bad: {self.labels[self.first_bad]}  (confidence {1 - self.miss_chance():.1%})")
            if self.unresolved:
                lines.append("  or one of the skipped before it: " + ", ".join(self.labels[i] for i in self.unresolved))
        lines.append(f"results: {self.dir}")
        return "\n".join(lines) + "\n"

    def record(self) -> RunRecord:
        rec = RunRecord(run_id=self.bisect_id, seed=self.checker.seed, config=self.cfg.as_dict(), started=self.started)
        for s in self.steps:
            case = CaseResult(f"step {s.label}", classname="kstress.bisect")
            case.stdout = "\n".join(f"run {r.run_id} seed {r.seed} exit {r.exit_code} hit {r.hit}" for r in s.runs)
            if s.verdict == "skip":
                case.skip(f"skipped: {s.reason}")
            rec.testcases.append(case)
        verdict = CaseResult("first bad", classname="kstress.bisect")
        if self.first_bad is not None:
            verdict.fail(f"first bad: {self.labels[self.first_bad]}", self.summary(), "bisect")
        else:
            verdict.error("no first bad found", self.summary())
        rec.testcases.append(verdict)
        if self.target:
            rec.set_property("target", self.target.describe())
        return rec

    def _write(self) -> None:
        atomic_write_json(self.dir / "bisect.json", {
            "bisect_id": self.bisect_id, "target": asdict(self.target) if self.target else None,
            "candidates": self.labels, "runs_per_step": self.checker.runs, "seed": self.checker.seed,
            "bad_rate": self.bad_rate, "miss_chance": self.miss_chance() if self.bad_rate is not None else None,
            "first_bad": self.labels[self.first_bad] if self.first_bad is not None else None,
            "unresolved": [self.labels[i] for i in self.unresolved],
            "steps": [asdict(s) for s in self.steps]})
        atomic_write_text(self.dir / "junit.xml", junit_xml(self.record(), suite_name="kstress-bisect"))
        atomic_write_text(self.dir / "summary.txt", self.summary())


def bisect_clone_dir(repo: Path) -> Path:
    """kstress's own clone of ``repo``: one per repository, so its working copy
    and build directory are reused by later bisections."""
    return cache_root() / "bisect" / ("repo-" + hashlib.sha256(str(Path(repo).resolve()).encode()).hexdigest()[:16])
