"""Console line cleaning: strip transport prefixes so report rules see kernel text.

A console line may carry, in front of the kernel's own text: a syslog or
journald prefix, a printk level "<4>", a timestamp "[  12.345678]", a caller
id "[T123]"/"[C1]" (CONFIG_PRINTK_CALLER), ANSI colour escapes, CR, NULs.
"""

import re
from dataclasses import dataclass
from typing import Optional

_ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[@-~])")
# C0 controls except TAB; DEL too.  Replaced by nothing: they are line noise.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SYSLOG = re.compile(
    r"^(?:<\d{1,3}>\d?\s*)?"
    r"(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d+)?"         # Nov 26 23:13:50[.123456]
    r"|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?)"  # ISO
    r"(?: \S+){1,2} kernel(?:\[\d+\])?: ", re.IGNORECASE)
_DMESG_T = re.compile(r"^\[[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}\] ")
_PRINTK = re.compile(
    r"^(?:<\d{1,2}>)?"
    r"(?:\[\s*(?P<time>\d+\.\d+)\])?"
    r"(?:\s?\[\s*(?P<ctx>[TC]\d+)\])?"
    r"(?: |(?=\S)|$)")


# A printk timestamp inside a line: the kernel printed while another writer
# (the guest shell, a workload) was mid-line, so kernel text starts there.
_EMBEDDED_PRINTK = re.compile(r"\[\s*\d+\.\d{6}\](?:\[\s*[TC]\d+\])?")
_PRINTK_TIME = re.compile(r"\[\s*(\d+\.\d{6})\]")


def printk_time(text: str) -> Optional[float]:
    """The first printk timestamp in ``text`` (a report's excerpt): seconds since boot."""
    match = _PRINTK_TIME.search(text)
    return float(match.group(1)) if match else None


@dataclass
class Line:
    start: int          # offset of the raw line in the source (chars or bytes)
    end: int            # offset just past the raw line, excluding the newline
    text: str           # kernel text, prefixes removed
    ctx: Optional[str]  # printk caller id "T123"/"C1", if printed
    time: Optional[float] = None    # printk timestamp, if printed


def clean(raw: str):
    """Return (kernel text, caller id) of one raw console line."""
    text, ctx, _ = clean_stamped(raw)
    return text, ctx


def clean_stamped(raw: str):
    """Return (kernel text, caller id, printk timestamp or None) of one raw console line."""
    if not raw.isprintable():     # (most lines are: no escape, no control character to remove)
        if "\x1b" in raw:
            raw = _ANSI.sub("", raw)
        if _CONTROL.search(raw):
            raw = _CONTROL.sub("", raw)
    if raw[:1] != "[" and (" kernel" in raw or " KERNEL" in raw):
        match = _SYSLOG.match(raw)
        if match:
            raw = raw[match.end():]
    elif raw[:1] == "[" and _DMESG_T.match(raw):
        raw = _DMESG_T.sub("", raw, 1)
    ctx = stamp = None
    if raw[:1] not in "[<" and "[" in raw:
        match = _EMBEDDED_PRINTK.search(raw, 1)
        if match:
            raw = raw[match.start():]
    if raw[:1] in "[<":
        match = _PRINTK.match(raw)
        if match and match.end():
            ctx = match.group("ctx")
            if match.group("time"):
                stamp = float(match.group("time"))
            raw = raw[match.end():]
    return raw.rstrip(), ctx, stamp
