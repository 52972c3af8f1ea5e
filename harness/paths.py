"""Where kstress finds its data: run configs, Kconfig fragments, workloads,
image recipes, the bug zoo and the example patch series.

In a source checkout (or an editable install) they are the repository's
top-level folders. A built wheel carries the same folders as package data
under harness/data/ (pyproject.toml maps them there, with underscores where
the repository has dashes), so an installed kstress runs from any directory.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from harness import __version__

PACKAGE_DIR = Path(__file__).resolve().parent
_INSTALLED = PACKAGE_DIR / "data"


INSTALLED = (_INSTALLED / "configs").is_dir()
DATA_ROOT = _INSTALLED if INSTALLED else PACKAGE_DIR.parent
CONFIGS_DIR = DATA_ROOT / "configs"
KERNEL_CONFIGS_DIR = DATA_ROOT / ("kernel_configs" if INSTALLED else "kernel-configs")
WORKLOADS_DIR = DATA_ROOT / "workloads"
IMAGES_DIR = DATA_ROOT / "images"
ZOO_DIR = DATA_ROOT / "zoo"
EXAMPLES_DIR = DATA_ROOT / "examples"
# The zoo's clean kernel: Debian's 6.12 with kstress's own fix for the real
# WARNING in deferred_split_folio, so that the clean row counts false alarms
# of the harness, not that known kernel bug.
CLEAN_FIX_SERIES = EXAMPLES_DIR / "fix-deferred-split-6.12"
DEFAULT_CONFIG = CONFIGS_DIR / "default.yaml"
# The run.json schema ships inside the package itself.
RUN_SCHEMA = PACKAGE_DIR / "run" / "run.schema.json"
SOAK_SCHEMA = PACKAGE_DIR / "modes" / "soak.schema.json"  # soak.json of `kstress soak` and `kstress merge`


# The fragments a kernel gets when a config names none. Named, not globbed:
# kernel-configs/ also holds variant fragments (kasan, lockdep) that only a
# config's kernel.variants adds. In this order (the names sorted), as the
# cache keys of kernels built before the variants existed.
DEFAULT_FRAGMENTS = ("base-x86", "debug", "mm-stress")


def default_fragments() -> list[Path]:
    """The fragments a kernel gets when a config names none."""
    return [KERNEL_CONFIGS_DIR / f"{name}.config" for name in DEFAULT_FRAGMENTS]


def shipped_configs() -> dict[str, Path]:
    """Run configs by short name ("default", "quick", ...)."""
    return {p.stem: p for p in sorted(CONFIGS_DIR.glob("*.yaml"))}


@functools.lru_cache(maxsize=1)
def kstress_identity() -> dict:
    """This kstress: its version and, run from a git checkout, the commit and
    whether files differ from it (run.json keeps it: a repro says when its
    workloads or harness may differ from the run's)."""
    commit, dirty = None, None
    if not INSTALLED and (PACKAGE_DIR.parent / ".git").exists():
        try:
            git = ["git", "-C", str(PACKAGE_DIR.parent)]
            commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                                    timeout=10).stdout.strip() or None
            status = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                    text=True, timeout=10)
            dirty = bool(status.stdout.strip()) if status.returncode == 0 and commit else None
        except (OSError, subprocess.SubprocessError):
            commit = None
    return {"version": __version__, "commit": commit, "dirty": dirty}
