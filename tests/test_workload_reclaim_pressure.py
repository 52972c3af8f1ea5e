"""reclaim_pressure: its manifest, short host runs of its static build, and
one Debian guest run through `kstress run`.

The host runs check the machinery (verification, fork children, the THP
refreshes, the seeded decisions, the mismatch report, SIGTERM) and that the
workload says why it could not squeeze a memory cgroup: here the memory
controller is bound to cgroup v1 and there is no swap and one NUMA node.
The guest run (e2e) is where its cgroup v2 limits push memory to swap.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from debian_image import debian_image_or_skip
from junit_schema import validate
from run_schema import validate_run_json
from test_e2e_run import kstress, run_dir_of
from workload_host import (
    active_swap_devices,
    assert_clean_run,
    assert_progress_has_no_keys,
    assert_took_planned_decisions,
    assert_usage_error,
    binary_fixture,
    c_workload_manifest,
    counts,
    decisions,
    nodes_with_memory,
    notes,
    plan_decisions_of_the_seed,
    run,
    summary,
    workload,
)

from harness.kernel import DEFAULT_SOURCE

NAME = "reclaim_pressure"
LOGGED = 12
CGROUP_NA = ("events_high", "events_max", "events_oom_kill", "pgscan", "pgsteal", "workingset_refault_anon")
binary = binary_fixture(NAME)


def host_memcg_v2() -> bool:
    """Whether the workload can make a memory cgroup here: root, and a cgroup
    v2 hierarchy that offers the memory controller (a private cgroup2 mount
    shows the same controllers as any other)."""
    if os.geteuid() != 0:
        return False
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if fields[2] == "cgroup2":
            return "memory" in (Path(fields[1]) / "cgroup.controllers").read_text().split()
    return False


def test_manifest():
    w = c_workload_manifest(NAME)
    assert {"reclaim", "swap", "migration", "thp", "fork", "numa"} <= set(w.stresses)
    assert {"CONFIG_MEMCG", "CONFIG_SWAP", "CONFIG_MIGRATION", "CONFIG_NUMA",
            "CONFIG_TRANSPARENT_HUGEPAGE"} <= set(w.kernel_options)
    assert {"pswpout", "pswpin", "pgsteal_anon"} <= set(w.evidence)


def test_host_run(binary):
    res = run(binary, "--duration", "3", "--seed", "3", "--log", str(LOGGED))
    assert_clean_run(res)
    assert_progress_has_no_keys(res.stdout)
    s, values = summary(res.stdout, NAME), counts(res.stdout, NAME)
    for key in ("verify_ops", "write_ops", "sweep_ops", "thp_refreshes", "pages_verified", "pages_written",
                "forks", "child_pages_verified", "batches", "query_calls"):
        assert values[key] > 0, (key, res.stdout)
    assert values["forks"] == values["children_reaped"], res.stdout
    # Every page was read back: each worker swept all its memory at least once.
    assert values["sweeps"] >= values["workers"] == 2, res.stdout
    assert values["allocated_bytes"] == 2 * 64 << 20 and values["working_set_mb"] == 128
    assert values["small_mb"] + values["thp_mb"] + values["shmem_mb"] == 64 and values["shmem_mb"] == 16
    said = notes(res.stdout)
    if not host_memcg_v2():
        assert s["cgroup"] == "off" and s["pressure"] == "off", res.stdout
        assert re.search(r"no memory cgroup \(\S.*\): the workers ran without limits", said), said
        assert all(s[k] == "n/a" for k in CGROUP_NA), res.stdout
        assert values["limit_changes"] == values["reclaim_writes"] == 0
    else:
        assert s["cgroup"] == "on" and values["limit_changes"] + values["reclaim_writes"] > 0
        assert values["events_oom_kill"] == 0 and "cleaning up" not in said, res.stdout
    if active_swap_devices() == 0:
        assert s["swap"] == "off" and s["pressure"] == "off", res.stdout
        assert "no swap device is active" in said or s["cgroup"] == "off", res.stdout
    if nodes_with_memory() < 2:
        assert s["migration"] == "off" and "NUMA node" in said, res.stdout
        assert values["pages_moved"] == values["move_pages_calls"] == 0
    planned, taken = assert_took_planned_decisions(binary, res.stdout, 3, LOGGED)
    assert sorted(taken) == sorted(planned) == ["control", "migrator0", "migrator1", "worker0", "worker1"]
    assert all(len(lines) >= 3 for lines in taken.values()), taken


def test_plan_depends_on_the_seed_and_the_options_only(binary):
    streams = plan_decisions_of_the_seed(binary, 11, 40)
    kinds = {re.search(r"kind=(\S+)", ln).group(1) for ln in streams["control"]}
    assert kinds == {"max", "high", "reclaim-leaf", "reclaim-all"}, kinds
    three = decisions(run(binary, "--seed", "11", "--plan", "5", "--workers", "3").stdout)
    assert "worker2" in three and "migrator2" in three


def test_a_flipped_byte_is_reported_with_its_offset_and_page_state(binary):
    res = run(binary, "--duration", "5", "--seed", "5", "--self-test-corrupt")
    assert res.returncode == 1, (res.returncode, res.stderr)
    flipped = re.search(r"flipping the byte at offset 0x([0-9a-f]+)", res.stderr)
    assert flipped, res.stderr
    offset = int(flipped.group(1), 16)
    # Drawn from the seeded stream that --plan shows.
    assert f"worker 0, byte at offset 0x{offset:x}\n" in run(binary, "--seed", "5", "--plan", "1").stdout
    err = res.stderr
    assert "worker 0 (self-test): data mismatch in the " in err, err
    assert f"first differing offset 0x{offset % 4096:x} in the page (offset 0x{offset:x} " in err, err
    assert re.search(r"expected byte 0x[0-9a-f]{2}, found 0x[0-9a-f]{2}; the word should be 0x[0-9a-f]{16}", err)
    assert re.search(r"page state: node -?\d+.*; pagemap: present=1", err), err
    assert "worker 0 found data that differs from what it wrote" in err, err
    assert f"{NAME} summary" not in res.stdout


def exe_processes(binary: Path) -> list[int]:
    """Processes running this very binary (the workload's parent, workers, children)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and os.readlink(proc / "exe") == str(binary):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def test_sigterm_ends_the_run_with_its_workers(binary):
    proc = subprocess.Popen([str(binary), "--duration", "60", "--seed", "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        assert len(exe_processes(binary)) >= 3, "the parent and its two workers"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, (out, err)
    assert "interrupted by Terminated: workers killed, cgroups removed" in err, err
    deadline = time.monotonic() + 10
    while exe_processes(binary) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not exe_processes(binary)


def test_oom_self_test_without_a_memory_cgroup_says_why(binary):
    argv = [str(binary), "--duration", "5", "--seed", "1", "--self-test-oom"]
    if host_memcg_v2():
        # Hide the host's hierarchy: an empty tmpfs over /sys/fs/cgroup in a
        # mount namespace of its own, so the real no-memcg path runs here too.
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            pytest.skip("the host has a memory cgroup; hiding it needs root and unshare(1) (util-linux)")
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount -t tmpfs none /sys/fs/cgroup && exec "$@"', "sh", *argv]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert res.returncode == 125, (res.returncode, res.stderr)
    assert re.search(r"--self-test-oom needs a memory cgroup \(\S", res.stderr), res.stderr


@pytest.mark.parametrize("args", [
    ["--seed", "1"],
    ["--duration", "1"],
    ["--duration", "x", "--seed", "1"],
    ["--duration", "1", "--seed", "1", "--mb", "4"],
    ["--duration", "1", "--seed", "1", "--workers", "9"],
    ["--duration", "1", "--seed", "1", "--bogus", "2"],
])
def test_usage_errors(binary, args):
    assert_usage_error(run(binary, *args))


# -- one Debian guest run ----------------------------------------------------

GUEST_CONFIG = """\
# reclaim_pressure alone in the Debian guest (systemd's cgroup v2), swap on a
# virtio disk, two NUMA nodes: one boot, 20 s of the workload.
guest:
  image: debian
  accel: tcg
  swap: disk
  swap_mb: 512
workloads:
  - {name: reclaim_pressure, duration: 20}
known_issues:
  - title: "^WARNING in deferred_split_folio$"
    file: mm/huge_memory.c
    kernel: "^6\\\\.12\\\\."
    reason: Debian 6.12.117's known deferred-split warning (configs/default.yaml)
"""


@pytest.mark.e2e
@pytest.mark.skipif(not DEFAULT_SOURCE.exists(),
                    reason=f"needs the kernel source {DEFAULT_SOURCE} (Debian package linux-source-6.12)")
def test_guest_run_squeezes_its_cgroup_into_swap(kernel_cache, tmp_path):
    debian_image_or_skip(kernel_cache)
    cfg = tmp_path / "reclaim.yaml"
    cfg.write_text(GUEST_CONFIG)
    res = kstress(["run", str(cfg), "--seed", "7", "--results", str(tmp_path / "r")], kernel_cache)
    assert res.returncode == 0, res.stdout + res.stderr[-4000:]
    run_dir = run_dir_of(tmp_path / "r")
    record = validate_run_json(run_dir / "run.json")
    doc = validate(run_dir / "junit.xml")
    assert [c.get("name") for c in doc.findall(".//testcase")] == ["build", "boot", NAME]
    assert all(f["known_issue"] for f in record["findings"]), record["findings"]
    work = record["workloads"][NAME]
    assert work["exit_status"] == 0
    delta = work["vmstat_delta"]
    assert all(delta[name] > 0 for name in workload(NAME).evidence), delta
    out = (run_dir / f"{NAME}.out").read_text()
    s, values = summary(out, NAME), counts(out, NAME)
    # systemd's cgroup2 at /sys/fs/cgroup, swap and two nodes: the full run.
    assert (s["cgroup"], s["cgroup_mount"], s["pressure"], s["swap"], s["migration"]) == \
        ("on", "existing", "on", "on", "on"), out
    assert values["events_high"] + values["events_max"] > 0 and values["events_oom_kill"] == 0, out
    for key in ("limit_changes", "reclaim_writes", "pgscan", "pgsteal", "workingset_refault_anon",
                "major_faults", "pages_moved", "child_pages_verified", "thp_refreshes"):
        assert values[key] > 0, (key, out)
    assert values["sweeps"] >= 2 and values["forks"] == values["children_reaped"], out
    assert values["swap_peak_mb"] > 0 and values["memory_peak_mb"] <= 80, out
    assert " note: " not in out, out   # nothing it could not do, and its cgroups were removed
