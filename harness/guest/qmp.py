"""QEMU's machine protocol (QMP): the host's hand on a running guest.

Every machine has a QMP socket in its private runtime directory. kstress uses
it to learn the forwarded SSH port (QEMU binds port 0, so two guests never
race for a port), to hot-add memory (pc-dimm), to inject an NMI or a SysRq
key when the guest no longer answers, and to quit cleanly.

The protocol client is QEMU's own (the qemu.qmp package, its synchronous
shim): greeting, capability negotiation, events and errors handled the way
QEMU's test suite handles them, instead of a hand-written JSON loop.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from qemu.qmp import ConnectError, ExecuteError
from qemu.qmp.legacy import QEMUMonitorProtocol

from harness.errors import CouldNotTest

_HOSTFWD = re.compile(r"TCP\[HOST_FORWARD\]\s+\d+\s+(?P<addr>\S+)\s+(?P<port>\d+)\s+\S+\s+(?P<guest>\d+)")


class QmpError(CouldNotTest):
    """QEMU refused a command or its monitor is gone."""


class Qmp:
    def __init__(self, socket_path: Path, timeout: float = 30):
        self.path = Path(socket_path)
        self._monitor = QEMUMonitorProtocol(str(self.path))
        self._monitor.settimeout(timeout)

    def connect(self, wait: float = 10) -> "Qmp":
        """Connect once QEMU has made the socket (it does so at startup)."""
        deadline = time.monotonic() + wait
        while not self.path.exists():  # not yet: no failed connects for qemu.qmp to log
            if time.monotonic() >= deadline:
                raise QmpError(f"QEMU made no monitor socket at {self.path} within {wait:.0f}s")
            time.sleep(0.05)
        try:
            self._monitor.connect()
        except (ConnectError, OSError) as exc:
            raise QmpError(f"cannot reach QEMU's monitor at {self.path}: {exc}") from None
        return self

    def execute(self, command: str, **arguments: Any) -> Any:
        try:
            return self._monitor.cmd(command, **arguments)
        except ExecuteError as exc:
            raise QmpError(f"QMP {command}: {exc}") from None
        except (ConnectError, OSError, EOFError) as exc:
            raise QmpError(f"QMP {command}: monitor gone ({exc})") from None

    def close(self) -> None:
        try:
            self._monitor.close()
        except Exception:  # closing a monitor whose QEMU is gone: nothing to do
            pass

    # --- what kstress asks of it ---

    def forwarded_port(self, guest_port: int) -> int:
        """The host port QEMU bound for ``guest_port`` (hostfwd asked for port 0)."""
        usernet = self.execute("human-monitor-command", **{"command-line": "info usernet"})
        for m in _HOSTFWD.finditer(usernet):
            if int(m.group("guest")) == guest_port:
                return int(m.group("port"))
        raise QmpError(f"no host forward to guest port {guest_port} in: {usernet.strip()}")

    def hot_add_dimm(self, name: str, size_mb: int, node: int) -> None:
        """A pc-dimm of ``size_mb`` on NUMA ``node``; the guest sees a new
        memory block range (ACPI hotplug) that it must online itself."""
        self.execute("object-add", **{"qom-type": "memory-backend-ram", "id": f"{name}-mem",
                                      "size": size_mb << 20})
        self.execute("device_add", driver="pc-dimm", id=name, memdev=f"{name}-mem", node=node)

    def inject_nmi(self) -> None:
        self.execute("inject-nmi")

    def send_keys(self, *keys: str) -> None:
        """Keys pressed together, e.g. ("alt", "sysrq", "t")."""
        self.execute("send-key", keys=[{"type": "qcode", "data": k} for k in keys])

    def quit(self) -> None:
        try:
            self.execute("quit")
        except QmpError:
            pass  # QEMU exits as it answers: a lost answer is expected
