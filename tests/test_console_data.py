"""Every log in tests/data/console/ gives the findings its header announces,
through both entry points, with excerpts that are exact slices of the input."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

import pytest

from harness.console import analyze_file, analyze_text

# --- reading tests/data/console/*.log (also used by the other console tests) ---
# Reading tests/data/console/*.log: header lines, a blank line, the raw log.
#
# Header keys (all optional; a log with no TITLE must give no failing finding):
#   TITLE:      title of each failing finding, in order (repeat the line)
#   CLASS:      cls of the first finding
#   FILE:       the first finding's file or guilty_file
#   AFTERMATH:  a substring of one of the first finding's aftermath titles (repeatable)
#   CORRUPTED:  Y if the first finding must be marked corrupted
#   # ...       comment

DATA_DIR = Path(__file__).resolve().parent / "data" / "console"


@dataclass
class ConsoleCase:
    path: Path
    raw_log: bytes
    titles: List[str] = field(default_factory=list)
    aftermath: List[str] = field(default_factory=list)
    headers: Dict[str, str] = field(default_factory=dict)


def read_console_case(path: Path) -> ConsoleCase:
    data = path.read_bytes()
    head, _, log = data.partition(b"\n\n") if not data.startswith(b"\n") else (b"", b"", data[1:])
    case = ConsoleCase(path, log)
    for line in head.decode("utf-8").splitlines():
        key, _, value = line.partition(": ")
        if line.startswith("#") or not value:
            continue
        if key == "TITLE":
            case.titles.append(value.strip())
        elif key == "AFTERMATH":
            case.aftermath.append(value.strip())
        else:
            case.headers[key] = value.strip()
    return case


def console_cases() -> List[ConsoleCase]:
    return [read_console_case(p) for p in sorted(DATA_DIR.glob("*.log"))]


CASES = console_cases()


def _failing(findings):
    return [f for f in findings if not f.informational and f.cls != "reboot"]


@pytest.mark.parametrize("case", CASES, ids=[c.path.name for c in CASES])
def test_text_findings_match_header(case):
    text = case.raw_log.decode("utf-8", "replace")
    findings = analyze_text(text)
    assert [f.title for f in _failing(findings)] == case.titles
    if "CLASS" in case.headers:
        assert findings and findings[0].cls == case.headers["CLASS"]
    if not findings:
        return
    first = findings[0]
    if "FILE" in case.headers:
        assert case.headers["FILE"] in (first.file, first.guilty_file)
    for expected in case.aftermath:
        assert any(expected in title for title in first.aftermath), first.aftermath
    assert first.corrupted == (case.headers.get("CORRUPTED") == "Y")
    for finding in findings:
        assert text[finding.start:finding.end] == finding.excerpt


@pytest.mark.parametrize("case", CASES, ids=[c.path.name for c in CASES])
def test_file_findings_equal_text_findings_with_byte_offsets(case, tmp_path):
    log = tmp_path / "console.log"
    log.write_bytes(case.raw_log)
    from_file = analyze_file(log)
    from_text = analyze_text(case.raw_log.decode("utf-8", "replace"))
    assert [(f.title, f.cls, f.signature) for f in from_file] == \
        [(f.title, f.cls, f.signature) for f in from_text]
    for finding in from_file:
        assert case.raw_log[finding.start:finding.end].decode("utf-8", "replace") == finding.excerpt


def test_data_dir_covers_the_mission_and_every_era():
    names = " ".join(c.path.name for c in CASES)
    classes = {c.headers.get("CLASS") for c in CASES}
    assert {"swapops_bug", "split_huge_page_bug", "oom"} <= classes
    for needed in ("2.6.32", "non_utf8", "crlf", "interleaved", "truncated"):
        assert needed in names
