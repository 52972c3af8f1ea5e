"""Workload kinds (c, python, stress-ng; selftest in test_selftest.py): what each kind's manifest holds, the
guest files each adapter makes, the workloads a manifest runs (runs:), and a
workload skipped with the reason when the guest image lacks what its kind
needs (python3, stress-ng on the busybox initramfs)."""

from __future__ import annotations

from pathlib import Path

import pytest

import harness.stress.manifest as wl
from harness.config import RunConfig, WorkloadChoice
from harness.errors import UsageError
from harness.guest.images import PROGRAMS, debian
from harness.run.prepare import choose_workloads, why_skipped
from harness.stress import adapters
from harness.stress.adapters import python as py_adapter

REPO = Path(__file__).resolve().parent.parent
FULL_CONFIG = "\n".join(f"CONFIG_{o}=y" for o in (
    "MIGRATION", "NUMA", "COMPACTION", "TRANSPARENT_HUGEPAGE", "ADVISE_SYSCALLS", "PROC_SYSCTL", "SWAP",
    "PROC_PAGE_MONITOR", "MEMORY_HOTREMOVE")) + "\n"

PYTHON = """\
name: {name}
description: a python workload
kind: python
stresses: [thp]
kernel_options: []
default_duration: 5
sources: [{name}.py]
argv: ["--duration", "{{duration}}", "--seed", "{{seed}}"]
evidence: [drop_pagecache]
"""
SCRIPT = "#!/usr/bin/python3\nprint('hello')\n"

STRESS_NG = """\
name: {name}
description: a stress-ng workload
kind: stress-ng
stresses: [mremap]
kernel_options: []
default_duration: 5
argv: ["--mremap", "1"]
evidence: [pgfault]
"""


PY_DEMO, SNG_DEMO = PYTHON.format(name="demo"), STRESS_NG.format(name="demo")


def write(root: Path, name: str, manifest: str, files: dict[str, str] | None = None) -> Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "manifest.yaml").write_text(manifest)
    for rel, text in (files or {}).items():
        (d / rel).write_text(text)
    return d / "manifest.yaml"


def error_of(tmp_path: Path, manifest: str, files: dict[str, str] | None = None, name: str = "demo") -> str:
    path = write(tmp_path, name, manifest, files)
    with pytest.raises(UsageError) as exc:
        wl.load_workloads(tmp_path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}:"), msg
    return msg


def test_python_workload(tmp_path):
    write(tmp_path, "demo", PYTHON.format(name="demo"), {"demo.py": SCRIPT})
    w = wl.load_workloads(tmp_path)["demo"]
    assert w.kind == "python" and w.sources == [tmp_path.resolve() / "demo" / "demo.py"]
    assert w.argv(9, 4) == ["/usr/bin/demo", "--duration", "9", "--seed", "4"]
    assert adapters.build(w) == {"demo": w.sources[0]}
    assert w.rules.guest_needs == ("python3",)


def test_stress_ng_workload_runs_through_ks_stress_ng(tmp_path):
    write(tmp_path, "demo", STRESS_NG.format(name="demo"))
    w = wl.load_workloads(tmp_path)["demo"]
    assert w.sources == [] and w.argv(9, 4) == [
        "/usr/bin/ks-stress-ng", "--name", "demo", "--duration", "9", "--seed", "4", "--", "--mremap", "1"]
    (name, path), = adapters.build(w).items()
    assert name == "ks-stress-ng" and path == REPO / "workloads" / "lib" / "ks_stress_ng.py"
    assert set(w.rules.guest_needs) == {"python3", "stress-ng"}


