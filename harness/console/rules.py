"""Which console line starts which kind of report, and how to title it.

Each rule matches the first line of a report (after lines.clean()) and
carries what the prefilter and reports.py need: its anchors, which lines
around it are the report's, and how to title it.  The title is a template;
"{func}" is filled with the guilty function chosen by the rule's ``guilty``
strategy:
  rip     the faulting instruction's function, else the first culprit frame
  warn    the function named in the WARNING line, else as rip
  access  the function named in the sanitizer line, else the first culprit
  trace   the first culprit frame of the first stack
  stall   the first culprit frame interrupted by the watchdog (after </IRQ>); when
          no frame is reliable (guess unwinder), the first "? " culprit after RIP
  lock    the lock acquisition site printed by lockdep (", at: func")
  none    the title has no function
"""

import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Dict, FrozenSet, List, Optional, Tuple

from . import frames as fr
from .model import Frame


@dataclass(frozen=True)
class FileTitle:
    """A report raised in a generic checker's file is titled after the checker (syzkaller's convention)."""

    file: "re.Pattern"                       # searched in the report's file
    title: str
    cls: Optional[str] = None                # the checker's class, instead of the rule's
    blame_caller: bool = False               # {func} is the checker's caller: the first culprit frame
    named_func: Optional["re.Pattern"] = None    # only if the report line names a function matching this


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: "re.Pattern"
    # Plain substrings, one of which every line the pattern matches contains:
    # the prefilter (prefilter.ANCHORS) looks for nothing else.
    anchors: Tuple[str, ...]
    cls: str
    type: str
    title: str                       # str.format template over match groups + func
    guilty: str = "trace"
    fatal: bool = False              # an oops (or panic): what follows in this boot is its aftermath
    informational: bool = False
    # Which lines are the report's (reports.prelude, reports.extent, boots.group):
    has_prelude: bool = False        # lines just before its first line ("cut here", a page dump) are its own
    interleaves: bool = False        # a one-line note repeated every few seconds: never ends the report it lands in
    ends_previous_report: bool = False   # panic(): the end of the report before it (its aftermath), if any
    absorbs_die_line: bool = False   # not fatal, but the oops right after it is its own (fatal rules: always)
    absorbs_notes: Tuple[Tuple[str, int], ...] = ()   # (rule name, lines): that rule's line this early is a note in it
    repeat_window: int = 0           # its own header this many lines in is still this report (per CPU, per chain)
    # What the report says (reports.build_finding):
    needs_stack: bool = False        # without a stack it is no report (a driver's message, not a WARN())
    offender_stack_last: bool = False    # of several stacks, the last is the offending task's
    bug_on: bool = False             # BUG_ON()'s own report: with a split frame, it is the split crash
    file_titles: Tuple[FileTitle, ...] = ()
    title_fields: Optional[Callable[[Dict[str, str], List[Frame]], None]] = None   # rewrites fields in place

    def __post_init__(self):
        # An empty anchor would match every line; a bare string would make each letter an anchor.
        if not isinstance(self.anchors, tuple) or not self.anchors or not all(
                isinstance(anchor, str) and anchor for anchor in self.anchors):
            raise ValueError(f"rule {self.name}: anchors must be a non-empty tuple of substrings, "
                             f"not {self.anchors!r}")

    @property
    def is_oops(self) -> bool:
        """A fatal report announced by die() or BUG(), not a panic."""
        return self.fatal and not self.ends_previous_report


def _r(pattern: str) -> "re.Pattern":
    return re.compile(pattern)


ANY_DISTANCE = sys.maxsize     # a repeat_window no report outgrows

