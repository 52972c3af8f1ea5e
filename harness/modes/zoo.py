"""`kstress zoo`: how well kstress catches the planted bugs of zoo/.

For each mutant (harness.modes.mutant): its kernel is built (incrementally,
beside the cache's build of the same source), booted once with no workload
(the smoke run: a mutant that breaks the boot measures nothing), then run N
times with the run config, the mutant's own workload first; each run stops at
the first report its header expects. The clean kernel runs the same way and
counts false alarms: by default it is Debian's 6.12 with kstress's own fix
for the real WARNING in deferred_split_folio of 6.12.117
(examples/fix-deferred-split-6.12); a config's known issues are counted
apart, never silently. Every run drives
run.runner.Runner (its results in <zoo>/runs/<mutant>/<run-id>/) and is
journaled as one JSON line, appended and fsynced, so an interrupted zoo
resumes where it stopped (``--resume <zoo>``) and loses nothing.
"""

from __future__ import annotations

import re
import secrets
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from harness import log
from harness.config import RunConfig, WorkloadChoice, apply_overrides, load_config
from harness.errors import EXIT_COULD_NOT_TEST, EXIT_FINDINGS, EXIT_INTERRUPTED, UsageError
from harness.modes.mutant import Mutant, load_zoo, reports_of
from harness.modes.resumable import JOURNAL, PLAN, Journal, drive, load_plan, save_plan
from harness.paths import CLEAN_FIX_SERIES, ZOO_DIR
from harness.run.record import RunRecord, atomic_write_text
from harness.run.runner import Runner
from harness.stress.manifest import load_workloads

CLEAN = "clean"  # the clean kernel's row (no mutant; plan.clean_patches only)


@dataclass
class ZooPlan:
    mutants: list[str]  # in order; CLEAN for the unpatched kernel
    runs: int
    config: str
    seed: int  # run i of every row uses seed + i
    duration: int | None = None  # seconds for every workload (None: the config's)
    clean_patches: str | None = None  # the clean kernel's series (None: the config's source as it is)

    def save(self, zoo_dir: Path) -> None:
        save_plan(zoo_dir, self)

    @classmethod
    def load(cls, zoo_dir: Path) -> ZooPlan:
        return load_plan(cls, zoo_dir, "zoo")


class Zoo:
    def __init__(self, zoo_dir: Path, plan: ZooPlan, mutants: dict[str, Mutant], cache_dir: Path | None):
        self.dir = zoo_dir
        self.plan = plan
        self.mutants = mutants
        self.cache_dir = cache_dir
        self.journal = Journal(zoo_dir / JOURNAL)
        self.config = load_config(plan.config)

    def run(self) -> int:
        try:
            for name in self.plan.mutants:
                self._row(name)
        except KeyboardInterrupt:
            self._print_table()
            raise
        return self._print_table()

    def _row(self, name: str) -> None:
        done = self.journal.entries()
        mine = [e for e in done if e["mutant"] == name]
        mutant = self.mutants.get(name)
        if mutant is not None and not any(e["kind"] == "smoke" for e in mine):
            smoke = self._smoke(mutant)
            self.journal.append(smoke)
            mine.append(smoke)
        if any(e["kind"] == "smoke" and not e["ok"] for e in mine):
            return
        runs = {e["run"] for e in mine if e["kind"] == "run"}
        for i in range(self.plan.runs):
            if i not in runs:
                self.journal.append(self._run(name, mutant, i))

    def _config(self, mutant: Mutant | None, seed: int, results: Path) -> RunConfig:
        cfg = apply_overrides(self.config, patches=str(mutant.path) if mutant else self.plan.clean_patches, seed=seed,
                              results=str(results), duration=self.plan.duration)
        cfg.workloads = workload_order(cfg.workloads, mutant, [self.mutants[m] for m in self.plan.mutants
                                                               if m in self.mutants], self.plan.duration)
        return cfg

    def _smoke(self, mutant: Mutant) -> dict:
        """Boot the mutant and power it off, no workload: it must come up clean."""
        log.info(f"zoo: {mutant.name}: smoke run (boot, swap, power-off)")
        cfg = self._config(mutant, self.plan.seed, self.dir / "smoke" / mutant.name)
        cfg.workloads = []
        runner = Runner(cfg, self.cache_dir)
        entry = {"kind": "smoke", "mutant": mutant.name}
        code, error = drive(runner)
        alarms = [r.title for r in reports_of(runner.record) if not r.known_issue]
        ok = code == 0 and not alarms
        if not ok:
            log.warn(f"zoo: {mutant.name} failed its smoke run (exit {code}): {error or alarms}")
        return dict(entry, ok=ok, exit_code=code, error=error, titles=alarms, run_dir=str(runner.run_dir))

    def _run(self, name: str, mutant: Mutant | None, i: int) -> dict:
        seed = self.plan.seed + i
        log.info(f"zoo: {name}: run {i + 1}/{self.plan.runs}, seed {seed}")
        cfg = self._config(mutant, seed, self.dir / "runs" / name)
        runner = Runner(cfg, self.cache_dir, stop_when=_stop_when(mutant))
        t0 = time.monotonic()
        code, error = drive(runner)
        reports = reports_of(runner.record)
        matching = [r for r in reports if mutant and mutant.expect.matches(r)]
        match = min(matching, key=lambda r: (r.seconds is None, r.seconds or 0.0), default=None)  # the first
        others = [r for r in reports if r is not match and not r.known_issue]
        entry = {"kind": "run", "mutant": name, "run": i, "seed": seed, "exit_code": code, "error": error,
                 "detected": match is not None, "seconds": match.seconds if match else None,
                 "match": match.title if match else None, "testcase": match.testcase if match else None,
                 "detail": match.detail if match else None,
                 "others": [r.title for r in others], "known": [r.title for r in reports if r.known_issue],
                 "stopped": runner.stopped, "run_dir": str(runner.run_dir),
                 "wall_seconds": round(time.monotonic() - t0, 1)}
        verdict = f"detected after {match.seconds}s: {match.title}" if match else \
            f"not detected (exit {code}{': ' + error if error else ''})"
        log.info(f"zoo: {name}: run {i + 1}/{self.plan.runs} {verdict}")
        return entry

    def _print_table(self) -> int:
        text, code = summarize(self.plan, self.mutants, self.journal.entries(), self.dir)
        atomic_write_text(self.dir / "summary.txt", text)
        print(text, end="", flush=True)
        return code


