"""Which console line starts which kind of report, and how to title it.

Each rule matches the first line of a report (after lines.clean()).  The
title is a template; "{func}" is filled with the guilty function chosen by
the rule's ``guilty`` strategy:
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
from dataclasses import dataclass
from typing import List


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: "re.Pattern"
    cls: str
    type: str
    title: str                       # str.format template over match groups + func
    guilty: str = "trace"
    fatal: bool = False              # an oops: what follows in this boot is its aftermath
    informational: bool = False


def _r(pattern: str) -> "re.Pattern":
    return re.compile(pattern)


# Order matters: the first matching rule wins.
RULES: List[Rule] = [
    Rule("kernel_bug", _r(r"(?:^|: )(?:kernel BUG|BUG) at (?P<file>[\w./+-]+\.\w+):(?P<line>\d+)!?"),
         "bug", "BUG", "kernel BUG in {func}", "rip", fatal=True),
    Rule("kernel_bug_noinfo", _r(r"^[Kk]ernel BUG at [0-9a-f]+ "),
         "bug", "BUG", "kernel BUG in {func}", "rip", fatal=True),
    Rule("kasan", _r(r"BUG: KASAN: (?P<kind>[\w-]+(?: or [\w-]+)?) (?:in|on address|on) (?P<func>[\w.$]+)?"),
         "kasan", "MEMORY_SAFETY_BUG", "KASAN: {kind} {access} in {func}", "access"),
    Rule("kfence", _r(r"BUG: KFENCE: (?P<kind>[\w -]+?) in (?P<func>[\w.$]+)"),
         "kfence", "MEMORY_SAFETY_BUG", "KFENCE: {kind} in {func}", "access"),
    Rule("kmsan", _r(r"BUG: KMSAN: (?P<kind>[\w -]+?) in (?P<func>[\w.$]+)"),
         "kmsan", "MEMORY_SAFETY_BUG", "KMSAN: {kind} in {func}", "access"),
    Rule("kcsan", _r(r"BUG: KCSAN: (?P<kind>[\w :-]+?) in (?P<funcs>[\w.$]+ / [\w.$]+|[\w.$]+)"),
         "kcsan", "DATARACE", "KCSAN: {kind} in {funcs}", "none"),
    Rule("ubsan", _r(r"UBSAN: (?P<kind>[\w-]+) in (?P<file>[\w./+-]+):(?P<line>\d+)"),
         "ubsan", "UBSAN", "UBSAN: {kind} in {func}", "trace"),
    Rule("ubsan_old", _r(r"UBSAN: Undefined behaviour in (?P<file>[\w./+-]+):(?P<line>\d+)"),
         "ubsan", "UBSAN", "UBSAN: undefined-behaviour in {func}", "trace"),
    Rule("null_deref", _r(r"BUG: (?:unable to handle kernel NULL pointer dereference|kernel NULL pointer dereference)"),
         "page_fault", "NULL-POINTER-DEREFERENCE", "BUG: unable to handle kernel NULL pointer dereference in {func}",
         "rip", fatal=True),
    Rule("paging_request", _r(r"BUG: unable to handle (?:kernel paging request|page fault for address)|"
                              r"BUG: Unable to handle kernel (?:data access|instruction fetch)"),
         "page_fault", "BUG", "BUG: unable to handle kernel paging request in {func}", "rip", fatal=True),
    Rule("arm_fault", _r(r"(?:^|: |\s)Unable to handle kernel (?P<what>NULL pointer dereference|paging request|access to user memory)\b"),
         "page_fault", "BUG", "BUG: unable to handle kernel {what} in {func}", "rip", fatal=True),
    Rule("user_access", _r(r"BUG: unable to handle kernel (?P<what>access to user memory|[\w ]+?)(?: at| in|,|$)"),
         "page_fault", "BUG", "BUG: unable to handle kernel {what} in {func}", "rip", fatal=True),
    Rule("gpf", _r(r"general protection fault"),
         "gpf", "BUG", "general protection fault in {func}", "rip", fatal=True),
    Rule("invalid_opcode", _r(r"^(?:Oops: )?invalid opcode: [0-9a-f]+ \[#\d+\]"),
         "oops", "BUG", "invalid opcode in {func}", "rip", fatal=True),
    Rule("divide_error", _r(r"^(?:Oops: )?divide[ _]error: [0-9a-f]+ \[#\d+\]"),
         "oops", "BUG", "divide error in {func}", "rip", fatal=True),
    Rule("stack_segment", _r(r"^(?:Oops: )?stack segment: [0-9a-f]+ \[#\d+\]"),
         "oops", "BUG", "stack segment fault in {func}", "rip", fatal=True),
    Rule("double_fault", _r(r"^PANIC: double fault"),
         "oops", "BUG", "PANIC: double fault in {func}", "rip", fatal=True),
    Rule("arm_unhandled", _r(r"^Unhandled fault: "),
         "oops", "BUG", "Unhandled fault in {func}", "rip", fatal=True),
    Rule("internal_error", _r(r"^Internal error: .*\[#\d+\]"),
         "oops", "BUG", "Internal error in {func}", "rip", fatal=True),
    Rule("oops", _r(r"^Oops(?: - [\w ]+)?: [0-9a-f]+ \[#\d+\]"),
         "oops", "BUG", "Oops in {func}", "rip", fatal=True),
    Rule("bad_page_state", _r(r"BUG: Bad page state in process"),
         "bad_page", "BUG", "BUG: Bad page state in {func}", "trace"),
    Rule("bad_page_map", _r(r"BUG: Bad page map"),
         "bad_page", "BUG", "BUG: Bad page map", "trace"),
    Rule("bad_rss", _r(r"BUG: Bad rss-counter state"),
         "bad_page", "BUG", "BUG: Bad rss-counter state", "none"),
    Rule("list_corruption", _r(r"(?:^|: )list_(?:add|del)(?: corruption|_\w+ corruption| double add)|^list_del corruption"),
         "list_corruption", "BUG", "BUG: corrupted list in {func}", "trace"),
    Rule("soft_lockup", _r(r"BUG: soft lockup - CPU#\d+ stuck"),
         "lockup", "HANG", "BUG: soft lockup in {func}", "stall"),
    Rule("hard_lockup", _r(r"Watchdog detected hard LOCKUP on cpu"),
         "lockup", "HANG", "BUG: hard lockup in {func}", "stall"),
    Rule("spinlock_lockup", _r(r"BUG: spinlock lockup suspected"),
         "lockup", "HANG", "BUG: spinlock lockup suspected in {func}", "trace"),
    Rule("workqueue_lockup", _r(r"BUG: workqueue lockup"),
         "lockup", "HANG", "BUG: workqueue lockup", "none"),
    Rule("rcu_stall", _r(r"(?:INFO: )?rcu_?\w* (?:self-)?detected stalls?\b|INFO: rcu_\w+ detected expedited stalls"),
         "rcu_stall", "HANG", "INFO: rcu detected stall in {func}", "stall"),
    Rule("hung_task", _r(r"INFO: task (?P<comm>.+?):(?P<pid>\d+) blocked (?:in I/O wait )?for more than \d+ seconds"),
         "hung_task", "HANG", "INFO: task hung in {func}", "trace"),
    Rule("task_cant_die", _r(r"INFO: task (?P<comm>.+?):(?P<pid>\d+) can't die"),
         "hung_task", "HANG", "INFO: task can't die in {func}", "trace"),
    Rule("circular_locking", _r(r"(?:WARNING|INFO): possible (?:circular locking dependency|recursive locking) detected|"
                                r"(?:WARNING|INFO): possible irq lock inversion dependency detected|"
                                r"possible deadlock|WARNING: (?:SOFTIRQ|HARDIRQ)-(?:safe|READ-safe)"),
         "lockdep", "LOCKDEP", "possible deadlock in {func}", "lock"),
    Rule("inconsistent_lock", _r(r"(?:WARNING|INFO): inconsistent lock state|^inconsistent lock state"),
         "lockdep", "LOCKDEP", "inconsistent lock state in {func}", "lock"),
    Rule("lock_balance", _r(r"(?P<level>WARNING|BUG): (?P<what>bad unlock balance|held lock freed|nested lock was not taken)"),
         "lockdep", "LOCKDEP", "{level}: {what} in {func}", "lock"),
    Rule("locks_held", _r(r"(?P<level>WARNING|BUG): \S+ (?P<what>still has locks held)!"),
         "lockdep", "LOCKDEP", "{level}: {what} in {func}", "lock"),
    Rule("locks_to_user", _r(r"(?P<level>WARNING|BUG): (?P<what>lock held when returning to user space|"
                             r"workqueue leaked lock or atomic)"),
         "lockdep", "LOCKDEP", "{level}: {what} in {func}", "lock"),
    Rule("wait_context", _r(r"BUG: Invalid wait context"),
         "lockdep", "LOCKDEP", "WARNING: locking bug in {func}", "trace"),
    Rule("lockdep_misc", _r(r"(?P<level>WARNING|BUG|INFO): (?P<what>suspicious RCU usage|"
                            r"still has locks held|"
                            r"trying to register non-static key|"
                            r"lock held at task exit time|bad contention detected)"),
         "lockdep", "LOCKDEP", "{level}: {what} in {func}", "trace"),
    Rule("atomic_sleep", _r(r"BUG: (?P<what>sleeping function called from invalid context|scheduling while atomic|"
                            r"using (?:smp_processor_id|__this_cpu_\w+|this_cpu_\w+)\(\)(?= in (?P<preemptible>preemptible))?)"),
         "atomic_sleep", "ATOMIC_SLEEP", "BUG: {what}{preemptible} in {func}", "trace"),
    Rule("lockdep_limit", _r(r"BUG: (?P<what>MAX_\w+ too low!)"),
         "lockdep", "LOCKDEP", "BUG: {what}", "none"),
    Rule("usercopy", _r(r"^usercopy: Kernel memory (?:exposure|overwrite) attempt"),
         "bug", "BUG", "BUG: bad usercopy in {func}", "trace", fatal=True),
    Rule("warning", _r(r"WARNING: (?:CPU: \d+ PID: \d+ )?at (?P<file>[\w./+-]+\.\w+):(?P<line>\d+)(?: (?P<func>[\w.$]+)\+)?"),
         "warning", "WARNING", "WARNING in {func}", "warn"),
    Rule("warning_new", _r(r"WARNING: (?:\[.*?\] )?(?P<file>[\w./+-]+\.\w+):(?P<line>\d+) at (?:(?P<func>[\w.$]+)\+|0x)"),
         "warning", "WARNING", "WARNING in {func}", "warn"),
    Rule("warning_nofile", _r(r"WARNING: CPU: \d+ PID: \d+ at (?P<func>[\w.$]+)\+"),
         "warning", "WARNING", "WARNING in {func}", "warn"),
    Rule("memory_leak", _r(r"^unreferenced object 0x[0-9a-f]+ \(size \d+\)|BUG: memory leak$"),
         "memory_leak", "LEAK", "memory leak in {func}", "trace"),
    Rule("dentry_in_use", _r(r"BUG: Dentry \S+\s+still in use(?: \(-?\d+\) \[(?P<op>\w+) of)?"),
         "bug", "BUG", "BUG: Dentry still in use in {op}", "none"),
    Rule("task_stack_guard", _r(r"BUG: (?:TASK|IRQ) stack guard page was hit"),
         "bug", "BUG", "BUG: stack guard page was hit in {func}", "trace", fatal=True),
    Rule("stack_guard", _r(r"BUG: (?P<what>stack guard page was hit|"
                           r"kernel stack overflow|Dentry still in use|Object already free|"
                           r"bad usercopy|corrupted list|held lock freed)"),
         "bug", "BUG", "BUG: {what} in {func}", "trace"),
    Rule("slub_error", _r(r"^BUG [\w-]+ \((?:Not tainted|Tainted: [^)]*)\): (?P<what>[^:(]+?)\s*$"),
         "bad_page", "BUG", "BUG: {what}", "none"),
    Rule("stack_unwind", _r(r"^WARNING: kernel stack (?P<what>regs|frame pointer) at \S+ in \S+ has bad (?P<reg>'\w+' )?value"),
         "warning", "WARNING", "WARNING: kernel stack {what} has bad {reg}value", "none"),
    Rule("netdev_leak", _r(r"unregister_netdevice: waiting for \S+ to become free"),
         "hung_task", "HANG", "unregister_netdevice: waiting for DEV to become free", "none"),
    Rule("vfs_close", _r(r"^VFS: Close: file count is 0"),
         "bug", "MEMORY_SAFETY_BUG", "VFS: Close: file count is zero (use-after-free)", "none"),
    Rule("vfs_busy", _r(r"^VFS: Busy inodes after unmount"),
         "bug", "MEMORY_SAFETY_BUG", "VFS: Busy inodes after unmount (use-after-free)", "none"),
    # make_task_dead(): an oops in a task that was already exiting (its exit
    # path faulted again, or the first oops came from do_exit itself).  Not
    # fatal: it follows the oops it repeats, and is that oops's aftermath.
    Rule("recursive_fault", _r(r"^Fixing recursive fault but reboot is needed!?"),
         "oops", "BUG", "Fixing recursive fault but reboot is needed", "none"),
    Rule("panic", _r(r"Kernel panic - not syncing: ?(?P<msg>.*)"),
         "panic", "PANIC", "kernel panic: {msg}", "none", fatal=True),
    Rule("oom", _r(r"(?P<comm>\S+) invoked oom-killer: |^Out of memory(?: and no killable processes)?: "),
         "oom", "OOM", "out of memory", "none", informational=True),
]

# A "BUG:" line no rule above knows still is a bug report.
# A WARNING with a message but no location (WARN without CPU/PID line, old printk).
GENERIC_WARNING = Rule("generic_warning", _r(r"^WARNING: (?P<what>[A-Za-z][^\[\]]{2,120}?)\s*$"),
                       "warning", "WARNING", "WARNING: {what}", "none")
GENERIC_BUG = Rule("generic_bug", _r(r"^BUG: (?P<what>[A-Za-z_][^\[]{2,80}?)(?= at | on | for | in preemptible| - |: |, |\(|\[|$)"),
                   "bug", "BUG", "BUG: {what} in {func}", "trace")


def match_rule(text: str):
    """(rule, match) for the first rule matching a cleaned console line, else None."""
    for rule in RULES:
        match = rule.pattern.search(text)
        if match:
            return rule, match
    for rule in (GENERIC_BUG, GENERIC_WARNING):
        match = rule.pattern.search(text)
        if match:
            return rule, match
    return None


# Lines that begin or end a boot, for per-boot grouping and reboot detection.
BOOT_BANNER = re.compile(r"^(?:Linux version \d|SeaBIOS \(version|Booting the kernel|Decompressing Linux|"
                         r"Booting Linux on physical CPU)")
KERNEL_BANNER = re.compile(r"^Linux version (?P<version>\S+)")
CLEAN_SHUTDOWN = re.compile(r"^reboot: (?:Restarting system|Power down|System halted)|^(?:Restarting system|Power down)\.?$")
