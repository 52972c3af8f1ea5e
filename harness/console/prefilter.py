"""Cheap search for the few substrings every report (or boot event) line contains.

Full parsing runs only on lines holding one of these anchors.  Two searches
give the same hits: GNU grep -F (one native multi-pattern pass, used for
files) and bytes/str.find per anchor (pure Python, used for text and when
grep is unavailable).
"""

import os
import re
import shutil
import subprocess
from typing import Iterator, List, Optional, Union

from .rules import BOOT_BANNER_ANCHORS, CLEAN_SHUTDOWN_ANCHORS, RULES

# The anchors of every report rule and boot/shutdown marker, each once.  Rules
# share the common ones ("BUG", "WARNING", "[#": an oops's die counter), so
# the set stays small and each search stays fast.
ANCHORS = tuple(dict.fromkeys([*(anchor for rule in RULES for anchor in rule.anchors),
                                *BOOT_BANNER_ANCHORS, *CLEAN_SHUTDOWN_ANCHORS]))
_ANCHORS_BYTES = tuple(a.encode() for a in ANCHORS)
# For checking one line already in hand (not for scanning: one find per anchor is faster there).
ANCHOR_TEXT = re.compile("|".join(re.escape(a) for a in ANCHORS))
PREFILTER_ENV = "KSTRESS_SCAN_PREFILTER"     # "python" forces the pure-Python search


def find_anchors(data: Union[str, bytes], start: int, end: int) -> List[int]:
    """Sorted positions of anchors in data[start:end] (pure Python, one find loop per anchor)."""
    anchors = _ANCHORS_BYTES if isinstance(data, (bytes, bytearray)) else ANCHORS
    find = data.find
    hits: List[int] = []
    for anchor in anchors:
        at = find(anchor, start, end)
        while at >= 0:
            hits.append(at)
            at = find(anchor, at + 1, end)
    hits.sort()
    return hits


def grep_offsets(path: str) -> Optional[Iterator[int]]:
    """Byte offsets of all anchors in a file, streamed from GNU grep as it reads.

    None if grep is missing or refuses the options (then search in Python).
    Offsets stream while grep runs, so parsing overlaps the search.
    """
    grep = shutil.which("grep")
    if not grep or os.environ.get(PREFILTER_ENV) == "python":
        return None
    argv = [grep, "-a", "-b", "-o", "-F"]
    for anchor in ANCHORS:
        argv += ["-e", anchor]
    proc = subprocess.Popen(argv + ["--", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, LC_ALL="C"))
    first = proc.stdout.readline()
    if not first:
        proc.wait()
        if proc.returncode not in (0, 1):
            proc.stderr.close()
            return None
    return _offsets(proc, first)


def _offsets(proc: subprocess.Popen, first: bytes) -> Iterator[int]:
    try:
        row = first
        while row:
            yield int(row[:row.index(b":")])
            row = proc.stdout.readline()
        proc.wait()
        if proc.returncode not in (0, 1):
            raise OSError(f"grep failed: {proc.stderr.read().decode(errors='replace').strip()}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def grep_markers() -> str:
    """The anchors as an ERE pattern file for `grep -E -f` (the benchmark's baseline)."""
    return "".join(re.sub(r"([][.*+?(){}|^$\\])", r"\\\1", a) + "\n" for a in ANCHORS)