def _stop_when(mutant: Mutant | None):
    """A mutant's run stops at the first report its header expects; the clean
    kernel's at the first that is not a known issue (a false alarm)."""
    def stop(record: RunRecord) -> str | None:
        for r in reports_of(record):
            if (mutant.expect.matches(r) if mutant else not r.known_issue):
                return f"{'expected' if mutant else 'unexpected'} report: {r.title}"
        return None
    return stop


def workload_order(chosen: list[WorkloadChoice], mutant: Mutant | None, mutants: list[Mutant],
                   duration: int | None) -> list[WorkloadChoice]:
    """The config's workloads with the mutant's own first (added if the config
    lacks it); the clean kernel gets every workload any mutant adds."""
    names = [w.name for w in chosen]
    wanted = [mutant.workload] if mutant else [m.workload for m in mutants]
    extra = [WorkloadChoice(n, duration) for n in dict.fromkeys(wanted) if n not in names]
    if mutant is None:
        return list(chosen) + extra
    own = [w for w in chosen if w.name == mutant.workload] or extra
    return own + [w for w in chosen if w.name != mutant.workload]


# ---------------------------------------------------------------- the table

_NUMBERS = re.compile(r"0x[0-9a-f]+|\d+")


def _title(t: str) -> str:
    return _NUMBERS.sub("N", t)  # one row per kind of report, not per address


def _titles(titles: list[str]) -> str:
    counts = Counter(_title(t) for t in titles)
    return "; ".join(f"{t} ({n})" if n > 1 else t for t, n in counts.most_common())


