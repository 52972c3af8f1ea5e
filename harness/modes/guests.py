"""Guests at once: N threads, each driving one Runner at a time, and how
Ctrl-C (or SIGTERM, which kstress turns into it) reaches them.

Python delivers a signal to the main thread only. On one, the main thread
stops handing out work and raises KeyboardInterrupt in each thread that is
driving a Runner (PyThreadState_SetAsyncExc), so that Runner ends as after
Ctrl-C in `kstress run`: its guest stopped, its record written. One thread
at a time, each after the one before has taken its exception: CPython 3.11
clears the interpreter's "asynchronous exception pending" flag when the
first thread takes its own, and a second one pending then waits unseen.
With one guest the work runs in the main thread itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
import time
from typing import Callable, Iterator

from harness import log
from harness.run.runner import Runner

TAKE_WAIT = 10.0  # seconds for a thread to take its KeyboardInterrupt before the next one gets its own
END_WAIT = 60.0  # seconds for the interrupted Runners to write their records


def raise_in(thread: threading.Thread) -> None:
    """KeyboardInterrupt in ``thread`` at its next Python instruction."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(KeyboardInterrupt))


class GuestThreads:
    def __init__(self, count: int, work: Callable[[], None]):
        self.count, self.work = count, work
        self.stop = threading.Event()  # no new work once set
        self.lock = threading.Lock()
        self.driving: dict[int, Runner] = {}  # thread ident -> the Runner it drives

    def run(self) -> None:
        """Until every thread's work returns; KeyboardInterrupt passes through once they have stopped."""
        if self.count == 1:
            self.work()
            return
        threads = [threading.Thread(target=self.work, name=f"guest-{n + 1}", daemon=True) for n in range(self.count)]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.5)
        except KeyboardInterrupt:
            self._interrupt(threads)
            raise

    @contextlib.contextmanager
    def drive(self, runner: Runner) -> Iterator[None]:
        """The calling thread drives ``runner`` inside this block; stopping already, it does not start."""
        me = threading.get_ident()
        with self.lock:
            if self.stop.is_set():
                raise KeyboardInterrupt("stopping")
            self.driving[me] = runner
        try:
            yield
        finally:
            with self.lock:
                self.driving.pop(me, None)

    def _interrupt(self, threads: list[threading.Thread]) -> None:
        with self.lock:
            self.stop.set()
            targets = [(t, self.driving.get(t.ident)) for t in threads]
        log.warn(f"interrupted: stopping {sum(r is not None for _, r in targets)} guest(s)")
        # Not Thread.is_alive() nor join(): on 3.11 a join that Ctrl-C interrupted may leave its
        # thread marked stopped while it runs on. What a thread drives is known from self.driving.
        for thread, runner in targets:
            if runner is None:
                continue  # between runs: it sees self.stop before its next one
            raise_in(thread)
            self._taken(thread, runner)
        deadline = time.monotonic() + END_WAIT
        while self.driving and time.monotonic() < deadline:
            time.sleep(0.05)

    def _taken(self, thread: threading.Thread, runner: Runner) -> None:
        """Until the Runner has taken its KeyboardInterrupt (or is no longer driven), TAKE_WAIT at most."""
        deadline = time.monotonic() + TAKE_WAIT
        while not runner.record.interrupted and self.driving.get(thread.ident) is runner and \
                time.monotonic() < deadline:
            time.sleep(0.02)


