"""One QEMU guest machine: its command line, its process and its serial console.

The machine carries no channel: a channel (harness.guest.channels) talks to
the guest over what the machine offers (the serial port here, a forwarded
port for SSH), so the runner does not care how commands travel.

QEMU's serial port is on its stdio (pipes, not a pty). A reader thread
drains it all the time into console.log (raw bytes, flushed as they come,
so a killed run keeps everything) and into a buffer that ``expect`` searches:
a kernel that prints an oops while we are busy elsewhere is never throttled
or lost. The guest dies with us: PR_SET_PDEATHSIG covers SIGKILL of this
process, an atexit hook and ``Machine.__exit__`` cover the rest.
"""

from __future__ import annotations

import atexit
import itertools
import os
import re
import secrets
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from harness import log
from harness.errors import CouldNotTest, KernelHang, KstressError, UsageError
from harness.guest.accel import QEMU
from harness.procs import die_with_parent

__all__ = ["DEFAULT_CMDLINE", "BOOT_TIMEOUT", "SILENCE_TIMEOUT", "GuestConfig", "Machine",
           "tcg_relaxations", "qemu_argv", "GuestError", "GuestDied", "GuestSilent", "BootTimeout",
           "KvmSilent"]

# oops=panic + panic=-1 + QEMU's -no-reboot: the first oops is printed in
# full, then QEMU exits, so console.log ends on the report. printk.time=1
# lets SerialChannel tell kernel lines from command output whatever the
# kernel's config. nokaslr keeps addresses stable for decode_stacktrace.sh.
DEFAULT_CMDLINE = "console=ttyS0,115200 loglevel=7 printk.time=1 oops=panic panic=-1 nokaslr"

# Under TCG on a busy host a vCPU can be descheduled for many seconds; these
# keep the stall and lockup detectors from calling that a kernel bug.
_TCG_RELAXATIONS = (
    "rcupdate.rcu_cpu_stall_timeout=300",  # the maximum the kernel accepts
    "watchdog_thresh=60",  # soft lockup after 2 x 60 s (the maximum)
    "sysctl.kernel.hung_task_timeout_secs=600",
)

READY_MARKER = b"kstress-init: ready"  # printed by images/initramfs/init
# One default each, for run configs and for machines made directly.
BOOT_TIMEOUT = 180.0  # seconds from QEMU's start to the ready marker
SILENCE_TIMEOUT = 120.0  # seconds without a byte either way that make a hang
# Under KVM the kernel's first console line comes within a second. Total
# silence for this long means KVM itself is broken (the probe passed, the
# real guest hangs), which is a host problem, not a kernel hang to report.
KVM_FIRST_OUTPUT = 20.0
_MAX_MARKER = 4096  # longest pattern expect() must find across two reads


def tcg_relaxations() -> str:
    """Kernel parameters to append under TCG, recorded as such by the runner."""
    return " ".join(_TCG_RELAXATIONS)


class GuestError(KstressError):
    """The guest went away or stopped answering."""


class GuestDied(GuestError, CouldNotTest):
    """QEMU exited (a panic with -no-reboot, a poweroff, or a QEMU error).
    The runner decides from the console whether that is a kernel finding."""


class GuestSilent(GuestError, KernelHang):
    """Nothing from the guest for silence_timeout seconds: a hang."""


class BootTimeout(GuestError, KernelHang):
    """No ready marker within boot_timeout: the kernel hung while booting."""


class KvmSilent(GuestError, CouldNotTest):
    """A KVM guest printed nothing at all: KVM does not work on this host."""


@dataclass
class GuestConfig:
    kernel: Path
    initrd: Path
    cmdline: str = DEFAULT_CMDLINE  # the full kernel command line; Machine adds nothing
    cpus: int = 2
    numa_nodes: int = 2
    memory_mb: int = 2048
    accel: str = "tcg"  # kvm | tcg, resolved beforehand (harness.guest.accel.resolve_accel)
    boot_timeout: float = BOOT_TIMEOUT
    silence_timeout: float = SILENCE_TIMEOUT


