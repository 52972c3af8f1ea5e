"""Run-config validation: every error names file, line, key path and what
was expected, and exits 2 through the CLI."""

import re
from pathlib import Path

import pytest

from harness.cli import main
from harness.config import apply_overrides, load_config
from harness.errors import UsageError
from harness.paths import DEFAULT_CONFIG


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "job.yaml"
    p.write_text(text)
    return p


def test_default_config_loads():
    cfg = load_config(DEFAULT_CONFIG)
    assert cfg.accel == "auto"
    assert [w.name for w in cfg.workloads] == ["migrate_fork", "swapcache_migrate", "thp_split"]
    assert (cfg.image, cfg.swap) == ("debian", "auto")  # the main job covers the swap-cache path
    assert all(f.is_file() for f in cfg.fragments)
    assert {f.name for f in cfg.fragments} == {"base-x86.config", "mm-stress.config", "debug.config"}


def test_unknown_key_names_file_line_and_keypath(tmp_path):
    p = write(tmp_path, "guest:\n  cpus: 2\n  acel: kvm\n")
    with pytest.raises(UsageError) as e:
        load_config(p)
    msg = str(e.value)
    assert f"{p}:3:" in msg and "guest.acel" in msg and "unknown key" in msg and "accel" in msg


def test_wrong_type(tmp_path):
    p = write(tmp_path, "guest:\n  cpus: two\n")
    with pytest.raises(UsageError, match=r":2: guest.cpus: expected an integer, got 'two'"):
        load_config(p)


def test_bool_is_not_an_integer(tmp_path):
    p = write(tmp_path, "guest:\n  cpus: true\n")
    with pytest.raises(UsageError, match="guest.cpus"):
        load_config(p)


def test_bad_choice_and_minimum(tmp_path):
    with pytest.raises(UsageError, match="guest.accel: expected one of auto, kvm, tcg"):
        load_config(write(tmp_path, "guest:\n  accel: xen\n"))
    with pytest.raises(UsageError, match="guest.cpus: expected at least 2"):
        load_config(write(tmp_path, "guest:\n  cpus: 1\n"))


def test_missing_files(tmp_path):
    with pytest.raises(UsageError, match=r":2: kernel.source: no such file or directory"):
        load_config(write(tmp_path, "kernel:\n  source: /nonexistent/linux\n"))
    with pytest.raises(UsageError, match=r"kernel.fragments\[1\]: no such fragment: nope"):
        load_config(write(tmp_path, "kernel:\n  fragments: [debug, nope]\n"))


def test_relative_paths_resolve_against_the_config_file(tmp_path):
    (tmp_path / "series").mkdir()
    cfg = load_config(write(tmp_path, "kernel:\n  patches: series\n"))
    assert cfg.patches == str(tmp_path / "series")


def test_workloads_list(tmp_path):
    cfg = load_config(write(tmp_path, "workloads:\n  - migrate_fork\n  - {name: migrate_fork, duration: 5}\n"))
    assert [(w.name, w.duration) for w in cfg.workloads] == [("migrate_fork", None), ("migrate_fork", 5)]
    with pytest.raises(UsageError, match=r"workloads\[0\]: missing key 'name'"):
        load_config(write(tmp_path, "workloads:\n  - duration: 5\n"))
    with pytest.raises(UsageError, match=r"workloads\[0\].dur: unknown key"):
        load_config(write(tmp_path, "workloads:\n  - {name: x, dur: 5}\n"))


def test_invalid_yaml_names_the_line(tmp_path):
    with pytest.raises(UsageError, match=r"job.yaml:\d+: invalid YAML"):
        load_config(write(tmp_path, "guest:\n  cpus: [2\n"))


def test_missing_config_file(tmp_path):
    with pytest.raises(UsageError, match="no such config file"):
        load_config(tmp_path / "absent.yaml")


def test_overrides(tmp_path):
    cfg = load_config(DEFAULT_CONFIG)
    new = apply_overrides(cfg, duration=7, seed=42, results=str(tmp_path))
    assert [w.duration for w in new.workloads] == [7, 7, 7]
    assert new.seed == 42 and new.results == tmp_path
    assert cfg.seed is None  # the original is untouched
    with pytest.raises(UsageError, match="--source /nonexistent: no such file"):
        apply_overrides(cfg, source="/nonexistent")


@pytest.mark.parametrize("argv,needle", [
    (["run", "{tmp}/absent.yaml"], "no such config file"),
    (["run", "{cfg}"], "guest.acel: unknown key"),
    (["run", "--source", "/nonexistent/src"], "--source /nonexistent/src: no such file"),
    (["run", "--duration", "0"], "expected at least 1"),
    (["run", "--bogus"], "unrecognized arguments"),
])
def test_cli_bad_input_exits_2_without_traceback(tmp_path, capsys, argv, needle):
    cfg = write(tmp_path, "guest:\n  acel: kvm\n")
    argv = [a.format(tmp=tmp_path, cfg=cfg) for a in argv]
    with pytest.raises(SystemExit) as e:
        with_results = argv[0] == "run" and "--bogus" not in argv
        raise SystemExit(main(argv + ["--results", str(tmp_path / "r")] if with_results else argv))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_known_issues_match_title_file_and_kernel(tmp_path):
    from harness.console import analyze_file
    from harness.run.triage import known_issue_for

    captured = Path(__file__).parent / "data" / "console-captured"
    cfg = load_config(DEFAULT_CONFIG)
    warning = analyze_file(captured / "warning-6.12-deferred-split-folio-unpatched-1.log")[0]
    bug = analyze_file(captured / "swapops-6.12-fork-1.log")[0]
    assert known_issue_for(cfg.known_issues, warning, "6.12.117") is not None
    assert known_issue_for(cfg.known_issues, bug, "6.12.117") is None
    warning.kernel_version = "6.13.1"  # another kernel: the entry does not apply
    assert known_issue_for(cfg.known_issues, warning, "6.13.1") is None


def test_known_issue_errors(tmp_path):
    with pytest.raises(UsageError, match=r"known_issues\[0\]: missing key 'reason'"):
        load_config(write(tmp_path, "known_issues:\n  - title: x\n"))
    with pytest.raises(UsageError, match=r":2: known_issues\[0\].title: not a regular expression"):
        load_config(write(tmp_path, "known_issues:\n  - {title: '(', reason: r}\n"))


def test_guest_shape_keys(tmp_path):
    cfg = load_config(write(tmp_path, "guest:\n  image: debian\n  node_memory_mb: [768, 1280]\n"
                                      "  hotplug_dimms: 2\n  hotplug_dimm_mb: 256\n  swap: zram\n"))
    assert (cfg.image, cfg.memory_mb, cfg.hotplug_dimms, cfg.swap) == ("debian", 2048, 2, "zram")
    for text, needle in (("guest:\n  image: ubuntu\n", "expected one of initramfs, debian"),
                         ("guest:\n  node_memory_mb: [1024]\n", "expected 2 sizes"),
                         ("guest:\n  node_memory_mb: [64, 1024]\n", "node_memory_mb[0]: expected at least 128"),
                         ("guest:\n  hotplug_dimm_mb: 300\n", ":2: guest.hotplug_dimm_mb: expected a multiple of 128"),
                         ("guest:\n  swap: nfs\n", "expected one of auto, disk, zram, none")):
        with pytest.raises(UsageError, match=re.escape(needle)):
            load_config(write(tmp_path, text))
