"""C workloads: static binaries (an initramfs guest has no libc), cached by
the hash of everything that goes into them."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from harness import log
from harness.cache import cache_root, clean_stale_tmp, make_tmp_dir, publish_dir
from harness.cache_entries import touch
from harness.errors import CouldNotTest
from harness.stress.manifest import Workload
from harness.toolchain import CC, toolchain_id

CFLAGS = ("-O2", "-static", "-pthread", "-Wall", "-Werror")


def workload_key(w: Workload) -> str:
    """Hash of toolchain, flags, sources and headers: a change to any rebuilds."""
    h = hashlib.sha256()
    for part in (toolchain_id(), " ".join(CFLAGS)):
        h.update(part.encode() + b"\0")
    for kind, files in (("source", w.sources), ("header", w.headers)):
        for path in files:
            rel = Path(os.path.relpath(path, w.directory)).as_posix()
            h.update(f"{kind} {rel}".encode() + b"\0")
            h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:20]


def include_flags(w: Workload) -> list[str]:
    """-I for the directory of each header the manifest lists, once each."""
    dirs = dict.fromkeys(str(h.resolve().parent) for h in w.headers)
    return [f"-I{d}" for d in dirs]


def build(w: Workload, cache_dir: Path | None = None) -> Path:
    """The path of ``w``'s static binary, compiled once per workload_key."""
    parent = Path(cache_dir) if cache_dir is not None else cache_root()
    parent = parent / "workloads"
    final = parent / f"{w.name}-{workload_key(w)}"
    binary = final / w.name
    if binary.is_file():
        touch(final)
        return binary
    try:
        clean_stale_tmp(parent)
        tmp = make_tmp_dir(parent, w.name)
    except OSError as exc:
        raise CouldNotTest(f"cannot write the workload cache {parent}: {exc}") from None
    try:
        cmd = [CC, *CFLAGS, *include_flags(w), "-o", str(tmp / w.name), *map(str, w.sources)]
        log.info(f"building workload {w.name}")
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            lines = [ln for ln in res.stderr.splitlines() if "error" in ln] or res.stderr.splitlines()
            raise CouldNotTest(f"workload {w.name} does not compile ({' '.join(cmd)}):\n"
                               + "\n".join(lines[:20]))
        publish_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return binary
