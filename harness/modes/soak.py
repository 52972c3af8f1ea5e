"""`kstress soak`: a config's kernels and workloads run again and again for
a given time, and `kstress merge` of the shards of one soak.

Iterations follow the plan's matrix (modes/soak_plan.py: kernel, workload
rotation and seed by iteration index; a shard takes every n-th). Each
iteration is one ordinary Runner run, a fresh boot (so a crash never
carries over), in <soak>/runs/<run-id>/. A new iteration starts only while
the time left holds one (the median iteration so far; the first always
starts), so a soak ends within its duration rather than one iteration past
it. With --jobs N, N threads each drive their own Runner.

Every iteration is journaled when it starts and when it ends (its digest,
modes/soak_record.py), each line appended and fsynced, and soak.json,
summary.txt and junit.xml are rewritten from the journal after each one
(modes/soak_report.py): a soak killed even by SIGKILL keeps every finished
iteration, and `--resume <soak>` runs the rest of its time, redoing only
iterations that never finished.
"""

from __future__ import annotations

import os
import random
import secrets
import statistics
import threading
import time
from pathlib import Path
from typing import Callable

from harness import log
from harness.config import RunConfig, apply_overrides, load_config
from harness.errors import UsageError
from harness.modes.guests import GuestThreads
from harness.modes.progress import ProgressLine
from harness.modes.resumable import JOURNAL, Journal, drive, load_plan, save_plan
from harness.modes.soak_plan import IterationSpec, SoakPlan, file_sha256
from harness.modes.soak_record import digest
from harness.modes.soak_report import Shard, SoakReport
from harness.run.runner import Runner
from harness.stress.manifest import load_workloads

QEMU_OVERHEAD_MB = 256  # QEMU itself and its TCG translation cache, beside the guest's memory
JOBS_RULE = (f"each guest takes guest.cpus host cores and guest.memory_mb plus its hot-added DIMMs plus "
             f"{QEMU_OVERHEAD_MB} MiB of the host's MemAvailable")


# ---------------------------------------------------------------- the host's room

def mem_available_mb() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    return 0


def host_capacity(cfg: RunConfig, cores: int | None = None, available_mb: int | None = None) -> tuple[int, str]:
    """How many guests of ``cfg`` this host runs at once (never less than one), and why."""
    cores = cores if cores is not None else len(os.sched_getaffinity(0))
    available_mb = available_mb if available_mb is not None else mem_available_mb()
    per_guest = cfg.memory_mb + cfg.hotplug_dimms * cfg.hotplug_dimm_mb + QEMU_OVERHEAD_MB
    by_cpu, by_memory = cores // cfg.cpus, available_mb // per_guest
    why = (f"{cores} cores / {cfg.cpus} vCPUs per guest = {by_cpu}; {available_mb} MiB available / "
           f"{per_guest} MiB per guest = {by_memory}")
    return max(1, min(by_cpu, by_memory)), why


def check_jobs(jobs: int, cfg: RunConfig, cores: int | None = None, available_mb: int | None = None) -> None:
    if jobs < 1:
        raise UsageError(f"--jobs {jobs}: expected at least 1")
    limit, why = host_capacity(cfg, cores, available_mb)
    if jobs > limit:
        raise UsageError(f"--jobs {jobs}: this host runs at most {limit} guest(s) of {cfg.path.name} at once ({why})")


