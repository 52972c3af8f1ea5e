"""Turn the lines of one report into a Finding: extent, fields, guilty frame, title."""

import re
from typing import Iterable, Iterator, List, Optional

from . import frames as fr
from .lines import Line
from .model import Finding, Frame
from .rules import BOOT_BANNER, PANIC_MSG_END, Rule, match_rule
from .signature import signature_of

MAX_REPORT_LINES = 800
MAX_QUIET_LINES = 12     # free-text lines with nothing report-like before we call the report over
MAX_QUIET_BEFORE_STACK = 60   # the same before the stack a report must have (other CPUs' chatter in between)
MAX_QUIET_IN_STACK = 8   # unknown lines inside a stack (another CPU's) if the stack goes on after them
MAX_FOREIGN_LINES = 60   # other tasks' lines (PRINTK_CALLER) in a row before we call the report over
MAX_STAMP_GAP = 5.0      # seconds: a line stamped this far from the report's last line is not its
# The mission's two crashes, each its own class (_refine_mm_class).
SWAPOPS_BUG = "swapops_bug"
SPLIT_HUGE_PAGE_BUG = "split_huge_page_bug"

# Lines that belong to a report even though they are not frames.
_BODY = re.compile(
    r"^\s*(?:RIP|EIP|RSP|ESP|RAX|RBX|RCX|RDX|RSI|RDI|RBP|R\d+|EAX|EBX|ECX|EDX|ESI|EDI|EBP|DS|ES|FS|GS|CS|SS|CR\d|DR\d|"
    r"Code|Call Trace|Call trace|Backtrace|Stack|stack backtrace|Modules linked in|CPU|Hardware name|Workqueue|task|"
    r"Pid|Process|pc|lr|sp|x\d+|PGD|P4D|PUD|PMD|#PF|Oops|IP|Kernel Offset|Dumping ftrace|page|head|flags|raw|"
    r"page_type|page dumped because|memcg|folio|anon|pfn|aops|mapping|index|vma|mm|prot|pgd|Allocated by|"
    r"Freed by|Last potentially|Second to last|The buggy address|Memory state|Read of size|Write of size|"
    r"Free of addr|irq event stamp|hardirqs|softirqs|other info|Possible unsafe|the existing dependency|"
    r"which lock|but task|[0-9]+ locks? held|no locks held|-> #\d|Chain exists|\*\*\*|lock\(|Showing|"
    r"rcu|NMI backtrace|Sending NMI|INFO|Tainted|\"echo 0|ORIG_RAX|EFLAGS|ffff[0-9a-f]{12}|[0-9a-f]{16}|"
    r"=+$|-+$|<TASK>|</TASK>|<IRQ>|</IRQ>|<NMI>|</NMI>|<EOI>|\(ftrace buffer empty\)|Kernel panic|"
    r"\? |\[<|\s*\(|caller is|in_atomic|preempt_count|RCU nest|Preemption disabled|list_|refcount_t|"
    r"ODEBUG|BUG|WARNING|kernel BUG|invalid opcode|general protection|KASAN|KFENCE|UBSAN|shift exponent|"
    r"index \d+ is out of range|load of value|signed integer|Object|Redzone|Padding|Bytes b4|"
    r"nr_|Mem-Info|active_anon|Node \d|lowmem|\[\s*pid|oom|Out of memory|Tasks state|Killed process)")
_FRAME_HINT = re.compile(r"\+0x[0-9a-f]+/0x[0-9a-f]+|\[inline\]")
END_OF_REPORT = re.compile(r"---\[ end (?:trace [0-9a-f]+|Kernel panic[^\]]*) \]---")
_DIE_LINE = re.compile(r"\[#\d+\]")
_STACK_START = re.compile(r"^\s*(?:Call Trace:|Call trace:|Backtrace:|stack backtrace:|Stack:|Allocated by task|"
                          r"Freed by task|Last potentially related|Second to last potentially|\S+ \d+ blocked|"
                          r"Allocated in|Freed in|backtrace \(crc|The buggy address|Memory state around|"
                          r"irq event stamp|other info that might help|the existing dependency chain|"
                          r"Showing all locks held|NMI backtrace for cpu|Sending NMI|Uninit was|Task dump for CPU)")
