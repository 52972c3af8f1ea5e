"""Kernel stage: source + patch series + Kconfig fragments -> cached kernel artifacts.

source.py (tarball, directory or git ref) -> patches.py (series applied to a
working copy) -> kconfig.py (merge_config.sh, olddefconfig, verification) ->
build.py (out-of-tree incremental make; artifacts published in the cache).
"""

from harness.kernel.build import BuildRequest, KernelBuild, build_kernel, cached_build, compute_key
from harness.kernel.source import DEFAULT_SOURCE

__all__ = ["BuildRequest", "KernelBuild", "build_kernel", "cached_build", "compute_key", "DEFAULT_SOURCE"]
