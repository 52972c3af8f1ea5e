"""Workload manifests, static builds, and a short host run of migrate_fork."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from workload_host import (
    DEBIAN_TARBALL,
    KERNEL_LIKE,
    assert_static,
    assert_usage_error,
    build,
    counts,
    kconfig_symbols_6_12,
    nodes_with_memory,
    run,
)

import harness.stress.manifest as wl
from harness.errors import CouldNotTest, UsageError
from harness.stress.adapters import c as c_adapter
from harness.stress.vmstat import deltas, missing_evidence

REPO = Path(__file__).resolve().parent.parent
C_WORKLOADS = ("migrate_fork", "swapcache_migrate", "vma_churn", "thp_split", "reclaim_pressure",
               "ksm_migrate", "offline_migrate")
PLANTED = REPO / "tests" / "data" / "planted"

GOOD = """\
name: {name}
description: a test workload
stresses: [migration, fork]
kernel_options: [CONFIG_MIGRATION]
default_duration: 7
sources: [main.c]
argv: ["--duration", "{{duration}}", "--seed", "{{seed}}", "--fixed"]
evidence: [pgmigrate_success]
"""

MAIN_C = "int main(void) { return 0; }\n"


def make_workload(root: Path, name: str = "demo", manifest: str | None = None,
                  source: str | None = MAIN_C) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "manifest.yaml").write_text(manifest if manifest is not None else GOOD.format(name=name))
    if source is not None:
        (d / "main.c").write_text(source)
    return d / "manifest.yaml"


def load_error(tmp_path: Path, manifest: str, source: str | None = MAIN_C) -> str:
    path = make_workload(tmp_path, manifest=manifest, source=source)
    with pytest.raises(UsageError) as exc:
        wl.load_workloads(tmp_path)
    msg = str(exc.value)
    assert str(path) in msg, msg
    return msg


def test_good_manifest(tmp_path):
    make_workload(tmp_path)
    w = wl.load_workloads(tmp_path)["demo"]
    assert w.stresses == ["migration", "fork"]
    assert w.kernel_options == ["CONFIG_MIGRATION"]
    assert w.default_duration == 7
    assert w.sources == [(tmp_path / "demo" / "main.c").resolve()]
    assert w.evidence == ["pgmigrate_success"]
    assert w.headers == []
    assert w.directory == (tmp_path / "demo").resolve()
    assert w.argv(30, 42) == ["/usr/bin/demo", "--duration", "30", "--seed", "42", "--fixed"]


def floors(text: str, inline: bool = False) -> tuple[str, str]:
    """GOOD's evidence line, and it followed by evidence_floors: ``text``."""
    line = "evidence: [pgmigrate_success]\n"
    return line, f"{line}evidence_floors:{' ' if inline else chr(10) + '  '}{text}\n"


