"""Kind selftest: a program of the kernel's own tools/testing/selftests/mm,
built from the source tree the kernel under test was built from (its source
and patch series), linked statically so that the initramfs guest runs it too,
and judged by its TAP output.

Two cache levels under <cache>/selftests:
  tree-<key>/       what the mm selftests read from the kernel tree: their
                    sources (src/) and the exported UAPI headers (usr/include,
                    `make headers`), keyed by the tree's identity: made once
                    per source and series, under the working copy's lock;
  <program>-<key>/  one static binary, keyed by the tree, toolchain, flags and
                    the static libraries linked in.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from harness import log
from harness.cache import cache_root, clean_stale_tmp, make_tmp_dir, publish_dir
from harness.cache_entries import touch
from harness.errors import CouldNotTest
from harness.kernel import BuildRequest, KernelBuild, patched_tree
from harness.procs import die_with_parent
from harness.stress.manifest import Workload
from harness.toolchain import CC, toolchain_id

TREE_SCHEMA = 1
SELFTESTS = "tools/testing/selftests"
MM_DIR = f"{SELFTESTS}/mm"
# What the mm selftests' Makefile and sources read from the kernel tree,
# besides the exported headers. Paths a tree lacks are left out (the
# compiler then names what is missing).
TREE_FILES = (
    f"{SELFTESTS}/lib.mk", f"{SELFTESTS}/kselftest.h", f"{SELFTESTS}/kselftest_harness.h", MM_DIR,
    # The mm Makefile probes the compiler with these on x86_64.
    f"{SELFTESTS}/x86/check_cc.sh", f"{SELFTESTS}/x86/trivial_program.c",
    f"{SELFTESTS}/x86/trivial_32bit_program.c", f"{SELFTESTS}/x86/trivial_64bit_program.c",
    "tools/include",  # TOOLS_INCLUDES
    "include/vdso",   # ksm_tests: <include/vdso/time64.h>, through -I $(top_srcdir)
    "mm/gup_test.h",  # cow, gup_test, gup_longterm
)
LDFLAGS = "-static"  # the initramfs guest has no libc
# Static libraries the mm Makefile links some programs with: part of the key,
# and the Debian package to name when one is missing.
STATIC_LIBS = {"libnuma.a": "libnuma-dev", "liburing.a": "liburing-dev", "libcap.a": "libcap-dev"}
KSFT_SKIP = 4  # kselftest.h: the exit status of a test that tested nothing here
# (The guest runs it from its own directory: manifest.KINDS["selftest"].command.)


def program_of(w: Workload) -> str:
    return w.settings["program"]


# ---------------------------------------------------------------- TAP

_RESULT = re.compile(r"^\s*(not ok|ok)\b\s*(\d+)?\s*(?:-\s*)?(.*?)\s*$")
_DIRECTIVE = re.compile(r"\s*#\s*(SKIP|TODO|XFAIL|XPASS)\b:?\s*(.*)$", re.I)
_PLAN = re.compile(r"^\s*1\.\.(\d+)\s*(?:#\s*SKIP\b:?\s*(.*))?$", re.I)
_BAIL = re.compile(r"^\s*Bail out!\s*(.*)$")
# The name a test announces before its result, when the result line has none:
# "# [RUN] test_unmerge" (kselftest.h users), "#  RUN  migration.private_anon ..." (the harness).
# Programs that do not speak TAP (khugepaged) print a failed check in red,
# and exit with the number of failures (which may be 4, KSFT_SKIP's value).
_RED = re.compile(r"\x1b\[31m(.*?)\x1b\[0m")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_RUN = re.compile(r"^\s*#\s*(?:\[RUN\]|RUN\b)\s*(.*?)\s*(?:\.\.\.)?\s*$")


@dataclass
class TapResult:
    number: int | None
    ok: bool
    description: str
    directive: str = ""  # SKIP, TODO, XFAIL, XPASS (upper case) or ""
    reason: str = ""
    line: str = ""

    @property
    def failed(self) -> bool:
        return not self.ok and self.directive not in ("SKIP", "TODO")

    @property
    def skipped(self) -> bool:
        return self.directive == "SKIP"


@dataclass
class TapSummary:
    planned: int | None = None
    results: list[TapResult] = field(default_factory=list)
    skip_all: str | None = None  # "1..0 # SKIP why"
    bail_out: str | None = None

    @property
    def failed(self) -> list[TapResult]:
        return [r for r in self.results if r.failed]

    @property
    def skipped(self) -> list[TapResult]:
        return [r for r in self.results if r.skipped and not r.failed]

    @property
    def passed(self) -> list[TapResult]:
        return [r for r in self.results if not r.failed and not r.skipped]

    def counts(self) -> dict[str, int]:
        return {"passed": len(self.passed), "failed": len(self.failed), "skipped": len(self.skipped)}

    def as_dict(self) -> dict:
        return {"planned": self.planned, "passed": len(self.passed),
                "failed": [_name(r) for r in self.failed],
                "skipped": [f"{_name(r)}: {r.reason}" if r.reason else _name(r) for r in self.skipped]}


def _name(r: TapResult) -> str:
    return f"{r.number} {r.description}".strip() if r.number is not None else r.description


def parse_tap(output: str) -> TapSummary:
    """The TAP (KTAP) lines of a selftest's output: its plan, each result
    with its directive, a whole-test skip and a bail out. Other lines
    (diagnostics, the kernel's or the program's own chatter) are ignored."""
    tap = TapSummary()
    by_number: dict[int, int] = {}  # result number -> index in tap.results
    running = ""
    for line in output.splitlines():
        line = line.rstrip("\r")
        run = _RUN.match(line)
        if run:
            running = run.group(1)
            continue
        plan = _PLAN.match(line)
        if plan:
            tap.planned = int(plan.group(1))
            if plan.group(2) is not None and tap.planned == 0:
                tap.skip_all = plan.group(2).strip() or "skipped"
            continue
        bail = _BAIL.match(line)
        if bail:
            tap.bail_out = bail.group(1).strip() or "Bail out!"
            continue
        m = _RESULT.match(line)
        if not m:
            continue
        rest, directive, reason = m.group(3), "", ""
        d = _DIRECTIVE.search(rest)
        if d:
            rest, directive, reason = rest[:d.start()], d.group(1).upper(), d.group(2).strip()
        number = int(m.group(2)) if m.group(2) else None
        result = TapResult(number, m.group(1) == "ok", rest.strip() or running, directive, reason, line.strip())
        running = ""
        # One result per number: a forked child flushing a copy of its
        # parent's buffered output repeats some. A failure is kept.
        if number in by_number:
            i = by_number[number]
            if not tap.results[i].failed:
                tap.results[i] = result
            continue
        if number is not None:
            by_number[number] = len(tap.results)
        tap.results.append(result)
    return tap


@dataclass
class Verdict:
    summary: TapSummary
    failure: tuple[str, str, str] | None = None  # (message, text, failure type)
    skipped: str | None = None


def judge(w: Workload, exit_status: int, output: str) -> Verdict:
    """A "not ok" is a failed testcase with its output; so is an exit status
    the TAP does not explain. Exit status 4 (KSFT_SKIP), or every subtest
    skipped, means the program tested nothing here: skipped, with its reason."""
    tap = parse_tap(output)
    program = program_of(w)
    failed = tap.failed
    red = [ln for ln in output.splitlines() if _RED.search(ln)] if not tap.results else []
    if red:
        check = _ANSI.sub("", red[0]).strip()
        more = f" (and {len(red) - 1} more)" if len(red) > 1 else ""
        return Verdict(tap, (f"{program}: {check}{more}", _ANSI.sub("", output[-8000:]), "selftest"))
    if failed:
        first = failed[0]
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        text = "\n".join(r.line for r in failed) + "\n\n" + output[-8000:]
        return Verdict(tap, (f"{program}: not ok {_name(first)}{more}", text, "selftest"))
    reason = tap.skip_all or next((r.reason for r in tap.skipped if r.reason), None)
    if exit_status == KSFT_SKIP:  # a program without TAP says why in its last words
        last = next((ln.strip() for ln in reversed(output.splitlines()) if ln.strip()), "exited with KSFT_SKIP")
        return Verdict(tap, skipped=f"{program}: {reason or _ANSI.sub('', last)}")
    if exit_status == 0 and tap.skipped and not tap.passed:
        why = reason or "no reason given"
        return Verdict(tap, skipped=f"{program}: all {len(tap.skipped)} subtests skipped ({why})")
    if exit_status != 0:
        why = f": Bail out! {tap.bail_out}" if tap.bail_out else ""
        return Verdict(tap, (f"{program} exited with status {exit_status}{why}", output[-8000:], "selftest"))
    if tap.planned is not None and len(tap.results) < tap.planned:
        return Verdict(tap, (f"{program}: planned {tap.planned} subtests, reported {len(tap.results)}",
                             output[-8000:], "selftest"))
    return Verdict(tap)


# ---------------------------------------------------------------- build

def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:20]


def tree_key(kernel: KernelBuild) -> str:
    """The identity of the kernel's source tree: its source and patch series
    (not its .config: the selftests do not read it)."""
    inputs = kernel.meta.get("key_inputs") or {}
    return _digest({"schema": TREE_SCHEMA, "files": TREE_FILES,
                    "source": inputs.get("source"), "patches": inputs.get("patches")})


def static_libs() -> dict[str, str]:
    """sha256 of each static library the link may use ("absent" if none)."""
    out = {}
    for name in STATIC_LIBS:
        res = subprocess.run([CC, f"-print-file-name={name}"], capture_output=True, text=True, check=False)
        path = Path(res.stdout.strip())
        out[name] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_absolute() and path.is_file() \
            else "absent"
    return out


def program_key(w: Workload, tree: str) -> str:
    return _digest({"tree": tree, "toolchain": toolchain_id(), "ldflags": LDFLAGS, "cflags": w.settings["cflags"],
                    "program": program_of(w), "libs": static_libs()})


def _make(argv: list[str], log_path: Path) -> int:
    with open(log_path, "a") as logf:
        logf.write(f"$ {' '.join(argv)}\n")
        logf.flush()
        return subprocess.run(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              env=dict(os.environ, LC_ALL="C"), check=False,
                              preexec_fn=die_with_parent(signal.SIGTERM)).returncode


def _error_lines(log_path: Path, limit: int = 20) -> str:
    lines = log_path.read_text(errors="replace").splitlines()
    errors = [ln for ln in lines if re.search(r"error|cannot find|No rule|\*\*\*", ln)] or lines[-limit:]
    return "\n".join("  " + ln for ln in errors[:limit])


def _parent(cache_dir: Path | None) -> Path:
    return (Path(cache_dir) if cache_dir is not None else cache_root()) / "selftests"


def ensure_tree(kernel: KernelBuild, req: BuildRequest, cache_dir: Path | None) -> Path:
    """The cached copy of what the mm selftests need from ``kernel``'s tree."""
    parent = _parent(cache_dir)
    final = parent / f"tree-{tree_key(kernel)}"
    if final.is_dir():
        touch(final)
        return final
    with patched_tree(req, kernel, cache_dir) as work:
        if final.is_dir():  # made by another kstress while we waited for the lock
            return final
        clean_stale_tmp(parent)
        tmp = make_tmp_dir(parent, "tree-")
        try:
            log.info(f"selftests: copying tools/testing/selftests/mm and exporting the headers of {work}")
            for rel in TREE_FILES:
                src, dst = work / rel, tmp / "src" / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                if src.is_dir():
                    shutil.copytree(src, dst, symlinks=True)
                elif src.is_file():
                    shutil.copy2(src, dst)
            if not (tmp / "src" / MM_DIR / "Makefile").is_file():
                raise CouldNotTest(f"the kernel tree {work} has no {MM_DIR}/Makefile: no mm selftests to build")
            log_path = tmp / "headers.log"
            jobs = f"-j{os.cpu_count() or 1}"
            if _make(["make", "-C", str(work), f"O={tmp / 'obj'}", jobs, "headers"], log_path):
                raise CouldNotTest(f"make headers failed in {work}:\n{_error_lines(log_path)}")
            os.rename(tmp / "obj" / "usr", tmp / "usr")
            shutil.rmtree(tmp / "obj")
            publish_dir(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _missing_package(log_text: str) -> str:
    for lib, package in STATIC_LIBS.items():
        if f"cannot find -l{lib[3:-2]}" in log_text:
            return f" (install {package}: the selftests are linked statically)"
    return ""


def build(w: Workload, kernel: KernelBuild | None, req: BuildRequest | None,
          cache_dir: Path | None = None) -> Path:
    """The static binary of ``w``'s program, built from ``kernel``'s own tree."""
    if kernel is None or req is None:
        raise CouldNotTest(f"workload {w.name}: kind selftest is built from the kernel under test's "
                           f"tree, and no kernel was given")
    program = program_of(w)
    parent = _parent(cache_dir)
    final = parent / f"{program}-{program_key(w, tree_key(kernel))}"
    binary = final / program
    if binary.is_file():
        touch(final)
        return binary
    tree = ensure_tree(kernel, req, cache_dir)
    tmp = make_tmp_dir(parent, f"{program}-")
    try:
        # A private copy of the sources: the Makefile writes its probe's
        # result (local_config.h) next to them.
        shutil.copytree(tree / "src", tmp / "src", symlinks=True)
        out = tmp / "out"
        out.mkdir()
        log_path = tmp / "build.log"
        log.info(f"building selftest {program} (workload {w.name})")
        argv = ["make", "-C", str(tmp / "src" / MM_DIR), f"CC={CC}", f"OUTPUT={out}",
                f"KHDR_INCLUDES=-isystem {tree / 'usr' / 'include'}", f"LDFLAGS={LDFLAGS}",
                f"EXTRA_CFLAGS={' '.join(w.settings['cflags'])}", str(out / program)]
        if _make(argv, log_path) or not (out / program).is_file():
            text = log_path.read_text(errors="replace")
            raise CouldNotTest(f"selftest {program} (workload {w.name}) does not build from the kernel's "
                               f"tree{_missing_package(text)}:\n{_error_lines(log_path)}")
        keep = tmp / "keep"
        keep.mkdir()
        os.rename(out / program, keep / program)
        shutil.copy2(log_path, keep / "build.log")
        os.chmod(keep, 0o755)
        publish_dir(keep, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return binary


def guest_files(w: Workload, kernel: KernelBuild | None, req: BuildRequest | None,
                cache_dir: Path | None = None) -> dict[str, Path]:
    """The binary goes to /usr/bin/<workload name>; the command runs it as its program."""
    return {w.name: build(w, kernel, req, cache_dir)}
