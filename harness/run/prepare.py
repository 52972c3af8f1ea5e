"""Everything a boot needs besides the kernel: the chosen workloads (their
kernel options checked against the built .config), their binaries, the
image, the accelerator and the machine's configuration."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from harness import log
from harness.config import RunConfig
from harness.errors import UsageError
from harness.guest.accel import resolve_accel
from harness.guest.images import PROGRAMS, debian
from harness.guest.images.debian import make_overlay
from harness.guest.images.initramfs import build_initramfs
from harness.guest.machine import DEFAULT_CMDLINE, GuestConfig, tcg_relaxations
from harness.kernel import BuildRequest, KernelBuild
from harness.procs import run_tool
from harness.run.record import GuestRecord
from harness.stress import adapters
from harness.stress.manifest import Workload, companions, load_workloads


@dataclass
class Planned:
    workload: Workload
    duration: int
    skipped: str | None = None  # why it cannot run on this kernel or guest
    skip_type: str = ""  # missing-kernel-options | guest-lacks (the testcase's skip type)
    companions: list[Workload] = field(default_factory=list)  # what it runs (manifest runs), in the guest too


@dataclass
class GuestPlan:
    """How to make a fresh machine for this run: at the first boot, and again
    after a workload hung or crashed its guest."""

    workloads: list[Planned]
    machine: GuestConfig  # without per-boot disks
    record: GuestRecord
    image: str  # initramfs | debian
    swap: str  # disk | zram | none
    swap_mb: int
    base_image: Path | None = None  # the cached Debian image (never written)
    ssh_host_key: str | None = None  # the image's, pinned by the SSH channel

    @property
    def cache_entries(self) -> list[Path]:
        """The cache entries every boot reads (held in use for the run)."""
        return [p for p in (self.base_image.parent if self.base_image else None, self.machine.initrd) if p]

    def machine_for_boot(self, scratch: Path, boot: int) -> GuestConfig:
        """The machine config with fresh disks in ``scratch``: a new overlay of
        the image (a crashed guest's writes never reach the next boot, nor the
        cache) and a new sparse swap disk."""
        if self.base_image is None:
            return self.machine
        root = make_overlay(self.base_image, scratch / f"root-{boot}.qcow2")
        disks = [make_disk(scratch / f"swap-{boot}.qcow2", self.swap_mb)] if self.swap == "disk" else []
        return dataclasses.replace(self.machine, root_disk=root, extra_disks=disks)


def choose_workloads(cfg: RunConfig, dotconfig: str) -> list[Planned]:
    available = load_workloads()
    chosen = []
    for choice in cfg.workloads:
        if choice.name not in available:
            raise UsageError(f"{cfg.path}: workloads: unknown workload {choice.name!r} "
                             f"(available: {', '.join(sorted(available))})")
        w = available[choice.name]
        # A workload that cannot be told how long to run takes its own time.
        duration = choice.duration if w.takes_duration else None
        planned = Planned(w, duration or w.default_duration, companions=companions(w, available))
        planned.skip_type, planned.skipped = why_skipped([w, *planned.companions], dotconfig, cfg.image,
                                                         cfg.cpus)
        chosen.append(planned)
    return chosen


def why_skipped(group: list[Workload], dotconfig: str, image: str, cpus: int | None = None) -> tuple[str, str | None]:
    """(skip type, reason) when the kernel or the guest (image, vCPUs) lacks what a workload and
    what it runs need; ("", None) when it can run."""
    missing = list(dict.fromkeys(opt for w in group for opt in w.missing_options(dotconfig)))
    if missing:
        return "missing-kernel-options", f"the kernel lacks {', '.join(missing)}"
    needs = list(dict.fromkeys(need for w in group for need in w.rules.guest_needs))
    lacking = [need for need in needs if need not in PROGRAMS[image]]
    if lacking:
        images = [name for name, programs in PROGRAMS.items() if set(needs) <= programs]
        use = f"; use guest.image {' or '.join(images)}" if images else ""
        return "guest-lacks", f"needs {', '.join(lacking)}: guest.image {image} has none{use}"
    min_cpus = max(w.min_cpus for w in group)
    if cpus is not None and cpus < min_cpus:
        return "guest-lacks", f"needs {min_cpus} vCPUs: guest.cpus is {cpus}"
    return "", None


def swap_kind(cfg: RunConfig) -> str:
    if cfg.swap != "auto":
        return cfg.swap
    return "disk" if cfg.image == "debian" else "zram"


def kernel_request(cfg: RunConfig) -> BuildRequest:
    """How the run's kernel is built (and where its source tree comes from)."""
    return BuildRequest(source=cfg.source, ref=cfg.ref, patches=cfg.patches,
                        base_config=cfg.base_config, fragments=[str(p) for p in cfg.fragments])


def prepare_guest(cfg: RunConfig, kernel: KernelBuild, planned: list[Planned], cache_dir: Path | None) -> GuestPlan:
    context = adapters.BuildContext(cache_dir, kernel, kernel_request(cfg))
    binaries = adapters.build_all([w for p in planned if not p.skipped for w in (p.workload, *p.companions)],
                                  context)
    swap = swap_kind(cfg)
    if swap == "disk" and cfg.image != "debian":
        raise UsageError(f"{cfg.path}: guest.swap: disk needs guest.image debian (the initramfs has "
                         f"no disk); use zram")
    initrd = base_image = host_key = None
    image_args = ""
    if cfg.image == "debian":
        image = debian.build_image(binaries, cache_dir)
        base_image, host_key, image_args = image.path, image.ssh_host_key, image.kernel_args
    else:
        initrd = build_initramfs(binaries, cache_dir)
    accel, warning = resolve_accel(cfg.accel, cache_dir)
    if warning:
        log.warn(warning)
    relaxed = tcg_relaxations() if accel == "tcg" else ""
    cmdline = " ".join(x for x in (cfg.cmdline or DEFAULT_CMDLINE, image_args, relaxed, cfg.extra_cmdline) if x)
    boot_mb = sum(cfg.node_memory_mb) if cfg.node_memory_mb else cfg.memory_mb
    machine = GuestConfig(kernel=Path(kernel.bzimage), initrd=initrd, cmdline=cmdline,
                          cpus=cfg.cpus, numa_nodes=cfg.numa_nodes, memory_mb=boot_mb,
                          node_memory_mb=cfg.node_memory_mb, accel=accel, boot_timeout=cfg.boot_timeout,
                          silence_timeout=cfg.silence_timeout, memory_slots=cfg.hotplug_dimms,
                          maxmem_mb=boot_mb + cfg.hotplug_dimms * cfg.hotplug_dimm_mb if cfg.hotplug_dimms else 0,
                          ssh=cfg.image == "debian", serial_login=cfg.image == "debian")
    record = GuestRecord(accel=accel, cmdline=cmdline, tcg_relaxations=relaxed, image=cfg.image)
    return GuestPlan(planned, machine, record, cfg.image, swap, cfg.swap_mb, base_image, host_key)


def make_disk(path: Path, size_mb: int) -> Path:
    """A sparse qcow2 scratch disk: it costs what the guest writes."""
    run_tool(["qemu-img", "create", "-q", "-f", "qcow2", str(path), f"{size_mb}M"], f"creating {path.name}")
    return path
