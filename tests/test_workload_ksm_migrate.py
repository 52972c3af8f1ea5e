"""ksm_migrate: its manifest, and short host runs of its static build.

The host's ksmd is not ours to start: every host run here passes --no-ksmd
(the knobs stay untouched) or --ksm-dir (the knobs are files in a
temporary directory, which is how the put-back at exit and on SIGTERM is
tested). So these runs check the machinery (verification, COW writes, fork
children, unmerge cycles, seeded decisions, the mismatch report); merging
and the migration of KSM pages are for a guest (tests/test_e2e_ksm_offline.py).
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from workload_host import (
    assert_clean_run,
    assert_flipped_byte_found,
    assert_plan_of_the_seed,
    assert_progress_has_no_keys,
    assert_usage_error,
    binary_fixture,
    c_workload_manifest,
    counts,
    nodes_with_memory,
    notes,
    plan_text,
    run,
    sigterm_when_ready,
    summary,
    workload,
)

from harness.stress.vmstat import deltas, missing_evidence

NAME = "ksm_migrate"
KSM = Path("/sys/kernel/mm/ksm")
KNOBS = {"run": "0", "pages_to_scan": "100", "sleep_millisecs": "20", "merge_across_nodes": "1"}
# Seed 27 unmerges by madvise 4.3 s in; seed 20 by run=2 4.1 s in (--plan 1).
MADVISE_SEED, RUN2_SEED = 27, 20
binary = binary_fixture(NAME)


def host_knobs() -> dict[str, str]:
    return {p.name: p.read_text() for p in KSM.iterdir() if p.name in KNOBS} if KSM.is_dir() else {}


def fake_ksm_dir(tmp_path: Path) -> Path:
    d = tmp_path / "ksm"
    d.mkdir()
    for name, value in {**KNOBS, "pages_sharing": "0", "pages_shared": "0", "full_scans": "7"}.items():
        (d / name).write_text(value + "\n")
    return d


def knobs_in(d: Path) -> dict[str, str]:
    return {name: (d / name).read_text().strip() for name in KNOBS}


def test_manifest():
    w = c_workload_manifest(NAME)
    assert {"ksm", "migration", "numa", "fork"} <= set(w.stresses)
    assert {"CONFIG_KSM", "CONFIG_MIGRATION", "CONFIG_NUMA", "CONFIG_PROC_PAGE_MONITOR"} <= set(w.kernel_options)
    assert w.evidence == ["pgmigrate_success", "cow_ksm"]


def test_the_runner_sees_every_evidence_counter_move():
    # deltas() keeps only the families in EVIDENCE_PREFIXES: without
    # "cow_ksm" every guest run would fail "no evidence".
    evidence = workload(NAME).evidence
    delta = deltas({name: 0 for name in evidence}, {name: 1 for name in evidence})
    assert not missing_evidence(delta, evidence)


def test_host_run_leaves_ksmd_alone(binary):
    before = host_knobs()
    res = run(binary, "--duration", "6", "--seed", str(MADVISE_SEED), "--no-ksmd")
    assert host_knobs() == before
    assert_clean_run(res)
    assert_progress_has_no_keys(res.stdout)
    s = summary(res.stdout, NAME)
    c = counts(res.stdout, NAME)
    for key in ("pages_verified", "pages_written", "child_pages_verified", "child_cow_writes", "forks",
                "batches", "pages_sampled", "madvise_cycles", "regions_unmerged", "unmerged_pages_verified"):
        assert c[key] > 0, (key, res.stdout)
    assert c["forks"] == c["children_reaped"] and c["ksm_after_unmerge"] == 0, res.stdout
    assert s["ksmd"] in ("untouched", "none") and c["run2_cycles"] == 0, res.stdout
    assert f"{NAME} knobs:" not in res.stdout   # no supervisor: nothing to put back
    said = notes(res.stdout)
    if before.get("run", "").strip() == "0":
        assert "ksmd is not running" in said and c["max_merging_pages"] == 0, res.stdout
    if nodes_with_memory() < 2:
        assert s["migration"] == "off" and "NUMA node" in said, res.stdout
        assert c["move_pages_calls"] == 0 and c["ksm_pages_moved"] == 0
    assert c["ksm_pages_moved"] <= c["ksm_mappings_moved"] <= c["pages_moved"]
    assert c["ksm_moved_still_ksm"] <= c["ksm_pages_moved"]


def test_knobs_are_set_and_put_back(binary, tmp_path):
    d = fake_ksm_dir(tmp_path)
    res = run(binary, "--duration", "6", "--seed", str(RUN2_SEED), "--ksm-dir", str(d),
              "--pages-to-scan", "777", "--sleep-millisecs", "3")
    assert res.returncode == 0, res.stderr
    c = counts(res.stdout, NAME)
    assert summary(res.stdout, NAME)["ksmd"] == "set" and c["run2_cycles"] == 1, res.stdout
    assert knobs_in(d) == KNOBS
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith(f"{NAME} knobs:"))
    assert line == f"{NAME} knobs: knobs_restored=yes run=0 pages_to_scan=100 sleep_millisecs=20 merge_across_nodes=1"


def test_sigterm_puts_the_knobs_back(binary, tmp_path):
    d = fake_ksm_dir(tmp_path)
    # ksmd set for the run (run=1 is written last): then SIGTERM.
    status, out, err = sigterm_when_ready(
        [str(binary), "--duration", "60", "--seed", "1", "--ksm-dir", str(d), "--pages-to-scan", "777"],
        lambda: knobs_in(d)["pages_to_scan"] == "777" and knobs_in(d)["run"] == "1")
    assert status == -signal.SIGTERM, (out, err)
    assert knobs_in(d) == KNOBS
    assert f"{NAME} knobs: knobs_restored=yes" in out and f"{NAME} summary" not in out
    # The workload process died with it (its fork children end on their own).
    deadline = time.monotonic() + 10
    while subprocess.run(["pgrep", "-f", str(d)], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "a workload process outlived SIGTERM"
        time.sleep(0.1)


def test_plan_is_decided_by_the_seed(binary):
    first = assert_plan_of_the_seed(binary, ("verifier", "writer", "migrator", "fork", "cycle"))
    layout = re.search(r"(\d+) pages popular, (\d+) unique", first)
    assert int(layout.group(1)) > 3 * int(layout.group(2)), first   # many duplicates, some unique
    assert "plan cycle 0: after 4.290s madvise" in plan_text(binary, MADVISE_SEED, 1)
    assert "plan cycle 0: after 4.070s run2" in plan_text(binary, RUN2_SEED, 1)


def test_a_flipped_byte_is_a_data_mismatch(binary):
    res = run(binary, "--duration", "3", "--seed", "5", "--no-ksmd", "--self-test-corrupt")
    assert_flipped_byte_found(binary, res, r"data mismatch at offset (0x[0-9a-f]+) \(page \d+, word \d+\): "
                              r"expected byte 0x[0-9a-f]{2}, found 0x[0-9a-f]{2}.*page state: present")


@pytest.mark.parametrize("args", [
    ["--duration", "x", "--seed", "1"],
    ["--seed", "1"],
    ["--duration", "1"],
    ["--duration", "1", "--seed", "1", "--bogus"],
    ["--duration", "1", "--seed", "1", "--mb", "4"],
    ["--duration", "1", "--seed", "1", "--ksm-dir"],
    ["--duration", "1", "--seed", "1", "--no-ksmd", "--ksm-dir", "/tmp"],
])
def test_usage_errors(binary, args):
    assert_usage_error(run(binary, *args, timeout=30))
