"""`kstress doctor`: what this host has, what it lacks, and which Debian
package brings it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.cache import cache_root
from harness.errors import EXIT_CLEAN, EXIT_COULD_NOT_TEST
from harness.guest.accel import resolve_accel
from harness.kernel import DEFAULT_SOURCE


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    package: str = ""
    required: bool = True


def _tool(name: str, package: str, required: bool = True) -> Check:
    path = shutil.which(name)
    return Check(name, path is not None, path or "not found", package, required)


def _file(name: str, path: str, package: str) -> Check:
    return Check(name, Path(path).exists(), path if Path(path).exists() else f"{path} missing", package)


def _static_busybox() -> Check:
    path = Path("/bin/busybox")
    if not path.exists():
        return Check("busybox (static)", False, "/bin/busybox missing", "busybox-static")
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    dynamic = b"/lib64/ld-linux" in head or b"ld-linux-x86-64" in head
    return Check("busybox (static)", not dynamic,
                 "statically linked" if not dynamic else "dynamically linked: the guest has no libc",
                 "busybox-static")


def _static_lib(name: str, package: str) -> Check:
    """A static library the selftest kind links its programs with (only that kind needs it)."""
    found = ""
    if shutil.which("gcc"):
        res = subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True, text=True, check=False)
        found = res.stdout.strip() if Path(res.stdout.strip()).is_absolute() else ""
    return Check(name, bool(found), found or "not found (workloads of kind selftest need it)", package,
                 required=False)


def _free_disk(cache: Path) -> Check:
    probe = cache
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free / 2**30
    return Check("free disk", free >= 10, f"{free:.0f} GiB free at {probe} (a kernel build needs ~6 GiB)",
                 "", True)


def _kvm(cache: Path) -> Check:
    if shutil.which("qemu-system-x86_64") is None:
        return Check("KVM", False, "no QEMU to probe with", "qemu-system-x86", required=False)
    try:
        accel, warning = resolve_accel("auto", cache)
    except Exception as exc:  # doctor reports, it does not stop
        return Check("KVM", False, str(exc), required=False)
    if accel == "kvm":
        return Check("KVM", True, "a probe guest booted under KVM", required=False)
    reason = (warning or "KVM does not work").split("; falling back")[0]
    return Check("KVM", False, f"{reason}; TCG will be used (slower)", required=False)


def checks(cache: Path) -> list[Check]:
    return [
        _tool("qemu-system-x86_64", "qemu-system-x86"),
        _kvm(cache),
        _tool("gcc", "build-essential"),
        _tool("make", "make"),
        _tool("flex", "flex"),
        _tool("bison", "bison"),
        _tool("bc", "bc"),
        _tool("cpio", "cpio"),
        _tool("xz", "xz-utils"),
        _tool("patch", "patch"),
        _tool("git", "git"),
        _tool("addr2line", "binutils"),
        _tool("ccache", "ccache", required=False),
        _tool("qemu-img", "qemu-utils"),
        _tool("mmdebstrap", "mmdebstrap", required=False),  # the Debian image only
        _tool("mkfs.ext4", "e2fsprogs", required=False),
        _file("libelf headers", "/usr/include/gelf.h", "libelf-dev"),
        _file("OpenSSL headers", "/usr/include/openssl/ssl.h", "libssl-dev"),
        _static_busybox(),
        _static_lib("libnuma.a", "libnuma-dev"),
        _static_lib("liburing.a", "liburing-dev"),
        _file("default kernel source", str(DEFAULT_SOURCE), "linux-source-6.12"),
        _free_disk(cache),
    ]


def doctor(cache: Path | None = None) -> int:
    cache = Path(cache) if cache else cache_root()
    results = checks(cache)
    missing = set()
    for c in results:
        mark = "ok  " if c.ok else ("MISS" if c.required else "warn")
        hint = f"  (apt-get install {c.package})" if not c.ok and c.package else ""
        print(f"[{mark}] {c.name:<22} {c.detail}{hint}")
        if not c.ok and c.required and c.package:
            missing.add(c.package)
    bad = [c for c in results if c.required and not c.ok]
    if missing:
        print(f"\nto fix: apt-get install {' '.join(sorted(missing))}")
    print(f"\n{'host ready' if not bad else f'{len(bad)} required item(s) missing'}"
          f" (python {sys.version.split()[0]}, cache {cache}, {os.cpu_count()} cpus)")
    return EXIT_CLEAN if not bad else EXIT_COULD_NOT_TEST
