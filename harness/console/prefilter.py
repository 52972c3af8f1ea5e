"""Cheap search for the few substrings every report (or boot event) line contains.

Full parsing runs only on lines holding one of these anchors.  Two searches
give the same lines: GNU grep -F -b (one native multi-pattern pass that prints
each such line with its offset, used for files) and bytes/str.find per anchor
(pure Python, used for text and when grep is unavailable).
"""

import os
import re
import shutil
import subprocess
from typing import Iterator, List, Optional, Tuple, Union

from .rules import BOOT_BANNER_ANCHORS, CLEAN_SHUTDOWN_ANCHORS, RULES

# The anchors of every report rule and boot/shutdown marker, each once.  Rules
# share the common ones ("BUG", "WARNING", "[#": an oops's die counter), so
# the set stays small and each search stays fast.
ANCHORS = tuple(dict.fromkeys([*(anchor for rule in RULES for anchor in rule.anchors),
                                *BOOT_BANNER_ANCHORS, *CLEAN_SHUTDOWN_ANCHORS]))
_ANCHORS_BYTES = tuple(a.encode() for a in ANCHORS)
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


# A row of grep's output longer than this is not read whole: the scanner reads
# the line from the file instead (a console line of megabytes must not cost
# megabytes here).
MAX_ROW_BYTES = 16 << 10
_READ_BYTES = 1 << 16


def grep_lines(path: str) -> Optional[Iterator[Tuple[int, Optional[bytes]]]]:
    """(byte offset, line) of every line holding an anchor, streamed from GNU grep as it reads.

    The line comes without its newline; it is None when longer than
    MAX_ROW_BYTES.  None instead of an iterator if grep is missing or refuses
    the options (then search in Python).  Rows stream while grep runs, so
    parsing overlaps the search, and a line the scanner can tell from its text
    alone to be chatter costs no read of the file.
    """
    grep = shutil.which("grep")
    if not grep or os.environ.get(PREFILTER_ENV) == "python":
        return None
    argv = [grep, "-a", "-b", "-F"]
    for anchor in ANCHORS:
        argv += ["-e", anchor]
    proc = subprocess.Popen(argv + ["--", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, LC_ALL="C"))
    first = proc.stdout.read1(_READ_BYTES)
    if not first:
        proc.wait()
        if proc.returncode not in (0, 1):
            proc.stderr.close()
            return None
    return _rows(proc, first)


def _rows(proc: subprocess.Popen, first: bytes) -> Iterator[Tuple[int, Optional[bytes]]]:
    """Parse grep's "offset:line" rows from its output, read in blocks."""
    try:
        pending, block = b"", first
        skipping = False            # inside a row longer than MAX_ROW_BYTES: its rest is dropped
        while block:
            rows = (pending + block if pending else block).split(b"\n")
            pending = rows.pop()    # a row's start; all of it if no newline came
            if skipping and rows:
                skipping = False
                del rows[0]         # the end of the long row
            for row in rows:
                offset, _, line = row.partition(b":")
                yield int(offset), line
            if skipping:
                pending = b""
            elif len(pending) > MAX_ROW_BYTES:
                yield int(pending.partition(b":")[0]), None
                skipping, pending = True, b""
            block = proc.stdout.read1(_READ_BYTES)
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
