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

from harness.cache_entries import parse_size
from harness.errors import UsageError
from harness.guest.machine import BOOT_TIMEOUT, SILENCE_TIMEOUT
from harness.paths import CONFIGS_DIR, KERNEL_CONFIGS_DIR, default_fragments, shipped_configs
from harness.yamlcheck import INT as _INT
from harness.yamlcheck import NUMBER as _NUM
from harness.yamlcheck import STR_OR_NULL as _STR_OR_NULL
from harness.yamlcheck import Key, YamlChecker, compose_file

IMAGES = ("initramfs", "debian")
SWAP_KINDS = ("auto", "disk", "zram", "none")

# The schema: section -> key -> Key. Lists are checked by ITEM_SCHEMAS.
SCHEMA: dict[str, dict[str, Key]] = {
    "kernel": {
        "source": Key(_STR_OR_NULL, None,
                      "kernel source: directory, tarball or git repository (null: Debian's linux-source-6.12)"),
        "ref": Key(_STR_OR_NULL, None, "git ref when source is a git repository"),
        "patches": Key(_STR_OR_NULL, None, "patch series: directory of *.patch or one mbox file"),
        "base_config": Key((str,), "tinyconfig", "make target or path of a full .config"),
        "fragments": Key((list,), None, "Kconfig fragments (names in kernel-configs/ or paths)"),
        "variants": Key((list,), None, "more kernels (name, fragments, guest/run timing overrides) that run "
                                      "the same guest and workloads beside this one"),
    },
    "guest": {
        "accel": Key((str,), "auto", "accelerator", choices=("auto", "kvm", "tcg")),
        "cpus": Key(_INT, 2, "vCPUs", minimum=2),
        "numa_nodes": Key(_INT, 2, "NUMA nodes", minimum=1),
        "memory_mb": Key(_INT, 2048, "guest memory in MiB", minimum=256),
        "cmdline": Key(_STR_OR_NULL, None, "full kernel command line (null: kstress's default)"),
        "extra_cmdline": Key((str,), "", "appended to the kernel command line"),
        "boot_timeout": Key(_NUM, BOOT_TIMEOUT, "seconds to reach the ready marker", minimum=1),
        "silence_timeout": Key(_NUM, SILENCE_TIMEOUT, "seconds of silence that make a hang", minimum=1),
        "image": Key((str,), "initramfs", "what the guest boots: busybox initramfs, or Debian with systemd and sshd",
                     choices=IMAGES),
        "node_memory_mb": Key((list, type(None)), None, "MiB per NUMA node (null: memory_mb split evenly)"),
        "swap": Key((str,), "auto", "swap device (auto: a virtio disk on debian, zram on initramfs)",
                    choices=SWAP_KINDS),
        "swap_mb": Key(_INT, 1024, "swap size in MiB", minimum=64),
        "hotplug_dimms": Key(_INT, 0, "pc-dimms hot-added after boot, onlined, offlined and onlined again",
                             minimum=0),
        "hotplug_dimm_mb": Key(_INT, 512, "MiB per hot-added DIMM (a multiple of 128)", minimum=128),
    },
    "run": {
        "seed": Key((int, type(None)), None, "seed for the workloads (null: random, recorded)"),
        "results": Key((str,), "results", "directory under which results/<run-id>/ is made"),
        "workload_grace": Key(_NUM, 60, "seconds a workload may run past its duration", minimum=0),
        "cache_max_size": Key(_STR_OR_NULL, None,
                              "size limit of the kstress cache, e.g. 40G: after the run, least recently used "
                              "entries not in use are evicted (null: no limit)"),
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


# A kernel variant: its own fragments (the same source, patches and base
# config), the same guest and workloads, and only timing settings of its own:
# a KASAN or lockdep kernel boots and runs slower under TCG.
DEFAULT_KERNEL = "default"  # the name of the config's own kernel beside its variants
VARIANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")  # a directory name and a JUnit classname part
VARIANT_KEYS: dict[str, Key] = {
    "name": Key((str,), None, "the variant's name (lower case, digits, - and _)"),
    "fragments": Key((list,), None, "its Kconfig fragments, in full (names in kernel-configs/ or paths)"),
    "guest": Key((dict,), None, "overrides of guest settings"),
    "run": Key((dict,), None, "overrides of run settings"),
}
VARIANT_OVERRIDES: dict[str, tuple[str, ...]] = {
    "guest": ("boot_timeout", "silence_timeout", "extra_cmdline"),
    "run": ("workload_grace",),
}


@dataclass
class Variant:
    name: str
    fragments: list[Path]
    overrides: dict[str, Any] = field(default_factory=dict)  # RunConfig field -> value

    def as_dict(self) -> dict:
        return {"name": self.name, "fragments": [str(p) for p in self.fragments], "overrides": self.overrides}


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
    boot_timeout: float = BOOT_TIMEOUT
    silence_timeout: float = SILENCE_TIMEOUT
    image: str = "initramfs"
    node_memory_mb: list[int] | None = None
    swap: str = "auto"
    swap_mb: int = 1024
    hotplug_dimms: int = 0
    hotplug_dimm_mb: int = 512
    seed: int | None = None
    results: Path = Path("results")
    workload_grace: float = 60
    cache_max_size: int | None = None  # bytes
    workloads: list[WorkloadChoice] = field(default_factory=list)
    known_issues: list[KnownIssue] = field(default_factory=list)
    variants: list[Variant] = field(default_factory=list)
    kernel_name: str = DEFAULT_KERNEL  # which of the config's kernels this is

    def as_dict(self) -> dict:
        out = {}
        for k, v in self.__dict__.items():
            if isinstance(v, Path):
                v = str(v)
            elif k == "fragments":
                v = [str(p) for p in v]
            elif k in ("workloads", "known_issues"):
                v = [w.__dict__ for w in v]
            elif k == "variants":
                v = [w.as_dict() for w in v]
            out[k] = v
        return out

    def kernel_names(self) -> list[str]:
        """The config's kernels: its own, then its variants."""
        return [DEFAULT_KERNEL] + [v.name for v in self.variants]

    def for_kernel(self, name: str) -> RunConfig:
        """The config of one of its kernels: a variant's fragments and overrides, no variants."""
        if name not in self.kernel_names():
            raise UsageError(f"{self.path}: no kernel variant {name!r} (the config has: "
                             f"{', '.join(self.kernel_names())})")
        cfg = copy.deepcopy(self)
        cfg.variants, cfg.kernel_name = [], name
        for v in self.variants:
            if v.name == name:
                cfg.fragments = list(v.fragments)
                for key, value in v.overrides.items():
                    setattr(cfg, key, value)
        return cfg


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


def _fragments(chk: YamlChecker, node: yaml.Node, keypath: str, base: Path) -> list[Path]:
    """A list of fragment names or paths, each an existing file."""
    if not isinstance(node, yaml.SequenceNode):
        chk.fail(node, keypath, "expected a list of fragment names or paths")
    frags = []
    for i, (item, value) in enumerate(chk.strings(node, keypath)):
        frag = resolve_fragment(value, base)
        if not frag.is_file():
            chk.fail(item, f"{keypath}[{i}]",
                     f"no such fragment: {value} (looked in {KERNEL_CONFIGS_DIR} and {base})")
        frags.append(frag)
    return frags


def _variants(chk: YamlChecker, node: yaml.Node, base: Path) -> list[Variant]:
    out: list[Variant] = []
    seen: dict[str, int] = {}
    items = chk.list_of_mappings(node, "kernel.variants", VARIANT_KEYS, required=("name", "fragments"))
    for i, (item, values) in enumerate(items):
        keypath = f"kernel.variants[{i}]"
        name, name_node = values["name"], item.value_nodes["name"]
        if not VARIANT_NAME.match(name) or name == DEFAULT_KERNEL:
            chk.fail(name_node, f"{keypath}.name", f"expected a name of lower-case letters, digits, - and _ "
                                                    f"(at most 32, not {DEFAULT_KERNEL!r}), got {name!r}")
        if name in seen:
            chk.fail(name_node, f"{keypath}.name", f"duplicate variant {name!r} (first at line {seen[name]})")
        seen[name] = name_node.start_mark.line + 1
        variant = Variant(name, _fragments(chk, item.value_nodes["fragments"], f"{keypath}.fragments", base))
        if not variant.fragments:
            chk.fail(item.value_nodes["fragments"], f"{keypath}.fragments",
                     "expected at least one fragment (a variant names all of its fragments)")
        for section, allowed in VARIANT_OVERRIDES.items():
            if section not in values:
                continue
            fields = chk.mapping(item.value_nodes[section], f"{keypath}.{section}")
            chk.unknown(fields, dict.fromkeys(allowed), f"{keypath}.{section}")
            for key, vnode in fields.items():
                variant.overrides[key] = chk.value(vnode, f"{keypath}.{section}.{key}", SCHEMA[section][key])
        out.append(variant)
    return out


def find_config(name: str | Path) -> Path:
    """A path as given, or the short name of a shipped config ("default", "quick")."""
    path = Path(name)
    if path.exists() or "/" in str(name) or path.suffix:
        return path
    shipped = shipped_configs()
    if str(name) in shipped:
        return shipped[str(name)]
    raise UsageError(f"{name}: no such config file, nor a shipped config "
                     f"(shipped in {CONFIGS_DIR}: {', '.join(shipped) or 'none'})")


def load_config(path: str | Path) -> RunConfig:
    path = find_config(path)
    return _validate(compose_file(path, "config file"), path)


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
            if name == "variants":
                value = _variants(chk, fields[name], base)
            else:
                value = chk.value(fields[name], keypath, key)
            if name == "fragments":
                value = _fragments(chk, fields[name], keypath, base)
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
            elif name == "cache_max_size" and value is not None:
                try:
                    value = parse_size(value)
                except UsageError as exc:
                    chk.fail(fields[name], keypath, str(exc))
            elif name == "node_memory_mb" and value is not None:
                for i, item in enumerate(fields[name].value):
                    chk.value(item, f"{keypath}[{i}]", Key(_INT, None, "", minimum=128))
            elif name == "hotplug_dimm_mb" and value % 128:
                chk.fail(fields[name], keypath, f"expected a multiple of 128 (the guest's memory block), got {value}")
            setattr(cfg, name, value)
    if "workloads" in top:
        for _item, values in chk.list_of_mappings(top["workloads"], "workloads", WORKLOAD_KEYS,
                                                  required=("name",), shorthand="name"):
            cfg.workloads.append(WorkloadChoice(**values))
    issues = top.get("known_issues")
    items = chk.list_of_mappings(issues, "known_issues", KNOWN_ISSUE_KEYS,
                                 required=("title", "reason")) if issues is not None else ()
    for i, (item, values) in enumerate(items):
        keypath = f"known_issues[{i}]"
        for name in ("title", "kernel"):
            if values.get(name) is not None:
                try:
                    re.compile(values[name])
                except re.error as exc:
                    chk.fail(item.value_nodes[name], f"{keypath}.{name}", f"not a regular expression: {exc}")
        cfg.known_issues.append(KnownIssue(**values))
    return _finish(cfg, base)


def _finish(cfg: RunConfig, base: Path) -> RunConfig:
    if cfg.node_memory_mb is not None:
        if len(cfg.node_memory_mb) != cfg.numa_nodes:
            raise UsageError(f"{cfg.path}: guest.node_memory_mb: expected {cfg.numa_nodes} sizes "
                             f"(one per NUMA node), got {len(cfg.node_memory_mb)}")
        cfg.memory_mb = sum(cfg.node_memory_mb)
    if not cfg.fragments:
        cfg.fragments = default_fragments()
    if not isinstance(cfg.results, Path):
        cfg.results = Path(cfg.results)
    return cfg


def config_from_dict(d: dict[str, Any]) -> RunConfig:
    """The RunConfig that RunConfig.as_dict() recorded in a run.json, as it ran
    (keys this kstress no longer knows are left out)."""
    known = {k: v for k, v in d.items() if k in RunConfig.__dataclass_fields__}
    try:
        return RunConfig(**dict(
            known, path=Path(d["path"]), results=Path(d.get("results") or "results"),
            fragments=[Path(p) for p in d.get("fragments") or []],
            workloads=[WorkloadChoice(**w) for w in d.get("workloads") or []],
            known_issues=[KnownIssue(**k) for k in d.get("known_issues") or []],
            variants=[Variant(v["name"], [Path(p) for p in v["fragments"]], v.get("overrides") or {})
                      for v in d.get("variants") or []]))
    except (KeyError, TypeError) as exc:
        raise UsageError(f"not a run config as kstress records it ({exc!r})") from None


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
