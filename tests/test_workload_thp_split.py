"""thp_split: its manifest, a static build, and short host runs (a few seconds
each): a clean run with its summary and what it says it could not do on this
host, the seeded decisions, and the verification path shown to catch a
flipped byte.  One e2e test runs it in a Debian guest through `kstress run`
and checks the deferred-split shrinker's proof."""

from __future__ import annotations

import re
import shutil

import pytest
from junit_schema import validate
from run_schema import validate_run_json
from test_e2e_run import REPO, kstress, run_dir_of
from workload_host import (
    assert_child_found_flipped_byte,
    assert_clean_run,
    assert_migration_as_the_host_allows,
    assert_took_planned_decisions,
    assert_usage_error,
    binary_fixture,
    c_workload_manifest,
    counts,
    plan_decisions_of_the_seed,
    run,
    summary,
    workload,
)

from harness.kernel.build import DEFAULT_SOURCE

NAME = "thp_split"
LOGGED = 20
binary = binary_fixture(NAME)


def test_manifest():
    w = c_workload_manifest(NAME)
    assert {"thp", "split", "migration", "reclaim", "fork", "numa"} <= set(w.stresses)
    assert {"CONFIG_TRANSPARENT_HUGEPAGE", "CONFIG_MIGRATION", "CONFIG_NUMA", "CONFIG_MEMCG",
            "CONFIG_SHRINKER_DEBUG", "CONFIG_DEBUG_FS"} <= set(w.kernel_options)
    assert {"thp_deferred_split_page", "thp_split_page", "pgmigrate_success"} <= set(w.evidence)


def test_host_run(binary):
    res = run(binary, "--duration", "3", "--seed", "3", "--log", str(LOGGED))
    assert_clean_run(res)
    values, text = counts(res.stdout, NAME), summary(res.stdout, NAME)
    for key in ("ops", "writes", "verifies", "dontneed", "munmap_part", "fill_holes", "refresh",
                "mprotect", "pageout", "forks", "children_checked", "child_pages_verified",
                "child_cow_writes", "child_dontneed", "pages_verified", "pages_written",
                "pressure_rounds", "thps_formed", "pressure_pages_verified", "minor_faults"):
        assert values[key] > 0, (key, res.stdout)
    assert values["errors"] == 0 and values["children_checked"] == values["forks"], res.stdout
    # MADV_COLLAPSE (6.1+) is tried; what it returned is counted.
    assert sum(values[k] for k in ("collapse_ok", "collapse_eagain", "collapse_enomem", "collapse_ebusy",
                                         "collapse_einval")) > 0
    assert_migration_as_the_host_allows(res.stdout, NAME)
    # What the host lacks is said, and the proof is not claimed without its means.
    if text["split_huge_pages"] == "off":
        assert "thp_split note: no debugfs splits" in res.stdout
    if text["shrinker_debugfs"] == "off":
        assert "thp_split note: no shrinker counts" in res.stdout
    if text["memcg"] == "off":
        assert "thp_split note: memcg: " in res.stdout
        assert text["shrinker_proof"] == "unavailable", res.stdout
    assert text["shrinker_proof"] in ("reclaim", "scan", "none", "unavailable")
    # The vmstat line covers the counters the manifest names.
    for counter in workload(NAME).evidence:
        assert f"vm_{counter}" in values or text.get(f"vm_{counter}") == "-1", counter

    _, taken = assert_took_planned_decisions(binary, res.stdout, 3, LOGGED)
    for stream in ("churner0", "churner1", "forker"):
        assert len(taken[stream]) == LOGGED, (stream, res.stdout)
    assert taken["pressure"], res.stdout


def test_plan_depends_on_the_seed_only(binary):
    streams = plan_decisions_of_the_seed(binary, 11, 40)
    assert sorted(streams) == ["churner0", "churner1", "forker", "migrator", "pressure"]
    ops = {re.search(r"op=(\w+)", ln).group(1) for ln in streams["churner0"] + streams["churner1"]}
    assert len(ops) >= 8, ops


