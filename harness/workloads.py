"""Workloads: a directory under workloads/ with a manifest.yaml and C sources.

The manifest is declarative (tuxmake style) and validated strictly: every
error names the manifest, its line, the key path and what was expected, so a
typo fails at load time rather than as a workload that silently stresses
nothing.  Binaries are static (the guest has only busybox) and cached by the
hash of everything that goes into them.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import log
from .cache import cache_root, clean_stale_tmp, make_tmp_dir, publish_dir
from .config import REPO_ROOT, Key, YamlChecker
from .errors import CouldNotTest, UsageError

WORKLOADS_DIR = REPO_ROOT / "workloads"
MANIFEST = "manifest.yaml"
GUEST_BIN_DIR = "/usr/bin"
CC = "gcc"
CFLAGS = ("-O2", "-static", "-pthread", "-Wall", "-Werror")
# What a workload may claim to stress; a closed list catches typos.
STRESSES = ("migration", "compaction", "fork", "thp", "split", "ksm", "swap",
            "reclaim", "mprotect", "mremap", "numa")
PLACEHOLDERS = {"duration": 1, "seed": 1}

_LIST = (list,)
MANIFEST_KEYS: dict[str, Key] = {
    "name": Key((str,), None, "the workload's name, same as its directory"),
    "description": Key((str,), None, "one line on what it does"),
    "stresses": Key(_LIST, None, f"what it stresses: some of {', '.join(STRESSES)}"),
    "kernel_options": Key(_LIST, None, "CONFIG_ symbols the kernel needs"),
    "default_duration": Key((int,), None, "seconds", minimum=1),
    "sources": Key(_LIST, None, "C files, relative to the manifest"),
    "argv": Key(_LIST, None, "arguments; {duration} and {seed} are filled in"),
    "evidence": Key(_LIST, None, "/proc/vmstat counters that must move"),
}
_ITEM_RULES = {
    "stresses": (re.compile("(?:" + "|".join(STRESSES) + r")\Z"), f"one of {', '.join(STRESSES)}"),
    "kernel_options": (re.compile(r"CONFIG_[A-Z0-9_]+\Z"), "a CONFIG_ symbol such as CONFIG_MIGRATION"),
    "sources": (re.compile(r"[^/].*\.c\Z"), "a relative path to a .c file"),
    "argv": (re.compile(r".*", re.S), "a string"),
    "evidence": (re.compile(r"[a-z][a-z0-9_]*\Z"), "a /proc/vmstat counter name such as pgmigrate_success"),
}


@dataclass
class Workload:
    name: str
    description: str
    stresses: list[str]
    kernel_options: list[str]
    default_duration: int
    sources: list[Path]
    argv_template: list[str]
    evidence: list[str]
    directory: Path

    @property
    def guest_path(self) -> str:
        return f"{GUEST_BIN_DIR}/{self.name}"

    def argv(self, duration: int, seed: int) -> list[str]:
        """The command line in the guest (str.format on each template item)."""
        values = {"duration": int(duration), "seed": int(seed)}
        return [self.guest_path] + [a.format(**values) for a in self.argv_template]


def load_workloads(directory: Path | None = None) -> dict[str, Workload]:
    """Every workload under ``directory`` (default: the repo's workloads/), by name."""
    directory = Path(directory) if directory is not None else WORKLOADS_DIR
    if not directory.is_dir():
        raise UsageError(f"{directory}: no such workloads directory")
    out = {}
    for manifest in sorted(directory.glob(f"*/{MANIFEST}")):
        w = load_manifest(manifest)
        out[w.name] = w
    return out


def load_manifest(path: Path) -> Workload:
    path = Path(path)
    try:
        root = yaml.compose(path.read_text(), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"{path}{line}: invalid YAML: {problem}") from None
    chk = YamlChecker(path)
    if root is None:
        chk.fail(None, "", f"empty manifest (expected keys: {', '.join(MANIFEST_KEYS)})")
    fields = chk.mapping(root, "")
    chk.unknown(fields, MANIFEST_KEYS, "")
    values = {}
    for name, key in MANIFEST_KEYS.items():
        if name not in fields:
            chk.fail(root, name, f"missing key ({key.help})")
        values[name] = chk.value(fields[name], name, key)
        if key.types == _LIST:
            pattern, what = _ITEM_RULES[name]
            for i, item in enumerate(fields[name].value):
                v = chk.value(item, f"{name}[{i}]", Key((str,), None, ""))
                if not pattern.match(v):
                    chk.fail(item, f"{name}[{i}]", f"expected {what}, got {v!r}")
    directory = path.resolve().parent
    if values["name"] != directory.name:
        chk.fail(fields["name"], "name", f"expected the directory's name {directory.name!r}, got {values['name']!r}")
    if not values["sources"]:
        chk.fail(fields["sources"], "sources", "expected at least one source file")
    sources = []
    for i, rel in enumerate(values["sources"]):
        src = directory / rel
        if not src.is_file():
            chk.fail(fields["sources"].value[i], f"sources[{i}]", f"no such file: {src}")
        sources.append(src)
    for i, item in enumerate(values["argv"]):
        try:
            item.format(**PLACEHOLDERS)
        except (KeyError, IndexError, ValueError) as exc:
            chk.fail(fields["argv"].value[i], f"argv[{i}]",
                     f"expected only {{duration}} and {{seed}} placeholders, got {item!r} ({exc!r})")
    return Workload(name=values["name"], description=values["description"],
                    stresses=values["stresses"], kernel_options=values["kernel_options"],
                    default_duration=values["default_duration"], sources=sources,
                    argv_template=values["argv"], evidence=values["evidence"],
                    directory=directory)


def _compiler_id() -> str:
    try:
        res = subprocess.run([CC, "--version"], capture_output=True, text=True, check=False)
    except OSError as exc:
        raise CouldNotTest(f"cannot run {CC} to build workloads: {exc}") from None
    if res.returncode != 0:
        raise CouldNotTest(f"{CC} --version failed: {res.stderr.strip()}")
    return res.stdout.splitlines()[0] if res.stdout else ""


def workload_key(w: Workload) -> str:
    """Hash of compiler, flags and sources: a change to any rebuilds."""
    h = hashlib.sha256()
    for part in (_compiler_id(), " ".join(CFLAGS)):
        h.update(part.encode() + b"\0")
    for src in w.sources:
        h.update(src.relative_to(w.directory).as_posix().encode() + b"\0")
        h.update(src.read_bytes() + b"\0")
    return h.hexdigest()[:20]


def build_workload(w: Workload, cache_dir: Path | None = None) -> Path:
    """The path of ``w``'s static binary, compiled once per workload_key."""
    parent = Path(cache_dir) if cache_dir is not None else cache_root()
    parent = parent / "workloads"
    final = parent / f"{w.name}-{workload_key(w)}"
    binary = final / w.name
    if binary.is_file():
        return binary
    try:
        clean_stale_tmp(parent)
        tmp = make_tmp_dir(parent, w.name)
    except OSError as exc:
        raise CouldNotTest(f"cannot write the workload cache {parent}: {exc}") from None
    try:
        cmd = [CC, *CFLAGS, "-o", str(tmp / w.name), *map(str, w.sources)]
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
