"""knob_churn on the host against a fake sysfs root (--sysfs-root): the knobs
it finds, the seeded decisions (--dry-run prints those a real run takes),
every change logged with its clocks, everything restored at the end and on
SIGTERM, and a knob that reads back what it was not set to as the kernel's
fault. Nothing here writes the host's own /sys or /proc."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from workload_host import KERNEL_LIKE, assert_usage_error, counts

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "workloads" / "knob_churn" / "knob_churn.py"
THP = "sys/kernel/mm/transparent_hugepage"
MEM = "sys/devices/system/memory"
FILES = {
    f"{THP}/enabled": "[always] madvise never\n",
    f"{THP}/defrag": "always defer defer+madvise [madvise] never\n",
    f"{THP}/shmem_enabled": "always within_size advise [never] deny force\n",
    f"{THP}/hugepages-64kB/enabled": "always inherit madvise [never]\n",
    f"{THP}/hugepages-2048kB/enabled": "always [inherit] madvise never\n",
    f"{THP}/khugepaged/defrag": "1\n",
    f"{THP}/khugepaged/pages_to_scan": "4096\n",
    f"{THP}/khugepaged/scan_sleep_millisecs": "10000\n",
    f"{THP}/khugepaged/alloc_sleep_millisecs": "60000\n",
    f"{THP}/khugepaged/max_ptes_none": "511\n",
    "proc/sys/vm/compaction_proactiveness": "20\n",
    "proc/sys/kernel/numa_balancing": "0\n",
    "proc/sys/vm/drop_caches": "",
    "proc/sys/vm/compact_memory": "",
    f"{MEM}/memory8/state": "online\n", f"{MEM}/memory8/valid_zones": "Movable\n",
    f"{MEM}/memory9/state": "online\n", f"{MEM}/memory9/valid_zones": "Movable\n",
    f"{MEM}/memory1/state": "online\n", f"{MEM}/memory1/valid_zones": "Normal\n",  # not churned
}
KNOBS = ["thp.enabled", "thp.defrag", "thp.shmem_enabled", "thp.hugepages-64kB.enabled",
         "thp.hugepages-2048kB.enabled", "khugepaged.defrag", "khugepaged.pages_to_scan",
         "khugepaged.scan_sleep_millisecs", "khugepaged.alloc_sleep_millisecs", "khugepaged.max_ptes_none",
         "vm.compaction_proactiveness", "kernel.numa_balancing"]
CHANGE = re.compile(r"^change n=(\d+) mono=(\d+\.\d{6}) uptime=(\d+\.\d+) (.*)$", re.M)


@pytest.fixture
def root(tmp_path) -> Path:
    for rel, text in FILES.items():
        path = tmp_path / "root" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path / "root"


def snapshot(root: Path) -> dict[str, str]:
    return {rel: (root / rel).read_text() for rel in FILES}


def value(text: str) -> str:
    """A knob's value, a block's state (a fake file holds what was written: online_movable)."""
    m = re.search(r"\[([^\]]+)\]", text)
    plain = text.strip()
    return m.group(1) if m else "online" if plain.startswith("online") else plain


def churn(root: Path, *args: str, seed: int = 7, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--duration", "60", "--seed", str(seed),
                           "--sysfs-root", str(root), *args], capture_output=True, text=True, timeout=timeout)


def decisions(out: str) -> list[str]:
    """What each change was, without its outcome or clocks."""
    keep = re.compile(r"^(knob=\S+|action=\S+|value=\S+|block=\S+|to=\S+)$")
    return [" ".join(w for w in m.group(4).split() if keep.match(w)) for m in CHANGE.finditer(out)]


def test_churns_every_knob_logs_clocks_and_restores(root):
    before = snapshot(root)
    res = churn(root, "--changes", "60", "--min-interval-ms", "0", "--max-interval-ms", "2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert not KERNEL_LIKE.search(res.stdout), res.stdout
    changes = CHANGE.findall(res.stdout)
    assert [int(c[0]) for c in changes] == list(range(1, 61))
    monos = [float(c[1]) for c in changes]
    assert monos == sorted(monos) and all(float(c[2]) > 0 for c in changes)
    # The first round touches every knob, action and the blocks once, the actions first.
    assert {c[3].split()[0] for c in changes[:2]} == {"action=drop_caches", "action=compact_memory"}
    first = {re.sub(r"block=memory\d+", "block", c[3].split()[0]) for c in changes[:len(KNOBS) + 3]}
    assert first == {f"knob={k}" for k in KNOBS} | {"action=drop_caches", "action=compact_memory", "block"}
    assert "block=memory1 " not in res.stdout  # ZONE_NORMAL: never offlined
    c = counts(res.stdout, "knob_churn")
    assert c["changes"] == 60 and c["knobs"] == len(KNOBS) and c["movable_blocks"] == 2
    assert c["knob_writes"] > 0 and c["actions"] > 0 and c["offline_ok"] > 0 and c["write_errors"] == 0
    assert c["restored"] > 0 and c["failed"] == 0 and c["status"] == 0
    after = snapshot(root)
    for rel in FILES:
        if "drop_caches" in rel or "compact_memory" in rel:
            continue
        assert value(after[rel]) == value(before[rel]), (rel, before[rel], after[rel])
    assert "3" in after["proc/sys/vm/drop_caches"] and "1" in after["proc/sys/vm/compact_memory"]
    # Every logged change of a knob says what it was before it.
    for m in re.finditer(r"knob=(\S+) from=(\S+) to=(\S+) result=ok", res.stdout):
        assert m.group(2) != m.group(3) or m.group(1) == "khugepaged.defrag", m.group(0)


def test_dry_run_writes_nothing_and_prints_the_decisions_a_run_takes(root, tmp_path):
    before = snapshot(root)
    dry = churn(root, "--dry-run", "--changes", "40")
    assert dry.returncode == 0, dry.stderr
    assert snapshot(root) == before
    assert counts(dry.stdout, "knob_churn")["dry_run"] == 1
    real = churn(root, "--changes", "40", "--min-interval-ms", "0", "--max-interval-ms", "1")
    assert real.returncode == 0, real.stdout + real.stderr
    assert decisions(dry.stdout) == decisions(real.stdout) and len(decisions(dry.stdout)) == 40
    other = churn(root, "--dry-run", "--changes", "40", seed=8)
    assert decisions(other.stdout) != decisions(dry.stdout)


def test_sigterm_restores_everything_then_dies_of_it(root):
    before = snapshot(root)
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--duration", "60", "--seed", "3", "--sysfs-root",
                             str(root), "--min-interval-ms", "20", "--max-interval-ms", "40"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and value((root / f"{THP}/enabled").read_text()) == "always" \
            and (root / f"{MEM}/memory8/state").read_text().strip() == "online":
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM, (out, err)
    assert "interrupted=SIGTERM" in out and "knob_churn restore: restored=" in out
    assert counts(out, "knob_churn")["failed"] == 0
    after = snapshot(root)
    for rel in FILES:
        if "drop_caches" not in rel and "compact_memory" not in rel:
            assert value(after[rel]) == value(before[rel]), rel


def test_a_knob_that_reads_back_otherwise_is_the_kernels_fault(root):
    knob = root / "proc/sys/vm/compaction_proactiveness"
    knob.unlink()
    knob.symlink_to(os.devnull)  # takes every write, reads back empty
    res = churn(root, "--changes", "30", "--min-interval-ms", "0", "--max-interval-ms", "0")
    assert res.returncode == 1, res.stdout + res.stderr
    assert re.search(r"knob_churn error: the kernel's fault: \S+compaction_proactiveness accepted '\d+' "
                     r"but reads back ''", res.stdout), res.stdout
    assert counts(res.stdout, "knob_churn")["status"] == 1
    assert value((root / f"{THP}/enabled").read_text()) == "always"  # the others restored all the same


def test_missing_knobs_are_noted_not_fatal(root):
    (root / "proc/sys/kernel/numa_balancing").unlink()
    for name in ("memory8", "memory9"):
        (root / MEM / name / "valid_zones").write_text("Normal\n")
    res = churn(root, "--changes", "20", "--min-interval-ms", "0", "--max-interval-ms", "0")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "numa_balancing, kernel.numa_balancing is not churned" in res.stdout
    assert "no online ZONE_MOVABLE memory block" in res.stdout
    assert counts(res.stdout, "knob_churn")["movable_blocks"] == 0


def test_nothing_to_churn_is_its_own_trouble(tmp_path):
    res = churn(tmp_path, "--changes", "5")
    assert res.returncode == 125 and "nothing to churn" in res.stdout, res.stdout


@pytest.mark.parametrize("args", [["--seed", "1"], ["--duration", "x", "--seed", "1"],
                                  ["--duration", "5", "--seed", "1", "--bogus"],
                                  ["--duration", "5", "--seed", "1", "--min-interval-ms", "9",
                                   "--max-interval-ms", "1"]])
def test_usage_errors(args):
    assert_usage_error(subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                                      timeout=30))