# WARNINGs raised by generic checkers get the checker's name.
_CHECKER_WARNINGS = (
    FileTitle(_r(r"(?:^|/)lib/refcount\.c$"), "WARNING: refcount bug in {func}", blame_caller=True),
    FileTitle(_r(r"(?:^|/)lib/debugobjects\.c$"), "WARNING: ODEBUG bug in {func}", blame_caller=True),
    FileTitle(_r(r"(?:^|/)kernel/locking/lockdep\.c$"), "WARNING: locking bug in {func}", blame_caller=True),
    FileTitle(_r(r"(?:^|/)lib/list_debug\.c$"), "BUG: corrupted list in {func}", blame_caller=True),
    FileTitle(_r(r"(?:^|/)mm/(?:slab_common|util)\.c$"), "WARNING: kmalloc bug in {func}", blame_caller=True,
              named_func=_r(r"kv?malloc")),
    FileTitle(_r(r"(?:^|/)mm/usercopy\.c$"), "WARNING: bad usercopy in {func}", blame_caller=True),
    FileTitle(_r(r"(?:^|/)fs/proc/generic\.c$"), "WARNING: proc registration bug in {func}", blame_caller=True),
    FileTitle(_r(r"(?:^|/)lib/kobject\.c$"), "WARNING: kobject bug in {func}", blame_caller=True),
    FileTitle(_r(r"(?:^|/)mm/vmalloc\.c$"), "WARNING: zero-size vmalloc in {func}", blame_caller=True),
)
# BUGs raised by generic checkers, likewise.  (usercopy_abort() prints a "usercopy: Kernel
# memory ... attempt" line before its BUG(): that BUG, which names the file, is the report.)
_CHECKER_BUGS = (
    FileTitle(_r(r"mm/usercopy\.c$"), "BUG: bad usercopy in {func}"),
    FileTitle(_r(r"lib/list_debug\.c$"), "BUG: corrupted list in {func}", cls="list_corruption", blame_caller=True),
)


def _kasan_kind(fields: Dict[str, str], stack: List[Frame]) -> None:
    """A bad free that is not a use-after-free is an invalid-free (syzkaller's title)."""
    if "free" in fields["kind"] and "after" not in fields["kind"]:
        fields["kind"] = "invalid-free"


_STACK_PROTECTOR = re.compile(r"stack-protector: Kernel stack is corrupted in: (?P<func>[\w.$]+)\+0x")
# What may follow a panic's message proper.
PANIC_MSG_END = re.compile(r"(?: \.\.\.| exitcode=| - not syncing|\s+$).*$")


def _panic_message(fields: Dict[str, str], stack: List[Frame]) -> None:
    """Panic titles name the culprit where the message has one (syzkaller's forms)."""
    msg = fields.get("msg", "")
    m = _STACK_PROTECTOR.search(msg)
    if m:
        fields["msg"] = f"stack is corrupted in {fr.base_name(m.group('func'))}"
    elif msg.startswith("corrupted stack end detected inside scheduler"):
        culprit = fr.stall_culprit(stack)
        fields["msg"] = "corrupted stack end in " + (fr.syscall_name(fr.base_name(culprit.func)) if culprit
                                                     else "corrupted")
    else:   # numbers in a panic message vary from run to run (syzkaller writes NUM)
        fields["msg"] = re.sub(r"\d+", "NUM", PANIC_MSG_END.sub("", msg).strip()) or "unknown"


# Anchors as specific as the lines they find allow: a driver's "INFO:" or a
# user-space "DEBUG:" line is then no hit for the prefilter (and costs nothing).
_LOCK_CHAIN_ANCHORS = ("possible circular locking", "possible recursive locking", "possible irq lock inversion",
                       "possible deadlock", "WARNING: SOFTIRQ-", "WARNING: HARDIRQ-")
_LOCKDEP_MISC_ANCHORS = ("suspicious RCU usage", "still has locks held", "trying to register non-static key",
                         "lock held at task exit time", "bad contention detected")

