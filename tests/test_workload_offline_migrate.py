"""offline_migrate: its manifest, and short host runs of its static build.

The host's memory is not ours to offline: host runs use --dry-run on the
real /sys/devices/system/memory (candidates are found, no state is written)
or --memory-dir with memory blocks made of plain files in a temporary
directory, which drives the offliner's machinery (picks, offline, the checks
after it, online again, the supervisor's put-back) without the kernel.
Offlining real blocks is for a guest (tests/test_e2e_ksm_offline.py).
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
from workload_host import (
    assert_clean_run,
    assert_flipped_byte_found,
    assert_plan_of_the_seed,
    assert_usage_error,
    binary_fixture,
    c_workload_manifest,
    counts,
    run,
    sigterm_when_ready,
    summary,
)

NAME = "offline_migrate"
MEMORY = Path("/sys/devices/system/memory")
# (state, valid_zones) of the fake blocks memory0..: the candidates are 3 and 4.
FAKE = [("online", "DMA32"), ("online", "Normal"), ("online", "none"), ("online", "Movable"),
        ("online", "Movable"), ("offline", "Movable Normal")]
FAR = 0x100000  # phys_index of fake memory0: 128 TiB up, where no page of ours is
binary = binary_fixture(NAME)


def fake_memory(tmp_path: Path, blocks=FAKE, first_index: int = FAR, block_bytes: int = 128 << 20) -> Path:
    d = tmp_path / "memory"
    d.mkdir()
    (d / "block_size_bytes").write_text(f"{block_bytes:x}\n")
    (d / "auto_online_blocks").write_text("offline\n")
    for i, (state, zones) in enumerate(blocks):
        b = d / f"memory{i}"
        (b / f"node{i % 2}").mkdir(parents=True)
        (b / "state").write_text(state + "\n")
        (b / "valid_zones").write_text(zones + "\n")
        (b / "phys_index").write_text(f"{first_index + i:08x}\n")
    return d


def states(d: Path) -> list[str]:
    return [(d / f"memory{i}" / "state").read_text().strip() for i in range(len(FAKE))]


def movable_online_blocks() -> int:
    n = 0
    for b in MEMORY.glob("memory[0-9]*"):
        try:
            if (b / "state").read_text().strip() == "online" and (b / "valid_zones").read_text().strip() == "Movable":
                n += 1
        except OSError:
            continue
    return n


def test_manifest():
    w = c_workload_manifest(NAME)
    assert {"migration", "numa", "fork"} <= set(w.stresses)
    assert {"CONFIG_MEMORY_HOTPLUG", "CONFIG_MEMORY_HOTREMOVE", "CONFIG_MIGRATION"} <= set(w.kernel_options)
    assert w.evidence == ["pgmigrate_success"]


@pytest.mark.skipif(not MEMORY.is_dir(), reason=f"{MEMORY} missing (a host kernel without memory hotplug)")
def test_dry_run_on_the_host_writes_no_block(binary):
    before = {p: p.read_text() for p in MEMORY.glob("memory[0-9]*/state")}
    res = run(binary, "--duration", "3", "--seed", "2", "--dry-run", "--mb", "32")
    assert {p: p.read_text() for p in MEMORY.glob("memory[0-9]*/state")} == before
    assert_clean_run(res)
    s, c = summary(res.stdout, NAME), counts(res.stdout, NAME)
    assert s["mode"] == "dry-run" and c["memory_blocks"] == len(before), res.stdout
    assert c["candidates"] == movable_online_blocks() and c["blocks_offlined"] == 0, res.stdout
    assert c["pages_verified"] > 0 and "--dry-run: no block's state was written" in res.stdout
    if not c["candidates"]:
        note = next(ln for ln in res.stdout.splitlines() if "ZONE_MOVABLE" in ln)
        assert "guest.hotplug_dimms" in note and "movablecore=" in note, note


def test_fake_blocks_are_offlined_and_onlined_while_memory_is_verified(binary, tmp_path):
    d = fake_memory(tmp_path)
    res = run(binary, "--duration", "4", "--seed", "3", "--mb", "32", "--memory-dir", str(d))
    assert_clean_run(res)
    s, c = summary(res.stdout, NAME), counts(res.stdout, NAME)
    assert s["candidate_blocks"] == "3,4" and c["memory_blocks"] == 6 and c["block_mb"] == 128, res.stdout
    assert c["blocks_offlined"] > 0 and c["blocks_offlined"] == c["blocks_onlined"], res.stdout
    assert c["offline_attempts"] == c["blocks_offlined"] and c["blocks_lost"] == 0, res.stdout
    assert c["pages_in_block"] == 0   # the fake blocks hold none of our pages
    per = dict(re.findall(r"memory(\d+):(\d+)/", s["per_block"]))
    assert sorted(per) == ["3", "4"] and sum(map(int, per.values())) == c["blocks_offlined"], s["per_block"]
    for key in ("fault_ops", "pages_written", "zaps", "pages_verified", "child_pages_verified", "forks"):
        assert c[key] > 0, (key, res.stdout)
    assert c["forks"] == c["children_reaped"]
    # Only the candidates were written; the rest are as they were.
    assert states(d) == ["online", "online", "online", "online_movable", "online_movable", "offline"]
    assert f"{NAME} blocks: blocks_restored=yes onlined_at_exit=0 offline_at_exit=0" in res.stdout


def test_no_movable_block_says_what_the_guest_needs(binary, tmp_path):
    d = fake_memory(tmp_path, blocks=FAKE[:3])
    res = run(binary, "--duration", "30", "--seed", "1", "--mb", "16", "--memory-dir", str(d), timeout=20)
    assert res.returncode == 0, res.stderr
    c = counts(res.stdout, NAME)
    assert c["candidates"] == 0 and c["blocks_offlined"] == 0 and c["pages_verified"] == 4096, res.stdout
    assert "guest.hotplug_dimms" in res.stdout and "movablecore=512M" in res.stdout
    assert f"{NAME} blocks:" not in res.stdout   # nothing was changed, nothing to put back


def test_a_page_left_in_an_offline_block_is_the_kernels_fault(binary, tmp_path):
    # One fake block from PFN 0 over 1 TiB: every page of ours is "inside"
    # it, so once its state says offline, the check must call it out.
    d = fake_memory(tmp_path, blocks=[("online", "Movable")], first_index=0, block_bytes=1 << 40)
    res = run(binary, "--duration", "5", "--seed", "1", "--mb", "16", "--memory-dir", str(d))
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert re.search(r"page \d+ \(offset 0x[0-9a-f]+\) maps pfn 0x[0-9a-f]+ inside memory0, which is offline",
                     res.stderr), res.stderr
    # The supervisor put the block back online.
    assert (d / "memory0" / "state").read_text().strip() == "online_movable"
    assert f"{NAME} blocks: blocks_restored=yes onlined_at_exit=1" in res.stdout


def test_sigterm_onlines_the_blocks_again(binary, tmp_path):
    d = fake_memory(tmp_path)
    status, out, err = sigterm_when_ready(
        [str(binary), "--duration", "60", "--seed", "4", "--mb", "16", "--memory-dir", str(d)],
        lambda: "offline" in states(d)[3:5], poll=0.005)
    assert status == -signal.SIGTERM, (out, err)
    assert "offline" not in states(d)[3:5] and states(d)[5] == "offline"
    assert f"{NAME} blocks: blocks_restored=yes" in out and f"{NAME} summary" not in out


def test_plan_is_decided_by_the_seed(binary):
    first = assert_plan_of_the_seed(binary, ("faulter0", "faulter1", "offliner", "fork"))
    kinds = {m.group(1) for m in re.finditer(r"^plan faulter\d \d+: (\w+) ", first, re.M)}
    assert kinds == {"read", "write", "zap"}, kinds


def test_a_flipped_byte_is_a_data_mismatch(binary, tmp_path):
    d = fake_memory(tmp_path)
    res = run(binary, "--duration", "3", "--seed", "5", "--mb", "16", "--memory-dir", str(d),
              "--self-test-corrupt")
    assert_flipped_byte_found(binary, res, r"data mismatch at offset (0x[0-9a-f]+) \(page \d+\): expected byte "
                              r".*found .*page state: present pfn", "--mb", "16")
    assert "offline" not in states(d)[3:5]


@pytest.mark.parametrize("args", [
    ["--duration", "x", "--seed", "1"],
    ["--seed", "1"],
    ["--duration", "1"],
    ["--duration", "1", "--seed", "1", "--bogus"],
    ["--duration", "1", "--seed", "1", "--faulters", "0"],
    ["--duration", "1", "--seed", "1", "--offline-timeout", "0"],
    ["--duration", "1", "--seed", "1", "--memory-dir"],
])
def test_usage_errors(binary, args):
    assert_usage_error(run(binary, *args, timeout=30))