# (manifest, files, words the error must hold besides the manifest's path)
BAD = {
    "unknown kind": (PY_DEMO.replace("kind: python", "kind: rust"), {"demo.py": SCRIPT},
                     ["kind", "expected one of c, python, stress-ng", ":3:"]),
    ".c in a python workload": (PY_DEMO.replace("[demo.py]", "[demo.py, helper.c]"),
                                {"demo.py": SCRIPT, "helper.c": ""},
                                ["sources[1]", "a relative path to a .py file", "'helper.c'", ":7:"]),
    "python without its own program": (PY_DEMO.replace("[demo.py]", "[other.py]"), {"other.py": SCRIPT},
                                       ["sources", "expected demo.py among them"]),
    "python with no sources": (PY_DEMO.replace("[demo.py]", "[]"), {}, ["sources", "at least one item"]),
    "headers in a python workload": (PY_DEMO + "headers: [../lib/kstress.h]\n", {"demo.py": SCRIPT},
                                     ["headers", "a key of kind c, not of kind python", ":10:"]),
    "sources in a stress-ng workload": (SNG_DEMO + "sources: [demo.py]\n", {"demo.py": SCRIPT},
                                        ["sources", "a key of kind c, not of kind stress-ng"]),
    "missing stress-ng argv": (SNG_DEMO.replace('argv: ["--mremap", "1"]\n', ""), {},
                               ["argv", "missing key"]),
    "empty stress-ng argv": (SNG_DEMO.replace('["--mremap", "1"]', "[]"), {},
                             ["argv", "expected at least one item", ":7:"]),
    "stress-ng --timeout of its own": (SNG_DEMO.replace('"1"]', '"1", "--timeout", "5s"]'), {},
                                       ["argv[2]", "--timeout is added by kind stress-ng itself"]),
    "stress-ng --yaml=file": (SNG_DEMO.replace('"1"]', '"1", "--yaml=x"]'), {},
                              ["argv[2]", "--yaml is added by kind stress-ng"]),
    "evidence the runner does not record": (PY_DEMO.replace("[drop_pagecache]", "[nr_free_pages]"),
                                            {"demo.py": SCRIPT}, ["evidence[0]", "of the families", ":9:"]),
    "runs an unknown workload": (PY_DEMO + "runs: [migrate_frok]\n", {"demo.py": SCRIPT},
                                 ["runs[0]", "unknown workload 'migrate_frok'", ":10:"]),
    "runs itself": (PY_DEMO + "runs: [demo]\n", {"demo.py": SCRIPT}, ["runs[0]", "cannot run itself"]),
}


@pytest.mark.parametrize("manifest,files,words", BAD.values(), ids=BAD.keys())
def test_bad_manifests_name_file_line_and_key(tmp_path, manifest, files, words):
    msg = error_of(tmp_path, manifest, files)
    for word in words:
        assert word in msg, (word, msg)


@pytest.mark.parametrize("script,words", [
    ("#!/usr/bin/env python3\nprint(1)\n", ["demo.py:1:", "expected the first line #!/usr/bin/python3"]),
    ("#!/usr/bin/python3\nif True\n    pass\n", ["demo.py:2:", "invalid Python"]),
])
def test_python_adapter_refuses_what_the_guest_cannot_run(tmp_path, script, words):
    write(tmp_path, "demo", PYTHON.format(name="demo"), {"demo.py": script})
    w = wl.load_workloads(tmp_path)["demo"]
    with pytest.raises(UsageError) as exc:
        py_adapter.guest_files(w)
    for word in words:
        assert word in str(exc.value), (word, str(exc.value))


def test_runs_bring_their_files_and_one_name_means_one_file(tmp_path):
    write(tmp_path, "helper", PYTHON.format(name="helper"), {"helper.py": SCRIPT})
    write(tmp_path, "demo", PYTHON.format(name="demo") + "runs: [helper]\n", {"demo.py": SCRIPT})
    write(tmp_path, "other", PYTHON.format(name="other") + "runs: [demo]\n", {"other.py": SCRIPT})
    ws = wl.load_workloads(tmp_path)
    assert [c.name for c in wl.companions(ws["other"], ws)] == ["demo", "helper"]
    files = adapters.build_all([ws["other"], *wl.companions(ws["other"], ws), ws["helper"]])
    assert sorted(files) == ["demo", "helper", "other"]
    clash = tmp_path / "elsewhere" / "helper.py"
    clash.parent.mkdir()
    clash.write_text(SCRIPT + "print(2)\n")
    ws["other"].sources = [ws["other"].sources[0], clash]
    with pytest.raises(UsageError, match="workloads other and helper both put a different /usr/bin/helper"):
        adapters.build_all([ws["other"], ws["helper"]])


