"""Kconfig fragments: parsing, merging with the kernel's own tools, verification.

The merge is the kernel's ``scripts/kconfig/merge_config.sh -m`` followed by
``make olddefconfig``; Kconfig silently drops a symbol whose dependencies are
not met, so afterwards every symbol a fragment sets is checked in the result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UsageError

_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")
_VALUE = re.compile(r'^(?:[ynm]|-?\d+|0[xX][0-9a-fA-F]+|"(?:[^"\\]|\\.)*")$')

EXPECTED_FORMS = 'CONFIG_NAME=<y|n|m|number|0xhex|"string">, "# CONFIG_NAME is not set", a "#" comment or a blank line'


@dataclass(frozen=True)
class Setting:
    symbol: str
    value: str  # "n" for "is not set"
    origin: str  # "file:line", for messages


def parse_fragment_text(text: str, name: str) -> list[Setting]:
    """Parse a fragment; a malformed line is a UsageError naming ``name:line``."""
    out = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        m = _UNSET.match(line)
        if m:
            out.append(Setting(m.group(1), "n", f"{name}:{lineno}"))
            continue
        if line.startswith("#"):
            continue
        m = _SET.match(line)
        if not m or not _VALUE.match(m.group(2)):
            raise UsageError(f"{name}:{lineno}: malformed Kconfig line {raw.strip()!r}: expected {EXPECTED_FORMS}")
        out.append(Setting(m.group(1), m.group(2), f"{name}:{lineno}"))
    return out


def parse_fragment(path: Path) -> list[Setting]:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UsageError(f"config fragment {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"config fragment {path} cannot be read: {e}") from None
    return parse_fragment_text(text, str(path))


def requested(fragments: list[list[Setting]]) -> dict[str, Setting]:
    """What the fragments ask for, later fragments (and later lines) winning, as in merge_config.sh."""
    want: dict[str, Setting] = {}
    for frag in fragments:
        for s in frag:
            want[s.symbol] = s
    return want


def parse_dotconfig(text: str) -> dict[str, str]:
    """A full .config as {symbol: value}; "is not set" becomes "n"; absent symbols are absent."""
    vals = {}
    for line in text.splitlines():
        m = _SET.match(line)
        if m:
            vals[m.group(1)] = m.group(2)
            continue
        m = _UNSET.match(line)
        if m:
            vals[m.group(1)] = "n"
    return vals


def _same(want: str, got: str | None) -> bool:
    if want == "n":
        return got in (None, "n")  # unset and "is not set" both mean n
    if got is None:
        return False
    if want.lower().startswith("0x") and got.lower().startswith("0x"):
        return int(want, 16) == int(got, 16)
    return want == got


def mismatches(want: dict[str, Setting], dotconfig_text: str) -> list[str]:
    """One description per fragment setting that the final .config does not hold."""
    got = parse_dotconfig(dotconfig_text)
    out = []
    for sym, s in sorted(want.items()):
        g = got.get(sym)
        if not _same(s.value, g):
            out.append(f"{sym} asked {s.value} ({s.origin}), got {g if g is not None else 'unset'}")
    return out


def verify(want: dict[str, Setting], dotconfig: Path) -> None:
    bad = mismatches(want, Path(dotconfig).read_text())
    if bad:
        # Usually an unmet dependency: the fragment asks for something the
        # tree cannot give. That is the user's input, hence UsageError.
        raise UsageError(
            f"{len(bad)} config symbol(s) did not keep the fragment's value after olddefconfig "
            f"(unmet dependency?), see {dotconfig}: " + "; ".join(bad)
        )
