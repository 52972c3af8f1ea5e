"""Run configuration: a YAML file validated against a schema held as data.

Every error names the file, the line, the key path and what was expected,
in one line, so a typo in a nightly job's config is found at once.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import UsageError

REPO_ROOT = Path(__file__).resolve().parent.parent
KERNEL_CONFIGS_DIR = REPO_ROOT / "kernel-configs"
DEFAULT_CONFIG = REPO_ROOT / "configs" / "default.yaml"


@dataclass(frozen=True)
class Key:
    """One key of the schema: its type(s), default and a word on its meaning."""

    types: tuple
    default: Any
    help: str
    choices: tuple = ()
    minimum: float | None = None


_STR_OR_NULL = (str, type(None))
_INT = (int,)
_NUM = (int, float)

# The schema: section -> key -> Key. Lists are checked by ITEM_SCHEMAS.
SCHEMA: dict[str, dict[str, Key]] = {
    "kernel": {
        "source": Key(_STR_OR_NULL, None, "kernel source: directory, tarball or git repository (null: Debian's linux-source-6.12)"),
        "ref": Key(_STR_OR_NULL, None, "git ref when source is a git repository"),
        "patches": Key(_STR_OR_NULL, None, "patch series: directory of *.patch or one mbox file"),
        "base_config": Key((str,), "tinyconfig", "make target or path of a full .config"),
        "fragments": Key((list,), None, "Kconfig fragments (names in kernel-configs/ or paths)"),
    },
    "guest": {
        "accel": Key((str,), "auto", "accelerator", choices=("auto", "kvm", "tcg")),
        "cpus": Key(_INT, 2, "vCPUs", minimum=2),
        "numa_nodes": Key(_INT, 2, "NUMA nodes", minimum=1),
        "memory_mb": Key(_INT, 2048, "guest memory in MiB", minimum=256),
        "cmdline": Key(_STR_OR_NULL, None, "full kernel command line (null: kstress's default)"),
        "extra_cmdline": Key((str,), "", "appended to the kernel command line"),
        "boot_timeout": Key(_NUM, 180, "seconds to reach the ready marker", minimum=1),
        "silence_timeout": Key(_NUM, 120, "seconds of silence that make a hang", minimum=1),
    },
    "run": {
        "seed": Key((int, type(None)), None, "seed for the workloads (null: random, recorded)"),
        "results": Key((str,), "results", "directory under which results/<run-id>/ is made"),
        "workload_grace": Key(_NUM, 60, "seconds a workload may run past its duration", minimum=0),
    },
    "workloads": {},  # a list, see WORKLOAD_KEYS
    "known_issues": {},  # a list, see KNOWN_ISSUE_KEYS
}

WORKLOAD_KEYS: dict[str, Key] = {
    "name": Key((str,), None, "workload name (a directory in workloads/)"),
    "duration": Key((int, type(None)), None, "seconds (null: the manifest's default)", minimum=1),
}

# A known issue is a real finding that a nightly job has triaged: it is still
# reported (run.json, junit system-out, summary) but does not fail the run.
KNOWN_ISSUE_KEYS: dict[str, Key] = {
    "title": Key((str,), None, "regular expression searched in the finding's title"),
    "file": Key(_STR_OR_NULL, None, "the finding's source file, exactly"),
    "kernel": Key(_STR_OR_NULL, None, "regular expression searched in the kernel version"),
    "reason": Key((str,), None, "why it is known: a link or a sentence"),
}

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", list: "a list",
               dict: "a mapping", bool: "true/false", type(None): "null"}


def _expected(types: tuple) -> str:
    return " or ".join(dict.fromkeys(_TYPE_NAMES[t] for t in types))


@dataclass
class WorkloadChoice:
    name: str
    duration: int | None = None


@dataclass
class KnownIssue:
    title: str
    reason: str
    file: str | None = None
    kernel: str | None = None

    def matches(self, finding: Any, kernel_version: str | None) -> bool:
        if not re.search(self.title, finding.title or ""):
            return False
        if self.file is not None and finding.file != self.file:
            return False
        version = getattr(finding, "kernel_version", None) or kernel_version or ""
        return self.kernel is None or bool(re.search(self.kernel, version))


def known_issue_for(issues: list[KnownIssue], finding: Any, kernel_version: str | None) -> KnownIssue | None:
    return next((k for k in issues if k.matches(finding, kernel_version)), None)


@dataclass
class RunConfig:
    """A validated configuration, with paths made absolute."""

    path: Path
    source: str | None = None
    ref: str | None = None
    patches: str | None = None
    base_config: str = "tinyconfig"
    fragments: list[Path] = field(default_factory=list)
    accel: str = "auto"
    cpus: int = 2
    numa_nodes: int = 2
    memory_mb: int = 2048
    cmdline: str | None = None
    extra_cmdline: str = ""
    boot_timeout: float = 180
    silence_timeout: float = 120
    seed: int | None = None
    results: Path = Path("results")
    workload_grace: float = 60
    workloads: list[WorkloadChoice] = field(default_factory=list)
    known_issues: list[KnownIssue] = field(default_factory=list)

    def as_dict(self) -> dict:
        out = {}
        for k, v in self.__dict__.items():
            if isinstance(v, Path):
                v = str(v)
            elif k == "fragments":
                v = [str(p) for p in v]
            elif k in ("workloads", "known_issues"):
                v = [w.__dict__ for w in v]
            out[k] = v
        return out


class YamlChecker:
    """Checks a composed YAML node tree; every failure names file:line and key path."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, node: yaml.Node | None, keypath: str, what: str) -> None:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        where = f" {keypath}:" if keypath else ""
        raise UsageError(f"{self.path}{line}:{where} {what}")

    def mapping(self, node: yaml.Node, keypath: str) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, keypath, "expected a mapping")
        out = {}
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                self.fail(knode, keypath, "expected a string key")
            if knode.value in out:
                self.fail(knode, f"{keypath}.{knode.value}".lstrip("."), "duplicate key")
            out[knode.value] = vnode
        return out

    def value(self, node: yaml.Node, keypath: str, key: Key) -> Any:
        value = yaml.safe_load(yaml.serialize(node)) if node is not None else None
        if isinstance(value, bool) or not isinstance(value, key.types):
            if not (float in key.types and isinstance(value, int) and not isinstance(value, bool)):
                self.fail(node, keypath, f"expected {_expected(key.types)}, got {value!r}")
        if key.choices and value not in key.choices:
            self.fail(node, keypath, f"expected one of {', '.join(key.choices)}, got {value!r}")
        if key.minimum is not None and value is not None and value < key.minimum:
            self.fail(node, keypath, f"expected at least {key.minimum}, got {value!r}")
        return value

    def unknown(self, knode_map: dict[str, yaml.Node], allowed: dict, keypath: str) -> None:
        for name, vnode in knode_map.items():
            if name not in allowed:
                full = f"{keypath}.{name}" if keypath else name
                self.fail(vnode, full, f"unknown key (expected one of: {', '.join(allowed)})")


