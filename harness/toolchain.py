"""The host toolchain's identity: part of every cache key of what it builds.

The compiler's version line is not enough: the assembler and the linker
(binutils) shape the objects, the kernel's alternatives and ORC tables, and
a static workload; a binutils upgrade must rebuild, as a gcc upgrade does.
"""

from __future__ import annotations

import functools
import subprocess

from harness.errors import CouldNotTest

CC = "gcc"
BINUTILS = ("as", "ld")


def _version_line(tool: str, package: str) -> str:
    try:
        res = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False)
    except OSError:
        raise CouldNotTest(f"{tool} not found: install {package}") from None
    if res.returncode != 0:
        raise CouldNotTest(f"{tool} --version failed: {res.stderr.strip()[:200]}")
    return (res.stdout.splitlines() or ["unknown"])[0].strip()


@functools.lru_cache(maxsize=None)
def compiler_id(cc: str = CC) -> str:
    """The first line of ``cc --version`` (e.g. "gcc (Debian 12.2.0-14) 12.2.0")."""
    return _version_line(cc, "build-essential")


@functools.lru_cache(maxsize=None)
def toolchain_id(cc: str = CC) -> str:
    """Compiler, assembler and linker version lines, e.g. "gcc (Debian 12.2.0-14) 12.2.0;
    GNU assembler (GNU Binutils for Debian) 2.40; GNU ld (GNU Binutils for Debian) 2.40"."""
    return "; ".join([compiler_id(cc)] + [_version_line(t, "binutils") for t in BINUTILS])
