"""End to end, the Python and stress-ng workload kinds: skipped with the
reason on the busybox initramfs, and run in one Debian boot (mixer with
knob_churn beside the C workloads, then a stress-ng workload), each passing
with its evidence. These build (a cache hit after the first) and boot real
kernels under TCG: minutes."""

from __future__ import annotations

import re

from junit_schema import validate
from run_schema import validate_run_json
from test_e2e_run import REPO, kstress, pytestmark, qemu_processes_mentioning, run_dir_of  # noqa: F401

DEBIAN_MIXER = REPO / "tests" / "data" / "configs" / "debian-mixer.yaml"
GUEST_LACKS = "needs {}: guest.image initramfs has none; use guest.image debian"


def test_python_and_stress_ng_workloads_are_skipped_on_the_initramfs(kernel_cache, tmp_path):
    cfg = tmp_path / "initramfs.yaml"
    cfg.write_text("guest:\n  image: initramfs\nworkloads:\n  - {name: knob_churn, duration: 5}\n"
                   "  - {name: stressng_swap, duration: 5}\n")
    res = kstress(["run", str(cfg), "--results", str(tmp_path / "r")], kernel_cache)
    assert res.returncode == 125, res.stdout + res.stderr  # nothing was stressed
    assert "Traceback" not in res.stderr
    run = run_dir_of(tmp_path / "r")
    record = validate_run_json(run / "run.json")
    reasons = {"knob_churn": GUEST_LACKS.format("python3"), "stressng_swap": GUEST_LACKS.format("python3, stress-ng")}
    for name, reason in reasons.items():
        assert record["workloads"][name]["skipped"] == reason
        (case,) = [c for c in record["testcases"] if c["name"] == name]
        assert case["status"] == "skipped" and case["failure_type"] == "guest-lacks"
        assert case["message"] == f"skipped: {reason}"
    doc = validate(run / "junit.xml")
    skipped = doc.find(".//testcase[@name='knob_churn']/skipped")
    assert skipped is not None and "needs python3" in skipped.get("message")
    assert doc.find(".//testcase[@name='boot']/failure") is None


def test_mixer_with_knob_churn_and_a_stress_ng_workload_in_one_debian_boot(kernel_cache, tmp_path):
    res = kstress(["run", str(DEBIAN_MIXER), "--seed", "7", "--results", str(tmp_path)], kernel_cache, timeout=3600)
    assert res.returncode == 0, res.stdout + res.stderr[-4000:]
    run = run_dir_of(tmp_path)
    record = validate_run_json(run / "run.json")
    validate(run / "junit.xml")
    assert all(f["known_issue"] for f in record["findings"]), record["findings"]
    assert record["guest"]["restarts"] == []  # one boot
    mixer = record["workloads"]["mixer"]
    assert mixer["exit_status"] == 0 and mixer["vmstat_delta"]["pgmigrate_success"] > 0, mixer
    out = (run / "mixer.out").read_text()
    assert re.search(r"^mixer result: status=0$", out, re.M), out[-3000:]
    started = set(re.findall(r"^start t=\S+ child=(\w+)#", out, re.M))
    assert "knob_churn" in started and len(started) >= 3, started
    # knob_churn changed knobs, logged with the guest's clocks, and put every one back.
    assert re.search(r"^\[knob_churn#\d+\] change n=1 mono=\d+\.\d+ uptime=\d+\.\d+ action=", out, re.M), out
    assert re.search(r"^\[knob_churn#\d+\] knob_churn restore: restored=[1-9]\d* failed=0 status=0$", out, re.M)
    swap = record["workloads"]["stressng_swap"]
    assert swap["exit_status"] == 0 and swap["vmstat_delta"]["pswpout"] > 0, swap
    assert swap["argv"][:2] == ["/usr/bin/ks-stress-ng", "--name"]
    sng = (run / "stressng_swap.out").read_text()
    assert re.search(r"^stressng_swap summary: stressors=swap,pageswap bogo_ops=[1-9]\d* stress_ng_status=0 "
                     r"failures=0 status=0$", sng, re.M), sng
    assert not qemu_processes_mentioning(str(run))