def test_every_kind_has_an_adapter_and_a_judge():
    assert set(adapters.BUILDERS) == set(wl.KINDS)
    assert {kind.verdict for kind in wl.KINDS.values()} <= set(adapters.JUDGES)


def test_repo_workloads_of_each_kind():
    ws = wl.load_workloads()
    assert {w.kind for w in ws.values()} == set(wl.KINDS)
    built = ("c", "selftest")  # compiled (the selftests from the kernel's tree): tested in their own files
    for w in ws.values():
        files = adapters.build(w) if w.kind not in built else {w.name: None}
        assert Path(w.guest_path).name in files, w.name
    mixer = ws["mixer"]
    children = mixer.argv_template[mixer.argv_template.index("--children") + 1].split(",")
    assert "--knob-churn" in mixer.argv_template
    assert sorted(mixer.runs) == sorted(children + ["knob_churn"])
    assert all(ws[c].kind == "c" for c in children)


def test_debian_offers_what_the_kinds_need():
    packages = debian.parse_packages(debian.RECIPE_DIR / "packages")
    assert PROGRAMS["debian"] <= set(packages)
    needs = {n for kind in wl.KINDS.values() for n in kind.guest_needs}
    assert needs <= PROGRAMS["debian"]
    assert not PROGRAMS["initramfs"] & needs


def config(tmp_path: Path, image: str, *names: str) -> RunConfig:
    return RunConfig(path=tmp_path / "run.yaml", image=image, workloads=[WorkloadChoice(n) for n in names])


def test_python_and_stress_ng_are_skipped_on_the_initramfs_with_the_reason(tmp_path):
    names = ("knob_churn", "stressng_vm", "migrate_fork", "mixer")
    by_name = {p.workload.name: p for p in choose_workloads(config(tmp_path, "initramfs", *names), FULL_CONFIG)}
    assert by_name["knob_churn"].skipped == "needs python3: guest.image initramfs has none; use guest.image debian"
    assert by_name["knob_churn"].skip_type == "guest-lacks"
    assert by_name["stressng_vm"].skipped == ("needs python3, stress-ng: guest.image initramfs has none; "
                                             "use guest.image debian")
    assert by_name["migrate_fork"].skipped is None
    assert by_name["mixer"].skipped.startswith("needs python3")
    on_debian = choose_workloads(config(tmp_path, "debian", *names), FULL_CONFIG)
    assert [p.skipped for p in on_debian] == [None] * 4


def test_a_workload_skips_for_what_the_workloads_it_runs_need(tmp_path):
    (mixer,) = choose_workloads(config(tmp_path, "debian", "mixer"), FULL_CONFIG)
    assert [c.name for c in mixer.companions] == ["migrate_fork", "swapcache_migrate", "vma_churn", "knob_churn"]
    (mixer,) = choose_workloads(config(tmp_path, "debian", "mixer"),
                                FULL_CONFIG.replace("CONFIG_SWAP=y", "# CONFIG_SWAP is not set"))
    assert mixer.skipped == "the kernel lacks CONFIG_SWAP" and mixer.skip_type == "missing-kernel-options"


def test_why_skipped_names_no_image_when_none_has_everything(monkeypatch, tmp_path):
    w = wl.load_workloads()["knob_churn"]
    monkeypatch.setitem(wl.KINDS, "python", wl.Kind("test", guest_needs=("python3", "perl")))
    assert why_skipped([w], FULL_CONFIG, "debian") == (
        "guest-lacks", "needs perl: guest.image debian has none")
