"""What the C workloads' tests share: building a workload's static binary
(and the module fixture that holds it), running it on the host, reading its
key=value summary, notes and decisions, the checks every seeded and
self-verifying workload must pass (its run took the decisions --plan
prints, a flipped byte is reported), what the host offers it (NUMA nodes
with memory, swap devices), and the Kconfig symbols of Debian's 6.12 that
a manifest's kernel_options must name."""

from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

import harness.stress.manifest as wl
from harness.stress.adapters import c as c_adapter

# What kernel console output looks like; a workload's output must not.
KERNEL_LIKE = re.compile(r"\[\s*\d+\.\d+\]|BUG|WARNING|Oops|panic|Call Trace")
KEY_VALUE = re.compile(r"\b(\w+)=(\S+)")
PT_DYNAMIC, PT_INTERP = 2, 3
DEBIAN_TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")


def workload(name: str) -> wl.Workload:
    """The repository workload's manifest."""
    return wl.load_workloads()[name]


def c_workload_manifest(name: str) -> wl.Workload:
    """The manifest of a C workload, with what every one has: 30 s by
    default, run as /usr/bin/<name> --duration D --seed S."""
    w = workload(name)
    assert w.default_duration == 30
    assert w.argv(30, 4) == [f"/usr/bin/{name}", "--duration", "30", "--seed", "4"]
    return w


def build(name: str, cache: Path) -> Path:
    """The repository workload's static binary, built into the cache ``cache``."""
    return c_adapter.build(workload(name), cache)


def binary_fixture(name: str):
    """The module fixture ``binary`` of a workload's tests (``binary =
    binary_fixture(NAME)``): its static binary, built once per module into a
    cache of its own, so a test sees the workload as its sources are now."""

    @pytest.fixture(scope="module", name="binary")
    def binary(tmp_path_factory) -> Path:
        return build(name, tmp_path_factory.mktemp("cache"))

    return binary


def run(binary: Path, *args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=timeout, **kw)


def sigterm_when_ready(argv: list[str], ready: Callable[[], bool], poll: float = 0.05,
                       wait: float = 30) -> tuple[int, str, str]:
    """Runs argv, sends it SIGTERM as soon as ready() holds (which must
    happen within ``wait`` seconds, while it runs) and returns its exit
    status, stdout and stderr; kills it if the test fails first."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + wait
        while not ready():
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(poll)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, err


def assert_clean_run(res: subprocess.CompletedProcess) -> None:
    """Exit 0, and nothing on stdout that looks like the kernel's console."""
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert not KERNEL_LIKE.search(res.stdout), res.stdout


def summary(out: str, name: str) -> dict[str, str]:
    """The key=value words of the summary lines ("<name> <part>: ..."; not
    progress or note lines); each key must appear once."""
    lines = [ln for ln in out.splitlines()
             if ln.startswith(f"{name} ") and not re.match(rf"{name} (progress|note):", ln)]
    pairs = [kv for ln in lines for kv in KEY_VALUE.findall(ln)]
    dup = [k for k, n in Counter(k for k, _ in pairs).items() if n > 1]
    assert not dup, f"keys printed twice: {dup}\n{out}"
    return dict(pairs)


DECISION = re.compile(r"^decision (\w+) n=(\d+) .*$", re.M)


def decisions(out: str) -> dict[str, list[str]]:
    """The "decision <stream> n=<n> ..." lines (--log, --plan), by stream."""
    streams: dict[str, list[str]] = {}
    for m in DECISION.finditer(out):
        streams.setdefault(m.group(1), []).append(m.group(0))
    return streams


def counts(out: str, name: str) -> dict[str, int]:
    """The summary's whole-number values."""
    return {k: int(v) for k, v in summary(out, name).items() if v.isdigit()}


def notes(out: str) -> str:
    """The "<name> note: ..." lines, which say what could not happen and why."""
    return "\n".join(ln for ln in out.splitlines() if " note: " in ln)


def assert_progress_has_no_keys(out: str) -> None:
    """Progress lines are for humans: no key=value word a summary parser could take."""
    for line in out.splitlines():
        if " progress: " in line:
            assert "=" not in line, line


def assert_took_planned_decisions(binary: Path, out: str, seed: int,
                                  n: int) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """A run that logged its decisions (--log n) took the ones --plan n
    derives from the seed alone, each stream's in order.  Returns the
    planned and the taken decisions by stream."""
    plan = run(binary, "--seed", str(seed), "--plan", str(n))
    assert plan.returncode == 0, plan.stderr
    planned, taken = decisions(plan.stdout), decisions(out)
    assert set(taken) <= set(planned), (taken.keys(), planned.keys())
    for stream, lines in taken.items():
        assert lines == planned[stream][:len(lines)], stream
    return planned, taken


def plan_decisions_of_the_seed(binary: Path, seed: int, n: int) -> dict[str, list[str]]:
    """The "decision" lines of --plan n by stream, n each: the same for the
    same seed, others for the next seed."""
    first = run(binary, "--seed", str(seed), "--plan", str(n))
    again = run(binary, "--seed", str(seed), "--plan", str(n))
    other = run(binary, "--seed", str(seed + 1), "--plan", str(n))
    assert first.returncode == 0 and first.stdout == again.stdout
    assert other.returncode == 0 and other.stdout != first.stdout
    streams = decisions(first.stdout)
    assert all(len(lines) == n for lines in streams.values()), streams
    return streams


