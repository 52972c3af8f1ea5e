"""End to end: `kstress soak` of the quick config (initramfs) for one
iteration (the first always starts; --duration 1s leaves time for no
second), its soak.json, summary and junit.xml, and `kstress run --repro`
of that iteration: the same kernel (the cache's build of its key), seed,
workloads and QEMU command line. Two boots of the session's kernel."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser import CHROMIUM, open_page
from junit_schema import validate
from run_schema import validate_run_json, validate_soak_json
from test_e2e_run import kstress, qemu_processes_mentioning, run_dir_of

from harness.kernel.build import DEFAULT_SOURCE
from harness.run.repro import qemu_shape

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not DEFAULT_SOURCE.exists(),
                       reason=f"needs the kernel source {DEFAULT_SOURCE} (Debian package linux-source-6.12)"),
]


def test_a_soak_iteration_and_its_repro(kernel_cache, tmp_path):
    res = kstress(["soak", "quick", "--duration", "1s", "--workload-duration", "15", "--seed", "3",
                   "--results", str(tmp_path / "soak")], kernel_cache)
    assert res.returncode == 0, res.stdout + res.stderr[-5000:]
    (soak_dir,) = (tmp_path / "soak").glob("soak-*")
    data = validate_soak_json(soak_dir / "soak.json")
    assert (data["status"], data["stable"], data["shards"][0]["sessions"]) == ("finished", True, 1)
    (it,) = data["iterations"]
    assert (it["index"], it["seed"], it["kernel"], it["exit"], it["workload_order"]) == (0, 3, "default", 0,
                                                                                       ["migrate_fork"])
    migrate = it["workloads"]["migrate_fork"]
    assert migrate["status"] == "passed" and migrate["vmstat_per_minute"]["pgmigrate_success"] > 0
    assert migrate["below_floor"] == [] and 14 <= migrate["seconds"] < 60
    assert all(g["known_issue"] for g in data["findings"])  # quick.yaml's known issue at most
    doc = validate(soak_dir / "junit.xml")
    cases = {(c.get("classname"), c.get("name")): c for c in doc.findall(".//testcase")}
    assert {("kstress.soak.default.build", "iterations"), ("kstress.soak.default.boot", "iterations"),
            ("kstress.soak.default.migrate_fork", "iterations"),
            ("kstress.soak.default.migrate_fork", "evidence floor")} <= set(cases)
    assert doc.findall(".//failure") == [] and doc.findall(".//error") == []
    assert res.stdout == (soak_dir / "summary.txt").read_text()
    if CHROMIUM:  # report.html beside soak.json, drawn in a real browser
        shown = open_page(soak_dir / "report.html", "document.querySelector('#timeline .main-svg .trace') !== null")
        assert shown.ready and shown.errors() == [], shown.console
    run = validate_run_json(Path(it["run_dir"]) / "run.json")
    assert run["kstress"]["version"] and run["seed"] == 3
    assert not qemu_processes_mentioning(it["run_dir"])

    rep = kstress(["run", "--repro", it["run_dir"], "--results", str(tmp_path / "repro")], kernel_cache)
    assert rep.returncode == 0, rep.stdout + rep.stderr[-5000:]
    again = validate_run_json(run_dir_of(tmp_path / "repro") / "run.json")
    assert again["properties"]["repro_of"] == it["run_dir"]
    assert (again["seed"], again["kernel"]["key"], again["guest"]["accel"]) == \
        (3, run["kernel"]["key"], run["guest"]["accel"])
    assert again["config"]["workloads"] == run["config"]["workloads"] == [{"name": "migrate_fork", "duration": 15}]
    assert again["workloads"]["migrate_fork"]["argv"] == run["workloads"]["migrate_fork"]["argv"]
    assert qemu_shape(again["guest"]["qemu_argv"]) == qemu_shape(run["guest"]["qemu_argv"])
    assert "differs" not in rep.stderr
