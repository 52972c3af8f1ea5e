"""Where kstress finds its data: run configs, Kconfig fragments, workloads,
image recipes and the bug zoo.

In a source checkout (or an editable install) they are the repository's
top-level folders. A built wheel carries the same folders as package data
under harness/data/ (pyproject.toml maps them there, with underscores where
the repository has dashes), so an installed kstress runs from any directory.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
_INSTALLED = PACKAGE_DIR / "data"


INSTALLED = (_INSTALLED / "configs").is_dir()
DATA_ROOT = _INSTALLED if INSTALLED else PACKAGE_DIR.parent
CONFIGS_DIR = DATA_ROOT / "configs"
KERNEL_CONFIGS_DIR = DATA_ROOT / ("kernel_configs" if INSTALLED else "kernel-configs")
WORKLOADS_DIR = DATA_ROOT / "workloads"
IMAGES_DIR = DATA_ROOT / "images"
ZOO_DIR = DATA_ROOT / "zoo"
DEFAULT_CONFIG = CONFIGS_DIR / "default.yaml"
# The run.json schema ships inside the package itself.
RUN_SCHEMA = PACKAGE_DIR / "run" / "run.schema.json"


def default_fragments() -> list[Path]:
    """The fragments a kernel gets when a config names none: every shipped one."""
    return sorted(KERNEL_CONFIGS_DIR.glob("*.config"))


def shipped_configs() -> dict[str, Path]:
    """Run configs by short name ("default", "quick", ...)."""
    return {p.stem: p for p in sorted(CONFIGS_DIR.glob("*.yaml"))}
