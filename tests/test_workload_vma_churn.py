"""vma_churn: its manifest, a static build, and short host runs (a few seconds
each): a clean run with its summary, the seeded decisions, and the
verification path shown to catch a flipped byte."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from workload_host import (
    KERNEL_LIKE,
    assert_static,
    assert_usage_error,
    build,
    counts,
    decisions,
    nodes_with_memory,
    run,
)

import harness.stress.manifest as wl

NAME = "vma_churn"
LOGGED = 25


@pytest.fixture(scope="module")
def binary(tmp_path_factory) -> Path:
    return build(NAME, tmp_path_factory.mktemp("cache"))


def numa_syscalls() -> bool:
    return Path("/sys/devices/system/node/node0").is_dir()


def test_manifest():
    w = wl.load_workloads()["vma_churn"]
    assert {"mremap", "mprotect", "fork", "migration", "thp"} <= set(w.stresses)
    assert {"CONFIG_MIGRATION", "CONFIG_NUMA", "CONFIG_TRANSPARENT_HUGEPAGE"} <= set(w.kernel_options)
    assert w.default_duration == 30
    assert {"pgmigrate_success", "thp_fault_alloc", "thp_split_pmd"} <= set(w.evidence)
    assert w.argv(5, 9) == ["/usr/bin/vma_churn", "--duration", "5", "--seed", "9"]


def test_build_is_static(binary):
    assert_static(binary)


def test_host_run(binary):
    res = run(binary, "--duration", "2", "--seed", "3", "--log", str(LOGGED))
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert not KERNEL_LIKE.search(res.stdout), res.stdout
    values = counts(res.stdout, NAME)
    for key in ("ops", "writes", "verifies", "dontneed", "mprotect_split", "mprotect_restore",
                "mremap_move", "mremap_shrink", "munmap_mmap", "munmap_mmap_whole", "stack_grow",
                "forks", "children_checked", "child_pages_verified", "child_cow_writes",
                "child_mremaps", "pages_verified", "pages_written", "minor_faults"):
        assert values[key] > 0, (key, res.stdout)
    assert values["mremap_grow_inplace"] + values["mremap_grow_move"] > 0, res.stdout
    assert values["errors"] == 0 and values["children_checked"] == values["forks"], res.stdout
    assert values["nodes"] == max(1, nodes_with_memory()) or not numa_syscalls(), res.stdout
    migration = re.search(r"\bmigration=(on|off)\b", res.stdout).group(1)
    if values["nodes"] >= 2:
        assert migration == "on" and values["pages_moved"] > 0, res.stdout
    else:
        # One node: it runs, and says it did not migrate.
        assert migration == "off" and values["pages_moved"] == 0, res.stdout
        assert "vma_churn note: one NUMA node" in res.stdout or not numa_syscalls(), res.stdout
    if numa_syscalls():
        assert values["query_calls"] > 0, res.stdout

    # The run took the decisions that --plan derives from the seed alone.
    plan = run(binary, "--seed", "3", "--plan", str(LOGGED))
    assert plan.returncode == 0, plan.stderr
    planned, taken = decisions(plan.stdout), decisions(res.stdout)
    assert set(taken) <= set(planned), (taken.keys(), planned.keys())
    for stream, lines in taken.items():
        assert lines == planned[stream][:len(lines)], stream
    for stream in ("churner0", "churner1", "forker"):
        assert len(taken[stream]) == LOGGED, (stream, res.stdout)


def test_plan_depends_on_the_seed_only(binary):
    first = run(binary, "--seed", "11", "--plan", "40")
    again = run(binary, "--seed", "11", "--plan", "40")
    other = run(binary, "--seed", "12", "--plan", "40")
    assert first.returncode == 0 and first.stdout == again.stdout
    assert other.returncode == 0 and other.stdout != first.stdout
    streams = decisions(first.stdout)
    assert sorted(streams) == ["churner0", "churner1", "forker", "migrator"]
    assert all(len(lines) == 40 for lines in streams.values())
    ops = {re.search(r"op=(\w+)", ln).group(1) for ln in streams["churner0"] + streams["churner1"]}
    assert len(ops) >= 5, ops
    wider = run(binary, "--seed", "11", "--plan", "10", "--writers", "3")
    assert sorted(decisions(wider.stdout)) == ["churner0", "churner1", "churner2", "forker", "migrator"]


def test_a_flipped_byte_in_a_child_is_reported(binary):
    res = run(binary, "--duration", "3", "--seed", "5", "--self-test-corrupt")
    assert res.returncode == 1, (res.stdout, res.stderr)
    err = res.stderr
    assert "data mismatch in child of fork #" in err, err
    assert "first differing offset 0x123 in the page" in err, err
    assert re.search(r"expected 0x[0-9a-f]{16}, found 0x[0-9a-f]{16}", err), err
    assert "page state: pagemap: present=1" in err, err
    assert re.search(r"child \d+ of fork #\d+ found data that differs from what it inherited", err), err
    assert "vma_churn summary" not in res.stdout


@pytest.mark.parametrize("args", [
    ["--duration", "x", "--seed", "1"],
    ["--seed", "1"],
    ["--duration", "1", "--seed", "1", "--bogus"],
    ["--duration", "1", "--seed", "1", "--thp-mb", "0", "--small-mb", "0"],
    ["--duration", "1", "--seed", "1", "--writers", "0"],
])
def test_usage_errors(binary, args):
    assert_usage_error(run(binary, *args, timeout=30))
