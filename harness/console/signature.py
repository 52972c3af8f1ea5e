"""A stable de-duplication key: the same bug in another run gives the same key."""

import hashlib
import re

from .frames import base_name, is_helper

_NUMBERS = re.compile(r"0x[0-9a-fA-F]+|\b[0-9a-fA-F]{8,}\b|\d+")


def signature_of(finding) -> str:
    """cls, title and the top culprit frames, with addresses, offsets and lines removed."""
    frames = [base_name(f.func) for f in finding.call_trace if not f.unreliable and not is_helper(f.func)][:4]
    path = finding.file or ""
    parts = [finding.cls, _NUMBERS.sub("N", finding.title), path, ",".join(frames)]
    digest = hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]
    return f"{finding.cls}:{digest}"
