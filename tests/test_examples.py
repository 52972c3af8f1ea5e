"""The example patch series apply to the installed Debian linux-source: when
Debian moves the version, this names the patch that no longer applies."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

from harness.kernel.build import DEFAULT_SOURCE
from harness.kernel.patches import load_series, touched_files

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SERIES = sorted(d for d in EXAMPLES.iterdir() if d.is_dir())


def extract(files: list[str], dest: Path) -> None:
    """Only the files the patches touch, from the tarball (seconds, not a full unpack)."""
    wanted = set(files)
    with tarfile.open(DEFAULT_SOURCE, "r|xz") as tar:  # a stream: stop once all are out
        for member in tar:
            name = member.name.split("/", 1)[-1]
            if name in wanted:
                member.name = name
                tar.extract(member, dest, filter="data")
                wanted.discard(name)
                if not wanted:
                    return
    assert not wanted, f"not in {DEFAULT_SOURCE}: {sorted(wanted)}"


@pytest.mark.skipif(not DEFAULT_SOURCE.exists(),
                    reason=f"needs the kernel source {DEFAULT_SOURCE} (Debian package linux-source-6.12)")
@pytest.mark.parametrize("series", SERIES, ids=[d.name for d in SERIES])
def test_example_series_applies_to_the_installed_source(series, tmp_path):
    patches = load_series(series)
    extract(sorted({f for p in patches for f in touched_files(p.data)}), tmp_path)
    for p in patches:
        res = subprocess.run(["patch", "-p1", "--forward", "--batch"], input=p.data, cwd=tmp_path,
                             capture_output=True)
        assert res.returncode == 0, f"{series.name}/{p.name} no longer applies to {DEFAULT_SOURCE}:\n" \
                                    f"{res.stdout.decode()}{res.stderr.decode()}"


def test_every_example_is_in_the_readme():
    readme = (EXAMPLES / "README.md").read_text()
    assert [d.name for d in SERIES if f"`{d.name}/`" not in readme] == []
