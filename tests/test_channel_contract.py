"""The contract every channel keeps, whatever carries it: run, exit status,
timeout, output integrity, a large output, upload. One class, run on every
transport kstress has: the serial console (an initramfs guest booted from the
session's default kernel), SSH and the serial login (a Debian guest).
"""

from __future__ import annotations

import hashlib
import os

import pytest
from debian_image import debian_image_or_skip

from harness.guest.channels import Channel, CommandResult
from harness.guest.channels.login import LoginChannel
from harness.guest.channels.serial import SerialChannel, heartbeat_for
from harness.guest.channels.ssh import SshChannel
from harness.guest.images.debian import make_overlay
from harness.guest.images.initramfs import build_initramfs
from harness.guest.machine import DEFAULT_CMDLINE, GuestConfig, Machine, tcg_relaxations

pytestmark = pytest.mark.e2e
CHANNELS = ["serial", "ssh", "login"]


@pytest.fixture(scope="module", params=CHANNELS)
def channel(request, default_kernel, kernel_cache, tmp_path_factory) -> Channel:
    tmp = tmp_path_factory.mktemp(f"contract-{request.param}")
    cmdline = f"{DEFAULT_CMDLINE} {tcg_relaxations()}"
    if request.param == "serial":
        cfg = GuestConfig(kernel=default_kernel.bzimage, initrd=build_initramfs({}, tmp / "cache"), accel="tcg",
                          cmdline=cmdline)
    else:
        image = debian_image_or_skip(kernel_cache)
        cfg = GuestConfig(kernel=default_kernel.bzimage, accel="tcg", cmdline=f"{cmdline} {image.kernel_args}",
                          root_disk=make_overlay(image.path, tmp / "root.qcow2"), ssh=True, serial_login=True)
    with Machine(cfg, tmp / "console.log") as machine:
        machine.start()
        machine.wait_ready()
        if request.param == "serial":
            yield SerialChannel(machine, heartbeat=heartbeat_for(cfg.silence_timeout))
        elif request.param == "ssh":
            ssh = SshChannel(machine.ssh_port, machine.ssh_key, host_key=image.ssh_host_key)
            ssh.connect()
            yield ssh
            ssh.close()
        else:
            login = LoginChannel(machine.login_socket)
            login.connect()
            yield login
            login.close()


class TestChannelContract:
    def test_run_returns_output_and_status(self, channel):
        r = channel.run("echo out; echo err >&2; exit 3", 30)
        assert isinstance(r, CommandResult)
        assert (r.exit_status, r.timed_out) == (3, False)
        assert sorted(r.output.splitlines()) == ["err", "out"]

    def test_timeout_is_reported_as_a_timeout(self, channel):
        r = channel.run("sleep 30; echo never", 2)
        assert r.timed_out and r.exit_status is None and "never" not in r.output
        assert channel.run("echo still here", 30).output == "still here\n"

    def test_output_is_byte_exact(self, channel):
        # Every byte value that survives a UTF-8 round trip, plus lines that
        # look like kernel console lines and markers.
        text = "".join(chr(c) for c in range(1, 0x7f) if chr(c) != "\r") + "äé€😀\n[  1.0] BUG: not a report\nKS:x:E\n"
        octal = "".join(f"\\{b:03o}" for b in text.encode())  # printf's own escapes: nothing for a shell to eat
        r = channel.run(f"printf '{octal}'", 60)
        assert r.exit_status == 0 and r.output == text

    def test_large_output(self, channel):
        r = channel.run("seq 1 200000", 300)
        assert r.exit_status == 0
        assert hashlib.sha256(r.output.encode()).hexdigest() == \
            hashlib.sha256("".join(f"{i}\n" for i in range(1, 200001)).encode()).hexdigest()

    def test_upload_then_read_back(self, channel):
        data = os.urandom(48 * 1024)
        channel.upload(data, "/tmp/uploaded.bin", mode=0o750)
        r = channel.run("sha256sum /tmp/uploaded.bin; stat -c %a /tmp/uploaded.bin", 60)
        digest, _name, mode = r.output.split()
        assert digest == hashlib.sha256(data).hexdigest() and mode == "750"

    def test_read_file(self, channel):
        assert channel.read_file("/proc/sys/kernel/ostype") == "Linux\n"