def floors_by_accel(workloads: dict) -> dict[str, dict[str, dict[str, float]]]:
    """accel -> workload -> counter -> per-minute floor, from the manifests' evidence_floors."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, w in sorted(workloads.items()):
        for accel, floors in w.evidence_floors.items():
            out.setdefault(accel, {})[name] = dict(floors)
    return out


# ---------------------------------------------------------------- the loop

class Soak:
    def __init__(self, soak_dir: Path, plan: SoakPlan, cfg: RunConfig, cache_dir: Path | None, jobs: int = 1,
                 runner: Callable[..., Runner] | None = None, clock: Callable[[], float] = time.time):
        self.dir, self.plan, self.cfg, self.cache_dir, self.jobs = soak_dir, plan, cfg, cache_dir, jobs
        self.make_runner, self.clock = runner or Runner, clock
        self.journal = Journal(soak_dir / JOURNAL)
        self.floors = floors_by_accel(load_workloads())
        earlier = Shard.of(plan, soak_dir, self.journal.entries())
        self.done = {it.index for it in earlier.iterations}
        self.spent = earlier.elapsed  # seconds of the earlier sessions
        self.lengths = [it.end - it.start for it in earlier.iterations]
        self.indices = (i for i in plan.indices() if i not in self.done)
        self.lock = threading.Lock()
        self.guests = GuestThreads(jobs, self._worker)
        self.running: set[int] = set()
        self.broken: dict[str, str] = {}  # kernel -> its build failure: not tried again this session
        self.session_start = clock()
        # A resumed soak's progress counts the earlier sessions' findings from its first line.
        self.report: SoakReport | None = SoakReport(soak_dir.name, soak_dir, [earlier], self.floors) \
            if earlier.iterations else None
        self.failure: BaseException | None = None  # a worker thread's unexpected exception
        self.progress = ProgressLine(self.progress_text)

    def elapsed(self) -> float:
        return self.spent + self.clock() - self.session_start

    def left(self) -> float:
        return self.plan.duration - self.elapsed()

    def run(self) -> int:
        self.session_start = self.clock()
        self.journal.append({"event": "session", "time": self.session_start, "jobs": self.jobs, "pid": os.getpid()})
        log.info(f"soak {self.dir.name}: {self.left():.0f}s left, kernels {', '.join(self.plan.kernels)}, "
                 f"workloads {', '.join(self.plan.workloads)}, shard {self.plan.shard}/{self.plan.shards}, "
                 f"{self.jobs} guest(s) at once; results in {self.dir}")
        self.progress.start()
        status = "interrupted"
        try:
            self.guests.run()
            status = "finished"
        finally:
            self.progress.stop()
            self.journal.append({"event": "stop", "time": self.clock(), "status": status})
            self._write()
        if self.failure is not None:
            raise self.failure
        return self.report.exit_code()

    def _worker(self) -> None:
        while not self.guests.stop.is_set():
            spec = self._next()
            if spec is None:
                return
            try:
                self._iteration(spec)
            except KeyboardInterrupt:  # unfinished: journaled as started only, redone on resume
                if threading.current_thread() is threading.main_thread():
                    raise
                return
            except BaseException as exc:  # noqa: BLE001 - a bug: stop the soak and raise it in the main thread
                self.failure = self.failure or exc
                self.guests.stop.set()
                if threading.current_thread() is threading.main_thread():
                    raise
                return
            finally:
                with self.lock:
                    self.running.discard(spec.index)

    def _next(self) -> IterationSpec | None:
        """The next iteration, if the time left holds one."""
        with self.lock:
            typical = statistics.median(self.lengths) if self.lengths else 0.0
            if self.left() <= 0 or self.left() < typical or len(self.broken) == len(self.plan.kernels):
                return None
            for index in self.indices:
                spec = self.plan.spec(index)
                if spec.kernel not in self.broken:
                    self.running.add(index)
                    return spec
            return None

    def _iteration(self, spec: IterationSpec) -> None:
        cfg = apply_overrides(self.cfg.for_kernel(spec.kernel), seed=spec.seed, results=self.dir / "runs",
                              duration=self.plan.workload_duration)
        cfg.workloads = cfg.workloads[spec.turn:] + cfg.workloads[:spec.turn]
        log.info(f"soak: iteration {spec.index}: kernel {spec.kernel}, seed {spec.seed}, "
                 f"workloads {', '.join(spec.workloads)}")
        start = self.clock()
        self.journal.append({"event": "start", "time": start, "index": spec.index, "seed": spec.seed,
                             "kernel": spec.kernel})
        runner = self.make_runner(cfg, self.cache_dir)
        with self.guests.drive(runner):
            code, error = drive(runner)
        record = runner.record
        floors = self.floors.get(record.guest.accel if record.guest else "", {})
        it = digest(spec, self.plan.shard, record, str(runner.run_dir), code, error, start, self.clock(), floors)
        self.journal.append({"event": "end", "time": it.end, "iteration": it.as_dict()})
        with self.lock:
            self.running.discard(spec.index)
            self.lengths.append(it.end - it.start)
            if it.build_failed:
                self.broken[spec.kernel] = error or "the kernel did not build"
                log.warn(f"soak: kernel {spec.kernel} did not build; its iterations are left out until a resume")
        self._write()
        if not self.progress.tty:
            self.progress.show()

    def _write(self) -> None:
        with self.lock:
            shard = Shard.of(self.plan, self.dir, self.journal.entries(), now=self.clock())
            self.report = SoakReport(self.dir.name, self.dir, [shard], self.floors)
            self.report.write()

    def progress_text(self) -> str:
        r = self.report
        done = len(r.iterations) if r else len(self.done)
        findings = r.findings if r else []
        new = sum(1 for g in findings if not g.known_issue)
        return (f"soak: {_clock(self.elapsed())} elapsed, {_clock(max(0.0, self.left()))} left; "
                f"{done} iteration(s) done, {len(self.running)} running; "
                f"{len(findings)} finding(s), {new} not known issues")


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


# ---------------------------------------------------------------- entry points

def new_soak_dir(base: Path, plan: SoakPlan) -> Path:
    shard = f"-shard{plan.shard}of{plan.shards}" if plan.shards > 1 else ""
    soak_dir = base / time.strftime(f"soak-%Y%m%d-%H%M%S-{secrets.token_hex(2)}{shard}")
    soak_dir.mkdir(parents=True)
    return soak_dir


def prepare(config: str | None, duration: int | None, jobs: int, shard: tuple[int, int] | None,
            results: str | None, resume: str | None, seed: int | None,
            workload_duration: int | None, kernel: dict[str, str] | None = None) -> tuple[Path, SoakPlan, RunConfig]:
    """The soak directory, its plan (new, or a resumed soak's) and its config; every
    option is checked before a new directory is made. ``kernel``: --source, --ref
    and --patches, kept in the plan so that a resume and every shard build the same."""
    if resume:
        if any(x is not None for x in (config, shard, results, seed, workload_duration)) or kernel:
            raise UsageError("--resume takes its plan from the soak directory: give no config, --shard, --seed, "
                             "--workload-duration, --source/--ref/--patches or --results (--duration sets a new "
                             "total, --jobs the guests)")
        soak_dir = Path(resume).expanduser().resolve()
        plan = load_plan(SoakPlan, soak_dir, "soak")
        cfg = apply_overrides(load_config(plan.config), **plan.kernel_overrides)
        if file_sha256(cfg.path) != plan.config_sha256:
            raise UsageError(f"{plan.config} changed since the soak began: a resume runs the config it began with")
        check_jobs(jobs, cfg)
        if duration is not None:
            if duration < plan.duration:
                raise UsageError(f"--duration {duration}s: this soak has {plan.duration}s already; with --resume "
                                 f"it only lengthens the soak")
            plan.duration = duration
            save_plan(soak_dir, plan)
        return soak_dir, plan, cfg
    if config is None:
        raise UsageError("soak: give a run config (a file or a shipped config's name), or --resume SOAK_DIR")
    if duration is None:
        raise UsageError("soak: --duration is required (e.g. 8h, 90m, 1800s)")
    if shard and shard[1] > 1 and seed is None:
        raise UsageError("--shard needs --seed: every shard of one soak takes its iterations from the same seeds")
    if workload_duration is not None and workload_duration < 1:
        raise UsageError(f"--workload-duration {workload_duration}: expected at least 1 second")
    cfg = apply_overrides(load_config(config), **(kernel or {}))
    check_jobs(jobs, cfg)
    seed = seed if seed is not None else random.SystemRandom().randrange(1, 2**31 - 2**20)
    plan = SoakPlan.of(cfg, seed, duration, shard or (1, 1), workload_duration)
    plan.kernel_overrides = dict(kernel or {})
    soak_dir = new_soak_dir(Path(results).expanduser().resolve() if results else cfg.results, plan)
    save_plan(soak_dir, plan)
    return soak_dir, plan, cfg


def make_soak(config: str | None, duration: int | None, jobs: int, shard: tuple[int, int] | None,
              results: str | None, resume: str | None, seed: int | None, workload_duration: int | None,
              cache_dir: Path | None, kernel: dict[str, str] | None = None) -> Soak:
    """A new soak, or a resumed one, ready to run."""
    soak_dir, plan, cfg = prepare(config, duration, jobs, shard, results, resume, seed, workload_duration, kernel)
    return Soak(soak_dir, plan, cfg, cache_dir, jobs)


def merge_soaks(dirs: list[str], output: str | None) -> SoakReport:
    """One report of the shards of one soak (each a soak directory)."""
    shards: list[Shard] = []
    for d in dirs:
        directory = Path(d).expanduser().resolve()
        plan = load_plan(SoakPlan, directory, "soak", option="merge")
        if shards:
            why = shards[0].plan.same_soak(plan)
            if why:
                raise UsageError(f"merge: {directory} is not a shard of the soak of {shards[0].dir}: {why}")
            if plan.shard in {s.plan.shard for s in shards}:
                raise UsageError(f"merge: {directory} is shard {plan.shard}/{plan.shards} again")
        shards.append(Shard.of(plan, directory, Journal(directory / JOURNAL).entries()))
    shards.sort(key=lambda s: s.plan.shard)
    if output:
        out = Path(output).expanduser().resolve()
        out.mkdir(parents=True, exist_ok=True)
    else:
        out = Path(shards[0].dir).parent / time.strftime(f"soak-merged-%Y%m%d-%H%M%S-{secrets.token_hex(2)}")
        out.mkdir(parents=True)
    report = SoakReport(out.name, out, shards, floors_by_accel(load_workloads()))
    report.write()
    return report
