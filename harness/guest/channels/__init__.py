"""How the runner runs commands in the guest, whatever carries them (LTP
kirk's shape): one ``Channel`` interface, one module per transport.

serial.py: the root shell on the serial console (initramfs guests).
"""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from harness.errors import CouldNotTest


@dataclass
class CommandResult:
    exit_status: int | None  # None when the command did not finish
    output: str  # stdout and stderr, interleaved
    timed_out: bool
    duration: float  # seconds, host side


class ChannelError(CouldNotTest):
    """The channel cannot carry commands (the guest does not answer)."""


class Channel(ABC):
    """What every channel gives the runner. Every channel passes the same
    contract tests (tests/test_channel_contract.py)."""

    @abstractmethod
    def run(self, command: str, timeout: float, output: Path | None = None) -> CommandResult:
        """Run ``command`` with /bin/sh in the guest; kill it after ``timeout`` s.
        A command killed for its timeout has timed_out=True and exit_status None.
        With ``output``, the output is also written there: as it arrives where
        the transport streams (SSH), else when the command ends."""

    @abstractmethod
    def upload(self, data: bytes, path: str, mode: int = 0o644, timeout: float = 120) -> None:
        """Write ``data`` to ``path`` in the guest."""

    def close(self) -> None:  # noqa: B027 (a channel that holds nothing has nothing to close)
        """Let go of what the channel holds (a connection); it may reconnect later."""

    def read_file(self, path: str, timeout: float = 30) -> str:
        r = self.run(f"cat -- {shlex.quote(path)}", timeout)
        if r.timed_out or r.exit_status != 0:
            why = "timed out" if r.timed_out else f"status {r.exit_status}: {r.output.strip()[:200]}"
            raise ChannelError(f"cannot read {path} in the guest ({why})")
        return r.output
