#!/usr/bin/python3
"""knob_churn: seeded random changes to the memory-management knobs while
other workloads run (mixer starts it beside them).

What it changes, each chosen from what the guest offers:
  THP: transparent_hugepage/{enabled,defrag,shmem_enabled}, each mTHP size's
       hugepages-<size>/enabled, khugepaged/{defrag,pages_to_scan,
       scan_sleep_millisecs,alloc_sleep_millisecs,max_ptes_none};
  /proc/sys/vm/compaction_proactiveness, /proc/sys/kernel/numa_balancing;
  actions: /proc/sys/vm/drop_caches (3), /proc/sys/vm/compact_memory;
  memory blocks: offline and online again the blocks of ZONE_MOVABLE under
       /sys/devices/system/memory (a write that takes longer than
       --offline-timeout is ended by killing the child doing it).

Every change is logged with CLOCK_MONOTONIC and /proc/uptime, so a kernel
report at console time [  123.456] can be matched to the knob state then.
The first round touches every knob once (seeded order), then knobs are
drawn at random. Each value is drawn from the seed and the value set before
it, never from timing, so --dry-run prints the decisions a real run takes.
Every knob written is read back: a knob that accepted a value and reads
back another is the kernel's fault (exit 1). At the end, and on SIGTERM or
SIGINT, every knob and block is restored; one that cannot be is our
trouble (exit 125).

Output: "initial ..." per knob, "change ..." per change, notes, and the
summary lines "knob_churn summary: ..." and "knob_churn restore: ...".
Exit: 0 fine, 1 the kernel's fault, 2 usage, 125 our own trouble.
"""

import argparse
import errno
import os
import random
import re
import signal
import sys
import time

NAME = "knob_churn"
EXIT_KERNEL, EXIT_USAGE, EXIT_WORKLOAD = 1, 2, 125
THP = "sys/kernel/mm/transparent_hugepage"
MEMORY = "sys/devices/system/memory"
CHOICE, NUMBER = "choice", "number"
# name, path under the root, how it reads, candidates (None: the values the file lists).
KNOBS = (
    ("thp.enabled", f"{THP}/enabled", CHOICE, None),
    ("thp.defrag", f"{THP}/defrag", CHOICE, None),
    ("thp.shmem_enabled", f"{THP}/shmem_enabled", CHOICE, None),
    ("khugepaged.defrag", f"{THP}/khugepaged/defrag", NUMBER, ("0", "1")),
    ("khugepaged.pages_to_scan", f"{THP}/khugepaged/pages_to_scan", NUMBER, ("8", "64", "512", "4096")),
    # Not 0: khugepaged would scan without pause and starve a 2-vCPU TCG guest.
    ("khugepaged.scan_sleep_millisecs", f"{THP}/khugepaged/scan_sleep_millisecs", NUMBER,
     ("10", "100", "1000", "10000")),
    ("khugepaged.alloc_sleep_millisecs", f"{THP}/khugepaged/alloc_sleep_millisecs", NUMBER,
     ("10", "1000", "60000")),
    ("khugepaged.max_ptes_none", f"{THP}/khugepaged/max_ptes_none", NUMBER, ("0", "64", "256", "511")),
    ("vm.compaction_proactiveness", "proc/sys/vm/compaction_proactiveness", NUMBER, ("0", "20", "50", "100")),
    ("kernel.numa_balancing", "proc/sys/kernel/numa_balancing", NUMBER, ("0", "1", "2", "3")),
)
MTHP = re.compile(r"hugepages-(\d+)kB\Z")
# Write-only files: written, never read back or restored.
ACTIONS = (("drop_caches", "proc/sys/vm/drop_caches", "3"),
           ("compact_memory", "proc/sys/vm/compact_memory", "1"))
BLOCKS = "memory_blocks"
RESTORE_TIMEOUT = 120.0  # seconds for onlining a block at the end


class Interrupted(Exception):
    """SIGTERM or SIGINT arrived: restore, then die of the same signal."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class KernelFault(Exception):
    pass


class OwnTrouble(Exception):
    pass


def clock_stamp():
    """CLOCK_MONOTONIC and the guest's uptime (/proc/uptime: the console's clock, near enough)."""
    mono = time.clock_gettime(time.CLOCK_MONOTONIC)
    try:
        with open("/proc/uptime") as f:
            uptime = f.read().split()[0]
    except OSError:
        uptime = "?"
    return f"mono={mono:.6f} uptime={uptime}"


def say(line):
    print(line, flush=True)


def errname(exc):
    return errno.errorcode.get(exc.errno, str(exc.errno)) if isinstance(exc, OSError) else type(exc).__name__


class Knob:
    """A file holding one setting: a choice ("always [madvise] never") or a number."""

    def __init__(self, name, path, how, candidates):
        self.name, self.path, self.how = name, path, how
        text = read_text(path)
        self.initial = self.parse(text)
        if how == CHOICE:
            candidates = tuple(w.strip("[]") for w in text.split())
        self.candidates = tuple(candidates)

    def parse(self, text):
        if self.how == CHOICE:
            m = re.search(r"\[([^\]]+)\]", text)
            return m.group(1) if m else text.strip()  # a plain file (a fake root in tests)
        return text.strip()

    def read(self):
        return self.parse(read_text(self.path))


def read_text(path):
    with open(path) as f:
        return f.read()


def write_text(path, value):
    """One write(2) of the value, as `echo value > path` does; OSError as the kernel returned it."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, f"{value}\n".encode())
    finally:
        os.close(fd)