# (text in GOOD, its replacement, words the error must contain besides the path)
BAD_MANIFESTS = {
    "unknown key": ("evidence: [pgmigrate_success]\n", "evidence: [pgmigrate_success]\ntimeout: 3\n",
                    ["timeout", "unknown key", ":9:"]),
    "wrong type": ("default_duration: 7", "default_duration: soon",
                   ["default_duration", "expected an integer", ":5:"]),
    "wrong item type": ("[migration, fork]", "[migration, 3]", ["stresses[1]", "expected a string"]),
    "unknown stress": ("[migration, fork]", "[migrations]", ["stresses[0]", "one of"]),
    "not a CONFIG_ symbol": ("[CONFIG_MIGRATION]", "[MIGRATION]", ["kernel_options[0]", "CONFIG_"]),
    "missing key": ("evidence: [pgmigrate_success]\n", "", ["evidence", "missing key"]),
    "bad placeholder": ("{duration}", "{durations}", ["argv[1]", "placeholder"]),
    "missing source": ("[main.c]", "[main.c, gone.c]", ["sources[1]", "no such file", "gone.c"]),
    "no sources": ("[main.c]", "[]", ["sources", "at least one"]),
    "missing header": ("evidence: [pgmigrate_success]\n", "evidence: [pgmigrate_success]\nheaders: [../lib/gone.h]\n",
                       ["headers[0]", "no such file", "gone.h", ":9:"]),
    "header not a .h": ("evidence: [pgmigrate_success]\n", "evidence: [pgmigrate_success]\nheaders: [main.c]\n",
                        ["headers[0]", "a relative path to a .h file", ":9:"]),
    "floors of no accelerator": (*floors("qemu: {pgmigrate_success: 5}"),
                                 ["evidence_floors.qemu", "expected an accelerator, one of tcg, kvm", ":10:"]),
    "floor of no counter": (*floors("tcg: {nr_free_pages: 5}"),
                            ["evidence_floors.tcg.nr_free_pages", "a /proc/vmstat counter of the families"]),
    "floor not above 0": (*floors("tcg: {pgmigrate_success: 0}"), ["per minute above 0, got 0", ":10:"]),
    "floor not a number": (*floors("tcg: {pgmigrate_success: many}"), ["expected an integer or a number"]),
    "floors not a mapping": (*floors("[1]", inline=True), ["evidence_floors", "expected a mapping", ":9:"]),
}


@pytest.mark.parametrize("old,new,words", BAD_MANIFESTS.values(), ids=BAD_MANIFESTS.keys())
def test_bad_manifest(tmp_path, old, new, words):
    good = GOOD.format(name="demo")
    assert old in good
    msg = load_error(tmp_path, good.replace(old, new))
    for word in words:
        assert word in msg, (word, msg)


def test_evidence_floors_are_per_accelerator_and_per_minute(tmp_path):
    make_workload(tmp_path, manifest=GOOD.format(name="demo") + "evidence_floors:\n"
                  "  tcg: {pgmigrate_success: 1000, compact_isolated: 12.5}\n")
    w = wl.load_workloads(tmp_path)["demo"]
    assert w.evidence_floors == {"tcg": {"pgmigrate_success": 1000, "compact_isolated": 12.5}}
    assert wl.load_workloads()["vma_churn"].evidence_floors == {}  # none without measured figures


def test_missing_main_source(tmp_path):
    msg = load_error(tmp_path, GOOD.format(name="demo"), source=None)
    assert "sources[0]" in msg and "no such file" in msg and "main.c" in msg


def test_name_must_match_directory(tmp_path):
    msg = load_error(tmp_path, GOOD.format(name="other"))
    assert "name" in msg and "'demo'" in msg


def test_invalid_yaml(tmp_path):
    msg = load_error(tmp_path, "name: [demo\n")
    assert "invalid YAML" in msg


def test_repo_manifests():
    ws = wl.load_workloads()
    w = ws["migrate_fork"]
    assert {"migration", "compaction", "fork", "thp"} <= set(w.stresses)
    assert "pgmigrate_success" in w.evidence
    assert w.argv(5, 9) == ["/usr/bin/migrate_fork", "--duration", "5", "--seed", "9"]
    shared = (REPO / "workloads" / "lib" / "kstress.h").resolve()
    assert sorted(name for name, w in ws.items() if w.kind == "c") == sorted(C_WORKLOADS)
    for name in C_WORKLOADS:
        assert [h.resolve() for h in ws[name].headers] == [shared], name


@pytest.fixture(scope="module")
def kconfig_6_12(tmp_path_factory) -> set[str]:
    return kconfig_symbols_6_12(tmp_path_factory.mktemp("kconfig"))


@pytest.mark.parametrize("name", sorted(wl.load_workloads()))
def test_repo_evidence_counters_are_ones_the_runner_reads(name):
    evidence = wl.load_workloads()[name].evidence
    # deltas() keeps only the families in EVIDENCE_PREFIXES: a counter of
    # another family would fail every guest run "no evidence".
    delta = deltas({counter: 0 for counter in evidence}, {counter: 1 for counter in evidence})
    assert not missing_evidence(delta, evidence)


