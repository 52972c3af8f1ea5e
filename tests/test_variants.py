"""Kernel variants: the config's kernel.variants (strict, file:line errors),
the variants mode's loop (one Runner per kernel, same seed, own results
directory, combined summary, JUnit and exit code) with a stand-in Runner,
and the CLI's --variant."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from junit_schema import validate

from harness import cli
from harness.config import DEFAULT_KERNEL, load_config
from harness.console.model import Finding
from harness.errors import CouldNotTest, UsageError, worst_exit
from harness.modes import variants as mode
from harness.modes.variants import VariantRuns
from harness.paths import KERNEL_CONFIGS_DIR, default_fragments, shipped_configs
from harness.run.record import FindingRecord, GuestRecord, RunRecord, WorkloadRecord
from harness.run.results import new_run_dir

VARIANTS = """\
kernel:
  fragments: [base-x86, mm-stress, debug]
  variants:
    - name: kasan
      fragments: [base-x86, mm-stress, debug, kasan]
      guest: {boot_timeout: 600, silence_timeout: 300}
      run: {workload_grace: 240}
    - {name: lockdep, fragments: [base-x86, mm-stress, debug, lockdep]}
guest:
  boot_timeout: 100
workloads:
  - {name: migrate_fork, duration: 30}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_variants_parse_with_their_fragments_and_timing_overrides(tmp_path):
    cfg = load_config(write(tmp_path, VARIANTS))
    assert cfg.kernel_names() == [DEFAULT_KERNEL, "kasan", "lockdep"]
    kasan = cfg.for_kernel("kasan")
    assert [p.name for p in kasan.fragments] == ["base-x86.config", "mm-stress.config", "debug.config",
                                                 "kasan.config"]
    assert (kasan.boot_timeout, kasan.silence_timeout, kasan.workload_grace) == (600, 300, 240)
    assert kasan.kernel_name == "kasan" and kasan.variants == []
    lockdep = cfg.for_kernel("lockdep")
    assert lockdep.boot_timeout == 100 and lockdep.workload_grace == cfg.workload_grace  # the config's own
    assert cfg.for_kernel(DEFAULT_KERNEL).fragments == cfg.fragments
    assert cfg.boot_timeout == 100 and len(cfg.variants) == 2  # the config itself is untouched
    assert json.dumps(cfg.as_dict())  # run.json holds the variants too
    with pytest.raises(UsageError, match=r"no kernel variant 'kasn' \(the config has: default, kasan, lockdep\)"):
        cfg.for_kernel("kasn")


@pytest.mark.parametrize("item, line, expected", [
    ("{name: k2, fragments: [base-x86, kasn]}", 5, r"kernel\.variants\[1\]\.fragments\[1\]: no such fragment: kasn "
                                                   r"\(looked in "),
    ("{name: k2, fragmens: [kasan]}", 5, r"kernel\.variants\[1\]\.fragmens: unknown key \(expected one of: name, "
                                         r"fragments, guest, run\)"),
    ("{name: k2}", 5, r"kernel\.variants\[1\]: missing key 'fragments'"),
    ("{name: k2, fragments: []}", 5, r"kernel\.variants\[1\]\.fragments: expected at least one fragment"),
    ("{name: k2, fragments: kasan}", 5, r"kernel\.variants\[1\]\.fragments: expected a list"),
    ("{name: kasan, fragments: [kasan]}", 5, r"kernel\.variants\[1\]\.name: duplicate variant 'kasan' "
                                             r"\(first at line 4\)"),
    ("{name: default, fragments: [kasan]}", 5, r"kernel\.variants\[1\]\.name: expected a name of lower-case"),
    ("{name: KASAN, fragments: [kasan]}", 5, r"kernel\.variants\[1\]\.name: expected .* got 'KASAN'"),
    ("{name: k2, fragments: [kasan], guest: {image: initramfs}}", 5,
     r"kernel\.variants\[1\]\.guest\.image: unknown key \(expected one of: boot_timeout, silence_timeout, "
     r"extra_cmdline\)"),
    ("{name: k2, fragments: [kasan], run: {workload_grace: -5}}", 5,
     r"kernel\.variants\[1\]\.run\.workload_grace: expected at least 0, got -5"),
    ("{name: k2, fragments: [kasan], guest: {boot_timeout: soon}}", 5,
     r"kernel\.variants\[1\]\.guest\.boot_timeout: expected an integer or a number, got 'soon'"),
    ("k2", 5, r"kernel\.variants\[1\]: expected a mapping"),
])
def test_variant_mistakes_name_the_file_line_and_key(tmp_path, item, line, expected):
    path = write(tmp_path, f"kernel:\n  fragments: [base-x86]\n  variants:\n    - {{name: kasan, fragments: [kasan]}}\n"
                           f"    - {item}\n")
    with pytest.raises(UsageError, match=rf"^{path}:{line}: {expected}"):
        load_config(path)


