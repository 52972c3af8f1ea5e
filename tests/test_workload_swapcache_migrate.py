"""swapcache_migrate: its manifest, and short host runs of its static build.

The host has one NUMA node and no swap, so these runs check the workload's
machinery (verification, fork children, pagemap sampling, seeded decisions,
the mismatch report) and that it says why nothing was swapped or migrated;
the swap-cache migration itself is for a guest with two nodes and swap.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from workload_host import (
    active_swap_devices,
    assert_clean_run,
    assert_flipped_byte_found,
    assert_plan_of_the_seed,
    assert_progress_has_no_keys,
    assert_usage_error,
    binary_fixture,
    c_workload_manifest,
    nodes_with_memory,
    notes,
    run,
    summary,
)

NAME = "swapcache_migrate"
binary = binary_fixture(NAME)


def test_manifest():
    w = c_workload_manifest(NAME)
    assert {"swap", "migration", "fork", "numa"} <= set(w.stresses)
    assert {"CONFIG_SWAP", "CONFIG_MIGRATION", "CONFIG_NUMA", "CONFIG_ADVISE_SYSCALLS",
            "CONFIG_PROC_PAGE_MONITOR"} <= set(w.kernel_options)
    assert w.evidence == ["pswpout", "pswpin", "pgmigrate_success"]


def test_host_run(binary):
    res = run(binary, "--duration", "3", "--seed", "11")
    assert_clean_run(res)
    assert_progress_has_no_keys(res.stdout)
    s = summary(res.stdout, NAME)
    counts = {k: int(v) for k, v in s.items() if v.isdigit()}
    for key in ("fault_ops", "pages_read", "pages_verified", "child_pages_verified", "forks",
                "children_reaped", "pageout_calls", "cold_calls", "batches", "pages_sampled",
                "present_seen"):
        assert counts[key] > 0, (key, res.stdout)
    assert counts["forks"] == counts["children_reaped"]
    assert s["seed"] == "11" and s["mb"] == "128" and counts["pages"] == 128 * 256
    said = notes(res.stdout)
    if active_swap_devices() == 0:
        assert s["swap"] == "off" and "swap device" in said, res.stdout
        assert counts["swapped_out_seen"] == 0 and counts["swapcache_seen"] == 0
    if active_swap_devices() == 0 or nodes_with_memory() < 2:
        assert "the cycler does not run" in said and counts["cycles"] == 0, res.stdout
    if nodes_with_memory() < 2:
        assert s["migration"] == "off" and "NUMA node" in said, res.stdout
        assert counts["move_pages_calls"] == 0 and counts["pages_moved"] == 0
        assert counts["query_calls"] > 0
    else:
        assert s["migration"] == "on" and counts["move_pages_calls"] > 0, res.stdout
    if s["kpageflags"] != "ok":
        assert "/proc/kpageflags" in said and counts["swapcache_pages_migrated"] == 0, res.stdout
    assert counts["swapcache_pages_migrated"] <= counts["swapcache_requested"]
    assert counts["swapcache_migrated_new_pfn"] <= counts["swapcache_pages_migrated"]


def test_plan_is_decided_by_the_seed(binary):
    first = assert_plan_of_the_seed(binary, ("pager", "faulter0", "faulter1", "migrator", "fork"), "--mb", "64")
    lines = first.splitlines()
    (cycler,) = [ln for ln in lines if ln.startswith("plan cycler:")]
    assert len(cycler.split()) == 2 + 25 and all(0 <= int(k) < 32 for k in cycler.split()[2:]), cycler
    assert any(re.match(r"plan faulter\d \d+: write ", ln) for ln in lines)
    assert any(re.match(r"plan pager \d+: pageout-block ", ln) for ln in lines)


def test_self_test_corrupt_is_a_data_mismatch(binary):
    res = run(binary, "--duration", "2", "--seed", "5", "--mb", "64", "--self-test-corrupt")
    assert_flipped_byte_found(binary, res, r"data mismatch at offset (0x[0-9a-f]+) .*expected byte .*found "
                              r".*pagemap: \S", "--mb", "64")


@pytest.mark.skipif(os.geteuid() != 0, reason="drops root to run unprivileged")
def test_unprivileged_run_says_kpageflags_is_unreadable(binary):
    where = Path(tempfile.mkdtemp(prefix="scm-"))
    try:
        where.chmod(0o755)
        exe = where / NAME
        shutil.copy2(binary, exe)
        exe.chmod(0o755)

        def drop():
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)

        res = run(exe, "--duration", "2", "--seed", "3", "--mb", "32", preexec_fn=drop)
    finally:
        shutil.rmtree(where, ignore_errors=True)
    assert res.returncode == 0, res.stderr
    s = summary(res.stdout, NAME)
    assert s["kpageflags"] in ("unreadable", "hidden_pfns"), res.stdout
    assert "/proc/kpageflags" in res.stdout and s["swapcache_pages_migrated"] == "0"
    assert int(s["pages_verified"]) > 0 and int(s["child_pages_verified"]) > 0


@pytest.mark.parametrize("args", [
    ["--seed", "1"],
    ["--duration", "1"],
    ["--duration", "x", "--seed", "1"],
    ["--duration", "1", "--seed", "1", "--mb", "1"],
    ["--duration", "1", "--seed", "1", "--bogus", "2"],
])
def test_usage_errors(binary, args):
    assert_usage_error(run(binary, *args))