@pytest.mark.parametrize("name", sorted(wl.load_workloads()))
def test_repo_kernel_options_exist_in_6_12(name, kconfig_6_12):
    options = wl.load_workloads()[name].kernel_options
    assert not [o for o in options if o.removeprefix("CONFIG_") not in kconfig_6_12]


@pytest.fixture(scope="module")
def build_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def migrate_fork_binary(build_cache) -> Path:
    return build("migrate_fork", build_cache)


@pytest.mark.parametrize("name", C_WORKLOADS)
def test_build_is_static(name, build_cache):
    """Every C workload runs in an initramfs guest, which has no libc."""
    assert_static(build(name, build_cache))


def test_build_is_cached_and_keyed_by_source(tmp_path, monkeypatch):
    make_workload(tmp_path / "w")
    w = wl.load_workloads(tmp_path / "w")["demo"]
    first = c_adapter.build(w, tmp_path / "cache")
    compiles = []
    real_run = subprocess.run

    def spy(cmd, *a, **kw):
        if "-o" in cmd:
            compiles.append(cmd)
        return real_run(cmd, *a, **kw)

    monkeypatch.setattr(c_adapter.subprocess, "run", spy)
    assert c_adapter.build(w, tmp_path / "cache") == first
    assert compiles == []
    (w.directory / "main.c").write_text("int main(void) { return 1; }\n")
    second = c_adapter.build(w, tmp_path / "cache")
    assert second != first and second.is_file() and len(compiles) == 1
    assert not [p for p in (tmp_path / "cache" / "workloads").iterdir() if p.name.startswith(".tmp-")]


def test_a_listed_header_is_in_the_key_and_on_the_include_path(tmp_path):
    lib = tmp_path / "w" / "lib"
    lib.mkdir(parents=True)
    (lib / "demo.h").write_text("#define STATUS 0\n")
    manifest = GOOD.format(name="demo") + "headers: [../lib/demo.h]\n"
    make_workload(tmp_path / "w", manifest=manifest, source='#include "demo.h"\nint main(void) { return STATUS; }\n')
    w = wl.load_workloads(tmp_path / "w")["demo"]
    assert w.headers == [w.directory / "../lib/demo.h"]
    key = c_adapter.workload_key(w)
    first = c_adapter.build(w, tmp_path / "cache")
    assert subprocess.run([str(first)]).returncode == 0
    (lib / "demo.h").write_text("#define STATUS 3\n")
    assert c_adapter.workload_key(w) != key
    second = c_adapter.build(w, tmp_path / "cache")
    assert second != first and subprocess.run([str(second)]).returncode == 3


def test_compile_error_is_could_not_test(tmp_path):
    make_workload(tmp_path / "w", source="int main(void) { return undeclared_thing; }\n")
    w = wl.load_workloads(tmp_path / "w")["demo"]
    with pytest.raises(CouldNotTest) as exc:
        c_adapter.build(w, tmp_path / "cache")
    assert "undeclared_thing" in str(exc.value) and "error" in str(exc.value)
    assert not any((tmp_path / "cache" / "workloads").glob("demo-*"))


def run_host(binary: Path, *args: str) -> subprocess.CompletedProcess:
    # Writing compact_memory needs root; elsewhere skip that part, not the test.
    extra = [] if os.geteuid() == 0 else ["--no-compact"]
    return run(binary, "--duration", "2", "--seed", "1", *extra, *args, timeout=120)


def check_summary(out: str) -> None:
    assert not KERNEL_LIKE.search(out), out
    values = counts(out, "migrate_fork")
    for key in ("forks", "writes", "move_pages_calls", "pages_requested", "minor_faults"):
        assert values[key] > 0, (key, out)