def _resolve_path(value: str, base: Path) -> str:
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p))


def resolve_fragment(name: str, base: Path) -> Path:
    """A bare name is looked up in kernel-configs/; anything else is a path."""
    if "/" not in name:
        for candidate in (KERNEL_CONFIGS_DIR / name, KERNEL_CONFIGS_DIR / f"{name}.config"):
            if candidate.is_file():
                return candidate
    return Path(_resolve_path(name, base))


def default_fragments() -> list[Path]:
    return sorted(KERNEL_CONFIGS_DIR.glob("*.config"))


def load_config(path: str | Path) -> RunConfig:
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such config file")
    if not path.is_file():
        raise UsageError(f"{path}: not a file")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"{path}{line}: invalid YAML: {problem}") from None
    return _validate(root, path)


def _validate(root: yaml.Node | None, path: Path) -> RunConfig:
    chk = YamlChecker(path)
    base = path.resolve().parent
    cfg = RunConfig(path=path.resolve())
    if root is None:
        return _finish(cfg, base)
    top = chk.mapping(root, "")
    chk.unknown(top, SCHEMA, "")
    for section, keys in SCHEMA.items():
        if section not in top or section in ("workloads", "known_issues"):
            continue
        fields = chk.mapping(top[section], section)
        chk.unknown(fields, keys, section)
        for name, key in keys.items():
            if name not in fields:
                continue
            keypath = f"{section}.{name}"
            value = chk.value(fields[name], keypath, key)
            if name == "fragments":
                frags = []
                for i, item in enumerate(fields[name].value):
                    frag_value = chk.value(item, f"{keypath}[{i}]", Key((str,), None, ""))
                    frag = resolve_fragment(frag_value, base)
                    if not frag.is_file():
                        chk.fail(item, f"{keypath}[{i}]", f"no such fragment: {frag_value} (looked in {KERNEL_CONFIGS_DIR} and {base})")
                    frags.append(frag)
                value = frags
            elif name in ("source", "patches") and value is not None:
                value = _resolve_path(value, base)
                if not Path(value).exists():
                    chk.fail(fields[name], keypath, f"no such file or directory: {value}")
            elif name == "base_config" and ("/" in value or value.endswith(".config")):
                value = _resolve_path(value, base)
                if not Path(value).is_file():
                    chk.fail(fields[name], keypath, f"no such file: {value}")
            elif name == "results":
                value = Path(_resolve_path(value, Path.cwd()))
            setattr(cfg, name, value)
    for _item, values in _list_of_mappings(chk, top, "workloads", WORKLOAD_KEYS,
                                           required=("name",), shorthand="name"):
        cfg.workloads.append(WorkloadChoice(**values))
    for i, (item, values) in enumerate(_list_of_mappings(chk, top, "known_issues", KNOWN_ISSUE_KEYS,
                                                         required=("title", "reason"))):
        keypath = f"known_issues[{i}]"
        for name in ("title", "kernel"):
            if values.get(name) is not None:
                try:
                    re.compile(values[name])
                except re.error as exc:
                    chk.fail(item.value_nodes[name], f"{keypath}.{name}", f"not a regular expression: {exc}")
        cfg.known_issues.append(KnownIssue(**values))
    return _finish(cfg, base)


