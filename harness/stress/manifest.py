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
from harness.stress.vmstat import EVIDENCE_PREFIXES
from harness.yamlcheck import Key, YamlChecker, compose_file

MANIFEST = "manifest.yaml"
GUEST_BIN_DIR = "/usr/bin"
# What a workload may claim to stress; a closed list catches typos.
STRESSES = ("migration", "compaction", "fork", "thp", "split", "ksm", "swap",
            "reclaim", "mprotect", "mremap", "numa")
PLACEHOLDERS = {"duration": 1, "seed": 1}
_COUNTER = "(?:" + "|".join(re.escape(p) for p in EVIDENCE_PREFIXES) + r")[a-z0-9_]*"
WORKLOAD_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")

_LIST = (list,)
# The keys of every kind; a kind adds its own (Kind.keys).
MANIFEST_KEYS: dict[str, Key] = {
    "name": Key((str,), None, "the workload's name, same as its directory"),
    "description": Key((str,), None, "one line on what it does"),
    "kind": Key((str,), "c", "how it is built and run"),
    "stresses": Key(_LIST, None, f"what it stresses: some of {', '.join(STRESSES)}"),
    "kernel_options": Key(_LIST, None, "CONFIG_ symbols the kernel needs"),
    "default_duration": Key((int,), None, "seconds", minimum=1),
    "argv": Key(_LIST, None, "arguments; {duration} and {seed} are filled in"),
    "evidence": Key(_LIST, None, "/proc/vmstat counters that must move"),
    "runs": Key(_LIST, [], "other workloads it starts in the guest: their files, kernel options and "
                           "guest needs are its own too"),
    "evidence_floors": Key((dict,), {}, "per accelerator (tcg, kvm), the least each /proc/vmstat counter "
                                        "must move per minute of stress in a soak (measured figures)"),
}
ACCELS = ("tcg", "kvm")  # evidence_floors are figures of one accelerator: TCG is ten times slower
_ITEM_RULES = {
    "stresses": (re.compile("(?:" + "|".join(STRESSES) + r")\Z"), f"one of {', '.join(STRESSES)}"),
    "kernel_options": (re.compile(r"CONFIG_[A-Z0-9_]+\Z"), "a CONFIG_ symbol such as CONFIG_MIGRATION"),
    "argv": (re.compile(r".*", re.S), "a string"),
    # The counters the runner records (stress.vmstat); "a|b": either moves.
    "evidence": (re.compile(rf"(?:{_COUNTER})(?:\|(?:{_COUNTER}))*\Z"),
                 f"a /proc/vmstat counter of the families {', '.join(EVIDENCE_PREFIXES)} "
                 f"(a|b: either), such as pgmigrate_success"),
    "runs": (WORKLOAD_NAME, "a workload's name such as migrate_fork"),
}
_C_SOURCE = (re.compile(r"[^/].*\.c\Z"), "a relative path to a .c file")
_C_HEADER = (re.compile(r"[^/].*\.h\Z"), "a relative path to a .h file")
_PY_SOURCE = (re.compile(r"[^/].*\.py\Z"), "a relative path to a .py file")


@dataclass(frozen=True)
class Kind:
    """One workload kind as data: the keys its manifests have besides
    MANIFEST_KEYS, how its command line starts, and what it needs of the guest
    image. An adapter in harness.stress.adapters makes its guest files."""

    help: str
    keys: dict[str, Key] = field(default_factory=dict)
    items: dict[str, tuple[re.Pattern, str]] = field(default_factory=dict)  # its list keys' item rules
    files: tuple[str, ...] = ()  # its keys that list files relative to the manifest
    nonempty: tuple[str, ...] = ()  # list keys that need at least one item
    entry: str | None = None  # the file among the sources that is the workload's program
    # The guest command line before the manifest's argv ({bin}, {name}, {duration}, {seed}).
    command: tuple[str, ...] = ("{bin}/{name}",)
    reserved: tuple[str, ...] = ()  # argv items the command adds itself
    guest_needs: tuple[str, ...] = ()  # programs the guest image must have (guest.images.PROGRAMS)


