"""One YAML checker for every file kstress reads: run configs and workload
manifests.

Files are composed into nodes (not loaded into plain values) so that every
error can name the file, the line, the key path and what was expected, in
one line: a typo in a nightly job's config is found at once, never as a
run that silently tests less.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

from harness.errors import UsageError


@dataclass(frozen=True)
class Key:
    """One key of a schema: its type(s), default and a word on its meaning."""

    types: tuple
    default: Any
    help: str
    choices: tuple = ()
    minimum: float | None = None


STR = (str,)
STR_OR_NULL = (str, type(None))
INT = (int,)
NUMBER = (int, float)
LIST = (list,)

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", list: "a list",
               dict: "a mapping", bool: "true/false", type(None): "null"}


def expected(types: tuple) -> str:
    return " or ".join(dict.fromkeys(_TYPE_NAMES[t] for t in types))


def compose_file(path: Path, what: str = "file") -> yaml.Node | None:
    """The YAML node tree of ``path``; a missing, unreadable or malformed file
    is a UsageError naming the file (and the line, for YAML errors)."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such {what}")
    if not path.is_file():
        raise UsageError(f"{path}: not a file")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from None
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"{path}{line}: invalid YAML: {problem}") from None


class ListItem:
    """A list item's node and its value nodes, for error lines."""

    def __init__(self, node: yaml.Node, value_nodes: dict[str, yaml.Node]):
        self.node, self.value_nodes = node, value_nodes


class YamlChecker:
    """Checks a composed YAML node tree; every failure names file:line and key path."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, node: yaml.Node | None, keypath: str, what: str):
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
                self.fail(node, keypath, f"expected {expected(key.types)}, got {value!r}")
        if key.choices and value not in key.choices:
            self.fail(node, keypath, f"expected one of {', '.join(key.choices)}, got {value!r}")
        if key.minimum is not None and value is not None and value < key.minimum:
            self.fail(node, keypath, f"expected at least {key.minimum}, got {value!r}")
        return value

    def strings(self, node: yaml.Node, keypath: str) -> list[tuple[yaml.Node, str]]:
        """A list of strings, each with its node (for an error on that item)."""
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, keypath, "expected a list")
        return [(item, self.value(item, f"{keypath}[{i}]", Key(STR, None, "")))
                for i, item in enumerate(node.value)]

    def unknown(self, fields: dict[str, yaml.Node], allowed: dict, keypath: str) -> None:
        for name, vnode in fields.items():
            if name not in allowed:
                full = f"{keypath}.{name}" if keypath else name
                self.fail(vnode, full, f"unknown key (expected one of: {', '.join(allowed)})")

    def list_of_mappings(self, node: yaml.Node, keypath: str, keys: dict[str, Key],
                         required: tuple[str, ...], shorthand: str | None = None
                         ) -> Iterator[tuple[ListItem, dict[str, Any]]]:
        """Yield (item, values) for a list of mappings checked against ``keys``;
        a bare scalar item means {shorthand: scalar}."""
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, keypath, f"expected a list of {{{', '.join(keys)}}}")
        for i, item in enumerate(node.value):
            itempath = f"{keypath}[{i}]"
            if shorthand and isinstance(item, yaml.ScalarNode):
                yield ListItem(item, {shorthand: item}), {shorthand: self.value(item, itempath, keys[shorthand])}
                continue
            fields = self.mapping(item, itempath)
            self.unknown(fields, keys, itempath)
            for name in required:
                if name not in fields:
                    self.fail(item, itempath, f"missing key '{name}'")
            yield ListItem(item, fields), {name: self.value(fields[name], f"{itempath}.{name}", key)
                                           for name, key in keys.items() if name in fields}
