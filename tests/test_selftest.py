"""Kind selftest: manifests, TAP verdicts on recorded guest output, the
build from the kernel's own tree, and one short guest run of three
selftests.

tests/data/selftest/*.out are the outputs of real runs in TCG guests of
Debian's 6.12.117 (see tests/data/selftest/README.md for how each was made).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from junit_schema import validate
from run_schema import validate_run_json
from test_e2e_run import kstress, run_dir_of
from test_workloads import GOOD, assert_edit_refused, load_error, make_workload
from workload_host import assert_static

import harness.stress.manifest as wl
from harness.config import RunConfig, WorkloadChoice, load_config
from harness.errors import CouldNotTest
from harness.kernel import BuildRequest, KernelBuild, build
from harness.kernel.build import DEFAULT_SOURCE, kernel_root
from harness.run.prepare import choose_workloads
from harness.stress import adapters
from harness.stress.adapters import selftest

DATA = Path(__file__).parent / "data" / "selftest"
needs_source = pytest.mark.skipif(not DEFAULT_SOURCE.exists(), reason=f"needs the kernel source {DEFAULT_SOURCE} "
                                  "(Debian package linux-source-6.12)")

SELFTEST = """\
name: {name}
kind: selftest
description: a selftest
stresses: [thp]
kernel_options: [CONFIG_TRANSPARENT_HUGEPAGE]
default_duration: 40
program: transhuge-stress
argv: ["-d", "{{duration}}", "64"]
evidence: [thp_fault_alloc]
"""


def recorded(name: str) -> str:
    return (DATA / name).read_text()


def workload(name: str) -> wl.Workload:
    return wl.load_workloads()[name]


# ---------------------------------------------------------------- manifests

def test_a_selftest_manifest(tmp_path):
    make_workload(tmp_path, manifest=SELFTEST.format(name="demo"), source=None)
    w = wl.load_workloads(tmp_path)["demo"]
    assert (w.kind, w.settings, w.sources, w.headers) == (
        "selftest", {"program": "transhuge-stress", "cflags": []}, [], [])
    assert w.takes_duration and w.guest_path == "/usr/bin/demo" and w.comm == "transhuge-stress"
    assert w.argv(30, 1) == ["/bin/sh", "-c", wl.SELFTEST_IN_OWN_DIR, "/usr/bin/demo", "transhuge-stress",
                             "-d", "30", "64"]


BAD_SELFTEST_MANIFESTS = {
    "no program": ("program: transhuge-stress\n", "", ["program", "missing key"]),
    "a path as program": ("program: transhuge-stress", "program: ../../x", ["program", "a program name"]),
    "sources in a selftest": ("program: transhuge-stress\n", "program: transhuge-stress\nsources: [main.c]\n",
                              ["sources", "a key of kind c, not of kind selftest", ":8:"]),
    "no vCPU": ("program: transhuge-stress\n", "program: transhuge-stress\nmin_cpus: 0\n",
                ["min_cpus", "at least 1"]),
    "a flag with a space": ("program: transhuge-stress\n", 'program: transhuge-stress\ncflags: ["-include x.h"]\n',
                            ["cflags[0]", "without spaces"]),
}


@pytest.mark.parametrize("old,new,words", BAD_SELFTEST_MANIFESTS.values(), ids=BAD_SELFTEST_MANIFESTS.keys())
def test_bad_selftest_manifest(tmp_path, old, new, words):
    assert_edit_refused(tmp_path, SELFTEST.format(name="demo"), old, new, words)


def test_a_c_manifest_naming_a_program_is_refused(tmp_path):
    msg = load_error(tmp_path, GOOD.format(name="demo") + "program: cow\n")
    assert "program" in msg and "a key of kind selftest, not of kind c" in msg


def test_repo_selftest_workloads():
    selftests = {n: w for n, w in wl.load_workloads().items() if w.kind == "selftest"}
    assert {"selftest_migration", "selftest_ksm", "selftest_cow", "selftest_khugepaged",
            "selftest_transhuge_stress", "selftest_split_huge_page"} <= set(selftests)
    for name, w in selftests.items():
        assert w.settings["program"] and w.evidence and w.kernel_options, name


def test_a_selftest_without_a_duration_takes_its_own_time(tmp_path):
    cfg = RunConfig(path=tmp_path / "run.yaml", workloads=[WorkloadChoice("selftest_migration", 5),
                                                            WorkloadChoice("selftest_transhuge_stress", 5)])
    migration, stress = choose_workloads(cfg, "")
    assert migration.duration == migration.workload.default_duration  # four 20 s tests, whatever is asked
    assert stress.duration == 5  # -d {duration}


def test_migration_is_skipped_at_planning_below_its_min_cpus(tmp_path):
    dotconfig = "CONFIG_MIGRATION=y\nCONFIG_NUMA=y\nCONFIG_TRANSPARENT_HUGEPAGE=y\n"
    chosen = {cpus: choose_workloads(RunConfig(path=tmp_path / "run.yaml", cpus=cpus, workloads=[
        WorkloadChoice("selftest_migration"), WorkloadChoice("selftest_ksm")]), dotconfig + "CONFIG_KSM=y\n")
        for cpus in (2, 4)}
    migration, ksm = chosen[2]
    assert (migration.skip_type, migration.skipped) == ("guest-lacks", "needs 3 vCPUs: guest.cpus is 2")
    assert ksm.skipped is None
    assert [p.skipped for p in chosen[4]] == [None, None]


def test_nightly_runs_every_selftest():
    cfg = load_config("nightly")
    selftests = {n for n, w in wl.load_workloads().items() if w.kind == "selftest"}
    assert selftests <= {c.name for c in cfg.workloads}
    options = {o for w in wl.load_workloads().values() for o in w.kernel_options}
    for p in choose_workloads(cfg, "".join(f"{o}=y\n" for o in options)):
        if p.workload.kind == "selftest":  # nothing but too few vCPUs keeps one from running
            assert p.skipped is None or p.workload.min_cpus > cfg.cpus, (p.workload.name, p.skipped)


def test_the_guest_runs_a_selftest_in_its_own_directory_under_its_own_name():
    w = workload("selftest_ksm")
    argv = w.argv(60, 1)
    assert argv[:2] == ["/bin/sh", "-c"] and argv[3:] == ["/usr/bin/selftest_ksm", "ksm_functional_tests"]
    assert w.comm == "ksm_functional_tests"
    assert workload("migrate_fork").comm == "migrate_fork"
    assert workload("stressng_vm").comm == "ks-stress-ng"
    # The wrapper itself, on the host: /bin/echo stands in for the selftest.
    name = f"kstress-test-{os.getpid()}"
    res = subprocess.run(["/bin/sh", "-c", wl.SELFTEST_IN_OWN_DIR, "/bin/sh", name, "-c", 'echo "$0"; pwd'],
                         capture_output=True, text=True, check=True)
    assert res.stdout.split() == [f"./{name}", f"/tmp/kstress-selftest/{name}"]
    subprocess.run(["rm", "-rf", f"/tmp/kstress-selftest/{name}"], check=True)


# ---------------------------------------------------------------- TAP

def test_tap_of_the_kselftest_harness():
    tap = selftest.parse_tap(recorded("migration.out"))
    assert tap.planned == 4 and tap.bail_out is None and tap.skip_all is None
    assert [r.description for r in tap.passed] == ["migration.private_anon", "migration.shared_anon",
                                                   "migration.private_anon_thp", "migration.shared_anon_thp"]
    assert tap.counts() == {"passed": 4, "failed": 0, "skipped": 0}


def test_tap_skips_keep_their_reasons_and_the_announced_test_names():
    tap = selftest.parse_tap(recorded("cow.out"))
    assert tap.planned == 744 and tap.counts() == {"passed": 319, "failed": 0, "skipped": 425}
    reasons = {r.reason for r in tap.skipped}
    assert reasons == {"gup_test not available", "io_uring_queue_init() failed",
                       "MADV_COLLAPSE failed: Invalid argument"}
    # "ok 313 # SKIP ..." has no description: the "# [RUN] ..." line before it names the test.
    first = tap.skipped[0]
    assert first.description.startswith("R/O-mapping a page registered as iouring fixed buffer"), first


def test_tap_counts_a_result_once_when_a_forked_child_repeats_it():
    # test_prctl_fork_exec's child does not exec (6.12's argv lacks its NULL)
    # and prints a second "ok 8" and its own totals.
    out = recorded("ksm_functional_tests.out")
    assert out.count("ok 8 ") == 2
    tap = selftest.parse_tap(out)
    assert [r.number for r in tap.results] == list(range(1, 10))
    assert tap.counts() == {"passed": 8, "failed": 0, "skipped": 1}
    assert selftest.judge(workload("selftest_ksm"), 0, out).summary.as_dict()["skipped"] == [
        "4 test_unmerge_uffd_wp: __NR_userfaultfd failed"]


def test_tap_not_ok_with_a_directive_is_not_a_failure():
    tap = selftest.parse_tap("TAP version 13\n1..3\nnot ok 1 later # TODO not yet\nnot ok 2 x # SKIP no\n"
                             "not ok 3 real\n")
    assert [r.number for r in tap.failed] == [3]
    assert [r.number for r in tap.skipped] == [2]


# ---------------------------------------------------------------- verdicts

def test_passing_selftests_pass():
    for name, out in (("selftest_migration", "migration.out"), ("selftest_cow", "cow.out"),
                      ("selftest_split_huge_page", "split_huge_page_test.out"),
                      ("selftest_transhuge_stress", "transhuge-stress.out"),
                      ("selftest_khugepaged", "khugepaged.out")):
        verdict = selftest.judge(workload(name), 0, recorded(out))
        assert verdict.failure is None and verdict.skipped is None, (name, verdict)


def test_not_ok_is_a_failed_testcase_with_its_output():
    out = recorded("migration-hugetlb-not-ok.out")
    outcome = adapters.judge(workload("selftest_migration"), 1, out)
    message, text, kind = outcome.failure
    assert message == "migration: not ok 1 migration.private_anon_htlb"
    assert kind == "selftest" and "Expected ptr" in text and text.startswith("not ok 1 migration.private_anon_htlb")
    assert outcome.subtests == {"planned": 1, "passed": 0, "failed": ["1 migration.private_anon_htlb"], "skipped": []}
    assert outcome.counts == {"passed": 0, "failed": 1, "skipped": 0}


def test_a_bail_out_is_a_failure_naming_it():
    verdict = selftest.judge(workload("selftest_transhuge_stress"), 1, recorded("transhuge-stress-bail-out.out"))
    assert verdict.failure[0] == "transhuge-stress exited with status 1: Bail out! open /nonexistent"


def test_every_subtest_skipped_is_a_skipped_workload_with_the_reason():
    verdict = selftest.judge(workload("selftest_migration"), 0, recorded("migration-2-cpus.out"))
    assert verdict.failure is None
    assert verdict.skipped == "migration: all 4 subtests skipped (Not enough threads or NUMA nodes available)"


def test_ksft_skip_without_tap_gives_the_last_words():
    out = "Transparent Hugepages not available\n"  # khugepaged.c's words before return KSFT_SKIP
    verdict = selftest.judge(workload("selftest_khugepaged"), selftest.KSFT_SKIP, out)
    assert verdict.skipped == "khugepaged: Transparent Hugepages not available"
    out = "TAP version 13\n1..0 # SKIP no NUMA\n"
    verdict = selftest.judge(workload("selftest_migration"), selftest.KSFT_SKIP, out)
    assert verdict.skipped == "migration: no NUMA"


def test_a_selftest_without_tap_has_no_subtests_to_count():
    outcome = adapters.judge(workload("selftest_khugepaged"), 0, recorded("khugepaged.out"))
    assert (outcome.failure, outcome.skipped, outcome.subtests, outcome.counts) == (None, None, None, {})
    assert adapters.judge(workload("selftest_migration"), 0, recorded("migration.out")).counts == {
        "passed": 4, "failed": 0, "skipped": 0}


def test_a_red_check_of_khugepaged_fails_whatever_its_exit_status():
    # khugepaged exits with its number of failed checks: 4 of them read as KSFT_SKIP.
    out = recorded("khugepaged.out").replace("\x1b[32mOK", "\x1b[31mFail", 1)
    verdict = selftest.judge(workload("selftest_khugepaged"), 4, out)
    assert verdict.failure[0] == "khugepaged: Save THP and khugepaged settings... Fail"
    assert "\x1b" not in verdict.failure[1]


def test_fewer_results_than_planned_fail():
    out = recorded("migration.out")
    cut = out[:out.index("ok 3 ")]
    verdict = selftest.judge(workload("selftest_migration"), 0, cut)
    assert verdict.failure[0] == "migration: planned 4 subtests, reported 2"


def test_a_c_workload_is_judged_by_its_exit_status():
    w = workload("migrate_fork")
    assert adapters.judge(w, 0, "whatever").failure is None
    assert adapters.judge(w, 1, "x").failure == ("migrate_fork exited with status 1", "x", "workload")


def test_a_missing_static_library_names_its_package():
    assert "libnuma-dev" in selftest._missing_package("/usr/bin/ld: cannot find -lnuma: No such file or directory")


# ---------------------------------------------------------------- build

def kernel_for(req: BuildRequest, cache: Path) -> KernelBuild:
    """What the selftest build reads of a kernel build: its key and the key's
    source and patch inputs (the selftests do not need the kernel itself)."""
    p = build.plan(req, kernel_root(cache))
    return KernelBuild(key=p.key, artifact_dir=cache, bzimage=cache, vmlinux=cache, system_map=cache,
                       config=cache, build_log=cache, meta={"key_inputs": p.key_inputs}, cache_hit=True)


@needs_source
def test_a_selftest_is_built_static_from_the_kernel_tree_and_cached(kernel_cache, monkeypatch):
    req = BuildRequest()
    kernel = kernel_for(req, kernel_cache)
    w = workload("selftest_transhuge_stress")
    (name, binary), = adapters.build(w, adapters.BuildContext(kernel_cache, kernel, req)).items()
    assert name == "selftest_transhuge_stress"
    assert_static(binary)
    res = subprocess.run([str(binary), "-h"], capture_output=True, text=True)
    assert res.returncode == 1 and "Bail out! usage:" in res.stdout and "-d <duration>" in res.stdout
    tree = kernel_cache / "selftests" / f"tree-{selftest.tree_key(kernel)}"
    assert (tree / "usr" / "include" / "linux" / "mman.h").is_file()  # make headers
    assert not [p for p in (kernel_cache / "selftests").iterdir() if p.name.startswith(".tmp-")]
    monkeypatch.setattr(selftest, "_make", lambda *a: pytest.fail("a cached selftest was built again"))
    monkeypatch.setattr(selftest, "patched_tree", lambda *a: pytest.fail("a cached tree was prepared again"))
    assert adapters.build(w, adapters.BuildContext(kernel_cache, kernel, req)) == {name: binary}


@needs_source
def test_a_patch_of_the_kernel_tree_reaches_the_selftest(kernel_cache, tmp_path):
    patch = tmp_path / "usage.patch"
    patch.write_text(
        "--- a/tools/testing/selftests/mm/transhuge-stress.c\n"
        "+++ b/tools/testing/selftests/mm/transhuge-stress.c\n"
        "@@ -48,3 +48,3 @@ int main(int argc, char **argv)\n"
        " \t\tif (!strcmp(argv[i], \"-h\"))\n"
        "-\t\t\tksft_exit_fail_msg(\"usage: %s [-f <filename>] [-d <duration>] [size in MiB]\\n\",\n"
        "+\t\t\tksft_exit_fail_msg(\"patched usage: %s [-f <filename>] [-d <duration>] [size in MiB]\\n\",\n"
        " \t\t\t\t\t   argv[0]);\n")
    req = BuildRequest(patches=str(patch))
    kernel = kernel_for(req, kernel_cache)
    assert selftest.tree_key(kernel) != selftest.tree_key(kernel_for(BuildRequest(), kernel_cache))
    (binary,) = adapters.build(workload("selftest_transhuge_stress"),
                               adapters.BuildContext(kernel_cache, kernel, req)).values()
    res = subprocess.run([str(binary), "-h"], capture_output=True, text=True)
    assert "Bail out! patched usage:" in res.stdout, res.stdout


@needs_source
def test_a_kernel_built_from_another_series_is_refused(kernel_cache, tmp_path):
    kernel = kernel_for(BuildRequest(), kernel_cache)
    kernel.meta["key_inputs"] = dict(kernel.meta["key_inputs"], patches=["0" * 64])
    with pytest.raises(CouldNotTest, match="another patches than the run names"):
        selftest.ensure_tree(kernel, BuildRequest(), tmp_path / "cache")


def test_without_the_kernel_a_selftest_cannot_be_built():
    with pytest.raises(CouldNotTest, match="no kernel was given"):
        adapters.build(workload("selftest_cow"), adapters.BuildContext(None))


# ---------------------------------------------------------------- in a guest

@pytest.mark.e2e
@needs_source
@pytest.mark.skipif(subprocess.run(["which", "qemu-system-x86_64"], capture_output=True).returncode != 0,
                    reason="needs qemu-system-x86_64 (Debian package qemu-system-x86)")
def test_three_selftests_in_one_guest(kernel_cache, tmp_path):
    cfg = tmp_path / "selftests.yaml"
    cfg.write_text("guest:\n  image: initramfs\n"
                   "workloads:\n  - selftest_ksm\n  - selftest_cow\n"
                   "  - {name: selftest_transhuge_stress, duration: 10}\n")
    res = kstress(["run", str(cfg), "--seed", "1", "--results", str(tmp_path / "r")], kernel_cache)
    assert res.returncode == 0, res.stdout + res.stderr
    run = run_dir_of(tmp_path / "r")
    record = validate_run_json(run / "run.json")
    for name in ("selftest_ksm", "selftest_cow", "selftest_transhuge_stress"):
        entry = record["workloads"][name]
        assert entry["exit_status"] == 0 and entry["subtests"]["passed"] > 0, (name, entry)
        assert not entry["subtests"]["failed"], (name, entry)
        for counter in entry["evidence"]:
            assert entry["vmstat_delta"][counter] > 0, (name, counter, entry["vmstat_delta"])
    assert len(record["workloads"]["selftest_cow"]["subtests"]["skipped"]) > 0  # no gup_test, no io_uring
    doc = validate(run / "junit.xml")
    assert [c.get("name") for c in doc.findall(".//testcase")] == [
        "build", "boot", "selftest_ksm", "selftest_cow", "selftest_transhuge_stress"]
    assert doc.findall(".//failure") == [] and doc.findall(".//error") == []
    props = {p.get("name"): p.get("value") for p in doc.findall(".//property")}
    assert int(props["subtests.selftest_cow.passed"]) > 0
    assert "subtests:" in (run / "summary.txt").read_text()
