#!/usr/bin/env python3
"""Benchmark `kstress scan` (python -m harness.console --json) on huge console logs.

Builds a console log of real text: boot output and ordinary kernel messages
from syzkaller's corpus (logs without a crash), with one real crash report
from the corpus planted per MB, each in its own boot.  Then measures, in the
same run, the scanner against `LC_ALL=C grep -E -c -f markers` (same anchors),
checks that every planted report is found with its right title, and repeats
on a 4x larger log to show that peak memory does not grow with the log.

    .venv/bin/python benchmarks/bench_scan.py [--shape soak|corpus] [--mb 100] [--factor 4] [--keep DIR]
    .venv/bin/python benchmarks/bench_scan.py --quick      # a smoke test: 4 and 8 MB, one run each

Printed per log: wall time and MB/s of both, and their CPU time (user +
system of the process and the processes it waited for: the scan's grep
included), steadier than wall time on a shared host; the scan runs as an
installed kstress does, from compiled bytecode (kept in the work directory,
made by a first run that is not timed).

--shape soak (the default) is a nightly soak's console: one real 6.12 boot,
then hours of real chatter as it is (the captured consoles' ordinary lines,
user-space lines without timestamps, a SysRq dump, the corpus's crash-free
logs, whose lines hold anchors in non-crash contexts), a report every ~190 KB
(a WARNING that repeats, with its end marker and without), and one fatal
oops late in the log.
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from test_console_corpus import corpus_dir, read_dir  # noqa: E402

from harness.console import analyze_text  # noqa: E402
from harness.console.prefilter import ANCHORS, grep_markers  # noqa: E402
from harness.console.rules import BOOT_BANNER_ANCHORS  # noqa: E402

MB = 1 << 20


def _load_material():
    """(filler text, boot text, [(report text, expected title)]) from the corpus.

    Filler is ordinary kernel chatter: lines of the corpus's crash-free logs
    that hold none of the scanner's anchors.  Boot text is the real boot
    output (firmware banner to the first anchor) of the corpus's reboot logs.
    """
    cases = read_dir(corpus_dir() / "report")
    anchors = re.compile("|".join(map(re.escape, ANCHORS)))
    # The crash-free logs as they are: anchors in non-crash lines included.
    filler = [line for case in cases if not case.title for line in case.log.splitlines(keepends=True)]
    boot = []
    for case in cases:
        if case.headers.get("TYPE") == "REBOOT":
            lines = case.log.splitlines(keepends=True)
            first = next(i for i, line in enumerate(lines) if line.startswith("SeaBIOS"))
            for line in lines[first:]:
                if anchors.search(line) and boot:
                    if not re.search(r"Linux version|Booting the kernel|Decompressing|Booting Linux", line):
                        break
                boot.append(line)
            break
    reports = []
    for case in cases:
        titles = [case.title] + case.alts if case.title else []
        if not titles or case.headers.get("CORRUPTED") == "Y" or case.headers.get("TYPE") == "REBOOT":
            continue
        findings = [f for f in analyze_text(case.log) if not f.informational]
        # Plant reports the analyzer titles right standalone, so the bench checks
        # that streaming at scale keeps every one of them.
        if len(findings) == 1 and findings[0].title in titles and "Linux version" not in case.log:
            reports.append((case.log if case.log.endswith("\n") else case.log + "\n", findings[0].title))
    return "".join(filler), "".join(boot), reports


def build_log(path: Path, size_mb: int):
    """Write the log; return [(start, end, expected title)] of the planted reports."""
    filler, boot, reports = _load_material()
    filler_bytes = filler.encode()
    planted = []
    written = 0
    index = 0
    with open(path, "wb") as out:
        while written < size_mb * MB:
            report, title = reports[index % len(reports)]
            index += 1
            segment = boot.encode()
            while len(segment) < MB - 64 * 1024:        # one boot per MB, report at its end
                segment += filler_bytes
            segment = segment[:MB - 64 * 1024]
            segment = segment[:segment.rfind(b"\n") + 1]
            data = report.encode()
            out.write(segment)
            planted.append((written + len(segment), written + len(segment) + len(data), title))
            out.write(data)
            written += len(segment) + len(data)
    return planted


CAPTURED = REPO / "tests/data/console-captured"
SOAK_REPORT_EVERY = 190 << 10
_BANNER = re.compile("|".join(map(re.escape, BOOT_BANNER_ANCHORS)))


def _soak_material():
    """(boot, chatter, repeated WARNING, the same without its end marker, fatal oops) from real consoles."""
    clean = (CAPTURED / "clean-6.12-migrate_fork-1.log").read_bytes()
    hang = (CAPTURED / "hang-6.12-move-pages-sleeps-forever-sysrq-1.log").read_bytes()
    warning = (CAPTURED / "warning-6.12-deferred-split-folio-unpatched-1.log").read_bytes()
    oops = (CAPTURED / "swapops-6.12-fork-1.log").read_bytes()
    started = clean.index(b"WL-START")
    boot = clean[:started]
    # Chatter: the boot's own ordinary lines over and over (banners left out), the
    # clean run's lines after boot (user space's WL- lines without timestamps
    # among them) minus its power-down; the hang capture's boot and its SysRq
    # dump as kstress asked for it; the corpus's crash-free logs.
    ordinary = clean[:clean.index(b"reboot: Power down")]
    ordinary = ordinary[:ordinary.rfind(b"\n") + 1]
    sysrq = hang[:hang.index(b"reboot: ")] if b"reboot: " in hang else hang
    ordinary, sysrq = (b"".join(line for line in part.splitlines(keepends=True)
                                if not _BANNER.search(line.decode("utf-8", "replace"))) for part in (ordinary, sysrq))
    # One boot: the corpus logs' boot banners (firmware, "Linux version") are left out.
    corpus = "".join(line for case in read_dir(corpus_dir() / "report") if not case.title
                     for line in case.log.splitlines(keepends=True) if not _BANNER.search(line)).encode()
    chatter = ordinary + sysrq + corpus
    cut = warning.index(b"page dumped because")
    cut = warning.rfind(b"\n", 0, warning.rfind(b"\n", 0, cut)) + 1
    end = warning.index(b"---[ end trace", cut)
    end_line = warning.index(b"\n", end) + 1
    line_start = warning.rfind(b"\n", 0, end) + 1
    with_marker = warning[cut:end_line]
    without_marker = warning[cut:line_start]
    oops_start = oops.index(b"------------[ cut here ]")
    oops_start = oops.rfind(b"\n", 0, oops_start) + 1
    return boot, chatter, with_marker, without_marker, oops[oops_start:]


def _cycle(chatter: bytes, pos: int, size: int) -> bytes:
    """About ``size`` bytes of whole chatter lines from ``pos`` on, going round the chatter."""
    taken = chatter[pos:]
    while len(taken) < size:
        taken += chatter
    return taken[:taken.rfind(b"\n", 0, size) + 1]


def build_soak_log(path: Path, size_mb: int):
    """Write the soak-shaped log; return [(start, end, expected title)] of the reports that must be found."""
    boot, chatter, with_marker, without_marker, oops = _soak_material()
    planted = []
    size = size_mb * MB
    with open(path, "wb") as out:
        out.write(boot)
        written, index, pos = len(boot), 0, 0
        while written < size * 0.9:
            take = _cycle(chatter, pos, SOAK_REPORT_EVERY)
            pos = (pos + len(take)) % len(chatter)
            report = with_marker if index % 2 == 0 else without_marker
            out.write(take + report)
            written += len(take) + len(report)
            index += 1
        planted.append((written, written + len(oops), "kernel BUG in pfn_swap_entry_folio"))
        out.write(oops)
        written += len(oops)
        while written < size:         # the oops's aftermath: the chatter goes on (oops=panic off)
            take = chatter[:min(len(chatter), size - written)]
            out.write(take)
            written += len(take)
    # The first WARNING is the finding; its repeats are its aftermath.
    first = len(boot) + len(_cycle(chatter, 0, SOAK_REPORT_EVERY))
    planted.insert(0, (first, first + len(with_marker), "WARNING in deferred_split_folio"))
    return planted


def anchor_density(path: Path) -> float:
    """Lines holding an anchor per 10 KB of the log."""
    anchors = re.compile("|".join(map(re.escape, ANCHORS)).encode())
    with open(path, "rb") as f:
        data = f.read(8 * MB)
    return sum(1 for line in data.splitlines() if anchors.search(line)) / (len(data) / 10240)


def _hwm_kb(pid: int) -> int:
    """VmHWM (peak resident set) of a live process, in kB; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return next((int(row.split()[1]) for row in status if row.startswith("VmHWM:")), 0)
    except OSError:
        return 0


