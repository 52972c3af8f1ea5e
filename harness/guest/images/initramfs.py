"""The guest's initramfs: busybox, the static workloads and our init.

The archive is written here in Python (cpio "newc", gzip) rather than with
cpio(1), so that it is byte-for-byte reproducible: every entry has uid 0,
mtime 0 and a fixed order. It is cached under the sha256 of the uncompressed
archive, which is a content hash of everything that goes in.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness import log
from harness.cache import atomic_write_bytes, cache_root, locked
from harness.cache_entries import touch
from harness.errors import CouldNotTest, UsageError
from harness.guest.channels import serial
from harness.paths import IMAGES_DIR

RECIPE_DIR = IMAGES_DIR / "initramfs"
BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static
WORKLOAD_DIR = "usr/bin"
KS_RUN = serial.KS_RUN.lstrip("/")  # the SerialChannel helper, images/initramfs/ks-run

_S_IFDIR, _S_IFREG, _S_IFLNK, _S_IFCHR = 0o040000, 0o100000, 0o120000, 0o020000
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_DIRS = ["bin", "dev", "etc", "proc", "root", "run", "sbin", "sys", "tmp", "usr",
         "usr/bin", "usr/libexec", "usr/libexec/kstress", "usr/sbin"]


@dataclass(frozen=True)
class Entry:
    name: str  # path inside the archive, no leading slash
    mode: int  # file type and permission bits
    data: bytes = b""  # file contents, or a symlink's target
    rdev: tuple[int, int] = (0, 0)


def is_static_elf(data: bytes) -> bool:
    """True for an ELF executable without a PT_INTERP (dynamic loader) header."""
    if data[:4] != b"\x7fELF" or len(data) < 64:
        return False
    if data[4] != 2:  # ELFCLASS64 only: the guest is x86_64
        return False
    endian = "<" if data[5] == 1 else ">"
    phoff, = struct.unpack_from(endian + "Q", data, 0x20)
    phentsize, phnum = struct.unpack_from(endian + "HH", data, 0x36)
    for i in range(phnum):
        off = phoff + i * phentsize
        if off + 4 > len(data):
            return False
        p_type, = struct.unpack_from(endian + "I", data, off)
        if p_type == 3:  # PT_INTERP
            return False
    return True


def busybox_applets(busybox: Path = BUSYBOX) -> list[str]:
    """Applet paths ("bin/sh", "usr/bin/awk", ...) as this busybox installs them."""
    try:
        out = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True,
                             check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise CouldNotTest(f"cannot list busybox applets with {busybox}: {exc}") from None
    return sorted({p.strip().strip("/") for p in out.splitlines()
                   if p.strip() and p.strip() != "linuxrc"})


def initramfs_entries(binaries: dict[str, Path], busybox: Path = BUSYBOX,
                      recipe_dir: Path = RECIPE_DIR) -> list[Entry]:
    """Everything the archive holds, in archive order."""
    try:
        bb = busybox.read_bytes()
    except OSError:
        raise CouldNotTest(f"{busybox} not found: install Debian's busybox-static") from None
    if not is_static_elf(bb):
        raise CouldNotTest(f"{busybox} is not a static x86_64 binary: install busybox-static, not busybox")

    ents = [Entry(d, _S_IFDIR | (0o1777 if d == "tmp" else 0o755)) for d in _DIRS]
    # The kernel opens /dev/console for init before devtmpfs is mounted.
    ents.append(Entry("dev/console", _S_IFCHR | 0o600, rdev=(5, 1)))
    ents.append(Entry("bin/busybox", _S_IFREG | 0o755, bb))
    ents.append(Entry("init", _S_IFREG | 0o755, (recipe_dir / "init").read_bytes()))
    ents.append(Entry(KS_RUN, _S_IFREG | 0o755, (recipe_dir / "ks-run").read_bytes()))

    taken = {f"{WORKLOAD_DIR}/{n}" for n in binaries}
    for name, path in sorted(binaries.items()):
        if not NAME_RE.fullmatch(name):
            raise UsageError(f"workload name {name!r} is not a plain file name")
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise UsageError(f"workload binary {name}: cannot read {path}: {exc.strerror}") from None
        if not is_static_elf(data):
            raise UsageError(f"workload binary {name} ({path}) is not a statically linked x86_64 ELF")
        ents.append(Entry(f"{WORKLOAD_DIR}/{name}", _S_IFREG | 0o755, data))

    for applet in busybox_applets(busybox):
        if applet != "bin/busybox" and applet not in taken:  # a workload wins over an applet
            ents.append(Entry(applet, _S_IFLNK | 0o777, b"/bin/busybox"))
    return ents


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


def cpio_newc(entries: list[Entry]) -> bytes:
    """A cpio archive in the kernel's "newc" format (see Documentation/driver-api/early-userspace)."""
    out = bytearray()
    for ino, e in enumerate(entries + [Entry("TRAILER!!!", 0)], start=1):
        name = e.name.encode() + b"\0"
        is_dir = (e.mode & 0o170000) == _S_IFDIR
        fields = [ino if e.name != "TRAILER!!!" else 0, e.mode, 0, 0, 2 if is_dir else 1, 0,
                  len(e.data), 0, 0, e.rdev[0], e.rdev[1], len(name), 0]
        hdr = b"070701" + b"".join(b"%08X" % f for f in fields)
        out += hdr + name + _pad4(len(hdr) + len(name))
        out += e.data + _pad4(len(e.data))
    return bytes(out)


def build_initramfs(binaries: dict[str, Path], cache_dir: Path | None = None) -> Path:
    """The path of a cpio.gz holding busybox, ``binaries`` in /usr/bin and our init.

    Cached by content: the same inputs give the same file, built once.
    """
    archive = cpio_newc(initramfs_entries(binaries))
    digest = hashlib.sha256(archive).hexdigest()[:24]
    out = Path(cache_dir or cache_root()) / "initramfs" / f"initramfs-{digest}.cpio.gz"
    if out.is_file():
        touch(out)
        log.info(f"initramfs: cached {out.name}")
        return out
    with locked(out):
        if not out.is_file():  # another kstress may have built it while we waited
            atomic_write_bytes(out, gzip.compress(archive, compresslevel=6, mtime=0), mode=0o644)
            log.info(f"initramfs: built {out} ({len(binaries)} workload(s), {out.stat().st_size // 1024} KiB)")
    return out
