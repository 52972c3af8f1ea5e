"""Child processes that must not outlive kstress (QEMU, make).

PR_SET_PDEATHSIG makes the kernel signal the child when the thread that
forked it dies, even by SIGKILL. libc is loaded here, at import, never in
the forked child: between fork and exec only async-signal-safe work is
allowed, and dlopen is not.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from typing import Callable

from harness.errors import CouldNotTest

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets ``sig`` when our forking thread dies.

    The check after prctl closes the window where we died before it took
    effect (the child would then have been re-parented already).
    """
    parent = os.getpid()

    def preexec() -> None:
        _libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)
    return preexec


def run_tool(argv: list[str], what: str, timeout: float = 600) -> str:
    """Run a host tool (qemu-img, mkfs.ext4, ...) to completion; its failure is
    a CouldNotTest naming ``what`` and the tool's last words."""
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise CouldNotTest(f"{what}: {argv[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise CouldNotTest(f"{what}: {argv[0]} did not finish within {timeout:.0f}s") from None
    if res.returncode != 0:
        last = (res.stderr.strip() or res.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise CouldNotTest(f"{what}: {argv[0]} failed ({res.returncode}): {last[0]}")
    return res.stdout
