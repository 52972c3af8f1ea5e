"""The serial login channel: a root shell on the guest's second serial port
(ttyS1, a socket of QEMU's), driven with pexpect.

It is the fallback for when SSH is down, and the hang diagnosis's way in:
no network, no sshd, only a getty (the Debian image autologins root there)
and a shell. The kernel's console is ttyS0, so nothing interleaves here.
Commands run under the same wrapper as over SSH (own session, a timeout
mark written before the kill), their output framed by per-command markers.
"""

from __future__ import annotations

import base64
import re
import secrets
import socket
import time
from pathlib import Path

import pexpect
from pexpect import fdpexpect

from harness.guest.channels import Channel, ChannelError, CommandResult
from harness.guest.channels.ssh import WORK_DIR, wrapped

GRACE = 30.0


class LoginChannel(Channel):
    def __init__(self, socket_path: Path):
        self.socket_path = Path(socket_path)
        self._sock: socket.socket | None = None
        self._shell: fdpexpect.fdspawn | None = None

    def connect(self, timeout: float = 120) -> float:
        """Attach to the port and get a quiet shell (no echo, no CR); retried
        while the getty comes up."""
        t0 = time.monotonic()
        self.close()
        while True:
            try:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._sock.connect(str(self.socket_path))
                self._shell = fdpexpect.fdspawn(self._sock.fileno(), timeout=10, encoding=None)
                self._sync()
                return time.monotonic() - t0
            except (OSError, pexpect.TIMEOUT, pexpect.EOF) as exc:
                self.close()
                if time.monotonic() - t0 > timeout:
                    raise ChannelError(f"no login shell on {self.socket_path} within {timeout:.0f}s ({exc})") from None
                time.sleep(1)

    def _sync(self, tries: int = 3) -> None:
        """A quiet shell (no echo, no CR, no prompt) that answers, with
        everything before its answer consumed. Markers are split in what is
        typed ("SY""NC"), so an echo of the typed line never passes for the
        answer; a getty that restarted meanwhile gets the settings again."""
        for _ in range(tries):
            nonce = secrets.token_hex(4)
            self._shell.send(f"\nstty -echo -onlcr 2>/dev/null; PS1= PS2=; echo KS:{nonce}:SY\"\"NC\n".encode())
            try:
                self._shell.expect(f"KS:{nonce}:SYNC\n".encode(), timeout=10)
                return
            except pexpect.TIMEOUT:
                continue
        raise pexpect.TIMEOUT(f"the login shell did not answer {tries} times")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock, self._shell = None, None

    def run(self, command: str, timeout: float, output: Path | None = None) -> CommandResult:
        if self._shell is None:
            self.connect(timeout=30)
        nonce = secrets.token_hex(6)
        # base64 on the line: the command's quotes and newlines never meet
        # the interactive shell's parser.
        b64 = base64.b64encode(wrapped(command, nonce, timeout).encode()).decode()
        line = (f"echo {b64} | base64 -d > {WORK_DIR}/{nonce}.sh; sh {WORK_DIR}/{nonce}.sh; "
                f"st=$?; rm -f {WORK_DIR}/{nonce}.sh; echo; echo KS:{nonce}:E:$st; "
                f"test -e {WORK_DIR}/{nonce}.to && echo KS:{nonce}:\"\"T; rm -f {WORK_DIR}/{nonce}.to; "
                f"echo KS:{nonce}:\"\"D\n")
        t0 = time.monotonic()
        try:
            self._sync()
        except (pexpect.TIMEOUT, pexpect.EOF, OSError) as exc:
            self.close()
            raise ChannelError(f"the serial login shell does not answer: {exc}") from None
        try:
            self._shell.send(f"mkdir -p {WORK_DIR}\n".encode() + line.encode())
            self._shell.expect(re.compile(rf"\nKS:{nonce}:E:(\d+)\n".encode()), timeout=timeout + GRACE)
            data, status = self._shell.before, int(self._shell.match.group(1))
            self._shell.expect(f"KS:{nonce}:D\n".encode(), timeout=GRACE)
            timed_out = f"KS:{nonce}:T".encode() in self._shell.before
        except pexpect.TIMEOUT:
            self.close()  # the shell is stuck: the next command reconnects
            return CommandResult(None, "", True, time.monotonic() - t0)
        except (pexpect.EOF, OSError) as exc:
            self.close()
            raise ChannelError(f"serial login shell gone: {exc}") from None
        text = data.decode("utf-8", "replace")
        if output is not None:
            output.write_text(text)
        return CommandResult(None if timed_out else status, text, timed_out, time.monotonic() - t0)

    def upload(self, data: bytes, path: str, mode: int = 0o644, timeout: float = 120) -> None:
        tmp = f"{WORK_DIR}/up-{secrets.token_hex(6)}"
        b64 = base64.b64encode(data).decode()
        for i in range(0, len(b64), 1024) or [0]:
            r = self.run(f"printf %s {b64[i:i + 1024]} >> {tmp}", 30)
            if r.exit_status != 0:
                raise ChannelError(f"cannot write {path} in the guest: {r.output.strip()[:200]}")
        r = self.run(f"base64 -d {tmp} > {path} && chmod {mode:o} {path}; s=$?; rm -f {tmp}; exit $s", timeout)
        if r.exit_status != 0:
            raise ChannelError(f"cannot write {path} in the guest: {r.output.strip()[:200]}")
