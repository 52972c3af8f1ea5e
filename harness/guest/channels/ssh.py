"""The SSH channel: commands over a real sshd in the guest (paramiko).

A per-guest ed25519 key (harness/guest/sshkey.py, kept in the machine's
private runtime directory, never in the results) reaches the guest through
QEMU's fw_cfg; the guest's host key is pinned from the image, so the client trusts
nothing else. The forwarded port is bound on 127.0.0.1 only.

A command runs under a small sh wrapper in the guest: its own session (a
timeout kills its children too), a watcher that marks a timeout before it
kills, so a timeout always reads as a timeout. Output streams to a file as it
arrives, so a run killed mid-command keeps what the command had printed.
"""

from __future__ import annotations

import base64
import io
import logging
import secrets
import select
import shlex
import socket
import time
from pathlib import Path

import paramiko

from harness import log
from harness.guest.channels import Channel, ChannelError, CommandResult

# paramiko logs every failed attempt with a traceback from its own thread; a
# guest whose sshd is still starting fails many: the channel reports itself.
logging.getLogger("paramiko").setLevel(logging.CRITICAL)

WORK_DIR = "/tmp/ks"
GRACE = 30.0  # host-side slack over the guest-side timeout
CONNECT_RETRY = 0.5


def wrapped(command: str, nonce: str, timeout: float) -> str:
    """The guest-side shell: run ``command`` in its own session; on timeout
    write the mark, then kill the session."""
    mark = f"{WORK_DIR}/{nonce}.to"
    return (f"mkdir -p {WORK_DIR}; setsid sh -c {shlex.quote(command)} </dev/null & p=$!; "
            f"( sleep {max(1, int(timeout + 0.999))}; : >{mark}; kill -KILL -$p 2>/dev/null || kill -KILL $p ) & w=$!; "
            f"wait $p 2>/dev/null; st=$?; kill $w 2>/dev/null; exit $st")


class SshChannel(Channel):
    def __init__(self, port: int, key_path: Path, host_key: str | None = None, host: str = "127.0.0.1",
                 user: str = "root"):
        self.host, self.port, self.user = host, port, user
        self.key = paramiko.Ed25519Key.from_private_key_file(str(key_path))
        self.host_key = host_key  # "ssh-ed25519 AAAA..." from the image, or None to accept the first
        self._client: paramiko.SSHClient | None = None

    # --- connection ---

    def connect(self, timeout: float = 120) -> float:
        """Connect, retrying while the guest's sshd comes up (or comes back
        after a restart). Returns the seconds it took."""
        t0 = time.monotonic()
        last: Exception | None = None
        self.close()
        while time.monotonic() - t0 < timeout:
            client = paramiko.SSHClient()
            if self.host_key:
                kind, blob = self.host_key.split()[:2]
                client.get_host_keys().add(f"[{self.host}]:{self.port}", kind,
                                           paramiko.PKey.from_type_string(kind, base64.b64decode(blob)))
                client.set_missing_host_key_policy(paramiko.RejectPolicy())
            else:
                client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
            try:
                client.connect(self.host, self.port, username=self.user, pkey=self.key, timeout=10,
                               banner_timeout=10, auth_timeout=10, allow_agent=False, look_for_keys=False)
                self._client = client
                return time.monotonic() - t0
            except paramiko.BadHostKeyException as exc:
                client.close()
                raise ChannelError(f"ssh {self.host}:{self.port}: the guest's host key is not the image's "
                                   f"({exc})") from None
            except (OSError, paramiko.SSHException, EOFError) as exc:
                client.close()
                last = exc
                time.sleep(CONNECT_RETRY)
        raise ChannelError(f"ssh {self.host}:{self.port}: no answer within {timeout:.0f}s ({last})")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def connected(self) -> bool:
        t = self._client.get_transport() if self._client else None
        return bool(t and t.is_active())

    def _transport(self) -> paramiko.Transport:
        if not self.connected:
            self.connect(timeout=30)
        return self._client.get_transport()

    # --- Channel ---

    def run(self, command: str, timeout: float, output: Path | None = None) -> CommandResult:
        """Run ``command``; its output (stdout and stderr interleaved) streams
        to ``output`` as it arrives."""
        nonce = secrets.token_hex(6)
        t0 = time.monotonic()
        try:
            chan = self._transport().open_session(timeout=30)
            chan.set_combine_stderr(True)
            chan.exec_command(wrapped(command, nonce, timeout))
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise ChannelError(f"ssh: cannot start a command in the guest ({exc})") from None
        data = self._collect(chan, output, t0 + timeout + GRACE)
        took = time.monotonic() - t0
        text = data.decode("utf-8", "replace")
        if not chan.exit_status_ready():
            # The guest's own timeout should have ended it: the guest is stuck.
            chan.close()
            self.close()
            return CommandResult(None, text, True, took)
        status = chan.recv_exit_status()
        chan.close()
        if status == -1:  # closed with no exit status: the connection or the guest went away
            self.close()
            raise ChannelError(f"ssh: the connection dropped while running {command[:60]!r}")
        timed_out = self._exec(f"test -e {WORK_DIR}/{nonce}.to && rm -f {WORK_DIR}/{nonce}.to") == 0
        return CommandResult(None if timed_out else status, text, timed_out, took)

    def _collect(self, chan: paramiko.Channel, output: Path | None, deadline: float) -> bytes:
        buf = bytearray()
        sink = open(output, "wb", buffering=0) if output else None
        try:
            while time.monotonic() < deadline:
                if chan.recv_ready():
                    chunk = chan.recv(65536)
                    buf += chunk
                    if sink:
                        sink.write(chunk)
                    continue
                if chan.exit_status_ready() and not chan.recv_ready():
                    break
                select.select([chan], [], [], min(1.0, max(0.0, deadline - time.monotonic())))
            while chan.recv_ready():  # what arrived with the exit status
                chunk = chan.recv(65536)
                buf += chunk
                if sink:
                    sink.write(chunk)
        except (OSError, paramiko.SSHException, socket.timeout) as exc:
            log.warn(f"ssh: output stream broken: {exc}")
        finally:
            if sink:
                sink.close()
        return bytes(buf)

    def _exec(self, command: str, timeout: float = 30) -> int | None:
        """A short helper command without the wrapper; its exit status."""
        chan = self._transport().open_session(timeout=timeout)
        chan.settimeout(timeout)
        chan.exec_command(command)
        try:
            return chan.recv_exit_status()
        finally:
            chan.close()

    def upload(self, data: bytes, path: str, mode: int = 0o644, timeout: float = 120) -> None:
        try:
            with self._client_sftp() as sftp:
                sftp.putfo(io.BytesIO(data), path)
                sftp.chmod(path, mode)
        except (OSError, paramiko.SSHException) as exc:
            raise ChannelError(f"cannot write {path} in the guest: {exc}") from None

    def download(self, path: str, dest: Path) -> None:
        try:
            with self._client_sftp() as sftp:
                sftp.get(path, str(dest))
        except (OSError, paramiko.SSHException) as exc:
            raise ChannelError(f"cannot read {path} from the guest: {exc}") from None

    def _client_sftp(self) -> paramiko.SFTPClient:
        return paramiko.SFTPClient.from_transport(self._transport())