class Churner:
    def __init__(self, args):
        self.args = args
        self.root = args.sysfs_root
        self.rng = random.Random(args.seed)
        self.knobs = []
        self.blocks = {}  # memoryN -> its state as last read (online | offline)
        self.planned = {}  # knob or block -> the value the plan set last (starts as found)
        self.written = {}  # knob -> True once a real write was made: restored at the end
        self.counts = dict(changes=0, knob_writes=0, write_errors=0, actions=0, offline_ok=0,
                           offline_failed=0, offline_timeouts=0, online_ok=0, online_failed=0)
        self.restored = self.restore_failed = 0

    def at(self, rel):
        return os.path.join(self.root, rel)

    # -- what this guest offers --------------------------------------------

    def discover(self):
        specs = list(KNOBS)
        thp = self.at(THP)
        if os.path.isdir(thp):
            sizes = sorted((int(m.group(1)), d) for d in os.listdir(thp) if (m := MTHP.match(d)))
            # Sizes without an "enabled" (order 1: shmem only) are not anonymous mTHP sizes.
            specs[3:3] = [(f"thp.{d}.enabled", f"{THP}/{d}/enabled", CHOICE, None) for _, d in sizes
                          if os.path.exists(os.path.join(thp, d, "enabled"))]
        for name, rel, how, candidates in specs:
            path = self.at(rel)
            if not os.path.exists(path):
                say(f"{NAME} note: no {path}, {name} is not churned")
                continue
            try:
                knob = Knob(name, path, how, candidates)
            except OSError as exc:
                raise OwnTrouble(f"cannot read {path}: {errname(exc)}") from None
            self.knobs.append(knob)
            self.planned[knob.name] = knob.initial
            say(f"initial knob={knob.name} value={knob.initial} candidates={','.join(knob.candidates)}")
        self.actions = [(n, self.at(rel), v) for n, rel, v in ACTIONS if os.path.exists(self.at(rel))]
        for name, rel, _ in ACTIONS:
            if not os.path.exists(self.at(rel)):
                say(f"{NAME} note: no {self.at(rel)}, {name} is not done")
        self.blocks = self.movable_blocks()
        self.planned.update(self.blocks)
        say(f"initial memory_blocks={','.join(self.blocks) or 'none'} (online, ZONE_MOVABLE)")
        if not self.blocks:
            say(f"{NAME} note: no online ZONE_MOVABLE memory block, none is offlined "
                f"(a run config's guest.hotplug_dimms adds some)")
        if not self.knobs and not self.actions and not self.blocks:
            raise OwnTrouble(f"nothing to churn under {self.root}")

    def movable_blocks(self):
        base = self.at(MEMORY)
        if not os.path.isdir(base):
            return {}
        found = []
        for d in os.listdir(base):
            if not re.fullmatch(r"memory\d+", d):
                continue
            try:
                state = block_state(os.path.join(base, d, "state"))
                zones = read_text(os.path.join(base, d, "valid_zones")).split()
            except OSError:
                continue
            if state == "online" and zones == ["Movable"]:
                found.append(d)
        found.sort(key=lambda d: int(d[6:]))
        return {d: "online" for d in found}

    # -- the seeded plan ------------------------------------------------------

    def targets(self):
        return [k.name for k in self.knobs] + [a[0] for a in self.actions] + ([BLOCKS] if self.blocks else [])

    def decisions(self):
        """(target, value, pause) forever: every target once in seeded order, the actions first
        (so that even a short run drops caches and compacts: its evidence), then at random."""
        targets = self.targets()
        actions = [a[0] for a in self.actions]
        others = [t for t in targets if t not in actions]
        self.rng.shuffle(actions)
        self.rng.shuffle(others)
        first = actions + others
        knobs = {k.name: k for k in self.knobs}
        actions = {a[0]: a for a in self.actions}
        n = 0
        while True:
            target = first[n] if n < len(first) else self.rng.choice(targets)
            n += 1
            if target in knobs:
                others = [v for v in knobs[target].candidates if v != self.planned[target]]
                value = self.rng.choice(others) if others else self.planned[target]
                self.planned[target] = value
            elif target in actions:
                value = actions[target][2]
            else:
                block = self.rng.choice(sorted(self.blocks, key=lambda d: int(d[6:])))
                online = self.planned[block] == "online"
                value = f"{block}:{'offline' if online else 'online_movable'}"
                self.planned[block] = "offline" if online else "online"
            yield target, value, self.rng.uniform(self.args.min_interval_ms, self.args.max_interval_ms) / 1000

    # -- doing it ---------------------------------------------------------------

    def run(self, deadline):
        knobs = {k.name: k for k in self.knobs}
        actions = {a[0]: a for a in self.actions}
        for n, (target, value, pause) in enumerate(self.decisions(), 1):
            if self.args.changes and n > self.args.changes:
                break
            if not self.args.dry_run and time.monotonic() + pause >= deadline:
                break
            if not self.args.dry_run:
                time.sleep(pause)
            self.counts["changes"] += 1
            if target in knobs:
                self.change_knob(n, knobs[target], value)
            elif target in actions:
                self.action(n, *actions[target])
            else:
                block, _, state = value.partition(":")
                self.change_block(n, block, state)

    def change_knob(self, n, knob, value):
        head = f"change n={n} {clock_stamp()} knob={knob.name}"
        if self.args.dry_run:
            say(f"{head} to={value} dry_run=1")
            return
        before = knob.read()
        try:
            write_text(knob.path, value)
        except OSError as exc:
            self.counts["write_errors"] += 1
            say(f"{head} from={before} to={value} result={errname(exc)}")
            return
        self.written[knob.name] = True
        self.counts["knob_writes"] += 1
        after = knob.read()
        say(f"{head} from={before} to={value} result=ok")
        if after != value:
            raise KernelFault(f"{knob.path} accepted {value!r} but reads back {after!r}")

    def action(self, n, name, path, value):
        head = f"change n={n} {clock_stamp()} action={name} value={value}"
        if self.args.dry_run:
            say(f"{head} dry_run=1")
            return
        t0 = time.monotonic()
        try:
            write_text(path, value)
            result = "ok"
            self.counts["actions"] += 1
        except OSError as exc:
            self.counts["write_errors"] += 1
            result = errname(exc)
        say(f"{head} result={result} ms={(time.monotonic() - t0) * 1000:.0f}")

    def change_block(self, n, block, state):
        head = f"change n={n} {clock_stamp()} block={block} to={state}"
        if self.args.dry_run:
            say(f"{head} dry_run=1")
            return
        path = os.path.join(self.at(MEMORY), block, "state")
        key = "offline" if state == "offline" else "online"
        if self.blocks[block] == key:  # an offline that failed left it online: the plan goes on
            say(f"{head} result=unchanged state={key}")
            return
        t0 = time.monotonic()
        result = write_with_deadline(path, state, self.args.offline_timeout)
        ms = (time.monotonic() - t0) * 1000
        now = block_state(path)
        say(f"{head} result={result} state={now} ms={ms:.0f}")
        if result == "ok":
            self.counts[f"{key}_ok"] += 1
            if now != key:
                raise KernelFault(f"{path}: writing {state} succeeded but the block reads {now!r}")
        elif result == "timeout":
            self.counts["offline_timeouts" if key == "offline" else "online_failed"] += 1
        else:
            self.counts[f"{key}_failed"] += 1
        self.blocks[block] = "offline" if now == "offline" else "online"

    # -- the end -----------------------------------------------------------------

    def restore(self):
        """Blocks back online, then every knob written back to its initial value (read back)."""
        failures = []
        for block, state in sorted(self.blocks.items()):
            if state == "online":
                continue
            path = os.path.join(self.at(MEMORY), block, "state")
            result = write_with_deadline(path, "online_movable", RESTORE_TIMEOUT)
            now = block_state(path)
            say(f"restore {clock_stamp()} block={block} to=online_movable result={result} state={now}")
            self.tally(now == "online", failures, f"{block} ({result})")
        for knob in self.knobs:
            if not self.written.get(knob.name):
                continue
            try:
                write_text(knob.path, knob.initial)
                result = "ok" if knob.read() == knob.initial else f"reads {knob.read()}"
            except OSError as exc:
                result = errname(exc)
            say(f"restore {clock_stamp()} knob={knob.name} to={knob.initial} result={result}")
            self.tally(result == "ok", failures, f"{knob.name} ({result})")
        return failures

    def tally(self, ok, failures, what):
        if ok:
            self.restored += 1
        else:
            self.restore_failed += 1
            failures.append(what)

    def summary(self, status, why=""):
        c = self.counts
        extra = f" interrupted={why}" if why else ""
        say(f"{NAME} summary: changes={c['changes']} knobs={len(self.knobs)} knob_writes={c['knob_writes']} "
            f"actions={c['actions']} write_errors={c['write_errors']} movable_blocks={len(self.blocks)} "
            f"offline_ok={c['offline_ok']} offline_failed={c['offline_failed']} "
            f"offline_timeouts={c['offline_timeouts']} online_ok={c['online_ok']} online_failed={c['online_failed']} "
            f"dry_run={int(self.args.dry_run)}{extra}")
        say(f"{NAME} restore: restored={self.restored} failed={self.restore_failed} status={status}")


