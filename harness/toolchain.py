"""The host compiler's identity: part of every cache key of what it builds."""

from __future__ import annotations

import functools
import subprocess

from harness.errors import CouldNotTest

CC = "gcc"


@functools.lru_cache(maxsize=None)
def compiler_id(cc: str = CC) -> str:
    """The first line of ``cc --version`` (e.g. "gcc (Debian 12.2.0-14) 12.2.0")."""
    try:
        res = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False)
    except OSError:
        raise CouldNotTest(f"{cc} not found: install build-essential") from None
    if res.returncode != 0:
        raise CouldNotTest(f"{cc} --version failed: {res.stderr.strip()[:200]}")
    return (res.stdout.splitlines() or ["unknown"])[0].strip()
