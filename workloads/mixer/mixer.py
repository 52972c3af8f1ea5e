#!/usr/bin/python3
"""mixer: seeded random combinations of the kstress workloads, run at once.

The runner runs a config's workloads one after another; mixer is how they
overlap inside one testcase. From the seed alone it plans --lanes lanes,
started a few seconds apart; each lane runs children one after another,
each child a workload from --children with its own duration and seed, so
that which workloads overlap, and when, changes through the run. The first
children of the plan are every workload once (seeded order). With
--knob-churn, knob_churn runs beside them the whole time. Every child ends
by 90% of mixer's --duration.

Each child's output is printed as it comes, each line prefixed with
"[<name>#<n>] "; "start ..." and "stop ..." lines say when each ran and
how it ended. A child that exits 1 (the kernel's fault) makes mixer exit 1
naming it, and so does a child still running --grace seconds after its
duration (a hang: its kernel stack is printed before it is killed); else a
child that exits otherwise (125, 2, a signal) makes mixer exit 125. On
SIGTERM or SIGINT every child gets SIGTERM (knob_churn restores its knobs),
then SIGKILL after --stop-wait seconds.

Exit: 0 every child passed, 1 the kernel's fault, 2 usage, 125 a child's
own trouble or a child missing.
"""

import argparse
import os
import random
import signal
import subprocess
import sys
import threading
import time

NAME = "mixer"
EXIT_KERNEL, EXIT_USAGE, EXIT_WORKLOAD = 1, 2, 125
KNOB_CHURN = "knob_churn"


class Interrupted(Exception):
    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Slot:
    """One planned child: which workload, when (seconds after mixer's start), for how long, its seed."""

    def __init__(self, n, lane, name, start, duration, seed):
        self.n, self.lane, self.name = n, lane, name
        self.start, self.duration, self.seed = start, duration, seed
        self.label = f"{name}#{n}"
        self.proc = None
        self.started = self.ended = None
        self.status = None  # what the child's exit means: ok | kernel | workload | hung | interrupted
        self.detail = ""

    def describe(self):
        return (f"child={self.label} lane={self.lane} start={self.start:.1f} duration={self.duration} "
                f"seed={self.seed}")