# Sections whose lines are frames (a stack), unlike KASAN's or lockdep's free-text sections.
_FRAMES_FOLLOW = re.compile(r"^\s*(?:Call Trace:|Call trace:|Backtrace:|stack backtrace:|Stack:|Allocated by task|"
                            r"Freed by task|Last potentially related|Second to last potentially|Allocated in|"
                            r"Freed in|backtrace \(crc|NMI backtrace for cpu|Task dump for CPU|Uninit was)")
# Lines of a stack or register dump, and the lines a dump may end with.
_STACK_BODY = re.compile(
    r"^\s*(?:(?:RIP|EIP|RSP|ESP|RAX|RBX|RCX|RDX|RSI|RDI|RBP|R\d+|EAX|EBX|ECX|EDX|ESI|EDI|EBP|DS|ES|FS|GS|CS|SS|"
    r"CR\d|DR\d|PKRU|ORIG_RAX|EFLAGS|pc|lr|sp|fp|x\d+|r\d+|psr|pstate|ip|Flags|Control)\s*:|"
    r"Register r\d+ information|Process \S+ \(pid:|"
    r"(?:RIP|EIP|PC is at|LR is at)\s|Code:|Modules linked in|Kernel Offset|CPU: \d+ (?:UID: \d+ )?PID|"
    r"Hardware name:|Workqueue:|Call Trace|Call trace|<TASK>|</TASK>|<IRQ>|</IRQ>|<NMI>|</NMI>|<EOI>|"
    r"\? |\[<|Dumping ftrace|\(ftrace buffer empty\)|Kernel panic|Rebooting in|Shutting down cpus|"
    r"(?:hard|soft)irqs last|irq event stamp|Sending NMI|NMI backtrace|Disabling lock debugging|"
    r"INFO: lockdep is turned off|=+$|-+$|\*\*\*|RSP <|Stack:|Pid: \d+, comm:|Process |task: [0-9a-f]|"
    r"\[\s*[0-9a-f]{8,16}\]|[0-9a-f]{8,16}(?: [0-9a-f]{8,16})+\s*$|[0-9a-f]{3,4}:(?:\s+[0-9a-f]{8})+\s*$)")
_RULE_LINE = re.compile(r"^\s*=+\s*$")
_CALL_TRACE = re.compile(r"^\s*(?:Call Trace:|Call trace:|Backtrace:|stack backtrace:)")
_IRQ_STAMP = re.compile(r"^\s*(?:hard|soft)irqs last\s+(?:en|dis)abled at")
_IRQ_END = re.compile(r"^\s*(?:</IRQ>|<EOI>|</NMI>)")
_CPU_LINE = re.compile(
    r"CPU: (?P<cpu>\d+) (?:UID: \d+ )?PID: (?P<pid>\d+) Comm: (?P<comm>.+?) "
    r"(?:Not tainted|Tainted: (?P<taint>[A-Z](?:[A-Z ]*[A-Z])?)) +(?:-+ +)?(?P<version>\d\S*)")
_OLD_PID_LINE = re.compile(r"^Pid: (?P<pid>\d+), comm: (?P<comm>.+?) "
                           r"(?:Not tainted|Tainted: (?P<taint>[A-Z](?:[A-Z ]*[A-Z])?))"
                           r" +(?:-+ +)?(?P<version>\d\S*)")
_OLD_CPU_LINE = re.compile(r"^CPU (?P<cpu>\d+) ?$")
_ACCESS = re.compile(r"\b(?P<access>Read|Write) (?:of size|at addr)")
_LOCK_AT = re.compile(r"(?:, at:|^\s*at:|acquire(?:d)? at:)\s*(?:\[<[0-9a-f]+>\]\s*)?(?P<func>[\w.$]+)\+0x[0-9a-f]+|"
                      r"^\s*last function: (?P<work>[\w.$]+)")
_LOCK_AT_NEXT = re.compile(r"\bat:$")
# Lines printed just before the first line of some reports and belonging to them.
_PRELUDE = re.compile(
    r"^(?:-+\[ cut here \]-+|page:|head:|flags:|raw:|page_type:|page dumped because|memcg:|folio:|anon flags|"
    r"pfn:|aops|mapping:|index:|vma [0-9a-f]+|mm [0-9a-f]+|prot |pgd |flags: |file:|start_code|ino:|"
    r"refcount_t:|ODEBUG:|list_(?:add|del)|DEBUG_LOCKS_WARN_ON|\s+)")
