"""What a soak runs: its matrix of iterations, fixed by its plan.json.

Iteration i (0, 1, 2, ... for as long as the time lasts) boots kernel
i mod K of the config's K kernels (its own, then its kernel.variants) and
runs all W of the config's workloads, in the config's order rotated by
(i div K) mod W, with seed base + i. Every iteration runs every workload
(one boot serves them all, and each meets what the ones before it left:
fragmented memory, full swap); the rotation gives each workload its turn
first on a fresh boot and after each other one; K x W consecutive
iterations cover every (kernel, rotation) once.

A shard i/n takes the iterations whose index mod n is i - 1, so n agents
with the same config and seed run disjoint iterations that together are
what one soak would run, and no seed is used twice.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from harness.config import RunConfig
from harness.errors import UsageError

ROTATION = "iteration i: kernel i mod K, the workloads rotated by (i div K) mod W, seed base + i"
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_SHARD = re.compile(r"(\d+)/(\d+)")


def parse_duration(text: str) -> int:
    """Seconds of '8h', '90m', '1800s', '1h30m' or '1800'."""
    text = text.strip()
    m = _DURATION.fullmatch(text)
    if text.isdigit():
        seconds = int(text)
    elif text and m:
        h, mi, s = (int(g or 0) for g in m.groups())
        seconds = h * 3600 + mi * 60 + s
    else:
        raise UsageError(f"--duration {text}: expected a duration such as 8h, 90m, 1800s or 1h30m")
    if seconds < 1:
        raise UsageError(f"--duration {text}: expected at least one second")
    return seconds


def parse_shard(text: str) -> tuple[int, int]:
    """(i, n) of 'i/n', 1 <= i <= n."""
    m = _SHARD.fullmatch(text.strip())
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise UsageError(f"--shard {text}: expected i/n with 1 <= i <= n, e.g. 1/4")
    return int(m.group(1)), int(m.group(2))


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass(frozen=True)
class IterationSpec:
    index: int
    seed: int
    kernel: str
    turn: int  # the config's workloads rotated by this many
    workloads: tuple[str, ...]  # in the order they run


@dataclass
class SoakPlan:
    config: str  # the run config's path
    config_sha256: str  # its content: a resume and the shards of one soak need the same
    seed: int  # iteration i uses seed + i
    duration: int  # seconds of soak (each shard's)
    kernels: list[str]  # the config's own ("default"), then its variants
    workloads: list[str]  # the config's, in its order
    shard: int = 1
    shards: int = 1
    workload_duration: int | None = None  # seconds for every workload (None: the config's)
    # --source/--ref/--patches as given (absolute paths): the kernel instead of the config's
    kernel_overrides: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, cfg: RunConfig, seed: int, duration: int, shard: tuple[int, int],
           workload_duration: int | None) -> SoakPlan:
        if not cfg.workloads:
            raise UsageError(f"{cfg.path}: no workloads: a soak runs the config's workloads (add a workloads: list)")
        return cls(config=str(cfg.path), config_sha256=file_sha256(cfg.path), seed=seed, duration=duration,
                   kernels=cfg.kernel_names(), workloads=[w.name for w in cfg.workloads], shard=shard[0],
                   shards=shard[1], workload_duration=workload_duration)

    def spec(self, index: int) -> IterationSpec:
        k, w = len(self.kernels), len(self.workloads)
        turn = (index // k) % w
        return IterationSpec(index, self.seed + index, self.kernels[index % k], turn,
                             tuple(self.workloads[turn:] + self.workloads[:turn]))

    def indices(self) -> Iterator[int]:
        """This shard's iterations, in order, without end."""
        return itertools.count(self.shard - 1, self.shards)

    def same_soak(self, other: SoakPlan) -> str:
        """Why ``other`` is not another shard of this soak ("" if it is)."""
        for name in ("config_sha256", "seed", "shards", "kernels", "workloads", "workload_duration",
                     "kernel_overrides"):
            if getattr(self, name) != getattr(other, name):
                return f"{name} differs ({getattr(self, name)!r} and {getattr(other, name)!r})"
        return ""