class _Item:
    """A list item's node and its value nodes, for error lines."""

    def __init__(self, node: yaml.Node, value_nodes: dict[str, yaml.Node]):
        self.node, self.value_nodes = node, value_nodes


def _list_of_mappings(chk: YamlChecker, top: dict[str, yaml.Node], section: str, keys: dict[str, Key],
                      required: tuple[str, ...], shorthand: str | None = None):
    """Yield (item, values) for a top-level list of mappings checked against
    ``keys``; a bare scalar item means {shorthand: scalar}."""
    if section not in top:
        return
    node = top[section]
    if not isinstance(node, yaml.SequenceNode):
        chk.fail(node, section, f"expected a list of {{{', '.join(keys)}}}")
    for i, item in enumerate(node.value):
        keypath = f"{section}[{i}]"
        if shorthand and isinstance(item, yaml.ScalarNode):
            yield _Item(item, {shorthand: item}), {shorthand: chk.value(item, keypath, keys[shorthand])}
            continue
        fields = chk.mapping(item, keypath)
        chk.unknown(fields, keys, keypath)
        for name in required:
            if name not in fields:
                chk.fail(item, keypath, f"missing key '{name}'")
        yield _Item(item, fields), {name: chk.value(fields[name], f"{keypath}.{name}", key)
                                    for name, key in keys.items() if name in fields}


def _finish(cfg: RunConfig, base: Path) -> RunConfig:
    if not cfg.fragments:
        cfg.fragments = default_fragments()
    if not isinstance(cfg.results, Path):
        cfg.results = Path(cfg.results)
    return cfg


def apply_overrides(cfg: RunConfig, **overrides: Any) -> RunConfig:
    """Command-line options override the file; None means 'not given'."""
    cfg = copy.deepcopy(cfg)
    for name, value in overrides.items():
        if value is None:
            continue
        if name in ("source", "patches"):
            p = Path(value).expanduser().resolve()
            if not p.exists():
                raise UsageError(f"--{name} {value}: no such file or directory")
            value = str(p)
        elif name == "results":
            value = Path(value).expanduser().resolve()
        elif name == "duration":
            if value < 1:
                raise UsageError(f"--duration {value}: expected at least 1 second")
            for w in cfg.workloads:
                w.duration = value
            continue
        setattr(cfg, name, value)
    return cfg
