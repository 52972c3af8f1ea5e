"""The serial channel: commands over the root shell that the init leaves on
the serial console, which the kernel shares for its own messages. So a command
is shipped as base64 into a file and run by the guest helper ks-run
(images/initramfs/ks-run), which reports between per-command markers:

    KS:<nonce>:B <status> <timed_out> <bytes>
    <the output, base64>
    KS:<nonce>:E

Printk lines that land in between are recognisable (base64 has no "[") and
are dropped from the result; console.log keeps them. Every line sent is
short, so the tty's 4096-byte canonical line limit never applies.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import secrets
import shlex
import time
from pathlib import Path
from typing import Protocol

from harness import log
from harness.guest.channels import Channel, ChannelError, CommandResult

KS_RUN = "/usr/libexec/kstress/ks-run"
WORK_DIR = "/tmp/ks"  # made by the init, used by ks-run
CHUNK = 512  # base64 characters per line sent to the guest shell
BATCH = 16  # lines sent before waiting for the shell to catch up
GRACE = 30.0  # host-side slack over the guest-side timeout
HEARTBEAT = 10  # seconds between ks-run's "still running" lines

# A printk line, whole or cut into by our output: "[   12.345678][  T123] ...".
_PRINTK = re.compile(rb"\[\s*\d+\.\d+\](?:\[\s*[TC]\d+\])?[^\n]*(?:\n|$)")
_HEARTBEAT = re.compile(rb"KS:[0-9a-f]+:H\r?\n")
_PRINTK_GAP = rb"(?:\[\s*\d+\.\d+\][^\n]*\n)*"


def marker_re(marker: str) -> re.Pattern:
    """Matches the line ``marker`` even with whole printk lines cut into it
    (the kernel writes its console between two FIFO loads of ours)."""
    parts = [re.escape(bytes([c])) for c in marker.encode()] + [rb"\r?\n"]
    return re.compile(_PRINTK_GAP.join(parts))


_NOT_B64 = re.compile(rb"[^A-Za-z0-9+/=]")


def strip_printk(data: bytes) -> bytes:
    """``data`` without the kernel's console lines, whole or cut into ours."""
    return _PRINTK.sub(b"", data)


class SerialPort(Protocol):
    """What SerialChannel needs from the guest (harness.guest.machine.Machine has it)."""

    def send(self, data: bytes) -> None: ...

    def expect(self, pattern: re.Pattern, timeout: float) -> tuple[bytes, re.Match] | None: ...


def command_lines(command: str, nonce: str, timeout: float, heartbeat: int = HEARTBEAT) -> list[str]:
    """The shell lines that ship ``command`` and run it through ks-run."""
    b64 = base64.b64encode(command.encode()).decode()
    f = f"{WORK_DIR}/{nonce}"
    lines = [f"echo {b64[i:i + CHUNK]}>>{f}.b64" for i in range(0, len(b64), CHUNK)] or [f": >{f}.b64"]
    lines.append(f"base64 -d {f}.b64 >{f}.cmd && {KS_RUN} {nonce} {max(1, math.ceil(timeout))} {heartbeat}")
    return lines


def parse_result(region: bytes, nonce: str) -> tuple[int, bool, str, bool]:
    """(status, timed_out, output, intact) from what came before "KS:<nonce>:E".

    ``intact`` is False if the output's byte count does not match ks-run's,
    i.e. something we could not recognise got mixed into it.
    """
    region = strip_printk(region)
    begin = re.search(rb"KS:" + nonce.encode() + rb":B (\d+) ([01]) (\d+)\r?\n", region)
    if begin is None:
        raise ChannelError(f"no result header for command {nonce} on the serial console")
    body = _HEARTBEAT.sub(b"", region[begin.end():])
    body = _NOT_B64.sub(b"", body)
    try:
        data = base64.b64decode(body + b"=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        data = b""
    size = int(begin.group(3))
    return int(begin.group(1)), begin.group(2) == b"1", data.decode("utf-8", "replace"), len(data) == size


def heartbeat_for(silence_timeout: float) -> int:
    """ks-run's heartbeat period: well inside the silence rule, so a command
    that prints nothing for minutes never reads as a silent guest."""
    return max(1, min(HEARTBEAT, int(silence_timeout // 3)))


class SerialChannel(Channel):
    def __init__(self, port: SerialPort, heartbeat: int = HEARTBEAT, grace: float = GRACE):
        self.port = port
        self.heartbeat = heartbeat
        self.grace = grace
        self._lost = False  # a command never reported back: resync before the next

    def _send_lines(self, lines: list[str], nonce: str) -> None:
        """Send lines in batches, each acknowledged, so the guest's tty buffers
        never hold more than a few KiB of pending input."""
        for i in range(0, len(lines), BATCH):
            batch = lines[i:i + BATCH]
            last = i + BATCH >= len(lines)
            if not last:
                batch = batch + [f"printf 'KS:%s:A{i}\\n' {nonce}"]
            self.port.send(("\n".join(batch) + "\n").encode())
            if not last and self.port.expect(marker_re(f"KS:{nonce}:A{i}"), self.grace) is None:
                self._lost = True
                raise ChannelError("the guest shell stopped reading input")

    def _resync(self) -> None:
        """Interrupt whatever holds the shell and check that it answers again."""
        nonce = secrets.token_hex(6)
        self.port.send(b"\x03\n")
        self.port.send(f"printf 'KS:%s:S\\n' {nonce}\n".encode())
        if self.port.expect(marker_re(f"KS:{nonce}:S"), self.grace) is None:
            raise ChannelError("the guest shell does not answer on the serial console")
        self._lost = False

    def run(self, command: str, timeout: float, output: Path | None = None) -> CommandResult:
        if self._lost:
            self._resync()
        nonce = secrets.token_hex(6)
        t0 = time.monotonic()
        self._send_lines(command_lines(command, nonce, timeout, self.heartbeat), nonce)
        got = self.port.expect(marker_re(f"KS:{nonce}:E"), timeout + self.grace)
        took = time.monotonic() - t0
        if got is None:
            # The guest's own timeout should have fired: its shell is stuck.
            self._lost = True
            return CommandResult(None, "", True, took)
        status, timed_out, text, intact = parse_result(got[0], nonce)
        if not intact:
            log.warn(f"guest command output may be garbled (length mismatch): {command[:60]}")
        if output is not None:
            output.write_text(text)
        return CommandResult(None if timed_out else status, text, timed_out, took)

    def upload(self, data: bytes, path: str, mode: int = 0o644, timeout: float = 120) -> None:
        """Ship ``data`` as base64 lines through the shell (no file transfer
        protocol on a serial line), then decode it into place."""
        b64 = base64.b64encode(data).decode()
        tmp = f"{WORK_DIR}/up-{secrets.token_hex(6)}"
        lines = [f"echo {b64[i:i + CHUNK]}>>{tmp}" for i in range(0, len(b64), CHUNK)] or [f": >{tmp}"]
        nonce = secrets.token_hex(6)
        self._send_lines(lines, nonce)
        q = shlex.quote(path)
        r = self.run(f"base64 -d {tmp} >{q} && chmod {mode:o} {q}; s=$?; rm -f {tmp}; exit $s", timeout)
        if r.timed_out or r.exit_status != 0:
            why = "timed out" if r.timed_out else f"status {r.exit_status}: {r.output.strip()[:200]}"
            raise ChannelError(f"cannot write {path} in the guest ({why})")
