"""End to end: ksm_migrate and offline_migrate in one real guest.

One initramfs boot of the default kernel (Debian's 6.12) whose boot memory
is partly movable (tests/data/configs/ksm-offline.yaml: movablecore=512M),
both workloads through `kstress run`, then what each proved: ksmd merged,
KSM pages moved between the nodes and COW was broken on them; memory blocks
went offline with our pages in them and came back online.
"""

from __future__ import annotations

import pytest
from junit_schema import validate
from run_schema import validate_run_json
from test_e2e_run import REPO, kstress, run_dir_of
from workload_host import counts, summary

from harness.kernel import DEFAULT_SOURCE

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not DEFAULT_SOURCE.exists(),
                       reason=f"needs the kernel source {DEFAULT_SOURCE} (Debian package linux-source-6.12)"),
]
CONFIG = REPO / "tests" / "data" / "configs" / "ksm-offline.yaml"


@pytest.fixture(scope="module")
def guest_run(kernel_cache, tmp_path_factory):
    results = tmp_path_factory.mktemp("ksm-offline")
    res = kstress(["run", str(CONFIG), "--seed", "2", "--results", str(results)], kernel_cache)
    run = run_dir_of(results)
    return res, run, validate_run_json(run / "run.json"), validate(run / "junit.xml")


def workload_result(guest_run, name: str) -> tuple[dict, dict[str, str], dict[str, int]]:
    res, run, record, doc = guest_run
    case = doc.find(f".//testcase[@name='{name}']")
    assert case is not None and case.find("failure") is None and case.find("error") is None, \
        res.stdout + res.stderr[-3000:]
    work = record["workloads"][name]
    assert work["exit_status"] == 0, work
    out = (run / f"{name}.out").read_text()
    return work["vmstat_delta"], summary(out, name), counts(out, name)


def test_ksm_pages_merge_move_and_break_cow_in_a_guest(guest_run):
    delta, s, c = workload_result(guest_run, "ksm_migrate")
    assert delta["pgmigrate_success"] > 0 and delta["cow_ksm"] > 0, delta
    assert s["ksm"] == "on" and s["ksmd"] == "set" and s["migration"] == "on", s
    assert c["max_merging_pages"] > 0 and c["max_pages_sharing"] > 0, c
    # KSM pages proven (a PFN two of our pages map, or KPF_KSM where it is
    # trustworthy) that move_pages put on the other node.
    assert s["ksm_proof"] in ("shared_pfn", "kpageflags") and c["ksm_pages_moved"] > 0, c
    assert c["unmerge_cycles"] > 0 and c["ksm_after_unmerge"] == 0, c
    assert c["pages_verified"] > 0 and c["child_pages_verified"] > 0, c
    assert s["knobs_restored"] == "yes", s


def test_movable_blocks_go_offline_and_online_in_a_guest(guest_run):
    delta, s, c = workload_result(guest_run, "offline_migrate")
    assert delta["pgmigrate_success"] > 0, delta
    assert s["mode"] == "offline" and c["candidates"] > 0, s
    assert c["blocks_offlined"] > 0 and c["blocks_onlined"] == c["blocks_offlined"], c
    # Our own pages were in blocks that went offline, and moved out intact.
    assert c["pages_moved_out"] > 0 and c["offline_pages_verified"] >= c["pages_moved_out"], c
    assert c["blocks_lost"] == 0 and s["blocks_restored"] == "yes", s
