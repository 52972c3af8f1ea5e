"""kstress compare: the Fisher test, the power figure, the verdicts, and the
comparison loop (same seeds on both sides, results kept after every run)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from junit_schema import validate

from harness.cli import main
from harness.config import load_config
from harness.console.model import Finding
from harness.errors import CouldNotTest
from harness.modes import compare as cmp
from harness.modes import stats
from harness.modes.compare import Comparison, Side, SideRun, verdicts
from harness.modes.stats import fisher_greater, power, runs_for_power
from harness.run.record import FindingRecord, RunRecord, WorkloadRecord

WARN = ("WARNING in deferred_split_folio", "mm/huge_memory.c")
BUG = ("kernel BUG at include/linux/swapops.h:LINE!", "include/linux/swapops.h")


def test_fisher_matches_hand_computed_hypergeometric_tails():
    # 5/20 against 0/20: every one of the 5 pooled hits on side 1.
    assert fisher_greater(5, 20, 0, 20) == pytest.approx(math.comb(20, 5) / math.comb(40, 5))
    # 1/2 against 0/2: P(side 1 gets the single hit) = 1/2.
    assert fisher_greater(1, 2, 0, 2) == pytest.approx(0.5)
    assert fisher_greater(0, 10, 3, 10) == pytest.approx(1.0)
    assert fisher_greater(3, 10, 3, 10) > 0.5
    with pytest.raises(ValueError):
        fisher_greater(3, 2, 0, 2)


def test_the_fast_critical_values_agree_with_the_exact_test():
    for n in range(1, 16):
        for hits in range(2 * n + 1):
            exact = next((k for k in range(max(0, hits - n), min(n, hits) + 1)
                          if fisher_greater(k, n, hits - k, n) <= 0.05), n + 1)
            assert stats._critical(n, hits, 0.05) == exact, (n, hits)


def test_power_grows_with_runs_and_runs_for_power_reaches_90_percent():
    assert power(0.25, 0.0, 10) < power(0.25, 0.0, 20) < power(0.25, 0.0, 40)
    n = runs_for_power(0.25, 0.0)
    assert power(0.25, 0.0, n) >= 0.9 > power(0.25, 0.0, n - 1)
    assert runs_for_power(0.1, 0.0) > n  # rarer races need more runs
    assert runs_for_power(0.0, 0.25) is None and runs_for_power(0.01, 0.0) is None  # beyond MAX_N


def runs(side: str, n: int, hitting: int, key=WARN, migrations=1000) -> list[SideRun]:
    return [SideRun(side, i, 100 + i, f"{side}-{i}", 1 if i < hitting else 0, [key] if i < hitting else [],
                    {"pgmigrate_success": migrations, "thp_migration_success": migrations // 10})
            for i in range(n)]


def test_five_of_twenty_against_none_is_fixed():
    (v,) = verdicts(runs("base", 20, 5) + runs("patched", 20, 0))
    assert (v.verdict, v.hits, v.runs) == ("fixed", {"base": 5, "patched": 0}, {"base": 20, "patched": 20})
    assert v.p_value == pytest.approx(0.02356, abs=1e-4) and v.runs_for_90_power is None


def test_two_of_twenty_against_none_is_inconclusive_with_the_runs_it_would_need():
    (v,) = verdicts(runs("base", 20, 2) + runs("patched", 20, 0))
    assert v.verdict == "inconclusive" and v.p_value > 0.2
    assert v.runs_for_90_power == runs_for_power(0.1, 0.0)


def test_patched_only_is_a_regression_and_fails_the_comparison():
    found = verdicts(runs("base", 10, 0) + runs("patched", 10, 6, key=BUG))
    assert [v.verdict for v in found] == ["regression"]
    assert cmp.exit_code(found, runs("base", 10, 0) + runs("patched", 10, 6, key=BUG)) == 1


def test_both_sides_alike_is_unchanged():
    (v,) = verdicts(runs("base", 10, 4) + runs("patched", 10, 3))
    assert v.verdict == "unchanged"


def test_a_fix_that_stops_migration_is_not_fixed():
    (v,) = verdicts(runs("base", 20, 6) + runs("patched", 20, 0, migrations=10))
    assert v.verdict == "inconclusive" and "less migration" in v.note and "pgmigrate_success" in v.note


def test_runs_that_could_not_test_do_not_count():
    rs = runs("base", 4, 2) + runs("patched", 4, 0)
    rs[0].exit_code = 125
    (v,) = verdicts(rs)
    assert v.runs == {"base": 3, "patched": 4} and v.hits["base"] == 1
    assert cmp.exit_code([], runs("base", 2, 0)) == 125  # the patched side never tested


class FakeRunner:
    """Stands in for Runner: records the config it was given; the base side hits WARN on even seeds."""

    configs: list = []

    def __init__(self, cfg, cache_dir=None):
        self.cfg = cfg
        FakeRunner.configs.append(cfg)
        self.record = RunRecord(run_id=f"r{len(FakeRunner.configs)}", seed=cfg.seed, config={})

    def run(self):
        patched = bool(self.cfg.patches)
        hit = not patched and self.cfg.seed % 2 == 0
        if hit:
            self.record.findings.append(FindingRecord("migrate_fork", "known", Finding(
                cls="warning", type="WARNING", title=WARN[0], file=WARN[1])))
        self.record.workloads["migrate_fork"] = WorkloadRecord(
            kind="c", argv=[], duration=1, stresses=[], evidence=[], vmstat_delta={"pgmigrate_success": 500})
        self.record.exit_code = 0  # a known issue does not fail the run
        return 0


def test_comparison_runs_both_sides_with_the_same_seeds_and_writes_its_files(tmp_path, monkeypatch):
    FakeRunner.configs = []
    monkeypatch.setattr(cmp, "Runner", FakeRunner)
    patches = tmp_path / "fix.patch"
    patches.write_text("--- a/x\n+++ b/x\n")
    cfg = load_config("quick")
    c = Comparison(cfg, (Side("base"), Side("patched", patches=str(patches))), 4, tmp_path / "res", seed=10)
    assert c.run() == 0
    seeds = [(bool(x.patches), x.seed) for x in FakeRunner.configs]
    assert seeds == [(False, 10), (True, 10), (False, 11), (True, 11), (False, 12), (True, 12),
                     (False, 13), (True, 13)]
    data = json.loads((c.dir / "compare.json").read_text())
    assert len(data["runs"]) == 8 and data["verdicts"][0]["hits"] == {"base": 2, "patched": 0}
    assert data["verdicts"][0]["verdict"] == "inconclusive"  # 2/4 against 0/4: p = 0.21
    summary = (c.dir / "summary.txt").read_text()
    assert "INCONCLUSIVE" in summary and "base    2/4" in summary and "runs per side for 90% power" in summary
    doc = validate(c.dir / "junit.xml")
    classes = {tc.get("classname") for tc in doc.iter("testcase")}
    assert classes == {"kstress.compare.base", "kstress.compare.patched", "kstress.compare.verdict"}
    report = (c.dir / "report.html").read_text()  # the fake runs left no run.json: compare.json alone
    assert "inconclusive" in report and WARN[0] in report and "r1/run.json is missing" in report


def test_a_side_that_cannot_build_stops_the_comparison_naming_the_side(tmp_path, monkeypatch):
    class Broken(FakeRunner):
        def run(self):
            if self.cfg.patches:
                raise CouldNotTest("patch 0001-x.patch does not apply: mm/x.c")
            return super().run()

    FakeRunner.configs = []
    monkeypatch.setattr(cmp, "Runner", Broken)
    c = Comparison(load_config("quick"), (Side("base"), Side("patched", patches=__file__)), 2, tmp_path, seed=1)
    with pytest.raises(CouldNotTest, match="patched side: patch 0001-x.patch does not apply"):
        c.run()
    assert json.loads((c.dir / "compare.json").read_text())["runs"][0]["side"] == "base"


def test_a_missing_series_fails_before_any_run(tmp_path, monkeypatch):
    FakeRunner.configs = []
    monkeypatch.setattr(cmp, "Runner", FakeRunner)
    assert main(["compare", "quick", "--patched-patches", str(tmp_path / "nope"), "--results", str(tmp_path)]) == 2
    assert FakeRunner.configs == []


def test_cli_refuses_two_identical_sides(capsys):
    assert main(["compare", "quick", "--runs", "2"]) == 2
    assert "the two sides are the same kernel" in capsys.readouterr().err


def test_cli_refuses_zero_runs(tmp_path, capsys):
    assert main(["compare", "quick", "--runs", "0", "--patched-patches", str(Path(__file__)),
                 "--results", str(tmp_path)]) == 2
    assert "--runs 0: expected at least 1" in capsys.readouterr().err
