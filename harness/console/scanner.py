"""Streaming scan: find anchor lines, parse the reports they begin, emit events.

Works on one in-memory buffer at a time (a whole str, or a window of a binary
file), so analyze_text and analyze_file share every rule.  Offsets in events
are absolute: characters for text, bytes for files.
"""

import re
from dataclasses import dataclass
from typing import BinaryIO, Iterable, Iterator, List, Optional, Tuple, Union

from . import prefilter
from .lines import Line, clean_stamped
from .model import Finding
from .reports import build_finding, extent, prelude
from .rules import BOOT_BANNER, CLEAN_SHUTDOWN, KERNEL_BANNER, match_rule

CHUNK_BYTES = 8 << 20
# A report never spans more than this many bytes past its first line (800 lines).
MARGIN_BYTES = 2 << 20
# How far back a report's prelude (cut here, page dump) may reach.
BACK_LINES = 40
BACK_BYTES = 16 << 10
# A report that needs a stack has a frame ("func+0x1f/0x40") this close after its first line.
STACK_LOOKAHEAD_BYTES = 8 << 10
# Window read around a hit when anchors come from an external search: the
# prelude, the longest report we parse (reports.MAX_REPORT_LINES lines), slack.
REPORT_BYTES = 160 << 10
WINDOW_BYTES = BACK_BYTES + REPORT_BYTES + (64 << 10)
# Distinct chatter texts remembered, each at most MAX_CHATTER_TEXT characters (under 5 MB in all).
MAX_CHATTER = 8192
MAX_CHATTER_TEXT = 512
_BLANK_OR_ESCAPES = re.compile(rb"(?:\x1b(?:\[[0-9;?]*[ -/]*[@-~]|.)|\s|\x00)*")
_BLANK_OR_ESCAPES_TEXT = re.compile(_BLANK_OR_ESCAPES.pattern.decode())


@dataclass
class Event:
    kind: str                 # "finding", "banner", "shutdown"
    start: int
    finding: Optional[Finding] = None
    rule: object = None
    version: Optional[str] = None


class _Buffer:
    """A str or bytes window of the console, starting at absolute offset ``base``."""

    def __init__(self, data: Union[str, bytes], base: int):
        self.data = data
        self.base = base
        self.is_bytes = isinstance(data, (bytes, bytearray))
        self.nl = b"\n" if self.is_bytes else "\n"
        self.frame_hint = b"+0x" if self.is_bytes else "+0x"

    def decode(self, start: int, end: int) -> str:
        piece = self.data[start:end]
        return piece.decode("utf-8", "replace") if self.is_bytes else piece

    def line_at(self, start: int, limit: int) -> Optional[Line]:
        if start > limit:
            return None
        end = self.data.find(self.nl, start, limit)
        if end < 0:
            end = limit
        raw = self.decode(start, end)
        if raw.endswith("\r"):
            raw = raw[:-1]
        text, ctx, stamp = clean_stamped(raw)
        return Line(self.base + start, self.base + end, text, ctx, stamp)

    def lines_after(self, line: Line, limit: int) -> Iterator[Line]:
        pos = line.end - self.base + 1
        while pos < limit:
            nxt = self.line_at(pos, limit)
            yield nxt
            pos = nxt.end - self.base + 1

    def lines_back(self, start: int, floor: int, count: int) -> Iterator[Line]:
        """Up to ``count`` lines before offset ``start``, nearest first, none before ``floor``."""
        end = start - 1            # index of the "\n" ending the previous line
        while end > floor and count > 0:
            begin = self.data.rfind(self.nl, floor, end) + 1
            if begin <= floor and floor > 0:
                begin = floor
            yield self.line_at(begin, end)
            count -= 1
            end = begin - 1

    def line_start(self, pos: int) -> int:
        return self.data.rfind(self.nl, 0, pos) + 1


class _Scanner:
    """Turns anchor hits into events; remembers where the last report ended.

    Offsets kept here are absolute, so one scanner can be fed hits from many
    buffers (chunks or windows) of the same console.
    """

    def __init__(self):
        self.consumed = 0        # lines before this offset belong to an emitted report
        self.last_line = -1      # start of the last anchor line examined

    def examine(self, buf: "_Buffer", index: int, limit: int) -> Optional[Event]:
        """The event (if any) of the anchor hit at ``index`` in ``buf``."""
        start = buf.line_start(index)
        if buf.base + start < self.consumed or buf.base + start <= self.last_line:
            return None
        self.last_line = buf.base + start
        line = buf.line_at(start, limit)
        found = match_rule(line.text)
        if found is None:
            return _boot_event(line)
        rule, match = found
        if rule.needs_stack and buf.data.find(buf.frame_hint, line.end - buf.base,
                                              min(limit, line.end - buf.base + STACK_LOOKAHEAD_BYTES)) < 0:
            return None         # a driver's "WARNING: ..." message: no stack follows it
        body = extent(buf.lines_after(line, limit), line, rule)
        lines = body
        if rule.has_prelude:
            floor = max(0, self.consumed - buf.base)
            lines = prelude(buf.lines_back(start, floor, BACK_LINES), rule) + body
        finding = build_finding(rule, match, lines, line)
        if finding is None:
            return None
        finding.start, finding.end = lines[0].start, lines[-1].end
        finding.excerpt = buf.decode(finding.start - buf.base, finding.end - buf.base)
        self.consumed = body[-1].end + 1
        return Event("finding", finding.start, finding, rule)


