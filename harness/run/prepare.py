"""Everything a boot needs besides the kernel: the chosen workloads (their
kernel options checked against the built .config), their binaries, the
image, the accelerator and the machine's configuration."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness import log
from harness.config import RunConfig
from harness.errors import UsageError
from harness.guest.accel import resolve_accel
from harness.guest.images.initramfs import build_initramfs
from harness.guest.machine import DEFAULT_CMDLINE, GuestConfig, tcg_relaxations
from harness.kernel import KernelBuild
from harness.run.record import GuestRecord
from harness.stress import adapters
from harness.stress.manifest import Workload, load_workloads


@dataclass
class Planned:
    workload: Workload
    duration: int
    skipped: str | None = None  # why it cannot run on this kernel


@dataclass
class GuestPlan:
    workloads: list[Planned]
    machine: GuestConfig
    record: GuestRecord


def choose_workloads(cfg: RunConfig, dotconfig: str) -> list[Planned]:
    available = load_workloads()
    chosen = []
    for choice in cfg.workloads:
        if choice.name not in available:
            raise UsageError(f"{cfg.path}: workloads: unknown workload {choice.name!r} "
                             f"(available: {', '.join(sorted(available))})")
        w = available[choice.name]
        missing = w.missing_options(dotconfig)
        why = f"the kernel lacks {', '.join(missing)}" if missing else None
        chosen.append(Planned(w, choice.duration or w.default_duration, why))
    return chosen


def prepare_guest(cfg: RunConfig, kernel: KernelBuild, planned: list[Planned], cache_dir: Path | None) -> GuestPlan:
    binaries = {p.workload.name: adapters.build(p.workload, cache_dir) for p in planned if not p.skipped}
    initrd = build_initramfs(binaries, cache_dir)
    accel, warning = resolve_accel(cfg.accel, cache_dir)
    if warning:
        log.warn(warning)
    relaxed = tcg_relaxations() if accel == "tcg" else ""
    cmdline = " ".join(x for x in (cfg.cmdline or DEFAULT_CMDLINE, relaxed, cfg.extra_cmdline) if x)
    machine = GuestConfig(kernel=Path(kernel.bzimage), initrd=initrd, cmdline=cmdline,
                          cpus=cfg.cpus, numa_nodes=cfg.numa_nodes, memory_mb=cfg.memory_mb,
                          accel=accel, boot_timeout=cfg.boot_timeout,
                          silence_timeout=cfg.silence_timeout)
    return GuestPlan(planned, machine, GuestRecord(accel=accel, cmdline=cmdline, tcg_relaxations=relaxed))
