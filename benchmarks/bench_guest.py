#!/usr/bin/env python3
"""Guest figures, measured side by side in one run on this host:

- the Debian image: a cold build (mmdebstrap + mkfs.ext4, into an empty
  cache) and a cache hit;
- boot to ready: the initramfs guest and the Debian guest, and the Debian
  guest's boot to a working SSH login; same kernel, same QEMU shape, same
  accelerator, N boots each;
- the baseline: a raw QEMU boot to init of the same kernel and initramfs,
  without kstress: QEMU started with the very argv kstress gives it
  (harness.guest.machine.qemu_argv), the initramfs with one more archive
  appended that holds a static C init (rdinit=), which prints a marker and
  powers the machine off at once; timed from QEMU's start to the marker.

    KSTRESS_CACHE=... .venv/bin/python benchmarks/bench_guest.py -n 3
    KSTRESS_CACHE=... nice -n 10 .venv/bin/python benchmarks/bench_guest.py --quick   # initramfs and raw only

The kernel is the default configs' (built or taken from $KSTRESS_CACHE).
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.cache import cache_root  # noqa: E402
from harness.config import load_config  # noqa: E402
from harness.guest.accel import resolve_accel  # noqa: E402
from harness.guest.channels.ssh import SshChannel  # noqa: E402
from harness.guest.images import debian  # noqa: E402
from harness.guest.images.initramfs import Entry, build_initramfs, cpio_newc  # noqa: E402
from harness.guest.machine import DEFAULT_CMDLINE, GuestConfig, Machine, qemu_argv, tcg_relaxations  # noqa: E402
from harness.kernel import BuildRequest, build_kernel  # noqa: E402
from harness.procs import die_with_parent  # noqa: E402

RAW_MARKER = b"raw-init: up"
RAW_INIT_C = r"""
#include <sys/reboot.h>
#include <unistd.h>
int main(void)
{
    static const char marker[] = "raw-init: up\n";
    write(1, marker, sizeof(marker) - 1);
    reboot(RB_POWER_OFF);
    return 1;
}
"""


def timed(fn):
    t0 = time.monotonic()
    value = fn()
    return value, time.monotonic() - t0


def boot(cfg: GuestConfig, work: Path, image: debian.DebianImage | None) -> tuple[float, float | None]:
    """(seconds to the ready marker, seconds to an SSH login or None)."""
    with Machine(cfg, work / "console.log") as machine:
        machine.start()
        ready = machine.wait_ready()
        ssh_at = None
        if image is not None:
            t0 = time.monotonic()
            ssh = SshChannel(machine.ssh_port, machine.ssh_key, host_key=image.ssh_host_key)
            ssh.connect()
            assert ssh.run("true", 30).exit_status == 0
            ssh_at = ready + time.monotonic() - t0
            ssh.close()
    return ready, ssh_at


def raw_initrd(initrd: Path, work: Path) -> Path:
    """``initrd`` with a second archive appended holding /raw-init (the kernel unpacks both)."""
    (work / "raw-init.c").write_text(RAW_INIT_C)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(work / "raw-init"), str(work / "raw-init.c")], check=True)
    extra = gzip.compress(cpio_newc([Entry("raw-init", 0o100755, (work / "raw-init").read_bytes())]), mtime=0)
    out = work / "initramfs-raw.cpio.gz"
    out.write_bytes(initrd.read_bytes() + extra)
    return out


def raw_boot(cfg: GuestConfig, timeout: float = 300) -> float:
    """Seconds from QEMU's start to the raw init's marker; QEMU is gone when this returns."""
    argv = qemu_argv(cfg, cfg.accel, "kstress-bench-raw")
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            preexec_fn=die_with_parent())
    seen = b""
    try:
        while RAW_MARKER not in seen:
            if time.monotonic() - t0 > timeout:
                raise SystemExit(f"raw boot: no {RAW_MARKER.decode()!r} within {timeout:.0f} s")
            data = os.read(proc.stdout.fileno(), 65536)
            if not data:
                raise SystemExit(f"raw boot: QEMU exited before {RAW_MARKER.decode()!r}:\n"
                                 f"{seen[-2000:].decode(errors='replace')}")
            seen = seen[-4096:] + data
        at = time.monotonic() - t0
        proc.wait(timeout=60)           # the init powers off
        return at
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=3, help="boots of each guest")
    ap.add_argument("--quick", action="store_true", help="smoke test: the initramfs guest and the raw boot only, "
                                                         "no Debian image or guest")
    args = ap.parse_args()
    cache = cache_root()
    cfg = load_config("default")
    kernel = build_kernel(BuildRequest(fragments=[str(f) for f in cfg.fragments]), cache)
    accel, _ = resolve_accel("auto", cache)

    with tempfile.TemporaryDirectory(prefix="kstress-bench-guest-") as tmp:
        tmp = Path(tmp)
        if not args.quick:
            _, cold = timed(lambda: debian.build_image({}, tmp / "cold-cache"))
            image, hit = timed(lambda: debian.build_image({}, tmp / "cold-cache"))
        initrd = build_initramfs({}, tmp / "cold-cache")
        raw = raw_initrd(initrd, tmp)
        cmdline = f"{DEFAULT_CMDLINE} {tcg_relaxations() if accel == 'tcg' else ''}".strip()
        rows = {"raw QEMU boot to init": [], "initramfs ready": []}
        if not args.quick:
            rows.update({"debian ready": [], "debian ssh": []})
        for i in range(args.n):
            work = tmp / f"boot-{i}"
            (work / "initramfs").mkdir(parents=True)
            raw_cfg = GuestConfig(kernel=kernel.bzimage, initrd=raw, cmdline=f"{cmdline} rdinit=/raw-init",
                                  accel=accel)
            if i % 2 == 0:          # alternating which boots first: neither always finds the caches cold
                rows["raw QEMU boot to init"].append(raw_boot(raw_cfg))
            ready, _ = boot(GuestConfig(kernel=kernel.bzimage, initrd=initrd, cmdline=cmdline, accel=accel),
                            work / "initramfs", None)
            rows["initramfs ready"].append(ready)
            if i % 2 == 1:
                rows["raw QEMU boot to init"].append(raw_boot(raw_cfg))
            if args.quick:
                continue
            overlay = debian.make_overlay(image.path, work / "root.qcow2")
            ready, ssh = boot(GuestConfig(kernel=kernel.bzimage, root_disk=overlay, accel=accel, ssh=True,
                                          serial_login=True, cmdline=f"{cmdline} {image.kernel_args}"),
                              work, image)
            rows["debian ready"].append(ready)
            rows["debian ssh"].append(ssh)
    raw_base = statistics.median(rows["raw QEMU boot to init"])
    base = statistics.median(rows["initramfs ready"])
    print(f"{platform.node()}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"load average {os.getloadavg()[0]:.1f}; kernel {kernel.key} ({kernel.meta.get('kernel_version')}), "
          f"accel {accel}, {args.n} boots each")
    if not args.quick:
        print(f"Debian image: cold build {cold:.1f} s (mmdebstrap + mkfs.ext4, empty cache), cache hit {hit:.2f} s")
    print("| guest | median s | min s | max s | vs initramfs | vs raw boot to init |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, values in rows.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.2f} | {min(values):.2f} | {max(values):.2f} | {med / base:.2f}x | "
              f"{med / raw_base:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