def test_a_misspelt_variants_key_is_an_unknown_kernel_key(tmp_path):
    path = write(tmp_path, "kernel:\n  variant:\n    - {name: kasan, fragments: [kasan]}\n")
    with pytest.raises(UsageError, match=rf"^{path}:3: kernel.variant: unknown key \(expected one of: .*variants"):
        load_config(path)


def test_default_fragments_leave_the_variant_fragments_out():
    # kernel-configs/ holds kasan and lockdep too: a config without fragments must not get them.
    names = {p.name for p in default_fragments()}
    assert names == {"base-x86.config", "mm-stress.config", "debug.config"}
    assert {"kasan.config", "lockdep.config"} <= {p.name for p in KERNEL_CONFIGS_DIR.glob("*.config")}
    for path in shipped_configs().values():  # every shipped config's own kernel is the default one
        assert {p.name for p in load_config(path).fragments} == names, path


def test_the_nightly_config_runs_a_variant_beside_its_own_kernel():
    cfg = load_config("nightly")
    assert len(cfg.kernel_names()) >= 2
    for name in cfg.kernel_names()[1:]:
        v = cfg.for_kernel(name)
        assert set(cfg.fragments) < set(v.fragments)  # today's fragments plus the variant's own
        assert v.boot_timeout >= cfg.boot_timeout and v.workload_grace >= cfg.workload_grace


@pytest.mark.parametrize("codes, expected", [
    ([0, 0], 0), ([0, 125], 125), ([125, 1], 1), ([2, 125], 2), ([1, 2], 1), ([0, 130, 1], 130), ([0, 7], 125),
    ([], 125),
])
def test_the_exit_code_is_the_worst_of_the_kernels(codes, expected):
    assert worst_exit(codes) == expected


class FakeRunner:
    """Stands in for Runner: one record per kernel; kasan finds a use-after-free, lockdep cannot build."""

    made: list = []
    broken: set = {"lockdep"}
    interrupt_on: str | None = None

    def __init__(self, cfg, cache_dir=None):
        self.cfg = cfg
        FakeRunner.made.append(cfg)
        self.run_id, self.run_dir = new_run_dir(cfg.results)
        self.record = RunRecord(run_id=self.run_id, seed=cfg.seed, config=cfg.as_dict())

    def run(self):
        name = self.cfg.kernel_name
        build = self.record.case("build")
        if name == FakeRunner.interrupt_on:
            raise KeyboardInterrupt("SIGTERM")
        if name in FakeRunner.broken:
            build.error("kernel build failed (full log: /x)")
            self.record.exit_code = 125
            raise CouldNotTest("kernel build failed (full log: /x):\n  mm/x.c:1: error: nope")
        self.record.guest = GuestRecord(accel="tcg", cmdline="", tcg_relaxations="", seconds_to_ready=10.0)
        self.record.case("boot").classname = "kstress.boot"
        case = self.record.case("migrate_fork")
        case.classname = "kstress.workload"
        self.record.workloads["migrate_fork"] = WorkloadRecord(
            kind="c", argv=[], duration=1, stresses=[], evidence=[],
            vmstat_delta={"pgmigrate_success": 1000 if name == DEFAULT_KERNEL else 300})
        code = 0
        if name == "kasan":
            title = "KASAN: slab-use-after-free Read in folio_lock_anon_vma_read"
            case.fail(title, "BUG: KASAN: ...", "kernel")
            self.record.findings.append(FindingRecord("migrate_fork", None, Finding(
                cls="kasan", type="MEMORY_SAFETY_BUG", title=title, file="mm/rmap.c")))
            code = 1
        self.record.exit_code = code
        return code

    def summary(self):
        return f"kstress run {self.run_id}  exit {self.record.exit_code}\n"


@pytest.fixture
def fake(monkeypatch):
    FakeRunner.made, FakeRunner.broken, FakeRunner.interrupt_on = [], {"lockdep"}, None
    monkeypatch.setattr(cli, "Runner", FakeRunner)
    return FakeRunner