def test_without_pressure_nothing_is_claimed(binary):
    res = run(binary, "--duration", "1", "--seed", "4", "--no-pressure", "--no-fork", "--no-debugfs")
    assert res.returncode == 0, (res.stdout, res.stderr)
    values, text = counts(res.stdout, NAME), summary(res.stdout, NAME)
    assert values["pressure_rounds"] == 0 and values["forks"] == 0 and values["ops"] > 0
    assert text["shrinker_proof"] == "unavailable" and text["split_huge_pages"] == "off"
    assert "--no-debugfs" in res.stdout


def test_a_flipped_byte_in_a_child_is_reported(binary):
    assert_child_found_flipped_byte(run(binary, "--duration", "3", "--seed", "5", "--self-test-corrupt"), NAME)


@pytest.mark.parametrize("args", [
    ["--duration", "x", "--seed", "1"],
    ["--seed", "1"],
    ["--duration", "1", "--seed", "1", "--bogus"],
    ["--duration", "1", "--seed", "1", "--thp-mb", "1"],
    ["--duration", "1", "--seed", "1", "--writers", "0"],
    ["--duration", "1", "--seed", "1", "--pressure-thp-mb", "1000"],
])
def test_usage_errors(binary, args):
    assert_usage_error(run(binary, *args, timeout=30))


@pytest.mark.e2e
@pytest.mark.skipif(not DEFAULT_SOURCE.exists(),
                    reason=f"needs the kernel source {DEFAULT_SOURCE} (Debian package linux-source-6.12)")
@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                    reason="needs qemu-system-x86_64 (Debian package qemu-system-x86)")
@pytest.mark.skipif(shutil.which("mmdebstrap") is None, reason="the Debian image needs mmdebstrap")
def test_debian_guest_run_proves_the_deferred_split_shrinker(kernel_cache, tmp_path):
    """One boot, 20 s: the pressure child's THPs, partially mapped and counted
    by the shrinker in its memcg, are split when reclaim runs the shrinker,
    and every evidence counter of the manifest moved."""
    cfg = REPO / "tests" / "data" / "configs" / "debian-thp-split.yaml"
    res = kstress(["run", str(cfg), "--seed", "7", "--results", str(tmp_path)], kernel_cache, timeout=3600)
    assert res.returncode == 0, res.stdout + res.stderr[-4000:]
    run_dir = run_dir_of(tmp_path)
    record = validate_run_json(run_dir / "run.json")
    assert all(f["known_issue"] for f in record["findings"]), record["findings"]
    work = record["workloads"][NAME]
    assert work["exit_status"] == 0
    delta = work["vmstat_delta"]
    assert all(delta[counter] > 0 for counter in work["evidence"]), delta
    doc = validate(run_dir / "junit.xml")
    assert doc.findall(".//failure") == [] and doc.findall(".//error") == []

    out = (run_dir / f"{NAME}.out").read_text()
    values, text = counts(out, NAME), summary(out, NAME)
    assert text["shrinker_proof"] == "reclaim", out
    assert text["memcg"] == "on" and text["anon_reclaim"] == "off", out
    assert values["queue_max"] > 0 and values["queue_drop"] > 0, out
    assert 0 < values["reclaim_splits"] <= values["thps_partial"], out
    assert values["memcg_high_events"] > 0 and values["memcg_oom_kills"] == 0, out
    assert values["freed_kb"] > 0, out
    # Control rounds (no limit) keep their THPs whole until the shrinker's
    # debugfs scan file is written.
    assert values["control_splits"] == 0, out
    assert values["scan_rounds"] == 0 or values["scan_splits"] > 0, out
    assert text["split_huge_pages"] == "on" and values["split_writes"] > 0, out
    assert values["nodes"] == 2 and text["migration"] == "on" and values["pages_moved"] > 0, out
    assert values["forks"] > 0 and values["children_checked"] == values["forks"], out
