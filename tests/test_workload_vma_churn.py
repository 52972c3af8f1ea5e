"""vma_churn: its manifest, a static build, and short host runs (a few seconds
each): a clean run with its summary, the seeded decisions, and the
verification path shown to catch a flipped byte."""

from __future__ import annotations

import re

import pytest
from workload_host import (
    assert_child_found_flipped_byte,
    assert_clean_run,
    assert_migration_as_the_host_allows,
    assert_took_planned_decisions,
    assert_usage_error,
    binary_fixture,
    c_workload_manifest,
    counts,
    decisions,
    numa_syscalls,
    plan_decisions_of_the_seed,
    run,
)

NAME = "vma_churn"
LOGGED = 25
binary = binary_fixture(NAME)


def test_manifest():
    w = c_workload_manifest(NAME)
    assert {"mremap", "mprotect", "fork", "migration", "thp"} <= set(w.stresses)
    assert {"CONFIG_MIGRATION", "CONFIG_NUMA", "CONFIG_TRANSPARENT_HUGEPAGE"} <= set(w.kernel_options)
    assert {"pgmigrate_success", "thp_fault_alloc", "thp_split_pmd"} <= set(w.evidence)


def test_host_run(binary):
    res = run(binary, "--duration", "2", "--seed", "3", "--log", str(LOGGED))
    assert_clean_run(res)
    values = counts(res.stdout, NAME)
    for key in ("ops", "writes", "verifies", "dontneed", "mprotect_split", "mprotect_restore",
                "mremap_move", "mremap_shrink", "munmap_mmap", "munmap_mmap_whole", "stack_grow",
                "forks", "children_checked", "child_pages_verified", "child_cow_writes",
                "child_mremaps", "pages_verified", "pages_written", "minor_faults"):
        assert values[key] > 0, (key, res.stdout)
    assert values["mremap_grow_inplace"] + values["mremap_grow_move"] > 0, res.stdout
    assert values["errors"] == 0 and values["children_checked"] == values["forks"], res.stdout
    assert_migration_as_the_host_allows(res.stdout, NAME)
    if numa_syscalls():
        assert values["query_calls"] > 0, res.stdout

    _, taken = assert_took_planned_decisions(binary, res.stdout, 3, LOGGED)
    for stream in ("churner0", "churner1", "forker"):
        assert len(taken[stream]) == LOGGED, (stream, res.stdout)


def test_plan_depends_on_the_seed_only(binary):
    streams = plan_decisions_of_the_seed(binary, 11, 40)
    assert sorted(streams) == ["churner0", "churner1", "forker", "migrator"]
    ops = {re.search(r"op=(\w+)", ln).group(1) for ln in streams["churner0"] + streams["churner1"]}
    assert len(ops) >= 5, ops
    wider = run(binary, "--seed", "11", "--plan", "10", "--writers", "3")
    assert sorted(decisions(wider.stdout)) == ["churner0", "churner1", "churner2", "forker", "migrator"]


def test_a_flipped_byte_in_a_child_is_reported(binary):
    assert_child_found_flipped_byte(run(binary, "--duration", "3", "--seed", "5", "--self-test-corrupt"), NAME)


@pytest.mark.parametrize("args", [
    ["--duration", "x", "--seed", "1"],
    ["--seed", "1"],
    ["--duration", "1", "--seed", "1", "--bogus"],
    ["--duration", "1", "--seed", "1", "--thp-mb", "0", "--small-mb", "0"],
    ["--duration", "1", "--seed", "1", "--writers", "0"],
])
def test_usage_errors(binary, args):
    assert_usage_error(run(binary, *args, timeout=30))
