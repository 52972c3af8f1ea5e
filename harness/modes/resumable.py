"""What the modes that run many Runners and resume (zoo, soak) share: a
plan file that fixes what the mode does, a JSON-lines journal of what it
has done (each line appended and fsynced as it is made, so a process killed
at any point loses no finished run), and one run driven to its exit code."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from pathlib import Path
from typing import TypeVar

from harness import log
from harness.errors import KstressError, UsageError
from harness.run.record import atomic_write_text
from harness.run.runner import Runner

PLAN = "plan.json"
JOURNAL = "journal.jsonl"

P = TypeVar("P")


def save_plan(directory: Path, plan) -> None:
    atomic_write_text(directory / PLAN, json.dumps(dataclasses.asdict(plan), indent=2) + "\n")


def load_plan(cls: type[P], directory: Path, what: str, option: str = "--resume") -> P:
    """The plan of ``directory``; a directory without one (or with another
    mode's) is a UsageError naming it."""
    try:
        data = json.loads((directory / PLAN).read_text())
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        return cls(**data)
    except FileNotFoundError:
        raise UsageError(f"{option} {directory}: no {PLAN} there (not a {what} directory)") from None
    except NotADirectoryError:
        raise UsageError(f"{option} {directory}: not a directory") from None
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{directory / PLAN}: not a {what} plan ({exc})") from None


class Journal:
    """One JSON object per line, each appended and fsynced as it is made."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()  # a soak's parallel guests append from their threads

    def append(self, entry: dict) -> None:
        data = (json.dumps(entry, sort_keys=True) + "\n").encode()
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)

    def entries(self) -> list[dict]:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for number, line in enumerate(lines, 1):
            try:
                out.append(json.loads(line))
            except ValueError:  # a line torn by a crash mid-write: that run is redone
                log.warn(f"{self.path}:{number}: torn journal line ignored")
        return out


def drive(runner: Runner) -> tuple[int, str | None]:
    """One run's exit code, and the error that ended it early, if one did."""
    try:
        return runner.run(), None
    except KstressError as exc:
        return exc.exit_code, str(exc).splitlines()[0]
