"""The installed Debian linux-source: only the files a test needs, unpacked
from the tarball (seconds, not the 1.7 GB tree), and whether a patch applies
to them, for the tests that say which patch Debian's next version broke."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

from harness.kernel.build import DEFAULT_SOURCE
from harness.kernel.patches import Patch, touched_files


def extract(files: list[str], dest: Path) -> None:
    """Only ``files`` (paths in the tree), from the tarball, streamed: stops once all are out."""
    wanted = set(files)
    with tarfile.open(DEFAULT_SOURCE, "r|xz") as tar:
        for member in tar:
            name = member.name.split("/", 1)[-1]
            if name in wanted:
                member.name = name
                tar.extract(member, dest, filter="data")
                wanted.discard(name)
                if not wanted:
                    return
    assert not wanted, f"not in {DEFAULT_SOURCE}: {sorted(wanted)}"


def files_of(patches: list[Patch]) -> list[str]:
    return sorted({f for p in patches for f in touched_files(p.data)})


def apply_failure(patch: Patch, tree: Path, dry_run: bool = False) -> str | None:
    """None if ``patch`` applies to ``tree`` cleanly (no fuzz), else patch(1)'s output."""
    res = subprocess.run(["patch", "-p1", "--forward", "--batch", "--fuzz=0", *(["--dry-run"] if dry_run else [])],
                         input=patch.data, cwd=tree, capture_output=True)
    return None if res.returncode == 0 else res.stdout.decode() + res.stderr.decode()
