"""The Debian guest as a real machine: SSH on 127.0.0.1 only, key-only root
login, reconnects, swap, memory hot-add, faults of the machine itself, and
two runs at once on one host.

These boot real kernels in TCG guests: minutes, not seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paramiko
import pytest
from debian_image import debian_image_or_skip
from junit_schema import validate
from run_schema import validate_run_json
from test_e2e_run import REPO, kstress, qemu_processes_mentioning, run_dir_of

from harness.guest.channels import ChannelError
from harness.guest.channels.ssh import SshChannel
from harness.guest.images.debian import make_overlay
from harness.guest.machine import DEFAULT_CMDLINE, GuestConfig, Machine, tcg_relaxations
from harness.kernel import DEFAULT_SOURCE

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not DEFAULT_SOURCE.exists(),
                       reason=f"needs the kernel source {DEFAULT_SOURCE} (Debian package linux-source-6.12)"),
]
SHORT = REPO / "tests" / "data" / "configs" / "debian-short.yaml"


@pytest.fixture(scope="module")
def guest(default_kernel, kernel_cache, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("debian-guest")
    image = debian_image_or_skip(kernel_cache)
    cfg = GuestConfig(kernel=default_kernel.bzimage, accel="tcg", ssh=True, serial_login=True,
                      cmdline=f"{DEFAULT_CMDLINE} {tcg_relaxations()} {image.kernel_args}",
                      root_disk=make_overlay(image.path, tmp / "root.qcow2"))
    with Machine(cfg, tmp / "console.log") as machine:
        machine.start()
        machine.wait_ready()
        ssh = SshChannel(machine.ssh_port, machine.ssh_key, host_key=image.ssh_host_key)
        ssh.connect()
        yield machine, ssh
        ssh.close()


def listening_sockets_of(pid: int) -> list[str]:
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    return [line.split()[3] for line in out.splitlines() if f"pid={pid}," in line]


def test_everything_qemu_listens_on_is_loopback_while_ssh_works(guest):
    machine, ssh = guest
    result = {}
    worker = threading.Thread(target=lambda: result.update(r=ssh.run("sleep 5; echo done", 60)))
    worker.start()
    time.sleep(2)
    listening = listening_sockets_of(machine._proc.pid)
    worker.join()
    assert result["r"].output == "done\n"
    assert listening, "QEMU listens on nothing while an SSH command runs"
    assert all(addr.startswith("127.0.0.1:") for addr in listening), listening


def test_root_login_is_by_key_only(guest):
    machine, _ssh = guest
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    with pytest.raises(paramiko.AuthenticationException):
        client.connect("127.0.0.1", machine.ssh_port, username="root", password="root", allow_agent=False,
                       look_for_keys=False, timeout=30)
    client.close()
    assert oct(machine.ssh_key.stat().st_mode & 0o777) == "0o600"
    assert oct(machine.runtime_dir.stat().st_mode & 0o777) == "0o700"


def test_channel_reconnects_after_its_connection_dies(guest):
    _machine, ssh = guest
    try:
        ssh.run("pkill -KILL -f 'sshd: root' || true", 30)  # every session's sshd, ours included
    except ChannelError as exc:  # ours died with the rest, before its exit status came
        assert "dropped" in str(exc)
    assert ssh.run("echo back", 60).output == "back\n"


def test_workload_output_streams_to_the_results_file_as_it_runs(guest, tmp_path):
    _machine, ssh = guest
    out = tmp_path / "w.out"
    result = {}
    worker = threading.Thread(target=lambda: result.update(
        r=ssh.run("echo first; sleep 4; echo second", 60, output=out)))
    worker.start()
    time.sleep(2.5)
    partial = out.read_text() if out.exists() else ""
    worker.join()
    assert partial == "first\n" and out.read_text() == "first\nsecond\n"


def test_debian_run_swaps_hotplugs_and_keeps_the_key_out_of_the_results(kernel_cache, tmp_path):
    res = kstress(["run", str(SHORT), "--seed", "5", "--results", str(tmp_path)], kernel_cache, timeout=3600)
    assert res.returncode == 0, res.stdout + res.stderr[-4000:]
    run = run_dir_of(tmp_path)
    record = validate_run_json(run / "run.json")
    validate(run / "junit.xml")
    guest = record["guest"]
    assert guest["image"] == "debian" and guest["channel"] == "SshChannel"
    assert guest["swap"]["kind"] == "disk" and "/dev/vdb" in guest["swap"]["swapon"]
    hotplug = guest["hotplug"]
    assert hotplug["dimms"] == 1 and len(hotplug["blocks_added"]) == 2
    assert hotplug["onlined"] == 2 and hotplug["offlined"] + len(hotplug["offline_failures"]) == 2
    swap = record["workloads"]["swapcache_migrate"]["vmstat_delta"]
    assert swap["pswpout"] > 0 and swap["pswpin"] > 0, swap
    for path in run.rglob("*"):
        if path.is_file():
            assert b"PRIVATE KEY" not in path.read_bytes(), path


def test_sshd_that_never_comes_up_fails_the_boot_with_the_console_tail(kernel_cache, tmp_path):
    cfg = tmp_path / "nossh.yaml"
    masked = "  accel: tcg\n  extra_cmdline: systemd.mask=ssh.service\n"
    cfg.write_text(SHORT.read_text().replace("  accel: tcg\n", masked))
    res = kstress(["run", str(cfg), "--results", str(tmp_path / "r")], kernel_cache, timeout=1800)
    assert res.returncode == 125, res.stdout + res.stderr[-3000:]
    run = run_dir_of(tmp_path / "r")
    error = validate(run / "junit.xml").find(".//testcase[@name='boot']/error")
    assert error is not None and "ssh" in error.get("message").lower()
    assert "console tail" in error.text and "Linux version" in (run / "console.log").read_text(errors="replace")
    assert not qemu_processes_mentioning(str(run)) and "Traceback" not in res.stderr


def test_qemu_killed_mid_run_is_our_error_and_results_are_kept(kernel_cache, tmp_path):
    env = dict(os.environ, KSTRESS_CACHE=str(kernel_cache))
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", str(SHORT), "--duration", "120",
                             "--results", str(tmp_path)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        run = None
        deadline = time.monotonic() + 1200
        while time.monotonic() < deadline and run is None:
            dirs = [d for d in tmp_path.iterdir() if d.is_dir()] if tmp_path.exists() else []
            if dirs and "migrate_fork" in _workloads(dirs[0]):
                run = dirs[0]
            assert proc.poll() is None, proc.communicate()
            time.sleep(1)
        assert run is not None, "the workload never started"
        time.sleep(5)
        # This run's QEMU: its -name is kstress-<the kstress process's pid>-...
        found = subprocess.run(["pgrep", "-a", "-f", "--", f"-name kstress-{proc.pid}-"],
                               capture_output=True, text=True).stdout
        qemu = [int(line.split()[0]) for line in found.splitlines()]
        assert len(qemu) == 1, qemu
        os.kill(qemu[0], signal.SIGKILL)
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 125, err[-3000:]
    doc = validate(run / "junit.xml")
    error = doc.find(".//testcase[@name='migrate_fork']/error")
    assert error is not None and "QEMU died" in error.get("message")
    assert (run / "console.log").stat().st_size > 0 and "Traceback" not in err


def _workloads(run: Path) -> dict:
    try:
        return json.loads((run / "run.json").read_text()).get("workloads", {})
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def test_two_runs_at_once_do_not_collide(kernel_cache, tmp_path):
    """Ports, QMP sockets, overlays and the cache: two runs whose guests live
    side by side for at least 60 s both finish clean."""
    cfg = tmp_path / "pair.yaml"
    cfg.write_text(SHORT.read_text().replace("  hotplug_dimms: 1\n", "  hotplug_dimms: 0\n")
                   .replace("  - {name: swapcache_migrate, duration: 15}\n", ""))
    env = dict(os.environ, KSTRESS_CACHE=str(kernel_cache))
    procs = [subprocess.Popen([sys.executable, "-m", "harness", "run", str(cfg), "--duration", "90",
                               "--results", str(tmp_path / f"r{i}")], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=3600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    spans = []
    for i in range(2):
        record = validate_run_json(run_dir_of(tmp_path / f"r{i}") / "run.json")
        work = record["workloads"]["migrate_fork"]
        assert work["exit_status"] == 0
        end = record["finished"]
        spans.append((end - work["seconds"], end))
    overlap = min(s[1] for s in spans) - max(s[0] for s in spans)
    assert overlap >= 60, spans