def test_host_run(migrate_fork_binary):
    res = run_host(migrate_fork_binary)
    if nodes_with_memory() >= 2:
        assert res.returncode == 0, res.stderr
        check_summary(res.stdout)
        assert int(re.search(r"\bpages_moved=(\d+)", res.stdout).group(1)) > 0, res.stdout
    else:
        # One node: refuse clearly rather than "pass" without migrating.
        assert res.returncode == 2, (res.stdout, res.stderr)
        assert "two NUMA nodes" in res.stderr and "--allow-single-node" in res.stderr
        assert res.stdout == ""
        res = run_host(migrate_fork_binary, "--allow-single-node")
        assert res.returncode == 0, res.stderr
        check_summary(res.stdout)


def test_host_usage_errors(migrate_fork_binary):
    for args in (["--duration", "x", "--seed", "1"], ["--seed", "1"], ["--duration", "1", "--seed", "1", "--bogus"]):
        assert_usage_error(run(migrate_fork_binary, *args, timeout=30))


@pytest.mark.skipif(not DEBIAN_TARBALL.is_file(), reason=f"{DEBIAN_TARBALL} not installed")
def test_planted_patches_apply(tmp_path):
    patches = sorted(PLANTED.glob("*.patch"))
    assert patches
    # Each touches only mm/migrate.c: extract just that (the whole tree is 1.7 GB).
    for p in patches:
        touched = re.findall(r"^\+\+\+ b/(\S+)", p.read_text(), re.M)
        assert touched == ["mm/migrate.c"], (p.name, touched)
    subprocess.run(["tar", "-xf", str(DEBIAN_TARBALL), "-C", str(tmp_path),
                    "linux-source-6.12/mm/migrate.c"], check=True)
    for p in patches:
        res = subprocess.run(["patch", "-p1", "--dry-run", "-i", str(p)], cwd=tmp_path / "linux-source-6.12",
                             capture_output=True, text=True)
        assert res.returncode == 0 and "FAILED" not in res.stdout and "fuzz" not in res.stdout, (p.name, res.stdout)


def test_kind_defaults_to_c_and_unknown_kinds_are_named(tmp_path):
    make_workload(tmp_path)
    assert wl.load_workloads(tmp_path)["demo"].kind == "c"
    msg = load_error(tmp_path / "k", GOOD.format(name="demo") + "kind: rust\n")
    assert "kind" in msg and "expected one of c" in msg


def test_missing_kernel_options_skip_the_workload_with_the_reason(tmp_path):
    from harness.config import RunConfig, WorkloadChoice
    from harness.run.prepare import choose_workloads

    cfg = RunConfig(path=tmp_path / "run.yaml", workloads=[WorkloadChoice("migrate_fork")])
    full = "CONFIG_MIGRATION=y\nCONFIG_NUMA=y\nCONFIG_COMPACTION=y\nCONFIG_TRANSPARENT_HUGEPAGE=y\n" \
           "CONFIG_ADVISE_SYSCALLS=y\nCONFIG_PROC_SYSCTL=y\n"
    (planned,) = choose_workloads(cfg, full)
    assert planned.skipped is None and planned.duration == planned.workload.default_duration
    (planned,) = choose_workloads(cfg, full.replace("CONFIG_NUMA=y", "# CONFIG_NUMA is not set"))
    assert planned.skipped == "the kernel lacks CONFIG_NUMA"


def test_unknown_workload_in_a_config_is_a_usage_error(tmp_path):
    from harness.config import RunConfig, WorkloadChoice
    from harness.run.prepare import choose_workloads

    cfg = RunConfig(path=tmp_path / "run.yaml", workloads=[WorkloadChoice("migrate_frok")])
    with pytest.raises(UsageError, match="unknown workload 'migrate_frok' .*available: .*migrate_fork"):
        choose_workloads(cfg, "")
