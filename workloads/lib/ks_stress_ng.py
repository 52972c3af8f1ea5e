#!/usr/bin/python3
"""ks-stress-ng: runs stress-ng for a kstress workload of kind stress-ng and
speaks the kstress workloads' conventions (in the guest: /usr/bin/ks-stress-ng).

  ks-stress-ng --name NAME --duration SECONDS --seed N -- STRESS-NG-ARGUMENTS...

runs `stress-ng ARGUMENTS --timeout SECONDSs --seed N --verify --metrics-brief
--yaml FILE --temp-path DIR` (DIR: a fresh directory on the root disk, which
swap files need; /tmp may be tmpfs), prints the command, passes its output
through, and ends with key=value summary lines from the YAML metrics:

  NAME metrics: mremap_bogo_ops=12 mremap_seconds=30.01 ... pagemove_bogo_ops=83 ...
  NAME summary: stressors=mremap,pagemove bogo_ops=95 stress_ng_status=0 failures=0 status=0

stress-ng's exit status (man stress-ng, EXIT STATUS) becomes ours:
0 -> 0; 2 (a stressor failed: with --verify that includes data that came
back wrong) and 5 (a stressor killed by an unexpected signal) -> 1, the
kernel's fault; 1, 3, 4, 6, 7 (bad options, no resources, not implemented,
an unexpected exit, untrustworthy counters) -> 125, the workload's own
trouble. SIGTERM/SIGINT are passed on to stress-ng.
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

EXIT_KERNEL, EXIT_USAGE, EXIT_WORKLOAD = 1, 2, 125
# stress-ng's status -> (ours, what it means)
STATUSES = {
    0: (0, "success"),
    1: (EXIT_WORKLOAD, "stress-ng error: bad options or a fatal resource issue in its harness"),
    2: (EXIT_KERNEL, "one or more stressors failed (with --verify: data came back wrong)"),
    3: (EXIT_WORKLOAD, "a stressor could not start: no resources or a missing system call"),
    4: (EXIT_WORKLOAD, "a stressor is not implemented here"),
    5: (EXIT_KERNEL, "a stressor was killed by an unexpected signal"),
    6: (EXIT_WORKLOAD, "a stressor exited unexpectedly, without metrics"),
    7: (EXIT_WORKLOAD, "bogo-op counters untrustworthy (a stressor killed mid-update, e.g. by the OOM killer)"),
}
TEMP_PARENT = "/var/tmp"  # the root disk, where swapon accepts a file
FAIL_LINE = re.compile(r"\b(fail|error):\s")
METRIC_KEYS = {"bogo-ops": "bogo_ops", "wall-clock-time": "seconds", "user-time": "user_s",
               "system-time": "sys_s", "max-rss": "max_rss_kb"}


def parse_metrics(text):
    """[(stressor, {key: value})] from stress-ng's --yaml file (its "metrics:" list)."""
    out = []
    in_metrics = False
    for line in text.splitlines():
        if re.match(r"\S", line):
            in_metrics = line.rstrip() == "metrics:"
            continue
        if not in_metrics:
            continue
        m = re.match(r"\s*-\s*stressor:\s*(\S+)", line)
        if m:
            out.append((m.group(1), {}))
            continue
        m = re.match(r"\s+([a-z0-9-]+):\s*(\S+)", line)
        if m and out and m.group(1) in METRIC_KEYS:
            out[-1][1][METRIC_KEYS[m.group(1)]] = m.group(2)
    return out


def stress_ng_argv(args, yaml_path, temp_dir):
    return [args.stress_ng, *args.arguments, "--timeout", f"{args.duration}s", "--seed", str(args.seed),
            "--verify", "--metrics-brief", "--yaml", yaml_path, "--temp-path", temp_dir]


def parse_args(argv):
    p = argparse.ArgumentParser(prog="ks-stress-ng", description="stress-ng for a kstress workload")
    p.add_argument("--name", required=True, help="the workload's name, the prefix of the summary")
    p.add_argument("--duration", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--stress-ng", default="stress-ng", help="the stress-ng program (tests: a fake one)")
    p.add_argument("arguments", nargs=argparse.REMAINDER, help="-- then stress-ng's arguments")
    args = p.parse_args(argv)
    if args.arguments[:1] == ["--"]:
        args.arguments = args.arguments[1:]
    if not args.arguments or args.duration < 1 or args.seed < 0:
        p.error("expected --duration >= 1, --seed >= 0 and stress-ng arguments after --")
    return args


def main(argv):
    args = parse_args(argv)
    program = shutil.which(args.stress_ng)
    if program is None:
        print(f"{args.name} error: no {args.stress_ng} in the guest (Debian package stress-ng)", flush=True)
        return EXIT_WORKLOAD
    args.stress_ng = program
    parent = TEMP_PARENT if os.path.isdir(TEMP_PARENT) else None
    temp_dir = tempfile.mkdtemp(prefix="ks-stress-ng-", dir=parent)
    yaml_path = os.path.join(temp_dir, "metrics.yaml")
    argv = stress_ng_argv(args, yaml_path, temp_dir)
    print(f"{args.name} note: running {' '.join(argv)}", flush=True)
    failures = []
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def forward(signum, _frame):
        proc.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    try:
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            print(line, flush=True)
            if FAIL_LINE.search(line):
                failures.append(line)
        code = proc.wait()
        try:
            with open(yaml_path) as f:
                metrics = parse_metrics(f.read())
        except OSError:
            metrics = []
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    ours, meaning = STATUSES.get(code, (EXIT_WORKLOAD, f"unknown stress-ng exit status {code}"))
    if code < 0:
        ours, meaning = EXIT_WORKLOAD, f"stress-ng killed by {signal.Signals(-code).name}"
    per_stressor = " ".join(f"{name.replace('-', '_')}_{k}={v}" for name, values in metrics for k, v in values.items())
    print(f"{args.name} metrics: {per_stressor or 'none=1'}", flush=True)
    total = sum(int(float(v.get("bogo_ops", 0))) for _, v in metrics)
    print(f"{args.name} summary: stressors={','.join(n for n, _ in metrics) or 'none'} bogo_ops={total} "
          f"stress_ng_status={code} failures={len(failures)} status={ours}", flush=True)
    if ours:
        first = f"; first: {failures[0].strip()}" if failures else ""
        print(f"{args.name} error: stress-ng exit {code}: {meaning}{first}", flush=True)
    return ours


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
