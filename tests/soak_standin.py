"""A stand-in for run.runner.Runner in soak tests: it plays one iteration and
leaves the record a real run would (build, boot and each workload with its
vmstat deltas, the guest's accelerator, findings), and what it does is the
test's script, by seed. The real Runner boots in tests/test_e2e_soak.py."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from harness.console import Finding
from harness.errors import CouldNotTest
from harness.run import verdict
from harness.run.record import FindingRecord, GuestRecord, RunRecord, WorkloadRecord
from harness.run.results import new_run_dir

MIGRATED_PER_30S = 60000  # 120000 per minute: above the floors the tests give


class FakeClock:
    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            return self.t

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.t += seconds


class StandinRunner:
    """script: seed -> list of actions, each one of
        ("finding", workload, title, file, known_issue)   a console report during that workload
        ("slow", workload)                                  its evidence moves 1/600 as fast
        ("build-fails",)                                    the kernel does not build (CouldNotTest)
        ("interrupt",)                                      Ctrl-C during the run
    """

    script: dict[int, list[tuple]] = {}
    calls: list[tuple] = []
    clock: FakeClock | None = None
    step = 100.0  # seconds an iteration takes on the fake clock
    sleep = 0.0  # real seconds an iteration takes
    calls_file: Path | None = None  # for a test in another process: one JSON line per start and end

    def __init__(self, cfg, cache_dir=None, stop_when=None, kernel_key=None):
        self.cfg = cfg
        self.run_id, self.run_dir = new_run_dir(cfg.results)
        now = self.clock() if self.clock else time.time()
        self.record = RunRecord(run_id=self.run_id, seed=cfg.seed, config=cfg.as_dict(), started=now)
        self.stopped = None

    def _note(self, event: str) -> None:
        if self.calls_file:
            with open(self.calls_file, "a") as f:
                f.write(json.dumps({"event": event, "seed": self.cfg.seed}) + "\n")

    def run(self) -> int:
        cfg, rec = self.cfg, self.record
        actions = self.script.get(cfg.seed, [])
        type(self).calls.append((cfg.seed, cfg.kernel_name, [w.name for w in cfg.workloads],
                                 [w.duration for w in cfg.workloads]))
        try:
            self._note("start")
            end = time.monotonic() + self.sleep
            while time.monotonic() < end:  # in steps, as a real run waits: an interrupt arrives between them
                time.sleep(0.02)
        except KeyboardInterrupt as exc:  # as the Runner, which stops its guest and writes its record
            self.record.interrupted = str(exc) or "SIGINT"
            self._note("interrupted")
            raise
        if self.clock:
            self.clock.advance(self.step)
        if ("interrupt",) in actions:
            self.record.interrupted = "SIGINT"
            raise KeyboardInterrupt("SIGINT")
        build = rec.case("build")
        build.elapsed = 1.0
        if ("build-fails",) in actions:
            build.error("kernel build failed: mm/x.c:1: error")
            rec.exit_code = 125
            raise CouldNotTest("kernel build failed: mm/x.c:1: error")
        rec.case("boot").elapsed = 2.0
        rec.guest = GuestRecord(accel="tcg", cmdline="", tcg_relaxations="")
        uptime = 10.0
        for choice in cfg.workloads:
            name = choice.name
            slow = ("slow", name) in actions
            rec.workloads[name] = WorkloadRecord(
                kind="c", argv=[f"/usr/bin/{name}"], duration=choice.duration or 30, stresses=[],
                evidence=["pgmigrate_success"], exit_status=0, seconds=30.0, guest_uptime=uptime,
                vmstat_delta={"pgmigrate_success": MIGRATED_PER_30S // (600 if slow else 1), "compact_stall": 0})
            case = rec.case(name)
            case.classname, case.elapsed = "kstress.workload", 30.0
            for action in actions:
                if action[0] == "finding" and action[1] == name:
                    _, _, title, file, known = action
                    f = Finding(cls="warning", type="WARNING", title=title, file=file,
                                excerpt=f"[{uptime + 12.5:12.6f}] WARNING: CPU: 1 PID: 90 at {file}:1\n")
                    rec.findings.append(FindingRecord(name, known, f))
                    if known:
                        case.known_issues.append(title)
                    else:
                        case.fail(title, f.excerpt, "kernel")
            uptime += 31.0
        rec.exit_code = verdict.exit_code(rec)
        self._note("end")
        return rec.exit_code


def reset(clock: FakeClock | None = None, script: dict | None = None) -> type[StandinRunner]:
    StandinRunner.calls = []
    StandinRunner.script = script or {}
    StandinRunner.clock = clock
    StandinRunner.step, StandinRunner.sleep, StandinRunner.calls_file = 100.0, 0.0, None
    return StandinRunner