STRESS_NG_RUNNER = "ks-stress-ng"  # workloads/lib/ks_stress_ng.py in the guest
KINDS: dict[str, Kind] = {
    "c": Kind(
        "a static binary compiled from C (initramfs or Debian guest)",
        keys={"sources": Key(_LIST, None, "C files, relative to the manifest"),
              "headers": Key(_LIST, [], "headers the sources include, relative to the manifest "
                                        "(e.g. ../lib/kstress.h)")},
        items={"sources": _C_SOURCE, "headers": _C_HEADER},
        files=("sources", "headers"), nonempty=("sources",)),
    "python": Kind(
        "Python 3 scripts run by the guest's python3; each source goes to /usr/bin/<its stem>",
        keys={"sources": Key(_LIST, None, "Python files (#!/usr/bin/python3), relative to the manifest; "
                                          "<name>.py is the workload, others are programs it runs")},
        items={"sources": _PY_SOURCE}, files=("sources",), nonempty=("sources",), entry="{name}.py",
        guest_needs=("python3",)),
    "stress-ng": Kind(
        "Debian's stress-ng: argv are its arguments, run by ks-stress-ng with --timeout, --seed, --verify",
        nonempty=("argv",),
        command=(f"{{bin}}/{STRESS_NG_RUNNER}", "--name", "{name}", "--duration", "{duration}",
                 "--seed", "{seed}", "--"),
        reserved=("--timeout", "-t", "--seed", "--yaml", "-Y", "--verify", "--metrics", "--metrics-brief",
                  "--log-file", "--temp-path", "--sequential", "--all", "-a", "--random", "-r"),
        guest_needs=("python3", "stress-ng")),
}
MANIFEST_KEYS["kind"] = Key((str,), "c", "how it is built and run", choices=tuple(KINDS))


@dataclass
class Workload:
    name: str
    kind: str
    description: str
    stresses: list[str]
    kernel_options: list[str]
    default_duration: int
    argv_template: list[str]
    evidence: list[str]
    directory: Path
    sources: list[Path] = field(default_factory=list)
    # Files the sources #include from outside their own directory: part of
    # the build's cache key, and their directories are -I paths.
    headers: list[Path] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)  # workloads it starts in the guest
    # accel -> counter -> least per minute of stress (a soak marks an iteration below them)
    evidence_floors: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def rules(self) -> Kind:
        return KINDS[self.kind]

    @property
    def guest_path(self) -> str:
        return self.argv(1, 1)[0]

    def argv(self, duration: int, seed: int) -> list[str]:
        """The command line in the guest (str.format on each template item)."""
        values = {"duration": int(duration), "seed": int(seed)}
        command = [c.format(bin=GUEST_BIN_DIR, name=self.name, **values) for c in self.rules.command]
        return command + [a.format(**values) for a in self.argv_template]

    def missing_options(self, dotconfig_text: str) -> list[str]:
        """The kernel options it needs that the built .config lacks."""
        have = parse_dotconfig(dotconfig_text)
        return [opt for opt in self.kernel_options if have.get(opt, "n") == "n"]


def load_workloads(directory: Path | None = None) -> dict[str, Workload]:
    """Every workload under ``directory`` (default: the repo's workloads/), by name."""
    directory = Path(directory) if directory is not None else WORKLOADS_DIR
    if not directory.is_dir():
        raise UsageError(f"{directory}: no such workloads directory")
    manifests = sorted(directory.glob(f"*/{MANIFEST}"))
    names = {m.parent.name for m in manifests}
    out = {}
    for manifest in manifests:
        w = load_manifest(manifest, names)
        out[w.name] = w
    return out


def companions(w: Workload, registry: dict[str, Workload]) -> list[Workload]:
    """The workloads ``w`` runs (its ``runs``, and theirs), each once, never ``w`` itself."""
    out: dict[str, Workload] = {}
    todo = list(w.runs)
    while todo:
        name = todo.pop(0)
        if name != w.name and name not in out:
            out[name] = registry[name]
            todo.extend(registry[name].runs)
    return list(out.values())