_SPLIT_FRAME = re.compile(r"^_*(?:split_huge_page\w*|split_folio\w*|folio_split\w*|split_huge_pmd\w*|"
                          r"split_page_folio\w*|__split_\w+|deferred_split\w*)$")
_PANIC_LINE = re.compile(r"Kernel panic - not syncing: ?(?P<msg>.*)")


class _Fields(dict):
    """Template fields; an optional group that did not match reads as empty."""

    def __missing__(self, key):
        return ""


def _is_body(text: str) -> bool:
    return bool(_FRAME_HINT.search(text) or _BODY.match(text))


def _belongs_to(rule: Rule, other: Rule, lines: List[Line], state: dict) -> bool:
    """Whether a line starting ``other`` report is still part of the ``rule`` report."""
    early = len(lines)
    if other.interleaves:
        return True
    # The die() line ("... [#1]") of an oops announced by the line(s) before it.
    if (rule.fatal or rule.absorbs_die_line) and other.is_oops and not state["seen_die"] and early < 40:
        return True
    if any(other.name == note and early < within for note, within in rule.absorbs_notes):
        return True
    # panic_on_warn & co: panic() prints the stack of the report it ends.
    if other.ends_previous_report and not state["own_stack"] and not rule.ends_previous_report:
        return True
    # Sanitizers print one line per inlined frame of the bad access; other
    # reports repeat their header line (per CPU, per chain) within their repeat_window.
    return other is rule and (early < 8 and state["previous_same"] or early < rule.repeat_window)


class _Extent:
    """Walks the lines after a report's first line and decides where the report ends.

    A report is a header part (free text: the message, task and lock lines), then
    stacks (frames, registers, IRQ markers) and sections between them (KASAN's
    object and shadow dumps, lockdep's chains).  It ends at the kernel's own end
    marker, at a line that starts another report or boot, or at the first run of
    lines that cannot be its: within a stack one unknown line ends it (a few are
    tolerated when the stack goes on right after them: another CPU's line), in the
    free-text parts a longer run; a line stamped far from the report's time, or a
    line without a stamp in a stamped report (user space writing to the console),
    is never the report's.  Trailing lines that are not the report's are dropped.
    """

    def __init__(self, start: Line, rule: Rule):
        self.rule = rule
        self.lines = [start]
        self.last_body = 0
        self.quiet = 0            # unknown lines since the last line of the report
        self.foreign = 0          # other tasks' lines since the last line of the report
        self.phase = "head"       # "head", "stack" or "section"
        self.frames = 0           # frames (or register lines) seen since the phase began
        self.stamped = start.time is not None
        self.last_time = start.time
        self.own_task = start.ctx if start.ctx and start.ctx[0] == "T" else None
        self.state = {"seen_die": bool(_DIE_LINE.search(start.text)), "own_stack": False,
                      "previous_same": True}

    def feed(self, line: Line) -> bool:
        """Take the next line; False when the report ended before it."""
        text = line.text
        if self.own_task and line.ctx and line.ctx != self.own_task:
            # Another task's line interleaved (PRINTK_CALLER tells): it neither
            # ends this report nor counts as its body (_stacks filters it too).
            self.foreign += 1
            self.lines.append(line)
            return self.foreign <= MAX_FOREIGN_LINES
        if END_OF_REPORT.search(text):
            self._body(line)
            return False
        if BOOT_BANNER.match(text):
            return False        # the machine rebooted: whatever came before is over
        found = match_rule(text)     # None for the many lines without an anchor
        if found:
            other = found[0]
            if not _belongs_to(self.rule, other, self.lines, self.state):
                self._drop_next_reports_banner()
                return False
            self.state["previous_same"] = other is self.rule
            self.state["seen_die"] = self.state["seen_die"] or bool(_DIE_LINE.search(text))
            self._body(line)
            return True
        if self.stamped and line.time is None and text.strip():
            # User space writing to the console (syzkaller's programs, a shell): not
            # the report's, but the kernel may go on with the report after it.
            self.foreign += 1
            self.lines.append(line)
            return self.foreign <= MAX_FOREIGN_LINES
        if self.stamped and line.time is not None and abs(line.time - self.last_time) > MAX_STAMP_GAP \
                and not (_FRAME_HINT.search(text) or _STACK_BODY.match(text)):
            return False        # a message of another moment
        section = _STACK_START.match(text)
        if section:
            self.phase = "stack" if _FRAMES_FOLLOW.match(text) else "section"
            self.frames = 0
            if _CALL_TRACE.match(text):
                self.state["own_stack"] = True    # a panic after the report's own stack is its aftermath
            self._body(line)
            return True
        if _STACK_BODY.match(text):
            self.frames += 1
            self._body(line)
            return True
        if _FRAME_HINT.search(text):
            if self.phase == "head":
                self.phase = "stack"     # frames without a header (old kernels)
            self.frames += 1
            self._body(line)
            return True
        if self.phase != "stack" and _BODY.match(text):
            self._body(line)
            return True
        return self._unknown(line)

    def _drop_next_reports_banner(self) -> None:
        """A blank line and a row of "=" just before the next report are that report's (lockdep's, KASAN's)."""
        kept = self.lines[:self.last_body + 1]
        if len(kept) > 2 and _RULE_LINE.match(kept[-1].text) and not kept[-2].text.strip():
            self.last_body -= 2

    def _body(self, line: Line) -> None:
        self.lines.append(line)
        self.last_body = len(self.lines) - 1
        self.quiet = self.foreign = 0
        if line.time is not None:
            self.last_time = line.time

    def _unknown(self, line: Line) -> bool:
        self.lines.append(line)
        self.quiet += 1
        if self.phase == "stack" and self.frames:
            return self.quiet <= MAX_QUIET_IN_STACK
        if self.phase == "stack" or self.phase == "head" and self.rule.guilty != "none":
            return self.quiet <= MAX_QUIET_BEFORE_STACK
        return self.quiet <= MAX_QUIET_LINES

    def report(self) -> List[Line]:
        return self.lines[:self.last_body + 1]