def _children(pid: int):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _run(argv, stdout_path, env):
    """(wall seconds, CPU seconds, peak RSS in MB) of a child process and the processes it starts (the scan's grep).

    Peaks are read from /proc (VmHWM) while it runs: the rusage of wait4 would
    report this benchmark's own peak too (Linux keeps the parent's high-water
    mark across fork and exec).
    """
    peaks = {}
    with open(stdout_path, "wb") as out:
        start = time.perf_counter()
        child = subprocess.Popen(argv, stdout=out, env=env)
        while True:
            for pid in [child.pid, *_children(child.pid)]:
                # VmHWM only grows within one program; the latest reading is that
                # of the program the pid runs at the end (a fork's copy of the
                # parent's figure is gone after its exec).
                peaks[pid] = _hwm_kb(pid) or peaks.get(pid, 0)
            waited, status, usage = os.wait4(child.pid, os.WNOHANG)
            if waited:
                break
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode not in (0, 1):
        raise SystemExit(f"{argv[0]} failed with {status}")
    return elapsed, usage.ru_utime + usage.ru_stime, sum(peaks.values()) / 1024


def measure(log: Path, planted, work: Path, repeats: int):
    markers = work / "markers"
    markers.write_text(grep_markers())
    scan_argv = [sys.executable, "-m", "harness.console", "--json", str(log)]
    grep_argv = ["grep", "-E", "-c", "-f", str(markers), str(log)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(LC_ALL="C", PYTHONPYCACHEPREFIX=str(work / "pycache"))
    _run(scan_argv, work / "scan.json", env)      # compiles the bytecode, as installing kstress does
    scan_runs, grep_runs = [], []
    for _ in range(repeats):                      # interleaved, so both see the same machine load
        grep_runs.append(_run(grep_argv, work / "grep.out", env))
        scan_runs.append(_run(scan_argv, work / "scan.json", env))
    findings = json.loads((work / "scan.json").read_text())
    by_start = sorted((f["start"], f["title"]) for f in findings)
    found = 0
    for start, end, title in planted:
        found += any(start <= s < end and t == title for s, t in by_start)
    size = log.stat().st_size / MB
    scan_t, grep_t = min(r[0] for r in scan_runs), min(r[0] for r in grep_runs)
    scan_cpu, grep_cpu = min(r[1] for r in scan_runs), min(r[1] for r in grep_runs)
    return {
        "size_mb": size, "scan_s": scan_t, "scan_mb_s": size / scan_t, "scan_rss_mb": max(r[2] for r in scan_runs),
        "grep_s": grep_t, "grep_mb_s": size / grep_t, "ratio": scan_t / grep_t,
        "scan_cpu": scan_cpu, "grep_cpu": grep_cpu, "cpu_ratio": scan_cpu / grep_cpu, "found": found,
        "planted": len(planted), "findings": len(findings), "grep_lines": int((work / "grep.out").read_text()),
        "all_scan_s": [round(r[0], 3) for r in scan_runs], "all_grep_s": [round(r[0], 3) for r in grep_runs],
    }


def table(results) -> str:
    lines = ["| log | kstress scan | grep | wall ratio | CPU s scan / grep | CPU ratio | peak RSS | "
             "reports found, right title |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        lines.append(f"| {r['size_mb']:.0f} MB | {r['scan_mb_s']:.0f} MB/s | {r['grep_mb_s']:.0f} MB/s | "
                     f"{r['ratio']:.1f}x | {r['scan_cpu']:.2f} / {r['grep_cpu']:.2f} | {r['cpu_ratio']:.1f}x | "
                     f"{r['scan_rss_mb']:.0f} MB | {r['found']}/{r['planted']} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=("soak", "corpus"), default="soak")
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--factor", type=int, default=4, help="second log is this many times larger")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", help="directory to keep the generated logs in")
    parser.add_argument("--quick", action="store_true", help="smoke test: --mb 4 --factor 2 --repeats 1")
    args = parser.parse_args()
    if args.quick:
        args.mb, args.factor, args.repeats = 4, 2, 1
    print(f"{platform.node()}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"load average {os.getloadavg()[0]:.1f}, {args.repeats} runs each (best shown)", flush=True)
    with tempfile.TemporaryDirectory(prefix="kstress-bench-") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = []
        for size in (args.mb, args.mb * args.factor):
            log = work / f"console-{size}mb.log"
            planted = build_soak_log(log, size) if args.shape == "soak" else build_log(log, size)
            results.append(measure(log, planted, work, args.repeats))
            print(f"{args.shape} log: {anchor_density(log):.1f} lines holding an anchor per 10 KB", flush=True)
            r = results[-1]
            print(f"{r['size_mb']:.0f} MB: scan {r['scan_s']:.2f}s = {r['scan_mb_s']:.0f} MB/s, "
                  f"CPU {r['scan_cpu']:.2f}s, peak RSS {r['scan_rss_mb']:.0f} MB | grep {r['grep_s']:.2f}s = "
                  f"{r['grep_mb_s']:.0f} MB/s, CPU {r['grep_cpu']:.2f}s "
                  f"| scan/grep {r['ratio']:.1f}x wall, {r['cpu_ratio']:.1f}x CPU "
                  f"| planted reports found with right title "
                  f"{r['found']}/{r['planted']} ({r['findings']} findings) | runs scan {r['all_scan_s']} "
                  f"grep {r['all_grep_s']}", flush=True)
            if not args.keep:
                log.unlink()
        small, big = results
        print(f"peak RSS {small['scan_rss_mb']:.0f} MB at {small['size_mb']:.0f} MB vs "
              f"{big['scan_rss_mb']:.0f} MB at {big['size_mb']:.0f} MB "
              f"({big['scan_rss_mb'] / small['scan_rss_mb']:.2f}x)")
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
        print(table(results))
        ok = all(r["found"] == r["planted"] for r in results)
        if args.shape == "soak":
            ok = ok and all(r["findings"] <= 3 for r in results)   # the WARNING, the oops (and nothing else)
        sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
