"""A long mode's progress on stderr: on a terminal one line redrawn in place
every second (log messages print above it), otherwise a plain line every
``every`` seconds and whenever the mode asks (a soak: after each iteration),
so a CI log shows it without a flood of carriage returns."""

from __future__ import annotations

import sys
import threading
from typing import Callable

from harness import log

TTY_EVERY = 1.0


class ProgressLine:
    def __init__(self, text: Callable[[], str], every: float = 60.0, tty: bool | None = None):
        self.text = text
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.every = TTY_EVERY if self.tty else every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def show(self) -> None:
        (log.status if self.tty else log.info)(self.text())

    def stop(self) -> None:
        """The last word: on a terminal the live line becomes an ordinary one."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self.tty:
            log.status("")
        log.info(self.text())

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.show()
