"""mixer on the host with fake children (small Python scripts in --bin-dir):
the seeded plan, output prefixed per child, exit statuses (1 wins, then
125), a hung child, SIGTERM reaching every child, a missing child."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from workload_host import assert_usage_error, counts

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "workloads" / "mixer" / "mixer.py"
# A fake workload: its behaviour is its name's first word.
FAKE = f"""#!{sys.executable}
import os, signal, sys, time
name = os.path.basename(sys.argv[0])
kind = name.split("_")[0]
duration = int(sys.argv[sys.argv.index("--duration") + 1])
marks = os.environ["MIXER_TEST_MARKS"]

def term(signum, frame):
    open(os.path.join(marks, f"{{name}}.{{os.getpid()}}.term"), "w").close()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)

signal.signal(signal.SIGTERM, term)
open(os.path.join(marks, f"{{name}}.{{os.getpid()}}.start"), "w").close()
print(name, "says hello", " ".join(sys.argv[1:]), flush=True)
print(name, "to stderr", file=sys.stderr, flush=True)
time.sleep(1000 if kind == "hang" else duration if kind == "knob" else min(duration, 1.0))
print(name, "summary: ok=1", flush=True)
sys.exit({{"kernel": 1, "broken": 125, "usage": 2}}.get(kind, 0))
"""
START = re.compile(r"^start t=\S+ child=(\S+)#(\d+) lane=(\d+) start=(\S+) duration=(\d+) seed=(\d+) pid=(\d+)$", re.M)
STOP = re.compile(r"^stop t=\S+ child=(\S+)#(\d+) status=(-?\d+) ran=\S+ result=(\w+)", re.M)


@pytest.fixture
def bindir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "bin"
    d.mkdir()
    for name in ("ok_a", "ok_b", "ok_c", "kernel_x", "broken_y", "usage_z", "hang_h", "knob_churn"):
        (d / name).write_text(FAKE)
        (d / name).chmod(0o755)
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("MIXER_TEST_MARKS", str(marks))
    return d


def mixer(bindir: Path | None, *args: str, duration: int = 8, seed: int = 5, timeout: float = 120):
    extra = ["--bin-dir", str(bindir)] if bindir else []
    return subprocess.run([sys.executable, str(SCRIPT), "--duration", str(duration), "--seed", str(seed),
                           "--min-child", "1", *extra, *args], capture_output=True, text=True, timeout=timeout)


def plan(*args: str, duration: int = 60, seed: int = 5) -> list[tuple[str, int, float, int]]:
    res = mixer(None, "--plan", *args, duration=duration, seed=seed)
    assert res.returncode == 0, res.stderr
    return [(m[0], int(m[1]), float(m[2]), int(m[3])) for m in re.findall(
        r"^plan child=(\S+)#\d+ lane=(\d+) start=(\S+) duration=(\d+) seed=\d+$", res.stdout, re.M)]


def test_plan_is_seeded_fits_the_duration_and_mixes():
    args = ("--children", "a,b,c", "--knob-churn", "--min-child", "5")
    first = plan(*args)
    assert first == plan(*args) and first != plan(*args, seed=6)
    assert all(start + length <= 60 * 0.9 for _, _, start, length in first)
    workloads = [name for name, *_ in first if name != "knob_churn"]
    assert set(workloads[:3]) == {"a", "b", "c"} and len(workloads) > 3
    assert [(name, start, length) for name, _, start, length in first if name == "knob_churn"] == [
        ("knob_churn", 0.0, 54)]
    lanes = {lane: start for _, lane, start, _ in reversed(first)}
    assert lanes[0] == 0.0 and 0 < lanes[1] <= 3  # staggered
    # Both lanes busy at some moment: the children overlap.
    spans = [(start, start + length) for name, _, start, length in first if name != "knob_churn"]
    assert any(a0 < b1 and b0 < a1 for i, (a0, a1) in enumerate(spans) for (b0, b1) in spans[i + 1:])


def test_children_run_prefixed_and_all_pass(bindir):
    res = mixer(bindir, "--children", "ok_a,ok_b,ok_c", "--knob-churn")
    assert res.returncode == 0, res.stdout + res.stderr
    starts, stops = START.findall(res.stdout), STOP.findall(res.stdout)
    assert len(starts) == len(stops) >= 3
    assert {s[0] for s in starts} == {"ok_a", "ok_b", "ok_c", "knob_churn"}
    for name, n, _lane, _start, duration, seed, _pid in starts:
        label = f"[{name}#{n}] "
        assert f"{label}{name} says hello --duration {duration} --seed {seed}\n" in res.stdout
        assert f"{label}{name} to stderr\n" in res.stdout and f"{label}{name} summary: ok=1\n" in res.stdout
    assert all(s[3] == "ok" and s[2] == "0" for s in stops)
    # Output lines are whole lines: each is one of ours or one of a child's, prefixed.
    assert all(re.match(r"(\[\w+#\d+\] |start |stop |mixer )", ln) for ln in res.stdout.splitlines()), res.stdout
    c = counts(res.stdout, "mixer")
    assert c["ran"] == len(starts) and c["passed"] == len(starts) and c["status"] == 0
    assert c["kernel_faults"] == c["hung"] == c["workload_failures"] == 0


@pytest.mark.parametrize("children,status,cause", [
    ("ok_a,kernel_x", 1, r"kernel_x#\d+ exited 1: the kernel's fault"),
    ("ok_a,broken_y", 125, r"broken_y#\d+ exited 125"),
    ("ok_a,usage_z", 125, r"usage_z#\d+ exited 2"),
    ("broken_y,kernel_x", 1, r"kernel_x#\d+ exited 1"),
])
def test_a_childs_status_becomes_mixers(bindir, children, status, cause):
    res = mixer(bindir, "--children", children)
    assert res.returncode == status, res.stdout + res.stderr
    assert re.search(rf"^mixer result: status={status} cause: .*{cause}", res.stdout, re.M), res.stdout
    if status == 1:
        assert "broken_y" not in res.stdout.split("mixer result:")[1]  # 1 is named, not the 125s


def test_a_hung_child_is_shown_killed_and_the_kernels_fault(bindir, tmp_path):
    res = mixer(bindir, "--children", "hang_h", "--grace", "1", "--stop-wait", "5", duration=4)
    assert res.returncode == 1, res.stdout + res.stderr
    assert re.search(r"^mixer hang: hang_h#1 \(pid \d+\) still runs \d+s after its \d+s", res.stdout, re.M)
    assert re.search(r"^mixer hang:   tid \d+ ", res.stdout, re.M), res.stdout
    assert re.search(r"^stop t=\S+ child=hang_h#1 status=-9 .* result=hung$", res.stdout, re.M), res.stdout
    assert "cause: hang_h#1 still running" in res.stdout


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_sigterm_reaches_every_child_and_leaves_none(bindir, tmp_path):
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--duration", "60", "--seed", "5", "--children",
                             "hang_h,ok_a", "--knob-churn", "--bin-dir", str(bindir), "--stop-wait", "10"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    marks = tmp_path / "marks"
    deadline = time.monotonic() + 30
    while len(list(marks.glob("*.start"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM, (out, err)
    started = {p.name.removesuffix(".start") for p in marks.glob("*.start")}
    termed = {p.name.removesuffix(".term") for p in marks.glob("*.term")}
    assert len(started) == 3 and termed == started, (started, termed, out)
    assert not [m for m in START.findall(out) if alive(int(m[6]))]
    assert "interrupted=SIGTERM" in out and counts(out, "mixer")["stopped"] == len(started)


def test_a_missing_child_is_mixers_own_trouble(bindir):
    res = mixer(bindir, "--children", "ok_a,not_there")
    assert res.returncode == 125, res.stdout
    assert f"no {bindir}/not_there" in res.stdout and not START.search(res.stdout)


@pytest.mark.parametrize("args", [
    ["--duration", "5", "--seed", "1"],                                   # no --children
    ["--duration", "5", "--seed", "1", "--children", ","],
    ["--duration", "x", "--seed", "1", "--children", "a"],
    ["--duration", "5", "--seed", "1", "--children", "a,knob_churn"],
])
def test_usage_errors(args):
    assert_usage_error(subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                                      timeout=30))
