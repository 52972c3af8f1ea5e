"""Progress messages on stderr, so stdout stays machine-readable.

A mode may keep one live status line at the bottom of a terminal
(modes/progress.py): messages print above it and it is drawn again below.
"""

import sys
import threading
import time

_T0 = time.monotonic()
_lock = threading.Lock()  # a soak's guests log from their threads
_status = ""  # the live status line on a terminal, "" when there is none
_CLEAR = "\r\033[K"


def _emit(line: str) -> None:
    with _lock:
        out = sys.stderr
        out.write(f"{_CLEAR if _status else ''}{line}\n{_status}")
        out.flush()


def info(msg: str) -> None:
    _emit(f"[kstress {time.monotonic() - _T0:7.1f}s] {msg}")


def warn(msg: str) -> None:
    _emit(f"[kstress {time.monotonic() - _T0:7.1f}s] warning: {msg}")


def status(line: str) -> None:
    """Draw ``line`` in place of the terminal's status line ("" takes it away)."""
    global _status
    with _lock:
        _status = line
        sys.stderr.write(_CLEAR + line)
        sys.stderr.flush()
