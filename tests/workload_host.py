"""What the C workloads' tests share: building a workload's static binary,
running it on the host, reading its key=value summary, what the host offers
it (NUMA nodes with memory, swap devices), and the Kconfig symbols of
Debian's 6.12 that a manifest's kernel_options must name."""

from __future__ import annotations

import os
import re
import struct
import subprocess
from collections import Counter
from pathlib import Path

import pytest

import harness.stress.manifest as wl
from harness.stress.adapters import c as c_adapter

# What kernel console output looks like; a workload's output must not.
KERNEL_LIKE = re.compile(r"\[\s*\d+\.\d+\]|BUG|WARNING|Oops|panic|Call Trace")
KEY_VALUE = re.compile(r"\b(\w+)=(\S+)")
PT_DYNAMIC, PT_INTERP = 2, 3
DEBIAN_TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")


def build(name: str, cache: Path) -> Path:
    """The repository workload's static binary, built into the cache ``cache``."""
    return c_adapter.build(wl.load_workloads()[name], cache)


def run(binary: Path, *args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=timeout, **kw)


def summary(out: str, name: str) -> dict[str, str]:
    """The key=value words of the summary lines ("<name> <part>: ..."; not
    progress or note lines); each key must appear once."""
    lines = [ln for ln in out.splitlines()
             if ln.startswith(f"{name} ") and not re.match(rf"{name} (progress|note):", ln)]
    pairs = [kv for ln in lines for kv in KEY_VALUE.findall(ln)]
    dup = [k for k, n in Counter(k for k, _ in pairs).items() if n > 1]
    assert not dup, f"keys printed twice: {dup}\n{out}"
    return dict(pairs)


DECISION = re.compile(r"^decision (\w+) n=(\d+) .*$", re.M)


def decisions(out: str) -> dict[str, list[str]]:
    """The "decision <stream> n=<n> ..." lines (--log, --plan), by stream."""
    streams: dict[str, list[str]] = {}
    for m in DECISION.finditer(out):
        streams.setdefault(m.group(1), []).append(m.group(0))
    return streams


def counts(out: str, name: str) -> dict[str, int]:
    """The summary's whole-number values."""
    return {k: int(v) for k, v in summary(out, name).items() if v.isdigit()}


def has_program_header(path: Path, wanted: int) -> bool:
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2, "expected a 64-bit ELF"
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    return any(struct.unpack_from("<I", data, phoff + i * phentsize)[0] == wanted for i in range(phnum))


def assert_static(binary: Path) -> None:
    """An executable with no interpreter and no dynamic section: it runs in
    an initramfs guest without libc."""
    assert os.access(binary, os.X_OK)
    assert not has_program_header(binary, PT_INTERP)
    assert not has_program_header(binary, PT_DYNAMIC)


def assert_usage_error(res: subprocess.CompletedProcess) -> None:
    """Exit 2 with the usage on stderr, and nothing on stdout."""
    assert res.returncode == 2 and "usage:" in res.stderr, (res.args, res.stderr)
    assert res.stdout == "", (res.args, res.stdout)


def active_swap_devices() -> int:
    """The host's active swap devices (the lines of /proc/swaps after its header)."""
    try:
        return max(0, len(Path("/proc/swaps").read_text().splitlines()) - 1)
    except OSError:
        return 0


def nodes_with_memory() -> int:
    """The host's NUMA nodes with memory (1 without NUMA sysfs)."""
    try:
        text = Path("/sys/devices/system/node/has_memory").read_text().strip()
    except OSError:
        return 1
    count = 0
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        count += int(hi or lo) - int(lo) + 1
    return count


def kconfig_symbols_6_12(tmp_path: Path) -> set[str]:
    """Every config symbol Debian's 6.12 source defines (only its Kconfig
    files are unpacked: the whole tree is 1.7 GB); skips without the tarball."""
    if not DEBIAN_TARBALL.is_file():
        pytest.skip(f"{DEBIAN_TARBALL} not installed (Debian package linux-source-6.12)")
    subprocess.run(["tar", "-xf", str(DEBIAN_TARBALL), "-C", str(tmp_path), "--wildcards",
                    "linux-source-6.12/*Kconfig*"], check=True)
    defined = set()
    for f in (tmp_path / "linux-source-6.12").rglob("Kconfig*"):
        defined.update(re.findall(r"^\s*(?:menu)?config\s+(\w+)\s*$", f.read_text(errors="replace"), re.M))
    assert len(defined) > 10000, len(defined)
    return defined