def extent(following: Iterator[Line], start: Line, rule: Rule) -> List[Line]:
    """Lines of the report beginning at ``start``; stops before the next report or boot."""
    walk = _Extent(start, rule)
    for line in following:
        if not walk.feed(line) or len(walk.lines) >= MAX_REPORT_LINES:
            break
    return walk.report()


def prelude(lines_back: Iterable[Line], rule: Rule) -> List[Line]:
    """Lines just before the report's first line that belong to it (cut here, page dumps).

    ``lines_back`` gives the lines before it nearest first; only those up to the
    first that is not the report's are taken from it.
    """
    if not rule.has_prelude:
        return []
    taken: List[Line] = []
    for line in lines_back:
        if not line.text.strip() or not _PRELUDE.match(line.text):
            break
        taken.append(line)
    taken.reverse()
    while taken and not taken[0].text.strip():
        taken.pop(0)
    return taken


def _stacks(lines: List[Line], start_ctx: Optional[str]):
    """Split the report's frames into stacks; also note where an interrupt stack ended."""
    stacks: List[List[Frame]] = [[]]
    headed = set()   # stacks under a "Call Trace:" header (others: stray address lines)
    irq_end = {}  # stack index -> number of frames before the </IRQ> marker
    rip = None
    rip_stack = None  # index of the stack printed after the RIP line
    for line in lines:
        text = line.text
        if start_ctx and line.ctx and line.ctx != start_ctx and start_ctx[0] == "T":
            continue  # another task's line interleaved into ours
        if rip is None:
            frame_rip = fr.parse_rip(text) if ("IP" in text or "pc" in text or "PC" in text) else None
            if frame_rip:
                rip = frame_rip
                rip_stack = len(stacks) - 1 if not stacks[-1] else len(stacks)
                continue
        if _STACK_START.match(text):
            if stacks[-1]:
                stacks.append([])
            if _CALL_TRACE.match(text):
                headed.add(len(stacks) - 1)
            continue
        if _IRQ_END.match(text):
            irq_end[len(stacks) - 1] = len(stacks[-1])
            continue
        if _IRQ_STAMP.match(text):
            continue    # where irqs were last toggled: not a call chain
        frame = fr.parse_frame(text)
        if frame:
            stacks[-1].append(frame)
    real = [s for s in stacks if s]
    primary = next((s for i, s in enumerate(stacks) if s and i in headed), real[0] if real else [])
    return [primary] + [s for s in real if s is not primary], rip, irq_end, stacks, rip_stack


