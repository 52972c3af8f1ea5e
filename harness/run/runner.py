"""One run: one boot of one kernel through its workloads.

Data flow: RunConfig -> kernel stage (build_kernel) -> prepare_guest
(workloads, image, accelerator) -> Machine + channel -> per workload:
vmstat before, workload, vmstat after -> console analysis -> Triage ->
RunRecord (run.json, junit.xml, summary.txt, rewritten after every stage).
Soak, compare and bisect drive this class; they never copy it.
"""

from __future__ import annotations

import contextlib
import random
import shlex
import shutil
import tempfile
import time
from pathlib import Path

from harness import log
from harness.cache_entries import in_use
from harness.config import RunConfig
from harness.console import analyze_file
from harness.errors import KstressError
from harness.guest.channels import ChannelError
from harness.guest.machine import GuestError, GuestSilent
from harness.kernel import BuildRequest, KernelBuild, build_kernel, cached_build
from harness.run import verdict
from harness.run.judge import judge_workload, record_kernel
from harness.run.prepare import Planned, choose_workloads, prepare_guest
from harness.run.record import CaseResult, GuestEvent, RunRecord, WorkloadRecord, atomic_write_text
from harness.run.results import file_size, new_run_dir, write_results
from harness.run.session import GuestSession
from harness.run.triage import Triage
from harness.run.trouble import GuestTrouble
from harness.run.watch import ConsoleWatch, StopWhen
from harness.stress.vmstat import parse_vmstat

BOOT_CASE = "boot"
BUILD_CASE = "build"


def guest_uptime(proc_uptime: str) -> float | None:
    """The guest's /proc/uptime in seconds: the clock of the console's printk
    timestamps, so a report's timestamp minus this is its time into a workload."""
    try:
        return float(proc_uptime.split()[0])
    except (IndexError, ValueError):
        return None


def build_request(cfg: RunConfig) -> BuildRequest:
    return BuildRequest(source=cfg.source, ref=cfg.ref, patches=cfg.patches, base_config=cfg.base_config,
                        fragments=[str(p) for p in cfg.fragments])