def scan_buffer(buf: "_Buffer", scanner: _Scanner, scan_from: int, scan_to: int, limit: int) -> List[Event]:
    """Events for anchor lines starting in [scan_from, scan_to) of ``buf``."""
    events: List[Event] = []
    # An anchor may lie past scan_to on a line that starts before it.
    for index in prefilter.find_anchors(buf.data, scan_from, min(scan_to + 4096, limit)):
        if buf.line_start(index) >= scan_to:
            break
        event = scanner.examine(buf, index, limit)
        if event:
            events.append(event)
    return events


def _boot_event(line: Line) -> Optional[Event]:
    if BOOT_BANNER.match(line.text):
        version = KERNEL_BANNER.match(line.text)
        return Event("banner", line.start, version=version.group("version") if version else None)
    if CLEAN_SHUTDOWN.match(line.text):
        return Event("shutdown", line.start)
    return None


def scan_text(text: str) -> (List[Event], int):
    """Events of a whole console text; also the offset of its first visible character."""
    events = scan_buffer(_Buffer(text, 0), _Scanner(), 0, len(text), len(text))
    stripped = _BLANK_OR_ESCAPES_TEXT.match(text, 0, 65536).end()
    return events, stripped


def scan_stream(stream: BinaryIO) -> Iterator[Event]:
    """Events of a binary console stream, read in chunks so memory stays bounded.

    The first event is ("content", offset of the first visible byte).
    """
    scanner = _Scanner()
    data = b""
    base = 0            # absolute offset of data[0]
    scanned = 0         # lines starting before this index were examined (a line start)
    first = True
    while True:
        chunk = stream.read(CHUNK_BYTES)
        eof = not chunk
        data = data + chunk if data else chunk
        if first and data:
            first = False
            yield Event("content", _BLANK_OR_ESCAPES.match(data[:65536]).end())
        limit = len(data)
        scan_to = limit if eof else max(scanned, _line_start(data, limit - MARGIN_BYTES))
        yield from scan_buffer(_Buffer(data, base), scanner, scanned, scan_to, limit)
        if eof:
            return
        # Keep the unscanned tail plus some history for preludes of the next reports.
        keep_from = _line_start(data, max(0, scan_to - 65536))
        data = data[keep_from:]
        base += keep_from
        scanned = scan_to - keep_from


def scan_file_lines(stream: BinaryIO, size: int, rows: Iterable[Tuple[int, Optional[bytes]]]) -> Iterator[Event]:
    """Events of a console file given its anchor lines (from an external search) as (offset, bytes or None).

    A line whose text starts no report, boot or shutdown costs only that test;
    for the others (and lines given without their bytes) windows around them
    are read, so the cost is the reports', not the file's.
    """
    scanner = _Scanner()
    head = stream.read(65536)
    yield Event("content", _BLANK_OR_ESCAPES.match(head).end())
    buf, safe_end, limit = None, -1, 0
    chatter = set()     # texts of lines that start nothing: a long console repeats its chatter
    for hit, raw in rows:
        if hit < scanner.consumed or hit <= scanner.last_line:
            continue
        if raw is not None:
            text = line_text(raw)
            if text in chatter:
                continue
            if not may_start_event(text):
                if len(chatter) >= MAX_CHATTER:
                    chatter.clear()
                if len(text) <= MAX_CHATTER_TEXT:
                    chatter.add(text)
                continue
        if buf is None or hit >= safe_end or (buf.base and hit - buf.base < BACK_BYTES):
            window_start = max(0, hit - BACK_BYTES)
            stream.seek(window_start)
            data = stream.read(WINDOW_BYTES)
            buf, limit = _Buffer(data, window_start), len(data)
            at_eof = window_start + limit >= size
            safe_end = window_start + limit if at_eof else window_start + limit - REPORT_BYTES
        event = scanner.examine(buf, hit - buf.base, limit)
        if event:
            yield event


def line_text(raw: bytes) -> str:
    """The kernel text of the console line ``raw`` (without its newline), as _Buffer.line_at cleans it."""
    text = raw.decode("utf-8", "replace")
    if text.endswith("\r"):
        text = text[:-1]
    return clean_stamped(text)[0]


def may_start_event(text: str) -> bool:
    """Whether a line of this kernel text may start an event: examine()'s test of
    the line less what needs the lines around it.  False means no event."""
    return match_rule(text) is not None or bool(BOOT_BANNER.match(text) or CLEAN_SHUTDOWN.match(text))


def _line_start(data: bytes, pos: int) -> int:
    return data.rfind(b"\n", 0, max(0, pos)) + 1 if pos > 0 else 0