# Order matters: the first matching rule wins.
RULES: List[Rule] = [
    Rule("kernel_bug", _r(r"(?:^|: )(?:kernel BUG|BUG) at (?P<file>[\w./+-]+\.\w+):(?P<line>\d+)!?"), ("BUG at ",),
         "bug", "BUG", "kernel BUG in {func}", "rip", fatal=True,
         has_prelude=True, repeat_window=3, bug_on=True, file_titles=_CHECKER_BUGS),
    Rule("kernel_bug_noinfo", _r(r"^[Kk]ernel BUG at [0-9a-f]+ "), ("ernel BUG at ",),
         "bug", "BUG", "kernel BUG in {func}", "rip", fatal=True, has_prelude=True),
    # KASAN's report often ends in the oops of the bad access (a GPF).
    Rule("kasan", _r(r"BUG: KASAN: (?P<kind>[\w-]+(?: or [\w-]+)?) (?:in|on address|on) (?P<func>[\w.$]+)?"),
         ("BUG: KASAN: ",),
         "kasan", "MEMORY_SAFETY_BUG", "KASAN: {kind} {access} in {func}", "access",
         absorbs_die_line=True, title_fields=_kasan_kind),
    Rule("kfence", _r(r"BUG: KFENCE: (?P<kind>[\w -]+?) in (?P<func>[\w.$]+)"), ("BUG: KFENCE: ",),
         "kfence", "MEMORY_SAFETY_BUG", "KFENCE: {kind} in {func}", "access"),
    Rule("kmsan", _r(r"BUG: KMSAN: (?P<kind>[\w -]+?) in (?P<func>[\w.$]+)"), ("BUG: KMSAN: ",),
         "kmsan", "MEMORY_SAFETY_BUG", "KMSAN: {kind} in {func}", "access"),
    Rule("kcsan", _r(r"BUG: KCSAN: (?P<kind>[\w :-]+?) in (?P<funcs>[\w.$]+ / [\w.$]+|[\w.$]+)"), ("BUG: KCSAN: ",),
         "kcsan", "DATARACE", "KCSAN: {kind} in {funcs}", "none"),
    Rule("ubsan", _r(r"UBSAN: (?P<kind>[\w-]+) in (?P<file>[\w./+-]+):(?P<line>\d+)"), ("UBSAN",),
         "ubsan", "UBSAN", "UBSAN: {kind} in {func}", "trace"),
    Rule("ubsan_old", _r(r"UBSAN: Undefined behaviour in (?P<file>[\w./+-]+):(?P<line>\d+)"), ("UBSAN",),
         "ubsan", "UBSAN", "UBSAN: undefined-behaviour in {func}", "trace"),
    Rule("null_deref", _r(r"BUG: (?:unable to handle kernel NULL pointer dereference|kernel NULL pointer dereference)"),
         ("NULL pointer dereference",), "page_fault", "NULL-POINTER-DEREFERENCE",
         "BUG: unable to handle kernel NULL pointer dereference in {func}", "rip", fatal=True),
    Rule("paging_request", _r(r"BUG: unable to handle (?:kernel paging request|page fault for address)|"
                              r"BUG: Unable to handle kernel (?:data access|instruction fetch)"),
         ("BUG: unable to handle", "BUG: Unable to handle"),
         "page_fault", "BUG", "BUG: unable to handle kernel paging request in {func}", "rip", fatal=True),
    Rule("arm_fault", _r(r"(?:^|: |\s)Unable to handle kernel (?P<what>NULL pointer dereference|paging request|"
                         r"access to user memory)\b"), ("Unable to handle",),
         "page_fault", "BUG", "BUG: unable to handle kernel {what} in {func}", "rip", fatal=True),
    Rule("user_access", _r(r"BUG: unable to handle kernel (?P<what>access to user memory|[\w ]+?)(?: at| in|,|$)"),
         ("BUG: unable to handle kernel ",),
         "page_fault", "BUG", "BUG: unable to handle kernel {what} in {func}", "rip", fatal=True),
    # The die line only: user space's "traps: ... general protection fault ip:..." is no kernel report.
    Rule("gpf", _r(r"general protection fault.*\[#"), ("[#",),
         "gpf", "BUG", "general protection fault in {func}", "rip", fatal=True,
         absorbs_notes=(("kasan", 10),)),    # KASAN's "null-ptr-deref in range" note
    Rule("invalid_opcode", _r(r"^(?:Oops: )?invalid opcode: [0-9a-f]+ \[#\d+\]"), ("[#",),
         "oops", "BUG", "invalid opcode in {func}", "rip", fatal=True, has_prelude=True, bug_on=True),
    Rule("divide_error", _r(r"^(?:Oops: )?divide[ _]error: [0-9a-f]+ \[#\d+\]"), ("[#",),
         "oops", "BUG", "divide error in {func}", "rip", fatal=True),
    Rule("stack_segment", _r(r"^(?:Oops: )?stack segment: [0-9a-f]+ \[#\d+\]"), ("[#",),
         "oops", "BUG", "stack segment fault in {func}", "rip", fatal=True),
    Rule("double_fault", _r(r"^PANIC: double fault"), ("PANIC: ",),
         "oops", "BUG", "PANIC: double fault in {func}", "rip", fatal=True),
    Rule("arm_unhandled", _r(r"^Unhandled fault: "), ("Unhandled fault",),
         "oops", "BUG", "Unhandled fault in {func}", "rip", fatal=True),
    Rule("internal_error", _r(r"^Internal error: .*\[#\d+\]"), ("[#",),
         "oops", "BUG", "Internal error in {func}", "rip", fatal=True),
    Rule("oops", _r(r"^Oops(?: - [\w ]+)?: [0-9a-f]+ \[#\d+\]"), ("[#",),
         "oops", "BUG", "Oops in {func}", "rip", fatal=True),
    Rule("bad_page_state", _r(r"BUG: Bad page state in process"), ("BUG: Bad page state",),
         "bad_page", "BUG", "BUG: Bad page state in {func}", "trace", has_prelude=True),
    Rule("bad_page_map", _r(r"BUG: Bad page map"), ("BUG: Bad page map",),
         "bad_page", "BUG", "BUG: Bad page map", "trace", has_prelude=True),
    Rule("bad_rss", _r(r"BUG: Bad rss-counter state"), ("BUG: Bad rss-counter",),
         "bad_page", "BUG", "BUG: Bad rss-counter state", "none"),
    # list_debug's message, then the BUG() it raises.
    Rule("list_corruption", _r(r"(?:^|: )list_(?:add|del)(?: corruption|_\w+ corruption| double add)|"
                               r"^list_del corruption"), ("corruption", "double add"),
         "list_corruption", "BUG", "BUG: corrupted list in {func}", "trace", absorbs_die_line=True),
    Rule("soft_lockup", _r(r"BUG: soft lockup - CPU#\d+ stuck"), ("BUG: soft lockup",),
         "lockup", "HANG", "BUG: soft lockup in {func}", "stall"),
    Rule("hard_lockup", _r(r"Watchdog detected hard LOCKUP on cpu"), ("LOCKUP",),
         "lockup", "HANG", "BUG: hard lockup in {func}", "stall"),
    Rule("spinlock_lockup", _r(r"BUG: spinlock lockup suspected"), ("BUG: spinlock lockup",),
         "lockup", "HANG", "BUG: spinlock lockup suspected in {func}", "trace"),
    Rule("workqueue_lockup", _r(r"BUG: workqueue lockup"), ("BUG: workqueue lockup",),
         "lockup", "HANG", "BUG: workqueue lockup", "none"),
    # One header per stalled CPU.
    Rule("rcu_stall", _r(r"INFO: rcu_?\w* (?:self-)?detected stalls?\b|INFO: rcu_\w+ detected expedited stalls"),
         ("INFO: rcu",), "rcu_stall", "HANG", "INFO: rcu detected stall in {func}", "stall", repeat_window=40),
    Rule("hung_task", _r(r"INFO: task (?P<comm>.+?):(?P<pid>\d+) blocked (?:in I/O wait )?for more than \d+ seconds"),
         ("INFO: task ",), "hung_task", "HANG", "INFO: task hung in {func}", "trace"),
    Rule("task_cant_die", _r(r"INFO: task (?P<comm>.+?):(?P<pid>\d+) can't die"), ("INFO: task ",),
         "hung_task", "HANG", "INFO: task can't die in {func}", "trace"),
    # One header per dependency chain; the offending task's stack comes last.
    Rule("circular_locking", _r(r"(?:WARNING|INFO): possible (?:circular locking dependency|recursive locking) "
                                r"detected|"
                                r"(?:WARNING|INFO): possible irq lock inversion dependency detected|"
                                r"possible deadlock|WARNING: (?:SOFTIRQ|HARDIRQ)-(?:safe|READ-safe)"),
         _LOCK_CHAIN_ANCHORS,
         "lockdep", "LOCKDEP", "possible deadlock in {func}", "lock",
         repeat_window=40, offender_stack_last=True),
    Rule("inconsistent_lock", _r(r"(?:WARNING|INFO): inconsistent lock state|^inconsistent lock state"),
         ("inconsistent lock state",), "lockdep", "LOCKDEP", "inconsistent lock state in {func}", "lock"),
    Rule("lock_balance", _r(r"(?P<level>WARNING|BUG): (?P<what>bad unlock balance|held lock freed|"
                            r"nested lock was not taken)"),
         ("bad unlock balance", "held lock freed", "nested lock was not taken"),
         "lockdep", "LOCKDEP", "{level}: {what} in {func}", "lock"),
    Rule("locks_held", _r(r"(?P<level>WARNING|BUG): \S+ (?P<what>still has locks held)!"), ("still has locks held",),
         "lockdep", "LOCKDEP", "{level}: {what} in {func}", "lock"),
    Rule("locks_to_user", _r(r"(?P<level>WARNING|BUG): (?P<what>lock held when returning to user space|"
                             r"workqueue leaked lock or atomic)"),
         ("lock held when returning to user space", "workqueue leaked lock or atomic"),
         "lockdep", "LOCKDEP", "{level}: {what} in {func}", "lock"),
    Rule("wait_context", _r(r"BUG: Invalid wait context"), ("BUG: Invalid wait context",),
         "lockdep", "LOCKDEP", "WARNING: locking bug in {func}", "trace"),
    Rule("lockdep_misc", _r(r"(?P<level>WARNING|BUG|INFO): (?P<what>suspicious RCU usage|"
                            r"still has locks held|"
                            r"trying to register non-static key|"
                            r"lock held at task exit time|bad contention detected)"), _LOCKDEP_MISC_ANCHORS,
         "lockdep", "LOCKDEP", "{level}: {what} in {func}", "trace"),
    Rule("atomic_sleep", _r(r"BUG: (?P<what>sleeping function called from invalid context|scheduling while atomic|"
                            r"using (?:smp_processor_id|__this_cpu_\w+|this_cpu_\w+)\(\)"
                            r"(?= in (?P<preemptible>preemptible))?)"), ("BUG: ",),
         "atomic_sleep", "ATOMIC_SLEEP", "BUG: {what}{preemptible} in {func}", "trace"),
    Rule("lockdep_limit", _r(r"BUG: (?P<what>MAX_\w+ too low!)"), ("BUG: MAX_",),
         "lockdep", "LOCKDEP", "BUG: {what}", "none"),
    Rule("warning", _r(r"WARNING: (?:CPU: \d+ PID: \d+ )?at (?P<file>[\w./+-]+\.\w+):(?P<line>\d+)"
                       r"(?: (?P<func>[\w.$]+)\+)?"), ("WARNING: ",),
         "warning", "WARNING", "WARNING in {func}", "warn", has_prelude=True, file_titles=_CHECKER_WARNINGS),
    Rule("warning_new", _r(r"WARNING: (?:\[.*?\] )?(?P<file>[\w./+-]+\.\w+):(?P<line>\d+) at "
                           r"(?:(?P<func>[\w.$]+)\+|0x)"), ("WARNING: ",),
         "warning", "WARNING", "WARNING in {func}", "warn", has_prelude=True, file_titles=_CHECKER_WARNINGS),
    Rule("warning_nofile", _r(r"WARNING: CPU: \d+ PID: \d+ at (?P<func>[\w.$]+)\+"), ("WARNING: CPU: ",),
         "warning", "WARNING", "WARNING in {func}", "warn", has_prelude=True),
    Rule("memory_leak", _r(r"^unreferenced object 0x[0-9a-f]+ \(size \d+\)|BUG: memory leak$"),
         ("unreferenced object", "BUG: memory leak"), "memory_leak", "LEAK", "memory leak in {func}", "trace"),
    Rule("dentry_in_use", _r(r"BUG: Dentry \S+\s+still in use(?: \(-?\d+\) \[(?P<op>\w+) of)?"), ("BUG: Dentry ",),
         "bug", "BUG", "BUG: Dentry still in use in {op}", "none"),
    Rule("task_stack_guard", _r(r"BUG: (?:TASK|IRQ) stack guard page was hit"), ("stack guard page was hit",),
         "bug", "BUG", "BUG: stack guard page was hit in {func}", "trace", fatal=True),
    Rule("stack_guard", _r(r"BUG: (?P<what>stack guard page was hit|"
                           r"kernel stack overflow|Dentry still in use|Object already free|"
                           r"bad usercopy|corrupted list|held lock freed)"), ("BUG: ",),
         "bug", "BUG", "BUG: {what} in {func}", "trace"),
    Rule("slub_error", _r(r"^BUG [\w-]+ \((?:Not tainted|Tainted: [^)]*)\): (?P<what>[^:(]+?)\s*$"), ("BUG ",),
         "bad_page", "BUG", "BUG: {what}", "none"),
    Rule("stack_unwind", _r(r"^WARNING: kernel stack (?P<what>regs|frame pointer) at \S+ in \S+ has bad "
                            r"(?P<reg>'\w+' )?value"), ("WARNING: kernel stack ",),
         "warning", "WARNING", "WARNING: kernel stack {what} has bad {reg}value", "none"),
    Rule("netdev_leak", _r(r"unregister_netdevice: waiting for \S+ to become free"), ("unregister_netdevice: waiting",),
         "hung_task", "HANG", "unregister_netdevice: waiting for DEV to become free", "none", interleaves=True),
    Rule("vfs_close", _r(r"^VFS: Close: file count is 0"), ("VFS: Close",),
         "bug", "MEMORY_SAFETY_BUG", "VFS: Close: file count is zero (use-after-free)", "none"),
    Rule("vfs_busy", _r(r"^VFS: Busy inodes after unmount"), ("VFS: Busy inodes",),
         "bug", "MEMORY_SAFETY_BUG", "VFS: Busy inodes after unmount (use-after-free)", "none"),
    # make_task_dead(): an oops in a task that was already exiting (its exit
    # path faulted again, or the first oops came from do_exit itself).  Not
    # fatal: it follows the oops it repeats, and is that oops's aftermath.
    Rule("recursive_fault", _r(r"^Fixing recursive fault but reboot is needed!?"), ("Fixing recursive fault",),
         "oops", "BUG", "Fixing recursive fault but reboot is needed", "none"),
    Rule("panic", _r(r"Kernel panic - not syncing: ?(?P<msg>.*)"), ("Kernel panic",),
         "panic", "PANIC", "kernel panic: {msg}", "none", fatal=True,
         ends_previous_report=True, title_fields=_panic_message),
    # The OOM killer's verdict ("Out of memory: Killed process") ends the report it began.
    Rule("oom", _r(r"(?P<comm>\S+) invoked oom-killer: |^Out of memory(?: and no killable processes)?: "),
         ("oom-killer", "Out of memory"), "oom", "OOM", "out of memory", "none", informational=True,
         repeat_window=ANY_DISTANCE),
    # Last: a "BUG:" line no rule above knows still is a bug report; a WARNING
    # with a message but no location (WARN without CPU/PID line, old printk)
    # is one if it has a stack.
    Rule("generic_bug", _r(r"^BUG: (?P<what>[A-Za-z_][^\[]{2,80}?)"
                           r"(?= at | on | for | in preemptible| - |: |, |\(|\[|$)"), ("BUG: ",),
         "bug", "BUG", "BUG: {what} in {func}", "trace"),
    Rule("generic_warning", _r(r"^WARNING: (?P<what>[A-Za-z][^\[\]]{2,120}?)\s*$"), ("WARNING: ",),
         "warning", "WARNING", "WARNING: {what}", "none", needs_stack=True),
]


