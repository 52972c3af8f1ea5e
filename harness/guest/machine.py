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
import dataclasses
import itertools
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from harness import log
from harness.errors import CouldNotTest, KernelHang, KstressError, UsageError
from harness.guest.accel import QEMU
from harness.guest.qmp import Qmp, QmpError
from harness.guest.sshkey import FW_CFG_NAME, make_key
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

READY_MARKER = b"kstress-init: ready"  # printed by every image's init when the guest is up
RESTART_MARKER = "kstress: guest restarted by kstress"  # a console line, never the kernel's
QMP_SOCKET = "qmp.sock"
LOGIN_SOCKET = "ttyS1.sock"
SERIAL_BREAK = b"\x01b"  # QEMU's mux escape: a BREAK on ttyS0
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
    initrd: Path | None = None  # an initramfs, or None with a root_disk
    cmdline: str = DEFAULT_CMDLINE  # the full kernel command line; Machine adds nothing
    cpus: int = 2
    numa_nodes: int = 2
    memory_mb: int = 2048
    node_memory_mb: list[int] | None = None  # per node; None: memory_mb split evenly
    memory_slots: int = 0  # pc-dimm slots for hot-add (0: no hotplug)
    maxmem_mb: int = 0  # with memory_slots: boot memory plus what may be hot-added
    accel: str = "tcg"  # kvm | tcg, resolved beforehand (harness.guest.accel.resolve_accel)
    boot_timeout: float = BOOT_TIMEOUT
    silence_timeout: float = SILENCE_TIMEOUT
    root_disk: Path | None = None  # a qcow2 overlay of the image: /dev/vda
    extra_disks: list[Path] = field(default_factory=list)  # qcow2, /dev/vdb... (swap)
    ssh: bool = False  # user-mode network with a 127.0.0.1 forward to the guest's port 22
    fw_cfg: dict[str, Path] = field(default_factory=dict)  # name -> file, read in /sys/firmware/qemu_fw_cfg
    serial_login: bool = False  # a second serial port (ttyS1) on a socket: the login fallback

    def node_sizes(self) -> list[int]:
        if self.node_memory_mb:
            return list(self.node_memory_mb)
        n, mem = self.numa_nodes, self.memory_mb
        return [mem // n + (mem % n if i == n - 1 else 0) for i in range(n)]


def qemu_argv(cfg: GuestConfig, accel: str, name: str = "kstress", runtime_dir: Path | None = None) -> list[str]:
    """QEMU's argv for ``cfg`` under ``accel`` ("kvm" or "tcg"); sockets
    (QMP, the login serial port) go in ``runtime_dir``."""
    if accel not in ("kvm", "tcg"):
        raise ValueError(f"accel must be resolved to kvm or tcg, not {accel!r}")
    nodes, cpus = cfg.numa_nodes, cfg.cpus
    sizes = cfg.node_sizes()
    mem = sum(sizes)
    if nodes < 1 or cpus < 1 or cpus % nodes:
        raise UsageError(f"guest: cpus ({cpus}) must be a positive multiple of numa_nodes ({nodes})")
    if len(sizes) != nodes:
        raise UsageError(f"guest: node_memory_mb has {len(sizes)} sizes for {nodes} NUMA node(s)")
    if min(sizes) < 128:
        raise UsageError(f"guest: every NUMA node needs at least 128 MiB, got {sizes}")
    if (cfg.initrd is None) == (cfg.root_disk is None):
        raise UsageError("guest: boot an initramfs or a root disk, exactly one of them")
    per = cpus // nodes
    memory = f"{mem}M"
    if cfg.memory_slots:
        if cfg.maxmem_mb <= mem:
            raise UsageError(f"guest: maxmem_mb ({cfg.maxmem_mb}) must exceed the boot memory ({mem} MiB)")
        memory += f",slots={cfg.memory_slots},maxmem={cfg.maxmem_mb}M"
    argv = [QEMU, "-name", name, "-machine", "q35", "-accel", accel,
            "-cpu", "host" if accel == "kvm" else "max",
            # One socket per NUMA node: with QEMU's default topology the
            # cores of a socket straddle nodes and 6.12 warns at boot
            # ("llc-sibling CPU #0 is not on the same node").
            "-smp", f"cpus={cpus},sockets={nodes},cores={per},threads=1",
            "-m", memory]
    if nodes > 1:
        for i, size in enumerate(sizes):
            first = i * per
            cpu_range = f"{first}-{first + per - 1}" if per > 1 else str(first)
            argv += ["-object", f"memory-backend-ram,id=mem{i},size={size}M",
                     "-numa", f"node,nodeid={i},cpus={cpu_range},memdev=mem{i}"]
    argv += ["-kernel", str(cfg.kernel), "-append", cfg.cmdline]
    if cfg.initrd is not None:
        argv += ["-initrd", str(cfg.initrd)]
    # cache=unsafe: a run's disks are scratch, written only to its own overlay.
    for i, disk in enumerate(([cfg.root_disk] if cfg.root_disk else []) + list(cfg.extra_disks)):
        argv += ["-drive", f"file={disk},format=qcow2,if=none,id=disk{i},cache=unsafe",
                 "-device", f"virtio-blk-pci,drive=disk{i}"]
    argv += ["-nodefaults", "-display", "none", "-no-reboot",
             # mux: QEMU's escape (Ctrl-A b) sends a serial BREAK, the kernel's
             # SysRq when nothing else in the guest answers any more.
             "-chardev", "stdio,id=ser0,signal=off,mux=on", "-serial", "chardev:ser0",
             "-device", "virtio-rng-pci"]
    if runtime_dir is not None:
        argv += ["-qmp", f"unix:{runtime_dir / QMP_SOCKET},server=on,wait=off"]
        if cfg.serial_login:
            argv += ["-chardev", f"socket,id=ser1,path={runtime_dir / LOGIN_SOCKET},server=on,wait=off",
                     "-serial", "chardev:ser1"]
    if cfg.ssh:
        # restrict=on: the guest reaches nothing but this forward; port 0: QEMU
        # picks a free port (read back over QMP), so guests never race for one.
        argv += ["-netdev", "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:0-:22",
                 "-device", "virtio-net-pci,netdev=net0"]
    for fw_name, path in cfg.fw_cfg.items():
        argv += ["-fw_cfg", f"name={fw_name},file={path}"]
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

    def __init__(self, cfg: GuestConfig, console_log: Path, restart_reason: str | None = None):
        """``restart_reason``: this machine replaces one kstress stopped; its
        console is appended to console.log after a RESTART_MARKER line, so
        the analyzer never takes the restart for the kernel's own reboot."""
        self.cfg = cfg
        self.console_log = Path(console_log)
        self.restart_reason = restart_reason
        self.qemu_log = self.console_log.with_name(self.console_log.stem + ".qemu-stderr.log")
        # Unique per guest, visible in ps: tells our QEMU from others'.
        self.name = f"kstress-{os.getpid()}-{next(_SEQ)}-{secrets.token_hex(3)}"
        self.accel = cfg.accel
        # Private (0700) and per guest: the QMP socket, the login port, keys.
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="kstress-guest-"))
        # Removed by kill(); and with the object, should a machine never start.
        weakref.finalize(self, shutil.rmtree, self.runtime_dir, True)
        self.ssh_key: Path | None = None
        if cfg.ssh:
            self.ssh_key, public = make_key(self.runtime_dir)
            cfg = self.cfg = dataclasses.replace(cfg, fw_cfg={**cfg.fw_cfg, FW_CFG_NAME: public})
        self.qemu_argv: list[str] = qemu_argv(cfg, self.accel, self.name, self.runtime_dir)
        self._qmp: Qmp | None = None
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
        for what, p in (("kernel", self.cfg.kernel), ("initrd", self.cfg.initrd),
                        ("root disk", self.cfg.root_disk), *(("disk", d) for d in self.cfg.extra_disks)):
            if p is not None and not Path(p).is_file():
                raise UsageError(f"guest {what} {p} does not exist")
        self.console_log.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.console_log, "ab" if self.restart_reason else "wb", buffering=0)
        if self.restart_reason:
            self._log.write(f"\n{RESTART_MARKER}: {self.restart_reason}\n".encode())
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
                 f"{sum(c.node_sizes())} MiB); console in {self.console_log}")

    @property
    def qmp(self) -> Qmp:
        """QEMU's monitor, connected on first use."""
        if self._proc is None:
            raise RuntimeError("guest not started")
        if self._qmp is None:
            try:
                self._qmp = Qmp(self.runtime_dir / QMP_SOCKET).connect(wait=10)
            except QmpError:
                if not self.running:
                    raise self._death() from None
                raise
        return self._qmp

    @property
    def ssh_port(self) -> int:
        """The host port (on 127.0.0.1) forwarded to the guest's sshd."""
        if not self.cfg.ssh:
            raise RuntimeError("this machine has no SSH forward")
        return self.qmp.forwarded_port(22)

    @property
    def login_socket(self) -> Path:
        return self.runtime_dir / LOGIN_SOCKET

    def sysrq_by_break(self, key: str) -> None:
        """SysRq through a serial BREAK on the console: works while any CPU
        still takes interrupts, whatever user space is doing."""
        self.send(SERIAL_BREAK)
        time.sleep(0.2)
        self.send(key.encode())

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

    def death(self, wait: float = 5) -> GuestDied | None:
        """How QEMU ended, if it has or does within ``wait`` seconds (its
        sockets close an instant before it can be reaped); None while it runs."""
        if self._proc is None:
            return None
        try:
            self._proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            return None
        return self._death()

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
        """Power off (the initramfs shell on the console takes "poweroff -f",
        systemd takes the ACPI button), wait up to ``timeout`` for QEMU to
        exit, then kill it."""
        if self.running:
            try:
                self.send(b"\npoweroff -f\n")
                if self.cfg.root_disk is not None:
                    self.qmp.execute("system_powerdown")
                self._proc.wait(timeout=timeout)
                log.info("guest powered off")
            except (GuestDied, QmpError, subprocess.TimeoutExpired):
                pass
        self.kill()

    def terminate(self) -> None:
        """Kill QEMU now, from any thread (the run has seen what it wanted);
        kill() still cleans up after it."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()

    def kill(self) -> None:
        """Kill QEMU (if still running), close the console, remove the
        runtime directory. Idempotent."""
        if self._qmp is not None:
            self._qmp.close()
            self._qmp = None
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
        shutil.rmtree(self.runtime_dir, ignore_errors=True)

    def console_text(self) -> str:
        """console.log so far."""
        try:
            return self.console_log.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""
