"""The Finding record: one crash report (or informational event) in a console log."""

from dataclasses import asdict, dataclass, field
from typing import List, Optional


@dataclass
class Frame:
    """One stack frame as printed (or as symbolized from a vmlinux)."""

    func: str
    offset: Optional[str] = None      # "0x1f4" of func+0x1f4/0x200
    size: Optional[str] = None
    address: Optional[str] = None     # old kernels print [<ffffffff...>]
    source: Optional[str] = None      # "mm/migrate.c:123" when the log (or symbolizer) gives it
    module: Optional[str] = None
    unreliable: bool = False          # "? func" frames are stack garbage, not callers
    inlined: bool = False

    def __str__(self) -> str:
        text = ("? " if self.unreliable else "") + self.func
        if self.offset:
            text += f"+{self.offset}/{self.size}"
        if self.source:
            text += f" {self.source}"
        if self.inlined:
            text += " [inline]"
        return text


@dataclass
class Finding:
    """One report found in a console log.

    ``start``/``end`` delimit ``excerpt``: character offsets into the text for
    analyze_text, byte offsets into the file for analyze_file.
    """

    cls: str
    type: str
    title: str
    excerpt: str = ""
    start: int = 0
    end: int = 0
    file: Optional[str] = None
    line: Optional[int] = None
    guilty_function: Optional[str] = None
    caller: Optional[str] = None
    guilty_file: Optional[str] = None
    call_trace: List[Frame] = field(default_factory=list)
    cpu: Optional[int] = None
    pid: Optional[int] = None
    comm: Optional[str] = None
    taint: Optional[str] = None
    kernel_version: Optional[str] = None
    corrupted: bool = False
    signature: str = ""
    aftermath: List[str] = field(default_factory=list)
    informational: bool = False
    boot: int = 0                     # index of the boot (console session) it happened in

    def to_dict(self) -> dict:
        data = asdict(self)
        data["call_trace"] = [str(frame) for frame in self.call_trace]
        return data