def summarize(plan: ZooPlan, mutants: dict[str, Mutant], entries: list[dict], zoo_dir: Path) -> tuple[str, int]:
    """The table, and the zoo's exit code: 0 every run detected its mutant and
    the clean kernel raised no alarm, 1 otherwise, 125 a mutant that could
    not be tested (its smoke run failed), 130 while runs are missing."""
    lines = [f"kstress zoo: {plan.runs} run(s) per kernel, config {plan.config}, seeds {plan.seed}.."
             f"{plan.seed + plan.runs - 1}" + (f", {plan.duration}s per workload" if plan.duration else ""),
             f"{'mutant':<44} {'class':<20} {'workload':<18} {'detected':>9} {'median s':>9}  reports"]
    code, missing = 0, False
    for name in plan.mutants:
        mine = [e for e in entries if e["mutant"] == name]
        runs = sorted((e for e in mine if e["kind"] == "run"), key=lambda e: e["run"])
        smoke = next((e for e in mine if e["kind"] == "smoke"), None)
        missing |= len(runs) < plan.runs and (smoke is None or smoke["ok"])
        errors = [e["error"] for e in runs if e["error"]]
        note = f"  [{len(errors)} run(s) failed: {errors[0]}]" if errors else ""
        if name == CLEAN:
            alarms = [e for e in runs if e["others"] or e["error"]]
            known = [e for e in runs if e["known"]]
            code = max(code, EXIT_FINDINGS if alarms else 0)
            label = f"clean (+{Path(plan.clean_patches).name})" if plan.clean_patches else "clean (unpatched)"
            lines.append(f"{label:<44} {'-':<20} {'-':<18} {'alarms':>9} "
                         f"{len(alarms)}/{len(runs)}  {_titles([t for e in runs for t in e['others']]) or '-'}"
                         f"{note}")
            lines.append(f"{'':<44} {'':<20} {'':<18} {'known':>9} {len(known)}/{len(runs)}  "
                         f"{_titles([t for e in runs for t in e['known']]) or '-'} (counted apart)")
            continue
        m = mutants.get(name)
        head = f"{name:<44} {m.bug_class if m else '?':<20} {m.workload if m else '?':<18}"
        if smoke is not None and not smoke["ok"]:
            code = max(code, EXIT_COULD_NOT_TEST)
            lines.append(f"{head} smoke run failed (exit {smoke['exit_code']}): "
                         f"{smoke['error'] or _titles(smoke['titles'])}")
            continue
        hits = [e for e in runs if e["detected"]]
        times = [e["seconds"] for e in hits if e["seconds"] is not None]
        median = f"{statistics.median(times):.1f}" if times else "-"
        if len(hits) < len(runs):
            code = max(code, EXIT_FINDINGS)
        reports = _titles([e["match"] for e in hits])
        if any(e["others"] for e in runs):
            reports += ("; " if reports else "") + "also: " + _titles([t for e in runs for t in e["others"]])
        lines.append(f"{head} {len(hits):>4}/{len(runs):<4} {median:>9}  {reports or '-'}{note}")
    if missing:
        code = EXIT_INTERRUPTED
        lines.append(f"incomplete: resume with kstress zoo --resume {zoo_dir}")
    return "\n".join(lines) + "\n", code


# ---------------------------------------------------------------- entry point

def _clean_patches(option: str | None) -> str | None:
    """The clean kernel's series: --clean-patches DIR, 'none' for the config's
    source as it is, by default the shipped fix for 6.12's known warning."""
    if option == "none" or (option is None and not CLEAN_FIX_SERIES.is_dir()):
        return None
    path = Path(option).expanduser().resolve() if option else CLEAN_FIX_SERIES
    if not path.exists():
        raise UsageError(f"--clean-patches {option}: no such patch or series directory")
    return str(path)


def run_zoo(config: str | None, mutant_names: str | None, runs: int | None, results: str | None,
            seed: int | None, duration: int | None, resume: str | None, cache_dir: Path | None,
            clean_patches: str | None = None) -> int:
    mutants = load_zoo(ZOO_DIR, set(load_workloads()))
    if resume:
        if any(x is not None for x in (config, mutant_names, results, seed, duration, clean_patches)):
            raise UsageError("--resume takes its plan from the zoo directory: give no other option "
                             "but --runs, to add runs")
        zoo_dir = Path(resume).expanduser().resolve()
        plan = ZooPlan.load(zoo_dir)
        if runs is not None:
            if runs < plan.runs:
                raise UsageError(f"--runs {runs}: this zoo has {plan.runs} runs per kernel already; "
                                 f"--runs with --resume only adds runs")
            plan.runs = runs
            plan.save(zoo_dir)
        unknown = [m for m in plan.mutants if m != CLEAN and m not in mutants]
        if unknown:
            raise UsageError(f"{zoo_dir / PLAN} names mutants that are no longer in {ZOO_DIR}: {', '.join(unknown)}")
    else:
        names = [n.strip() for n in mutant_names.split(",") if n.strip()] if mutant_names else \
            [*mutants, CLEAN]
        unknown = [n for n in names if n != CLEAN and n not in mutants]
        if unknown:
            raise UsageError(f"--mutants: no mutant {', '.join(unknown)} in {ZOO_DIR} "
                             f"(available: {', '.join(mutants)}, {CLEAN})")
        if runs is not None and runs < 1:
            raise UsageError(f"--runs {runs}: expected at least 1")
        if duration is not None and duration < 1:
            raise UsageError(f"--duration {duration}: expected at least 1 second")
        cfg = load_config(config or "default")
        plan = ZooPlan(mutants=list(dict.fromkeys(names)), runs=runs or 10, config=str(cfg.path),
                       seed=seed if seed is not None else 1, duration=duration,
                       clean_patches=_clean_patches(clean_patches))
        base = Path(results).expanduser().resolve() if results else cfg.results
        zoo_dir = base / time.strftime(f"zoo-%Y%m%d-%H%M%S-{secrets.token_hex(2)}")
        zoo_dir.mkdir(parents=True)
        plan.save(zoo_dir)
    log.info(f"zoo: {zoo_dir} ({', '.join(plan.mutants)}; {plan.runs} run(s) each)")
    return Zoo(zoo_dir, plan, mutants, cache_dir).run()