def qemu_argv(cfg: GuestConfig, accel: str, name: str = "kstress") -> list[str]:
    """QEMU's argv for ``cfg`` under ``accel`` ("kvm" or "tcg")."""
    if accel not in ("kvm", "tcg"):
        raise ValueError(f"accel must be resolved to kvm or tcg, not {accel!r}")
    nodes, cpus, mem = cfg.numa_nodes, cfg.cpus, cfg.memory_mb
    if nodes < 1 or cpus < 1 or cpus % nodes:
        raise UsageError(f"guest: cpus ({cpus}) must be a positive multiple of numa_nodes ({nodes})")
    if mem < 128 * nodes:
        raise UsageError(f"guest: memory_mb ({mem}) is too small for {nodes} NUMA node(s)")
    per = cpus // nodes
    argv = [QEMU, "-name", name, "-machine", "q35", "-accel", accel,
            "-cpu", "host" if accel == "kvm" else "max",
            # One socket per NUMA node: with QEMU's default topology the
            # cores of a socket straddle nodes and 6.12 warns at boot
            # ("llc-sibling CPU #0 is not on the same node").
            "-smp", f"cpus={cpus},sockets={nodes},cores={per},threads=1",
            "-m", f"{mem}M"]
    if nodes > 1:
        for i in range(nodes):
            size = mem // nodes + (mem % nodes if i == nodes - 1 else 0)
            first = i * per
            cpu_range = f"{first}-{first + per - 1}" if per > 1 else str(first)
            argv += ["-object", f"memory-backend-ram,id=mem{i},size={size}M",
                     "-numa", f"node,nodeid={i},cpus={cpu_range},memdev=mem{i}"]
    argv += ["-kernel", str(cfg.kernel), "-initrd", str(cfg.initrd), "-append", cfg.cmdline,
             "-nodefaults", "-display", "none", "-no-reboot",
             "-chardev", "stdio,id=ser0,signal=off", "-serial", "chardev:ser0",
             "-device", "virtio-rng-pci"]
    return argv


_LIVE: set["Machine"] = set()
_LIVE_LOCK = threading.Lock()
_SEQ = itertools.count(1)


@atexit.register
def _kill_all() -> None:
    with _LIVE_LOCK:
        guests = list(_LIVE)
    for g in guests:
        g.kill()


# --- the machine --------------------------------------------------------------