def test_every_kernel_runs_with_one_seed_and_the_worst_exit_code_wins(tmp_path, fake):
    cfg = load_config(write(tmp_path, VARIANTS))
    runs = VariantRuns(cfg, cfg.kernel_names(), tmp_path / "res", runner=FakeRunner)
    assert runs.run() == 1  # kasan's finding outranks lockdep's build failure (125)
    made = {c.kernel_name: c for c in fake.made}
    assert list(made) == ["default", "kasan", "lockdep"]
    assert len({c.seed for c in fake.made}) == 1 and fake.made[0].seed is not None
    assert made["kasan"].boot_timeout == 600 and made["default"].boot_timeout == 100
    for name, c in made.items():
        assert c.results == runs.dir / name

    data = json.loads((runs.dir / "variants.json").read_text())
    assert data["exit_code"] == 1 and data["seed"] == fake.made[0].seed
    by_name = {k["name"]: k for k in data["kernels"]}
    assert [by_name[n]["exit_code"] for n in ("default", "kasan", "lockdep")] == [0, 1, 125]
    assert by_name["lockdep"]["error"].startswith("kernel build failed")
    assert by_name["default"]["pgmigrate_success"] == 1000 and by_name["kasan"]["seconds_to_ready"] == 10.0
    assert Path(by_name["kasan"]["run_dir"]).parent == runs.dir / "kasan"

    summary = (runs.dir / "summary.txt").read_text()
    lines = summary.splitlines()
    assert lines[0].startswith(f"kstress run {runs.run_id}  seed ")
    assert "default" in lines[1] and "exit 0" in lines[1] and "clean" in lines[1]
    assert "exit 1" in lines[2] and "KASAN: slab-use-after-free Read in folio_lock_anon_vma_read" in lines[2]
    assert "exit 125" in lines[3] and "kernel build failed (full log: /x):" in lines[3]
    assert "exit 1 (the worst of the kernels'" in summary and "[kasan]" in summary

    doc = validate(runs.dir / "junit.xml")
    suites = doc.getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == ["kstress.default", "kstress.kasan", "kstress.lockdep"]
    classes = {tc.get("classname") for tc in doc.iter("testcase")}
    assert {"kstress.default.boot", "kstress.kasan.workload", "kstress.lockdep"} <= classes
    assert doc.getroot().get("failures") == "1" and doc.getroot().get("errors") == "1"


def test_all_clean_is_zero_and_one_kernel_that_cannot_test_is_125(tmp_path, fake):
    cfg = load_config(write(tmp_path, VARIANTS))
    fake.broken = set()
    assert VariantRuns(cfg, ["default", "lockdep"], tmp_path, runner=FakeRunner).run() == 0
    fake.broken = {"lockdep"}
    assert VariantRuns(cfg, ["default", "lockdep"], tmp_path, runner=FakeRunner).run() == 125


def test_an_interrupt_keeps_the_combined_files_and_names_what_did_not_run(tmp_path, fake):
    cfg = load_config(write(tmp_path, VARIANTS))
    fake.interrupt_on = "kasan"
    runs = VariantRuns(cfg, cfg.kernel_names(), tmp_path, runner=FakeRunner)
    with pytest.raises(KeyboardInterrupt):
        runs.run()
    data = json.loads((runs.dir / "variants.json").read_text())
    assert data["exit_code"] == 130 and data["interrupted"] == "interrupted (SIGTERM)"
    assert [k["name"] for k in data["kernels"]] == ["default", "kasan"] and data["not_run"] == ["lockdep"]
    assert "lockdep      not run" in (runs.dir / "summary.txt").read_text()
    validate(runs.dir / "junit.xml")


def test_cli_runs_every_kernel_or_only_the_named_one(tmp_path, fake, monkeypatch, capsys):
    monkeypatch.setattr(mode, "Runner", FakeRunner)  # the mode's default runner
    path = write(tmp_path, VARIANTS)
    assert cli.main(["run", str(path), "--results", str(tmp_path / "all"), "--seed", "7"]) == 1
    assert [c.kernel_name for c in fake.made] == ["default", "kasan", "lockdep"]
    assert {c.seed for c in fake.made} == {7}
    assert "kstress run " in capsys.readouterr().out
    fake.made = []
    assert cli.main(["run", str(path), "--results", str(tmp_path / "one"), "--variant", "kasan"]) == 1
    (only,) = fake.made
    assert only.kernel_name == "kasan" and only.boot_timeout == 600
    assert only.results == (tmp_path / "one").resolve()  # an ordinary run: no parent directory
    fake.made = []
    assert cli.main(["run", str(path), "--results", str(tmp_path / "x"), "--variant", "kasn"]) == 2
    assert fake.made == []


def test_cli_build_builds_the_named_variants(tmp_path, monkeypatch, capsys):
    built = []

    class Built:
        def __init__(self, n):
            self.key, self.cache_hit, self.artifact_dir = f"k{n}", True, tmp_path / f"k{n}"

    def build_kernel(req, cache_dir=None):
        built.append([Path(f).name for f in req.fragments])
        return Built(len(built) - 1)

    monkeypatch.setattr(cli, "build_kernel", build_kernel)
    path = write(tmp_path, VARIANTS)
    assert cli.main(["build", str(path), "--variant", "kasan", "--variant", "default"]) == 0
    assert built == [["base-x86.config", "mm-stress.config", "debug.config", "kasan.config"],
                     ["base-x86.config", "mm-stress.config", "debug.config"]]
    assert capsys.readouterr().out.splitlines() == [str(tmp_path / "k0"), str(tmp_path / "k1")]
    assert cli.main(["build", str(path), "--variant", "kasan", "--fragment", "debug"]) == 2
