"""`kstress run --repro RUN_DIR`: the config a run.json recorded comes back
as it ran (kernel variant, workload order and durations, seed, accelerator),
the repro runs the cache's kernel of the recorded key, and says what it
cannot pin (another kstress commit, a kernel no longer in the cache)."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
from run_schema import validate_run_json

from harness.config import apply_overrides, config_from_dict, load_config
from harness.errors import UsageError
from harness.kernel.build import KernelBuild, cached_build
from harness.run import runner as runner_module
from harness.run.record import GuestRecord, KernelRecord, RunRecord, WorkloadRecord, write_run_json
from harness.run.repro import load_repro, repro_command

CONFIG = """\
kernel:
  fragments: [base-x86, mm-stress, debug]
  variants:
    - {name: kasan, fragments: [base-x86, mm-stress, debug, kasan], guest: {boot_timeout: 600}}
guest: {accel: auto, memory_mb: 1536}
workloads:
  - {name: migrate_fork, duration: 30}
  - thp_split
known_issues:
  - {title: "^WARNING in x$", reason: known}
"""
KEY = "0123456789abcdef01234567"
QEMU = ["qemu-system-x86_64", "-name", "kstress-4242-1-0a1b2c", "-m", "1536M", "-kernel", f"/c/builds/{KEY}/bzImage",
        "-drive", "file=/tmp/kstress-run-_9ulkmt2/swap-0.qcow2,format=qcow2,if=none,id=disk1",
        "-qmp", "unix:/tmp/kstress-guest-un32_mi1/qmp.sock,server=on,wait=off"]


def recorded_run(tmp_path: Path, commit: str | None = None) -> Path:
    """A soak iteration's run.json: the kasan kernel, workloads rotated, seed 42."""
    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent(CONFIG))
    cfg = apply_overrides(load_config(path).for_kernel("kasan"), seed=42, results=tmp_path / "runs")
    cfg.workloads = cfg.workloads[1:] + cfg.workloads[:1]
    run_dir = tmp_path / "runs" / "20261128-120000-abcdef"
    run_dir.mkdir(parents=True)
    rec = RunRecord(run_id=run_dir.name, seed=42, config=cfg.as_dict())
    rec.kernel = KernelRecord(key=KEY, artifact_dir="/x", cache_hit=True, config_sha256_16="0" * 16,
                              meta={"key": KEY, "kernel_version": "6.12.117"})
    rec.guest = GuestRecord(accel="tcg", cmdline="console=ttyS0", tcg_relaxations="", qemu_argv=QEMU)
    for name, duration in (("thp_split", 30), ("migrate_fork", 30)):
        rec.workloads[name] = WorkloadRecord(kind="c", argv=[f"/usr/bin/{name}"], duration=duration, stresses=[],
                                             evidence=[])
    if commit:
        rec.kstress = {"version": "0.1.0", "commit": commit, "dirty": False}
    write_run_json(run_dir, rec)
    return run_dir


def test_the_config_comes_back_as_it_ran(tmp_path, monkeypatch):
    run_dir = recorded_run(tmp_path)
    validate_run_json(run_dir / "run.json")  # with the kstress that made it
    monkeypatch.chdir(tmp_path)
    repro = load_repro(run_dir)
    cfg = repro.cfg
    assert (cfg.kernel_name, cfg.seed, cfg.accel, cfg.memory_mb, cfg.boot_timeout) == ("kasan", 42, "tcg", 1536, 600)
    assert [p.name for p in cfg.fragments][-1] == "kasan.config" and cfg.variants == []
    # The order it ran in, and the duration the manifest gave thp_split then.
    assert [(w.name, w.duration) for w in cfg.workloads] == [("thp_split", 30), ("migrate_fork", 30)]
    assert cfg.known_issues[0].reason == "known"
    assert repro.kernel_key == KEY and repro.qemu_argv == QEMU
    assert cfg.results == tmp_path / "results"  # not the soak's directory
    assert load_repro(run_dir, results=str(tmp_path / "r"), accel="kvm").cfg.accel == "kvm"
    assert repro_command(run_dir) == f"kstress run --repro {run_dir}"


