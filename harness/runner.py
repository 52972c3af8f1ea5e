"""One run: build the kernel, boot it, stress it, read the console, report.

Data flow: RunConfig -> build_kernel -> build_workload/build_initramfs ->
Guest (QEMU + serial channel) -> per workload: vmstat before, workload,
vmstat after -> console analysis over console.log -> RunReport (run.json,
junit.xml). The report is rewritten after every stage.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import shlex
import time
from pathlib import Path
from typing import Any

from . import log
from .config import RunConfig, known_issue_for
from .errors import EXIT_CLEAN, EXIT_COULD_NOT_TEST, EXIT_FINDINGS, CouldNotTest, KstressError
from .report import RunReport
from .vmstat import deltas, missing_evidence, parse_vmstat

BOOT_CASE = "boot"
BUILD_CASE = "build"


def new_run_dir(results: Path) -> tuple[str, Path]:
    """results/<run-id>/, unique even for two runs started in the same second."""
    results.mkdir(parents=True, exist_ok=True)
    while True:
        run_id = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        run_dir = results / run_id
        try:
            run_dir.mkdir()
            return run_id, run_dir
        except FileExistsError:
            continue


def finding_report(f: Any) -> str:
    """The text of a <failure>: a summary, then the raw console excerpt."""
    lines = [f"{f.title}", f"class: {f.cls}"]
    if getattr(f, "file", None):
        lines.append(f"at: {f.file}:{f.line}" if getattr(f, "line", None) else f"at: {f.file}")
    if getattr(f, "guilty_function", None):
        lines.append(f"guilty function: {f.guilty_function}")
    if getattr(f, "caller", None):
        lines.append(f"caller: {f.caller}")
    if getattr(f, "aftermath", None):
        lines.append("followed by: " + "; ".join(f.aftermath))
    lines.append(f"signature: {f.signature}")
    if getattr(f, "call_trace", None):
        lines.append("call trace:")
        lines.extend(f"  {frame}" for frame in f.call_trace)
    lines.append("")
    lines.append(f.excerpt)
    return "\n".join(lines)


class Runner:
    def __init__(self, cfg: RunConfig, cache_dir: Path | None = None):
        self.cfg = cfg
        self.cache_dir = cache_dir
        self.seed = cfg.seed if cfg.seed is not None else random.SystemRandom().randrange(1, 2**31)
        self.run_id, self.run_dir = new_run_dir(cfg.results)
        self.report = RunReport(self.run_dir, self.run_id)
        self.console_log = self.run_dir / "console.log"
        self.findings: list[Any] = []
        self.current = None  # the testcase under way, for an interrupt
        self.vmlinux = None
        self.kernel_version: str | None = None
        self.known: dict[int, str] = {}  # id(finding) -> the known issue's reason
        self.last_case = None
        self.ran: set[str] = set()  # testcases that started
        self.stop_reason = ""       # why the run stopped early, for testcases that never ran
        self.could_not_test = False
        self.report.record["config"] = cfg.as_dict()
        self.report.record["seed"] = self.seed
        self.report.set_property("seed", self.seed)
        self.report.set_property("run_id", self.run_id)

    # -- stages -----------------------------------------------------------

    def build(self):
        from .build import BuildRequest, build_kernel

        case = self.current = self.report.case(BUILD_CASE)
        self.ran.add(BUILD_CASE)
        t0 = time.monotonic()
        req = BuildRequest(source=self.cfg.source, ref=self.cfg.ref, patches=self.cfg.patches,
                           base_config=self.cfg.base_config,
                           fragments=[str(p) for p in self.cfg.fragments])
        try:
            kernel = build_kernel(req, self.cache_dir)
        except KstressError as exc:
            first, _, rest = str(exc).partition("\n")
            case.error(first, rest)
            raise
        finally:
            case.elapsed = time.monotonic() - t0
        case.details = {"cache_hit": kernel.cache_hit, "artifact_dir": str(kernel.artifact_dir)}
        self.vmlinux = kernel.vmlinux
        self.kernel_version = kernel.meta.get("kernel_version")
        config_hash = hashlib.sha256(Path(kernel.config).read_bytes()).hexdigest()[:16]
        meta = kernel.meta
        self.report.record["kernel"] = {"key": kernel.key, "artifact_dir": str(kernel.artifact_dir),
                                        "cache_hit": kernel.cache_hit, "config_sha256_16": config_hash,
                                        "meta": meta}
        self.report.set_property("kernel_version", meta.get("kernel_version"))
        self.report.set_property("config_hash", config_hash)
        self.report.set_property("patch_series", self._patch_series_name(meta))
        self.report.set_property("kernel_key", kernel.key)
        self.report.write()
        return kernel

    def _patch_series_name(self, meta: dict) -> str:
        names = [p["name"] for p in meta.get("patches") or []]
        return ", ".join(names) if names else "none"

    def workloads(self):
        from .workloads import build_workload, load_workloads

        available = load_workloads()
        chosen = []
        for choice in self.cfg.workloads:
            if choice.name not in available:
                from .errors import UsageError
                raise UsageError(f"{self.cfg.path}: workloads: unknown workload {choice.name!r} "
                                 f"(available: {', '.join(sorted(available))})")
            w = available[choice.name]
            chosen.append((w, choice.duration or w.default_duration))
        binaries = {w.name: build_workload(w, self.cache_dir) for w, _ in chosen}
        return chosen, binaries

    def guest_config(self, kernel, initrd: Path, accel: str):
        from .qemu import DEFAULT_CMDLINE, GuestConfig, tcg_relaxations

        cmdline = self.cfg.cmdline or DEFAULT_CMDLINE
        relaxed = tcg_relaxations() if accel == "tcg" else ""
        full = " ".join(x for x in (cmdline, relaxed, self.cfg.extra_cmdline) if x)
        self.report.record["guest"] = {"cmdline": full, "tcg_relaxations": relaxed, "accel": accel}
        return GuestConfig(kernel=Path(kernel.bzimage), initrd=initrd, cmdline=full,
                           cpus=self.cfg.cpus, numa_nodes=self.cfg.numa_nodes,
                           memory_mb=self.cfg.memory_mb, accel=accel,
                           boot_timeout=self.cfg.boot_timeout,
                           silence_timeout=self.cfg.silence_timeout)

    # -- the run ----------------------------------------------------------

    def run(self) -> int:
        """Returns the exit code. Whatever happens (Ctrl-C and SIGTERM arrive
        as KeyboardInterrupt), run.json and junit.xml hold what was collected."""
        try:
            return self._run()
        except KeyboardInterrupt as exc:
            how = str(exc) or "SIGINT"
            self.report.record["interrupted"] = how
            if self.current is not None and self.current.status == "passed":
                self.current.error(f"interrupted by {how}")
            self.stop_reason = f"interrupted by {how}"
            raise
        except KstressError as exc:
            first, _, rest = str(exc).partition("\n")
            if self.current is not None and self.current.status == "passed":
                self.current.error(first, rest)
            self.stop_reason = first
            raise
        finally:
            self._finish()

    def _run(self) -> int:
        from .image import build_initramfs
        from .qemu import Guest, resolve_accel

        log.info(f"run {self.run_id}: results in {self.run_dir}")
        kernel = self.build()
        # Preparing the guest (workload builds, initramfs, accelerator) is
        # part of the boot testcase: its failure is reported there.
        self.current = self.report.case(BOOT_CASE)
        self.current.classname = "kstress.boot"
        chosen, binaries = self.workloads()
        for w, _ in chosen:
            self.report.case(w.name).classname = "kstress.workload"
        initrd = build_initramfs(binaries, self.cache_dir)
        accel, warning = resolve_accel(self.cfg.accel, self.cache_dir)
        if warning:
            log.warn(warning)
        self.report.set_property("accel", accel)
        gcfg = self.guest_config(kernel, initrd, accel)
        self.report.write()

        with Guest(gcfg, self.console_log) as guest:
            self.guest = guest
            self.report.record["guest"]["qemu_argv"] = guest.qemu_argv
            self.report.record["guest"]["qemu_command"] = shlex.join(guest.qemu_argv)
            if not self._boot(guest):
                return self._exit_code()
            for w, duration in chosen:
                if not self._workload(guest, w, duration):
                    break
            self._shutdown(guest)
        return self._exit_code()

    def _boot(self, guest) -> bool:
        from .qemu import BootTimeout, GuestDied, GuestSilent

        case = self.current = self.last_case = self.report.case(BOOT_CASE)
        self.ran.add(BOOT_CASE)
        t0 = time.monotonic()
        try:
            guest.start()
            self.report.record["guest"]["qemu_argv"] = guest.qemu_argv
            self.report.record["guest"]["qemu_command"] = shlex.join(guest.qemu_argv)
            ready = guest.wait_ready()
            case.details["seconds_to_ready"] = round(ready, 2)
            alive = True
        except (GuestDied, BootTimeout, GuestSilent) as exc:
            alive = False
            self._guest_trouble(case, exc, during="boot")
        case.elapsed = time.monotonic() - t0
        self._attach_findings(case, 0, self._console_size())
        self.report.write()
        return alive and case.status == "passed"

    def _workload(self, guest, w, duration: int) -> bool:
        from .qemu import GuestDied, GuestSilent

        case = self.current = self.last_case = self.report.case(w.name)
        self.ran.add(w.name)
        t0 = time.monotonic()
        start = self._console_size()
        argv = w.argv(duration, self.seed)
        entry: dict[str, Any] = {"argv": argv, "duration": duration, "evidence": w.evidence}
        self.report.record.setdefault("workloads", {})[w.name] = entry
        self.report.write()
        log.info(f"workload {w.name}: {duration}s, seed {self.seed}")
        alive = True
        try:
            before = parse_vmstat(guest.channel.read_file("/proc/vmstat"))
            result = guest.channel.run(shlex.join(argv), timeout=duration + self.cfg.workload_grace)
            entry.update(exit_status=result.exit_status, timed_out=result.timed_out,
                         seconds=round(result.duration, 2))
            out_path = self.run_dir / f"{w.name}.out"
            out_path.write_text(result.output)
            case.stdout = result.output[-20000:]
            if result.timed_out:
                case.fail(f"hang: {w.name} did not finish within {duration + self.cfg.workload_grace:.0f}s",
                          result.output[-4000:], "hang")
            else:
                after = parse_vmstat(guest.channel.read_file("/proc/vmstat"))
                delta = deltas(before, after)
                entry["vmstat_delta"] = delta
                for name in sorted(delta):
                    if name.startswith(("pgmigrate_", "compact_", "thp_")):
                        self.report.set_property(f"vmstat.{w.name}.{name}", delta[name])
                if result.exit_status != 0:
                    self.could_not_test = True
                    case.fail(f"{w.name} exited with status {result.exit_status}",
                              result.output[-4000:], "workload")
                missing = missing_evidence(delta, w.evidence)
                if missing:
                    self.could_not_test = True
                    case.fail(f"no evidence of stress: {', '.join(missing)} did not move",
                              "vmstat deltas:\n" + "\n".join(f"{k} {v}" for k, v in delta.items()),
                              "no-evidence")
        except (GuestDied, GuestSilent) as exc:
            alive = False
            self._guest_trouble(case, exc, during=w.name)
        case.elapsed = time.monotonic() - t0
        self._attach_findings(case, start, self._console_size())
        self.report.write()
        return alive

    def _shutdown(self, guest) -> None:
        try:
            guest.shutdown()
        except Exception as exc:  # the guest is killed by Guest.__exit__ anyway
            log.warn(f"shutdown: {exc}")

    # -- findings ---------------------------------------------------------

    def _console_size(self) -> int:
        try:
            return self.console_log.stat().st_size
        except FileNotFoundError:
            return 0

    def _analyze(self) -> list:
        from .console import analyze_file

        if not self.console_log.exists() or self.console_log.stat().st_size == 0:
            return []
        # Symbolized with the build's vmlinux: file:line and inlined frames.
        return analyze_file(self.console_log, vmlinux=self.vmlinux)

    def _attach_findings(self, case, start: int, end: int) -> None:
        """Findings whose report starts in [start, end) of console.log belong
        to this case. Informational ones (OOM) are recorded, not failed."""
        self.all_findings = self._analyze()
        mine = [f for f in self.all_findings if start <= f.start < end]
        for f in mine:
            if f in self.findings:
                continue
            self.findings.append(f)
            if getattr(f, "informational", False):
                case.details.setdefault("informational", []).append(f.title)
                continue
            known = known_issue_for(self.cfg.known_issues, f, self.kernel_version)
            if known is not None:
                # Triaged: reported in full, but the testcase keeps its verdict.
                self.known[id(f)] = known.reason
                case.details.setdefault("known_issues", []).append(f"{f.title} ({known.reason})")
                case.stdout = (case.stdout + "\n" if case.stdout else "") + \
                    f"known issue, not failed: {known.reason}\n{finding_report(f)}"
                log.warn(f"known issue: {f.title} ({known.reason})")
                continue
            case.fail(f.title, finding_report(f), "kernel")
        self.report.record["findings"] = [dict(f.to_dict(), known_issue=self.known.get(id(f)))
                                          for f in self.findings]

    def _guest_trouble(self, case, exc, during: str) -> None:
        """The guest died, hung or went silent. If the console explains it
        (a panic after an oops), the finding says so; otherwise a silent or
        dead kernel is itself the finding, and a dead QEMU is our error."""
        from .qemu import BootTimeout, GuestDied, GuestSilent

        self.report.record.setdefault("guest_events", []).append(
            {"during": during, "event": type(exc).__name__, "detail": str(exc)})
        tail = self._console_tail()
        if isinstance(exc, GuestSilent):
            case.fail(f"hang: guest silent during {during}", f"{exc}\n\nconsole tail:\n{tail}", "hang")
        elif isinstance(exc, BootTimeout):
            case.fail(f"boot: no ready marker ({exc})", f"console tail:\n{tail}", "hang")
        elif isinstance(exc, GuestDied):
            # Decided after the console is analysed: see _settle_death.
            case.details["guest_died"] = str(exc)
            self._pending_death = (case, exc, tail)

    def _console_tail(self, size: int = 6000) -> str:
        try:
            with open(self.console_log, "rb") as f:
                f.seek(max(0, self._console_size() - size))
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def _settle_death(self) -> None:
        pending = getattr(self, "_pending_death", None)
        if not pending:
            return
        case, exc, tail = pending
        self._pending_death = None
        if case.status == "failure":
            return  # the console explains the death: a kernel finding
        if "reboot" in str(exc).lower() or "panic" in tail.lower():
            case.fail(f"kernel died during {case.name} without a recognised report",
                      f"{exc}\n\nconsole tail:\n{tail}", "kernel")
        else:
            self.could_not_test = True
            case.error(f"QEMU died: {exc}", f"console tail:\n{tail}")

    def _exit_code(self) -> int:
        self._settle_death()
        if any(c.status == "failure" and c.failure_type in ("kernel", "hang") for c in self.report.cases):
            return EXIT_FINDINGS
        if self.could_not_test or any(c.status in ("error", "failure") for c in self.report.cases):
            return EXIT_COULD_NOT_TEST
        return EXIT_CLEAN

    def _finish(self) -> None:
        # What the kernel printed after the last case's end (during shutdown,
        # or while we were interrupted) belongs to the last case that ran.
        if self.last_case is not None:
            try:
                self._attach_findings(self.last_case, 0, 1 << 62)
            except Exception as exc:  # never lose the record over analysis
                log.warn(f"console analysis failed: {exc}")
        self._settle_death()
        for c in self.report.cases:
            if c.name not in self.ran and c.status == "passed":
                c.status, c.failure_type = "skipped", "not-run"
                c.message = f"not run: {self.stop_reason or 'an earlier testcase ended the run'}"
        self.report.record["status"] = "finished"
        self.report.record["exit_code"] = self._exit_code()
        self.report.record["finished"] = time.time()
        self.report.write()
        summary = self.summary()
        (self.run_dir / "summary.txt").write_text(summary)

    def summary(self) -> str:
        lines = [f"kstress run {self.run_id}  seed {self.seed}  exit {self._exit_code()}"]
        for c in self.report.cases:
            line = f"  {c.name:<24} {c.status.upper():<8} {c.elapsed:7.1f}s"
            if c.message:
                line += f"  {c.message}"
            lines.append(line)
        for f in self.findings:
            if id(f) in self.known:
                lines.append(f"  known issue (not failed): {f.title}: {self.known[id(f)]}")
        lines.append(f"results: {self.run_dir}")
        return "\n".join(lines) + "\n"


__all__ = ["Runner", "EXIT_CLEAN", "EXIT_FINDINGS", "EXIT_COULD_NOT_TEST", "CouldNotTest"]