def block_state(path):
    """online or offline (a fake root's plain file may hold what was written: online_movable)."""
    state = read_text(path).strip()
    return "online" if state.startswith("online") else state


def write_with_deadline(path, value, timeout):
    """Write ``value`` in a child process, killed after ``timeout`` seconds (offlining a block can
    wait for ever on a page that will not migrate; a fatal signal ends that wait with EINTR).
    "ok", the errno's name, or "timeout"."""
    pid = os.fork()
    if pid == 0:
        try:
            write_text(path, value)
            os._exit(0)
        except OSError as exc:
            os._exit(exc.errno if 0 < exc.errno < 256 else 255)
        except BaseException:
            os._exit(255)
    deadline = time.monotonic() + timeout
    killed = False
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if not killed and time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                killed = True
                deadline = time.monotonic() + 60
            elif killed and time.monotonic() > deadline:
                raise KernelFault(f"writing {value} to {path} did not return 60 s after SIGKILL: "
                                  f"{kernel_stack(pid)}")
            time.sleep(0.05)
    except BaseException:
        if not killed:  # interrupted: end the write, and never leave the child behind
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        raise
    if killed:
        return "timeout"
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return "ok"
    return errno.errorcode.get(code, f"exit{code}")


def kernel_stack(pid):
    try:
        with open(f"/proc/{pid}/stack") as f:
            return " <- ".join(line.split()[-1] for line in f.read().splitlines())
    except OSError as exc:
        return f"(no /proc/{pid}/stack: {errname(exc)})"