def build_finding(rule: Rule, match: "re.Match", lines: List[Line], first: Line) -> Optional[Finding]:
    """Fill a Finding from the report's lines; ``first`` is the line the rule matched."""
    groups = {k: v for k, v in match.groupdict().items() if v is not None}
    texts = [line.text for line in lines]
    finding = Finding(cls=rule.cls, type=rule.type, title=rule.title, informational=rule.informational)
    if "file" in groups:
        finding.file = groups["file"][2:] if groups["file"].startswith("./") else groups["file"]
        finding.line = int(groups["line"])
    for text in texts:
        m = _CPU_LINE.search(text) or _OLD_PID_LINE.search(text)
        if m:
            finding.cpu = int(m.group("cpu")) if "cpu" in m.groupdict() else None
            finding.pid = int(m.group("pid"))
            finding.comm = m.group("comm").strip()
            finding.taint = " ".join((m.group("taint") or "").split()) or None
            finding.kernel_version = m.group("version")
            break
    if finding.cpu is None:
        finding.cpu = next((int(m.group("cpu")) for m in map(_OLD_CPU_LINE.match, texts) if m), None)
    if "pid" in groups:
        if finding.pid is None:
            finding.pid, finding.comm = int(groups["pid"]), groups.get("comm")
    elif "comm" in groups and not finding.comm:     # the line names the task, not its pid (OOM killer)
        finding.comm = groups["comm"]

    real_stacks, rip, irq_end, all_stacks, rip_stack = _stacks(lines, first.ctx)
    primary = real_stacks[0]
    if rule.guilty == "access":   # sanitizers print the access's inline chain, one line each
        primary = _access_chain(rule, lines) + primary
    if rule.needs_stack and not primary:
        return None
    if rule.offender_stack_last and len(real_stacks) > 1:
        primary = real_stacks[-1]
    finding.call_trace = ([rip] if rip else []) + primary

    guilty = _choose_guilty(rule, groups, texts, rip, primary, all_stacks, irq_end, rip_stack)
    corrupted = False
    if guilty is None and "{func}" in rule.title:
        corrupted = True
        func_name = "corrupted"
    else:
        func_name = fr.base_name(guilty.func) if guilty else ""
        if rule.guilty == "stall":
            func_name = fr.syscall_name(func_name)
    finding.guilty_function = func_name if guilty else None
    if guilty is not None:
        finding.caller = fr.caller_of(finding.call_trace, guilty) if guilty.inlined else None
        if guilty is rip and (finding.file or "").endswith(".h"):
            # BUG_ON in a header: an inlined helper. RIP names either the real
            # function that inlined it (symbolize() can name the helper itself)
            # or, when the compiler kept the helper out of line, the helper:
            # then the caller is the next real frame (copy_page_range in fork).
            if fr.is_header_helper(func_name):
                finding.caller = fr.caller_of(finding.call_trace, guilty) or func_name
            else:
                finding.caller = func_name
    if rule.guilty == "stall":   # blame the code that spun, not the entry point named in the title
        stack = next((st for st in all_stacks if any(f is guilty for f in st)), finding.call_trace)
        stack = fr.interrupted_part(stack) or ([rip] if rip and stack is primary else []) + stack
        spinning = fr.first_culprit(stack)
        finding.guilty_file = fr.guilty_file(stack, fr.base_name(spinning.func) if spinning else None)
    else:
        finding.guilty_file = fr.guilty_file(finding.call_trace, finding.guilty_function, finding.file)

    title = rule.title
    for checker in rule.file_titles:
        if not checker.file.search(finding.file or "") or \
                checker.named_func and not checker.named_func.match(groups.get("func") or ""):
            continue
        title = checker.title
        finding.cls = checker.cls or finding.cls
        if checker.blame_caller:
            culprit = fr.first_culprit(primary)
            func_name = fr.base_name(culprit.func) if culprit else func_name
            if rule.guilty == "warn":   # the guilty function was the checker the WARNING line names
                finding.guilty_function = func_name
    fields = dict(groups)
    fields["func"] = func_name
    fields["preemptible"] = " in preemptible code" if groups.get("preemptible") else ""
    if "{access}" in title:      # (a search of every line: only for the titles that say it)
        fields["access"] = next((m.group("access") for m in map(_ACCESS.search, texts) if m), "")
    if rule.title_fields:
        rule.title_fields(fields, primary)
    for text in texts[1:]:
        panic = _PANIC_LINE.search(text)
        if panic:   # absorbed panic_on_warn-style panic: record it as what followed
            finding.aftermath.append("kernel panic: " + (PANIC_MSG_END.sub("", panic.group("msg")).strip()))
            break
    finding.title = re.sub(r"\s{2,}", " ", title.format_map(_Fields(fields))).strip()
    finding.corrupted = corrupted or not (primary or rip) and rule.guilty != "none"
    _refine_mm_class(finding, rule, rip, primary, texts)
    finding.signature = signature_of(finding)
    return finding