_RULE_ANCHORS = tuple(dict.fromkeys(anchor for rule in RULES for anchor in rule.anchors))
# The anchors that contain no other: a line holds some anchor only if it holds
# one of these, and one regex search says so faster than a test per anchor.
_ANY_RULE_ANCHOR = re.compile("|".join(re.escape(anchor) for anchor in _RULE_ANCHORS
                                       if not any(other != anchor and other in anchor for other in _RULE_ANCHORS)))


@lru_cache(maxsize=None)
def _rules_with(anchors: FrozenSet[str]) -> Tuple[Rule, ...]:
    return tuple(rule for rule in RULES if any(anchor in anchors for anchor in rule.anchors))


def match_rule(text: str):
    """(rule, match) for the first rule matching a cleaned console line, else None.

    Only the rules whose anchors the line holds can match it (test_console_rules
    checks this of every rule), so only those are tried: a chatter line that
    holds "WARNING" costs the WARNING rules, not all of them.
    """
    if not _ANY_RULE_ANCHOR.search(text):
        return None
    present = frozenset(anchor for anchor in _RULE_ANCHORS if anchor in text)
    for rule in _rules_with(present):
        match = rule.pattern.search(text)
        if match:
            return rule, match
    return None


# Lines that begin or end a boot, for per-boot grouping and reboot detection,
# each with its anchors: substrings one of which every line it matches contains.
BOOT_BANNER = re.compile(r"^(?:Linux version \d|SeaBIOS \(version|Booting the kernel|Decompressing Linux|"
                         r"Booting Linux on physical CPU)")
BOOT_BANNER_ANCHORS = ("Linux version", "SeaBIOS", "Booting the kernel", "Decompressing Linux", "Booting Linux")
KERNEL_BANNER = re.compile(r"^Linux version (?P<version>\S+)")     # a BOOT_BANNER line
# A guest that kstress itself stopped and replaced ends its boot as cleanly as
# a power-off: harness.guest.machine.RESTART_MARKER writes that line.
CLEAN_SHUTDOWN = re.compile(r"^reboot: (?:Restarting system|Power down|System halted)|"
                            r"^(?:Restarting system|Power down)\.?$|^kstress: guest restarted by kstress")
CLEAN_SHUTDOWN_ANCHORS = ("reboot: ", "Restarting system", "Power down", "kstress: guest restarted")
