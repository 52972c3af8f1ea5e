"""What a booted guest gets before the workloads: swap, and memory hot-added
through QMP, onlined, offlined and onlined again (offlining migrates every
page out of a block: a stress of its own).

Each step is recorded (run.json guest.swap, guest.hotplug); a step that
fails is our error (the boot testcase's), not a kernel finding, unless the
kernel itself reports something on the console.
"""

from __future__ import annotations

import time

from harness import log
from harness.errors import CouldNotTest
from harness.guest.channels import Channel
from harness.guest.machine import Machine
from harness.run.record import HotplugRecord, SwapRecord

MEMORY_SYSFS = "/sys/devices/system/memory"
ONLINE_WAIT = 60.0  # seconds for hot-added blocks to appear in the guest (ACPI hotplug)


def _run(channel: Channel, command: str, what: str, timeout: float = 120) -> str:
    r = channel.run(command, timeout)
    if r.timed_out or r.exit_status != 0:
        why = "timed out" if r.timed_out else f"status {r.exit_status}: {r.output.strip()[-300:]}"
        raise CouldNotTest(f"{what} failed in the guest ({why})")
    return r.output


def setup_swap(channel: Channel, kind: str, size_mb: int) -> SwapRecord:
    """``kind``: "disk" (the machine's second virtio disk, /dev/vdb) or "zram"."""
    if kind == "disk":
        device = "/dev/vdb"
        _run(channel, f"mkswap {device} >/dev/null && swapon {device}", "swap on the virtio disk")
    elif kind == "zram":
        device = "/dev/zram0"
        _run(channel, f"echo {size_mb}M > /sys/block/zram0/disksize && mkswap {device} >/dev/null "
                      f"&& swapon {device}", "swap on zram")
    else:
        raise ValueError(f"unknown swap kind {kind!r}")
    swaps = _run(channel, "cat /proc/swaps", "reading /proc/swaps")
    if device not in swaps:
        raise CouldNotTest(f"swapon {device} left no trace in /proc/swaps:\n{swaps}")
    log.info(f"swap: {kind} {device}, {size_mb} MiB")
    return SwapRecord(kind, device, size_mb, swaps.strip())


def _blocks(channel: Channel) -> dict[str, str]:
    """memoryN -> state, for every memory block the guest has."""
    out = _run(channel, f"cd {MEMORY_SYSFS} && grep -H . memory*/state", "listing memory blocks")
    blocks = {}
    for line in out.splitlines():
        path, _, state = line.partition(":")
        blocks[path.split("/")[0]] = state.strip()
    return blocks


def hotplug_memory(machine: Machine, channel: Channel, dimms: int, dimm_mb: int, nodes: int) -> HotplugRecord:
    """Hot-add ``dimms`` pc-dimms (spread over the NUMA nodes), online the new
    blocks movable, offline each (migrating its pages away) and online it again."""
    rec = HotplugRecord(dimms, dimm_mb)
    t0 = time.monotonic()
    before = _blocks(channel)
    for i in range(dimms):
        machine.qmp.hot_add_dimm(f"ksdimm{i}", dimm_mb, node=i % nodes)
    blocks_per_dimm = dimm_mb // 128
    deadline = time.monotonic() + ONLINE_WAIT
    while True:
        new = sorted(set(_blocks(channel)) - set(before), key=lambda b: int(b[6:]))
        if len(new) >= dimms * blocks_per_dimm:
            break
        if time.monotonic() > deadline:
            raise CouldNotTest(f"hot-added {dimms} DIMM(s) of {dimm_mb} MiB, but the guest shows "
                               f"{len(new)} of {dimms * blocks_per_dimm} new memory blocks after {ONLINE_WAIT:.0f}s")
        time.sleep(1)
    rec.blocks_added = new
    for state, counter in (("online_movable", "onlined"), ("offline", "offlined"), ("online_movable", "reonlined")):
        for block in new:
            r = channel.run(f"echo {state} > {MEMORY_SYSFS}/{block}/state", 120)
            if r.exit_status == 0:
                setattr(rec, counter, getattr(rec, counter) + 1)
            elif state == "offline":
                rec.offline_failures.append(f"{block}: {r.output.strip()[-200:]}")
            elif not r.timed_out and "Invalid argument" in r.output and _blocks(channel).get(block) == "online":
                setattr(rec, counter, getattr(rec, counter) + 1)  # its offline failed: it stayed online
            else:
                raise CouldNotTest(f"cannot {state} {block} in the guest: {r.output.strip()[-200:]}")
    rec.seconds = round(time.monotonic() - t0, 1)
    log.info(f"hotplug: {dimms} x {dimm_mb} MiB added, {len(new)} blocks onlined {rec.onlined}, "
             f"offlined {rec.offlined} ({len(rec.offline_failures)} busy), onlined again {rec.reonlined}")
    return rec
