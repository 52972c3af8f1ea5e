"""Symbolize frames with a vmlinux: func+off -> file:line, with inlined callers.

Uses binutils: `nm` for function addresses, one batched `addr2line -fie` for
all frames (decode_stacktrace.sh does the same, one frame at a time).
"""

import shutil
import subprocess
from functools import lru_cache
from typing import Dict, List, Optional, Tuple

from harness.errors import CouldNotTest

from .frames import base_name, guilty_file
from .model import Finding, Frame


class SymbolizeError(CouldNotTest):
    """binutils is missing or cannot read the vmlinux."""


@lru_cache(maxsize=4)
def _symbol_table(vmlinux: str) -> Dict[str, List[Tuple[int, int]]]:
    """name -> [(address, size)] of text symbols (static functions can repeat)."""
    nm = shutil.which("nm")
    if not nm:
        raise SymbolizeError("nm (binutils) not found")
    out = subprocess.run([nm, "-S", "--defined-only", vmlinux], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SymbolizeError(f"nm failed on {vmlinux}: {out.stderr.strip()[:200]}")
    table: Dict[str, List[Tuple[int, int]]] = {}
    for row in out.stdout.splitlines():
        parts = row.split()
        if len(parts) == 4 and parts[2] in "tTwW":
            table.setdefault(parts[3], []).append((int(parts[0], 16), int(parts[1], 16)))
    return table


def _address(table, frame: Frame, is_return: bool) -> Optional[int]:
    if frame.address and frame.address.startswith("ffff"):
        base = int(frame.address, 16)
        return base - 1 if is_return else base
    if not frame.offset or frame.func not in table:
        return None
    size = int(frame.size, 16) if frame.size else None
    candidates = table[frame.func]
    chosen, chosen_size = next(((a, s) for a, s in candidates if size is None or s == size), candidates[0])
    offset = int(frame.offset, 16)
    if chosen_size and offset >= chosen_size:
        return None      # the log is from another build of the kernel
    # A return address points after the call; step back into the call instruction.
    return chosen + offset - (1 if is_return else 0)


def _addr2line(vmlinux: str, addresses: List[int]) -> List[List[Tuple[str, str]]]:
    """For each address, [(func, file:line)] innermost inlined function first."""
    tool = shutil.which("addr2line")
    if not tool:
        raise SymbolizeError("addr2line (binutils) not found")
    query = "".join(f"{a:x}\n" for a in addresses)
    out = subprocess.run([tool, "-a", "-f", "-i", "-e", vmlinux], input=query, capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise SymbolizeError(f"addr2line failed: {out.stderr.strip()[:200]}")
    results: List[List[Tuple[str, str]]] = []
    rows = out.stdout.splitlines()
    index = 0
    while index < len(rows):
        if rows[index].startswith("0x"):
            results.append([])
            index += 1
            continue
        func = rows[index]
        where = rows[index + 1] if index + 1 < len(rows) else "??:0"
        where = where.split(" (discriminator")[0]
        results[-1].append((func, _relative(where)))
        index += 2
    return results


def _relative(path: str) -> str:
    """Drop the build directory: /home/x/linux/mm/migrate.c:12 -> mm/migrate.c:12."""
    for marker in ("/include/", "/mm/", "/arch/", "/kernel/", "/fs/", "/lib/", "/net/", "/drivers/",
                   "/block/", "/security/", "/crypto/", "/ipc/", "/init/", "/sound/", "/virt/"):
        at = path.find(marker)
        if at >= 0:
            return path[at + 1:]
    return path


def symbolize(findings: List[Finding], vmlinux: str) -> None:
    """Expand each finding's call_trace with source lines and inlined frames, in place.

    The first frame of a fatal report is the faulting instruction; the guilty
    function becomes its innermost inlined function (e.g. pfn_swap_entry_folio)
    and ``caller`` the function it was inlined into.
    """
    table = _symbol_table(vmlinux)
    for finding in findings:
        if not finding.call_trace:
            continue
        plan = [(i, _address(table, f, is_return=i > 0)) for i, f in enumerate(finding.call_trace)]
        wanted = [(i, a) for i, a in plan if a is not None]
        if not wanted:
            continue
        decoded = _addr2line(vmlinux, [a for _, a in wanted])
        expansion = dict(zip((i for i, _ in wanted), decoded))
        trace: List[Frame] = []
        for index, frame in enumerate(finding.call_trace):
            chain = expansion.get(index) or []
            for depth, (func, where) in enumerate(chain):
                last = depth == len(chain) - 1
                if last:
                    trace.append(Frame(func=frame.func, offset=frame.offset, size=frame.size,
                                       address=frame.address, source=where, module=frame.module,
                                       unreliable=frame.unreliable))
                else:
                    trace.append(Frame(func=func, source=where, inlined=True, unreliable=frame.unreliable))
            if not chain:
                trace.append(frame)
        _reblame(finding, trace)
        finding.call_trace = trace


def _reblame(finding: Finding, trace: List[Frame]) -> None:
    """Blame the inlined function that holds the BUG_ON, not the function it was inlined into."""
    chain = []
    for frame in trace:              # the faulting instruction's inline chain, innermost first
        chain.append(frame)
        if not frame.inlined:
            break
    if finding.file and len(chain) > 1 and finding.guilty_function == base_name(chain[-1].func):
        same_file = [f for f in chain[:-1] if f.source and f.source.rsplit(":", 1)[0] == finding.file]
        exact = [f for f in same_file if f.source == f"{finding.file}:{finding.line}"]
        holder = (exact or same_file[-1:] or [None])[0]
        if holder is not None:
            finding.caller = finding.guilty_function
            finding.guilty_function = holder.func
            finding.title = finding.title.replace(f" in {finding.caller}", f" in {holder.func}")
    finding.guilty_file = guilty_file(trace, finding.guilty_function, finding.file) or finding.guilty_file
