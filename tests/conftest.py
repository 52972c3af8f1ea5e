"""Shared fixtures. kernel_cache: ONE kernel build cache for every e2e test of
the session, so a single cold build (~5 min on 2 cores) serves them all."""

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def kernel_cache(tmp_path_factory) -> Path:
    """A KSTRESS_CACHE root: kernel builds live in kernel_cache / "kernel" (what
    build_kernel(req) uses when KSTRESS_CACHE=kernel_cache). Set
    $KSTRESS_TEST_CACHE to keep it across sessions."""
    env = os.environ.get("KSTRESS_TEST_CACHE")
    if env:
        path = Path(env)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("kernel-cache")


@pytest.fixture(scope="session")
def default_kernel(kernel_cache):
    """The default kernel (Debian's 6.12 + kernel-configs/), built once into
    kernel_cache; later builds of the session are cache hits or incremental."""
    from harness.kernel.build import DEFAULT_SOURCE, BuildRequest, build_kernel

    if not DEFAULT_SOURCE.exists():
        pytest.skip(f"needs the kernel source {DEFAULT_SOURCE} (Debian package linux-source-6.12)")
    return build_kernel(BuildRequest(), kernel_cache)
