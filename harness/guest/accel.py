"""Does KVM work on this host? Decided by booting a 512-byte boot sector.

/dev/kvm opening is not enough: under nested virtualisation KVM guests can
hang without an error. So ``auto`` boots a boot sector under ``-accel kvm``
that writes a marker to the serial port; the answer costs a few seconds and
is cached per host for a day.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import select
import subprocess
import tempfile
import time
from pathlib import Path

from harness import log
from harness.cache import atomic_write_bytes, cache_root
from harness.errors import CouldNotTest, UsageError

QEMU = "qemu-system-x86_64"
KVM_DEV = Path("/dev/kvm")
ACCELS = ("auto", "kvm", "tcg")
PROBE_MARKER = b"KS\n"
PROBE_TIMEOUT = 6.0  # SeaBIOS reaches a boot sector in well under a second under KVM
CACHE_MAX_AGE = 24 * 3600


def probe_image(marker: bytes = PROBE_MARKER) -> bytes:
    """A 512-byte MBR boot sector that writes ``marker`` to COM1 and halts.

    Real-mode code: mov dx,0x3f8; (mov al,c; out dx,al)...; cli; hlt; jmp hlt.
    QEMU's 16550 transmits without any UART set-up.
    """
    code = b"\xba\xf8\x03"  # mov dx, 0x3f8
    for c in marker:
        code += bytes([0xB0, c, 0xEE])  # mov al, c ; out dx, al
    code += b"\xfa\xf4\xeb\xfd"  # cli ; hlt ; jmp back to hlt
    if len(code) > 510:
        raise ValueError("probe marker too long for a boot sector")
    return code.ljust(510, b"\0") + b"\x55\xaa"


def probe_argv(image: Path, accel: str) -> list[str]:
    # -machine pc: SeaBIOS boots an IDE disk there without set-up (not so on q35).
    # -cpu as the real guest will use it: a KVM that cannot do "host" fails here.
    cpu = "host" if accel == "kvm" else "max"
    return [QEMU, "-machine", "pc", "-accel", accel, "-cpu", cpu, "-m", "16",
            "-nodefaults", "-display", "none", "-no-reboot",
            "-drive", f"file={image},format=raw,if=ide",
            "-chardev", "stdio,id=ser0,signal=off", "-serial", "chardev:ser0"]


def run_probe(accel: str = "kvm", timeout: float = PROBE_TIMEOUT,
              sector: bytes | None = None) -> tuple[bool, float, str]:
    """Boot the probe sector (or ``sector``); returns (marker seen, seconds, detail)."""
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kstress-probe-") as tmp:
        image = Path(tmp) / "probe.img"
        image.write_bytes(probe_image() if sector is None else sector)
        try:
            proc = subprocess.Popen(probe_argv(image, accel), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as exc:
            raise CouldNotTest(f"cannot run {QEMU}: {exc.strerror}") from None
        out = b""
        try:
            while PROBE_MARKER not in out:
                left = timeout - (time.monotonic() - t0)
                if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
                    break
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:  # QEMU exited
                    break
                out += chunk
        finally:
            proc.kill()
            err = proc.communicate()[1].decode(errors="replace").strip()
    took = time.monotonic() - t0
    if PROBE_MARKER in out:
        return True, took, f"probe boot printed its marker in {took:.1f}s"
    if err:
        return False, took, f"QEMU failed: {err.splitlines()[-1]}"
    return False, took, f"probe boot printed nothing in {took:.1f}s (KVM guests hang here)"


def kvm_device_problem(dev: Path = KVM_DEV) -> str | None:
    """Why /dev/kvm cannot be used, or None if it opens read-write."""
    try:
        fd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return f"{dev} does not exist"
        return f"cannot open {dev}: {exc.strerror}"
    os.close(fd)
    return None


def qemu_version() -> str:
    try:
        out = subprocess.run([QEMU, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise CouldNotTest(f"cannot run {QEMU} --version: {exc}") from None
    return out.splitlines()[0].strip() if out.strip() else "unknown"


def probe_key(dev: Path = KVM_DEV) -> dict:
    """What the probe's answer depends on: host kernel, QEMU, and the /dev/kvm node
    (a new boot or a reloaded module gives a new inode or ctime)."""
    st = os.stat(dev)
    return {"host_kernel": os.uname().release, "qemu": qemu_version(),
            "kvm_dev": [st.st_rdev, st.st_ino, st.st_ctime_ns]}


def _cache_file(cache_dir: Path, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir / "accel" / f"kvm-probe-{digest}.json"


def cached_probe(cache_dir: Path, key: dict, now: float | None = None) -> dict | None:
    """The cached answer for ``key`` if it is younger than CACHE_MAX_AGE."""
    now = time.time() if now is None else now
    try:
        ent = json.loads(_cache_file(cache_dir, key).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(ent, dict) or ent.get("key") != key or not isinstance(ent.get("kvm_works"), bool):
        return None
    if not 0 <= now - float(ent.get("probed_at", 0)) < CACHE_MAX_AGE:
        return None
    return ent


def store_probe(cache_dir: Path, key: dict, works: bool, detail: str, seconds: float) -> None:
    ent = {"key": key, "kvm_works": works, "detail": detail, "seconds": round(seconds, 2),
           "probed_at": time.time()}
    atomic_write_bytes(_cache_file(cache_dir, key), (json.dumps(ent, indent=2, sort_keys=True) + "\n").encode(),
                       mode=0o644)


def kvm_works(cache_dir: Path | None = None) -> tuple[bool, str]:
    """(works, why), from the cache or a fresh probe boot."""
    cache_dir = Path(cache_dir or cache_root())
    key = probe_key()
    ent = cached_probe(cache_dir, key)
    if ent is not None:
        return ent["kvm_works"], f"{ent['detail']} (cached probe)"
    log.info("accel: probing KVM with a boot-sector guest")
    works, took, detail = run_probe("kvm")
    store_probe(cache_dir, key, works, detail, took)
    return works, detail


def resolve_accel(requested: str, cache_dir: Path | None = None) -> tuple[str, str | None]:
    """("kvm" | "tcg", a warning line or None).

    ``kvm`` raises CouldNotTest when KVM does not work; ``auto`` falls back to
    TCG with a warning; ``tcg`` is taken as asked.
    """
    if requested not in ACCELS:
        raise UsageError(f"accel must be one of {', '.join(ACCELS)}, not {requested!r}")
    if requested == "tcg":
        log.info("accel: tcg (as configured)")
        return "tcg", None
    problem = kvm_device_problem()
    if problem is None:
        works, why = kvm_works(cache_dir)
        if works:
            log.info(f"accel: kvm ({why})")
            return "kvm", None
        problem = f"KVM does not work here: {why}"
    if requested == "kvm":
        raise CouldNotTest(f"accel kvm: {problem}")
    log.info("accel: tcg (KVM unusable)")
    return "tcg", f"{problem}; falling back to TCG (much slower)"