class Machine:
    """A context manager; leaving it kills QEMU whatever happened."""

    def __init__(self, cfg: GuestConfig, console_log: Path):
        self.cfg = cfg
        self.console_log = Path(console_log)
        self.qemu_log = self.console_log.with_name(self.console_log.stem + ".qemu-stderr.log")
        # Unique per guest, visible in ps: tells our QEMU from others'.
        self.name = f"kstress-{os.getpid()}-{next(_SEQ)}-{secrets.token_hex(3)}"
        self.accel = cfg.accel
        self.qemu_argv: list[str] = qemu_argv(cfg, self.accel, self.name)
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._log = None
        self._cond = threading.Condition()
        self._buf = bytearray()
        self._pos = 0  # bytes of _buf already consumed by expect()
        self._eof = False
        self._t_start = 0.0
        self._last_io = 0.0  # last byte from the guest, or last input sent to it

    # context manager
    def __enter__(self) -> "Machine":
        return self

    def __exit__(self, *exc) -> None:
        self.kill()

    def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError("guest already started")
        for what, p in (("kernel", self.cfg.kernel), ("initrd", self.cfg.initrd)):
            if not Path(p).is_file():
                raise UsageError(f"guest {what} {p} does not exist")
        self.console_log.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.console_log, "wb", buffering=0)
        with open(self.qemu_log, "wb") as err:
            try:
                self._proc = subprocess.Popen(
                    self.qemu_argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                    bufsize=0, close_fds=True,
                    start_new_session=True,  # a Ctrl-C meant for us must not hit QEMU first
                    preexec_fn=die_with_parent())
            except OSError as exc:
                self._log.close()
                raise CouldNotTest(f"cannot start {QEMU}: {exc.strerror}") from None
        with _LIVE_LOCK:
            _LIVE.add(self)
        self._t_start = self._last_io = time.monotonic()
        self._reader = threading.Thread(target=self._read_console, name=f"console-{self.name}", daemon=True)
        self._reader.start()
        c = self.cfg
        log.info(f"booting {c.kernel} ({self.accel}, {c.cpus} vCPUs, {c.numa_nodes} NUMA nodes, "
                 f"{c.memory_mb} MiB); console in {self.console_log}")

    def _read_console(self) -> None:
        fd = self._proc.stdout.fileno()
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                break
            self._log.write(data)  # unbuffered file: on disk before anyone acts on it
            with self._cond:
                self._buf += data
                self._last_io = time.monotonic()
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # --- the serial port, as harness.guest.channels.serial uses it ---

    def send(self, data: bytes) -> None:
        if self._proc is None:
            raise RuntimeError("guest not started")
        try:
            self._proc.stdin.write(data)
            self._proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise self._death() from None
        with self._cond:
            self._last_io = time.monotonic()

    def expect(self, pattern: re.Pattern, timeout: float) -> tuple[bytes, re.Match] | None:
        """Wait for ``pattern`` in console output not yet consumed.

        Returns (the bytes before the match, the match) and consumes both, or
        None after ``timeout``. Raises GuestDied if QEMU exits first and
        GuestSilent after silence_timeout without a byte either way.
        """
        if self._proc is None:
            raise RuntimeError("guest not started")
        deadline = time.monotonic() + timeout
        silence = self.cfg.silence_timeout
        with self._cond:
            scan = self._pos
            while True:
                m = pattern.search(self._buf, scan)
                if m:
                    before = bytes(self._buf[self._pos:m.start()])
                    self._consume(m.end())
                    return before, m
                scan = max(self._pos, len(self._buf) - _MAX_MARKER)
                if self._eof:
                    raise self._death()
                now = time.monotonic()
                if now - self._last_io >= silence:
                    raise GuestSilent(f"guest silent for {now - self._last_io:.0f}s "
                                      f"(silence_timeout {silence:.0f}s)")
                if now >= deadline:
                    return None
                self._cond.wait(min(deadline, self._last_io + silence) - now)

    def _consume(self, upto: int) -> None:
        self._pos = upto
        if self._pos > 1 << 20:  # console.log keeps everything; memory needs not
            del self._buf[:self._pos]
            self._pos = 0

    def _death(self) -> GuestDied:
        try:
            rc = self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            rc = None
        tail = self.console_text()[-20000:]
        panic = [ln.strip() for ln in tail.splitlines() if "Kernel panic" in ln]
        msg = f"QEMU exited with status {rc}"
        if rc == 0:
            msg += ": the guest rebooted or powered off (-no-reboot)"
        else:
            try:
                err = self.qemu_log.read_text(errors="replace").strip().splitlines()
            except OSError:
                err = []
            if err:
                msg += f": {err[-1]}"
        if panic:
            msg += f"; console: {panic[-1]}"
        return GuestDied(msg)

    # --- lifecycle ---

    def wait_ready(self) -> float:
        """Seconds from start to the init's ready marker."""
        if self.accel == "kvm" and self.expect(re.compile(rb"[\x00-\xff]"), KVM_FIRST_OUTPUT) is None:
            raise KvmSilent(f"the KVM guest printed nothing in {KVM_FIRST_OUTPUT:.0f}s: KVM does not "
                            "work on this host although the probe passed (try accel: tcg)")
        m = self.expect(re.compile(re.escape(READY_MARKER)), self.cfg.boot_timeout)
        if m is None:
            raise BootTimeout(f"no ready marker within {self.cfg.boot_timeout:.0f}s ({self.accel})")
        took = time.monotonic() - self._t_start
        log.info(f"guest ready in {took:.1f}s ({self.accel})")
        return took

    def shutdown(self, timeout: float = 15) -> None:
        """poweroff -f, wait up to ``timeout`` for QEMU to exit, then kill it."""
        if self.running:
            try:
                self.send(b"\npoweroff -f\n")
                self._proc.wait(timeout=timeout)
                log.info("guest powered off")
            except (GuestDied, subprocess.TimeoutExpired):
                pass
        self.kill()

    def kill(self) -> None:
        """Kill QEMU (if still running) and close the console. Idempotent."""
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if self._reader is not None:
                self._reader.join(timeout=10)
            for f in (proc.stdin, proc.stdout):
                try:
                    f.close()
                except (OSError, ValueError):
                    pass
        if self._log is not None and not (self._reader and self._reader.is_alive()):
            self._log.close()
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def console_text(self) -> str:
        """console.log so far."""
        try:
            return self.console_log.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""