def test_the_qemu_command_line_is_compared_but_for_what_each_boot_makes_anew(tmp_path):
    repro = load_repro(recorded_run(tmp_path))
    again = [a.replace("4242-1-0a1b2c", "77-3-ffffff").replace("_9ulkmt2", "abc").replace("un32_mi1", "x_y")
             for a in QEMU]
    assert repro.compare_qemu(again) == ""
    other = [a.replace(KEY, "f" * 24) for a in again]
    assert repro.compare_qemu(other) == (f"the QEMU command line differs from the run's: the run's had "
                                         f"/c/builds/{KEY}/bzImage; this one has /c/builds/{'f' * 24}/bzImage")


def test_config_from_dict_inverts_as_dict(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent(CONFIG))
    cfg = load_config(path)
    assert config_from_dict(json.loads(json.dumps(cfg.as_dict()))) == cfg
    with pytest.raises(UsageError, match="not a run config as kstress records it"):
        config_from_dict({"workloads": []})


def test_the_repro_says_what_it_cannot_pin(tmp_path):
    notes = load_repro(recorded_run(tmp_path, commit="f" * 40)).notes
    assert any(n.startswith("the run was made by kstress ffffffffffff, this is ") for n in notes), notes


def test_bad_run_directories_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="no run.json there"):
        load_repro(tmp_path)
    (tmp_path / "run.json").write_text("{")
    with pytest.raises(UsageError, match="run.json: not JSON"):
        load_repro(tmp_path)
    (tmp_path / "run.json").write_text('{"format_version": 9, "config": {}}')
    with pytest.raises(UsageError, match=r"not a run record this kstress reads \(format_version 9, expected 1\)"):
        load_repro(tmp_path)


def cache_entry(cache: Path, key: str) -> Path:
    entry = cache / "kernel" / "builds" / key
    entry.mkdir(parents=True)
    (entry / "config").write_text("CONFIG_MIGRATION=y\n")
    (entry / "meta.json").write_text(json.dumps({"key": key, "kernel_version": "6.12.117"}))
    return entry


def test_the_repro_runs_the_caches_kernel_of_the_recorded_key(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache_entry(cache, KEY)
    assert cached_build(KEY, cache).key == KEY and cached_build("nope", cache) is None
    monkeypatch.chdir(tmp_path)
    repro = load_repro(recorded_run(tmp_path))
    monkeypatch.setattr(runner_module, "build_kernel", lambda *a: pytest.fail("built instead of the cached kernel"))
    runner = runner_module.Runner(repro.cfg, cache, kernel_key=KEY)
    try:
        assert runner.build().key == KEY
        assert "kernel_differs_from" not in runner.record.properties
    finally:
        shutil.rmtree(runner.scratch)


def test_a_kernel_gone_from_the_cache_is_built_again_and_a_new_key_is_said(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    entry = cache_entry(cache, "fedcba9876543210fedcba98")
    monkeypatch.chdir(tmp_path)
    repro = load_repro(recorded_run(tmp_path))
    rebuilt = KernelBuild(key=entry.name, artifact_dir=entry, bzimage=entry / "bzImage", vmlinux=entry / "vmlinux",
                          system_map=entry / "System.map", config=entry / "config", build_log=entry / "build.log",
                          meta={"kernel_version": "6.12.117"}, cache_hit=False)
    monkeypatch.setattr(runner_module, "build_kernel", lambda *a: rebuilt)
    runner = runner_module.Runner(repro.cfg, cache, kernel_key=KEY)
    try:
        assert runner.build().key == entry.name
        assert runner.record.properties["kernel_differs_from"] == KEY
    finally:
        shutil.rmtree(runner.scratch)