def load_manifest(path: Path, known: set[str] | None = None) -> Workload:
    """One manifest; ``known``: the names ``runs`` may list (None: not checked)."""
    path = Path(path)
    root = compose_file(path, "manifest")
    chk = YamlChecker(path)
    if root is None:
        chk.fail(None, "", f"empty manifest (expected keys: {', '.join(MANIFEST_KEYS)})")
    fields = chk.mapping(root, "")
    kind_key = MANIFEST_KEYS["kind"]
    kind_name = chk.value(fields["kind"], "kind", kind_key) if "kind" in fields else kind_key.default
    kind = KINDS[kind_name]
    keys = {**MANIFEST_KEYS, **kind.keys}
    _other_kinds_keys(chk, fields, kind_name)
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
            pattern, what = kind.items.get(name) or _ITEM_RULES[name]
            for i, (item, v) in enumerate(chk.strings(fields[name], name)):
                if not pattern.match(v):
                    chk.fail(item, f"{name}[{i}]", f"expected {what}, got {v!r}")
    directory = path.resolve().parent
    if values["name"] != directory.name:
        chk.fail(fields["name"], "name", f"expected the directory's name {directory.name!r}, got {values['name']!r}")
    for name in kind.nonempty:
        if not values[name]:
            chk.fail(fields[name], name, f"expected at least one item (kind {kind_name}: {kind.help})")
    files = {name: _files(chk, fields, values, name, directory) for name in kind.files}
    if kind.entry:
        entry = kind.entry.format(name=values["name"])
        if entry not in values["sources"]:
            chk.fail(fields["sources"], "sources", f"expected {entry} among them: the workload's own program")
    _check_argv(chk, fields, values["argv"], kind_name)
    _check_runs(chk, fields, values, known)
    floors = _floors(chk, fields["evidence_floors"]) if "evidence_floors" in fields else {}
    return Workload(name=values["name"], kind=kind_name, description=values["description"],
                    stresses=values["stresses"], kernel_options=values["kernel_options"],
                    default_duration=values["default_duration"], argv_template=values["argv"],
                    evidence=values["evidence"], directory=directory, sources=files.get("sources", []),
                    headers=files.get("headers", []), runs=values["runs"], evidence_floors=floors)


def _other_kinds_keys(chk: YamlChecker, fields: dict, kind: str) -> None:
    """A key of another kind is named as such, not as an unknown key."""
    for other, rules in KINDS.items():
        for name in rules.keys:
            if other != kind and name in fields and name not in KINDS[kind].keys:
                chk.fail(fields[name], name, f"a key of kind {other}, not of kind {kind}")


def _check_argv(chk: YamlChecker, fields: dict, argv: list[str], kind: str) -> None:
    for i, item in enumerate(argv):
        try:
            item.format(**PLACEHOLDERS)
        except (KeyError, IndexError, ValueError) as exc:
            chk.fail(fields["argv"].value[i], f"argv[{i}]",
                     f"expected only {{duration}} and {{seed}} placeholders, got {item!r} ({exc!r})")
        option = item.split("=", 1)[0]
        if option in KINDS[kind].reserved:
            chk.fail(fields["argv"].value[i], f"argv[{i}]",
                     f"{option} is added by kind {kind} itself (from {{duration}} and {{seed}})")


def _check_runs(chk: YamlChecker, fields: dict, values: dict, known: set[str] | None) -> None:
    for i, name in enumerate(values["runs"]):
        if name == values["name"]:
            chk.fail(fields["runs"].value[i], f"runs[{i}]", "a workload cannot run itself")
        if known is not None and name not in known:
            chk.fail(fields["runs"].value[i], f"runs[{i}]",
                     f"unknown workload {name!r} (available: {', '.join(sorted(known))})")


def _floors(chk: YamlChecker, node) -> dict[str, dict[str, float]]:
    """evidence_floors: {accel: {counter: per-minute floor > 0}}."""
    out: dict[str, dict[str, float]] = {}
    for accel, counters in chk.mapping(node, "evidence_floors").items():
        keypath = f"evidence_floors.{accel}"
        if accel not in ACCELS:
            chk.fail(counters, keypath, f"expected an accelerator, one of {', '.join(ACCELS)}")
        out[accel] = {}
        for counter, value in chk.mapping(counters, keypath).items():
            if not re.match(rf"{_COUNTER}\Z", counter):
                chk.fail(value, f"{keypath}.{counter}", f"expected a /proc/vmstat counter of the families "
                                                         f"{', '.join(EVIDENCE_PREFIXES)}")
            floor = chk.value(value, f"{keypath}.{counter}", Key((int, float), None, ""))
            if floor <= 0:
                chk.fail(value, f"{keypath}.{counter}", f"expected a number of events per minute above 0, "
                                                         f"got {floor!r}")
            out[accel][counter] = floor
    return out


def _files(chk: YamlChecker, fields: dict, values: dict, name: str, directory: Path) -> list[Path]:
    """The files a list key names, relative to the manifest's directory; each must exist."""
    out = []
    for i, rel in enumerate(values[name]):
        path = directory / rel
        if not path.is_file():
            chk.fail(fields[name].value[i], f"{name}[{i}]", f"no such file: {path}")
        out.append(path)
    return out
