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
from typing import Callable

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
