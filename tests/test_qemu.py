"""QEMU command line and Machine lifecycle, with a stand-in process for QEMU."""

import os
import re
import sys
import time

import pytest

from harness.errors import UsageError
from harness.guest import machine as qemu
from harness.guest.machine import (
    DEFAULT_CMDLINE,
    BootTimeout,
    GuestConfig,
    GuestDied,
    GuestSilent,
    KvmSilent,
    Machine,
    qemu_argv,
    tcg_relaxations,
)


def opt(argv, flag):
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def cfg(tmp_path, **kw):
    for f in ("bzImage", "initrd"):
        (tmp_path / f).write_bytes(b"x")
    kw.setdefault("accel", "tcg")
    return GuestConfig(kernel=tmp_path / "bzImage", initrd=tmp_path / "initrd", cmdline=DEFAULT_CMDLINE, **kw)


def test_argv_default_tcg(tmp_path):
    c = cfg(tmp_path)
    a = qemu_argv(c, "tcg", "kstress-x")
    assert opt(a, "-machine") == ["q35"] and opt(a, "-accel") == ["tcg"] and opt(a, "-cpu") == ["max"]
    assert opt(a, "-smp") == ["cpus=2,sockets=2,cores=1,threads=1"]
    assert opt(a, "-numa") == ["node,nodeid=0,cpus=0,memdev=mem0", "node,nodeid=1,cpus=1,memdev=mem1"]
    assert opt(a, "-object") == ["memory-backend-ram,id=mem0,size=1024M", "memory-backend-ram,id=mem1,size=1024M"]
    assert opt(a, "-m") == ["2048M"]
    for flag in ("-no-reboot", "-nodefaults"):
        assert flag in a
    assert opt(a, "-display") == ["none"]
    assert opt(a, "-chardev") == ["stdio,id=ser0,signal=off,mux=on"] and opt(a, "-serial") == ["chardev:ser0"]
    assert "-monitor" not in a and "-nic" not in a and "-netdev" not in a
    assert opt(a, "-append") == [DEFAULT_CMDLINE]
    assert opt(a, "-kernel") == [str(c.kernel)] and opt(a, "-initrd") == [str(c.initrd)]
    assert opt(a, "-name") == ["kstress-x"]


def test_argv_kvm_and_bigger_topologies(tmp_path):
    a = qemu_argv(cfg(tmp_path, cpus=4, memory_mb=3001), "kvm")
    assert opt(a, "-accel") == ["kvm"] and opt(a, "-cpu") == ["host"]
    assert opt(a, "-smp") == ["cpus=4,sockets=2,cores=2,threads=1"]
    assert opt(a, "-numa") == ["node,nodeid=0,cpus=0-1,memdev=mem0", "node,nodeid=1,cpus=2-3,memdev=mem1"]
    sizes = [int(re.search(r"size=(\d+)M", o).group(1)) for o in opt(a, "-object")]
    assert sum(sizes) == 3001  # the backends must add up to -m exactly
    one = qemu_argv(cfg(tmp_path, numa_nodes=1, cpus=3), "tcg")
    assert "-numa" not in one and opt(one, "-smp") == ["cpus=3,sockets=1,cores=3,threads=1"]


def test_argv_rejects_bad_shapes(tmp_path):
    with pytest.raises(UsageError, match="multiple of numa_nodes"):
        qemu_argv(cfg(tmp_path, cpus=3), "tcg")
    with pytest.raises(UsageError, match="at least 128 MiB"):
        qemu_argv(cfg(tmp_path, memory_mb=100), "tcg")
    with pytest.raises(ValueError):
        qemu_argv(cfg(tmp_path), "auto")


def test_cmdline_defaults():
    for must in ("console=ttyS0,115200", "oops=panic", "panic=-1", "loglevel=7", "printk.time=1"):
        assert must in DEFAULT_CMDLINE.split()
    relaxed = tcg_relaxations().split()
    assert {p.split("=")[0] for p in relaxed} == {"rcupdate.rcu_cpu_stall_timeout", "watchdog_thresh",
                                                   "sysctl.kernel.hung_task_timeout_secs"}
    assert not set(relaxed) & set(DEFAULT_CMDLINE.split())


# --- Machine lifecycle, with a Python script in QEMU's place ------------------

def fake_guest(tmp_path, script, **kw):
    g = Machine(cfg(tmp_path, **kw), tmp_path / "run" / "console.log")
    g.qemu_argv = [sys.executable, "-c", script]
    return g


def test_ready_console_and_exit(tmp_path):
    script = ("import sys,time\n"
              "sys.stdout.buffer.write(b'[    0.000000] Linux\\r\\n\\x00\\xff raw')\n"
              "sys.stdout.flush(); time.sleep(0.3)\n"
              "sys.stdout.buffer.write(b'\\r\\nkstress-init: ready\\r\\n'); sys.stdout.flush()\n"
              "print(sys.stdin.readline().strip(), flush=True)\n")
    with fake_guest(tmp_path, script) as g:
        g.start()
        assert g in qemu._LIVE
        took = g.wait_ready()
        assert 0 < took < 10
        g.send(b"ping\n")
        before, m = g.expect(re.compile(rb"ping"), 10)
        with pytest.raises(GuestDied, match="status 0.*rebooted"):
            g.expect(re.compile(rb"never"), 10)
    assert g not in qemu._LIVE
    raw = (tmp_path / "run" / "console.log").read_bytes()
    assert raw.startswith(b"[    0.000000] Linux\r\n\x00\xff raw\r\nkstress-init: ready")  # whole, raw
    assert "kstress-init: ready" in g.console_text()


