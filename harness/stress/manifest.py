"""Workload manifests and the registry of workloads.

A workload is a directory under workloads/ with a manifest.yaml. The
manifest is declarative (tuxmake style) and validated strictly: every error
names the manifest, its line, the key path and what was expected, so a typo
fails at load time rather than as a workload that silently stresses nothing.
How a workload becomes something the guest can run depends on its kind
(harness.stress.adapters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import UsageError
from harness.kernel.kconfig import parse_dotconfig
from harness.paths import WORKLOADS_DIR
from harness.yamlcheck import Key, YamlChecker, compose_file

MANIFEST = "manifest.yaml"
GUEST_BIN_DIR = "/usr/bin"
KINDS = ("c", "selftest")  # one adapter each in harness.stress.adapters
# What a workload may claim to stress; a closed list catches typos.
STRESSES = ("migration", "compaction", "fork", "thp", "split", "ksm", "swap",
            "reclaim", "mprotect", "mremap", "numa")
PLACEHOLDERS = {"duration": 1, "seed": 1}
PROGRAM = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")

_LIST = (list,)
MANIFEST_KEYS: dict[str, Key] = {
    "name": Key((str,), None, "the workload's name, same as its directory"),
    "description": Key((str,), None, "one line on what it does"),
    "kind": Key((str,), "c", "how it is built and run", choices=KINDS),
    "stresses": Key(_LIST, None, f"what it stresses: some of {', '.join(STRESSES)}"),
    "kernel_options": Key(_LIST, None, "CONFIG_ symbols the kernel needs"),
    "default_duration": Key((int,), None, "seconds", minimum=1),
    "argv": Key(_LIST, None, "arguments; {duration} and {seed} are filled in"),
    "evidence": Key(_LIST, None, "/proc/vmstat counters that must move"),
}
# The keys only one kind has, besides MANIFEST_KEYS.
KIND_KEYS: dict[str, dict[str, Key]] = {
    "c": {
        "sources": Key(_LIST, None, "C files, relative to the manifest"),
        "headers": Key(_LIST, [], "headers the sources include, relative to the manifest (e.g. ../lib/kstress.h)"),
    },
    "selftest": {
        "program": Key((str,), None, "a program of the kernel's tools/testing/selftests/mm, e.g. migration"),
        "cflags": Key(_LIST, [], "compiler flags added to the selftests Makefile's (EXTRA_CFLAGS)"),
    },
}
_ITEM_RULES = {
    "stresses": (re.compile("(?:" + "|".join(STRESSES) + r")\Z"), f"one of {', '.join(STRESSES)}"),
    "kernel_options": (re.compile(r"CONFIG_[A-Z0-9_]+\Z"), "a CONFIG_ symbol such as CONFIG_MIGRATION"),
    "sources": (re.compile(r"[^/].*\.c\Z"), "a relative path to a .c file"),
    "headers": (re.compile(r"[^/].*\.h\Z"), "a relative path to a .h file"),
    "argv": (re.compile(r".*", re.S), "a string"),
    "cflags": (re.compile(r"\S+\Z"), "one compiler flag or argument, without spaces"),
    "evidence": (re.compile(r"[a-z][a-z0-9_]*\Z"), "a /proc/vmstat counter name such as pgmigrate_success"),
}


@dataclass
class Workload:
    name: str
    kind: str
    description: str
    stresses: list[str]
    kernel_options: list[str]
    default_duration: int
    sources: list[Path]
    argv_template: list[str]
    evidence: list[str]
    directory: Path
    # Files the sources #include from outside their own directory: part of
    # the build's cache key, and their directories are -I paths.
    headers: list[Path] = field(default_factory=list)
    program: str | None = None  # kind selftest: the selftest it runs
    cflags: list[str] = field(default_factory=list)  # kind selftest

    @property
    def guest_path(self) -> str:
        return f"{GUEST_BIN_DIR}/{self.name}"

    @property
    def takes_duration(self) -> bool:
        """Whether its argv says how long to run; if not, it runs as long as it takes."""
        return any("{duration}" in a for a in self.argv_template)

    def argv(self, duration: int, seed: int) -> list[str]:
        """The command line in the guest (str.format on each template item)."""
        values = {"duration": int(duration), "seed": int(seed)}
        return [self.guest_path] + [a.format(**values) for a in self.argv_template]

    def missing_options(self, dotconfig_text: str) -> list[str]:
        """The kernel options it needs that the built .config lacks."""
        have = parse_dotconfig(dotconfig_text)
        return [opt for opt in self.kernel_options if have.get(opt, "n") == "n"]


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
    root = compose_file(path, "manifest")
    chk = YamlChecker(path)
    if root is None:
        chk.fail(None, "", f"empty manifest (expected keys: {', '.join(MANIFEST_KEYS)})")
    fields = chk.mapping(root, "")
    kind_key = MANIFEST_KEYS["kind"]
    kind = chk.value(fields["kind"], "kind", kind_key) if "kind" in fields else kind_key.default
    keys = {**MANIFEST_KEYS, **KIND_KEYS[kind]}
    _kind_keys_only(chk, fields, kind)
    chk.unknown(fields, keys, "")
    values = {}
    for name, key in keys.items():
        if name not in fields:
            if key.default is not None:
                values[name] = key.default
                continue
            chk.fail(root, name, f"missing key ({key.help})")
        values[name] = chk.value(fields[name], name, key)
        if key.types == _LIST:
            pattern, what = _ITEM_RULES[name]
            for i, (item, v) in enumerate(chk.strings(fields[name], name)):
                if not pattern.match(v):
                    chk.fail(item, f"{name}[{i}]", f"expected {what}, got {v!r}")
    directory = path.resolve().parent
    if values["name"] != directory.name:
        chk.fail(fields["name"], "name", f"expected the directory's name {directory.name!r}, got {values['name']!r}")
    sources = headers = []
    if kind == "c":
        if not values["sources"]:
            chk.fail(fields["sources"], "sources", "expected at least one source file")
        sources, headers = (_files(chk, fields, values, name, directory) for name in ("sources", "headers"))
    elif not PROGRAM.match(values["program"]):
        chk.fail(fields["program"], "program", f"expected a program name such as migration, got {values['program']!r}")
    for i, item in enumerate(values["argv"]):
        try:
            item.format(**PLACEHOLDERS)
        except (KeyError, IndexError, ValueError) as exc:
            chk.fail(fields["argv"].value[i], f"argv[{i}]",
                     f"expected only {{duration}} and {{seed}} placeholders, got {item!r} ({exc!r})")
    return Workload(name=values["name"], kind=values["kind"], description=values["description"],
                    stresses=values["stresses"], kernel_options=values["kernel_options"],
                    default_duration=values["default_duration"], sources=sources,
                    argv_template=values["argv"], evidence=values["evidence"],
                    directory=directory, headers=headers, program=values.get("program"),
                    cflags=values.get("cflags", []))


def _kind_keys_only(chk: YamlChecker, fields: dict, kind: str) -> None:
    """A key of another kind is named as such, not as an unknown key."""
    for other, keys in KIND_KEYS.items():
        for name in keys:
            if other != kind and name in fields and name not in KIND_KEYS[kind]:
                chk.fail(fields[name], name, f"a key of kind {other}, not of kind {kind}")


def _files(chk: YamlChecker, fields: dict, values: dict, name: str, directory: Path) -> list[Path]:
    """The files a list key names, relative to the manifest's directory; each must exist."""
    out = []
    for i, rel in enumerate(values[name]):
        path = directory / rel
        if not path.is_file():
            chk.fail(fields[name].value[i], f"{name}[{i}]", f"no such file: {path}")
        out.append(path)
    return out
