"""One boot of the guest: the machine, its channels and its setup.

The runner makes one session per boot: the first, and a fresh one after a
workload hung or crashed its guest (the console says so with a kstress
restart line, so the analyzer never takes it for the kernel's own reboot).
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path

from harness import log
from harness.guest.channels import Channel
from harness.guest.channels.login import LoginChannel
from harness.guest.channels.serial import SerialChannel, heartbeat_for
from harness.guest.channels.ssh import SshChannel
from harness.guest.machine import Machine
from harness.run import guest_setup, hang
from harness.run.prepare import GuestPlan
from harness.run.record import GuestRecord

SSH_READY_TIMEOUT = 120.0  # seconds from the ready marker to a working SSH login


class GuestSession:
    def __init__(self, plan: GuestPlan, console_log: Path, scratch: Path, boot: int,
                 restart_reason: str | None = None):
        self.plan = plan
        self.console_log = console_log
        self.machine = Machine(plan.machine_for_boot(scratch, boot), console_log, restart_reason)
        self.channel: Channel = SerialChannel(self.machine,
                                              heartbeat=heartbeat_for(plan.machine.silence_timeout))
        self.login: LoginChannel | None = None
        self.record: GuestRecord = plan.record
        self.record.qemu_argv = self.machine.qemu_argv
        self.record.qemu_command = shlex.join(self.machine.qemu_argv)

    def __enter__(self) -> GuestSession:
        return self

    def __exit__(self, *exc) -> None:
        for channel in (self.channel, self.login):
            if channel is not None:
                channel.close()
        self.machine.kill()

    def boot(self) -> None:
        """Start QEMU and wait for the image's ready marker, then for SSH on
        the Debian image. Guest trouble raises GuestError; an sshd that never
        answers, ChannelError."""
        self.machine.start()
        self.record.seconds_to_ready = round(self.machine.wait_ready(), 2)
        if self.machine.cfg.ssh:
            t0 = time.monotonic()
            ssh = SshChannel(self.machine.ssh_port, self.machine.ssh_key, host_key=self.plan.ssh_host_key)
            ssh.connect(timeout=SSH_READY_TIMEOUT)
            self.record.seconds_to_ssh = round(self.record.seconds_to_ready + time.monotonic() - t0, 2)
            self.channel = ssh
            self.login = LoginChannel(self.machine.login_socket)
            log.info(f"guest: SSH on 127.0.0.1:{ssh.port} after {self.record.seconds_to_ssh:.1f}s")
        self.record.channel = type(self.channel).__name__

    def setup(self, hotplug_dimms: int, hotplug_dimm_mb: int) -> None:
        if self.plan.swap != "none":
            self.record.swap = guest_setup.setup_swap(self.channel, self.plan.swap, self.plan.swap_mb)
        if hotplug_dimms:
            self.record.hotplug = guest_setup.hotplug_memory(self.machine, self.channel, hotplug_dimms,
                                                             hotplug_dimm_mb, self.plan.machine.numa_nodes)

    def diagnose(self, comm: str, workload: str, channel_works: bool) -> hang.HangReport:
        """Dump the kernel's view of a hang; channels first while they work."""
        channels = [c for c in (self.channel, self.login) if c is not None] if channel_works else \
            [c for c in (self.login,) if c is not None]
        return hang.diagnose(self.machine, channels, self.console_log, comm, workload)

    def shutdown(self) -> None:
        self.machine.shutdown()
