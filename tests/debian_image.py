"""The Debian guest image for the e2e tests: built once per session into the
session's kernel cache (a cache hit after the first), or skipped naming what
is missing."""

import shutil
from pathlib import Path

import pytest

from harness.guest.images import debian

_BUILT: dict[Path, "debian.DebianImage"] = {}


def debian_image_or_skip(cache: Path, binaries: dict | None = None) -> "debian.DebianImage":
    for tool, package in (("mmdebstrap", "mmdebstrap"), ("mkfs.ext4", "e2fsprogs"), ("qemu-img", "qemu-utils")):
        if shutil.which(tool) is None:
            pytest.skip(f"the Debian image needs {tool} (Debian package {package})")
    key = Path(cache)
    if binaries is None and key in _BUILT:
        return _BUILT[key]
    image = debian.build_image(binaries or {}, cache)
    if binaries is None:
        _BUILT[key] = image
    return image
