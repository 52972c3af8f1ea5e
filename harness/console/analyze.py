"""Entry points: analyze a console given as text or as a file."""

import os
from typing import List, Optional, Union

from .boots import group
from .model import Finding
from .prefilter import grep_lines
from .scanner import scan_file_lines, scan_stream, scan_text
from .signature import signature_of
from .symbolize import symbolize


def analyze_text(text: str, vmlinux: Optional[str] = None) -> List[Finding]:
    """Findings of a whole console log; start/end are character offsets into ``text``."""
    events, first_content = scan_text(text)
    return _finish(group(events, first_content), vmlinux)


def analyze_file(path: Union[str, "os.PathLike"], vmlinux: Optional[str] = None) -> List[Finding]:
    """Findings of a console log file, read as a stream.

    start/end are byte offsets into the file; excerpt is those bytes decoded as
    UTF-8 with errors="replace" (so it is a substring of the file so decoded).
    """
    rows = grep_lines(os.fspath(path))
    with open(path, "rb") as stream:
        if rows is not None:
            events = scan_file_lines(stream, os.fstat(stream.fileno()).st_size, rows)
        else:
            events = scan_stream(stream)
        return _finish(group(events), vmlinux)


def _finish(findings: List[Finding], vmlinux: Optional[str]) -> List[Finding]:
    if vmlinux:
        symbolize(findings, vmlinux)
        for finding in findings:
            finding.signature = signature_of(finding)
    return findings
