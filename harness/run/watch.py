"""Stopping a run at the first finding a mode wants (the bug zoo's "first
matching report").

A mode gives the runner a `stop_when`: asked with the run record after every
workload, and, while a workload runs, with the record as it would be if the
workload ended now (the findings the console holds so far). Once it gives a
reason, the watch lets the report finish printing, stops the guest if the
workload still runs (the workload ends with it) and the runner skips the
workloads left.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from harness import log
from harness.console import analyze_file
from harness.run.record import CaseResult, RunRecord
from harness.run.results import file_size
from harness.run.triage import Triage

WATCH_EVERY = 2.0   # seconds between looks at a growing console while a workload runs
REPORT_QUIET = 2.0  # a report is complete once the console has been quiet this long...
REPORT_WAIT = 15.0  # ...or after this long

StopWhen = Callable[[RunRecord], Optional[str]]


class ConsoleWatch:
    def __init__(self, stop_when: StopWhen | None, console_log: Path, known_issues: list,
                 on_stop: Callable[[str], None]):
        self.stop_when = stop_when
        self.console_log = console_log
        self.known_issues = known_issues
        self.on_stop = on_stop
        self.reason: str | None = None  # why stop_when ended the run
        self.guest_stopped = False  # the watch stopped the guest, ending a workload

    def should_stop(self, record: RunRecord) -> bool:
        """After a workload: does the record as it stands end the run?"""
        if self.stop_when is not None and not self.reason:
            self._stop(self.stop_when(record))
        return bool(self.reason)

    def _stop(self, reason: str | None) -> None:
        if reason and not self.reason:
            self.reason = reason
            self.on_stop(reason)

    @contextlib.contextmanager
    def watching(self, record: RunRecord, kernel_version: str | None, case: CaseResult, start: int,
                 stop_guest: Callable[[], None]):
        """While a workload runs: look at the console as it grows."""
        if self.stop_when is None:
            yield
            return
        done = threading.Event()
        look = _Look(record, kernel_version, case.name, start, self.console_log, self.known_issues)
        watcher = threading.Thread(target=self._watch, args=(look, stop_guest, done),
                                   name=f"watch-{case.name}", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            done.set()
            watcher.join()

    def _watch(self, look: _Look, stop_guest: Callable[[], None], done: threading.Event) -> None:
        seen = file_size(self.console_log)
        while not done.wait(WATCH_EVERY):
            size = file_size(self.console_log)
            if size == seen:
                continue
            seen = size
            try:
                reason = self.stop_when(look.record_until(size))
            except Exception as exc:  # never lose the run over a look at it: the case's end looks again
                log.warn(f"console watch: {exc}")
                continue
            if reason:
                self._wait_quiet(done)
                self._stop(reason)
                if not done.is_set():  # the workload still runs: end it with its guest
                    self.guest_stopped = True
                    stop_guest()
                return

    def _wait_quiet(self, done: threading.Event) -> None:
        deadline = time.monotonic() + REPORT_WAIT
        size = file_size(self.console_log)
        while time.monotonic() < deadline and not done.wait(REPORT_QUIET):
            now = file_size(self.console_log)
            if now == size:
                return
            size = now


@dataclasses.dataclass
class _Look:
    """What the watch needs to see the record as it would be if the case ended now."""
    record: RunRecord
    kernel_version: str | None
    case: str
    start: int
    console_log: Path
    known_issues: list

    def record_until(self, end: int) -> RunRecord:
        # A scratch triage: the run's own sees only whole reports, at the case's end.
        scratch = Triage(self.known_issues)
        scratch.kernel_version = self.kernel_version
        scratch.attribute(analyze_file(self.console_log), CaseResult(self.case), self.start, end)
        return dataclasses.replace(self.record, findings=self.record.findings + scratch.records)