class Runner:
    def __init__(self, cfg: RunConfig, cache_dir: Path | None = None, stop_when: StopWhen | None = None,
                 kernel_key: str | None = None):
        self.cfg = cfg
        self.cache_dir = cache_dir
        self.kernel_key = kernel_key  # a repro's: the cache's kernel of that key, if it still holds it
        seed = cfg.seed if cfg.seed is not None else random.SystemRandom().randrange(1, 2**31)
        self.run_id, self.run_dir = new_run_dir(cfg.results)
        self.console_log = self.run_dir / "console.log"
        self.record = RunRecord(run_id=self.run_id, seed=seed, config=cfg.as_dict())
        self.record.set_property("seed", seed)
        self.record.set_property("run_id", self.run_id)
        self.triage = Triage(cfg.known_issues)
        self.vmlinux: Path | None = None
        self.current: CaseResult | None = None  # the testcase under way, for an interrupt
        self.current_t0 = 0.0
        self.case_start = 0
        self.last_case: CaseResult | None = None  # gets what the kernel prints after the end
        self.ran: set[str] = set()  # testcases that started
        self.stop_reason = ""  # why the run stopped early, for testcases that never ran
        self.trouble = GuestTrouble(self.record.guest_events)
        self.watch = ConsoleWatch(stop_when, self.console_log, cfg.known_issues, self._stopping)
        # Per-run disks (image overlays, swap): scratch space, not results.
        self.scratch = Path(tempfile.mkdtemp(prefix="kstress-run-"))
        self.held = contextlib.ExitStack()  # what the run holds until it ends (cache entries in use)

    @property
    def seed(self) -> int:
        return self.record.seed

    @property
    def stopped(self) -> str | None:
        """Why the mode's stop_when ended the run, if it did."""
        return self.watch.reason

    def run(self) -> int:
        """Returns the exit code. Whatever happens (Ctrl-C and SIGTERM arrive
        as KeyboardInterrupt), run.json and junit.xml hold what was collected."""
        try:
            return self._run()
        except KeyboardInterrupt as exc:
            how = str(exc) or "SIGINT"
            self.record.interrupted = how
            self._end_current(f"interrupted by {how}")
            raise
        except KstressError as exc:
            first, _, rest = str(exc).partition("\n")
            self._end_current(first, rest)
            raise
        finally:
            self._finish()

    def _run(self) -> int:
        log.info(f"run {self.run_id}: results in {self.run_dir}")
        kernel = self.build()
        # Preparing the guest (workload builds, image, accelerator) is part of
        # the boot testcase: its failure is reported there.
        self._begin(BOOT_CASE, "kstress.boot")
        planned = choose_workloads(self.cfg, Path(kernel.config).read_text())
        for p in planned:  # registered first: a failure below leaves them "not run"
            self.record.case(p.workload.name).classname = "kstress.workload"
        plan = prepare_guest(self.cfg, kernel, planned, self.cache_dir)
        # Never pruned from the cache while this run boots them.
        self.held.enter_context(in_use([kernel.artifact_dir, *plan.cache_entries]))
        self.record.guest = plan.record
        self.record.set_property("accel", plan.record.accel)
        self._write()
        pending, boot, restart = list(plan.workloads), 0, None
        while True:
            with GuestSession(plan, self.console_log, self.scratch, boot, restart) as session:
                # The first boot is the boot testcase; a restart belongs to the
                # workload it is made for.
                case = self._begin(BOOT_CASE) if not boot else self._begin(pending[0].workload.name)
                if not self._boot(session, case):
                    break
                restart = None
                while pending and restart is None:
                    restart = self._workload(session, pending.pop(0))
                    if self.watch.should_stop(self.record):
                        pending.clear()
                if restart is None and not self.stopped:
                    session.shutdown()
            if restart is None or not pending:
                break
            boot += 1
            plan.record.restarts.append(restart)
            log.warn(f"restarting the guest for {pending[0].workload.name}: {restart}")
        return self._exit_code()

    # -- stages -----------------------------------------------------------

    def _begin(self, name: str, classname: str | None = None) -> CaseResult:
        case = self.current = self.record.case(name)
        if classname:
            case.classname = classname
        self.current_t0 = time.monotonic()
        self.case_start = self._console_size()  # where its part of console.log begins
        return case

    def build(self) -> KernelBuild:
        case = self._begin(BUILD_CASE)
        self.ran.add(BUILD_CASE)
        try:
            kernel = cached_build(self.kernel_key, self.cache_dir) if self.kernel_key else None
            kernel = kernel or build_kernel(build_request(self.cfg), self.cache_dir)
        finally:
            case.elapsed = time.monotonic() - self.current_t0
        if self.kernel_key and kernel.key != self.kernel_key:
            log.warn(f"kernel {kernel.key} is not the repro's {self.kernel_key}: the cache no longer holds that "
                     f"one and its inputs (source, patches, fragments, compiler) changed since")
            self.record.set_property("kernel_differs_from", self.kernel_key)
        self.vmlinux = kernel.vmlinux
        self.triage.kernel_version = kernel.meta.get("kernel_version")
        record_kernel(self.record, kernel)
        self._write()
        return kernel

    def _boot(self, session: GuestSession, case: CaseResult) -> bool:
        self.last_case = case
        self.ran.add(case.name)
        start = self._console_size()
        alive = True
        try:
            session.boot()
            session.setup(self.cfg.hotplug_dimms, self.cfg.hotplug_dimm_mb)
        except GuestError as exc:
            alive = False
            self._guest_trouble(case, exc)
        except ChannelError as exc:  # the guest is up, but no channel reaches it (sshd never came)
            alive = False
            case.error(str(exc), f"console tail:\n{self._console_tail()}")
        if case.name == BOOT_CASE:
            self._end_case(case, start)
        return alive and case.status == "passed"

    def _workload(self, session: GuestSession, p: Planned) -> str | None:
        """Run one workload; the reason to restart the guest if it hung or died."""
        w = p.workload
        channel = session.channel
        case = self.record.case(w.name)
        if self.current is not case:
            self._begin(w.name)
        entry = self.record.workloads[w.name] = WorkloadRecord(
            kind=w.kind, argv=w.argv(p.duration, self.seed), duration=p.duration,
            stresses=w.stresses, evidence=w.evidence, skipped=p.skipped)
        if p.skipped:
            case.skip(f"skipped: {p.skipped}", p.skip_type)
            log.warn(f"workload {w.name} skipped: {p.skipped}")
            self.ran.add(w.name)
            self._write()
            return None
        self.ran.add(w.name)
        self.last_case = case
        start = self.case_start
        self._write()
        log.info(f"workload {w.name}: {p.duration}s, seed {self.seed}")
        timeout = p.duration + self.cfg.workload_grace
        restart = None
        t0 = time.monotonic()
        try:
            before = parse_vmstat(channel.read_file("/proc/vmstat"))
            entry.guest_uptime = guest_uptime(channel.read_file("/proc/uptime"))
            t0 = time.monotonic()
            with self.watch.watching(self.record, self.triage.kernel_version, case, start,
                                     session.machine.terminate):
                result = channel.run(shlex.join(entry.argv), timeout=timeout,
                                     output=self.run_dir / f"{w.name}.out")
            entry.exit_status, entry.timed_out = result.exit_status, result.timed_out
            entry.seconds = round(result.duration, 2)
            case.stdout = result.output[-20000:]
            if self.watch.guest_stopped:
                entry.exit_status, entry.timed_out = None, False  # we ended it, by stopping the guest
            elif result.timed_out:
                self._hang(session, case, w.name, Path(entry.argv[0]).name, channel_works=True,
                           why=f"did not finish within {timeout:.0f}s")
                restart = f"{w.name} hung"
            else:
                judge_workload(self.record, case, entry, result.output,
                               parse_vmstat(channel.read_file("/proc/vmstat")), before)
        except (GuestError, ChannelError) as exc:
            if not self.watch.guest_stopped:
                restart = self._workload_trouble(session, case, entry, exc)
            entry.seconds = entry.seconds or round(time.monotonic() - t0, 2)
        self._end_case(case, start)
        return restart

    def _workload_trouble(self, session: GuestSession, case: CaseResult, entry: WorkloadRecord,
                          exc: GuestError | ChannelError) -> str:
        """A workload whose guest hung or died: the reason to restart the guest."""
        name = case.name
        if isinstance(exc, GuestSilent):
            self._hang(session, case, name, Path(entry.argv[0]).name, channel_works=False, why=str(exc))
            return f"{name}: guest silent"
        # A channel that fails because QEMU is gone is the guest's death.
        death = session.machine.death() if isinstance(exc, ChannelError) else exc
        if death is None:
            raise exc
        self._guest_trouble(case, death)
        return f"{name}: {type(death).__name__}"

    def _stopping(self, reason: str) -> None:
        self.stop_reason = reason
        self.record.set_property("stopped", reason)
        log.info(f"stopping the run: {reason}")

    def _hang(self, session: GuestSession, case: CaseResult, workload: str, comm: str,
              channel_works: bool, why: str) -> None:
        """A hang finding whose title names where the task is stuck."""
        self.record.guest_events.append(GuestEvent(case.name, "hang", why))
        report = session.diagnose(comm, workload, channel_works)
        text = f"{workload} {why}; SysRq w and l by {report.how}\n\n{report.text[-60000:]}"
        case.fail(report.title, text, "hang")
        self.triage.add_hang(case, report.title, report.function, report.start, text)

    # -- findings and guest trouble ---------------------------------------

    def _console_size(self) -> int:
        return file_size(self.console_log)

    def _end_case(self, case: CaseResult, start: int) -> None:
        case.elapsed = time.monotonic() - self.current_t0
        self._attribute(case, start, self._console_size())
        self._write()

    def _attribute(self, case: CaseResult, start: int, end: int) -> None:
        if self._console_size():
            # Symbolized with the build's vmlinux: file:line and inlined frames.
            findings = analyze_file(self.console_log, vmlinux=self.vmlinux)
            self.triage.attribute(findings, case, start, end)
            self.record.findings = self.triage.records

    def _guest_trouble(self, case: CaseResult, exc: GuestError) -> None:
        self.trouble.record(case, exc, self._console_tail())

    def _console_tail(self, size: int = 6000) -> str:
        try:
            with open(self.console_log, "rb") as f:
                f.seek(max(0, self._console_size() - size))
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    # -- the end ------------------------------------------------------------

    def _end_current(self, message: str, text: str = "") -> None:
        """The testcase under way when the run stopped: our error, with its real time."""
        case = self.current
        if case is None:
            return
        if case.status == "passed":
            case.error(message, text)
        if not case.elapsed:
            case.elapsed = time.monotonic() - self.current_t0
        self.stop_reason = message

    def _exit_code(self) -> int:
        self.trouble.settle()
        return verdict.exit_code(self.record)

    def _write(self) -> None:
        write_results(self.run_dir, self.record)

    def _finish(self) -> None:
        # What the kernel printed after the last case's end (during shutdown,
        # or while we were interrupted) belongs to the last case that ran.
        if self.last_case is not None:
            try:
                self._attribute(self.last_case, 0, 1 << 62)
            except Exception as exc:  # never lose the record over analysis
                log.warn(f"console analysis failed: {exc}")
        self.trouble.settle()
        for c in self.record.testcases:
            if c.name not in self.ran and c.status == "passed":
                c.skip(f"not run: {self.stop_reason or 'an earlier testcase ended the run'}", "not-run")
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.held.close()
        self.record.status = "finished"
        self.record.exit_code = self._exit_code()
        self.record.finished = time.time()
        self._write()
        atomic_write_text(self.run_dir / "summary.txt", self.summary())

    def summary(self) -> str:
        return verdict.summary(self.record, str(self.run_dir))