_ACCESS_AT = re.compile(r" in (?P<func>[\w.$]+)(?:\+0x[0-9a-f]+/0x[0-9a-f]+)?(?: (?P<src>[\w./+-]+:\d+))?")


def _access_chain(rule: Rule, lines: List[Line]) -> List[Frame]:
    chain = []
    for line in lines[:10]:
        if rule.pattern.search(line.text):
            m = _ACCESS_AT.search(line.text)
            if m:
                chain.append(Frame(func=m.group("func"), source=m.group("src"),
                                   inlined="[inline]" in line.text))
    return chain


def _choose_guilty(rule, groups, texts, rip, primary, all_stacks, irq_end, rip_stack=None) -> Optional[Frame]:
    named = groups.get("func")
    if rule.guilty == "warn" and named and not fr.is_helper(named):
        return Frame(func=named)
    if rule.guilty == "access":
        return fr.first_culprit(primary) or (Frame(func=named) if named else None)
    if rule.guilty == "lock":
        for index, text in enumerate(texts):
            m = _LOCK_AT.search(text)
            if not m and _LOCK_AT_NEXT.search(text) and index + 1 < len(texts):
                m = _LOCK_AT.search(" at: " + texts[index + 1].strip())
            if m and m.group("work"):
                return Frame(func=m.group("work"))
            if m and not fr.is_helper(m.group("func")):
                return Frame(func=m.group("func"))
        return fr.first_culprit(primary) or fr.first_culprit(f for s in all_stacks for f in s)
    if rule.guilty in ("rip", "warn"):
        if rip and not fr.is_helper(rip.func):
            return rip
        return fr.first_culprit(primary)
    if rule.guilty == "stall":
        # The report's own stack first, then any other printed with it.
        ordered = sorted(range(len(all_stacks)), key=lambda i: all_stacks[i] is not primary)
        for index in ordered:
            stack = all_stacks[index]
            stuck = fr.interrupted_part(stack) or (stack[irq_end[index]:] if index in irq_end else stack)
            culprit = fr.stall_culprit(stuck)
            if culprit:
                return culprit
        if rip and not fr.is_helper(rip.func):
            return rip
        # No frame is reliable anywhere (the "guess" unwinder prints every one
        # as "? "): the stack printed with the stuck CPU's registers is still
        # the best evidence of where it spins, nearest the top.
        if rip_stack is not None and rip_stack < len(all_stacks) and \
                not any(not f.unreliable for stack in all_stacks for f in stack):
            return next((f for f in all_stacks[rip_stack] if not fr.is_helper(f.func)
                         and not fr.is_helper_file(f.source)), None)
        return None
    if rule.guilty in ("trace", "access"):
        return fr.first_culprit(primary) or (rip if rip and not fr.is_helper(rip.func) else None)
    return None


def _refine_mm_class(finding: Finding, rule: Rule, rip, primary, texts) -> None:
    """The mission's two crashes get their own classes."""
    if not rule.is_oops:
        return
    path = finding.file or ""
    if path.endswith("include/linux/swapops.h"):
        finding.cls = SWAPOPS_BUG
        return
    frames = ([rip] if rip else []) + [f for f in primary if not f.unreliable]
    in_split = any(_SPLIT_FRAME.match(fr.base_name(f.func)) for f in frames[:12])
    if in_split and (path.endswith("mm/huge_memory.c") or rule.bug_on
                     or any("page dumped because" in t for t in texts)):
        finding.cls = SPLIT_HUGE_PAGE_BUG
