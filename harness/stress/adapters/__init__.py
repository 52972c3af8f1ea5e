"""One adapter per workload kind: how a manifest becomes what the guest runs.

c.py today (static binaries); Python, stress-ng and selftests kinds go
beside it, each registered in BUILDERS under the manifest's ``kind``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from harness.stress.adapters import c
from harness.stress.manifest import Workload

BUILDERS: dict[str, Callable[[Workload, Path | None], Path]] = {"c": c.build}


def build(w: Workload, cache_dir: Path | None = None) -> Path:
    """The file to put in the guest at w.guest_path."""
    return BUILDERS[w.kind](w, cache_dir)
