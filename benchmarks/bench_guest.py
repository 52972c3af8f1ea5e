#!/usr/bin/env python3
"""Guest figures, measured side by side in one run on this host:

- the Debian image: a cold build (mmdebstrap + mkfs.ext4, into an empty
  cache) and a cache hit;
- boot to ready: the initramfs guest (the baseline) and the Debian guest, and
  the Debian guest's boot to a working SSH login; same kernel, same QEMU
  shape, same accelerator, N boots each.

    KSTRESS_CACHE=... .venv/bin/python benchmarks/bench_guest.py -n 3

The kernel is the default configs' (built or taken from $KSTRESS_CACHE).
"""

from __future__ import annotations

import argparse
import statistics
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
from harness.guest.images.initramfs import build_initramfs  # noqa: E402
from harness.guest.machine import DEFAULT_CMDLINE, GuestConfig, Machine, tcg_relaxations  # noqa: E402
from harness.kernel import BuildRequest, build_kernel  # noqa: E402


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=3, help="boots of each guest")
    args = ap.parse_args()
    cache = cache_root()
    cfg = load_config("default")
    kernel = build_kernel(BuildRequest(fragments=[str(f) for f in cfg.fragments]), cache)
    accel, _ = resolve_accel("auto", cache)

    with tempfile.TemporaryDirectory(prefix="kstress-bench-guest-") as tmp:
        tmp = Path(tmp)
        _, cold = timed(lambda: debian.build_image({}, tmp / "cold-cache"))
        image, hit = timed(lambda: debian.build_image({}, tmp / "cold-cache"))
        initrd = build_initramfs({}, tmp / "cold-cache")
        cmdline = f"{DEFAULT_CMDLINE} {tcg_relaxations() if accel == 'tcg' else ''}".strip()
        rows = {"initramfs ready": [], "debian ready": [], "debian ssh": []}
        for i in range(args.n):
            work = tmp / f"boot-{i}"
            (work / "initramfs").mkdir(parents=True)
            ready, _ = boot(GuestConfig(kernel=kernel.bzimage, initrd=initrd, cmdline=cmdline, accel=accel),
                            work / "initramfs", None)
            rows["initramfs ready"].append(ready)
            overlay = debian.make_overlay(image.path, work / "root.qcow2")
            ready, ssh = boot(GuestConfig(kernel=kernel.bzimage, root_disk=overlay, accel=accel, ssh=True,
                                          serial_login=True, cmdline=f"{cmdline} {image.kernel_args}"),
                              work, image)
            rows["debian ready"].append(ready)
            rows["debian ssh"].append(ssh)
    base = statistics.median(rows["initramfs ready"])
    print(f"kernel {kernel.key} ({kernel.meta.get('kernel_version')}), accel {accel}, {args.n} boots each")
    print(f"Debian image: cold build {cold:.1f} s (mmdebstrap + mkfs.ext4, empty cache), cache hit {hit:.2f} s")
    print("| guest | median s | min s | max s | vs initramfs |")
    print("| --- | --- | --- | --- | --- |")
    for name, values in rows.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.1f} | {min(values):.1f} | {max(values):.1f} | {med / base:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