def plan(children, duration, seed, lanes, min_child, knob_churn):
    """The whole run as Slots, from the seed alone."""
    rng = random.Random(seed)
    end = max(1, int(duration * 0.9))
    min_child = max(1, min(min_child, end))
    max_child = max(min_child, end // 2)
    lanes = max(1, min(lanes, len(children)))
    at = [0.0] + [float(rng.randint(1, 3) * i) for i in range(1, lanes)]  # staggered starts
    first = list(children)
    rng.shuffle(first)
    slots, open_lanes = [], set(range(lanes))
    while open_lanes:
        lane = min(open_lanes, key=lambda i: (at[i], i))
        left = end - at[lane]
        if left < min_child:
            open_lanes.discard(lane)
            continue
        name = first.pop(0) if first else rng.choice(children)
        length = rng.randint(min_child, max(min_child, min(int(left), max_child)))
        if left - length < min_child:
            length = int(left)  # the rest of the lane: no gap too short for another child
        slots.append(Slot(len(slots) + 1, lane, name, at[lane], length, rng.randrange(1, 2**31)))
        at[lane] += length + rng.randint(0, 2)
    if knob_churn:
        slots.append(Slot(len(slots) + 1, lanes, KNOB_CHURN, 0.0, end, rng.randrange(1, 2**31)))
    return sorted(slots, key=lambda s: (s.start, s.n))


class Mixer:
    def __init__(self, args, slots):
        self.args, self.slots = args, slots
        self.lock = threading.Lock()
        self.readers = []
        self.t0 = time.monotonic()

    def say(self, line):
        with self.lock:
            print(line, flush=True)

    def now(self):
        return time.monotonic() - self.t0

    def run(self):
        pending = list(self.slots)
        while True:
            while pending and pending[0].start <= self.now():
                self.start(pending.pop(0))
            running = [s for s in self.slots if s.proc is not None and s.status is None]
            for slot in running:
                self.check(slot)
            if not pending and not [s for s in self.slots if s.proc is not None and s.status is None]:
                break
            time.sleep(0.1)

    def start(self, slot):
        path = os.path.join(self.args.bin_dir, slot.name)
        argv = [path, "--duration", str(slot.duration), "--seed", str(slot.seed)]
        slot.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        slot.started = self.now()
        self.say(f"start t={slot.started:.1f} {slot.describe()} pid={slot.proc.pid}")
        reader = threading.Thread(target=self.forward, args=(slot,), daemon=True)
        reader.start()
        self.readers.append(reader)

    def forward(self, slot):
        """The child's output, line by line, prefixed with its label."""
        for raw in iter(slot.proc.stdout.readline, b""):
            self.say(f"[{slot.label}] {raw.decode(errors='replace').rstrip()}")
        slot.proc.stdout.close()

    def check(self, slot):
        code = slot.proc.poll()
        if code is not None:
            self.finished(slot, code)
        elif self.now() > slot.started + slot.duration + self.args.grace:
            self.hung(slot)

    def finished(self, slot, code, sent=None):
        slot.ended = self.now()
        if code == 0:
            slot.status = "ok"
        elif code == EXIT_KERNEL:
            slot.status, slot.detail = "kernel", "exited 1: the kernel's fault"
        elif code < 0 and sent is not None and -code in (sent, signal.SIGKILL):
            slot.status, slot.detail = "interrupted", f"stopped by {signal.Signals(-code).name}"
        elif code < 0:
            slot.status, slot.detail = "workload", f"killed by {signal.Signals(-code).name}"
        else:
            slot.status, slot.detail = "workload", f"exited {code}"
        self.say(f"stop t={slot.ended:.1f} child={slot.label} status={code} ran={slot.ended - slot.started:.1f} "
                 f"result={slot.status}" + (f" ({slot.detail})" if slot.detail else ""))

    def hung(self, slot):
        """Still running --grace seconds after its duration: show where it is stuck, then kill it."""
        over = self.now() - slot.started - slot.duration
        self.say(f"{NAME} hang: {slot.label} (pid {slot.proc.pid}) still runs {over:.0f}s after its "
                 f"{slot.duration}s; its tasks' kernel stacks:")
        for line in task_stacks(slot.proc.pid):
            self.say(f"{NAME} hang:   {line}")
        kill_group(slot.proc, signal.SIGKILL)
        try:
            slot.proc.wait(timeout=self.args.stop_wait)
        except subprocess.TimeoutExpired:
            self.say(f"{NAME} hang: {slot.label} survives SIGKILL (uninterruptible in the kernel)")
        slot.ended = self.now()
        slot.status, slot.detail = "hung", f"still running {over:.0f}s after its duration"
        self.say(f"stop t={slot.ended:.1f} child={slot.label} status={slot.proc.returncode} "
                 f"ran={slot.ended - slot.started:.1f} result=hung")

    def stop_all(self, signum):
        """SIGTERM (or the signal mixer got) to every running child, SIGKILL after --stop-wait."""
        running = [s for s in self.slots if s.proc is not None and s.status is None]
        for slot in running:
            kill_group(slot.proc, signum)
        deadline = time.monotonic() + self.args.stop_wait
        for slot in running:
            try:
                code = slot.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                kill_group(slot.proc, signal.SIGKILL)
                code = slot.proc.wait()
            self.finished(slot, code, sent=signum)

    def verdict(self):
        """(exit status, the children that decided it)."""
        ran = [s for s in self.slots if s.status is not None]
        kernel = [s for s in ran if s.status in ("kernel", "hung")]
        if kernel:
            return EXIT_KERNEL, kernel
        own = [s for s in ran if s.status == "workload"]
        return (EXIT_WORKLOAD, own) if own else (0, [])

    def summary(self, status, why, interrupted=""):
        ran = [s for s in self.slots if s.status is not None]
        count = {k: sum(s.status == k for s in ran) for k in ("ok", "kernel", "hung", "workload", "interrupted")}
        names = sorted({s.name for s in ran})
        extra = f" interrupted={interrupted}" if interrupted else ""
        self.say(f"{NAME} summary: ran={len(ran)} passed={count['ok']} kernel_faults={count['kernel']} "
                 f"hung={count['hung']} workload_failures={count['workload']} stopped={count['interrupted']} "
                 f"workloads_run={','.join(names) or 'none'} seconds={self.now():.1f}{extra}")
        cause = "; ".join(f"{s.label} {s.detail}" for s in why)
        self.say(f"{NAME} result: status={status}" + (f" cause: {cause}" if cause else ""))


def kill_group(proc, signum):
    """The child and whatever it forked (its own session and process group)."""
    try:
        os.killpg(proc.pid, signum)
    except ProcessLookupError:
        pass


def task_stacks(pid):
    """Each thread's state and kernel stack (/proc/PID/task/*/stack needs root)."""
    out = []
    try:
        tids = sorted(os.listdir(f"/proc/{pid}/task"), key=int)
    except OSError as exc:
        return [f"no /proc/{pid}/task: {exc.strerror}"]
    for tid in tids:
        base = f"/proc/{pid}/task/{tid}"
        try:
            with open(f"{base}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            with open(f"{base}/stack") as f:
                frames = [ln.split()[-1] for ln in f.read().splitlines()]
            out.append(f"tid {tid} state {state}: {' <- '.join(frames) or '(no kernel frames)'}")
        except OSError as exc:
            out.append(f"tid {tid}: {exc.strerror}")
    return out


def parse_args(argv):
    p = argparse.ArgumentParser(prog=NAME, description="Seeded random combinations of kstress workloads at once.")
    p.add_argument("--duration", type=int, required=True, help="seconds; every child ends by 90%% of it")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--children", required=True, help="workloads to combine, comma-separated (in --bin-dir)")
    p.add_argument("--knob-churn", action="store_true", help="run knob_churn beside them all along")
    p.add_argument("--bin-dir", default="/usr/bin", help="where the workloads are")
    p.add_argument("--lanes", type=int, default=2, help="children at once (besides knob_churn)")
    p.add_argument("--min-child", type=int, default=5, help="shortest child, seconds")
    p.add_argument("--grace", type=float, default=45, help="seconds a child may run past its duration")
    p.add_argument("--stop-wait", type=float, default=15, help="seconds from SIGTERM to SIGKILL")
    p.add_argument("--plan", action="store_true", help="print the plan and exit")
    args = p.parse_args(argv)
    args.children = [c for c in args.children.split(",") if c]
    if not args.children or args.duration < 1 or args.seed < 0 or args.lanes < 1 or args.min_child < 1:
        p.error("expected --children a,b,...; --duration, --lanes and --min-child >= 1; --seed >= 0")
    if KNOB_CHURN in args.children:
        p.error("knob_churn is not a child to combine: use --knob-churn")
    return args


def main(argv):
    args = parse_args(argv)
    slots = plan(args.children, args.duration, args.seed, args.lanes, args.min_child, args.knob_churn)
    if args.plan:
        for slot in slots:
            print(f"plan {slot.describe()}")
        return 0
    missing = sorted({s.name for s in slots if not os.access(os.path.join(args.bin_dir, s.name), os.X_OK)})
    if missing:
        print(f"{NAME} error: no {', '.join(os.path.join(args.bin_dir, m) for m in missing)} "
              f"(the manifest's runs: puts them in the guest)", flush=True)
        print(f"{NAME} result: status={EXIT_WORKLOAD}", flush=True)
        return EXIT_WORKLOAD

    def interrupt(signum, _frame):
        raise Interrupted(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, interrupt)
    mixer = Mixer(args, slots)
    mixer.say(f"{NAME} plan: duration={args.duration} seed={args.seed} children={','.join(args.children)} "
              f"lanes={args.lanes} knob_churn={int(args.knob_churn)} slots={len(slots)}")
    interrupted = None
    try:
        mixer.run()
    except Interrupted as exc:
        interrupted = exc
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        mixer.stop_all(exc.signum)
    for reader in mixer.readers:
        reader.join(timeout=5)
    status, why = mixer.verdict()
    mixer.summary(status, why, str(interrupted or ""))
    if interrupted is not None:
        signal.signal(interrupted.signum, signal.SIG_DFL)
        os.kill(os.getpid(), interrupted.signum)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