def parse_args(argv):
    p = argparse.ArgumentParser(prog=NAME, description="Seeded random changes to the THP, compaction, "
                                "NUMA-balancing and memory-block knobs; restored at the end.")
    p.add_argument("--duration", type=int, required=True, help="seconds")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--sysfs-root", default="/", help="where sys/ and proc/sys/ are (tests: a fake tree)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the decisions (--changes of them) without writing or sleeping")
    p.add_argument("--changes", type=int, default=0, help="stop after this many changes (0: the duration)")
    p.add_argument("--min-interval-ms", type=float, default=100)
    p.add_argument("--max-interval-ms", type=float, default=800)
    p.add_argument("--offline-timeout", type=float, default=15.0,
                   help="seconds a memory block's offline may take before it is ended")
    args = p.parse_args(argv)
    if args.duration < 1 or args.seed < 0 or args.changes < 0 or args.offline_timeout <= 0:
        p.error("--duration must be >= 1, --seed and --changes >= 0, --offline-timeout > 0")
    if not 0 <= args.min_interval_ms <= args.max_interval_ms:
        p.error("expected 0 <= --min-interval-ms <= --max-interval-ms")
    if args.dry_run and not args.changes:
        args.changes = 50
    return args


def main(argv):
    args = parse_args(argv)
    if not args.dry_run and os.path.abspath(args.sysfs_root) == "/" and os.geteuid() != 0:
        print(f"{NAME}: writing the kernel's knobs needs root", file=sys.stderr)
        return EXIT_WORKLOAD

    def interrupt(signum, _frame):
        raise Interrupted(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, interrupt)
    churner = Churner(args)
    status, why, interrupted = 0, "", None
    say(f"{NAME} start: {clock_stamp()} duration={args.duration} seed={args.seed} root={args.sysfs_root}")
    try:
        churner.discover()
        churner.run(time.monotonic() + args.duration)
    except Interrupted as exc:
        interrupted, why = exc, str(exc)
    except KernelFault as exc:
        status = EXIT_KERNEL
        say(f"{NAME} error: the kernel's fault: {exc}")
    except (OwnTrouble, OSError) as exc:
        status = EXIT_WORKLOAD
        say(f"{NAME} error: {exc}")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):  # a second signal must not cut the restore short
            signal.signal(sig, signal.SIG_IGN)
    try:
        failures = churner.restore()
    except KernelFault as exc:
        failures = [str(exc)]
        status = EXIT_KERNEL
    if failures:
        say(f"{NAME} error: could not restore: {', '.join(failures)}")
        status = status or EXIT_WORKLOAD
    churner.summary(status, why)
    if interrupted is not None:
        signal.signal(interrupted.signum, signal.SIG_DFL)
        os.kill(os.getpid(), interrupted.signum)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