def plan_text(binary: Path, seed: int, n: int = 25, *args: str) -> str:
    """What --plan n prints for seed (and further options)."""
    res = run(binary, "--plan", str(n), "--seed", str(seed), *args)
    assert res.returncode == 0, res.stderr
    return res.stdout


def assert_plan_of_the_seed(binary: Path, streams: tuple[str, ...], *args: str, n: int = 25) -> str:
    """--plan n ("plan <stream> <i>: ..." lines) is the same for seed 7 each
    time and another for seed 8, with n lines for each of streams.  Returns
    the plan of seed 7."""
    first = plan_text(binary, 7, n, *args)
    assert first == plan_text(binary, 7, n, *args) and first != plan_text(binary, 8, n, *args)
    lines = first.splitlines()
    for stream in streams:
        assert sum(ln.startswith(f"plan {stream} ") for ln in lines) == n, (stream, first)
    return first


def assert_flipped_byte_found(binary: Path, res: subprocess.CompletedProcess, found: str,
                              *plan_args: str, seed: int = 5) -> None:
    """A --self-test-corrupt run of seed: exit 1, and the data mismatch that
    ``found`` matches (its group 1 the offset) is at the byte the workload
    says it flipped, which --plan drew from the same seed."""
    assert res.returncode == 1, (res.returncode, res.stderr)
    flipped = re.search(r"flipping the byte at offset (0x[0-9a-f]+)", res.stderr)
    mismatch = re.search(found, res.stderr)
    assert flipped and mismatch and mismatch.group(1) == flipped.group(1), res.stderr
    assert f"byte at offset {flipped.group(1)}\n" in plan_text(binary, seed, 1, *plan_args)


def assert_child_found_flipped_byte(res: subprocess.CompletedProcess, name: str) -> None:
    """A --self-test-corrupt run whose fork child flipped a byte of a page
    it inherited (a COW write: the parent keeps its copy): the child reports
    the mismatch with the page's state, the parent exits 1 for it."""
    assert res.returncode == 1, (res.stdout, res.stderr)
    err = res.stderr
    assert "data mismatch in child of fork #" in err, err
    assert "first differing offset 0x123 in the page" in err, err
    assert re.search(r"expected 0x[0-9a-f]{16}, found 0x[0-9a-f]{16}", err), err
    assert "page state: pagemap: present=1" in err, err
    assert re.search(r"child \d+ of fork #\d+ found data that differs from what it inherited", err), err
    assert f"{name} summary" not in res.stdout


def assert_migration_as_the_host_allows(out: str, name: str) -> None:
    """nodes= is the host's nodes with memory; with two, migration=on and
    pages moved, with one, migration=off, none moved and a note says why."""
    values, text = counts(out, name), summary(out, name)
    assert values["nodes"] == max(1, nodes_with_memory()) or not numa_syscalls(), out
    if values["nodes"] >= 2:
        assert text["migration"] == "on" and values["pages_moved"] > 0, out
    else:
        assert text["migration"] == "off" and values["pages_moved"] == 0, out
        assert f"{name} note: one NUMA node" in out or not numa_syscalls(), out


def has_program_header(path: Path, wanted: int) -> bool:
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2, "expected a 64-bit ELF"
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    return any(struct.unpack_from("<I", data, phoff + i * phentsize)[0] == wanted for i in range(phnum))


def assert_static(binary: Path) -> None:
    """An executable with no interpreter and no dynamic section: it runs in
    an initramfs guest without libc."""
    assert os.access(binary, os.X_OK)
    assert not has_program_header(binary, PT_INTERP)
    assert not has_program_header(binary, PT_DYNAMIC)


def assert_usage_error(res: subprocess.CompletedProcess) -> None:
    """Exit 2 with the usage on stderr, and nothing on stdout."""
    assert res.returncode == 2 and "usage:" in res.stderr, (res.args, res.stderr)
    assert res.stdout == "", (res.args, res.stdout)


def active_swap_devices() -> int:
    """The host's active swap devices (the lines of /proc/swaps after its header)."""
    try:
        return max(0, len(Path("/proc/swaps").read_text().splitlines()) - 1)
    except OSError:
        return 0


def numa_syscalls() -> bool:
    """Whether the host kernel has NUMA (its sysfs has node0): else
    move_pages is ENOSYS and a workload cannot even ask where pages are."""
    return Path("/sys/devices/system/node/node0").is_dir()


def nodes_with_memory() -> int:
    """The host's NUMA nodes with memory (1 without NUMA sysfs)."""
    try:
        text = Path("/sys/devices/system/node/has_memory").read_text().strip()
    except OSError:
        return 1
    count = 0
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        count += int(hi or lo) - int(lo) + 1
    return count


def kconfig_symbols_6_12(tmp_path: Path) -> set[str]:
    """Every config symbol Debian's 6.12 source defines (only its Kconfig
    files are unpacked: the whole tree is 1.7 GB); skips without the tarball."""
    if not DEBIAN_TARBALL.is_file():
        pytest.skip(f"{DEBIAN_TARBALL} not installed (Debian package linux-source-6.12)")
    subprocess.run(["tar", "-xf", str(DEBIAN_TARBALL), "-C", str(tmp_path), "--wildcards",
                    "linux-source-6.12/*Kconfig*"], check=True)
    defined = set()
    for f in (tmp_path / "linux-source-6.12").rglob("Kconfig*"):
        defined.update(re.findall(r"^\s*(?:menu)?config\s+(\w+)\s*$", f.read_text(errors="replace"), re.M))
    assert len(defined) > 10000, len(defined)
    return defined
