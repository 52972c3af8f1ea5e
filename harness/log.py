"""Progress messages on stderr, so stdout stays machine-readable."""

import sys
import time

_T0 = time.monotonic()


def info(msg: str) -> None:
    print(f"[kstress {time.monotonic() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def warn(msg: str) -> None:
    print(f"[kstress {time.monotonic() - _T0:7.1f}s] warning: {msg}", file=sys.stderr, flush=True)
