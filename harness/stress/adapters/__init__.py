"""One adapter per workload kind: how a manifest becomes the files the guest
runs. Each maps a workload to {name: host file}, every file going to
/usr/bin/<name> in the guest image; registered in BUILDERS under the
manifest's ``kind`` (manifest.KINDS holds the kind's rules as data)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from harness.errors import UsageError
from harness.stress.adapters import c, python, stress_ng
from harness.stress.manifest import Workload

BUILDERS: dict[str, Callable[[Workload, Path | None], dict[str, Path]]] = {
    "c": c.guest_files,
    "python": python.guest_files,
    "stress-ng": stress_ng.guest_files,
}


def build(w: Workload, cache_dir: Path | None = None) -> dict[str, Path]:
    """The files to put in the guest's /usr/bin for ``w``, by name."""
    return BUILDERS[w.kind](w, cache_dir)


def build_all(workloads: list[Workload], cache_dir: Path | None = None) -> dict[str, Path]:
    """The guest files of every workload; one name must always mean one content."""
    out: dict[str, Path] = {}
    owner: dict[str, str] = {}
    for w in workloads:
        for name, path in build(w, cache_dir).items():
            if name in out and Path(out[name]).read_bytes() != Path(path).read_bytes():
                raise UsageError(f"workloads {owner[name]} and {w.name} both put a different /usr/bin/{name} "
                                 f"in the guest ({out[name]}, {path})")
            out.setdefault(name, path)
            owner.setdefault(name, w.name)
    return out