def test_died_reports_panic_and_qemu_error(tmp_path):
    script = ("import sys\nprint('[    1.0][  T1] Kernel panic - not syncing: Attempted to kill init!', flush=True)\n"
              "sys.stderr.write('qemu: something broke\\n'); sys.exit(1)\n")
    with fake_guest(tmp_path, script) as g:
        g.start()
        with pytest.raises(GuestDied) as ei:
            g.wait_ready()
    msg = str(ei.value)
    assert "status 1" in msg and "something broke" in msg and "Attempted to kill init" in msg


TALKER = "import time\nwhile True:\n    print('tick', flush=True); time.sleep(0.2)\n"
MUTE = "import time\ntime.sleep(60)\n"


@pytest.mark.parametrize("script,exc,timeouts", [
    (TALKER, BootTimeout, dict(boot_timeout=1.5, silence_timeout=1)),  # chatty but never ready
    (MUTE, GuestSilent, dict(boot_timeout=30, silence_timeout=1.5)),  # silent: at once, not at the boot timeout
])
def test_boot_timeout_and_silence(tmp_path, script, exc, timeouts):
    with fake_guest(tmp_path, script, **timeouts) as g:
        g.start()
        t0 = time.monotonic()
        with pytest.raises(exc):
            g.wait_ready()
        assert 1.4 < time.monotonic() - t0 < 5
        pid = g._proc.pid
    assert g._proc.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_silent_kvm_guest_is_a_host_problem(tmp_path, monkeypatch):
    monkeypatch.setattr(qemu, "KVM_FIRST_OUTPUT", 1.0)
    with fake_guest(tmp_path, MUTE, accel="kvm") as g:
        g.start()
        with pytest.raises(KvmSilent, match="KVM does not work"):
            g.wait_ready()
    assert not issubclass(KvmSilent, (GuestSilent, BootTimeout, GuestDied))  # not a kernel finding


def test_exit_kills_on_exception_and_kill_is_idempotent(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with fake_guest(tmp_path, "import time\ntime.sleep(60)\n") as g:
            g.start()
            raise RuntimeError("boom")
    assert g._proc.returncode == -9
    g.kill()
    g.shutdown()


def test_missing_kernel_is_a_usage_error(tmp_path):
    g = Machine(cfg(tmp_path), tmp_path / "console.log")
    (tmp_path / "bzImage").unlink()
    with pytest.raises(UsageError, match="kernel"):
        g.start()


def test_argv_for_a_disk_guest_with_ssh_hotplug_and_sockets(tmp_path):
    c = cfg(tmp_path, node_memory_mb=[768, 1280], memory_slots=4, maxmem_mb=4096, ssh=True,
            serial_login=True, extra_disks=[tmp_path / "swap.qcow2"],
            fw_cfg={"opt/kstress/authorized_keys": tmp_path / "key.pub"})
    c.initrd, c.root_disk = None, tmp_path / "root.qcow2"
    a = qemu_argv(c, "tcg", "kstress-x", tmp_path / "rt")
    assert opt(a, "-m") == ["2048M,slots=4,maxmem=4096M"]
    assert opt(a, "-object") == ["memory-backend-ram,id=mem0,size=768M", "memory-backend-ram,id=mem1,size=1280M"]
    assert "-initrd" not in a
    drives = opt(a, "-drive")
    assert drives[0].startswith(f"file={tmp_path / 'root.qcow2'},") and "swap.qcow2" in drives[1]
    # Nothing listens beyond 127.0.0.1, the network reaches nothing but the forward.
    (netdev,) = opt(a, "-netdev")
    assert "restrict=on" in netdev and "hostfwd=tcp:127.0.0.1:0-:22" in netdev
    assert opt(a, "-qmp") == [f"unix:{tmp_path / 'rt' / 'qmp.sock'},server=on,wait=off"]
    assert any("ttyS1.sock" in x for x in opt(a, "-chardev"))
    assert opt(a, "-fw_cfg") == [f"name=opt/kstress/authorized_keys,file={tmp_path / 'key.pub'}"]


def test_argv_rejects_bad_memory_shapes(tmp_path):
    with pytest.raises(UsageError, match="maxmem_mb"):
        qemu_argv(cfg(tmp_path, memory_slots=2, maxmem_mb=1024), "tcg")
    with pytest.raises(UsageError, match="3 sizes for 2 NUMA"):
        qemu_argv(cfg(tmp_path, node_memory_mb=[512, 512, 512]), "tcg")
    both = cfg(tmp_path)
    both.root_disk = tmp_path / "bzImage"
    with pytest.raises(UsageError, match="exactly one"):
        qemu_argv(both, "tcg")


def test_runtime_dir_is_private_and_removed(tmp_path):
    g = Machine(cfg(tmp_path), tmp_path / "console.log")
    assert oct(g.runtime_dir.stat().st_mode & 0o777) == "0o700"
    g.kill()
    assert not g.runtime_dir.exists()
