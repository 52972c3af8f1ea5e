"""Real guests: a real kernel under QEMU/TCG with the real initramfs.

The kernel is the session's build of the default kernel, or
$KSTRESS_TEST_KERNEL=/path/to/bzImage. TCG on purpose: it works on every host, KVM or not.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness import log
from harness.guest.accel import resolve_accel
from harness.guest.channels.serial import SerialChannel, heartbeat_for, marker_re, strip_printk
from harness.guest.images.initramfs import build_initramfs
from harness.guest.machine import DEFAULT_CMDLINE, GuestConfig, GuestDied, GuestSilent, Machine, tcg_relaxations

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parent.parent
CMDLINE = f"{DEFAULT_CMDLINE} {tcg_relaxations()}"
HELLO_C = '#include <stdio.h>\nint main(void) { puts("hello from a static workload"); return 0; }\n'


@pytest.fixture(scope="module")
def kernel(request):
    """$KSTRESS_TEST_KERNEL (a bzImage) if set, else the session's build of
    the default kernel (conftest.default_kernel)."""
    k = os.environ.get("KSTRESS_TEST_KERNEL")
    if k:
        if not Path(k).is_file():
            pytest.skip(f"KSTRESS_TEST_KERNEL={k} is not a file")
        return Path(k)
    return Path(request.getfixturevalue("default_kernel").bzimage)


@pytest.fixture(scope="module")
def initrd(tmp_path_factory):
    d = tmp_path_factory.mktemp("initrd")
    binaries = {}
    if shutil.which("gcc"):
        (d / "hello.c").write_text(HELLO_C)
        if subprocess.run(["gcc", "-static", "-O2", "-o", str(d / "kshello"), str(d / "hello.c")]).returncode == 0:
            binaries["kshello"] = d / "kshello"
    return build_initramfs(binaries, d / "cache")


class Guest(Machine):
    """A machine with the serial channel the initramfs guest is driven by."""

    def __init__(self, cfg, console_log):
        super().__init__(cfg, console_log)
        self.channel = SerialChannel(self, heartbeat=heartbeat_for(cfg.silence_timeout))


def config(kernel, initrd, **kw):
    kw.setdefault("cmdline", CMDLINE)
    kw.setdefault("silence_timeout", 120)
    return GuestConfig(kernel=kernel, initrd=initrd, accel="tcg", boot_timeout=180, **kw)


@pytest.fixture(scope="module")
def guest(kernel, initrd, tmp_path_factory):
    g = Guest(config(kernel, initrd), tmp_path_factory.mktemp("guest") / "console.log")
    with g:
        g.start()
        g.ready_seconds = g.wait_ready()
        yield g


def test_boot_is_ready_and_clean(guest):
    assert guest.accel == "tcg" and guest.ready_seconds < 120
    text = guest.console_text()
    for bad in ("WARNING", "cut here", "BUG", "Call Trace", "llc-sibling", "Oops", "unable to open an initial console"):
        assert bad not in text, bad
    # `dmesg | grep -i warn`: only the stall detector's own note of our relaxation.
    warn = [ln for ln in text.splitlines() if "warn" in ln.lower()]
    assert all("RCU CPU stall warnings timeout set to 300" in ln for ln in warn), warn
    assert "kstress-init: ready" in text


def test_commands_and_exit_status(guest):
    r = guest.channel.run("echo hello", 30)
    assert (r.exit_status, r.output, r.timed_out) == (0, "hello\n", False) and r.duration < 30
    assert guest.channel.run("false", 30).exit_status == 1
    r = guest.channel.run("echo to-stderr >&2; exit 7", 30)
    assert (r.exit_status, r.output) == (7, "to-stderr\n")
    vmstat = guest.channel.read_file("/proc/vmstat")
    assert re.search(r"^nr_free_pages \d+$", vmstat, re.M) and "pgmigrate_success" in vmstat


def test_numa_cpus_and_filesystems(guest):
    assert guest.channel.run("test -d /sys/devices/system/node/node1", 30).exit_status == 0
    assert guest.channel.read_file("/sys/devices/system/cpu/online").strip() == "0-1"
    assert guest.channel.read_file("/sys/devices/system/node/node1/cpulist").strip() == "1"
    mounts = guest.channel.read_file("/proc/mounts")
    for fs in ("proc /proc", "sysfs /sys", "devtmpfs /dev", "debugfs /sys/kernel/debug"):
        assert fs in mounts, fs


def test_tcg_relaxations_took_effect(guest):
    out = guest.channel.run("cat /proc/sys/kernel/hung_task_timeout_secs /proc/sys/kernel/watchdog_thresh "
                            "/sys/module/rcupdate/parameters/rcu_cpu_stall_timeout", 30).output
    assert out.split() == ["600", "60", "300"]


def test_static_workload_binary(guest, initrd):
    if guest.channel.run("test -x /usr/bin/kshello", 30).exit_status != 0:
        pytest.skip("no static C toolchain to build the test workload")
    assert guest.channel.run("kshello", 30).output == "hello from a static workload\n"


def test_command_longer_than_a_tty_line(guest):
    words = " ".join(f"w{i}" for i in range(3000))  # ~17 kB, four times N_TTY_BUF_SIZE
    r = guest.channel.run(f"for w in {words}; do echo $w; done | wc -l", 60)
    assert r.output.strip() == "3000"


def test_output_survives_printk_interleaving(guest):
    # Kernel lines written while our output crosses the serial line must stay
    # in console.log and out of the result, even when the output looks like dmesg.
    guest.channel.run("setsid sh -c 'i=0; while [ $i -lt 1000 ]; do echo \"<6>kstress-noise $i\" >/dev/kmsg;"
                      " i=$((i+1)); usleep 3000; done' >/dev/null 2>&1 &", 30)
    r = guest.channel.run("echo '[    1.000000][    T1] not a kernel line'; seq 1 20000", 120)
    expected = "[    1.000000][    T1] not a kernel line\n" + "".join(f"{i}\n" for i in range(1, 20001))
    assert r.exit_status == 0 and r.output == expected
    # The test only proves something if the noise really crossed our output.
    # The markers themselves may have noise cut into them: find them as the channel does.
    text = guest.console_text().encode()
    nonce = re.search(rb"KS:([0-9a-f]+):B 0 0 " + str(len(expected)).encode(), strip_printk(text))
    assert nonce, "no result header for the seq command in console.log"
    begin = marker_re(f"KS:{nonce.group(1).decode()}:B 0 0 {len(expected)}").search(text)
    end = marker_re(f"KS:{nonce.group(1).decode()}:E").search(text, begin.end())
    assert b"kstress-noise" in text[begin.end():end.start()]


def test_command_timeout_then_channel_still_works(guest):
    r = guest.channel.run("sleep 60; echo never", 3)
    assert r.timed_out and r.exit_status is None and r.duration < 20 and "never" not in r.output
    assert guest.channel.run("echo after", 30).output == "after\n"
    assert guest.channel.run("ps | grep '[s]leep 60' || echo gone", 30).output == "gone\n"


def test_timeout_is_a_timeout_even_when_the_watcher_dies_right_after_its_kill(guest):
    # ks-run's watcher kills the command, then sleeps: the main shell wakes
    # and kills the watcher meanwhile. A timeout mark written after the kill
    # would be lost and the timeout read as "exited with status 137".
    assert guest.channel.run("echo 2 > /tmp/ks/timeout-race-delay", 30).exit_status == 0
    try:
        r = guest.channel.run("sleep 60", 2)
    finally:
        guest.channel.run("rm -f /tmp/ks/timeout-race-delay", 30)
    assert (r.timed_out, r.exit_status) == (True, None), r


def test_panic_in_a_command_is_guest_died(kernel, initrd, tmp_path):
    with Guest(config(kernel, initrd), tmp_path / "console.log") as g:
        g.start()
        g.wait_ready()
        t0 = time.monotonic()
        with pytest.raises(GuestDied, match="status 0.*panic"):
            g.channel.run("echo c > /proc/sysrq-trigger", 60)
        assert time.monotonic() - t0 < 60
    text = g.console_text()
    assert "Kernel panic - not syncing: sysrq triggered crash" in text and "Call Trace" in text


def test_panic_at_boot_is_guest_died(kernel, initrd, tmp_path):
    cfg = config(kernel, initrd, cmdline=f"{CMDLINE} rdinit=/nonexistent init=/nonexistent")
    with Guest(cfg, tmp_path / "console.log") as g:
        g.start()
        with pytest.raises(GuestDied) as ei:
            g.wait_ready()
    assert "rebooted" in str(ei.value) and "Kernel panic" in str(ei.value)
    assert "Kernel panic - not syncing" in g.console_text()


def test_frozen_guest_is_silent(kernel, initrd, tmp_path):
    g = Guest(config(kernel, initrd, silence_timeout=3), tmp_path / "console.log")
    g.qemu_argv.append("-S")  # vCPUs never start: a guest that prints and answers nothing
    with g:
        g.start()
        t0 = time.monotonic()
        with pytest.raises(GuestSilent):
            g.wait_ready()
        assert time.monotonic() - t0 < 10


def test_shutdown_powers_off(kernel, initrd, tmp_path):
    with Guest(config(kernel, initrd), tmp_path / "console.log") as g:
        g.start()
        g.wait_ready()
        g.shutdown(timeout=30)
        assert g._proc.returncode == 0
    assert "reboot: Power down" in g.console_text()


def test_auto_accel_boots_with_at_most_one_warning(kernel, initrd, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KSTRESS_CACHE", str(tmp_path / "cache"))  # a fresh probe, not a cached answer
    cfg = config(kernel, initrd)
    t0 = time.monotonic()
    cfg.accel, warning = resolve_accel("auto")
    if warning:
        log.warn(warning)  # as prepare_guest logs it
    with Guest(cfg, tmp_path / "console.log") as g:
        g.start()
        assert g.accel in ("kvm", "tcg") and g.qemu_argv[g.qemu_argv.index("-accel") + 1] == g.accel
        g.wait_ready()
        assert g.channel.run("echo up", 30).output == "up\n"
        took = time.monotonic() - t0
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if "warning:" in ln]
    assert len(warnings) == (1 if g.accel == "tcg" else 0), warnings
    assert took < 120


# --- no QEMU survives its parent ---------------------------------------------

CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from harness.guest.machine import Machine, GuestConfig, DEFAULT_CMDLINE
    kernel, initrd, log, how = sys.argv[1:5]
    cfg = GuestConfig(kernel=Path(kernel), initrd=Path(initrd), cmdline=DEFAULT_CMDLINE, accel="tcg")
    g = Machine(cfg, Path(log))
    if how == "atexit":
        g.start()  # no with-block: only the atexit hook can clean up
        print("STARTED", g._proc.pid, flush=True)
        time.sleep(2)
        sys.exit(0)
    with g:
        g.start()
        g.wait_ready()
        print("STARTED", g._proc.pid, flush=True)
        time.sleep(600)
""")


def processes_with(needle: str) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if needle.encode() in (d / "cmdline").read_bytes():
                    found.append(int(d.name))
            except OSError:
                pass
    return found


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL", "SIGINT", "atexit"])
def test_parent_death_kills_qemu(kernel, initrd, tmp_path, how):
    unique = tmp_path / "unique-kernel-path"  # appears in the argv of this run's QEMU only
    unique.symlink_to(kernel)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen([sys.executable, str(script), str(unique), str(initrd), str(tmp_path / "c.log"),
                              how], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()
        assert line.startswith("STARTED"), line
        qemu_pid = int(line.split()[1])
        assert qemu_pid in processes_with(str(unique))
        if how != "atexit":
            child.send_signal(getattr(signal, how))
        child.wait(timeout=30)
        deadline = time.monotonic() + 10
        while processes_with(str(unique)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_with(str(unique)) == []
        if how != "atexit":  # the console written so far survives its writer's death
            assert "kstress-init: ready" in (tmp_path / "c.log").read_text(errors="replace")
    finally:
        child.kill()
        for pid in processes_with(str(unique)):
            os.kill(pid, signal.SIGKILL)
